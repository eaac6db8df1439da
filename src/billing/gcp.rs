//! GCP BigQuery billing export delivered as files: CSV with dotted column names
//! (`service.description`, `invoice.month`, ...) or JSON lines with the same fields nested
//! (flattened to the same dotted names by the reader).
//!
//! - BilledCost = `cost` (credits are not netted into it); EffectiveCost = `cost` + sum of
//!   `credits[].amount` (credits are negative); ListCost = `cost_at_list` when exported.
//! - `credits` and `labels` may be JSON or a Python repr (`[{'amount': -5e-06, ...}]`).
//! - Billing period = the invoice month in US Pacific time (Google invoices on Pacific
//!   time): first day 00:00 America/Los_Angeles → UTC, PST/PDT by the US DST rule. Without
//!   `invoice.month` the UTC calendar month of the usage start is used (counted).
//! - ChargeCategory from `cost_type`: regular → Usage, tax → Tax, adjustment and
//!   rounding_error → Adjustment; no column → Usage.
//! - PricingCategory (usage only): SKU described as Spot/Preemptible → Dynamic; a
//!   committed-use-discount credit → Committed; else Standard.
//! - Tags: `labels`, plus `project.labels` for keys the resource labels do not set.
use chrono::{DateTime, Datelike, NaiveDate, Utc, Weekday};
use rust_decimal::Decimal;

use super::mapping::{
    Column, Dev, Deviations, Field as F, Kind as K, NullStyle, Table, Val, Values, calendar_month,
    col, req,
};
use super::{BillingFormat, CostLine, DimsCache, DimsRef};

const COLUMNS: &[Column] = &[
    req(F::BilledCost, &["cost"], K::Money),
    col(F::ListCost, &["cost_at_list"], K::Money),
    col(F::BillingCurrency, &["currency"], K::Currency),
    req(F::ChargePeriodStart, &["usage_start_time"], K::Time),
    req(F::ChargePeriodEnd, &["usage_end_time"], K::Time),
    col(F::InvoiceMonth, &["invoice.month"], K::YearMonth),
    col(F::ServiceName, &["service.description"], K::Text),
    col(F::SkuId, &["sku.id"], K::Text),
    col(F::SkuDescription, &["sku.description"], K::Text),
    col(F::RegionId, &["location.region"], K::Text),
    col(F::AvailabilityZone, &["location.zone"], K::Text),
    col(
        F::ResourceId,
        &["resource.global_name", "resource.name"],
        K::Text,
    ),
    col(F::BillingAccountId, &["billing_account_id"], K::Text),
    col(F::SubAccountId, &["project.id"], K::Text),
    col(F::ConsumedQuantity, &["usage.amount"], K::Number),
    col(F::ConsumedUnit, &["usage.unit"], K::Text),
    col(F::Tags, &["labels"], K::Tags),
    col(F::ProjectLabels, &["project.labels"], K::Tags),
    col(F::Credits, &["credits"], K::Credits),
    col(F::CostType, &["cost_type"], K::Text),
];

pub static TABLE: Table = Table {
    format: BillingFormat::Gcp,
    columns: COLUMNS,
    tag_prefixes: &[],
    nulls: NullStyle::Native,
    strict_names: false,
};

/// The `n`-th `weekday` of a month (1-based).
fn nth_weekday(year: i32, month: u32, weekday: Weekday, n: u32) -> Option<NaiveDate> {
    let first = NaiveDate::from_ymd_opt(year, month, 1)?;
    let shift = (7 + weekday.num_days_from_monday() - first.weekday().num_days_from_monday()) % 7;
    first.checked_add_days(chrono::Days::new((shift + 7 * (n - 1)) as u64))
}

/// The last `weekday` of a month.
fn last_weekday(year: i32, month: u32, weekday: Weekday) -> Option<NaiveDate> {
    let (ny, nm) = if month == 12 {
        (year + 1, 1)
    } else {
        (year, month + 1)
    };
    let last = NaiveDate::from_ymd_opt(ny, nm, 1)?.pred_opt()?;
    let back = (7 + last.weekday().num_days_from_monday() - weekday.num_days_from_monday()) % 7;
    last.checked_sub_days(chrono::Days::new(back as u64))
}

/// UTC offset in hours of US Pacific local time at `local` (a wall-clock time): −7 in
/// daylight time, −8 otherwise. DST runs from 02:00 on the 2nd Sunday of March to 02:00 on
/// the 1st Sunday of November (since 2007; before: 1st Sunday of April to last Sunday of
/// October).
pub fn pacific_offset_hours(local: chrono::NaiveDateTime) -> i64 {
    let y = local.year();
    let (start, end) = if y >= 2007 {
        (
            nth_weekday(y, 3, Weekday::Sun, 2),
            nth_weekday(y, 11, Weekday::Sun, 1),
        )
    } else {
        (
            nth_weekday(y, 4, Weekday::Sun, 1),
            last_weekday(y, 10, Weekday::Sun),
        )
    };
    let (Some(start), Some(end)) = (start, end) else {
        return -8;
    };
    let two = chrono::NaiveTime::from_hms_opt(2, 0, 0).unwrap_or_default();
    if local >= start.and_time(two) && local < end.and_time(two) {
        -7
    } else {
        -8
    }
}

/// Midnight on the first of `year`-`month` in US Pacific time, as UTC.
pub fn pacific_month_start(year: i32, month: u32) -> Option<DateTime<Utc>> {
    let local = NaiveDate::from_ymd_opt(year, month, 1)?.and_hms_opt(0, 0, 0)?;
    let off = pacific_offset_hours(local);
    Some(local.and_utc() - chrono::Duration::hours(off))
}

pub fn build(
    mut v: Values<'_>,
    line: u64,
    dev: &mut Deviations,
    dims: &mut DimsCache,
) -> Result<CostLine, String> {
    let mut tags = v.take_tags(F::Tags);
    for (k, val) in v.take_tags(F::ProjectLabels) {
        tags.entry(k).or_insert(val);
    }
    let billed = v.dec(F::BilledCost).ok_or("cost: missing required value")?;
    let (credit_sum, committed) = match v.get(F::Credits) {
        Val::Credits { sum, committed, .. } => (*sum, *committed),
        _ => (Decimal::ZERO, false),
    };
    let effective = billed
        .checked_add(credit_sum)
        .ok_or("cost + credits overflows")?;
    let charge_start = v
        .time(F::ChargePeriodStart)
        .ok_or("usage_start_time: missing required value")?;
    let charge_end = v
        .time(F::ChargePeriodEnd)
        .ok_or("usage_end_time: missing required value")?;
    let (period_start, period_end) = match v.get(F::InvoiceMonth) {
        Val::Month { year, month } => {
            let (ny, nm) = if *month == 12 {
                (year + 1, 1)
            } else {
                (*year, month + 1)
            };
            match (
                pacific_month_start(*year, *month),
                pacific_month_start(ny, nm),
            ) {
                (Some(s), Some(e)) => (s, e),
                _ => return Err(format!("invoice.month: not a valid month {year}{month:02}")),
            }
        }
        _ => {
            dev.add(Dev::BillingPeriodDerived);
            calendar_month(charge_start)
        }
    };
    let category = match v.text(F::CostType) {
        None => "Usage",
        Some(t) => match t.to_ascii_lowercase().as_str() {
            "regular" => "Usage",
            "tax" => "Tax",
            "adjustment" | "rounding_error" => "Adjustment",
            _ => {
                dev.add(Dev::ChargeCategoryDefaulted);
                "Adjustment"
            }
        },
    };
    let pricing_category = (category == "Usage").then(|| {
        let sku = v.text(F::SkuDescription).unwrap_or("");
        if sku.contains("Spot") || sku.contains("Preemptible") {
            "Dynamic"
        } else if committed {
            "Committed"
        } else {
            "Standard"
        }
    });
    let billing_currency = match v.text(F::BillingCurrency) {
        Some(c) => c,
        None if v.has(F::BillingCurrency) => return Err("currency: missing value".into()),
        None => {
            dev.add(Dev::CurrencyMissingAssumedUsd);
            "USD"
        }
    };
    Ok(CostLine {
        line,
        billed_cost: billed,
        effective_cost: effective,
        list_cost: v.dec(F::ListCost),
        contracted_cost: None,
        billing_period_start: period_start,
        billing_period_end: period_end,
        charge_period_start: charge_start,
        charge_period_end: charge_end,
        consumed_quantity: v.dec(F::ConsumedQuantity),
        dims: dims.intern(DimsRef {
            pricing_category,
            ..v.dims(billing_currency, category, "Google Cloud", tags)
        }),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    use crate::billing::read::tests::{DATA, dec, parse_mem, parse_path};

    #[test]
    fn csv_export_credits_labels_and_pacific_invoice_month() {
        let p = Path::new(DATA).join(
            "native-billing/gcp/202011_30c31bca571d9b7f3b2c8459dd8bc34a_2020-11-08_2020-11-11.csv",
        );
        let (s, lines) = parse_path(&p, None).unwrap();
        assert_eq!(
            (s.format, s.variant.as_str()),
            (Some(BillingFormat::Gcp), "gcp-standard")
        );
        let l = &lines[0];
        assert_eq!(l.line, 2);
        assert_eq!(l.billed_cost, dec("0.000005"));
        assert_eq!(l.effective_cost, dec("0"));
        assert_eq!(l.dims.provider_name, "Google Cloud");
        assert_eq!(l.dims.charge_category, "Usage");
        assert_eq!(l.dims.pricing_category.as_deref(), Some("Standard"));
        assert_eq!(
            l.dims.service_name.as_deref(),
            Some("Security Command Center")
        );
        assert_eq!(l.dims.sku_id.as_deref(), Some("D5A4-0C3E-4DA4"));
        assert_eq!(
            l.dims.sub_account_id.as_deref(),
            Some("billing-example-00000")
        );
        assert_eq!(
            l.dims.billing_account_id.as_deref(),
            Some("000000-B0BBA4-940A77")
        );
        assert_eq!(l.dims.region_id, None);
        assert_eq!(l.consumed_quantity, Some(dec("24909")));
        assert_eq!(l.dims.consumed_unit.as_deref(), Some("bytes"));
        assert_eq!(
            l.charge_period_start.to_rfc3339(),
            "2020-11-09T23:00:00+00:00"
        );
        assert_eq!(
            l.charge_period_end.to_rfc3339(),
            "2020-11-10T00:00:00+00:00"
        );
        assert_eq!(
            l.billing_period_start.to_rfc3339(),
            "2020-11-01T07:00:00+00:00"
        );
        assert_eq!(
            l.billing_period_end.to_rfc3339(),
            "2020-12-01T08:00:00+00:00"
        );
        assert_eq!(s.deviations.get("timestamp_space_with_offset"), Some(&50));
        let labelled: Vec<_> = lines.iter().filter(|l| !l.dims.tags.is_empty()).collect();
        assert!(!labelled.is_empty());
        assert!(
            labelled
                .iter()
                .all(|l| l.dims.tags.contains_key("goog-resource-type"))
        );

        let p = Path::new(DATA).join("native-billing/gcp/2022-08-01_5.csv");
        let (s, lines) = parse_path(&p, None).unwrap();
        assert_eq!(s.variant, "gcp-detailed");
        assert_eq!(lines[0].dims.resource_id.as_deref(), Some("//example"));
        assert_eq!(lines[0].dims.region_id.as_deref(), Some("us-central1"));
        assert_eq!(
            lines[0].billing_period_start.to_rfc3339(),
            "2022-08-01T07:00:00+00:00"
        );
    }

    #[test]
    fn json_lines_export() {
        let jsonl = concat!(
            r#"{"billing_account_id":"0X-1","service":{"id":"6F81","description":"Compute Engine"},"sku":{"id":"CP-1","description":"Spot Preemptible N2 Instance Core"},"usage_start_time":"2024-03-10 09:00:00 UTC","usage_end_time":"2024-03-10T10:00:00Z","project":{"id":"p-1","labels":[{"key":"team","value":"ml"},{"key":"env","value":"prj"}]},"labels":[{"key":"env","value":"prod"}],"location":{"region":"us-east1","zone":"us-east1-b"},"cost":0.123456789012345678,"currency":"EUR","usage":{"amount":3600,"unit":"seconds"},"credits":[{"name":"CUD","amount":-0.02,"type":"COMMITTED_USAGE_DISCOUNT"}],"invoice":{"month":"202403"},"cost_type":"regular"}"#,
            "

",
            r#"{"billing_account_id":"0X-1","service":{"description":"Tax"},"usage_start_time":"2024-03-01T00:00:00Z","usage_end_time":"2024-04-01T00:00:00Z","cost":1E+1,"currency":"EUR","credits":[],"invoice":{"month":"202403"},"cost_type":"tax"}"#,
            "
",
            r#"{"cost": "oops", "usage_start_time":"2024-03-01T00:00:00Z","usage_end_time":"2024-03-01T01:00:00Z","currency":"EUR"}"#,
            "
",
            "not json
",
        );
        let (s, lines) = parse_mem("gcp-export.jsonl", jsonl.as_bytes(), None).unwrap();
        assert_eq!(s.format, Some(BillingFormat::Gcp));
        assert_eq!((s.rows_read, s.lines), (4, 2));
        let l = &lines[0];
        assert_eq!(l.line, 1);
        assert_eq!(l.billed_cost, dec("0.123456789012345678"));
        assert_eq!(l.effective_cost, dec("0.103456789012345678"));
        assert_eq!(l.dims.billing_currency, "EUR");
        assert_eq!(l.dims.pricing_category.as_deref(), Some("Dynamic"));
        assert_eq!(l.dims.service_name.as_deref(), Some("Compute Engine"));
        assert_eq!(l.dims.availability_zone.as_deref(), Some("us-east1-b"));
        assert_eq!(l.consumed_quantity, Some(dec("3600")));
        assert_eq!(l.dims.tags.get("env").map(String::as_str), Some("prod"));
        assert_eq!(l.dims.tags.get("team").map(String::as_str), Some("ml"));
        assert_eq!(
            l.charge_period_start.to_rfc3339(),
            "2024-03-10T09:00:00+00:00"
        );
        assert_eq!(
            l.billing_period_start.to_rfc3339(),
            "2024-03-01T08:00:00+00:00"
        );
        assert_eq!(
            l.billing_period_end.to_rfc3339(),
            "2024-04-01T07:00:00+00:00"
        );
        let t = &lines[1];
        assert_eq!(
            (t.line, t.dims.charge_category.as_str(), t.billed_cost),
            (3, "Tax", dec("10"))
        );
        assert_eq!(t.dims.pricing_category, None);
        assert_eq!(s.quarantined[0].line, 4);
        assert!(
            s.quarantined[0].reason.starts_with("cost: not a number"),
            "{}",
            s.quarantined[0].reason
        );
        assert_eq!(s.quarantined[1].line, 5);
        assert!(
            s.quarantined[1].reason.starts_with("invalid JSON"),
            "{}",
            s.quarantined[1].reason
        );
        // Gzipped JSON lines from memory.
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        std::io::Write::write_all(&mut enc, jsonl.as_bytes()).unwrap();
        let gz = enc.finish().unwrap();
        let (s2, lines2) = parse_mem("export.json.gz", &gz, None).unwrap();
        assert_eq!((s2, lines2), (s, lines));
    }

    #[test]
    fn pacific_month_starts() {
        // November: first of month is still daylight time (DST ends on the 1st Sunday, 02:00).
        assert_eq!(
            pacific_month_start(2020, 11).unwrap().to_rfc3339(),
            "2020-11-01T07:00:00+00:00"
        );
        assert_eq!(
            pacific_month_start(2020, 12).unwrap().to_rfc3339(),
            "2020-12-01T08:00:00+00:00"
        );
        assert_eq!(
            pacific_month_start(2022, 8).unwrap().to_rfc3339(),
            "2022-08-01T07:00:00+00:00"
        );
        assert_eq!(
            pacific_month_start(2023, 3).unwrap().to_rfc3339(),
            "2023-03-01T08:00:00+00:00"
        );
        assert_eq!(
            pacific_month_start(2023, 4).unwrap().to_rfc3339(),
            "2023-04-01T07:00:00+00:00"
        );
        assert_eq!(
            pacific_month_start(2024, 1).unwrap().to_rfc3339(),
            "2024-01-01T08:00:00+00:00"
        );
        // Pre-2007 rule: April 1 2006 was before the first Sunday of April (the 2nd).
        assert_eq!(
            pacific_month_start(2006, 4).unwrap().to_rfc3339(),
            "2006-04-01T08:00:00+00:00"
        );
        // DST edges in 2024: Mar 10 and Nov 3, at 02:00 local.
        let at = |s: &str| chrono::NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M").unwrap();
        assert_eq!(pacific_offset_hours(at("2024-03-10 01:59")), -8);
        assert_eq!(pacific_offset_hours(at("2024-03-10 02:00")), -7);
        assert_eq!(pacific_offset_hours(at("2024-11-03 01:59")), -7);
        assert_eq!(pacific_offset_hours(at("2024-11-03 02:00")), -8);
    }
}
