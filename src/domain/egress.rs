//! Data egress pricing ("data gravity"): what moving N GB from where data lives to a
//! candidate region costs. Free inside one region; the source provider's inter-region rate
//! inside one provider (same or cross continent); the source provider's internet egress
//! schedule across providers, with volume tiers applied in order (10 TB out of AWS is
//! 10,240 GB × $0.09, not $0).
//!
//! Arithmetic is exact integers: sizes in milli-GB, rates in nano-dollars per GB, so one
//! `Units` is 1e-12 USD. `EgressTable::default()` carries the providers' public list prices
//! (source and date in `EgressTable::source`); users override them in config.
use rust_decimal::Decimal;

use super::money::{Units, to_milli, to_nanos, units_to_decimal};
use super::offer::Provider;
use super::regions::{Continent, region_info};

/// The continent of `provider`'s `region`, if the region table knows it.
pub fn continent_of(provider: Provider, region: &str) -> Option<Continent> {
    region_info(provider, region).map(|r| r.continent)
}

/// One volume tier: this rate applies to the GB up to `up_to_gb` (cumulative), or to all
/// remaining GB when `None`.
#[derive(Clone, Debug, PartialEq)]
pub struct Tier {
    pub up_to_gb: Option<Decimal>,
    pub per_gb: Decimal,
}

#[derive(Clone, Debug, PartialEq)]
pub struct ProviderEgress {
    /// To another region of the same provider on the same continent.
    pub same_continent_per_gb: Decimal,
    /// To another region of the same provider on another continent (or unknown continent).
    pub cross_continent_per_gb: Decimal,
    /// To the internet (another provider), tiered by volume.
    pub internet: Vec<Tier>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct EgressTable {
    pub aws: ProviderEgress,
    pub gcp: ProviderEgress,
    pub azure: ProviderEgress,
    /// Where the numbers come from and when they were taken.
    pub source: String,
}

/// How a transfer is billed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EgressKind {
    SameRegion,
    SameContinent,
    CrossContinent,
    Internet,
}

fn d(s: &str) -> Decimal {
    s.parse().expect("valid literal")
}

fn tier(up_to: Option<&str>, rate: &str) -> Tier {
    Tier {
        up_to_gb: up_to.map(d),
        per_gb: d(rate),
    }
}

impl Default for EgressTable {
    /// Public list prices (USD), North America / Europe source regions, as published on
    /// the providers' pricing pages (AWS EC2 on-demand "Data Transfer", GCP VPC network
    /// pricing Premium Tier, Azure Bandwidth pricing), taken 2025-06. Per-job volumes: a
    /// job is priced as if it were the month's first egress (free allowances ignored except
    /// Azure's first 100 GB, which is part of its schedule).
    fn default() -> Self {
        EgressTable {
            aws: ProviderEgress {
                same_continent_per_gb: d("0.02"),
                cross_continent_per_gb: d("0.02"),
                internet: vec![
                    tier(Some("10240"), "0.09"),
                    tier(Some("51200"), "0.085"),
                    tier(Some("153600"), "0.07"),
                    tier(None, "0.05"),
                ],
            },
            gcp: ProviderEgress {
                same_continent_per_gb: d("0.02"),
                cross_continent_per_gb: d("0.05"),
                internet: vec![
                    tier(Some("1024"), "0.12"),
                    tier(Some("10240"), "0.11"),
                    tier(None, "0.08"),
                ],
            },
            azure: ProviderEgress {
                same_continent_per_gb: d("0.02"),
                cross_continent_per_gb: d("0.05"),
                internet: vec![
                    tier(Some("100"), "0"),
                    tier(Some("10340"), "0.087"),
                    tier(Some("51300"), "0.083"),
                    tier(Some("153700"), "0.07"),
                    tier(None, "0.05"),
                ],
            },
            source: "AWS EC2 data transfer, GCP VPC Premium Tier, Azure Bandwidth list prices (NA/EU), 2025-06".into(),
        }
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("egress table {field}: {detail}")]
pub struct EgressTableError {
    pub field: String,
    pub detail: String,
}

impl EgressTable {
    pub fn provider(&self, p: Provider) -> &ProviderEgress {
        match p {
            Provider::Aws => &self.aws,
            Provider::Gcp => &self.gcp,
            Provider::Azure => &self.azure,
        }
    }

    /// Checks rates are >= 0 with at most 9 decimals and tiers ascend, ending unbounded.
    pub fn validate(&self) -> Result<(), EgressTableError> {
        for p in Provider::ALL {
            let e = self.provider(p);
            let err = |field: &str, detail: &str| EgressTableError {
                field: format!("{p}.{field}"),
                detail: detail.into(),
            };
            for (f, r) in [
                ("same_continent_per_gb", e.same_continent_per_gb),
                ("cross_continent_per_gb", e.cross_continent_per_gb),
            ] {
                if r.is_sign_negative() || to_nanos(r).is_none() {
                    return Err(err(f, "must be >= 0 with at most 9 decimal places"));
                }
            }
            if e.internet.is_empty() || e.internet.last().is_some_and(|t| t.up_to_gb.is_some()) {
                return Err(err("internet", "tiers must end with one without up_to_gb"));
            }
            let mut prev = Decimal::ZERO;
            for t in &e.internet {
                if t.per_gb.is_sign_negative() || to_nanos(t.per_gb).is_none() {
                    return Err(err(
                        "internet.per_gb",
                        "must be >= 0 with at most 9 decimal places",
                    ));
                }
                if let Some(u) = t.up_to_gb {
                    if u <= prev {
                        return Err(err("internet.up_to_gb", "tiers must ascend"));
                    }
                    prev = u;
                }
            }
        }
        Ok(())
    }

    /// How moving data from (`from`, `from_region`) to (`to`, `to_region`) is billed, given
    /// each region's continent (`continent_of`; None when the region table does not know it).
    /// Callers look continents up once and reuse them: SelectProvider prices every region
    /// group for every input.
    pub fn kind(
        from: Provider,
        from_region: &str,
        from_continent: Option<Continent>,
        to: Provider,
        to_region: &str,
        to_continent: Option<Continent>,
    ) -> EgressKind {
        if from != to {
            return EgressKind::Internet;
        }
        if from_region == to_region {
            return EgressKind::SameRegion;
        }
        match (from_continent, to_continent) {
            (Some(a), Some(b)) if a == b => EgressKind::SameContinent,
            _ => EgressKind::CrossContinent,
        }
    }

    /// Exact cost in units of moving `gb_milli` thousandths of a GB.
    pub fn cost_units(&self, from: Provider, kind: EgressKind, gb_milli: i64) -> Units {
        let e = self.provider(from);
        let flat = |rate: Decimal| i128::from(gb_milli) * i128::from(to_nanos(rate).unwrap_or(0));
        match kind {
            EgressKind::SameRegion => 0,
            EgressKind::SameContinent => flat(e.same_continent_per_gb),
            EgressKind::CrossContinent => flat(e.cross_continent_per_gb),
            EgressKind::Internet => {
                let mut left = i128::from(gb_milli);
                let mut lower = 0i128;
                let mut total = 0i128;
                for t in &e.internet {
                    if left <= 0 {
                        break;
                    }
                    let rate = i128::from(to_nanos(t.per_gb).unwrap_or(0));
                    let span = match t.up_to_gb {
                        Some(u) => (i128::from(to_milli(u).unwrap_or(i64::MAX)) - lower).max(0),
                        None => left,
                    };
                    let n = left.min(span);
                    total += n * rate;
                    left -= n;
                    if let Some(u) = t.up_to_gb {
                        lower = i128::from(to_milli(u).unwrap_or(i64::MAX));
                    }
                }
                total
            }
        }
    }

    /// Exact cost in dollars (convenience over `cost_units`).
    pub fn cost(
        &self,
        from: Provider,
        from_region: &str,
        to: Provider,
        to_region: &str,
        gb: Decimal,
    ) -> Decimal {
        let kind = Self::kind(
            from,
            from_region,
            continent_of(from, from_region),
            to,
            to_region,
            continent_of(to, to_region),
        );
        units_to_decimal(self.cost_units(from, kind, to_milli(gb).unwrap_or(0)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::money::{UNITS_PER_USD, units_to_string};

    #[test]
    fn units_text_matches_decimal_text() {
        for u in [
            0i128,
            1,
            -1,
            UNITS_PER_USD,
            -UNITS_PER_USD,
            65_545_200_000_000,
            1_000_000_000_010,
            123_456_789_012_345_678_901,
            -987_654_321,
            i128::from(i64::MAX) * 1000,
        ] {
            assert_eq!(units_to_string(u), units_to_decimal(u).to_string(), "{u}");
        }
        // Whole dollars beyond 64 bits (past Decimal's range) take the u128 path.
        let big = (i128::from(u64::MAX) + 1) * UNITS_PER_USD;
        assert_eq!(units_to_string(big), "18446744073709551616");
        assert_eq!(
            units_to_string(-big - 5),
            "-18446744073709551616.000000000005"
        );
        let mut x: i128 = 7;
        for _ in 0..2000 {
            x = (x * 6_364_136_223_846_793_005 + 1_442_695_040_888_963_407) % 10_i128.pow(18);
            for u in [x, -x, x * 1000, x / 1000 * 1000, x % 1_000_000] {
                assert_eq!(units_to_string(u), units_to_decimal(u).to_string(), "{u}");
            }
        }
    }

    #[test]
    fn same_region_is_free_and_inter_region_is_flat() {
        let t = EgressTable::default();
        assert_eq!(
            t.cost(
                Provider::Aws,
                "us-east-1",
                Provider::Aws,
                "us-east-1",
                d("2000")
            ),
            Decimal::ZERO
        );
        assert_eq!(
            t.cost(
                Provider::Aws,
                "us-east-1",
                Provider::Aws,
                "us-west-2",
                d("2000")
            ),
            d("40")
        );
        assert_eq!(
            t.cost(
                Provider::Gcp,
                "us-central1",
                Provider::Gcp,
                "europe-west4",
                d("100")
            ),
            d("5")
        );
        assert_eq!(
            t.cost(
                Provider::Gcp,
                "us-central1",
                Provider::Gcp,
                "us-east1",
                d("100")
            ),
            d("2")
        );
    }

    #[test]
    fn internet_tiers_apply_in_order() {
        let t = EgressTable::default();
        // SkyPilot prices 10 TB out of AWS at $0; it is 10,240 GB x $0.09.
        assert_eq!(
            t.cost(
                Provider::Aws,
                "us-east-1",
                Provider::Gcp,
                "us-central1",
                d("10240")
            ),
            d("921.6")
        );
        // 2 TB (2,000 GB) at $0.09.
        assert_eq!(
            t.cost(
                Provider::Aws,
                "us-east-1",
                Provider::Azure,
                "eastus",
                d("2000")
            ),
            d("180")
        );
        // 60 TB: 10,240 x 0.09 + 40,960 x 0.085 + 10,240 x 0.07 (= 61,440 GB)
        assert_eq!(
            t.cost(
                Provider::Aws,
                "us-east-1",
                Provider::Gcp,
                "us-central1",
                d("61440")
            ),
            d("921.6") + d("3481.6") + d("716.8")
        );
        // GCP: 1,024 x 0.12 + 976 x 0.11
        assert_eq!(
            t.cost(
                Provider::Gcp,
                "europe-west4",
                Provider::Aws,
                "us-east-1",
                d("2000")
            ),
            d("230.24")
        );
        // Azure: first 100 GB free, then 0.087
        assert_eq!(
            t.cost(
                Provider::Azure,
                "westeurope",
                Provider::Aws,
                "eu-west-1",
                d("100")
            ),
            Decimal::ZERO
        );
        assert_eq!(
            t.cost(
                Provider::Azure,
                "westeurope",
                Provider::Aws,
                "eu-west-1",
                d("1100")
            ),
            d("87")
        );
    }

    #[test]
    fn fractional_sizes_are_exact() {
        let t = EgressTable::default();
        assert_eq!(
            t.cost(
                Provider::Aws,
                "us-east-1",
                Provider::Gcp,
                "us-central1",
                d("0.5")
            ),
            d("0.045")
        );
        assert_eq!(to_nanos(d("0.0960000000")), Some(96_000_000));
        assert_eq!(to_nanos(d("0.0000000001")), None);
        assert_eq!(to_milli(d("2.0005")), Some(2001));
    }

    #[test]
    fn validation_names_the_field() {
        let mut t = EgressTable::default();
        t.gcp.internet[1].up_to_gb = Some(d("10"));
        assert!(t.validate().unwrap_err().field.starts_with("gcp.internet"));
        let mut t = EgressTable::default();
        t.aws.same_continent_per_gb = d("-1");
        assert_eq!(t.validate().unwrap_err().field, "aws.same_continent_per_gb");
        EgressTable::default().validate().unwrap();
    }
}
