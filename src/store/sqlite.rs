//! SQLite backend: the embedded default. WAL journal, one writer at a time, money as exact
//! decimal TEXT. Multi-row INSERT ... ON CONFLICT in chunks that stay under SQLite's bound
//! parameter limit.
use std::str::FromStr;
use std::time::Duration;

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{QueryBuilder, Row, Sqlite, SqlitePool};

use super::{
    CurrentPrices, DecisionRow, OfferRow, SQLITE_BUSY_TIMEOUT_MS, SourceStatusRow, StoreError,
    UpsertStats, redact_url,
};
use crate::clouds::KnownInstances;
use crate::domain::egress::{Units, units_to_string};
use crate::domain::placement::AvailabilityMark;
use crate::domain::{InstanceAttrs, Offer, OfferKey, Provider, SpotBand};

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

fn money_text(d: Decimal) -> String {
    d.normalize().to_string()
}

fn parse_money(s: &str, table: &'static str) -> Result<Decimal, StoreError> {
    Decimal::from_str(s).map_err(|e| StoreError::Corrupt {
        table,
        detail: format!("price {s:?}: {e}"),
    })
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

    pub async fn count(&self, table: &'static str) -> Result<u64, StoreError> {
        let n: i64 = sqlx::query_scalar(&format!("SELECT COUNT(*) FROM {table}"))
            .fetch_one(&self.pool)
            .await?;
        Ok(n as u64)
    }

    pub async fn current_prices(&self) -> Result<CurrentPrices, StoreError> {
        let rows = sqlx::query(
            "SELECT provider, region, zone, instance_type, market, price_per_hour FROM price_current",
        )
        .fetch_all(&self.pool)
        .await?;
        let mut out = CurrentPrices::with_capacity(rows.len());
        for r in rows {
            let key = OfferKey {
                provider: r
                    .get::<&str, _>(0)
                    .parse()
                    .map_err(|e| StoreError::Corrupt {
                        table: "price_current",
                        detail: format!("{e}"),
                    })?,
                region: r.get(1),
                zone: r.get(2),
                instance_type: r.get(3),
                market: r
                    .get::<&str, _>(4)
                    .parse()
                    .map_err(|e| StoreError::Corrupt {
                        table: "price_current",
                        detail: format!("{e}"),
                    })?,
            };
            let price = parse_money(r.get::<&str, _>(5), "price_current")?;
            out.insert(key, price.normalize());
        }
        Ok(out)
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

    pub async fn load_catalog(&self) -> Result<(Vec<Offer>, Vec<SpotBand>), StoreError> {
        let mut rows = sqlx::query(
            "SELECT c.provider, c.region, c.zone, c.instance_type, c.market, c.price_per_hour, \
             c.currency, c.source, c.observed_at, i.vcpus, i.memory_gib, i.gpu_model, i.gpu_count, \
             i.gpu_memory_gib, i.arch \
             FROM price_current c LEFT JOIN instance_type i \
             ON i.provider = c.provider AND i.instance_type = c.instance_type",
        )
        .fetch(&self.pool);
        // Streamed row by row: the catalog is large and fetch_all would hold every row
        // twice (decoded rows and offers) at the peak.
        let mut offers = Vec::new();
        while let Some(r) = futures::TryStreamExt::try_next(&mut rows).await? {
            let row = OfferRow {
                provider: r.try_get(0)?,
                region: r.try_get(1)?,
                zone: r.try_get(2)?,
                instance_type: r.try_get(3)?,
                market: r.try_get(4)?,
                price: parse_money(r.try_get::<&str, _>(5)?, "price_current")?,
                currency: r.try_get(6)?,
                source: r.try_get(7)?,
                observed_at: r.try_get(8)?,
                vcpus: r.try_get(9)?,
                memory_gib: r.try_get(10)?,
                gpu_model: r.try_get(11)?,
                gpu_count: r.try_get(12)?,
                gpu_memory_gib: r.try_get(13)?,
                arch: r.try_get(14)?,
            };
            offers.push(row.into_offer()?);
        }
        drop(rows);
        let band_rows = sqlx::query(
            "SELECT provider, region, instance_type, band, label, savings_pct FROM spot_band",
        )
        .fetch_all(&self.pool)
        .await?;
        let mut bands = Vec::with_capacity(band_rows.len());
        for r in band_rows {
            bands.push(SpotBand {
                provider: r
                    .try_get::<&str, _>(0)?
                    .parse()
                    .map_err(|e| StoreError::Corrupt {
                        table: "spot_band",
                        detail: format!("{e}"),
                    })?,
                region: r.try_get(1)?,
                instance_type: r.try_get(2)?,
                band: r.try_get::<i64, _>(3)? as u8,
                label: r.try_get(4)?,
                savings_pct: r.try_get::<i64, _>(5)? as u8,
            });
        }
        Ok((offers, bands))
    }

    pub async fn known_instances(&self) -> Result<KnownInstances, StoreError> {
        let rows = sqlx::query(
            "SELECT provider, instance_type, vcpus, memory_gib, gpu_model, gpu_count, gpu_memory_gib, arch \
             FROM instance_type",
        )
        .fetch_all(&self.pool)
        .await?;
        let mut out = KnownInstances::with_capacity(rows.len());
        for r in rows {
            let p: Provider =
                r.try_get::<&str, _>(0)?
                    .parse()
                    .map_err(|e| StoreError::Corrupt {
                        table: "instance_type",
                        detail: format!("{e}"),
                    })?;
            out.insert(
                (p, r.try_get(1)?),
                InstanceAttrs {
                    vcpus: r.try_get(2)?,
                    memory_gib: r.try_get(3)?,
                    gpu_model: r.try_get(4)?,
                    gpu_count: r.try_get(5)?,
                    gpu_memory_gib: r.try_get(6)?,
                    arch: r.try_get(7)?,
                },
            );
        }
        Ok(out)
    }

    pub async fn record_source(
        &self,
        name: &str,
        outcome: Result<u64, &str>,
        at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        match outcome {
            Ok(rows) => {
                sqlx::query(
                    "INSERT INTO source_status (name, state, last_attempt_at, last_success_at, rows) \
                     VALUES (?1, 'ok', ?2, ?2, ?3) ON CONFLICT (name) DO UPDATE SET state = 'ok', \
                     last_attempt_at = excluded.last_attempt_at, \
                     last_success_at = excluded.last_success_at, rows = excluded.rows",
                )
                .bind(name)
                .bind(at)
                .bind(rows as i64)
                .execute(&self.pool)
                .await?;
            }
            Err(error) => {
                sqlx::query(
                    "INSERT INTO source_status (name, state, last_attempt_at, last_error, last_error_at) \
                     VALUES (?1, 'failed', ?2, ?3, ?2) ON CONFLICT (name) DO UPDATE SET state = 'failed', \
                     last_attempt_at = excluded.last_attempt_at, last_error = excluded.last_error, \
                     last_error_at = excluded.last_error_at",
                )
                .bind(name)
                .bind(at)
                .bind(error)
                .execute(&self.pool)
                .await?;
            }
        }
        Ok(())
    }

    pub async fn source_statuses(&self) -> Result<Vec<SourceStatusRow>, StoreError> {
        let rows = sqlx::query(
            "SELECT name, state, last_attempt_at, last_success_at, last_error, last_error_at, rows \
             FROM source_status ORDER BY name",
        )
        .fetch_all(&self.pool)
        .await?;
        let mut out = Vec::with_capacity(rows.len());
        for r in rows {
            out.push(SourceStatusRow {
                name: r.try_get(0)?,
                state: r.try_get(1)?,
                last_attempt_at: r.try_get(2)?,
                last_success_at: r.try_get(3)?,
                last_error: r.try_get(4)?,
                last_error_at: r.try_get(5)?,
                rows: r.try_get::<i64, _>(6)? as u64,
            });
        }
        Ok(out)
    }
    pub async fn insert_mark(&self, m: &AvailabilityMark) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO availability_mark (id, provider, region, zone, reason, created_at, expires_at) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        )
        .bind(&m.id)
        .bind(m.provider.as_str())
        .bind(m.region.as_deref())
        .bind(m.zone.as_deref())
        .bind(&m.reason)
        .bind(m.created_at)
        .bind(m.expires_at)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    pub async fn list_marks(&self) -> Result<Vec<AvailabilityMark>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, provider, region, zone, reason, created_at, expires_at \
             FROM availability_mark ORDER BY created_at, id",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter()
            .map(|r| {
                super::mark_from_row(
                    r.try_get(0)?,
                    r.try_get::<&str, _>(1)?,
                    r.try_get(2)?,
                    r.try_get(3)?,
                    r.try_get(4)?,
                    r.try_get(5)?,
                    r.try_get(6)?,
                )
            })
            .collect()
    }

    pub async fn delete_mark(&self, id: &str) -> Result<bool, StoreError> {
        let r = sqlx::query("DELETE FROM availability_mark WHERE id = ?1")
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(r.rows_affected() > 0)
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
