//! Alert outbox delivery. `deliver_due` claims due rows (a lease, so replicas never send the
//! same row at once), sends each through the notifier of its channel, and marks it delivered
//! or failed with the next attempt time (exponential backoff with jitter, never giving up).
//! `run_outbox` does that every `outbox_interval` until shutdown.
//!
//! With replicas only the leader delivers (`run_outbox` runs as singleton work): its claims
//! and marks go through the fenced store, so a former leader's are refused by the database,
//! and it checks `Leadership::may_act` right before each send.
//!
//! Delivery is at least once: a replica that dies after sending but before marking leaves
//! the row to be sent again when its lease ends. Logs name the budget and channel only —
//! never the target (address or webhook URL).
use std::sync::Arc;
use std::time::Instant;

use chrono::{DateTime, Utc};
use futures::StreamExt;
use tokio::sync::watch;

use super::leader::{self, Leadership};
use crate::metrics;
use crate::notify::outbox::OutboxRow;
use crate::notify::{AlertsConfig, Notifier, NotifyError};
use crate::store::{Store, StoreError};

/// Sends in flight at once within one round.
const CONCURRENCY: usize = 4;

/// What one `deliver_due` round did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct DeliveryReport {
    /// Rows claimed.
    pub claimed: usize,
    pub delivered: usize,
    /// Rows that failed and were rescheduled.
    pub failed: usize,
    /// Rows left unsent, and given back: their lease was about to end, or the server is
    /// shutting down (another round or replica takes them).
    pub skipped: usize,
}

enum Outcome {
    Delivered,
    Failed,
    Skipped,
}

/// One round: claim the rows due at `now`, send them, record the outcome of each.
pub async fn deliver_due(
    store: &Store,
    notifiers: &[Arc<dyn Notifier>],
    cfg: &AlertsConfig,
    now: DateTime<Utc>,
) -> Result<DeliveryReport, StoreError> {
    let (_keep, never) = watch::channel(false);
    deliver_due_led(store, notifiers, cfg, now, None, &never).await
}

/// `deliver_due` as a leader: nothing is claimed, and nothing sent, unless `leadership`
/// may still act at that moment. It stops starting sends once `stop` is true: the sends
/// already in flight finish and are recorded, and the rows it claimed but did not start are
/// given back (their lease cleared, `Store::release_outbox_claim`) so that another replica
/// sends them at once instead of after the lease. Rows left for the lease running out are
/// given back too.
pub async fn deliver_due_led(
    store: &Store,
    notifiers: &[Arc<dyn Notifier>],
    cfg: &AlertsConfig,
    now: DateTime<Utc>,
    leadership: Option<&Leadership>,
    stop: &watch::Receiver<bool>,
) -> Result<DeliveryReport, StoreError> {
    if leadership.is_some_and(|l| !l.may_act()) {
        return Ok(DeliveryReport::default());
    }
    let started = Instant::now();
    let rows = store
        .claim_due_outbox(now, cfg.claim_lease, cfg.outbox_batch.max(1))
        .await?;
    let mut report = DeliveryReport {
        claimed: rows.len(),
        ..DeliveryReport::default()
    };
    if rows.is_empty() {
        return Ok(report);
    }
    // A send must finish inside the lease; leave rows whose lease is nearly over.
    let latest_start = cfg
        .claim_lease
        .saturating_sub(cfg.smtp.timeout.max(cfg.slack_timeout));
    let mut sends = futures::stream::iter(rows)
        .map(|row| async move {
            if started.elapsed() > latest_start || *stop.borrow() {
                give_back(store, &row).await;
                return Ok(Outcome::Skipped);
            }
            deliver_one(store, notifiers, cfg, now, &row, leadership).await
        })
        .buffer_unordered(CONCURRENCY);
    let mut first_err = None;
    while let Some(r) = sends.next().await {
        match r {
            Ok(Outcome::Delivered) => report.delivered += 1,
            Ok(Outcome::Failed) => report.failed += 1,
            Ok(Outcome::Skipped) => report.skipped += 1,
            Err(e) => {
                if first_err.is_none() {
                    first_err = Some(e);
                }
            }
        }
    }
    match first_err {
        Some(e) => Err(e),
        None => Ok(report),
    }
}

/// Clears the lease of a claimed row this round will not send. A failure only delays the
/// row until its lease ends, as before.
async fn give_back(store: &Store, row: &OutboxRow) {
    let Some(until) = row.claimed_until else {
        return;
    };
    match store.release_outbox_claim(row.id, until).await {
        Ok(_) => {
            tracing::debug!(budget = %row.budget, channel = %row.channel, "outbox claim given back")
        }
        Err(e) => {
            tracing::warn!(budget = %row.budget, channel = %row.channel, error = %e, "cannot give back an outbox claim; it is retried when its lease ends")
        }
    }
}

async fn deliver_one(
    store: &Store,
    notifiers: &[Arc<dyn Notifier>],
    cfg: &AlertsConfig,
    now: DateTime<Utc>,
    row: &OutboxRow,
    leadership: Option<&Leadership>,
) -> Result<Outcome, StoreError> {
    // The last moment before the side effect: a leader past its local deadline sends
    // nothing (the row's claim runs out and the new leader sends it).
    if leadership.is_some_and(|l| !l.may_act()) {
        tracing::warn!(budget = %row.budget, channel = %row.channel, "not the leader any more; alert left for the next leader");
        return Ok(Outcome::Skipped);
    }
    let sent = match notifiers.iter().find(|n| n.channel() == row.channel) {
        Some(n) => n.send(row).await,
        None => Err(NotifyError::NoChannel(row.channel.clone())),
    };
    match sent {
        Ok(()) => {
            metrics::global().alert_delivery(&row.channel, true);
            store.mark_delivered(row.id, now).await?;
            tracing::info!(
                budget = %row.budget,
                period = %row.period_key,
                threshold = %row.threshold_key,
                channel = %row.channel,
                attempts = row.attempts + 1,
                "budget alert delivered"
            );
            Ok(Outcome::Delivered)
        }
        Err(e) => {
            let attempt = u32::try_from(row.attempts + 1).unwrap_or(u32::MAX);
            let delay = cfg.retry_delay(attempt);
            let next = now + chrono::Duration::from_std(delay).unwrap_or(chrono::Duration::MAX);
            let error = e.to_string();
            metrics::global().alert_delivery(&row.channel, false);
            store.mark_failed(row.id, &error, next).await?;
            tracing::warn!(
                budget = %row.budget,
                period = %row.period_key,
                threshold = %row.threshold_key,
                channel = %row.channel,
                attempts = row.attempts + 1,
                retry_in = ?delay,
                error = %error,
                "budget alert delivery failed; will retry"
            );
            Ok(Outcome::Failed)
        }
    }
}

/// Delivers due alerts every `cfg.outbox_interval` until shutdown. On shutdown a round in
/// progress finishes the sends in flight (each bounded by its channel timeout) and gives back
/// the rows it had not started, before the loop returns.
pub async fn run_outbox(
    store: Store,
    notifiers: Vec<Arc<dyn Notifier>>,
    cfg: AlertsConfig,
    leadership: Leadership,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        if *shutdown.borrow() {
            return;
        }
        match deliver_due_led(
            &store,
            &notifiers,
            &cfg,
            Utc::now(),
            Some(&leadership),
            &shutdown,
        )
        .await
        {
            Ok(r) if r.claimed > 0 => tracing::debug!(
                claimed = r.claimed,
                delivered = r.delivered,
                failed = r.failed,
                skipped = r.skipped,
                "alert outbox round"
            ),
            Ok(_) => {}
            Err(e) => {
                if !leader::note_refusal(&e, "alert outbox") {
                    tracing::warn!(error = %e, "alert outbox round failed");
                }
            }
        }
        // What is left to send, for `bursar_alerts_pending`.
        match store.outbox_pending_count().await {
            Ok(n) => metrics::global().alerts_pending(n),
            Err(e) => tracing::debug!(error = %e, "cannot count the outbox"),
        }
        tokio::select! {
            _ = tokio::time::sleep(cfg.outbox_interval) => {}
            _ = shutdown.changed() => return,
        }
    }
}
