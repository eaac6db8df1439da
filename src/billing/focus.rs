//! FOCUS 1.0–1.3 exports (CSV, CSV.gz, Parquet).
//!
//! Lenient where real files deviate (each counted): `YYYY-MM-DD HH:MM:SS` timestamps as
//! UTC, `NULL`/`null`/empty as null, wrong-case enum values, `M/D/YY` dates and
//! `"$10,000.00 "` money strings in the spec's SaaS examples (accepted, counted as
//! `money_formatted_string`, since they are unambiguous). A file without a
//! `BillingCurrency` column (the spec's commitment-discount examples) is taken as USD
//! (`currency_missing_assumed_usd`); a null currency in a file that has the column
//! quarantines the row. Without an `EffectiveCost` column (or with a null value) the
//! billed cost is used and counted.
use super::BillingFormat;
use super::CostLine;
use super::mapping::{
    CHARGE_CATEGORIES, Column, Dev, Deviations, Field as F, Kind as K, NullStyle,
    PRICING_CATEGORIES, Table, Values, col, req,
};

const COLUMNS: &[Column] = &[
    req(F::BilledCost, &["BilledCost"], K::Money),
    col(F::EffectiveCost, &["EffectiveCost"], K::Money),
    col(F::ListCost, &["ListCost"], K::Money),
    col(F::BillingCurrency, &["BillingCurrency"], K::Currency),
    req(F::BillingPeriodStart, &["BillingPeriodStart"], K::Time),
    req(F::BillingPeriodEnd, &["BillingPeriodEnd"], K::Time),
    req(F::ChargePeriodStart, &["ChargePeriodStart"], K::Time),
    req(F::ChargePeriodEnd, &["ChargePeriodEnd"], K::Time),
    req(
        F::ChargeCategory,
        &["ChargeCategory"],
        K::Enum(CHARGE_CATEGORIES),
    ),
    col(
        F::ProviderName,
        &["ServiceProviderName", "ProviderName"],
        K::Text,
    ),
    col(F::ServiceName, &["ServiceName"], K::Text),
    col(F::ServiceCategory, &["ServiceCategory"], K::Text),
    col(F::RegionId, &["RegionId", "Region"], K::Text),
    col(F::AvailabilityZone, &["AvailabilityZone"], K::Text),
    col(F::ResourceId, &["ResourceId"], K::Text),
    col(F::SkuId, &["SkuId"], K::Text),
    col(F::BillingAccountId, &["BillingAccountId"], K::Text),
    col(F::SubAccountId, &["SubAccountId"], K::Text),
    col(
        F::PricingCategory,
        &["PricingCategory"],
        K::Enum(PRICING_CATEGORIES),
    ),
    col(F::ConsumedQuantity, &["ConsumedQuantity"], K::Number),
    col(F::ConsumedUnit, &["ConsumedUnit"], K::Text),
    col(F::Tags, &["Tags"], K::Tags),
];

pub static TABLE: Table = Table {
    format: BillingFormat::Focus,
    columns: COLUMNS,
    tag_prefixes: &[],
    nulls: NullStyle::Focus,
    strict_names: true,
};

/// Builds a cost line from one row's values. `Err` is the quarantine reason.
pub fn build(mut v: Values<'_>, line: u64, dev: &mut Deviations) -> Result<CostLine, String> {
    let tags = v.take_tags(F::Tags);
    let billed = v
        .dec(F::BilledCost)
        .ok_or("BilledCost: missing required value")?;
    let effective = match v.dec(F::EffectiveCost) {
        Some(e) => e,
        None if v.has(F::EffectiveCost) => {
            dev.add(Dev::EffectiveCostNullAssumedBilled);
            billed
        }
        None => {
            dev.add(Dev::EffectiveCostMissingAssumedBilled);
            billed
        }
    };
    let billing_currency = match v.text(F::BillingCurrency) {
        Some(c) => c.to_string(),
        None if v.has(F::BillingCurrency) => return Err("BillingCurrency: missing value".into()),
        None => {
            dev.add(Dev::CurrencyMissingAssumedUsd);
            "USD".to_string()
        }
    };
    let provider_name = match v.text(F::ProviderName) {
        Some(p) => p.to_string(),
        None => {
            dev.add(Dev::ProviderNameMissing);
            String::new()
        }
    };
    let time = |f: F, name: &str| {
        v.time(f)
            .ok_or_else(|| format!("{name}: missing required value"))
    };
    Ok(CostLine {
        line,
        billed_cost: billed,
        effective_cost: effective,
        list_cost: v.dec(F::ListCost),
        billing_currency,
        billing_period_start: time(F::BillingPeriodStart, "BillingPeriodStart")?,
        billing_period_end: time(F::BillingPeriodEnd, "BillingPeriodEnd")?,
        charge_period_start: time(F::ChargePeriodStart, "ChargePeriodStart")?,
        charge_period_end: time(F::ChargePeriodEnd, "ChargePeriodEnd")?,
        charge_category: v
            .string(F::ChargeCategory)
            .ok_or("ChargeCategory: missing required value")?,
        provider_name,
        service_name: v.string(F::ServiceName),
        service_category: v.string(F::ServiceCategory),
        region_id: v.string(F::RegionId),
        availability_zone: v.string(F::AvailabilityZone),
        resource_id: v.string(F::ResourceId),
        sku_id: v.string(F::SkuId),
        billing_account_id: v.string(F::BillingAccountId),
        sub_account_id: v.string(F::SubAccountId),
        pricing_category: v.string(F::PricingCategory),
        consumed_quantity: v.dec(F::ConsumedQuantity),
        consumed_unit: v.string(F::ConsumedUnit),
        tags,
    })
}
