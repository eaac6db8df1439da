//! The Grafana dashboards' read-only role (migration 0013, Postgres only): giving
//! `bursar_reader` the configured password. The password travels as a bound parameter of
//! `bursar_reader_password($1)`, so it is in no SQL text sqlx logs, and errors carry no
//! statement text.
use super::{Store, StoreError};

/// How often a `tuple concurrently updated` (another process altering the same cluster-wide
/// role at the same moment) is retried.
const CONCURRENT_TRIES: u32 = 5;

impl Store {
    /// Makes `bursar_reader` LOGIN with `password`. `Ok(false)` on SQLite, which has no
    /// roles; an error when the role is missing (not created for lack of CREATEROLE) or the
    /// database user may not alter it.
    pub async fn set_reader_password(&self, password: &str) -> Result<bool, StoreError> {
        let Store::Postgres(pg) = self else {
            return Ok(false);
        };
        let mut tries = 0;
        loop {
            tries += 1;
            let r = sqlx::query("SELECT bursar_reader_password($1)")
                .bind(password)
                .execute(pg.pool())
                .await;
            match r {
                Ok(_) => return Ok(true),
                Err(e) if tries < CONCURRENT_TRIES && concurrent_update(&e) => {
                    tokio::time::sleep(std::time::Duration::from_millis(20 * u64::from(tries)))
                        .await;
                }
                Err(e) => return Err(e.into()),
            }
        }
    }
}

/// Postgres' "tuple concurrently updated" (XX000): two sessions altered the role at once.
fn concurrent_update(e: &sqlx::Error) -> bool {
    e.as_database_error().is_some_and(|d| {
        d.code().as_deref() == Some("XX000") && d.message().contains("concurrently")
    })
}
