//! Leader election through the store's lease (`store::leader`), with the timing rules of
//! `domain::leader`. `Leadership` is what the rest of the process asks: which term it leads
//! (a watch, for `singleton`), whether it may still act (`may_act`: checked before every
//! external side effect — an SMTP or Slack send, a cloud stop or terminate), and the term
//! its fenced store's sessions carry. `run_elector` renews the lease every third of it
//! while leading and tries to take it while following; a leader that cannot renew before
//! its local deadline steps down at once (term → 0, role → `None`). `release` ends the
//! lease on shutdown so a follower takes over at its next try. Every acquire and loss is a
//! log line and moves `bursar_leader` / `bursar_leader_term`.
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::watch;

use crate::domain::leader::{LeaseTiming, Role, Step};
use crate::metrics;
use crate::store::{Store, StoreError};

/// This process's part in the election; cheap to clone.
#[derive(Clone)]
pub struct Leadership {
    inner: Arc<Inner>,
}

struct Inner {
    holder: String,
    timing: LeaseTiming,
    /// The fenced store's term: the held term, 0 when not leading.
    fence: Arc<AtomicI64>,
    /// When the last successful renewal (or the acquire) was sent.
    renewed_at: Mutex<Option<Instant>>,
    role: watch::Sender<Option<i64>>,
}

impl Leadership {
    pub fn new(holder: String, lease: Duration) -> Leadership {
        Leadership {
            inner: Arc::new(Inner {
                holder,
                timing: LeaseTiming::new(lease),
                fence: Arc::new(AtomicI64::new(0)),
                renewed_at: Mutex::new(None),
                role: watch::channel(None).0,
            }),
        }
    }

    pub fn holder(&self) -> &str {
        &self.inner.holder
    }

    pub fn timing(&self) -> LeaseTiming {
        self.inner.timing
    }

    /// The term the fenced store's sessions carry (0: none).
    pub fn fence(&self) -> Arc<AtomicI64> {
        self.inner.fence.clone()
    }

    /// The term led, if any; `changed()` on it for every acquire and loss.
    pub fn subscribe(&self) -> watch::Receiver<Option<i64>> {
        self.inner.role.subscribe()
    }

    /// The term this process leads, as the elector last decided.
    pub fn term(&self) -> Option<i64> {
        *self.inner.role.borrow()
    }

    fn since_renewal(&self) -> Option<Duration> {
        self.inner
            .renewed_at
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .map(|at| at.elapsed())
    }

    /// Whether this process leads and its lease is still valid by its own monotonic clock
    /// (a paused or partitioned leader answers `false` without asking anyone). Checked
    /// before every external side effect.
    pub fn may_act(&self) -> bool {
        self.term().is_some()
            && self
                .since_renewal()
                .is_some_and(|d| self.inner.timing.may_act(d))
    }

    fn become_leader(&self, term: i64, sent: Instant) {
        *self
            .inner
            .renewed_at
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = Some(sent);
        self.inner.fence.store(term, Ordering::SeqCst);
        self.inner.role.send_replace(Some(term));
        metrics::global().leader(Some(term));
        tracing::info!(holder = %self.inner.holder, term, "leadership acquired");
    }

    fn renewed(&self, sent: Instant) {
        *self
            .inner
            .renewed_at
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = Some(sent);
    }

    /// Stops leading at once: the singleton loops are stopped (`singleton` watches the
    /// role) and the fenced store's sessions lose the term.
    fn step_down(&self, term: i64, why: &str) {
        self.inner.role.send_replace(None);
        self.inner.fence.store(0, Ordering::SeqCst);
        *self
            .inner
            .renewed_at
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = None;
        metrics::global().leader(None);
        tracing::warn!(holder = %self.inner.holder, term, reason = why, "leadership lost; singleton work stopped");
    }
}

/// Counts and logs a store error that is the database refusing a stale term; `true` if it
/// was one. Loops call it on their write errors.
pub fn note_refusal(e: &StoreError, what: &str) -> bool {
    if e.is_fenced() {
        metrics::global().leader_refusal();
        tracing::warn!(work = what, error = %e, "write refused by the database: stale leader term");
        true
    } else {
        false
    }
}

/// One elector step: renew, acquire or step down.
pub async fn elect_once(store: &Store, l: &Leadership) {
    let timing = l.timing();
    let role = match l.term() {
        Some(term) => Role::Leader { term },
        None => Role::Follower,
    };
    let since = l.since_renewal().unwrap_or(Duration::MAX);
    match timing.next_step(role, since) {
        Step::Acquire => {
            let sent = Instant::now();
            match store.try_acquire_lease(l.holder(), timing.lease).await {
                Ok(Some(term)) => l.become_leader(term, sent),
                Ok(None) => {}
                Err(e) => tracing::warn!(error = %e, "could not try the leader lease"),
            }
        }
        Step::Renew { term, within } => {
            let sent = Instant::now();
            match tokio::time::timeout(within, store.renew_lease(l.holder(), term, timing.lease))
                .await
            {
                Ok(Ok(true)) => l.renewed(sent),
                Ok(Ok(false)) => {
                    metrics::global().leader_refusal();
                    tracing::warn!(
                        term,
                        "lease renewal refused by the database: stale leader term"
                    );
                    l.step_down(term, "the lease is held by another term or ran out");
                }
                // Tried again at the next step, while the local deadline allows.
                Ok(Err(e)) => tracing::warn!(term, error = %e, "lease renewal failed"),
                Err(_) => l.step_down(term, "no renewal answer before the local deadline"),
            }
        }
        Step::StepDown { term } => {
            l.step_down(term, "no successful renewal before the local deadline");
            // Give the term up; the database refuses if another term already holds it.
            match store.release_lease(l.holder(), term).await {
                Ok(false) => {
                    metrics::global().leader_refusal();
                    tracing::warn!(
                        term,
                        "lease release refused by the database: stale leader term"
                    );
                }
                Ok(true) => tracing::info!(term, "leadership released"),
                Err(e) => tracing::warn!(term, error = %e, "could not release the leader lease"),
            }
        }
    }
}

/// Runs the election every third of the lease until shutdown. It does not release the
/// lease: `release` does, after the singleton loops have stopped.
pub async fn run_elector(store: Store, l: Leadership, mut shutdown: watch::Receiver<bool>) {
    loop {
        if *shutdown.borrow() {
            return;
        }
        elect_once(&store, &l).await;
        tokio::select! {
            _ = tokio::time::sleep(l.timing().renew_every()) => {}
            r = shutdown.changed() => {
                if r.is_err() || *shutdown.borrow() {
                    return;
                }
            }
        }
    }
}

/// On shutdown, after the singleton loops stopped: ends the lease now (a follower takes
/// over at its next try) and stops leading.
pub async fn release(store: &Store, l: &Leadership) {
    if let Some(term) = l.term() {
        l.inner.role.send_replace(None);
        l.inner.fence.store(0, Ordering::SeqCst);
        metrics::global().leader(None);
        match store.release_lease(l.holder(), term).await {
            Ok(true) => tracing::info!(term, "leadership released"),
            Ok(false) => tracing::info!(term, "leadership had already passed on"),
            Err(e) => tracing::warn!(term, error = %e, "could not release the leader lease"),
        }
    }
}
