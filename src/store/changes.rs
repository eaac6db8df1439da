//! Change notifications between replicas (Postgres only): migration 0016's triggers NOTIFY
//! the channel [`CHANNEL`] when a transaction that moves `catalog_generation` or
//! `spend_generation`, or writes availability marks or source status, commits.
//! [`Store::listen_changes`] opens a connection of its own that LISTENs there, named
//! [`LISTENER_APPLICATION_NAME`] in `pg_stat_activity`. What a replica does with a change
//! (and how it reconnects) is `tasks::changes`'s.
use std::time::Duration;

use sqlx::postgres::{PgListener, PgPoolOptions};

use super::{Store, StoreError};

/// The channel migration 0016's triggers notify.
pub const CHANNEL: &str = "bursar_changes";

/// `application_name` of the listening connection, so an operator (or a test) can find it.
pub const LISTENER_APPLICATION_NAME: &str = "bursar-listen";

/// How long opening the listening connection may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// What changed, from a notification's payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChangeKind {
    /// Prices, hardware or spot bands (`catalog_generation` moved).
    Catalog,
    /// Spend or budgets (`spend_generation` moved).
    Spend,
    /// Availability marks or source status.
    Marks,
}

impl ChangeKind {
    pub const ALL: [ChangeKind; 3] = [ChangeKind::Catalog, ChangeKind::Spend, ChangeKind::Marks];

    /// The payload a trigger sends; `None` for one this version does not know.
    pub fn from_payload(payload: &str) -> Option<ChangeKind> {
        match payload {
            "catalog" => Some(ChangeKind::Catalog),
            "spend" => Some(ChangeKind::Spend),
            "marks" => Some(ChangeKind::Marks),
            _ => None,
        }
    }
}

/// One notification.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Heard {
    Change(ChangeKind),
    /// A payload this version does not know (a newer replica's migration, a manual NOTIFY).
    Unknown(String),
}

/// A connection LISTENing on [`CHANNEL`]. It does not reconnect by itself: a lost
/// connection ends it (`next` answers `Ok(None)` or an error), and the caller decides when
/// to open another.
pub struct ChangeListener {
    listener: PgListener,
    /// The one-connection pool the listener draws from, closed with it.
    pool: sqlx::PgPool,
}

impl Store {
    /// Opens a listening connection: `None` on SQLite, which has no notifications.
    pub async fn listen_changes(&self) -> Result<Option<ChangeListener>, StoreError> {
        let Store::Postgres(pg) = self else {
            return Ok(None);
        };
        let opts = (*pg.pool().connect_options())
            .clone()
            .application_name(LISTENER_APPLICATION_NAME);
        // A pool of its own with one connection: the listener never takes one of the
        // request path's connections, and it is never recycled under the listener.
        let pool = PgPoolOptions::new()
            .max_connections(1)
            .min_connections(0)
            .max_lifetime(None)
            .idle_timeout(None)
            .acquire_timeout(CONNECT_TIMEOUT)
            .connect_with(opts)
            .await?;
        let mut listener = PgListener::connect_with(&pool).await?;
        // Reconnection is the caller's, with its own backoff and catch-up.
        listener.eager_reconnect(false);
        listener.listen(CHANNEL).await?;
        Ok(Some(ChangeListener { listener, pool }))
    }
}

impl ChangeListener {
    /// The next notification; `None` when the connection was lost.
    pub async fn next(&mut self) -> Result<Option<Heard>, StoreError> {
        Ok(self
            .listener
            .try_recv()
            .await?
            .map(|n| match ChangeKind::from_payload(n.payload()) {
                Some(k) => Heard::Change(k),
                None => Heard::Unknown(n.payload().to_string()),
            }))
    }

    /// Closes the connection.
    pub async fn close(self) {
        drop(self.listener);
        self.pool.close().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads_name_their_kind_and_unknown_ones_are_none() {
        for k in ChangeKind::ALL {
            let payload = match k {
                ChangeKind::Catalog => "catalog",
                ChangeKind::Spend => "spend",
                ChangeKind::Marks => "marks",
            };
            assert_eq!(ChangeKind::from_payload(payload), Some(k));
        }
        assert_eq!(ChangeKind::from_payload(""), None);
        assert_eq!(ChangeKind::from_payload("Catalog"), None);
        assert_eq!(ChangeKind::from_payload("fleet"), None);
    }
}
