//! Persistence: one `Store` over two backends, with per-backend migrations under
//! `migrations/{sqlite,postgres}`, applied by `migrate`. SQL is shared one way (`sql.rs`:
//! written once in Postgres spelling, run per backend by `both!`): `catalog.rs`,
//! `billing.rs`, `budgets.rs`, `gpu_samples.rs` and `report.rs` write each query once; `sqlite.rs` and `postgres.rs` keep
//! only connecting and the bulk writes whose SQL really differs. The same story tests
//! (tests/store.rs) run against both.
//!
//! Invariant: money is exact on both backends (SQLite TEXT decimal strings, Postgres NUMERIC).
//! Invariant: re-writing an unchanged price adds no `price_observation` row.
pub mod billing;
pub mod budgets;
mod catalog;
pub mod changes;
pub mod daily;
pub mod fleet;
mod gpu_samples;
pub mod leader;
pub mod node_lock;
pub mod pgcopy;
pub mod postgres;
mod reader_role;
pub mod report;
mod sql;
pub mod sqlite;

use std::collections::HashMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;

use crate::domain::money::Units;
use crate::domain::placement::AvailabilityMark;
use crate::domain::{InstanceAttrs, Market, Offer, OfferKey, Provider, SpotBand};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("unsupported database URL scheme in {0:?}: expected sqlite:// or postgres://")]
    UnsupportedScheme(String),
    #[error("cannot open database {url}: {detail}")]
    Connect { url: String, detail: String },
    #[error("database migration failed: {0}")]
    Migrate(String),
    #[error("database error: {0}")]
    Query(#[from] sqlx::Error),
    #[error("corrupt row in {table}: {detail}")]
    Corrupt { table: &'static str, detail: String },
    /// A budget's stored spec does not parse as a `Budget`. Only the position is kept: the
    /// parser's message may quote a value, and values include webhook URLs.
    #[error(
        "the stored definition of budget {} cannot be read (line {line}, column {column})",
        crate::domain::quote::quote(budget)
    )]
    BudgetSpec {
        budget: String,
        line: usize,
        column: usize,
    },
    /// Another writer kept the lock an ingest needs for longer than it was allowed to wait.
    #[error(
        "another ingest (or writer) kept the database's ingest lock for over {}; nothing was stored, try again when it has finished or wait longer (--lock-wait)",
        humantime::format_duration(*.waited)
    )]
    Busy { waited: Duration },
    /// A sum the ingest keeps (the `cost_daily` summary) would leave exact decimal range
    /// (about 7.9e28); the file's transaction is rolled back, nothing is stored.
    #[error(
        "line {line}: {field} makes a daily sum too large for an exact decimal; nothing was stored"
    )]
    Overflow { line: u64, field: &'static str },
    /// Another `bursar serve` holds this SQLite file's single-node lock (`node_lock`).
    #[error(
        "another bursar serve is already running on the SQLite database {database}: SQLite mode is single-node (stop that server, or use Postgres for several replicas)"
    )]
    InUse { database: String },
}

impl StoreError {
    /// Another connection held the lock this statement needed for longer than it waits
    /// (SQLite's SQLITE_BUSY and its extended codes; an ingest's `Busy`).
    pub fn is_busy(&self) -> bool {
        match self {
            StoreError::Busy { .. } => true,
            StoreError::Query(e) => is_sqlite_busy(e),
            _ => false,
        }
    }

    /// Configuration-type failures (bad scheme, unreachable database) exit with code 2.
    pub fn is_configuration(&self) -> bool {
        matches!(
            self,
            StoreError::UnsupportedScheme(_) | StoreError::Connect { .. }
        )
    }
}

/// Statement logging for both backends: sqlx logs a statement slower than a second at WARN
/// with its whole SQL (many lines for a migration) by default; here it is a DEBUG event,
/// so a slow start on a loaded machine does not put SQL in the operator's log.
pub(crate) fn statement_logging<O: sqlx::ConnectOptions>(opts: O) -> O {
    opts.log_statements(log::LevelFilter::Debug)
        .log_slow_statements(log::LevelFilter::Debug, Duration::from_secs(1))
}

/// Which prices are currently stored, to tell changed prices from unchanged ones.
pub type CurrentPrices = HashMap<OfferKey, Decimal>;

/// What one `upsert_offers` call did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct UpsertStats {
    /// Offers written to the current view (new or confirmed).
    pub offers: u64,
    /// New `price_observation` rows: offers first seen or whose price changed.
    pub observations: u64,
}

/// One row of `source_status`.
#[derive(Debug, Clone, PartialEq)]
pub struct SourceStatusRow {
    pub name: String,
    pub state: String,
    pub last_attempt_at: Option<DateTime<Utc>>,
    pub last_success_at: Option<DateTime<Utc>>,
    pub last_error: Option<String>,
    pub last_error_at: Option<DateTime<Utc>>,
    pub rows: u64,
}

/// One row of `placement_decision`, borrowing its text from the decision and catalog it was
/// rendered from. Amounts are USD `Units` (10⁻¹² USD): SQLite stores their exact text,
/// Postgres a NUMERIC.
#[derive(Debug, Clone, PartialEq)]
pub struct DecisionRow<'a> {
    pub id: &'a str,
    pub decided_at: DateTime<Utc>,
    pub team: Option<&'a str>,
    pub project: Option<&'a str>,
    pub job_id: Option<&'a str>,
    /// JSON object.
    pub labels: String,
    /// JSON object.
    pub request: String,
    pub offers_considered: i64,
    pub feasible: i64,
    pub chosen: Option<DecisionChoice<'a>>,
    pub runner_up: Option<DecisionChoice<'a>>,
    pub baseline_total: Option<Units>,
    pub estimated_saving: Option<Units>,
    pub currency: &'a str,
    pub outcome: &'a str,
    pub latency_us: i64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct DecisionChoice<'a> {
    pub provider: &'a str,
    pub region: &'a str,
    pub zone: &'a str,
    pub instance_type: &'a str,
    pub market: &'a str,
    pub total: Units,
}

/// A price_current row joined with instance_type, before parsing into an `Offer`.
pub(crate) struct OfferRow {
    pub provider: String,
    pub region: String,
    pub zone: String,
    pub instance_type: String,
    pub market: String,
    pub price: Decimal,
    pub currency: String,
    pub source: String,
    pub observed_at: DateTime<Utc>,
    pub vcpus: Option<f64>,
    pub memory_gib: Option<f64>,
    pub gpu_model: Option<String>,
    pub gpu_count: Option<f64>,
    pub gpu_memory_gib: Option<f64>,
    pub arch: Option<String>,
}

pub(crate) fn mark_from_row(
    id: String,
    provider: &str,
    region: Option<String>,
    zone: Option<String>,
    reason: String,
    created_at: DateTime<Utc>,
    expires_at: DateTime<Utc>,
) -> Result<AvailabilityMark, StoreError> {
    Ok(AvailabilityMark {
        id,
        provider: provider.parse().map_err(|e| StoreError::Corrupt {
            table: "availability_mark",
            detail: format!("{e}"),
        })?,
        region,
        zone,
        reason,
        created_at,
        expires_at,
    })
}

fn corrupt(detail: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt {
        table: "price_current",
        detail: detail.to_string(),
    }
}

impl OfferRow {
    pub(crate) fn into_offer(self) -> Result<Offer, StoreError> {
        let attrs = match (self.vcpus, self.memory_gib) {
            (Some(vcpus), Some(memory_gib)) => Some(InstanceAttrs {
                vcpus,
                memory_gib,
                gpu_model: self.gpu_model,
                gpu_count: self.gpu_count.unwrap_or(0.0),
                gpu_memory_gib: self.gpu_memory_gib.unwrap_or(0.0),
                arch: self.arch.unwrap_or_else(|| "x86_64".into()),
            }),
            _ => None,
        };
        Ok(Offer {
            key: OfferKey {
                provider: self.provider.parse::<Provider>().map_err(corrupt)?,
                region: self.region,
                zone: self.zone,
                instance_type: self.instance_type,
                market: self.market.parse::<Market>().map_err(corrupt)?,
            },
            price_per_hour: self.price,
            currency: self.currency.parse().map_err(corrupt)?,
            attrs,
            source: self.source,
            observed_at: self.observed_at,
        })
    }
}

/// Keeps the last offer for each key (a feed may repeat one) in first-seen order.
pub(crate) fn dedup_offers(offers: &[Offer]) -> Vec<&Offer> {
    let mut index: HashMap<&OfferKey, usize> = HashMap::with_capacity(offers.len());
    let mut out: Vec<&Offer> = Vec::with_capacity(offers.len());
    for o in offers {
        match index.get(&o.key) {
            Some(&i) => out[i] = o,
            None => {
                index.insert(&o.key, out.len());
                out.push(o);
            }
        }
    }
    out
}

/// Distinct instance types with attributes in a batch (last one wins).
pub(crate) fn instance_attrs(offers: &[&Offer]) -> Vec<(Provider, String, InstanceAttrs)> {
    let mut seen: HashMap<(Provider, &str), usize> = HashMap::new();
    let mut out: Vec<(Provider, String, InstanceAttrs)> = Vec::new();
    for o in offers {
        if let Some(a) = &o.attrs {
            let k = (o.key.provider, o.key.instance_type.as_str());
            match seen.get(&k) {
                Some(&i) => out[i].2 = a.clone(),
                None => {
                    seen.insert(k, out.len());
                    out.push((o.key.provider, o.key.instance_type.clone(), a.clone()));
                }
            }
        }
    }
    out
}

/// Which offers of a batch need a new observation row; updates `current` as it goes.
pub(crate) fn changed_offers<'a>(
    offers: &[&'a Offer],
    current: &mut CurrentPrices,
) -> Vec<&'a Offer> {
    let mut out = Vec::new();
    for o in offers {
        let price = o.price_per_hour.normalize();
        match current.get(&o.key) {
            Some(p) if *p == price => {}
            _ => {
                current.insert(o.key.clone(), price);
                out.push(*o);
            }
        }
    }
    out
}

/// Redacts the password of a database URL for messages.
pub fn redact_url(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut u) if u.password().is_some() => {
            let _ = u.set_password(Some("***"));
            u.to_string()
        }
        _ => url.to_string(),
    }
}

macro_rules! dispatch {
    ($self:ident, $s:ident => $e:expr) => {
        match $self {
            Store::Sqlite($s) => $e,
            Store::Postgres($s) => $e,
        }
    };
}

/// Moves `catalog_generation` inside a transaction that writes prices, hardware or spot
/// bands (written once; `$`-free, so SQLite reads it as is).
async fn bump_catalog_generation<DB>(tx: &mut sqlx::Transaction<'_, DB>) -> Result<(), StoreError>
where
    DB: sqlx::Database,
    for<'c> &'c mut DB::Connection: sqlx::Executor<'c, Database = DB>,
    for<'q> DB::Arguments<'q>: sqlx::IntoArguments<'q, DB>,
{
    sqlx::query("UPDATE catalog_generation SET generation = generation + 1 WHERE id = 1")
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// Moves `spend_generation` inside a transaction that commits cost lines (migration 0010;
/// budget writes move it through triggers).
async fn bump_spend_generation<DB>(tx: &mut sqlx::Transaction<'_, DB>) -> Result<(), StoreError>
where
    DB: sqlx::Database,
    for<'c> &'c mut DB::Connection: sqlx::Executor<'c, Database = DB>,
    for<'q> DB::Arguments<'q>: sqlx::IntoArguments<'q, DB>,
{
    sqlx::query("UPDATE spend_generation SET generation = generation + 1 WHERE id = 1")
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// SQLITE_BUSY (5) or one of its extended codes. (Postgres reports lock waits as
/// `lock_not_available`, which only an ingest's bounded wait produces.)
pub(crate) fn is_sqlite_busy(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Database(d) if d.try_downcast_ref::<sqlx::sqlite::SqliteError>().is_some() => {
            d.code()
                .and_then(|c| c.parse::<i32>().ok())
                .is_some_and(|c| c & 0xff == 5)
        }
        _ => false,
    }
}

/// The database, SQLite or Postgres, chosen by URL scheme.
#[derive(Clone)]
pub enum Store {
    Sqlite(sqlite::SqliteStore),
    Postgres(postgres::PgStore),
}

/// How long a SQLite statement waits for another connection's write lock before failing
/// (the pool's connections; an ingest's own connection after it holds the lock).
pub const SQLITE_BUSY_TIMEOUT_MS: u64 = 10_000;

/// Pause between a background writer's tries (a poll's write, a decision-log batch) while
/// another writer holds a SQLite database; each try also waits out the busy timeout first.
pub const BUSY_RETRY: Duration = Duration::from_secs(1);

/// How long an ingest waits, by default, for another ingest to finish: long enough for a
/// multi-million-line file ahead of it.
pub const DEFAULT_INGEST_LOCK_WAIT: Duration = Duration::from_secs(30 * 60);

/// How often, by default, an ingest renews its run's lease (see `Store::with_ingest_heartbeat`).
pub const DEFAULT_INGEST_HEARTBEAT: Duration = Duration::from_secs(10);

impl Store {
    /// How often an ingest renews the lease of its `running` run: the lease lasts
    /// `billing::LEASE_HEARTBEATS` heartbeats, and a run whose lease ran out is marked
    /// `interrupted` (its process is gone) at the next ingest, `serve` start or
    /// ListIngestRuns.
    pub fn with_ingest_heartbeat(mut self, every: Duration) -> Store {
        let every = every.max(Duration::from_millis(10));
        match &mut self {
            Store::Sqlite(s) => s.ingest_heartbeat = every,
            Store::Postgres(s) => s.ingest_heartbeat = every,
        }
        self
    }

    /// See [`Store::with_ingest_heartbeat`].
    pub fn ingest_heartbeat(&self) -> Duration {
        match self {
            Store::Sqlite(s) => s.ingest_heartbeat,
            Store::Postgres(s) => s.ingest_heartbeat,
        }
    }

    /// How long `begin_ingest` and the run's first write wait for another ingest (one at a
    /// time per database: SQLite's write lock, a Postgres advisory lock) before giving up
    /// with `StoreError::Busy`.
    pub fn with_ingest_lock_wait(mut self, wait: Duration) -> Store {
        match &mut self {
            Store::Sqlite(s) => s.ingest_lock_wait = wait,
            Store::Postgres(s) => s.ingest_lock_wait = wait,
        }
        self
    }

    /// Opens (and for SQLite creates) the database. Does not migrate.
    pub async fn connect(url: &str) -> Result<Store, StoreError> {
        Store::connect_pool(url, None).await
    }

    /// Connects with at most `max_connections` (None: the backend's default of 4 for SQLite,
    /// 8 for Postgres). A background writer with its own one-connection pool owns that
    /// connection's I/O (and, on SQLite, the worker thread sqlx starts for it).
    pub async fn connect_pool(
        url: &str,
        max_connections: Option<u32>,
    ) -> Result<Store, StoreError> {
        if url.starts_with("sqlite:") {
            let n = max_connections.unwrap_or(4);
            Ok(Store::Sqlite(sqlite::SqliteStore::connect(url, n).await?))
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            let n = max_connections.unwrap_or(8);
            Ok(Store::Postgres(postgres::PgStore::connect(url, n).await?))
        } else {
            Err(StoreError::UnsupportedScheme(redact_url(url)))
        }
    }

    /// Opens and applies pending migrations.
    pub async fn open(url: &str) -> Result<Store, StoreError> {
        let s = Store::connect(url).await?;
        s.migrate().await?;
        Ok(s)
    }

    pub fn backend(&self) -> &'static str {
        match self {
            Store::Sqlite(_) => "sqlite",
            Store::Postgres(_) => "postgres",
        }
    }

    /// Applies pending migrations, then sums into `cost_daily` any lines stored before it
    /// existed (`summarize_missing_ranges`).
    pub async fn migrate(&self) -> Result<(), StoreError> {
        dispatch!(self, s => s.migrate().await)?;
        self.summarize_missing_ranges().await?;
        Ok(())
    }

    /// The counter every write to the catalog's tables moves (`catalog_generation`): equal
    /// values mean the catalog built at the first would be built again unchanged.
    pub async fn catalog_generation(&self) -> Result<i64, StoreError> {
        const SQL: &str = "SELECT generation FROM catalog_generation WHERE id = 1";
        Ok(match self {
            Store::Sqlite(s) => sqlx::query_scalar(SQL).fetch_one(s.pool()).await?,
            Store::Postgres(s) => sqlx::query_scalar(SQL).fetch_one(s.pool()).await?,
        })
    }

    /// The counter every committed ingest and every budget write moves (`spend_generation`):
    /// equal values mean an evaluation of the budgets would read the same spend and specs.
    pub async fn spend_generation(&self) -> Result<i64, StoreError> {
        const SQL: &str = "SELECT generation FROM spend_generation WHERE id = 1";
        Ok(match self {
            Store::Sqlite(s) => sqlx::query_scalar(SQL).fetch_one(s.pool()).await?,
            Store::Postgres(s) => sqlx::query_scalar(SQL).fetch_one(s.pool()).await?,
        })
    }

    /// Writes a batch in one transaction: current view (insert or confirm), a history row
    /// for each new or changed price, and instance attributes when the batch has them.
    pub async fn upsert_offers(
        &self,
        offers: &[Offer],
        current: &mut CurrentPrices,
    ) -> Result<UpsertStats, StoreError> {
        let offers = dedup_offers(offers);
        let changed = changed_offers(&offers, current);
        let attrs = instance_attrs(&offers);
        let r = dispatch!(self, s => s.write_offers(&offers, &changed, &attrs).await);
        if r.is_err() {
            // The transaction rolled back: forget what we assumed was stored.
            for o in &changed {
                current.remove(&o.key);
            }
        }
        r
    }

    pub async fn upsert_bands(
        &self,
        bands: &[SpotBand],
        at: DateTime<Utc>,
    ) -> Result<u64, StoreError> {
        dispatch!(self, s => s.upsert_bands(bands, at).await)
    }

    /// Appends decision log rows in one transaction.
    pub async fn insert_decisions(&self, rows: &[DecisionRow<'_>]) -> Result<u64, StoreError> {
        dispatch!(self, s => s.insert_decisions(rows).await)
    }

    pub async fn close(&self) {
        dispatch!(self, s => s.close().await)
    }
}

/// Columns of a `placement_decision` insert, in bind order (both backends).
pub(crate) const DECISION_COLS: &str = "id, decided_at, team, project, job_id, labels, request, \
     offers_considered, feasible, chosen_provider, chosen_region, chosen_zone, \
     chosen_instance_type, chosen_market, chosen_total, runner_up_provider, runner_up_region, \
     runner_up_instance_type, runner_up_market, runner_up_total, baseline_total, \
     estimated_saving, currency, outcome, latency_us";

/// Parameters per decision row (the columns above).
pub(crate) const DECISION_N_COLS: usize = 25;

/// Rows per decision-log INSERT: `fixed_chunks` of this size.
pub(crate) const DECISION_CHUNK: usize = 64;

/// SQLite's multi-row `INSERT OR FAIL INTO table (cols) VALUES (?,…),…` for `rows` rows of
/// `n_cols` parameters. OR FAIL: a failing row stops the statement without undoing its
/// earlier rows, so SQLite keeps no statement journal (the whole transaction is rolled back
/// on any error anyway).
pub(crate) fn sqlite_insert_sql(table: &str, cols: &str, n_cols: usize, rows: usize) -> String {
    let row = format!("({})", vec!["?"; n_cols].join(","));
    format!(
        "INSERT OR FAIL INTO {table} ({cols}) VALUES {}",
        vec![row.as_str(); rows].join(",")
    )
}

/// `rows` in chunks of `size` (a power of two), then the remainder in descending powers of
/// two: a multi-row statement per chunk has one of a few shapes, each prepared once.
pub(crate) fn fixed_chunks<T>(rows: &[T], size: usize) -> impl Iterator<Item = &[T]> {
    let size = size.max(1).next_power_of_two();
    let mut rest = rows;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        let mut n = size;
        while n > rest.len() {
            n /= 2;
        }
        let (head, tail) = rest.split_at(n);
        rest = tail;
        Some(head)
    })
}

#[cfg(test)]
mod chunk_tests {
    #[test]
    fn fixed_chunks_use_few_shapes_and_keep_every_row() {
        let rows: Vec<u32> = (0..203).collect();
        let sizes: Vec<usize> = super::fixed_chunks(&rows, 64).map(|c| c.len()).collect();
        assert_eq!(sizes, [64, 64, 64, 8, 2, 1]);
        let back: Vec<u32> = super::fixed_chunks(&rows, 64).flatten().copied().collect();
        assert_eq!(back, rows);
        assert_eq!(super::fixed_chunks::<u32>(&[], 64).count(), 0);
    }
}
