//! TLS and mutual TLS on both ports, with a throwaway CA made by `openssl` (`common::pki`):
//! a client trusting the CA is served, a plaintext client or one without the CA is not; a
//! mutual-TLS server refuses a client without a certificate or with one from another CA and
//! serves one the CA signed; the HTTP port (`/metrics`, `/report`) over HTTPS through
//! reqwest; and `bursar` client commands and `bursar agent` with `--token`, `--ca-file`,
//! `--cert-file` and `--key-file` end to end (exit codes and messages).
mod common;

use std::process::Command;
use std::time::Duration;

use bursar::config::Config;
use bursar::config::auth::TokenConfig;
use bursar::domain::auth::sha256_hex;
use bursar::proto;
use common::pki::Pki;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};

const PLACEMENT: &str = "tls-placement-token-31ab";
const FLEET: &str = "tls-fleet-token-77cd";

/// An in-process server with `[tls]` (and tokens), on port-0 listeners for gRPC and HTTP.
struct TlsServer {
    grpc: String,
    http: String,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    handle: tokio::task::JoinHandle<Result<(), bursar::server::RunError>>,
}

impl TlsServer {
    async fn start(db: &common::TestDb, pki: &Pki, mutual: bool) -> TlsServer {
        let mut c: Config = common::test_config(db);
        c.tls.cert_file = Some(pki.server_cert.clone());
        c.tls.key_file = Some(pki.server_key.clone());
        if mutual {
            c.tls.client_ca_file = Some(pki.ca.clone());
        }
        c.auth.tokens = vec![
            TokenConfig {
                name: "placer".into(),
                sha256: sha256_hex(PLACEMENT),
                roles: vec!["placement".into()],
            },
            TokenConfig {
                name: "agent".into(),
                sha256: sha256_hex(FLEET),
                roles: vec!["fleet".into()],
            },
        ];
        let grpc = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let http = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let (g, h) = (grpc.local_addr().unwrap(), http.local_addr().unwrap());
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let handle = tokio::spawn(bursar::server::run_with_http(c, grpc, Some(http), async {
            let _ = rx.await;
        }));
        let s = TlsServer {
            grpc: format!("https://127.0.0.1:{}", g.port()),
            http: format!("https://127.0.0.1:{}", h.port()),
            stop: Some(tx),
            handle,
        };
        // Ready when a client with the CA (and the client certificate) is served.
        let deadline = tokio::time::Instant::now() + common::START_DEADLINE;
        loop {
            let id = mutual.then_some((pki.client_cert.as_path(), pki.client_key.as_path()));
            if health(&s.grpc, Some(&pki.ca), id).await.is_ok() {
                break;
            }
            assert!(!s.handle.is_finished(), "the server stopped");
            assert!(tokio::time::Instant::now() < deadline, "never served TLS");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        s
    }

    async fn stop(mut self) {
        let _ = self.stop.take().unwrap().send(());
        self.handle.await.unwrap().unwrap();
    }
}

/// A channel to `url` trusting `ca` (none: the system roots), presenting `identity`.
async fn connect(
    url: &str,
    ca: Option<&std::path::Path>,
    identity: Option<(&std::path::Path, &std::path::Path)>,
) -> Result<Channel, String> {
    let mut e = Endpoint::from_shared(url.to_string())
        .unwrap()
        .connect_timeout(Duration::from_secs(5));
    if url.starts_with("https://") {
        let _ = tokio_rustls::rustls::crypto::ring::default_provider().install_default();
        let mut tls = ClientTlsConfig::new();
        tls = match ca {
            Some(ca) => tls.ca_certificate(Certificate::from_pem(Pki::read(ca))),
            None => tls.with_native_roots(),
        };
        if let Some((c, k)) = identity {
            tls = tls.identity(Identity::from_pem(Pki::read(c), Pki::read(k)));
        }
        e = e.tls_config(tls).unwrap();
    }
    e.connect().await.map_err(|e| format!("{e:?}"))
}

/// A health check through a fresh connection: the error of the connect or the call.
async fn health(
    url: &str,
    ca: Option<&std::path::Path>,
    identity: Option<(&std::path::Path, &std::path::Path)>,
) -> Result<(), String> {
    let ch = connect(url, ca, identity).await?;
    tonic_health::pb::health_client::HealthClient::new(ch)
        .check(tonic_health::pb::HealthCheckRequest::default())
        .await
        .map(drop)
        .map_err(|s| format!("{s:?}"))
}

fn https_client(
    pki: &Pki,
    identity: Option<(&std::path::Path, &std::path::Path)>,
) -> reqwest::Client {
    let mut b = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(&Pki::read(&pki.ca)).unwrap())
        .timeout(Duration::from_secs(30));
    if let Some((c, k)) = identity {
        let mut pem = Pki::read(c);
        pem.extend(Pki::read(k));
        b = b.identity(reqwest::Identity::from_pem(&pem).unwrap());
    }
    b.build().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_ports_serve_tls_to_a_client_that_trusts_the_ca_and_nothing_in_plaintext() {
    let pki = Pki::new();
    let db = common::fresh_sqlite();
    let server = TlsServer::start(&db, &pki, false).await;
    // The CA: served, with the token's role.
    let ch = connect(&server.grpc, Some(&pki.ca), None).await.unwrap();
    let mut p = proto::pricing_service_client::PricingServiceClient::with_interceptor(
        ch,
        |mut r: tonic::Request<()>| {
            r.metadata_mut().insert(
                "authorization",
                format!("Bearer {PLACEMENT}").parse().unwrap(),
            );
            Ok(r)
        },
    );
    let prices = p
        .list_prices(proto::ListPricesRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert!(prices.total_matching > 0, "the seed prices over TLS");
    // Plaintext to the TLS port, or TLS without the CA: refused.
    let plain = server.grpc.replace("https://", "http://");
    let e = health(&plain, None, None).await.unwrap_err();
    assert!(!e.is_empty());
    let e = health(&server.grpc, None, None).await.unwrap_err();
    assert!(
        e.contains("Certificate") || e.contains("certificate"),
        "{e}"
    );
    // The HTTP port over HTTPS; plaintext HTTP gets nothing.
    let web = https_client(&pki, None);
    let r = web
        .get(format!("{}/metrics", server.http))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(
        r.text()
            .await
            .unwrap()
            .contains("bursar_rpc_requests_total")
    );
    assert_eq!(
        web.get(format!("{}/report?month=2026-01", server.http))
            .send()
            .await
            .unwrap()
            .status(),
        401,
        "tokens on the HTTPS port too"
    );
    let plain_http = server.http.replace("https://", "http://");
    assert!(reqwest::get(format!("{plain_http}/metrics")).await.is_err());
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutual_tls_serves_only_clients_with_a_certificate_the_ca_signed() {
    let pki = Pki::new();
    let db = common::fresh_sqlite();
    let server = TlsServer::start(&db, &pki, true).await;
    let good = (pki.client_cert.as_path(), pki.client_key.as_path());
    let rogue = (pki.rogue_cert.as_path(), pki.rogue_key.as_path());
    health(&server.grpc, Some(&pki.ca), Some(good))
        .await
        .unwrap();
    assert!(
        health(&server.grpc, Some(&pki.ca), None).await.is_err(),
        "no client certificate"
    );
    assert!(
        health(&server.grpc, Some(&pki.ca), Some(rogue))
            .await
            .is_err(),
        "a certificate from another CA"
    );
    // The HTTP port too.
    let url = format!("{}/metrics", server.http);
    assert!(https_client(&pki, None).get(&url).send().await.is_err());
    assert!(
        https_client(&pki, Some(rogue))
            .get(&url)
            .send()
            .await
            .is_err()
    );
    let r = https_client(&pki, Some(good))
        .get(&url)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    // And the service still serves the good client after the refusals.
    health(&server.grpc, Some(&pki.ca), Some(good))
        .await
        .unwrap();
    server.stop().await;
}

fn bursar(args: &[&str], envs: &[(&str, &str)]) -> std::process::Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_bursar"));
    c.args(args);
    for k in [
        "BURSAR_TOKEN",
        "BURSAR_CA_FILE",
        "BURSAR_CERT_FILE",
        "BURSAR_KEY_FILE",
        "BURSAR_SERVER",
    ] {
        c.env_remove(k);
    }
    for (k, v) in envs {
        c.env(k, v);
    }
    c.output().unwrap()
}

fn stderr(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stderr).to_string()
}

fn join(a: &[&str], b: &[&str]) -> Vec<String> {
    a.iter().chain(b).map(|s| s.to_string()).collect()
}

fn run(args: &[String], envs: &[(&str, &str)]) -> std::process::Output {
    let a: Vec<&str> = args.iter().map(String::as_str).collect();
    bursar(&a, envs)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_commands_take_token_ca_file_and_a_client_certificate() {
    let pki = Pki::new();
    let db = common::fresh_sqlite();
    let ca = pki.ca.to_str().unwrap();
    let (cert, key) = (
        pki.client_cert.to_str().unwrap(),
        pki.client_key.to_str().unwrap(),
    );
    for mutual in [false, true] {
        let server = TlsServer::start(&db, &pki, mutual).await;
        let s = server.grpc.as_str();
        let mut base = vec!["sources", "--server", s, "--ca-file", ca, "--json"];
        if mutual {
            base.extend(["--cert-file", cert, "--key-file", key]);
        }
        let with = |extra: &[&str]| join(&base, extra);
        let o = run(&with(&["--token", PLACEMENT]), &[]);
        assert_eq!(o.status.code(), Some(0), "mutual {mutual}: {}", stderr(&o));
        let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        assert!(v["sources"].as_array().is_some_and(|a| !a.is_empty()));
        // BURSAR_TOKEN does the same.
        let o = run(&join(&base, &[]), &[("BURSAR_TOKEN", PLACEMENT)]);
        assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
        // No token, a token without the role: exit 1 with a clear line, never the token.
        let o = run(&join(&base, &[]), &[]);
        assert_eq!(o.status.code(), Some(1));
        assert!(stderr(&o).contains("not authenticated"), "{}", stderr(&o));
        assert!(stderr(&o).contains("--token"), "{}", stderr(&o));
        let o = run(&with(&["--token", FLEET]), &[]);
        assert_eq!(o.status.code(), Some(1));
        let e = stderr(&o);
        assert!(
            e.contains("permission denied") && e.contains("placement"),
            "{e}"
        );
        assert!(!e.contains(FLEET), "{e}");
        // Plaintext to the TLS port: exit 1; TLS flags with http://: exit 2.
        let plain = s.replace("https://", "http://");
        let o = bursar(&["sources", "--server", &plain, "--token", PLACEMENT], &[]);
        assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
        let o = bursar(&["sources", "--server", &plain, "--ca-file", ca], &[]);
        assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
        assert!(stderr(&o).contains("https://"), "{}", stderr(&o));
        if mutual {
            // No client certificate: the server refuses, exit 1.
            let o = bursar(
                &[
                    "sources",
                    "--server",
                    s,
                    "--ca-file",
                    ca,
                    "--token",
                    PLACEMENT,
                ],
                &[],
            );
            assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
            let o = run(&with(&["--token", PLACEMENT, "--cert-file", ca]), &[]);
            assert_ne!(
                o.status.code(),
                Some(0),
                "--cert-file given twice is refused"
            );
        }
        server.stop().await;
    }
}

struct OneGpu;

impl bursar::cli::agent::GpuReader for OneGpu {
    fn read(&mut self) -> Result<Vec<bursar::cli::agent::GpuReading>, String> {
        Ok(vec![bursar::cli::agent::GpuReading {
            gpu: "0".into(),
            utilization_percent: 42.0,
            memory_used_mib: Some(100.0),
            power_watts: Some(70.0),
        }])
    }
}

fn agent_args(flags: &[&str]) -> bursar::cli::agent::AgentArgs {
    use clap::Parser;
    let mut argv = vec!["bursar", "agent"];
    argv.extend_from_slice(flags);
    match bursar::cli::Cli::try_parse_from(argv).unwrap().command {
        bursar::cli::Command::Agent(a) => a,
        other => panic!("not the agent: {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_agent_pushes_over_mutual_tls_with_a_fleet_token() {
    let pki = Pki::new();
    let db = common::fresh_sqlite();
    let server = TlsServer::start(&db, &pki, true).await;
    let ca = pki.ca.to_str().unwrap();
    let (cert, key) = (
        pki.client_cert.to_str().unwrap(),
        pki.client_key.to_str().unwrap(),
    );
    let flags = |token: &'static str| {
        agent_args(&[
            "--server",
            &server.grpc,
            "--instance-id",
            "i-0abc",
            "--once",
            "--token",
            token,
            "--ca-file",
            ca,
            "--cert-file",
            cert,
            "--key-file",
            key,
        ])
    };
    let dbg = format!("{:?}", flags(FLEET));
    assert!(!dbg.contains(FLEET), "Debug hides the token: {dbg}");
    let summary =
        bursar::cli::agent::run_with(&flags(FLEET), Box::new(OneGpu), std::future::pending())
            .await
            .unwrap();
    assert_eq!(
        (summary.read, summary.accepted, summary.rejected),
        (1, 1, 0)
    );
    let e =
        bursar::cli::agent::run_with(&flags(PLACEMENT), Box::new(OneGpu), std::future::pending())
            .await
            .unwrap_err();
    assert_eq!(e.exit_code(), 1, "{e}");
    assert!(!e.to_string().contains(PLACEMENT), "{e}");
    server.stop().await;
}
