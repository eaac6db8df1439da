//! `bursar report`: writes the monthly report page (one self-contained HTML file) for a
//! month, read from the database. A month without data gives a page that says so (exit 0);
//! a bad `--month` exits 2, a file that cannot be written 1.
use std::path::PathBuf;

use clap::Args;

use super::CliError;
use super::setup::DbArgs;
use crate::config::Config;
use crate::domain::report::Month;
use crate::store::Store;
use crate::tasks::report_page::{ReportSettings, build};

#[derive(Args, Debug)]
pub struct ReportArgs {
    /// The month, YYYY-MM (UTC); default: the previous month.
    #[arg(long, value_name = "YYYY-MM")]
    pub month: Option<String>,
    /// The HTML file to write.
    #[arg(long, value_name = "FILE")]
    pub out: PathBuf,
    #[command(flatten)]
    pub db: DbArgs,
}

pub async fn run(a: ReportArgs, cfg: &Config) -> Result<(), CliError> {
    let now = chrono::Utc::now();
    let month = match &a.month {
        Some(m) => Month::parse(m).map_err(|e| CliError::Usage(format!("--month: {e}")))?,
        None => Month::of(now).previous(),
    };
    let store = Store::open(&cfg.database_url).await?;
    let built = build(&store, month, now, &ReportSettings::from_config(cfg)).await;
    store.close().await;
    let report = built.map_err(|e| CliError::Failed(format!("report for {month}: {e}")))?;
    std::fs::write(&a.out, crate::report::page(&report))
        .map_err(|e| CliError::Failed(format!("cannot write --out {}: {e}", a.out.display())))?;
    let what = if report.is_empty() {
        format!("no data for {}", month.title())
    } else {
        report
            .totals
            .iter()
            .map(|t| format!("{} billed {}", t.currency, t.billed.normalize()))
            .collect::<Vec<_>>()
            .join(", ")
    };
    crate::outln!("wrote {} ({}: {what})", a.out.display(), month);
    Ok(())
}
