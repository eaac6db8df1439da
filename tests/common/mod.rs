//! Shared test harness: a fresh database per test on each backend (SQLite file and a new
//! Postgres database), the server started on port 0, local fixture HTTP servers that serve
//! recorded responses, a moto_server process, and a real Prometheus (`prometheus.rs`).
//! Nothing leaves loopback.
#![allow(dead_code)]

pub mod fault_proxy;
pub mod pki;
pub mod prometheus;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use axum::body::Bytes;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use bursar::config::Config;
use bursar::domain::budget::Budget;
use sqlx::Connection;
use tokio::sync::oneshot;

/// A budget named `name` from the JSON of its other fields (`{"amount":"100"}`), the shape
/// the store keeps.
pub fn budget(name: &str, json: &str) -> Budget {
    let mut spec: serde_json::Value = serde_json::from_str(json).unwrap();
    spec["name"] = name.into();
    serde_json::from_value(spec).unwrap()
}

/// Path of a file under ../shared/data.
pub fn shared(path: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../shared/data")
        .join(path)
}

pub fn read_shared(path: &str) -> String {
    std::fs::read_to_string(shared(path)).unwrap_or_else(|e| panic!("reading {path}: {e}"))
}

/// A small SkyPilot catalog in `dir`: the first `rows` rows of each real provider file.
pub fn small_catalog(dir: &std::path::Path, rows: usize) {
    for p in ["aws", "gcp", "azure"] {
        std::fs::create_dir_all(dir.join(p)).unwrap();
        let text = read_shared(&format!("skypilot-catalog/{p}/vms.csv"));
        let head: Vec<&str> = text.lines().take(rows + 1).collect();
        std::fs::write(dir.join(p).join("vms.csv"), head.join("\n") + "\n").unwrap();
    }
    std::fs::create_dir_all(dir.join("common")).unwrap();
    std::fs::copy(
        shared("skypilot-catalog/common/metadata.csv"),
        dir.join("common/metadata.csv"),
    )
    .unwrap();
}

/// The Postgres server tests create their databases on.
pub fn pg_admin_url() -> String {
    std::env::var("DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_string())
}

/// A fresh, empty database of one backend.
pub struct TestDb {
    pub backend: &'static str,
    pub url: String,
    _dir: Option<tempfile::TempDir>,
}

static COUNTER: AtomicU64 = AtomicU64::new(0);

pub fn fresh_sqlite() -> TestDb {
    let dir = tempfile::tempdir().expect("tempdir");
    let url = format!("sqlite://{}", dir.path().join("bursar.db").display());
    TestDb {
        backend: "sqlite",
        url,
        _dir: Some(dir),
    }
}

pub async fn fresh_postgres() -> TestDb {
    let admin = pg_admin_url();
    let n = COUNTER.fetch_add(1, Ordering::SeqCst);
    let name = format!("bursar_test_{}_{}_{}", std::process::id(), n, rand_suffix());
    let mut conn = sqlx::PgConnection::connect(&admin)
        .await
        .unwrap_or_else(|e| {
            panic!("Postgres at {admin} is required for tests (set DATABASE_URL): {e}")
        });
    sqlx::query(&format!("CREATE DATABASE \"{name}\""))
        .execute(&mut conn)
        .await
        .expect("create test database");
    let mut url = url::Url::parse(&admin).expect("DATABASE_URL is a URL");
    url.set_path(&format!("/{name}"));
    TestDb {
        backend: "postgres",
        url: url.to_string(),
        _dir: None,
    }
}

fn rand_suffix() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos() as u64)
        .unwrap_or(0)
}

/// One fresh database per backend: every storage test runs on both.
pub async fn both_backends() -> Vec<TestDb> {
    vec![fresh_sqlite(), fresh_postgres().await]
}

/// A running bursar server on a port-0 listener (and its HTTP port on another, when started
/// with `start_with_http`).
pub struct TestServer {
    pub addr: SocketAddr,
    pub url: String,
    /// `http://127.0.0.1:PORT` of the HTTP port (`/metrics`), when it has one.
    pub http_url: Option<String>,
    stop: Option<oneshot::Sender<()>>,
    handle: Option<tokio::task::JoinHandle<Result<(), bursar::server::RunError>>>,
}

impl TestServer {
    pub async fn start(config: Config) -> TestServer {
        Self::start_on(config, None).await
    }

    /// Starts the server with its HTTP port (`/metrics`) on a port-0 listener too.
    pub async fn start_with_http(config: Config) -> TestServer {
        let http = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        Self::start_on(config, Some(http)).await
    }

    async fn start_on(config: Config, http: Option<tokio::net::TcpListener>) -> TestServer {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let http_url = http
            .as_ref()
            .map(|l| format!("http://{}", l.local_addr().unwrap()));
        let (tx, rx) = oneshot::channel::<()>();
        let handle = tokio::spawn(bursar::server::run_with_http(
            config,
            listener,
            http,
            async move {
                let _ = rx.await;
            },
        ));
        let url = format!("http://{addr}");
        // Wait until the server answers health checks (or `run` returns with an error).
        let deadline = tokio::time::Instant::now() + START_DEADLINE;
        while tokio::time::Instant::now() < deadline {
            if let Ok(ch) = tonic::transport::Endpoint::from_shared(url.clone())
                .unwrap()
                .connect()
                .await
            {
                let mut h = tonic_health::pb::health_client::HealthClient::new(ch);
                if h.check(tonic_health::pb::HealthCheckRequest {
                    service: String::new(),
                })
                .await
                .is_ok()
                {
                    break;
                }
            }
            if handle.is_finished() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        TestServer {
            addr,
            url,
            http_url,
            stop: Some(tx),
            handle: Some(handle),
        }
    }

    pub async fn channel(&self) -> tonic::transport::Channel {
        tonic::transport::Endpoint::from_shared(self.url.clone())
            .unwrap()
            .connect()
            .await
            .expect("connect to test server")
    }

    pub async fn pricing(
        &self,
    ) -> bursar::proto::pricing_service_client::PricingServiceClient<tonic::transport::Channel>
    {
        bursar::proto::pricing_service_client::PricingServiceClient::new(self.channel().await)
    }

    /// Stops the server and waits for `run` to return.
    pub async fn stop(mut self) -> Result<(), bursar::server::RunError> {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        match self.handle.take() {
            Some(h) => h.await.expect("server task"),
            None => Ok(()),
        }
    }
}

/// A config for tests: the given database, no sources, fast catalog refresh, no HTTP port on
/// the default address (tests run side by side; `TestServer::start_with_http` gives one).
pub fn test_config(db: &TestDb) -> Config {
    Config {
        database_url: db.url.clone(),
        catalog_refresh: Duration::from_millis(200),
        metrics_listen: String::new(),
        ..Config::default()
    }
}

// ---------------------------------------------------------------------------------------
// Fixture HTTP server

/// What a fixture handler sees of a request.
#[derive(Debug, Clone)]
pub struct FixtureRequest {
    pub method: String,
    pub path: String,
    pub query: String,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl FixtureRequest {
    pub fn body_str(&self) -> String {
        String::from_utf8_lossy(&self.body).to_string()
    }
    /// A form or query parameter (URL-decoded).
    pub fn param(&self, name: &str) -> Option<String> {
        let from = |s: &str| {
            url::form_urlencoded::parse(s.as_bytes())
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.to_string())
        };
        from(&self.query).or_else(|| from(&self.body_str()))
    }
}

/// A canned answer.
#[derive(Debug, Clone)]
pub struct FixtureResponse {
    pub status: u16,
    pub content_type: &'static str,
    pub body: String,
    pub delay: Duration,
}

impl FixtureResponse {
    pub fn json(body: impl Into<String>) -> Self {
        FixtureResponse {
            status: 200,
            content_type: "application/json",
            body: body.into(),
            delay: Duration::ZERO,
        }
    }
    pub fn amz_json(body: impl Into<String>) -> Self {
        FixtureResponse {
            content_type: "application/x-amz-json-1.1",
            ..Self::json(body)
        }
    }
    pub fn xml(body: impl Into<String>) -> Self {
        FixtureResponse {
            content_type: "text/xml",
            ..Self::json(body)
        }
    }
    pub fn status(status: u16, body: impl Into<String>) -> Self {
        FixtureResponse {
            status,
            ..Self::json(body)
        }
    }
    pub fn delayed(mut self, d: Duration) -> Self {
        self.delay = d;
        self
    }
}

type Handler = Arc<dyn Fn(&FixtureRequest) -> FixtureResponse + Send + Sync>;

/// A local HTTP server answering every request with `handler`; records requests.
pub struct Fixture {
    pub addr: SocketAddr,
    pub base: String,
    pub requests: Arc<std::sync::Mutex<Vec<FixtureRequest>>>,
    stop: Option<oneshot::Sender<()>>,
}

impl Fixture {
    pub async fn start(
        handler: impl Fn(&FixtureRequest) -> FixtureResponse + Send + Sync + 'static,
    ) -> Fixture {
        let handler: Handler = Arc::new(handler);
        let requests = Arc::new(std::sync::Mutex::new(Vec::new()));
        let reqs = requests.clone();
        let app = axum::Router::new().fallback(
            move |method: Method, uri: Uri, headers: HeaderMap, body: Bytes| {
                let handler = handler.clone();
                let reqs = reqs.clone();
                async move {
                    let req = FixtureRequest {
                        method: method.to_string(),
                        path: uri.path().to_string(),
                        query: uri.query().unwrap_or("").to_string(),
                        headers,
                        body,
                    };
                    reqs.lock().unwrap().push(req.clone());
                    let resp = handler(&req);
                    if !resp.delay.is_zero() {
                        tokio::time::sleep(resp.delay).await;
                    }
                    let r: Response = (
                        StatusCode::from_u16(resp.status).unwrap(),
                        [("content-type", resp.content_type)],
                        resp.body,
                    )
                        .into_response();
                    r
                }
            },
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, rx) = oneshot::channel::<()>();
        tokio::spawn(async move {
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(async move {
                    let _ = rx.await;
                })
                .await;
        });
        Fixture {
            addr,
            base: format!("http://{addr}"),
            requests,
            stop: Some(tx),
        }
    }

    pub fn request_count(&self) -> usize {
        self.requests.lock().unwrap().len()
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
    }
}

// ---------------------------------------------------------------------------------------
// moto_server

/// A moto_server process on a free loopback port, killed on drop.
pub struct Moto {
    pub url: String,
    child: Child,
}

fn moto_binary() -> PathBuf {
    if let Ok(p) = std::env::var("MOTO_SERVER") {
        return PathBuf::from(p);
    }
    let venv = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/moto_server");
    if venv.exists() {
        return venv;
    }
    PathBuf::from("moto_server")
}

/// How long a test peer (server, moto_server, aiosmtpd) may take to start: generous, for a
/// loaded 2-core machine; readiness is polled, so a quick start is not slowed down.
pub const START_DEADLINE: Duration = Duration::from_secs(120);

impl Moto {
    #[allow(clippy::zombie_processes)] // killed and waited for in Drop
    pub async fn start() -> Moto {
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let bin = moto_binary();
        // Its stderr goes to a file, read back if it exits before it answers.
        let log = tempfile::NamedTempFile::new().expect("moto_server log file");
        let mut child = Command::new(&bin)
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(log.reopen().expect("moto_server log file"))
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "moto_server ({}) is required: run .ci/run or set MOTO_SERVER: {e}",
                    bin.display()
                )
            });
        let url = format!("http://127.0.0.1:{port}");
        let client = reqwest::Client::new();
        let deadline = tokio::time::Instant::now() + START_DEADLINE;
        loop {
            if client
                .post(format!("{url}/moto-api/reset"))
                .send()
                .await
                .is_ok_and(|r| r.status().is_success())
            {
                return Moto { url, child };
            }
            if let Ok(Some(status)) = child.try_wait() {
                let err = std::fs::read_to_string(log.path()).unwrap_or_default();
                panic!(
                    "moto_server ({}) exited before answering ({status}); its stderr:\n{}",
                    bin.display(),
                    err.trim_end()
                );
            }
            if tokio::time::Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                let err = std::fs::read_to_string(log.path()).unwrap_or_default();
                panic!(
                    "moto_server did not answer on {url} within {START_DEADLINE:?}; its stderr:\n{}",
                    err.trim_end()
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

// ---------------------------------------------------------------------------------------
// aiosmtpd

/// The Python with aiosmtpd: `$AIOSMTPD_PYTHON`, else the project's `.venv` (made by
/// `.ci/run`), else `python3` on PATH.
pub fn aiosmtpd_python() -> PathBuf {
    if let Ok(p) = std::env::var("AIOSMTPD_PYTHON") {
        return PathBuf::from(p);
    }
    let venv = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/python");
    if venv.exists() {
        return venv;
    }
    PathBuf::from("python3")
}

/// An aiosmtpd handler that parses each message with Python's `email` package and writes it
/// as JSON (envelope, headers, text and HTML parts, raw) to one file per message.
const SMTP_HANDLER: &str = r#"
import json, os, email, email.policy, itertools

_seq = itertools.count()

class JsonDir:
    def __init__(self, out):
        self.out = out

    @classmethod
    def from_cli(cls, parser, *args):
        return cls(args[0])

    async def handle_DATA(self, server, session, envelope):
        raw = envelope.original_content or envelope.content
        msg = email.message_from_bytes(raw, policy=email.policy.default)
        plain = msg.get_body(("plain",))
        html = msg.get_body(("html",))
        doc = {
            "mail_from": envelope.mail_from,
            "rcpt_tos": envelope.rcpt_tos,
            "from": str(msg["From"]),
            "to": str(msg["To"]),
            "subject": str(msg["Subject"]),
            "content_type": msg.get_content_type(),
            "text": plain.get_content() if plain is not None else None,
            "html": html.get_content() if html is not None else None,
            "raw": raw.decode("utf-8", "replace"),
        }
        name = "%06d.json" % next(_seq)
        tmp = os.path.join(self.out, "." + name)
        with open(tmp, "w") as f:
            json.dump(doc, f)
        os.rename(tmp, os.path.join(self.out, name))
        return "250 Message accepted for delivery"
"#;

/// A message as the SMTP server received it.
#[derive(Debug, Clone, serde::Deserialize)]
pub struct ReceivedMail {
    pub mail_from: String,
    pub rcpt_tos: Vec<String>,
    pub from: String,
    pub to: String,
    pub subject: String,
    pub content_type: String,
    pub text: Option<String>,
    pub html: Option<String>,
    pub raw: String,
}

/// A real SMTP server (aiosmtpd) on loopback, killed on drop. Plain text, no auth.
pub struct SmtpServer {
    pub port: u16,
    dir: tempfile::TempDir,
    child: Child,
}

/// A loopback port that nothing listens on (yet).
pub fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

impl SmtpServer {
    pub async fn start() -> SmtpServer {
        Self::start_on(free_port()).await
    }

    #[allow(clippy::zombie_processes)] // killed and waited for in Drop
    pub async fn start_on(port: u16) -> SmtpServer {
        let dir = tempfile::tempdir().expect("tempdir");
        let out = dir.path().join("mail");
        std::fs::create_dir(&out).unwrap();
        std::fs::write(dir.path().join("bursar_smtp_handler.py"), SMTP_HANDLER).unwrap();
        let python = aiosmtpd_python();
        let child = Command::new(&python)
            .args(["-m", "aiosmtpd", "-n", "-l"])
            .arg(format!("127.0.0.1:{port}"))
            .args(["-c", "bursar_smtp_handler.JsonDir"])
            .arg(&out)
            .env("PYTHONPATH", dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "aiosmtpd ({} -m aiosmtpd) is required: run .ci/run or set AIOSMTPD_PYTHON: {e}",
                    python.display()
                )
            });
        let mut server = SmtpServer { port, dir, child };
        let deadline = tokio::time::Instant::now() + START_DEADLINE;
        while tokio::time::Instant::now() < deadline {
            if let Ok(mut s) = tokio::net::TcpStream::connect(("127.0.0.1", port)).await {
                // Wait for the 220 greeting: the server is up and answering.
                let mut buf = [0u8; 64];
                if let Ok(Ok(n)) = tokio::time::timeout(
                    Duration::from_secs(2),
                    tokio::io::AsyncReadExt::read(&mut s, &mut buf),
                )
                .await
                    && n > 0
                    && buf.starts_with(b"220")
                {
                    return server;
                }
            }
            if let Ok(Some(status)) = server.child.try_wait() {
                panic!(
                    "aiosmtpd exited early ({status}); is aiosmtpd installed for {}?",
                    python.display()
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("aiosmtpd did not start on port {port} within {START_DEADLINE:?}");
    }

    /// Messages received so far, in arrival order.
    pub fn messages(&self) -> Vec<ReceivedMail> {
        let out = self.dir.path().join("mail");
        let mut names: Vec<PathBuf> = std::fs::read_dir(&out)
            .unwrap()
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| {
                p.extension().is_some_and(|x| x == "json")
                    && !p
                        .file_name()
                        .is_some_and(|n| n.to_string_lossy().starts_with('.'))
            })
            .collect();
        names.sort();
        names
            .iter()
            .map(|p| serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap())
            .collect()
    }
}

impl Drop for SmtpServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

// ---------------------------------------------------------------------------------------
// Budgets

impl TestServer {
    pub async fn budgets(
        &self,
    ) -> bursar::proto::budget_service_client::BudgetServiceClient<tonic::transport::Channel> {
        bursar::proto::budget_service_client::BudgetServiceClient::new(self.channel().await)
    }
}

// ---------------------------------------------------------------------------------------
// aiosmtpd with TLS (STARTTLS or implicit) and AUTH

/// Starts aiosmtpd's `Controller` with TLS and AUTH (user `bursar`, password `s3cret`),
/// using `bursar_smtp_handler.JsonDir` (above) so messages are written the same way. Also
/// appends the authenticated login of each message to `auth_users.txt` and every AUTH
/// attempt (`<mechanism> <login> ok|fail`) to `auth_log.txt`, then touches `ready`.
/// argv: mode (starttls | tls), port, cert, key, dir.
const SMTP_TLS_SERVER: &str = r#"
import os, ssl, sys, threading
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword
from bursar_smtp_handler import JsonDir

mode, port, cert, key, base = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5]
USER, PASSWORD = b"bursar", b"s3cret"

def append(name, line):
    with open(os.path.join(base, name), "a") as f:
        f.write(line + "\n")

class Recording(JsonDir):
    async def handle_DATA(self, server, session, envelope):
        login = getattr(session.auth_data, "login", None)
        append("auth_users.txt", login.decode() if login else "-")
        return await super().handle_DATA(server, session, envelope)

def authenticator(server, session, envelope, mechanism, auth_data):
    ok = (isinstance(auth_data, LoginPassword)
          and auth_data.login == USER and auth_data.password == PASSWORD)
    login = auth_data.login.decode("utf-8", "replace") if isinstance(auth_data, LoginPassword) else "?"
    append("auth_log.txt", "%s %s %s" % (mechanism, login, "ok" if ok else "fail"))
    return AuthResult(success=ok, handled=False, auth_data=auth_data if ok else None)

ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
ctx.load_cert_chain(cert, key)
handler = Recording(os.path.join(base, "mail"))
common = dict(hostname="127.0.0.1", port=port, auth_required=True, authenticator=authenticator)
if mode == "starttls":
    controller = Controller(handler, tls_context=ctx, require_starttls=True,
                            auth_require_tls=True, **common)
else:
    # Implicit TLS: aiosmtpd only counts STARTTLS as "TLS" for auth_require_tls, but the
    # whole connection is already encrypted here.
    controller = Controller(handler, ssl_context=ctx, auth_require_tls=False, **common)
controller.start()
open(os.path.join(base, "ready"), "w").close()
threading.Event().wait()
"#;

/// How a [`TlsSmtpServer`] is secured.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SmtpServerTls {
    /// STARTTLS required before MAIL and AUTH.
    Starttls,
    /// Implicit TLS from the first byte.
    Implicit,
}

/// The only account a [`TlsSmtpServer`] accepts.
pub const SMTP_USER: &str = "bursar";
pub const SMTP_PASSWORD: &str = "s3cret";

/// aiosmtpd on loopback with a certificate for `localhost` / `127.0.0.1`, issued at start
/// by a fresh private CA (`ca_file`, made with `openssl`), requiring AUTH
/// ([`SMTP_USER`] / [`SMTP_PASSWORD`]). Derefs to [`SmtpServer`] for `port` and
/// `messages()`; killed on drop.
pub struct TlsSmtpServer {
    pub smtp: SmtpServer,
    /// PEM of the CA that issued the server certificate.
    pub ca_file: PathBuf,
}

impl std::ops::Deref for TlsSmtpServer {
    type Target = SmtpServer;
    fn deref(&self) -> &SmtpServer {
        &self.smtp
    }
}

fn openssl(dir: &std::path::Path, args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("openssl is required for the TLS SMTP tests: {e}"));
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A private CA (`ca.pem`) and a server certificate signed by it (`cert.pem`, `key.pem`)
/// for DNS:localhost and IP:127.0.0.1, valid for one day. A separate CA, because webpki
/// refuses a CA certificate used as the server's own.
fn make_test_pki(dir: &std::path::Path) {
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
    ];
    let mut ca = vec!["req", "-x509"];
    ca.extend(ec);
    ca.extend([
        "-subj",
        "/CN=bursar test CA",
        "-days",
        "1",
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
    ]);
    openssl(dir, &ca);
    let mut csr = vec!["req"];
    csr.extend(ec);
    csr.extend([
        "-subj",
        "/CN=localhost",
        "-keyout",
        "key.pem",
        "-out",
        "server.csr",
    ]);
    openssl(dir, &csr);
    std::fs::write(
        dir.join("server.ext"),
        "subjectAltName=DNS:localhost,IP:127.0.0.1\n\
         basicConstraints=critical,CA:FALSE\n\
         keyUsage=critical,digitalSignature,keyEncipherment\n\
         extendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "1",
            "-extfile",
            "server.ext",
            "-out",
            "cert.pem",
        ],
    );
}

impl TlsSmtpServer {
    #[allow(clippy::zombie_processes)] // killed and waited for in SmtpServer's Drop
    pub async fn start(tls: SmtpServerTls) -> TlsSmtpServer {
        let port = free_port();
        let dir = tempfile::tempdir().expect("tempdir");
        let base = dir.path().to_path_buf();
        std::fs::create_dir(base.join("mail")).unwrap();
        make_test_pki(&base);
        std::fs::write(base.join("bursar_smtp_handler.py"), SMTP_HANDLER).unwrap();
        std::fs::write(base.join("bursar_smtp_tls_server.py"), SMTP_TLS_SERVER).unwrap();
        let log = std::fs::File::create(base.join("server.log")).unwrap();
        let python = aiosmtpd_python();
        let mode = match tls {
            SmtpServerTls::Starttls => "starttls",
            SmtpServerTls::Implicit => "tls",
        };
        let child = Command::new(&python)
            .arg(base.join("bursar_smtp_tls_server.py"))
            .arg(mode)
            .arg(port.to_string())
            .arg(base.join("cert.pem"))
            .arg(base.join("key.pem"))
            .arg(&base)
            .env("PYTHONPATH", &base)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "aiosmtpd ({}) is required: run .ci/run or set AIOSMTPD_PYTHON: {e}",
                    python.display()
                )
            });
        let mut smtp = SmtpServer { port, dir, child };
        // Controller.start() returns once the server answers; the script then writes `ready`.
        let deadline = tokio::time::Instant::now() + START_DEADLINE;
        while tokio::time::Instant::now() < deadline {
            if base.join("ready").exists() {
                return TlsSmtpServer {
                    smtp,
                    ca_file: base.join("ca.pem"),
                };
            }
            if let Ok(Some(status)) = smtp.child.try_wait() {
                panic!(
                    "aiosmtpd ({mode}) exited early ({status}):\n{}",
                    std::fs::read_to_string(base.join("server.log")).unwrap_or_default()
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("aiosmtpd ({mode}) did not start on port {port} within {START_DEADLINE:?}");
    }

    /// The authenticated login of each message received, in arrival order.
    pub fn auth_users(&self) -> Vec<String> {
        self.lines("auth_users.txt")
    }

    /// Every AUTH attempt: `<mechanism> <login> ok|fail`.
    pub fn auth_log(&self) -> Vec<String> {
        self.lines("auth_log.txt")
    }

    fn lines(&self, name: &str) -> Vec<String> {
        std::fs::read_to_string(self.smtp.dir.path().join(name))
            .unwrap_or_default()
            .lines()
            .map(String::from)
            .collect()
    }
}
