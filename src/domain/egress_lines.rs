//! Which cost lines are egress (data transfer) and how many GB they moved: the rule an
//! egress budget counts by (`egress_gb_per_unit`), with the data-volume units it knows
//! (`egress_unit_factor`) and the service categories that never move data
//! (`NON_TRANSFER_CATEGORIES`). Pure; the store applies it to the lines it reads.
use rust_decimal::Decimal;

/// FOCUS service categories whose per-GB lines meter data *processed*, not moved (log
/// ingestion, scanned bytes, analysed events): never egress.
pub const NON_TRANSFER_CATEGORIES: [&str; 3] =
    ["Analytics", "Management and Governance", "Security"];

/// How many GB one unit of `unit` is, for plain data-volume units (GB, GiB, TB, TiB, MB, MiB,
/// bytes and their long names, optionally with a count like Azure's `10 GB`); `None` for
/// anything else, including time-integrated units such as `GB-Mo`, `GB Hours`,
/// `Lambda-GB-Seconds`. Binary units convert exactly (1 GiB = 1.073741824 GB).
pub fn egress_unit_factor(unit: &str) -> Option<Decimal> {
    let u = unit.trim().to_ascii_lowercase();
    let (count, base) = match u.split_once(' ') {
        Some((n, rest)) if n.chars().all(|c| c.is_ascii_digit()) => {
            (n.parse::<Decimal>().ok()?, rest.trim())
        }
        _ => (Decimal::ONE, u.as_str()),
    };
    let gb: Decimal = match base {
        "b" | "byte" | "bytes" => Decimal::new(1, 9),
        "kb" | "kilobyte" | "kilobytes" => Decimal::new(1, 6),
        "kib" | "kibibyte" | "kibibytes" => Decimal::new(1024, 9),
        "mb" | "megabyte" | "megabytes" => Decimal::new(1, 3),
        "mib" | "mebibyte" | "mebibytes" => Decimal::new(1_048_576, 9),
        "gb" | "gigabyte" | "gigabytes" => Decimal::ONE,
        "gib" | "gibibyte" | "gibibytes" => Decimal::new(1_073_741_824, 9),
        "tb" | "terabyte" | "terabytes" => Decimal::new(1000, 0),
        "tib" | "tebibyte" | "tebibytes" => Decimal::new(1_099_511_627_776, 9),
        "pb" | "petabyte" | "petabytes" => Decimal::new(1_000_000, 0),
        "pib" | "pebibyte" | "pebibytes" => Decimal::new(1_125_899_906_842_624, 9),
        _ => return None,
    };
    // A count too large for an exact decimal is no unit bursar knows.
    count.checked_mul(gb)
}

/// The egress rule: how many GB one unit of a cost line's consumed quantity is, when the line
/// is egress (data transfer); `None` when it is not. A line is egress when all of:
/// 1. its charge category is `Usage`;
/// 2. it is measured in a plain data-volume unit ([`egress_unit_factor`]);
/// 3. the provider charges for it: billed cost > 0 or list cost > 0;
/// 4. its service category, when the export has one, is not one of
///    [`NON_TRANSFER_CATEGORIES`].
///
/// Why: the stored columns carry no transfer direction (CUR's `UsageType` and FOCUS's
/// `ChargeDescription` are not kept), but in every real sample in `../shared/data` inbound
/// transfer (`DataTransfer-In-Bytes`, `AWS-In-Bytes`, "data transfer in per month") and
/// free-tier lines are billed and listed at 0, while outbound, inter-region and inter-AZ
/// transfer are charged per GB. Most AWS egress is reported under EC2 (FOCUS category
/// `Compute`), so `service_category = 'Networking'` alone would miss it, and CUR and GCP
/// exports have no service category at all. Per-GB processing charges on the same unit
/// (NAT gateway, load balancer data processed; GuardDuty or log ingestion in CUR and GCP,
/// which have no category to exclude them) still count: the rule errs towards more GB.
/// On the samples: FOCUS `focus_sample.csv` → 272 lines, 5.25487946858897 GB; the
/// anonymised CUR → its `*-Out-Bytes` lines plus billed inter-AZ `DataTransfer-Regional-Bytes`.
pub fn egress_gb_per_unit(
    charge_category: &str,
    service_category: Option<&str>,
    billed: Decimal,
    list: Option<Decimal>,
    unit: Option<&str>,
) -> Option<Decimal> {
    if !charged(billed, list) {
        return None;
    }
    egress_factor(charge_category, service_category, unit)
}

/// Clauses 1, 2 and 4 of [`egress_gb_per_unit`], which depend only on a line's descriptive
/// fields: GB per unit of quantity when lines with these fields are egress once charged.
/// Whoever sums many lines computes it once per combination of fields.
pub fn egress_factor(
    charge_category: &str,
    service_category: Option<&str>,
    unit: Option<&str>,
) -> Option<Decimal> {
    if charge_category != "Usage" {
        return None;
    }
    if let Some(c) = service_category
        && NON_TRANSFER_CATEGORIES.contains(&c)
    {
        return None;
    }
    egress_unit_factor(unit?)
}

/// Clause 3 of [`egress_gb_per_unit`]: the provider charges for the line (billed cost > 0
/// or list cost > 0).
pub fn charged(billed: Decimal, list: Option<Decimal>) -> bool {
    billed > Decimal::ZERO || list.is_some_and(|l| l > Decimal::ZERO)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(s: &str) -> Decimal {
        s.parse().unwrap()
    }

    #[test]
    fn volume_units_convert_exactly_and_time_integrated_units_are_not_volume() {
        assert_eq!(egress_unit_factor("GB"), Some(Decimal::ONE));
        assert_eq!(egress_unit_factor("gibibyte"), Some(d("1.073741824")));
        assert_eq!(egress_unit_factor("GiB"), Some(d("1.073741824")));
        assert_eq!(egress_unit_factor("TB"), Some(d("1000")));
        assert_eq!(egress_unit_factor("TiB"), Some(d("1099.511627776")));
        assert_eq!(egress_unit_factor("bytes"), Some(d("0.000000001")));
        assert_eq!(egress_unit_factor("10 GB"), Some(d("10")));
        for u in [
            "GB-Mo",
            "GB-Months",
            "GB Hours",
            "GB Months",
            "Lambda-GB-Seconds",
            "GiB/Second-Months",
            "Gigabyte Per Hour",
            "Hours",
            "Requests",
            "",
        ] {
            assert_eq!(egress_unit_factor(u), None, "{u}");
        }
    }

    #[test]
    fn the_egress_rule() {
        let gb = Some("GB");
        let z = Decimal::ZERO;
        let c = d("0.01");
        assert_eq!(
            egress_gb_per_unit("Usage", Some("Compute"), c, None, gb),
            Some(Decimal::ONE)
        );
        assert_eq!(
            egress_gb_per_unit("Usage", None, z, Some(c), gb),
            Some(Decimal::ONE)
        );
        // Free inbound transfer, credits, non-volume units and processing categories are not.
        assert_eq!(
            egress_gb_per_unit("Usage", Some("Networking"), z, Some(z), gb),
            None
        );
        assert_eq!(egress_gb_per_unit("Credit", None, c, None, gb), None);
        assert_eq!(
            egress_gb_per_unit("Usage", None, c, None, Some("GB-Mo")),
            None
        );
        assert_eq!(egress_gb_per_unit("Usage", None, c, None, None), None);
        assert_eq!(
            egress_gb_per_unit("Usage", Some("Management and Governance"), c, None, gb),
            None
        );
    }

    #[test]
    fn the_rule_splits_into_fields_and_money() {
        assert_eq!(
            egress_factor("Usage", Some("Networking"), Some("GiB")),
            Some(d("1.073741824"))
        );
        assert_eq!(egress_factor("Tax", None, Some("GB")), None);
        assert_eq!(egress_factor("Usage", Some("Security"), Some("GB")), None);
        assert_eq!(egress_factor("Usage", None, None), None);
        assert!(charged(d("0.01"), None));
        assert!(charged(Decimal::ZERO, Some(d("0.01"))));
        assert!(!charged(Decimal::ZERO, Some(Decimal::ZERO)));
        assert!(!charged(d("-1"), None));
    }
}
