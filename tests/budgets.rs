//! BudgetService over gRPC on SQLite and Postgres: the create/list/update/delete round trip,
//! every bad input of the issue as INVALID_ARGUMENT naming the field, NOT_FOUND and
//! FAILED_PRECONDITION, budgets as code (the config file wins and cannot be edited through
//! the API), webhook secrets never returned or logged, GetBudgetStatus on a real CUR month
//! equal to the exact spend, and `bursar budgets …` exit codes.
mod common;

use std::collections::BTreeMap;
use std::process::{Command, Output};
use std::sync::{Arc, Mutex, OnceLock};

use bursar::domain::budget::{Budget, Threshold, ThresholdOn};
use bursar::proto;
use bursar::store::Store;
use bursar::store::budgets::BudgetOrigin;
use bursar::tasks::ingest::ingest_file;
use rust_decimal::Decimal;
use tonic::Code;

const SECRET: &str = "T0SECRET/B0SECRET/xoxbSECRETPATH";

fn dec(s: &str) -> Decimal {
    s.parse().unwrap()
}

fn hook(secret: &str) -> String {
    format!("https://hooks.slack.com/services/{secret}")
}

fn ts(s: &str) -> Option<prost_types::Timestamp> {
    let t: chrono::DateTime<chrono::Utc> = s.parse().unwrap();
    Some(prost_types::Timestamp {
        seconds: t.timestamp(),
        nanos: 0,
    })
}

/// Every log line of this test binary (all tests share the process), at trace level for
/// bursar: checked for secrets.
fn captured_logs() -> Arc<Mutex<Vec<u8>>> {
    static LOGS: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();
    LOGS.get_or_init(|| {
        let buf = Arc::new(Mutex::new(Vec::new()));
        let sink = buf.clone();
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new("bursar=trace,info"))
            .with_writer(move || LogWriter(sink.clone()))
            .try_init();
        buf
    })
    .clone()
}

struct LogWriter(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for LogWriter {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn budget(name: &str, amount: &str) -> proto::Budget {
    proto::Budget {
        name: name.into(),
        amount: Some(proto::Money {
            amount: amount.into(),
            currency: "USD".into(),
        }),
        thresholds: vec![
            proto::Threshold {
                percent: "80".into(),
                ..Default::default()
            },
            proto::Threshold {
                percent: "100".into(),
                on: proto::ThresholdOn::Forecast as i32,
                ..Default::default()
            },
        ],
        emails: vec!["finops@example.com".into()],
        slack_webhooks: vec![hook(SECRET)],
        scope: Some(proto::BudgetScope {
            tag: "team=ml".into(),
            ..Default::default()
        }),
        timezone: "Europe/Berlin".into(),
        gate: proto::GatePolicy::GateWarn as i32,
        ..Default::default()
    }
}

async fn create(
    c: &mut proto::budget_service_client::BudgetServiceClient<tonic::transport::Channel>,
    b: proto::Budget,
) -> Result<proto::Budget, tonic::Status> {
    c.create_budget(proto::CreateBudgetRequest { budget: Some(b) })
        .await
        .map(|r| r.into_inner())
}

async fn list(
    c: &mut proto::budget_service_client::BudgetServiceClient<tonic::transport::Channel>,
) -> BTreeMap<String, proto::Budget> {
    c.list_budgets(proto::ListBudgetsRequest {})
        .await
        .unwrap()
        .into_inner()
        .budgets
        .into_iter()
        .map(|b| (b.name.clone(), b))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_list_update_delete_round_trip() {
    for db in common::both_backends().await {
        let server = common::TestServer::start(common::test_config(&db)).await;
        let mut c = server.budgets().await;
        let be = db.backend;

        let created = create(&mut c, budget("ml-training", "5000.50"))
            .await
            .unwrap();
        assert_eq!(created.origin, "api", "{be}");
        assert_eq!(created.amount.as_ref().unwrap().amount, "5000.50");
        assert_eq!(
            created.slack_webhooks,
            vec!["https://hooks.slack.com/…".to_string()]
        );
        assert_eq!(created.timezone, "Europe/Berlin");
        assert_eq!(created.include_tax, Some(true), "unset = true");
        let mut other = budget("egress", "10000");
        other.metric = proto::BudgetMetric::EgressGb as i32;
        other.gate = proto::GatePolicy::GateNone as i32;
        other.amount.as_mut().unwrap().currency = String::new();
        create(&mut c, other).await.unwrap();

        let all = list(&mut c).await;
        assert_eq!(
            all.keys().collect::<Vec<_>>(),
            ["egress", "ml-training"],
            "{be}"
        );
        let ml = &all["ml-training"];
        assert_eq!(ml.scope.as_ref().unwrap().tag, "team=ml");
        assert_eq!(ml.thresholds.len(), 2);
        assert_eq!(ml.thresholds[1].on, proto::ThresholdOn::Forecast as i32);
        assert_eq!(ml.gate, proto::GatePolicy::GateWarn as i32);
        assert_eq!(all["egress"].amount.as_ref().unwrap().currency, "GB");

        // Update replaces the whole definition.
        let mut changed = budget("ml-training", "7000");
        changed.period = proto::BudgetPeriod::Quarterly as i32;
        changed.thresholds.truncate(1);
        changed.include_credits = Some(false);
        let updated = c
            .update_budget(proto::UpdateBudgetRequest {
                budget: Some(changed),
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(updated.amount.as_ref().unwrap().amount, "7000");
        let ml = &list(&mut c).await["ml-training"];
        assert_eq!(ml.period, proto::BudgetPeriod::Quarterly as i32);
        assert_eq!(ml.thresholds.len(), 1);
        assert_eq!(ml.include_credits, Some(false));

        // Status of one and of all.
        let st = c
            .get_budget_status(proto::GetBudgetStatusRequest {
                name: "ml-training".into(),
                at: None,
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(st.statuses.len(), 1);
        let s = &st.statuses[0];
        assert_eq!(s.amount.as_ref().unwrap().amount, "7000");
        assert_eq!(
            s.actual.as_ref().unwrap().amount,
            "0",
            "{be}: no spend ingested"
        );
        assert_eq!(s.remaining.as_ref().unwrap().amount, "7000");
        assert!(s.period.contains("-Q"), "{}", s.period);
        let all = c
            .get_budget_status(proto::GetBudgetStatusRequest::default())
            .await
            .unwrap()
            .into_inner();
        assert_eq!(all.statuses.len(), 2);
        let egress = all.statuses.iter().find(|s| s.name == "egress").unwrap();
        assert_eq!(egress.amount.as_ref().unwrap().currency, "GB");

        // Delete, then everything about the name is NOT_FOUND.
        c.delete_budget(proto::DeleteBudgetRequest {
            name: "ml-training".into(),
        })
        .await
        .unwrap();
        assert_eq!(list(&mut c).await.keys().collect::<Vec<_>>(), ["egress"]);
        let e = c
            .delete_budget(proto::DeleteBudgetRequest {
                name: "ml-training".into(),
            })
            .await
            .unwrap_err();
        assert_eq!(e.code(), Code::NotFound, "{be}: {e:?}");
        let e = c
            .update_budget(proto::UpdateBudgetRequest {
                budget: Some(budget("nobody", "1")),
            })
            .await
            .unwrap_err();
        assert_eq!(e.code(), Code::NotFound);
        let e = c
            .get_budget_status(proto::GetBudgetStatusRequest {
                name: "nobody".into(),
                at: None,
            })
            .await
            .unwrap_err();
        assert_eq!(e.code(), Code::NotFound);
        let e = c
            .delete_budget(proto::DeleteBudgetRequest::default())
            .await
            .unwrap_err();
        assert_eq!(
            (e.code(), e.message()),
            (Code::InvalidArgument, "name: required")
        );
        server.stop().await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_is_invalid_argument_naming_the_field() {
    type Edit = fn(&mut proto::Budget);
    let cases: Vec<(&str, Edit)> = vec![
        ("budget.thresholds[0].percent", |b| {
            b.thresholds[0].percent = "0".into()
        }),
        ("budget.thresholds[1].percent", |b| {
            b.thresholds[1].percent = "-10".into()
        }),
        ("budget.thresholds[0].amount", |b| {
            b.thresholds[0] = proto::Threshold {
                amount: "0".into(),
                ..Default::default()
            }
        }),
        ("budget.thresholds[0]", |b| {
            b.thresholds[0].amount = "100".into()
        }),
        ("budget.amount.currency", |b| {
            b.amount.as_mut().unwrap().currency = "USX".into()
        }),
        ("budget.amount.amount", |b| {
            b.amount.as_mut().unwrap().amount = "0".into()
        }),
        ("budget.emails[0]", |b| {
            b.emails[0] = "finops-at-example.com".into()
        }),
        ("budget.emails[1]", |b| b.emails.push("a@b".into())),
        ("budget.slack_webhooks[0]", |b| {
            b.slack_webhooks[0] = "hooks.slack.com/services/x".into()
        }),
        ("budget.slack_webhooks[0]", |b| {
            b.slack_webhooks[0] = "ftp://hooks.slack.com/services/x".into()
        }),
        ("budget.timezone", |b| b.timezone = "Europe/Atlantis".into()),
        ("budget.name", |b| b.name = "a/b".into()),
        ("budget.scope.tag", |b| {
            b.scope.as_mut().unwrap().tag = "team".into()
        }),
    ];
    for db in common::both_backends().await {
        let server = common::TestServer::start(common::test_config(&db)).await;
        let mut c = server.budgets().await;
        for (field, edit) in &cases {
            let mut b = budget("team-a", "1000");
            edit(&mut b);
            let e = create(&mut c, b.clone()).await.unwrap_err();
            assert_eq!(e.code(), Code::InvalidArgument, "{field}: {e:?}");
            assert!(
                e.message().starts_with(&format!("{field}:")),
                "{}: expected {field}, got {:?}",
                db.backend,
                e.message()
            );
            assert!(!e.message().contains("SECRET"), "{}", e.message());
        }
        let e = create(&mut c, proto::Budget::default()).await.unwrap_err();
        assert_eq!(e.code(), Code::InvalidArgument);
        let e = c
            .create_budget(proto::CreateBudgetRequest { budget: None })
            .await
            .unwrap_err();
        assert_eq!(
            (e.code(), e.message()),
            (Code::InvalidArgument, "budget: required")
        );

        // A duplicate name.
        create(&mut c, budget("team-a", "1000")).await.unwrap();
        let e = create(&mut c, budget("team-a", "2000")).await.unwrap_err();
        assert_eq!(e.code(), Code::InvalidArgument);
        assert!(e.message().starts_with("budget.name:"), "{}", e.message());
        assert!(e.message().contains("already exists"), "{}", e.message());
        // Update validates too, before looking the name up.
        let mut bad = budget("team-a", "1000");
        bad.thresholds[0].percent = "0".into();
        let e = c
            .update_budget(proto::UpdateBudgetRequest { budget: Some(bad) })
            .await
            .unwrap_err();
        assert!(e.message().starts_with("budget.thresholds[0].percent:"));
        // Nothing invalid was stored.
        assert_eq!(list(&mut c).await.len(), 1, "{}", db.backend);
        server.stop().await.unwrap();
    }
}

fn config_budget(name: &str, amount: &str, secret: &str) -> Budget {
    let mut b = Budget::new(name, dec(amount), "USD");
    b.thresholds = vec![Threshold::percent(dec("90"), ThresholdOn::Actual)];
    b.channels.slack_webhooks = vec![hook(secret)];
    b
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn config_budgets_win_and_cannot_be_changed_through_the_api() {
    for db in common::both_backends().await {
        let be = db.backend;
        // First run: no config budgets; the API creates "shared" and "mine".
        let server = common::TestServer::start(common::test_config(&db)).await;
        let mut c = server.budgets().await;
        create(&mut c, budget("shared", "100")).await.unwrap();
        create(&mut c, budget("mine", "200")).await.unwrap();
        server.stop().await.unwrap();

        // Second run: the file declares "shared" and "ops".
        let mut cfg = common::test_config(&db);
        cfg.budgets = vec![
            config_budget("shared", "5000", "CFGSECRET1"),
            config_budget("ops", "300", "CFGSECRET2"),
        ];
        let server = common::TestServer::start(cfg.clone()).await;
        let mut c = server.budgets().await;
        let all = list(&mut c).await;
        assert_eq!(
            all.keys().collect::<Vec<_>>(),
            ["mine", "ops", "shared"],
            "{be}"
        );
        assert_eq!(all["shared"].origin, "config", "{be}");
        assert_eq!(
            all["shared"].amount.as_ref().unwrap().amount,
            "5000",
            "the file wins"
        );
        assert_eq!(all["shared"].thresholds.len(), 1);
        assert_eq!(all["ops"].origin, "config");
        assert_eq!(all["mine"].origin, "api");
        assert!(!format!("{all:?}").contains("CFGSECRET"));

        let e = c
            .delete_budget(proto::DeleteBudgetRequest {
                name: "shared".into(),
            })
            .await
            .unwrap_err();
        assert_eq!(e.code(), Code::FailedPrecondition, "{be}: {e:?}");
        assert!(e.message().contains("config file"), "{}", e.message());
        let e = c
            .update_budget(proto::UpdateBudgetRequest {
                budget: Some(budget("ops", "1")),
            })
            .await
            .unwrap_err();
        assert_eq!(e.code(), Code::FailedPrecondition);
        let e = create(&mut c, budget("ops", "1")).await.unwrap_err();
        assert_eq!(e.code(), Code::InvalidArgument);
        assert!(e.message().starts_with("budget.name:"), "{}", e.message());
        assert_eq!(
            list(&mut c).await["ops"].amount.as_ref().unwrap().amount,
            "300",
            "unchanged"
        );
        // API budgets stay editable.
        c.update_budget(proto::UpdateBudgetRequest {
            budget: Some(budget("mine", "250")),
        })
        .await
        .unwrap();
        server.stop().await.unwrap();

        // Third run: the file no longer names "ops": it goes; "shared" stays the file's.
        cfg.budgets.truncate(1);
        let server = common::TestServer::start(cfg).await;
        let mut c = server.budgets().await;
        let all = list(&mut c).await;
        assert_eq!(all.keys().collect::<Vec<_>>(), ["mine", "shared"], "{be}");
        assert_eq!(all["mine"].amount.as_ref().unwrap().amount, "250");
        assert_eq!(all["shared"].origin, "config");
        server.stop().await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_config_budget_stops_the_server_naming_the_field() {
    let db = common::fresh_sqlite();
    let mut cfg = common::test_config(&db);
    let mut bad = config_budget("x", "10", "S");
    bad.thresholds
        .push(Threshold::percent(Decimal::ZERO, ThresholdOn::Forecast));
    cfg.budgets = vec![bad];
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let e = bursar::server::run(cfg.clone(), listener, async {})
        .await
        .unwrap_err();
    assert!(e.is_configuration());
    assert!(
        e.to_string().contains("budgets[0].thresholds[1].percent"),
        "{e}"
    );
    cfg.budgets = vec![config_budget("x", "10", "S"), config_budget("x", "20", "S")];
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let e = bursar::server::run(cfg, listener, async {})
        .await
        .unwrap_err();
    assert!(e.to_string().contains("budgets[1].name"), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhook_secrets_are_never_returned_or_logged() {
    let logs = captured_logs();
    for db in common::both_backends().await {
        let mut cfg = common::test_config(&db);
        cfg.budgets = vec![config_budget("from-file", "50", "FILESECRET/XYZ")];
        let server = common::TestServer::start(cfg).await;
        let mut c = server.budgets().await;
        let created = create(&mut c, budget("from-api", "5000")).await.unwrap();
        let updated = c
            .update_budget(proto::UpdateBudgetRequest {
                budget: Some(budget("from-api", "6000")),
            })
            .await
            .unwrap()
            .into_inner();
        let listed = c
            .list_budgets(proto::ListBudgetsRequest {})
            .await
            .unwrap()
            .into_inner();
        let status = c
            .get_budget_status(proto::GetBudgetStatusRequest::default())
            .await
            .unwrap()
            .into_inner();
        assert_eq!(listed.budgets.len(), 2);
        assert_eq!(status.statuses.len(), 2);
        let json: Vec<serde_json::Value> = listed
            .budgets
            .iter()
            .map(bursar::cli::budgets::budget_json)
            .collect();
        let everything = format!(
            "{created:?} {updated:?} {listed:?} {status:?} {}",
            serde_json::to_string(&json).unwrap()
        );
        for secret in [SECRET, "FILESECRET", "/services/", "xoxb"] {
            assert!(
                !everything.contains(secret),
                "{}: {secret} in {everything}",
                db.backend
            );
        }
        assert!(everything.contains("https://hooks.slack.com/…"));
        // The stored definition keeps the real URL (alerts need it).
        let store = Store::open(&db.url).await.unwrap();
        let row = store.get_budget("from-api").await.unwrap().unwrap();
        assert!(serde_json::to_string(&row.budget).unwrap().contains(SECRET));
        store.close().await;
        server.stop().await.unwrap();
    }
    let text = String::from_utf8_lossy(&logs.lock().unwrap()).to_string();
    assert!(text.contains("budget created"), "logs are captured: {text}");
    for secret in ["SECRET", "/services/"] {
        assert!(!text.contains(secret), "{secret} logged:\n{text}");
    }
}

/// Billed (or effective) totals per group from SpendService for one month.
async fn month_spend(
    server: &common::TestServer,
    group_by: &str,
    effective: bool,
) -> BTreeMap<String, Decimal> {
    let mut s = proto::spend_service_client::SpendServiceClient::new(server.channel().await);
    let r = s
        .get_spend(proto::GetSpendRequest {
            start: ts("2018-11-01T00:00:00Z"),
            end: ts("2018-12-01T00:00:00Z"),
            granularity: proto::Granularity::Month as i32,
            group_by: group_by.into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let mut out = BTreeMap::new();
    for b in r.buckets {
        let m = if effective {
            b.effective_cost
        } else {
            b.billed_cost
        };
        *out.entry(b.group).or_insert(Decimal::ZERO) += dec(&m.unwrap().amount);
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_on_a_real_cur_month_is_the_exact_spend() {
    let native: serde_json::Value =
        serde_json::from_str(&common::read_shared("native-billing/expected_totals.json")).unwrap();
    let nov = &native["files"]["aws/Nov2018-WorkshopCUR-00001.snappy.parquet"];
    let unblended = dec(nov["line_item_unblended_cost_sum"].as_str().unwrap());
    for db in common::both_backends().await {
        let be = db.backend;
        let store = Store::open(&db.url).await.unwrap();
        ingest_file(
            &store,
            &common::shared("native-billing/aws/Nov2018-WorkshopCUR-00001.snappy.parquet"),
            None,
            false,
        )
        .await
        .unwrap();
        store.close().await;
        let server = common::TestServer::start(common::test_config(&db)).await;
        let billed = month_spend(&server, "", false).await;
        let effective = month_spend(&server, "", true).await;
        assert_eq!(
            billed[""], unblended,
            "{be}: the month's spend is the file's total"
        );
        let by_service = month_spend(&server, "service", false).await;
        let (top_service, top_amount) = by_service
            .iter()
            .max_by_key(|(_, v)| **v)
            .map(|(k, v)| (k.clone(), *v))
            .unwrap();
        let by_provider = month_spend(&server, "provider", false).await;
        assert_eq!(by_provider.len(), 1, "{by_provider:?}");
        let provider = by_provider.keys().next().unwrap().clone();

        let mut c = server.budgets().await;
        let mut all = budget("all", "5000");
        all.timezone = "UTC".into();
        all.scope = None;
        all.thresholds = vec![
            proto::Threshold {
                percent: "50".into(),
                ..Default::default()
            },
            proto::Threshold {
                amount: "4000".into(),
                ..Default::default()
            },
        ];
        create(&mut c, all.clone()).await.unwrap();
        let mut eff = all.clone();
        eff.name = "all-effective".into();
        eff.basis = proto::CostBasis::Effective as i32;
        create(&mut c, eff).await.unwrap();
        let mut svc = all.clone();
        svc.name = "top-service".into();
        svc.scope = Some(proto::BudgetScope {
            provider: provider.clone(),
            service: top_service.clone(),
            ..Default::default()
        });
        create(&mut c, svc).await.unwrap();
        let mut eur = all.clone();
        eur.name = "eur".into();
        eur.amount.as_mut().unwrap().currency = "EUR".into();
        create(&mut c, eur).await.unwrap();

        // The last second of November 2018 (UTC).
        let at = ts("2018-11-30T23:59:59Z");
        let st: BTreeMap<String, proto::BudgetStatus> = c
            .get_budget_status(proto::GetBudgetStatusRequest {
                name: String::new(),
                at,
            })
            .await
            .unwrap()
            .into_inner()
            .statuses
            .into_iter()
            .map(|s| (s.name.clone(), s))
            .collect();
        let actual = |n: &str| dec(&st[n].actual.as_ref().unwrap().amount);
        assert_eq!(actual("all"), unblended, "{be}");
        assert_eq!(actual("all-effective"), effective[""], "{be}");
        assert_eq!(actual("top-service"), top_amount, "{be}: {top_service}");
        assert_eq!(actual("eur"), Decimal::ZERO, "{be}: currencies never mix");
        let s = &st["all"];
        assert_eq!(s.period, "2018-11");
        assert_eq!(s.period_start, ts("2018-11-01T00:00:00Z"));
        assert_eq!(s.period_end, ts("2018-12-01T00:00:00Z"));
        assert_eq!(s.evaluated_at, at);
        assert_eq!(s.actual.as_ref().unwrap().currency, "USD");
        assert_eq!(
            dec(&s.remaining.as_ref().unwrap().amount),
            dec("5000") - unblended
        );
        assert!(dec(&s.forecast.as_ref().unwrap().amount) >= unblended);
        assert!(dec(&s.run_rate.as_ref().unwrap().amount) > Decimal::ZERO);
        let th: Vec<(&str, &str, bool)> = s
            .thresholds
            .iter()
            .map(|t| (t.key.as_str(), t.limit.as_str(), t.crossed))
            .collect();
        assert_eq!(
            th,
            vec![("actual:50%", "2500", true), ("actual:4000", "4000", false)],
            "{be}"
        );
        // GetStatus fires nothing.
        assert!(s.thresholds.iter().all(|t| t.fired_at.is_none()));
        // Mid-month only counts the spend charged before `at`.
        let mid = c
            .get_budget_status(proto::GetBudgetStatusRequest {
                name: "all".into(),
                at: ts("2018-11-15T00:00:00Z"),
            })
            .await
            .unwrap()
            .into_inner();
        let mid_actual = dec(&mid.statuses[0].actual.as_ref().unwrap().amount);
        assert!(
            mid_actual > Decimal::ZERO && mid_actual < unblended,
            "{be}: {mid_actual}"
        );
        server.stop().await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deny_budget_created_through_the_api_gates_select_provider_at_once() {
    for db in common::both_backends().await {
        a_deny_budget_gates_select_provider_at_once_on(&db).await;
    }
}

async fn a_deny_budget_gates_select_provider_at_once_on(db: &common::TestDb) {
    let be = db.backend;
    let server = common::TestServer::start(common::test_config(db)).await;
    let mut c = server.budgets().await;
    let mut p =
        proto::placement_service_client::PlacementServiceClient::new(server.channel().await);
    let request = |team: &str| proto::SelectProviderRequest {
        resources: Some(proto::Resources {
            min_vcpus: 2,
            ..Default::default()
        }),
        expected_hours: 10.0,
        labels: [("team".to_string(), team.to_string())].into(),
        ..Default::default()
    };
    p.select_provider(request("ml")).await.unwrap();
    let mut tight = budget("ml-cap", "0.01");
    tight.gate = proto::GatePolicy::GateDeny as i32;
    create(&mut c, tight).await.unwrap();
    // Create re-evaluates, so the very next request sees the budget.
    let e = p.select_provider(request("ml")).await.unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition, "{be}: {e:?}");
    assert!(e.message().contains("ml-cap"), "{be}: {}", e.message());
    // Other teams are outside the budget's scope.
    p.select_provider(request("web")).await.unwrap();
    c.delete_budget(proto::DeleteBudgetRequest {
        name: "ml-cap".into(),
    })
    .await
    .unwrap();
    p.select_provider(request("ml")).await.unwrap();

    // A warn budget scoped to one provider flags only that provider's placements.
    let mut gcp = budget("gcp-warn", "0.01");
    gcp.scope = Some(proto::BudgetScope {
        provider: "gcp".into(),
        tag: "team=ml".into(),
        ..Default::default()
    });
    create(&mut c, gcp).await.unwrap();
    let mut wide = request("ml");
    wide.top_k = 50;
    let resp = p.select_provider(wide).await.unwrap().into_inner();
    let is_gcp = |pl: &proto::Placement| pl.provider == proto::Provider::Gcp as i32;
    assert!(
        resp.placements.iter().any(|pl| !is_gcp(pl)),
        "{be}: {resp:?}"
    );
    for pl in &resp.placements {
        if is_gcp(pl) {
            assert_eq!(pl.over_budget, vec!["gcp-warn".to_string()], "{be}: {pl:?}");
        } else {
            assert!(pl.over_budget.is_empty(), "{be}: {pl:?}");
        }
    }
    if resp.placements.iter().any(is_gcp) {
        assert_eq!(resp.budgets.len(), 1);
        assert_eq!(resp.budgets[0].budget, "gcp-warn");
        assert_eq!(resp.budgets[0].policy, "warn");
    }
    server.stop().await.unwrap();
}

/// A FOCUS export (the spec's usage example, its columns and shape) with one usage line of
/// `billed` USD charged in the last few minutes, so it lands in every budget's current period.
fn focus_export_charged_now(billed: &str) -> String {
    let sample = common::read_shared(
        "focus-sample/spec-examples/commitment_discount_scenarios/commitment_discount_usage_scenario_1.csv",
    );
    let header = sample.lines().next().unwrap();
    let now = chrono::Utc::now();
    let month_start = bursar::store::billing::month_start(now);
    let start = (now - chrono::Duration::minutes(10)).max(month_start);
    let end = start + chrono::Duration::minutes(5);
    let next_month = month_start + chrono::Months::new(1);
    let t = |t: chrono::DateTime<chrono::Utc>| t.format("%Y-%m-%dT%H:%M:%SZ").to_string();
    let row = [
        t(month_start),
        t(next_month),
        t(start),
        t(end),
        "Usage".into(),
        "Usage-Based".into(),
        "Standard".into(),
        "i-gate-test".into(),
        billed.into(),
        billed.into(),
        "1.00".into(),
        "Hour".into(),
        String::new(),
        String::new(),
        String::new(),
        String::new(),
    ];
    assert_eq!(header.split(',').count(), row.len(), "{header}");
    format!("{header}\n{}\n", row.join(","))
}

/// What the gate's freshness rests on: every committed ingest and every budget write moves
/// `spend_generation`; an engine re-evaluates once per move and not otherwise.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spend_generation_moves_with_ingests_and_budget_writes_only() {
    use bursar::tasks::budgets::BudgetEngine;
    let dir = tempfile::tempdir().unwrap();
    let export = dir.path().join("focus-now.csv");
    std::fs::write(&export, focus_export_charged_now("12.50")).unwrap();
    for db in common::both_backends().await {
        let be = db.backend;
        let store = Store::open(&db.url).await.unwrap();
        let engine = BudgetEngine::new(store.clone(), bursar::notify::AlertsConfig::default(), 7);
        let g0 = store.spend_generation().await.unwrap();
        assert!(
            engine
                .evaluate_if_changed(chrono::Utc::now())
                .await
                .unwrap()
                .is_some(),
            "{be}: first time"
        );
        assert!(
            engine
                .evaluate_if_changed(chrono::Utc::now())
                .await
                .unwrap()
                .is_none(),
            "{be}: nothing moved"
        );
        assert_eq!(
            store.spend_generation().await.unwrap(),
            g0,
            "{be}: evaluating moves nothing"
        );

        let mut b = Budget::new("cap", dec("20"), "USD");
        b.thresholds = vec![Threshold::amount(dec("10"), ThresholdOn::Actual)];
        assert!(store.create_budget(&b, BudgetOrigin::Api).await.unwrap());
        let g1 = store.spend_generation().await.unwrap();
        assert!(g1 > g0, "{be}: a created budget moves it");
        let ev = engine
            .evaluate_if_changed(chrono::Utc::now())
            .await
            .unwrap()
            .expect("moved");
        assert_eq!(ev[0].status.actual, Decimal::ZERO, "{be}");

        ingest_file(&store, &export, None, false).await.unwrap();
        let g2 = store.spend_generation().await.unwrap();
        assert!(g2 > g1, "{be}: a committed ingest moves it");
        let ev = engine
            .evaluate_if_changed(chrono::Utc::now())
            .await
            .unwrap()
            .expect("moved");
        assert_eq!(ev[0].status.actual, dec("12.50"), "{be}");
        // The evaluation it triggered fired the crossed threshold, and moved nothing.
        assert_eq!(
            store.list_fired_alerts("cap").await.unwrap().len(),
            1,
            "{be}"
        );
        assert!(
            engine
                .evaluate_if_changed(chrono::Utc::now())
                .await
                .unwrap()
                .is_none(),
            "{be}"
        );

        // A failed ingest commits no lines and moves nothing.
        let bad = dir.path().join(format!("bad-{be}.csv"));
        std::fs::write(&bad, "not,a,billing,export\n1,2,3,4\n").unwrap();
        assert!(
            ingest_file(&store, &bad, None, false).await.is_err(),
            "{be}"
        );
        assert_eq!(
            store.spend_generation().await.unwrap(),
            g2,
            "{be}: a failed ingest"
        );

        assert!(store.update_budget(&b, BudgetOrigin::Api).await.unwrap());
        let g3 = store.spend_generation().await.unwrap();
        assert!(g3 > g2, "{be}: an updated budget moves it");
        assert!(store.delete_budget("cap").await.unwrap());
        assert!(
            store.spend_generation().await.unwrap() > g3,
            "{be}: a deleted budget moves it"
        );
        let ev = engine
            .evaluate_if_changed(chrono::Utc::now())
            .await
            .unwrap()
            .expect("moved");
        assert!(ev.is_empty(), "{be}");
        store.close().await;
    }
}

/// Issue 17 item 2: `bursar ingest` runs in its own process, yet the server's gate sees the
/// spend within seconds (it polls `spend_generation` every `budget_evaluation.poll`, 1 s by
/// default) instead of at its next scheduled evaluation (`every`, 5 minutes).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cli_ingest_that_crosses_a_deny_budget_fails_the_next_select_provider_within_2s() {
    use bursar::domain::budget::GatePolicy;
    let dir = tempfile::tempdir().unwrap();
    let export = dir.path().join("focus-now.csv");
    std::fs::write(&export, focus_export_charged_now("35100.00")).unwrap();
    for db in common::both_backends().await {
        let be = db.backend;
        let mut cfg = common::test_config(&db);
        let mut cap = Budget::new("cap", dec("20000"), "USD");
        cap.gate = GatePolicy::Deny;
        cfg.budgets = vec![cap];
        assert_eq!(
            cfg.budget_evaluation.every,
            std::time::Duration::from_secs(300),
            "the scheduled evaluation is minutes away"
        );
        let server = common::TestServer::start(cfg).await;
        let mut p =
            proto::placement_service_client::PlacementServiceClient::new(server.channel().await);
        let request = proto::SelectProviderRequest {
            resources: Some(proto::Resources {
                min_vcpus: 2,
                ..Default::default()
            }),
            expected_hours: 1.0,
            ..Default::default()
        };
        p.select_provider(request.clone())
            .await
            .unwrap_or_else(|e| panic!("{be}: nothing spent yet: {e:?}"));

        let args = vec![
            "ingest".to_string(),
            export.display().to_string(),
            "--quiet".into(),
            "--database-url".into(),
            db.url.clone(),
        ];
        let o = tokio::task::spawn_blocking(move || bursar(args))
            .await
            .unwrap();
        assert!(o.status.success(), "{be}: {}", out(&o));
        let ingested = std::time::Instant::now();
        let deadline = ingested + std::time::Duration::from_secs(2);
        let refused = loop {
            match p.select_provider(request.clone()).await {
                Err(e) => break e,
                Ok(_) if std::time::Instant::now() < deadline => {
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await
                }
                Ok(_) => panic!("{be}: the gate still lets jobs through 2 s after the ingest"),
            }
        };
        assert_eq!(
            refused.code(),
            Code::FailedPrecondition,
            "{be}: {refused:?}"
        );
        assert!(
            refused.message().contains("\"cap\"") && refused.message().contains("spent 35100"),
            "{be}: {}",
            refused.message()
        );
        server.stop().await.unwrap();
    }
}

// ---------------------------------------------------------------------------------------
// CLI

fn bursar(args: Vec<String>) -> Output {
    Command::new(env!("CARGO_BIN_EXE_bursar"))
        .args(&args)
        .env_remove("BURSAR_DATABASE_URL")
        .env_remove("BURSAR_CONFIG")
        .env_remove("BURSAR_SERVER")
        .output()
        .expect("run bursar")
}

async fn run_cli(server: &common::TestServer, args: &[&str]) -> Output {
    let mut v: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    v.extend(["--server".to_string(), server.url.clone()]);
    tokio::task::spawn_blocking(move || bursar(v))
        .await
        .unwrap()
}

fn out(o: &Output) -> String {
    format!(
        "status {:?}\nstdout:\n{}\nstderr:\n{}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// Issue 17 item 3: a `warn` budget's notice and each placement's `over_budget` reach the
/// user of `bursar select`, in the table and in `--json` (they used to be dropped).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn select_cli_shows_warn_budget_notices_and_over_budget_placements() {
    for db in common::both_backends().await {
        let be = db.backend;
        let server = common::TestServer::start(common::test_config(&db)).await;
        let mut c = server.budgets().await;
        create(&mut c, budget("ml-warn", "0.01")).await.unwrap();
        let select = [
            "select", "--cpus", "2", "--hours", "10", "--label", "team=ml",
        ];
        let o = run_cli(&server, &select).await;
        assert!(o.status.success(), "{be}: {}", out(&o));
        let text = String::from_utf8_lossy(&o.stdout);
        assert!(
            text.contains("budget \"ml-warn\" (warn): spent 0.00 of 0.01 USD"),
            "{be}: {}",
            out(&o)
        );
        let rows: Vec<&str> = text
            .lines()
            .skip(1)
            .take_while(|l| !l.starts_with("why:"))
            .collect();
        assert!(!rows.is_empty(), "{be}: {}", out(&o));
        assert!(
            rows.iter().all(|l| l.contains("over budget ml-warn")),
            "{be}: every placement costs more than 0.01: {}",
            out(&o)
        );

        let mut json = select.to_vec();
        json.push("--json");
        let o = run_cli(&server, &json).await;
        assert!(o.status.success(), "{be}: {}", out(&o));
        let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        assert_eq!(v["budgets"][0]["budget"], "ml-warn", "{be}: {v}");
        assert_eq!(v["budgets"][0]["policy"], "warn", "{be}");
        assert_eq!(v["budgets"][0]["amount"], "0.01", "{be}");
        assert_eq!(v["budgets"][0]["currency"], "USD", "{be}");
        let placements = v["placements"].as_array().unwrap();
        assert!(!placements.is_empty());
        for p in placements {
            assert_eq!(
                p["over_budget"],
                serde_json::json!(["ml-warn"]),
                "{be}: {p}"
            );
        }

        // Outside the budget's scope: no notice, no flag.
        let o = run_cli(
            &server,
            &["select", "--cpus", "2", "--hours", "10", "--json"],
        )
        .await;
        assert!(o.status.success(), "{be}: {}", out(&o));
        let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        assert_eq!(v["budgets"], serde_json::json!([]), "{be}");
        assert_eq!(
            v["placements"][0]["over_budget"],
            serde_json::json!([]),
            "{be}"
        );
        server.stop().await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_create_list_status_update_delete_and_exit_codes() {
    let db = common::fresh_sqlite();
    let server = common::TestServer::start(common::test_config(&db)).await;
    let slack = hook("CLISECRET/ABC");
    let o = run_cli(
        &server,
        &[
            "budgets",
            "create",
            "--name",
            "ml",
            "--amount",
            "5000",
            "--period",
            "quarterly",
            "--threshold",
            "80%",
            "--threshold",
            "forecast:100%",
            "--threshold",
            "4500",
            "--email",
            "finops@example.com",
            "--slack",
            &slack,
            "--provider",
            "aws",
            "--tag",
            "team=ml",
            "--timezone",
            "Europe/Berlin",
            "--gate",
            "deny",
            "--exclude-tax",
        ],
    )
    .await;
    assert_eq!(o.status.code(), Some(0), "{}", out(&o));
    let text = String::from_utf8_lossy(&o.stdout).to_string();
    assert!(text.contains("created budget \"ml\""), "{text}");
    assert!(!text.contains("CLISECRET"), "{text}");

    let o = run_cli(&server, &["budgets", "list", "--json"]).await;
    assert_eq!(o.status.code(), Some(0), "{}", out(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let b = &v["budgets"][0];
    assert_eq!(b["name"], "ml");
    assert_eq!(b["origin"], "api");
    assert_eq!(b["amount"]["amount"], "5000");
    assert_eq!(b["amount"]["currency"], "USD");
    assert_eq!(b["period"], "quarterly");
    assert_eq!(b["gate"], "deny");
    assert_eq!(b["include_tax"], false);
    assert_eq!(b["include_credits"], true);
    assert_eq!(b["scope"]["tag"], "team=ml");
    assert_eq!(b["scope"]["provider"], "aws");
    assert_eq!(b["timezone"], "Europe/Berlin");
    assert_eq!(b["thresholds"][0]["percent"], "80");
    assert_eq!(b["thresholds"][1]["on"], "forecast");
    assert_eq!(b["thresholds"][2]["amount"], "4500");
    assert_eq!(b["slack_webhooks"][0], "https://hooks.slack.com/…");
    assert!(!String::from_utf8_lossy(&o.stdout).contains("CLISECRET"));

    let o = run_cli(&server, &["budgets", "list"]).await;
    let text = String::from_utf8_lossy(&o.stdout).to_string();
    assert!(text.starts_with("NAME"), "{text}");
    assert!(text.contains("80%, forecast:100%, 4500"), "{text}");

    let o = run_cli(&server, &["budgets", "status", "ml", "--json"]).await;
    assert_eq!(o.status.code(), Some(0), "{}", out(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["statuses"][0]["actual"]["amount"], "0");
    assert_eq!(v["statuses"][0]["thresholds"][0]["key"], "actual:80%");
    let o = run_cli(&server, &["budgets", "status", "--at", "2018-11-15"]).await;
    assert_eq!(o.status.code(), Some(0), "{}", out(&o));
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("2018-Q4"),
        "{}",
        out(&o)
    );

    // Bad input: the server's INVALID_ARGUMENT exits 2 naming the field; so do bad flags.
    for (args, needle) in [
        (
            vec![
                "budgets",
                "create",
                "--name",
                "x",
                "--amount",
                "10",
                "--threshold",
                "0%",
            ],
            "budget.thresholds[0].percent",
        ),
        (
            vec![
                "budgets",
                "create",
                "--name",
                "x",
                "--amount",
                "10",
                "--currency",
                "USX",
            ],
            "budget.amount.currency",
        ),
        (
            vec![
                "budgets", "create", "--name", "x", "--amount", "10", "--email", "nobody",
            ],
            "budget.emails[0]",
        ),
        (
            vec![
                "budgets",
                "create",
                "--name",
                "x",
                "--amount",
                "10",
                "--slack",
                "not a url",
            ],
            "budget.slack_webhooks[0]",
        ),
        (
            vec![
                "budgets",
                "create",
                "--name",
                "x",
                "--amount",
                "10",
                "--timezone",
                "Nowhere/Land",
            ],
            "budget.timezone",
        ),
        (
            vec!["budgets", "create", "--name", "ml", "--amount", "10"],
            "budget.name",
        ),
        (
            vec!["budgets", "create", "--name", "x", "--amount", "ten"],
            "--amount",
        ),
        (
            vec![
                "budgets",
                "create",
                "--name",
                "x",
                "--amount",
                "10",
                "--threshold",
                "eighty",
            ],
            "--threshold",
        ),
        (
            vec![
                "budgets", "create", "--name", "x", "--amount", "10", "--gate", "maybe",
            ],
            "--gate",
        ),
        (vec!["budgets", "status", "--at", "yesterday"], "--at"),
    ] {
        let o = run_cli(&server, &args).await;
        assert_eq!(o.status.code(), Some(2), "{args:?}: {}", out(&o));
        assert!(
            String::from_utf8_lossy(&o.stderr).contains(needle),
            "{args:?}: {}",
            out(&o)
        );
    }
    // NOT_FOUND exits 1.
    let o = run_cli(&server, &["budgets", "delete", "nobody"]).await;
    assert_eq!(o.status.code(), Some(1), "{}", out(&o));
    let o = run_cli(&server, &["budgets", "status", "nobody"]).await;
    assert_eq!(o.status.code(), Some(1), "{}", out(&o));

    let o = run_cli(
        &server,
        &[
            "budgets", "update", "--name", "ml", "--amount", "6000", "--json",
        ],
    )
    .await;
    assert_eq!(o.status.code(), Some(0), "{}", out(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["amount"]["amount"], "6000");
    assert_eq!(
        v["period"], "monthly",
        "update replaces the whole definition"
    );

    let o = run_cli(&server, &["budgets", "delete", "ml"]).await;
    assert_eq!(o.status.code(), Some(0), "{}", out(&o));
    let o = run_cli(&server, &["budgets", "list", "--json"]).await;
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["budgets"].as_array().unwrap().len(), 0);
    server.stop().await.unwrap();

    // An unreachable server exits 1.
    let o = tokio::task::spawn_blocking(|| {
        bursar(
            ["budgets", "list", "--server", "http://127.0.0.1:1"]
                .iter()
                .map(|s| s.to_string())
                .collect(),
        )
    })
    .await
    .unwrap();
    assert_eq!(o.status.code(), Some(1), "{}", out(&o));
}
