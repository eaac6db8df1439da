//! The `bursar` binary end to end: exit codes, import-catalog, serve + prices client.
mod common;

use std::io::Write;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

fn bursar(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_bursar"))
        .args(args)
        .env_remove("BURSAR_DATABASE_URL")
        .env_remove("BURSAR_CONFIG")
        .env_remove("BURSAR_SERVER")
        .output()
        .expect("run bursar")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).to_string()
}

#[test]
fn unknown_database_scheme_exits_2_with_one_line() {
    let o = bursar(&["migrate", "--database-url", "mysql://root@127.0.0.1/test"]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    let err = stderr(&o);
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(err.contains("unsupported database URL scheme"), "{err}");
}

#[test]
fn unreachable_postgres_exits_2() {
    let o = bursar(&[
        "migrate",
        "--database-url",
        "postgres://postgres@127.0.0.1:1/test",
    ]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("cannot open database"));
}

#[test]
fn unreadable_or_invalid_config_exits_2() {
    let o = bursar(&["serve", "--config", "/nonexistent/bursar.toml"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("cannot read config file"),
        "{}",
        stderr(&o)
    );

    let mut f = tempfile::NamedTempFile::new().unwrap();
    writeln!(f, "[sources.azure]\ninterval = \"whenever\"").unwrap();
    let o = bursar(&["serve", "--config", f.path().to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2));
    let err = stderr(&o);
    assert!(err.contains("interval"), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "one clear line: {err}");
}

#[test]
fn bad_usage_exits_2_and_unreachable_server_exits_1() {
    assert_eq!(bursar(&["frobnicate"]).status.code(), Some(2));
    let o = bursar(&["poll", "--once", "--database-url", "sqlite::memory:"]);
    assert_eq!(
        o.status.code(),
        Some(2),
        "no source enabled: {}",
        stderr(&o)
    );
    let o = bursar(&[
        "ingest",
        ".",
        "--lock-wait",
        "soon",
        "--database-url",
        "sqlite::memory:",
    ]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("--lock-wait"), "{}", stderr(&o));
    let o = bursar(&[
        "ingest",
        ".",
        "--accept-bad-rows",
        "5",
        "--database-url",
        "sqlite::memory:",
    ]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("--accept-bad-rows"), "{}", stderr(&o));
    let o = bursar(&["prices", "--server", "http://127.0.0.1:1"]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
}

/// A small catalog: the first rows of each real SkyPilot file.
fn small_catalog(dir: &std::path::Path, rows: usize) {
    for p in ["aws", "gcp", "azure"] {
        std::fs::create_dir_all(dir.join(p)).unwrap();
        let text = common::read_shared(&format!("skypilot-catalog/{p}/vms.csv"));
        let head: Vec<&str> = text.lines().take(rows + 1).collect();
        std::fs::write(dir.join(p).join("vms.csv"), head.join("\n") + "\n").unwrap();
    }
    std::fs::create_dir_all(dir.join("common")).unwrap();
    std::fs::copy(
        common::shared("skypilot-catalog/common/metadata.csv"),
        dir.join("common/metadata.csv"),
    )
    .unwrap();
}

#[tokio::test]
async fn import_catalog_then_serve_then_prices_json() {
    let cat = tempfile::tempdir().unwrap();
    small_catalog(cat.path(), 200);
    for db in common::both_backends().await {
        let o = bursar(&[
            "import-catalog",
            cat.path().to_str().unwrap(),
            "--quiet",
            "--database-url",
            &db.url,
        ]);
        assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
        let out = String::from_utf8_lossy(&o.stdout).to_string();
        assert!(out.contains("stored"), "{out}");
        // Importing the same folder again stores no new history.
        let o = bursar(&[
            "import-catalog",
            cat.path().to_str().unwrap(),
            "--quiet",
            "--database-url",
            &db.url,
        ]);
        let out = String::from_utf8_lossy(&o.stdout).to_string();
        assert!(out.contains("(0 new or changed prices)"), "{out}");

        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let listen = format!("127.0.0.1:{port}");
        let mut child = Command::new(env!("CARGO_BIN_EXE_bursar"))
            .args(["serve", "--listen", &listen, "--database-url", &db.url])
            .env_remove("BURSAR_CONFIG")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let server = format!("http://{listen}");
        let mut ok = None;
        for _ in 0..100 {
            let o = bursar(&[
                "prices",
                "--server",
                &server,
                "--json",
                "--provider",
                "aws",
                "--limit",
                "5",
            ]);
            if o.status.success() {
                ok = Some(o);
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let o = ok.expect("server answered");
        let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        let prices = v["prices"].as_array().unwrap();
        assert_eq!(prices.len(), 5, "{}", db.backend);
        assert!(
            prices
                .iter()
                .all(|p| p["provider"] == "aws" && p["source"] == "catalog" && p["seed"] == false)
        );
        assert!(v["total_matching"].as_u64().unwrap() > 5);
        // Amounts are exact decimal strings.
        let amount = prices[0]["price_per_hour"]["amount"].as_str().unwrap();
        amount.parse::<rust_decimal::Decimal>().unwrap();

        // A table without --json, INVALID_ARGUMENT as exit 2.
        let o = bursar(&[
            "prices", "--server", &server, "--gpu", "A100", "--limit", "3",
        ]);
        assert!(o.status.success());
        assert!(String::from_utf8_lossy(&o.stdout).contains("INSTANCE TYPE"));
        let o = bursar(&["prices", "--server", &server, "--max-price", "lots"]);
        assert_eq!(o.status.code(), Some(2));
        assert!(stderr(&o).contains("max_price_per_hour"));
        let o = bursar(&["sources", "--server", &server, "--json"]);
        let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        assert!(
            v["sources"]
                .as_array()
                .unwrap()
                .iter()
                .any(|s| s["name"] == "catalog" && s["state"] == "ok")
        );

        // SIGTERM: graceful shutdown, exit 0.
        Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .unwrap();
        let status = child.wait().unwrap();
        assert_eq!(status.code(), Some(0), "{}", db.backend);
    }
}

/// A list with nothing in it says so instead of printing a bare header, on both backends.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn empty_lists_say_that_nothing_matched() {
    for db in common::both_backends().await {
        let server = common::TestServer::start(common::test_config(&db)).await;
        for (args, want) in [
            (vec!["ingest-runs"], "no ingest runs matched\n"),
            (vec!["budgets", "list"], "no budgets matched\n"),
            (vec!["budgets", "status"], "no budgets matched\n"),
            (
                vec!["unavailable", "list"],
                "no availability marks matched\n",
            ),
        ] {
            let mut all: Vec<String> = args.iter().map(|s| s.to_string()).collect();
            all.extend(["--server".to_string(), server.url.clone()]);
            let o = tokio::task::spawn_blocking(move || {
                let a: Vec<&str> = all.iter().map(String::as_str).collect();
                bursar(&a)
            })
            .await
            .unwrap();
            assert!(o.status.success(), "{args:?}: {}", stderr(&o));
            assert_eq!(
                String::from_utf8_lossy(&o.stdout),
                want,
                "{}: {args:?}",
                db.backend
            );
        }
        server.stop().await.unwrap();
    }
}
