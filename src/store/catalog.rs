//! The price catalog's reads and small writes, written once for both backends (`both!`):
//! current prices, the catalog with its spot bands, known instance types, source status,
//! availability marks and row counts. The bulk writes of prices, hardware and bands
//! (UNNEST on Postgres, multi-row VALUES on SQLite) stay in `postgres.rs` and `sqlite.rs`.
use chrono::{DateTime, Utc};
use sqlx::Row;

use super::sql::{MoneyRow, both};
use super::{CurrentPrices, OfferRow, SourceStatusRow, Store, StoreError};
use crate::domain::KnownInstances;
use crate::domain::placement::AvailabilityMark;
use crate::domain::{InstanceAttrs, Offer, OfferKey, Provider, SpotBand};

fn corrupt(table: &'static str, e: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt {
        table,
        detail: e.to_string(),
    }
}

impl Store {
    /// Rows in `table`.
    pub(crate) async fn count(&self, table: &'static str) -> Result<u64, StoreError> {
        let sql = format!("SELECT COUNT(*) FROM {table}");
        let n: i64 = both!(self, Store, |s, spell| sqlx::query_scalar(&spell(&sql))
            .fetch_one(s.pool())
            .await?);
        Ok(n as u64)
    }

    pub async fn current_prices(&self) -> Result<CurrentPrices, StoreError> {
        const SQL: &str = "SELECT provider, region, zone, instance_type, market, price_per_hour \
             FROM price_current";
        const T: &str = "price_current";
        both!(self, Store, |s, spell| {
            let rows = sqlx::query(&spell(SQL)).fetch_all(s.pool()).await?;
            let mut out = CurrentPrices::with_capacity(rows.len());
            for r in &rows {
                let key = OfferKey {
                    provider: r
                        .try_get::<&str, _>(0)?
                        .parse()
                        .map_err(|e| corrupt(T, e))?,
                    region: r.try_get(1)?,
                    zone: r.try_get(2)?,
                    instance_type: r.try_get(3)?,
                    market: r
                        .try_get::<&str, _>(4)?
                        .parse()
                        .map_err(|e| corrupt(T, e))?,
                };
                out.insert(key, r.money(5, T)?.normalize());
            }
            Ok(out)
        })
    }

    /// Every current offer with its instance attributes, plus spot bands.
    pub async fn load_catalog(&self) -> Result<(Vec<Offer>, Vec<SpotBand>), StoreError> {
        const OFFERS: &str = "SELECT c.provider, c.region, c.zone, c.instance_type, c.market, \
             c.price_per_hour, c.currency, c.source, c.observed_at, i.vcpus, i.memory_gib, \
             i.gpu_model, i.gpu_count, i.gpu_memory_gib, i.arch \
             FROM price_current c LEFT JOIN instance_type i \
             ON i.provider = c.provider AND i.instance_type = c.instance_type";
        // INTEGER on SQLite, int4 on Postgres: read as one type.
        const BANDS: &str = "SELECT provider, region, instance_type, CAST(band AS BIGINT), label, \
             CAST(savings_pct AS BIGINT) FROM spot_band";
        both!(self, Store, |s, spell| {
            let offers_sql = spell(OFFERS);
            let mut rows = sqlx::query(&offers_sql).fetch(s.pool());
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
                    price: r.money(5, "price_current")?,
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
            let band_rows = sqlx::query(&spell(BANDS)).fetch_all(s.pool()).await?;
            let mut bands = Vec::with_capacity(band_rows.len());
            for r in &band_rows {
                bands.push(SpotBand {
                    provider: r
                        .try_get::<&str, _>(0)?
                        .parse()
                        .map_err(|e| corrupt("spot_band", e))?,
                    region: r.try_get(1)?,
                    instance_type: r.try_get(2)?,
                    band: r.try_get::<i64, _>(3)? as u8,
                    label: r.try_get(4)?,
                    savings_pct: r.try_get::<i64, _>(5)? as u8,
                });
            }
            Ok((offers, bands))
        })
    }

    pub async fn known_instances(&self) -> Result<KnownInstances, StoreError> {
        const SQL: &str = "SELECT provider, instance_type, vcpus, memory_gib, gpu_model, \
             gpu_count, gpu_memory_gib, arch FROM instance_type";
        both!(self, Store, |s, spell| {
            let rows = sqlx::query(&spell(SQL)).fetch_all(s.pool()).await?;
            let mut out = KnownInstances::with_capacity(rows.len());
            for r in &rows {
                let p: Provider = r
                    .try_get::<&str, _>(0)?
                    .parse()
                    .map_err(|e| corrupt("instance_type", e))?;
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
        })
    }

    pub async fn count_current(&self) -> Result<u64, StoreError> {
        self.count("price_current").await
    }

    pub async fn count_observations(&self) -> Result<u64, StoreError> {
        self.count("price_observation").await
    }

    pub async fn record_source_success(
        &self,
        name: &str,
        rows: u64,
        at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        const SQL: &str = "INSERT INTO source_status (name, state, last_attempt_at, \
             last_success_at, rows) VALUES ($1, 'ok', $2, $2, $3) \
             ON CONFLICT (name) DO UPDATE SET state = 'ok', \
             last_attempt_at = excluded.last_attempt_at, \
             last_success_at = excluded.last_success_at, rows = excluded.rows";
        both!(self, Store, |s, spell| sqlx::query(&spell(SQL))
            .bind(name)
            .bind(at)
            .bind(rows as i64)
            .execute(s.pool())
            .await?
            .rows_affected());
        Ok(())
    }

    pub async fn record_source_failure(
        &self,
        name: &str,
        error: &str,
        at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        const SQL: &str = "INSERT INTO source_status (name, state, last_attempt_at, last_error, \
             last_error_at) VALUES ($1, 'failed', $2, $3, $2) \
             ON CONFLICT (name) DO UPDATE SET state = 'failed', \
             last_attempt_at = excluded.last_attempt_at, last_error = excluded.last_error, \
             last_error_at = excluded.last_error_at";
        both!(self, Store, |s, spell| sqlx::query(&spell(SQL))
            .bind(name)
            .bind(at)
            .bind(error)
            .execute(s.pool())
            .await?
            .rows_affected());
        Ok(())
    }

    pub async fn source_statuses(&self) -> Result<Vec<SourceStatusRow>, StoreError> {
        const SQL: &str = "SELECT name, state, last_attempt_at, last_success_at, last_error, \
             last_error_at, rows FROM source_status ORDER BY name";
        both!(self, Store, |s, spell| {
            let rows = sqlx::query(&spell(SQL)).fetch_all(s.pool()).await?;
            rows.iter()
                .map(|r| {
                    Ok(SourceStatusRow {
                        name: r.try_get(0)?,
                        state: r.try_get(1)?,
                        last_attempt_at: r.try_get(2)?,
                        last_success_at: r.try_get(3)?,
                        last_error: r.try_get(4)?,
                        last_error_at: r.try_get(5)?,
                        rows: r.try_get::<i64, _>(6)? as u64,
                    })
                })
                .collect()
        })
    }

    pub async fn insert_mark(&self, m: &AvailabilityMark) -> Result<(), StoreError> {
        const SQL: &str = "INSERT INTO availability_mark (id, provider, region, zone, reason, \
             created_at, expires_at) VALUES ($1, $2, $3, $4, $5, $6, $7)";
        both!(self, Store, |s, spell| sqlx::query(&spell(SQL))
            .bind(&m.id)
            .bind(m.provider.as_str())
            .bind(m.region.as_deref())
            .bind(m.zone.as_deref())
            .bind(&m.reason)
            .bind(m.created_at)
            .bind(m.expires_at)
            .execute(s.pool())
            .await?
            .rows_affected());
        Ok(())
    }

    /// Every stored mark, expired or not, oldest first.
    pub async fn list_marks(&self) -> Result<Vec<AvailabilityMark>, StoreError> {
        const SQL: &str = "SELECT id, provider, region, zone, reason, created_at, expires_at \
             FROM availability_mark ORDER BY created_at, id";
        both!(self, Store, |s, spell| {
            let rows = sqlx::query(&spell(SQL)).fetch_all(s.pool()).await?;
            rows.iter()
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
        })
    }

    /// Deletes a mark; `false` if there was none with that id.
    pub async fn delete_mark(&self, id: &str) -> Result<bool, StoreError> {
        const SQL: &str = "DELETE FROM availability_mark WHERE id = $1";
        let n = both!(self, Store, |s, spell| sqlx::query(&spell(SQL))
            .bind(id)
            .execute(s.pool())
            .await?
            .rows_affected());
        Ok(n > 0)
    }

    pub async fn count_decisions(&self) -> Result<u64, StoreError> {
        self.count("placement_decision").await
    }
}
