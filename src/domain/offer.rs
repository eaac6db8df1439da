//! Offers: one price for one (provider, region, zone, instance type, market), with the
//! instance's hardware attributes. Invariant: `zone` is `""` when a price is region-wide.
use std::collections::HashMap;
use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;

use super::money::{Currency, Money};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Provider {
    Aws,
    Gcp,
    Azure,
}

impl Provider {
    pub const ALL: [Provider; 3] = [Provider::Aws, Provider::Gcp, Provider::Azure];
    pub fn as_str(&self) -> &'static str {
        match self {
            Provider::Aws => "aws",
            Provider::Gcp => "gcp",
            Provider::Azure => "azure",
        }
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("unknown provider {0:?}: expected aws, gcp or azure")]
pub struct UnknownProvider(pub String);

impl FromStr for Provider {
    type Err = UnknownProvider;
    /// Any spelling `provider_spellings` knows: `aws`, `AWS`, `Amazon Web Services`, `gcp`,
    /// `Google Cloud`, `azure`, `Microsoft`, ...
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let spellings = provider_spellings(s);
        Provider::ALL
            .into_iter()
            .find(|p| spellings.iter().any(|x| x == p.as_str()))
            .ok_or_else(|| UnknownProvider(s.to_string()))
    }
}

impl fmt::Display for Provider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The one provider matcher: every lower-case spelling of the provider `name` names, as the
/// catalog (`aws`) and billing exports (CUR `AWS`, FOCUS `Amazon Web Services`, `Google
/// Cloud`, `Microsoft`) write it. Case and surrounding space do not matter; a name that is
/// none of the three matches only itself. Budgets, spend and the budget gate filter by it
/// (in SQL as `LOWER(provider_name) IN (…)`, on both backends).
pub fn provider_spellings(name: &str) -> Vec<String> {
    let p = name.trim().to_ascii_lowercase();
    let family: &[&str] = match p.as_str() {
        "aws" | "amazon" | "amazon web services" => &["aws", "amazon", "amazon web services"],
        "gcp" | "google" | "google cloud" | "google cloud platform" => {
            &["gcp", "google", "google cloud", "google cloud platform"]
        }
        "azure" | "microsoft" | "microsoft azure" => &["azure", "microsoft", "microsoft azure"],
        _ => return vec![p],
    };
    family.iter().map(|s| s.to_string()).collect()
}

/// Whether two provider names name the same provider (`provider_spellings`).
pub fn same_provider(a: &str, b: &str) -> bool {
    let b = b.trim().to_ascii_lowercase();
    provider_spellings(a).contains(&b)
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Market {
    OnDemand,
    /// AWS spot, GCP spot/preemptible, Azure spot.
    Spot,
}

impl Market {
    pub fn as_str(&self) -> &'static str {
        match self {
            Market::OnDemand => "on_demand",
            Market::Spot => "spot",
        }
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("unknown market {0:?}: expected on_demand or spot")]
pub struct UnknownMarket(pub String);

impl FromStr for Market {
    type Err = UnknownMarket;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().replace('-', "_").as_str() {
            "on_demand" | "ondemand" => Ok(Market::OnDemand),
            "spot" | "preemptible" => Ok(Market::Spot),
            _ => Err(UnknownMarket(s.to_string())),
        }
    }
}

impl fmt::Display for Market {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Hardware of one instance type. Not money, so plain floats are fine here.
#[derive(Clone, Debug, PartialEq, Default)]
pub struct InstanceAttrs {
    pub vcpus: f64,
    pub memory_gib: f64,
    /// Accelerator model in SkyPilot's naming ("A100", "A100-80GB", "H100", "T4"), if any.
    pub gpu_model: Option<String>,
    pub gpu_count: f64,
    /// Memory of one accelerator, GiB.
    pub gpu_memory_gib: f64,
    /// "x86_64" or "arm64".
    pub arch: String,
}

/// Instance types the store already knows, so that sources which report only a price
/// (Azure retail, AWS spot history) can still be matched to hardware.
pub type KnownInstances = HashMap<(Provider, String), InstanceAttrs>;

/// Identity of an offer: what a price is the price of.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct OfferKey {
    pub provider: Provider,
    pub region: String,
    /// `""` when the price is region-wide.
    pub zone: String,
    pub instance_type: String,
    pub market: Market,
}

/// One observed price with what it buys.
#[derive(Clone, Debug, PartialEq)]
pub struct Offer {
    pub key: OfferKey,
    pub price_per_hour: Decimal,
    pub currency: Currency,
    /// `None` when the source does not report hardware (Azure retail, AWS spot history):
    /// the store then keeps whatever it already knows for the instance type.
    pub attrs: Option<InstanceAttrs>,
    /// Name of the source that observed it ("aws-ondemand", "catalog", "seed", ...).
    pub source: String,
    pub observed_at: DateTime<Utc>,
}

impl Offer {
    pub fn price(&self) -> Money {
        Money::new(self.price_per_hour, self.currency)
    }
    pub fn is_seed(&self) -> bool {
        self.source == "seed"
    }
}

/// Spot interruption frequency band for an instance type in a region (AWS spot advisor).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SpotBand {
    pub provider: Provider,
    pub region: String,
    pub instance_type: String,
    /// Index into the advisor's ranges: 0 = "<5%", 1 = "5-10%", 2 = "10-15%",
    /// 3 = "15-20%", 4 = ">20%".
    pub band: u8,
    /// The advisor's label for the band, e.g. "<5%".
    pub label: String,
    /// Typical saving over on-demand, percent.
    pub savings_pct: u8,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn provider_and_market_round_trip() {
        for p in Provider::ALL {
            assert_eq!(p.as_str().parse::<Provider>().unwrap(), p);
        }
        assert!("oracle".parse::<Provider>().is_err());
        assert_eq!("on-demand".parse::<Market>().unwrap(), Market::OnDemand);
        assert_eq!("SPOT".parse::<Market>().unwrap(), Market::Spot);
        assert!("reserved".parse::<Market>().is_err());
    }

    #[test]
    fn one_provider_matcher_for_every_spelling() {
        for (a, b) in [
            ("aws", "AWS"),
            ("AWS", "Amazon Web Services"),
            (" gcp ", "Google Cloud"),
            ("google", "gcp"),
            ("azure", "Microsoft"),
            ("OCI", "oci"),
        ] {
            assert!(same_provider(a, b), "{a} ~ {b}");
            assert!(same_provider(b, a), "{b} ~ {a}");
        }
        assert!(!same_provider("aws", "Google Cloud"));
        assert_eq!("Amazon Web Services".parse::<Provider>(), Ok(Provider::Aws));
        assert_eq!("Microsoft".parse::<Provider>(), Ok(Provider::Azure));
        assert_eq!(" Google ".parse::<Provider>(), Ok(Provider::Gcp));
        assert!("OCI".parse::<Provider>().is_err());
        assert!(!same_provider("OCI", "aws"));
        assert_eq!(
            provider_spellings("Amazon"),
            ["aws", "amazon", "amazon web services"]
        );
    }
}
