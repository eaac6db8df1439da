//! `bursar ingest PATH`: billing exports from a file, a directory (optionally watched) or
//! S3 into the database, one report per file (`--json`: one JSON line each); then every
//! budget is evaluated. `report_json` and `evaluate_budgets` also serve
//! `bursar ingest-cost-explorer`.
use std::path::Path;

use chrono::Utc;
use clap::Args;
use serde_json::json;

use super::CliError;
use super::setup::{DbArgs, shutdown_signal};
use crate::billing::BillingFormat;
use crate::billing::accept::BadRowShare;
use crate::config::Config;
use crate::domain::quote::clip;
use crate::store::Store;
use crate::tasks::ingest::{IngestError, IngestOptions, Rejection};

#[derive(Args, Debug)]
pub struct IngestArgs {
    /// A file, a directory of export files, or s3://bucket/prefix.
    pub path: String,
    /// auto, focus, cur, gcp or azure.
    #[arg(long, default_value = "auto")]
    pub format: String,
    /// Keep watching the directory and ingest new files as they land.
    #[arg(long)]
    pub watch: bool,
    /// How often --watch looks for new files.
    #[arg(long, default_value = "10s")]
    pub watch_every: String,
    /// How long to wait for another ingest into the same database to finish (one ingest
    /// writes at a time) before giving up on a file.
    #[arg(long, default_value = "30m")]
    pub lock_wait: String,
    /// S3 endpoint override (e.g. a local S3-compatible server); default AWS.
    #[arg(long, env = "BURSAR_S3_ENDPOINT")]
    pub s3_endpoint: Option<String>,
    #[arg(long, env = "BURSAR_S3_REGION", default_value = "us-east-1")]
    pub s3_region: String,
    /// Store a file's readable rows when at most this share of its rows cannot be read
    /// (e.g. 0.1%); those are quarantined. Default: `[ingest] accept_bad_rows`, 0 — a file
    /// with any bad row stores nothing. A file that ends inside a row is always rejected.
    #[arg(long, value_name = "SHARE")]
    pub accept_bad_rows: Option<String>,
    /// Hide the progress spinner.
    #[arg(long)]
    pub quiet: bool,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub db: DbArgs,
}

pub(super) fn report_json(r: &crate::tasks::ingest::IngestReport) -> serde_json::Value {
    json!({
        "run_id": r.run_id, "source": r.source, "status": "ok",
        "format": r.format.map(|f| f.as_str()), "variant": r.variant,
        "rows_read": r.rows_read, "rows_stored": r.rows_stored, "rows_quarantined": r.quarantined,
        "deviations": r.deviations,
        "totals": r.totals.iter().map(|(c, (b, e))| (c.clone(), json!({"billed": b.to_string(), "effective": e.to_string()}))).collect::<serde_json::Map<_, _>>(),
        "scopes_replaced": r.scopes, "rows_replaced": r.replaced_rows, "seconds": r.seconds,
        "quarantined": r.bad_rows.iter().map(quarantined_json).collect::<Vec<_>>(),
    })
}

fn quarantined_json(q: &crate::billing::Quarantined) -> serde_json::Value {
    json!({"line": q.line, "column": q.column, "reason": q.reason})
}

/// A file not stored, as `--json` prints it: a rejection with its first quarantined rows,
/// or a failure with its error.
fn failure_json(source: &str, e: &IngestError) -> serde_json::Value {
    match e {
        IngestError::Rejected(r) => rejection_json(r),
        e => json!({"source": source, "status": "failed", "error": e.to_string()}),
    }
}

fn rejection_json(r: &Rejection) -> serde_json::Value {
    json!({
        "run_id": r.run_id, "source": r.source, "status": "rejected", "reason": r.reason,
        "rows_read": r.rows_read, "rows_quarantined": r.quarantined,
        "quarantined": r.first_rows.iter().map(quarantined_json).collect::<Vec<_>>(),
    })
}

/// Evaluates every budget after an ingest (thresholds crossed by the new spend fire into
/// the alert outbox, which `serve` delivers); a failure is reported, not fatal.
pub async fn evaluate_budgets(store: &Store, cfg: &Config) {
    let engine = crate::tasks::budgets::BudgetEngine::new(
        store.clone(),
        cfg.alerts.clone(),
        cfg.budget_evaluation.trailing_days,
    );
    if let Err(e) = engine.evaluate_all(Utc::now()).await {
        eprintln!(
            "bursar: budget evaluation after ingest failed: {}",
            clip(&e.to_string())
        );
    }
}

pub async fn run(a: IngestArgs, cfg: &Config) -> Result<(), CliError> {
    let database_url = cfg.database_url.as_str();
    let hint = match a.format.as_str() {
        "auto" => None,
        f => Some(
            f.parse::<BillingFormat>()
                .map_err(|e| CliError::Usage(format!("--format: {e}")))?,
        ),
    };
    let lock_wait = humantime::parse_duration(&a.lock_wait)
        .map_err(|e| CliError::Usage(format!("--lock-wait: {e}")))?;
    let accept_bad_rows = match &a.accept_bad_rows {
        Some(s) => s
            .parse::<BadRowShare>()
            .map_err(|e| CliError::Usage(format!("--accept-bad-rows {e}")))?,
        None => cfg.ingest.accept_bad_rows,
    };
    let store = Store::open(database_url)
        .await?
        .with_ingest_lock_wait(lock_wait)
        .with_ingest_heartbeat(cfg.ingest.heartbeat);
    let opts = IngestOptions {
        hint,
        progress: !a.quiet && !a.json,
        accept_bad_rows,
    };
    let mut reports = Vec::new();
    let mut failures = Vec::new();
    // Whether failures were reported as they happened (--watch).
    let mut watched = false;
    // A failed or rejected file: named on stderr at the end (and with --json, printed as
    // JSON at once).
    let failed = |source: &str, e: &IngestError, json: bool| {
        if json {
            crate::outln!("{}", failure_json(source, e));
        }
        format!("{source}: {e}")
    };
    let print = |r: &crate::tasks::ingest::IngestReport, json: bool| {
        if json {
            crate::outln!("{}", report_json(r));
        } else {
            crate::outln!("{r}");
        }
    };
    if a.path.starts_with("s3://") {
        let loc = crate::billing::s3::parse_s3_uri(&a.path)
            .map_err(|e| CliError::Usage(format!("{}: {e}", a.path)))?;
        let settings = crate::remote::HttpSettings {
            endpoint: a.s3_endpoint.clone(),
            ..Default::default()
        };
        let objects = crate::billing::s3::list_objects(&settings, &a.s3_region, &loc)
            .await
            .map_err(|e| CliError::Failed(e.to_string()))?;
        for o in objects {
            let bytes =
                crate::billing::s3::get_object(&settings, &a.s3_region, &loc.bucket, &o.key)
                    .await
                    .map_err(|e| CliError::Failed(e.to_string()))?;
            let source = format!("s3://{}/{}", loc.bucket, o.key);
            match crate::tasks::ingest::ingest_bytes(&store, &source, &o.key, bytes, opts).await {
                Ok(r) => {
                    print(&r, a.json);
                    reports.push(r);
                }
                Err(e) => failures.push(failed(&source, &e, a.json)),
            }
        }
    } else {
        let path = Path::new(&a.path);
        if !path.exists() {
            store.close().await;
            return Err(CliError::Usage(format!(
                "{}: no such file or directory",
                a.path
            )));
        }
        let files = if path.is_dir() {
            crate::tasks::ingest::billing_files(path)
                .map_err(|e| CliError::Failed(format!("{}: {e}", a.path)))?
        } else {
            vec![path.to_path_buf()]
        };
        // Each file as it was when taken, so --watch does not take it again unchanged.
        let mut taken = std::collections::HashMap::new();
        for f in files {
            if let Some(state) = file_state(&f) {
                taken.insert(f.clone(), state);
            }
            match crate::tasks::ingest::ingest_file_with(&store, &f, opts).await {
                Ok(r) => {
                    print(&r, a.json);
                    reports.push(r);
                }
                Err(e) => failures.push(failed(&f.display().to_string(), &e, a.json)),
            }
        }
        if a.watch && path.is_dir() {
            let every = humantime::parse_duration(&a.watch_every)
                .map_err(|e| CliError::Usage(format!("--watch-every: {e}")))?;
            let (tx, rx) = tokio::sync::watch::channel(false);
            tokio::spawn(async move {
                shutdown_signal().await;
                let _ = tx.send(true);
            });
            let json = a.json;
            let st = store.clone();
            if !reports.is_empty() {
                evaluate_budgets(&store, cfg).await;
            }
            let cfg = cfg.clone();
            // Files that failed before watching began are reported now, not at the end.
            for f in &failures {
                eprintln!("bursar: {f}");
            }
            watched = true;
            let taken = std::sync::Arc::new(taken);
            crate::tasks::watch::watch_loop(path.to_path_buf(), every, rx, move |p| {
                let (st, cfg) = (st.clone(), cfg.clone());
                let unchanged = file_state(&p).is_some_and(|now| taken.get(&p) == Some(&now));
                let opts = IngestOptions {
                    progress: false,
                    ..opts
                };
                // A rejected file is reported once; the watcher offers it again only once it
                // changes (a complete copy landing over a partial one).
                async move {
                    if unchanged {
                        return;
                    }
                    match crate::tasks::ingest::ingest_file_with(&st, &p, opts).await {
                        Ok(r) => {
                            if json {
                                crate::outln!("{}", report_json(&r));
                            } else {
                                crate::outln!("{r}");
                            }
                            evaluate_budgets(&st, &cfg).await;
                        }
                        Err(e) => {
                            let source = p.display().to_string();
                            if json {
                                crate::outln!("{}", failure_json(&source, &e));
                            }
                            eprintln!("bursar: {source}: {}", clip(&e.to_string()));
                        }
                    }
                }
            })
            .await;
        }
    }
    if !reports.is_empty() && !a.watch {
        evaluate_budgets(&store, cfg).await;
    }
    store.close().await;
    if !watched {
        for f in &failures {
            eprintln!("bursar: {}", clip(f));
        }
    }
    if failures.is_empty() {
        Ok(())
    } else {
        Err(CliError::Failed(format!(
            "{} of {} files failed",
            failures.len(),
            failures.len() + reports.len()
        )))
    }
}

/// A file's size and modification time (what the watcher tells changes by).
fn file_state(p: &Path) -> Option<(u64, std::time::SystemTime)> {
    let m = std::fs::metadata(p).ok()?;
    Some((m.len(), m.modified().ok()?))
}
