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
use super::{BillingFormat, CostLine, DimsCache, DimsRef};

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

pub fn build(
    mut v: Values<'_>,
    line: u64,
    dev: &mut Deviations,
    dims: &mut DimsCache,
) -> Result<CostLine, String> {
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
    let model = v.text(F::PricingModel).map(str::to_ascii_lowercase);
    let pricing_category = match model.as_deref() {
        Some("spot") => Some("Dynamic"),
        Some("reservation") | Some("savingsplan") | Some("savings plan") => Some("Committed"),
        Some("ondemand") | Some("on demand") => Some("Standard"),
        Some(_) => Some("Other"),
        None if category == "Usage" => Some("Standard"),
        None => None,
    };
    // FOCUS CommitmentDiscountCategory: reservations are usage-based, savings plans
    // spend-based.
    let commitment_discount_category = match model.as_deref() {
        Some("reservation") => Some("Usage"),
        Some("savingsplan") | Some("savings plan") => Some("Spend"),
        _ => None,
    };
    let billing_currency = match v.text(F::BillingCurrency) {
        Some(c) => c,
        None if v.has(F::BillingCurrency) => return Err("BillingCurrency: missing value".into()),
        None => {
            dev.add(Dev::CurrencyMissingAssumedUsd);
            "USD"
        }
    };
    Ok(CostLine {
        line,
        billed_cost: cost,
        effective_cost: cost,
        list_cost: v.dec(F::ListCost),
        contracted_cost: None,
        billing_period_start: period_start,
        billing_period_end: period_end,
        charge_period_start: date,
        charge_period_end: date + Duration::days(1),
        consumed_quantity: v.dec(F::ConsumedQuantity),
        dims: dims.intern(DimsRef {
            pricing_category,
            commitment_discount_category,
            ..v.dims(billing_currency, category, "Microsoft", tags)
        }),
    })
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use crate::billing::read::tests::{DATA, dec, parse_mem, parse_path};
    use crate::billing::{BillingFormat, CostLine, ParseSummary};

    fn headerset(name: &str) -> (ParseSummary, Vec<CostLine>) {
        let p = Path::new(DATA)
            .join("native-billing/azure/opencost-headersets")
            .join(name);
        parse_path(&p, None).unwrap_or_else(|e| panic!("{name}: {e}"))
    }

    #[test]
    fn every_opencost_headerset_is_detected_as_azure() {
        let dir = Path::new(DATA).join("native-billing/azure/opencost-headersets");
        let mut n = 0;
        for e in std::fs::read_dir(&dir).unwrap() {
            let p = e.unwrap().path();
            let (s, lines) =
                parse_path(&p, None).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
            assert_eq!(s.format, Some(BillingFormat::Azure), "{}", p.display());
            assert!(s.rows_read > 0, "{}", p.display());
            assert_eq!(s.rows_read, s.lines + s.quarantined.len() as u64);
            assert_eq!(lines.len() as u64, s.lines);
            n += 1;
        }
        assert_eq!(n, 9);
    }

    #[test]
    fn headerset_variants_and_values() {
        // BOM + PayAsYouGo template row: only a date, no cost → quarantined with the column.
        let (s, lines) = headerset("headersets-BOM.csv");
        assert_eq!(s.variant, "azure-payg");
        assert_eq!(s.deviations.get("bom"), Some(&1));
        assert!(lines.is_empty());
        assert_eq!(s.quarantined.len(), 1);
        assert_eq!(s.quarantined[0].line, 2);
        assert_eq!(
            s.quarantined[0].reason,
            "PreTaxCost: missing required value"
        );

        for name in ["headersets-PayAsYouGo.csv", "headersets-German.csv"] {
            let (s, lines) = headerset(name);
            assert_eq!(s.variant, "azure-payg", "{name}");
            let l = &lines[0];
            assert_eq!(l.billed_cost, dec("0.075"), "{name}");
            assert_eq!(l.dims.billing_currency, "USD");
            assert_eq!(
                l.dims.sub_account_id.as_deref(),
                Some("11111111-12ab-34dc-56ef-123456abcdef")
            );
            assert_eq!(l.dims.service_name.as_deref(), Some("Load Balancer"));
            assert_eq!(l.consumed_quantity, Some(dec("3")));
            assert_eq!(l.dims.consumed_unit.as_deref(), Some("100 Hours"));
            assert_eq!(
                l.charge_period_start.to_rfc3339(),
                "2021-02-02T00:00:00+00:00"
            );
            assert_eq!(
                l.charge_period_end.to_rfc3339(),
                "2021-02-03T00:00:00+00:00"
            );
            assert_eq!(
                l.billing_period_start.to_rfc3339(),
                "2021-02-01T00:00:00+00:00"
            );
            assert_eq!(
                l.billing_period_end.to_rfc3339(),
                "2021-03-01T00:00:00+00:00"
            );
            assert_eq!(
                s.deviations.get("billing_period_derived_from_usage_date"),
                Some(&1)
            );
        }

        let (s, lines) = headerset("headersets-Enterprise.csv");
        assert_eq!(s.variant, "azure-ea");
        let l = &lines[0];
        assert_eq!(
            (l.billed_cost, l.dims.billing_currency.as_str()),
            (dec("0"), "CAD")
        );
        assert_eq!(
            l.billing_period_start.to_rfc3339(),
            "2021-05-01T00:00:00+00:00"
        );
        assert_eq!(
            l.billing_period_end.to_rfc3339(),
            "2021-06-01T00:00:00+00:00"
        );
        assert_eq!(
            l.dims.tags.get("poolName").map(String::as_str),
            Some("defaultpool")
        );
        assert_eq!(s.deviations.get("tags_missing_braces"), Some(&1));
        assert_eq!(s.deviations.get("date_mm_dd_yyyy"), Some(&3));

        let (s, lines) = headerset("headersets-EnterpriseCamel.csv");
        assert_eq!(s.variant, "azure-mca");
        let l = &lines[0];
        assert_eq!(
            (l.billed_cost, l.dims.billing_currency.as_str()),
            (dec("0.012"), "USD")
        );
        assert_eq!(
            l.charge_period_start.to_rfc3339(),
            "2021-02-02T00:00:00+00:00"
        );
        assert_eq!(
            l.dims.tags.get("ClusterId").map(String::as_str),
            Some("0103-212455-stash756")
        );
        assert_eq!(l.dims.region_id.as_deref(), Some("WESTUS"));

        let (_, lines) = headerset("headersets-YA.csv");
        assert_eq!(lines[0].billed_cost, dec("0.075"));
        assert!(
            lines[0]
                .dims
                .resource_id
                .as_deref()
                .unwrap()
                .starts_with("/subscriptions/")
        );

        // No currency column: USD assumed and counted; tag fragment without braces.
        let (s, lines) = headerset("values-MissingBrackets.csv");
        assert_eq!(lines[0].billed_cost, dec("4"));
        assert_eq!(lines[0].dims.billing_currency, "USD");
        assert_eq!(lines[0].list_cost, Some(dec("5")));
        assert_eq!(
            lines[0]
                .dims
                .tags
                .get("resourceNameSuffix")
                .map(String::as_str),
            Some("12345678")
        );
        assert_eq!(s.deviations.get("currency_missing_assumed_usd"), Some(&1));
        assert_eq!(s.deviations.get("tags_missing_braces"), Some(&1));

        // 87 rows one field short of the header: all read.
        let (s, lines) = headerset("values-Template.csv");
        assert_eq!((s.rows_read, s.lines), (87, 87));
        assert_eq!(s.deviations.get("row_field_count_mismatch"), Some(&87));
        let total: rust_decimal::Decimal = lines.iter().map(|l| l.billed_cost).sum();
        assert_eq!(total, dec("16.393506212224391"));
    }

    #[test]
    fn ea_exports_map_charge_types_and_pricing_models() {
        let p = Path::new(DATA).join("native-billing/azure/EA_ActualCost_Small.csv");
        let (s, lines) = parse_path(&p, None).unwrap();
        assert_eq!(s.deviations.get("bom"), Some(&1));
        let purchase: Vec<&CostLine> = lines
            .iter()
            .filter(|l| l.dims.charge_category == "Purchase")
            .collect();
        assert_eq!(purchase.len(), 1);
        assert_eq!(purchase[0].billed_cost, dec("3.25"));
        assert_eq!(
            purchase[0].dims.pricing_category.as_deref(),
            Some("Committed")
        );
        assert_eq!(
            purchase[0].dims.billing_account_id.as_deref(),
            Some("8611537")
        );
        assert_eq!(
            purchase[0].charge_period_start.to_rfc3339(),
            "2023-09-21T00:00:00+00:00"
        );
        assert_eq!(
            purchase[0].billing_period_end.to_rfc3339(),
            "2023-10-01T00:00:00+00:00"
        );
        assert!(
            lines
                .iter()
                .filter(|l| l.dims.charge_category == "Usage")
                .all(|l| l.dims.pricing_category.as_deref() == Some("Standard"))
        );
        let tagged = lines.iter().find(|l| !l.dims.tags.is_empty()).unwrap();
        assert_eq!(
            tagged.dims.tags.get("env").map(String::as_str),
            Some("prod")
        );

        let p = Path::new(DATA).join("native-billing/azure/EA_AmortizedCost_Small.csv");
        let (_, lines) = parse_path(&p, None).unwrap();
        let committed = lines
            .iter()
            .filter(|l| l.dims.pricing_category.as_deref() == Some("Committed"));
        assert_eq!(
            committed
                .map(|l| l.billed_cost)
                .sum::<rust_decimal::Decimal>(),
            dec("0.499152000468")
        );

        let p = Path::new(DATA).join("native-billing/azure/sample-anonymous-ea-export-dataset.csv");
        let (s, lines) = parse_path(&p, None).unwrap();
        assert!(
            s.deviations
                .get("scientific_notation")
                .is_some_and(|n| *n > 0)
        );
        assert!(s.deviations.get("date_m_d_yyyy").is_some_and(|n| *n > 0));
        assert_eq!(s.deviations.get("tags_missing_braces"), Some(&27));
        assert_eq!(lines[1].billed_cost, dec("0.0000564902"));
        assert_eq!(
            lines[0].dims.tags.get("tagB").map(String::as_str),
            Some("valueB")
        );
        assert_eq!(
            lines[0].charge_period_start.to_rfc3339(),
            "2023-09-02T00:00:00+00:00"
        );
    }

    #[test]
    fn spot_and_unknown_charge_types() {
        let csv = "Date,Cost,BillingCurrency,SubscriptionId,ChargeType,PricingModel\n\
                   2024-01-05,1.5,EUR,sub,Usage,Spot\n\
                   2024-01-05,-0.5,EUR,sub,Refund,\n\
                   2024-01-05,0.1,EUR,sub,Mystery,OnDemand\n\
                   2024-01-05,x,EUR,sub,Usage,OnDemand\n";
        let (s, lines) = parse_mem("azure.csv", csv.as_bytes(), None).unwrap();
        assert_eq!(s.format, Some(BillingFormat::Azure));
        let cats: Vec<(&str, Option<&str>)> = lines
            .iter()
            .map(|l| {
                (
                    l.dims.charge_category.as_str(),
                    l.dims.pricing_category.as_deref(),
                )
            })
            .collect();
        assert_eq!(
            cats,
            vec![
                ("Usage", Some("Dynamic")),
                ("Credit", None),
                ("Adjustment", Some("Standard"))
            ]
        );
        assert_eq!(s.deviations.get("charge_category_defaulted"), Some(&1));
        assert_eq!(s.quarantined.len(), 1);
        assert_eq!(s.quarantined[0].line, 5);
        assert!(
            s.quarantined[0].reason.starts_with("Cost: not a number"),
            "{}",
            s.quarantined[0].reason
        );
    }
}
