//! Prometheus metrics end to end: the service's HTTP port (`/metrics`) scraped directly and by
//! a real Prometheus (the Debian package, on a free loopback port), every family driven by
//! real work (RPCs, a failing price source, ingests, a budget, alert deliveries through a
//! real SMTP server), the exposition format, `metrics_listen` configuration, and
//! dashboards/service.json's queries run against that Prometheus. Both backends.
mod common;

use std::collections::BTreeSet;
use std::process::{Command, Stdio};
use std::time::Duration;

use bursar::domain::budget::Budget;
use bursar::notify::render::{AlertContext, outbox_messages};
use bursar::notify::{SmtpConfig, SmtpTls};
use bursar::proto;
use bursar::store::Store;
use bursar::store::budgets::FiredAlert;
use common::prometheus::{Prometheus, ScrapeJob};
use common::{Fixture, FixtureResponse, TestServer};
use rust_decimal::Decimal;
use tonic::Code;

const SMALL_FOCUS: &str =
    "focus-sample/spec-examples/saas_examples/spend_agreements/saas_spend_agreements_a2.csv";

/// GET `url`: (Content-Type, body).
async fn get(url: &str) -> (String, String) {
    let r = reqwest::get(url).await.expect("GET");
    assert!(r.status().is_success(), "{url}: {}", r.status());
    let ct = r
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default();
    (ct, r.text().await.unwrap())
}

async fn scrape(server: &TestServer) -> String {
    get(&format!("{}/metrics", server.http_url.as_ref().unwrap()))
        .await
        .1
}

/// The value of the sample `name` whose labels contain every `k="v"` of `labels`.
fn value(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    text.lines().filter(|l| !l.starts_with('#')).find_map(|l| {
        let (series, v) = l.rsplit_once(' ')?;
        let (n, rest) = series.split_once('{').unwrap_or((series, ""));
        (n == name
            && labels
                .iter()
                .all(|(k, val)| rest.contains(&format!("{k}=\"{val}\""))))
        .then(|| v.parse().ok())
        .flatten()
    })
}

/// Every sample name on a page.
fn sample_names(text: &str) -> BTreeSet<String> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .filter_map(|l| l.split(['{', ' ']).next().map(str::to_string))
        .collect()
}

fn select_ok() -> proto::SelectProviderRequest {
    proto::SelectProviderRequest {
        resources: Some(proto::Resources {
            min_vcpus: 2,
            ..Default::default()
        }),
        expected_hours: 1.0,
        top_k: 3,
        ..Default::default()
    }
}

fn select_invalid() -> proto::SelectProviderRequest {
    proto::SelectProviderRequest {
        distinct: 7,
        ..select_ok()
    }
}

async fn placement(
    s: &TestServer,
) -> proto::placement_service_client::PlacementServiceClient<tonic::transport::Channel> {
    proto::placement_service_client::PlacementServiceClient::new(s.channel().await)
}

fn smtp(port: u16) -> SmtpConfig {
    SmtpConfig {
        host: "127.0.0.1".into(),
        port: Some(port),
        tls: SmtpTls::None,
        username: None,
        password: None,
        from: "FinOps <finops@example.com>".into(),
        timeout: Duration::from_secs(10),
        ca_file: None,
    }
}

/// A copy of the small FOCUS sample whose first row's BilledCost is not a number: rejected,
/// one row quarantined.
fn damaged_focus(dir: &std::path::Path) -> std::path::PathBuf {
    let mut r = csv::Reader::from_path(common::shared(SMALL_FOCUS)).unwrap();
    let headers = r.headers().unwrap().clone();
    let billed = headers.iter().position(|h| h == "BilledCost").unwrap();
    let path = dir.join("damaged.csv");
    let mut w = csv::Writer::from_path(&path).unwrap();
    w.write_record(&headers).unwrap();
    for (i, rec) in r.records().enumerate() {
        let rec = rec.unwrap();
        let row: Vec<&str> = rec
            .iter()
            .enumerate()
            .map(|(j, v)| if i == 0 && j == billed { "lots" } else { v })
            .collect();
        w.write_record(&row).unwrap();
    }
    w.flush().unwrap();
    path
}

/// An alert for budget `name` to one email address and one Slack hook nobody answers.
async fn queue_alert(store: &Store, name: &str) {
    let d = |s: &str| s.parse::<Decimal>().unwrap();
    let today = chrono::Utc::now().date_naive();
    let ctx = AlertContext {
        budget: name.into(),
        period_key: "2026-12".into(),
        period_start: today,
        period_end: today,
        threshold_key: "actual-80".into(),
        threshold_description: "80% of budget".into(),
        on: "actual".into(),
        limit: d("80"),
        amount: d("100"),
        actual: d("85"),
        forecast: d("120"),
        currency: "USD".into(),
        top_services: vec![],
        top_tags: vec![],
        tag_key: "team".into(),
        dashboard_url: None,
        metric_unit: "USD".into(),
    };
    let msgs = outbox_messages(
        &ctx,
        &["cfo@example.com".into()],
        &["http://127.0.0.1:1/services/T0/B0/X".into()],
    );
    let fired = FiredAlert {
        budget: name.into(),
        period_key: "2026-12".into(),
        threshold_key: "actual-80".into(),
        actual: d("85"),
        forecast: d("120"),
        amount: d("100"),
        currency: "USD".into(),
        fired_at: chrono::Utc::now(),
    };
    assert!(store.fire_alert(&fired, &msgs).await.unwrap());
}

/// The first value of an instant query's result, if any.
fn first(r: &[serde_json::Value]) -> Option<f64> {
    r.first()?["value"][1].as_str()?.parse().ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_real_prometheus_scrapes_every_family_and_sees_rpc_counters_move() {
    for db in common::both_backends().await {
        let b = db.backend;
        let mail = common::SmtpServer::start().await;
        let failing = Fixture::start(|_| FixtureResponse::status(503, "unavailable")).await;
        let mut cfg = common::test_config(&db);
        cfg.sources.azure.enabled = true;
        cfg.sources.azure.endpoint = failing.base.clone();
        cfg.sources.azure.max_retries = 0;
        cfg.alerts.smtp = smtp(mail.port);
        cfg.alerts.outbox_interval = Duration::from_millis(200);
        cfg.alerts.slack_timeout = Duration::from_secs(1);
        cfg.budgets = vec![Budget::new("metrics-demo", Decimal::from(100), "USD")];
        let server = TestServer::start_with_http(cfg).await;
        let target = server
            .http_url
            .as_ref()
            .unwrap()
            .trim_start_matches("http://")
            .to_string();
        let prom = Prometheus::start(&[ScrapeJob {
            name: "bursar".into(),
            targets: vec![target],
            labels: vec![],
        }])
        .await;
        prom.wait_targets_up(1).await;

        // RPCs: one answered, one refused as a bad request.
        let mut c = placement(&server).await;
        c.select_provider(select_ok()).await.unwrap();
        let err = c.select_provider(select_invalid()).await.unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument, "{b}");
        // Ingests in this process record into the same families the server shows.
        let store = Store::open(&db.url).await.unwrap();
        let r =
            bursar::tasks::ingest::ingest_file(&store, &common::shared(SMALL_FOCUS), None, false)
                .await
                .unwrap();
        assert_eq!(r.rows_stored, 13, "{b}");
        let dir = tempfile::tempdir().unwrap();
        let damaged = damaged_focus(dir.path());
        assert!(
            bursar::tasks::ingest::ingest_file(&store, &damaged, None, false)
                .await
                .is_err(),
            "{b}: the damaged file is rejected"
        );
        // An alert: the email goes through the real SMTP server, the Slack hook fails.
        queue_alert(&store, "metrics-demo").await;

        let ok = r#"bursar_rpc_requests_total{method="SelectProvider",code="OK"}"#;
        prom.wait_for("SelectProvider OK counted", ok, |r| first(r) >= Some(1.0))
            .await;
        let before = first(&prom.query(ok).await).unwrap();
        c.select_provider(select_ok()).await.unwrap();
        prom.wait_for("the OK counter moves after an RPC", ok, |r| {
            first(r) > Some(before)
        })
        .await;
        let checks: &[(&str, &str, f64)] = &[
            (
                "INVALID_ARGUMENT counted",
                r#"bursar_rpc_requests_total{method="SelectProvider",code="INVALID_ARGUMENT"}"#,
                1.0,
            ),
            (
                "latency histogram",
                r#"histogram_quantile(0.5, sum by (le) (bursar_rpc_duration_seconds_bucket{method="SelectProvider",code="OK"}))"#,
                0.0,
            ),
            (
                "health checks measured",
                r#"sum(bursar_rpc_requests_total{service="grpc.health.v1.Health",code="OK"})"#,
                1.0,
            ),
            (
                "decisions by outcome",
                r#"bursar_placement_decisions_total{outcome="placed"}"#,
                2.0,
            ),
            (
                "the failing price source",
                r#"bursar_price_source_polls_total{source="azure",result="failure"}"#,
                1.0,
            ),
            (
                "the seed's last success",
                r#"bursar_price_source_last_success_age_seconds{source="seed"}"#,
                0.0,
            ),
            (
                "ingested rows",
                r#"bursar_ingest_rows_total{format="focus"}"#,
                13.0,
            ),
            (
                "quarantined rows",
                r#"bursar_ingest_quarantined_rows_total{format="focus"}"#,
                1.0,
            ),
            (
                "rejected runs",
                r#"bursar_ingest_runs_total{format="focus",status="rejected"}"#,
                1.0,
            ),
            (
                "budget evaluations",
                r#"bursar_budget_evaluations_total{result="ok"}"#,
                1.0,
            ),
            (
                "alerts sent",
                r#"bursar_alerts_sent_total{channel="email"}"#,
                1.0,
            ),
            (
                "alerts failed",
                r#"bursar_alerts_failed_total{channel="slack"}"#,
                1.0,
            ),
            ("alerts pending", "bursar_alerts_pending", 0.0),
            (
                "idle-GPU actions by state",
                r#"count(bursar_idle_gpu_actions_total)"#,
                11.0,
            ),
            ("catalog offers", "sum(bursar_catalog_offers)", 50.0),
            ("resident memory", "process_resident_memory_bytes", 1e6),
            ("CPU time", "process_cpu_seconds_total", 0.0),
        ];
        for (what, q, at_least) in checks {
            prom.wait_for(&format!("{b}: {what}"), q, |r| {
                first(r).is_some_and(|v| v >= *at_least)
            })
            .await;
        }
        assert_eq!(mail.messages().len(), 1, "{b}: the alert's email arrived");
        store.close().await;
        drop(prom);
        server.stop().await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_page_is_openmetrics_text_with_exact_values() {
    for db in common::both_backends().await {
        let b = db.backend;
        let server = TestServer::start_with_http(common::test_config(&db)).await;
        let url = format!("{}/metrics", server.http_url.as_ref().unwrap());
        let (ct, text) = get(&url).await;
        assert!(
            ct.starts_with("application/openmetrics-text; version=1.0.0"),
            "{b}: {ct}"
        );
        assert!(text.ends_with("# EOF\n"), "{b}: ends with # EOF");
        for line in [
            "# TYPE bursar_placement_decisions counter",
            "# TYPE bursar_catalog_offers gauge",
            "# TYPE bursar_alerts_pending gauge",
            "# TYPE process_resident_memory_bytes gauge",
            "# TYPE process_cpu_seconds counter",
        ] {
            assert!(text.lines().any(|l| l == line), "{b}: {line} in\n{text}");
        }
        // The catalog gauge adds up to what PricingService serves.
        let total = server
            .pricing()
            .await
            .list_prices(proto::ListPricesRequest::default())
            .await
            .unwrap()
            .into_inner()
            .total_matching;
        let offers: f64 = text
            .lines()
            .filter(|l| l.starts_with("bursar_catalog_offers{"))
            .map(|l| l.rsplit_once(' ').unwrap().1.parse::<f64>().unwrap())
            .sum();
        assert_eq!(offers, total as f64, "{b}");
        assert!(value(&text, "process_resident_memory_bytes", &[]).unwrap() > 1e6);

        // This server's RPC table: exact counts, one series per (method, code) seen.
        let sel = [
            ("service", "bursar.v1.PlacementService"),
            ("method", "SelectProvider"),
        ];
        let invalid = [sel[0], sel[1], ("code", "INVALID_ARGUMENT")];
        assert_eq!(
            value(&text, "bursar_rpc_requests_total", &invalid),
            None,
            "{b}: no series before the first call"
        );
        let mut c = placement(&server).await;
        for _ in 0..3 {
            c.select_provider(select_invalid()).await.unwrap_err();
        }
        c.select_provider(select_ok()).await.unwrap();
        // A method the server does not have: UNIMPLEMENTED, counted as `unknown`.
        let mut raw = tonic::client::Grpc::new(server.channel().await);
        raw.ready().await.unwrap();
        let err = raw
            .unary::<proto::ListPricesRequest, proto::ListPricesResponse, _>(
                tonic::Request::new(proto::ListPricesRequest::default()),
                "/bursar.v1.NoSuchService/Nothing".parse().unwrap(),
                tonic_prost::ProstCodec::default(),
            )
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::Unimplemented);
        let text = scrape(&server).await;
        assert_eq!(
            value(&text, "bursar_rpc_requests_total", &invalid),
            Some(3.0),
            "{b}"
        );
        let ok = [sel[0], sel[1], ("code", "OK")];
        assert_eq!(value(&text, "bursar_rpc_requests_total", &ok), Some(1.0));
        assert_eq!(
            value(&text, "bursar_rpc_duration_seconds_count", &invalid),
            Some(3.0)
        );
        assert_eq!(
            value(
                &text,
                "bursar_rpc_duration_seconds_bucket",
                &[ok[0], ok[1], ok[2], ("le", "+Inf")]
            ),
            Some(1.0)
        );
        assert_eq!(
            value(
                &text,
                "bursar_rpc_requests_total",
                &[("method", "unknown"), ("code", "UNIMPLEMENTED")]
            ),
            Some(1.0),
            "{b}: {text}"
        );
        // The report page shares the HTTP port.
        let (ct, page) = get(&format!(
            "{}/report?month=2026-10",
            server.http_url.as_ref().unwrap()
        ))
        .await;
        assert!(ct.starts_with("text/html"), "{b}: {ct}");
        assert!(page.contains("<html"), "{b}");
        server.stop().await.unwrap();
    }
}

/// The dashboard's variables as Grafana would fill them: "All" (the regex `.*`) or one value.
fn expand(expr: &str, job: &str, instance: &str) -> String {
    expr.replace("$__rate_interval", "1m")
        .replace("$job", job)
        .replace("$instance", instance)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_service_dashboard_query_names_exposed_metrics_and_runs_in_prometheus() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/dashboards/service.json");
    let d: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    // Its Prometheus data source: the variable, defaulting to the provisioned uid.
    let vars = d["templating"]["list"].as_array().unwrap();
    let ds = vars.iter().find(|v| v["name"] == "datasource").unwrap();
    assert_eq!(ds["query"], "prometheus");
    assert_eq!(ds["current"]["value"], "bursar-prometheus");
    let provisioning = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/dashboards/provisioning/datasources/prometheus.yaml"
    ))
    .unwrap();
    assert!(provisioning.contains("uid: bursar-prometheus"));
    let defined: BTreeSet<String> = vars
        .iter()
        .map(|v| format!("${}", v["name"].as_str().unwrap()))
        .collect();

    let db = common::fresh_sqlite();
    let server = TestServer::start_with_http(common::test_config(&db)).await;
    let mut c = placement(&server).await;
    c.select_provider(select_ok()).await.unwrap();
    let _ = c.select_provider(select_invalid()).await;
    // The names a scrape carries, plus those of families whose series appear with their
    // first event (counted here so that the page has them).
    bursar::metrics::global().price_poll("metrics-test", true, chrono::Utc::now());
    bursar::metrics::global().ingest("focus", bursar::metrics::IngestStatus::Ok, 1, 0);
    bursar::metrics::global().alert_delivery("email", true);
    bursar::metrics::global().alert_delivery("email", false);
    let names = sample_names(&scrape(&server).await);
    let target = server
        .http_url
        .as_ref()
        .unwrap()
        .trim_start_matches("http://")
        .to_string();
    let prom = Prometheus::start(&[ScrapeJob {
        name: "bursar".into(),
        targets: vec![target.clone()],
        labels: vec![],
    }])
    .await;
    prom.wait_targets_up(1).await;
    // Two scrapes, so that rate() has two points.
    prom.wait_for("two scrapes", "count_over_time(up[1m])", |r| {
        first(r) >= Some(2.0)
    })
    .await;

    let metric = regex_lite_names;
    let mut ids = BTreeSet::new();
    let mut queries = 0;
    for p in d["panels"].as_array().unwrap() {
        assert!(ids.insert(p["id"].as_i64().unwrap()), "unique panel ids");
        if p["type"] == "row" {
            continue;
        }
        assert_eq!(p["datasource"]["uid"], "${datasource}", "{}", p["title"]);
        for t in p["targets"].as_array().unwrap() {
            let expr = t["expr"].as_str().unwrap();
            for var in expr.split('$').skip(1) {
                let name: String = var
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect();
                assert!(
                    name.starts_with("__") || defined.contains(&format!("${name}")),
                    "{}: ${name} is not a defined variable",
                    p["title"]
                );
            }
            let used = metric(expr);
            assert!(!used.is_empty(), "{}: names no metric", p["title"]);
            for m in &used {
                assert!(
                    names.contains(m),
                    "{}: {m} is not on the service's page",
                    p["title"]
                );
            }
            for (job, instance) in [(".*", ".*"), ("bursar", target.as_str())] {
                let q = expand(expr, job, instance);
                // Fails the test unless Prometheus accepts and evaluates it.
                prom.query(&q).await;
                queries += 1;
            }
        }
    }
    assert!(
        queries >= 38,
        "{queries} queries run: 19 targets, each with All and one value"
    );
    // A panel over data the service has: answers with series.
    let q = expand(
        r#"sum by (method) (rate(bursar_rpc_requests_total{job=~"$job",instance=~"$instance"}[$__rate_interval]))"#,
        ".*",
        ".*",
    );
    prom.wait_for("RPC rate by method has series", &q, |r| !r.is_empty())
        .await;
    drop(prom);
    server.stop().await.unwrap();
}

/// Metric names in a PromQL expression: identifiers starting `bursar_` or `process_`.
fn regex_lite_names(expr: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let bytes = expr.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        let start_ok = i == 0 || !(bytes[i - 1].is_ascii_alphanumeric() || bytes[i - 1] == b'_');
        if start_ok && (expr[i..].starts_with("bursar_") || expr[i..].starts_with("process_")) {
            let end = expr[i..]
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .map_or(expr.len(), |n| i + n);
            out.insert(expr[i..end].to_string());
            i = end;
        } else {
            i += 1;
        }
    }
    out
}

fn bursar_bin() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_bursar"));
    c.env_remove("BURSAR_CONFIG")
        .env_remove("BURSAR_METRICS_LISTEN")
        .env_remove("BURSAR_LISTEN");
    c
}

#[test]
fn a_bad_metrics_listen_exits_2_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}", dir.path().join("b.db").display());
    let flag = bursar_bin()
        .args(["serve", "--listen", "127.0.0.1:0", "--database-url", &db])
        .args(["--metrics-listen", "localhost:metrics"])
        .output()
        .unwrap();
    let env = bursar_bin()
        .args(["serve", "--listen", "127.0.0.1:0", "--database-url", &db])
        .env("BURSAR_METRICS_LISTEN", "9464")
        .output()
        .unwrap();
    for out in [flag, env] {
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{err}");
        assert!(err.contains("metrics_listen"), "{err}");
        assert_eq!(err.trim().lines().count(), 1, "{err}");
    }
}

/// Waits until `addr` answers TCP (true) or `deadline` passes (false).
async fn answers(addr: &str, within: Duration) -> bool {
    let deadline = tokio::time::Instant::now() + within;
    while tokio::time::Instant::now() < deadline {
        if tokio::net::TcpStream::connect(addr).await.is_ok() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_binds_metrics_listen_turns_it_off_when_empty_and_fails_when_taken() {
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}", dir.path().join("b.db").display());
    let (grpc, http) = (common::free_port(), common::free_port());
    let http_addr = format!("127.0.0.1:{http}");
    // On: the flag's address serves /metrics.
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_bursar"))
        .args([
            "serve",
            "--listen",
            &format!("127.0.0.1:{grpc}"),
            "--database-url",
            &db,
        ])
        .args(["--metrics-listen", &http_addr])
        .env_remove("BURSAR_CONFIG")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    assert!(
        answers(&http_addr, common::START_DEADLINE).await,
        "/metrics port"
    );
    let (ct, text) = get(&format!("http://{http_addr}/metrics")).await;
    assert!(ct.starts_with("application/openmetrics-text"), "{ct}");
    assert!(text.contains("bursar_catalog_offers{"), "{text}");

    // Taken: a second server on the same HTTP address fails (1) naming the key. (On a
    // database of its own: a second server on one SQLite file is refused before that.)
    let other_db = format!("sqlite://{}", dir.path().join("c.db").display());
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_bursar"))
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--database-url",
            &other_db,
        ])
        .args(["--metrics-listen", &http_addr])
        .env_remove("BURSAR_CONFIG")
        .output()
        .await
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("metrics_listen") && err.contains(&http_addr),
        "{err}"
    );
    child.kill().await.unwrap();
    let _ = child.wait().await;

    // Off: an empty flag wins over the environment; gRPC answers, the HTTP port does not.
    let grpc2 = common::free_port();
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_bursar"))
        .args([
            "serve",
            "--listen",
            &format!("127.0.0.1:{grpc2}"),
            "--database-url",
            &db,
        ])
        .args(["--metrics-listen", ""])
        .env("BURSAR_METRICS_LISTEN", &http_addr)
        .env_remove("BURSAR_CONFIG")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    // Once health answers, `run` is past the point where it binds the HTTP port.
    let deadline = tokio::time::Instant::now() + common::START_DEADLINE;
    loop {
        assert!(tokio::time::Instant::now() < deadline, "gRPC did not start");
        if let Ok(ch) = tonic::transport::Endpoint::from_shared(format!("http://127.0.0.1:{grpc2}"))
            .unwrap()
            .connect()
            .await
            && tonic_health::pb::health_client::HealthClient::new(ch)
                .check(tonic_health::pb::HealthCheckRequest::default())
                .await
                .is_ok()
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        tokio::net::TcpStream::connect(&http_addr).await.is_err(),
        "no HTTP port when metrics_listen is empty"
    );
    child.kill().await.unwrap();
    let _ = child.wait().await;
}
