//! Region facts: provider region id → country (ISO 3166-1 alpha-2), continent and city,
//! from `regions.csv` compiled into the binary. Used for jurisdiction constraints and for
//! telling intra- from inter-continent egress.
use std::collections::HashMap;
use std::sync::OnceLock;

use super::offer::Provider;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Continent {
    NorthAmerica,
    SouthAmerica,
    Europe,
    Asia,
    Oceania,
    Africa,
}

impl Continent {
    fn parse(s: &str) -> Option<Continent> {
        Some(match s {
            "NA" => Continent::NorthAmerica,
            "SA" => Continent::SouthAmerica,
            "EU" => Continent::Europe,
            "AS" => Continent::Asia,
            "OC" => Continent::Oceania,
            "AF" => Continent::Africa,
            _ => return None,
        })
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RegionInfo {
    pub country: String,
    pub continent: Continent,
    pub city: String,
}

/// EU member states (ISO 3166-1 alpha-2).
pub const EU: [&str; 27] = [
    "AT", "BE", "BG", "HR", "CY", "CZ", "DK", "EE", "FI", "FR", "DE", "GR", "HU", "IE", "IT", "LV",
    "LT", "LU", "MT", "NL", "PL", "PT", "RO", "SK", "SI", "ES", "SE",
];
/// EEA members outside the EU.
pub const EEA_EXTRA: [&str; 3] = ["IS", "LI", "NO"];

const REGIONS_CSV: &str = include_str!("regions.csv");

/// Provider → region → facts. Keyed by `&'static str` slices of the embedded CSV, so a
/// lookup (once per region group in every SelectProvider call) allocates nothing.
fn table() -> &'static HashMap<Provider, HashMap<&'static str, RegionInfo>> {
    static T: OnceLock<HashMap<Provider, HashMap<&'static str, RegionInfo>>> = OnceLock::new();
    T.get_or_init(|| {
        let mut m: HashMap<Provider, HashMap<&'static str, RegionInfo>> = HashMap::new();
        for line in REGIONS_CSV.lines().skip(1) {
            let f: Vec<&'static str> = line.split(',').map(str::trim).collect();
            if f.len() < 5 {
                continue;
            }
            let (Ok(p), Some(c)) = (f[0].parse::<Provider>(), Continent::parse(f[3])) else {
                continue;
            };
            m.entry(p).or_default().insert(
                f[1],
                RegionInfo {
                    country: f[2].to_ascii_uppercase(),
                    continent: c,
                    city: f[4].to_string(),
                },
            );
        }
        m
    })
}

/// Facts about a region, if the table knows it.
pub fn region_info(provider: Provider, region: &str) -> Option<&'static RegionInfo> {
    table().get(&provider)?.get(region)
}

/// Every region the table knows for `provider`.
pub fn known_regions(provider: Provider) -> Vec<&'static str> {
    let mut v: Vec<&'static str> = table()
        .get(&provider)
        .map(|m| m.keys().copied().collect())
        .unwrap_or_default();
    v.sort_unstable();
    v
}

/// A jurisdiction a caller may ask for: "EU", "EEA", or an ISO country code ("US", "DE";
/// "UK" is accepted for GB).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Jurisdiction {
    Eu,
    Eea,
    Country(String),
}

impl Jurisdiction {
    pub fn parse(s: &str) -> Option<Jurisdiction> {
        let u = s.trim().to_ascii_uppercase();
        match u.as_str() {
            "EU" => Some(Jurisdiction::Eu),
            "EEA" => Some(Jurisdiction::Eea),
            "UK" => Some(Jurisdiction::Country("GB".into())),
            c if c.len() == 2 && c.bytes().all(|b| b.is_ascii_uppercase()) => {
                Some(Jurisdiction::Country(c.to_string()))
            }
            _ => None,
        }
    }

    pub fn contains(&self, country: &str) -> bool {
        match self {
            Jurisdiction::Eu => EU.contains(&country),
            Jurisdiction::Eea => EU.contains(&country) || EEA_EXTRA.contains(&country),
            Jurisdiction::Country(c) => c == country,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_knows_common_regions() {
        let r = region_info(Provider::Aws, "us-east-1").unwrap();
        assert_eq!(
            (r.country.as_str(), r.continent),
            ("US", Continent::NorthAmerica)
        );
        let r = region_info(Provider::Gcp, "europe-west4").unwrap();
        assert_eq!((r.country.as_str(), r.continent), ("NL", Continent::Europe));
        let r = region_info(Provider::Azure, "westeurope").unwrap();
        assert_eq!(r.country, "NL");
        assert!(region_info(Provider::Aws, "mars-north-1").is_none());
        assert!(known_regions(Provider::Gcp).contains(&"us-central1"));
    }

    #[test]
    fn jurisdictions() {
        let eu = Jurisdiction::parse("eu").unwrap();
        assert!(eu.contains("DE") && eu.contains("IE") && !eu.contains("GB") && !eu.contains("NO"));
        assert!(Jurisdiction::parse("EEA").unwrap().contains("NO"));
        assert!(Jurisdiction::parse("UK").unwrap().contains("GB"));
        assert!(Jurisdiction::parse("US").unwrap().contains("US"));
        assert!(Jurisdiction::parse("Europe").is_none());
    }
}
