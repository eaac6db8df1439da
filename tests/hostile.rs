//! Hostile input, on both backends: SQL injection through every string filter (spend
//! filters and groups, tags, budget scopes, ListPrices filters, unavailability marks), an
//! oversized gRPC message, a deeply nested JSON tag column and a 10 GB sparse file given to
//! `bursar ingest`. Each gets a clean answer (INVALID_ARGUMENT naming the field, or the
//! correct empty or filtered result), nothing is stored, and every table keeps its rows.
mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use bursar::proto;
use bursar::proto::budget_service_client::BudgetServiceClient;
use bursar::proto::placement_service_client::PlacementServiceClient;
use bursar::proto::spend_service_client::SpendServiceClient;
use bursar::store::Store;
use bursar::tasks::ingest::ingest_file;
use sqlx::Row;
use tonic::{Code, Status};

/// Values that break a query built by pasting text, and a few that only look odd.
fn hostile() -> Vec<String> {
    vec![
        "'; DROP TABLE cost_fact; --".into(),
        "\" OR 1=1 --".into(),
        "' OR '1'='1".into(),
        "x' UNION SELECT name FROM sqlite_master --".into(),
        "1; DELETE FROM budget".into(),
        "%".into(),
        "_".into(),
        "*".into(),
        "$.a".into(),
        "a\\".into(),
        "a\u{0}b".into(),
        "\u{0}".into(),
        "line\nbreak".into(),
        "ünïcödé ☃ 🦀 \u{202e}rtl".into(),
        "\u{fffd}\u{feff}".into(),
        "Robert'); DROP TABLE budget;--".into(),
        "q".repeat(10_000),
    ]
}

/// An answer to a hostile value: accepted (checked by the caller) or INVALID_ARGUMENT whose
/// message names `field`. Anything else (INTERNAL, UNKNOWN, a dropped connection) fails.
#[track_caller]
fn accepted<T>(r: Result<tonic::Response<T>, Status>, field: &str, what: &str) -> Option<T> {
    match r {
        Ok(resp) => Some(resp.into_inner()),
        Err(s) => {
            assert_eq!(
                s.code(),
                Code::InvalidArgument,
                "{what}: {:.300}",
                s.message()
            );
            assert!(
                s.message().starts_with(field),
                "{what}: should name {field}: {:.300}",
                s.message()
            );
            assert!(
                s.message().len() < 600,
                "{what}: a short message: {} bytes: {:.300}",
                s.message().len(),
                s.message()
            );
            None
        }
    }
}

/// Rows per table: every table of the schema (migrations' bookkeeping aside).
async fn table_counts(url: &str) -> BTreeMap<String, i64> {
    let mut out = BTreeMap::new();
    if url.starts_with("sqlite") {
        let pool = sqlx::SqlitePool::connect(url).await.unwrap();
        let names: Vec<String> = sqlx::query_scalar(
            "SELECT name FROM sqlite_master WHERE type = 'table' \
             AND name NOT LIKE 'sqlite_%' AND name NOT LIKE '_sqlx%'",
        )
        .fetch_all(&pool)
        .await
        .unwrap();
        for n in names {
            let c: i64 = sqlx::query(&format!("SELECT COUNT(*) FROM \"{n}\""))
                .fetch_one(&pool)
                .await
                .unwrap()
                .get(0);
            out.insert(n, c);
        }
        pool.close().await;
    } else {
        let pool = sqlx::PgPool::connect(url).await.unwrap();
        let names: Vec<String> = sqlx::query_scalar(
            "SELECT tablename::text FROM pg_tables WHERE schemaname = 'public' \
             AND tablename NOT LIKE '_sqlx%'",
        )
        .fetch_all(&pool)
        .await
        .unwrap();
        for n in names {
            let c: i64 = sqlx::query(&format!("SELECT COUNT(*) FROM \"{n}\""))
                .fetch_one(&pool)
                .await
                .unwrap()
                .get(0);
            out.insert(n, c);
        }
        pool.close().await;
    }
    out
}

/// Tables that record activity (evaluations, decisions, generations): they may grow while
/// the hostile calls run, but never shrink. Every other table keeps exactly its rows.
const ACTIVITY: &[&str] = &[
    "budget_evaluation",
    "budget_alert",
    "alert_outbox",
    "placement_decision",
    "catalog_generation",
    "spend_generation",
    "source_status",
    "availability_mark",
];

fn ts(s: &str) -> Option<prost_types::Timestamp> {
    let t = chrono::DateTime::parse_from_rfc3339(s).unwrap();
    Some(prost_types::Timestamp {
        seconds: t.timestamp(),
        nanos: 0,
    })
}

/// September 2024, the FOCUS sample's month, in one total.
fn spend_req() -> proto::GetSpendRequest {
    proto::GetSpendRequest {
        start: ts("2024-09-01T00:00:00Z"),
        end: ts("2024-10-01T00:00:00Z"),
        granularity: proto::Granularity::Total as i32,
        ..Default::default()
    }
}

fn lines(r: &proto::GetSpendResponse) -> u64 {
    r.buckets.iter().map(|b| b.lines).sum()
}

fn budget(name: &str, scope: proto::BudgetScope) -> proto::Budget {
    proto::Budget {
        name: name.into(),
        scope: Some(scope),
        amount: Some(proto::Money {
            amount: "1000".into(),
            currency: "USD".into(),
        }),
        thresholds: vec![proto::Threshold {
            percent: "80".into(),
            ..Default::default()
        }],
        emails: vec!["finops@example.com".into()],
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sql_injection_through_every_string_filter_changes_nothing() {
    let sample = common::shared("focus-sample/multi-provider/focus_sample.csv");
    for db in common::both_backends().await {
        let b = db.backend;
        let server = common::TestServer::start(common::test_config(&db)).await;
        let store = Store::open(&db.url).await.unwrap();
        ingest_file(&store, &sample, None, false).await.unwrap();
        let mut spend = SpendServiceClient::new(server.channel().await);
        let pricing = server.pricing().await;
        let mut placement = PlacementServiceClient::new(server.channel().await);
        let mut budgets = BudgetServiceClient::new(server.channel().await);

        // What is there before: 1000 lines, a budget on a tag, a mark, the seed prices.
        let all = spend.get_spend(spend_req()).await.unwrap().into_inner();
        assert_eq!(lines(&all), 1000, "{b}");
        let ml = budget(
            "team-ml",
            proto::BudgetScope {
                tag: "environment=dev".into(),
                ..Default::default()
            },
        );
        budgets
            .create_budget(proto::CreateBudgetRequest {
                budget: Some(ml.clone()),
            })
            .await
            .unwrap();
        let ml_status = |budgets: &mut BudgetServiceClient<_>| {
            let mut budgets = budgets.clone();
            async move {
                budgets
                    .get_budget_status(proto::GetBudgetStatusRequest {
                        name: "team-ml".into(),
                        at: ts("2024-09-30T12:00:00Z"),
                    })
                    .await
                    .unwrap()
                    .into_inner()
                    .statuses[0]
                    .actual
                    .clone()
            }
        };
        let ml_actual = ml_status(&mut budgets).await;
        let mark = placement
            .mark_unavailable(proto::MarkUnavailableRequest {
                provider: proto::Provider::Aws as i32,
                region: "us-east-1".into(),
                reason: "maintenance".into(),
                ttl_seconds: 3600,
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        let prices = |p: proto::ListPricesRequest| {
            let mut pricing = pricing.clone();
            async move { pricing.list_prices(p).await }
        };
        let seed_prices = prices(proto::ListPricesRequest {
            page_size: 1000,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .prices
        .len();
        assert!(seed_prices > 0, "{b}: the seed catalog is loaded");
        let before = table_counts(&db.url).await;
        assert!(
            before["cost_fact"] > 0 && before["price_current"] > 0,
            "{b}: {before:?}"
        );

        for v in hostile() {
            let shown: String = v.chars().take(40).collect();
            let what = |f: &str| format!("{b}: {f} = {shown:?} ({} bytes)", v.len());

            // GetSpend: every filter matches nothing (no line has such a value) ...
            for (field, req) in [
                (
                    "provider",
                    proto::GetSpendRequest {
                        provider: v.clone(),
                        ..spend_req()
                    },
                ),
                (
                    "service",
                    proto::GetSpendRequest {
                        service: v.clone(),
                        ..spend_req()
                    },
                ),
                (
                    "region",
                    proto::GetSpendRequest {
                        region: v.clone(),
                        ..spend_req()
                    },
                ),
                (
                    "account",
                    proto::GetSpendRequest {
                        account: v.clone(),
                        ..spend_req()
                    },
                ),
                (
                    "tag",
                    proto::GetSpendRequest {
                        tag: format!("environment={v}"),
                        ..spend_req()
                    },
                ),
                (
                    "tag",
                    proto::GetSpendRequest {
                        tag: format!("{v}=dev"),
                        ..spend_req()
                    },
                ),
                (
                    "tag",
                    proto::GetSpendRequest {
                        tag: v.clone(),
                        ..spend_req()
                    },
                ),
            ] {
                if let Some(r) = accepted(spend.get_spend(req).await, field, &what(field)) {
                    assert_eq!(lines(&r), 0, "{}: matched {:?}", what(field), r.buckets);
                }
            }
            // ... and a group never loses or duplicates a line.
            for g in [format!("tag:{v}"), v.clone()] {
                let req = proto::GetSpendRequest {
                    group_by: g,
                    ..spend_req()
                };
                if let Some(r) = accepted(spend.get_spend(req).await, "group_by", &what("group_by"))
                {
                    assert_eq!(lines(&r), 1000, "{}", what("group_by"));
                    assert_eq!(r.total_billed, all.total_billed, "{}", what("group_by"));
                }
            }

            // ListPrices: an exact match on nothing, or refused.
            for (field, req) in [
                (
                    "region",
                    proto::ListPricesRequest {
                        region: v.clone(),
                        ..Default::default()
                    },
                ),
                (
                    "instance_type",
                    proto::ListPricesRequest {
                        instance_type: v.clone(),
                        ..Default::default()
                    },
                ),
                (
                    "gpu_model",
                    proto::ListPricesRequest {
                        gpu_model: v.clone(),
                        ..Default::default()
                    },
                ),
                (
                    "max_price_per_hour",
                    proto::ListPricesRequest {
                        max_price_per_hour: v.clone(),
                        ..Default::default()
                    },
                ),
                (
                    "page_token",
                    proto::ListPricesRequest {
                        page_token: v.clone(),
                        ..Default::default()
                    },
                ),
            ] {
                if let Some(r) = accepted(prices(req).await, field, &what(field)) {
                    assert!(
                        r.prices.is_empty(),
                        "{}: {} prices",
                        what(field),
                        r.prices.len()
                    );
                }
            }

            // Budget scopes, on create and on update: refused, or stored exactly as sent
            // and matching no spend.
            let scopes = [
                (
                    "budget.scope.provider",
                    proto::BudgetScope {
                        provider: v.clone(),
                        ..Default::default()
                    },
                ),
                (
                    "budget.scope.service",
                    proto::BudgetScope {
                        service: v.clone(),
                        ..Default::default()
                    },
                ),
                (
                    "budget.scope.account",
                    proto::BudgetScope {
                        account: v.clone(),
                        ..Default::default()
                    },
                ),
                (
                    "budget.scope.region",
                    proto::BudgetScope {
                        region: v.clone(),
                        ..Default::default()
                    },
                ),
                (
                    "budget.scope.tag",
                    proto::BudgetScope {
                        tag: format!("team={v}"),
                        ..Default::default()
                    },
                ),
                (
                    "budget.scope.tag",
                    proto::BudgetScope {
                        tag: format!("{v}=ml"),
                        ..Default::default()
                    },
                ),
            ];
            for (field, scope) in scopes.iter().cloned() {
                let req = proto::CreateBudgetRequest {
                    budget: Some(budget("hostile", scope.clone())),
                };
                if let Some(created) =
                    accepted(budgets.create_budget(req).await, field, &what(field))
                {
                    assert_eq!(created.scope.as_ref(), Some(&scope), "{}", what(field));
                    let st = budgets
                        .get_budget_status(proto::GetBudgetStatusRequest {
                            name: "hostile".into(),
                            at: ts("2024-09-30T12:00:00Z"),
                        })
                        .await
                        .unwrap()
                        .into_inner();
                    let actual = st.statuses[0].actual.clone().unwrap();
                    assert!(
                        actual
                            .amount
                            .parse::<rust_decimal::Decimal>()
                            .unwrap()
                            .is_zero(),
                        "{}: spend {actual:?}",
                        what(field)
                    );
                    budgets
                        .delete_budget(proto::DeleteBudgetRequest {
                            name: "hostile".into(),
                        })
                        .await
                        .unwrap();
                }
                let mut changed = ml.clone();
                changed.scope = Some(scope.clone());
                let req = proto::UpdateBudgetRequest {
                    budget: Some(changed),
                };
                if accepted(budgets.update_budget(req).await, field, &what(field)).is_some() {
                    let listed = budgets
                        .list_budgets(proto::ListBudgetsRequest {})
                        .await
                        .unwrap()
                        .into_inner();
                    assert_eq!(
                        listed.budgets[0].scope.as_ref(),
                        Some(&scope),
                        "{}",
                        what(field)
                    );
                    budgets
                        .update_budget(proto::UpdateBudgetRequest {
                            budget: Some(ml.clone()),
                        })
                        .await
                        .unwrap();
                }
            }
            // Names used as keys: refused, or the budget is stored under exactly that name.
            let req = proto::CreateBudgetRequest {
                budget: Some(budget(&v, proto::BudgetScope::default())),
            };
            if let Some(created) = accepted(
                budgets.create_budget(req).await,
                "budget.name",
                &what("budget.name"),
            ) {
                assert_eq!(created.name, v.trim(), "{}", what("budget.name"));
                budgets
                    .delete_budget(proto::DeleteBudgetRequest { name: created.name })
                    .await
                    .unwrap();
            }
            for r in [
                budgets
                    .delete_budget(proto::DeleteBudgetRequest { name: v.clone() })
                    .await
                    .map(|_| ()),
                budgets
                    .get_budget_status(proto::GetBudgetStatusRequest {
                        name: v.clone(),
                        at: None,
                    })
                    .await
                    .map(|_| ()),
            ] {
                let s = r.expect_err(&what("name"));
                assert!(
                    matches!(s.code(), Code::InvalidArgument | Code::NotFound),
                    "{}: {s:?}",
                    what("name")
                );
            }

            // Unavailability marks: refused, or stored exactly as sent and cleared again.
            for (field, req) in [
                (
                    "region",
                    proto::MarkUnavailableRequest {
                        region: v.clone(),
                        ..mark_req()
                    },
                ),
                (
                    "zone",
                    proto::MarkUnavailableRequest {
                        zone: v.clone(),
                        ..mark_req()
                    },
                ),
                (
                    "reason",
                    proto::MarkUnavailableRequest {
                        reason: v.clone(),
                        ..mark_req()
                    },
                ),
            ] {
                if let Some(m) =
                    accepted(placement.mark_unavailable(req).await, field, &what(field))
                {
                    let got = match field {
                        "region" => &m.region,
                        "zone" => &m.zone,
                        _ => &m.reason,
                    };
                    assert_eq!(got.trim(), v.trim(), "{}", what(field));
                    placement
                        .clear_unavailable(proto::ClearUnavailableRequest { id: m.id })
                        .await
                        .unwrap();
                }
            }
            let r = placement
                .clear_unavailable(proto::ClearUnavailableRequest { id: v.clone() })
                .await;
            let s = r.expect_err(&what("id"));
            assert!(
                matches!(s.code(), Code::InvalidArgument | Code::NotFound),
                "{}: {s:?}",
                what("id")
            );
        }

        // Everything is as it was.
        let after = table_counts(&db.url).await;
        assert_eq!(
            after.keys().collect::<Vec<_>>(),
            before.keys().collect::<Vec<_>>(),
            "{b}: the same tables"
        );
        for (t, n) in &before {
            if ACTIVITY.contains(&t.as_str()) {
                assert!(after[t] >= *n, "{b}: {t} lost rows: {n} -> {}", after[t]);
            } else {
                assert_eq!(after[t], *n, "{b}: {t}");
            }
        }
        let again = spend.get_spend(spend_req()).await.unwrap().into_inner();
        assert_eq!(again, all, "{b}: the same spend");
        let listed = budgets
            .list_budgets(proto::ListBudgetsRequest {})
            .await
            .unwrap()
            .into_inner();
        assert_eq!(listed.budgets.len(), 1, "{b}");
        assert_eq!(listed.budgets[0].scope, ml.scope, "{b}");
        assert_eq!(ml_status(&mut budgets).await, ml_actual, "{b}");
        let marks = placement
            .list_unavailable(proto::ListUnavailableRequest {})
            .await
            .unwrap()
            .into_inner();
        // (Postgres keeps microseconds: MarkUnavailable's answer has the nanoseconds.)
        let micros = |mut m: proto::AvailabilityMark| {
            for t in [&mut m.created_at, &mut m.expires_at].into_iter().flatten() {
                t.nanos -= t.nanos % 1000;
            }
            m
        };
        assert_eq!(
            marks.marks.into_iter().map(micros).collect::<Vec<_>>(),
            vec![micros(mark)],
            "{b}: the one mark"
        );
        let n = prices(proto::ListPricesRequest {
            page_size: 1000,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .prices
        .len();
        assert_eq!(n, seed_prices, "{b}");
        store.close().await;
        server.stop().await.unwrap();
    }
}

fn mark_req() -> proto::MarkUnavailableRequest {
    proto::MarkUnavailableRequest {
        provider: proto::Provider::Gcp as i32,
        region: "us-central1".into(),
        reason: "quota".into(),
        ttl_seconds: 600,
        ..Default::default()
    }
}

/// tonic's default limit on a decoded message, which the server keeps unless configured.
const DEFAULT_MAX_DECODE: usize = 4 * 1024 * 1024;

#[tokio::test]
async fn an_oversized_message_is_refused_and_the_server_keeps_serving() {
    for db in common::both_backends().await {
        let b = db.backend;
        let server = common::TestServer::start(common::test_config(&db)).await;
        let mut placement = PlacementServiceClient::new(server.channel().await);
        let mut budgets = BudgetServiceClient::new(server.channel().await);
        let mut spend = SpendServiceClient::new(server.channel().await);
        let huge = "x".repeat(DEFAULT_MAX_DECODE + 1024);
        let check = |r: Result<(), Status>, what: &str| {
            let s = r.expect_err(what);
            // tonic refuses the frame before the handler sees it.
            assert!(
                matches!(s.code(), Code::OutOfRange | Code::ResourceExhausted),
                "{b}: {what}: {s:?}"
            );
            assert!(
                s.message().contains(&DEFAULT_MAX_DECODE.to_string()),
                "{b}: {what}: names the limit: {}",
                s.message()
            );
        };
        check(
            placement
                .mark_unavailable(proto::MarkUnavailableRequest {
                    reason: huge.clone(),
                    ..mark_req()
                })
                .await
                .map(|_| ()),
            "MarkUnavailable",
        );
        check(
            budgets
                .create_budget(proto::CreateBudgetRequest {
                    budget: Some(budget(
                        "big",
                        proto::BudgetScope {
                            service: huge.clone(),
                            ..Default::default()
                        },
                    )),
                })
                .await
                .map(|_| ()),
            "CreateBudget",
        );
        check(
            spend
                .get_spend(proto::GetSpendRequest {
                    service: huge.clone(),
                    ..spend_req()
                })
                .await
                .map(|_| ()),
            "GetSpend",
        );
        check(
            placement
                .select_provider(proto::SelectProviderRequest {
                    expected_hours: 1.0,
                    labels: (0..64)
                        .map(|i| (format!("k{i}"), "v".repeat(DEFAULT_MAX_DECODE / 60)))
                        .collect(),
                    ..Default::default()
                })
                .await
                .map(|_| ()),
            "SelectProvider",
        );
        // Nothing stored, and the same connections still answer.
        let marks = placement
            .list_unavailable(proto::ListUnavailableRequest {})
            .await
            .unwrap()
            .into_inner();
        assert!(marks.marks.is_empty(), "{b}");
        let listed = budgets
            .list_budgets(proto::ListBudgetsRequest {})
            .await
            .unwrap()
            .into_inner();
        assert!(listed.budgets.is_empty(), "{b}");
        spend.get_spend(spend_req()).await.unwrap();
        server.stop().await.unwrap();
    }
}

/// Runs the `bursar` binary, sampling its peak resident memory (VmHWM) while it runs.
/// Returns the output and the peak in bytes. Fails if it runs past `limit` (liveness).
fn bursar_measured(args: &[&str], limit: Duration) -> (std::process::Output, u64) {
    use std::io::Read;
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_bursar"))
        .args(args)
        .env_remove("BURSAR_DATABASE_URL")
        .env_remove("BURSAR_CONFIG")
        .env_remove("BURSAR_INGEST_ACCEPT_BAD_ROWS")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let status_path = format!("/proc/{}/status", child.id());
    let hwm = || -> Option<u64> {
        let s = std::fs::read_to_string(&status_path).ok()?;
        let l = s.lines().find(|l| l.starts_with("VmHWM:"))?;
        let kb: u64 = l.split_whitespace().nth(1)?.parse().ok()?;
        Some(kb * 1024)
    };
    let mut stdout = child.stdout.take().unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let out_t = std::thread::spawn(move || {
        let mut v = Vec::new();
        stdout.read_to_end(&mut v).unwrap();
        v
    });
    let err_t = std::thread::spawn(move || {
        let mut v = Vec::new();
        stderr.read_to_end(&mut v).unwrap();
        v
    });
    let started = Instant::now();
    let mut peak = 0u64;
    let status = loop {
        // Read before reaping: /proc/<pid> goes with the process.
        if let Some(h) = hwm() {
            peak = peak.max(h);
        }
        if let Some(st) = child.try_wait().unwrap() {
            break st;
        }
        if started.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            panic!("bursar {args:?} still running after {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let out = std::process::Output {
        status,
        stdout: out_t.join().unwrap(),
        stderr: err_t.join().unwrap(),
    };
    (out, peak)
}

/// The bound on `bursar ingest`'s peak memory for a file it refuses.
const MEMORY_BOUND: u64 = 512 << 20;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ten_gigabyte_sparse_file_is_refused_in_bounded_time_and_memory() {
    let tmp = tempfile::tempdir().unwrap();
    let mut files = Vec::new();
    for name in ["sparse.csv", "sparse.jsonl"] {
        let p = tmp.path().join(name);
        let f = std::fs::File::create(&p).unwrap();
        f.set_len(10 << 30).unwrap(); // takes no disk: all of it a hole, read as zeros
        files.push(p);
    }
    // A real export with 10 GB of zeros after its header: the row after it has no end.
    let sample = common::read_shared("focus-sample/multi-provider/focus_sample.csv");
    let header = sample.lines().next().unwrap();
    let p = tmp.path().join("header-then-sparse.csv");
    std::fs::write(&p, format!("{header}\n")).unwrap();
    std::fs::OpenOptions::new()
        .append(true)
        .open(&p)
        .unwrap()
        .set_len(10 << 30)
        .unwrap();
    files.push(p);
    let want = [
        ("sparse.csv", 1, 0),
        ("sparse.jsonl", 1, 0),
        ("header-then-sparse.csv", 2, header.len() as u64 + 1),
    ];
    for db in common::both_backends().await {
        let b = db.backend;
        let store = Store::open(&db.url).await.unwrap();
        for (path, (name, line, offset)) in files.iter().zip(want) {
            let (o, peak) = {
                let args = [
                    "ingest",
                    path.to_str().unwrap(),
                    "--quiet",
                    "--database-url",
                    &db.url,
                ];
                let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
                tokio::task::spawn_blocking(move || {
                    let a: Vec<&str> = args.iter().map(String::as_str).collect();
                    bursar_measured(&a, Duration::from_secs(300))
                })
                .await
                .unwrap()
            };
            let stderr = String::from_utf8_lossy(&o.stderr);
            assert_eq!(o.status.code(), Some(1), "{b}: {name}: {stderr}");
            let expected = format!(
                "line {line}: the row starting at byte offset {offset} is longer than 16 MiB"
            );
            assert!(
                stderr.contains(&expected),
                "{b}: {name}: {expected:?} in {stderr}"
            );
            assert!(
                peak > 0 && peak < MEMORY_BOUND,
                "{b}: {name}: peak RSS {} MiB",
                peak >> 20
            );
            eprintln!("{b}: {name}: exit 1 with peak RSS {} MiB", peak >> 20);
            assert_eq!(store.count_cost_lines().await.unwrap(), 0, "{b}: {name}");
        }
        store.close().await;
    }
}

/// Writes `sample` with row `row`'s `column` cell replaced by `value`; returns the file's
/// text and the 1-based line of that row.
fn edit_cell(sample: &str, row: usize, column: &str, value: &str) -> (String, u64) {
    let mut rdr = csv::Reader::from_reader(sample.as_bytes());
    let header = rdr.headers().unwrap().clone();
    let col = header.iter().position(|h| h == column).unwrap();
    let mut w = csv::Writer::from_writer(Vec::new());
    w.write_record(&header).unwrap();
    let mut line = 0;
    for (i, rec) in rdr.records().enumerate() {
        let rec = rec.unwrap();
        if i == row {
            line = rec.position().unwrap().line();
            let mut edited: Vec<&str> = rec.iter().collect();
            edited[col] = value;
            w.write_record(&edited).unwrap();
        } else {
            w.write_record(&rec).unwrap();
        }
    }
    (String::from_utf8(w.into_inner().unwrap()).unwrap(), line)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deeply_nested_tags_cell_rejects_the_file_naming_line_and_column() {
    let tmp = tempfile::tempdir().unwrap();
    let sample = common::read_shared("focus-sample/multi-provider/focus_sample.csv");
    let mut cases = Vec::new();
    for (name, open) in [("brackets", "["), ("objects", "{\"a\":")] {
        let deep = open.repeat(100_000);
        let (text, line) = edit_cell(&sample, 500, "Tags", &deep);
        let p = tmp.path().join(format!("focus-{name}.csv"));
        std::fs::write(&p, text).unwrap();
        cases.push((p, line, 64 * open.len() + 1));
    }
    for db in common::both_backends().await {
        let b = db.backend;
        let store = Store::open(&db.url).await.unwrap();
        for (path, line, at) in &cases {
            let (o, peak) = {
                let args: Vec<String> = [
                    "ingest",
                    path.to_str().unwrap(),
                    "--quiet",
                    "--database-url",
                    &db.url,
                ]
                .iter()
                .map(|s| s.to_string())
                .collect();
                tokio::task::spawn_blocking(move || {
                    let a: Vec<&str> = args.iter().map(String::as_str).collect();
                    bursar_measured(&a, Duration::from_secs(300))
                })
                .await
                .unwrap()
            };
            let stderr = String::from_utf8_lossy(&o.stderr);
            assert_eq!(o.status.code(), Some(1), "{b}: {stderr}");
            let want = format!(
                "line {line} (Tags): Tags: tags nested deeper than 64 levels (at character {at})"
            );
            assert!(stderr.contains(&want), "{b}: {want:?} in {stderr}");
            assert!(
                stderr.contains("1 of 1000 rows could not be read"),
                "{b}: {stderr}"
            );
            assert!(peak < MEMORY_BOUND, "{b}: peak RSS {} MiB", peak >> 20);
            assert_eq!(
                store.count_cost_lines().await.unwrap(),
                0,
                "{b}: nothing stored"
            );
            let run = store.list_ingest_runs(1).await.unwrap().remove(0);
            assert_eq!(run.status, "rejected", "{b}");
            assert_eq!(run.rows_stored, 0, "{b}");
            let q = store
                .list_quarantine(&run.id, 0, 10)
                .await
                .unwrap()
                .unwrap();
            assert_eq!(q.len(), 1, "{b}: {q:?}");
            assert_eq!(q[0].line as u64, *line, "{b}");
            assert_eq!(q[0].column.as_deref(), Some("Tags"), "{b}");
        }
        store.close().await;
    }
}
