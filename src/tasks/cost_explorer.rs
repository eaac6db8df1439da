//! AWS Cost Explorer as a polled billing source, for accounts without a CUR: GetCostAndUsage
//! (daily, by service and linked account, every page) for a range of days, ingested as one
//! run. Each line is scoped by its own day, so a later run over overlapping days replaces
//! exactly those days (Cost Explorer restates recent days as billing settles). Used by
//! `bursar ingest-cost-explorer` and, when `[billing.cost_explorer]` is enabled, by a loop
//! inside `serve` that re-reads the last `lookback_days` days every `every`.
use std::time::Duration;

use chrono::{Days, NaiveDate, Utc};

use crate::billing::{BillingFormat, ParseSummary};
use crate::remote::HttpSettings;
use crate::store::Store;
use crate::tasks::ingest::{IngestError, IngestReport, ingest_with};

/// Fetches [from, to) from Cost Explorer and ingests it as one run.
pub async fn ingest_range(
    store: &Store,
    settings: &HttpSettings,
    from: NaiveDate,
    to: NaiveDate,
) -> Result<IngestReport, IngestError> {
    let result = crate::billing::cost_explorer::cost_and_usage(settings, from, to)
        .await
        .map_err(|e| IngestError::Other(e.to_string()))?;
    let mut lines = result.lines;
    for l in &mut lines {
        l.billing_period_start = l.charge_period_start;
        l.billing_period_end = l.charge_period_end;
    }
    let rows = lines.len() as u64;
    let source = format!("aws-cost-explorer:{from}..{to}");
    ingest_with(
        store,
        &source,
        Box::new(move |sink| {
            for chunk in lines.chunks(crate::billing::BATCH) {
                sink(chunk.to_vec()).map_err(crate::billing::BillingError::Sink)?;
            }
            Ok(ParseSummary {
                format: Some(BillingFormat::Cur),
                variant: "cost-explorer".into(),
                rows_read: rows,
                lines: rows,
                ..Default::default()
            })
        }),
        false,
    )
    .await
}

/// The days one poll covers: the `lookback_days` days before today (UTC), today excluded.
pub fn poll_range(today: NaiveDate, lookback_days: u32) -> (NaiveDate, NaiveDate) {
    let from = today
        .checked_sub_days(Days::new(u64::from(lookback_days.max(1))))
        .unwrap_or(today);
    (from, today)
}

/// Polls Cost Explorer every `every` until shutdown; after each successful run, `after`
/// is called (budget evaluation).
pub async fn run_cost_explorer<F, Fut>(
    store: Store,
    settings: HttpSettings,
    every: Duration,
    lookback_days: u32,
    after: F,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    loop {
        let (from, to) = poll_range(Utc::now().date_naive(), lookback_days);
        match ingest_range(&store, &settings, from, to).await {
            Ok(r) => {
                tracing::info!(
                    source = %r.source,
                    rows = r.rows_stored,
                    replaced = r.replaced_rows,
                    "Cost Explorer ingested"
                );
                after().await;
            }
            Err(e) => tracing::warn!(error = %e, "Cost Explorer poll failed; next poll retries"),
        }
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            r = shutdown.changed() => {
                if r.is_err() || *shutdown.borrow() {
                    return;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn poll_range_covers_the_days_before_today() {
        let today = NaiveDate::from_ymd_opt(2026, 3, 2).unwrap();
        assert_eq!(
            poll_range(today, 3),
            (NaiveDate::from_ymd_opt(2026, 2, 27).unwrap(), today)
        );
        // Zero is treated as one day.
        assert_eq!(
            poll_range(today, 0),
            (NaiveDate::from_ymd_opt(2026, 3, 1).unwrap(), today)
        );
    }
}
