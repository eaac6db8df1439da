//! Billing persistence, shared by both backends: ingest runs, the replace-by-scope cost
//! line writer (`IngestTx`: one transaction per file, so a crash leaves the previous state
//! whole) and the spend query. SQLite keeps money as exact decimal text and sums it in Rust;
//! Postgres keeps NUMERIC, loads with COPY and sums in SQL. Lines are stored compactly
//! (`cost_fact`, `cost_dims`, `cost_range`; see `IngestTx`) behind the `cost_line` view.
//! A `running` run holds a lease its process renews; one whose lease ran out is marked
//! `interrupted` (`interrupt_expired_runs`). Quarantined rows are listed per run in pages
//! (`list_quarantine`).
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Arc;

use chrono::{DateTime, Datelike, NaiveDate, TimeZone, Utc};
use rust_decimal::Decimal;
use sqlx::sqlite::SqliteArguments;
use sqlx::{Postgres, QueryBuilder, Row, Sqlite};

use super::daily::{DAILY_CHUNK, DAILY_COLS, DAILY_HELD, DailyTotals, push_daily};
use super::sql::{both, money_text};
use super::{SQLITE_BUSY_TIMEOUT_MS, Store, StoreError, is_sqlite_busy};
use crate::billing::{CostLine, LineDims, Quarantined};

/// One row of `ingest_run`.
#[derive(Debug, Clone, PartialEq)]
pub struct IngestRunRow {
    pub id: String,
    pub started_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
    pub source: String,
    pub format: Option<String>,
    pub variant: Option<String>,
    pub status: String,
    pub rows_read: i64,
    pub rows_stored: i64,
    pub rows_quarantined: i64,
    /// JSON object {kind: count}.
    pub deviations: String,
    /// JSON object {currency: {"billed": "..", "effective": ".."}}.
    pub totals: String,
    /// JSON array of the scopes this run replaced.
    pub scopes: String,
    pub error: Option<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Granularity {
    Day,
    Month,
    /// One bucket for the whole range, dated by its first day.
    Total,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum GroupBy {
    None,
    Provider,
    Service,
    Region,
    Account,
    Tag(String),
}

/// A validated spend query: charge period in [start, end).
#[derive(Clone, Debug, PartialEq)]
pub struct SpendQuery {
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
    pub granularity: Granularity,
    pub group_by: GroupBy,
    pub provider: Option<String>,
    pub service: Option<String>,
    pub region: Option<String>,
    pub account: Option<String>,
    pub tag: Option<(String, String)>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct SpendRow {
    pub period_start: NaiveDate,
    /// The group's value; `None` when the line has none (or no grouping).
    pub group: Option<String>,
    pub currency: String,
    pub billed: Decimal,
    pub effective: Decimal,
    pub lines: u64,
}

fn bucket(t: DateTime<Utc>, g: Granularity, start: DateTime<Utc>) -> NaiveDate {
    let d = t.date_naive();
    match g {
        Granularity::Day => d,
        Granularity::Month => NaiveDate::from_ymd_opt(d.year(), d.month(), 1).unwrap_or(d),
        Granularity::Total => start.date_naive(),
    }
}

fn parse_dec(s: &str) -> Result<Decimal, StoreError> {
    crate::domain::money::parse_amount(s).map_err(|e| StoreError::Corrupt {
        table: "cost_line",
        detail: e.to_string(),
    })
}

fn tags_json(t: &BTreeMap<String, String>) -> String {
    serde_json::to_string(t).unwrap_or_else(|_| "{}".into())
}

/// What bursar's SQLite queries of cost lines read from: the compact rows with their
/// descriptive fields (no column name but `id` is in both tables). The `cost_line` view
/// would format each charge period as text, and a range on it could not use the index.
pub(crate) const SQLITE_LINES: &str =
    "cost_fact JOIN cost_dims ON cost_dims.id = cost_fact.dims_id";

/// A charge period bound as SQLite's `cost_fact` keeps it: microseconds since the Unix epoch.
pub(crate) fn sqlite_micros(t: DateTime<Utc>) -> i64 {
    t.timestamp_micros()
}

/// A `cost_fact` charge period read back from SQLite.
pub(crate) fn from_sqlite_micros(us: i64) -> Result<DateTime<Utc>, StoreError> {
    DateTime::from_timestamp_micros(us).ok_or_else(|| StoreError::Corrupt {
        table: "cost_fact",
        detail: format!("charge period {us} µs is out of range"),
    })
}

/// An open ingest: everything it writes becomes visible at `commit`, or not at all.
///
/// A line is stored compactly (migration 0008): its money, quantity and charge period in
/// `cost_fact`; its scope, run and billing period once per range in `cost_range`; its
/// descriptive fields (provider, service, region, resource, SKU, accounts, tags, ...) once
/// per distinct combination of the run in `cost_dims`. The `cost_line` view joins them back.
///
/// The run reserves a block of ids in each of the three tables (SQLite: the transaction
/// holds the write lock from `BEGIN IMMEDIATE`; Postgres: an advisory lock that ingests
/// take in turn), so lines can name their range and dims before those rows are written at
/// the end, and the run knows per range the first and last id its lines got. Replacing a
/// scope later deletes a primary-key range instead of going through a per-line index.
pub struct IngestTx {
    backend: Backend,
    /// The ids the next line, range and dims get; reserved on the first `insert_lines`.
    next: Option<NextIds>,
    /// The run whose lines `ranges` and `dims` describe.
    run_id: Option<String>,
    /// Per (scope, billing period) stored so far, in first-seen order.
    ranges: Vec<ScopeRange>,
    /// Per scope, the indexes in `ranges` of its billing periods (almost always one).
    range_of: std::collections::HashMap<String, Vec<usize>>,
    dims: DimsInterner,
    /// Distinct combinations held in memory before they are written and forgotten.
    dims_held: usize,
    /// How long the run's first write waits for another ingest's turn (Postgres).
    lock_wait: std::time::Duration,
    /// The lines' daily sums not yet written to `cost_daily`.
    daily: DailyTotals,
}

/// The next free id of `cost_fact`, `cost_range` and `cost_dims` in this run's blocks.
#[derive(Debug, Clone, Copy)]
struct NextIds {
    fact: i64,
    range: i64,
    dims: i64,
}

/// The distinct descriptive-field combinations among a run's lines, in first-seen order:
/// the i-th gets id `first_id + i` and is written to `cost_dims` when the run finishes, or
/// earlier once `DIMS_HELD` are held. Memory stays bounded on a file whose lines are nearly
/// all distinct; a combination seen again after such a write is stored once more.
///
/// A parser hands every line with the same fields the same `Arc` (`DimsCache`), so a line
/// is looked up by the `Arc`'s address; only an address not seen yet is looked up by value
/// (lines built one by one, or a parser's cache that started afresh).
#[derive(Default)]
struct DimsInterner {
    /// Indexes into `rows`, by value.
    table: hashbrown::HashTable<usize>,
    hasher: hashbrown::DefaultHashBuilder,
    /// Indexes into `rows`, by the address of an `Arc` that `rows` or `aliases` keeps alive
    /// (so no other value can come to live at that address while it is here).
    by_address: hashbrown::HashMap<usize, usize>,
    rows: Vec<Arc<LineDims>>,
    /// `Arc`s whose fields equal a row's, but at another address.
    aliases: Vec<Arc<LineDims>>,
    first_id: i64,
}

impl DimsInterner {
    /// The id of `d`'s combination, adding it if new.
    fn id_of(&mut self, d: &Arc<LineDims>) -> i64 {
        use std::hash::BuildHasher;
        let address = Arc::as_ptr(d) as usize;
        if let Some(&i) = self.by_address.get(&address) {
            return self.first_id + i as i64;
        }
        let key = d.key();
        let hash = self.hasher.hash_one(key);
        let rows = &self.rows;
        let hasher = &self.hasher;
        let i = match self.table.find(hash, |&i| rows[i].key() == key) {
            Some(&i) => {
                self.aliases.push(d.clone());
                i
            }
            None => {
                let i = self.rows.len();
                self.table
                    .insert_unique(hash, i, |&j| hasher.hash_one(rows[j].key()));
                self.rows.push(d.clone());
                i
            }
        };
        self.by_address.insert(address, i);
        self.first_id + i as i64
    }

    /// The `Arc`s held (rows and aliases), which `DIMS_HELD` bounds.
    fn held(&self) -> usize {
        self.rows.len() + self.aliases.len()
    }
}

enum Backend {
    Sqlite(Streaming<SqliteTx, SqliteArguments<'static>>),
    Postgres(Streaming<PgTx, Vec<u8>>),
}

/// The ids one run gave its lines of one scope and billing period (one `cost_range` row):
/// every such line has `first <= id <= last` and `range_id = id`.
#[derive(Debug, Clone, PartialEq, Eq)]
struct ScopeRange {
    id: i64,
    scope: String,
    billing_period_start: DateTime<Utc>,
    billing_period_end: DateTime<Utc>,
    first: i64,
    last: i64,
    lines: i64,
}

/// The VALUES of a `cost_range` insert, the same binds on either backend.
fn push_ranges<'a, DB: sqlx::Database>(
    qb: &mut QueryBuilder<'a, DB>,
    chunk: &'a [ScopeRange],
    run_id: &'a str,
) where
    &'a str: sqlx::Encode<'a, DB> + sqlx::Type<DB>,
    i64: sqlx::Encode<'a, DB> + sqlx::Type<DB>,
    DateTime<Utc>: sqlx::Encode<'a, DB> + sqlx::Type<DB>,
{
    qb.push_values(chunk, |mut b, r| {
        b.push_bind(r.id)
            .push_bind(r.scope.as_str())
            .push_bind(run_id)
            .push_bind(r.billing_period_start)
            .push_bind(r.billing_period_end)
            .push_bind(r.first)
            .push_bind(r.last)
            .push_bind(r.lines);
    });
}

const RANGE_INSERT: &str = "INSERT INTO cost_range (id, scope, ingest_run_id, billing_period_start, \
     billing_period_end, first_id, last_id, lines) ";

/// The VALUES of a `cost_dims` insert (ids from `first_id`), the same binds on either
/// backend; `json` follows the tags parameter (Postgres: a cast to JSONB).
fn push_dims<'a, DB: sqlx::Database>(
    qb: &mut QueryBuilder<'a, DB>,
    first_id: i64,
    chunk: &'a [Arc<LineDims>],
    run_id: &'a str,
    json: &'static str,
) where
    &'a str: sqlx::Encode<'a, DB> + sqlx::Type<DB>,
    Option<&'a str>: sqlx::Encode<'a, DB> + sqlx::Type<DB>,
    String: sqlx::Encode<'a, DB> + sqlx::Type<DB>,
    i64: sqlx::Encode<'a, DB> + sqlx::Type<DB>,
{
    let mut id = first_id;
    qb.push_values(chunk, |mut b, l| {
        b.push_bind(id).push_bind(run_id);
        for v in l.fields() {
            b.push_bind(v);
        }
        b.push_bind(tags_json(&l.tags)).push_unseparated(json);
        id += 1;
    });
}

const DIMS_INSERT: &str = "INSERT INTO cost_dims (id, ingest_run_id, billing_currency, \
     charge_category, provider_name, service_name, service_category, region_id, \
     availability_zone, resource_id, sku_id, billing_account_id, sub_account_id, \
     pricing_category, consumed_unit, charge_class, commitment_discount_category, tags) ";

/// Rows per `cost_dims` insert: 18 parameters each, under both backends' limits.
const DIMS_CHUNK: usize = 1000;

/// Distinct combinations an ingest holds in memory (each a `LineDims`, ~1 KB) before it
/// writes them: ~100 MB at most.
pub const DIMS_HELD: usize = 100_000;

/// Serialises Postgres ingests while one reserves and uses its block of ids
/// (`pg_advisory_xact_lock`, released at commit or rollback).
const PG_INGEST_LOCK: i64 = 0x6275_7273_6172_0001;

type SqliteTx = sqlx::Transaction<'static, Sqlite>;
type PgTx = sqlx::Transaction<'static, Postgres>;

/// A transaction that cost lines stream into from a separate task, so the database stores
/// one batch while the next is parsed and encoded here: on Postgres one `COPY … FROM STDIN`
/// open for the whole file, on SQLite multi-row INSERTs with pre-built arguments. Any
/// other statement first ends the stream and takes the transaction back.
pub struct Streaming<T, M> {
    tx: Option<T>,
    task: Option<StreamTask<T, M>>,
}

/// The running stream: chunks go in through the sender; the task gives the transaction back.
type StreamTask<T, M> = (
    tokio::sync::mpsc::Sender<M>,
    tokio::task::JoinHandle<Result<T, StoreError>>,
);

fn tx_gone() -> StoreError {
    StoreError::Corrupt {
        table: "cost_line",
        detail: "ingest transaction already failed".into(),
    }
}

impl<T: Send + 'static, M: Send + 'static> Streaming<T, M> {
    fn new(tx: T) -> Self {
        Streaming {
            tx: Some(tx),
            task: None,
        }
    }

    /// The transaction, after ending a stream in progress (its error, if it failed).
    async fn tx(&mut self) -> Result<&mut T, StoreError> {
        if let Some((sender, task)) = self.task.take() {
            drop(sender);
            let tx = task.await.map_err(|e| StoreError::Corrupt {
                table: "cost_line",
                detail: format!("writer task stopped: {e}"),
            })??;
            self.tx = Some(tx);
        }
        self.tx.as_mut().ok_or_else(tx_gone)
    }

    async fn into_tx(mut self) -> Result<T, StoreError> {
        self.tx().await?;
        self.tx.take().ok_or_else(tx_gone)
    }

    /// Sends one chunk to the stream, starting it with `start` on first use.
    async fn send<F, Fut>(&mut self, chunk: M, start: F) -> Result<(), StoreError>
    where
        F: FnOnce(T, tokio::sync::mpsc::Receiver<M>) -> Fut,
        Fut: std::future::Future<Output = Result<T, StoreError>> + Send + 'static,
    {
        if self.task.is_none() {
            let tx = self.tx.take().ok_or_else(tx_gone)?;
            let (sender, rx) = tokio::sync::mpsc::channel::<M>(2);
            self.task = Some((sender, tokio::spawn(start(tx, rx))));
        }
        let Some((sender, _)) = &self.task else {
            unreachable!("stream started above")
        };
        if sender.send(chunk).await.is_err() {
            // The task ended early: its result carries the database's error.
            self.tx().await?;
            return Err(StoreError::Corrupt {
                table: "cost_line",
                detail: "writer task ended early".into(),
            });
        }
        Ok(())
    }
}

/// Postgres: one COPY for everything the stream receives.
async fn pg_copy(
    mut tx: PgTx,
    mut rx: tokio::sync::mpsc::Receiver<Vec<u8>>,
) -> Result<PgTx, StoreError> {
    {
        let mut copy = tx
            .copy_in_raw(&format!(
                "COPY cost_fact ({COLS}) FROM STDIN WITH (FORMAT binary)"
            ))
            .await?;
        let mut head = Vec::with_capacity(19);
        super::pgcopy::header(&mut head);
        copy.send(head).await?;
        while let Some(buf) = rx.recv().await {
            copy.send(buf).await?;
        }
        let mut tail = Vec::with_capacity(2);
        super::pgcopy::trailer(&mut tail);
        copy.send(tail).await?;
        copy.finish().await?;
    }
    Ok(tx)
}

/// `BEGIN IMMEDIATE` on a connection of its own (closed after the ingest, not pooled),
/// waiting up to `wait` for the writer that holds the lock — another ingest, or a short
/// write of the server's. One try at once; if the lock is taken, a line in the log and a
/// second try on which SQLite's busy handler waits out the rest.
async fn sqlite_begin_immediate(
    pool: &sqlx::SqlitePool,
    wait: std::time::Duration,
) -> Result<SqliteTx, StoreError> {
    if let Some(tx) = sqlite_immediate_within(pool, 0).await? {
        return Ok(tx);
    }
    tracing::info!(
        wait = %humantime::format_duration(wait),
        "another writer holds the SQLite database; waiting for it before ingesting"
    );
    let ms = wait.as_millis().min(i32::MAX as u128);
    sqlite_immediate_within(pool, ms)
        .await?
        .ok_or(StoreError::Busy { waited: wait })
}

/// `BEGIN IMMEDIATE` on a connection of its own if another writer lets go of the database
/// within `busy_ms` milliseconds, else `None`. The transaction's later statements wait as
/// long as the pool's other connections do.
async fn sqlite_immediate_within(
    pool: &sqlx::SqlitePool,
    busy_ms: u128,
) -> Result<Option<SqliteTx>, StoreError> {
    let mut conn = pool.acquire().await?;
    conn.close_on_drop();
    sqlx::query(&format!("PRAGMA busy_timeout = {busy_ms}"))
        .execute(&mut *conn)
        .await?;
    match sqlx::Transaction::begin(conn, Some("BEGIN IMMEDIATE".into())).await {
        Ok(mut tx) => {
            sqlx::query(&format!("PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_MS}"))
                .execute(&mut *tx)
                .await?;
            Ok(Some(tx))
        }
        Err(e) if is_sqlite_busy(&e) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// Postgres: this run's turn at ingesting (a transaction-scoped advisory lock), waiting up
/// to `wait` for the run ahead of it; `lock_timeout` bounds the wait and is then put back.
async fn pg_ingest_lock(tx: &mut PgTx, wait: std::time::Duration) -> Result<(), StoreError> {
    let free: bool = sqlx::query_scalar("SELECT pg_try_advisory_xact_lock($1)")
        .bind(PG_INGEST_LOCK)
        .fetch_one(&mut **tx)
        .await?;
    if free {
        return Ok(());
    }
    tracing::info!(
        wait = %humantime::format_duration(wait),
        "another ingest is writing to this database; waiting for its turn to end"
    );
    // 0 would mean "no limit": wait at least a millisecond.
    let ms = wait.as_millis().clamp(1, i32::MAX as u128);
    sqlx::query(&format!("SET LOCAL lock_timeout = {ms}"))
        .execute(&mut **tx)
        .await?;
    let locked = sqlx::query("SELECT pg_advisory_xact_lock($1)")
        .bind(PG_INGEST_LOCK)
        .execute(&mut **tx)
        .await;
    match locked {
        Ok(_) => {}
        // lock_not_available: the timeout ran out (the transaction is aborted; the caller
        // rolls it back).
        Err(sqlx::Error::Database(d)) if d.code().as_deref() == Some("55P03") => {
            return Err(StoreError::Busy { waited: wait });
        }
        Err(e) => return Err(e.into()),
    }
    sqlx::query("SET LOCAL lock_timeout TO DEFAULT")
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// SQLite: one multi-row INSERT per chunk of arguments (`SQLITE_CHUNK` rows or fewer).
async fn sqlite_insert(
    mut tx: SqliteTx,
    mut rx: tokio::sync::mpsc::Receiver<SqliteArguments<'static>>,
) -> Result<SqliteTx, StoreError> {
    let mut sql: std::collections::HashMap<usize, String> = std::collections::HashMap::new();
    while let Some(args) = rx.recv().await {
        let rows = sqlx::Arguments::len(&args) / N_COLS;
        let text = sql
            .entry(rows)
            .or_insert_with(|| super::sqlite_insert_sql("cost_fact", COLS, N_COLS, rows));
        sqlx::query_with(text.as_str(), args)
            .execute(&mut *tx)
            .await?;
    }
    Ok(tx)
}

/// Arguments of one cost line, in `COLS` order, owned so the writer task can take them.
fn sqlite_row_args(
    args: &mut SqliteArguments<'static>,
    ids: LineIds,
    l: &CostLine,
) -> Result<(), StoreError> {
    use sqlx::Arguments;
    let bad = |e: sqlx::error::BoxDynError| StoreError::Corrupt {
        table: "cost_fact",
        detail: format!("encoding line {}: {e}", l.line),
    };
    args.add(ids.fact).map_err(bad)?;
    args.add(ids.range).map_err(bad)?;
    args.add(ids.dims).map_err(bad)?;
    args.add(l.line as i64).map_err(bad)?;
    args.add(money_text(l.billed_cost)).map_err(bad)?;
    args.add(money_text(l.effective_cost)).map_err(bad)?;
    args.add(l.list_cost.map(money_text)).map_err(bad)?;
    args.add(l.consumed_quantity.map(money_text)).map_err(bad)?;
    args.add(l.contracted_cost.map(money_text)).map_err(bad)?;
    args.add(l.charge_period_start.timestamp_micros())
        .map_err(bad)?;
    args.add(l.charge_period_end.timestamp_micros())
        .map_err(bad)?;
    Ok(())
}

/// The tables whose ids an ingest run reserves in blocks, in `NextIds` order.
const ID_TABLES: [&str; 3] = ["cost_fact", "cost_range", "cost_dims"];

/// `SELECT` of one expression per table of `ID_TABLES`, in order.
fn select_per_id_table(expr: impl FnMut(&str) -> String) -> String {
    format!("SELECT {}", ID_TABLES.map(expr).join(", "))
}

/// A line's own id and the ids of its range and dims.
#[derive(Debug, Clone, Copy)]
pub(crate) struct LineIds {
    pub fact: i64,
    pub range: i64,
    pub dims: i64,
}

/// Columns of a `cost_fact` insert.
const N_COLS: usize = 11;

/// Rows per INSERT: 11 parameters each, under SQLite's 32,766-parameter limit. Fewer,
/// larger statements mean fewer statement-journal rounds per file.
const SQLITE_CHUNK: usize = 2900;

/// Page cache of the connection an ingest runs on (KiB, negative as SQLite wants it: a
/// ceiling of 1 GiB, allocated only as a large file's transaction touches pages — a
/// 2M-line FOCUS file peaks near 1.2 GB RSS and ingests ~1.8× faster than with 256 MiB),
/// and its statement journals in memory rather than in temporary files.
const SQLITE_INGEST_PRAGMAS: [&str; 2] =
    ["PRAGMA cache_size = -1048576", "PRAGMA temp_store = MEMORY"];

const COLS: &str = "id, range_id, dims_id, source_line, billed_cost, effective_cost, list_cost, \
     consumed_quantity, contracted_cost, charge_period_start, charge_period_end";

/// The same code over a `SqliteRow` or a `PgRow` (columns in `RUN_COLS` order).
macro_rules! run_from_row {
    ($r:expr) => {
        IngestRunRow {
            id: $r.try_get(0)?,
            started_at: $r.try_get(1)?,
            finished_at: $r.try_get(2)?,
            source: $r.try_get(3)?,
            format: $r.try_get(4)?,
            variant: $r.try_get(5)?,
            status: $r.try_get(6)?,
            rows_read: $r.try_get(7)?,
            rows_stored: $r.try_get(8)?,
            rows_quarantined: $r.try_get(9)?,
            deviations: $r.try_get(10)?,
            totals: $r.try_get(11)?,
            scopes: $r.try_get(12)?,
            error: $r.try_get(13)?,
        }
    };
}

/// A run's lease lasts this many heartbeats of the process that ingests it.
pub const LEASE_HEARTBEATS: u32 = 3;

/// Whether a `running` run whose lease runs until `lease_until` is one whose process is
/// gone: the lease ran out before `now`. A run without a lease was started before leases
/// existed (migration 0009), by a process that has stopped since.
pub fn lease_expired(lease_until: Option<DateTime<Utc>>, now: DateTime<Utc>) -> bool {
    lease_until.is_none_or(|l| l < now)
}

/// The error recorded on a run marked `interrupted`.
fn interrupted_error(lease_until: Option<DateTime<Utc>>) -> String {
    match lease_until {
        Some(l) => format!(
            "interrupted: the ingesting process stopped without finishing (its lease ran out at {})",
            l.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
        ),
        None => "interrupted: the ingesting process stopped without finishing".into(),
    }
}

/// One quarantined row of a run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuarantineRow {
    /// Its id, the key of the next page.
    pub id: i64,
    pub file: String,
    pub line: i64,
    pub column: Option<String>,
    pub reason: String,
    pub raw: String,
}

/// Marks `interrupted` the `running` runs of transaction `$tx` whose lease ran out before
/// `$now`, and evaluates to their ids. `$spell` is the backend's spelling (`both!`).
macro_rules! interrupt_expired {
    ($tx:expr, $now:expr, $spell:expr) => {{
        const RUNNING: &str = "SELECT id, lease_until FROM ingest_run WHERE status = 'running'";
        const INTERRUPT: &str = "UPDATE ingest_run SET status = 'interrupted', finished_at = $2, \
             error = $3 WHERE id = $1 AND status = 'running' AND lease_until IS NOT DISTINCT FROM $4";
        let running: Vec<(String, Option<DateTime<Utc>>)> =
            sqlx::query_as(&$spell(RUNNING)).fetch_all(&mut *$tx).await?;
        let interrupt = $spell(INTERRUPT);
        let mut gone = Vec::new();
        for (id, lease) in running {
            if lease_expired(lease, $now) {
                sqlx::query(&interrupt)
                    .bind(&id)
                    .bind($now)
                    .bind(interrupted_error(lease))
                    .bind(lease)
                    .execute(&mut *$tx)
                    .await?;
                tracing::warn!(run = %id, "ingest run interrupted: its process is gone");
                gone.push(id);
            }
        }
        gone
    }};
}

impl super::sqlite::SqliteStore {
    /// A write to `ingest_run` that waits its turn like an ingest (`BEGIN IMMEDIATE`, up to
    /// the store's ingest lock wait).
    async fn begin_run_write(&self) -> Result<SqliteTx, StoreError> {
        sqlite_begin_immediate(self.pool(), self.ingest_lock_wait).await
    }

    /// `begin_run_write` if no other writer holds the database now, else `None`.
    async fn try_begin_run_write(&self) -> Result<Option<SqliteTx>, StoreError> {
        sqlite_immediate_within(self.pool(), 0).await
    }
}

impl super::postgres::PgStore {
    /// A write to `ingest_run`: rows lock on their own, nothing to wait for first.
    async fn begin_run_write(&self) -> Result<PgTx, StoreError> {
        Ok(self.pool().begin().await?)
    }

    /// Always a transaction (see `SqliteStore::try_begin_run_write`).
    async fn try_begin_run_write(&self) -> Result<Option<PgTx>, StoreError> {
        Ok(Some(self.begin_run_write().await?))
    }
}

impl IngestTx {
    /// Deletes the lines of `scope` (provider | billing account | billing period) that earlier
    /// runs of the same dataset (format and variant, e.g. Azure EA actual vs amortized)
    /// stored: a newer export of that period replaces them. Each earlier run's lines of the
    /// scope are primary-key ranges (`cost_range`); a run left with no range loses its
    /// `cost_dims` rows too.
    pub async fn replace_older(
        &mut self,
        scope: &str,
        run_id: &str,
        format: Option<&str>,
        variant: Option<&str>,
    ) -> Result<u64, StoreError> {
        const OLDER: &str = "SELECT r.id, r.ingest_run_id, r.first_id, r.last_id FROM cost_range r \
             JOIN ingest_run i ON i.id = r.ingest_run_id \
             WHERE r.scope = $1 AND r.ingest_run_id <> $2 \
             AND i.format IS NOT DISTINCT FROM $3 AND i.variant IS NOT DISTINCT FROM $4";
        const DELETE_LINES: &str =
            "DELETE FROM cost_fact WHERE id BETWEEN $1 AND $2 AND range_id = $3";
        const DELETE_RANGE: &str = "DELETE FROM cost_range WHERE id = $1";
        const DELETE_DAILY: &str = "DELETE FROM cost_daily WHERE range_id = $1";
        const DELETE_DIMS: &str = "DELETE FROM cost_dims WHERE ingest_run_id = $1 \
             AND NOT EXISTS (SELECT 1 FROM cost_range WHERE ingest_run_id = $1)";
        both!(&mut self.backend, Backend, |st, spell| {
            let tx = st.tx().await?;
            let older: Vec<(i64, String, i64, i64)> = sqlx::query_as(&spell(OLDER))
                .bind(scope)
                .bind(run_id)
                .bind(format)
                .bind(variant)
                .fetch_all(&mut **tx)
                .await?;
            let mut n = 0;
            let mut runs: Vec<&str> = Vec::new();
            for (range, run, first, last) in &older {
                n += sqlx::query(&spell(DELETE_LINES))
                    .bind(first)
                    .bind(last)
                    .bind(range)
                    .execute(&mut **tx)
                    .await?
                    .rows_affected();
                for sql in [DELETE_DAILY, DELETE_RANGE] {
                    sqlx::query(&spell(sql))
                        .bind(range)
                        .execute(&mut **tx)
                        .await?;
                }
                if !runs.contains(&run.as_str()) {
                    runs.push(run);
                }
            }
            for run in runs {
                sqlx::query(&spell(DELETE_DIMS))
                    .bind(run)
                    .execute(&mut **tx)
                    .await?;
            }
            Ok(n)
        })
    }

    /// The first ids of this run's blocks: one past every id any run has used in each
    /// table, read while this transaction keeps other ingests out.
    async fn reserve_ids(&mut self) -> Result<NextIds, StoreError> {
        if let Some(next) = self.next {
            return Ok(next);
        }
        let used: (i64, i64, i64) =
            match &mut self.backend {
                // The transaction began IMMEDIATE: it already holds SQLite's write lock.
                Backend::Sqlite(st) => sqlx::query_as(&select_per_id_table(|t| {
                    format!(
                        "MAX(COALESCE((SELECT seq FROM sqlite_sequence WHERE name = '{t}'), 0), \
                         COALESCE((SELECT MAX(id) FROM {t}), 0))"
                    )
                }))
                .fetch_one(&mut **st.tx().await?)
                .await?,
                Backend::Postgres(pg) => {
                    let tx = pg.tx().await?;
                    pg_ingest_lock(tx, self.lock_wait).await?;
                    sqlx::query_as(&select_per_id_table(|t| {
                        format!(
                            "GREATEST((SELECT last_value FROM {t}_id_seq), \
                         COALESCE((SELECT MAX(id) FROM {t}), 0))"
                        )
                    }))
                    .fetch_one(&mut **tx)
                    .await?
                }
            };
        let next = NextIds {
            fact: used.0 + 1,
            range: used.1 + 1,
            dims: used.2 + 1,
        };
        self.dims.first_id = next.dims;
        self.next = Some(next);
        Ok(next)
    }

    /// Gives the next line its id, its range's (widening it) and its dims'.
    fn take_ids(&mut self, next: &mut NextIds, scope: &str, l: &CostLine) -> LineIds {
        let id = next.fact;
        next.fact += 1;
        let same = |r: &ScopeRange| {
            r.scope == scope
                && r.billing_period_start == l.billing_period_start
                && r.billing_period_end == l.billing_period_end
        };
        let i = match self.ranges.last() {
            Some(r) if same(r) => self.ranges.len() - 1,
            _ => {
                let known = self
                    .range_of
                    .get(scope)
                    .and_then(|of_scope| of_scope.iter().copied().find(|&i| same(&self.ranges[i])));
                match known {
                    Some(i) => i,
                    None => {
                        self.range_of
                            .entry(scope.to_string())
                            .or_default()
                            .push(self.ranges.len());
                        self.ranges.push(ScopeRange {
                            id: next.range,
                            scope: scope.to_string(),
                            billing_period_start: l.billing_period_start,
                            billing_period_end: l.billing_period_end,
                            first: id,
                            last: id,
                            lines: 0,
                        });
                        next.range += 1;
                        self.ranges.len() - 1
                    }
                }
            }
        };
        // Runs of one range (the common case) cost one comparison with the newest range;
        // a file whose scopes interleave pays a map lookup at each switch.
        let r = &mut self.ranges[i];
        r.last = id;
        r.lines += 1;
        LineIds {
            fact: id,
            range: r.id,
            dims: self.dims.id_of(&l.dims),
        }
    }

    /// Appends lines of run `run_id`, each with its scope.
    pub async fn insert_lines(
        &mut self,
        run_id: &str,
        lines: &[(&str, &CostLine)],
    ) -> Result<(), StoreError> {
        if self.run_id.as_deref() != Some(run_id) {
            // Another run's lines in the same transaction: the first run's ranges and dims
            // are written first.
            self.record_ranges().await?;
            self.run_id = Some(run_id.to_string());
        }
        let mut next = self.reserve_ids().await?;
        // Stored in charge-period order within the batch, so the charge-period index (a
        // b-tree on either backend) takes its keys in order, along neighbouring pages still
        // in cache, rather than at random: ~1.1x the rows/s on the FOCUS benchmark (a file
        // sorted by time throughout goes in ~1.45x faster than that one). Ids follow that
        // order; nothing relies on them following the file's.
        let mut sorted = lines.to_vec();
        sorted.sort_by_key(|(_, l)| l.charge_period_start);
        let lines = &sorted[..];
        let mut ids: Vec<LineIds> = Vec::with_capacity(lines.len());
        for (scope, l) in lines {
            let line_ids = self.take_ids(&mut next, scope, l);
            self.daily.add(line_ids.range, l)?;
            ids.push(line_ids);
        }
        self.next = Some(next);
        match &mut self.backend {
            Backend::Sqlite(st) => {
                for (chunk, ids) in lines.chunks(SQLITE_CHUNK).zip(ids.chunks(SQLITE_CHUNK)) {
                    let mut args = SqliteArguments::default();
                    for ((_, l), ids) in chunk.iter().zip(ids) {
                        sqlite_row_args(&mut args, *ids, l)?;
                    }
                    st.send(args, sqlite_insert).await?;
                }
            }
            Backend::Postgres(pg) => {
                let mut buf = Vec::with_capacity(lines.len() * 120);
                for ((_, l), ids) in lines.iter().zip(&ids) {
                    super::pgcopy::cost_fact(&mut buf, *ids, l);
                }
                pg.send(buf, pg_copy).await?;
            }
        }
        if self.dims.held() >= self.dims_held {
            self.write_dims().await?;
        }
        if self.daily.len() >= DAILY_HELD {
            self.write_daily().await?;
        }
        Ok(())
    }

    /// Writes the daily sums held so far to `cost_daily` and forgets them: multi-row
    /// INSERTs on SQLite, a binary COPY on Postgres.
    async fn write_daily(&mut self) -> Result<(), StoreError> {
        if self.daily.is_empty() {
            return Ok(());
        }
        let batch = self.daily.take();
        match &mut self.backend {
            Backend::Sqlite(st) => {
                let tx = st.tx().await?;
                for chunk in batch.rows.chunks(DAILY_CHUNK) {
                    let mut qb = QueryBuilder::<Sqlite>::new(format!(
                        "INSERT INTO cost_daily ({DAILY_COLS}) "
                    ));
                    push_daily(&mut qb, &batch.kinds, chunk);
                    qb.build().execute(&mut **tx).await?;
                }
            }
            Backend::Postgres(pg) => {
                let tx = pg.tx().await?;
                let mut copy = tx
                    .copy_in_raw(&format!(
                        "COPY cost_daily ({DAILY_COLS}) FROM STDIN WITH (FORMAT binary)"
                    ))
                    .await?;
                let mut buf = Vec::with_capacity(batch.rows.len().min(DAILY_CHUNK) * 300);
                super::pgcopy::header(&mut buf);
                for chunk in batch.rows.chunks(DAILY_CHUNK) {
                    for r in chunk {
                        super::pgcopy::cost_daily(&mut buf, &batch.kinds[r.kind], r);
                    }
                    copy.send(std::mem::take(&mut buf)).await?;
                }
                super::pgcopy::trailer(&mut buf);
                copy.send(buf).await?;
                copy.finish().await?;
            }
        }
        Ok(())
    }

    /// Holds at most `n` distinct descriptive-field combinations in memory (default
    /// [`DIMS_HELD`]) before writing them.
    pub fn hold_dims_at_most(&mut self, n: usize) {
        self.dims_held = n.max(1);
    }

    /// Writes the combinations held so far to `cost_dims` and forgets them; the next new
    /// one gets the id after the last written.
    async fn write_dims(&mut self) -> Result<(), StoreError> {
        let Some(run_id) = self.run_id.clone() else {
            return Ok(());
        };
        let rows = std::mem::take(&mut self.dims.rows);
        self.dims.table.clear();
        self.dims.by_address.clear();
        self.dims.aliases.clear();
        let first_id = self.dims.first_id;
        self.dims.first_id += rows.len() as i64;
        for (k, chunk) in rows.chunks(DIMS_CHUNK).enumerate() {
            let first = first_id + (k * DIMS_CHUNK) as i64;
            match &mut self.backend {
                Backend::Sqlite(st) => {
                    let mut qb = QueryBuilder::<Sqlite>::new(DIMS_INSERT);
                    push_dims(&mut qb, first, chunk, &run_id, "");
                    qb.build().execute(&mut **st.tx().await?).await?;
                }
                Backend::Postgres(pg) => {
                    let mut qb = QueryBuilder::<Postgres>::new(DIMS_INSERT);
                    push_dims(&mut qb, first, chunk, &run_id, "::jsonb");
                    qb.build().execute(&mut **pg.tx().await?).await?;
                }
            }
        }
        Ok(())
    }

    /// Writes the ranges and dims of the lines inserted so far, and moves Postgres's id
    /// sequences past the blocks (so a row inserted without an id never collides with one).
    /// Runs at `finish_run` and, if lines came since, at `commit`: a committed line always
    /// has its range and dims. Later lines reserve new blocks.
    async fn record_ranges(&mut self) -> Result<(), StoreError> {
        let (Some(next), Some(run_id)) = (self.next.take(), self.run_id.clone()) else {
            return Ok(());
        };
        let run_id = run_id.as_str();
        self.write_dims().await?;
        self.write_daily().await?;
        // One past the last dims id this block used; the next block starts afresh.
        let dims_next = self.dims.first_id;
        self.dims = DimsInterner::default();
        let ranges = std::mem::take(&mut self.ranges);
        self.range_of.clear();
        for chunk in ranges.chunks(500) {
            both!(&mut self.backend, Backend, |st, _spell| {
                let mut qb = QueryBuilder::new(RANGE_INSERT);
                push_ranges(&mut qb, chunk, run_id);
                qb.build().execute(&mut **st.tx().await?).await?;
            });
        }
        if let Backend::Postgres(pg) = &mut self.backend {
            let mut n = 0;
            sqlx::query(&select_per_id_table(|t| {
                n += 1;
                format!("setval('{t}_id_seq', GREATEST(${n}, (SELECT last_value FROM {t}_id_seq)))")
            }))
            .bind(next.fact - 1)
            .bind(next.range - 1)
            .bind(dims_next - 1)
            .execute(&mut **pg.tx().await?)
            .await?;
        }
        Ok(())
    }

    pub async fn insert_quarantine(
        &mut self,
        run_id: &str,
        file: &str,
        rows: &[Quarantined],
    ) -> Result<(), StoreError> {
        const SQL: &str = "INSERT INTO ingest_quarantine \
             (ingest_run_id, file, line, column_name, reason, raw) VALUES ($1, $2, $3, $4, $5, $6)";
        both!(&mut self.backend, Backend, |st, spell| {
            let tx = st.tx().await?;
            let sql = spell(SQL);
            for q in rows {
                let raw: String = q.raw.chars().take(4000).collect();
                sqlx::query(&sql)
                    .bind(run_id)
                    .bind(file)
                    .bind(q.line as i64)
                    .bind(q.column.as_deref())
                    .bind(&q.reason)
                    .bind(&raw)
                    .execute(&mut **tx)
                    .await?;
            }
        });
        Ok(())
    }

    /// Records the run's id ranges and marks it finished, inside the same transaction.
    pub async fn finish_run(&mut self, r: &IngestRunRow) -> Result<(), StoreError> {
        self.record_ranges().await?;
        const SQL: &str = "UPDATE ingest_run SET finished_at = $2, format = $3, variant = $4, \
             status = $5, rows_read = $6, rows_stored = $7, rows_quarantined = $8, deviations = $9, \
             totals = $10, scopes = $11, error = $12 WHERE id = $1";
        both!(&mut self.backend, Backend, |st, spell| sqlx::query(&spell(
            SQL
        ))
        .bind(&r.id)
        .bind(r.finished_at)
        .bind(r.format.as_deref())
        .bind(r.variant.as_deref())
        .bind(&r.status)
        .bind(r.rows_read)
        .bind(r.rows_stored)
        .bind(r.rows_quarantined)
        .bind(&r.deviations)
        .bind(&r.totals)
        .bind(&r.scopes)
        .bind(r.error.as_deref())
        .execute(&mut **st.tx().await?)
        .await?
        .rows_affected());
        Ok(())
    }

    /// Sums into `cost_daily` the ranges that have no rows there: those stored before
    /// migration 0012. Reads each range's lines back and adds them as an ingest does (the
    /// same `DailyTotals`, so the egress rule has one home). Returns the ranges summed.
    async fn summarize_missing_ranges(&mut self) -> Result<u64, StoreError> {
        const MISSING: &str = "SELECT r.id, r.first_id, r.last_id FROM cost_range r \
             WHERE NOT EXISTS (SELECT 1 FROM cost_daily d WHERE d.range_id = r.id) ORDER BY r.id";
        const LINES: &str = "SELECT f.dims_id, f.billed_cost, f.effective_cost, f.list_cost, \
             f.contracted_cost, f.consumed_quantity, f.charge_period_start, \
             d.billing_currency, d.charge_category, d.provider_name, d.service_name, \
             d.service_category, d.region_id, d.billing_account_id, d.sub_account_id, \
             d.pricing_category, d.consumed_unit, d.charge_class, d.commitment_discount_category, \
             CAST(d.tags AS TEXT) \
             FROM cost_fact f JOIN cost_dims d ON d.id = f.dims_id \
             WHERE f.id BETWEEN $1 AND $2 AND f.range_id = $3";
        use super::sql::MoneyRow;
        const T: &str = "cost_fact";
        if let Backend::Postgres(pg) = &mut self.backend {
            pg_ingest_lock(pg.tx().await?, self.lock_wait).await?;
        }
        let ranges: Vec<(i64, i64, i64)> = both!(&mut self.backend, Backend, |st, _spell| {
            sqlx::query_as(MISSING)
                .fetch_all(&mut **st.tx().await?)
                .await?
        });
        for &(range, first, last) in &ranges {
            let mut shared: std::collections::HashMap<i64, Arc<LineDims>> = Default::default();
            // The descriptive fields (columns 7..=19) once per dims id.
            macro_rules! line_of {
                ($r:expr, $start:expr) => {{
                    let r = $r;
                    let dims_id: i64 = r.try_get(0)?;
                    let dims = match shared.get(&dims_id) {
                        Some(d) => d.clone(),
                        None => {
                            let text = |i: usize| r.try_get::<Option<String>, _>(i);
                            let tags: String = r.try_get(19)?;
                            let d = Arc::new(LineDims {
                                billing_currency: r.try_get(7)?,
                                charge_category: r.try_get(8)?,
                                provider_name: r.try_get(9)?,
                                service_name: text(10)?,
                                service_category: text(11)?,
                                region_id: text(12)?,
                                billing_account_id: text(13)?,
                                sub_account_id: text(14)?,
                                pricing_category: text(15)?,
                                consumed_unit: text(16)?,
                                charge_class: text(17)?,
                                commitment_discount_category: text(18)?,
                                tags: serde_json::from_str(&tags).map_err(|e| {
                                    StoreError::Corrupt {
                                        table: "cost_dims",
                                        detail: format!("tags of {dims_id}: {e}"),
                                    }
                                })?,
                                ..LineDims::default()
                            });
                            shared.insert(dims_id, d.clone());
                            d
                        }
                    };
                    let start = $start;
                    CostLine {
                        line: 0,
                        billed_cost: r.money(1, T)?,
                        effective_cost: r.money(2, T)?,
                        list_cost: r.opt_money(3, T)?,
                        contracted_cost: r.opt_money(4, T)?,
                        consumed_quantity: r.opt_money(5, T)?,
                        billing_period_start: start,
                        billing_period_end: start,
                        charge_period_start: start,
                        charge_period_end: start,
                        dims,
                    }
                }};
            }
            let lines: Vec<CostLine> = match &mut self.backend {
                Backend::Sqlite(st) => {
                    let rows = sqlx::query(&super::sql::sqlite_spelling(LINES))
                        .bind(first)
                        .bind(last)
                        .bind(range)
                        .fetch_all(&mut **st.tx().await?)
                        .await?;
                    let mut out = Vec::with_capacity(rows.len());
                    for r in &rows {
                        out.push(line_of!(r, from_sqlite_micros(r.try_get(6)?)?));
                    }
                    out
                }
                Backend::Postgres(pg) => {
                    let rows = sqlx::query(LINES)
                        .bind(first)
                        .bind(last)
                        .bind(range)
                        .fetch_all(&mut **pg.tx().await?)
                        .await?;
                    let mut out = Vec::with_capacity(rows.len());
                    for r in &rows {
                        out.push(line_of!(r, r.try_get::<DateTime<Utc>, _>(6)?));
                    }
                    out
                }
            };
            for l in &lines {
                self.daily.add(range, l)?;
            }
            self.write_daily().await?;
        }
        Ok(ranges.len() as u64)
    }

    /// Makes the run visible, moving `spend_generation` in the same transaction (last, so
    /// on Postgres its row lock is held only for the commit) for every server's budget gate.
    pub async fn commit(mut self) -> Result<(), StoreError> {
        self.record_ranges().await?;
        both!(self.backend, Backend, |st, _spell| {
            let mut tx = st.into_tx().await?;
            super::bump_spend_generation(&mut tx).await?;
            tx.commit().await?
        });
        Ok(())
    }

    /// Discards everything written in this transaction (a rejected file) and lets go of the
    /// database for the next writer.
    pub async fn rollback(self) -> Result<(), StoreError> {
        both!(self.backend, Backend, |st, _spell| st
            .into_tx()
            .await?
            .rollback()
            .await?);
        Ok(())
    }
}

const RUN_COLS: &str = "id, started_at, finished_at, source, format, variant, status, rows_read, rows_stored, \
     rows_quarantined, deviations, totals, scopes, error";

impl Store {
    /// Records a run as `running` (committed at once, so a crash leaves a trace), with a
    /// lease of `LEASE_HEARTBEATS` heartbeats from `at`. Runs whose lease ran out before
    /// `at` are marked `interrupted` first, in the same transaction.
    pub async fn start_ingest_run(
        &self,
        id: &str,
        source: &str,
        at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        const SQL: &str = "INSERT INTO ingest_run (id, started_at, source, status, lease_until) \
             VALUES ($1, $2, $3, 'running', $4)";
        let lease = at + self.ingest_lease();
        both!(self, Store, |s, spell| {
            // Waits, like the ingest itself, for another ingest to let go of the database.
            let mut tx = s.begin_run_write().await?;
            interrupt_expired!(tx, at, spell);
            sqlx::query(&spell(SQL))
                .bind(id)
                .bind(at)
                .bind(source)
                .bind(lease)
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
        });
        Ok(())
    }

    /// How long a run's lease lasts.
    fn ingest_lease(&self) -> chrono::Duration {
        chrono::Duration::from_std(self.ingest_heartbeat() * LEASE_HEARTBEATS)
            .unwrap_or_else(|_| chrono::Duration::days(1))
    }

    /// Renews the lease of a `running` run to `now` plus `LEASE_HEARTBEATS` heartbeats.
    /// Never waits long: on SQLite, while a writer (this run's own file transaction,
    /// usually) holds the database, the renewal is skipped — and no other process can mark
    /// the run meanwhile, as marking needs that same lock. `Ok(false)` when skipped.
    pub async fn renew_ingest_lease(
        &self,
        id: &str,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        const SQL: &str =
            "UPDATE ingest_run SET lease_until = $2 WHERE id = $1 AND status = 'running'";
        let lease = now + self.ingest_lease();
        match self {
            Store::Sqlite(s) => {
                let mut conn = s.pool().acquire().await?;
                conn.close_on_drop();
                sqlx::query("PRAGMA busy_timeout = 200")
                    .execute(&mut *conn)
                    .await?;
                match sqlx::query(&super::sql::sqlite_spelling(SQL))
                    .bind(id)
                    .bind(lease)
                    .execute(&mut *conn)
                    .await
                {
                    Ok(_) => Ok(true),
                    Err(e) if is_sqlite_busy(&e) => Ok(false),
                    Err(e) => Err(e.into()),
                }
            }
            Store::Postgres(s) => {
                sqlx::query(SQL)
                    .bind(id)
                    .bind(lease)
                    .execute(s.pool())
                    .await?;
                Ok(true)
            }
        }
    }

    /// Marks `interrupted` every `running` run whose lease ran out before `now` (its
    /// process is gone); returns their ids. On SQLite, when another writer holds the
    /// database (an ingest in its file transaction is alive), nothing is checked this time.
    pub async fn interrupt_expired_runs(
        &self,
        now: DateTime<Utc>,
    ) -> Result<Vec<String>, StoreError> {
        both!(self, Store, |s, spell| {
            let Some(mut tx) = s.try_begin_run_write().await? else {
                return Ok(Vec::new());
            };
            let gone = interrupt_expired!(tx, now, spell);
            tx.commit().await?;
            Ok(gone)
        })
    }

    /// The quarantined rows of run `run`, in the order they were found, after the row with
    /// id `after` (0: from the first), at most `limit`. `None` when no such run exists.
    pub async fn list_quarantine(
        &self,
        run: &str,
        after: i64,
        limit: i64,
    ) -> Result<Option<Vec<QuarantineRow>>, StoreError> {
        const RUN: &str = "SELECT COUNT(*) FROM ingest_run WHERE id = $1";
        const PAGE: &str = "SELECT id, file, line, column_name, reason, raw FROM ingest_quarantine \
             WHERE ingest_run_id = $1 AND id > $2 ORDER BY id LIMIT $3";
        type Q = (i64, String, i64, Option<String>, String, String);
        let (known, rows): (i64, Vec<Q>) = both!(self, Store, |s, spell| (
            sqlx::query_scalar(&spell(RUN))
                .bind(run)
                .fetch_one(s.pool())
                .await?,
            sqlx::query_as(&spell(PAGE))
                .bind(run)
                .bind(after)
                .bind(limit)
                .fetch_all(s.pool())
                .await?,
        ));
        if known == 0 {
            return Ok(None);
        }
        Ok(Some(
            rows.into_iter()
                .map(|(id, file, line, column, reason, raw)| QuarantineRow {
                    id,
                    file,
                    line,
                    column,
                    reason,
                    raw,
                })
                .collect(),
        ))
    }

    pub async fn fail_ingest_run(
        &self,
        id: &str,
        error: &str,
        at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        self.run_update(
            "UPDATE ingest_run SET status = 'failed', finished_at = $2, error = $3 WHERE id = $1",
            id,
            at,
            error,
        )
        .await
    }

    /// One statement on `ingest_run` with ($1 id, $2 time, $3 text), written once in
    /// Postgres placeholders (SQLite reads `$N` as `?N`).
    async fn run_update(
        &self,
        sql: &str,
        id: &str,
        at: DateTime<Utc>,
        text: &str,
    ) -> Result<(), StoreError> {
        // Waits, like the ingest itself, for another ingest to let go of the database: a run
        // is recorded (and its failure too) however long the one ahead takes.
        both!(self, Store, |s, spell| {
            let mut tx = s.begin_run_write().await?;
            sqlx::query(&spell(sql))
                .bind(id)
                .bind(at)
                .bind(text)
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
        });
        Ok(())
    }

    pub async fn begin_ingest(&self) -> Result<IngestTx, StoreError> {
        let (backend, lock_wait) = match self {
            Store::Sqlite(s) => {
                // IMMEDIATE: the write lock from the start, so the run's block of ids
                // (`reserve_ids`) cannot be taken by another writer. The connection is
                // closed after the ingest instead of going back to the pool, so the large
                // page cache below is freed with it.
                let mut tx = sqlite_begin_immediate(s.pool(), s.ingest_lock_wait).await?;
                // A whole file is one transaction: give its index pages room (the default
                // 2 MB cache makes index inserts of a large file spill and re-read), and keep
                // each multi-row INSERT's statement journal out of the file system.
                for p in SQLITE_INGEST_PRAGMAS {
                    sqlx::query(p).execute(&mut *tx).await?;
                }
                (Backend::Sqlite(Streaming::new(tx)), s.ingest_lock_wait)
            }
            Store::Postgres(s) => (
                Backend::Postgres(Streaming::new(s.pool().begin().await?)),
                s.ingest_lock_wait,
            ),
        };
        Ok(IngestTx {
            backend,
            next: None,
            run_id: None,
            ranges: Vec::new(),
            range_of: Default::default(),
            dims: DimsInterner::default(),
            dims_held: DIMS_HELD,
            lock_wait,
            daily: DailyTotals::default(),
        })
    }

    /// Sums into `cost_daily` the stored ranges that have no rows there (lines stored before
    /// migration 0012), in one transaction that takes its turn like an ingest. `migrate`
    /// calls it; nothing to do costs one query.
    pub async fn summarize_missing_ranges(&self) -> Result<u64, StoreError> {
        const ANY: &str = "SELECT COUNT(*) FROM cost_range r \
             WHERE NOT EXISTS (SELECT 1 FROM cost_daily d WHERE d.range_id = r.id)";
        let missing: i64 = both!(self, Store, |s, _spell| sqlx::query_scalar(ANY)
            .fetch_one(s.pool())
            .await?);
        if missing == 0 {
            return Ok(0);
        }
        let mut tx = self.begin_ingest().await?;
        match tx.summarize_missing_ranges().await {
            Ok(n) => {
                tx.commit().await?;
                tracing::info!(ranges = n, "summed stored cost lines into cost_daily");
                Ok(n)
            }
            Err(e) => {
                let _ = tx.rollback().await;
                Err(e)
            }
        }
    }

    /// Newest first.
    pub async fn list_ingest_runs(&self, limit: i64) -> Result<Vec<IngestRunRow>, StoreError> {
        let sql =
            format!("SELECT {RUN_COLS} FROM ingest_run ORDER BY started_at DESC, id DESC LIMIT $1");
        both!(self, Store, |s, spell| {
            let rows = sqlx::query(&spell(&sql))
                .bind(limit)
                .fetch_all(s.pool())
                .await?;
            rows.iter().map(|r| Ok(run_from_row!(r))).collect()
        })
    }

    pub async fn count_cost_lines(&self) -> Result<u64, StoreError> {
        self.count("cost_fact").await
    }

    pub async fn count_quarantined(&self) -> Result<u64, StoreError> {
        self.count("ingest_quarantine").await
    }

    /// Exact spend, grouped and bucketed.
    pub async fn spend(&self, q: &SpendQuery) -> Result<Vec<SpendRow>, StoreError> {
        match self {
            Store::Sqlite(s) => spend_sqlite(s.pool(), q).await,
            Store::Postgres(s) => spend_pg(s.pool(), q).await,
        }
    }
}

fn group_column(g: &GroupBy) -> &'static str {
    match g {
        GroupBy::None => "NULL",
        GroupBy::Provider => "provider_name",
        GroupBy::Service => "service_name",
        GroupBy::Region => "region_id",
        GroupBy::Account => "sub_account_id",
        GroupBy::Tag(_) => "",
    }
}

/// (bucket, group, currency)
type SpendKey = (NaiveDate, Option<String>, String);

async fn spend_sqlite(
    pool: &sqlx::SqlitePool,
    q: &SpendQuery,
) -> Result<Vec<SpendRow>, StoreError> {
    // ?1, ?2 = the time range; further parameters are numbered after them.
    let mut binds: Vec<String> = vec![];
    let mut sql = String::from("SELECT charge_period_start, ");
    match &q.group_by {
        GroupBy::Tag(k) => {
            binds.push(format!("$.\"{k}\""));
            let _ = write!(sql, "json_extract(tags, ?{})", binds.len() + 2);
        }
        g => sql.push_str(group_column(g)),
    }
    let _ = write!(
        sql,
        ", billing_currency, billed_cost, effective_cost FROM {SQLITE_LINES} \
         WHERE charge_period_start >= ?1 AND charge_period_start < ?2"
    );
    if let Some(p) = &q.provider {
        sql.push_str(" AND LOWER(provider_name) IN (");
        for (i, name) in crate::domain::provider_spellings(p).into_iter().enumerate() {
            binds.push(name);
            let sep = if i == 0 { "" } else { ", " };
            let _ = write!(sql, "{sep}?{}", binds.len() + 2);
        }
        sql.push(')');
    }
    for (col, v) in [
        ("service_name", &q.service),
        ("region_id", &q.region),
        ("sub_account_id", &q.account),
    ] {
        if let Some(v) = v {
            binds.push(v.clone());
            let _ = write!(sql, " AND {col} = ?{}", binds.len() + 2);
        }
    }
    if let Some((k, v)) = &q.tag {
        binds.push(format!("$.\"{k}\""));
        let _ = write!(sql, " AND json_extract(tags, ?{})", binds.len() + 2);
        binds.push(v.clone());
        let _ = write!(sql, " = ?{}", binds.len() + 2);
    }
    let mut query = sqlx::query(&sql)
        .bind(sqlite_micros(q.start))
        .bind(sqlite_micros(q.end));
    for b in &binds {
        query = query.bind(b);
    }
    let mut rows = query.fetch(pool);
    let mut acc: BTreeMap<SpendKey, (Decimal, Decimal, u64)> = BTreeMap::new();
    while let Some(r) = futures::TryStreamExt::try_next(&mut rows).await? {
        let t = from_sqlite_micros(r.try_get(0)?)?;
        let group: Option<String> = r.try_get(1).ok().flatten();
        let cur: String = r.try_get(2)?;
        let billed = parse_dec(r.try_get::<&str, _>(3)?)?;
        let eff = parse_dec(r.try_get::<&str, _>(4)?)?;
        let e = acc
            .entry((bucket(t, q.granularity, q.start), group, cur))
            .or_insert((Decimal::ZERO, Decimal::ZERO, 0));
        e.0 += billed;
        e.1 += eff;
        e.2 += 1;
    }
    Ok(acc
        .into_iter()
        .map(|((p, g, c), (b, e, n))| SpendRow {
            period_start: p,
            group: g,
            currency: c,
            billed: b.normalize(),
            effective: e.normalize(),
            lines: n,
        })
        .collect())
}

async fn spend_pg(pool: &sqlx::PgPool, q: &SpendQuery) -> Result<Vec<SpendRow>, StoreError> {
    let mut qb = QueryBuilder::<Postgres>::new("SELECT ");
    match q.granularity {
        Granularity::Day => {
            qb.push("(date_trunc('day', charge_period_start AT TIME ZONE 'UTC'))::date");
        }
        Granularity::Month => {
            qb.push("(date_trunc('month', charge_period_start AT TIME ZONE 'UTC'))::date");
        }
        Granularity::Total => {
            qb.push_bind(q.start.date_naive());
        }
    }
    qb.push(" AS p, ");
    match &q.group_by {
        GroupBy::Tag(k) => {
            qb.push("tags->>").push_bind(k.clone());
        }
        g => {
            qb.push(group_column(g));
        }
    }
    qb.push(" AS g, billing_currency, SUM(billed_cost), SUM(effective_cost), COUNT(*) FROM cost_line WHERE charge_period_start >= ")
        .push_bind(q.start)
        .push(" AND charge_period_start < ")
        .push_bind(q.end);
    if let Some(p) = &q.provider {
        qb.push(" AND LOWER(provider_name) IN (");
        let mut sep = qb.separated(", ");
        for name in crate::domain::provider_spellings(p) {
            sep.push_bind(name);
        }
        qb.push(")");
    }
    for (col, v) in [
        ("service_name", &q.service),
        ("region_id", &q.region),
        ("sub_account_id", &q.account),
    ] {
        if let Some(v) = v {
            qb.push(format!(" AND {col} = ")).push_bind(v.clone());
        }
    }
    if let Some((k, v)) = &q.tag {
        qb.push(" AND tags->>")
            .push_bind(k.clone())
            .push(" = ")
            .push_bind(v.clone());
    }
    qb.push(" GROUP BY 1, 2, 3 ORDER BY 1, 2 NULLS LAST, 3");
    let rows = qb.build().fetch_all(pool).await?;
    let mut out = Vec::with_capacity(rows.len());
    for r in rows {
        let p: NaiveDate = r.try_get(0)?;
        out.push(SpendRow {
            period_start: p,
            group: r.try_get(1)?,
            currency: r.try_get(2)?,
            billed: r.try_get::<Decimal, _>(3)?.normalize(),
            effective: r.try_get::<Decimal, _>(4)?.normalize(),
            lines: r.try_get::<i64, _>(5)? as u64,
        });
    }
    Ok(out)
}

/// First instant of the month of `t` (UTC).
pub fn month_start(t: DateTime<Utc>) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(t.year(), t.month(), 1, 0, 0, 0)
        .single()
        .unwrap_or(t)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lease_expires_once_now_passes_it_and_a_missing_one_has_expired() {
        let at: DateTime<Utc> = "2026-01-01T00:00:00Z".parse().unwrap();
        let now = at + chrono::Duration::seconds(30);
        assert!(!lease_expired(Some(now), now));
        assert!(!lease_expired(
            Some(now + chrono::Duration::milliseconds(1)),
            now
        ));
        assert!(lease_expired(
            Some(now - chrono::Duration::milliseconds(1)),
            now
        ));
        assert!(lease_expired(None, now));
        assert!(interrupted_error(Some(at)).contains("2026-01-01T00:00:00.000Z"));
    }
}
