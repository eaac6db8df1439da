//! Placement: the cheapest feasible placements for a job by expected total cost —
//! compute (price × hours × nodes) + egress of its data ("data gravity") + expected spot
//! interruption overhead — within the caller's constraints.
//!
//! `PlacementIndex` is built once per catalog (offers grouped by accelerator class, as
//! struct-of-arrays, with region groups and instance types interned), so a request only
//! touches offers of the accelerator classes it can use, prices egress once per region
//! group, and checks hardware once per instance type. Every offer it looks at is counted
//! under the first constraint that removes it.
//!
//! Arithmetic is exact integers in `Units` (1e-12 USD): prices in nano-dollars/hour,
//! hours and GB in thousandths. Spot overhead (documented in the README, "Cost model"):
//! `compute × nodes × f × L / 730`, where f is the band's monthly interruption frequency
//! (<5% → 2.5%, 5-10% → 7.5%, 10-15% → 12.5%, 15-20% → 17.5%, >20% → 25%; a spot offer
//! without a band uses `CostModel::default_spot_band`), 730 the hours in a month, and
//! L = restart_hours + min(checkpoint_hours, hours) / 2 the hours lost per interruption.
//! It is rounded half up to a unit.
//!
//! Invariant: ties are broken by the catalog order (price, then key), so results are
//! deterministic. API boundary: pure; no I/O, no clock (the caller passes `now`).
use std::collections::{BinaryHeap, HashMap, HashSet};

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;

use super::egress::{EgressKind, EgressTable, continent_of};
use super::money::{Units, to_nanos};
use super::offer::{Market, Offer, Provider};
use super::regions::{Continent, Jurisdiction, region_info};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MarketPolicy {
    OnDemandOnly,
    SpotAllowed,
    SpotOnly,
}

/// Band labels as the AWS spot advisor writes them, index = band.
pub const BAND_LABELS: [&str; 5] = ["<5%", "5-10%", "10-15%", "15-20%", ">20%"];
/// Monthly interruption frequency assumed for each band, parts per million.
pub const BAND_FREQ_PPM: [i128; 5] = [25_000, 75_000, 125_000, 175_000, 250_000];
const NO_BAND: u8 = u8::MAX;

pub fn band_from_label(s: &str) -> Option<u8> {
    let t = s.trim();
    BAND_LABELS.iter().position(|l| *l == t).map(|i| i as u8)
}

/// At most one placement per region (provider + region) or per provider in the ranked
/// answer: each keeps its cheapest, and the top k are taken from those.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Distinct {
    Region,
    Provider,
}

/// Where a job's data is (or goes), and how much.
#[derive(Clone, Debug, PartialEq)]
pub struct DataItem {
    /// "input[0]", "output", ...
    pub label: String,
    pub provider: Provider,
    pub region: String,
    /// Size in thousandths of a GB.
    pub gb_milli: i64,
}

/// A validated SelectProvider request.
#[derive(Clone, Debug, PartialEq)]
pub struct PlacementRequest {
    pub min_vcpus: f64,
    pub min_memory_gib: f64,
    /// Canonical accelerator names (as in the catalog), any one acceptable. Empty = none needed.
    pub accelerators: Vec<String>,
    pub accelerator_count: u32,
    pub min_gpu_memory_gib: f64,
    pub nodes: u32,
    /// Expected runtime in thousandths of an hour (> 0).
    pub hours_milli: i64,
    pub market: MarketPolicy,
    pub max_band: Option<u8>,
    /// Minimum spot saving over on-demand, in thousandths of a percent.
    pub min_savings_milli_pct: i64,
    pub inputs: Vec<DataItem>,
    pub output: Option<DataItem>,
    pub allowed_providers: Vec<Provider>,
    pub denied_providers: Vec<Provider>,
    pub allowed_regions: Vec<String>,
    pub denied_regions: Vec<String>,
    pub jurisdictions: Vec<Jurisdiction>,
    pub max_price_nanos: Option<i64>,
    pub max_total: Option<Units>,
    /// Exclude offers flagged `suspect` (priced far below their family; `sanity`).
    pub skip_suspect: bool,
    pub top_k: usize,
    /// Diversify the answer (`None`: the k cheapest, however alike).
    pub distinct: Option<Distinct>,
}

impl Default for PlacementRequest {
    fn default() -> Self {
        PlacementRequest {
            min_vcpus: 0.0,
            min_memory_gib: 0.0,
            accelerators: Vec::new(),
            accelerator_count: 0,
            min_gpu_memory_gib: 0.0,
            nodes: 1,
            hours_milli: 1000,
            market: MarketPolicy::OnDemandOnly,
            max_band: None,
            min_savings_milli_pct: 0,
            inputs: Vec::new(),
            output: None,
            allowed_providers: Vec::new(),
            denied_providers: Vec::new(),
            allowed_regions: Vec::new(),
            denied_regions: Vec::new(),
            jurisdictions: Vec::new(),
            max_price_nanos: None,
            max_total: None,
            skip_suspect: false,
            top_k: 5,
            distinct: None,
        }
    }
}

/// Cost model settings (from config).
#[derive(Clone, Debug, PartialEq)]
pub struct CostModel {
    pub egress: EgressTable,
    pub restart_hours_milli: i64,
    pub checkpoint_hours_milli: i64,
    pub default_spot_band: u8,
    /// Prices older than this are stale.
    pub max_price_age_secs: i64,
    /// Skip stale offers (and providers whose price source is failing) instead of flagging.
    pub skip_stale: bool,
    /// Skip suspect offers in every request (the server's `on_suspect = "skip"`).
    pub skip_suspect: bool,
}

impl CostModel {
    /// The stale rule, for one offer: older than `max_price_age_secs` at `now`, or its
    /// provider's price source is failing (`failing` per aws, gcp, azure). SelectProvider's
    /// choices and ListPrices both flag by it.
    pub fn is_stale(&self, o: &Offer, now: DateTime<Utc>, failing: [bool; 3]) -> bool {
        self.stale_by(
            now.timestamp() - o.observed_at.timestamp(),
            failing[pidx(o.key.provider)],
        )
    }

    /// The stale rule itself, on a price's age in seconds and its provider's health.
    fn stale_by(&self, age_secs: i64, provider_failing: bool) -> bool {
        age_secs > self.max_price_age_secs || provider_failing
    }
}

impl Default for CostModel {
    fn default() -> Self {
        CostModel {
            egress: EgressTable::default(),
            restart_hours_milli: 100,
            checkpoint_hours_milli: 1000,
            default_spot_band: 2,
            max_price_age_secs: 7 * 24 * 3600,
            skip_stale: false,
            skip_suspect: false,
        }
    }
}

/// An operator's mark: provider, region or zone unavailable until `expires_at`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AvailabilityMark {
    pub id: String,
    pub provider: Provider,
    pub region: Option<String>,
    pub zone: Option<String>,
    pub reason: String,
    pub created_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
}

/// Live conditions a decision depends on, passed in by the caller.
#[derive(Clone, Copy, Debug)]
pub struct Conditions<'a> {
    pub now: DateTime<Utc>,
    /// Per provider (aws, gcp, azure): a price source of that provider is failing.
    pub failing: [bool; 3],
    pub marks: &'a [AvailabilityMark],
}

fn pidx(p: Provider) -> usize {
    match p {
        Provider::Aws => 0,
        Provider::Gcp => 1,
        Provider::Azure => 2,
    }
}

/// Why an offer was excluded; the first that applies, in this order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(u8)]
pub enum Reason {
    Feasible = 0,
    UnknownHardware,
    Accelerator,
    Vcpus,
    Memory,
    AcceleratorCount,
    GpuMemory,
    Market,
    Provider,
    Region,
    Jurisdiction,
    Unavailable,
    Stale,
    Suspect,
    MaxPricePerHour,
    InterruptionBand,
    SpotSavings,
    MaxTotalCost,
}

pub const REASONS: usize = 18;

impl Reason {
    pub const ALL: [Reason; REASONS] = [
        Reason::Feasible,
        Reason::UnknownHardware,
        Reason::Accelerator,
        Reason::Vcpus,
        Reason::Memory,
        Reason::AcceleratorCount,
        Reason::GpuMemory,
        Reason::Market,
        Reason::Provider,
        Reason::Region,
        Reason::Jurisdiction,
        Reason::Unavailable,
        Reason::Stale,
        Reason::Suspect,
        Reason::MaxPricePerHour,
        Reason::InterruptionBand,
        Reason::SpotSavings,
        Reason::MaxTotalCost,
    ];

    /// The constraint name reported to callers.
    pub fn name(&self) -> &'static str {
        match self {
            Reason::Feasible => "feasible",
            Reason::UnknownHardware => "unknown_hardware",
            Reason::Accelerator => "accelerator",
            Reason::Vcpus => "min_vcpus",
            Reason::Memory => "min_memory_gib",
            Reason::AcceleratorCount => "accelerator_count",
            Reason::GpuMemory => "min_gpu_memory_gib",
            Reason::Market => "market",
            Reason::Provider => "provider",
            Reason::Region => "region",
            Reason::Jurisdiction => "jurisdiction",
            Reason::Unavailable => "unavailable",
            Reason::Stale => "stale",
            Reason::Suspect => "suspect",
            Reason::MaxPricePerHour => "max_price_per_hour",
            Reason::InterruptionBand => "interruption_band",
            Reason::SpotSavings => "spot_savings",
            Reason::MaxTotalCost => "max_total_cost",
        }
    }
}

struct GroupInfo {
    provider: Provider,
    region: String,
    country: Option<String>,
    continent: Option<Continent>,
}

impl GroupInfo {
    /// How moving input `i` (its region on `continent`) into this group is billed.
    fn kind_from(&self, i: &DataItem, continent: Option<Continent>) -> EgressKind {
        EgressTable::kind(
            i.provider,
            &i.region,
            continent,
            self.provider,
            &self.region,
            self.continent,
        )
    }

    /// How moving output `o` (its region on `continent`) out of this group is billed.
    fn kind_to(&self, o: &DataItem, continent: Option<Continent>) -> EgressKind {
        EgressTable::kind(
            self.provider,
            &self.region,
            self.continent,
            o.provider,
            &o.region,
            continent,
        )
    }
}

struct TypeInfo {
    vcpus: f64,
    memory_gib: f64,
    gpu_count: f64,
    gpu_memory_gib: f64,
}

/// Offers of one accelerator class, struct-of-arrays, in catalog order.
#[derive(Default)]
struct Class {
    offer: Vec<u32>,
    /// Packed (type, group, spot) for the counting loop: see `pack`.
    key: Vec<u64>,
    group: Vec<u16>,
    ty: Vec<u32>,
    zone: Vec<u32>,
    spot: Vec<bool>,
    price_nanos: Vec<i64>,
    band: Vec<u8>,
    /// On-demand price of the same type in the same region (min over zones), 0 = none.
    ondemand_nanos: Vec<i64>,
    observed_at: Vec<i64>,
    /// Priced far below its family (`Catalog::suspicion_at`).
    suspect: Vec<bool>,
    /// Offers per instance type: (type, on-demand count, spot count).
    type_counts: Vec<(u32, u32, u32)>,
    /// Per region group: (type, on-demand count, spot count).
    group_counts: HashMap<u16, Vec<(u32, u32, u32)>>,
    /// Per region group: row numbers of its on-demand offers, in price order.
    group_on_demand: HashMap<u16, Vec<u32>>,
    /// Per region group: row numbers of all its offers, in price order.
    group_rows: Vec<(u16, Vec<u32>)>,
    /// Group id → position in `group_rows` (`NO_ROWS` when the class has no offer there):
    /// one array read per group where a binary search cost ~5 % of a CPU-only request.
    group_pos: Vec<u32>,
    /// The lowest hourly price in the class (nanos).
    cheapest_nanos: i64,
}

/// `Class::group_pos` of a group without offers of the class.
const NO_ROWS: u32 = u32::MAX;

impl Class {
    /// Builds the count tables once the arrays are filled.
    fn aggregate(&mut self) {
        let mut by_type: HashMap<u32, (u32, u32)> = HashMap::new();
        let mut by_group: HashMap<u16, HashMap<u32, (u32, u32)>> = HashMap::new();
        let mut rows: HashMap<u16, Vec<u32>> = HashMap::new();
        for (row, &k) in self.key.iter().enumerate() {
            let (ty, g, spot) = unpack(k);
            let (ty, g) = (ty as u32, g as u16);
            rows.entry(g).or_default().push(row as u32);
            let e = by_type.entry(ty).or_default();
            let ge = by_group.entry(g).or_default().entry(ty).or_default();
            if spot {
                e.1 += 1;
                ge.1 += 1;
            } else {
                e.0 += 1;
                ge.0 += 1;
                self.group_on_demand.entry(g).or_default().push(row as u32);
            }
        }
        self.group_rows = rows.into_iter().collect();
        self.group_rows.sort_unstable_by_key(|(g, _)| *g);
        self.cheapest_nanos = self.price_nanos.iter().copied().min().unwrap_or(0);
        let groups = self
            .group_rows
            .last()
            .map_or(0, |(g, _)| usize::from(*g) + 1);
        self.group_pos = vec![NO_ROWS; groups];
        for (at, (g, _)) in self.group_rows.iter().enumerate() {
            self.group_pos[usize::from(*g)] = at as u32;
        }
        self.type_counts = by_type.into_iter().map(|(t, (o, s))| (t, o, s)).collect();
        self.type_counts.sort_unstable();
        self.group_counts = by_group
            .into_iter()
            .map(|(g, m)| {
                let mut v: Vec<(u32, u32, u32)> =
                    m.into_iter().map(|(t, (o, s))| (t, o, s)).collect();
                v.sort_unstable();
                (g, v)
            })
            .collect();
    }
}

/// The catalog indexed for placement.
#[derive(Default)]
pub struct PlacementIndex {
    groups: Vec<GroupInfo>,
    group_ids: HashMap<(Provider, String), u16>,
    types: Vec<TypeInfo>,
    zone_ids: HashMap<(u16, String), u32>,
    /// Class 0: no accelerator. Others: one per accelerator model.
    classes: Vec<Class>,
    /// Lower-cased model → class.
    class_ids: HashMap<String, usize>,
    /// Canonical model names, sorted.
    accelerators: Vec<String>,
    unknown_hardware: u64,
    /// Offers left out of the index: not USD, or price with more than 9 decimals.
    pub not_indexed: u64,
}

/// One chosen placement; amounts in units.
#[derive(Clone, Debug, PartialEq)]
pub struct Choice {
    pub offer: usize,
    pub compute: Units,
    /// (label, from provider, from region, to provider, to region, gb_milli, units)
    pub egress: Vec<EgressLine>,
    pub egress_total: Units,
    pub overhead: Units,
    pub total: Units,
    /// Band used for the overhead (spot only); `None` for on-demand.
    pub band: Option<u8>,
    pub band_known: bool,
    pub stale: bool,
    /// Priced far below its family (`sanity`).
    pub suspect: bool,
    pub age_secs: i64,
}

#[derive(Clone, Debug, PartialEq)]
pub struct EgressLine {
    pub label: String,
    pub from_provider: Provider,
    pub from_region: String,
    pub to_provider: Provider,
    pub to_region: String,
    pub gb_milli: i64,
    pub cost: Units,
}

/// The outcome of a request.
#[derive(Clone, Debug, PartialEq)]
pub struct Decision {
    pub choices: Vec<Choice>,
    /// Offers removed per reason (index = `Reason as usize`; index 0 = feasible count).
    pub counts: [u64; REASONS],
    pub considered: u64,
    /// Cheapest on-demand total in the region of the largest input, same hardware filter.
    pub baseline: Option<Units>,
}

impl Decision {
    pub fn feasible(&self) -> u64 {
        self.counts[0]
    }
    /// (constraint, offers removed), non-zero only, in attribution order.
    pub fn exclusions(&self) -> Vec<(&'static str, u64)> {
        Reason::ALL
            .iter()
            .skip(1)
            .filter(|r| self.counts[**r as usize] > 0)
            .map(|r| (r.name(), self.counts[*r as usize]))
            .collect()
    }
}

/// What a SelectProvider request came to, as the decision log and the metrics name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Outcome {
    Placed,
    /// No offer met the request.
    NoFeasible,
    /// A budget gate refused every placement.
    DeniedByBudget,
}

impl Outcome {
    pub const ALL: [Outcome; 3] = [
        Outcome::Placed,
        Outcome::NoFeasible,
        Outcome::DeniedByBudget,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Placed => "placed",
            Outcome::NoFeasible => "no_feasible",
            Outcome::DeniedByBudget => "denied_by_budget",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlacementError {
    #[error("unknown accelerator {given:?}; known: {}", known.join(", "))]
    UnknownAccelerator { given: String, known: Vec<String> },
}

impl std::fmt::Debug for PlacementIndex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PlacementIndex")
            .field("groups", &self.groups.len())
            .field("types", &self.types.len())
            .field("accelerators", &self.accelerators)
            .field("indexed", &self.indexed())
            .finish()
    }
}

impl PlacementIndex {
    /// Indexes `offers` (a catalog's, in its order): `band_of` gives a spot offer's
    /// interruption band, `suspect` whether the offer at a position is priced suspiciously
    /// (`Catalog::band`, `Catalog::suspicion_at`).
    pub fn build(
        offers: &[Offer],
        band_of: impl Fn(&Offer) -> Option<u8>,
        suspect: impl Fn(usize) -> bool,
    ) -> PlacementIndex {
        let mut ix = PlacementIndex::default();
        let mut type_ids: HashMap<(Provider, &str), u32> = HashMap::new();
        ix.classes.push(Class::default());
        // On-demand reference per (group, type): min price over zones.
        let mut od_ref: HashMap<(u16, u32), i64> = HashMap::new();
        struct Pending {
            class: usize,
            offer: u32,
            group: u16,
            ty: u32,
            zone: u32,
            spot: bool,
            price: i64,
            band: u8,
            observed: i64,
            suspect: bool,
        }
        let mut pending = Vec::with_capacity(offers.len());
        for (i, o) in offers.iter().enumerate() {
            let Some(a) = &o.attrs else {
                ix.unknown_hardware += 1;
                continue;
            };
            let Some(price) = to_nanos(o.price_per_hour).filter(|_| o.currency.as_str() == "USD")
            else {
                ix.not_indexed += 1;
                continue;
            };
            let gkey = (o.key.provider, o.key.region.clone());
            let next_g = ix.groups.len() as u16;
            let g = *ix.group_ids.entry(gkey).or_insert_with(|| {
                let info = region_info(o.key.provider, &o.key.region);
                ix.groups.push(GroupInfo {
                    provider: o.key.provider,
                    region: o.key.region.clone(),
                    country: info.map(|r| r.country.clone()),
                    continent: info.map(|r| r.continent),
                });
                next_g
            });
            let next_t = ix.types.len() as u32;
            let t = *type_ids
                .entry((o.key.provider, o.key.instance_type.as_str()))
                .or_insert_with(|| {
                    ix.types.push(TypeInfo {
                        vcpus: a.vcpus,
                        memory_gib: a.memory_gib,
                        gpu_count: a.gpu_count,
                        gpu_memory_gib: a.gpu_memory_gib,
                    });
                    next_t
                });
            let next_z = ix.zone_ids.len() as u32;
            let z = *ix.zone_ids.entry((g, o.key.zone.clone())).or_insert(next_z);
            let class = match a
                .gpu_model
                .as_deref()
                .filter(|m| !m.is_empty() && a.gpu_count > 0.0)
            {
                None => 0,
                Some(m) => {
                    let k = m.to_ascii_lowercase();
                    match ix.class_ids.get(&k) {
                        Some(c) => *c,
                        None => {
                            ix.classes.push(Class::default());
                            ix.accelerators.push(m.to_string());
                            let c = ix.classes.len() - 1;
                            ix.class_ids.insert(k, c);
                            c
                        }
                    }
                }
            };
            let spot = o.key.market == Market::Spot;
            if !spot {
                od_ref
                    .entry((g, t))
                    .and_modify(|p| *p = (*p).min(price))
                    .or_insert(price);
            }
            let band = if spot {
                band_of(o).map(|b| b.min(4)).unwrap_or(NO_BAND)
            } else {
                NO_BAND
            };
            pending.push(Pending {
                class,
                offer: i as u32,
                group: g,
                ty: t,
                zone: z,
                spot,
                price,
                band,
                observed: o.observed_at.timestamp(),
                suspect: suspect(i),
            });
        }
        for p in pending {
            let c = &mut ix.classes[p.class];
            c.offer.push(p.offer);
            c.key.push(pack(p.ty, p.group, p.spot));
            c.group.push(p.group);
            c.ty.push(p.ty);
            c.zone.push(p.zone);
            c.spot.push(p.spot);
            c.price_nanos.push(p.price);
            c.band.push(p.band);
            c.ondemand_nanos.push(if p.spot {
                od_ref.get(&(p.group, p.ty)).copied().unwrap_or(0)
            } else {
                0
            });
            c.observed_at.push(p.observed);
            c.suspect.push(p.suspect);
        }
        for c in &mut ix.classes {
            c.aggregate();
        }
        ix.accelerators.sort();
        ix
    }

    /// Accelerator models in the catalog (canonical names).
    pub fn accelerators(&self) -> &[String] {
        &self.accelerators
    }

    /// Canonical name of an accelerator model given in any case.
    pub fn canonical_accelerator(&self, name: &str) -> Option<&str> {
        let c = *self.class_ids.get(&name.trim().to_ascii_lowercase())?;
        self.accelerators
            .iter()
            .find(|a| self.class_ids.get(&a.to_ascii_lowercase()) == Some(&c))
            .map(String::as_str)
    }

    /// Whether the catalog has prices in (provider, region).
    pub fn has_region(&self, provider: Provider, region: &str) -> bool {
        self.group_ids.contains_key(&(provider, region.to_string()))
    }

    fn indexed(&self) -> u64 {
        self.classes.iter().map(|c| c.offer.len() as u64).sum()
    }

    /// The cheapest feasible placements for `req`, with exclusion counts.
    ///
    /// Phases: the accelerator classes to scan (`classes_for`); the request's constraints
    /// per region group, with its egress (`Search::new`); then per class either the search
    /// group by group from the cheapest egress with counts from the class's aggregates
    /// (without per-offer constraints: `search_groups`, `count_from_aggregates`), or one
    /// price-ordered scan that keeps the top k and counts every offer (`scan`); last, the
    /// kept offers become `Choice`s.
    pub fn select(
        &self,
        req: &PlacementRequest,
        model: &CostModel,
        cond: &Conditions<'_>,
    ) -> Result<Decision, PlacementError> {
        let classes = self.classes_for(req)?;
        let mut s = Search::new(self, req, model, cond);
        s.counts[Reason::UnknownHardware as usize] = self.unknown_hardware;
        let scanned: u64 = classes
            .iter()
            .map(|c| self.classes[*c].offer.len() as u64)
            .sum();
        s.counts[Reason::Accelerator as usize] = self.indexed() - scanned;
        let mut considered = self.unknown_hardware + s.counts[Reason::Accelerator as usize];

        // Region groups from the cheapest egress up: once the heap holds k choices, a group
        // whose egress plus its cheapest offer's compute exceeds the k-th total is skipped.
        // (Only the search without per-offer checks uses it.)
        // Each entry packs (egress, group) into one u128 — egress above the group's 16 bits —
        // which sorts in the same order as the pair at half the width. Egress is never
        // negative: the egress table rejects negative prices when it is loaded.
        let mut by_egress: Vec<u128> = if s.per_offer_checks {
            Vec::new()
        } else {
            s.group_egress
                .iter()
                .enumerate()
                .filter(|(g, _)| s.group_reason[*g] == Reason::Feasible)
                .map(|(g, e)| ((*e).max(0) as u128) << 16 | g as u128)
                .collect()
        };
        by_egress.sort_unstable();
        for &ci in &classes {
            let c = &self.classes[ci];
            considered += c.offer.len() as u64;
            if s.per_offer_checks {
                s.scan(c);
            } else {
                s.search_groups(c, &by_egress);
                s.count_from_aggregates(c);
            }
        }
        Ok(s.decision(req, model, cond, considered))
    }

    /// The accelerator classes a request may use (every class when it names none).
    fn classes_for(&self, req: &PlacementRequest) -> Result<Vec<usize>, PlacementError> {
        if req.accelerators.is_empty() {
            return Ok((0..self.classes.len()).collect());
        }
        let mut v = Vec::new();
        for a in &req.accelerators {
            match self.class_ids.get(&a.to_ascii_lowercase()) {
                Some(c) => {
                    if !v.contains(c) {
                        v.push(*c)
                    }
                }
                None => {
                    return Err(PlacementError::UnknownAccelerator {
                        given: a.clone(),
                        known: self.accelerators.clone(),
                    });
                }
            }
        }
        Ok(v)
    }

    fn egress_to(
        &self,
        req: &PlacementRequest,
        model: &CostModel,
        g: &GroupInfo,
    ) -> Vec<EgressLine> {
        let mut lines = Vec::with_capacity(req.inputs.len() + 1);
        for i in &req.inputs {
            let kind = g.kind_from(i, continent_of(i.provider, &i.region));
            lines.push(EgressLine {
                label: i.label.clone(),
                from_provider: i.provider,
                from_region: i.region.clone(),
                to_provider: g.provider,
                to_region: g.region.clone(),
                gb_milli: i.gb_milli,
                cost: model.egress.cost_units(i.provider, kind, i.gb_milli),
            });
        }
        if let Some(o) = &req.output {
            let kind = g.kind_to(o, continent_of(o.provider, &o.region));
            lines.push(EgressLine {
                label: o.label.clone(),
                from_provider: g.provider,
                from_region: g.region.clone(),
                to_provider: o.provider,
                to_region: o.region.clone(),
                gb_milli: o.gb_milli,
                cost: model.egress.cost_units(g.provider, kind, o.gb_milli),
            });
        }
        lines
    }

    #[allow(clippy::too_many_arguments)]
    fn choice(
        &self,
        offer: usize,
        total: Units,
        band: u8,
        req: &PlacementRequest,
        model: &CostModel,
        cond: &Conditions<'_>,
        group_egress: &[Units],
        nodes: i128,
        hours: i128,
        lost_half_milli: i128,
    ) -> Choice {
        // Locate the offer's class row to recover its group and price.
        let (c, i) = self
            .classes
            .iter()
            .find_map(|c| c.offer.binary_search(&(offer as u32)).ok().map(|i| (c, i)))
            .expect("chosen offer is indexed");
        let g = c.group[i] as usize;
        let compute = i128::from(c.price_nanos[i]) * hours * nodes;
        let spot = c.spot[i];
        let overhead = if spot {
            spot_overhead(compute, nodes, band, lost_half_milli)
        } else {
            0
        };
        debug_assert_eq!(compute + group_egress[g] + overhead, total);
        let age = cond.now.timestamp() - c.observed_at[i];
        Choice {
            offer,
            compute,
            egress: self.egress_to(req, model, &self.groups[g]),
            egress_total: group_egress[g],
            overhead,
            total,
            band: spot.then_some(band),
            band_known: spot && c.band[i] != NO_BAND,
            stale: model.stale_by(age, cond.failing[pidx(self.groups[g].provider)]),
            suspect: c.suspect[i],
            age_secs: age.max(0),
        }
    }
}

/// One request's search: its constraints resolved once (hardware per type on demand,
/// provider/region/jurisdiction/availability and egress per region group up front), the
/// running top k, the baseline and the per-`Reason` counts.
struct Search<'a> {
    ix: &'a PlacementIndex,
    req: &'a PlacementRequest,
    model: &'a CostModel,
    /// What the hot loops read per offer, copied into a local there (see [`Rules`]).
    rules: Rules<'a>,
    group_reason: Vec<Reason>,
    group_egress: Vec<Units>,
    zone_marked: HashSet<u32>,
    /// The region group holding most of the inputs: the baseline's on-demand home.
    home: Option<u16>,
    hours: i128,
    stale_cutoff: i64,
    min_egress: Units,
    skip_suspect: bool,
    /// Checks after the region group that look at the offer itself.
    per_offer_checks: bool,
    distinct: bool,
    k: usize,
    /// Max-heap on (total, offer): the worst kept choice on top. The last field is the
    /// `distinct` key (0 without it).
    heap: BinaryHeap<Kept>,
    baseline: Option<Units>,
    counts: [u64; REASONS],
}

impl<'a> Search<'a> {
    /// Region groups: constraints, availability, egress — once per group.
    fn new(
        ix: &'a PlacementIndex,
        req: &'a PlacementRequest,
        model: &'a CostModel,
        cond: &Conditions<'_>,
    ) -> Self {
        let now = cond.now.timestamp();
        let live_marks: Vec<&AvailabilityMark> = cond
            .marks
            .iter()
            .filter(|m| m.expires_at > cond.now)
            .collect();
        let egress = RequestEgress::new(req, model);
        let mut zone_marked: HashSet<u32> = HashSet::new();
        let mut group_reason = Vec::with_capacity(ix.groups.len());
        let mut group_egress: Vec<Units> = Vec::with_capacity(ix.groups.len());
        for (gi, g) in ix.groups.iter().enumerate() {
            let r = if !req.allowed_providers.is_empty()
                && !req.allowed_providers.contains(&g.provider)
                || req.denied_providers.contains(&g.provider)
            {
                Reason::Provider
            } else if !req.allowed_regions.is_empty() && !req.allowed_regions.contains(&g.region)
                || req.denied_regions.contains(&g.region)
            {
                Reason::Region
            } else if !req.jurisdictions.is_empty()
                && !g
                    .country
                    .as_deref()
                    .is_some_and(|c| req.jurisdictions.iter().any(|j| j.contains(c)))
            {
                Reason::Jurisdiction
            } else if live_marks.iter().any(|m| {
                m.provider == g.provider
                    && m.zone.is_none()
                    && m.region.as_deref().is_none_or(|r| r == g.region)
            }) {
                Reason::Unavailable
            } else if model.skip_stale && cond.failing[pidx(g.provider)] {
                Reason::Stale
            } else {
                Reason::Feasible
            };
            for m in &live_marks {
                if let (Some(z), Some(r)) = (&m.zone, &m.region)
                    && m.provider == g.provider
                    && r == &g.region
                    && let Some(id) = ix.zone_ids.get(&(gi as u16, z.clone()))
                {
                    zone_marked.insert(*id);
                }
            }
            group_reason.push(r);
            group_egress.push(egress.to_group(g));
        }
        let home = req
            .inputs
            .iter()
            .max_by_key(|i| i.gb_milli)
            .and_then(|i| ix.group_ids.get(&(i.provider, i.region.clone())).copied());

        let nodes = i128::from(req.nodes.max(1));
        let hours = i128::from(req.hours_milli);
        let lost_half_milli = i128::from(
            2 * model.restart_hours_milli + model.checkpoint_hours_milli.min(req.hours_milli),
        );
        // With `distinct`, each heap entry is the cheapest of its key (the region group or
        // the provider) and there are at most as many entries as keys: once every key has
        // one, a candidate above the worst kept total cannot enter either, so the searches
        // stop as they do without it.
        let keys = match req.distinct {
            None => usize::MAX,
            Some(Distinct::Region) => ix.groups.len().max(1),
            Some(Distinct::Provider) => Provider::ALL.len(),
        };
        let k = req.top_k.max(2).min(keys);
        let skip_suspect = req.skip_suspect || model.skip_suspect;
        let per_offer_checks = !zone_marked.is_empty()
            || model.skip_stale
            || skip_suspect
            || req.max_price_nanos.is_some()
            || req.max_band.is_some()
            || req.min_savings_milli_pct > 0
            || req.max_total.is_some();
        Search {
            ix,
            req,
            model,
            rules: Rules {
                types: &ix.types,
                min_vcpus: req.min_vcpus,
                min_memory_gib: req.min_memory_gib,
                gpu_req: !req.accelerators.is_empty(),
                accelerator_count: f64::from(req.accelerator_count),
                min_gpu_memory_gib: req.min_gpu_memory_gib,
                market: req.market,
                default_spot_band: model.default_spot_band.min(4),
                nodes,
                hn: hours * nodes,
                lost_half_milli,
            },
            min_egress: group_egress.iter().copied().min().unwrap_or(0),
            group_reason,
            group_egress,
            zone_marked,
            home,
            hours,
            stale_cutoff: now - model.max_price_age_secs,
            skip_suspect,
            per_offer_checks,
            distinct: req.distinct.is_some(),
            k,
            heap: BinaryHeap::with_capacity(k + 1),
            baseline: None,
            counts: [0u64; REASONS],
        }
    }

    /// The checks that look at the offer itself, and its interruption band.
    #[inline]
    fn late(&self, c: &Class, i: usize, spot: bool) -> (Reason, u8) {
        let (req, model) = (self.req, self.model);
        let band = self.rules.band(c, i, spot);
        if !self.zone_marked.is_empty() && self.zone_marked.contains(&c.zone[i]) {
            return (Reason::Unavailable, band);
        }
        if model.skip_stale && c.observed_at[i] < self.stale_cutoff {
            return (Reason::Stale, band);
        }
        if self.skip_suspect && c.suspect[i] {
            return (Reason::Suspect, band);
        }
        if req.max_price_nanos.is_some_and(|m| c.price_nanos[i] > m) {
            return (Reason::MaxPricePerHour, band);
        }
        if spot {
            if req.max_band.is_some_and(|m| band > m) {
                return (Reason::InterruptionBand, band);
            }
            if req.min_savings_milli_pct > 0 {
                let od = i128::from(c.ondemand_nanos[i]);
                // spot <= od × (1 - pct/100), pct in thousandths of a percent
                if od > 0
                    && i128::from(c.price_nanos[i]) * 100_000
                        > od * (100_000 - i128::from(req.min_savings_milli_pct))
                {
                    return (Reason::SpotSavings, band);
                }
            }
        }
        (Reason::Feasible, band)
    }

    /// Offers `total` for a place in the top k (`distinct`: one per key).
    #[inline(always)]
    fn keep(&mut self, total: Units, offer: u32, band: u8, g: usize) {
        if self.distinct {
            let key = match self.req.distinct {
                Some(Distinct::Provider) => pidx(self.ix.groups[g].provider) as u16,
                _ => g as u16,
            };
            keep_best_distinct(&mut self.heap, self.k, (total, offer, band, key));
        } else {
            keep_best(&mut self.heap, self.k, (total, offer, band, 0));
        }
    }

    /// The baseline: the cheapest feasible on-demand offer in the home group, per class.
    #[inline]
    fn note_baseline(&mut self, c: &Class, row: usize, g: usize) {
        let t = i128::from(c.price_nanos[row]) * self.rules.hn + self.group_egress[g];
        self.baseline = Some(self.baseline.map_or(t, |b: Units| b.min(t)));
    }

    /// An offer's first reason by hardware, market and region group (the checks that do not
    /// look at the offer itself), noting the class's baseline on the way.
    #[inline]
    fn first_reason(
        &mut self,
        c: &Class,
        i: usize,
        baseline_found: &mut bool,
    ) -> (usize, bool, Reason) {
        let (ty, g, spot) = unpack(c.key[i]);
        let tr = self.rules.type_reason(ty);
        if !*baseline_found && self.home == Some(g as u16) && !spot && tr == Reason::Feasible {
            self.note_baseline(c, i, g);
            *baseline_found = true;
        }
        let mut r = tr;
        if r == Reason::Feasible {
            r = self.rules.market_reason(spot);
        }
        if r == Reason::Feasible {
            r = self.group_reason[g];
        }
        (g, spot, r)
    }

    /// Without per-offer checks: the top k searched group by group from the cheapest egress,
    /// each group in price order, visiting only offers that could still enter it.
    fn search_groups(&mut self, c: &Class, by_egress: &[u128]) {
        let (rules, k) = (self.rules, self.k);
        let cheapest = i128::from(c.cheapest_nanos) * rules.hn;
        for &packed in by_egress {
            let (egress, g) = ((packed >> 16) as Units, (packed & 0xFFFF) as u16);
            // Groups come in egress order: once the class's cheapest compute plus this
            // group's egress exceeds the k-th total, so does every later group.
            if full_below(&self.heap, k, cheapest + egress) {
                break;
            }
            let at = c.group_pos.get(usize::from(g)).copied().unwrap_or(NO_ROWS);
            if at == NO_ROWS {
                continue;
            }
            for &row in &c.group_rows[at as usize].1 {
                let row = row as usize;
                if full_below(
                    &self.heap,
                    k,
                    i128::from(c.price_nanos[row]) * rules.hn + egress,
                ) {
                    break;
                }
                let (ty, _, spot) = unpack(c.key[row]);
                if rules.type_reason(ty) != Reason::Feasible
                    || rules.market_reason(spot) != Reason::Feasible
                {
                    continue;
                }
                // Without per-offer checks `late` finds nothing: only the band is needed.
                let band = rules.band(c, row, spot);
                let total = rules.total_of(c, row, spot, band, self.group_egress[g as usize]);
                self.keep(total, c.offer[row], band, g as usize);
            }
        }
    }

    /// Without per-offer checks an offer's reason depends only on its (type, market,
    /// group): the class's offers are counted from its aggregates instead of visited, and
    /// its baseline found among the home group's on-demand rows.
    fn count_from_aggregates(&mut self, c: &Class) {
        if c.offer.is_empty() {
            return;
        }
        let rules = self.rules;
        let od_ok = rules.market_reason(false) == Reason::Feasible;
        let spot_ok = rules.market_reason(true) == Reason::Feasible;
        let mut agg = [0u64; REASONS];
        let mut feasible = 0u64;
        for &(ty, od, sp) in &c.type_counts {
            let tr = rules.type_reason(ty as usize);
            if tr != Reason::Feasible {
                agg[tr as usize] += u64::from(od + sp);
                continue;
            }
            let (od, sp) = (u64::from(od), u64::from(sp));
            agg[Reason::Market as usize] +=
                if od_ok { 0 } else { od } + if spot_ok { 0 } else { sp };
            feasible += if od_ok { od } else { 0 } + if spot_ok { sp } else { 0 };
        }
        for (g, combos) in &c.group_counts {
            let gr = self.group_reason[*g as usize];
            if gr == Reason::Feasible {
                continue;
            }
            for &(ty, od, sp) in combos {
                if rules.type_reason(ty as usize) == Reason::Feasible {
                    let m = if od_ok { u64::from(od) } else { 0 }
                        + if spot_ok { u64::from(sp) } else { 0 };
                    agg[gr as usize] += m;
                    feasible -= m;
                }
            }
        }
        agg[Reason::Feasible as usize] += feasible;
        for (count, a) in self.counts.iter_mut().zip(agg) {
            *count += a;
        }
        if let Some(h) = self.home
            && let Some(rows) = c.group_on_demand.get(&h)
            && let Some(&row) = rows
                .iter()
                .find(|&&row| rules.type_reason(unpack(c.key[row as usize]).0) == Reason::Feasible)
        {
            self.note_baseline(c, row as usize, h as usize);
        }
    }

    /// With per-offer checks: one scan of the class in price order. Offers that may still
    /// enter the top k are judged in full and kept (once compute + the smallest egress
    /// exceeds the k-th total, none can); the rest are only counted.
    fn scan(&mut self, c: &Class) {
        let (rules, k, min_egress) = (self.rules, self.k, self.min_egress);
        let n = c.offer.len();
        let mut baseline_found = false;
        let mut i = 0;
        while i < n {
            if full_below(
                &self.heap,
                k,
                i128::from(c.price_nanos[i]) * rules.hn + min_egress,
            ) {
                break;
            }
            let (g, spot, mut r) = self.first_reason(c, i, &mut baseline_found);
            let mut band = NO_BAND;
            if r == Reason::Feasible {
                (r, band) = self.late(c, i, spot);
            }
            if r == Reason::Feasible {
                let total = rules.total_of(c, i, spot, band, self.group_egress[g]);
                if self.req.max_total.is_some_and(|m| total > m) {
                    r = Reason::MaxTotalCost;
                } else {
                    self.keep(total, c.offer[i], band, g);
                }
            }
            self.counts[r as usize] += 1;
            i += 1;
        }
        while i < n {
            let (g, spot, mut r) = self.first_reason(c, i, &mut baseline_found);
            if r == Reason::Feasible {
                let band;
                (r, band) = self.late(c, i, spot);
                if r == Reason::Feasible
                    && self
                        .req
                        .max_total
                        .is_some_and(|m| rules.total_of(c, i, spot, band, self.group_egress[g]) > m)
                {
                    r = Reason::MaxTotalCost;
                }
            }
            self.counts[r as usize] += 1;
            i += 1;
        }
    }

    /// The kept offers, cheapest first, as `Choice`s.
    fn decision(
        self,
        req: &PlacementRequest,
        model: &CostModel,
        cond: &Conditions<'_>,
        considered: u64,
    ) -> Decision {
        let mut kept = self.heap.into_sorted_vec();
        kept.truncate(req.top_k.max(1));
        let choices = kept
            .into_iter()
            .map(|(total, offer, band, _)| {
                self.ix.choice(
                    offer as usize,
                    total,
                    band,
                    req,
                    model,
                    cond,
                    &self.group_egress,
                    self.rules.nodes,
                    self.hours,
                    self.rules.lost_half_milli,
                )
            })
            .collect();
        Decision {
            choices,
            counts: self.counts,
            considered,
            baseline: self.baseline,
        }
    }
}

/// The per-request values the per-offer checks and totals read. The hot loops copy it into a
/// local (`let rules = self.rules;`): a local stays in registers across `keep`, which takes
/// `&mut self`, where fields of `self` (and what `self.req` points to) are read again after
/// every call.
#[derive(Clone, Copy)]
struct Rules<'a> {
    types: &'a [TypeInfo],
    min_vcpus: f64,
    min_memory_gib: f64,
    gpu_req: bool,
    accelerator_count: f64,
    min_gpu_memory_gib: f64,
    market: MarketPolicy,
    /// The model's band for a spot offer without one (at most 4).
    default_spot_band: u8,
    nodes: i128,
    /// hours × nodes.
    hn: i128,
    /// Hours lost per interruption, in half-thousandths of an hour (exact).
    lost_half_milli: i128,
}

impl Rules<'_> {
    /// Hardware, once per type (evaluated on demand: a GPU request only ever asks about its
    /// classes' types, and the whole type table is thousands of entries).
    #[inline]
    fn type_reason(&self, ty: usize) -> Reason {
        let t = &self.types[ty];
        if t.vcpus < self.min_vcpus {
            Reason::Vcpus
        } else if t.memory_gib < self.min_memory_gib {
            Reason::Memory
        } else if self.gpu_req && t.gpu_count < self.accelerator_count {
            Reason::AcceleratorCount
        } else if self.gpu_req && t.gpu_memory_gib < self.min_gpu_memory_gib {
            Reason::GpuMemory
        } else {
            Reason::Feasible
        }
    }

    #[inline]
    fn market_reason(&self, spot: bool) -> Reason {
        match (self.market, spot) {
            (MarketPolicy::OnDemandOnly, true) | (MarketPolicy::SpotOnly, false) => Reason::Market,
            _ => Reason::Feasible,
        }
    }

    /// An offer's interruption band (the model's default for a spot offer without one).
    #[inline(always)]
    fn band(&self, c: &Class, i: usize, spot: bool) -> u8 {
        if spot {
            if c.band[i] == NO_BAND {
                self.default_spot_band
            } else {
                c.band[i]
            }
        } else {
            NO_BAND
        }
    }

    /// An offer's total: compute, its region group's `egress` and any spot overhead.
    #[inline]
    fn total_of(&self, c: &Class, i: usize, spot: bool, band: u8, egress: Units) -> Units {
        let compute = i128::from(c.price_nanos[i]) * self.hn;
        let overhead = if spot {
            spot_overhead(compute, self.nodes, band, self.lost_half_milli)
        } else {
            0
        };
        compute + egress + overhead
    }
}

/// Whether the heap holds `k` choices and its worst total is below `bound`: nothing from
/// `bound` up can enter it.
#[inline(always)]
fn full_below(heap: &BinaryHeap<Kept>, k: usize, bound: Units) -> bool {
    heap.len() >= k && heap.peek().is_some_and(|top| bound > top.0)
}

/// Egress of a request's inputs (and output) to or from region group `g`, without building
/// the per-item lines (the request path prices every group; only chosen ones need lines).
/// Keeps the `k` best (total, offer) choices: `heap` is a max-heap with the worst on top.
#[inline]
fn keep_best(heap: &mut BinaryHeap<Kept>, k: usize, item: Kept) {
    if heap.len() < k {
        heap.push(item);
    } else if let Some(top) = heap.peek()
        && (item.0, item.1) < (top.0, top.1)
    {
        heap.pop();
        heap.push(item);
    }
}

/// A kept choice: (total, offer, band, `distinct` key).
type Kept = (Units, u32, u8, u16);

/// [`keep_best`] with at most one choice per `distinct` key (`item.3`): a cheaper choice
/// of a key already kept replaces it, a dearer one is dropped. The heap then holds the `k`
/// best of the per-key cheapest seen so far (a key pushed out never returns with a choice
/// dearer than the one that pushed it out: the worst kept total only falls).
fn keep_best_distinct(heap: &mut BinaryHeap<Kept>, k: usize, item: Kept) {
    if let Some(old) = heap.iter().find(|e| e.3 == item.3).copied() {
        if (item.0, item.1) < (old.0, old.1) {
            heap.retain(|e| e.1 != old.1);
            heap.push(item);
        }
        return;
    }
    keep_best(heap, k, item);
}

/// A request's egress priced once per (provider, kind of transfer): the request path then
/// prices each region group with table lookups instead of tier arithmetic.
struct RequestEgress<'a> {
    req: &'a PlacementRequest,
    /// Per input: cost by kind (`kind_index`).
    inputs: Vec<[Units; 4]>,
    /// Per input: its region's continent, if the region table knows it.
    continents: Vec<Option<Continent>>,
    /// The output's cost by source provider (`pidx`) and kind, and its region's continent.
    output: Option<([[Units; 4]; 3], Option<Continent>)>,
}

const KINDS: [EgressKind; 4] = [
    EgressKind::SameRegion,
    EgressKind::SameContinent,
    EgressKind::CrossContinent,
    EgressKind::Internet,
];

fn kind_index(k: EgressKind) -> usize {
    match k {
        EgressKind::SameRegion => 0,
        EgressKind::SameContinent => 1,
        EgressKind::CrossContinent => 2,
        EgressKind::Internet => 3,
    }
}

impl<'a> RequestEgress<'a> {
    fn new(req: &'a PlacementRequest, model: &CostModel) -> Self {
        RequestEgress {
            req,
            inputs: req
                .inputs
                .iter()
                .map(|i| KINDS.map(|k| model.egress.cost_units(i.provider, k, i.gb_milli)))
                .collect(),
            continents: req
                .inputs
                .iter()
                .map(|i| continent_of(i.provider, &i.region))
                .collect(),
            output: req.output.as_ref().map(|o| {
                let cost =
                    Provider::ALL.map(|p| KINDS.map(|k| model.egress.cost_units(p, k, o.gb_milli)));
                (cost, continent_of(o.provider, &o.region))
            }),
        }
    }

    /// Egress of the inputs to, and the output from, region group `g`.
    fn to_group(&self, g: &GroupInfo) -> Units {
        let mut total: Units = 0;
        for ((i, cost), c) in self
            .req
            .inputs
            .iter()
            .zip(&self.inputs)
            .zip(&self.continents)
        {
            total += cost[kind_index(g.kind_from(i, *c))];
        }
        if let (Some(o), Some((cost, c))) = (&self.req.output, &self.output) {
            total += cost[pidx(g.provider)][kind_index(g.kind_to(o, *c))];
        }
        total
    }
}

/// type in bits 0..32, group in bits 32..48, spot in bit 63.
fn pack(ty: u32, group: u16, spot: bool) -> u64 {
    u64::from(ty) | (u64::from(group) << 32) | (u64::from(spot) << 63)
}

#[inline]
fn unpack(k: u64) -> (usize, usize, bool) {
    (
        (k & 0xFFFF_FFFF) as usize,
        ((k >> 32) & 0xFFFF) as usize,
        (k >> 63) != 0,
    )
}

/// Expected interruption overhead in units: compute × nodes × f × L / 730, rounded half up;
/// L given in half-thousandths of an hour.
pub fn spot_overhead(compute: Units, nodes: i128, band: u8, lost_half_milli: i128) -> Units {
    let f = BAND_FREQ_PPM[usize::from(band.min(4))];
    let num = compute
        .saturating_mul(nodes)
        .saturating_mul(f)
        .saturating_mul(lost_half_milli);
    let den: i128 = 730 * 2_000_000_000;
    (num + den / 2) / den
}

/// Decimal hours, GB or percent → thousandths (validation helper for callers).
pub fn milli(d: Decimal) -> Option<i64> {
    super::money::to_milli(d)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::money::units_to_decimal;
    use crate::domain::{Catalog, Currency, InstanceAttrs, OfferKey, SpotBand};
    use proptest::prelude::*;
    use rust_decimal::RoundingStrategy;

    fn d(s: &str) -> Decimal {
        s.parse().unwrap()
    }

    #[allow(clippy::too_many_arguments)]
    fn offer(
        p: Provider,
        region: &str,
        zone: &str,
        ty: &str,
        market: Market,
        price: Decimal,
        attrs: (f64, f64, Option<&str>, f64, f64),
        age_days: i64,
    ) -> Offer {
        Offer {
            key: OfferKey {
                provider: p,
                region: region.into(),
                zone: zone.into(),
                instance_type: ty.into(),
                market,
            },
            price_per_hour: price,
            currency: Currency::USD,
            attrs: Some(InstanceAttrs {
                vcpus: attrs.0,
                memory_gib: attrs.1,
                gpu_model: attrs.2.map(String::from),
                gpu_count: attrs.3,
                gpu_memory_gib: attrs.4,
                arch: "x86_64".into(),
            }),
            source: "test".into(),
            observed_at: now() - chrono::Duration::days(age_days),
        }
    }

    fn now() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2026-11-27T00:00:00Z")
            .unwrap()
            .with_timezone(&Utc)
    }

    fn cond(marks: &[AvailabilityMark]) -> Conditions<'_> {
        Conditions {
            now: now(),
            failing: [false; 3],
            marks,
        }
    }

    /// A small two-cloud catalog for hand-checked examples.
    fn small() -> Catalog {
        let a100 = (96.0, 1152.0, Some("A100"), 8.0, 40.0);
        Catalog::new(
            vec![
                offer(
                    Provider::Aws,
                    "us-east-1",
                    "",
                    "p4d.24xlarge",
                    Market::OnDemand,
                    d("32.7726"),
                    a100,
                    0,
                ),
                offer(
                    Provider::Aws,
                    "us-east-1",
                    "use1-az1",
                    "p4d.24xlarge",
                    Market::Spot,
                    d("9.8318"),
                    a100,
                    0,
                ),
                offer(
                    Provider::Gcp,
                    "europe-west4",
                    "europe-west4-a",
                    "a2-highgpu-8g",
                    Market::OnDemand,
                    d("29.3871"),
                    (96.0, 680.0, Some("A100"), 8.0, 40.0),
                    0,
                ),
                offer(
                    Provider::Aws,
                    "us-east-1",
                    "",
                    "m6i.2xlarge",
                    Market::OnDemand,
                    d("0.384"),
                    (8.0, 32.0, None, 0.0, 0.0),
                    0,
                ),
                offer(
                    Provider::Azure,
                    "westeurope",
                    "",
                    "Standard_D8s_v5",
                    Market::OnDemand,
                    d("0.384"),
                    (8.0, 32.0, None, 0.0, 0.0),
                    30,
                ),
            ],
            vec![SpotBand {
                provider: Provider::Aws,
                region: "us-east-1".into(),
                instance_type: "p4d.24xlarge".into(),
                band: 4,
                label: ">20%".into(),
                savings_pct: 70,
            }],
        )
    }

    fn input(provider: Provider, region: &str, gb: i64) -> DataItem {
        DataItem {
            label: "input[0]".into(),
            provider,
            region: region.into(),
            gb_milli: gb * 1000,
        }
    }

    #[test]
    fn distinct_keeps_the_cheapest_of_each_region_or_provider() {
        let cat = small();
        let model = CostModel::default();
        let mut req = PlacementRequest {
            accelerators: vec!["A100".into()],
            accelerator_count: 8,
            hours_milli: 2000,
            market: MarketPolicy::SpotAllowed,
            ..Default::default()
        };
        let where_ = |d: &Decision| -> Vec<(Provider, String, Market)> {
            d.choices
                .iter()
                .map(|c| {
                    let k = &cat.offers()[c.offer].key;
                    (k.provider, k.region.clone(), k.market)
                })
                .collect()
        };
        let all = cat.placement().select(&req, &model, &cond(&[])).unwrap();
        // Spot 9.8318 x 2 plus its overhead, GCP 58.7742, then AWS on-demand 65.5452.
        assert_eq!(
            where_(&all),
            vec![
                (Provider::Aws, "us-east-1".into(), Market::Spot),
                (Provider::Gcp, "europe-west4".into(), Market::OnDemand),
                (Provider::Aws, "us-east-1".into(), Market::OnDemand),
            ]
        );
        for distinct in [Distinct::Region, Distinct::Provider] {
            req.distinct = Some(distinct);
            let d = cat.placement().select(&req, &model, &cond(&[])).unwrap();
            assert_eq!(where_(&d), where_(&all)[..2].to_vec(), "{distinct:?}");
            assert_eq!(d.choices[..2], all.choices[..2], "{distinct:?}");
            // Feasible counts and exclusions are those of the request without it.
            assert_eq!((d.counts, d.baseline), (all.counts, all.baseline));
        }
    }

    #[test]
    fn data_gravity_decides_between_clouds() {
        let cat = small();
        let model = CostModel::default();
        let mut req = PlacementRequest {
            accelerators: vec!["a100".into()],
            accelerator_count: 8,
            hours_milli: 2000,
            inputs: vec![input(Provider::Aws, "us-east-1", 2000)],
            ..Default::default()
        };
        let d1 = cat.placement().select(&req, &model, &cond(&[])).unwrap();
        // AWS: 32.7726 x 2 = 65.5452, data local. GCP: 29.3871 x 2 + 2000 GB x 0.09 = 238.7742.
        let best = &d1.choices[0];
        assert_eq!(cat.offers()[best.offer].key.instance_type, "p4d.24xlarge");
        assert_eq!(units_to_decimal(best.total), d("65.5452"));
        assert_eq!(units_to_decimal(d1.choices[1].total), d("238.7742"));
        assert_eq!(d1.baseline, Some(best.total));
        // Data in GCS europe-west4 instead: GCP local 58.7742; AWS pays GCP internet egress
        // 1024 x 0.12 + 976 x 0.11 = 230.24 -> 295.7852.
        req.inputs = vec![input(Provider::Gcp, "europe-west4", 2000)];
        let d2 = cat.placement().select(&req, &model, &cond(&[])).unwrap();
        assert_eq!(
            cat.offers()[d2.choices[0].offer].key.provider,
            Provider::Gcp
        );
        assert_eq!(units_to_decimal(d2.choices[0].total), d("58.7742"));
        assert_eq!(units_to_decimal(d2.choices[1].total), d("295.7852"));
        // Only the two A100 on-demand offers were feasible; spot removed by market policy,
        // the CPU offers by the accelerator constraint.
        assert_eq!(d2.feasible(), 2);
        assert_eq!(d2.exclusions(), vec![("accelerator", 2), ("market", 1)]);
    }

    #[test]
    fn volatile_spot_pays_its_expected_overhead() {
        let cat = small();
        let model = CostModel::default();
        let req = PlacementRequest {
            accelerators: vec!["A100".into()],
            accelerator_count: 8,
            hours_milli: 10_000,
            market: MarketPolicy::SpotAllowed,
            ..Default::default()
        };
        let dec = cat.placement().select(&req, &model, &cond(&[])).unwrap();
        let spot = dec
            .choices
            .iter()
            .find(|c| cat.offers()[c.offer].key.market == Market::Spot)
            .unwrap();
        // compute 98.318; band >20% -> f = 25%; L = 0.1 + min(1, 10)/2 = 0.6 h;
        // overhead = 98.318 x 1 x 0.25 x 0.6 / 730 = 0.020202328767... -> 0.020202328767
        assert_eq!(units_to_decimal(spot.compute), d("98.318"));
        assert_eq!(units_to_decimal(spot.overhead), d("0.020202328767"));
        assert_eq!(spot.band, Some(4));
        let req = PlacementRequest {
            max_band: Some(1),
            ..req
        };
        let dec = cat.placement().select(&req, &model, &cond(&[])).unwrap();
        assert!(dec.exclusions().contains(&("interruption_band", 1)));
    }

    #[test]
    fn jurisdictions_marks_and_caps_exclude_with_counts() {
        let cat = small();
        let model = CostModel::default();
        let req = PlacementRequest {
            min_vcpus: 8.0,
            jurisdictions: vec![Jurisdiction::Eu],
            allowed_providers: vec![Provider::Aws, Provider::Azure],
            ..Default::default()
        };
        let dec = cat.placement().select(&req, &model, &cond(&[])).unwrap();
        // Azure westeurope (NL) is the only EU CPU offer; it is 30 days old: flagged stale.
        assert_eq!(dec.choices.len(), 1);
        let c = &dec.choices[0];
        assert_eq!(cat.offers()[c.offer].key.region, "westeurope");
        assert!(c.stale);
        let mark = AvailabilityMark {
            id: "m1".into(),
            provider: Provider::Azure,
            region: Some("westeurope".into()),
            zone: None,
            reason: "capacity".into(),
            created_at: now(),
            expires_at: now() + chrono::Duration::hours(1),
        };
        let marks = [mark.clone()];
        let dec = cat.placement().select(&req, &model, &cond(&marks)).unwrap();
        assert!(dec.choices.is_empty());
        assert!(dec.exclusions().contains(&("unavailable", 1)));
        // An expired mark no longer applies.
        let expired = [AvailabilityMark {
            expires_at: now() - chrono::Duration::seconds(1),
            ..mark
        }];
        let dec = cat
            .placement()
            .select(&req, &model, &cond(&expired))
            .unwrap();
        assert_eq!(dec.choices.len(), 1);
        // Skip-stale policy removes it instead of flagging.
        let strict = CostModel {
            max_price_age_secs: 24 * 3600,
            skip_stale: true,
            ..CostModel::default()
        };
        let dec = cat.placement().select(&req, &strict, &cond(&[])).unwrap();
        assert!(dec.exclusions().contains(&("stale", 1)));
    }

    #[test]
    fn the_stale_rule_is_age_or_a_failing_provider() {
        let model = CostModel {
            max_price_age_secs: 86_400,
            ..CostModel::default()
        };
        let cpu = (8.0, 32.0, None, 0.0, 0.0);
        let at = |days| {
            offer(
                Provider::Gcp,
                "us-central1",
                "",
                "n2-standard-8",
                Market::OnDemand,
                d("0.3"),
                cpu,
                days,
            )
        };
        assert!(!model.is_stale(&at(0), now(), [false; 3]));
        assert!(model.is_stale(&at(2), now(), [false; 3]));
        assert!(model.is_stale(&at(0), now(), [false, true, false]));
        assert!(!model.is_stale(&at(0), now(), [true, false, true]));
    }

    #[test]
    fn suspect_offers_are_flagged_or_skipped_by_request_or_policy() {
        let cpu = (8.0, 32.0, None, 0.0, 0.0);
        let m6i = |region: &str, price: &str| {
            offer(
                Provider::Aws,
                region,
                "",
                "m6i.2xlarge",
                Market::OnDemand,
                d(price),
                cpu,
                0,
            )
        };
        // 0.05 is under a fifth of the m6i median (0.384): suspect, and the cheapest.
        let cat = Catalog::new(
            vec![
                m6i("us-east-1", "0.384"),
                m6i("us-west-2", "0.384"),
                m6i("eu-west-1", "0.428"),
                m6i("ap-south-1", "0.05"),
            ],
            vec![],
        );
        let req = PlacementRequest {
            min_vcpus: 8.0,
            ..Default::default()
        };
        let model = CostModel::default();
        let dec = cat.placement().select(&req, &model, &cond(&[])).unwrap();
        let first = &dec.choices[0];
        assert_eq!(cat.offers()[first.offer].key.region, "ap-south-1");
        assert!(first.suspect);
        assert!(dec.choices[1..].iter().all(|c| !c.suspect));
        // Skipped on request, counted under "suspect".
        let skip = PlacementRequest {
            skip_suspect: true,
            ..req.clone()
        };
        let dec = cat.placement().select(&skip, &model, &cond(&[])).unwrap();
        assert_eq!(dec.choices.len(), 3);
        assert!(dec.choices.iter().all(|c| !c.suspect));
        assert!(dec.exclusions().contains(&("suspect", 1)));
        // Or by the server's policy.
        let policy = CostModel {
            skip_suspect: true,
            ..CostModel::default()
        };
        let dec = cat.placement().select(&req, &policy, &cond(&[])).unwrap();
        assert_eq!(dec.exclusions(), vec![("suspect", 1)]);
    }

    #[test]
    fn a_failing_provider_is_flagged_or_skipped() {
        let cat = small();
        let req = PlacementRequest {
            accelerators: vec!["A100".into()],
            accelerator_count: 8,
            ..Default::default()
        };
        let failing_aws = Conditions {
            failing: [true, false, false],
            ..cond(&[])
        };
        let dec = cat
            .placement()
            .select(&req, &CostModel::default(), &failing_aws)
            .unwrap();
        for c in &dec.choices {
            let aws = cat.offers()[c.offer].key.provider == Provider::Aws;
            assert_eq!(c.stale, aws, "AWS flagged while its source fails");
        }
        let skip = CostModel {
            skip_stale: true,
            ..CostModel::default()
        };
        let dec = cat.placement().select(&req, &skip, &failing_aws).unwrap();
        assert!(
            dec.choices
                .iter()
                .all(|c| cat.offers()[c.offer].key.provider == Provider::Gcp)
        );
        assert!(dec.exclusions().contains(&("stale", 1)));
    }

    #[test]
    fn unknown_accelerator_lists_the_known_ones() {
        let cat = small();
        let req = PlacementRequest {
            accelerators: vec!["H900".into()],
            accelerator_count: 1,
            ..Default::default()
        };
        let e = cat
            .placement()
            .select(&req, &CostModel::default(), &cond(&[]))
            .unwrap_err();
        assert_eq!(
            e,
            PlacementError::UnknownAccelerator {
                given: "H900".into(),
                known: vec!["A100".into()]
            }
        );
    }

    // ---- property test against a brute-force oracle ----

    const REGIONS: [(Provider, &str); 6] = [
        (Provider::Aws, "us-east-1"),
        (Provider::Aws, "eu-west-1"),
        (Provider::Gcp, "us-central1"),
        (Provider::Gcp, "europe-west4"),
        (Provider::Azure, "eastus"),
        (Provider::Azure, "westeurope"),
    ];
    type TypeRow = (&'static str, f64, f64, Option<&'static str>, f64, f64);
    const TYPES: [TypeRow; 6] = [
        ("small", 2.0, 8.0, None, 0.0, 0.0),
        ("medium", 8.0, 32.0, None, 0.0, 0.0),
        ("large", 32.0, 128.0, None, 0.0, 0.0),
        ("gpu1", 12.0, 85.0, Some("A100"), 1.0, 40.0),
        ("gpu8", 96.0, 680.0, Some("A100"), 8.0, 80.0),
        ("t4", 8.0, 52.0, Some("T4"), 1.0, 16.0),
    ];

    fn arb_offer() -> impl Strategy<Value = Offer> {
        (
            0..6usize,
            0..3usize,
            0..6usize,
            any::<bool>(),
            1..200_000i64,
            0..40i64,
        )
            .prop_map(|(r, z, t, spot, price, age)| {
                let (p, region) = REGIONS[r];
                let (ty, v, m, g, n, gm) = TYPES[t];
                offer(
                    p,
                    region,
                    ["", "a", "b"][z],
                    &format!("{p}-{ty}"),
                    if spot { Market::Spot } else { Market::OnDemand },
                    Decimal::new(price, 4),
                    (v, m, g, n, gm),
                    age,
                )
            })
    }

    fn arb_request() -> impl Strategy<Value = PlacementRequest> {
        (
            (0..40u32, 0..200u32, 0..3usize, 1..9u32, 0..3usize),
            (
                1..50_000i64,
                1..4u32,
                0..4usize,
                prop::option::of(0..5u8),
                0..3i64,
            ),
            (
                prop::collection::vec((0..6usize, 0..5_000i64), 0..3),
                any::<bool>(),
                0..4usize,
            ),
            (
                0..4usize,
                prop::option::of(1..200_000i64),
                prop::option::of(1..50_000_000i64),
                1..6usize,
                0..3usize,
            ),
        )
            .prop_map(|(hw, mk, data, caps)| {
                let (vcpus, mem, accel, count, suspect) = hw;
                let (hours, nodes, market, band, savings) = mk;
                let (inputs, with_output, juris) = data;
                let (providers, max_price, max_total, k, distinct) = caps;
                PlacementRequest {
                    min_vcpus: f64::from(vcpus),
                    min_memory_gib: f64::from(mem),
                    accelerators: match accel {
                        0 => vec![],
                        1 => vec!["A100".into()],
                        _ => vec!["t4".into(), "A100".into()],
                    },
                    accelerator_count: if accel == 0 { 0 } else { count },
                    min_gpu_memory_gib: 0.0,
                    nodes,
                    hours_milli: hours,
                    market: [
                        MarketPolicy::OnDemandOnly,
                        MarketPolicy::SpotAllowed,
                        MarketPolicy::SpotOnly,
                        MarketPolicy::SpotAllowed,
                    ][market],
                    max_band: band,
                    min_savings_milli_pct: savings * 10_000,
                    inputs: inputs
                        .iter()
                        .enumerate()
                        .map(|(i, (r, gb))| DataItem {
                            label: format!("input[{i}]"),
                            provider: REGIONS[*r].0,
                            region: REGIONS[*r].1.into(),
                            gb_milli: *gb * 1000 + 500,
                        })
                        .collect(),
                    output: with_output.then(|| DataItem {
                        label: "output".into(),
                        provider: Provider::Aws,
                        region: "us-east-1".into(),
                        gb_milli: 123_456,
                    }),
                    allowed_providers: match providers {
                        1 => vec![Provider::Aws, Provider::Gcp],
                        _ => vec![],
                    },
                    denied_providers: match providers {
                        2 => vec![Provider::Azure],
                        _ => vec![],
                    },
                    allowed_regions: vec![],
                    denied_regions: if providers == 3 {
                        vec!["us-east-1".into()]
                    } else {
                        vec![]
                    },
                    jurisdictions: match juris {
                        1 => vec![Jurisdiction::Eu],
                        2 => vec![Jurisdiction::Country("US".into())],
                        _ => vec![],
                    },
                    max_price_nanos: max_price.map(|p| p * 100_000),
                    max_total: max_total.map(|t| i128::from(t) * 1_000_000_000),
                    skip_suspect: suspect == 1,
                    top_k: k,
                    distinct: [None, Some(Distinct::Region), Some(Distinct::Provider)][distinct],
                }
            })
    }

    /// The hardware half of the oracle: accelerator model, count, memory, vCPUs, memory.
    fn oracle_hw_ok(o: &Offer, req: &PlacementRequest) -> bool {
        let Some(a) = o.attrs.as_ref() else {
            return false;
        };
        let is_gpu = a.gpu_model.is_some() && a.gpu_count > 0.0;
        if !req.accelerators.is_empty() {
            let Some(m) = a.gpu_model.as_deref() else {
                return false;
            };
            if !is_gpu || !req.accelerators.iter().any(|x| x.eq_ignore_ascii_case(m)) {
                return false;
            }
            if a.gpu_count < f64::from(req.accelerator_count)
                || a.gpu_memory_gib < req.min_gpu_memory_gib
            {
                return false;
            }
        }
        a.vcpus >= req.min_vcpus && a.memory_gib >= req.min_memory_gib
    }

    /// Oracle for the saving baseline: cheapest hardware-feasible on-demand offer in the
    /// region of the largest input, compute + egress.
    fn oracle_baseline(
        cat: &Catalog,
        req: &PlacementRequest,
        model: &CostModel,
    ) -> Option<Decimal> {
        let home = req.inputs.iter().max_by_key(|i| i.gb_milli)?;
        cat.offers()
            .iter()
            .filter(|o| {
                o.key.provider == home.provider
                    && o.key.region == home.region
                    && o.key.market == Market::OnDemand
                    && oracle_hw_ok(o, req)
            })
            .map(|o| {
                let mut t =
                    o.price_per_hour * Decimal::new(req.hours_milli, 3) * Decimal::from(req.nodes);
                for i in &req.inputs {
                    t += oracle_egress(
                        model,
                        i.provider,
                        &i.region,
                        o.key.provider,
                        &o.key.region,
                        Decimal::new(i.gb_milli, 3),
                    );
                }
                if let Some(out) = &req.output {
                    t += oracle_egress(
                        model,
                        o.key.provider,
                        &o.key.region,
                        out.provider,
                        &out.region,
                        Decimal::new(out.gb_milli, 3),
                    );
                }
                t
            })
            .min()
    }

    /// Straightforward Decimal evaluation of one offer; `None` if infeasible.
    fn oracle_total(
        cat: &Catalog,
        o: &Offer,
        req: &PlacementRequest,
        model: &CostModel,
    ) -> Option<Decimal> {
        let a = o.attrs.as_ref()?;
        let is_gpu = a.gpu_model.is_some() && a.gpu_count > 0.0;
        if !req.accelerators.is_empty() {
            let m = a.gpu_model.as_deref()?;
            if !is_gpu || !req.accelerators.iter().any(|x| x.eq_ignore_ascii_case(m)) {
                return None;
            }
            if a.gpu_count < f64::from(req.accelerator_count)
                || a.gpu_memory_gib < req.min_gpu_memory_gib
            {
                return None;
            }
        }
        if a.vcpus < req.min_vcpus || a.memory_gib < req.min_memory_gib {
            return None;
        }
        let spot = o.key.market == Market::Spot;
        match (req.market, spot) {
            (MarketPolicy::OnDemandOnly, true) | (MarketPolicy::SpotOnly, false) => return None,
            _ => {}
        }
        let p = o.key.provider;
        if !req.allowed_providers.is_empty() && !req.allowed_providers.contains(&p) {
            return None;
        }
        if req.denied_providers.contains(&p) || req.denied_regions.contains(&o.key.region) {
            return None;
        }
        if !req.jurisdictions.is_empty() {
            let c = region_info(p, &o.key.region)?.country.clone();
            if !req.jurisdictions.iter().any(|j| j.contains(&c)) {
                return None;
            }
        }
        if req.skip_suspect && cat.suspicion(o).is_some() {
            return None;
        }
        if let Some(m) = req.max_price_nanos
            && o.price_per_hour * Decimal::from(1_000_000_000) > Decimal::from(m)
        {
            return None;
        }
        let band = if spot {
            Some(
                cat.band(p, &o.key.region, &o.key.instance_type)
                    .map(|b| b.band)
                    .unwrap_or(model.default_spot_band),
            )
        } else {
            None
        };
        if let (Some(b), Some(max)) = (band, req.max_band)
            && b > max
        {
            return None;
        }
        if spot && req.min_savings_milli_pct > 0 {
            let od = cat
                .offers()
                .iter()
                .filter(|x| {
                    x.key.provider == p
                        && x.key.region == o.key.region
                        && x.key.instance_type == o.key.instance_type
                        && x.key.market == Market::OnDemand
                })
                .map(|x| x.price_per_hour)
                .min();
            if let Some(od) = od {
                let pct = Decimal::new(req.min_savings_milli_pct, 3);
                if o.price_per_hour > od * (Decimal::ONE - pct / Decimal::from(100)) {
                    return None;
                }
            }
        }
        let hours = Decimal::new(req.hours_milli, 3);
        let nodes = Decimal::from(req.nodes);
        let compute = o.price_per_hour * hours * nodes;
        let mut egress = Decimal::ZERO;
        for i in &req.inputs {
            egress += oracle_egress(
                model,
                i.provider,
                &i.region,
                p,
                &o.key.region,
                Decimal::new(i.gb_milli, 3),
            );
        }
        if let Some(out) = &req.output {
            egress += oracle_egress(
                model,
                p,
                &o.key.region,
                out.provider,
                &out.region,
                Decimal::new(out.gb_milli, 3),
            );
        }
        let overhead = match band {
            None => Decimal::ZERO,
            Some(b) => {
                let f = Decimal::new(BAND_FREQ_PPM[b as usize] as i64, 6);
                let lost = Decimal::new(model.restart_hours_milli, 3)
                    + Decimal::new(model.checkpoint_hours_milli.min(req.hours_milli), 3)
                        / Decimal::from(2);
                (compute * nodes * f * lost / Decimal::from(730))
                    .round_dp_with_strategy(12, RoundingStrategy::MidpointAwayFromZero)
            }
        };
        let total = compute + egress + overhead;
        if let Some(m) = req.max_total
            && total > units_to_decimal(m)
        {
            return None;
        }
        Some(total)
    }

    fn oracle_egress(
        model: &CostModel,
        from: Provider,
        fr: &str,
        to: Provider,
        tr: &str,
        gb: Decimal,
    ) -> Decimal {
        let e = model.egress.provider(from);
        if from == to {
            if fr == tr {
                return Decimal::ZERO;
            }
            let same = region_info(from, fr).map(|r| r.continent)
                == region_info(to, tr).map(|r| r.continent)
                && region_info(from, fr).is_some();
            return gb
                * if same {
                    e.same_continent_per_gb
                } else {
                    e.cross_continent_per_gb
                };
        }
        let (mut left, mut lower, mut cost) = (gb, Decimal::ZERO, Decimal::ZERO);
        for t in &e.internet {
            let span = t.up_to_gb.map(|u| u - lower).unwrap_or(left);
            let n = left.min(span);
            cost += n * t.per_gb;
            left -= n;
            if let Some(u) = t.up_to_gb {
                lower = u;
            }
        }
        cost
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(1000))]
        #[test]
        fn index_agrees_with_brute_force(offers in prop::collection::vec(arb_offer(), 1..80), req in arb_request()) {
            // Each case twice: as drawn, and without the per-offer constraints (the path
            // that counts from aggregates and searches the top k group by group).
            let mut plain = req.clone();
            plain.max_band = None;
            plain.max_price_nanos = None;
            plain.max_total = None;
            plain.min_savings_milli_pct = 0;
            plain.skip_suspect = false;
            for req in [req, plain] {
            let bands = vec![SpotBand {
                provider: Provider::Aws,
                region: "us-east-1".into(),
                instance_type: "aws-gpu8".into(),
                band: 3,
                label: "15-20%".into(),
                savings_pct: 60,
            }];
            let cat = Catalog::new(offers.clone(), bands);
            let model = CostModel::default();
            let mut feasible: Vec<(Decimal, usize)> = cat
                .offers()
                .iter()
                .enumerate()
                .filter_map(|(i, o)| oracle_total(&cat, o, &req, &model).map(|t| (t, i)))
                .collect();
            feasible.sort();
            let dec = match cat.placement().select(&req, &model, &cond(&[])) {
                Ok(d) => d,
                Err(PlacementError::UnknownAccelerator { given, .. }) => {
                    // Only when the random catalog has no offer with that model.
                    prop_assert!(!cat.offers().iter().any(|o| o
                        .attrs
                        .as_ref()
                        .and_then(|a| a.gpu_model.as_deref())
                        .is_some_and(|m| m.eq_ignore_ascii_case(&given))));
                    return Ok(());
                }
            };
            prop_assert_eq!(dec.feasible(), feasible.len() as u64);
            prop_assert_eq!(dec.considered, cat.offers().len() as u64);
            let got: Vec<(Decimal, usize)> = dec.choices.iter().map(|c| (units_to_decimal(c.total), c.offer)).collect();
            // With `distinct`, the cheapest of each region (or provider), then the top k.
            let mut seen: Vec<(Provider, Option<String>)> = Vec::new();
            let want: Vec<(Decimal, usize)> = feasible
                .into_iter()
                .filter(|(_, i)| {
                    let o = &cat.offers()[*i];
                    let key = match req.distinct {
                        None => return true,
                        Some(Distinct::Region) => (o.key.provider, Some(o.key.region.clone())),
                        Some(Distinct::Provider) => (o.key.provider, None),
                    };
                    if seen.contains(&key) {
                        return false;
                    }
                    seen.push(key);
                    true
                })
                .take(req.top_k)
                .collect();
            prop_assert_eq!(got, want);
            prop_assert_eq!(dec.baseline.map(units_to_decimal), oracle_baseline(&cat, &req, &model));
            }
        }
    }
}
