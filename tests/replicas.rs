//! Replicas: the singleton lease and its fencing in the store (Postgres; SQLite's trivial
//! single-node behaviour), and three real `bursar serve` processes on one Postgres with a
//! real SMTP server (aiosmtpd, answering slowly so a send can be caught in flight) and
//! moto_server (behind a proxy that counts and delays StopInstances): the leader is killed
//! with SIGKILL during alert delivery and again during an idle-GPU stop, then paused with
//! SIGSTOP past its lease and resumed. Every alert arrives once, the machine is stopped
//! once, a follower takes over within two lease periods each time, SelectProvider keeps
//! answering on the survivors, and the resumed former leader does nothing.
mod common;

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aws_sdk_ec2::types::{InstanceType, ResourceType, Tag, TagSpecification};
use bursar::domain::Provider;
use bursar::notify::outbox::OutboxMessage;
use bursar::proto;
use bursar::store::Store;
use bursar::store::budgets::FiredAlert;
use chrono::Utc;
use common::fault_proxy::FaultProxy;
use common::{Fixture, FixtureResponse, Moto, TestDb, fresh_postgres, fresh_sqlite};

// ---------------------------------------------------------------------------------------
// The lease and the fence in the store

fn pg_pool(s: &Store) -> &sqlx::PgPool {
    match s {
        Store::Postgres(p) => p.pool(),
        Store::Sqlite(_) => panic!("a Postgres store"),
    }
}

async fn pg() -> (TestDb, Store) {
    let db = fresh_postgres().await;
    let store = Store::open(&db.url).await.unwrap();
    (db, store)
}

/// Acquire, renew, expiry by the database's clock, takeover with the next term, a stale
/// renewal refused, release.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_lease_is_taken_renewed_lost_taken_over_and_released_on_postgres() {
    let (_db, store) = pg().await;
    let lease = Duration::from_millis(800);
    assert_eq!(store.current_lease().await.unwrap(), None);
    assert_eq!(store.try_acquire_lease("a", lease).await.unwrap(), Some(1));
    // Held: nobody else takes it, and its holder renews it.
    assert_eq!(store.try_acquire_lease("b", lease).await.unwrap(), None);
    assert!(store.renew_lease("a", 1, lease).await.unwrap());
    let row = store.current_lease().await.unwrap().unwrap();
    assert_eq!((row.holder.as_str(), row.term, row.live), ("a", 1, true));
    // Not renewed: it runs out, and then even its holder cannot renew it.
    tokio::time::sleep(lease + Duration::from_millis(200)).await;
    assert!(!store.current_lease().await.unwrap().unwrap().live);
    assert!(!store.renew_lease("a", 1, lease).await.unwrap());
    // Taken over with the next term; the old term stays refused.
    assert_eq!(store.try_acquire_lease("b", lease).await.unwrap(), Some(2));
    assert!(!store.renew_lease("a", 1, lease).await.unwrap());
    assert!(!store.release_lease("a", 1).await.unwrap());
    // Released on shutdown: free at once.
    assert!(store.release_lease("b", 2).await.unwrap());
    assert!(!store.current_lease().await.unwrap().unwrap().live);
    assert_eq!(store.try_acquire_lease("a", lease).await.unwrap(), Some(3));
    store.close().await;
}

/// A fenced session's writes carry its term: accepted while the term holds the lease,
/// refused by the database (SQLSTATE BF001) once another term took it, and refused for a
/// follower (term 0). Unfenced sessions (RPCs, the CLI) are not affected. Nothing the
/// refused writes tried is stored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stale_term_is_refused_by_the_database() {
    let (db, store) = pg().await;
    let lease = Duration::from_millis(800);
    let term = Arc::new(AtomicI64::new(0));
    let fenced = store
        .fenced(&db.url, 2, term.clone(), Duration::from_secs(5))
        .await
        .unwrap();
    let now = Utc::now();
    // A follower's fenced session writes nothing.
    let e = fenced
        .put_fleet_case(Provider::Aws, "i-follower", now, "{}")
        .await
        .unwrap_err();
    assert!(e.is_fenced(), "{e}");
    assert!(e.to_string().contains("stale leader term 0"), "{e}");
    // The leader's does.
    let t1 = store.try_acquire_lease("a", lease).await.unwrap().unwrap();
    term.store(t1, Ordering::SeqCst);
    fenced
        .put_fleet_case(Provider::Aws, "i-leader", now, "{}")
        .await
        .unwrap();
    // Another term takes over: the former leader's writes are refused.
    tokio::time::sleep(lease + Duration::from_millis(200)).await;
    let t2 = store.try_acquire_lease("b", lease).await.unwrap().unwrap();
    assert_eq!(t2, t1 + 1);
    let e = fenced
        .put_fleet_case(Provider::Aws, "i-stale", now, "{}")
        .await
        .unwrap_err();
    assert!(e.is_fenced(), "{e}");
    let e = fenced
        .close_fleet_case(Provider::Aws, "i-leader")
        .await
        .unwrap_err();
    assert!(e.is_fenced(), "{e}");
    // An expired lease refuses its own term too, before anyone takes it over.
    term.store(t2, Ordering::SeqCst);
    fenced
        .put_fleet_case(Provider::Aws, "i-b", now, "{}")
        .await
        .unwrap();
    tokio::time::sleep(lease + Duration::from_millis(200)).await;
    assert!(
        fenced
            .put_fleet_case(Provider::Aws, "i-late", now, "{}")
            .await
            .unwrap_err()
            .is_fenced()
    );
    // Unfenced sessions write as before.
    store
        .put_fleet_case(Provider::Aws, "i-rpc", now, "{}")
        .await
        .unwrap();
    let mut ids: Vec<String> = store
        .fleet_cases()
        .await
        .unwrap()
        .into_keys()
        .map(|(_, id)| id)
        .collect();
    ids.sort();
    assert_eq!(ids, ["i-b", "i-leader", "i-rpc"]);
    fenced.close().await;
    store.close().await;
}

/// A takeover waits for a fenced write that passed the check and is still in its
/// transaction (the trigger holds the lease row FOR KEY SHARE): the former leader's last
/// write commits before the new term begins, never after.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_takeover_waits_for_the_former_leaders_write_in_flight() {
    let (db, store) = pg().await;
    let lease = Duration::from_millis(800);
    let term = Arc::new(AtomicI64::new(0));
    let fenced = store
        .fenced(&db.url, 2, term.clone(), Duration::from_secs(30))
        .await
        .unwrap();
    let t1 = store.try_acquire_lease("a", lease).await.unwrap().unwrap();
    term.store(t1, Ordering::SeqCst);
    let mut tx = pg_pool(&fenced).begin().await.unwrap();
    sqlx::query(
        "INSERT INTO fleet_case (provider, instance_id, opened_at, detail) VALUES ('aws', 'i-slow', now(), '{}')",
    )
    .execute(&mut *tx)
    .await
    .unwrap();
    tokio::time::sleep(lease + Duration::from_millis(200)).await;
    let s2 = store.clone();
    let takeover = tokio::spawn(async move {
        s2.try_acquire_lease("b", Duration::from_secs(20))
            .await
            .unwrap()
    });
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert!(
        !takeover.is_finished(),
        "the takeover waits for the write in flight"
    );
    tx.commit().await.unwrap();
    let t2 = tokio::time::timeout(Duration::from_secs(10), takeover)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(t2, Some(t1 + 1));
    assert_eq!(store.fleet_cases().await.unwrap().len(), 1);
    fenced.close().await;
    store.close().await;
}

/// SQLite is single-node: this process always takes the lease (a new term each start),
/// renews it, and its "fenced" store is the store itself.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_is_single_node_and_always_leads() {
    let db = fresh_sqlite();
    let store = Store::open(&db.url).await.unwrap();
    let lease = Duration::from_secs(10);
    assert_eq!(store.try_acquire_lease("a", lease).await.unwrap(), Some(1));
    assert_eq!(store.try_acquire_lease("b", lease).await.unwrap(), Some(2));
    assert!(store.renew_lease("b", 2, lease).await.unwrap());
    assert!(!store.renew_lease("a", 1, lease).await.unwrap());
    let fenced = store
        .fenced(&db.url, 2, Arc::new(AtomicI64::new(0)), lease)
        .await
        .unwrap();
    fenced
        .put_fleet_case(Provider::Aws, "i-1", Utc::now(), "{}")
        .await
        .unwrap();
    assert_eq!(store.fleet_cases().await.unwrap().len(), 1);
    assert!(store.release_lease("b", 2).await.unwrap());
    let row = store.current_lease().await.unwrap().unwrap();
    assert_eq!((row.holder.as_str(), row.term, row.live), ("b", 2, false));
    store.close().await;
}

/// Budget evaluation with replicas: a follower evaluates (its gate snapshot) but records
/// nothing; once it leads, it records at its next poll even though no spend moved; a
/// leader that lost its lease records nothing again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follower_evaluates_budgets_read_only_and_the_leader_records_them() {
    use bursar::domain::budget::{Budget, GatePolicy};
    use bursar::store::budgets::BudgetOrigin;
    use bursar::tasks::budgets::BudgetEngine;
    use bursar::tasks::leader::{Leadership, elect_once};
    let (db, store) = pg().await;
    let lease = Duration::from_millis(600);
    let leadership = Leadership::new("a".into(), lease);
    let fenced = store
        .fenced(&db.url, 2, leadership.fence(), Duration::from_secs(5))
        .await
        .unwrap();
    let mut b = Budget::new("gpu", "100".parse().unwrap(), "USD");
    b.gate = GatePolicy::Deny;
    assert!(store.create_budget(&b, BudgetOrigin::Api).await.unwrap());
    // Another replica holds the lease.
    assert!(
        store
            .try_acquire_lease("b", Duration::from_secs(1))
            .await
            .unwrap()
            .is_some()
    );
    let engine = BudgetEngine::new(store.clone(), bursar::notify::AlertsConfig::default(), 7)
        .with_leadership(fenced.clone(), leadership.clone());
    let now = Utc::now();
    assert_eq!(engine.evaluate_all(now).await.unwrap().len(), 1);
    assert_eq!(engine.snapshots().load().len(), 1, "the follower's gate");
    assert!(store.list_evaluations("gpu", 10).await.unwrap().is_empty());
    assert!(engine.evaluate_if_changed(now).await.unwrap().is_none());
    // The lease runs out; this process takes it and records at its next poll.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    elect_once(&store, &leadership).await;
    assert!(leadership.may_act());
    assert!(engine.evaluate_if_changed(now).await.unwrap().is_some());
    assert_eq!(store.list_evaluations("gpu", 10).await.unwrap().len(), 1);
    assert!(engine.evaluate_if_changed(now).await.unwrap().is_none());
    // Past its local deadline without renewal: nothing is recorded.
    tokio::time::sleep(lease).await;
    assert!(!leadership.may_act());
    engine.evaluate_all(now).await.unwrap();
    assert_eq!(store.list_evaluations("gpu", 10).await.unwrap().len(), 1);
    elect_once(&store, &leadership).await;
    assert_eq!(leadership.term(), None, "stepped down");
    fenced.close().await;
    store.close().await;
}

// ---------------------------------------------------------------------------------------
// Three replicas

const LEASE: Duration = Duration::from_secs(2);
const REGION: &str = "us-east-1";

/// aiosmtpd with a handler that logs, one JSON line each, when a message's DATA arrived
/// and, `delay` later, whether its 250 went back to a client still connected
/// (`delivered`) or the client had gone (`dropped`, the handler cancelled or the
/// connection closing). Only `delivered` counts as a message received.
const SLOW_HANDLER: &str = r#"
import asyncio, json, email, email.policy

class Slow:
    def __init__(self, out, delay):
        self.out = out
        self.delay = float(delay)

    @classmethod
    def from_cli(cls, parser, *args):
        return cls(args[0], args[1])

    def log(self, doc):
        with open(self.out, "a") as f:
            f.write(json.dumps(doc) + "\n")

    async def handle_DATA(self, server, session, envelope):
        raw = envelope.original_content or envelope.content
        msg = email.message_from_bytes(raw, policy=email.policy.default)
        doc = {"subject": str(msg["Subject"]), "message_id": str(msg["Message-ID"])}
        self.log(dict(doc, event="data"))
        try:
            await asyncio.sleep(self.delay)
        except asyncio.CancelledError:
            self.log(dict(doc, event="dropped"))
            raise
        t = getattr(server, "transport", None)
        if t is None or t.is_closing():
            self.log(dict(doc, event="dropped"))
            return "451 client gone"
        self.log(dict(doc, event="delivered"))
        return "250 OK"
"#;

struct SlowSmtp {
    port: u16,
    log: PathBuf,
    _dir: tempfile::TempDir,
    child: std::process::Child,
}

#[derive(Debug, serde::Deserialize)]
struct SmtpEvent {
    event: String,
    subject: String,
}

impl SlowSmtp {
    #[allow(clippy::zombie_processes)] // killed and waited for in Drop
    async fn start(delay: Duration) -> SlowSmtp {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("bursar_slow_smtp.py"), SLOW_HANDLER).unwrap();
        let log = dir.path().join("events.jsonl");
        let port = common::free_port();
        let python = common::aiosmtpd_python();
        let child = std::process::Command::new(&python)
            .args(["-m", "aiosmtpd", "-n", "-l"])
            .arg(format!("127.0.0.1:{port}"))
            .args(["-c", "bursar_slow_smtp.Slow"])
            .arg(&log)
            .arg(delay.as_secs_f64().to_string())
            .env("PYTHONPATH", dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("aiosmtpd (run .ci/run)");
        let deadline = Instant::now() + common::START_DEADLINE;
        while tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_err()
        {
            assert!(Instant::now() < deadline, "aiosmtpd did not start");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        SlowSmtp {
            port,
            log,
            _dir: dir,
            child,
        }
    }

    fn events(&self) -> Vec<SmtpEvent> {
        std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }

    /// Messages whose 250 reached a connected client, by subject.
    fn delivered(&self) -> HashMap<String, usize> {
        let mut n = HashMap::new();
        for e in self.events() {
            if e.event == "delivered" {
                *n.entry(e.subject).or_insert(0) += 1;
            }
        }
        n
    }
}

impl Drop for SlowSmtp {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The recorded dcgm-exporter output for `host` with all 8 GPUs at 0 %.
fn idle_dcgm(host: &str) -> String {
    let recorded = common::read_shared("gpu-metrics/dcgm-exporter-rtx4000ada.prom");
    let mut out = Vec::new();
    for l in recorded.lines() {
        if l.starts_with('#') {
            out.push(l.to_string());
            continue;
        }
        for g in 0..8u32 {
            let l = l
                .replace("lke529760-766837-0a634ab30000", host)
                .replace("gpu=\"0\"", &format!("gpu=\"{g}\""))
                .replace("c1e1c934c44c", &format!("c1e1c934c4{g:02}"));
            let idle = l.starts_with("DCGM_FI_PROF_GR_ENGINE_ACTIVE{")
                || l.starts_with("DCGM_FI_DEV_GPU_UTIL{");
            out.push(if idle {
                format!("{} 0", l.rsplit_once(' ').unwrap().0)
            } else {
                l
            });
        }
    }
    out.join("\n") + "\n"
}

struct Replica {
    name: String,
    grpc: String,
    http: String,
    log: PathBuf,
    child: tokio::process::Child,
    pid: i32,
}

impl Replica {
    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn signal(&self, sig: &str) {
        let ok = std::process::Command::new("kill")
            .args([sig, &self.pid.to_string()])
            .status()
            .unwrap()
            .success();
        assert!(ok, "kill {sig} {}", self.name);
    }

    async fn metrics(&self) -> String {
        reqwest::get(format!("http://{}/metrics", self.http))
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }
}

struct Cluster {
    dir: tempfile::TempDir,
    db_url: String,
    smtp_port: u16,
    ec2_endpoint: String,
    dcgm_url: String,
    started: usize,
}

impl Cluster {
    async fn spawn(&mut self) -> Replica {
        self.started += 1;
        let name = format!("replica-{}", self.started);
        let (grpc, http) = (
            format!("127.0.0.1:{}", common::free_port()),
            format!("127.0.0.1:{}", common::free_port()),
        );
        let config = format!(
            r#"
database_url = "{db}"
listen = "{grpc}"
metrics_listen = "{http}"
catalog_refresh = "1s"

[leader]
lease = "{lease}s"

[alerts]
outbox_interval = "200ms"
claim_lease = "8s"
slack_timeout = "5s"

[alerts.smtp]
host = "127.0.0.1"
port = {smtp}
tls = "none"
timeout = "6s"

[budget_evaluation]
every = "1h"

[idle_gpu]
enabled = true
mode = "stop"
window = "2s"
lag = "0s"
min_samples = 2
grace = "4s"
min_age = "0s"
every = "300ms"
scrape_every = "300ms"
inventory_every = "400ms"
channels = {{ emails = ["gpu-owners@example.com"], slack_webhooks = [] }}

[[idle_gpu.dcgm_targets]]
url = "{dcgm}"
timeout = "2s"

[fleet.aws]
regions = ["{REGION}"]
endpoint = "{ec2}"
timeout = "20s"
max_retries = 1
base_backoff = "50ms"
max_backoff = "200ms"
"#,
            db = self.db_url,
            lease = LEASE.as_secs(),
            smtp = self.smtp_port,
            dcgm = self.dcgm_url,
            ec2 = self.ec2_endpoint,
        );
        let path = self.dir.path().join(format!("{name}.toml"));
        std::fs::write(&path, config).unwrap();
        let log = self.dir.path().join(format!("{name}.log"));
        let child = tokio::process::Command::new(env!("CARGO_BIN_EXE_bursar"))
            .args(["serve", "--config"])
            .arg(&path)
            .env_remove("BURSAR_CONFIG")
            .env("BURSAR_LEADER_HOLDER", &name)
            .env("RUST_LOG", "info")
            .env("AWS_ACCESS_KEY_ID", "testing")
            .env("AWS_SECRET_ACCESS_KEY", "testing")
            .env("AWS_REGION", REGION)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let pid = child.id().unwrap() as i32;
        let r = Replica {
            name,
            grpc: format!("http://{grpc}"),
            http,
            log,
            child,
            pid,
        };
        let mut r = r;
        let deadline = Instant::now() + common::START_DEADLINE;
        loop {
            if let Ok(Some(status)) = r.child.try_wait() {
                panic!("{} exited ({status}): {}", r.name, r.log_text());
            }
            if reqwest::get(format!("http://{}/metrics", r.http))
                .await
                .is_ok_and(|a| a.status().is_success())
            {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "{} did not start: {}",
                r.name,
                r.log_text()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        r
    }
}

/// SelectProvider against whichever replicas are listed, round robin, until stopped.
struct SelectLoop {
    targets: Arc<Mutex<Vec<String>>>,
    ok: Arc<AtomicU64>,
    errors: Arc<Mutex<Vec<String>>>,
    stop: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<()>,
}

impl SelectLoop {
    fn start() -> SelectLoop {
        let targets: Arc<Mutex<Vec<String>>> = Arc::default();
        let ok = Arc::new(AtomicU64::new(0));
        let errors: Arc<Mutex<Vec<String>>> = Arc::default();
        let stop = Arc::new(AtomicBool::new(false));
        let (t, o, e, s) = (targets.clone(), ok.clone(), errors.clone(), stop.clone());
        let task = tokio::spawn(async move {
            let mut clients: HashMap<
                String,
                proto::placement_service_client::PlacementServiceClient<tonic::transport::Channel>,
            > = HashMap::new();
            let mut i = 0usize;
            while !s.load(Ordering::SeqCst) {
                let list = t.lock().unwrap().clone();
                if list.is_empty() {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    continue;
                }
                let url = list[i % list.len()].clone();
                i += 1;
                if !clients.contains_key(&url) {
                    let ch = tonic::transport::Endpoint::from_shared(url.clone())
                        .unwrap()
                        .connect_lazy();
                    clients.insert(
                        url.clone(),
                        proto::placement_service_client::PlacementServiceClient::new(ch),
                    );
                }
                let c = clients.get_mut(&url).unwrap();
                let req = proto::SelectProviderRequest {
                    resources: Some(proto::Resources {
                        accelerators: vec!["A100".into()],
                        accelerator_count: 8,
                        ..Default::default()
                    }),
                    expected_hours: 2.0,
                    ..Default::default()
                };
                let mut call = tonic::Request::new(req);
                call.set_timeout(Duration::from_secs(5));
                match c.select_provider(call).await {
                    Ok(_) => {
                        o.fetch_add(1, Ordering::SeqCst);
                    }
                    Err(err) => e.lock().unwrap().push(format!("{url}: {err}")),
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        });
        SelectLoop {
            targets,
            ok,
            errors,
            stop,
            task,
        }
    }

    fn only(&self, replicas: &[&Replica]) {
        *self.targets.lock().unwrap() = replicas.iter().map(|r| r.grpc.clone()).collect();
    }
}

/// The lease row's holder while it is live.
async fn live_holder(store: &Store) -> Option<(String, i64)> {
    store
        .current_lease()
        .await
        .ok()
        .flatten()
        .filter(|l| l.live)
        .map(|l| (l.holder, l.term))
}

/// Waits until a live lease is held by someone other than `not`; returns it and how long
/// after `since` it was seen.
async fn takeover(store: &Store, not: &str, since: Instant) -> ((String, i64), Duration) {
    let deadline = since + Duration::from_secs(60);
    loop {
        if let Some((h, t)) = live_holder(store).await
            && h != not
        {
            return ((h, t), since.elapsed());
        }
        assert!(Instant::now() < deadline, "no takeover from {not}");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

async fn wait_for(what: &str, limit: Duration, mut f: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !f().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn queue_alerts(store: &Store, prefix: &str, n: usize) -> Vec<String> {
    let mut subjects = Vec::new();
    for i in 0..n {
        let subject = format!("{prefix} {i}");
        let alert = FiredAlert {
            budget: format!("{prefix}-{i}"),
            period_key: "2026-12".into(),
            threshold_key: "actual:80".into(),
            actual: "80".parse().unwrap(),
            forecast: "90".parse().unwrap(),
            amount: "100".parse().unwrap(),
            currency: "USD".into(),
            fired_at: Utc::now(),
        };
        let msg = OutboxMessage {
            channel: "email".into(),
            target: "finance@example.com".into(),
            subject: subject.clone(),
            body_text: "spend reached 80%".into(),
            body_html: String::new(),
            slack_payload: String::new(),
        };
        assert!(store.fire_alert(&alert, &[msg]).await.unwrap());
        subjects.push(subject);
    }
    subjects
}

fn stop_calls(proxy: &FaultProxy, id: &str) -> usize {
    proxy
        .calls("StopInstances")
        .iter()
        .filter(|p| p.values().any(|v| v == id))
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_replicas_survive_kills_and_a_paused_leader() {
    let db = fresh_postgres().await;
    let store = Store::open(&db.url).await.unwrap();
    let smtp = SlowSmtp::start(Duration::from_millis(1500)).await;
    let moto = Moto::start().await;
    let proxy = FaultProxy::start(&moto.url).await;
    // Idle GPUs: the host name is set once the machine is launched.
    let host = Arc::new(Mutex::new(String::from("not-launched")));
    let h = host.clone();
    let dcgm =
        Fixture::start(move |_| FixtureResponse::status(200, idle_dcgm(&h.lock().unwrap()))).await;
    let mut cluster = Cluster {
        dir: tempfile::tempdir().unwrap(),
        db_url: db.url.clone(),
        smtp_port: smtp.port,
        ec2_endpoint: proxy.url.clone(),
        dcgm_url: format!("{}/metrics", dcgm.base),
        started: 0,
    };
    let mut replicas = vec![
        cluster.spawn().await,
        cluster.spawn().await,
        cluster.spawn().await,
    ];
    let select = SelectLoop::start();
    let leader_of = |replicas: &[Replica], name: &str| -> usize {
        replicas.iter().position(|r| r.name == name).unwrap()
    };
    let (first, _) = takeover(&store, "", Instant::now()).await;
    let mut alerts_sent: Vec<String> = Vec::new();

    // 1. kill -9 the leader while an alert is in flight (DATA sent, its 250 held back).
    let li = leader_of(&replicas, &first.0);
    let survivors: Vec<&Replica> = replicas.iter().filter(|r| r.name != first.0).collect();
    select.only(&survivors);
    alerts_sent.extend(queue_alerts(&store, "budget alert", 6).await);
    wait_for(
        "a DATA at the SMTP server",
        Duration::from_secs(60),
        async || smtp.events().iter().any(|e| e.event == "data"),
    )
    .await;
    let killed_at = Instant::now();
    replicas[li].signal("-KILL");
    let (second, took) = takeover(&store, &first.0, killed_at).await;
    eprintln!("takeover after kill -9 during alert delivery: {took:?}");
    assert!(
        took <= 2 * LEASE,
        "takeover after {took:?}, more than two leases"
    );
    assert!(second.1 > first.1, "a new term: {first:?} → {second:?}");
    let mut dead = replicas.remove(li);
    let _ = dead.child.wait().await;
    wait_for(
        "every alert delivered",
        Duration::from_secs(90),
        async || {
            let d = smtp.delivered();
            alerts_sent.iter().all(|s| d.contains_key(s))
        },
    )
    .await;
    assert!(
        smtp.events()
            .iter()
            .any(|e| e.event == "dropped" && e.subject.starts_with("budget alert")),
        "the kill landed during a send: {:?}",
        smtp.events()
    );
    let outbox = store.list_outbox(None).await.unwrap();
    assert!(outbox.iter().all(|r| r.state == "delivered"), "{outbox:?}");

    // 2. kill -9 the leader while its StopInstances is at the cloud (held 3 s by the proxy).
    replicas.push(cluster.spawn().await);
    let ec2 = {
        let cfg = bursar::remote::aws::sdk_config(
            &bursar::remote::HttpSettings {
                endpoint: Some(moto.url.clone()),
                ..Default::default()
            },
            REGION,
        )
        .await
        .unwrap();
        aws_sdk_ec2::Client::new(&cfg)
    };
    proxy.delay("StopInstances", Duration::from_secs(3));
    let launched = ec2
        .run_instances()
        .image_id("ami-12c6146b")
        .instance_type(InstanceType::from("p4d.24xlarge"))
        .min_count(1)
        .max_count(1)
        .tag_specifications(
            TagSpecification::builder()
                .resource_type(ResourceType::Instance)
                .tags(Tag::builder().key("Name").value("idle-a100").build())
                .build(),
        )
        .send()
        .await
        .unwrap();
    let inst = &launched.instances()[0];
    let id = inst.instance_id().unwrap().to_string();
    *host.lock().unwrap() = inst.private_dns_name().unwrap().to_string();
    let survivors: Vec<&Replica> = replicas.iter().filter(|r| r.name != second.0).collect();
    select.only(&survivors);
    wait_for(
        "the StopInstances call",
        Duration::from_secs(90),
        async || stop_calls(&proxy, &id) > 0,
    )
    .await;
    let killed_at = Instant::now();
    let li = leader_of(&replicas, &second.0);
    replicas[li].signal("-KILL");
    let (third, took) = takeover(&store, &second.0, killed_at).await;
    eprintln!("takeover after kill -9 during StopInstances: {took:?}");
    assert!(took <= 2 * LEASE, "takeover after {took:?}");
    let mut dead = replicas.remove(li);
    let _ = dead.child.wait().await;
    wait_for("the machine stopped", Duration::from_secs(60), async || {
        let out = ec2
            .describe_instances()
            .instance_ids(&id)
            .send()
            .await
            .unwrap();
        out.reservations()[0].instances()[0]
            .state()
            .and_then(|s| s.name())
            .is_some_and(|n| n.as_str() == "stopped")
    })
    .await;
    // The new leader resolves the intent from the listing, without calling again.
    wait_for(
        "the stop's outcome in the audit log",
        Duration::from_secs(30),
        async || {
            store
                .list_fleet_actions(Some(&id), Some("stopped"), 10)
                .await
                .unwrap()
                .len()
                == 1
        },
    )
    .await;
    let outcome = store
        .list_fleet_actions(Some(&id), Some("stopped"), 10)
        .await
        .unwrap();
    assert!(
        outcome[0].reason.contains("former leader"),
        "resolved by the new leader from the listing: {outcome:?}"
    );
    // Well past another grace period: still the one call.
    tokio::time::sleep(Duration::from_secs(6)).await;
    assert_eq!(
        stop_calls(&proxy, &id),
        1,
        "{:?}",
        proxy.calls("StopInstances")
    );

    // 3. SIGSTOP the leader past its lease; another takes over; SIGCONT: it does nothing.
    replicas.push(cluster.spawn().await);
    let li = leader_of(&replicas, &third.0);
    let survivors: Vec<&Replica> = replicas.iter().filter(|r| r.name != third.0).collect();
    select.only(&survivors);
    let paused_at = Instant::now();
    replicas[li].signal("-STOP");
    let (fourth, took) = takeover(&store, &third.0, paused_at).await;
    eprintln!("takeover after SIGSTOP: {took:?}");
    assert!(took <= 2 * LEASE, "takeover after {took:?}");
    let later = queue_alerts(&store, "after the pause", 2).await;
    alerts_sent.extend(later.clone());
    wait_for(
        "the alerts queued during the pause",
        Duration::from_secs(60),
        async || {
            let d = smtp.delivered();
            later.iter().all(|s| d.contains_key(s))
        },
    )
    .await;
    let sent_before = smtp.events().len();
    let calls_before = proxy.calls("StopInstances").len();
    replicas[li].signal("-CONT");
    let paused = &replicas[li];
    wait_for(
        "the resumed replica steps down",
        Duration::from_secs(30),
        async || paused.metrics().await.contains("bursar_leader 0\n"),
    )
    .await;
    tokio::time::sleep(2 * LEASE).await;
    let log = paused.log_text();
    assert!(log.contains("leadership lost"), "{log}");
    assert!(log.contains("singleton work aborted"), "{log}");
    assert!(log.contains("stale leader term"), "{log}");
    let m = paused.metrics().await;
    let refusals: f64 = m
        .lines()
        .find_map(|l| l.strip_prefix("bursar_leader_stale_refusals_total "))
        .unwrap()
        .parse()
        .unwrap();
    assert!(refusals >= 1.0, "{m}");
    assert_eq!(
        smtp.events().len(),
        sent_before,
        "the resumed replica sent nothing"
    );
    assert_eq!(proxy.calls("StopInstances").len(), calls_before);
    assert_eq!(
        live_holder(&store).await.map(|h| h.0),
        Some(fourth.0.clone())
    );

    // Every alert arrived exactly once; SelectProvider never failed on a survivor.
    let d = smtp.delivered();
    for s in &alerts_sent {
        assert_eq!(d.get(s), Some(&1), "{s}: {d:?}");
    }
    assert!(d.values().all(|n| *n == 1), "{d:?}");
    select.stop.store(true, Ordering::SeqCst);
    let _ = select.task.await;
    let errors = select.errors.lock().unwrap().clone();
    assert!(errors.is_empty(), "{errors:?}");
    assert!(select.ok.load(Ordering::SeqCst) > 100);
    // A clean shutdown releases the lease at once.
    let li = leader_of(&replicas, &fourth.0);
    replicas[li].signal("-TERM");
    let _ = replicas[li].child.wait().await;
    let row = store.current_lease().await.unwrap().unwrap();
    assert!(!row.live || row.holder != fourth.0, "{row:?}");
    drop(replicas);
    store.close().await;
}
