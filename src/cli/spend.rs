//! `bursar spend`: spend from ingested exports on a running server (SpendService.GetSpend),
//! per group and period, totals in cents (`--json`: exact).
use chrono::{NaiveDate, TimeZone, Utc};
use clap::Args;
use serde_json::json;

use super::CliError;
use super::client::{ClientArgs, channel, print_json, status_error};
use super::display;
use crate::domain::quote::quote;
use crate::proto;
use crate::proto::spend_service_client::SpendServiceClient;

#[derive(Args, Debug)]
pub struct SpendArgs {
    /// First day, YYYY-MM-DD (inclusive).
    #[arg(long)]
    pub from: String,
    /// Day after the last day, YYYY-MM-DD: exclusive, so --from 2026-05-01 --to 2026-06-01
    /// is all of May.
    #[arg(long)]
    pub to: String,
    /// total (one row per group for the whole range), day or month.
    #[arg(long, default_value = "total")]
    pub by: String,
    /// provider, service, region, account or tag:KEY.
    #[arg(long, default_value = "")]
    pub group: String,
    /// Any spelling of a provider, case-insensitive: aws finds AWS and Amazon Web Services.
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

fn day(s: &str, flag: &str) -> Result<chrono::DateTime<Utc>, CliError> {
    let d = NaiveDate::parse_from_str(s.trim(), "%Y-%m-%d")
        .map_err(|_| CliError::Usage(format!("{flag} {}: expected YYYY-MM-DD", quote(s))))?;
    Ok(Utc.from_utc_datetime(&d.and_hms_opt(0, 0, 0).unwrap_or_default()))
}

pub async fn run(a: SpendArgs) -> Result<(), CliError> {
    let start = day(&a.from, "--from")?;
    let end = day(&a.to, "--to")?;
    let granularity = match a.by.as_str() {
        "day" => proto::Granularity::Day,
        "month" => proto::Granularity::Month,
        "total" => proto::Granularity::Total,
        o => {
            return Err(CliError::Usage(format!(
                "--by {}: expected total, day or month",
                quote(o)
            )));
        }
    };
    let ts = |t: chrono::DateTime<Utc>| prost_types::Timestamp {
        seconds: t.timestamp(),
        nanos: 0,
    };
    let mut c = SpendServiceClient::new(channel(&a.client).await?);
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
        print_json(&json!({"buckets": rows, "totals": totals}));
        return Ok(());
    }
    let rows: Vec<Vec<String>> = r
        .buckets
        .iter()
        .map(|b| {
            vec![
                b.period_start.clone(),
                b.group.clone(),
                display::cents(&amt(&b.billed_cost)),
                display::cents(&amt(&b.effective_cost)),
                cur(&b.billed_cost),
                b.lines.to_string(),
            ]
        })
        .collect();
    crate::out!(
        "{}",
        display::list(
            &[
                "PERIOD",
                "GROUP",
                "BILLED",
                "EFFECTIVE",
                "CURRENCY",
                "LINES"
            ],
            &rows,
            "cost lines"
        )
    );
    for (b, e) in r.total_billed.iter().zip(r.total_effective.iter()) {
        crate::outln!(
            "total {}: billed {}, effective {}",
            b.currency,
            display::cents(&b.amount),
            display::cents(&e.amount)
        );
    }
    Ok(())
}
