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
use super::{BillingFormat, CostLine};

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

pub fn build(mut v: Values<'_>, line: u64, dev: &mut Deviations) -> Result<CostLine, String> {
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
        Some(c) => c.to_string(),
        None if v.has(F::BillingCurrency) => return Err("currency: missing value".into()),
        None => {
            dev.add(Dev::CurrencyMissingAssumedUsd);
            "USD".to_string()
        }
    };
    Ok(CostLine {
        line,
        billed_cost: billed,
        effective_cost: effective,
        list_cost: v.dec(F::ListCost),
        billing_currency,
        billing_period_start: period_start,
        billing_period_end: period_end,
        charge_period_start: charge_start,
        charge_period_end: charge_end,
        charge_category: category.to_string(),
        provider_name: "Google Cloud".to_string(),
        service_name: v.string(F::ServiceName),
        service_category: None,
        region_id: v.string(F::RegionId),
        availability_zone: v.string(F::AvailabilityZone),
        resource_id: v.string(F::ResourceId),
        sku_id: v.string(F::SkuId),
        billing_account_id: v.string(F::BillingAccountId),
        sub_account_id: v.string(F::SubAccountId),
        pricing_category: pricing_category.map(str::to_string),
        consumed_quantity: v.dec(F::ConsumedQuantity),
        consumed_unit: v.string(F::ConsumedUnit),
        tags,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

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
