//! The in-memory price catalog: every current offer, sorted once by (price, key), with spot
//! interruption bands. Built from the store after each poll or import and swapped atomically
//! (`CatalogHandle`); reads never touch the database.
//! Invariant: `offers` is sorted by `Catalog::order` and holds one entry per `OfferKey`.
use std::cmp::Ordering;
use std::collections::HashMap;
use std::sync::Arc;

use arc_swap::ArcSwap;
use chrono::{DateTime, Utc};
use rust_decimal::Decimal;

use super::offer::{Market, Offer, OfferKey, Provider, SpotBand};
use super::placement::PlacementIndex;
use super::sanity::{self, Suspicion};

#[derive(Debug, Default)]
pub struct Catalog {
    offers: Vec<Offer>,
    bands: HashMap<(Provider, String, String), SpotBand>,
    pub built_at: Option<DateTime<Utc>>,
    /// Offers priced far below their family (`sanity`), by position in `offers`.
    suspects: HashMap<u32, Suspicion>,
    placement: PlacementIndex,
    lists: ListIndex,
}

/// Offer positions (in catalog order, hence price order) per filterable value, so a
/// filtered ListPrices scans only the smallest list that applies.
#[derive(Debug, Default)]
struct ListIndex {
    by_region: HashMap<String, Vec<u32>>,
    by_type: HashMap<String, Vec<u32>>,
    /// Lower-cased accelerator model.
    by_gpu: HashMap<String, Vec<u32>>,
    /// [provider][market]
    by_provider_market: [[Vec<u32>; 2]; 3],
}

impl ListIndex {
    fn build(offers: &[Offer]) -> Self {
        let mut ix = ListIndex::default();
        for (i, o) in offers.iter().enumerate() {
            let i = i as u32;
            ix.by_region
                .entry(o.key.region.clone())
                .or_default()
                .push(i);
            ix.by_type
                .entry(o.key.instance_type.clone())
                .or_default()
                .push(i);
            if let Some(m) = o.attrs.as_ref().and_then(|a| a.gpu_model.as_ref()) {
                ix.by_gpu.entry(m.to_ascii_lowercase()).or_default().push(i);
            }
            let p = match o.key.provider {
                Provider::Aws => 0,
                Provider::Gcp => 1,
                Provider::Azure => 2,
            };
            ix.by_provider_market[p][usize::from(o.key.market == Market::Spot)].push(i);
        }
        ix
    }
}

/// What `ListPrices` filters on. `None`/zero means "no filter".
#[derive(Clone, Debug, Default, PartialEq)]
pub struct PriceFilter {
    pub provider: Option<Provider>,
    pub region: Option<String>,
    pub instance_type: Option<String>,
    /// Case-insensitive accelerator model.
    pub gpu_model: Option<String>,
    pub min_gpu_count: u32,
    pub market: Option<Market>,
    pub max_price_per_hour: Option<Decimal>,
}

/// One page of a filtered listing.
#[derive(Debug)]
pub struct PricePage<'a> {
    pub offers: Vec<&'a Offer>,
    /// Resume after this offer (keyset pagination: stable across catalog swaps).
    pub next_after: Option<&'a Offer>,
    pub total_matching: u64,
}

impl PriceFilter {
    pub fn matches(&self, o: &Offer) -> bool {
        if self.provider.is_some_and(|p| p != o.key.provider) {
            return false;
        }
        if self.market.is_some_and(|m| m != o.key.market) {
            return false;
        }
        if self.region.as_ref().is_some_and(|r| r != &o.key.region) {
            return false;
        }
        if self
            .instance_type
            .as_ref()
            .is_some_and(|t| t != &o.key.instance_type)
        {
            return false;
        }
        if self
            .max_price_per_hour
            .is_some_and(|max| o.price_per_hour > max)
        {
            return false;
        }
        if self.gpu_model.is_some() || self.min_gpu_count > 0 {
            let Some(a) = &o.attrs else { return false };
            if let Some(want) = &self.gpu_model {
                match &a.gpu_model {
                    Some(have) if have.eq_ignore_ascii_case(want) => {}
                    _ => return false,
                }
            }
            if a.gpu_count < f64::from(self.min_gpu_count) {
                return false;
            }
        }
        true
    }
}

impl Catalog {
    /// Sources whose prices are snapshots, superseded by any live feed for the same
    /// (provider, region, instance type, market).
    pub const OFFLINE_SOURCES: [&'static str; 2] = ["seed", "catalog"];

    pub fn new(mut offers: Vec<Offer>, bands: Vec<SpotBand>) -> Self {
        // Live prices supersede offline snapshots of the same offer family: zones may be
        // named differently (AWS AZ ids vs names, GCP per-zone vs region-wide), so match on
        // (provider, region, type, market).
        let live: std::collections::HashSet<(Provider, &str, &str, Market)> = offers
            .iter()
            .filter(|o| !Self::OFFLINE_SOURCES.contains(&o.source.as_str()))
            .map(|o| {
                (
                    o.key.provider,
                    o.key.region.as_str(),
                    o.key.instance_type.as_str(),
                    o.key.market,
                )
            })
            .collect();
        if !live.is_empty() {
            let drop: Vec<bool> = offers
                .iter()
                .map(|o| {
                    Self::OFFLINE_SOURCES.contains(&o.source.as_str())
                        && live.contains(&(
                            o.key.provider,
                            o.key.region.as_str(),
                            o.key.instance_type.as_str(),
                            o.key.market,
                        ))
                })
                .collect();
            let mut i = 0;
            offers.retain(|_| {
                let keep = !drop[i];
                i += 1;
                keep
            });
        }
        offers.sort_by(Self::order);
        offers.dedup_by(|a, b| a.key == b.key);
        let bands = bands
            .into_iter()
            .map(|b| ((b.provider, b.region.clone(), b.instance_type.clone()), b))
            .collect();
        let suspects = sanity::suspects(&offers);
        let mut c = Catalog {
            offers,
            bands,
            built_at: Some(Utc::now()),
            suspects,
            placement: PlacementIndex::default(),
            lists: ListIndex::default(),
        };
        let ix = PlacementIndex::build(
            &c.offers,
            |o| {
                c.band(o.key.provider, &o.key.region, &o.key.instance_type)
                    .map(|b| b.band)
            },
            |i| c.suspicion_at(i).is_some(),
        );
        c.placement = ix;
        c.lists = ListIndex::build(&c.offers);
        c
    }

    /// The offers indexed for SelectProvider.
    pub fn placement(&self) -> &PlacementIndex {
        &self.placement
    }

    /// Listing order: cheapest first, then by key so that ties are deterministic.
    pub fn order(a: &Offer, b: &Offer) -> Ordering {
        a.price_per_hour
            .cmp(&b.price_per_hour)
            .then_with(|| a.key.cmp(&b.key))
    }

    pub fn len(&self) -> usize {
        self.offers.len()
    }
    pub fn is_empty(&self) -> bool {
        self.offers.is_empty()
    }
    pub fn offers(&self) -> &[Offer] {
        &self.offers
    }

    /// Why the offer at `pos` (in `offers()`) is suspect, if it is.
    pub fn suspicion_at(&self, pos: usize) -> Option<&Suspicion> {
        self.suspects.get(&u32::try_from(pos).ok()?)
    }

    /// Why `o`, an offer of this catalog, is suspect, if it is (found by its listing order).
    pub fn suspicion(&self, o: &Offer) -> Option<&Suspicion> {
        if self.suspects.is_empty() {
            return None;
        }
        let pos = self.offers.binary_search_by(|x| Self::order(x, o)).ok()?;
        self.suspicion_at(pos)
    }

    /// True when every offer comes from the seed snapshot.
    pub fn seed_only(&self) -> bool {
        !self.offers.is_empty() && self.offers.iter().all(Offer::is_seed)
    }

    pub fn band(&self, provider: Provider, region: &str, instance_type: &str) -> Option<&SpotBand> {
        self.bands
            .get(&(provider, region.to_string(), instance_type.to_string()))
    }

    /// Filtered page of at most `page_size` offers, starting after `after` (price, key).
    /// Scans only the smallest index list that applies, stops at `max_price_per_hour` (lists
    /// are in price order), and answers unfiltered or price-only listings by binary search.
    pub fn list(
        &self,
        filter: &PriceFilter,
        after: Option<&(Decimal, OfferKey)>,
        page_size: usize,
    ) -> PricePage<'_> {
        static EMPTY: Vec<u32> = Vec::new();
        let lists = &self.lists;
        let mut applicable: Vec<&Vec<u32>> = Vec::new();
        if let Some(r) = &filter.region {
            applicable.push(lists.by_region.get(r).unwrap_or(&EMPTY));
        }
        if let Some(t) = &filter.instance_type {
            applicable.push(lists.by_type.get(t).unwrap_or(&EMPTY));
        }
        if let Some(g) = &filter.gpu_model {
            applicable.push(lists.by_gpu.get(&g.to_ascii_lowercase()).unwrap_or(&EMPTY));
        }
        if let (Some(p), Some(m)) = (filter.provider, filter.market) {
            let p = match p {
                Provider::Aws => 0,
                Provider::Gcp => 1,
                Provider::Azure => 2,
            };
            applicable.push(&lists.by_provider_market[p][usize::from(m == Market::Spot)]);
        }
        let candidates: Option<&Vec<u32>> = applicable.into_iter().min_by_key(|l| l.len());
        let price_only = filter.provider.is_none()
            && filter.market.is_none()
            && filter.region.is_none()
            && filter.instance_type.is_none()
            && filter.gpu_model.is_none()
            && filter.min_gpu_count == 0;
        let after_pos = |o: &Offer| match after {
            None => true,
            Some((price, key)) => (o.price_per_hour, &o.key) > (*price, key),
        };
        let mut total = 0u64;
        let mut page = Vec::with_capacity(page_size.min(1024));
        let mut more = false;
        match candidates {
            None if price_only => {
                // Everything, or everything up to a price: positions by binary search.
                let end = match filter.max_price_per_hour {
                    None => self.offers.len(),
                    Some(max) => self.offers.partition_point(|o| o.price_per_hour <= max),
                };
                let start = match after {
                    None => 0,
                    Some((price, key)) => self
                        .offers
                        .partition_point(|o| (o.price_per_hour, &o.key) <= (*price, key)),
                };
                total = end as u64;
                let stop = end.min(start.saturating_add(page_size));
                page.extend(self.offers[start.min(end)..stop].iter());
                more = stop < end;
            }
            scan => {
                // One filtered pass over the chosen list (or everything), in price order.
                let candidates: Box<dyn Iterator<Item = &Offer>> = match scan {
                    Some(list) => Box::new(list.iter().map(|&i| &self.offers[i as usize])),
                    None => Box::new(self.offers.iter()),
                };
                for o in candidates {
                    if filter
                        .max_price_per_hour
                        .is_some_and(|m| o.price_per_hour > m)
                    {
                        break;
                    }
                    if !filter.matches(o) {
                        continue;
                    }
                    total += 1;
                    if after_pos(o) {
                        if page.len() < page_size {
                            page.push(o);
                        } else {
                            more = true;
                        }
                    }
                }
            }
        }
        let next_after = if more { page.last().copied() } else { None };
        PricePage {
            offers: page,
            next_after,
            total_matching: total,
        }
    }
}

/// The catalog shared by the server's handlers, replaced whole after each refresh, with
/// the version of the stored data it was built from (opaque to the domain; `None` until
/// one is recorded).
#[derive(Clone, Default)]
pub struct CatalogHandle {
    catalog: Arc<ArcSwap<Catalog>>,
    source_version: Arc<std::sync::Mutex<Option<i64>>>,
}

impl CatalogHandle {
    pub fn new(c: Catalog) -> Self {
        CatalogHandle {
            catalog: Arc::new(ArcSwap::from_pointee(c)),
            source_version: Default::default(),
        }
    }
    pub fn load(&self) -> Arc<Catalog> {
        self.catalog.load_full()
    }
    /// Swaps in a catalog built from version `version` of the stored data.
    pub fn swap_built_from(&self, c: Catalog, version: Option<i64>) {
        // One lock around both, so the version always describes the catalog in place.
        let mut v = self
            .source_version
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        self.catalog.store(Arc::new(c));
        *v = version;
    }
    /// The version of the stored data the current catalog was built from, if recorded.
    pub fn built_from(&self) -> Option<i64> {
        *self
            .source_version
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{Currency, InstanceAttrs};

    fn offer(
        p: Provider,
        region: &str,
        ty: &str,
        m: Market,
        price: &str,
        gpu: Option<(&str, f64)>,
    ) -> Offer {
        Offer {
            key: OfferKey {
                provider: p,
                region: region.into(),
                zone: String::new(),
                instance_type: ty.into(),
                market: m,
            },
            price_per_hour: price.parse().unwrap(),
            currency: Currency::USD,
            attrs: Some(InstanceAttrs {
                vcpus: 8.0,
                memory_gib: 32.0,
                gpu_model: gpu.map(|g| g.0.to_string()),
                gpu_count: gpu.map(|g| g.1).unwrap_or(0.0),
                gpu_memory_gib: 0.0,
                arch: "x86_64".into(),
            }),
            source: "test".into(),
            observed_at: Utc::now(),
        }
    }

    fn sample() -> Catalog {
        Catalog::new(
            vec![
                offer(
                    Provider::Aws,
                    "us-east-1",
                    "p4d.24xlarge",
                    Market::OnDemand,
                    "32.7726",
                    Some(("A100", 8.0)),
                ),
                offer(
                    Provider::Aws,
                    "us-east-1",
                    "p4d.24xlarge",
                    Market::Spot,
                    "9.83",
                    Some(("A100", 8.0)),
                ),
                offer(
                    Provider::Gcp,
                    "us-central1",
                    "a2-highgpu-1g",
                    Market::OnDemand,
                    "3.67",
                    Some(("A100", 1.0)),
                ),
                offer(
                    Provider::Azure,
                    "eastus",
                    "Standard_D2s_v3",
                    Market::OnDemand,
                    "0.096",
                    None,
                ),
                offer(
                    Provider::Aws,
                    "us-east-1",
                    "m5.large",
                    Market::OnDemand,
                    "0.096",
                    None,
                ),
            ],
            vec![],
        )
    }

    #[test]
    fn sorted_by_price_then_key() {
        let c = sample();
        let prices: Vec<String> = c
            .offers()
            .iter()
            .map(|o| o.price_per_hour.to_string())
            .collect();
        assert_eq!(prices, ["0.096", "0.096", "3.67", "9.83", "32.7726"]);
        // tie at 0.096 broken by provider order: aws before azure
        assert_eq!(c.offers()[0].key.provider, Provider::Aws);
    }

    #[test]
    fn filters_combine() {
        let c = sample();
        let f = PriceFilter {
            gpu_model: Some("a100".into()),
            min_gpu_count: 8,
            ..Default::default()
        };
        let page = c.list(&f, None, 10);
        assert_eq!(page.total_matching, 2);
        let f = PriceFilter {
            max_price_per_hour: Some("3.67".parse().unwrap()),
            ..Default::default()
        };
        assert_eq!(c.list(&f, None, 10).total_matching, 3);
        let f = PriceFilter {
            provider: Some(Provider::Aws),
            market: Some(Market::Spot),
            ..Default::default()
        };
        let page = c.list(&f, None, 10);
        assert_eq!(page.offers.len(), 1);
        assert_eq!(page.offers[0].price_per_hour.to_string(), "9.83");
    }

    #[test]
    fn live_prices_supersede_seed_and_catalog_for_the_same_offer_family() {
        let mut seed = offer(
            Provider::Aws,
            "us-east-1",
            "p4d.24xlarge",
            Market::Spot,
            "9.83",
            None,
        );
        seed.source = "seed".into();
        seed.key.zone = "use1-az1".into();
        let mut live = offer(
            Provider::Aws,
            "us-east-1",
            "p4d.24xlarge",
            Market::Spot,
            "11.2",
            None,
        );
        live.source = "aws-spot".into();
        live.key.zone = "us-east-1a".into();
        let mut other = offer(
            Provider::Aws,
            "us-east-1",
            "p4d.24xlarge",
            Market::OnDemand,
            "32.77",
            None,
        );
        other.source = "seed".into();
        let c = Catalog::new(vec![seed, live, other], vec![]);
        let sources: Vec<&str> = c.offers().iter().map(|o| o.source.as_str()).collect();
        assert_eq!(
            sources,
            ["aws-spot", "seed"],
            "seed spot dropped, seed on-demand kept"
        );
    }

    proptest::proptest! {
        #[test]
        fn indexed_listing_agrees_with_a_plain_filter(
            rows in proptest::collection::vec((0..3usize, 0..3usize, 0..4usize, proptest::bool::ANY, 1..500i64, 0..3usize), 1..60),
            fp in 0..4usize, fr in 0..4usize, ft in 0..5usize, fg in 0..3usize, fm in 0..3usize,
            max in proptest::option::of(1..500i64), page in 1..7usize,
        ) {
            let provs = [Provider::Aws, Provider::Gcp, Provider::Azure];
            let regions = ["r1", "r2", "r3"];
            let offers: Vec<Offer> = rows
                .iter()
                .map(|(p, r, t, spot, price, g)| {
                    let gpu = [None, Some(("A100", 8.0)), Some(("T4", 1.0))][*g];
                    offer(
                        provs[*p],
                        regions[*r],
                        &format!("t{t}"),
                        if *spot { Market::Spot } else { Market::OnDemand },
                        &Decimal::new(*price, 2).to_string(),
                        gpu,
                    )
                })
                .collect();
            let c = Catalog::new(offers, vec![]);
            let f = PriceFilter {
                provider: provs.get(fp).copied(),
                region: regions.get(fr).map(|r| r.to_string()),
                instance_type: (ft < 4).then(|| format!("t{ft}")),
                gpu_model: ["a100", "T4"].get(fg).map(|g| g.to_string()),
                min_gpu_count: 0,
                market: [Some(Market::OnDemand), Some(Market::Spot), None][fm],
                max_price_per_hour: max.map(|m| Decimal::new(m, 2)),
            };
            let want: Vec<OfferKey> = c.offers().iter().filter(|o| f.matches(o)).map(|o| o.key.clone()).collect();
            let mut got = Vec::new();
            let mut after: Option<(Decimal, OfferKey)> = None;
            loop {
                let p = c.list(&f, after.as_ref(), page);
                proptest::prop_assert_eq!(p.total_matching, want.len() as u64);
                got.extend(p.offers.iter().map(|o| o.key.clone()));
                match p.next_after {
                    Some(o) => after = Some((o.price_per_hour, o.key.clone())),
                    None => break,
                }
            }
            proptest::prop_assert_eq!(got, want);
        }
    }

    #[test]
    fn keyset_pagination_walks_everything_once() {
        let c = sample();
        let f = PriceFilter::default();
        let mut seen = Vec::new();
        let mut after: Option<(Decimal, OfferKey)> = None;
        loop {
            let page = c.list(&f, after.as_ref(), 2);
            assert_eq!(page.total_matching, 5);
            seen.extend(page.offers.iter().map(|o| o.key.clone()));
            match page.next_after {
                Some(o) => after = Some((o.price_per_hour, o.key.clone())),
                None => break,
            }
        }
        assert_eq!(seen.len(), 5);
        let all: Vec<_> = c.offers().iter().map(|o| o.key.clone()).collect();
        assert_eq!(seen, all);
    }
}
