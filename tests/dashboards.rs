//! The Grafana dashboards, tested by doing what Grafana would do (no Grafana server runs
//! here): a Postgres database filled by the real ingest of ../shared/data's FOCUS, CUR, GCP
//! and Azure samples, prices, SelectProvider decisions, budgets evaluated by the budget
//! engine (with their outbox), and the idle-GPU fleet's audit log and ledger; then every
//! panel's query of every dashboard, expanded by `bursar::dashboards` as Grafana expands it
//! (macros, template variables at "All" and at single values), run as the read-only role
//! `bursar_reader` the provisioned data source logs in as. Dashboards read Postgres only.
mod common;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};

use bursar::dashboards::{
    BUILTIN_VARIABLES, Bindings, Dashboard, Panel, QueryContext, Selection, TimeRange, expand,
    references,
};
use bursar::domain::Provider;
use bursar::domain::budget::{Budget, BudgetMetric, Threshold, ThresholdOn};
use bursar::domain::fleet::{FleetInstance, GpuSample, InstanceState, SampleSource};
use bursar::domain::idle::{Case, IdleMode, Stage};
use bursar::store::Store;
use bursar::store::budgets::BudgetOrigin;
use bursar::store::fleet::ActionRow;
use bursar::tasks::ingest::{IngestOptions, ingest_file, ingest_file_with};
use chrono::{DateTime, Duration, Utc};
use rust_decimal::Decimal;
use sqlx::postgres::{PgPool, PgPoolOptions, PgRow};
use sqlx::{Column, Row, TypeInfo};

fn dec(s: &str) -> Decimal {
    s.parse().unwrap()
}

fn t(s: &str) -> DateTime<Utc> {
    s.parse().unwrap()
}

fn dashboards_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("dashboards")
}

/// The data source uid the provisioning file pins.
/// The one uid in `dashboards/provisioning/datasources/<file>`.
fn provisioned_uid_in(file: &str) -> String {
    let yaml =
        std::fs::read_to_string(dashboards_dir().join("provisioning/datasources").join(file))
            .unwrap();
    let uids: Vec<&str> = yaml
        .lines()
        .filter_map(|l| l.trim().strip_prefix("uid:"))
        .map(str::trim)
        .collect();
    assert_eq!(uids.len(), 1, "{file}: one data source, one uid");
    uids[0].to_string()
}

fn provisioned_uid() -> String {
    let yaml =
        std::fs::read_to_string(dashboards_dir().join("provisioning/datasources/bursar.yaml"))
            .unwrap();
    assert!(
        yaml.contains("user: bursar_reader"),
        "it logs in as the reader"
    );
    provisioned_uid_in("bursar.yaml")
}

/// The SQL dashboards (service.json is Prometheus).
fn sql_dashboards() -> Vec<(PathBuf, Dashboard)> {
    Dashboard::load_dir(&dashboards_dir())
        .unwrap()
        .into_iter()
        .filter(|(_, d)| d.sql_queries().next().is_some())
        .collect()
}

const FINANCE_UIDS: [&str; 7] = [
    "bursar-spend",
    "bursar-budgets",
    "bursar-rates",
    "bursar-data-quality",
    "bursar-egress",
    "bursar-savings",
    "bursar-idle-gpus",
];

#[test]
fn the_committed_json_is_what_generate_py_writes() {
    let out = std::process::Command::new("python3")
        .arg(dashboards_dir().join("generate.py"))
        .arg("--check")
        .output()
        .expect("python3 runs");
    assert!(
        out.status.success(),
        "dashboards/*.json differ from dashboards/generate.py: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Names a query may use without defining them: Grafana's global variables and the
/// Postgres macros.
fn builtin(name: &str) -> bool {
    const MACROS: [&str; 14] = [
        "__time",
        "__timeEpoch",
        "__timeFilter",
        "__timeFrom",
        "__timeTo",
        "__timeGroup",
        "__timeGroupAlias",
        "__unixEpochFilter",
        "__unixEpochFrom",
        "__unixEpochTo",
        "__unixEpochNanoFilter",
        "__unixEpochNanoFrom",
        "__unixEpochNanoTo",
        "__unixEpochGroupAlias",
    ];
    BUILTIN_VARIABLES.contains(&name) || MACROS.contains(&name)
}

#[test]
fn the_dashboards_json_is_valid_for_grafana() {
    let uid = provisioned_uid();
    let all = Dashboard::load_dir(&dashboards_dir()).unwrap();
    let mut uids = BTreeSet::new();
    for (file, d) in &all {
        let f = file.display();
        assert!(
            uids.insert(d.uid.clone()),
            "{f}: dashboard uid {} is taken",
            d.uid
        );
        let mut ids = BTreeSet::new();
        for p in &d.panels {
            let id =
                p.id.unwrap_or_else(|| panic!("{f}: panel {:?} has no id", p.title));
            assert!(ids.insert(id), "{f}: panel id {id} twice");
        }
        // A dashboard over Prometheus (service.json): its data source variable defaults to
        // the provisioned Prometheus, and its PromQL is run by tests/metrics.rs.
        if let Some(ds) = d
            .variables
            .iter()
            .find(|v| v.kind == "datasource" && v.query.as_deref() == Some("prometheus"))
        {
            assert_eq!(
                ds.current,
                vec![provisioned_uid_in("prometheus.yaml")],
                "{f}: the Prometheus data source variable defaults to the provisioned uid"
            );
            for v in d.variables.iter().filter(|v| v.kind == "query") {
                let uid = v.datasource.as_ref().and_then(|d| d.uid.as_deref());
                assert_eq!(uid, Some("${datasource}"), "{f}: variable {}", v.name);
            }
            assert_eq!(d.sql_queries().count(), 0, "{f}: no SQL over Prometheus");
            continue;
        }
        let names: BTreeSet<&str> = d.variables.iter().map(|v| v.name.as_str()).collect();
        let mut texts: Vec<(String, String)> = Vec::new();
        for (p, target, sql) in d.sql_queries() {
            let ds = target.datasource(p).expect("a data source");
            assert_eq!(ds.uid.as_deref(), Some(uid.as_str()), "{f}: {}", p.title);
            assert_eq!(
                p.datasource.as_ref().and_then(|d| d.uid.as_deref()),
                Some(uid.as_str())
            );
            texts.push((format!("panel {:?}", p.title), sql.to_string()));
        }
        for v in &d.variables {
            if v.kind == "query" {
                let ds = v.datasource.as_ref().and_then(|d| d.uid.as_deref());
                assert_eq!(ds, Some(uid.as_str()), "{f}: variable {}", v.name);
                texts.push((format!("variable {}", v.name), v.query.clone().unwrap()));
            }
        }
        for (what, sql) in &texts {
            for r in references(sql) {
                if builtin(r.name) {
                    continue;
                }
                assert!(
                    names.contains(r.name),
                    "{f}: {what} uses ${} undefined",
                    r.name
                );
                // User-supplied text reaches SQL only through Grafana's quoting.
                assert_eq!(
                    r.format,
                    Some("sqlstring"),
                    "{f}: {what}: {} is not ${{{}:sqlstring}}",
                    r.text,
                    r.name
                );
            }
        }
        // Titles may name variables too; they must exist.
        for p in &d.panels {
            for r in references(&p.title) {
                assert!(
                    names.contains(r.name) || builtin(r.name),
                    "{f}: title {}",
                    p.title
                );
            }
        }
        // "All" is a custom value that the filters recognise.
        for v in d.variables.iter().filter(|v| v.include_all) {
            assert_eq!(v.all_value.as_deref(), Some("'__all__'"), "{f}: {}", v.name);
        }
    }
    for uid in FINANCE_UIDS
        .iter()
        .chain(&["bursar-prices", "bursar-placement"])
    {
        assert!(uids.contains(*uid), "dashboard {uid} exists");
    }
    // Every finance dashboard filters by provider, region and team (a tag whose key is
    // itself a variable); spend dashboards by service and account too.
    for (file, d) in &all {
        if !FINANCE_UIDS.contains(&d.uid.as_str()) {
            continue;
        }
        for name in ["provider", "region", "team_tag", "team"] {
            assert!(d.variable(name).is_some(), "{}: no ${name}", file.display());
        }
        assert_eq!(d.variable("team_tag").unwrap().current, ["team"]);
    }
}

// ---- the database --------------------------------------------------------------------------

/// A FOCUS export of one row (the sample's first usage row) in October 2024, in a billing
/// account of its own, tagged with a team whose name holds a quote.
fn obrien_export(dir: &Path) -> (PathBuf, Decimal) {
    let mut rd = csv::Reader::from_path(common::shared(
        "focus-sample/multi-provider/focus_sample.csv",
    ))
    .unwrap();
    let headers = rd.headers().unwrap().clone();
    let col = |name: &str| headers.iter().position(|h| h == name).unwrap();
    let mut row: Vec<String> = rd
        .records()
        .map(|r| r.unwrap())
        .find(|r| {
            &r[col("ChargeCategory")] == "Usage"
                && r[col("BilledCost")].parse::<Decimal>().unwrap() > Decimal::ZERO
        })
        .unwrap()
        .iter()
        .map(String::from)
        .collect();
    for (name, value) in [
        ("BillingAccountId", "obrien-account"),
        ("SubAccountId", "obrien-sub"),
        ("BillingPeriodStart", "2024-10-01 00:00:00"),
        ("BillingPeriodEnd", "2024-11-01 00:00:00"),
        ("ChargePeriodStart", "2024-10-15 00:00:00"),
        ("ChargePeriodEnd", "2024-10-15 01:00:00"),
        ("Tags", r#"{"team": "O'Brien"}"#),
    ] {
        row[col(name)] = value.to_string();
    }
    let billed = dec(&row[col("BilledCost")]);
    let path = dir.join("obrien.csv");
    let mut w = csv::Writer::from_path(&path).unwrap();
    w.write_record(&headers).unwrap();
    w.write_record(&row).unwrap();
    w.flush().unwrap();
    (path, billed)
}

/// The sample's billed cost (USD) of rows whose tag `key` is `value`, summed from the CSV.
fn focus_billed_with_tag(key: &str, value: &str) -> Decimal {
    let mut rd = csv::Reader::from_path(common::shared(
        "focus-sample/multi-provider/focus_sample.csv",
    ))
    .unwrap();
    let headers = rd.headers().unwrap().clone();
    let col = |name: &str| headers.iter().position(|h| h == name).unwrap();
    let mut sum = Decimal::ZERO;
    for r in rd.records() {
        let r = r.unwrap();
        let tags: serde_json::Value = serde_json::from_str(&r[col("Tags")]).unwrap_or_default();
        if tags.get(key).and_then(|v| v.as_str()) == Some(value) {
            sum += dec(&r[col("BilledCost")]);
        }
    }
    sum
}

/// The samples ingested and what expected_totals.json says of them, per (provider, currency).
struct Seeded {
    by_provider: BTreeMap<(String, String), Decimal>,
    obrien: Decimal,
    focus_billed: Decimal,
    runs: usize,
    budget_status: BTreeMap<String, &'static str>,
    outbox: BTreeMap<&'static str, i64>,
    placement_by_team: BTreeMap<String, (Decimal, Decimal)>,
}

fn expected_sum(file: &str, key: &str) -> Decimal {
    let (dir, name) = file.split_once('/').unwrap();
    let totals: serde_json::Value =
        serde_json::from_str(&common::read_shared(&format!("{dir}/expected_totals.json"))).unwrap();
    dec(totals["files"][name][key]
        .as_str()
        .unwrap_or_else(|| panic!("{file}: {key}")))
}

fn instance(id: &str, team: &str, state: InstanceState, region: &str) -> FleetInstance {
    FleetInstance {
        provider: Provider::Aws,
        id: id.into(),
        name: format!("gpu-{id}"),
        scope: region.into(),
        resource: id.into(),
        region: region.into(),
        zone: format!("{region}a"),
        instance_type: "p4d.24xlarge".into(),
        gpu_model: Some("A100".into()),
        gpu_count: 8,
        labels: [("team".to_string(), team.to_string())].into(),
        launched_at: Some(t("2024-09-01T00:00:00Z")),
        state,
        private_hostname: format!("ip-{id}.ec2.internal"),
        cloud_protection: None,
        managed_by: None,
    }
}

async fn seed(db: &common::TestDb, dir: &Path) -> Seeded {
    // SelectProvider decisions through the running service (it seeds the prices too).
    let mut cfg = common::test_config(db);
    cfg.placement.decision_log_flush = std::time::Duration::from_millis(20);
    let server = common::TestServer::start(cfg).await;
    let mut client = bursar::proto::placement_service_client::PlacementServiceClient::new(
        server.channel().await,
    );
    for (team, market) in [
        ("ml", None),
        ("ml", Some("spot")),
        ("data", None),
        ("O'Brien", None),
    ] {
        let req = bursar::proto::SelectProviderRequest {
            resources: Some(bursar::proto::Resources {
                accelerators: vec!["A100".into()],
                accelerator_count: 8,
                ..Default::default()
            }),
            expected_hours: 3.0,
            inputs: vec![bursar::proto::DataInput {
                size_gb: 500.0,
                location: Some(bursar::proto::DataLocation {
                    uri: "s3://training-data/set@us-east-1".into(),
                    ..Default::default()
                }),
            }],
            labels: [("team".to_string(), team.to_string())].into(),
            market: if market.is_some() {
                bursar::proto::MarketPolicy::SpotAllowed as i32
            } else {
                0
            },
            ..Default::default()
        };
        client.select_provider(req).await.unwrap();
    }
    server.stop().await.unwrap();
    let store = Store::open(&db.url).await.unwrap();
    let pg = match &store {
        Store::Postgres(pg) => pg.pool().clone(),
        Store::Sqlite(_) => unreachable!("Postgres"),
    };
    let placement_by_team: BTreeMap<String, (Decimal, Decimal)> = sqlx::query(
        "SELECT team, SUM(estimated_saving) FILTER (WHERE chosen_market <> 'spot'), \
         SUM(estimated_saving) FILTER (WHERE chosen_market = 'spot') FROM placement_decision \
         WHERE outcome = 'placed' GROUP BY 1",
    )
    .fetch_all(&pg)
    .await
    .unwrap()
    .iter()
    .map(|r| {
        let z = |i| {
            r.get::<Option<Decimal>, _>(i)
                .unwrap_or_default()
                .normalize()
        };
        (r.get::<String, _>(0), (z(1), z(2)))
    })
    .collect();
    assert_eq!(
        placement_by_team.len(),
        3,
        "three teams placed: {placement_by_team:?}"
    );
    store
        .record_source_success("aws_ondemand", 1200, Utc::now() - Duration::hours(2))
        .await
        .unwrap();
    store
        .record_source_failure("gcp_catalog", "HTTP 503", Utc::now())
        .await
        .unwrap();

    // The real ingest of one export per format, and one with a team holding a quote.
    let files = [
        (
            "focus-sample/multi-provider/focus_sample.csv",
            "BilledCost_sum",
        ),
        (
            "native-billing/aws/sample-anonymous-aws-export-dataset.csv",
            "lineItem/UnblendedCost_sum",
        ),
        (
            "native-billing/gcp/202011_30c31bca571d9b7f3b2c8459dd8bc34a_2020-11-08_2020-11-11.csv",
            "cost_sum",
        ),
        ("native-billing/azure/EA_ActualCost_Small.csv", "Cost_sum"),
    ];
    let mut by_provider: BTreeMap<(String, String), Decimal> = BTreeMap::new();
    for (file, key) in files {
        let r = ingest_file(&store, &common::shared(file), None, false)
            .await
            .unwrap();
        assert_eq!(r.quarantined, 0, "{file}");
        let (currency, _) = r.totals.first_key_value().unwrap();
        if file.starts_with("focus-sample") {
            let totals: serde_json::Value =
                serde_json::from_str(&common::read_shared("focus-sample/expected_totals.json"))
                    .unwrap();
            let by = &totals["files"]["multi-provider/focus_sample.csv"]["by_ProviderName"];
            for (provider, v) in by.as_object().unwrap() {
                *by_provider
                    .entry((provider.clone(), currency.clone()))
                    .or_default() += dec(v["BilledCost_sum"].as_str().unwrap());
            }
        } else {
            let providers: Vec<String> = sqlx::query_scalar(
                "SELECT DISTINCT provider_name FROM cost_line WHERE ingest_run_id = $1",
            )
            .bind(&r.run_id)
            .fetch_all(&pg)
            .await
            .unwrap();
            assert_eq!(providers.len(), 1, "{file}: one provider");
            *by_provider
                .entry((providers[0].clone(), currency.clone()))
                .or_default() += expected_sum(file, key);
        }
    }
    let (obrien_file, obrien) = obrien_export(dir);
    let r = ingest_file(&store, &obrien_file, None, false)
        .await
        .unwrap();
    let provider: String =
        sqlx::query_scalar("SELECT DISTINCT provider_name FROM cost_line WHERE ingest_run_id = $1")
            .bind(&r.run_id)
            .fetch_one(&pg)
            .await
            .unwrap();
    *by_provider.entry((provider, "USD".into())).or_default() += obrien;
    // A damaged export: one bad amount, quarantined, the run rejected.
    let mut rd = csv::Reader::from_path(common::shared(
        "focus-sample/multi-provider/focus_sample.csv",
    ))
    .unwrap();
    let headers = rd.headers().unwrap().clone();
    let billed = headers.iter().position(|h| h == "BilledCost").unwrap();
    let mut rows: Vec<csv::StringRecord> = rd.records().take(3).map(|r| r.unwrap()).collect();
    let mut bad: Vec<String> = rows[1].iter().map(String::from).collect();
    bad[billed] = "twelve".into();
    rows[1] = csv::StringRecord::from(bad);
    let damaged = dir.join("damaged.csv");
    let mut w = csv::Writer::from_path(&damaged).unwrap();
    w.write_record(&headers).unwrap();
    for r in &rows {
        w.write_record(r).unwrap();
    }
    w.flush().unwrap();
    let rejected = ingest_file_with(&store, &damaged, IngestOptions::default()).await;
    assert!(rejected.is_err(), "the damaged file is rejected");

    // Budgets for September 2024, evaluated by the engine on the 20th.
    let now = t("2024-09-20T12:00:00Z");
    let engine = bursar::tasks::budgets::BudgetEngine::new(
        store.clone(),
        bursar::notify::AlertsConfig::default(),
        7,
    );
    let probe = Budget::new("probe", dec("1000000"), "USD");
    store
        .create_budget(&probe, BudgetOrigin::Api)
        .await
        .unwrap();
    let ev = engine.evaluate_all(now).await.unwrap();
    let (actual, forecast) = (ev[0].status.actual, ev[0].status.forecast);
    assert!(
        actual > Decimal::ZERO && forecast > actual,
        "{actual} {forecast}"
    );
    store.delete_budget("probe").await.unwrap();
    let mut budget_status = BTreeMap::new();
    for (name, amount, status) in [
        ("healthy", forecast * dec("2"), "Healthy"),
        ("over", actual / dec("2"), "Unhealthy"),
        (
            "forecast-over",
            (actual + forecast) / dec("2"),
            "Forecasted Unhealthy",
        ),
    ] {
        let mut b = Budget::new(name, amount.round_dp(2), "USD");
        b.thresholds = vec![Threshold::percent(dec("50"), ThresholdOn::Actual)];
        b.channels.emails = vec![
            format!("finance+{name}@example.com"),
            format!("owner+{name}@example.com"),
        ];
        store.create_budget(&b, BudgetOrigin::Api).await.unwrap();
        budget_status.insert(name.to_string(), status);
    }
    let mut egress = Budget::new("egress", dec("10000"), "GB");
    egress.metric = BudgetMetric::EgressGb;
    store
        .create_budget(&egress, BudgetOrigin::Api)
        .await
        .unwrap();
    budget_status.insert("egress".into(), "Healthy");
    engine.evaluate_all(now).await.unwrap();
    engine.evaluate_all(now + Duration::hours(1)).await.unwrap();
    // The outbox: one sent, one retrying, the rest pending.
    let outbox = store.list_outbox(None).await.unwrap();
    assert!(outbox.len() >= 3, "alerts queued: {}", outbox.len());
    store.mark_delivered(outbox[0].id, now).await.unwrap();
    store
        .mark_failed(outbox[1].id, "SMTP 451", now + Duration::minutes(5))
        .await
        .unwrap();
    let outbox_counts = [
        ("sent", 1),
        ("retrying", 1),
        ("pending", outbox.len() as i64 - 2),
    ]
    .into();

    // The fleet: one machine stopped by the policy on the 20th at 10:00 and seen stopped
    // until the 22nd at 16:00 (54 h at 32.7726 $/h); one idle now with an open case; one busy.
    let acted = instance("i-acted", "ml", InstanceState::Running, "us-east-1");
    let idle = instance("i-idle", "O'Brien", InstanceState::Running, "us-west-2");
    let busy = instance("i-busy", "data", InstanceState::Running, "us-east-1");
    let price = Some(dec("32.7726"));
    let inventory = |acted_state: InstanceState| {
        let mut a = acted.clone();
        a.state = acted_state;
        vec![
            (a, price, "USD".to_string()),
            (idle.clone(), price, "USD".to_string()),
            (busy.clone(), price, "USD".to_string()),
        ]
    };
    store
        .write_fleet_inventory(
            Provider::Aws,
            &inventory(InstanceState::Running),
            t("2024-09-20T09:00:00Z"),
        )
        .await
        .unwrap();
    let action = |decision: &str, at: &str, id: &FleetInstance| ActionRow {
        id: 0,
        at: t(at),
        provider: Provider::Aws,
        instance_id: id.id.clone(),
        instance_name: id.name.clone(),
        decision: decision.into(),
        mode: "stop".into(),
        reason: "idle for 2h".into(),
        evidence: "{}".into(),
        price_per_hour: price,
        currency: "USD".into(),
        error: String::new(),
        stopped_until: None,
        restarted_at: None,
    };
    for (decision, at, inst) in [
        ("notified", "2024-09-20T08:00:00Z", &acted),
        ("stopped", "2024-09-20T10:00:00Z", &acted),
        ("would_notify", "2024-09-20T10:00:00Z", &idle),
        ("notified", "2024-09-20T11:00:00Z", &busy),
        ("cancelled", "2024-09-20T12:00:00Z", &busy),
        ("failed", "2024-09-20T12:00:00Z", &idle),
    ] {
        store
            .record_fleet_action(&action(decision, at, inst))
            .await
            .unwrap();
    }
    store
        .write_fleet_inventory(
            Provider::Aws,
            &inventory(InstanceState::Stopped),
            t("2024-09-22T16:00:00Z"),
        )
        .await
        .unwrap();
    let case = Case {
        opened_at: t("2024-09-20T10:00:00Z"),
        notified_at: Some(t("2024-09-20T10:00:00Z")),
        due_at: t("2024-09-20T12:00:00Z"),
        mode: IdleMode::Stop,
        stage: Stage::Waiting,
        acted_at: None,
    };
    store
        .put_fleet_case(
            Provider::Aws,
            &idle.id,
            case.opened_at,
            &serde_json::to_string(&case).unwrap(),
        )
        .await
        .unwrap();
    // Utilisation: the idle machine's 2 GPUs at 1 % for three hours, the busy one at 90 %.
    let mut samples = Vec::new();
    for minute in (0..180).step_by(10) {
        let at = t("2024-09-20T06:00:00Z") + Duration::minutes(minute);
        for (inst, util) in [(&idle, 1.0), (&busy, 90.0)] {
            for gpu in ["0", "1"] {
                samples.push(GpuSample {
                    instance_id: inst.id.clone(),
                    gpu: gpu.into(),
                    at,
                    utilization_percent: util,
                    memory_used_mib: None,
                    power_watts: None,
                    source: SampleSource::Dcgm,
                });
            }
        }
    }
    store.insert_gpu_samples(&samples).await.unwrap();
    store.close().await;
    Seeded {
        by_provider,
        obrien,
        focus_billed: expected_sum(
            "focus-sample/multi-provider/focus_sample.csv",
            "BilledCost_sum",
        ),
        runs: files.len() + 2,
        budget_status,
        outbox: outbox_counts,
        placement_by_team,
    }
}

/// A pool that logs in as `bursar_reader`, in a session time zone that is not UTC (the
/// dashboards must not depend on it).
async fn reader_pool(url: &str) -> PgPool {
    let mut u = url::Url::parse(url).unwrap();
    u.set_username("bursar_reader").unwrap();
    u.set_password(Some("reader-secret")).unwrap();
    PgPoolOptions::new()
        .max_connections(2)
        .after_connect(|conn, _| {
            Box::pin(async move {
                sqlx::Executor::execute(&mut *conn, "SET TIME ZONE 'America/New_York'").await?;
                Ok(())
            })
        })
        .connect(u.as_str())
        .await
        .unwrap()
}

fn numeric(type_name: &str) -> bool {
    matches!(
        type_name,
        "NUMERIC" | "INT2" | "INT4" | "INT8" | "FLOAT4" | "FLOAT8"
    )
}

fn timeish(type_name: &str) -> bool {
    matches!(type_name, "TIMESTAMPTZ" | "TIMESTAMP" | "DATE") || numeric(type_name)
}

/// The time of a row's first column, in seconds.
fn time_of(r: &PgRow) -> f64 {
    match r.column(0).type_info().name() {
        "TIMESTAMPTZ" => r.get::<DateTime<Utc>, _>(0).timestamp() as f64,
        "NUMERIC" => r.get::<Decimal, _>(0).try_into().unwrap(),
        "FLOAT8" => r.get::<f64, _>(0),
        "INT8" => r.get::<i64, _>(0) as f64,
        other => panic!("time column of type {other}"),
    }
}

/// The columns a panel type needs, as Grafana's Postgres data source reads them.
fn check_shape(p: &Panel, format: Option<&str>, rows: &[PgRow], what: &str) {
    let Some(first) = rows.first() else { return };
    let cols: Vec<(&str, &str)> = first
        .columns()
        .iter()
        .map(|c| (c.name(), c.type_info().name()))
        .collect();
    let numbers = cols.iter().filter(|(_, ty)| numeric(ty)).count();
    if format == Some("time_series") {
        assert_eq!(cols[0].0, "time", "{what}: time first: {cols:?}");
        assert!(timeish(cols[0].1), "{what}: {cols:?}");
        for (name, ty) in &cols[1..] {
            assert!(
                numeric(ty) || *name == "metric",
                "{what}: {name} {ty} in a time series"
            );
        }
        let values = cols[1..].iter().filter(|(_, ty)| numeric(ty)).count();
        assert!(values > 0, "{what}: a numeric value: {cols:?}");
        let times: Vec<f64> = rows.iter().map(time_of).collect();
        assert!(
            times.windows(2).all(|w| w[0] <= w[1]),
            "{what}: sorted by time"
        );
    }
    match p.kind.as_str() {
        "stat" | "gauge" | "barchart" => assert!(numbers > 0, "{what}: a number: {cols:?}"),
        "timeseries" => assert_eq!(format, Some("time_series"), "{what}"),
        _ => {}
    }
}

struct Runner {
    pool: PgPool,
}

impl Runner {
    /// Expands and runs every query of `d`; every one must succeed. Returns rows per panel.
    async fn run_all(
        &self,
        d: &Dashboard,
        range: TimeRange,
        vars: &Bindings,
        label: &str,
    ) -> HashMap<String, Vec<PgRow>> {
        let mut out = HashMap::new();
        for (p, target, sql) in d.sql_queries() {
            let ctx = QueryContext::for_panel(p, range, vars).unwrap();
            let what = format!("{} / {} ({label})", d.uid, p.title);
            let sql = expand(sql, &ctx).unwrap_or_else(|e| panic!("{what}: {e}"));
            let rows = sqlx::query(&sql)
                .fetch_all(&self.pool)
                .await
                .unwrap_or_else(|e| panic!("{what}: {e}\n{sql}"));
            check_shape(p, target.format.as_deref(), &rows, &what);
            out.insert(p.title.clone(), rows);
        }
        out
    }

    /// The values of a query variable, as Grafana lists them.
    async fn options(
        &self,
        d: &Dashboard,
        name: &str,
        range: TimeRange,
        vars: &Bindings,
    ) -> Vec<String> {
        let v = d.variable(name).unwrap();
        let ctx = QueryContext {
            range,
            interval: std::time::Duration::from_secs(86_400),
            vars,
        };
        let sql = expand(v.query.as_deref().unwrap(), &ctx).unwrap();
        sqlx::query(&sql)
            .fetch_all(&self.pool)
            .await
            .unwrap_or_else(|e| panic!("{} / variable {name}: {e}\n{sql}", d.uid))
            .iter()
            .map(|r| r.get::<String, _>(0))
            .collect()
    }

    async fn panel(
        &self,
        d: &Dashboard,
        title: &str,
        range: TimeRange,
        vars: &Bindings,
    ) -> Vec<PgRow> {
        let (p, _, sql) = d
            .sql_queries()
            .find(|(p, _, _)| p.title == title)
            .unwrap_or_else(|| panic!("{}: no panel {title:?}", d.uid));
        let ctx = QueryContext::for_panel(p, range, vars).unwrap();
        let sql = expand(sql, &ctx).unwrap();
        sqlx::query(&sql)
            .fetch_all(&self.pool)
            .await
            .unwrap_or_else(|e| panic!("{title}: {e}\n{sql}"))
    }
}

fn with(d: &Dashboard, sets: &[(&str, Selection)]) -> Bindings {
    let mut b = d.bindings();
    for (name, s) in sets {
        b.select(name, s.clone()).unwrap();
    }
    b
}

fn one(v: &str) -> Selection {
    Selection::one(v)
}

/// (column 0 as text, column `col` as decimal) per row.
fn pairs(rows: &[PgRow], col: &str) -> BTreeMap<String, Decimal> {
    rows.iter()
        .map(|r| (r.get::<String, _>(0), r.get::<Decimal, _>(col).normalize()))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_panel_runs_as_bursar_reader_and_the_money_adds_up() {
    let db = common::fresh_postgres().await;
    let dir = tempfile::tempdir().unwrap();
    let seeded = seed(&db, dir.path()).await;
    // What `serve` and `migrate` do with [dashboards] reader_password.
    let store = Store::open(&db.url).await.unwrap();
    assert!(store.set_reader_password("reader-secret").await.unwrap());
    store.close().await;
    let runner = Runner {
        pool: reader_pool(&db.url).await,
    };
    let user: String = sqlx::query_scalar("SELECT current_user::text")
        .fetch_one(&runner.pool)
        .await
        .unwrap();
    assert_eq!(user, "bursar_reader");

    let wide = TimeRange {
        from: t("2020-01-01T00:00:00Z"),
        to: Utc::now() + Duration::days(1),
    };
    let september = TimeRange {
        from: t("2024-09-01T00:00:00Z"),
        to: t("2024-09-30T23:59:59Z"),
    };
    let dashboards = sql_dashboards();
    assert!(dashboards.len() >= 9, "{} SQL dashboards", dashboards.len());
    let mut queries = 0;
    for (_, d) in &dashboards {
        // Every variable's own query, at the defaults.
        let defaults = d.bindings();
        for v in d.variables.iter().filter(|v| v.kind == "query") {
            runner.options(d, &v.name, wide, &defaults).await;
        }
        // Every panel at "All" over both ranges: each returns rows in one of them at least.
        let mut with_rows: BTreeSet<String> = BTreeSet::new();
        for (range, label) in [(wide, "all, wide"), (september, "all, September 2024")] {
            for (title, rows) in runner.run_all(d, range, &defaults, label).await {
                queries += 1;
                if !rows.is_empty() {
                    with_rows.insert(title);
                }
            }
        }
        for (p, _, _) in d.sql_queries() {
            assert!(
                with_rows.contains(&p.title),
                "{} / {}: no rows for the seeded data",
                d.uid,
                p.title
            );
        }
        // Every multi-value variable at a single value of its own list.
        for v in d.variables.iter().filter(|v| v.multi) {
            let values = runner.options(d, &v.name, wide, &defaults).await;
            let Some(first) = values.first() else {
                continue;
            };
            let b = with(d, &[(&v.name, one(first))]);
            queries += runner
                .run_all(d, wide, &b, &format!("{}={first}", v.name))
                .await
                .len();
        }
    }
    assert!(queries > 150, "{queries} queries ran");
    let dash = |uid: &str| &dashboards.iter().find(|(_, d)| d.uid == uid).unwrap().1;

    // Spend by provider over the samples' range: exactly expected_totals.json, per currency.
    let spend = dash("bursar-spend");
    let currencies: BTreeSet<String> = seeded.by_provider.keys().map(|(_, c)| c.clone()).collect();
    for currency in &currencies {
        let rows = runner
            .panel(
                spend,
                "Spend by provider",
                wide,
                &with(spend, &[("currency", one(currency))]),
            )
            .await;
        let got = pairs(&rows, "billed");
        let want: BTreeMap<String, Decimal> = seeded
            .by_provider
            .iter()
            .filter(|((_, c), _)| c == currency)
            .map(|((p, _), v)| (p.clone(), v.normalize()))
            .collect();
        assert_eq!(got, want, "spend by provider in {currency}");
    }
    // One provider selected: that provider alone.
    let (aws, aws_total) = seeded
        .by_provider
        .iter()
        .find(|((p, c), _)| p == "AWS" && c == "USD")
        .map(|((p, _), v)| (p.clone(), *v))
        .expect("AWS spend in USD");
    let rows = runner
        .panel(
            spend,
            "Spend by provider",
            wide,
            &with(spend, &[("provider", one(&aws))]),
        )
        .await;
    assert_eq!(
        pairs(&rows, "billed"),
        [(aws.clone(), aws_total.normalize())].into()
    );
    // Two providers selected (multi-value): exactly those two.
    let usd: BTreeMap<String, Decimal> = seeded
        .by_provider
        .iter()
        .filter(|((_, c), _)| c == "USD")
        .map(|((p, _), v)| (p.clone(), v.normalize()))
        .collect();
    let two: BTreeMap<String, Decimal> = usd.into_iter().take(2).collect();
    assert_eq!(two.len(), 2);
    let b = with(
        spend,
        &[("provider", Selection::Values(two.keys().cloned().collect()))],
    );
    let rows = runner.panel(spend, "Spend by provider", wide, &b).await;
    assert_eq!(pairs(&rows, "billed"), two);
    // A team is a tag whose key is a variable: business_unit = ViennaAI, from the CSV itself.
    let vienna = focus_billed_with_tag("business_unit", "ViennaAI");
    assert!(vienna > Decimal::ZERO);
    let b = with(
        spend,
        &[
            ("team_tag", one("business_unit")),
            ("team", one("ViennaAI")),
        ],
    );
    let rows = runner.panel(spend, "Spend by provider", wide, &b).await;
    let total: Decimal = rows.iter().map(|r| r.get::<Decimal, _>("billed")).sum();
    assert_eq!(total.normalize(), vienna.normalize(), "ViennaAI's spend");
    // A team holding a quote: no SQL error, exactly its own line.
    let b = with(spend, &[("team", one("O'Brien"))]);
    assert!(
        runner
            .options(spend, "team", wide, &d_defaults(spend))
            .await
            .contains(&"O'Brien".to_string())
    );
    let rows = runner.panel(spend, "Spend by provider", wide, &b).await;
    let total: Decimal = rows.iter().map(|r| r.get::<Decimal, _>("billed")).sum();
    assert_eq!(
        total.normalize(),
        seeded.obrien.normalize(),
        "O'Brien's spend"
    );
    for hostile in ["O'Brien'); DROP TABLE cost_daily; --", "' OR '1'='1", "\\'"] {
        let b = with(spend, &[("team", one(hostile)), ("provider", one(hostile))]);
        let rows = runner.panel(spend, "Spend by provider", wide, &b).await;
        assert!(rows.is_empty(), "{hostile:?} matches nothing");
        runner.run_all(spend, wide, &b, hostile).await;
    }
    // September 2024: month to date = the FOCUS sample (the only export that month), and the
    // run-rate forecast of a month with data every day is the month itself.
    let mtd = runner
        .panel(spend, "Month-to-date spend", september, &d_defaults(spend))
        .await;
    let mtd: Decimal = mtd[0].get("month to date");
    assert_eq!(mtd.normalize(), seeded.focus_billed.normalize());
    let fc = runner
        .panel(spend, "Month-end forecast", september, &d_defaults(spend))
        .await;
    assert_eq!(
        fc[0].get::<Decimal, _>("month-end forecast").normalize(),
        mtd.normalize()
    );
    let gauge = runner
        .panel(
            spend,
            "Month-to-date spend against each budget",
            september,
            &d_defaults(spend),
        )
        .await;
    let gauges: BTreeSet<String> = gauge.iter().map(|r| r.get::<String, _>("budget")).collect();
    assert_eq!(
        gauges,
        ["forecast-over", "healthy", "over"]
            .map(String::from)
            .into(),
        "cost budgets only"
    );

    // Budgets: the status AWS Budgets would show, and the outbox by state.
    let budgets = dash("bursar-budgets");
    let rows = runner
        .panel(budgets, "Budget status", september, &d_defaults(budgets))
        .await;
    let got: BTreeMap<String, String> = rows
        .iter()
        .map(|r| (r.get::<String, _>("budget"), r.get::<String, _>("status")))
        .collect();
    let want: BTreeMap<String, String> = seeded
        .budget_status
        .iter()
        .map(|(k, v)| (k.clone(), v.to_string()))
        .collect();
    assert_eq!(got, want);
    let rows = runner
        .panel(
            budgets,
            "Alerts: sent, pending, retrying",
            september,
            &d_defaults(budgets),
        )
        .await;
    let got: BTreeMap<String, i64> = rows
        .iter()
        .map(|r| (r.get::<String, _>(0), r.get::<i64, _>(1)))
        .collect();
    let want: BTreeMap<String, i64> = seeded
        .outbox
        .iter()
        .map(|(k, v)| (k.to_string(), *v))
        .collect();
    assert_eq!(got, want);
    let rows = runner
        .panel(
            budgets,
            "Thresholds crossed",
            september,
            &with(budgets, &[("budget", one("over"))]),
        )
        .await;
    assert_eq!(rows.len(), 1, "the 50 % threshold of `over` fired once");

    // Egress: the rule's GB on the FOCUS sample (domain::egress_lines).
    let egress = dash("bursar-egress");
    let rows = runner
        .panel(
            egress,
            "Egress per provider and month",
            september,
            &d_defaults(egress),
        )
        .await;
    let gb: Decimal = rows.iter().map(|r| r.get::<Decimal, _>("gb")).sum();
    assert_eq!(gb.normalize(), dec("5.25487946858897"));

    // Data quality: every run, the rejected one and its quarantined row.
    let dq = dash("bursar-data-quality");
    let rows = runner
        .panel(
            dq,
            "Ingest runs per source and status",
            wide,
            &d_defaults(dq),
        )
        .await;
    let runs: i64 = rows.iter().map(|r| r.get::<i64, _>("runs")).sum();
    assert_eq!(runs as usize, seeded.runs);
    assert!(
        rows.iter()
            .any(|r| r.get::<String, _>("status") == "rejected")
    );
    let rows = runner
        .panel(dq, "Quarantined rows by reason", wide, &d_defaults(dq))
        .await;
    assert_eq!(rows.iter().map(|r| r.get::<i64, _>("rows")).sum::<i64>(), 1);

    // Idle GPUs: the ledger in SQL equals the store's (exact), the GPU-hours, the states.
    let store = Store::open(&db.url).await.unwrap();
    let ledger = store
        .fleet_savings(Some(wide.from), Some(wide.to))
        .await
        .unwrap();
    let want_avoided = ledger.totals["USD"].normalize();
    assert_eq!(want_avoided, (dec("32.7726") * dec("54")).normalize());
    let clipped = TimeRange {
        from: t("2024-09-21T06:00:00Z"),
        to: t("2024-09-21T18:30:00Z"),
    };
    let ledger_clipped = store
        .fleet_savings(Some(clipped.from), Some(clipped.to))
        .await
        .unwrap();
    store.close().await;
    let idle = dash("bursar-idle-gpus");
    for (range, want) in [
        (wide, want_avoided),
        (clipped, ledger_clipped.totals["USD"].normalize()),
    ] {
        let rows = runner
            .panel(
                idle,
                "Dollars avoided in the range",
                range,
                &d_defaults(idle),
            )
            .await;
        assert_eq!(
            rows[0].get::<Decimal, _>("dollars avoided").normalize(),
            want,
            "{range:?}"
        );
    }
    let rows = runner
        .panel(idle, "Dollars avoided per day", wide, &d_defaults(idle))
        .await;
    let per_day: Vec<Decimal> = rows
        .iter()
        .map(|r| r.get::<Decimal, _>(1).normalize())
        .collect();
    let want_days: Vec<Decimal> = ledger.days.values().map(|d| d.amount.normalize()).collect();
    assert_eq!(
        per_day, want_days,
        "per UTC day, whatever the session's time zone"
    );
    let rows = runner
        .panel(idle, "Idle GPU-hours per day", wide, &d_defaults(idle))
        .await;
    let hours: Decimal = rows.iter().map(|r| r.get::<Decimal, _>(1)).sum();
    assert_eq!(hours, dec("6"), "2 GPUs idle for 3 hours");
    let rows = runner
        .panel(idle, "Actions by state", wide, &d_defaults(idle))
        .await;
    let got: BTreeMap<String, i64> = rows
        .iter()
        .map(|r| (r.get::<String, _>(0), r.get::<i64, _>(1)))
        .collect();
    let want: BTreeMap<String, i64> = [
        ("would act", 1),
        ("notified", 2),
        ("cancelled", 1),
        ("acted", 1),
        ("failed", 1),
        ("kept", 0),
        ("held", 0),
        ("skipped", 0),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    assert_eq!(got, want);
    let rows = runner
        .panel(idle, "Machines idle right now", wide, &d_defaults(idle))
        .await;
    let names: Vec<String> = rows.iter().map(|r| r.get::<String, _>("name")).collect();
    assert_eq!(names, ["gpu-i-idle"]);
    assert_eq!(rows[0].get::<String, _>("team"), "O'Brien");
    let rows = runner
        .panel(
            idle,
            "Machines idle right now",
            wide,
            &with(idle, &[("team", one("O'Brien"))]),
        )
        .await;
    assert_eq!(rows.len(), 1, "the quoted team filters the fleet too");

    // Savings ledger: placement and spot per team from the decision log, idle GPUs per team.
    let savings = dash("bursar-savings");
    let rows = runner
        .panel(
            savings,
            "Savings ledger per month and team",
            wide,
            &d_defaults(savings),
        )
        .await;
    let mut got: BTreeMap<String, (Decimal, Decimal, Decimal)> = BTreeMap::new();
    for r in &rows {
        let e = got.entry(r.get::<String, _>("team")).or_default();
        e.0 += r.get::<Decimal, _>("placement savings");
        e.1 += r.get::<Decimal, _>("spot savings");
        e.2 += r.get::<Decimal, _>("idle-GPU dollars avoided");
    }
    for (team, (placement, spot)) in &seeded.placement_by_team {
        let g = got
            .get(team)
            .unwrap_or_else(|| panic!("team {team} in {got:?}"));
        assert_eq!(
            (g.0.normalize(), g.1.normalize()),
            (*placement, *spot),
            "{team}"
        );
    }
    assert_eq!(
        got["ml"].2.normalize(),
        want_avoided,
        "the stopped machine is ml's"
    );
}

fn d_defaults(d: &Dashboard) -> Bindings {
    d.bindings()
}

/// Tables and views a dashboard query names after FROM or JOIN.
fn named_relations(sql: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let words: Vec<&str> = sql
        .split(|c: char| c.is_whitespace() || c == '(' || c == ')' || c == ',')
        .filter(|w| !w.is_empty())
        .collect();
    for w in words.windows(2) {
        if w[0].eq_ignore_ascii_case("FROM") || w[0].eq_ignore_ascii_case("JOIN") {
            out.insert(w[1].to_ascii_lowercase());
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_reader_reads_exactly_what_the_dashboards_read_and_writes_nothing() {
    let db = common::fresh_postgres().await;
    let store = Store::open(&db.url).await.unwrap();
    let Store::Postgres(pg) = &store else {
        unreachable!()
    };
    let admin = pg.pool().clone();
    // A session the reader logs in to is read-only whatever the schema's privileges.
    let config: Option<Vec<String>> =
        sqlx::query_scalar("SELECT rolconfig FROM pg_roles WHERE rolname = 'bursar_reader'")
            .fetch_one(&admin)
            .await
            .unwrap();
    assert!(
        config
            .unwrap_or_default()
            .contains(&"default_transaction_read_only=on".to_string()),
        "bursar_reader's sessions are read-only"
    );
    // What the dashboards name, among the database's tables and views.
    let relations: BTreeSet<String> = sqlx::query_scalar(
        "SELECT table_name::text FROM information_schema.tables WHERE table_schema = current_schema()",
    )
    .fetch_all(&admin)
    .await
    .unwrap()
    .into_iter()
    .collect();
    let mut read: BTreeSet<String> = BTreeSet::new();
    for (_, d) in sql_dashboards() {
        let sqls = d
            .sql_queries()
            .map(|(_, _, s)| s.to_string())
            .chain(d.variables.iter().filter_map(|v| v.query.clone()));
        for s in sqls {
            read.extend(
                named_relations(&s)
                    .into_iter()
                    .filter(|r| relations.contains(r)),
            );
        }
    }
    let granted: BTreeSet<String> = sqlx::query_scalar(
        "SELECT DISTINCT table_name::text FROM information_schema.role_table_grants \
         WHERE grantee = 'bursar_reader'",
    )
    .fetch_all(&admin)
    .await
    .unwrap()
    .into_iter()
    .collect();
    let privileges: BTreeSet<String> = sqlx::query_scalar(
        "SELECT DISTINCT privilege_type::text FROM information_schema.role_table_grants \
         WHERE grantee = 'bursar_reader'",
    )
    .fetch_all(&admin)
    .await
    .unwrap()
    .into_iter()
    .collect();
    // Column grants: (table, column).
    let columns: BTreeSet<(String, String)> = sqlx::query_as(
        "SELECT table_name::text, column_name::text FROM information_schema.column_privileges \
         WHERE grantee = 'bursar_reader' AND table_name NOT IN \
         (SELECT table_name FROM information_schema.role_table_grants WHERE grantee = 'bursar_reader')",
    )
    .fetch_all(&admin)
    .await
    .unwrap()
    .into_iter()
    .collect();
    let by_column: BTreeSet<String> = columns.iter().map(|(t, _)| t.clone()).collect();
    let whole: BTreeSet<String> = read.difference(&by_column).cloned().collect();
    assert_eq!(
        granted, whole,
        "SELECT on exactly the relations the dashboards read"
    );
    assert_eq!(
        by_column,
        ["alert_outbox".to_string(), "budget".to_string()].into(),
        "the tables holding secrets are granted by column"
    );
    assert!(by_column.is_subset(&read));
    assert_eq!(privileges, ["SELECT".to_string()].into());
    for (table, secret) in [
        ("alert_outbox", "target"),
        ("alert_outbox", "subject"),
        ("alert_outbox", "body_text"),
        ("alert_outbox", "body_html"),
        ("alert_outbox", "slack_payload"),
        ("alert_outbox", "last_error"),
        ("budget", "spec"),
    ] {
        assert!(
            !columns.contains(&(table.to_string(), secret.to_string())),
            "the reader cannot see {table}.{secret}"
        );
    }

    // As the reader: no writes, no secrets, no other tables, no password function.
    let mut conn = pg.pool().acquire().await.unwrap();
    sqlx::query("SET ROLE bursar_reader")
        .execute(&mut *conn)
        .await
        .unwrap();
    let denied = [
        "INSERT INTO budget_evaluation (budget, evaluated_at, period_key, period_start, period_end, amount, currency, actual) VALUES ('x', now(), 'p', now(), now(), 1, 'USD', 1)",
        "UPDATE ingest_run SET status = 'ok'",
        "DELETE FROM fleet_action",
        "SELECT target FROM alert_outbox",
        "SELECT * FROM alert_outbox",
        "SELECT spec FROM budget",
        "SELECT * FROM cost_fact",
        "SELECT * FROM cost_dims",
        "SELECT * FROM fleet_keep",
        "CREATE TABLE mine (a int)",
        "SELECT bursar_reader_password('x')",
    ];
    for sql in denied {
        let e = sqlx::query(sql).execute(&mut *conn).await.expect_err(sql);
        let code = e
            .as_database_error()
            .and_then(|d| d.code())
            .map(|c| c.to_string());
        assert_eq!(code.as_deref(), Some("42501"), "{sql}: {e}");
    }
    let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM alert_outbox WHERE state = 'pending'")
        .fetch_one(&mut *conn)
        .await
        .unwrap();
    assert_eq!(n, 0);
    sqlx::query("RESET ROLE").execute(&mut *conn).await.unwrap();
    drop(conn);
    store.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrate_lets_the_reader_log_in_with_the_configured_password() {
    // Many databases migrating at once all find (or race to create) the one role.
    let dbs = futures::future::join_all((0..4).map(|_| common::fresh_postgres())).await;
    let opened = futures::future::join_all(dbs.iter().map(|d| Store::open(&d.url))).await;
    for s in opened {
        s.unwrap().close().await;
    }
    let db = &dbs[0];
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_bursar"))
        .args(["migrate", "--database-url", &db.url])
        .env("BURSAR_DASHBOARDS_READER_PASSWORD", "it's-a-secret\\")
        .env("RUST_LOG", "debug")
        .output()
        .await
        .unwrap();
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(out.status.success(), "{stdout}{stderr}");
    assert!(stdout.contains("bursar_reader can log in"), "{stdout}");
    assert!(
        !stdout.contains("secret") && !stderr.contains("secret"),
        "the password is never printed"
    );
    let store = Store::open(&db.url).await.unwrap();
    let Store::Postgres(pg) = &store else {
        unreachable!()
    };
    let (login, has_password): (bool, bool) = sqlx::query_as(
        "SELECT rolcanlogin, rolpassword IS NOT NULL FROM pg_authid WHERE rolname = 'bursar_reader'",
    )
    .fetch_one(pg.pool())
    .await
    .unwrap();
    assert!(login && has_password);
    store.close().await;
    // `serve` does the same at start.
    let mut cfg = common::test_config(&dbs[1]);
    cfg.dashboards.reader_password = Some("serve's secret".into());
    let server = common::TestServer::start(cfg).await;
    server.stop().await.unwrap();
    // An empty password is a configuration error (exit 2) naming the key.
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_bursar"))
        .args(["migrate", "--database-url", &db.url])
        .env("BURSAR_DASHBOARDS_READER_PASSWORD", "")
        .output()
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("dashboards.reader_password"));
    // SQLite has no roles: the password is ignored there.
    let lite = common::fresh_sqlite();
    let store = Store::open(&lite.url).await.unwrap();
    assert!(!store.set_reader_password("x").await.unwrap());
    store.close().await;
}
