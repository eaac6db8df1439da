//! The monthly report: gathered from a database seeded by the real ingest of the shared
//! samples (with budgets, placement decisions and idle-GPU actions) on both backends, written
//! by `bursar report`, served by `GET /report`, rendered in a real headless Chromium (no
//! console error under the page's CSP, totals in the DOM equal to the database's exact sums,
//! a screenshot kept as an artifact, a PDF print), and emailed once per month through a real
//! SMTP server (aiosmtpd).
mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use bursar::domain::Provider;
use bursar::domain::fleet::{FleetInstance, InstanceState};
use bursar::domain::money::UNITS_PER_USD;
use bursar::domain::report::{Health, Month};
use bursar::store::budgets::BudgetOrigin;
use bursar::store::fleet::ActionRow;
use bursar::store::{DecisionRow, Store};
use bursar::tasks::ingest::ingest_file;
use bursar::tasks::report_page::{ReportSettings, build};
use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use rust_decimal::prelude::ToPrimitive;
use serde_json::Value;

const FOCUS: &str = "focus-sample/multi-provider/focus_sample.csv";
/// A team name that would load an image (a CSP violation) if it were not escaped.
const HOSTILE_TEAM: &str = "<img src=x.png>";

fn dec(s: &str) -> Decimal {
    s.parse().unwrap()
}

fn t(s: &str) -> DateTime<Utc> {
    s.parse().unwrap()
}

fn settings(team_tag: &str) -> ReportSettings {
    ReportSettings {
        team_tag: team_tag.into(),
        trailing_days: 7,
    }
}

/// expected_totals.json's entry for the multi-provider FOCUS sample (all of it in 2024-09).
fn focus_expected() -> Value {
    let all: Value =
        serde_json::from_str(&common::read_shared("focus-sample/expected_totals.json")).unwrap();
    all["files"]["multi-provider/focus_sample.csv"].clone()
}

fn expected_dec(v: &Value, key: &str) -> Decimal {
    dec(v[key]
        .as_str()
        .unwrap_or_else(|| panic!("expected_totals.json: no {key}")))
    .normalize()
}

fn artifacts() -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .expect("target dir")
        .join("test-artifacts");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

// ---------------------------------------------------------------------------------------
// Seeding

fn instance(id: &str, state: InstanceState) -> FleetInstance {
    FleetInstance {
        provider: Provider::Aws,
        id: id.into(),
        name: id.into(),
        scope: "us-east-1".into(),
        resource: id.into(),
        region: "us-east-1".into(),
        zone: "us-east-1a".into(),
        instance_type: "p4d.24xlarge".into(),
        gpu_model: None,
        gpu_count: 8,
        labels: BTreeMap::new(),
        launched_at: None,
        state,
        private_hostname: format!("{id}.internal"),
        cloud_protection: None,
        managed_by: None,
    }
}

fn action(at: &str, id: &str, decision: &str, price: Option<&str>) -> ActionRow {
    ActionRow {
        id: 0,
        at: t(at),
        provider: Provider::Aws,
        instance_id: id.into(),
        instance_name: id.into(),
        decision: decision.into(),
        mode: "stop".into(),
        reason: "idle".into(),
        evidence: "{}".into(),
        price_per_hour: price.map(dec),
        currency: "USD".into(),
        error: String::new(),
        stopped_until: None,
        restarted_at: None,
    }
}

fn decision<'a>(
    id: &'a str,
    at: &str,
    team: Option<&'a str>,
    saving: &str,
    outcome: &'a str,
) -> DecisionRow<'a> {
    let units = |s: &str| {
        (dec(s) * Decimal::from(UNITS_PER_USD as i64))
            .to_i128()
            .unwrap()
    };
    DecisionRow {
        id,
        decided_at: t(at),
        team,
        project: None,
        job_id: None,
        labels: "{}".into(),
        request: "{}".into(),
        offers_considered: 10,
        feasible: 4,
        chosen: None,
        runner_up: None,
        baseline_total: Some(units("10")),
        estimated_saving: Some(units(saving)),
        currency: "USD",
        outcome,
        latency_us: 100,
    }
}

/// September 2024: the FOCUS sample through the real ingest, three budgets, placement
/// decisions (one outside the month, one not placed) and idle-GPU actions, one of them a
/// stop the ledger counts for four hours at 32.7726 USD/hour.
async fn seed_september(store: &Store) {
    let r = ingest_file(store, &common::shared(FOCUS), None, false)
        .await
        .unwrap();
    assert_eq!((r.rows_stored, r.quarantined), (1000, 0));
    for (name, spec) in [
        ("all-spend", r#"{"amount":"25","currency":"USD"}"#),
        ("tight", r#"{"amount":"10","currency":"USD"}"#),
        (
            "aws-only",
            r#"{"amount":"20","currency":"USD","scope":{"provider":"aws"}}"#,
        ),
    ] {
        assert!(
            store
                .create_budget(&common::budget(name, spec), BudgetOrigin::Api)
                .await
                .unwrap()
        );
    }
    store
        .insert_decisions(&[
            decision("d1", "2024-09-03T10:00:00Z", Some("ml"), "1.25", "placed"),
            decision("d2", "2024-09-20T10:00:00Z", Some("ml"), "2.5", "placed"),
            decision(
                "d3",
                "2024-09-21T10:00:00Z",
                Some(HOSTILE_TEAM),
                "0.125",
                "placed",
            ),
            decision("d4", "2024-09-22T10:00:00Z", Some("ml"), "100", "no_offer"),
            decision("d5", "2024-10-01T00:00:00Z", Some("ml"), "7", "placed"),
        ])
        .await
        .unwrap();
    for a in [
        action("2024-09-10T08:00:00Z", "i-gpu1", "would_stop", None),
        action("2024-09-10T09:00:00Z", "i-gpu1", "notified", None),
        action("2024-09-12T09:00:00Z", "i-gpu2", "failed", None),
        action("2024-10-02T09:00:00Z", "i-gpu2", "notified", None),
    ] {
        store.record_fleet_action(&a).await.unwrap();
    }
    store
        .write_fleet_inventory(
            Provider::Aws,
            &[(
                instance("i-gpu1", InstanceState::Running),
                Some(dec("32.7726")),
                "USD".into(),
            )],
            t("2024-09-10T09:30:00Z"),
        )
        .await
        .unwrap();
    store
        .record_fleet_action(&action(
            "2024-09-10T10:00:00Z",
            "i-gpu1",
            "stopped",
            Some("32.7726"),
        ))
        .await
        .unwrap();
    store
        .write_fleet_inventory(
            Provider::Aws,
            &[(
                instance("i-gpu1", InstanceState::Stopped),
                Some(dec("32.7726")),
                "USD".into(),
            )],
            t("2024-09-10T14:00:00Z"),
        )
        .await
        .unwrap();
}

// ---------------------------------------------------------------------------------------
// The CLI and Chromium

async fn bursar(args: &[&str], env: &[(&str, &str)]) -> std::process::Output {
    let cwd = tempfile::tempdir().unwrap();
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_bursar"));
    cmd.args(args)
        .current_dir(cwd.path())
        .env_remove("BURSAR_CONFIG");
    for (k, v) in env {
        cmd.env(k, v);
    }
    tokio::time::timeout(Duration::from_secs(120), cmd.output())
        .await
        .expect("bursar report finished")
        .unwrap()
}

fn chromium() -> PathBuf {
    let p = std::env::var_os("CHROMIUM")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/bin/chromium"));
    assert!(
        p.exists(),
        "the report's browser test needs Chromium at {} (Debian package `chromium`, installed by .ci/run; or set CHROMIUM)",
        p.display()
    );
    p
}

/// What Chromium printed and logged for one page.
struct Rendered {
    stdout: String,
    /// Console messages (`CONSOLE` log lines): CSP violations, script errors.
    console: Vec<String>,
}

/// Runs headless Chromium on `url` with `extra` flags. Every host but loopback resolves to
/// nothing, and background networking is off: nothing leaves the machine.
async fn chromium_run(url: &str, extra: &[String]) -> Rendered {
    let profile = tempfile::tempdir().unwrap();
    let out = tokio::time::timeout(
        Duration::from_secs(120),
        tokio::process::Command::new(chromium())
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--no-first-run",
                "--no-default-browser-check",
                "--disable-extensions",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--disable-default-apps",
                "--no-pings",
                "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
                "--enable-logging=stderr",
                "--v=0",
            ])
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .args(extra)
            .arg(url)
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("chromium finished within 2 minutes")
    .expect("chromium ran");
    assert!(
        out.status.success(),
        "chromium failed on {url}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Rendered {
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        console: String::from_utf8_lossy(&out.stderr)
            .lines()
            .filter(|l| l.contains("CONSOLE"))
            .map(String::from)
            .collect(),
    }
}

async fn dump_dom(url: &str) -> Rendered {
    chromium_run(url, &["--dump-dom".to_string()]).await
}

/// The text of the first element with class `class` after `marker` in `dom`.
fn cell(dom: &str, marker: &str, class: &str) -> String {
    let i = dom
        .find(marker)
        .unwrap_or_else(|| panic!("{marker} not in the DOM"));
    let rest = &dom[i..];
    let k = format!("class=\"{class}\">");
    let j = rest
        .find(&k)
        .unwrap_or_else(|| panic!("no {class} after {marker}"))
        + k.len();
    rest[j..j + rest[j..].find('<').unwrap()].to_string()
}

// ---------------------------------------------------------------------------------------
// Tests

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_report_page_shows_the_databases_exact_totals_in_a_real_browser() {
    let exp = focus_expected();
    let (billed, effective) = (
        expected_dec(&exp, "BilledCost_sum"),
        expected_dec(&exp, "EffectiveCost_sum"),
    );
    let month = Month::parse("2024-09").unwrap();
    for db in common::both_backends().await {
        let backend = db.backend;
        let store = Store::open(&db.url).await.unwrap();
        seed_september(&store).await;

        // The model, straight from the store.
        let r = build(&store, month, Utc::now(), &settings("business_unit"))
            .await
            .unwrap();
        assert!(!r.partial && !r.is_empty(), "{backend}");
        assert_eq!(r.totals.len(), 1, "{backend}: one currency");
        let tot = &r.totals[0];
        assert_eq!(
            (tot.currency.as_str(), tot.billed, tot.effective, tot.lines),
            ("USD", billed, effective, 1000),
            "{backend}: totals"
        );
        let mut per_provider: BTreeMap<String, Decimal> = BTreeMap::new();
        for d in &r.days {
            *per_provider.entry(d.provider.clone().unwrap()).or_default() += d.billed;
        }
        for (p, v) in exp["by_ProviderName"].as_object().unwrap() {
            assert_eq!(
                per_provider[p].normalize(),
                dec(v["BilledCost_sum"].as_str().unwrap()).normalize(),
                "{backend}: {p} per day sums to its total"
            );
        }
        let services: Decimal = r.by_service.iter().map(|g| g.billed).sum();
        let teams: Decimal = r.by_team.iter().map(|g| g.billed).sum();
        assert_eq!(
            (services.normalize(), teams.normalize()),
            (billed, billed),
            "{backend}"
        );
        assert!(
            r.by_team.iter().any(|g| g.name.is_some()),
            "{backend}: teams from the tag"
        );
        let health: BTreeMap<&str, (Health, bool)> = r
            .budgets
            .iter()
            .map(|b| (b.name.as_str(), (b.health, b.closed)))
            .collect();
        assert_eq!(health["all-spend"], (Health::Healthy, true), "{backend}");
        assert_eq!(health["tight"], (Health::Unhealthy, true), "{backend}");
        let aws = r.budgets.iter().find(|b| b.name == "aws-only").unwrap();
        assert_eq!(
            aws.actual,
            dec(exp["by_ProviderName"]["AWS"]["BilledCost_sum"]
                .as_str()
                .unwrap())
            .normalize(),
            "{backend}: a scoped budget counts its provider only"
        );
        let saved: Decimal = r.placement.iter().map(|p| p.saving).sum();
        let placed: u64 = r.placement.iter().map(|p| p.decisions).sum();
        assert_eq!((saved, placed), (dec("3.875"), 3), "{backend}: placement");
        assert_eq!(
            r.idle.avoided.get("USD"),
            Some(&dec("131.0904")),
            "{backend}: 4 h"
        );
        assert_eq!(r.idle.hours, dec("4"), "{backend}");
        let actions: Vec<(&str, u64)> = r
            .idle
            .actions
            .iter()
            .map(|(k, v)| (k.as_str(), *v))
            .collect();
        assert_eq!(
            actions,
            [
                ("failed", 1),
                ("notified", 1),
                ("stopped", 1),
                ("would_stop", 1)
            ],
            "{backend}: actions in the month only"
        );
        store.close().await;

        // The page, written by the CLI.
        let dir = tempfile::tempdir().unwrap();
        let page = dir.path().join("report.html");
        let out = bursar(
            &[
                "report",
                "--month",
                "2024-09",
                "--out",
                page.to_str().unwrap(),
                "--database-url",
                &db.url,
            ],
            &[("BURSAR_REPORT_TEAM_TAG", "business_unit")],
        )
        .await;
        assert!(
            out.status.success(),
            "{backend}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let said = String::from_utf8_lossy(&out.stdout);
        assert!(
            said.contains(&format!("USD billed {billed}")),
            "{backend}: {said}"
        );
        let html = std::fs::read_to_string(&page).unwrap();
        assert!(
            html.contains("By team (tag business_unit)"),
            "{backend}: env override"
        );

        // Rendered by Chromium.
        let url = format!("file://{}", page.display());
        let r = dump_dom(&url).await;
        assert!(
            r.console.is_empty(),
            "{backend}: console messages: {:#?}",
            r.console
        );
        let dom = r.stdout;
        assert!(
            dom.contains("<h1>Spend report: September 2024</h1>"),
            "{backend}"
        );
        assert!(
            dom.contains("<span id=\"data-through\">2024-09-30</span>"),
            "{backend}: how far the exports reach"
        );
        assert_eq!(
            cell(&dom, "data-total=\"USD\"", "num billed"),
            billed.to_string(),
            "{backend}"
        );
        assert_eq!(
            cell(&dom, "data-total=\"USD\"", "num effective"),
            effective.to_string(),
            "{backend}"
        );
        assert_eq!(
            cell(&dom, "data-total=\"USD\"", "num lines"),
            "1000",
            "{backend}"
        );
        for id in [
            "totals", "daily", "services", "teams", "budgets", "savings", "idle", "movers",
        ] {
            assert!(
                dom.contains(&format!("<section id=\"{id}\"")),
                "{backend}: {id}"
            );
        }
        assert!(
            dom.contains("<svg class=\"chart\""),
            "{backend}: the daily chart"
        );
        assert!(
            dom.contains("<span class=\"status unhealthy\">Unhealthy</span>"),
            "{backend}"
        );
        assert!(
            dom.contains("&lt;img src=x.png&gt;"),
            "{backend}: the team is text"
        );
        assert!(!dom.contains("<img"), "{backend}: no image element");
        assert_eq!(
            cell(&dom, "data-saving=\"idle\"", "num"),
            "131.0904",
            "{backend}"
        );
        assert_eq!(
            cell(&dom, "data-saving=\"placement\"", "num"),
            "3.875",
            "{backend}"
        );

        if backend == "sqlite" {
            std::fs::copy(&page, artifacts().join("report.html")).unwrap();
            let png = artifacts().join("report.png");
            let _ = std::fs::remove_file(&png);
            let shot = chromium_run(
                &url,
                &[
                    format!("--screenshot={}", png.display()),
                    "--window-size=1280,4400".into(),
                    "--hide-scrollbars".into(),
                ],
            )
            .await;
            assert!(shot.console.is_empty(), "{:#?}", shot.console);
            let bytes = std::fs::read(&png).expect("screenshot written");
            assert!(
                bytes.starts_with(b"\x89PNG") && bytes.len() > 20_000,
                "a real screenshot"
            );
            eprintln!("report screenshot: {}", png.display());

            let pdf = artifacts().join("report.pdf");
            let _ = std::fs::remove_file(&pdf);
            let printed = chromium_run(
                &url,
                &[
                    format!("--print-to-pdf={}", pdf.display()),
                    "--no-pdf-header-footer".into(),
                ],
            )
            .await;
            assert!(printed.console.is_empty(), "{:#?}", printed.console);
            let bytes = std::fs::read(&pdf).expect("PDF written");
            assert!(
                bytes.starts_with(b"%PDF") && bytes.len() > 10_000,
                "a real PDF"
            );
            // The page tree's /Count: the print breaks into pages.
            let text = String::from_utf8_lossy(&bytes);
            let pages: u32 = text
                .split("/Count ")
                .skip(1)
                .filter_map(|r| r.split(|c: char| !c.is_ascii_digit()).next()?.parse().ok())
                .max()
                .unwrap_or(0);
            assert!(pages >= 2, "the print breaks into pages ({pages})");
            eprintln!("report PDF: {}", pdf.display());
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_check_catches_a_page_that_fetches() {
    // The detector itself: the page's own CSP with an external image and a script must log.
    let dir = tempfile::tempdir().unwrap();
    let page = dir.path().join("bad.html");
    std::fs::write(
        &page,
        format!(
            "<!DOCTYPE html><html><head><meta http-equiv=\"Content-Security-Policy\" content=\"{}\">\
             </head><body><img src=\"http://127.0.0.1:9/x.png\"><script>console.log(1)</script></body></html>",
            bursar::report::html::CSP
        ),
    )
    .unwrap();
    let r = dump_dom(&format!("file://{}", page.display())).await;
    assert!(
        r.console
            .iter()
            .any(|l| l.contains("Content Security Policy")),
        "{:#?}",
        r.console
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn top_movers_compare_two_real_months_of_cur() {
    // Two consecutive months of a real CUR (Parquet): November 2018 against October.
    let all: Value =
        serde_json::from_str(&common::read_shared("native-billing/expected_totals.json")).unwrap();
    let sum = |f: &str| {
        dec(all["files"][f]["line_item_unblended_cost_sum"]
            .as_str()
            .unwrap())
        .normalize()
    };
    let (oct_file, nov_file) = (
        "aws/Oct2018-WorkshopCUR-00001.snappy.parquet",
        "aws/Nov2018-WorkshopCUR-00001.snappy.parquet",
    );
    let db = common::fresh_sqlite();
    let store = Store::open(&db.url).await.unwrap();
    for f in [oct_file, nov_file] {
        ingest_file(
            &store,
            &common::shared(&format!("native-billing/{f}")),
            None,
            false,
        )
        .await
        .unwrap();
    }
    let nov = Month::parse("2018-11").unwrap();
    let r = build(&store, nov, Utc::now(), &settings("team"))
        .await
        .unwrap();
    assert_eq!(r.totals[0].billed, sum(nov_file));
    assert_eq!(r.movers.len(), 10);
    // Each mover's months are that service's exact sums; the list is ranked by change.
    let oct = build(&store, nov.previous(), Utc::now(), &settings("team"))
        .await
        .unwrap();
    assert_eq!(oct.totals[0].billed, sum(oct_file));
    let of = |list: &[bursar::domain::report::GroupSpend], name: &Option<String>| {
        list.iter()
            .find(|g| g.name == *name)
            .map(|g| g.billed)
            .unwrap_or_default()
    };
    for m in &r.movers {
        assert_eq!(
            m.current,
            of(&r.by_service, &m.name).normalize(),
            "{:?}",
            m.name
        );
        assert_eq!(
            m.previous,
            of(&oct.by_service, &m.name).normalize(),
            "{:?}",
            m.name
        );
    }
    for w in r.movers.windows(2) {
        assert!(w[0].change().abs() >= w[1].change().abs());
    }
    let biggest = r
        .by_service
        .iter()
        .map(|g| (g.billed - of(&oct.by_service, &g.name)).abs())
        .max()
        .unwrap();
    assert_eq!(r.movers[0].change().abs(), biggest.normalize());
    store.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_route_serves_the_same_page_and_refuses_bad_months() {
    let db = common::fresh_postgres().await;
    let store = Store::open(&db.url).await.unwrap();
    seed_september(&store).await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = bursar::server::report::routes(store.clone(), settings("business_unit"));
    let server = tokio::spawn(async move { axum::serve(listener, app).await });
    let http = reqwest::Client::new();
    let base = format!("http://{addr}/report");

    let ok = http
        .get(format!("{base}?month=2024-09"))
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), 200);
    assert_eq!(ok.headers()["content-type"], "text/html; charset=utf-8");
    assert_eq!(
        ok.headers()["content-security-policy"],
        bursar::report::html::CSP
    );
    let body = ok.text().await.unwrap();
    let billed = expected_dec(&focus_expected(), "BilledCost_sum");
    assert_eq!(
        cell(&body, "data-total=\"USD\"", "num billed"),
        billed.to_string()
    );

    for bad in ["2024-13", "oct", ""] {
        let r = http
            .get(format!("{base}?month={bad}"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 400, "{bad}");
        let text = r.text().await.unwrap();
        assert!(
            text.starts_with("month: ") && text.contains("YYYY-MM") && text.lines().count() == 1,
            "{bad}: {text}"
        );
    }
    // Without a month: the previous one, which holds nothing here.
    let prev = Month::of(Utc::now()).previous();
    let r = http.get(&base).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let body = r.text().await.unwrap();
    assert!(body.contains(&format!("Spend report: {}", prev.title())));
    assert!(body.contains("id=\"no-data\""));

    // Chromium loads it over HTTP under the header CSP too.
    let r = dump_dom(&format!("{base}?month=2024-09")).await;
    assert!(r.console.is_empty(), "{:#?}", r.console);
    assert_eq!(
        cell(&r.stdout, "data-total=\"USD\"", "num billed"),
        billed.to_string()
    );
    server.abort();
    store.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_exits_with_the_documented_codes() {
    let db = common::fresh_sqlite();
    let dir = tempfile::tempdir().unwrap();
    let page = dir.path().join("r.html");
    let page_s = page.to_str().unwrap();
    for bad in ["2026-13", "oct"] {
        let out = bursar(
            &[
                "report",
                "--month",
                bad,
                "--out",
                page_s,
                "--database-url",
                &db.url,
            ],
            &[],
        )
        .await;
        assert_eq!(out.status.code(), Some(2), "{bad}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(err.lines().count(), 1, "{bad}: one line: {err}");
        assert!(err.contains("--month") && err.contains(bad), "{bad}: {err}");
        assert!(!page.exists());
    }
    // A month without data: a page that says so, exit 0.
    let out = bursar(
        &[
            "report",
            "--month",
            "2026-10",
            "--out",
            page_s,
            "--database-url",
            &db.url,
        ],
        &[],
    )
    .await;
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let html = std::fs::read_to_string(&page).unwrap();
    assert!(html.contains(
        "No spend, placement decisions or idle-GPU actions were recorded for October 2026."
    ));
    assert!(String::from_utf8_lossy(&out.stdout).contains("no data for October 2026"));
    let r = dump_dom(&format!("file://{}", page.display())).await;
    assert!(r.console.is_empty(), "{:#?}", r.console);
    assert!(r.stdout.contains("id=\"no-data\""));
    // An --out that cannot be written: exit 1, naming it.
    let out = bursar(
        &[
            "report",
            "--month",
            "2026-10",
            "--out",
            dir.path().to_str().unwrap(),
            "--database-url",
            &db.url,
        ],
        &[],
    )
    .await;
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--out"));
}

/// A FOCUS export for `month`: the FOCUS sample's first `n` rows, each moved to a day of
/// the month; returns the file's exact billed sum.
fn focus_rows_in(month: Month, n: usize, path: &Path) -> Decimal {
    let text = common::read_shared(FOCUS);
    let mut rd = csv::Reader::from_reader(text.as_bytes());
    let headers = rd.headers().unwrap().clone();
    let col = |name: &str| headers.iter().position(|h| h == name).unwrap();
    let (bps, bpe, cps, cpe, billed) = (
        col("BillingPeriodStart"),
        col("BillingPeriodEnd"),
        col("ChargePeriodStart"),
        col("ChargePeriodEnd"),
        col("BilledCost"),
    );
    let mut w = csv::Writer::from_path(path).unwrap();
    w.write_record(&headers).unwrap();
    let mut sum = Decimal::ZERO;
    for (i, rec) in rd.records().take(n).enumerate() {
        let rec = rec.unwrap();
        let day = month.first_day() + chrono::Days::new(i as u64 % u64::from(month.days()));
        let mut row: Vec<String> = rec.iter().map(String::from).collect();
        row[bps] = format!("{} 00:00:00", month.first_day());
        row[bpe] = format!("{} 00:00:00", month.next().first_day());
        row[cps] = format!("{day} 10:00:00");
        row[cpe] = format!("{day} 11:00:00");
        sum += dec(&row[billed]);
        w.write_record(&row).unwrap();
    }
    w.flush().unwrap();
    sum.normalize()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_emails_the_previous_months_report_once() {
    let smtp = common::SmtpServer::start().await;
    for db in common::both_backends().await {
        let backend = db.backend;
        let month = Month::of(Utc::now()).previous();
        let dir = tempfile::tempdir().unwrap();
        let export = dir.path().join("focus.csv");
        let billed = focus_rows_in(month, 40, &export);
        {
            let store = Store::open(&db.url).await.unwrap();
            let r = ingest_file(&store, &export, None, false).await.unwrap();
            assert_eq!(r.rows_stored, 40, "{backend}");
            store.close().await;
        }
        let before = smtp.messages().len();
        let mut cfg = common::test_config(&db);
        cfg.seed_when_empty = false;
        cfg.alerts.outbox_interval = Duration::from_millis(200);
        cfg.alerts.smtp.host = "127.0.0.1".into();
        cfg.alerts.smtp.port = Some(smtp.port);
        cfg.alerts.smtp.tls = bursar::notify::SmtpTls::None;
        cfg.alerts.smtp.from = "FinOps <finops@example.com>".into();
        cfg.report.email_to = vec!["cfo@example.com".into(), "team@example.com".into()];
        // Due on the 1st at 00:00 UTC: always past by now.
        cfg.report.at = "00:00".into();
        // Two replicas at once (on Postgres; SQLite mode is single-node), then a restart:
        // two messages in all.
        let a = common::TestServer::start(cfg.clone()).await;
        let b = match backend {
            "postgres" => Some(common::TestServer::start(cfg.clone()).await),
            _ => None,
        };
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        while smtp.messages().len() < before + 2 && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        a.stop().await.unwrap();
        if let Some(b) = b {
            b.stop().await.unwrap();
        }
        let again = common::TestServer::start(cfg.clone()).await;
        tokio::time::sleep(Duration::from_secs(2)).await;
        again.stop().await.unwrap();
        let mail: Vec<_> = smtp.messages().into_iter().skip(before).collect();
        assert_eq!(mail.len(), 2, "{backend}: one message per address, once");
        let mut to: Vec<&str> = mail.iter().map(|m| m.rcpt_tos[0].as_str()).collect();
        to.sort();
        assert_eq!(to, ["cfo@example.com", "team@example.com"], "{backend}");
        for m in &mail {
            assert_eq!(
                m.subject,
                format!("bursar spend report {month}"),
                "{backend}"
            );
            let text = m.text.as_deref().unwrap_or_default();
            assert!(
                text.contains(&format!("USD: billed {billed}")),
                "{backend}: {text}"
            );
            let html = m.html.as_deref().unwrap_or_default();
            assert!(
                html.contains(&format!("<td class=\"num billed\">{billed}</td>")),
                "{backend}"
            );
        }
        let store = Store::open(&db.url).await.unwrap();
        assert!(store.report_mail_queued(&month.to_string()).await.unwrap());
        let rows = store
            .list_outbox(Some(bursar::store::report::REPORT_OUTBOX_BUDGET))
            .await
            .unwrap();
        assert_eq!(rows.len(), 2, "{backend}");
        assert!(
            rows.iter()
                .all(|r| r.state == "delivered" && r.period_key == month.to_string())
        );
        store.close().await;
    }
}
