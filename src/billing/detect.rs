//! Tells the billing format (and FOCUS version or native variant) from a header.
use super::BillingFormat;
use super::mapping::HeaderIndex;
use crate::domain::quote::{QUOTE_CHARS, quote};

/// Columns added by each FOCUS version (from the spec's column tables; see
/// `shared/data/focus-spec/columns_by_version.csv`).
const FOCUS_1_1: &[&str] = &[
    "CapacityReservationId",
    "CapacityReservationStatus",
    "CommitmentDiscountQuantity",
    "CommitmentDiscountUnit",
    "ServiceSubcategory",
    "SkuMeter",
    "SkuPriceDetails",
];
const FOCUS_1_2: &[&str] = &[
    "BillingAccountType",
    "InvoiceId",
    "PricingCurrency",
    "PricingCurrencyContractedUnitPrice",
    "PricingCurrencyEffectiveCost",
    "PricingCurrencyListUnitPrice",
    "SubAccountType",
];
const FOCUS_1_3: &[&str] = &[
    "AllocatedMethodDetails",
    "AllocatedMethodId",
    "AllocatedResourceId",
    "AllocatedResourceName",
    "AllocatedTags",
    "ContractApplied",
    "HostProviderName",
    "ServiceProviderName",
];

/// The detected format and variant (FOCUS version such as "1.2", or a native variant
/// such as "cur-legacy-csv").
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Detected {
    pub format: BillingFormat,
    pub variant: String,
}

/// Detects the format from normalised header names; `None` if unknown (OCI cost reports
/// and anything else).
pub fn detect(header: &[String]) -> Option<Detected> {
    let ix = HeaderIndex::new(header);
    let format =
        if ix.has("BilledCost") && (ix.has("ChargePeriodStart") || ix.has("BillingPeriodStart")) {
            BillingFormat::Focus
        } else if ix.has("lineItem/UnblendedCost") || ix.has("line_item_unblended_cost") {
            BillingFormat::Cur
        } else if ix.has("cost") && ix.has("usage_start_time") {
            BillingFormat::Gcp
        } else if ["CostInBillingCurrency", "Cost", "PreTaxCost"]
            .iter()
            .any(|c| ix.has(c))
            && ["Date", "UsageDateTime", "UsageDate"]
                .iter()
                .any(|c| ix.has(c))
            && [
                "SubscriptionId",
                "SubscriptionGuid",
                "MeterCategory",
                "MeterId",
            ]
            .iter()
            .any(|c| ix.has(c))
        {
            BillingFormat::Azure
        } else {
            return None;
        };
    Some(Detected {
        format,
        variant: variant(format, header),
    })
}

/// The variant of `format` for this header (used when the format is given as a hint too).
pub fn variant(format: BillingFormat, header: &[String]) -> String {
    let ix = HeaderIndex::new(header);
    match format {
        BillingFormat::Focus => focus_version(&ix).to_string(),
        BillingFormat::Cur => {
            if ix.has("lineItem/UnblendedCost") {
                "cur-legacy-csv".into()
            } else if ix.has("resource_tags")
                || ix.has("product")
                || ix.has("cost_category")
                || ix.has("discount")
            {
                "cur2".into()
            } else {
                "cur-parquet".into()
            }
        }
        BillingFormat::Gcp => {
            if ix.has("resource.name") || ix.has("resource.global_name") {
                "gcp-detailed".into()
            } else {
                "gcp-standard".into()
            }
        }
        BillingFormat::Azure => {
            if ix.has("PreTaxCost") {
                "azure-payg".into()
            } else {
                let camel = header
                    .iter()
                    .filter(|h| h.starts_with(|c: char| c.is_ascii_lowercase()))
                    .count();
                if ix.has("CostInBillingCurrency") && camel * 2 > header.len() {
                    "azure-mca".into()
                } else {
                    "azure-ea".into()
                }
            }
        }
    }
}

fn focus_version(ix: &HeaderIndex) -> &'static str {
    if FOCUS_1_3.iter().any(|c| ix.has(c)) {
        "1.3"
    } else if FOCUS_1_2.iter().any(|c| ix.has(c)) {
        "1.2"
    } else if FOCUS_1_1.iter().any(|c| ix.has(c)) {
        "1.1"
    } else {
        "1.0"
    }
}

/// The header list for an [`super::BillingError::UnknownFormat`] message: at most `MAX`
/// columns and about `MAX_CHARS` characters; a column with control characters or of more
/// than `quote::QUOTE_CHARS` characters is quoted (a prefix and its length), so a binary
/// file's first "line" does not reach the terminal.
pub fn describe_columns(header: &[String]) -> String {
    const MAX: usize = 60;
    const MAX_CHARS: usize = 1000;
    let mut s = String::new();
    let mut shown = 0;
    for c in header.iter().take(MAX) {
        if s.len() > MAX_CHARS {
            break;
        }
        if !s.is_empty() {
            s.push_str(", ");
        }
        if c.chars().count() > QUOTE_CHARS || c.chars().any(|ch| ch.is_control()) {
            s.push_str(&quote(c));
        } else {
            s.push_str(c);
        }
        shown += 1;
    }
    if header.len() > shown {
        s.push_str(&format!(", … ({} columns in all)", header.len()));
    }
    if s.is_empty() {
        s.push_str("none");
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(cols: &[&str]) -> Vec<String> {
        cols.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn focus_versions_from_columns() {
        let base = ["BilledCost", "ChargePeriodStart", "BillingCurrency"];
        let d = detect(&h(&base)).unwrap();
        assert_eq!(
            (d.format, d.variant.as_str()),
            (BillingFormat::Focus, "1.0")
        );
        let mut c = base.to_vec();
        c.push("SkuMeter");
        assert_eq!(detect(&h(&c)).unwrap().variant, "1.1");
        c.push("InvoiceId");
        assert_eq!(detect(&h(&c)).unwrap().variant, "1.2");
        c.push("ServiceProviderName");
        assert_eq!(detect(&h(&c)).unwrap().variant, "1.3");
    }

    #[test]
    fn natives_and_unknown() {
        assert_eq!(
            detect(&h(&["lineItem/UnblendedCost"])).unwrap().variant,
            "cur-legacy-csv"
        );
        assert_eq!(
            detect(&h(&["line_item_unblended_cost", "resource_tags"]))
                .unwrap()
                .variant,
            "cur2"
        );
        assert_eq!(
            detect(&h(&["cost", "usage_start_time"])).unwrap().format,
            BillingFormat::Gcp
        );
        assert_eq!(
            detect(&h(&["PreTaxCost", "UsageDateTime", "SubscriptionGuid"]))
                .unwrap()
                .variant,
            "azure-payg"
        );
        assert!(detect(&h(&["lineItem/intervalUsageStart", "cost/myCost"])).is_none());
        assert!(detect(&h(&[])).is_none());
    }
}
