//! SQLite backend: the embedded default. WAL journal, one writer at a time, money as exact
//! decimal TEXT. What only SQLite spells this way: connecting, and the bulk writes of
//! prices, hardware, bands (multi-row INSERT ... ON CONFLICT in chunks that stay under
//! SQLite's bound parameter limit) and decisions.
use std::str::FromStr;
use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{QueryBuilder, Sqlite, SqlitePool};

use super::sql::money_text;
use super::{DecisionRow, SQLITE_BUSY_TIMEOUT_MS, StoreError, UpsertStats, redact_url};
use crate::domain::money::{Units, units_to_string};
use crate::domain::{InstanceAttrs, Offer, Provider, SpotBand};

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");

/// Rows per multi-row statement (10 columns each, under SQLite's 32766 parameters).
const CHUNK: usize = 1000;

#[derive(Clone)]
pub struct SqliteStore {
    pool: SqlitePool,
    /// How long an ingest waits for another writer to let go of the database.
    pub(crate) ingest_lock_wait: Duration,
    /// How often an ingest renews its run's lease (`Store::with_ingest_heartbeat`).
    pub(crate) ingest_heartbeat: Duration,
}

impl SqliteStore {
    pub async fn connect(url: &str, max_connections: u32) -> Result<Self, StoreError> {
        let opts = SqliteConnectOptions::from_str(url)
            .map_err(|e| StoreError::Connect {
                url: redact_url(url),
                detail: e.to_string(),
            })?
            .create_if_missing(true)
            // New databases only (SQLite ignores it once tables exist): cost lines are wide
            // (~700 bytes), so larger pages mean fewer page splits and shallower indexes.
            .page_size(32768)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(Duration::from_millis(SQLITE_BUSY_TIMEOUT_MS))
            .foreign_keys(true);
        let opts = super::statement_logging(opts);
        let pool = SqlitePoolOptions::new()
            .max_connections(max_connections)
            .connect_with(opts)
            .await
            .map_err(|e| StoreError::Connect {
                url: redact_url(url),
                detail: e.to_string(),
            })?;
        Ok(SqliteStore {
            pool,
            ingest_lock_wait: super::DEFAULT_INGEST_LOCK_WAIT,
            ingest_heartbeat: super::DEFAULT_INGEST_HEARTBEAT,
        })
    }

    pub fn pool(&self) -> &SqlitePool {
        &self.pool
    }

    pub async fn migrate(&self) -> Result<(), StoreError> {
        MIGRATOR
            .run(&self.pool)
            .await
            .map_err(|e| StoreError::Migrate(e.to_string()))
    }

    pub async fn close(&self) {
        self.pool.close().await
    }

    pub(crate) async fn write_offers(
        &self,
        offers: &[&Offer],
        changed: &[&Offer],
        attrs: &[(Provider, String, InstanceAttrs)],
    ) -> Result<UpsertStats, StoreError> {
        let now = Utc::now();
        let mut tx = self.pool.begin().await?;
        for chunk in changed.chunks(CHUNK) {
            let mut qb = QueryBuilder::<Sqlite>::new(
                "INSERT INTO price_observation (provider, region, zone, instance_type, market, \
                 price_per_hour, currency, source, observed_at) ",
            );
            qb.push_values(chunk, |mut b, o| {
                b.push_bind(o.key.provider.as_str())
                    .push_bind(o.key.region.as_str())
                    .push_bind(o.key.zone.as_str())
                    .push_bind(o.key.instance_type.as_str())
                    .push_bind(o.key.market.as_str())
                    .push_bind(money_text(o.price_per_hour))
                    .push_bind(o.currency.as_str().to_string())
                    .push_bind(o.source.as_str())
                    .push_bind(o.observed_at);
            });
            qb.build().execute(&mut *tx).await?;
        }
        for chunk in offers.chunks(CHUNK) {
            let mut qb = QueryBuilder::<Sqlite>::new(
                "INSERT INTO price_current (provider, region, zone, instance_type, market, \
                 price_per_hour, currency, source, observed_at, changed_at) ",
            );
            qb.push_values(chunk, |mut b, o| {
                b.push_bind(o.key.provider.as_str())
                    .push_bind(o.key.region.as_str())
                    .push_bind(o.key.zone.as_str())
                    .push_bind(o.key.instance_type.as_str())
                    .push_bind(o.key.market.as_str())
                    .push_bind(money_text(o.price_per_hour))
                    .push_bind(o.currency.as_str().to_string())
                    .push_bind(o.source.as_str())
                    .push_bind(o.observed_at)
                    .push_bind(o.observed_at);
            });
            qb.push(
                " ON CONFLICT (provider, region, zone, instance_type, market) DO UPDATE SET \
                 changed_at = CASE WHEN price_current.price_per_hour = excluded.price_per_hour \
                   AND price_current.currency = excluded.currency \
                   THEN price_current.changed_at ELSE excluded.changed_at END, \
                 price_per_hour = excluded.price_per_hour, currency = excluded.currency, \
                 source = excluded.source, observed_at = excluded.observed_at",
            );
            qb.build().execute(&mut *tx).await?;
        }
        for chunk in attrs.chunks(CHUNK) {
            let mut qb = QueryBuilder::<Sqlite>::new(
                "INSERT INTO instance_type (provider, instance_type, vcpus, memory_gib, gpu_model, \
                 gpu_count, gpu_memory_gib, arch, updated_at) ",
            );
            qb.push_values(chunk, |mut b, (p, t, a)| {
                b.push_bind(p.as_str())
                    .push_bind(t.as_str())
                    .push_bind(a.vcpus)
                    .push_bind(a.memory_gib)
                    .push_bind(a.gpu_model.as_deref())
                    .push_bind(a.gpu_count)
                    .push_bind(a.gpu_memory_gib)
                    .push_bind(a.arch.as_str())
                    .push_bind(now);
            });
            qb.push(
                " ON CONFLICT (provider, instance_type) DO UPDATE SET vcpus = excluded.vcpus, \
                 memory_gib = excluded.memory_gib, gpu_model = excluded.gpu_model, \
                 gpu_count = excluded.gpu_count, gpu_memory_gib = excluded.gpu_memory_gib, \
                 arch = excluded.arch, updated_at = excluded.updated_at",
            );
            qb.build().execute(&mut *tx).await?;
        }
        super::bump_catalog_generation(&mut tx).await?;
        tx.commit().await?;
        Ok(UpsertStats {
            offers: offers.len() as u64,
            observations: changed.len() as u64,
        })
    }

    pub async fn upsert_bands(
        &self,
        bands: &[SpotBand],
        at: DateTime<Utc>,
    ) -> Result<u64, StoreError> {
        let mut tx = self.pool.begin().await?;
        for chunk in bands.chunks(CHUNK) {
            let mut qb = QueryBuilder::<Sqlite>::new(
                "INSERT INTO spot_band (provider, region, instance_type, band, label, savings_pct, observed_at) ",
            );
            qb.push_values(chunk, |mut b, s| {
                b.push_bind(s.provider.as_str())
                    .push_bind(s.region.as_str())
                    .push_bind(s.instance_type.as_str())
                    .push_bind(i64::from(s.band))
                    .push_bind(s.label.as_str())
                    .push_bind(i64::from(s.savings_pct))
                    .push_bind(at);
            });
            qb.push(
                " ON CONFLICT (provider, region, instance_type) DO UPDATE SET band = excluded.band, \
                 label = excluded.label, savings_pct = excluded.savings_pct, observed_at = excluded.observed_at",
            );
            qb.build().execute(&mut *tx).await?;
        }
        super::bump_catalog_generation(&mut tx).await?;
        tx.commit().await?;
        Ok(bands.len() as u64)
    }

    pub async fn insert_decisions(&self, rows: &[DecisionRow<'_>]) -> Result<u64, StoreError> {
        use sqlx::Arguments as _;
        let mut tx = self.pool.begin().await?;
        // Chunks of a few fixed sizes, so the statement cache keeps a handful of prepared
        // INSERTs instead of preparing one for every batch length; each statement's text is
        // built once per process, and the strings are bound by reference.
        for chunk in super::fixed_chunks(rows, super::DECISION_CHUNK) {
            let mut args = sqlx::sqlite::SqliteArguments::default();
            let text = |u: Option<Units>| u.map(units_to_string);
            for d in chunk {
                let c = d.chosen.as_ref();
                let r = d.runner_up.as_ref();
                let bad = |e| StoreError::Corrupt {
                    table: "placement_decision",
                    detail: format!("encoding decision {}: {e}", d.id),
                };
                args.add(d.id).map_err(bad)?;
                args.add(d.decided_at).map_err(bad)?;
                args.add(d.team).map_err(bad)?;
                args.add(d.project).map_err(bad)?;
                args.add(d.job_id).map_err(bad)?;
                args.add(d.labels.as_str()).map_err(bad)?;
                args.add(d.request.as_str()).map_err(bad)?;
                args.add(d.offers_considered).map_err(bad)?;
                args.add(d.feasible).map_err(bad)?;
                args.add(c.map(|c| c.provider)).map_err(bad)?;
                args.add(c.map(|c| c.region)).map_err(bad)?;
                args.add(c.map(|c| c.zone)).map_err(bad)?;
                args.add(c.map(|c| c.instance_type)).map_err(bad)?;
                args.add(c.map(|c| c.market)).map_err(bad)?;
                args.add(text(c.map(|c| c.total))).map_err(bad)?;
                args.add(r.map(|c| c.provider)).map_err(bad)?;
                args.add(r.map(|c| c.region)).map_err(bad)?;
                args.add(r.map(|c| c.instance_type)).map_err(bad)?;
                args.add(r.map(|c| c.market)).map_err(bad)?;
                args.add(text(r.map(|c| c.total))).map_err(bad)?;
                args.add(text(d.baseline_total)).map_err(bad)?;
                args.add(text(d.estimated_saving)).map_err(bad)?;
                args.add(d.currency).map_err(bad)?;
                args.add(d.outcome).map_err(bad)?;
                args.add(d.latency_us).map_err(bad)?;
            }
            sqlx::query_with(decision_insert_sql(chunk.len()), args)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(rows.len() as u64)
    }
}

/// The decision-log INSERT for `rows` rows (a power of two up to `DECISION_CHUNK`), built
/// once per shape.
fn decision_insert_sql(rows: usize) -> &'static str {
    static SQL: std::sync::OnceLock<Vec<String>> = std::sync::OnceLock::new();
    debug_assert!(rows.is_power_of_two() && rows <= super::DECISION_CHUNK);
    let all = SQL.get_or_init(|| {
        (0..=super::DECISION_CHUNK.trailing_zeros())
            .map(|p| {
                super::sqlite_insert_sql(
                    "placement_decision",
                    super::DECISION_COLS,
                    super::DECISION_N_COLS,
                    1 << p,
                )
            })
            .collect()
    });
    &all[rows.trailing_zeros() as usize]
}
