//! The singleton lease (migration 0015's `leader_lease`, one row named `singleton`) and the
//! fenced store. On Postgres the lease lives by the database's clock (`clock_timestamp()`):
//! a replica takes it only once it has expired, with `term` + 1, and renews it only while
//! it still holds that term unexpired. A takeover first locks the row `FOR UPDATE`, so it
//! waits for any fenced write that is still in its transaction (the fence trigger holds the
//! row `FOR KEY SHARE`). `fenced` opens the pool singleton work writes through: its sessions
//! carry the term, and the trigger refuses their writes once the term is stale
//! (`StoreError::is_fenced`). SQLite is single-node: acquiring always succeeds (this process
//! is the leader), and nothing is fenced.
use std::sync::Arc;
use std::sync::atomic::AtomicI64;
use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::Row;

use super::postgres::{PgFence, PgStore};
use super::{Store, StoreError};

/// The one lease's name (the fence trigger names it too).
pub const LEASE: &str = "singleton";

/// The SQLSTATE the fence trigger raises for a stale term.
pub const FENCED_SQLSTATE: &str = "BF001";

/// Postgres's `lock_not_available` (a takeover gave up waiting for a fenced write).
const LOCK_NOT_AVAILABLE: &str = "55P03";

/// The lease row as stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LeaseRow {
    pub holder: String,
    pub term: i64,
    pub expires_at: DateTime<Utc>,
    /// Unexpired by the database's clock.
    pub live: bool,
}

fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

fn sqlstate(e: &sqlx::Error) -> Option<String> {
    match e {
        sqlx::Error::Database(d) => d.code().map(|c| c.into_owned()),
        _ => None,
    }
}

impl StoreError {
    /// The database refused a write because its session's leader term is stale.
    pub fn is_fenced(&self) -> bool {
        matches!(self, StoreError::Query(e) if sqlstate(e).as_deref() == Some(FENCED_SQLSTATE))
    }
}

impl Store {
    /// The store singleton work writes through. On Postgres, a second pool of at most
    /// `max_connections` whose sessions carry `term`'s value as they are handed out (0: not
    /// the leader, so every fenced write is refused); an open transaction idle for `idle`
    /// is ended by the server. On SQLite, this store.
    pub async fn fenced(
        &self,
        url: &str,
        max_connections: u32,
        term: Arc<AtomicI64>,
        idle: Duration,
    ) -> Result<Store, StoreError> {
        match self {
            Store::Sqlite(_) => Ok(self.clone()),
            Store::Postgres(p) => {
                let mut s =
                    PgStore::connect_fenced(url, max_connections, PgFence { term, idle }).await?;
                s.ingest_lock_wait = p.ingest_lock_wait;
                s.ingest_heartbeat = p.ingest_heartbeat;
                Ok(Store::Postgres(s))
            }
        }
    }

    /// Takes the lease for `holder` for `lease` if it is free (never held, expired or
    /// released): returns the new term, or `None` while another holds it. SQLite: always
    /// taken (single node).
    pub async fn try_acquire_lease(
        &self,
        holder: &str,
        lease: Duration,
    ) -> Result<Option<i64>, StoreError> {
        match self {
            Store::Sqlite(s) => {
                let term: i64 = sqlx::query_scalar(
                    "INSERT INTO leader_lease (name, holder, term, expires_at) VALUES (?1, ?2, 1, ?3) \
                     ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, \
                     term = leader_lease.term + 1, expires_at = excluded.expires_at RETURNING term",
                )
                .bind(LEASE)
                .bind(holder)
                .bind(Utc::now() + chrono::Duration::milliseconds(millis(lease)))
                .fetch_one(s.pool())
                .await?;
                Ok(Some(term))
            }
            Store::Postgres(p) => {
                // A look without a lock first: a live lease costs one small read, and a
                // follower never queues behind the leader's renewals.
                let live: Option<bool> = sqlx::query_scalar(
                    "SELECT expires_at > clock_timestamp() FROM leader_lease WHERE name = $1",
                )
                .bind(LEASE)
                .fetch_optional(p.pool())
                .await?;
                match live {
                    Some(true) => return Ok(None),
                    Some(false) => {}
                    None => {
                        sqlx::query(
                            "INSERT INTO leader_lease (name, holder, term, expires_at) \
                             VALUES ($1, '', 0, 'epoch') ON CONFLICT (name) DO NOTHING",
                        )
                        .bind(LEASE)
                        .execute(p.pool())
                        .await?;
                    }
                }
                let mut tx = p.pool().begin().await?;
                // Waits for fenced writes still in their transactions, but not forever (a
                // paused writer's transaction is ended by its idle timeout).
                sqlx::query("SELECT set_config('lock_timeout', $1, true)")
                    .bind(millis(lease).max(1).to_string())
                    .execute(&mut *tx)
                    .await?;
                let locked = sqlx::query(
                    "SELECT expires_at > clock_timestamp() FROM leader_lease WHERE name = $1 FOR UPDATE",
                )
                .bind(LEASE)
                .fetch_one(&mut *tx)
                .await;
                let live: bool = match locked {
                    Ok(r) => r.try_get(0)?,
                    Err(e) if sqlstate(&e).as_deref() == Some(LOCK_NOT_AVAILABLE) => {
                        return Ok(None);
                    }
                    Err(e) => return Err(e.into()),
                };
                if live {
                    return Ok(None);
                }
                let term: i64 = sqlx::query_scalar(
                    "UPDATE leader_lease SET holder = $2, term = term + 1, \
                     expires_at = clock_timestamp() + $3 * interval '1 millisecond' \
                     WHERE name = $1 RETURNING term",
                )
                .bind(LEASE)
                .bind(holder)
                .bind(millis(lease))
                .fetch_one(&mut *tx)
                .await?;
                tx.commit().await?;
                Ok(Some(term))
            }
        }
    }

    /// Extends `holder`'s lease of `term` by `lease` from now. `false`: the term is no
    /// longer held unexpired (taken over, or run out) — the database refused it.
    pub async fn renew_lease(
        &self,
        holder: &str,
        term: i64,
        lease: Duration,
    ) -> Result<bool, StoreError> {
        let n = match self {
            Store::Sqlite(s) => sqlx::query(
                "UPDATE leader_lease SET expires_at = ?4 WHERE name = ?1 AND holder = ?2 AND term = ?3",
            )
            .bind(LEASE)
            .bind(holder)
            .bind(term)
            .bind(Utc::now() + chrono::Duration::milliseconds(millis(lease)))
            .execute(s.pool())
            .await?
            .rows_affected(),
            Store::Postgres(p) => sqlx::query(
                "UPDATE leader_lease SET expires_at = clock_timestamp() + $4 * interval '1 millisecond' \
                 WHERE name = $1 AND holder = $2 AND term = $3 AND expires_at > clock_timestamp()",
            )
            .bind(LEASE)
            .bind(holder)
            .bind(term)
            .bind(millis(lease))
            .execute(p.pool())
            .await?
            .rows_affected(),
        };
        Ok(n == 1)
    }

    /// Ends `holder`'s lease of `term` now, so a follower takes over at its next try.
    /// `false` when that term was no longer held.
    pub async fn release_lease(&self, holder: &str, term: i64) -> Result<bool, StoreError> {
        let n = match self {
            Store::Sqlite(s) => sqlx::query(
                "UPDATE leader_lease SET expires_at = ?4 WHERE name = ?1 AND holder = ?2 AND term = ?3",
            )
            .bind(LEASE)
            .bind(holder)
            .bind(term)
            .bind(Utc::now())
            .execute(s.pool())
            .await?
            .rows_affected(),
            Store::Postgres(p) => sqlx::query(
                "UPDATE leader_lease SET expires_at = clock_timestamp() \
                 WHERE name = $1 AND holder = $2 AND term = $3 AND expires_at > clock_timestamp()",
            )
            .bind(LEASE)
            .bind(holder)
            .bind(term)
            .execute(p.pool())
            .await?
            .rows_affected(),
        };
        Ok(n == 1)
    }

    /// The lease as stored (`None` before anyone took it).
    pub async fn current_lease(&self) -> Result<Option<LeaseRow>, StoreError> {
        match self {
            Store::Sqlite(s) => {
                let r = sqlx::query(
                    "SELECT holder, term, expires_at FROM leader_lease WHERE name = ?1",
                )
                .bind(LEASE)
                .fetch_optional(s.pool())
                .await?;
                r.map(|r| {
                    let expires_at: DateTime<Utc> = r.try_get(2)?;
                    Ok(LeaseRow {
                        holder: r.try_get(0)?,
                        term: r.try_get(1)?,
                        expires_at,
                        live: expires_at > Utc::now(),
                    })
                })
                .transpose()
            }
            Store::Postgres(p) => {
                let r = sqlx::query(
                    "SELECT holder, term, expires_at, expires_at > clock_timestamp() \
                     FROM leader_lease WHERE name = $1",
                )
                .bind(LEASE)
                .fetch_optional(p.pool())
                .await?;
                r.map(|r| {
                    Ok(LeaseRow {
                        holder: r.try_get(0)?,
                        term: r.try_get(1)?,
                        expires_at: r.try_get(2)?,
                        live: r.try_get(3)?,
                    })
                })
                .transpose()
            }
        }
    }
}
