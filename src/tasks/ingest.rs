//! `bursar ingest`: one billing export (file, directory of files, or S3 object) → cost
//! lines, in one transaction per file. The parser runs on a blocking thread and hands
//! batches over a bounded channel; the writer appends, then deletes what earlier runs of the
//! same dataset (format + variant) stored for the (provider, billing account, billing
//! period) scopes this file covers. Everything —
//! deletions, new lines, quarantined rows, the run's report — commits together, so a crash
//! (even kill -9) leaves the previous state whole.
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use chrono::Utc;
use rust_decimal::Decimal;

use crate::billing::{BillingError, BillingFormat, CostLine, ParseSummary};
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

/// Runs `parse` and writes what it yields as one ingest of `source`.
pub async fn ingest_with(
    store: &Store,
    source: &str,
    parse: ParseFn,
    progress: bool,
) -> Result<IngestReport, IngestError> {
    let started = Instant::now();
    let id = run_id();
    store.start_ingest_run(&id, source, Utc::now()).await?;
    let result = ingest_inner(store, source, &id, parse, progress, started).await;
    if let Err(e) = &result {
        store
            .fail_ingest_run(&id, &e.to_string(), Utc::now())
            .await
            .ok();
    }
    result
}

async fn ingest_inner(
    store: &Store,
    source: &str,
    id: &str,
    parse: ParseFn,
    progress: bool,
    started: Instant,
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
        return Err(e.into());
    }
    let summary = parsed?;
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

/// Ingests one file.
pub async fn ingest_file(
    store: &Store,
    path: &Path,
    hint: Option<BillingFormat>,
    progress: bool,
) -> Result<IngestReport, IngestError> {
    let p = path.to_path_buf();
    let source = path.display().to_string();
    ingest_with(
        store,
        &source,
        Box::new(move |sink| crate::billing::read::parse_file(&p, hint, sink)),
        progress,
    )
    .await
}

/// Ingests an object already in memory (an S3 object), named for its format suffix.
pub async fn ingest_bytes(
    store: &Store,
    source: &str,
    name: &str,
    bytes: Vec<u8>,
    hint: Option<BillingFormat>,
    progress: bool,
) -> Result<IngestReport, IngestError> {
    let name = name.to_string();
    ingest_with(
        store,
        source,
        Box::new(move |sink| crate::billing::read::parse_bytes(&name, &bytes, hint, sink)),
        progress,
    )
    .await
}
