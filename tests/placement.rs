//! SelectProvider: worked examples on the real SkyPilot catalog (hand-checked numbers), and
//! the gRPC service on both backends — validation, FAILED_PRECONDITION, operator marks,
//! the decision log, and the `bursar select` CLI.
mod common;

use std::time::Duration;

use bursar::clouds::skypilot::{ImportOptions, load_catalog_dir};
use bursar::domain::Catalog;
use bursar::domain::money::units_to_decimal;
use bursar::domain::placement::{Conditions, CostModel, DataItem, PlacementRequest};
use bursar::domain::{Market, Provider};
use bursar::proto;
use bursar::proto::placement_service_client::PlacementServiceClient;
use rust_decimal::Decimal;
use tonic::Code;

type LogRow = (
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
);

fn dec(s: &str) -> Decimal {
    s.parse().unwrap()
}

/// The exact amount of a Money field of an answer.
fn amount(m: &Option<proto::Money>) -> Decimal {
    dec(&m.as_ref().expect("amount present").amount)
}

fn real_catalog() -> Catalog {
    let opts = ImportOptions {
        observed_at: Some(chrono::Utc::now()),
        ..Default::default()
    };
    let (offers, _) = load_catalog_dir(&common::shared("skypilot-catalog"), &opts).unwrap();
    Catalog::new(offers, vec![])
}

fn a100x8(hours_milli: i64, data: DataItem) -> PlacementRequest {
    PlacementRequest {
        accelerators: vec!["A100".into()],
        accelerator_count: 8,
        hours_milli,
        inputs: vec![data],
        top_k: 3,
        ..Default::default()
    }
}

fn cond() -> Conditions<'static> {
    Conditions {
        now: chrono::Utc::now(),
        failing: [false; 3],
        marks: &[],
    }
}

fn data(provider: Provider, region: &str, gb: i64) -> DataItem {
    DataItem {
        label: "input[0]".into(),
        provider,
        region: region.into(),
        gb_milli: gb * 1000,
    }
}

/// Hand check (../shared/data/skypilot-catalog):
/// - aws/vms.csv: p4d.24xlarge us-east-1 Price 21.957642 → 2 h = 43.915284, data local.
/// - us-east-2 / us-west-2 p4d 21.95764 → 43.91528 + 2,000 GB × $0.02 inter-region = 83.91528.
/// - Best outside AWS pays AWS internet egress 2,000 GB × $0.09 = $180 on top of compute.
#[test]
fn worked_example_2tb_in_s3_us_east_1_a100x8_for_2_hours() {
    let cat = real_catalog();
    let model = CostModel::default();
    let req = a100x8(2000, data(Provider::Aws, "us-east-1", 2000));
    let d = cat.placement().select(&req, &model, &cond()).unwrap();
    let best = &cat.offers()[d.choices[0].offer];
    assert_eq!(
        (
            best.key.provider,
            best.key.region.as_str(),
            best.key.instance_type.as_str()
        ),
        (Provider::Aws, "us-east-1", "p4d.24xlarge")
    );
    assert_eq!(units_to_decimal(d.choices[0].total), dec("43.915284"));
    assert_eq!(units_to_decimal(d.choices[1].total), dec("83.91528"));
    assert_eq!(units_to_decimal(d.choices[1].egress_total), dec("40"));

    let elsewhere = PlacementRequest {
        denied_providers: vec![Provider::Aws],
        ..req
    };
    let e = cat.placement().select(&elsewhere, &model, &cond()).unwrap();
    let alt = &e.choices[0];
    let o = &cat.offers()[alt.offer];
    println!(
        "best outside AWS: {} {} {} {} at {}",
        o.key.provider,
        o.key.region,
        o.key.zone,
        o.key.instance_type,
        units_to_decimal(alt.total)
    );
    assert_eq!(units_to_decimal(alt.egress_total), dec("180"));
    assert_eq!(units_to_decimal(alt.compute), o.price_per_hour * dec("2"));
    assert_eq!(
        units_to_decimal(alt.total),
        o.price_per_hour * dec("2") + dec("180")
    );
}

/// Hand check: gcp/vms.csv a2-highgpu-8g europe-west4-a host 6.51251 + A100×8 row 12.90919
/// = 19.4217/h → 2 h = 38.8434, data local. The best AWS offer pays GCP internet egress
/// 1,024 GB × $0.12 + 976 GB × $0.11 = $230.24 on top of p4d's 2 h compute.
#[test]
fn worked_example_2tb_in_gcs_europe_west4() {
    let cat = real_catalog();
    let model = CostModel::default();
    let req = a100x8(2000, data(Provider::Gcp, "europe-west4", 2000));
    let d = cat.placement().select(&req, &model, &cond()).unwrap();
    let best = &cat.offers()[d.choices[0].offer];
    assert_eq!(
        (
            best.key.provider,
            best.key.region.as_str(),
            best.key.zone.as_str(),
            best.key.instance_type.as_str()
        ),
        (
            Provider::Gcp,
            "europe-west4",
            "europe-west4-a",
            "a2-highgpu-8g"
        )
    );
    assert_eq!(best.price_per_hour, dec("19.4217"));
    assert_eq!(units_to_decimal(d.choices[0].total), dec("38.8434"));
    // The same price in zone b ties; the catalog order (zone a first) breaks the tie.
    assert_eq!(cat.offers()[d.choices[1].offer].key.zone, "europe-west4-b");
    assert_eq!(d.baseline, Some(d.choices[0].total));

    let aws = PlacementRequest {
        allowed_providers: vec![Provider::Aws],
        ..req
    };
    let a = cat.placement().select(&aws, &model, &cond()).unwrap();
    assert_eq!(units_to_decimal(a.choices[0].egress_total), dec("230.24"));
    // With no data in AWS, us-east-1's 21.957642 loses to us-east-2's 21.95764 (a hair
    // cheaper): 43.91528 + 230.24 = 274.15528.
    assert_eq!(cat.offers()[a.choices[0].offer].key.region, "us-east-2");
    assert_eq!(units_to_decimal(a.choices[0].total), dec("274.15528"));
    // GCP wins by 274.15528 - 38.8434 = 235.31188.
    assert_eq!(
        units_to_decimal(a.choices[0].total - d.choices[0].total),
        dec("235.31188")
    );
}

#[test]
fn spot_with_the_real_catalog_is_cheaper_and_carries_overhead() {
    let cat = real_catalog();
    let model = CostModel::default();
    let req = PlacementRequest {
        market: bursar::domain::placement::MarketPolicy::SpotAllowed,
        ..a100x8(4000, data(Provider::Aws, "us-east-1", 2000))
    };
    let d = cat.placement().select(&req, &model, &cond()).unwrap();
    let c = &d.choices[0];
    let o = &cat.offers()[c.offer];
    assert_eq!(o.key.market, Market::Spot);
    assert!(
        c.overhead > 0,
        "spot pays an expected interruption overhead"
    );
    assert_eq!(c.total, c.compute + c.egress_total + c.overhead);
}

// ---------------------------------------------------------------------------------------
// gRPC

fn gpu_request(accel: &str, count: u32, hours: f64) -> proto::SelectProviderRequest {
    proto::SelectProviderRequest {
        resources: Some(proto::Resources {
            accelerators: vec![accel.into()],
            accelerator_count: count,
            ..Default::default()
        }),
        expected_hours: hours,
        inputs: vec![proto::DataInput {
            size_gb: 2000.0,
            location: Some(proto::DataLocation {
                uri: "s3://training-data/imagenet@us-east-1".into(),
                ..Default::default()
            }),
        }],
        labels: [
            ("team".to_string(), "ml".to_string()),
            ("job_id".to_string(), "j-42".to_string()),
        ]
        .into(),
        ..Default::default()
    }
}

async fn placement_client(
    server: &common::TestServer,
) -> PlacementServiceClient<tonic::transport::Channel> {
    PlacementServiceClient::new(server.channel().await)
}

fn fast_log(db: &common::TestDb) -> bursar::config::Config {
    let mut cfg = common::test_config(db);
    cfg.placement.decision_log_flush = Duration::from_millis(20);
    cfg
}

#[tokio::test]
async fn select_provider_on_seed_prices_and_the_decision_log() {
    for db in common::both_backends().await {
        let server = common::TestServer::start(fast_log(&db)).await;
        let mut c = placement_client(&server).await;
        let resp = c
            .select_provider(gpu_request("a100", 8, 2.0))
            .await
            .unwrap()
            .into_inner();
        assert!(!resp.placements.is_empty(), "{}", db.backend);
        assert!(resp.seed_prices, "seed prices are flagged");
        let totals: Vec<Decimal> = resp
            .placements
            .iter()
            .map(|p| amount(&p.total_cost))
            .collect();
        assert!(totals.windows(2).all(|w| w[0] <= w[1]), "ranked by total");
        let best = &resp.placements[0];
        assert_eq!(
            best.provider,
            proto::Provider::Aws as i32,
            "data gravity keeps it in AWS"
        );
        assert_eq!(best.region, "us-east-1");
        assert_eq!(best.gpu_model, "A100");
        assert!(
            best.seed && best.stale,
            "seed prices are old: flagged stale and seed"
        );
        assert_eq!(
            amount(&best.compute_cost),
            amount(&best.price_per_hour) * dec("2")
        );
        assert!(
            best.reason.contains("data already local"),
            "{}",
            best.reason
        );
        assert!(
            resp.excluded
                .iter()
                .any(|e| e.constraint == "accelerator" && e.offers > 0)
        );
        assert!(!resp.decision_id.is_empty());

        let store = bursar::store::Store::open(&db.url).await.unwrap();
        let mut n = 0;
        for _ in 0..100 {
            n = store.count_decisions().await.unwrap();
            if n >= 1 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(n, 1, "{}: decision logged off the request path", db.backend);
        server.stop().await.unwrap();
        store.close().await;
    }
}

/// Answers to calls in flight together on one HTTP/2 connection leave the server in shared
/// writes (`server::coalesce`): each call must still get its own answer, whole.
#[tokio::test]
async fn calls_in_flight_together_on_one_connection_each_get_their_own_answer() {
    for db in common::both_backends().await {
        calls_in_flight_on(&db).await;
    }
}

async fn calls_in_flight_on(db: &common::TestDb) {
    let server = common::TestServer::start(common::test_config(db)).await;
    let channel = server.channel().await;
    let calls = (1..=64u32).map(|i| {
        let mut c = PlacementServiceClient::new(channel.clone());
        async move {
            let hours = f64::from(i) / 4.0;
            let resp = c
                .select_provider(gpu_request("a100", 8, hours))
                .await
                .unwrap()
                .into_inner();
            (i, resp)
        }
    });
    let answers = futures::future::join_all(calls).await;
    let mut ids = std::collections::HashSet::new();
    for (i, resp) in answers {
        let best = &resp.placements[0];
        assert_eq!(
            amount(&best.compute_cost),
            amount(&best.price_per_hour) * Decimal::from(i) / dec("4"),
            "call {i} got another call's answer"
        );
        assert!(
            ids.insert(resp.decision_id.clone()),
            "decision ids are unique"
        );
    }
    assert_eq!(ids.len(), 64);
    server.stop().await.unwrap();
}

#[tokio::test]
async fn decision_log_rows_carry_choice_runner_up_and_saving() {
    for db in common::both_backends().await {
        let server = common::TestServer::start(fast_log(&db)).await;
        let mut c = placement_client(&server).await;
        for _ in 0..5 {
            c.select_provider(gpu_request("A100", 8, 3.0))
                .await
                .unwrap();
        }
        server.stop().await.unwrap();
        // `run` drains the queue before returning.
        let store = bursar::store::Store::open(&db.url).await.unwrap();
        assert_eq!(store.count_decisions().await.unwrap(), 5, "{}", db.backend);
        let (team, job, chosen, runner, saving): LogRow =
            match &store {
                bursar::store::Store::Sqlite(s) => sqlx::query_as(
                    "SELECT team, job_id, chosen_provider, runner_up_provider, CAST(estimated_saving AS TEXT) FROM placement_decision LIMIT 1",
                )
                .fetch_one(s.pool())
                .await
                .unwrap(),
                bursar::store::Store::Postgres(s) => sqlx::query_as(
                    "SELECT team, job_id, chosen_provider, runner_up_provider, estimated_saving::text FROM placement_decision LIMIT 1",
                )
                .fetch_one(s.pool())
                .await
                .unwrap(),
            };
        assert_eq!(team.as_deref(), Some("ml"));
        assert_eq!(job.as_deref(), Some("j-42"));
        assert_eq!(chosen.as_deref(), Some("aws"));
        assert!(runner.is_some());
        // The chosen offer is the cheapest on-demand in the data's own region: saving 0.
        assert_eq!(
            saving.map(|s| s.parse::<Decimal>().unwrap()),
            Some(Decimal::ZERO),
            "{}",
            db.backend
        );
        store.close().await;
    }
}

/// A dashboard query as Grafana would send it: `$__timeFilter(col)` becomes a range over
/// the last 30 days, and `$name` / `${name}` the template variable's current value.
fn grafana_sql(raw: &str, vars: &[(String, String)]) -> String {
    let mut sql = String::new();
    let mut rest = raw;
    while let Some(i) = rest.find("$__timeFilter(") {
        sql.push_str(&rest[..i]);
        let after = &rest[i + "$__timeFilter(".len()..];
        let close = after.find(')').expect("$__timeFilter(…) closes");
        let col = &after[..close];
        sql.push_str(&format!(
            "{col} BETWEEN now() - interval '30 days' AND now() + interval '1 hour'"
        ));
        rest = &after[close + 1..];
    }
    sql.push_str(rest);
    for (name, value) in vars {
        sql = sql
            .replace(&format!("${{{name}}}"), value)
            .replace(&format!("${name}"), value);
    }
    assert!(!sql.contains('$'), "unexpanded macro or variable in: {sql}");
    sql
}

#[tokio::test]
async fn every_dashboard_query_runs_on_postgres_and_the_savings_panel_adds_up() {
    use sqlx::Row;
    // Dashboards read Postgres (dashboards/README.md): decisions made by the real service.
    let db = common::fresh_postgres().await;
    let server = common::TestServer::start(fast_log(&db)).await;
    let mut c = placement_client(&server).await;
    let mut by_team: std::collections::BTreeMap<String, (i64, Decimal)> = Default::default();
    for (team, n) in [("ml", 3), ("data", 2)] {
        for _ in 0..n {
            let mut req = gpu_request("A100", 8, 3.0);
            req.labels.insert("team".into(), team.into());
            let r = c.select_provider(req).await.unwrap().into_inner();
            let total = amount(&r.placements[0].total_cost);
            let t = by_team.entry(team.into()).or_default();
            t.0 += 1;
            t.1 += total;
        }
    }
    server.stop().await.unwrap();
    let store = bursar::store::Store::open(&db.url).await.unwrap();
    let bursar::store::Store::Postgres(pg) = &store else {
        unreachable!("a Postgres URL")
    };
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("dashboards");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    files.sort();
    let (mut ran, mut checked) = (0, false);
    for file in &files {
        let d: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(file).unwrap()).unwrap();
        // Dashboards over Prometheus (service.json) are run by tests/metrics.rs.
        if d["templating"]["list"].as_array().is_some_and(|l| {
            l.iter()
                .any(|v| v["type"] == "datasource" && v["query"] == "prometheus")
        }) {
            continue;
        }
        let vars: Vec<(String, String)> = d["templating"]["list"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|v| {
                let value = v["current"]["value"].as_str()?;
                Some((v["name"].as_str()?.to_string(), value.to_string()))
            })
            .collect();
        for panel in d["panels"].as_array().unwrap() {
            let title = panel["title"].as_str().unwrap();
            for target in panel["targets"].as_array().unwrap() {
                let sql = grafana_sql(target["rawSql"].as_str().unwrap(), &vars);
                let rows = sqlx::query(&sql)
                    .fetch_all(pg.pool())
                    .await
                    .unwrap_or_else(|e| panic!("{} / {title}: {e}\n{sql}", file.display()));
                ran += 1;
                if title == "Estimated placement savings by team" {
                    let got: std::collections::BTreeMap<String, (i64, Decimal)> = rows
                        .iter()
                        .map(|r| {
                            let total: Decimal = r.get("chosen_total");
                            let saving: Decimal = r.get("estimated_saving");
                            let baseline: Decimal = r.get("baseline_total");
                            assert_eq!(baseline - total, saving, "saving = baseline - chosen");
                            (
                                r.get::<String, _>("team"),
                                (r.get::<i64, _>("decisions"), total.normalize()),
                            )
                        })
                        .collect();
                    let want: std::collections::BTreeMap<String, (i64, Decimal)> = by_team
                        .iter()
                        .map(|(k, (n, t))| (k.clone(), (*n, t.normalize())))
                        .collect();
                    assert_eq!(got, want, "decisions and exact chosen totals per team");
                    checked = true;
                }
            }
        }
    }
    assert!(checked, "the savings panel is in dashboards/placement.json");
    assert!(ran >= 11, "every panel of both dashboards ran ({ran})");
    store.close().await;
}

#[tokio::test]
async fn bad_requests_are_invalid_argument_naming_the_field() {
    for db in common::both_backends().await {
        bad_requests_on(&db).await;
    }
}

async fn bad_requests_on(db: &common::TestDb) {
    let server = common::TestServer::start(common::test_config(db)).await;
    let mut c = placement_client(&server).await;
    let base = gpu_request("A100", 8, 2.0);
    let mut cases: Vec<(proto::SelectProviderRequest, &str)> = Vec::new();
    cases.push((
        proto::SelectProviderRequest {
            expected_hours: 0.0,
            ..base.clone()
        },
        "expected_hours",
    ));
    cases.push((
        proto::SelectProviderRequest {
            expected_hours: -3.0,
            ..base.clone()
        },
        "expected_hours",
    ));
    cases.push((gpu_request("H900", 8, 2.0), "resources.accelerators"));
    let mut r = base.clone();
    r.constraints = Some(proto::Constraints {
        allowed_providers: vec![proto::Provider::Aws as i32],
        denied_providers: vec![proto::Provider::Aws as i32],
        ..Default::default()
    });
    cases.push((r, "constraints.denied_providers"));
    let mut r = base.clone();
    r.constraints = Some(proto::Constraints {
        allowed_regions: vec!["us-east-1".into()],
        jurisdictions: vec!["EU".into()],
        ..Default::default()
    });
    cases.push((r, "constraints.jurisdictions"));
    let mut r = base.clone();
    r.spot = Some(proto::SpotPolicy {
        max_interruption_band: "<5%".into(),
        min_savings_percent: 0.0,
    });
    cases.push((r, "spot"));
    let mut r = base.clone();
    r.inputs[0].location = Some(proto::DataLocation {
        uri: "ftp://host/file@us-east-1".into(),
        ..Default::default()
    });
    cases.push((r, "inputs.location"));
    let mut r = base.clone();
    r.inputs[0].location = Some(proto::DataLocation {
        uri: "s3://bucket/key@moon-base-1".into(),
        ..Default::default()
    });
    cases.push((r, "inputs.location"));
    let mut r = base.clone();
    r.constraints = Some(proto::Constraints {
        max_total_cost: "lots".into(),
        ..Default::default()
    });
    cases.push((r, "constraints.max_total_cost"));
    cases.push((
        proto::SelectProviderRequest {
            top_k: 1000,
            ..base.clone()
        },
        "top_k",
    ));
    // A region no provider has is a typo (it used to exclude every offer: "region excluded").
    for (allowed, denied, field) in [
        (
            vec!["moon-base-1".to_string()],
            vec![],
            "constraints.allowed_regions",
        ),
        (
            vec![],
            vec!["moon-base-1".to_string()],
            "constraints.denied_regions",
        ),
    ] {
        let mut r = base.clone();
        r.constraints = Some(proto::Constraints {
            allowed_regions: allowed,
            denied_regions: denied,
            ..Default::default()
        });
        cases.push((r, field));
    }
    // No node has 2^32 - 1 accelerators (it used to be "accelerator_count excluded").
    cases.push((
        gpu_request("A100", u32::MAX, 2.0),
        "resources.accelerator_count",
    ));
    cases.push((
        proto::SelectProviderRequest {
            distinct: 7,
            ..base.clone()
        },
        "distinct",
    ));
    for (req, field) in cases {
        let err = c.select_provider(req).await.unwrap_err();
        assert_eq!(
            err.code(),
            Code::InvalidArgument,
            "{}: {field}: {}",
            db.backend,
            err.message()
        );
        assert!(
            err.message().starts_with(field),
            "{} should name {field}",
            err.message()
        );
    }
    let err = c
        .select_provider(gpu_request("H900", 8, 2.0))
        .await
        .unwrap_err();
    assert!(
        err.message().contains("A100"),
        "lists the known accelerators: {}",
        err.message()
    );
    server.stop().await.unwrap();
}

#[tokio::test]
async fn nothing_feasible_is_failed_precondition_with_counts() {
    for db in common::both_backends().await {
        nothing_feasible_on(&db).await;
    }
}

async fn nothing_feasible_on(db: &common::TestDb) {
    let server = common::TestServer::start(common::test_config(db)).await;
    let mut c = placement_client(&server).await;
    let mut r = gpu_request("A100", 8, 2.0);
    r.constraints = Some(proto::Constraints {
        max_price_per_hour: "0.01".into(),
        ..Default::default()
    });
    let err = c.select_provider(r).await.unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition);
    assert!(
        err.message().contains("max_price_per_hour excluded"),
        "{}",
        err.message()
    );
    assert!(
        err.message().contains("accelerator excluded"),
        "{}",
        err.message()
    );
    server.stop().await.unwrap();
}

#[tokio::test]
async fn operator_marks_take_effect_at_once_and_can_be_cleared() {
    for db in common::both_backends().await {
        let server = common::TestServer::start(common::test_config(&db)).await;
        let mut c = placement_client(&server).await;
        let before = c
            .select_provider(gpu_request("A100", 8, 2.0))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(before.placements[0].region, "us-east-1");
        let mark = c
            .mark_unavailable(proto::MarkUnavailableRequest {
                provider: proto::Provider::Aws as i32,
                region: "us-east-1".into(),
                zone: String::new(),
                reason: "capacity error on p4d".into(),
                ttl_seconds: 3600,
            })
            .await
            .unwrap()
            .into_inner();
        let after = c
            .select_provider(gpu_request("A100", 8, 2.0))
            .await
            .unwrap()
            .into_inner();
        assert!(
            after
                .placements
                .iter()
                .all(|p| !(p.provider == proto::Provider::Aws as i32 && p.region == "us-east-1")),
            "{}",
            db.backend
        );
        assert!(after.excluded.iter().any(|e| e.constraint == "unavailable"));
        let list = c
            .list_unavailable(proto::ListUnavailableRequest {})
            .await
            .unwrap()
            .into_inner();
        assert_eq!(list.marks.len(), 1);
        assert_eq!(list.marks[0].reason, "capacity error on p4d");
        c.clear_unavailable(proto::ClearUnavailableRequest {
            id: mark.id.clone(),
        })
        .await
        .unwrap();
        let again = c
            .select_provider(gpu_request("A100", 8, 2.0))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(again.placements[0].region, "us-east-1");
        let err = c
            .clear_unavailable(proto::ClearUnavailableRequest { id: mark.id })
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::NotFound);
        let err = c
            .mark_unavailable(proto::MarkUnavailableRequest {
                provider: proto::Provider::Aws as i32,
                region: "us-east-1".into(),
                reason: String::new(),
                ttl_seconds: 60,
                ..Default::default()
            })
            .await
            .unwrap_err();
        assert!(err.message().starts_with("reason"));
        server.stop().await.unwrap();
    }
}

// The CLI runs as a child process while this test's runtime serves it: multi-threaded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn select_cli_prints_a_table_and_json() {
    for db in common::both_backends().await {
        select_cli_on(&db).await;
    }
}

fn run_bursar(args: Vec<String>) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_bursar"))
        .args(args)
        .env_remove("BURSAR_SERVER")
        .output()
        .unwrap()
}

async fn select_cli_on(db: &common::TestDb) {
    let be = db.backend;
    let server = common::TestServer::start(common::test_config(db)).await;
    let run = |args: Vec<String>| run_bursar(args);
    let args = |hours: &str, extra: &[&str]| {
        let mut v: Vec<String> = [
            "select",
            "--server",
            &server.url,
            "--gpu",
            "A100:8",
            "--hours",
            hours,
            "--spot",
            "--data",
            "s3://bucket/path@us-east-1:2000GB",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        v.extend(extra.iter().map(|s| s.to_string()));
        v
    };
    let o = run(args("4", &[]));
    assert!(
        o.status.success(),
        "{be}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.contains("TOTAL USD") && out.contains("why:"), "{out}");
    let o = run(args("4", &["--json", "--jurisdiction", "EU"]));
    assert!(
        o.status.success(),
        "{be}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let p = &v["placements"][0];
    assert!(["gcp", "azure", "aws"].contains(&p["provider"].as_str().unwrap()));
    assert!(v["excluded"]["jurisdiction"].as_u64().unwrap() > 0);
    // EU only: the data must leave AWS us-east-1, so egress is charged.
    let egress: Decimal = p["egress_cost"].as_str().unwrap().parse().unwrap();
    assert!(egress > Decimal::ZERO);
    // The server's hours check (clap accepts 0): INVALID_ARGUMENT, exit 2, naming the field.
    let o = run(args("0", &[]));
    assert_eq!(
        o.status.code(),
        Some(2),
        "{be}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("expected_hours"), "{be}: {err}");
    let o = run(args("4", &["--max-price", "0.001"]));
    assert_eq!(
        o.status.code(),
        Some(1),
        "nothing feasible: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    server.stop().await.unwrap();
}

/// Issue 17 items 10, 12 and 13 through the real binary: `--server` without a scheme,
/// readable money, an assumed spot band marked, the market exclusion explained,
/// `--distinct`, and `A100:0` / unknown regions refused as bad usage naming the flag or field.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn select_cli_is_readable_and_diversifies() {
    for db in common::both_backends().await {
        let be = db.backend;
        let server = common::TestServer::start(common::test_config(&db)).await;
        // No scheme: http:// is assumed.
        let bare = server.addr.to_string();
        let select = |extra: &[&str]| {
            let mut v: Vec<String> = ["select", "--server", bare.as_str(), "--hours", "2"]
                .iter()
                .map(|s| s.to_string())
                .collect();
            v.extend(extra.iter().map(|s| s.to_string()));
            run_bursar(v)
        };
        let json = |extra: &[&str]| -> serde_json::Value {
            let mut a = extra.to_vec();
            a.push("--json");
            let o = select(&a);
            assert!(
                o.status.success(),
                "{be}: {}",
                String::from_utf8_lossy(&o.stderr)
            );
            serde_json::from_slice(&o.stdout).unwrap()
        };
        let places = |v: &serde_json::Value| -> Vec<(String, String)> {
            v["placements"]
                .as_array()
                .unwrap()
                .iter()
                .map(|p| {
                    (
                        p["provider"].as_str().unwrap().to_string(),
                        p["region"].as_str().unwrap().to_string(),
                    )
                })
                .collect()
        };
        let unique = |v: &[String]| {
            let mut u = v.to_vec();
            u.sort();
            u.dedup();
            u.len() == v.len()
        };

        // H100:8 with spot: the seed's cheapest five include several zones of one region.
        let plain = places(&json(&["--gpu", "H100:8", "--spot"]));
        assert_eq!(plain.len(), 5, "{be}");
        let regions: Vec<String> = plain.iter().map(|(p, r)| format!("{p} {r}")).collect();
        assert!(!unique(&regions), "{be}: {plain:?}");
        let by_region = json(&["--gpu", "H100:8", "--spot", "--distinct", "region"]);
        let distinct = places(&by_region);
        let regions: Vec<String> = distinct.iter().map(|(p, r)| format!("{p} {r}")).collect();
        assert_eq!(distinct.len(), 5, "{be}: {distinct:?}");
        assert!(unique(&regions), "{be}: {distinct:?}");
        assert_eq!(distinct[0], plain[0], "{be}: the cheapest stays first");
        let providers: Vec<String> = places(&json(&[
            "--gpu",
            "H100:8",
            "--spot",
            "--distinct",
            "provider",
        ]))
        .into_iter()
        .map(|(p, _)| p)
        .collect();
        assert!(
            providers.len() >= 2 && unique(&providers),
            "{be}: {providers:?}"
        );
        // --json stays exact; the table rounds to cents.
        let total = by_region["placements"][0]["total_cost"]
            .as_str()
            .unwrap()
            .to_string();
        assert!(
            total.split('.').nth(1).is_some_and(|f| f.len() > 2),
            "{be}: {total}"
        );
        let o = select(&["--gpu", "H100:8", "--spot", "--distinct", "region"]);
        assert!(
            o.status.success(),
            "{be}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        let table = String::from_utf8_lossy(&o.stdout).to_string();
        let cents: Decimal = total
            .parse::<Decimal>()
            .unwrap()
            .round_dp_with_strategy(2, rust_decimal::RoundingStrategy::MidpointAwayFromZero);
        let first = table.lines().nth(1).unwrap();
        assert!(first.contains(&format!(" {cents:.2} ")), "{be}: {table}");
        assert!(!table.contains(&total), "{be}: {table}");
        // The seed has no advisor bands: every spot band is the cost model's assumption.
        let spot_rows: Vec<&str> = table.lines().filter(|l| l.contains(" spot ")).collect();
        assert!(!spot_rows.is_empty(), "{be}: {table}");
        assert!(
            spot_rows.iter().all(|l| l.contains("(assumed)")),
            "{be}: {table}"
        );
        assert_eq!(
            by_region["placements"][0]["interruption_band_assumed"], true,
            "{be}"
        );

        // On-demand only: the market exclusion says why.
        let o = select(&["--gpu", "H100:8"]);
        assert!(
            o.status.success(),
            "{be}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        let table = String::from_utf8_lossy(&o.stdout);
        assert!(
            table.contains("(spot is off unless --spot is given)"),
            "{be}: {table}"
        );

        // Bad usage: exit 2, naming what is wrong.
        for (extra, says) in [
            (vec!["--gpu", "A100:0"], "--gpu"),
            (
                vec!["--gpu", "A100:8", "--region", "moon-base-1"],
                "constraints.allowed_regions",
            ),
            (
                vec!["--gpu", "A100:8", "--deny-region", "moon-base-1"],
                "constraints.denied_regions",
            ),
            (
                vec!["--gpu", "A100:4294967295"],
                "resources.accelerator_count",
            ),
            (vec!["--gpu", "A100:8", "--distinct", "zone"], "--distinct"),
        ] {
            let o = select(&extra);
            let err = String::from_utf8_lossy(&o.stderr);
            assert_eq!(o.status.code(), Some(2), "{be} {extra:?}: {err}");
            assert!(err.contains(says), "{be} {extra:?}: {err}");
        }
        server.stop().await.unwrap();
    }
}
