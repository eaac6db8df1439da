//! The placement decision log: SelectProvider appends each decision to a bounded in-memory
//! queue (a short mutex, never a wait on I/O); one writer, on a thread of its own below the
//! server's CPU priority, takes the queue whole and writes it to `placement_decision` in
//! batches. A full queue drops the row and counts it — logging never slows or fails the RPC.
//! The writer is woken once per `batch` rows (or by its `flush` timer), not once per row:
//! under load a wake-up per decision cost the server a thread unpark per request. On shutdown
//! the writer drains the queue before `run` returns.
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{Notify, watch};

use chrono::{DateTime, Utc};

use crate::domain::catalog::Catalog;
use crate::domain::money::{Units, units_to_string};
use crate::domain::placement::PlacementRequest;
use crate::store::{DecisionChoice, DecisionRow, Store};

/// A decision as the request path hands it over: what the request owned (its labels and
/// converted request) and the chosen offers as catalog positions. The writer renders the
/// row's text and JSON columns, so the request path clones no strings for the log.
pub struct PendingDecision {
    pub id: String,
    pub decided_at: DateTime<Utc>,
    pub labels: std::collections::HashMap<String, String>,
    pub request: PlacementRequest,
    /// The catalog the decision was made on (the offers below are positions in it).
    pub catalog: Arc<Catalog>,
    pub considered: u64,
    pub feasible: u64,
    /// (offer, total) of the placement returned first and of the runner-up.
    pub chosen: Option<(usize, Units)>,
    pub runner_up: Option<(usize, Units)>,
    /// Cheapest on-demand total in the data's own region.
    pub baseline: Option<Units>,
    pub outcome: &'static str,
    pub latency_us: i64,
}

/// The `request` column: what was asked, in a few fields (keys in alphabetical order).
#[derive(serde::Serialize)]
struct RequestSummary<'a> {
    accelerator_count: u32,
    accelerators: &'a [String],
    hours: String,
    inputs: Vec<String>,
    market: String,
    min_memory_gib: f64,
    min_vcpus: f64,
    nodes: u32,
    top_k: usize,
}

impl PendingDecision {
    /// The row, borrowing its text from the decision and its catalog.
    fn row(&self) -> DecisionRow<'_> {
        let req = &self.request;
        let summary = RequestSummary {
            accelerator_count: req.accelerator_count,
            accelerators: &req.accelerators,
            hours: units_to_string(i128::from(req.hours_milli) * 1_000_000_000),
            inputs: req
                .inputs
                .iter()
                .map(|i| {
                    format!(
                        "{}:{}:{}GB",
                        i.provider,
                        i.region,
                        i.gb_milli as f64 / 1000.0
                    )
                })
                .collect(),
            market: format!("{:?}", req.market),
            min_memory_gib: req.min_memory_gib,
            min_vcpus: req.min_vcpus,
            nodes: req.nodes,
            top_k: req.top_k,
        };
        let offers = self.catalog.offers();
        let choice = |c: Option<(usize, Units)>| {
            c.and_then(|(i, total)| offers.get(i).map(|o| (o, total)))
                .map(|(o, total)| DecisionChoice {
                    provider: o.key.provider.as_str(),
                    region: &o.key.region,
                    zone: &o.key.zone,
                    instance_type: &o.key.instance_type,
                    market: o.key.market.as_str(),
                    total,
                })
        };
        let label = |k: &str| self.labels.get(k).map(String::as_str);
        DecisionRow {
            id: &self.id,
            decided_at: self.decided_at,
            team: label("team"),
            project: label("project"),
            job_id: label("job_id").or_else(|| label("job")),
            labels: serde_json::to_string(&self.labels).unwrap_or_else(|_| "{}".into()),
            request: serde_json::to_string(&summary).unwrap_or_else(|_| "{}".into()),
            offers_considered: self.considered as i64,
            feasible: self.feasible as i64,
            chosen: choice(self.chosen),
            runner_up: choice(self.runner_up),
            baseline_total: self.baseline,
            estimated_saving: match (self.baseline, self.chosen) {
                (Some(b), Some((_, c))) => Some(b - c),
                _ => None,
            },
            currency: "USD",
            outcome: self.outcome,
            latency_us: self.latency_us,
        }
    }
}

/// The log: the request path's `record` and the writer's `writer`.
#[derive(Clone)]
pub struct DecisionLog {
    inner: Arc<Inner>,
}

struct Inner {
    queue: Mutex<Vec<PendingDecision>>,
    capacity: usize,
    batch: usize,
    /// Signalled when the queue reaches `batch` rows.
    full: Notify,
    dropped: AtomicU64,
    written: AtomicU64,
}

impl DecisionLog {
    /// A log that holds at most `capacity` unwritten rows and wakes its writer every
    /// `batch` rows.
    pub fn new(capacity: usize, batch: usize) -> DecisionLog {
        DecisionLog {
            inner: Arc::new(Inner {
                queue: Mutex::new(Vec::with_capacity(batch.max(1))),
                capacity: capacity.max(1),
                batch: batch.max(1),
                full: Notify::new(),
                dropped: AtomicU64::new(0),
                written: AtomicU64::new(0),
            }),
        }
    }

    /// Queues a row without waiting; a full queue drops it and counts the drop.
    pub fn record(&self, row: PendingDecision) {
        let wake = {
            let Ok(mut q) = self.inner.queue.lock() else {
                self.inner.dropped.fetch_add(1, Ordering::Relaxed);
                return;
            };
            if q.len() >= self.inner.capacity {
                drop(q);
                self.inner.dropped.fetch_add(1, Ordering::Relaxed);
                return;
            }
            q.push(row);
            q.len() == self.inner.batch
        };
        if wake {
            self.inner.full.notify_one();
        }
    }

    pub fn dropped(&self) -> u64 {
        self.inner.dropped.load(Ordering::Relaxed)
    }

    pub fn written(&self) -> u64 {
        self.inner.written.load(Ordering::Relaxed)
    }

    /// Rows waiting to be written.
    pub fn queued(&self) -> usize {
        self.inner.queue.lock().map(|q| q.len()).unwrap_or(0)
    }

    fn take(&self) -> Vec<PendingDecision> {
        match self.inner.queue.lock() {
            Ok(mut q) => std::mem::replace(&mut *q, Vec::with_capacity(self.inner.batch)),
            Err(_) => Vec::new(),
        }
    }

    /// Writes what is queued whenever `batch` rows are waiting or `flush` has passed since
    /// the last write, until shutdown; then writes what is left. A row waits at most
    /// about `flush`.
    pub async fn writer(&self, store: Store, flush: Duration, mut shutdown: watch::Receiver<bool>) {
        loop {
            let stop = tokio::select! {
                _ = self.inner.full.notified() => false,
                _ = tokio::time::sleep(flush) => false,
                _ = shutdown.changed() => true,
            };
            let rows = self.take();
            self.flush(&store, rows, &shutdown).await;
            if stop {
                let rows = self.take();
                self.flush(&store, rows, &shutdown).await;
                return;
            }
        }
    }

    /// Runs `writer` on a thread of its own, `nice` steps below the server's CPU priority
    /// (Linux; elsewhere at the same priority), with its own one-connection pool opened from
    /// that thread, so on SQLite sqlx's worker thread for it inherits the priority too. On
    /// a busy machine, rendering and inserting rows then gives way to the threads answering
    /// requests instead of time-slicing with them; the bounded queue absorbs the delay.
    /// If that pool cannot be opened, the writer uses `fallback` (the server's pool).
    /// The returned receiver resolves once the writer has drained the queue and stopped.
    pub fn spawn_writer_thread(
        &self,
        url: String,
        fallback: Store,
        nice: i32,
        flush: Duration,
        shutdown: watch::Receiver<bool>,
    ) -> std::io::Result<tokio::sync::oneshot::Receiver<()>> {
        let (done, finished) = tokio::sync::oneshot::channel();
        let log = self.clone();
        std::thread::Builder::new()
            .name("decision-log".into())
            .spawn(move || {
                lower_thread_priority(nice);
                let rt = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(rt) => rt,
                    Err(e) => {
                        tracing::error!(error = %e, "decision log: no runtime; decisions will be dropped");
                        return;
                    }
                };
                rt.block_on(async {
                    let (store, own) = match Store::connect_pool(&url, Some(1)).await {
                        Ok(s) => (s, true),
                        Err(e) => {
                            tracing::warn!(error = %e, "decision log: own connection failed; writing through the server's pool");
                            (fallback, false)
                        }
                    };
                    log.writer(store.clone(), flush, shutdown).await;
                    if own {
                        store.close().await;
                    }
                });
                let _ = done.send(());
            })?;
        Ok(finished)
    }

    /// Writes `rows`. While another writer holds a SQLite database (an ingest keeps its
    /// write lock for a whole file), the batch in hand is kept and retried instead of being
    /// dropped — the queue goes on taking rows, up to its bound — until the lock is free or
    /// shutdown begins.
    async fn flush(
        &self,
        store: &Store,
        rows: Vec<PendingDecision>,
        shutdown: &watch::Receiver<bool>,
    ) {
        if rows.is_empty() {
            return;
        }
        // Rows borrow their text from the pending decisions and their catalogs.
        let rows: Vec<DecisionRow<'_>> = rows.iter().map(PendingDecision::row).collect();
        for chunk in rows.chunks(self.inner.batch) {
            let mut waiting = false;
            loop {
                match store.insert_decisions(chunk).await {
                    Ok(n) => {
                        self.inner.written.fetch_add(n, Ordering::Relaxed);
                        if waiting {
                            tracing::info!(
                                rows = chunk.len(),
                                "decision log: the database is free again; held rows written"
                            );
                        }
                        break;
                    }
                    Err(e) if e.is_busy() && !*shutdown.borrow() => {
                        if !waiting {
                            tracing::warn!(error = %e, rows = chunk.len(), "decision log: another writer holds the database; holding the rows and retrying");
                            waiting = true;
                        }
                        tokio::time::sleep(crate::store::BUSY_RETRY).await;
                    }
                    Err(e) => {
                        self.inner
                            .dropped
                            .fetch_add(chunk.len() as u64, Ordering::Relaxed);
                        tracing::warn!(error = %e, rows = chunk.len(), "decision log write failed; rows dropped");
                        break;
                    }
                }
            }
        }
    }
}

/// Raises the calling thread's nice value by `nice` (0 leaves it). Linux keeps a nice value
/// per thread and threads inherit it, so this reaches the threads this one starts.
#[cfg(target_os = "linux")]
fn lower_thread_priority(nice: i32) {
    if nice == 0 {
        return;
    }
    let tid = rustix::thread::gettid();
    let now = rustix::process::getpriority_process(Some(tid)).unwrap_or(0);
    if let Err(e) = rustix::process::setpriority_process(Some(tid), (now + nice).min(19)) {
        tracing::warn!(error = %e, nice, "decision log: could not lower its thread priority");
    }
}

#[cfg(not(target_os = "linux"))]
fn lower_thread_priority(_nice: i32) {}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(id: &str) -> PendingDecision {
        PendingDecision {
            id: id.into(),
            decided_at: Utc::now(),
            labels: Default::default(),
            request: Default::default(),
            catalog: Arc::new(Catalog::default()),
            considered: 0,
            feasible: 0,
            chosen: None,
            runner_up: None,
            baseline: None,
            outcome: "no_feasible",
            latency_us: 1,
        }
    }

    #[test]
    fn a_full_queue_drops_and_counts_without_waiting() {
        let log = DecisionLog::new(2, 1);
        for i in 0..5 {
            log.record(row(&format!("d{i}")));
        }
        assert_eq!(log.dropped(), 3);
        let kept: Vec<String> = log.take().into_iter().map(|d| d.id).collect();
        assert_eq!(kept, ["d0", "d1"]);
        assert_eq!(log.queued(), 0);
        // Room again once the writer has taken the queue.
        log.record(row("d5"));
        assert_eq!((log.queued(), log.dropped()), (1, 3));
    }

    /// The nice value of this process's thread named `name`, from /proc.
    #[cfg(target_os = "linux")]
    fn nice_of_thread(name: &str) -> Option<i32> {
        for t in std::fs::read_dir("/proc/self/task").ok()? {
            let dir = t.ok()?.path();
            let comm = std::fs::read_to_string(dir.join("comm")).unwrap_or_default();
            if comm.trim() == name {
                let stat = std::fs::read_to_string(dir.join("stat")).ok()?;
                // Fields after the parenthesised command: state is field 3, nice field 19.
                let rest = &stat[stat.rfind(')')? + 2..];
                return rest.split(' ').nth(16)?.parse().ok();
            }
        }
        None
    }

    /// SQLite only: there an ingest holds the database's one write lock for a whole file,
    /// longer than a connection's busy timeout (Postgres inserts do not wait on it).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn rows_wait_out_an_ingests_write_lock_instead_of_being_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("log.db").display());
        let store = Store::open(&url).await.unwrap();
        let holder = store.begin_ingest().await.unwrap();
        let log = DecisionLog::new(100, 10);
        let (stop, rx) = watch::channel(false);
        let writer = {
            let (log, store) = (log.clone(), store.clone());
            tokio::spawn(async move { log.writer(store, Duration::from_millis(50), rx).await })
        };
        for i in 0..3 {
            log.record(row(&format!("d{i}")));
        }
        // Past the 10 s busy timeout: the first try has failed and the rows are held.
        tokio::time::sleep(Duration::from_millis(
            crate::store::SQLITE_BUSY_TIMEOUT_MS + 1500,
        ))
        .await;
        assert_eq!((log.written(), log.dropped()), (0, 0));
        holder.commit().await.unwrap();
        for _ in 0..200 {
            if log.written() == 3 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert_eq!((log.written(), log.dropped()), (3, 0));
        stop.send(true).unwrap();
        writer.await.unwrap();
        assert_eq!(store.count_decisions().await.unwrap(), 3);
        store.close().await;
    }

    #[cfg(target_os = "linux")]
    #[tokio::test]
    async fn the_writer_thread_runs_below_the_server_and_drains_on_shutdown() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("log.db").display());
        let store = Store::open(&url).await.unwrap();
        let log = DecisionLog::new(100, 10);
        let (stop, rx) = watch::channel(false);
        let base = rustix::process::getpriority_process(None).unwrap();
        let finished = log
            .spawn_writer_thread(url.clone(), store.clone(), 5, Duration::from_secs(60), rx)
            .unwrap();
        for i in 0..3 {
            log.record(row(&format!("d{i}")));
        }
        // The thread names itself before it lowers its priority; wait for both.
        let mut nice = None;
        for _ in 0..200 {
            nice = nice_of_thread("decision-log");
            if nice == Some((base + 5).min(19)) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(nice, Some((base + 5).min(19)));
        // Fewer rows than a batch and a long flush timer: only shutdown writes them.
        assert_eq!(store.count_decisions().await.unwrap(), 0);
        stop.send(true).unwrap();
        finished.await.unwrap();
        assert_eq!(store.count_decisions().await.unwrap(), 3);
        assert_eq!((log.written(), log.dropped()), (3, 0));
        store.close().await;
    }
}
