//! Price sanity: an offer priced far below what its instance family usually costs is
//! `suspect` (a feed error, a mis-keyed SKU, a region that is not really open). Computed
//! once when the `Catalog` is built, so requests only read a flag.
//!
//! The rule: offers are grouped by (provider, instance family, accelerator model, market,
//! currency). An offer with accelerators is measured per accelerator; one without, per vCPU
//! and per GiB of memory (burstable and shared-core sizes are cheap per vCPU but not per
//! GiB, so both must be low). It is suspect when every measure is below
//! 1/`SUSPECT_DIVISOR` of its group's median. A group of one never flags.
use std::collections::HashMap;
use std::fmt::Write as _;

use rust_decimal::Decimal;

use super::offer::{Market, Offer, Provider};

/// Suspect below one fifth of the family median.
pub const SUSPECT_DIVISOR: u32 = 5;

/// What an offer is measured per.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Unit {
    Accelerator,
    Vcpu,
    GibMemory,
}

impl Unit {
    pub fn as_str(&self) -> &'static str {
        match self {
            Unit::Accelerator => "accelerator",
            Unit::Vcpu => "vCPU",
            Unit::GibMemory => "GiB",
        }
    }
}

/// Why an offer is suspect: its first measure against its family's median.
#[derive(Clone, Debug, PartialEq)]
pub struct Suspicion {
    pub family: String,
    pub unit: Unit,
    /// The offer's price per `unit` per hour.
    pub per_unit: Decimal,
    /// The family's median price per `unit` per hour (same market).
    pub median: Decimal,
}

impl Suspicion {
    /// One line for reasons: "suspect price: 0.002074/h per vCPU, 10% of the
    /// Standard_Fams_v6 spot median 0.019961/h".
    pub fn reason(&self, market: Market) -> String {
        let pct = if self.median.is_zero() {
            Decimal::ZERO
        } else {
            (self.per_unit * Decimal::from(100) / self.median).round_dp(0)
        };
        let mut s = String::with_capacity(96);
        let _ = write!(
            s,
            "suspect price: {}/h per {}, {pct}% of the {} {} median {}/h (below 1/{SUSPECT_DIVISOR})",
            significant(self.per_unit),
            self.unit.as_str(),
            self.family,
            market,
            significant(self.median),
        );
        s
    }
}

/// A per-unit rate rounded to 4 significant digits, for text.
fn significant(d: Decimal) -> Decimal {
    if d.is_zero() {
        return d;
    }
    let mut dp = 0u32;
    let mut v = d.abs();
    while v < Decimal::from(1000) && dp < 20 {
        v *= Decimal::TEN;
        dp += 1;
    }
    d.round_dp(dp).normalize()
}

/// The instance family an instance type belongs to, by each provider's naming:
/// AWS `p4d.24xlarge` → `p4d`; Azure `Standard_D8s_v5` → `Standard_Ds_v5` (the size digits
/// removed, constrained-core `E64-16ds_v4` → `Eds_v4`); GCP `n2-standard-8` →
/// `n2-standard`, `a2-highgpu-1g` → `a2-highgpu`, bursar's composed
/// `n1-highmem-8+T4x1` → `n1-highmem` (numeric parts dropped).
pub fn family(provider: Provider, instance_type: &str) -> String {
    match provider {
        Provider::Aws => instance_type
            .split_once('.')
            .map_or(instance_type, |(f, _)| f)
            .to_string(),
        Provider::Azure => {
            // Drop the first run of digits (and a "-digits" right after it).
            let b = instance_type.as_bytes();
            let Some(start) = b.iter().position(u8::is_ascii_digit) else {
                return instance_type.to_string();
            };
            let mut end = start;
            while end < b.len() && b[end].is_ascii_digit() {
                end += 1;
            }
            if end + 1 < b.len() && b[end] == b'-' && b[end + 1].is_ascii_digit() {
                end += 1;
                while end < b.len() && b[end].is_ascii_digit() {
                    end += 1;
                }
            }
            format!("{}{}", &instance_type[..start], &instance_type[end..])
        }
        Provider::Gcp => {
            let base = instance_type
                .split_once('+')
                .map_or(instance_type, |(b, _)| b);
            let parts: Vec<&str> = base
                .split('-')
                .filter(|p| {
                    let digits = p.strip_suffix('g').unwrap_or(p);
                    digits.is_empty() || !digits.bytes().all(|c| c.is_ascii_digit())
                })
                .collect();
            parts.join("-")
        }
    }
}

/// The measures of an offer: (unit, amount of it), or `None` when it cannot be measured.
fn measures(o: &Offer) -> Option<Vec<(Unit, Decimal)>> {
    let a = o.attrs.as_ref()?;
    let amount = |v: f64| Decimal::try_from(v).ok().filter(|d| *d > Decimal::ZERO);
    if a.gpu_model.as_deref().is_some_and(|m| !m.is_empty()) && a.gpu_count > 0.0 {
        return Some(vec![(Unit::Accelerator, amount(a.gpu_count)?)]);
    }
    Some(vec![
        (Unit::Vcpu, amount(a.vcpus)?),
        (Unit::GibMemory, amount(a.memory_gib)?),
    ])
}

/// The suspect offers among `offers`, by position.
pub fn suspects(offers: &[Offer]) -> HashMap<u32, Suspicion> {
    // Per group: the members' positions and per-unit prices, one column per measure.
    struct Group {
        units: Vec<Unit>,
        members: Vec<u32>,
        rates: Vec<Vec<Decimal>>,
    }
    // Families are worked out once per instance type (a few thousand), not per offer.
    let mut type_family: HashMap<(Provider, &str), u32> = HashMap::new();
    let mut family_ids: HashMap<(Provider, String, Option<String>), u32> = HashMap::new();
    let mut family_names: Vec<String> = Vec::new();
    let mut groups: HashMap<(u32, Market, &str), Group> = HashMap::new();
    for (i, o) in offers.iter().enumerate() {
        let Some(ms) = measures(o) else { continue };
        if o.price_per_hour <= Decimal::ZERO {
            continue;
        }
        let (p, ty) = (o.key.provider, o.key.instance_type.as_str());
        let fam = *type_family.entry((p, ty)).or_insert_with(|| {
            let gpu = o
                .attrs
                .as_ref()
                .and_then(|a| a.gpu_model.as_ref())
                .filter(|_| ms[0].0 == Unit::Accelerator)
                .map(|m| m.to_ascii_lowercase());
            let name = family(p, ty);
            let next = family_ids.len() as u32;
            *family_ids.entry((p, name.clone(), gpu)).or_insert_with(|| {
                family_names.push(name);
                next
            })
        });
        let g = groups
            .entry((fam, o.key.market, o.currency.as_str()))
            .or_insert_with(|| Group {
                units: ms.iter().map(|m| m.0).collect(),
                members: Vec::new(),
                rates: vec![Vec::new(); ms.len()],
            });
        if g.rates.len() != ms.len() {
            // Hardware that disagrees with the type's first offer: not comparable.
            continue;
        }
        g.members.push(i as u32);
        for (col, (_, amount)) in ms.iter().enumerate() {
            g.rates[col].push(o.price_per_hour / amount);
        }
    }
    let mut out = HashMap::new();
    for ((fam, ..), g) in groups {
        let family = &family_names[fam as usize];
        if g.members.len() < 2 {
            continue;
        }
        let medians: Vec<Decimal> = g.rates.iter().map(|r| median(r)).collect();
        let divisor = Decimal::from(SUSPECT_DIVISOR);
        for (m, &pos) in g.members.iter().enumerate() {
            let low = g
                .rates
                .iter()
                .zip(&medians)
                .all(|(r, med)| r[m] * divisor < *med);
            if low {
                out.insert(
                    pos,
                    Suspicion {
                        family: family.clone(),
                        unit: g.units[0],
                        per_unit: g.rates[0][m],
                        median: medians[0],
                    },
                );
            }
        }
    }
    out
}

/// The median of `v` (the mean of the middle two for an even count).
fn median(v: &[Decimal]) -> Decimal {
    let mut s = v.to_vec();
    s.sort_unstable();
    let n = s.len();
    if n == 0 {
        Decimal::ZERO
    } else if n % 2 == 1 {
        s[n / 2]
    } else {
        (s[n / 2 - 1] + s[n / 2]) / Decimal::TWO
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{Currency, InstanceAttrs, OfferKey};
    use chrono::Utc;

    fn offer(
        p: Provider,
        ty: &str,
        m: Market,
        price: &str,
        hw: (f64, f64, Option<(&str, f64)>),
    ) -> Offer {
        Offer {
            key: OfferKey {
                provider: p,
                region: format!("r-{price}"),
                zone: String::new(),
                instance_type: ty.into(),
                market: m,
            },
            price_per_hour: price.parse().unwrap(),
            currency: Currency::USD,
            attrs: Some(InstanceAttrs {
                vcpus: hw.0,
                memory_gib: hw.1,
                gpu_model: hw.2.map(|g| g.0.to_string()),
                gpu_count: hw.2.map_or(0.0, |g| g.1),
                gpu_memory_gib: 0.0,
                arch: "x86_64".into(),
            }),
            source: "test".into(),
            observed_at: Utc::now(),
        }
    }

    #[test]
    fn families_per_provider() {
        assert_eq!(family(Provider::Aws, "p4d.24xlarge"), "p4d");
        assert_eq!(family(Provider::Aws, "m6i.2xlarge"), "m6i");
        assert_eq!(family(Provider::Azure, "Standard_D8s_v5"), "Standard_Ds_v5");
        assert_eq!(
            family(Provider::Azure, "Standard_D96s_v5"),
            "Standard_Ds_v5"
        );
        assert_eq!(
            family(Provider::Azure, "Standard_E64-16ds_v4"),
            "Standard_Eds_v4"
        );
        assert_eq!(
            family(Provider::Azure, "Standard_NC4as_T4_v3"),
            "Standard_NCas_T4_v3"
        );
        assert_eq!(family(Provider::Gcp, "n2-standard-8"), "n2-standard");
        assert_eq!(family(Provider::Gcp, "a2-highgpu-1g"), "a2-highgpu");
        assert_eq!(family(Provider::Gcp, "n1-highmem-8+T4x1"), "n1-highmem");
        assert_eq!(
            family(Provider::Gcp, "c3-standard-4-lssd"),
            "c3-standard-lssd"
        );
        assert_eq!(family(Provider::Gcp, "e2-micro"), "e2-micro");
    }

    #[test]
    fn far_below_the_family_median_is_suspect() {
        let d = |ty: &str, price: &str, cpus: f64| {
            offer(
                Provider::Azure,
                ty,
                Market::OnDemand,
                price,
                (cpus, cpus * 4.0, None),
            )
        };
        // Per vCPU: 0.048, 0.048, 0.05, 0.046 and 0.002 (the outlier); median 0.048.
        let offers = vec![
            d("Standard_D8s_v5", "0.384", 8.0),
            d("Standard_D4s_v5", "0.192", 4.0),
            d("Standard_D2s_v5", "0.1", 2.0),
            d("Standard_D16s_v5", "0.736", 16.0),
            d("Standard_D8s_v5", "0.0166", 8.0),
            // Another family, cheap on its own terms: never compared with the D family.
            d("Standard_B1s", "0.0104", 1.0),
        ];
        let s = suspects(&offers);
        assert_eq!(s.keys().copied().collect::<Vec<_>>(), vec![4]);
        let why = &s[&4];
        assert_eq!(why.family, "Standard_Ds_v5");
        assert_eq!(why.unit, Unit::Vcpu);
        assert_eq!(why.per_unit, "0.002075".parse::<Decimal>().unwrap());
        assert_eq!(why.median, "0.048".parse::<Decimal>().unwrap());
        assert_eq!(
            why.reason(Market::OnDemand),
            "suspect price: 0.002075/h per vCPU, 4% of the Standard_Ds_v5 on_demand median 0.048/h (below 1/5)"
        );
    }

    #[test]
    fn exactly_one_fifth_is_not_suspect_and_markets_do_not_mix() {
        let m = |price: &str, market| {
            offer(
                Provider::Aws,
                "m6i.2xlarge",
                market,
                price,
                (8.0, 32.0, None),
            )
        };
        // Median 0.5; 0.1 is exactly a fifth: not below it.
        let offers = vec![
            m("0.5", Market::OnDemand),
            m("0.5", Market::OnDemand),
            m("0.1", Market::OnDemand),
            // Spot is judged against spot only: 0.09 is not far below 0.1.
            m("0.1", Market::Spot),
            m("0.09", Market::Spot),
        ];
        assert!(suspects(&offers).is_empty());
        let mut offers = offers;
        offers.push(m("0.0999", Market::OnDemand));
        offers.push(m("0.5", Market::OnDemand));
        let s = suspects(&offers);
        assert_eq!(s.keys().copied().collect::<Vec<_>>(), vec![5]);
    }

    #[test]
    fn burstable_sizes_are_cheap_per_vcpu_but_not_per_gib() {
        // t3: price follows memory. nano is 1/8 of the median per vCPU but not per GiB.
        let t = |ty: &str, price: &str, cpus: f64, gib: f64| {
            offer(
                Provider::Aws,
                ty,
                Market::OnDemand,
                price,
                (cpus, gib, None),
            )
        };
        // Per vCPU nano is 0.0026 against a median of 0.0208 (1/8); per GiB all are 0.0104.
        let offers = vec![
            t("t3.nano", "0.0052", 2.0, 0.5),
            t("t3.micro", "0.0104", 2.0, 1.0),
            t("t3.small", "0.0208", 2.0, 2.0),
            t("t3.medium", "0.0416", 2.0, 4.0),
            t("t3.large", "0.0832", 2.0, 8.0),
            t("t3.xlarge", "0.1664", 4.0, 16.0),
            t("t3.2xlarge", "0.3328", 8.0, 32.0),
        ];
        assert!(suspects(&offers).is_empty());
    }

    #[test]
    fn accelerators_are_measured_per_accelerator_and_model() {
        let g = |ty: &str, price: &str, model: &str, n: f64| {
            offer(
                Provider::Gcp,
                ty,
                Market::Spot,
                price,
                (12.0 * n, 85.0 * n, Some((model, n))),
            )
        };
        let offers = vec![
            g("a2-highgpu-1g", "1.2", "A100", 1.0),
            g("a2-highgpu-2g", "2.4", "A100", 2.0),
            g("a2-highgpu-8g", "9.6", "A100", 8.0),
            // 0.2 per GPU, a sixth of 1.2.
            g("a2-highgpu-4g", "0.8", "A100", 4.0),
        ];
        let s = suspects(&offers);
        assert_eq!(s.keys().copied().collect::<Vec<_>>(), vec![3]);
        assert_eq!(s[&3].unit, Unit::Accelerator);
        // A lone member of its group is never suspect.
        assert!(suspects(&offers[3..]).is_empty());
    }
}
