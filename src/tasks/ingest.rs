//! `bursar ingest`: one billing export (file, directory of files, or S3 object) → cost
//! lines, in one transaction per file. The parser runs on a blocking thread and hands
//! batches over a bounded channel; the writer appends, then deletes what earlier runs of the
//! same dataset (format + variant) stored for the (provider, billing account, billing
//! period) scopes this file covers. Everything —
//! deletions, new lines, quarantined rows, the run's report — commits together, so a crash
//! (even kill -9) leaves the previous state whole.
//!
//! All or nothing: a file with a quarantined row (beyond the accepted share,
//! `IngestOptions::accept_bad_rows`, none by default) or one that ends inside a row is
//! rejected — its transaction is rolled back, so it stores and replaces nothing — and the
//! run is recorded as `rejected` with its quarantined rows, in a transaction of its own.
//! While a run works, a heartbeat renews its lease (`Store::renew_ingest_lease`), so a run
//! whose process died is told apart and marked `interrupted`.
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use chrono::Utc;
use rust_decimal::Decimal;

use crate::billing::accept::{BadRowShare, Verdict, verdict};
use crate::billing::{BillingError, BillingFormat, CostLine, ParseSummary, Quarantined};
use crate::metrics::{self, IngestStatus};
use crate::store::billing::IngestRunRow;
use crate::store::{Store, StoreError};

#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Billing(#[from] BillingError),
    #[error("{0}")]
    Other(String),
    /// The file was read but not stored (bad rows, incomplete file).
    #[error("{0}")]
    Rejected(Box<Rejection>),
}

/// Quarantined rows a report lists (all of them are stored with the run).
pub const REPORT_ROWS: usize = 10;

/// A file read but not stored: nothing of it was written and nothing replaced.
#[derive(Debug, Clone)]
pub struct Rejection {
    pub run_id: String,
    pub source: String,
    pub format: Option<BillingFormat>,
    /// Why (names the line of an incomplete file, or the count of bad rows).
    pub reason: String,
    pub rows_read: u64,
    /// Every quarantined row's count, and the first `REPORT_ROWS` of them.
    pub quarantined: u64,
    pub first_rows: Vec<Quarantined>,
}

impl std::fmt::Display for Rejection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "rejected, nothing stored or replaced: {}", self.reason)?;
        write_rows(f, &self.first_rows, self.quarantined, &self.run_id)?;
        write!(f, "  run {}", self.run_id)
    }
}

/// Lists quarantined rows, one a line: line, column when known, reason.
fn write_rows(
    f: &mut std::fmt::Formatter<'_>,
    rows: &[Quarantined],
    total: u64,
    run_id: &str,
) -> std::fmt::Result {
    for q in rows {
        match &q.column {
            Some(c) => writeln!(f, "  line {} ({c}): {}", q.line, q.reason)?,
            None => writeln!(f, "  line {}: {}", q.line, q.reason)?,
        }
    }
    let more = total.saturating_sub(rows.len() as u64);
    if more > 0 {
        writeln!(
            f,
            "  … and {more} more: bursar ingest-runs --quarantine {run_id}"
        )?;
    }
    Ok(())
}

/// How to ingest: the format (None: detect) and how many bad rows to accept.
#[derive(Debug, Clone, Copy, Default)]
pub struct IngestOptions {
    pub hint: Option<BillingFormat>,
    /// Show a spinner.
    pub progress: bool,
    /// The share of rows that may be quarantined while the rest are stored (none by
    /// default: any bad row rejects the file).
    pub accept_bad_rows: BadRowShare,
}

/// What one ingest did (also stored in `ingest_run`).
#[derive(Debug, Clone)]
pub struct IngestReport {
    pub run_id: String,
    pub source: String,
    pub format: Option<BillingFormat>,
    pub variant: String,
    pub rows_read: u64,
    pub rows_stored: u64,
    pub quarantined: u64,
    pub deviations: BTreeMap<String, u64>,
    /// currency → (billed, effective)
    pub totals: BTreeMap<String, (Decimal, Decimal)>,
    pub scopes: Vec<String>,
    pub replaced_rows: u64,
    pub seconds: f64,
    /// The first `REPORT_ROWS` quarantined rows (stored within the accepted share).
    pub bad_rows: Vec<Quarantined>,
}

impl std::fmt::Display for IngestReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "{}: {} {} — {} rows read, {} stored, {} quarantined, {} replaced, {:.2}s ({:.0} rows/s)",
            self.source,
            self.format.map(|f| f.as_str()).unwrap_or("?"),
            self.variant,
            self.rows_read,
            self.rows_stored,
            self.quarantined,
            self.replaced_rows,
            self.seconds,
            self.rows_read as f64 / self.seconds.max(1e-9)
        )?;
        for (cur, (b, e)) in &self.totals {
            writeln!(f, "  totals {cur}: billed {b}, effective {e}")?;
        }
        if !self.deviations.is_empty() {
            let d: Vec<String> = self
                .deviations
                .iter()
                .map(|(k, v)| format!("{k} {v}"))
                .collect();
            writeln!(f, "  deviations tolerated: {}", d.join(", "))?;
        }
        if self.quarantined > 0 {
            writeln!(f, "  quarantined (within the accepted share):")?;
            write_rows(f, &self.bad_rows, self.quarantined, &self.run_id)?;
        }
        write!(f, "  run {}", self.run_id)
    }
}

static RUN_SEQ: AtomicU64 = AtomicU64::new(0);

fn run_id() -> String {
    let t = Utc::now().format("%Y%m%dT%H%M%S%.3fZ");
    format!("ingest-{t}-{}", RUN_SEQ.fetch_add(1, Ordering::Relaxed))
}

/// The replacement scope of a line: provider | billing account | billing period start.
pub fn scope_of(l: &CostLine) -> String {
    format!(
        "{}|{}|{}",
        l.dims.provider_name,
        l.dims.billing_account_id.as_deref().unwrap_or(""),
        l.billing_period_start.format("%Y-%m-%dT%H:%M:%SZ")
    )
}

/// The parts of a line's scope, borrowed. It hashes as [`ScopeParts`] does (a `String`
/// hashes as its `str`), so the map is searched without building a key.
#[derive(Hash)]
struct ScopeKey<'a>(&'a str, Option<&'a str>, chrono::DateTime<Utc>);

#[derive(Hash, PartialEq, Eq)]
struct ScopeParts(String, Option<String>, chrono::DateTime<Utc>);

impl hashbrown::Equivalent<ScopeParts> for ScopeKey<'_> {
    fn equivalent(&self, k: &ScopeParts) -> bool {
        self.0 == k.0 && self.1 == k.1.as_deref() && self.2 == k.2
    }
}

/// The scope of each line, formatted once per distinct scope: a file's lines switch
/// between a few scopes (billing periods, accounts) at every line or so.
#[derive(Default)]
struct Scopes(hashbrown::HashMap<ScopeParts, std::sync::Arc<str>>);

impl Scopes {
    /// `l`'s scope, and whether it is the first line with it.
    fn get(&mut self, l: &CostLine) -> (std::sync::Arc<str>, bool) {
        let d = &l.dims;
        let key = ScopeKey(
            &d.provider_name,
            d.billing_account_id.as_deref(),
            l.billing_period_start,
        );
        if let Some(s) = self.0.get(&key) {
            return (s.clone(), false);
        }
        let s: std::sync::Arc<str> = scope_of(l).into();
        self.0.insert(
            ScopeParts(
                d.provider_name.clone(),
                d.billing_account_id.clone(),
                l.billing_period_start,
            ),
            s.clone(),
        );
        (s, true)
    }
}

type ParseFn =
    Box<dyn FnOnce(&mut crate::billing::Sink<'_>) -> Result<ParseSummary, BillingError> + Send>;

/// Runs `parse` and writes what it yields as one ingest of `source`, all or nothing.
pub async fn ingest_with(
    store: &Store,
    source: &str,
    parse: ParseFn,
    progress: bool,
) -> Result<IngestReport, IngestError> {
    ingest_accepting(store, source, parse, progress, BadRowShare::NONE).await
}

/// Runs `parse` and writes what it yields as one ingest of `source`; up to `accept` of its
/// rows may be quarantined while the others are stored.
pub async fn ingest_accepting(
    store: &Store,
    source: &str,
    parse: ParseFn,
    progress: bool,
    accept: BadRowShare,
) -> Result<IngestReport, IngestError> {
    let started = Instant::now();
    let id = run_id();
    store.start_ingest_run(&id, source, Utc::now()).await?;
    let lease = tokio::spawn(keep_lease(store.clone(), id.clone()));
    let result = ingest_inner(store, source, &id, parse, progress, started, accept).await;
    lease.abort();
    let format =
        |f: Option<BillingFormat>| f.map_or(metrics::events::UNKNOWN_FORMAT, |f| f.as_str());
    let events = metrics::global();
    match &result {
        Ok(r) => events.ingest(
            format(r.format),
            IngestStatus::Ok,
            r.rows_stored,
            r.quarantined,
        ),
        // Recorded as rejected already.
        Err(IngestError::Rejected(r)) => {
            events.ingest(format(r.format), IngestStatus::Rejected, 0, r.quarantined)
        }
        Err(e) => {
            events.ingest(format(None), IngestStatus::Failed, 0, 0);
            store
                .fail_ingest_run(&id, &e.to_string(), Utc::now())
                .await
                .ok();
        }
    }
    result
}

/// Renews run `id`'s lease every heartbeat until aborted.
async fn keep_lease(store: Store, id: String) {
    let mut tick = tokio::time::interval(store.ingest_heartbeat());
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await; // the first tick is at once; the run's lease is fresh
    loop {
        tick.tick().await;
        if let Err(e) = store.renew_ingest_lease(&id, Utc::now()).await {
            tracing::warn!(run = %id, error = %e, "could not renew the ingest run's lease");
        }
    }
}

async fn ingest_inner(
    store: &Store,
    source: &str,
    id: &str,
    parse: ParseFn,
    progress: bool,
    started: Instant,
    accept: BadRowShare,
) -> Result<IngestReport, IngestError> {
    let bar = if progress {
        let b = indicatif::ProgressBar::new_spinner();
        b.set_message(format!("{source}: parsing"));
        b
    } else {
        indicatif::ProgressBar::hidden()
    };
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Vec<CostLine>>(4);
    let reader = tokio::task::spawn_blocking(move || {
        let mut sink = |batch: Vec<CostLine>| {
            tx.blocking_send(batch)
                .map_err(|_| "writer stopped".to_string())
        };
        parse(&mut sink)
    });
    let mut db = store.begin_ingest().await?;
    let mut scopes: Vec<String> = Vec::new();
    let mut totals: BTreeMap<String, (Decimal, Decimal)> = BTreeMap::new();
    let mut stored = 0u64;
    let mut replaced = 0u64;
    let mut write_err: Option<StoreError> = None;
    let mut scope_of_line = Scopes::default();
    while let Some(batch) = rx.recv().await {
        let mut keyed: Vec<(std::sync::Arc<str>, &CostLine)> = Vec::with_capacity(batch.len());
        for l in &batch {
            let (s, new) = scope_of_line.get(l);
            if new {
                scopes.push(s.to_string());
            }
            keyed.push((s, l));
        }
        let refs: Vec<(&str, &CostLine)> = keyed.iter().map(|(s, l)| (&**s, *l)).collect();
        if let Err(e) = db.insert_lines(id, &refs).await {
            write_err = Some(e);
            break;
        }
        for l in &batch {
            match totals.get_mut(&l.dims.billing_currency) {
                Some(t) => {
                    t.0 += l.billed_cost;
                    t.1 += l.effective_cost;
                }
                None => {
                    totals.insert(
                        l.dims.billing_currency.clone(),
                        (l.billed_cost, l.effective_cost),
                    );
                }
            }
        }
        stored += batch.len() as u64;
        bar.set_message(format!("{source}: {stored} lines"));
        bar.tick();
    }
    drop(rx);
    let parsed = reader
        .await
        .map_err(|e| IngestError::Other(format!("parser stopped: {e}")))?;
    bar.finish_and_clear();
    if let Some(e) = write_err {
        let _ = db.rollback().await;
        return Err(e.into());
    }
    let summary = match parsed {
        Ok(s) => s,
        Err(e) => {
            let _ = db.rollback().await;
            return Err(e.into());
        }
    };
    if let Verdict::Reject(reason) = verdict(&summary, accept) {
        // Nothing of the file stays; the run and its quarantined rows are recorded apart.
        let _ = db.rollback().await;
        return Err(reject(store, id, source, &summary, reason).await);
    }
    // Replace what earlier runs of the same dataset stored for the periods this file covers.
    let format = summary.format.map(|f| f.as_str());
    for s in &scopes {
        replaced += db
            .replace_older(s, id, format, Some(summary.variant.as_str()))
            .await?;
    }
    db.insert_quarantine(id, source, &summary.quarantined)
        .await?;
    let totals_json: serde_json::Map<String, serde_json::Value> = totals
        .iter()
        .map(|(c, (b, e))| {
            (
                c.clone(),
                serde_json::json!({"billed": b.normalize().to_string(), "effective": e.normalize().to_string()}),
            )
        })
        .collect();
    let report = IngestReport {
        run_id: id.to_string(),
        source: source.to_string(),
        format: summary.format,
        variant: summary.variant.clone(),
        rows_read: summary.rows_read,
        rows_stored: stored,
        quarantined: summary.quarantined.len() as u64,
        deviations: summary.deviations.clone(),
        totals: totals
            .iter()
            .map(|(c, (b, e))| (c.clone(), (b.normalize(), e.normalize())))
            .collect(),
        scopes: scopes.clone(),
        replaced_rows: replaced,
        seconds: started.elapsed().as_secs_f64(),
        bad_rows: summary
            .quarantined
            .iter()
            .take(REPORT_ROWS)
            .cloned()
            .collect(),
    };
    db.finish_run(&IngestRunRow {
        id: id.to_string(),
        started_at: Utc::now(),
        finished_at: Some(Utc::now()),
        source: source.to_string(),
        format: summary.format.map(|f| f.as_str().to_string()),
        variant: Some(summary.variant.clone()),
        status: "ok".into(),
        rows_read: summary.rows_read as i64,
        rows_stored: stored as i64,
        rows_quarantined: summary.quarantined.len() as i64,
        deviations: serde_json::to_string(&summary.deviations).unwrap_or_else(|_| "{}".into()),
        totals: serde_json::Value::Object(totals_json).to_string(),
        scopes: serde_json::to_string(&scopes).unwrap_or_else(|_| "[]".into()),
        error: None,
    })
    .await?;
    db.commit().await?;
    Ok(report)
}

/// Records run `id` as rejected, with its quarantined rows, in a transaction of its own;
/// the error to return (a store error if even that failed).
async fn reject(
    store: &Store,
    id: &str,
    source: &str,
    summary: &ParseSummary,
    reason: String,
) -> IngestError {
    let row = IngestRunRow {
        id: id.to_string(),
        started_at: Utc::now(),
        finished_at: Some(Utc::now()),
        source: source.to_string(),
        format: summary.format.map(|f| f.as_str().to_string()),
        variant: Some(summary.variant.clone()),
        status: "rejected".into(),
        rows_read: summary.rows_read as i64,
        rows_stored: 0,
        rows_quarantined: summary.quarantined.len() as i64,
        deviations: serde_json::to_string(&summary.deviations).unwrap_or_else(|_| "{}".into()),
        totals: "{}".into(),
        scopes: "[]".into(),
        error: Some(reason.clone()),
    };
    let recorded = async {
        let mut tx = store.begin_ingest().await?;
        tx.insert_quarantine(id, source, &summary.quarantined)
            .await?;
        tx.finish_run(&row).await?;
        tx.commit().await
    };
    if let Err(e) = recorded.await {
        return IngestError::Store(e);
    }
    IngestError::Rejected(Box::new(Rejection {
        run_id: id.to_string(),
        source: source.to_string(),
        format: summary.format,
        reason,
        rows_read: summary.rows_read,
        quarantined: summary.quarantined.len() as u64,
        first_rows: summary
            .quarantined
            .iter()
            .take(REPORT_ROWS)
            .cloned()
            .collect(),
    }))
}

/// Billing-looking files under `dir` (not recursive), sorted by name.
pub fn billing_files(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file())
        .filter(|p| {
            let n = p
                .file_name()
                .and_then(|n| n.to_str())
                .unwrap_or("")
                .to_ascii_lowercase();
            !n.starts_with('.')
                && [".csv", ".csv.gz", ".gz", ".parquet", ".json", ".jsonl"]
                    .iter()
                    .any(|s| n.ends_with(s))
        })
        .collect();
    v.sort();
    Ok(v)
}

/// Ingests one file, all or nothing.
pub async fn ingest_file(
    store: &Store,
    path: &Path,
    hint: Option<BillingFormat>,
    progress: bool,
) -> Result<IngestReport, IngestError> {
    let opts = IngestOptions {
        hint,
        progress,
        ..IngestOptions::default()
    };
    ingest_file_with(store, path, opts).await
}

/// Ingests one file as `opts` says.
pub async fn ingest_file_with(
    store: &Store,
    path: &Path,
    opts: IngestOptions,
) -> Result<IngestReport, IngestError> {
    let p = path.to_path_buf();
    let source = path.display().to_string();
    let hint = opts.hint;
    ingest_accepting(
        store,
        &source,
        Box::new(move |sink| crate::billing::read::parse_file(&p, hint, sink)),
        opts.progress,
        opts.accept_bad_rows,
    )
    .await
}

/// Ingests an object already in memory (an S3 object), named for its format suffix.
pub async fn ingest_bytes(
    store: &Store,
    source: &str,
    name: &str,
    bytes: Vec<u8>,
    opts: IngestOptions,
) -> Result<IngestReport, IngestError> {
    let name = name.to_string();
    let hint = opts.hint;
    ingest_accepting(
        store,
        source,
        Box::new(move |sink| crate::billing::read::parse_bytes(&name, &bytes, hint, sink)),
        opts.progress,
        opts.accept_bad_rows,
    )
    .await
}
