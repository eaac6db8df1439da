//! Conversions between proto messages and domain types, by hand, in one place.
//! Proto types stop here: nothing below the server layer sees them.
use chrono::{DateTime, Utc};
use rust_decimal::Decimal;

use super::errors::FieldError;
use crate::domain::catalog::Catalog;
use crate::domain::money::parse_amount;
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
                    format!("{s:?} is not a decimal amount"),
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
            region: opt(&r.region),
            instance_type: opt(&r.instance_type),
            gpu_model: opt(&r.gpu_model),
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

pub fn price(o: &Offer, catalog: &Catalog) -> proto::Price {
    let a = o.attrs.clone().unwrap_or_default();
    let band = match o.key.market {
        Market::Spot => catalog
            .band(o.key.provider, &o.key.region, &o.key.instance_type)
            .map(|b| b.label.clone())
            .unwrap_or_default(),
        Market::OnDemand => String::new(),
    };
    proto::Price {
        provider: provider_to_proto(o.key.provider) as i32,
        region: o.key.region.clone(),
        zone: o.key.zone.clone(),
        instance_type: o.key.instance_type.clone(),
        market: market_to_proto(o.key.market) as i32,
        price_per_hour: Some(money(o.price())),
        vcpus: a.vcpus,
        memory_gib: a.memory_gib,
        gpu_model: a.gpu_model.unwrap_or_default(),
        gpu_count: a.gpu_count,
        gpu_memory_gib: a.gpu_memory_gib,
        architecture: a.arch,
        source: o.source.clone(),
        observed_at: Some(timestamp(o.observed_at)),
        seed: o.is_seed(),
        interruption_band: band,
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
