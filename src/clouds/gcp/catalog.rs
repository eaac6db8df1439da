//! GCP Cloud Billing Catalog adapter (`GcpCatalogSource`, source name "gcp"). Google does
//! not publish a price per machine type: it publishes per-vCPU-hour "Core", per-GiB-hour
//! "Ram" and per-GPU-hour SKUs by family and region. This file walks the Compute Engine SKU
//! list (`nextPageToken` pagination), turns each usable SKU into a rate in a `RateCard`, and
//! composes every machine type of `shapes.rs` (and every GCP type the store knows) into an
//! `Offer`: vCPUs × core + GiB × ram (+ GPUs × GPU rate). Page parsing and composition are
//! pure functions over parsed pages; only `GcpCatalogSource::fetch` does HTTP.
//! Invariants: prices are exact (`units + nanos/1e9`); a non-USD rate is rejected, never
//! stored as USD; the API key never appears in an error message or a URL this file logs.
use std::collections::{BTreeSet, HashMap, HashSet};
use std::fmt;

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use serde::Deserialize;

use super::shapes::{self, MachineShape};
use crate::clouds::{HttpSettings, PriceSource, SourceBatch, SourceError};
use crate::domain::{Currency, KnownInstances, Market, Offer, OfferKey, Provider};
use crate::remote::http::{self, TokenGuard};

/// Public endpoint of the Cloud Billing Catalog API.
pub const DEFAULT_BASE_URL: &str = "https://cloudbilling.googleapis.com";
/// Service id of Compute Engine in the catalog.
pub const COMPUTE_SERVICE_ID: &str = "6F81-5844-456A";
/// Largest page the API serves.
pub const PAGE_SIZE: u32 = 5000;
/// Name of this source (status, logs, the offers' `source`).
pub const SOURCE_NAME: &str = "gcp";

// ---------------------------------------------------------------------------------------
// Wire format

/// One page of `GET /v1/services/{service}/skus`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SkuPage {
    #[serde(default)]
    pub skus: Vec<Sku>,
    /// Missing or empty on the last page.
    #[serde(default)]
    pub next_page_token: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Sku {
    #[serde(default)]
    pub sku_id: String,
    #[serde(default)]
    pub description: String,
    #[serde(default)]
    pub category: Option<SkuCategory>,
    #[serde(default)]
    pub service_regions: Vec<String>,
    #[serde(default)]
    pub pricing_info: Vec<PricingInfo>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SkuCategory {
    #[serde(default)]
    pub resource_family: String,
    #[serde(default)]
    pub resource_group: String,
    /// "OnDemand", "Preemptible", "Commit1Yr", ...
    #[serde(default)]
    pub usage_type: String,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PricingInfo {
    #[serde(default)]
    pub pricing_expression: Option<PricingExpression>,
    #[serde(default)]
    pub effective_time: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PricingExpression {
    /// "h" for vCPU and GPU hours, "GiBy.h" for memory.
    #[serde(default)]
    pub usage_unit: String,
    #[serde(default)]
    pub tiered_rates: Vec<TierRate>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TierRate {
    #[serde(default)]
    pub unit_price: Option<GoogleMoney>,
}

/// `google.type.Money`: `units` is an int64 (a JSON string on the wire), `nanos` an int32
/// with the same sign.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GoogleMoney {
    #[serde(default)]
    pub currency_code: String,
    #[serde(default)]
    pub units: Int64,
    #[serde(default)]
    pub nanos: i32,
}

impl GoogleMoney {
    /// Exact amount: `units + nanos / 1e9`.
    pub fn amount(&self) -> Option<Decimal> {
        let n = i128::from(self.units.0)
            .checked_mul(1_000_000_000)?
            .checked_add(i128::from(self.nanos))?;
        Decimal::try_from_i128_with_scale(n, 9)
            .ok()
            .map(|d| d.normalize())
    }
}

/// A proto3 int64 as JSON: usually a string ("2"), sometimes a plain number.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Int64(pub i64);

impl<'de> Deserialize<'de> for Int64 {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = Int64;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an int64 as a string or an integer")
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Int64, E> {
                Ok(Int64(v))
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Int64, E> {
                i64::try_from(v).map(Int64).map_err(E::custom)
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Int64, E> {
                v.trim().parse().map(Int64).map_err(E::custom)
            }
        }
        d.deserialize_any(V)
    }
}

/// Parses one page; `shown_url` (already redacted) names the page in errors.
pub fn parse_page(body: &[u8], shown_url: &str) -> Result<SkuPage, SourceError> {
    serde_json::from_slice(body).map_err(|e| SourceError::Malformed {
        url: shown_url.to_string(),
        detail: e.to_string(),
    })
}

// ---------------------------------------------------------------------------------------
// URLs and key hygiene

/// Percent-encodes everything but RFC 3986 unreserved characters.
fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// URL of one SKU page. Contains the key: pass it through [`redact`] before showing it.
pub fn skus_url(base: &str, api_key: &str, page_token: Option<&str>) -> String {
    let mut url = format!(
        "{}/v1/services/{COMPUTE_SERVICE_ID}/skus?key={}&currencyCode=USD&pageSize={PAGE_SIZE}",
        base.trim_end_matches('/'),
        encode(api_key)
    );
    if let Some(t) = page_token {
        url.push_str("&pageToken=");
        url.push_str(&encode(t));
    }
    url
}

/// Replaces every occurrence of the API key (raw or percent-encoded) with "REDACTED".
pub fn redact(text: &str, api_key: &str) -> String {
    if api_key.is_empty() {
        return text.to_string();
    }
    let mut out = text.replace(api_key, "REDACTED");
    let encoded = encode(api_key);
    if encoded != api_key {
        out = out.replace(&encoded, "REDACTED");
    }
    out
}

/// Redacts the key from an error, and turns Google's "400 API_KEY_INVALID" into `Auth`.
pub fn map_http_error(err: SourceError, api_key: &str) -> SourceError {
    let r = |s: String| redact(&s, api_key);
    match err {
        SourceError::Http {
            url, status, body, ..
        } if status == 400
            && (body.contains("API_KEY_INVALID") || body.contains("API key not valid")) =>
        {
            SourceError::Auth(format!(
                "GCP Cloud Billing rejected the API key (HTTP 400 API_KEY_INVALID) from {}",
                r(url)
            ))
        }
        SourceError::Http {
            url,
            status,
            attempts,
            body,
        } => SourceError::Http {
            url: r(url),
            status,
            attempts,
            body: r(body),
        },
        SourceError::Throttled {
            url,
            status,
            attempts,
        } => SourceError::Throttled {
            url: r(url),
            status,
            attempts,
        },
        SourceError::Transport { url, detail } => SourceError::Transport {
            url: r(url),
            detail: r(detail),
        },
        SourceError::Malformed { url, detail } => SourceError::Malformed {
            url: r(url),
            detail: r(detail),
        },
        SourceError::PaginationLoop { url, token } => SourceError::PaginationLoop {
            url: r(url),
            token: r(token),
        },
        SourceError::Auth(m) => SourceError::Auth(r(m)),
        SourceError::Sdk(m) => SourceError::Sdk(r(m)),
        SourceError::Config(m) => SourceError::Config(r(m)),
    }
}

// ---------------------------------------------------------------------------------------
// SKU classification

/// Which part of a machine a Core/Ram SKU prices.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Component {
    /// Per vCPU-hour.
    Core,
    /// Per GiB-hour.
    Ram,
}

/// What a SKU description names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SkuKind {
    /// "<FAMILY> Instance Core|Ram running in <place>" → family ("n2d") and component.
    Machine {
        family: String,
        component: Component,
    },
    /// "Nvidia <model> GPU running in <place>" → SkyPilot accelerator name.
    Gpu { model: &'static str },
}

/// Words that mark SKUs that are not plain predefined-VM rates.
const EXCLUDED_WORDS: [(&str, &str); 6] = [
    ("custom", "custom machine type SKU"),
    ("sole tenancy", "sole-tenant SKU"),
    ("reserved", "reservation SKU"),
    ("commitment", "committed-use SKU"),
    ("extended", "extended-memory SKU"),
    ("premium", "premium surcharge SKU"),
];

/// Why a description is excluded before it is parsed, if it is.
pub fn excluded_reason(description: &str) -> Option<&'static str> {
    let d = description.to_ascii_lowercase();
    EXCLUDED_WORDS
        .iter()
        .find(|(w, _)| d.contains(w))
        .map(|(_, reason)| *reason)
}

/// Removes a leading "Spot Preemptible " / "Preemptible " (case-insensitive); returns the rest
/// and whether it was there.
fn strip_spot_prefix(s: &str) -> (&str, bool) {
    for p in ["spot preemptible ", "preemptible "] {
        if s.get(..p.len()).is_some_and(|h| h.eq_ignore_ascii_case(p)) {
            return (&s[p.len()..], true);
        }
    }
    (s, false)
}

fn looks_like_family(token: &str) -> bool {
    let b = token.as_bytes();
    !b.is_empty()
        && b.len() <= 5
        && b[0].is_ascii_alphabetic()
        && b.iter().all(u8::is_ascii_alphanumeric)
        && b.iter().any(u8::is_ascii_digit)
}

fn gpu_model(tokens: &[&str]) -> Option<&'static str> {
    Some(match tokens {
        ["a100"] => "A100",
        ["a100", "80gb"] => "A100-80GB",
        ["h100"] | ["h100", "80gb"] => "H100",
        ["h100", "80gb", "mega"] | ["h100", "mega", "80gb"] | ["h100", "mega"] => "H100-MEGA",
        ["h200"] | ["h200", "141gb"] => "H200",
        ["b200"] | ["a4", "b200"] => "B200",
        ["l4"] => "L4",
        ["t4"] => "T4",
        ["v100"] => "V100",
        ["p100"] => "P100",
        ["p4"] => "P4",
        _ => return None,
    })
}

/// Reads a SKU description: the family and component of a Core/Ram SKU, or the accelerator
/// of a GPU SKU, plus whether the text marks it as Spot/preemptible. `None` when the text is
/// not one of those (or names something this adapter does not price, like a virtual
/// workstation GPU).
///
/// "Spot Preemptible N2D AMD Instance Core running in Americas" → (n2d, Core, spot);
/// "Nvidia Tesla T4 GPU attached to Spot Preemptible VMs running in Americas" → (T4, spot).
pub fn classify_description(description: &str) -> Option<(SkuKind, bool)> {
    let head = description
        .split(" running in ")
        .next()
        .unwrap_or(description)
        .trim();
    let (head, attached_spot) = match head.split_once(" attached to ") {
        Some((h, to)) => {
            let to = to.to_ascii_lowercase();
            (h, to.contains("spot") || to.contains("preemptible"))
        }
        None => (head, false),
    };
    let (head, prefix_spot) = strip_spot_prefix(head);
    let spot = attached_spot || prefix_spot;
    let lower = head.to_ascii_lowercase();
    let is_gpu = lower.split_whitespace().any(|t| t == "gpu");
    // Drop any parenthesised note: "A4 Nvidia B200 (1 gpu slice)".
    let lower = lower.split('(').next().unwrap_or("").trim().to_string();
    let tokens: Vec<&str> = lower.split_whitespace().collect();

    if is_gpu {
        let rest: Vec<&str> = tokens
            .iter()
            .copied()
            .filter(|t| !matches!(*t, "nvidia" | "tesla" | "gpu"))
            .collect();
        return gpu_model(&rest).map(|model| (SkuKind::Gpu { model }, spot));
    }

    let (component, body) = match tokens.split_last()? {
        (&("core" | "cpu"), body) => (Component::Core, body),
        (&"ram", body) => (Component::Ram, body),
        _ => return None,
    };
    let body = match body.split_last() {
        Some((&"instance", rest)) => rest,
        _ => body,
    };
    let words: Vec<&str> = body
        .iter()
        .copied()
        .filter(|t| !matches!(*t, "amd" | "arm" | "intel" | "predefined"))
        .collect();
    let family = match words.as_slice() {
        ["compute", "optimized"] | ["compute-optimized"] => "c2".to_string(),
        ["memory-optimized"] | ["memory", "optimized"] => "m1".to_string(),
        [f, "memory-optimized"] if looks_like_family(f) => f.to_string(),
        [f] if looks_like_family(f) => f.to_string(),
        _ => return None,
    };
    Some((SkuKind::Machine { family, component }, spot))
}

/// The SKU's current rate: the latest pricing info, first tier with a nonzero price.
/// Returns the unit and the money, or a reason.
fn current_rate(sku: &Sku) -> Result<(&str, &GoogleMoney), String> {
    let info = sku
        .pricing_info
        .iter()
        .filter(|p| p.pricing_expression.is_some())
        .max_by(|a, b| a.effective_time.cmp(&b.effective_time))
        .and_then(|p| p.pricing_expression.as_ref())
        .ok_or("no pricing info")?;
    let money = info
        .tiered_rates
        .iter()
        .filter_map(|t| t.unit_price.as_ref())
        .find(|m| m.units.0 != 0 || m.nanos != 0)
        .ok_or("zero price")?;
    Ok((info.usage_unit.as_str(), money))
}

// ---------------------------------------------------------------------------------------
// Rate card

/// Rates gathered from SKU pages: per (region, market, family, component) and per
/// (region, market, accelerator).
#[derive(Debug, Default)]
pub struct RateCard {
    /// Configured regions (lower-case); empty = all.
    regions: HashSet<String>,
    machine: HashMap<(String, Market, String, Component), Decimal>,
    gpu: HashMap<(String, Market, String), Decimal>,
    rejected: Vec<String>,
    /// SKUs that are not machine rates at all (disks, network, licences, ...).
    ignored: u64,
}

impl RateCard {
    /// A card that keeps only `regions` (all when empty).
    pub fn new(regions: &[String]) -> Self {
        RateCard {
            regions: regions
                .iter()
                .map(|r| r.trim().to_ascii_lowercase())
                .filter(|r| !r.is_empty())
                .collect(),
            ..Default::default()
        }
    }

    pub fn add_page(&mut self, page: &SkuPage) {
        for sku in &page.skus {
            self.add_sku(sku);
        }
    }

    fn reject(&mut self, sku: &Sku, reason: &str) {
        self.rejected.push(format!(
            "sku {} {:?}: {reason}",
            sku.sku_id, sku.description
        ));
    }

    /// Files one SKU as a rate, or records why not.
    pub fn add_sku(&mut self, sku: &Sku) {
        let cat = sku.category.clone().unwrap_or_default();
        let is_compute_rate = cat.resource_family == "Compute"
            && matches!(cat.resource_group.as_str(), "CPU" | "RAM" | "GPU");
        let parsed = classify_description(&sku.description);
        if parsed.is_none() && !is_compute_rate {
            self.ignored += 1;
            return;
        }
        if let Some(reason) = excluded_reason(&sku.description) {
            return self.reject(sku, reason);
        }
        let Some((kind, spot_hint)) = parsed else {
            return self.reject(sku, "unrecognised compute SKU description");
        };
        let market = match cat.usage_type.as_str() {
            "OnDemand" => Market::OnDemand,
            "Preemptible" => Market::Spot,
            "" if spot_hint => Market::Spot,
            "" => Market::OnDemand,
            other => return self.reject(sku, &format!("usage type {other} is not priced")),
        };
        let (unit, money) = match current_rate(sku) {
            Ok(r) => r,
            Err(reason) => return self.reject(sku, &reason),
        };
        if money.currency_code != "USD" {
            tracing::warn!(
                sku = %sku.sku_id,
                description = %sku.description,
                currency = %money.currency_code,
                "GCP SKU priced in a currency other than USD; rejected"
            );
            return self.reject(
                sku,
                &format!(
                    "priced in {:?}, not USD; rejected, never stored as USD",
                    money.currency_code
                ),
            );
        }
        let expected_unit = match &kind {
            SkuKind::Machine {
                component: Component::Ram,
                ..
            } => "GiBy.h",
            _ => "h",
        };
        if unit != expected_unit {
            return self.reject(sku, &format!("unit {unit:?}, expected {expected_unit:?}"));
        }
        let Some(price) = money.amount().filter(|p| *p > Decimal::ZERO) else {
            return self.reject(sku, "price is not a positive amount");
        };
        let regions: Vec<String> = sku
            .service_regions
            .iter()
            .map(|r| r.trim().to_ascii_lowercase())
            .filter(|r| !r.is_empty())
            .filter(|r| self.regions.is_empty() || self.regions.contains(r))
            .collect();
        for region in regions {
            // Two SKUs for one slot should not happen; keep the lower rate, deterministically.
            match &kind {
                SkuKind::Machine { family, component } => {
                    let key = (region, market, family.clone(), *component);
                    let slot = self.machine.entry(key).or_insert(price);
                    *slot = (*slot).min(price);
                }
                SkuKind::Gpu { model } => {
                    let key = (region, market, model.to_string());
                    let slot = self.gpu.entry(key).or_insert(price);
                    *slot = (*slot).min(price);
                }
            }
        }
    }

    /// Per-vCPU-hour (Core) or per-GiB-hour (Ram) rate of a family.
    pub fn machine_rate(
        &self,
        region: &str,
        market: Market,
        family: &str,
        component: Component,
    ) -> Option<Decimal> {
        self.machine
            .get(&(region.to_string(), market, family.to_string(), component))
            .copied()
    }

    /// Per-GPU-hour rate of an accelerator (SkyPilot name).
    pub fn gpu_rate(&self, region: &str, market: Market, model: &str) -> Option<Decimal> {
        self.gpu
            .get(&(region.to_string(), market, model.to_string()))
            .copied()
    }

    /// Regions with at least one rate, sorted.
    pub fn regions(&self) -> BTreeSet<String> {
        self.machine
            .keys()
            .map(|k| k.0.clone())
            .chain(self.gpu.keys().map(|k| k.0.clone()))
            .collect()
    }

    /// SKUs seen but not used, with reasons.
    pub fn rejected(&self) -> &[String] {
        &self.rejected
    }

    /// How many SKUs were not machine/GPU rates at all.
    pub fn ignored(&self) -> u64 {
        self.ignored
    }
}

// ---------------------------------------------------------------------------------------
// Composition

/// Shapes to price: the rule table, plus every GCP type in `known` the table lacks (family =
/// prefix before the first '-'). Known types that cannot be composed are reported.
pub fn shapes_to_price(known: &KnownInstances, rejected: &mut Vec<String>) -> Vec<MachineShape> {
    let mut out = shapes::machine_shapes();
    let table: HashSet<String> = out.iter().map(|s| s.name.clone()).collect();
    let mut extra: Vec<(&String, &crate::domain::InstanceAttrs)> = known
        .iter()
        .filter(|((p, name), _)| *p == Provider::Gcp && !table.contains(name))
        .map(|((_, name), attrs)| (name, attrs))
        .collect();
    extra.sort_by(|a, b| a.0.cmp(b.0));
    for (name, attrs) in extra {
        match shapes::shape_from_attrs(name, attrs) {
            Ok(s) => out.push(s),
            Err(reason) => rejected.push(format!("known gcp type {name}: {reason}")),
        }
    }
    out
}

/// Prices every shape in every region/market the card has rates for. Returns offers sorted
/// by key, plus reasons for shapes that had some but not all of the rates they need.
pub fn compose_offers(
    card: &RateCard,
    shapes: &[MachineShape],
    now: DateTime<Utc>,
) -> (Vec<Offer>, Vec<String>) {
    let mut offers = Vec::new();
    let mut notes: Vec<String> = Vec::new();
    let mut noted: HashSet<String> = HashSet::new();
    let mut note = |msg: String| {
        if noted.insert(msg.clone()) {
            notes.push(msg);
        }
    };
    for region in card.regions() {
        for market in [Market::OnDemand, Market::Spot] {
            for shape in shapes {
                let core = card.machine_rate(&region, market, &shape.family, Component::Core);
                let ram = card.machine_rate(&region, market, &shape.family, Component::Ram);
                let (core, ram) = match (core, ram) {
                    (Some(c), Some(r)) => (c, r),
                    // Family not sold here in this market: nothing to say.
                    (None, None) => continue,
                    (c, _) => {
                        let missing = if c.is_none() { "Core" } else { "Ram" };
                        note(format!(
                            "gcp {region} {market}: family {} has no {missing} rate; its types skipped",
                            shape.family
                        ));
                        continue;
                    }
                };
                let Some(mut price) = shape.vcpus.checked_mul(core).and_then(|c| {
                    shape
                        .memory_gib
                        .checked_mul(ram)
                        .and_then(|r| c.checked_add(r))
                }) else {
                    note(format!(
                        "gcp {region} {market}: {} price overflows",
                        shape.name
                    ));
                    continue;
                };
                if let Some(gpu) = &shape.gpu {
                    let Some(rate) = card.gpu_rate(&region, market, &gpu.model) else {
                        if shape.name.contains('+') {
                            note(format!(
                                "gcp {region} {market}: no {} GPU rate; N1+{} combinations skipped",
                                gpu.model, gpu.model
                            ));
                        } else {
                            note(format!(
                                "gcp {region} {market}: {} skipped: no {} GPU rate",
                                shape.name, gpu.model
                            ));
                        }
                        continue;
                    };
                    let Some(p) = Decimal::from(gpu.count)
                        .checked_mul(rate)
                        .and_then(|g| price.checked_add(g))
                    else {
                        note(format!(
                            "gcp {region} {market}: {} price overflows",
                            shape.name
                        ));
                        continue;
                    };
                    price = p;
                }
                offers.push(Offer {
                    key: OfferKey {
                        provider: Provider::Gcp,
                        region: region.clone(),
                        zone: String::new(),
                        instance_type: shape.name.clone(),
                        market,
                    },
                    price_per_hour: price.normalize(),
                    currency: Currency::USD,
                    attrs: Some(shape.attrs()),
                    source: SOURCE_NAME.to_string(),
                    observed_at: now,
                });
            }
        }
    }
    offers.sort_by(|a, b| a.key.cmp(&b.key));
    (offers, notes)
}

/// Everything after the walk, as one pure step: rates from `pages`, composed offers, and
/// every rejection. `fetch` uses it; so can tests with recorded pages.
pub fn batch_from_pages(
    pages: &[SkuPage],
    regions: &[String],
    known: &KnownInstances,
    now: DateTime<Utc>,
) -> SourceBatch {
    let mut card = RateCard::new(regions);
    for p in pages {
        card.add_page(p);
    }
    finish(card, known, now, pages.len() as u32)
}

fn finish(card: RateCard, known: &KnownInstances, now: DateTime<Utc>, pages: u32) -> SourceBatch {
    let mut rejected = card.rejected().to_vec();
    let shapes = shapes_to_price(known, &mut rejected);
    let (offers, notes) = compose_offers(&card, &shapes, now);
    rejected.extend(notes);
    if card.ignored() > 0 {
        rejected.push(format!(
            "{} SKUs are not machine core/RAM/GPU rates (disks, network, licences, ...); ignored",
            card.ignored()
        ));
    }
    SourceBatch {
        offers,
        bands: Vec::new(),
        rejected,
        pages,
    }
}

// ---------------------------------------------------------------------------------------
// The source

/// The Cloud Billing Catalog as a `PriceSource`.
pub struct GcpCatalogSource {
    settings: HttpSettings,
    api_key: String,
    regions: Vec<String>,
}

impl fmt::Debug for GcpCatalogSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GcpCatalogSource")
            .field("endpoint", &self.base_url())
            .field("api_key", &"REDACTED")
            .field("regions", &self.regions)
            .finish()
    }
}

impl GcpCatalogSource {
    /// `regions` empty = every region in the catalog.
    pub fn new(settings: HttpSettings, api_key: String, regions: Vec<String>) -> Self {
        GcpCatalogSource {
            settings,
            api_key,
            regions,
        }
    }

    /// Base URL: `settings.endpoint` or the public endpoint.
    pub fn base_url(&self) -> &str {
        self.settings
            .endpoint
            .as_deref()
            .map(str::trim)
            .filter(|e| !e.is_empty())
            .unwrap_or(DEFAULT_BASE_URL)
            .trim_end_matches('/')
    }
}

#[async_trait::async_trait]
impl PriceSource for GcpCatalogSource {
    fn name(&self) -> &str {
        SOURCE_NAME
    }

    fn provider(&self) -> Provider {
        Provider::Gcp
    }

    async fn fetch(&self, known: &KnownInstances) -> Result<SourceBatch, SourceError> {
        let key = self.api_key.trim();
        if key.is_empty() {
            return Err(SourceError::Config(
                "GCP Cloud Billing Catalog needs an API key".into(),
            ));
        }
        let client = http::client(&self.settings)?;
        let mut card = RateCard::new(&self.regions);
        let mut guard = TokenGuard::default();
        let mut token: Option<String> = None;
        let mut pages = 0u32;
        loop {
            let url = skus_url(self.base_url(), key, token.as_deref());
            let shown = redact(&url, key);
            tracing::debug!(url = %shown, page = pages + 1, "fetching GCP SKU page");
            let body = http::get_with_retry(&client, &url, &self.settings)
                .await
                .map_err(|e| map_http_error(e, key))?;
            let page = parse_page(&body.0, &shown).map_err(|e| map_http_error(e, key))?;
            pages += 1;
            card.add_page(&page);
            match guard
                .next(page.next_page_token.as_deref(), &shown)
                .map_err(|e| map_http_error(e, key))?
            {
                Some(t) => token = Some(t),
                None => break,
            }
        }
        let batch = finish(card, known, Utc::now(), pages);
        tracing::info!(
            pages,
            offers = batch.offers.len(),
            rejected = batch.rejected.len(),
            "GCP catalog walk complete"
        );
        Ok(batch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::InstanceAttrs;

    const DIR: &str = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../shared/data/price-api-samples/gcp/"
    );

    fn page(file: &str) -> SkuPage {
        let body = std::fs::read(format!("{DIR}{file}")).expect("sample");
        parse_page(&body, file).expect("parses")
    }

    fn d(s: &str) -> Decimal {
        s.parse().unwrap()
    }

    fn now() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2026-01-01T00:00:00Z")
            .unwrap()
            .with_timezone(&Utc)
    }

    fn price(batch: &SourceBatch, region: &str, it: &str, market: Market) -> Option<Decimal> {
        batch
            .offers
            .iter()
            .find(|o| o.key.region == region && o.key.instance_type == it && o.key.market == market)
            .map(|o| o.price_per_hour)
    }

    #[test]
    fn descriptions_name_family_component_and_market() {
        let m = |f: &str, c| SkuKind::Machine {
            family: f.into(),
            component: c,
        };
        let cases = [
            (
                "N2D AMD Instance Core running in Americas",
                m("n2d", Component::Core),
                false,
            ),
            (
                "A2 Instance Ram running in Americas",
                m("a2", Component::Ram),
                false,
            ),
            (
                "E2 Instance Core running in Americas",
                m("e2", Component::Core),
                false,
            ),
            (
                "T2D AMD Instance Core running in Singapore",
                m("t2d", Component::Core),
                false,
            ),
            (
                "Spot Preemptible N4A Instance Core running in Iowa",
                m("n4a", Component::Core),
                true,
            ),
            (
                "N1 Predefined Instance Ram running in Zurich",
                m("n1", Component::Ram),
                false,
            ),
            (
                "Compute optimized Core running in Americas",
                m("c2", Component::Core),
                false,
            ),
            (
                "Memory-optimized Instance Ram running in Iowa",
                m("m1", Component::Ram),
                false,
            ),
            (
                "Preemptible N1 Predefined Instance Core running in Iowa",
                m("n1", Component::Core),
                true,
            ),
        ];
        for (desc, kind, spot) in cases {
            assert_eq!(classify_description(desc), Some((kind, spot)), "{desc}");
        }
        assert_eq!(
            classify_description("Micro Instance with burstable CPU running in Americas"),
            None
        );
        assert_eq!(classify_description("Storage PD Capacity in Iowa"), None);
    }

    #[test]
    fn gpu_descriptions_map_to_skypilot_names() {
        let cases = [
            ("Nvidia Tesla A100 GPU running in Americas", "A100", false),
            (
                "Nvidia Tesla A100 80GB GPU running in Americas",
                "A100-80GB",
                false,
            ),
            ("Nvidia H100 80GB GPU running in Americas", "H100", false),
            (
                "Nvidia H100 80GB Mega GPU running in Americas",
                "H100-MEGA",
                false,
            ),
            ("Nvidia H200 141GB GPU running in Americas", "H200", false),
            ("H200 141GB GPU running in Americas", "H200", false),
            ("Nvidia B200 GPU running in Americas", "B200", false),
            (
                "A4 Nvidia B200 (1 gpu slice) running in Americas",
                "B200",
                false,
            ),
            ("Nvidia L4 GPU running in Americas", "L4", false),
            ("Nvidia Tesla T4 GPU running in Americas", "T4", false),
            ("Nvidia Tesla V100 GPU running in Americas", "V100", false),
            ("Nvidia Tesla P100 GPU running in Americas", "P100", false),
            ("Nvidia Tesla P4 GPU running in Americas", "P4", false),
            (
                "Nvidia Tesla T4 GPU attached to Spot Preemptible VMs running in Americas",
                "T4",
                true,
            ),
            (
                "Spot Preemptible NVIDIA L4 GPU running in Americas",
                "L4",
                true,
            ),
        ];
        for (desc, model, spot) in cases {
            assert_eq!(
                classify_description(desc),
                Some((SkuKind::Gpu { model }, spot)),
                "{desc}"
            );
        }
        assert_eq!(
            classify_description("Nvidia Tesla T4 Virtual Workstation GPU running in Americas"),
            None
        );
        assert_eq!(
            classify_description("Nvidia GB200 GPU running in Americas"),
            None
        );
    }

    #[test]
    fn money_is_exact() {
        let m = GoogleMoney {
            currency_code: "USD".into(),
            units: Int64(2),
            nanos: 933_908_000,
        };
        assert_eq!(m.amount(), Some(d("2.933908")));
        let neg = GoogleMoney {
            currency_code: "USD".into(),
            units: Int64(-1),
            nanos: -500_000_000,
        };
        assert_eq!(neg.amount(), Some(d("-1.5")));
        let p: SkuPage = serde_json::from_str(
            r#"{"skus":[{"pricingInfo":[{"pricingExpression":{"usageUnit":"h","tieredRates":[{"unitPrice":{"currencyCode":"USD","units":7,"nanos":1}}]}}]}]}"#,
        )
        .unwrap();
        let rate = current_rate(&p.skus[0]).unwrap().1.amount();
        assert_eq!(rate, Some(d("7.000000001")));
    }

    #[test]
    fn n4a_n4d_on_demand_and_spot_are_composed_exactly() {
        let batch = batch_from_pages(
            &[page("compute_skus_n4a_n4d_us-central1.json")],
            &[],
            &KnownInstances::new(),
            now(),
        );
        let r = "us-central1";
        // 8 × 0.02911 + 32 × 0.00331
        let od = d("8") * d("0.02911") + d("32") * d("0.00331");
        assert_eq!(
            price(&batch, r, "n4d-standard-8", Market::OnDemand),
            Some(od)
        );
        assert_eq!(od, d("0.3388"));
        let spot = d("8") * d("0.01553") + d("32") * d("0.001767");
        assert_eq!(price(&batch, r, "n4d-standard-8", Market::Spot), Some(spot));
        // N4A: the Custom (0.027783) and Sole Tenancy rates must not leak in.
        let n4a = d("4") * d("0.02646") + d("16") * d("0.00301");
        assert_eq!(
            price(&batch, r, "n4a-standard-4", Market::OnDemand),
            Some(n4a)
        );
        let n4a_spot = d("2") * d("0.01055") + d("4") * d("0.001201");
        assert_eq!(
            price(&batch, r, "n4a-highcpu-2", Market::Spot),
            Some(n4a_spot)
        );

        let o = batch
            .offers
            .iter()
            .find(|o| o.key.instance_type == "n4a-standard-4")
            .unwrap();
        let a = o.attrs.as_ref().unwrap();
        assert_eq!(
            (a.vcpus, a.memory_gib, a.arch.as_str()),
            (4.0, 16.0, "arm64")
        );
        assert_eq!(o.key.zone, "");
        assert_eq!(o.source, "gcp");
        assert_eq!(o.currency, Currency::USD);
        assert_eq!(o.observed_at, now());

        // Only N4A/N4D types, 3 classes × (8 + 9) sizes × 2 markets.
        assert!(
            batch
                .offers
                .iter()
                .all(|o| o.key.instance_type.starts_with("n4"))
        );
        assert_eq!(batch.offers.len(), 2 * 3 * (8 + 9));

        for needle in [
            "Custom",
            "Sole Tenancy",
            "Reserved N4D Core",
            "Reserved N4D Ram",
        ] {
            assert!(
                batch.rejected.iter().any(|r| r.contains(needle)),
                "{needle} not rejected: {:?}",
                batch.rejected
            );
        }
        assert_eq!(batch.rejected.len(), 8, "{:#?}", batch.rejected);
    }

    #[test]
    fn a2_gpu_page_composes_a100_and_rejects_idr() {
        let batch = batch_from_pages(
            &[page("compute_skus_a2_gpu_e2_t2d_page.json")],
            &[],
            &KnownInstances::new(),
            now(),
        );
        let expected = d("12") * d("0.031611") + d("85") * d("0.004237") + d("2.933908");
        assert_eq!(expected, d("3.673385"));
        for region in ["us-central1", "us-east1", "us-west1"] {
            assert_eq!(
                price(&batch, region, "a2-highgpu-1g", Market::OnDemand),
                Some(expected)
            );
        }
        let mega = d("96") * d("0.031611") + d("1360") * d("0.004237") + d("16") * d("2.933908");
        assert_eq!(
            price(&batch, "us-central1", "a2-megagpu-16g", Market::OnDemand),
            Some(mega)
        );
        let a2 = batch
            .offers
            .iter()
            .find(|o| o.key.instance_type == "a2-highgpu-8g")
            .unwrap();
        let attrs = a2.attrs.as_ref().unwrap();
        assert_eq!(attrs.gpu_model.as_deref(), Some("A100"));
        assert_eq!((attrs.gpu_count, attrs.gpu_memory_gib), (8.0, 40.0));

        // IDR-priced E2/T2D SKUs: rejected, never stored.
        assert!(
            !batch
                .offers
                .iter()
                .any(|o| o.key.instance_type.starts_with("e2-")
                    || o.key.instance_type.starts_with("t2d-")
                    || o.key.region == "asia-southeast1")
        );
        let idr: Vec<_> = batch
            .rejected
            .iter()
            .filter(|r| r.contains("IDR"))
            .collect();
        assert_eq!(idr.len(), 4, "{:#?}", batch.rejected);
        // A2 Ultra needs the A100 80GB rate, which this page lacks: skipped with a reason.
        assert!(price(&batch, "us-central1", "a2-ultragpu-1g", Market::OnDemand).is_none());
        assert!(
            batch
                .rejected
                .iter()
                .any(|r| r.contains("a2-ultragpu-1g") && r.contains("A100-80GB"))
        );
        // Only A2 types (5 A100 + none else) in 3 regions, on demand only.
        assert_eq!(batch.offers.len(), 5 * 3);
        assert!(
            batch
                .offers
                .iter()
                .all(|o| o.key.market == Market::OnDemand)
        );
    }

    #[test]
    fn regions_filter_and_known_types() {
        let mut known = KnownInstances::new();
        known.insert(
            (Provider::Gcp, "a2-odd-3g".into()),
            InstanceAttrs {
                vcpus: 36.0,
                memory_gib: 255.5,
                gpu_model: Some("A100".into()),
                gpu_count: 3.0,
                gpu_memory_gib: 40.0,
                arch: "x86_64".into(),
            },
        );
        known.insert((Provider::Gcp, "e2-micro".into()), InstanceAttrs::default());
        known.insert(
            (Provider::Aws, "a2-not-gcp".into()),
            InstanceAttrs::default(),
        );
        let batch = batch_from_pages(
            &[page("compute_skus_a2_gpu_e2_t2d_page.json")],
            &["us-east1".to_string()],
            &known,
            now(),
        );
        assert!(batch.offers.iter().all(|o| o.key.region == "us-east1"));
        let odd = d("36") * d("0.031611") + d("255.5") * d("0.004237") + d("3") * d("2.933908");
        assert_eq!(
            price(&batch, "us-east1", "a2-odd-3g", Market::OnDemand),
            Some(odd)
        );
        assert!(batch.rejected.iter().any(|r| r.contains("e2-micro")));
        assert!(!batch.rejected.iter().any(|r| r.contains("a2-not-gcp")));
    }

    #[test]
    fn pages_walk_token_and_url_hygiene() {
        let p = page("compute_skus_a2_gpu_e2_t2d_page.json");
        let token = p.next_page_token.clone().unwrap();
        assert!(token.starts_with("APKCS1HVa0"));
        assert!(
            page("compute_skus_n4a_n4d_us-central1.json")
                .next_page_token
                .is_none()
        );

        let url = skus_url("http://127.0.0.1:9/", "sekret-KEY_1", Some(&token));
        assert!(url.starts_with(
            "http://127.0.0.1:9/v1/services/6F81-5844-456A/skus?key=sekret-KEY_1&currencyCode=USD&pageSize=5000&pageToken=APKCS1HVa0"
        ));
        assert!(url.ends_with("%3D"), "token '=' must be encoded: {url}");
        let shown = redact(&url, "sekret-KEY_1");
        assert!(!shown.contains("sekret"));
        assert!(shown.contains("key=REDACTED"));
    }

    #[test]
    fn bad_key_is_auth_and_never_echoed() {
        let key = "AIzaSyFAKE-key_123";
        let body = std::fs::read_to_string(format!("{DIR}error_400_api_key_invalid.json")).unwrap();
        let url = skus_url(DEFAULT_BASE_URL, key, None);
        let body300: String = body.chars().take(300).collect();
        let err = map_http_error(
            SourceError::Http {
                url: url.clone(),
                status: 400,
                attempts: 1,
                body: body300,
            },
            key,
        );
        assert!(matches!(err, SourceError::Auth(_)), "{err:?}");
        assert!(!err.to_string().contains(key));

        for e in [
            SourceError::Transport {
                url: url.clone(),
                detail: format!("error sending request for url ({url})"),
            },
            SourceError::Throttled {
                url: url.clone(),
                status: 429,
                attempts: 5,
            },
            SourceError::Http {
                url: url.clone(),
                status: 500,
                attempts: 5,
                body: "oops".into(),
            },
            SourceError::Auth(format!("HTTP 403 from {url}")),
        ] {
            let shown = map_http_error(e, key).to_string();
            assert!(!shown.contains(key), "{shown}");
        }
        let src = GcpCatalogSource::new(HttpSettings::default(), key.into(), vec![]);
        assert!(!format!("{src:?}").contains(key));
    }

    #[test]
    fn malformed_page_names_the_redacted_url() {
        let err = parse_page(b"{\"skus\": [", "https://x/skus?key=REDACTED").unwrap_err();
        match err {
            SourceError::Malformed { url, .. } => assert!(url.contains("key=REDACTED")),
            other => panic!("{other:?}"),
        }
    }
}

#[cfg(test)]
mod fetch_tests {
    use std::collections::HashMap;
    use std::time::Duration;

    use axum::extract::Query;
    use axum::http::{StatusCode, Uri};

    use super::*;

    const KEY: &str = "test-key-123";

    fn sample(file: &str) -> String {
        let dir = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../shared/data/price-api-samples/gcp/"
        );
        std::fs::read_to_string(format!("{dir}{file}")).unwrap()
    }

    /// Page 1 = the A2/GPU page (it has a nextPageToken), page 2 = the N4A/N4D page; a wrong
    /// key gets the recorded 400 API_KEY_INVALID body; "/loop" repeats its token.
    async fn serve() -> String {
        async fn answer(
            uri: Uri,
            Query(q): Query<HashMap<String, String>>,
        ) -> (StatusCode, String) {
            if q.get("key").map(String::as_str) != Some(KEY) {
                return (
                    StatusCode::BAD_REQUEST,
                    sample("error_400_api_key_invalid.json"),
                );
            }
            assert_eq!(q.get("currencyCode").map(String::as_str), Some("USD"));
            assert_eq!(q.get("pageSize").map(String::as_str), Some("5000"));
            let first = sample("compute_skus_a2_gpu_e2_t2d_page.json");
            if uri.path().starts_with("/loop") {
                return (StatusCode::OK, first);
            }
            if uri.path().starts_with("/broken") {
                return (StatusCode::OK, "{\"skus\": [".into());
            }
            assert_eq!(uri.path(), "/v1/services/6F81-5844-456A/skus");
            match q.get("pageToken") {
                None => (StatusCode::OK, first),
                Some(t) if t.starts_with("APKCS1HVa0") && t.ends_with("a2s=") => (
                    StatusCode::OK,
                    sample("compute_skus_n4a_n4d_us-central1.json"),
                ),
                Some(t) => (StatusCode::NOT_FOUND, format!("unknown token {t}")),
            }
        }
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let app = axum::Router::new().fallback(answer);
        tokio::spawn(async move { axum::serve(listener, app).await });
        base
    }

    fn settings(base: String) -> HttpSettings {
        HttpSettings {
            endpoint: Some(base),
            timeout: Duration::from_secs(5),
            max_retries: 0,
            base_backoff: Duration::from_millis(1),
            max_backoff: Duration::from_millis(5),
        }
    }

    #[tokio::test]
    async fn walks_tokens_and_keeps_the_key_out_of_errors() {
        let base = serve().await;
        let src = GcpCatalogSource::new(settings(base.clone()), KEY.into(), vec![]);
        assert_eq!((src.name(), src.provider()), ("gcp", Provider::Gcp));
        let batch = src.fetch(&KnownInstances::new()).await.unwrap();
        assert_eq!(batch.pages, 2);
        let has = |it: &str| batch.offers.iter().any(|o| o.key.instance_type == it);
        assert!(has("a2-highgpu-1g") && has("n4d-standard-8") && has("n4a-highmem-64"));

        let bad = GcpCatalogSource::new(settings(base.clone()), "wrong-key".into(), vec![]);
        let err = bad.fetch(&KnownInstances::new()).await.unwrap_err();
        assert!(matches!(err, SourceError::Auth(_)), "{err:?}");
        assert!(!err.to_string().contains("wrong-key"), "{err}");

        let looping = GcpCatalogSource::new(settings(format!("{base}/loop")), KEY.into(), vec![]);
        let err = looping.fetch(&KnownInstances::new()).await.unwrap_err();
        assert!(matches!(err, SourceError::PaginationLoop { .. }), "{err:?}");
        assert!(!err.to_string().contains(KEY), "{err}");

        let broken = GcpCatalogSource::new(settings(format!("{base}/broken")), KEY.into(), vec![]);
        let err = broken.fetch(&KnownInstances::new()).await.unwrap_err();
        assert!(matches!(err, SourceError::Malformed { .. }), "{err:?}");
        assert!(!err.to_string().contains(KEY), "{err}");

        let dead = GcpCatalogSource::new(settings("http://127.0.0.1:9".into()), KEY.into(), vec![]);
        let err = dead.fetch(&KnownInstances::new()).await.unwrap_err();
        assert!(matches!(err, SourceError::Transport { .. }), "{err:?}");
        assert!(!err.to_string().contains(KEY), "{err}");

        let keyless = GcpCatalogSource::new(settings(base), "  ".into(), vec![]);
        let err = keyless.fetch(&KnownInstances::new()).await.unwrap_err();
        assert!(matches!(err, SourceError::Config(_)), "{err:?}");
    }
}
