//! Postgres backend: for teams and several replicas. Money as NUMERIC. What only Postgres
//! spells this way: connecting, and the bulk writes of prices, hardware, bands (one
//! `INSERT ... SELECT FROM UNNEST($1::text[], ...)` per chunk, so a chunk of any size is one
//! round trip with one prepared statement) and decisions.
use std::time::Duration;

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{PgPool, Postgres, QueryBuilder};

use super::{DecisionRow, StoreError, UpsertStats, redact_url};
use crate::domain::money::{Units, units_to_decimal};
use crate::domain::{InstanceAttrs, Offer, Provider, SpotBand};

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

/// What makes a pool's sessions fenced (`Store::fenced`): every acquire sets the session's
/// `bursar.leader_term` to `term`'s value (0 when not the leader), which migration 0015's
/// trigger checks against the lease; and a transaction left idle longer than `idle` (a
/// paused process) is ended by the server, so it cannot hold up a takeover.
#[derive(Clone)]
pub struct PgFence {
    pub term: std::sync::Arc<std::sync::atomic::AtomicI64>,
    pub idle: Duration,
}

impl PgStore {
    pub async fn connect(url: &str, max_connections: u32) -> Result<Self, StoreError> {
        PgStore::connect_with(url, max_connections, None).await
    }

    /// A pool whose sessions carry the leader's term (see `PgFence`).
    pub async fn connect_fenced(
        url: &str,
        max_connections: u32,
        fence: PgFence,
    ) -> Result<Self, StoreError> {
        PgStore::connect_with(url, max_connections, Some(fence)).await
    }

    async fn connect_with(
        url: &str,
        max_connections: u32,
        fence: Option<PgFence>,
    ) -> Result<Self, StoreError> {
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
        let mut options = PgPoolOptions::new()
            .max_connections(max_connections)
            .acquire_timeout(CONNECT_TIMEOUT);
        if let Some(fence) = fence {
            let idle_ms = fence.idle.as_millis().max(1).to_string();
            let at_connect = fence.term.clone();
            options = options
                .after_connect(move |conn, _| {
                    let idle_ms = idle_ms.clone();
                    // A new connection skips `before_acquire`: its term is set here.
                    let term = at_connect.load(std::sync::atomic::Ordering::SeqCst);
                    Box::pin(async move {
                        sqlx::query(
                            "SELECT set_config('idle_in_transaction_session_timeout', $1, false), \
                             set_config('bursar.leader_term', $2, false)",
                        )
                        .bind(idle_ms)
                        .bind(term.to_string())
                        .execute(&mut *conn)
                        .await?;
                        Ok(())
                    })
                })
                .before_acquire(move |conn, _| {
                    let term = fence.term.load(std::sync::atomic::Ordering::SeqCst);
                    Box::pin(async move {
                        sqlx::query("SELECT set_config('bursar.leader_term', $1, false)")
                            .bind(term.to_string())
                            .execute(&mut *conn)
                            .await?;
                        Ok(true)
                    })
                });
        }
        let pool = options
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
