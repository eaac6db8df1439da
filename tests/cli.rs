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

#[tokio::test]
async fn import_catalog_then_serve_then_prices_json() {
    let cat = tempfile::tempdir().unwrap();
    common::small_catalog(cat.path(), 200);
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
            // Tests run side by side: no HTTP port on the default address.
            .args(["--metrics-listen", ""])
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

/// Bytes as a binary file holds them: every byte value, terminal escapes, long "lines".
fn binary_bytes() -> Vec<u8> {
    let mut b = Vec::new();
    for i in 0..40u32 {
        b.extend(0u8..=255);
        b.extend_from_slice(b"\x1b[2J\x1b]0;pwned\x07");
        b.extend(std::iter::repeat_n(b'A' + (i % 26) as u8, 500));
    }
    b
}

/// What a user sees on the terminal: short, and no control character but line ends.
#[track_caller]
fn assert_tame(what: &str, err: &[u8]) {
    let text = String::from_utf8_lossy(err);
    assert!(
        err.len() < 2000,
        "{what}: {} bytes on stderr: {text:.500}",
        err.len()
    );
    assert!(
        !text.chars().any(|c| c.is_control() && c != '\n'),
        "{what}: control characters on stderr: {text:?}"
    );
}

#[test]
fn binary_inputs_are_not_echoed_to_the_terminal() {
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}", dir.path().join("b.db").display());
    for name in ["garbage.csv", "garbage.jsonl", "garbage"] {
        let p = dir.path().join(name);
        std::fs::write(&p, binary_bytes()).unwrap();
        let o = bursar(&["ingest", p.to_str().unwrap(), "--database-url", &db]);
        assert!(
            matches!(o.status.code(), Some(1 | 2)),
            "{name}: {:?} {}",
            o.status,
            stderr(&o)
        );
        assert_tame(name, &o.stderr);
    }
    // A config file of valid UTF-8 full of control characters and a 20 KB "key", and one
    // that is not UTF-8 at all.
    let text = format!(
        "\u{1b}[2J{}\u{0}{}\n",
        "\u{1b}]0;pwned\u{7}".repeat(200),
        "k".repeat(20_000)
    );
    let cfg = dir.path().join("controls.toml");
    std::fs::write(&cfg, text).unwrap();
    let bin = dir.path().join("binary.toml");
    std::fs::write(&bin, binary_bytes()).unwrap();
    for p in [&cfg, &bin] {
        let o = bursar(&["migrate", "--config", p.to_str().unwrap()]);
        assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
        assert!(stderr(&o).contains("config file"), "{}", stderr(&o));
        assert_tame(&p.display().to_string(), &o.stderr);
    }
    // A 10 KB flag value is quoted short too.
    let long = format!("{}\u{1b}[31m{}", "x".repeat(5_000), "y".repeat(5_000));
    for args in [
        &["spend", "--from", &long, "--to", "2024-10-01"][..],
        &["select", "--hours", "1", "--label", &long],
        &[
            "unavailable",
            "mark",
            "--provider",
            "aws",
            "--reason",
            "r",
            "--for",
            &long,
        ],
    ] {
        let o = bursar(args);
        assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
        assert!(stderr(&o).contains("(10005 bytes)"), "{}", stderr(&o));
        assert_tame(args[0], &o.stderr);
    }
}

/// Runs bursar with its standard output a pipe whose reading end is already closed.
fn bursar_into_closed_pipe(args: &[&str]) -> Output {
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    Command::new(env!("CARGO_BIN_EXE_bursar"))
        .args(args)
        .env_remove("BURSAR_DATABASE_URL")
        .env_remove("BURSAR_CONFIG")
        .env_remove("BURSAR_SERVER")
        .env("RUST_BACKTRACE", "1")
        .stdout(writer)
        .stderr(Stdio::piped())
        .output()
        .expect("run bursar")
}

/// `bursar serve` on a fresh SQLite database (seed prices), stderr to a file; returns the
/// child and the server's URL once it answers.
async fn serve_logging_to(db: &str, log: &std::path::Path) -> (std::process::Child, String) {
    let listen = format!("127.0.0.1:{}", common::free_port());
    let child = Command::new(env!("CARGO_BIN_EXE_bursar"))
        .args(["serve", "--listen", &listen, "--database-url", db])
        .args(["--metrics-listen", ""])
        .env_remove("BURSAR_CONFIG")
        .env_remove("NO_COLOR")
        .env_remove("RUST_LOG")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(log).unwrap())
        .spawn()
        .unwrap();
    let server = format!("http://{listen}");
    let deadline = std::time::Instant::now() + common::START_DEADLINE;
    while !bursar(&["sources", "--server", &server]).status.success() {
        assert!(std::time::Instant::now() < deadline, "server did not start");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    (child, server)
}

#[tokio::test]
async fn a_closed_pipe_ends_every_command_quietly_and_logs_are_plain_text() {
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}", dir.path().join("b.db").display());
    let log = dir.path().join("serve.log");
    let (mut child, server) = serve_logging_to(&db, &log).await;
    let s = server.as_str();
    for args in [
        &["prices", "--server", s, "--limit", "1000"][..],
        &["prices", "--server", s, "--limit", "1000", "--json"],
        &["budgets", "list", "--server", s, "--json"],
        &["budgets", "list", "--server", s],
        &["budgets", "status", "--server", s, "--json"],
        &["sources", "--server", s],
        &["sources", "--server", s, "--json"],
        &["unavailable", "list", "--server", s],
        &["ingest-runs", "--server", s, "--json"],
        &["migrate", "--database-url", &db],
    ] {
        let o = bursar_into_closed_pipe(args);
        assert_eq!(o.status.code(), Some(0), "{args:?}: {}", stderr(&o));
        assert_eq!(stderr(&o), "", "{args:?}: nothing on stderr");
    }
    // And through a shell pipe into head, as a user would.
    let o = Command::new("bash")
        .arg("-c")
        .arg(format!(
            "set -o pipefail; '{}' prices --server {s} --limit 1000 | head -1",
            env!("CARGO_BIN_EXE_bursar")
        ))
        .env("RUST_BACKTRACE", "1")
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(String::from_utf8_lossy(&o.stdout).lines().count(), 1);
    assert_eq!(stderr(&o), "");

    Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert_eq!(child.wait().unwrap().code(), Some(0));
    // stderr is a file: plain text, the address printed plainly, no SQL.
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(
        !text.contains('\u{1b}'),
        "colour codes in a log file: {text:?}"
    );
    let listen = s.trim_start_matches("http://");
    assert!(
        text.lines()
            .any(|l| l.contains("serving gRPC") && l.contains(&format!("addr={listen}"))),
        "{text}"
    );
    assert!(!text.contains("Some("), "{text}");
    assert!(!text.contains("CREATE TABLE"), "{text}");
}

/// The README's command table has a row for every subcommand, and `serve --help` names every
/// service `serve` runs (the README once left out `budgets` and named only PricingService).
#[test]
fn the_readme_and_serve_help_name_every_command_and_service() {
    use clap::CommandFactory;
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md"))
        .expect("README.md");
    for sub in bursar::cli::Cli::command().get_subcommands() {
        let row = format!("| `bursar {}", sub.get_name());
        assert!(readme.contains(&row), "README has no row for {row}`");
    }
    let help = bursar(&["serve", "--help"]);
    assert!(help.status.success());
    let help = String::from_utf8_lossy(&help.stdout);
    let serve_row = readme
        .lines()
        .find(|l| l.starts_with("| `bursar serve"))
        .expect("serve row");
    for service in [
        "PricingService",
        "PlacementService",
        "SpendService",
        "BudgetService",
    ] {
        assert!(help.contains(service), "serve --help leaves out {service}");
        assert!(
            serve_row.contains(service),
            "README's serve row leaves out {service}"
        );
    }
}
