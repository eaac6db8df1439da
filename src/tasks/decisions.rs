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

use crate::domain::egress::units_to_string;
use crate::domain::placement::PlacementRequest;
use crate::store::{DecisionRow, Store};

/// A decision as the request path hands it over: the row without its JSON columns, which
/// the writer renders (no serialisation on the request path).
pub struct PendingDecision {
    pub row: DecisionRow,
    pub labels: std::collections::HashMap<String, String>,
    pub request: PlacementRequest,
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
        DecisionRow {
            labels: serde_json::to_string(&self.labels).unwrap_or_else(|_| "{}".into()),
            request: serde_json::to_string(&summary).unwrap_or_else(|_| "{}".into()),
            ..self.row
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
        let rows: Vec<DecisionRow> = rows.into_iter().map(PendingDecision::into_row).collect();
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
    use chrono::Utc;

    fn row(id: &str) -> PendingDecision {
        PendingDecision {
            labels: Default::default(),
            request: Default::default(),
            row: DecisionRow {
                id: id.into(),
                decided_at: Utc::now(),
                team: None,
                project: None,
                job_id: None,
                labels: "{}".into(),
                request: "{}".into(),
                offers_considered: 0,
                feasible: 0,
                chosen: None,
                runner_up: None,
                baseline_total: None,
                estimated_saving: None,
                currency: "USD".into(),
                outcome: "no_feasible".into(),
                latency_us: 1,
            },
        }
    }

    #[test]
    fn a_full_queue_drops_and_counts_without_waiting() {
        let log = DecisionLog::new(2, 1);
        for i in 0..5 {
            log.record(row(&format!("d{i}")));
        }
        assert_eq!(log.dropped(), 3);
        let kept: Vec<String> = log.take().into_iter().map(|d| d.row.id).collect();
        assert_eq!(kept, ["d0", "d1"]);
        assert_eq!(log.queued(), 0);
        // Room again once the writer has taken the queue.
        log.record(row("d5"));
        assert_eq!((log.queued(), log.dropped()), (1, 3));
    }
}
