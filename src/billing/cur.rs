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
use super::{BillingFormat, CostLine, DimsCache, DimsRef};

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

/// FOCUS CommitmentDiscountCategory of a line item type: reservations are usage-based
/// commitments, savings plans spend-based; other lines have no commitment discount.
fn commitment_discount_category(line_item_type: &str) -> Option<&'static str> {
    match line_item_type {
        "DiscountedUsage" | "RIFee" => Some("Usage"),
        "SavingsPlanCoveredUsage"
        | "SavingsPlanRecurringFee"
        | "SavingsPlanUpfrontFee"
        | "SavingsPlanNegation" => Some("Spend"),
        _ => None,
    }
}

pub fn build(
    mut v: Values<'_>,
    line: u64,
    dev: &mut Deviations,
    dims: &mut DimsCache,
) -> Result<CostLine, String> {
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
        Some(c) => c,
        None if v.has(F::BillingCurrency) => return Err("CurrencyCode: missing value".into()),
        None => {
            dev.add(Dev::CurrencyMissingAssumedUsd);
            "USD"
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
        contracted_cost: None,
        billing_period_start: time(F::BillingPeriodStart, "BillingPeriodStartDate")?,
        billing_period_end: time(F::BillingPeriodEnd, "BillingPeriodEndDate")?,
        charge_period_start: time(F::ChargePeriodStart, "UsageStartDate")?,
        charge_period_end: time(F::ChargePeriodEnd, "UsageEndDate")?,
        consumed_quantity: v.dec(F::ConsumedQuantity),
        dims: dims.intern(DimsRef {
            service_name: v.text(F::ServiceName).or_else(|| v.text(F::ProductCode)),
            pricing_category,
            commitment_discount_category: commitment_discount_category(lit),
            ..v.dims(billing_currency, category, "AWS", tags)
        }),
    })
}

#[cfg(test)]
mod tests {
    use std::path::Path;
    use std::sync::Arc;

    use arrow_array::builder::{MapBuilder, StringBuilder};
    use arrow_array::{
        ArrayRef, Float64Array, RecordBatch, StringArray, TimestampMillisecondArray,
    };
    use rust_decimal::Decimal;

    use crate::billing::read::tests::{DATA, dec, parse_mem, parse_path};
    use crate::billing::{BillingFormat, CostLine};

    fn sum_by(lines: &[CostLine], f: impl Fn(&CostLine) -> bool) -> (usize, Decimal) {
        let these: Vec<&CostLine> = lines.iter().filter(|l| f(l)).collect();
        (these.len(), these.iter().map(|l| l.billed_cost).sum())
    }

    #[test]
    fn workshop_parquet_categories_spot_and_tags() {
        let p = Path::new(DATA).join("native-billing/aws/Oct2018-WorkshopCUR-00001.snappy.parquet");
        let (s, lines) = parse_path(&p, None).unwrap();
        assert_eq!(s.variant, "cur-parquet");
        assert_eq!(
            sum_by(&lines, |l| l.dims.charge_category == "Purchase"),
            (9, dec("149.775379"))
        );
        let usage = lines
            .iter()
            .filter(|l| l.dims.charge_category == "Usage")
            .count();
        assert_eq!(usage, 110_953 + 8_345);
        assert_eq!(
            lines
                .iter()
                .filter(|l| l.dims.pricing_category.as_deref() == Some("Dynamic"))
                .count(),
            1313
        );
        assert_eq!(
            lines
                .iter()
                .filter(|l| l.dims.pricing_category.as_deref() == Some("Committed"))
                .count(),
            8345
        );
        let discounted: Decimal = lines
            .iter()
            .filter(|l| l.dims.pricing_category.as_deref() == Some("Committed"))
            .map(|l| l.effective_cost)
            .sum();
        assert_eq!(discounted, dec("232.25379599"));
        assert_eq!(
            lines
                .iter()
                .filter(|l| l.dims.tags.contains_key("cost_center"))
                .count(),
            34_460
        );
        let l = lines
            .iter()
            .find(|l| l.dims.tags.contains_key("cost_center"))
            .unwrap();
        assert!(l.dims.tags.get("cost_center").unwrap().starts_with("Cost"));
        assert!(
            l.dims
                .tags
                .keys()
                .all(|k| !k.starts_with("user_") && !k.starts_with("resource_tags"))
        );
        assert!(
            lines
                .iter()
                .any(|l| l.dims.tags.contains_key("aws:created_by"))
        );
        let l = &lines[0];
        assert_eq!(l.line, 1);
        assert_eq!(l.dims.provider_name, "AWS");
        assert_eq!(l.dims.billing_account_id.as_deref(), Some("836060457634"));
        assert_eq!(
            l.billing_period_start.to_rfc3339(),
            "2018-10-01T00:00:00+00:00"
        );
        assert_eq!(
            l.billing_period_end.to_rfc3339(),
            "2018-11-01T00:00:00+00:00"
        );
        assert!(lines.iter().all(|l| l.dims.service_name.is_some()));
    }

    #[test]
    fn koku_savings_plan_covered_usage_in_nok() {
        let p = Path::new(DATA).join("native-billing/aws/koku-2023-06-01.csv");
        let (s, lines) = parse_path(&p, None).unwrap();
        assert_eq!(s.deviations.get("timestamp_space_no_z"), Some(&6));
        assert_eq!(lines.len(), 3);
        for l in &lines {
            assert_eq!(l.dims.billing_currency, "NOK");
            assert_eq!(l.billed_cost, dec("10"));
            assert_eq!(l.effective_cost, dec("0.1"));
            assert_eq!(l.dims.charge_category, "Usage");
            assert_eq!(l.dims.pricing_category.as_deref(), Some("Committed"));
            assert_eq!(l.dims.billing_account_id.as_deref(), Some("0099999999999"));
            assert_eq!(l.dims.region_id.as_deref(), Some("us-west-1"));
            assert_eq!(l.dims.consumed_unit.as_deref(), Some("Hrs"));
        }
    }

    #[test]
    fn legacy_csv_tax_lines_and_user_tags() {
        let p = Path::new(DATA).join("native-billing/aws/sample-anonymous-aws-export-dataset.csv");
        let (_, lines) = parse_path(&p, None).unwrap();
        assert_eq!(
            sum_by(&lines, |l| l.dims.charge_category == "Tax"),
            (12, dec("0.08"))
        );
        assert!(
            lines
                .iter()
                .filter(|l| l.dims.charge_category == "Tax")
                .all(|l| l.dims.pricing_category.is_none())
        );

        let csv = "lineItem/UnblendedCost,lineItem/LineItemType,lineItem/UsageStartDate,lineItem/UsageEndDate,\
bill/BillingPeriodStartDate,bill/BillingPeriodEndDate,lineItem/CurrencyCode,lineItem/UsageType,\
savingsPlan/SavingsPlanEffectiveCost,savingsPlan/TotalCommitmentToDate,savingsPlan/UsedCommitment,\
reservation/ReservationARN,resourceTags/user:team,resourceTags/aws:createdBy\n\
1.0,Usage,2024-01-01T00:00:00Z,2024-01-01T01:00:00Z,2024-01-01T00:00:00Z,2024-02-01T00:00:00Z,USD,USE1-SpotUsage:m5.large,,,,,data,root\n\
2.0,SavingsPlanCoveredUsage,2024-01-01T00:00:00Z,2024-01-01T01:00:00Z,2024-01-01T00:00:00Z,2024-02-01T00:00:00Z,USD,BoxUsage,1.2,,,,,\n\
-2.0,SavingsPlanNegation,2024-01-01T00:00:00Z,2024-01-01T01:00:00Z,2024-01-01T00:00:00Z,2024-02-01T00:00:00Z,USD,BoxUsage,,,,,,\n\
5.0,SavingsPlanRecurringFee,2024-01-01T00:00:00Z,2024-01-01T01:00:00Z,2024-01-01T00:00:00Z,2024-02-01T00:00:00Z,USD,,,5.0,4.25,,,\n\
100,Fee,2024-01-01T00:00:00Z,2024-01-01T01:00:00Z,2024-01-01T00:00:00Z,2024-02-01T00:00:00Z,USD,,,,,arn:aws:ec2:ri,,\n\
-1,Credit,2024-01-01T00:00:00Z,2024-01-01T01:00:00Z,2024-01-01T00:00:00Z,2024-02-01T00:00:00Z,USD,,,,,,,\n\
-0.5,BundledDiscount,2024-01-01T00:00:00Z,2024-01-01T01:00:00Z,2024-01-01T00:00:00Z,2024-02-01T00:00:00Z,USD,,,,,,,\n";
        let (s, lines) = parse_mem("cur.csv", csv.as_bytes(), None).unwrap();
        assert_eq!(
            (s.format, s.variant.as_str()),
            (Some(BillingFormat::Cur), "cur-legacy-csv")
        );
        let got: Vec<(&str, Option<&str>, Decimal)> = lines
            .iter()
            .map(|l| {
                (
                    l.dims.charge_category.as_str(),
                    l.dims.pricing_category.as_deref(),
                    l.effective_cost,
                )
            })
            .collect();
        assert_eq!(
            got,
            vec![
                ("Usage", Some("Dynamic"), dec("1.0")),
                ("Usage", Some("Committed"), dec("1.2")),
                ("Adjustment", None, dec("0")),
                ("Purchase", Some("Standard"), dec("0.75")),
                ("Purchase", Some("Standard"), dec("0")),
                ("Credit", None, dec("-1")),
                ("Credit", None, dec("-0.5")),
            ]
        );
        assert_eq!(
            lines[0].dims.tags.get("team").map(String::as_str),
            Some("data")
        );
        assert_eq!(
            lines[0].dims.tags.get("aws:createdBy").map(String::as_str),
            Some("root")
        );
        assert!(lines[1].dims.tags.is_empty());
    }

    /// CUR 2.0 has no public sample: write one with a `resource_tags` map column.
    #[test]
    fn cur2_parquet_map_tags() {
        let ts = |s: &str| {
            chrono::DateTime::parse_from_rfc3339(s)
                .unwrap()
                .timestamp_millis()
        };
        let mut tags = MapBuilder::new(None, StringBuilder::new(), StringBuilder::new());
        tags.keys().append_value("user_team");
        tags.values().append_value("data");
        tags.keys().append_value("aws_created_by");
        tags.values().append_value("root");
        tags.append(true).unwrap();
        tags.append(false).unwrap(); // null map
        tags.keys().append_value("user_env");
        tags.values().append_null();
        tags.append(true).unwrap();
        let tags: ArrayRef = Arc::new(tags.finish());
        let t = |v: &[&str]| -> ArrayRef {
            Arc::new(
                TimestampMillisecondArray::from(v.iter().map(|s| ts(s)).collect::<Vec<_>>())
                    .with_timezone("UTC"),
            )
        };
        let s = |v: &[&str]| -> ArrayRef { Arc::new(StringArray::from(v.to_vec())) };
        let batch = RecordBatch::try_from_iter(vec![
            (
                "line_item_unblended_cost",
                Arc::new(Float64Array::from(vec![0.1, 0.2, 1e-7])) as ArrayRef,
            ),
            ("line_item_line_item_type", s(&["Usage", "Usage", "Tax"])),
            (
                "line_item_usage_start_date",
                t(&[
                    "2025-01-01T00:00:00Z",
                    "2025-01-01T01:00:00Z",
                    "2025-01-01T00:00:00Z",
                ]),
            ),
            (
                "line_item_usage_end_date",
                t(&[
                    "2025-01-01T01:00:00Z",
                    "2025-01-01T02:00:00Z",
                    "2025-02-01T00:00:00Z",
                ]),
            ),
            (
                "bill_billing_period_start_date",
                t(&["2025-01-01T00:00:00Z"; 3]),
            ),
            (
                "bill_billing_period_end_date",
                t(&["2025-02-01T00:00:00Z"; 3]),
            ),
            ("line_item_currency_code", s(&["USD", "USD", "USD"])),
            (
                "product_region_code",
                s(&["us-east-1", "us-east-1", "us-east-1"]),
            ),
            ("resource_tags", tags),
        ])
        .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cur2-00001.snappy.parquet");
        let file = std::fs::File::create(&path).unwrap();
        let props = parquet::file::properties::WriterProperties::builder()
            .set_compression(parquet::basic::Compression::SNAPPY)
            .build();
        let mut w =
            parquet::arrow::ArrowWriter::try_new(file, batch.schema(), Some(props)).unwrap();
        w.write(&batch).unwrap();
        w.close().unwrap();

        let (s, lines) = parse_path(&path, None).unwrap();
        assert_eq!(
            (s.format, s.variant.as_str()),
            (Some(BillingFormat::Cur), "cur2")
        );
        assert_eq!(s.lines, 3);
        assert_eq!(
            lines.iter().map(|l| l.billed_cost).sum::<Decimal>(),
            dec("0.3000001")
        );
        assert_eq!(
            lines[0].dims.tags.get("team").map(String::as_str),
            Some("data")
        );
        assert_eq!(
            lines[0].dims.tags.get("aws:created_by").map(String::as_str),
            Some("root")
        );
        assert!(lines[1].dims.tags.is_empty());
        assert_eq!(lines[2].dims.tags.get("env").map(String::as_str), Some(""));
        assert_eq!(lines[0].dims.region_id.as_deref(), Some("us-east-1"));
        assert_eq!(
            lines[0].charge_period_end.to_rfc3339(),
            "2025-01-01T01:00:00+00:00"
        );
        assert_eq!(lines[2].dims.charge_category, "Tax");
        // The same bytes from memory (an S3 object).
        let bytes = std::fs::read(&path).unwrap();
        let (s2, lines2) = parse_mem("s3://b/cur2-00001.snappy.parquet", &bytes, None).unwrap();
        assert_eq!(s2, s);
        assert_eq!(lines2, lines);
    }
}
