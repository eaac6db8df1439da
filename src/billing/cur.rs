//! AWS Cost and Usage Reports: legacy CSV (`lineItem/UnblendedCost`), legacy Parquet with
//! Athena snake_case names (`line_item_unblended_cost`, flat `resource_tags_user_*`), and
//! CUR 2.0 (same snake_case fixed columns, `resource_tags` as a map column).
//!
//! - BilledCost = unblended cost; ListCost = public on-demand cost.
//! - EffectiveCost (amortized): `SavingsPlanCoveredUsage` → SavingsPlanEffectiveCost,
//!   `DiscountedUsage` → reservation EffectiveCost (each when present, else unblended);
//!   `SavingsPlanNegation` and `SavingsPlanUpfrontFee` → 0 (already in the covered usage);
//!   `SavingsPlanRecurringFee` → TotalCommitmentToDate − UsedCommitment (unused part);
//!   `RIFee` → unused amortized upfront fee + unused recurring fee (when those columns
//!   exist); `Fee` carrying a reservation ARN (RI upfront) → 0; everything else unblended.
//! - ChargeCategory from LineItemType: Usage/DiscountedUsage/SavingsPlanCoveredUsage →
//!   Usage; Tax → Tax; Credit/Refund and the `*Discount` types → Credit;
//!   RIFee/SavingsPlanRecurringFee/SavingsPlanUpfrontFee/Fee → Purchase; others →
//!   Adjustment.
//! - PricingCategory (Usage and Purchase lines only, else null): usage type containing
//!   `SpotUsage` → Dynamic; DiscountedUsage/SavingsPlanCoveredUsage → Committed; else
//!   Standard.
//! - Tags: `resourceTags/user:team` / `resource_tags_user_team` / map key `user_team` →
//!   `team`; AWS-generated tags keep an `aws:` prefix.
use rust_decimal::Decimal;

use super::mapping::{
    Column, Dev, Deviations, Field as F, Kind as K, NullStyle, Table, TagPrefix, Values, col, req,
};
use super::{BillingFormat, CostLine};

const COLUMNS: &[Column] = &[
    req(
        F::BilledCost,
        &["lineItem/UnblendedCost", "line_item_unblended_cost"],
        K::Money,
    ),
    col(
        F::ListCost,
        &[
            "pricing/publicOnDemandCost",
            "pricing_public_on_demand_cost",
        ],
        K::Money,
    ),
    col(
        F::BillingCurrency,
        &["lineItem/CurrencyCode", "line_item_currency_code"],
        K::Currency,
    ),
    req(
        F::BillingPeriodStart,
        &[
            "bill/BillingPeriodStartDate",
            "bill_billing_period_start_date",
        ],
        K::Time,
    ),
    req(
        F::BillingPeriodEnd,
        &["bill/BillingPeriodEndDate", "bill_billing_period_end_date"],
        K::Time,
    ),
    req(
        F::ChargePeriodStart,
        &["lineItem/UsageStartDate", "line_item_usage_start_date"],
        K::Time,
    ),
    req(
        F::ChargePeriodEnd,
        &["lineItem/UsageEndDate", "line_item_usage_end_date"],
        K::Time,
    ),
    req(
        F::LineItemType,
        &["lineItem/LineItemType", "line_item_line_item_type"],
        K::Text,
    ),
    col(
        F::ServiceName,
        &[
            "product/ProductName",
            "product_product_name",
            "product/servicename",
            "product_servicename",
        ],
        K::Text,
    ),
    col(
        F::ProductCode,
        &["lineItem/ProductCode", "line_item_product_code"],
        K::Text,
    ),
    col(
        F::RegionId,
        &[
            "product/region",
            "product_region",
            "product_region_code",
            "product/regionCode",
        ],
        K::Text,
    ),
    col(
        F::AvailabilityZone,
        &["lineItem/AvailabilityZone", "line_item_availability_zone"],
        K::Text,
    ),
    col(
        F::ResourceId,
        &["lineItem/ResourceId", "line_item_resource_id"],
        K::Text,
    ),
    col(F::SkuId, &["product/sku", "product_sku"], K::Text),
    col(
        F::BillingAccountId,
        &["bill/PayerAccountId", "bill_payer_account_id"],
        K::Text,
    ),
    col(
        F::SubAccountId,
        &["lineItem/UsageAccountId", "line_item_usage_account_id"],
        K::Text,
    ),
    col(
        F::ConsumedQuantity,
        &["lineItem/UsageAmount", "line_item_usage_amount"],
        K::Number,
    ),
    col(F::ConsumedUnit, &["pricing/unit", "pricing_unit"], K::Text),
    col(
        F::UsageType,
        &["lineItem/UsageType", "line_item_usage_type"],
        K::Text,
    ),
    col(
        F::ReservationEffectiveCost,
        &["reservation/EffectiveCost", "reservation_effective_cost"],
        K::Money,
    ),
    col(
        F::SavingsPlanEffectiveCost,
        &[
            "savingsPlan/SavingsPlanEffectiveCost",
            "savings_plan_savings_plan_effective_cost",
        ],
        K::Money,
    ),
    col(
        F::ReservationUnusedAmortizedFee,
        &[
            "reservation/UnusedAmortizedUpfrontFeeForBillingPeriod",
            "reservation_unused_amortized_upfront_fee_for_billing_period",
        ],
        K::Money,
    ),
    col(
        F::ReservationUnusedRecurringFee,
        &[
            "reservation/UnusedRecurringFee",
            "reservation_unused_recurring_fee",
        ],
        K::Money,
    ),
    col(
        F::SavingsPlanTotalCommitment,
        &[
            "savingsPlan/TotalCommitmentToDate",
            "savings_plan_total_commitment_to_date",
        ],
        K::Money,
    ),
    col(
        F::SavingsPlanUsedCommitment,
        &["savingsPlan/UsedCommitment", "savings_plan_used_commitment"],
        K::Money,
    ),
    col(
        F::ReservationArn,
        &[
            "reservation/ReservationARN",
            "reservation_reservation_a_r_n",
            "reservation_reservation_arn",
        ],
        K::Text,
    ),
    col(F::Tags, &["resource_tags"], K::Tags),
];

fn legacy_csv_tag(rest: &str) -> String {
    rest.strip_prefix("user:").unwrap_or(rest).to_string()
}

fn athena_tag(rest: &str) -> String {
    if let Some(r) = rest.strip_prefix("user_") {
        r.to_string()
    } else if let Some(r) = rest.strip_prefix("aws_") {
        format!("aws:{r}")
    } else {
        rest.to_string()
    }
}

pub static TABLE: Table = Table {
    format: BillingFormat::Cur,
    columns: COLUMNS,
    tag_prefixes: &[
        TagPrefix {
            prefix: "resourceTags/",
            key: legacy_csv_tag,
        },
        TagPrefix {
            prefix: "resource_tags_",
            key: athena_tag,
        },
    ],
    nulls: NullStyle::Native,
    strict_names: false,
};

fn charge_category(line_item_type: &str) -> &'static str {
    match line_item_type {
        "Usage" | "DiscountedUsage" | "SavingsPlanCoveredUsage" => "Usage",
        "Tax" => "Tax",
        "Credit" | "Refund" => "Credit",
        t if t.ends_with("Discount") => "Credit",
        "RIFee" | "SavingsPlanRecurringFee" | "SavingsPlanUpfrontFee" | "Fee" => "Purchase",
        _ => "Adjustment",
    }
}

pub fn build(mut v: Values<'_>, line: u64, dev: &mut Deviations) -> Result<CostLine, String> {
    let tags = v.take_tags(F::Tags);
    let billed = v
        .dec(F::BilledCost)
        .ok_or("UnblendedCost: missing required value")?;
    let lit = v.text(F::LineItemType).unwrap_or("");
    let zero = Decimal::ZERO;
    let effective = match lit {
        "SavingsPlanCoveredUsage" => v.dec(F::SavingsPlanEffectiveCost).unwrap_or(billed),
        "DiscountedUsage" => v.dec(F::ReservationEffectiveCost).unwrap_or(billed),
        "SavingsPlanNegation" | "SavingsPlanUpfrontFee" => zero,
        "SavingsPlanRecurringFee" => match (
            v.dec(F::SavingsPlanTotalCommitment),
            v.dec(F::SavingsPlanUsedCommitment),
        ) {
            (Some(total), Some(used)) => total - used,
            _ => billed,
        },
        "RIFee"
            if v.has(F::ReservationUnusedAmortizedFee)
                || v.has(F::ReservationUnusedRecurringFee) =>
        {
            v.dec(F::ReservationUnusedAmortizedFee).unwrap_or(zero)
                + v.dec(F::ReservationUnusedRecurringFee).unwrap_or(zero)
        }
        "Fee" if v.text(F::ReservationArn).is_some_and(|a| !a.is_empty()) => zero,
        _ => billed,
    };
    let category = charge_category(lit);
    let pricing_category = match category {
        "Usage" | "Purchase" => Some(
            if v.text(F::UsageType)
                .is_some_and(|u| u.contains("SpotUsage"))
            {
                "Dynamic"
            } else if matches!(lit, "DiscountedUsage" | "SavingsPlanCoveredUsage") {
                "Committed"
            } else {
                "Standard"
            },
        ),
        _ => None,
    };
    let billing_currency = match v.text(F::BillingCurrency) {
        Some(c) => c.to_string(),
        None if v.has(F::BillingCurrency) => return Err("CurrencyCode: missing value".into()),
        None => {
            dev.add(Dev::CurrencyMissingAssumedUsd);
            "USD".to_string()
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
        billing_period_start: time(F::BillingPeriodStart, "BillingPeriodStartDate")?,
        billing_period_end: time(F::BillingPeriodEnd, "BillingPeriodEndDate")?,
        charge_period_start: time(F::ChargePeriodStart, "UsageStartDate")?,
        charge_period_end: time(F::ChargePeriodEnd, "UsageEndDate")?,
        charge_category: category.to_string(),
        provider_name: "AWS".to_string(),
        service_name: v
            .string(F::ServiceName)
            .or_else(|| v.string(F::ProductCode)),
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
