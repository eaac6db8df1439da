//! `bursar ingest`, `bursar ingest-runs`, `bursar spend`.
use std::path::Path;

use chrono::{NaiveDate, TimeZone, Utc};
use clap::Args;
use serde_json::json;

use crate::billing::BillingFormat;
use crate::cli::{CliError, ClientArgs, DbArgs, channel, status_error, table};
use crate::domain::quote::{clip, quote};
use crate::proto;
use crate::proto::spend_service_client::SpendServiceClient;
use crate::store::Store;

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
    /// Hide the progress spinner.
    #[arg(long)]
    pub quiet: bool,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub db: DbArgs,
}

#[derive(Args, Debug)]
pub struct SpendArgs {
    /// First day, YYYY-MM-DD (inclusive).
    #[arg(long)]
    pub from: String,
    /// Last day, YYYY-MM-DD (exclusive).
    #[arg(long)]
    pub to: String,
    /// day or month.
    #[arg(long, default_value = "day")]
    pub by: String,
    /// provider, service, region, account or tag:KEY.
    #[arg(long, default_value = "")]
    pub group: String,
    #[arg(long)]
    pub provider: Option<String>,
    #[arg(long)]
    pub service: Option<String>,
    #[arg(long)]
    pub region: Option<String>,
    #[arg(long)]
    pub account: Option<String>,
    /// KEY=VALUE, e.g. team=ml.
    #[arg(long)]
    pub tag: Option<String>,
    #[command(flatten)]
    pub client: ClientArgs,
}

fn report_json(r: &crate::tasks::ingest::IngestReport) -> serde_json::Value {
    json!({
        "run_id": r.run_id, "source": r.source,
        "format": r.format.map(|f| f.as_str()), "variant": r.variant,
        "rows_read": r.rows_read, "rows_stored": r.rows_stored, "rows_quarantined": r.quarantined,
        "deviations": r.deviations,
        "totals": r.totals.iter().map(|(c, (b, e))| (c.clone(), json!({"billed": b.to_string(), "effective": e.to_string()}))).collect::<serde_json::Map<_, _>>(),
        "scopes_replaced": r.scopes, "rows_replaced": r.replaced_rows, "seconds": r.seconds,
    })
}

/// Evaluates every budget after an ingest (thresholds crossed by the new spend fire into
/// the alert outbox, which `serve` delivers); a failure is reported, not fatal.
pub async fn evaluate_budgets(store: &Store, cfg: &crate::config::Config) {
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

pub async fn ingest(a: IngestArgs, cfg: &crate::config::Config) -> Result<(), CliError> {
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
    let store = Store::open(database_url)
        .await?
        .with_ingest_lock_wait(lock_wait);
    let progress = !a.quiet && !a.json;
    let mut reports = Vec::new();
    let mut failures = Vec::new();
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
        let settings = crate::clouds::HttpSettings {
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
            match crate::tasks::ingest::ingest_bytes(&store, &source, &o.key, bytes, hint, progress)
                .await
            {
                Ok(r) => {
                    print(&r, a.json);
                    reports.push(r);
                }
                Err(e) => failures.push(format!("{source}: {e}")),
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
        for f in files {
            match crate::tasks::ingest::ingest_file(&store, &f, hint, progress).await {
                Ok(r) => {
                    print(&r, a.json);
                    reports.push(r);
                }
                Err(e) => failures.push(format!("{}: {e}", f.display())),
            }
        }
        if a.watch && path.is_dir() {
            let every = humantime::parse_duration(&a.watch_every)
                .map_err(|e| CliError::Usage(format!("--watch-every: {e}")))?;
            let (tx, rx) = tokio::sync::watch::channel(false);
            tokio::spawn(async move {
                crate::cli::shutdown_signal().await;
                let _ = tx.send(true);
            });
            let json = a.json;
            let st = store.clone();
            if !reports.is_empty() {
                evaluate_budgets(&store, cfg).await;
            }
            let cfg = cfg.clone();
            crate::tasks::watch::watch_loop(path.to_path_buf(), every, rx, move |p| {
                let (st, cfg) = (st.clone(), cfg.clone());
                async move {
                    match crate::tasks::ingest::ingest_file(&st, &p, hint, false).await {
                        Ok(r) => {
                            if json {
                                crate::outln!("{}", report_json(&r));
                            } else {
                                crate::outln!("{r}");
                            }
                            evaluate_budgets(&st, &cfg).await;
                        }
                        Err(e) => eprintln!("bursar: {}: {}", p.display(), clip(&e.to_string())),
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
    for f in &failures {
        eprintln!("bursar: {}", clip(f));
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

fn day(s: &str, flag: &str) -> Result<chrono::DateTime<Utc>, CliError> {
    let d = NaiveDate::parse_from_str(s.trim(), "%Y-%m-%d")
        .map_err(|_| CliError::Usage(format!("{flag} {}: expected YYYY-MM-DD", quote(s))))?;
    Ok(Utc.from_utc_datetime(&d.and_hms_opt(0, 0, 0).unwrap_or_default()))
}

pub async fn spend(a: SpendArgs) -> Result<(), CliError> {
    let start = day(&a.from, "--from")?;
    let end = day(&a.to, "--to")?;
    let granularity = match a.by.as_str() {
        "day" => proto::Granularity::Day,
        "month" => proto::Granularity::Month,
        o => {
            return Err(CliError::Usage(format!(
                "--by {}: expected day or month",
                quote(o)
            )));
        }
    };
    let ts = |t: chrono::DateTime<Utc>| prost_types::Timestamp {
        seconds: t.timestamp(),
        nanos: 0,
    };
    let mut c = SpendServiceClient::new(channel(&a.client.server).await?);
    let r = c
        .get_spend(proto::GetSpendRequest {
            start: Some(ts(start)),
            end: Some(ts(end)),
            granularity: granularity as i32,
            group_by: a.group.clone(),
            provider: a.provider.unwrap_or_default(),
            service: a.service.unwrap_or_default(),
            region: a.region.unwrap_or_default(),
            account: a.account.unwrap_or_default(),
            tag: a.tag.unwrap_or_default(),
        })
        .await
        .map_err(status_error)?
        .into_inner();
    let amt = |m: &Option<proto::Money>| m.as_ref().map(|m| m.amount.clone()).unwrap_or_default();
    let cur = |m: &Option<proto::Money>| m.as_ref().map(|m| m.currency.clone()).unwrap_or_default();
    if a.client.json {
        let rows: Vec<_> = r
            .buckets
            .iter()
            .map(|b| json!({"period_start": b.period_start, "group": b.group, "billed_cost": amt(&b.billed_cost),
                "effective_cost": amt(&b.effective_cost), "currency": cur(&b.billed_cost), "lines": b.lines}))
            .collect();
        let totals: Vec<_> = r
            .total_billed
            .iter()
            .zip(r.total_effective.iter())
            .map(
                |(b, e)| json!({"currency": b.currency, "billed": b.amount, "effective": e.amount}),
            )
            .collect();
        crate::outln!(
            "{}",
            serde_json::to_string_pretty(&json!({"buckets": rows, "totals": totals}))
                .unwrap_or_default()
        );
        return Ok(());
    }
    let rows: Vec<Vec<String>> = r
        .buckets
        .iter()
        .map(|b| {
            vec![
                b.period_start.clone(),
                b.group.clone(),
                amt(&b.billed_cost),
                amt(&b.effective_cost),
                cur(&b.billed_cost),
                b.lines.to_string(),
            ]
        })
        .collect();
    crate::out!(
        "{}",
        table(
            &[
                "PERIOD",
                "GROUP",
                "BILLED",
                "EFFECTIVE",
                "CURRENCY",
                "LINES"
            ],
            &rows
        )
    );
    for (b, e) in r.total_billed.iter().zip(r.total_effective.iter()) {
        crate::outln!(
            "total {}: billed {}, effective {}",
            b.currency,
            b.amount,
            e.amount
        );
    }
    Ok(())
}

pub async fn ingest_runs(client: ClientArgs, limit: i32) -> Result<(), CliError> {
    let mut c = SpendServiceClient::new(channel(&client.server).await?);
    let r = c
        .list_ingest_runs(proto::ListIngestRunsRequest { limit })
        .await
        .map_err(status_error)?
        .into_inner();
    if client.json {
        let rows: Vec<_> = r
            .runs
            .iter()
            .map(|x| json!({"id": x.id, "source": x.source, "format": x.format, "variant": x.variant, "status": x.status,
                "rows_read": x.rows_read, "rows_stored": x.rows_stored, "rows_quarantined": x.rows_quarantined,
                "deviations": x.deviations, "error": x.error,
                "billed_totals": x.billed_totals.iter().map(|m| json!({"amount": m.amount, "currency": m.currency})).collect::<Vec<_>>()}))
            .collect();
        crate::outln!(
            "{}",
            serde_json::to_string_pretty(&json!({"runs": rows})).unwrap_or_default()
        );
        return Ok(());
    }
    let rows: Vec<Vec<String>> = r
        .runs
        .iter()
        .map(|x| {
            vec![
                x.id.clone(),
                x.status.clone(),
                format!("{} {}", x.format, x.variant),
                x.rows_read.to_string(),
                x.rows_stored.to_string(),
                x.rows_quarantined.to_string(),
                x.billed_totals
                    .iter()
                    .map(|m| format!("{} {}", m.amount, m.currency))
                    .collect::<Vec<_>>()
                    .join(", "),
                x.source.clone(),
            ]
        })
        .collect();
    crate::out!(
        "{}",
        table(
            &[
                "RUN",
                "STATUS",
                "FORMAT",
                "READ",
                "STORED",
                "QUARANTINED",
                "BILLED",
                "SOURCE"
            ],
            &rows
        )
    );
    Ok(())
}

#[derive(Args, Debug)]
pub struct CostExplorerArgs {
    /// First day, YYYY-MM-DD (inclusive).
    #[arg(long)]
    pub from: String,
    /// Last day, YYYY-MM-DD (exclusive).
    #[arg(long)]
    pub to: String,
    /// Endpoint override (e.g. a local moto_server); default AWS.
    #[arg(long, env = "BURSAR_COST_EXPLORER_ENDPOINT")]
    pub endpoint: Option<String>,
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub db: DbArgs,
}

/// Ingests AWS Cost Explorer GetCostAndUsage (daily, by service and linked account) for
/// accounts without a CUR. Each run replaces the same days of earlier Cost Explorer runs.
pub async fn ingest_cost_explorer(
    a: CostExplorerArgs,
    cfg: &crate::config::Config,
) -> Result<(), CliError> {
    let database_url = cfg.database_url.as_str();
    let from = NaiveDate::parse_from_str(&a.from, "%Y-%m-%d")
        .map_err(|_| CliError::Usage(format!("--from {}: expected YYYY-MM-DD", quote(&a.from))))?;
    let to = NaiveDate::parse_from_str(&a.to, "%Y-%m-%d")
        .map_err(|_| CliError::Usage(format!("--to {}: expected YYYY-MM-DD", quote(&a.to))))?;
    let settings = crate::clouds::HttpSettings {
        endpoint: a.endpoint.clone(),
        ..Default::default()
    };
    let store = Store::open(database_url).await?;
    let r = crate::tasks::cost_explorer::ingest_range(&store, &settings, from, to).await;
    if r.is_ok() {
        evaluate_budgets(&store, cfg).await;
    }
    store.close().await;
    let r = r.map_err(|e| CliError::Failed(e.to_string()))?;
    if a.json {
        crate::outln!("{}", report_json(&r));
    } else {
        crate::outln!("{r}");
    }
    Ok(())
}
