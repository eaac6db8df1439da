//! The placement decision log: SelectProvider hands each decision to a bounded queue with
//! `try_send` (never waits); one writer task batches rows into `placement_decision`. A full
//! queue drops the row and counts it — logging never slows or fails the RPC. On shutdown
//! the writer drains the queue before `run` returns.
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::sync::{mpsc, watch};

use crate::domain::egress::units_to_decimal;
use crate::domain::placement::PlacementRequest;
use crate::store::{DecisionRow, Store};

/// A decision as the request path hands it over: the row without its JSON columns, which
/// the writer renders (no serialisation on the request path).
pub struct PendingDecision {
    pub row: DecisionRow,
    pub labels: std::collections::HashMap<String, String>,
    pub request: PlacementRequest,
}

impl PendingDecision {
    fn into_row(self) -> DecisionRow {
        let req = &self.request;
        DecisionRow {
            labels: serde_json::to_string(&self.labels).unwrap_or_else(|_| "{}".into()),
            request: serde_json::json!({
                "min_vcpus": req.min_vcpus,
                "min_memory_gib": req.min_memory_gib,
                "accelerators": req.accelerators,
                "accelerator_count": req.accelerator_count,
                "nodes": req.nodes,
                "hours": units_to_decimal(i128::from(req.hours_milli) * 1_000_000_000).to_string(),
                "market": format!("{:?}", req.market),
                "inputs": req.inputs.iter().map(|i| format!("{}:{}:{}GB", i.provider, i.region, i.gb_milli as f64 / 1000.0)).collect::<Vec<_>>(),
                "top_k": req.top_k,
            })
            .to_string(),
            ..self.row
        }
    }
}

/// The request-path side of the log.
#[derive(Clone)]
pub struct DecisionLog {
    tx: mpsc::Sender<PendingDecision>,
    dropped: Arc<AtomicU64>,
    written: Arc<AtomicU64>,
}

impl DecisionLog {
    /// A log with a queue of `capacity` rows, and the receiving end for `writer`.
    pub fn new(capacity: usize) -> (DecisionLog, mpsc::Receiver<PendingDecision>) {
        let (tx, rx) = mpsc::channel(capacity.max(1));
        (
            DecisionLog {
                tx,
                dropped: Arc::new(AtomicU64::new(0)),
                written: Arc::new(AtomicU64::new(0)),
            },
            rx,
        )
    }

    /// Queues a row without waiting; a full queue drops it and counts the drop.
    pub fn record(&self, row: PendingDecision) {
        if self.tx.try_send(row).is_err() {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    pub fn written(&self) -> u64 {
        self.written.load(Ordering::Relaxed)
    }

    /// Writes queued rows in batches of `batch` (or after `flush`) until shutdown, then
    /// drains what is left.
    pub async fn writer(
        &self,
        store: Store,
        mut rx: mpsc::Receiver<PendingDecision>,
        batch: usize,
        flush: Duration,
        mut shutdown: watch::Receiver<bool>,
    ) {
        let mut buf: Vec<PendingDecision> = Vec::with_capacity(batch);
        // A batch is written when it is full or its oldest row has waited `flush`: under
        // load that is one transaction per `batch` decisions, not one per lull.
        let mut deadline: Option<tokio::time::Instant> = None;
        loop {
            let before = buf.len();
            let room = batch.saturating_sub(before).max(1);
            let stop = tokio::select! {
                n = rx.recv_many(&mut buf, room) => n == 0,
                _ = async {
                    match deadline {
                        Some(d) => tokio::time::sleep_until(d).await,
                        None => std::future::pending().await,
                    }
                } => false,
                _ = shutdown.changed() => true,
            };
            if before == 0 && !buf.is_empty() {
                deadline = Some(tokio::time::Instant::now() + flush);
            }
            let due = deadline.is_some_and(|d| tokio::time::Instant::now() >= d);
            if buf.len() >= batch || (!buf.is_empty() && (stop || due)) {
                self.flush(&store, &mut buf).await;
                deadline = None;
            }
            if stop {
                while let Ok(row) = rx.try_recv() {
                    buf.push(row);
                    if buf.len() >= batch {
                        self.flush(&store, &mut buf).await;
                    }
                }
                self.flush(&store, &mut buf).await;
                return;
            }
        }
    }

    async fn flush(&self, store: &Store, buf: &mut Vec<PendingDecision>) {
        if buf.is_empty() {
            return;
        }
        let rows: Vec<DecisionRow> = buf.drain(..).map(PendingDecision::into_row).collect();
        match store.insert_decisions(&rows).await {
            Ok(n) => {
                self.written.fetch_add(n, Ordering::Relaxed);
            }
            Err(e) => {
                self.dropped.fetch_add(rows.len() as u64, Ordering::Relaxed);
                tracing::warn!(error = %e, rows = rows.len(), "decision log write failed; rows dropped");
            }
        }
        buf.clear();
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
        let (log, mut rx) = DecisionLog::new(2);
        for i in 0..5 {
            log.record(row(&format!("d{i}")));
        }
        assert_eq!(log.dropped(), 3);
        assert_eq!(rx.try_recv().unwrap().row.id, "d0");
        assert_eq!(rx.try_recv().unwrap().row.id, "d1");
        assert!(rx.try_recv().is_err());
    }
}
