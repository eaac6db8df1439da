//! Conversions between proto messages and domain types, by hand, in one place.
//! Proto types stop here: nothing below the server layer sees them.
use chrono::{DateTime, Utc};
use rust_decimal::Decimal;

use super::errors::FieldError;
use crate::domain::catalog::Catalog;
use crate::domain::limits::{self, CountLimit, Limit};
use crate::domain::money::parse_amount;
use crate::domain::quote::quote;
use crate::domain::{Market, Money, Offer, OfferKey, PriceFilter, Provider};
use crate::proto;
use crate::store::SourceStatusRow;

pub fn timestamp(t: DateTime<Utc>) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: t.timestamp(),
        nanos: t.timestamp_subsec_nanos() as i32,
    }
}

pub fn money(m: Money) -> proto::Money {
    proto::Money {
        amount: m.amount.normalize().to_string(),
        currency: m.currency.to_string(),
    }
}

pub fn provider_to_proto(p: Provider) -> proto::Provider {
    match p {
        Provider::Aws => proto::Provider::Aws,
        Provider::Gcp => proto::Provider::Gcp,
        Provider::Azure => proto::Provider::Azure,
    }
}

pub fn market_to_proto(m: Market) -> proto::Market {
    match m {
        Market::OnDemand => proto::Market::OnDemand,
        Market::Spot => proto::Market::Spot,
    }
}

/// `None` for UNSPECIFIED; an unknown enum number is a field error.
pub fn provider_from_proto(v: i32, field: &'static str) -> Result<Option<Provider>, FieldError> {
    match proto::Provider::try_from(v) {
        Ok(proto::Provider::Unspecified) => Ok(None),
        Ok(proto::Provider::Aws) => Ok(Some(Provider::Aws)),
        Ok(proto::Provider::Gcp) => Ok(Some(Provider::Gcp)),
        Ok(proto::Provider::Azure) => Ok(Some(Provider::Azure)),
        Err(_) => Err(FieldError::new(
            field,
            format!("unknown provider value {v}"),
        )),
    }
}

pub fn market_from_proto(v: i32, field: &'static str) -> Result<Option<Market>, FieldError> {
    match proto::Market::try_from(v) {
        Ok(proto::Market::Unspecified) => Ok(None),
        Ok(proto::Market::OnDemand) => Ok(Some(Market::OnDemand)),
        Ok(proto::Market::Spot) => Ok(Some(Market::Spot)),
        Err(_) => Err(FieldError::new(field, format!("unknown market value {v}"))),
    }
}

fn opt(s: &str) -> Option<String> {
    let t = s.trim();
    (!t.is_empty()).then(|| t.to_string())
}

/// `s` checked against `limit`, the error naming `field`.
pub fn limited<'a>(s: &'a str, limit: Limit, field: &'static str) -> Result<&'a str, FieldError> {
    limit.check(s).map_err(|m| FieldError::new(field, m))?;
    Ok(s)
}

/// A repeated field's length checked against `limit`.
pub fn counted<'a, T>(
    v: &'a [T],
    limit: CountLimit,
    field: &'static str,
) -> Result<&'a [T], FieldError> {
    limit
        .check(v.len())
        .map_err(|m| FieldError::new(field, m))?;
    Ok(v)
}

pub const DEFAULT_PAGE_SIZE: usize = 100;
pub const MAX_PAGE_SIZE: usize = 1000;

/// A validated ListPrices request.
pub struct ListPricesQuery {
    pub filter: PriceFilter,
    pub after: Option<(Decimal, OfferKey)>,
    pub page_size: usize,
}

pub fn list_prices_query(r: &proto::ListPricesRequest) -> Result<ListPricesQuery, FieldError> {
    let max_price = match opt(&r.max_price_per_hour) {
        None => None,
        Some(s) => {
            let d = parse_amount(&s).map_err(|_| {
                FieldError::new(
                    "max_price_per_hour",
                    format!("{} is not a decimal amount", quote(&s)),
                )
            })?;
            if d.is_sign_negative() {
                return Err(FieldError::new(
                    "max_price_per_hour",
                    "must not be negative",
                ));
            }
            Some(d)
        }
    };
    let page_size = match r.page_size {
        0 => DEFAULT_PAGE_SIZE,
        n if n < 0 || n as usize > MAX_PAGE_SIZE => {
            return Err(FieldError::new(
                "page_size",
                format!("{n} is out of range 1..={MAX_PAGE_SIZE}"),
            ));
        }
        n => n as usize,
    };
    let after = match opt(&r.page_token) {
        None => None,
        Some(t) => Some(decode_page_token(&t)?),
    };
    Ok(ListPricesQuery {
        filter: PriceFilter {
            provider: provider_from_proto(r.provider, "provider")?,
            region: opt(limited(&r.region, limits::FILTER, "region")?),
            instance_type: opt(limited(&r.instance_type, limits::FILTER, "instance_type")?),
            gpu_model: opt(limited(&r.gpu_model, limits::FILTER, "gpu_model")?),
            min_gpu_count: r.min_gpu_count,
            market: market_from_proto(r.market, "market")?,
            max_price_per_hour: max_price,
        },
        after,
        page_size,
    })
}

/// Opaque keyset token: hex of "v1\x1fprice\x1fprovider\x1fregion\x1fzone\x1ftype\x1fmarket".
pub fn encode_page_token(o: &Offer) -> String {
    let raw = [
        "v1",
        &o.price_per_hour.normalize().to_string(),
        o.key.provider.as_str(),
        &o.key.region,
        &o.key.zone,
        &o.key.instance_type,
        o.key.market.as_str(),
    ]
    .join("\x1f");
    raw.bytes().map(|b| format!("{b:02x}")).collect()
}

pub fn decode_page_token(t: &str) -> Result<(Decimal, OfferKey), FieldError> {
    let bad = || FieldError::new("page_token", "not a token returned by ListPrices");
    if !t.is_ascii() || !t.len().is_multiple_of(2) || t.len() > 4096 {
        return Err(bad());
    }
    let bytes: Result<Vec<u8>, _> = (0..t.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&t[i..i + 2], 16))
        .collect();
    let raw = String::from_utf8(bytes.map_err(|_| bad())?).map_err(|_| bad())?;
    let parts: Vec<&str> = raw.split('\x1f').collect();
    if parts.len() != 7 || parts[0] != "v1" {
        return Err(bad());
    }
    Ok((
        parse_amount(parts[1]).map_err(|_| bad())?,
        OfferKey {
            provider: parts[2].parse().map_err(|_| bad())?,
            region: parts[3].to_string(),
            zone: parts[4].to_string(),
            instance_type: parts[5].to_string(),
            market: parts[6].parse().map_err(|_| bad())?,
        },
    ))
}

/// One listed price; `stale` by the same rule as SelectProvider (age, failing provider).
pub fn price(o: &Offer, catalog: &Catalog, stale: bool) -> proto::Price {
    let a = o.attrs.clone().unwrap_or_default();
    let band = match o.key.market {
        Market::Spot => catalog
            .band(o.key.provider, &o.key.region, &o.key.instance_type)
            .map(|b| b.label.clone())
            .unwrap_or_default(),
        Market::OnDemand => String::new(),
    };
    let suspicion = catalog.suspicion(o);
    proto::Price {
        provider: provider_to_proto(o.key.provider) as i32,
        region: o.key.region.clone(),
        zone: o.key.zone.clone(),
        instance_type: o.key.instance_type.clone(),
        market: market_to_proto(o.key.market) as i32,
        price_per_hour: Some(money(o.price())),
        vcpus: a.vcpus,
        memory_gib: a.memory_gib,
        gpu_model: a.gpu_model.clone().unwrap_or_default(),
        gpu_count: a.gpu_count,
        gpu_memory_gib: a.gpu_memory_gib,
        architecture: a.arch,
        source: o.source.clone(),
        observed_at: Some(timestamp(o.observed_at)),
        seed: o.is_seed(),
        interruption_band: band,
        stale,
        suspect: suspicion.is_some(),
        suspect_reason: suspicion
            .map(|s| s.reason(o.key.market))
            .unwrap_or_default(),
    }
}

pub fn source_status(
    name: &str,
    enabled: bool,
    row: Option<&SourceStatusRow>,
) -> proto::SourceStatus {
    let state = match row {
        Some(r) => r.state.clone(),
        None if enabled => "never_run".into(),
        None => "disabled".into(),
    };
    proto::SourceStatus {
        name: name.to_string(),
        enabled,
        state,
        last_attempt_at: row.and_then(|r| r.last_attempt_at).map(timestamp),
        last_success_at: row.and_then(|r| r.last_success_at).map(timestamp),
        last_error: row.and_then(|r| r.last_error.clone()).unwrap_or_default(),
        last_error_at: row.and_then(|r| r.last_error_at).map(timestamp),
        rows: row.map(|r| r.rows).unwrap_or(0),
    }
}

// ---------------------------------------------------------------------------------------
// Placement

use crate::domain::money::{Units, push_units, to_nanos, units_to_string};
use crate::domain::placement::{
    AvailabilityMark, BAND_LABELS, Choice, DataItem, Distinct, MarketPolicy, PlacementIndex,
    PlacementRequest, band_from_label, milli,
};
use crate::domain::regions::{Jurisdiction, known_regions, region_info};
use crate::domain::sanity::Suspicion;

/// Milli-units (hours, GB) and nano-dollars as `Units` (1e-12), for `push_units`.
const MILLI_TO_UNITS: i128 = 1_000_000_000;
const NANOS_TO_UNITS: i128 = 1_000;

const MAX_HOURS: f64 = 100_000.0;
const MAX_NODES: u32 = 1000;
const MAX_TOP_K: u32 = 100;
/// More accelerators per node than any instance type has (the largest have 16).
const MAX_ACCELERATORS_PER_NODE: u32 = 64;

fn finite_decimal(v: f64, field: &'static str) -> Result<Decimal, FieldError> {
    if !v.is_finite() {
        return Err(FieldError::new(field, "must be a finite number"));
    }
    Decimal::try_from(v).map_err(|_| FieldError::new(field, format!("{v} is out of range")))
}

fn non_negative(v: f64, field: &'static str) -> Result<f64, FieldError> {
    if !v.is_finite() || v < 0.0 {
        return Err(FieldError::new(
            field,
            format!("{v} must be a finite number >= 0"),
        ));
    }
    Ok(v)
}

fn provider_of_scheme(scheme: &str) -> Option<Provider> {
    match scheme {
        "s3" | "s3a" => Some(Provider::Aws),
        "gs" | "gcs" => Some(Provider::Gcp),
        "az" | "abfs" | "abfss" | "wasb" | "wasbs" | "azure" => Some(Provider::Azure),
        _ => None,
    }
}

/// Resolves a data location (provider + region, or a URI with an `@region` suffix).
pub fn data_location(
    loc: Option<&proto::DataLocation>,
    field: &'static str,
    index: &PlacementIndex,
) -> Result<(Provider, String), FieldError> {
    let Some(loc) = loc else {
        return Err(FieldError::new(field, "a location is required"));
    };
    let (provider, region) = if !loc.uri.trim().is_empty() {
        let uri = loc.uri.trim();
        let (scheme, _) = uri.split_once("://").ok_or_else(|| {
            FieldError::new(
                field,
                format!("{} is not a URI like s3://bucket/key@us-east-1", quote(uri)),
            )
        })?;
        let p = provider_of_scheme(&scheme.to_ascii_lowercase()).ok_or_else(|| {
            FieldError::new(
                field,
                format!(
                    "unknown scheme {}: use s3://, gs:// or az://",
                    quote(scheme)
                ),
            )
        })?;
        let region = uri
            .rsplit_once('@')
            .map(|(_, r)| r.trim())
            .filter(|r| !r.is_empty() && !r.contains('/'));
        let Some(region) = region else {
            return Err(FieldError::new(
                field,
                format!("{} has no @region suffix", quote(uri)),
            ));
        };
        if let Some(given) = provider_from_proto(loc.provider, field)?
            && given != p
        {
            return Err(FieldError::new(
                field,
                format!(
                    "provider {given} contradicts the URI scheme {}",
                    quote(scheme)
                ),
            ));
        }
        (p, region.to_string())
    } else {
        let p = provider_from_proto(loc.provider, field)?
            .ok_or_else(|| FieldError::new(field, "give a uri or a provider and region"))?;
        if loc.region.trim().is_empty() {
            return Err(FieldError::new(field, "region is required"));
        }
        (p, loc.region.trim().to_string())
    };
    limited(&region, limits::REGION, field)?;
    if region_info(provider, &region).is_none() && !index.has_region(provider, &region) {
        return Err(FieldError::new(
            field,
            format!(
                "unknown {provider} region {}; known: {}",
                quote(&region),
                known_regions(provider).join(", ")
            ),
        ));
    }
    Ok((provider, region))
}

fn providers(v: &[i32], field: &'static str) -> Result<Vec<Provider>, FieldError> {
    let mut out = Vec::new();
    for x in v {
        match provider_from_proto(*x, field)? {
            Some(p) => out.push(p),
            None => {
                return Err(FieldError::new(
                    field,
                    "PROVIDER_UNSPECIFIED is not a provider",
                ));
            }
        }
    }
    Ok(out)
}

fn amount_field(s: &str, field: &'static str) -> Result<Option<Decimal>, FieldError> {
    match opt(s) {
        None => Ok(None),
        Some(t) => {
            let d = parse_amount(&t).map_err(|_| {
                FieldError::new(field, format!("{} is not a decimal amount", quote(&t)))
            })?;
            if d <= Decimal::ZERO {
                return Err(FieldError::new(field, "must be greater than 0"));
            }
            Ok(Some(d))
        }
    }
}

/// Validates a SelectProvider request into the domain request. Field errors name the
/// proto field; contradictory constraints are field errors too.
pub fn placement_request(
    r: &proto::SelectProviderRequest,
    index: &PlacementIndex,
) -> Result<PlacementRequest, FieldError> {
    let res = r.resources.clone().unwrap_or_default();
    if !(r.expected_hours.is_finite() && r.expected_hours > 0.0 && r.expected_hours <= MAX_HOURS) {
        return Err(FieldError::new(
            "expected_hours",
            format!("{} must be > 0 and <= {MAX_HOURS}", r.expected_hours),
        ));
    }
    let hours_milli = milli(finite_decimal(r.expected_hours, "expected_hours")?)
        .filter(|m| *m > 0)
        .ok_or_else(|| FieldError::new("expected_hours", "must be at least 0.001"))?;
    let nodes = if res.nodes == 0 { 1 } else { res.nodes };
    if nodes > MAX_NODES {
        return Err(FieldError::new(
            "resources.nodes",
            format!("{nodes} is more than {MAX_NODES}"),
        ));
    }
    let min_memory_gib = non_negative(res.min_memory_gib, "resources.min_memory_gib")?;
    let min_gpu_memory_gib = non_negative(res.min_gpu_memory_gib, "resources.min_gpu_memory_gib")?;
    let mut accelerators = Vec::new();
    for a in counted(
        &res.accelerators,
        limits::LIST_ITEMS,
        "resources.accelerators",
    )?
    .iter()
    .map(|a| a.trim())
    .filter(|a| !a.is_empty())
    {
        match index.canonical_accelerator(a) {
            Some(c) => accelerators.push(c.to_string()),
            None => {
                return Err(FieldError::new(
                    "resources.accelerators",
                    format!(
                        "unknown accelerator {}; known: {}",
                        quote(a),
                        index.accelerators().join(", ")
                    ),
                ));
            }
        }
    }
    let accelerator_count = match (accelerators.is_empty(), res.accelerator_count) {
        (true, 0) => 0,
        (true, _) => {
            return Err(FieldError::new(
                "resources.accelerator_count",
                "an accelerator count needs resources.accelerators",
            ));
        }
        (false, 0) => 1,
        (false, n) if n > MAX_ACCELERATORS_PER_NODE => {
            return Err(FieldError::new(
                "resources.accelerator_count",
                format!("{n} is more than {MAX_ACCELERATORS_PER_NODE} per node"),
            ));
        }
        (false, n) => n,
    };
    if accelerators.is_empty() && min_gpu_memory_gib > 0.0 {
        return Err(FieldError::new(
            "resources.min_gpu_memory_gib",
            "a GPU memory minimum needs resources.accelerators",
        ));
    }
    let market = match proto::MarketPolicy::try_from(r.market) {
        Ok(proto::MarketPolicy::Unspecified | proto::MarketPolicy::OnDemandOnly) => {
            MarketPolicy::OnDemandOnly
        }
        Ok(proto::MarketPolicy::SpotAllowed) => MarketPolicy::SpotAllowed,
        Ok(proto::MarketPolicy::SpotOnly) => MarketPolicy::SpotOnly,
        Err(_) => {
            return Err(FieldError::new(
                "market",
                format!("unknown market policy {}", r.market),
            ));
        }
    };
    let spot = r.spot.clone().unwrap_or_default();
    let max_band = match opt(&spot.max_interruption_band) {
        None => None,
        Some(b) => Some(band_from_label(&b).ok_or_else(|| {
            FieldError::new(
                "spot.max_interruption_band",
                format!("{}: expected one of {}", quote(&b), BAND_LABELS.join(", ")),
            )
        })?),
    };
    if !(spot.min_savings_percent.is_finite() && (0.0..100.0).contains(&spot.min_savings_percent)) {
        return Err(FieldError::new(
            "spot.min_savings_percent",
            "must be >= 0 and < 100",
        ));
    }
    let min_savings_milli_pct = milli(finite_decimal(
        spot.min_savings_percent,
        "spot.min_savings_percent",
    )?)
    .unwrap_or(0);
    if market == MarketPolicy::OnDemandOnly && (max_band.is_some() || min_savings_milli_pct > 0) {
        return Err(FieldError::new(
            "spot",
            "a spot policy contradicts market ON_DEMAND_ONLY; allow spot or drop the policy",
        ));
    }
    let mut inputs = Vec::with_capacity(r.inputs.len());
    for (i, input) in counted(&r.inputs, limits::LIST_ITEMS, "inputs")?
        .iter()
        .enumerate()
    {
        let size = non_negative(input.size_gb, "inputs.size_gb")?;
        let (provider, region) =
            data_location(input.location.as_ref(), "inputs.location", index)
                .map_err(|e| FieldError::new(e.field, format!("inputs[{i}]: {}", e.message)))?;
        inputs.push(DataItem {
            label: format!("input[{i}]"),
            provider,
            region,
            gb_milli: milli(finite_decimal(size, "inputs.size_gb")?)
                .ok_or_else(|| FieldError::new("inputs.size_gb", "out of range"))?,
        });
    }
    let output_gb = non_negative(r.output_size_gb, "output_size_gb")?;
    let output = if output_gb > 0.0 || r.output_location.is_some() {
        let (provider, region) =
            data_location(r.output_location.as_ref(), "output_location", index)?;
        Some(DataItem {
            label: "output".into(),
            provider,
            region,
            gb_milli: milli(finite_decimal(output_gb, "output_size_gb")?)
                .ok_or_else(|| FieldError::new("output_size_gb", "out of range"))?,
        })
    } else {
        None
    };
    let c = r.constraints.clone().unwrap_or_default();
    let allowed_providers = providers(&c.allowed_providers, "constraints.allowed_providers")?;
    let denied_providers = providers(&c.denied_providers, "constraints.denied_providers")?;
    if let Some(p) = allowed_providers
        .iter()
        .find(|p| denied_providers.contains(p))
    {
        return Err(FieldError::new(
            "constraints.denied_providers",
            format!("{p} is both allowed and denied"),
        ));
    }
    let clean = |v: &[String], field: &'static str| -> Result<Vec<String>, FieldError> {
        counted(v, limits::LIST_ITEMS, field)?
            .iter()
            .map(|s| limited(s.trim(), limits::REGION, field).map(str::to_string))
            .filter(|s| !s.as_ref().is_ok_and(String::is_empty))
            .collect()
    };
    let allowed_regions = clean(&c.allowed_regions, "constraints.allowed_regions")?;
    let denied_regions = clean(&c.denied_regions, "constraints.denied_regions")?;
    // A region no provider has is a typo, not a constraint that excludes every offer.
    for (regions, field) in [
        (&allowed_regions, "constraints.allowed_regions"),
        (&denied_regions, "constraints.denied_regions"),
    ] {
        if let Some(r) = regions.iter().find(|r| {
            !Provider::ALL
                .iter()
                .any(|p| region_info(*p, r).is_some() || index.has_region(*p, r))
        }) {
            return Err(FieldError::new(
                field,
                format!("unknown region {} (no provider has it)", quote(r)),
            ));
        }
    }
    if let Some(r) = allowed_regions.iter().find(|r| denied_regions.contains(r)) {
        return Err(FieldError::new(
            "constraints.denied_regions",
            format!("{} is both allowed and denied", quote(r)),
        ));
    }
    let mut jurisdictions = Vec::new();
    for j in clean(&c.jurisdictions, "constraints.jurisdictions")? {
        jurisdictions.push(Jurisdiction::parse(&j).ok_or_else(|| {
            FieldError::new(
                "constraints.jurisdictions",
                format!(
                    "{}: expected EU, EEA or an ISO country code such as US or DE",
                    quote(&j)
                ),
            )
        })?);
    }
    if !allowed_regions.is_empty() && !jurisdictions.is_empty() {
        let any_inside = allowed_regions.iter().any(|r| {
            Provider::ALL.iter().any(|p| {
                region_info(*p, r)
                    .is_some_and(|i| jurisdictions.iter().any(|j| j.contains(&i.country)))
            })
        });
        if !any_inside {
            return Err(FieldError::new(
                "constraints.jurisdictions",
                "none of constraints.allowed_regions lies in the requested jurisdictions",
            ));
        }
    }
    let max_price = amount_field(&c.max_price_per_hour, "constraints.max_price_per_hour")?;
    let max_price_nanos = match max_price {
        None => None,
        Some(d) => Some(to_nanos(d).ok_or_else(|| {
            FieldError::new("constraints.max_price_per_hour", "at most 9 decimal places")
        })?),
    };
    let max_total = match amount_field(&c.max_total_cost, "constraints.max_total_cost")? {
        None => None,
        Some(d) => {
            let u = d
                .checked_mul(Decimal::from(1_000_000_000_000i64))
                .filter(|u| u.fract().is_zero())
                .and_then(|u| rust_decimal::prelude::ToPrimitive::to_i128(&u))
                .ok_or_else(|| {
                    FieldError::new("constraints.max_total_cost", "at most 12 decimal places")
                })?;
            Some(u as Units)
        }
    };
    let top_k = match r.top_k {
        0 => 5,
        k if k > MAX_TOP_K => {
            return Err(FieldError::new(
                "top_k",
                format!("{k} is more than {MAX_TOP_K}"),
            ));
        }
        k => k,
    };
    let distinct = match proto::Distinct::try_from(r.distinct) {
        Ok(proto::Distinct::Unspecified) => None,
        Ok(proto::Distinct::Region) => Some(Distinct::Region),
        Ok(proto::Distinct::Provider) => Some(Distinct::Provider),
        Err(_) => {
            return Err(FieldError::new(
                "distinct",
                format!("unknown value {}", r.distinct),
            ));
        }
    };
    limits::LABELS
        .check(r.labels.len())
        .map_err(|m| FieldError::new("labels", m))?;
    for (k, v) in &r.labels {
        limited(k, limits::LABEL_KEY, "labels")?;
        limited(v, limits::LABEL_VALUE, "labels")
            .map_err(|e| FieldError::new(e.field, format!("{}: {}", quote(k), e.message)))?;
    }
    Ok(PlacementRequest {
        min_vcpus: f64::from(res.min_vcpus),
        min_memory_gib,
        accelerators,
        accelerator_count,
        min_gpu_memory_gib,
        nodes,
        hours_milli,
        market,
        max_band,
        min_savings_milli_pct,
        inputs,
        output,
        allowed_providers,
        denied_providers,
        allowed_regions,
        denied_regions,
        jurisdictions,
        max_price_nanos,
        max_total,
        skip_suspect: c.skip_suspect,
        top_k: top_k as usize,
        distinct,
    })
}

fn usd(u: Units) -> proto::Money {
    proto::Money {
        amount: units_to_string(u),
        currency: "USD".into(),
    }
}

/// One placement for the response, with a one-line reason.
pub fn placement(
    c: &Choice,
    o: &Offer,
    suspicion: Option<&Suspicion>,
    req: &PlacementRequest,
    rank: usize,
    feasible: u64,
) -> proto::Placement {
    let no_attrs = Default::default();
    let a = o.attrs.as_ref().unwrap_or(&no_attrs);
    // The hourly price as exact text, from integer nanos when it has at most 9 decimals
    // (every indexed offer's has).
    let price_text = match to_nanos(o.price_per_hour) {
        Some(n) => units_to_string(i128::from(n) * NANOS_TO_UNITS),
        None => o.price_per_hour.normalize().to_string(),
    };
    // The reason line, written into one buffer (it is built for every placement returned).
    let mut why = String::with_capacity(160);
    let mut digits = itoa::Buffer::new();
    why.push('#');
    why.push_str(digits.format(rank));
    why.push_str(" of ");
    why.push_str(digits.format(feasible));
    why.push_str(" feasible: compute ");
    push_units(&mut why, c.compute);
    why.push_str(" (");
    push_units(&mut why, i128::from(req.hours_milli) * MILLI_TO_UNITS);
    why.push_str(" h x ");
    why.push_str(&price_text);
    why.push_str("/h");
    if req.nodes > 1 {
        why.push_str(" x ");
        why.push_str(digits.format(req.nodes));
        why.push_str(" nodes");
    }
    why.push(')');
    if c.egress.is_empty() {
        why.push_str(", no data to move");
    } else if c.egress_total == 0 {
        why.push_str(", data already local");
    } else {
        let gbs: i64 = c
            .egress
            .iter()
            .filter(|l| l.cost > 0)
            .map(|l| l.gb_milli)
            .sum();
        why.push_str(", egress ");
        push_units(&mut why, c.egress_total);
        why.push_str(" for ");
        push_units(&mut why, i128::from(gbs) * MILLI_TO_UNITS);
        why.push_str(" GB");
    }
    if let Some(b) = c.band {
        why.push_str(", spot band ");
        why.push_str(BAND_LABELS[usize::from(b.min(4))]);
        if !c.band_known {
            why.push_str(" (assumed)");
        }
        why.push_str(" adds ");
        push_units(&mut why, c.overhead);
    }
    if o.is_seed() {
        why.push_str("; seed price");
    }
    if c.stale {
        why.push_str("; stale price");
    }
    if let Some(s) = suspicion {
        why.push_str("; ");
        why.push_str(&s.reason(o.key.market));
    }
    proto::Placement {
        provider: provider_to_proto(o.key.provider) as i32,
        region: o.key.region.clone(),
        zone: o.key.zone.clone(),
        instance_type: o.key.instance_type.clone(),
        market: market_to_proto(o.key.market) as i32,
        price_per_hour: Some(proto::Money {
            amount: price_text,
            currency: o.currency.as_str().to_owned(),
        }),
        nodes: req.nodes,
        compute_cost: Some(usd(c.compute)),
        egress: c
            .egress
            .iter()
            .map(|l| proto::EgressCost {
                item: l.label.clone(),
                from_provider: l.from_provider.as_str().to_owned(),
                from_region: l.from_region.clone(),
                to_provider: l.to_provider.as_str().to_owned(),
                to_region: l.to_region.clone(),
                size_gb: l.gb_milli as f64 / 1000.0,
                cost: Some(usd(l.cost)),
            })
            .collect(),
        egress_cost: Some(usd(c.egress_total)),
        spot_overhead: Some(usd(c.overhead)),
        total_cost: Some(usd(c.total)),
        interruption_band: c
            .band
            .map(|b| BAND_LABELS[usize::from(b.min(4))].to_owned())
            .unwrap_or_default(),
        source: o.source.clone(),
        price_observed_at: Some(timestamp(o.observed_at)),
        price_age_seconds: c.age_secs as u64,
        stale: c.stale,
        seed: o.is_seed(),
        reason: why,
        vcpus: a.vcpus,
        memory_gib: a.memory_gib,
        gpu_model: a.gpu_model.clone().unwrap_or_default(),
        gpu_count: a.gpu_count,
        over_budget: Vec::new(),
        suspect: c.suspect,
        interruption_band_assumed: c.band.is_some() && !c.band_known,
    }
}

pub fn mark(m: &AvailabilityMark) -> proto::AvailabilityMark {
    proto::AvailabilityMark {
        id: m.id.clone(),
        provider: provider_to_proto(m.provider) as i32,
        region: m.region.clone().unwrap_or_default(),
        zone: m.zone.clone().unwrap_or_default(),
        reason: m.reason.clone(),
        created_at: Some(timestamp(m.created_at)),
        expires_at: Some(timestamp(m.expires_at)),
    }
}

/// A budget warning (or downgrade) for SelectProvider's response.
pub fn budget_notice(w: &crate::domain::budget::GateWarning) -> proto::BudgetNotice {
    let m = |d: rust_decimal::Decimal| proto::Money {
        amount: d.normalize().to_string(),
        currency: w.currency.clone(),
    };
    proto::BudgetNotice {
        budget: w.budget.clone(),
        policy: w.policy.as_str().into(),
        amount: Some(m(w.amount)),
        actual: Some(m(w.actual)),
        forecast: Some(m(w.forecast)),
        remaining: Some(m(w.remaining)),
        removed: w.removed as u64,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn page_token_round_trips_and_rejects_garbage() {
        let o = Offer {
            key: OfferKey {
                provider: Provider::Gcp,
                region: "europe-west4".into(),
                zone: "europe-west4-a".into(),
                instance_type: "a2-highgpu-8g".into(),
                market: Market::Spot,
            },
            price_per_hour: "12.3400".parse().unwrap(),
            currency: crate::domain::Currency::USD,
            attrs: None,
            source: "gcp".into(),
            observed_at: Utc::now(),
        };
        let t = encode_page_token(&o);
        let (p, k) = decode_page_token(&t).unwrap();
        assert_eq!(p, "12.34".parse::<Decimal>().unwrap());
        assert_eq!(k, o.key);
        for bad in ["zz", "abc", "00", &"41".repeat(10), "aéa", "é"] {
            let e = decode_page_token(bad).unwrap_err();
            assert_eq!(e.field, "page_token");
        }
    }

    #[test]
    fn list_prices_validation_names_fields() {
        let r = proto::ListPricesRequest {
            max_price_per_hour: "cheap".into(),
            ..Default::default()
        };
        assert_eq!(
            list_prices_query(&r).err().unwrap().field,
            "max_price_per_hour"
        );
        let r = proto::ListPricesRequest {
            page_size: 5000,
            ..Default::default()
        };
        assert_eq!(list_prices_query(&r).err().unwrap().field, "page_size");
        let r = proto::ListPricesRequest {
            provider: 42,
            ..Default::default()
        };
        assert_eq!(list_prices_query(&r).err().unwrap().field, "provider");
        let r = proto::ListPricesRequest {
            market: 9,
            ..Default::default()
        };
        assert_eq!(list_prices_query(&r).err().unwrap().field, "market");
        let ok = list_prices_query(&proto::ListPricesRequest::default()).unwrap();
        assert_eq!(ok.page_size, DEFAULT_PAGE_SIZE);
    }
}
