//! Replicas on one Postgres see each other's changes at once (LISTEN/NOTIFY, migration 0016),
//! with the generation poll as the fallback while the listening connection is down; SQLite
//! mode is single-node; SIGTERM drains a real `bursar serve` (health NOT_SERVING, in-flight
//! calls finish, claimed outbox rows are given back, exit 0).
mod common;

use std::future::Future;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use bursar::config::Config;
use bursar::proto;
use sqlx::Connection;
use tonic::Code;
use tonic_health::ServingStatus;

/// The replicas' own polls (catalog, marks, budgets): far longer than any wait below, so a
/// change seen sooner came by notification.
const LONG_POLL: Duration = Duration::from_secs(60);
/// Liveness bound for a notified change (it normally takes milliseconds); not a measurement.
const NOTIFIED: Duration = Duration::from_secs(5);

fn long_poll_config(db: &common::TestDb) -> Config {
    let mut c = common::test_config(db);
    c.catalog_refresh = LONG_POLL;
    c.budget_evaluation.poll = LONG_POLL;
    c
}

/// Waits until `check` holds, polling every 50 ms; panics naming `what` after `within`.
async fn eventually<F, Fut>(what: &str, within: Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + within;
    loop {
        if check().await {
            return;
        }
        assert!(Instant::now() < deadline, "{what}: not within {within:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn bursar(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_bursar"))
        .args(args)
        .env_remove("BURSAR_CONFIG")
        .output()
        .unwrap()
}

async fn placement(
    s: &common::TestServer,
) -> proto::placement_service_client::PlacementServiceClient<tonic::transport::Channel> {
    proto::placement_service_client::PlacementServiceClient::new(s.channel().await)
}

fn request(team: &str, providers: &[proto::Provider]) -> proto::SelectProviderRequest {
    proto::SelectProviderRequest {
        resources: Some(proto::Resources {
            min_vcpus: 2,
            ..Default::default()
        }),
        expected_hours: 1.0,
        labels: [("team".to_string(), team.to_string())].into(),
        constraints: Some(proto::Constraints {
            allowed_providers: providers.iter().map(|p| *p as i32).collect(),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// Whether `s` places a 2-vCPU job on AWS (false while AWS is marked unavailable).
async fn places_on_aws(s: &common::TestServer) -> bool {
    match placement(s)
        .await
        .select_provider(request("web", &[proto::Provider::Aws]))
        .await
    {
        Ok(r) => !r.into_inner().placements.is_empty(),
        Err(_) => false,
    }
}

/// Whether `s`'s budget gate refuses the ML team's jobs.
async fn gate_refuses_ml(s: &common::TestServer) -> bool {
    match placement(s).await.select_provider(request("ml", &[])).await {
        Err(e) => {
            assert_eq!(e.code(), Code::FailedPrecondition, "{e:?}");
            assert!(e.message().contains("ml-cap"), "{}", e.message());
            true
        }
        Ok(_) => false,
    }
}

/// Whether `s` lists a price of m6i.2xlarge in af-south-1 from the SkyPilot catalog import.
async fn lists_imported_price(s: &common::TestServer) -> bool {
    let r = s
        .pricing()
        .await
        .list_prices(proto::ListPricesRequest {
            provider: proto::Provider::Aws as i32,
            region: "af-south-1".into(),
            instance_type: "m6i.2xlarge".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    r.prices.iter().any(|p| p.source == "catalog")
}

fn deny_budget() -> proto::Budget {
    proto::Budget {
        name: "ml-cap".into(),
        amount: Some(proto::Money {
            amount: "0.01".into(),
            currency: "USD".into(),
        }),
        thresholds: vec![proto::Threshold {
            percent: "100".into(),
            ..Default::default()
        }],
        scope: Some(proto::BudgetScope {
            tag: "team=ml".into(),
            ..Default::default()
        }),
        gate: proto::GatePolicy::GateDeny as i32,
        ..Default::default()
    }
}

/// A connection to the Postgres server as its admin, outside the test's database.
async fn admin() -> sqlx::PgConnection {
    sqlx::PgConnection::connect(&common::pg_admin_url())
        .await
        .unwrap()
}

fn db_name(db: &common::TestDb) -> String {
    url::Url::parse(&db.url).unwrap().path()[1..].to_string()
}

/// The backend pids of the replicas' listening connections on `db`.
async fn listeners(db: &str) -> Vec<i32> {
    let mut conn = admin().await;
    sqlx::query_scalar(
        "SELECT pid FROM pg_stat_activity WHERE datname = $1 AND application_name = $2 ORDER BY pid",
    )
    .bind(db)
    .bind(bursar::store::changes::LISTENER_APPLICATION_NAME)
    .fetch_all(&mut conn)
    .await
    .unwrap()
}

// ---------------------------------------------------------------------------------------
// LISTEN/NOTIFY

/// Two replicas on one database, each polling only every minute: a price import by another
/// process, an unavailability mark and a budget written through one replica reach the other's
/// RPCs within seconds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn catalog_mark_and_budget_changes_reach_the_other_replica_without_waiting_for_its_poll() {
    let db = common::fresh_postgres().await;
    let a = common::TestServer::start(long_poll_config(&db)).await;
    let b = common::TestServer::start(long_poll_config(&db)).await;
    let name = db_name(&db);
    eventually("both replicas listen", NOTIFIED, || async {
        listeners(&name).await.len() == 2
    })
    .await;

    // A price import by another process (`bursar import-catalog`) reaches both.
    assert!(!lists_imported_price(&a).await && !lists_imported_price(&b).await);
    let cat = tempfile::tempdir().unwrap();
    common::small_catalog(cat.path(), 50);
    let o = bursar(&[
        "import-catalog",
        cat.path().to_str().unwrap(),
        "--quiet",
        "--database-url",
        &db.url,
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    eventually("replica B lists the imported prices", NOTIFIED, || {
        lists_imported_price(&b)
    })
    .await;
    eventually("replica A lists the imported prices", NOTIFIED, || {
        lists_imported_price(&a)
    })
    .await;

    // An unavailability mark through A, then its clearing, reach B.
    assert!(places_on_aws(&b).await);
    let mark = placement(&a)
        .await
        .mark_unavailable(proto::MarkUnavailableRequest {
            provider: proto::Provider::Aws as i32,
            reason: "capacity incident".into(),
            ttl_seconds: 3600,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(!places_on_aws(&a).await, "the writer honours it at once");
    eventually("replica B honours A's mark", NOTIFIED, || async {
        !places_on_aws(&b).await
    })
    .await;
    placement(&a)
        .await
        .clear_unavailable(proto::ClearUnavailableRequest { id: mark.id })
        .await
        .unwrap();
    eventually("replica B sees the mark cleared", NOTIFIED, || {
        places_on_aws(&b)
    })
    .await;

    // A deny budget created through A gates B's SelectProvider; deleted, it stops.
    assert!(!gate_refuses_ml(&b).await);
    a.budgets()
        .await
        .create_budget(proto::CreateBudgetRequest {
            budget: Some(deny_budget()),
        })
        .await
        .unwrap();
    assert!(gate_refuses_ml(&a).await);
    eventually("replica B's gate applies A's budget", NOTIFIED, || {
        gate_refuses_ml(&b)
    })
    .await;
    b.budgets()
        .await
        .delete_budget(proto::DeleteBudgetRequest {
            name: "ml-cap".into(),
        })
        .await
        .unwrap();
    eventually(
        "replica A's gate drops B's deleted budget",
        NOTIFIED,
        || async { !gate_refuses_ml(&a).await },
    )
    .await;

    a.stop().await.unwrap();
    b.stop().await.unwrap();
}

/// The listening connections are killed while the database refuses new connections: the
/// replica with a short poll still gets a change through its poll; once connections are
/// allowed again both listeners come back by themselves, the long-poll replica catches up on
/// what it missed, and notifications flow again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_listeners_reconnect_and_the_poll_delivers_meanwhile() {
    let db = common::fresh_postgres().await;
    let a = common::TestServer::start(long_poll_config(&db)).await;
    let mut short = common::test_config(&db);
    short.catalog_refresh = Duration::from_secs(1);
    let b = common::TestServer::start(short).await;
    let name = db_name(&db);
    let mut conn = admin().await;
    eventually("both replicas listen", NOTIFIED, || async {
        listeners(&name).await.len() == 2
    })
    .await;
    let before = listeners(&name).await;
    // The test's own connection to the replicas' database, open before it closes its doors.
    let mut direct = sqlx::PgConnection::connect(&db.url).await.unwrap();

    sqlx::query(&format!(
        "ALTER DATABASE \"{name}\" WITH ALLOW_CONNECTIONS false"
    ))
    .execute(&mut conn)
    .await
    .unwrap();
    let killed: Vec<bool> = sqlx::query_scalar(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1 AND application_name = $2",
    )
    .bind(&name)
    .bind(bursar::store::changes::LISTENER_APPLICATION_NAME)
    .fetch_all(&mut conn)
    .await
    .unwrap();
    assert_eq!(killed, vec![true, true]);
    eventually("the listeners are gone", NOTIFIED, || async {
        listeners(&name).await.is_empty()
    })
    .await;

    // Another process marks AWS unavailable (straight into the database).
    assert!(places_on_aws(&b).await);
    sqlx::query(
        "INSERT INTO availability_mark (id, provider, region, zone, reason, created_at, expires_at) \
         VALUES ('m-direct', 'aws', NULL, NULL, 'outage', now(), now() + interval '1 hour')",
    )
    .execute(&mut direct)
    .await
    .unwrap();
    eventually(
        "replica B (1 s poll) honours the mark while nobody listens",
        Duration::from_secs(15),
        || async { !places_on_aws(&b).await },
    )
    .await;
    assert!(
        listeners(&name).await.is_empty(),
        "the poll delivered it, not a listener"
    );

    sqlx::query(&format!(
        "ALTER DATABASE \"{name}\" WITH ALLOW_CONNECTIONS true"
    ))
    .execute(&mut conn)
    .await
    .unwrap();
    // Reconnection backs off while refused (up to 30 s between tries).
    eventually(
        "both listeners are back",
        Duration::from_secs(60),
        || async { listeners(&name).await.len() == 2 },
    )
    .await;
    let after = listeners(&name).await;
    assert!(
        after.iter().all(|p| !before.contains(p)),
        "{before:?} {after:?}"
    );
    eventually(
        "replica A (1 min poll) catches up on the mark made while it was not listening",
        NOTIFIED,
        || async { !places_on_aws(&a).await },
    )
    .await;

    // Notifications flow again: B clears the mark, A sees it long before its poll.
    placement(&b)
        .await
        .clear_unavailable(proto::ClearUnavailableRequest {
            id: "m-direct".into(),
        })
        .await
        .unwrap();
    eventually("replica A sees the mark cleared", NOTIFIED, || {
        places_on_aws(&a)
    })
    .await;
    direct.close().await.unwrap();
    a.stop().await.unwrap();
    b.stop().await.unwrap();
}

// ---------------------------------------------------------------------------------------
// Real `bursar serve` processes

/// A `bursar serve` child, killed on drop if the test did not end it.
struct Serve {
    child: Child,
    url: String,
    stderr: PathBuf,
}

impl Serve {
    fn spawn(args: &[&str], dir: &Path) -> Serve {
        let port = common::free_port();
        let listen = format!("127.0.0.1:{port}");
        let stderr = dir.join(format!("serve-{port}.log"));
        let child = Command::new(env!("CARGO_BIN_EXE_bursar"))
            .args(["serve", "--listen", &listen, "--metrics-listen", ""])
            .args(args)
            .env_remove("BURSAR_CONFIG")
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&stderr).unwrap())
            .spawn()
            .unwrap();
        Serve {
            child,
            url: format!("http://{listen}"),
            stderr,
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap_or_default()
    }

    async fn channel(&self) -> tonic::transport::Channel {
        tonic::transport::Endpoint::from_shared(self.url.clone())
            .unwrap()
            .connect()
            .await
            .unwrap()
    }

    /// Waits until it answers a health check; panics with its log if it exits first.
    async fn ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            if let Ok(ch) = tonic::transport::Endpoint::from_shared(self.url.clone())
                .unwrap()
                .connect()
                .await
                && tonic_health::pb::health_client::HealthClient::new(ch)
                    .check(tonic_health::pb::HealthCheckRequest::default())
                    .await
                    .is_ok()
            {
                return;
            }
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!("bursar serve exited ({status}): {}", self.log());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("bursar serve did not answer: {}", self.log());
    }

    fn signal(&self, sig: &str) {
        let ok = Command::new("kill")
            .args([sig, &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(ok.success());
    }

    /// Waits for it to exit (liveness bound), returning its status.
    async fn exit(&mut self, within: Duration) -> std::process::ExitStatus {
        let deadline = Instant::now() + within;
        loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                return s;
            }
            assert!(
                Instant::now() < deadline,
                "still running after {within:?}: {}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A second `bursar serve` on one SQLite file refuses to start with one clear line and exit
/// code 1, while `ingest` and `migrate` still work beside the first; once the first has gone
/// (SIGTERM, or kill -9) a new server starts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_serve_on_one_sqlite_file_refuses_to_start() {
    let db = common::fresh_sqlite();
    let dir = tempfile::tempdir().unwrap();
    let mut first = Serve::spawn(&["--database-url", &db.url], dir.path());
    first.ready().await;

    let mut second = Serve::spawn(&["--database-url", &db.url], dir.path());
    let status = second.exit(Duration::from_secs(30)).await;
    assert_eq!(status.code(), Some(1), "{}", second.log());
    let err = second.log();
    let line = err
        .lines()
        .find(|l| l.contains("single-node"))
        .unwrap_or_else(|| panic!("no single-node line: {err}"));
    assert!(
        line.contains("another bursar serve is already running on the SQLite database")
            && line.contains("bursar.db"),
        "{line}"
    );

    // Not servers: they share the file with the running one.
    let o = bursar(&["migrate", "--database-url", &db.url]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let export = dir.path().join("focus.csv");
    std::fs::copy(
        common::shared(
            "focus-sample/spec-examples/commitment_discount_scenarios/commitment_discount_usage_scenario_1.csv",
        ),
        &export,
    )
    .unwrap();
    let o = bursar(&[
        "ingest",
        export.to_str().unwrap(),
        "--quiet",
        "--database-url",
        &db.url,
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    // The first server still answers.
    tonic_health::pb::health_client::HealthClient::new(first.channel().await)
        .check(tonic_health::pb::HealthCheckRequest::default())
        .await
        .unwrap();

    first.signal("-TERM");
    assert_eq!(first.exit(Duration::from_secs(60)).await.code(), Some(0));
    let mut third = Serve::spawn(&["--database-url", &db.url], dir.path());
    third.ready().await;
    // kill -9 leaves no lock behind: the kernel drops it with the process.
    third.signal("-KILL");
    third.exit(Duration::from_secs(30)).await;
    let mut fourth = Serve::spawn(&["--database-url", &db.url], dir.path());
    fourth.ready().await;
    fourth.signal("-TERM");
    assert_eq!(fourth.exit(Duration::from_secs(60)).await.code(), Some(0));
}

/// A client's health Watch left open after SIGTERM does not hold the process: it closes the
/// stream at `drain_timeout` and exits 0.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_open_stream_does_not_hold_shutdown_past_the_drain_timeout() {
    let db = common::fresh_sqlite();
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("bursar.toml");
    std::fs::write(
        &config,
        format!("database_url = \"{}\"\ndrain_timeout = \"1s\"\n", db.url),
    )
    .unwrap();
    let mut serve = Serve::spawn(&["--config", config.to_str().unwrap()], dir.path());
    serve.ready().await;
    let mut health = tonic_health::pb::health_client::HealthClient::new(serve.channel().await);
    let mut watch = health
        .watch(tonic_health::pb::HealthCheckRequest::default())
        .await
        .unwrap()
        .into_inner();
    let first = watch.message().await.unwrap().unwrap();
    assert_eq!(first.status, ServingStatus::Serving as i32);
    serve.signal("-TERM");
    let next = tokio::time::timeout(Duration::from_secs(30), watch.message())
        .await
        .expect("a health update after SIGTERM")
        .unwrap()
        .expect("an update");
    assert_eq!(next.status, ServingStatus::NotServing as i32);
    // The stream stays open on the client's side; the server ends it.
    let status = serve.exit(Duration::from_secs(30)).await;
    assert_eq!(status.code(), Some(0), "{}", serve.log());
    assert!(serve.log().contains("drain timeout"), "{}", serve.log());
    let end = tokio::time::timeout(Duration::from_secs(10), watch.message())
        .await
        .expect("the stream ends with the server");
    assert!(!matches!(end, Ok(Some(_))), "{end:?}");
}

/// A round told to stop sends nothing and gives back every row it claimed, so another
/// claimer takes them at once; a give-back with a lease that is no longer the row's (the row
/// was claimed again since) changes nothing. On both backends.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_round_gives_back_its_claims_on_both_backends() {
    use bursar::store::Store;
    use bursar::tasks::alerts::deliver_due_led;
    for db in common::both_backends().await {
        let b = db.backend;
        let store = Store::open(&db.url).await.unwrap();
        let now = chrono::Utc::now();
        let msgs = outbox_messages_for(&["a@example.com", "b@example.com", "c@example.com"]);
        assert!(store.fire_alert(&fired_alert(now), &msgs).await.unwrap());
        let cfg = bursar::notify::AlertsConfig::default();
        let (_tx, stopped) = tokio::sync::watch::channel(true);
        let r = deliver_due_led(&store, &[], &cfg, now, None, &stopped)
            .await
            .unwrap();
        assert_eq!(
            (r.claimed, r.delivered, r.failed, r.skipped),
            (3, 0, 0, 3),
            "{b}"
        );
        let rows = store.list_outbox(None).await.unwrap();
        assert!(
            rows.iter()
                .all(|r| r.claimed_until.is_none() && r.attempts == 0 && r.state == "pending"),
            "{b}: {rows:?}"
        );
        // Given back: claimable at once, long before the 5-minute lease would have ended.
        let lease = Duration::from_secs(300);
        let claimed = store.claim_due_outbox(now, lease, 10).await.unwrap();
        assert_eq!(claimed.len(), 3, "{b}");
        let stale = now + chrono::Duration::seconds(1);
        assert!(
            !store
                .release_outbox_claim(claimed[0].id, stale)
                .await
                .unwrap(),
            "{b}: not this claim"
        );
        assert!(
            store
                .claim_due_outbox(now, lease, 10)
                .await
                .unwrap()
                .is_empty(),
            "{b}: still leased"
        );
        assert!(
            store
                .release_outbox_claim(claimed[0].id, claimed[0].claimed_until.unwrap())
                .await
                .unwrap(),
            "{b}"
        );
        let again = store.claim_due_outbox(now, lease, 10).await.unwrap();
        assert_eq!(
            again.iter().map(|r| r.id).collect::<Vec<_>>(),
            vec![claimed[0].id],
            "{b}"
        );
        store.close().await;
    }
}

fn alert_context(now: chrono::DateTime<chrono::Utc>) -> bursar::notify::render::AlertContext {
    let today = now.date_naive();
    let dec = |s: &str| s.parse::<rust_decimal::Decimal>().unwrap();
    bursar::notify::render::AlertContext {
        budget: "ml".into(),
        period_key: "2024-09".into(),
        period_start: today,
        period_end: today,
        threshold_key: "actual-80".into(),
        threshold_description: "80% of budget".into(),
        on: "actual".into(),
        limit: dec("80"),
        amount: dec("100"),
        actual: dec("81"),
        forecast: dec("120"),
        currency: "USD".into(),
        top_services: Vec::new(),
        top_tags: Vec::new(),
        tag_key: "team".into(),
        dashboard_url: None,
        metric_unit: "USD".into(),
    }
}

fn outbox_messages_for(to: &[&str]) -> Vec<bursar::notify::outbox::OutboxMessage> {
    let to: Vec<String> = to.iter().map(|s| s.to_string()).collect();
    bursar::notify::render::outbox_messages(&alert_context(chrono::Utc::now()), &to, &[])
}

fn fired_alert(now: chrono::DateTime<chrono::Utc>) -> bursar::store::budgets::FiredAlert {
    let dec = |s: &str| s.parse::<rust_decimal::Decimal>().unwrap();
    bursar::store::budgets::FiredAlert {
        budget: "ml".into(),
        period_key: "2024-09".into(),
        threshold_key: "actual-80".into(),
        actual: dec("81"),
        forecast: dec("120"),
        amount: dec("100"),
        currency: "USD".into(),
        fired_at: now,
    }
}

/// An aiosmtpd handler that, for each message, writes `started-N` when its DATA arrives and
/// holds the 250 reply until a file `release` exists; then writes `done-N`.
const HELD_SMTP_HANDLER: &str = r#"
import asyncio, itertools, os

_seq = itertools.count()

class Held:
    def __init__(self, out):
        self.out = out

    @classmethod
    def from_cli(cls, parser, *args):
        return cls(args[0])

    async def handle_DATA(self, server, session, envelope):
        n = next(_seq)
        open(os.path.join(self.out, "started-%d" % n), "w").close()
        for _ in range(1200):
            if os.path.exists(os.path.join(self.out, "release")):
                break
            await asyncio.sleep(0.05)
        open(os.path.join(self.out, "done-%d" % n), "w").close()
        return "250 Message accepted for delivery"
"#;

/// A real SMTP server that holds each message's reply until released.
struct HeldSmtp {
    port: u16,
    dir: tempfile::TempDir,
    child: Child,
}

impl HeldSmtp {
    async fn start() -> HeldSmtp {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("out");
        std::fs::create_dir(&out).unwrap();
        std::fs::write(dir.path().join("held_smtp.py"), HELD_SMTP_HANDLER).unwrap();
        let python = common::aiosmtpd_python();
        let port = common::free_port();
        let child = Command::new(&python)
            .args(["-m", "aiosmtpd", "-n", "-l"])
            .arg(format!("127.0.0.1:{port}"))
            .args(["-c", "held_smtp.Held"])
            .arg(&out)
            .env("PYTHONPATH", dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("aiosmtpd (run .ci/run or set AIOSMTPD_PYTHON)");
        let smtp = HeldSmtp { port, dir, child };
        eventually("aiosmtpd listens", Duration::from_secs(30), || async {
            tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .is_ok()
        })
        .await;
        smtp
    }

    fn count(&self, prefix: &str) -> usize {
        std::fs::read_dir(self.dir.path().join("out"))
            .unwrap()
            .filter(|e| {
                e.as_ref()
                    .unwrap()
                    .file_name()
                    .to_string_lossy()
                    .starts_with(prefix)
            })
            .count()
    }

    fn release(&self) {
        std::fs::write(self.dir.path().join("out/release"), "").unwrap();
    }
}

impl Drop for HeldSmtp {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// SIGTERM to a real `bursar serve`: a health watcher is told NOT_SERVING; an RPC in flight
/// (held by a table lock) still completes OK after it; the alert sends in flight finish and
/// the outbox rows it had claimed but not started are given back (lease cleared, never
/// attempted); the process exits 0.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_in_flight_calls_and_gives_back_the_outbox_claim() {
    use bursar::store::Store;

    let db = common::fresh_postgres().await;
    let dir = tempfile::tempdir().unwrap();
    let smtp = HeldSmtp::start().await;

    // Six alert emails due now: the outbox sends four at a time.
    let store = Store::open(&db.url).await.unwrap();
    let to: Vec<String> = (0..6).map(|i| format!("finops{i}@example.com")).collect();
    let to: Vec<&str> = to.iter().map(String::as_str).collect();
    let msgs = outbox_messages_for(&to);
    assert_eq!(msgs.len(), 6);
    assert!(
        store
            .fire_alert(&fired_alert(chrono::Utc::now()), &msgs)
            .await
            .unwrap()
    );

    let config = dir.path().join("bursar.toml");
    std::fs::write(
        &config,
        format!(
            r#"database_url = "{url}"
[alerts]
outbox_interval = "200ms"
claim_lease = "5m"
[alerts.smtp]
host = "127.0.0.1"
port = {port}
tls = "none"
from = "bursar <bursar@localhost>"
timeout = "60s"
"#,
            url = db.url,
            port = smtp.port
        ),
    )
    .unwrap();
    let mut serve = Serve::spawn(&["--config", config.to_str().unwrap()], dir.path());
    serve.ready().await;
    eventually("four sends in flight", Duration::from_secs(30), || async {
        smtp.count("started-") == 4
    })
    .await;

    // An RPC in flight: ListBudgets waits on a lock the test holds.
    let mut locker = sqlx::PgConnection::connect(&db.url).await.unwrap();
    let mut tx = locker.begin().await.unwrap();
    sqlx::query("LOCK TABLE budget IN ACCESS EXCLUSIVE MODE")
        .execute(&mut *tx)
        .await
        .unwrap();
    let ch = serve.channel().await;
    let in_flight = {
        let mut c = proto::budget_service_client::BudgetServiceClient::new(ch.clone());
        tokio::spawn(async move { c.list_budgets(proto::ListBudgetsRequest::default()).await })
    };
    let name = db_name(&db);
    eventually(
        "ListBudgets waits on the lock",
        Duration::from_secs(30),
        || {
            let name = &name;
            async move {
                let mut watcher = admin().await;
                let waiting: i64 = sqlx::query_scalar(
                    "SELECT count(*) FROM pg_stat_activity WHERE datname = $1 \
                 AND wait_event_type = 'Lock' AND query LIKE '%FROM budget ORDER BY name%'",
                )
                .bind(name)
                .fetch_one(&mut watcher)
                .await
                .unwrap();
                waiting >= 1
            }
        },
    )
    .await;

    let mut health = tonic_health::pb::health_client::HealthClient::new(ch.clone());
    let mut watch = health
        .watch(tonic_health::pb::HealthCheckRequest::default())
        .await
        .unwrap()
        .into_inner();
    let first = watch.message().await.unwrap().unwrap();
    assert_eq!(first.status, ServingStatus::Serving as i32);

    serve.signal("-TERM");
    let next = tokio::time::timeout(Duration::from_secs(30), watch.message())
        .await
        .expect("a health update after SIGTERM")
        .unwrap()
        .expect("an update, not the end of the stream");
    assert_eq!(next.status, ServingStatus::NotServing as i32);
    drop(watch);
    drop(health);
    assert!(
        serve.child.try_wait().unwrap().is_none(),
        "it waits for the call in flight"
    );
    assert!(!in_flight.is_finished());

    tx.rollback().await.unwrap();
    let listed = tokio::time::timeout(Duration::from_secs(30), in_flight)
        .await
        .expect("the call in flight completes")
        .unwrap();
    listed.expect("the call in flight answers OK");
    smtp.release();
    drop(ch);
    let status = serve.exit(Duration::from_secs(60)).await;
    assert_eq!(status.code(), Some(0), "{}", serve.log());

    assert_eq!(smtp.count("done-"), 4);
    assert_eq!(smtp.count("started-"), 4, "nothing started after SIGTERM");
    let rows: Vec<(String, i64, bool)> = sqlx::query_as(
        "SELECT state, attempts, claimed_until IS NOT NULL FROM alert_outbox ORDER BY id",
    )
    .fetch_all(&mut locker)
    .await
    .unwrap();
    let delivered = rows.iter().filter(|r| r.0 == "delivered").count();
    assert_eq!(delivered, 4, "{rows:?}");
    let given_back: Vec<_> = rows.iter().filter(|r| r.0 == "pending").collect();
    assert_eq!(given_back.len(), 2, "{rows:?}");
    assert!(
        given_back.iter().all(|r| r.1 == 0 && !r.2),
        "claimed but unsent rows are unclaimed and unattempted: {rows:?}"
    );
    assert!(serve.log().contains("shutting down"), "{}", serve.log());
    store.close().await;
}
