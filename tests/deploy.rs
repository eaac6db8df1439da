//! The deployment files and `bursar health`: the kustomize base validated against the
//! Kubernetes schema offline (kubernetes-validate in the test venv, strict) and checked for
//! what bursar needs (deploy/kubernetes/check.py); its `bursar.toml` run by a real
//! `bursar serve` on Postgres with the environment the Deployment sets, answering the
//! probes' health checks through `bursar health`; the Containerfile's shape.
mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use common::{free_port, fresh_postgres};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn python() -> PathBuf {
    std::env::var_os("BURSAR_TEST_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo().join(".venv/bin/python"))
}

fn bursar(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_bursar"))
        .args(args)
        .env_remove("BURSAR_SERVER")
        .output()
        .expect("run bursar")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Runs check.py on the base; returns the ConfigMap's bursar.toml, written to `dir`.
fn checked_base(dir: &Path) -> PathBuf {
    let toml = dir.join("bursar.toml");
    let out = Command::new(python())
        .arg(repo().join("deploy/kubernetes/check.py"))
        .arg(repo().join("deploy/kubernetes/base"))
        .arg(&toml)
        .output()
        .expect("run deploy/kubernetes/check.py (the test venv: .ci/run)");
    assert!(
        out.status.success(),
        "the kustomize base is not valid:\n{}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    assert!(
        text(&out.stdout).contains("resources valid"),
        "{}",
        text(&out.stdout)
    );
    toml
}

#[test]
fn the_checker_rejects_a_broken_base() {
    // The checker must be able to fail: a Deployment with a misspelt field, one replica, no
    // readiness probe and a grace period shorter than the drain.
    let dir = tempfile::tempdir().unwrap();
    let base = repo().join("deploy/kubernetes/base");
    for f in std::fs::read_dir(&base).unwrap() {
        let f = f.unwrap().path();
        std::fs::copy(&f, dir.path().join(f.file_name().unwrap())).unwrap();
    }
    let dep = dir.path().join("deployment.yaml");
    let broken = std::fs::read_to_string(&dep)
        .unwrap()
        .replace("replicas: 3", "replicas: 1")
        .replace("revisionHistoryLimit", "revisionHistoryLimmit")
        .replace("          readinessProbe:", "          readinessProbeX:")
        .replace(
            "terminationGracePeriodSeconds: 30",
            "terminationGracePeriodSeconds: 20",
        );
    std::fs::write(&dep, broken).unwrap();
    let out = Command::new(python())
        .arg(repo().join("deploy/kubernetes/check.py"))
        .arg(dir.path())
        .arg(dir.path().join("out.toml"))
        .output()
        .unwrap();
    let err = text(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(err.contains("replicas 1, want 3"), "{err}");
    assert!(
        err.contains("must end before terminationGracePeriodSeconds 20"),
        "{err}"
    );
    assert!(
        err.contains("revisionHistoryLimmit") || err.contains("schema"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_kubernetes_base_validates_and_its_config_serves_health_to_the_probes() {
    let dir = tempfile::tempdir().unwrap();
    let toml = checked_base(dir.path());
    let db = fresh_postgres().await;
    let grpc = format!("127.0.0.1:{}", free_port());
    let http = format!("127.0.0.1:{}", free_port());
    let log = std::fs::File::create(dir.path().join("serve.log")).unwrap();
    // The Secret's `auth-tokens`: one caller, stored as its token's SHA-256 only.
    let token = "deploy-test-token-5b1c0e7a";
    let digest = {
        use sha2::Digest;
        let d = sha2::Sha256::digest(token.as_bytes());
        d.iter().map(|b| format!("{b:02x}")).collect::<String>()
    };
    // The Deployment's environment, on loopback ports, with every live price source off
    // (nothing leaves loopback in tests).
    let mut serve = tokio::process::Command::new(env!("CARGO_BIN_EXE_bursar"));
    serve
        .args(["serve"])
        .env("BURSAR_CONFIG", &toml)
        .env("BURSAR_LISTEN", &grpc)
        .env("BURSAR_METRICS_LISTEN", &http)
        .env("BURSAR_LOG_FORMAT", "json")
        .env("BURSAR_DATABASE_URL", &db.url)
        .env("BURSAR_AUTH_TOKENS", format!("airflow:placement:{digest}"))
        .env("BURSAR_LEADER_HOLDER", "bursar-7d9f-abcde")
        .stdout(Stdio::null())
        .stderr(log)
        .kill_on_drop(true);
    for s in bursar::clouds::SOURCES.iter() {
        serve.env(
            format!("BURSAR_{}_ENABLED", s.config_key().to_ascii_uppercase()),
            "false",
        );
    }
    let mut child = serve.spawn().unwrap();
    let server = format!("http://{grpc}");
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let o = bursar(&["health", "--server", &server, "--timeout", "2s"]);
        if o.status.success() {
            assert_eq!(text(&o.stdout).trim(), "status: SERVING");
            break;
        }
        assert!(
            child.try_wait().unwrap().is_none(),
            "serve exited with the Deployment's config: {}",
            std::fs::read_to_string(dir.path().join("serve.log")).unwrap()
        );
        assert!(
            std::time::Instant::now() < deadline,
            "not SERVING within 60 s: {}",
            text(&o.stderr)
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // The readiness probe's service, and --json.
    let o = bursar(&[
        "health",
        "--server",
        &server,
        "--service",
        "bursar.v1.PlacementService",
        "--json",
    ]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["status"], "SERVING");
    assert_eq!(v["service"], "bursar.v1.PlacementService");
    // A service the server does not serve: exit 1, named.
    let o = bursar(&[
        "health",
        "--server",
        &server,
        "--service",
        "no.such.Service",
    ]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        text(&o.stderr).contains("SERVICE_UNKNOWN"),
        "{}",
        text(&o.stderr)
    );
    // The metrics port the Deployment exposes answers, and the only replica takes the lease
    // (within one lease period of starting).
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let page = reqwest::get(format!("http://{http}/metrics"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert!(page.contains("bursar_"), "{page}");
        if page.lines().any(|l| l == "bursar_leader 1") {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "never led:\n{page}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // `[auth] required`: a call without the Secret's token is refused, with it answered.
    let o = bursar(&["sources", "--server", &server]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o.stderr));
    assert!(
        text(&o.stderr).contains("not authenticated"),
        "{}",
        text(&o.stderr)
    );
    let o = bursar(&["sources", "--server", &server, "--token", token, "--json"]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    child.start_kill().unwrap();
    let _ = child.wait().await;
}

#[test]
fn health_fails_on_an_unreachable_server_and_bad_flags() {
    let port = free_port();
    let o = bursar(&[
        "health",
        "--server",
        &format!("127.0.0.1:{port}"),
        "--timeout",
        "2s",
    ]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o.stderr));
    assert!(
        text(&o.stderr).contains(&port.to_string()),
        "{}",
        text(&o.stderr)
    );
    let o = bursar(&["health", "--timeout", "soon"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o.stderr));
}

#[test]
fn the_containerfile_builds_in_stages_and_runs_unprivileged_with_a_health_check() {
    let file = std::fs::read_to_string(repo().join("Containerfile")).unwrap();
    // Instructions, with continuation lines joined.
    let joined = file.replace("\\\n", " ");
    let lines: Vec<&str> = joined
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect();
    let froms: Vec<usize> = (0..lines.len())
        .filter(|&i| lines[i].starts_with("FROM "))
        .collect();
    assert!(froms.len() >= 2, "multi-stage: {froms:?}");
    let last = &lines[*froms.last().unwrap()..];
    // The runtime stage: a non-root user, the binary from the build stage, a health check
    // through `bursar health`, the default ports.
    let user = last
        .iter()
        .find_map(|l| l.strip_prefix("USER "))
        .expect("USER in the final stage");
    let uid = user.split(':').next().unwrap().trim();
    assert!(uid != "0" && uid != "root", "runs as {uid}");
    assert!(
        last.iter()
            .any(|l| l.starts_with("COPY --from=build") && l.contains("target/release/bursar")),
        "{last:?}"
    );
    let health = last
        .iter()
        .find(|l| l.starts_with("HEALTHCHECK"))
        .expect("HEALTHCHECK");
    assert!(health.contains(r#""bursar", "health""#), "{health}");
    let cfg = bursar::config::Config::default();
    let expose = last.iter().find(|l| l.starts_with("EXPOSE ")).unwrap();
    for addr in [&cfg.listen, &cfg.metrics_listen] {
        let port = addr.rsplit(':').next().unwrap();
        assert!(expose.contains(port), "{expose} lacks {port}");
    }
    // Every file the build reads at compile time is copied into the build stage, and the
    // ignore file keeps none of them out.
    let build = &lines[froms[0]..froms[1]];
    let copied: Vec<&str> = build
        .iter()
        .filter_map(|l| l.strip_prefix("COPY "))
        .flat_map(|l| {
            let parts: Vec<&str> = l.split_whitespace().collect();
            parts[..parts.len() - 1].to_vec()
        })
        .collect();
    for need in [
        "Cargo.toml",
        "Cargo.lock",
        "build.rs",
        "proto",
        "migrations",
        "seed",
        "src",
    ] {
        assert!(
            copied.contains(&need),
            "the build stage does not copy {need}"
        );
    }
    for c in &copied {
        assert!(repo().join(c).exists(), "COPY {c}: no such path");
    }
    let ignore = std::fs::read_to_string(repo().join(".containerignore")).unwrap();
    for l in ignore.lines().map(str::trim) {
        assert!(
            !copied.contains(&l),
            ".containerignore drops {l}, which the build copies"
        );
    }
    assert!(
        ignore.lines().any(|l| l.trim() == "target"),
        "target/ stays out of the context"
    );
}
