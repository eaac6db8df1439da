//! The placement decision log: SelectProvider appends each decision to a bounded in-memory
//! queue (a short mutex, never a wait on I/O); one writer task takes the queue whole and
//! writes it to `placement_decision` in batches. A full queue drops the row and counts it —
//! logging never slows or fails the RPC. The writer is woken once per `batch` rows (or by its
//! `flush` timer), not once per row: under load a wake-up per decision cost the server a
//! thread unpark per request. On shutdown the writer drains the queue before `run` returns.
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{Notify, watch};

use chrono::{DateTime, Utc};

use crate::domain::catalog::Catalog;
use crate::domain::egress::{Units, units_to_decimal, units_to_string};
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
    fn into_row(self) -> DecisionRow {
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
                    provider: o.key.provider.to_string(),
                    region: o.key.region.clone(),
                    zone: o.key.zone.clone(),
                    instance_type: o.key.instance_type.clone(),
                    market: o.key.market.to_string(),
                    total: units_to_decimal(total),
                })
        };
        let label = |k: &str| self.labels.get(k).cloned();
        DecisionRow {
            id: self.id,
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
            baseline_total: self.baseline.map(units_to_decimal),
            estimated_saving: match (self.baseline, self.chosen) {
                (Some(b), Some((_, c))) => Some(units_to_decimal(b - c)),
                _ => None,
            },
            currency: "USD".into(),
            outcome: self.outcome.into(),
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
            self.flush(&store, rows).await;
            if stop {
                let rows = self.take();
                self.flush(&store, rows).await;
                return;
            }
        }
    }

    async fn flush(&self, store: &Store, rows: Vec<PendingDecision>) {
        if rows.is_empty() {
            return;
        }
        // Rendered 64 rows at a time, yielding in between: a whole batch rendered at once
        // held a runtime worker for milliseconds, which requests queued behind it felt.
        let mut rendered: Vec<DecisionRow> = Vec::with_capacity(rows.len());
        for (i, d) in rows.into_iter().enumerate() {
            if i > 0 && i % 64 == 0 {
                tokio::task::yield_now().await;
            }
            rendered.push(d.into_row());
        }
        let rows = rendered;
        for chunk in rows.chunks(self.inner.batch) {
            match store.insert_decisions(chunk).await {
                Ok(n) => {
                    self.inner.written.fetch_add(n, Ordering::Relaxed);
                }
                Err(e) => {
                    self.inner
                        .dropped
                        .fetch_add(chunk.len() as u64, Ordering::Relaxed);
                    tracing::warn!(error = %e, rows = chunk.len(), "decision log write failed; rows dropped");
                }
            }
        }
    }
}

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
}
