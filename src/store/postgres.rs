//! Postgres backend: for teams and several replicas. Money as NUMERIC; batches are written
//! with one `INSERT ... SELECT FROM UNNEST($1::text[], ...)` per chunk, so a chunk of any size
//! is one round trip with one prepared statement.
use std::time::Duration;

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{PgPool, Postgres, QueryBuilder, Row};

use super::{
    CurrentPrices, DecisionRow, OfferRow, SourceStatusRow, StoreError, UpsertStats, redact_url,
};
use crate::domain::KnownInstances;
use crate::domain::egress::{Units, units_to_decimal};
use crate::domain::placement::AvailabilityMark;
use crate::domain::{InstanceAttrs, Offer, OfferKey, Provider, SpotBand};

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");

const CHUNK: usize = 5000;

#[derive(Clone)]
pub struct PgStore {
    pool: PgPool,
    /// How long an ingest waits for another ingest's turn to end.
    pub(crate) ingest_lock_wait: std::time::Duration,
    /// How often an ingest renews its run's lease (`Store::with_ingest_heartbeat`).
    pub(crate) ingest_heartbeat: std::time::Duration,
}

fn corrupt(table: &'static str, e: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt {
        table,
        detail: e.to_string(),
    }
}

/// Column vectors of a chunk of offers, for UNNEST.
#[derive(Default)]
struct OfferColumns {
    provider: Vec<&'static str>,
    region: Vec<String>,
    zone: Vec<String>,
    instance_type: Vec<String>,
    market: Vec<&'static str>,
    price: Vec<Decimal>,
    currency: Vec<String>,
    source: Vec<String>,
    observed_at: Vec<DateTime<Utc>>,
}

impl OfferColumns {
    fn of(offers: &[&Offer]) -> Self {
        let mut c = OfferColumns::default();
        for o in offers {
            c.provider.push(o.key.provider.as_str());
            c.region.push(o.key.region.clone());
            c.zone.push(o.key.zone.clone());
            c.instance_type.push(o.key.instance_type.clone());
            c.market.push(o.key.market.as_str());
            c.price.push(o.price_per_hour.normalize());
            c.currency.push(o.currency.as_str().to_string());
            c.source.push(o.source.clone());
            c.observed_at.push(o.observed_at);
        }
        c
    }
}

/// How long opening the first connection, or waiting for a pooled one, may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

impl PgStore {
    pub async fn connect(url: &str, max_connections: u32) -> Result<Self, StoreError> {
        let opts: PgConnectOptions = url.parse().map_err(|e: sqlx::Error| StoreError::Connect {
            url: redact_url(url),
            detail: e.to_string(),
        })?;
        let opts = super::statement_logging(opts);
        let failed = |detail: String| StoreError::Connect {
            url: redact_url(url),
            detail,
        };
        // One connection first, so an unreachable server is reported at once with its own
        // error ("Connection refused") rather than as the pool's "pool timed out" after its
        // acquire timeout, which retries the same refusal.
        let first = tokio::time::timeout(CONNECT_TIMEOUT, sqlx::ConnectOptions::connect(&opts))
            .await
            .map_err(|_| failed(format!("no answer within {}s", CONNECT_TIMEOUT.as_secs())))?
            .map_err(|e| failed(e.to_string()))?;
        let _ = sqlx::Connection::close(first).await;
        let pool = PgPoolOptions::new()
            .max_connections(max_connections)
            .acquire_timeout(CONNECT_TIMEOUT)
            .connect_with(opts)
            .await
            .map_err(|e| failed(e.to_string()))?;
        Ok(PgStore {
            pool,
            ingest_lock_wait: super::DEFAULT_INGEST_LOCK_WAIT,
            ingest_heartbeat: super::DEFAULT_INGEST_HEARTBEAT,
        })
    }

    pub fn pool(&self) -> &PgPool {
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
                    .map_err(|e| corrupt("price_current", e))?,
                region: r.get(1),
                zone: r.get(2),
                instance_type: r.get(3),
                market: r
                    .get::<&str, _>(4)
                    .parse()
                    .map_err(|e| corrupt("price_current", e))?,
            };
            let price: Decimal = r.get(5);
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
            let c = OfferColumns::of(chunk);
            sqlx::query(
                "INSERT INTO price_observation (provider, region, zone, instance_type, market, \
                 price_per_hour, currency, source, observed_at) \
                 SELECT * FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], \
                 $6::numeric[], $7::text[], $8::text[], $9::timestamptz[])",
            )
            .bind(&c.provider)
            .bind(&c.region)
            .bind(&c.zone)
            .bind(&c.instance_type)
            .bind(&c.market)
            .bind(&c.price)
            .bind(&c.currency)
            .bind(&c.source)
            .bind(&c.observed_at)
            .execute(&mut *tx)
            .await?;
        }
        for chunk in offers.chunks(CHUNK) {
            let c = OfferColumns::of(chunk);
            sqlx::query(
                "INSERT INTO price_current (provider, region, zone, instance_type, market, \
                 price_per_hour, currency, source, observed_at, changed_at) \
                 SELECT u.*, u.observed_at FROM UNNEST($1::text[], $2::text[], $3::text[], \
                 $4::text[], $5::text[], $6::numeric[], $7::text[], $8::text[], $9::timestamptz[]) \
                 AS u(provider, region, zone, instance_type, market, price_per_hour, currency, source, observed_at) \
                 ON CONFLICT (provider, region, zone, instance_type, market) DO UPDATE SET \
                 changed_at = CASE WHEN price_current.price_per_hour = excluded.price_per_hour \
                   AND price_current.currency = excluded.currency \
                   THEN price_current.changed_at ELSE excluded.changed_at END, \
                 price_per_hour = excluded.price_per_hour, currency = excluded.currency, \
                 source = excluded.source, observed_at = excluded.observed_at",
            )
            .bind(&c.provider)
            .bind(&c.region)
            .bind(&c.zone)
            .bind(&c.instance_type)
            .bind(&c.market)
            .bind(&c.price)
            .bind(&c.currency)
            .bind(&c.source)
            .bind(&c.observed_at)
            .execute(&mut *tx)
            .await?;
        }
        for chunk in attrs.chunks(CHUNK) {
            let provider: Vec<&str> = chunk.iter().map(|(p, _, _)| p.as_str()).collect();
            let ty: Vec<&str> = chunk.iter().map(|(_, t, _)| t.as_str()).collect();
            let vcpus: Vec<f64> = chunk.iter().map(|(_, _, a)| a.vcpus).collect();
            let mem: Vec<f64> = chunk.iter().map(|(_, _, a)| a.memory_gib).collect();
            let gpu: Vec<Option<&str>> = chunk
                .iter()
                .map(|(_, _, a)| a.gpu_model.as_deref())
                .collect();
            let gpu_n: Vec<f64> = chunk.iter().map(|(_, _, a)| a.gpu_count).collect();
            let gpu_mem: Vec<f64> = chunk.iter().map(|(_, _, a)| a.gpu_memory_gib).collect();
            let arch: Vec<&str> = chunk.iter().map(|(_, _, a)| a.arch.as_str()).collect();
            sqlx::query(
                "INSERT INTO instance_type (provider, instance_type, vcpus, memory_gib, gpu_model, \
                 gpu_count, gpu_memory_gib, arch, updated_at) \
                 SELECT u.*, $9 FROM UNNEST($1::text[], $2::text[], $3::float8[], $4::float8[], \
                 $5::text[], $6::float8[], $7::float8[], $8::text[]) AS u \
                 ON CONFLICT (provider, instance_type) DO UPDATE SET vcpus = excluded.vcpus, \
                 memory_gib = excluded.memory_gib, gpu_model = excluded.gpu_model, \
                 gpu_count = excluded.gpu_count, gpu_memory_gib = excluded.gpu_memory_gib, \
                 arch = excluded.arch, updated_at = excluded.updated_at",
            )
            .bind(&provider)
            .bind(&ty)
            .bind(&vcpus)
            .bind(&mem)
            .bind(&gpu)
            .bind(&gpu_n)
            .bind(&gpu_mem)
            .bind(&arch)
            .bind(now)
            .execute(&mut *tx)
            .await?;
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
            let provider: Vec<&str> = chunk.iter().map(|b| b.provider.as_str()).collect();
            let region: Vec<&str> = chunk.iter().map(|b| b.region.as_str()).collect();
            let ty: Vec<&str> = chunk.iter().map(|b| b.instance_type.as_str()).collect();
            let band: Vec<i32> = chunk.iter().map(|b| i32::from(b.band)).collect();
            let label: Vec<&str> = chunk.iter().map(|b| b.label.as_str()).collect();
            let savings: Vec<i32> = chunk.iter().map(|b| i32::from(b.savings_pct)).collect();
            sqlx::query(
                "INSERT INTO spot_band (provider, region, instance_type, band, label, savings_pct, observed_at) \
                 SELECT u.*, $7 FROM UNNEST($1::text[], $2::text[], $3::text[], $4::int4[], $5::text[], $6::int4[]) AS u \
                 ON CONFLICT (provider, region, instance_type) DO UPDATE SET band = excluded.band, \
                 label = excluded.label, savings_pct = excluded.savings_pct, observed_at = excluded.observed_at",
            )
            .bind(&provider)
            .bind(&region)
            .bind(&ty)
            .bind(&band)
            .bind(&label)
            .bind(&savings)
            .bind(at)
            .execute(&mut *tx)
            .await?;
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
                price: r.try_get(5)?,
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
                    .map_err(|e| corrupt("spot_band", e))?,
                region: r.try_get(1)?,
                instance_type: r.try_get(2)?,
                band: r.try_get::<i32, _>(3)? as u8,
                label: r.try_get(4)?,
                savings_pct: r.try_get::<i32, _>(5)? as u8,
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
                     VALUES ($1, 'ok', $2, $2, $3) ON CONFLICT (name) DO UPDATE SET state = 'ok', \
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
                     VALUES ($1, 'failed', $2, $3, $2) ON CONFLICT (name) DO UPDATE SET state = 'failed', \
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
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
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
        let r = sqlx::query("DELETE FROM availability_mark WHERE id = $1")
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(r.rows_affected() > 0)
    }

    pub async fn insert_decisions(&self, rows: &[DecisionRow<'_>]) -> Result<u64, StoreError> {
        let mut tx = self.pool.begin().await?;
        // Chunks of a few fixed sizes, so the statement cache keeps a handful of prepared
        // INSERTs instead of preparing one for every batch length.
        for chunk in super::fixed_chunks(rows, super::DECISION_CHUNK) {
            let mut qb = QueryBuilder::<Postgres>::new(format!(
                "INSERT INTO placement_decision ({}) ",
                super::DECISION_COLS
            ));
            qb.push_values(chunk, |mut b, d| {
                let c = d.chosen.as_ref();
                let r = d.runner_up.as_ref();
                let dec = |u: Option<Units>| u.map(units_to_decimal);
                b.push_bind(d.id)
                    .push_bind(d.decided_at)
                    .push_bind(d.team)
                    .push_bind(d.project)
                    .push_bind(d.job_id)
                    .push_bind(d.labels.as_str())
                    .push_unseparated("::jsonb")
                    .push_bind(d.request.as_str())
                    .push_unseparated("::jsonb")
                    .push_bind(d.offers_considered)
                    .push_bind(d.feasible)
                    .push_bind(c.map(|c| c.provider))
                    .push_bind(c.map(|c| c.region))
                    .push_bind(c.map(|c| c.zone))
                    .push_bind(c.map(|c| c.instance_type))
                    .push_bind(c.map(|c| c.market))
                    .push_bind(dec(c.map(|c| c.total)))
                    .push_bind(r.map(|c| c.provider))
                    .push_bind(r.map(|c| c.region))
                    .push_bind(r.map(|c| c.instance_type))
                    .push_bind(r.map(|c| c.market))
                    .push_bind(dec(r.map(|c| c.total)))
                    .push_bind(dec(d.baseline_total))
                    .push_bind(dec(d.estimated_saving))
                    .push_bind(d.currency)
                    .push_bind(d.outcome)
                    .push_bind(d.latency_us);
            });
            qb.build().execute(&mut *tx).await?;
        }
        tx.commit().await?;
        Ok(rows.len() as u64)
    }
}
