//! `bursar import-catalog DIR`: imports a SkyPilot v8 catalog folder into the database
//! (`tasks::import::import_catalog`) and prints the report.
use std::path::PathBuf;

use clap::Args;

use super::CliError;
use super::setup::DbArgs;
use crate::config::Config;
use crate::store::Store;
use crate::tasks::import::{ImportError, import_catalog};

#[derive(Args, Debug)]
pub struct ImportCatalogArgs {
    pub dir: PathBuf,
    /// When the catalog was priced: DATE (midnight UTC) or RFC 3339. Default: now. A
    /// SkyPilot catalog carries no date of its own; pass this for an old copy so its
    /// offers go stale after placement.max_price_age.
    #[arg(long, value_parser = parse_observed_at)]
    pub observed_at: Option<chrono::DateTime<chrono::Utc>>,
    /// Hide the progress bar.
    #[arg(long)]
    pub quiet: bool,
    #[command(flatten)]
    pub db: DbArgs,
}

/// `--observed-at`: a date (midnight UTC) or an RFC 3339 timestamp, not in the future.
fn parse_observed_at(s: &str) -> Result<chrono::DateTime<chrono::Utc>, String> {
    let t = s.trim();
    let at = if let Ok(d) = chrono::NaiveDate::parse_from_str(t, "%Y-%m-%d") {
        d.and_time(chrono::NaiveTime::MIN).and_utc()
    } else {
        chrono::DateTime::parse_from_rfc3339(t)
            .map_err(|_| format!("{t:?} is not a date (2026-05-20) or RFC 3339 timestamp"))?
            .with_timezone(&chrono::Utc)
    };
    if at > chrono::Utc::now() {
        return Err(format!("{t:?} is in the future"));
    }
    Ok(at)
}

/// Opens the database, imports, prints the report.
pub async fn run(a: ImportCatalogArgs, cfg: &Config) -> Result<(), CliError> {
    let store = Store::open(&cfg.database_url).await?;
    let out = import_catalog(&store, &a.dir, a.observed_at, !a.quiet).await;
    store.close().await;
    let out = out.map_err(|e| match e {
        ImportError::Store(s) => CliError::from(s),
        other => CliError::Failed(other.to_string()),
    })?;
    crate::outln!("{}", out.report);
    crate::outln!(
        "stored {} offers ({} new or changed prices) in {:.2}s ({:.0} offers/s)",
        out.offers_written,
        out.observations,
        out.seconds,
        out.offers_written as f64 / out.seconds.max(1e-9)
    );
    Ok(())
}
