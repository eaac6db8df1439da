//! Azure Cost Management exports: EA (`Cost` or `CostInBillingCurrency`, `Date`),
//! PayAsYouGo/MCA legacy (`PreTaxCost`, `UsageDateTime`, `SubscriptionGuid`), camelCase
//! variants and German-localised headers (`Abonnement-GUID (SubscriptionGuid)`, read by
//! the English name in parentheses). Column names match case-insensitively.
//!
//! - BilledCost = EffectiveCost = the cost column (actual and amortized exports have the
//!   same columns; the export type decides what the cost means). ListCost =
//!   `PayGCostInBillingCurrency` when exported.
//! - ChargePeriod = the usage date .. +1 day. BillingPeriod = `BillingPeriodStartDate` ..
//!   `BillingPeriodEndDate` + 1 day (Azure's end date is inclusive); without them, the UTC
//!   calendar month of the usage date (counted).
//! - ChargeCategory from ChargeType: Usage, UnusedReservation, UnusedSavingsPlan → Usage;
//!   Purchase → Purchase; Tax → Tax; Refund/Credit → Credit; RoundingAdjustment and
//!   others → Adjustment; no column → Usage.
//! - PricingCategory from PricingModel: OnDemand → Standard, Spot → Dynamic,
//!   Reservation/SavingsPlan → Committed; empty → Standard for usage.
//! - Tags: JSON object, or the fragment without braces that EA exports write (counted).
//! - A file without a currency column is taken as USD (counted).
use chrono::Duration;

use super::mapping::{
    Column, Dev, Deviations, Field as F, Kind as K, NullStyle, Table, Values, calendar_month, col,
    req,
};
use super::{BillingFormat, CostLine};

const COLUMNS: &[Column] = &[
    req(
        F::BilledCost,
        &["CostInBillingCurrency", "Cost", "PreTaxCost"],
        K::Money,
    ),
    col(F::ListCost, &["PayGCostInBillingCurrency"], K::Money),
    col(
        F::BillingCurrency,
        &["BillingCurrency", "BillingCurrencyCode", "Currency"],
        K::Currency,
    ),
    req(
        F::UsageDate,
        &["Date", "UsageDateTime", "UsageDate"],
        K::Time,
    ),
    col(F::BillingPeriodStart, &["BillingPeriodStartDate"], K::Time),
    col(F::BillingPeriodEnd, &["BillingPeriodEndDate"], K::Time),
    col(F::ChargeType, &["ChargeType"], K::Text),
    col(F::PricingModel, &["PricingModel"], K::Text),
    col(F::ServiceName, &["MeterCategory", "ServiceName"], K::Text),
    col(F::ServiceCategory, &["ServiceFamily"], K::Text),
    col(F::RegionId, &["ResourceLocation"], K::Text),
    col(F::AvailabilityZone, &["AvailabilityZone"], K::Text),
    col(
        F::ResourceId,
        &["ResourceId", "InstanceId", "InstanceName"],
        K::Text,
    ),
    col(F::SkuId, &["MeterId"], K::Text),
    col(F::BillingAccountId, &["BillingAccountId"], K::Text),
    col(
        F::SubAccountId,
        &["SubscriptionId", "SubscriptionGuid"],
        K::Text,
    ),
    col(
        F::ConsumedQuantity,
        &["Quantity", "UsageQuantity"],
        K::Number,
    ),
    col(F::ConsumedUnit, &["UnitOfMeasure"], K::Text),
    col(F::Tags, &["Tags"], K::Tags),
];

pub static TABLE: Table = Table {
    format: BillingFormat::Azure,
    columns: COLUMNS,
    tag_prefixes: &[],
    nulls: NullStyle::Native,
    strict_names: false,
};

fn charge_category(charge_type: Option<&str>, dev: &mut Deviations) -> &'static str {
    let Some(t) = charge_type else { return "Usage" };
    match t.to_ascii_lowercase().as_str() {
        "usage" | "unusedreservation" | "unusedsavingsplan" => "Usage",
        "purchase" => "Purchase",
        "tax" => "Tax",
        "refund" | "credit" => "Credit",
        "roundingadjustment" | "adjustment" => "Adjustment",
        _ => {
            dev.add(Dev::ChargeCategoryDefaulted);
            "Adjustment"
        }
    }
}

pub fn build(mut v: Values<'_>, line: u64, dev: &mut Deviations) -> Result<CostLine, String> {
    let tags = v.take_tags(F::Tags);
    let cost = v.dec(F::BilledCost).ok_or("Cost: missing required value")?;
    let date = v.time(F::UsageDate).ok_or("Date: missing required value")?;
    let (period_start, period_end) =
        match (v.time(F::BillingPeriodStart), v.time(F::BillingPeriodEnd)) {
            (Some(s), Some(e)) if e >= s => (s, e + Duration::days(1)),
            (Some(_), Some(_)) => {
                return Err("BillingPeriodEndDate: before BillingPeriodStartDate".into());
            }
            _ => {
                dev.add(Dev::BillingPeriodDerived);
                calendar_month(date)
            }
        };
    let category = charge_category(v.text(F::ChargeType), dev);
    let pricing_category = match v
        .text(F::PricingModel)
        .map(str::to_ascii_lowercase)
        .as_deref()
    {
        Some("spot") => Some("Dynamic"),
        Some("reservation") | Some("savingsplan") | Some("savings plan") => Some("Committed"),
        Some("ondemand") | Some("on demand") => Some("Standard"),
        Some(_) => Some("Other"),
        None if category == "Usage" => Some("Standard"),
        None => None,
    };
    let billing_currency = match v.text(F::BillingCurrency) {
        Some(c) => c.to_string(),
        None if v.has(F::BillingCurrency) => return Err("BillingCurrency: missing value".into()),
        None => {
            dev.add(Dev::CurrencyMissingAssumedUsd);
            "USD".to_string()
        }
    };
    Ok(CostLine {
        line,
        billed_cost: cost,
        effective_cost: cost,
        list_cost: v.dec(F::ListCost),
        billing_currency,
        billing_period_start: period_start,
        billing_period_end: period_end,
        charge_period_start: date,
        charge_period_end: date + Duration::days(1),
        charge_category: category.to_string(),
        provider_name: "Microsoft".to_string(),
        service_name: v.string(F::ServiceName),
        service_category: v.string(F::ServiceCategory),
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
