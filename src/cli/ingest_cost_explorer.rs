//! `bursar ingest-cost-explorer`: AWS Cost Explorer daily cost (by service and linked
//! account) for a range of days into the database, as one ingest run; then every budget
//! is evaluated.
use chrono::NaiveDate;
use clap::Args;

use super::CliError;
use super::ingest::{evaluate_budgets, report_json};
use super::setup::DbArgs;
use crate::config::Config;
use crate::domain::quote::quote;
use crate::store::Store;

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
pub async fn run(a: CostExplorerArgs, cfg: &Config) -> Result<(), CliError> {
    let database_url = cfg.database_url.as_str();
    let from = NaiveDate::parse_from_str(&a.from, "%Y-%m-%d")
        .map_err(|_| CliError::Usage(format!("--from {}: expected YYYY-MM-DD", quote(&a.from))))?;
    let to = NaiveDate::parse_from_str(&a.to, "%Y-%m-%d")
        .map_err(|_| CliError::Usage(format!("--to {}: expected YYYY-MM-DD", quote(&a.to))))?;
    let settings = crate::remote::HttpSettings {
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
