//! The seed snapshot: about 180 real public list and spot prices for common CPU and GPU
//! instance types on AWS, GCP and Azure, shipped in `seed/prices.csv` and compiled into the
//! binary, so that a fresh install with an empty database can answer price queries before
//! its first poll or import. Offers carry source `"seed"` and `observed_at` = the row's
//! `taken_on` date at 00:00 UTC; provenance and regeneration are in `seed/README.md`.
//!
//! Invariants (checked by `parse_seed`, so a bad edit fails the unit tests, not production):
//! every price is > 0 and exact (`Decimal`), no two rows share an `OfferKey`, `zone` is `""`
//! exactly when the price is region-wide.
use std::collections::HashSet;

use chrono::{DateTime, NaiveDate, Utc};
use csv::{ReaderBuilder, StringRecord};
use rust_decimal::Decimal;

use crate::domain::money::parse_amount;
use crate::domain::{Currency, InstanceAttrs, Market, Offer, OfferKey, Provider};

/// The snapshot as shipped.
pub const SEED_CSV: &str = include_str!("../../seed/prices.csv");
/// The `source` of every seed offer (`Offer::is_seed` keys on it).
pub const SEED_SOURCE: &str = "seed";
/// The newest `taken_on` in the snapshot (GCP and Azure rows; AWS rows are older, see
/// `seed/README.md`). A unit test keeps it in step with the CSV.
pub const SEED_TAKEN_ON: &str = "2026-05-20";

const COLUMNS: [&str; 14] = [
    "provider",
    "region",
    "zone",
    "instance_type",
    "market",
    "price_per_hour",
    "currency",
    "vcpus",
    "memory_gib",
    "gpu_model",
    "gpu_count",
    "gpu_memory_gib",
    "arch",
    "taken_on",
];

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SeedError {
    #[error("seed prices: missing column {0:?}")]
    MissingColumn(&'static str),
    #[error("seed prices line {line}: {detail}")]
    Row { line: u64, detail: String },
}

/// `SEED_TAKEN_ON` as a date.
pub fn seed_taken_on() -> NaiveDate {
    NaiveDate::parse_from_str(SEED_TAKEN_ON, "%Y-%m-%d").expect("SEED_TAKEN_ON is a date")
}

/// The shipped snapshot as offers.
pub fn seed_offers() -> Result<Vec<Offer>, SeedError> {
    parse_seed(SEED_CSV)
}

/// Parses text in the seed format (header row with the columns of `seed/prices.csv`, in
/// any order).
pub fn parse_seed(text: &str) -> Result<Vec<Offer>, SeedError> {
    let mut rdr = ReaderBuilder::new()
        .has_headers(true)
        .flexible(false)
        .from_reader(text.as_bytes());
    let headers = rdr
        .headers()
        .map_err(|e| SeedError::Row {
            line: 1,
            detail: e.to_string(),
        })?
        .clone();
    let mut idx = [0usize; COLUMNS.len()];
    for (i, name) in COLUMNS.iter().enumerate() {
        idx[i] = headers
            .iter()
            .position(|h| h.trim() == *name)
            .ok_or(SeedError::MissingColumn(name))?;
    }

    let mut offers = Vec::new();
    let mut keys = HashSet::new();
    let mut rec = StringRecord::new();
    loop {
        let more = rdr.read_record(&mut rec).map_err(|e| SeedError::Row {
            line: e.position().map(|p| p.line()).unwrap_or(0),
            detail: e.to_string(),
        })?;
        if !more {
            break;
        }
        let line = rec.position().map(|p| p.line()).unwrap_or(0);
        let offer = parse_row(&rec, &idx).map_err(|detail| SeedError::Row { line, detail })?;
        if !keys.insert(offer.key.clone()) {
            return Err(SeedError::Row {
                line,
                detail: format!("duplicate offer {:?}", offer.key),
            });
        }
        offers.push(offer);
    }
    Ok(offers)
}

fn parse_row(rec: &StringRecord, idx: &[usize; COLUMNS.len()]) -> Result<Offer, String> {
    let get = |i: usize| rec.get(idx[i]).unwrap_or("").trim();
    let float = |i: usize| -> Result<f64, String> {
        let v = get(i);
        match v.parse::<f64>() {
            Ok(x) if x.is_finite() && x >= 0.0 => Ok(x),
            _ => Err(format!("{} {v:?} is not a non-negative number", COLUMNS[i])),
        }
    };

    let provider: Provider = get(0).parse().map_err(|e| format!("{e}"))?;
    let region = get(1);
    if region.is_empty() {
        return Err("empty region".into());
    }
    let zone = get(2);
    let instance_type = get(3);
    if instance_type.is_empty() {
        return Err("empty instance_type".into());
    }
    let market: Market = get(4).parse().map_err(|e| format!("{e}"))?;
    let price: Decimal = parse_amount(get(5)).map_err(|e| format!("price_per_hour: {e}"))?;
    if price <= Decimal::ZERO {
        return Err(format!("price_per_hour {price} is not positive"));
    }
    let currency: Currency = get(6).parse().map_err(|e| format!("{e}"))?;
    let gpu_model = get(9);
    let taken_on = NaiveDate::parse_from_str(get(13), "%Y-%m-%d")
        .map_err(|e| format!("taken_on {:?}: {e}", get(13)))?;
    let observed_at: DateTime<Utc> = taken_on
        .and_hms_opt(0, 0, 0)
        .expect("midnight exists")
        .and_utc();
    let arch = match get(12) {
        "" => "x86_64",
        a => a,
    };

    Ok(Offer {
        key: OfferKey {
            provider,
            region: region.to_string(),
            zone: zone.to_string(),
            instance_type: instance_type.to_string(),
            market,
        },
        price_per_hour: price.normalize(),
        currency,
        attrs: Some(InstanceAttrs {
            vcpus: float(7)?,
            memory_gib: float(8)?,
            gpu_model: (!gpu_model.is_empty()).then(|| gpu_model.to_string()),
            gpu_count: if gpu_model.is_empty() {
                0.0
            } else {
                float(10)?
            },
            gpu_memory_gib: if gpu_model.is_empty() {
                0.0
            } else {
                float(11)?
            },
            arch: arch.to_string(),
        }),
        source: SEED_SOURCE.to_string(),
        observed_at,
    })
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;

    fn find<'a>(offers: &'a [Offer], p: Provider, region: &str, ty: &str, m: Market) -> &'a Offer {
        offers
            .iter()
            .find(|o| {
                o.key.provider == p
                    && o.key.region == region
                    && o.key.instance_type == ty
                    && o.key.market == m
            })
            .unwrap_or_else(|| panic!("no seed offer {p} {region} {ty} {m}"))
    }

    #[test]
    fn seed_parses_and_covers_all_clouds_and_markets() {
        let offers = seed_offers().unwrap();
        assert!((100..=200).contains(&offers.len()), "{} rows", offers.len());
        let combos: BTreeSet<(Provider, Market)> = offers
            .iter()
            .map(|o| (o.key.provider, o.key.market))
            .collect();
        for p in Provider::ALL {
            for m in [Market::OnDemand, Market::Spot] {
                assert!(combos.contains(&(p, m)), "no {p} {m} offers");
            }
        }
        for o in &offers {
            assert!(o.price_per_hour > Decimal::ZERO, "{o:?}");
            assert_eq!(o.currency, Currency::USD, "{o:?}");
            assert!(o.is_seed());
            let a = o.attrs.as_ref().unwrap();
            assert!(a.vcpus > 0.0 && a.memory_gib > 0.0, "{o:?}");
            assert_eq!(a.gpu_model.is_some(), a.gpu_count > 0.0, "{o:?}");
            // AWS and Azure on-demand prices are region-wide; GCP prices are per zone.
            let region_wide = match o.key.provider {
                Provider::Gcp => false,
                Provider::Azure => true,
                Provider::Aws => o.key.market == Market::OnDemand,
            };
            assert_eq!(o.key.zone.is_empty(), region_wide, "{o:?}");
        }
        let a100 = offers
            .iter()
            .filter(|o| {
                o.attrs
                    .as_ref()
                    .unwrap()
                    .gpu_model
                    .as_deref()
                    .is_some_and(|g| g.starts_with("A100"))
            })
            .count();
        assert!(a100 >= 10, "{a100} A100 offers");
        for p in Provider::ALL {
            assert!(offers.iter().any(|o| o.key.provider == p
                && o.attrs.as_ref().unwrap().gpu_model.as_deref() == Some("A100")));
        }
    }

    #[test]
    fn seed_dates() {
        let offers = seed_offers().unwrap();
        let newest = offers.iter().map(|o| o.observed_at).max().unwrap();
        assert_eq!(newest.date_naive(), seed_taken_on());
        let gcp = find(
            &offers,
            Provider::Gcp,
            "us-central1",
            "n2-standard-8",
            Market::OnDemand,
        );
        assert_eq!(gcp.observed_at.to_rfc3339(), "2026-05-20T00:00:00+00:00");
        let aws = find(
            &offers,
            Provider::Aws,
            "us-east-1",
            "p4d.24xlarge",
            Market::OnDemand,
        );
        assert_eq!(aws.observed_at.to_rfc3339(), "2025-06-01T00:00:00+00:00");
    }

    /// The seed's numbers are the catalog's (same composition rules as the importer).
    #[test]
    fn seed_matches_known_catalog_prices() {
        let offers = seed_offers().unwrap();
        let price = |p, r, t, m| find(&offers, p, r, t, m).price_per_hour.to_string();
        use Market::*;
        use Provider::*;
        assert_eq!(
            price(Aws, "us-east-1", "p4d.24xlarge", OnDemand),
            "21.957642"
        );
        assert_eq!(price(Aws, "us-east-1", "p5.48xlarge", OnDemand), "55.04");
        assert_eq!(
            price(Gcp, "us-central1", "a2-highgpu-1g", OnDemand),
            "3.67339"
        );
        assert_eq!(
            price(Gcp, "us-central1", "n1-highmem-8+T4x1", Spot),
            "0.33816"
        );
        assert_eq!(
            price(Azure, "eastus", "Standard_ND96asr_v4", OnDemand),
            "27.197"
        );
        assert_eq!(price(Azure, "eastus", "Standard_D2s_v3", OnDemand), "0.096");
        let arm = find(&offers, Azure, "eastus", "Standard_D4ps_v5", OnDemand);
        assert_eq!(arm.attrs.as_ref().unwrap().arch, "arm64");
    }

    /// Every seed row is also produced, with the same price and hardware, by importing the
    /// catalog it was taken from.
    #[test]
    fn seed_agrees_with_catalog_import() {
        use crate::clouds::skypilot::{ImportOptions, load_catalog_dir};
        let dir = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../shared/data/skypilot-catalog"
        );
        let (catalog, _) =
            load_catalog_dir(std::path::Path::new(dir), &ImportOptions::default()).unwrap();
        let by_key: std::collections::HashMap<_, _> = catalog.iter().map(|o| (&o.key, o)).collect();
        for s in seed_offers().unwrap() {
            let c = by_key
                .get(&s.key)
                .unwrap_or_else(|| panic!("not in catalog: {:?}", s.key));
            assert_eq!(c.price_per_hour, s.price_per_hour, "{:?}", s.key);
            assert_eq!(c.attrs, s.attrs, "{:?}", s.key);
        }
    }

    #[test]
    fn bad_seed_rows_name_the_line() {
        let header = COLUMNS.join(",");
        let ok = "aws,us-east-1,,m6i.large,on_demand,0.096,USD,2,8,,0,0,x86_64,2026-05-20";
        assert_eq!(parse_seed(&format!("{header}\n{ok}\n")).unwrap().len(), 1);
        let zero = "aws,us-east-1,,m6i.xlarge,on_demand,0,USD,4,16,,0,0,x86_64,2026-05-20";
        let err = parse_seed(&format!("{header}\n{ok}\n{zero}\n")).unwrap_err();
        assert!(matches!(err, SeedError::Row { line: 3, .. }), "{err:?}");
        let err = parse_seed(&format!("{header}\n{ok}\n{ok}\n")).unwrap_err();
        assert!(err.to_string().contains("line 3") && err.to_string().contains("duplicate"));
        let bad_market = ok.replace("on_demand", "reserved");
        assert!(parse_seed(&format!("{header}\n{bad_market}\n")).is_err());
        let err = parse_seed("provider,region\naws,us-east-1\n").unwrap_err();
        assert_eq!(err, SeedError::MissingColumn("zone"));
    }
}
