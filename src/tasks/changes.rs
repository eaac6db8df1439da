//! Change propagation between replicas. On Postgres, `run_listener` LISTENs for migration
//! 0016's notifications (`store::changes`) and wakes, through [`Changes`], the loops that
//! reload what changed: the catalog refresh (`poller::refresh_loop`), the budget evaluation
//! (`budgets::run_evaluations`) and SelectProvider's marks and source status. Each loop
//! still polls its generation on its own interval: that is the fallback when a notification
//! is lost. A lost listening connection is logged, every loop is left to its poll, and the
//! listener reconnects with backoff; once it listens again it wakes every loop once, to
//! catch up on what it may have missed. SQLite has no notifications: polling only.
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use crate::store::Store;
use crate::store::changes::{ChangeKind, Heard};

/// First pause before reconnecting a lost listener; it doubles up to [`MAX_RECONNECT_DELAY`].
pub const FIRST_RECONNECT_DELAY: Duration = Duration::from_millis(250);
pub const MAX_RECONNECT_DELAY: Duration = Duration::from_secs(30);

/// The pause before the `failures`-th reconnection attempt in a row (1-based).
pub fn reconnect_delay(failures: u32) -> Duration {
    let doublings = failures.saturating_sub(1).min(16);
    FIRST_RECONNECT_DELAY
        .saturating_mul(1u32 << doublings)
        .min(MAX_RECONNECT_DELAY)
}

/// One counter per kind of change; each loop holds a [`Wake`] on the kinds it reloads.
#[derive(Clone)]
pub struct Changes {
    senders: Arc<[watch::Sender<u64>; 3]>,
}

impl Default for Changes {
    fn default() -> Self {
        Changes {
            senders: Arc::new(std::array::from_fn(|_| watch::channel(0).0)),
        }
    }
}

fn slot(kind: ChangeKind) -> usize {
    match kind {
        ChangeKind::Catalog => 0,
        ChangeKind::Spend => 1,
        ChangeKind::Marks => 2,
    }
}

impl Changes {
    /// A wake-up for changes of `kind` from now on.
    pub fn wake(&self, kind: ChangeKind) -> Wake {
        Wake(Some(self.senders[slot(kind)].subscribe()))
    }

    /// Wakes every loop waiting on `kind` (one wake-up for any number of changes made
    /// before the loop looks again).
    pub fn notify(&self, kind: ChangeKind) {
        self.senders[slot(kind)].send_modify(|n| *n = n.wrapping_add(1));
    }

    pub fn notify_all(&self) {
        for k in ChangeKind::ALL {
            self.notify(k);
        }
    }
}

/// Resolves when a change of its kind was notified since it last resolved.
pub struct Wake(Option<watch::Receiver<u64>>);

impl Wake {
    /// A wake-up that never comes (a loop with nothing to listen to polls only).
    pub fn never() -> Wake {
        Wake(None)
    }

    pub async fn changed(&mut self) {
        if let Some(rx) = &mut self.0 {
            if rx.changed().await.is_ok() {
                return;
            }
            // Nobody can notify any more: wait for the poll alone.
            self.0 = None;
        }
        std::future::pending::<()>().await
    }
}

/// LISTENs for changes until shutdown, reconnecting with backoff; returns at once on SQLite.
pub async fn run_listener(store: Store, changes: Changes, mut shutdown: watch::Receiver<bool>) {
    let mut failures = 0u32;
    let mut listened_before = false;
    loop {
        let opened = tokio::select! {
            r = store.listen_changes() => r,
            _ = shutdown.changed() => return,
        };
        match opened {
            Ok(None) => return,
            Ok(Some(mut listener)) => {
                if listened_before {
                    tracing::info!(
                        "listening for changes again; reloading anything missed meanwhile"
                    );
                    changes.notify_all();
                } else {
                    tracing::info!("listening for catalog, budget and mark changes");
                }
                listened_before = true;
                failures = 0;
                loop {
                    let heard = tokio::select! {
                        r = listener.next() => r,
                        _ = shutdown.changed() => {
                            listener.close().await;
                            return;
                        }
                    };
                    match heard {
                        Ok(Some(Heard::Change(kind))) => {
                            tracing::debug!(?kind, "change notified");
                            changes.notify(kind);
                        }
                        Ok(Some(Heard::Unknown(payload))) => {
                            tracing::debug!(%payload, "unknown change notification ignored");
                        }
                        Ok(None) => {
                            tracing::warn!(
                                "lost the connection listening for changes; polling until it is back"
                            );
                            break;
                        }
                        Err(e) => {
                            tracing::warn!(error = %e, "listening for changes failed; polling until it is back");
                            break;
                        }
                    }
                }
                listener.close().await;
            }
            Err(e) => {
                tracing::warn!(error = %e, attempt = failures + 1, "cannot listen for changes; polling meanwhile");
            }
        }
        failures = failures.saturating_add(1);
        tokio::select! {
            _ = tokio::time::sleep(reconnect_delay(failures)) => {}
            _ = shutdown.changed() => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reconnect_delays_double_from_a_quarter_second_up_to_thirty() {
        let d: Vec<_> = (1..=10).map(reconnect_delay).collect();
        assert_eq!(d[0], Duration::from_millis(250));
        assert_eq!(d[1], Duration::from_millis(500));
        assert_eq!(d[2], Duration::from_secs(1));
        assert_eq!(d[6], Duration::from_secs(16));
        assert_eq!(d[7], Duration::from_secs(30));
        assert_eq!(reconnect_delay(u32::MAX), Duration::from_secs(30));
        assert_eq!(reconnect_delay(0), Duration::from_millis(250));
    }

    #[tokio::test]
    async fn a_wake_resolves_once_for_changes_made_before_it_looks() {
        let changes = Changes::default();
        let mut catalog = changes.wake(ChangeKind::Catalog);
        let mut spend = changes.wake(ChangeKind::Spend);
        changes.notify(ChangeKind::Catalog);
        changes.notify(ChangeKind::Catalog);
        let soon = Duration::from_millis(50);
        tokio::time::timeout(soon, catalog.changed())
            .await
            .expect("notified");
        assert!(
            tokio::time::timeout(soon, catalog.changed()).await.is_err(),
            "two changes, one wake-up"
        );
        assert!(
            tokio::time::timeout(soon, spend.changed()).await.is_err(),
            "another kind is not woken"
        );
        changes.notify_all();
        tokio::time::timeout(soon, spend.changed())
            .await
            .expect("all");
        tokio::time::timeout(soon, catalog.changed())
            .await
            .expect("all");
        assert!(
            tokio::time::timeout(soon, Wake::never().changed())
                .await
                .is_err()
        );
        drop(changes);
        assert!(
            tokio::time::timeout(soon, catalog.changed()).await.is_err(),
            "with nobody left to notify it waits for the poll"
        );
    }
}
