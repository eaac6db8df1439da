//! AWS on-demand prices from the Price List Query API (`GetProducts`, ServiceCode
//! AmazonEC2) through `aws-sdk-pricing`. The walk asks only for shared-tenancy Linux boxes
//! with no pre-installed software and used capacity (TERM_MATCH filters), optionally one
//! walk per configured region (`regionCode` filter; no regions = one walk over all), and
//! follows `NextToken` to the end under a `TokenGuard`. Each `PriceList` element is a JSON
//! *string*; `parse_price_list_item` turns one into an `Offer` or a rejection reason and is
//! kept pure (no I/O) so tests can feed it recorded items. Rows that are not plain
//! on-demand instance prices ($0, `operation` other than "RunInstances", Capacity Blocks,
//! Local/Wavelength zones) are rejected with a reason, never priced.
use std::collections::HashSet;
use std::fmt;
use std::str::FromStr;

use async_trait::async_trait;
use aws_sdk_pricing::types::{Filter, FilterType};
use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use serde_json::{Map, Value};
use tokio::sync::OnceCell;

use super::tables;
use crate::clouds::{HttpSettings, PriceSource, SourceBatch, SourceError};
use crate::domain::money::parse_amount;
use crate::domain::{Currency, InstanceAttrs, KnownInstances, Market, Offer, OfferKey, Provider};
use crate::remote::aws::{AttemptCounter, endpoint_label, map_sdk_error, sdk_config};
use crate::remote::http::TokenGuard;

/// Source name, also written to `Offer::source`.
pub const NAME: &str = "aws-ondemand";
/// Region whose Pricing API endpoint is used unless overridden.
pub const DEFAULT_API_REGION: &str = "us-east-1";
/// Largest page GetProducts allows.
const PAGE_SIZE: i32 = 100;

/// The fixed TERM_MATCH filters of every walk (field, value).
pub const BASE_FILTERS: &[(&str, &str)] = &[
    ("operatingSystem", "Linux"),
    ("tenancy", "Shared"),
    ("preInstalledSw", "NA"),
    ("capacitystatus", "Used"),
];

/// On-demand EC2 prices from the AWS Price List Query API.
pub struct AwsOnDemandSource {
    settings: HttpSettings,
    regions: Vec<String>,
    api_region: String,
    client: OnceCell<aws_sdk_pricing::Client>,
}

impl AwsOnDemandSource {
    /// `regions`: region codes to walk one by one (`regionCode` filter); empty = all
    /// regions in a single walk. `settings.endpoint` overrides the Pricing API endpoint.
    pub fn new(settings: HttpSettings, regions: Vec<String>) -> Self {
        let mut regions: Vec<String> = regions
            .into_iter()
            .map(|r| r.trim().to_string())
            .filter(|r| !r.is_empty())
            .collect();
        regions.sort();
        regions.dedup();
        AwsOnDemandSource {
            settings,
            regions,
            api_region: DEFAULT_API_REGION.to_string(),
            client: OnceCell::new(),
        }
    }

    /// Uses the Pricing API in another region (it is also served from e.g. eu-central-1
    /// and ap-south-1). Default us-east-1.
    pub fn with_api_region(mut self, region: impl Into<String>) -> Self {
        self.api_region = region.into();
        self
    }

    fn url(&self) -> String {
        endpoint_label(&self.settings, || {
            format!("https://api.pricing.{}.amazonaws.com", self.api_region)
        })
    }

    async fn client(&self) -> Result<&aws_sdk_pricing::Client, SourceError> {
        self.client
            .get_or_try_init(|| async {
                let cfg = sdk_config(&self.settings, &self.api_region).await?;
                Ok(aws_sdk_pricing::Client::new(&cfg))
            })
            .await
    }

    /// One complete GetProducts walk, optionally restricted to one region.
    async fn walk(
        &self,
        client: &aws_sdk_pricing::Client,
        region: Option<&str>,
        observed_at: DateTime<Utc>,
        batch: &mut SourceBatch,
        seen: &mut HashSet<OfferKey>,
    ) -> Result<(), SourceError> {
        let url = match region {
            Some(r) => format!("{} GetProducts regionCode={r}", self.url()),
            None => format!("{} GetProducts", self.url()),
        };
        let filters = filters(region)?;
        let mut guard = TokenGuard::default();
        let mut token: Option<String> = None;
        loop {
            let attempts = AttemptCounter::default();
            let page = client
                .get_products()
                .service_code("AmazonEC2")
                .format_version("aws_v1")
                .max_results(PAGE_SIZE)
                .set_filters(Some(filters.clone()))
                .set_next_token(token.take())
                .customize()
                .interceptor(attempts.clone())
                .send()
                .await
                .map_err(|e| map_sdk_error(e, &url, attempts.get()))?;
            batch.pages += 1;
            for item in page.price_list() {
                match parse_price_list_item(item, observed_at) {
                    Ok(offer) => {
                        if seen.insert(offer.key.clone()) {
                            batch.offers.push(offer);
                        } else {
                            batch.rejected.push(format!(
                                "{} {} {}: duplicate row for an offer already seen",
                                offer.key.instance_type, offer.key.region, offer.price_per_hour
                            ));
                        }
                    }
                    Err(ItemError::Rejected(reason)) => batch.rejected.push(reason),
                    Err(ItemError::Malformed(detail)) => {
                        return Err(SourceError::Malformed {
                            url,
                            detail: format!("PriceList element: {detail}"),
                        });
                    }
                }
            }
            match guard.next(page.next_token(), &url)? {
                Some(next) => token = Some(next),
                None => return Ok(()),
            }
        }
    }
}

/// The TERM_MATCH filters of one walk.
fn filters(region: Option<&str>) -> Result<Vec<Filter>, SourceError> {
    BASE_FILTERS
        .iter()
        .copied()
        .chain(region.map(|r| ("regionCode", r)))
        .map(|(field, value)| {
            Filter::builder()
                .r#type(FilterType::TermMatch)
                .field(field)
                .value(value)
                .build()
                .map_err(|e| SourceError::Config(format!("GetProducts filter {field}: {e}")))
        })
        .collect()
}

#[async_trait]
impl PriceSource for AwsOnDemandSource {
    fn name(&self) -> &str {
        NAME
    }

    fn provider(&self) -> Provider {
        Provider::Aws
    }

    async fn fetch(&self, _known: &KnownInstances) -> Result<SourceBatch, SourceError> {
        let client = self.client().await?;
        let observed_at = Utc::now();
        let mut batch = SourceBatch::default();
        let mut seen = HashSet::new();
        if self.regions.is_empty() {
            self.walk(client, None, observed_at, &mut batch, &mut seen)
                .await?;
        } else {
            for region in &self.regions {
                self.walk(client, Some(region), observed_at, &mut batch, &mut seen)
                    .await?;
            }
        }
        tracing::info!(
            source = NAME,
            pages = batch.pages,
            offers = batch.offers.len(),
            rejected = batch.rejected.len(),
            "walk complete"
        );
        Ok(batch)
    }
}

/// Why one PriceList element did not become an offer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ItemError {
    /// The element is not JSON (or not a JSON object): the response itself is broken.
    Malformed(String),
    /// A well-formed item that is not a usable on-demand price; the reason names the item.
    Rejected(String),
}

impl fmt::Display for ItemError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ItemError::Malformed(d) => write!(f, "malformed PriceList element: {d}"),
            ItemError::Rejected(r) => write!(f, "rejected: {r}"),
        }
    }
}

impl std::error::Error for ItemError {}

/// Parses one `GetProducts` `PriceList` element (a JSON document held in a string) into an
/// on-demand `Offer` observed at `observed_at`. Pure: no I/O, no clock.
pub fn parse_price_list_item(item: &str, observed_at: DateTime<Utc>) -> Result<Offer, ItemError> {
    let value: Value =
        serde_json::from_str(item).map_err(|e| ItemError::Malformed(e.to_string()))?;
    if !value.is_object() {
        return Err(ItemError::Malformed("element is not a JSON object".into()));
    }
    parse_price_list_value(&value, observed_at).map_err(ItemError::Rejected)
}

fn attr<'a>(attrs: &'a Map<String, Value>, name: &str) -> Option<&'a str> {
    attrs
        .get(name)
        .and_then(Value::as_str)
        .map(str::trim)
        .filter(|s| !s.is_empty())
}

/// Like `parse_price_list_item`, for an element already decoded to JSON
/// (`{product:{sku,attributes}, terms:{OnDemand:{..}}}`). `Err` is the rejection reason.
pub fn parse_price_list_value(item: &Value, observed_at: DateTime<Utc>) -> Result<Offer, String> {
    let product = item.get("product");
    let sku = product
        .and_then(|p| p.get("sku"))
        .and_then(Value::as_str)
        .unwrap_or("?");
    let attrs = product
        .and_then(|p| p.get("attributes"))
        .and_then(Value::as_object)
        .ok_or_else(|| format!("sku {sku}: no product.attributes"))?;
    let instance_type = attr(attrs, "instanceType")
        .ok_or_else(|| format!("sku {sku}: no instanceType (not an instance)"))?;
    let who = format!(
        "{instance_type} {} (sku {sku})",
        attr(attrs, "regionCode")
            .or_else(|| attr(attrs, "location"))
            .unwrap_or("?")
    );
    let reject = |why: String| format!("{who}: {why}");

    if attr(attrs, "marketoption").is_some_and(|m| m.eq_ignore_ascii_case("CapacityBlock")) {
        return Err(reject("Capacity Block row (not an on-demand price)".into()));
    }
    match attr(attrs, "operation") {
        Some("RunInstances") => {}
        other => {
            return Err(reject(format!(
                "operation {:?} is not RunInstances",
                other.unwrap_or("")
            )));
        }
    }
    for (field, wanted) in BASE_FILTERS {
        if let Some(got) = attr(attrs, field)
            && !got.eq_ignore_ascii_case(wanted)
        {
            return Err(reject(format!("{field} is {got:?}, not {wanted:?}")));
        }
    }
    if let Some(kind) = attr(attrs, "locationType")
        && kind != "AWS Region"
    {
        return Err(reject(format!(
            "location type {kind:?} is not an AWS Region"
        )));
    }
    let region = match attr(attrs, "regionCode") {
        Some(code) => code.to_string(),
        None => {
            let location = attr(attrs, "location").unwrap_or("");
            tables::region_for_location(location)
                .ok_or_else(|| reject(format!("unknown location {location:?}")))?
                .to_string()
        }
    };

    let (currency, price) = on_demand_price(item).map_err(&reject)?;
    if price.is_zero() {
        return Err(reject("price is 0 (not a real offer)".into()));
    }
    if price.is_sign_negative() {
        return Err(reject(format!("negative price {price}")));
    }
    let hardware = instance_attrs(instance_type, attrs).map_err(&reject)?;

    Ok(Offer {
        key: OfferKey {
            provider: Provider::Aws,
            region,
            zone: String::new(),
            instance_type: instance_type.to_string(),
            market: Market::OnDemand,
        },
        price_per_hour: price.normalize(),
        currency,
        attrs: Some(hardware),
        source: NAME.to_string(),
        observed_at,
    })
}

/// The one hourly on-demand price of an item: `terms.OnDemand.*.priceDimensions.*` with
/// unit "Hrs"; USD preferred when a dimension lists several currencies.
fn on_demand_price(item: &Value) -> Result<(Currency, Decimal), String> {
    let terms = item
        .get("terms")
        .and_then(|t| t.get("OnDemand"))
        .and_then(Value::as_object)
        .ok_or("no OnDemand terms")?;
    let mut found: Vec<(Currency, Decimal)> = Vec::new();
    for term in terms.values() {
        let Some(dims) = term.get("priceDimensions").and_then(Value::as_object) else {
            continue;
        };
        for dim in dims.values() {
            let unit = dim.get("unit").and_then(Value::as_str).unwrap_or("");
            if !unit.eq_ignore_ascii_case("Hrs") {
                continue;
            }
            let Some(prices) = dim.get("pricePerUnit").and_then(Value::as_object) else {
                continue;
            };
            let chosen = prices.get_key_value("USD").or_else(|| prices.iter().next());
            let Some((code, amount)) = chosen else {
                continue;
            };
            let amount = amount
                .as_str()
                .ok_or_else(|| format!("price for {code} is not a string"))?;
            let currency = Currency::from_str(code).map_err(|e| e.to_string())?;
            let amount = parse_amount(amount).map_err(|e| e.to_string())?;
            if !found.contains(&(currency, amount)) {
                found.push((currency, amount));
            }
        }
    }
    match found.as_slice() {
        [] => Err("no hourly OnDemand price".into()),
        [one] => Ok(*one),
        many => Err(format!("{} different hourly OnDemand prices", many.len())),
    }
}

/// A leading decimal number, ignoring thousands separators: "1,152 GiB" → 1152.
fn leading_number(s: &str) -> Option<f64> {
    let num: String = s
        .trim()
        .chars()
        .take_while(|c| c.is_ascii_digit() || *c == '.' || *c == ',')
        .filter(|c| *c != ',')
        .collect();
    num.parse::<f64>().ok().filter(|n| n.is_finite())
}

fn memory_gib(s: &str) -> Option<f64> {
    let n = leading_number(s)?;
    let unit = s
        .trim()
        .trim_start_matches(|c: char| c.is_ascii_digit() || c == '.' || c == ',');
    match unit.trim().to_ascii_lowercase().as_str() {
        "" | "gib" | "gb" => Some(n),
        "tib" | "tb" => Some(n * 1024.0),
        "mib" | "mb" => Some(n / 1024.0),
        _ => None,
    }
}

/// Hardware from an item's attributes plus the family accelerator table.
fn instance_attrs(
    instance_type: &str,
    attrs: &Map<String, Value>,
) -> Result<InstanceAttrs, String> {
    let vcpu_raw = attr(attrs, "vcpu").unwrap_or("");
    let vcpus = leading_number(vcpu_raw).ok_or_else(|| format!("unreadable vcpu {vcpu_raw:?}"))?;
    let mem_raw = attr(attrs, "memory").unwrap_or("");
    let memory_gib = memory_gib(mem_raw).ok_or_else(|| format!("unreadable memory {mem_raw:?}"))?;

    let processor_arch = attr(attrs, "processorArchitecture")
        .unwrap_or("")
        .to_ascii_lowercase();
    let processor = attr(attrs, "physicalProcessor")
        .unwrap_or("")
        .to_ascii_lowercase();
    let arm = processor.contains("graviton")
        || processor_arch.contains("arm")
        || processor_arch.contains("aarch64");
    let arch = if arm { "arm64" } else { "x86_64" };

    let gpu_attr = attr(attrs, "gpu")
        .and_then(leading_number)
        .filter(|n| *n > 0.0);
    let gpu_count = gpu_attr
        .or_else(|| tables::accelerator_count_fallback(instance_type))
        .unwrap_or(0.0);
    let accelerator = tables::accelerator_for(instance_type).filter(|_| gpu_count > 0.0);

    Ok(InstanceAttrs {
        vcpus,
        memory_gib,
        gpu_model: accelerator.map(|a| a.model.to_string()),
        gpu_count,
        gpu_memory_gib: accelerator.map_or(0.0, |a| a.memory_gib),
        arch: arch.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLES: &str = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../shared/data/price-api-samples/aws/"
    );

    fn sample(name: &str) -> String {
        std::fs::read_to_string(format!("{SAMPLES}{name}"))
            .unwrap_or_else(|e| panic!("reading sample {name}: {e}"))
    }

    fn now() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2024-06-01T00:00:00Z")
            .unwrap()
            .with_timezone(&Utc)
    }

    #[test]
    fn m5_large_item_parses_to_exact_price() {
        let offer = parse_price_list_item(&sample("pricelist_item_m5_large_us-east-1.json"), now())
            .expect("m5.large is a price");
        assert_eq!(offer.key.provider, Provider::Aws);
        assert_eq!(offer.key.instance_type, "m5.large");
        assert_eq!(offer.key.region, "us-east-1");
        assert_eq!(offer.key.zone, "");
        assert_eq!(offer.key.market, Market::OnDemand);
        assert_eq!(offer.price_per_hour, parse_amount("0.096").unwrap());
        assert_eq!(offer.price_per_hour.to_string(), "0.096");
        assert_eq!(offer.currency, Currency::USD);
        assert_eq!(offer.source, "aws-ondemand");
        assert_eq!(offer.observed_at, now());
        let hw = offer.attrs.unwrap();
        assert_eq!(hw.vcpus, 2.0);
        assert_eq!(hw.memory_gib, 8.0);
        assert_eq!(hw.arch, "x86_64");
        assert_eq!(hw.gpu_count, 0.0);
        assert_eq!(hw.gpu_model, None);
    }

    #[test]
    fn wire_response_holds_items_as_strings() {
        // The derived wire body: PriceList is an array of JSON strings.
        let wire: Value =
            serde_json::from_str(&sample("derived_getproducts_response_m5_large.wire.json"))
                .unwrap();
        let items = wire["PriceList"].as_array().unwrap();
        assert_eq!(items.len(), 1);
        let offer = parse_price_list_item(items[0].as_str().unwrap(), now()).unwrap();
        assert_eq!(offer.key.instance_type, "m5.large");
        assert_eq!(offer.price_per_hour, parse_amount("0.0960000000").unwrap());
    }

    /// Rebuilds GetProducts-style items from the bulk offer-file excerpt.
    fn offer_index_items() -> Vec<(String, Value)> {
        let doc: Value =
            serde_json::from_str(&sample("offer_index_AmazonEC2_us-east-1_p4d_excerpt.json"))
                .unwrap();
        let products = doc["products"].as_object().unwrap();
        products
            .iter()
            .map(|(sku, product)| {
                let item = serde_json::json!({
                    "product": product,
                    "serviceCode": "AmazonEC2",
                    "terms": {"OnDemand": doc["terms"]["OnDemand"][sku]},
                });
                (sku.clone(), item)
            })
            .collect()
    }

    #[test]
    fn capacity_block_row_is_rejected_and_real_p4d_price_kept() {
        let items = offer_index_items();
        assert_eq!(items.len(), 2);
        let mut kept = Vec::new();
        let mut rejected = Vec::new();
        for (sku, item) in &items {
            // Round-trip through a string, as the items arrive on the wire.
            match parse_price_list_item(&item.to_string(), now()) {
                Ok(o) => kept.push((sku.clone(), o)),
                Err(ItemError::Rejected(r)) => rejected.push((sku.clone(), r)),
                Err(e) => panic!("{sku}: {e}"),
            }
        }
        assert_eq!(kept.len(), 1);
        assert_eq!(rejected.len(), 1);
        let (sku, offer) = &kept[0];
        assert_eq!(sku, "H7NGEAC6UEHNTKSJ");
        assert_eq!(offer.key.instance_type, "p4d.24xlarge");
        assert_eq!(offer.key.region, "us-east-1");
        assert_eq!(offer.price_per_hour, parse_amount("32.7726").unwrap());
        let hw = offer.attrs.as_ref().unwrap();
        assert_eq!(hw.vcpus, 96.0);
        assert_eq!(hw.memory_gib, 1152.0);
        assert_eq!(hw.gpu_count, 8.0);
        assert_eq!(hw.gpu_model.as_deref(), Some("A100"));
        assert_eq!(hw.gpu_memory_gib, 40.0);
        let (sku, reason) = &rejected[0];
        assert_eq!(sku, "YSXJGN78QTXNVGDQ");
        assert!(reason.contains("Capacity Block"), "{reason}");
        assert!(reason.contains("p4d.24xlarge"), "{reason}");
    }

    fn edit(item: &mut Value, f: impl FnOnce(&mut Map<String, Value>)) {
        f(item["product"]["attributes"].as_object_mut().unwrap());
    }

    fn m5() -> Value {
        serde_json::from_str(&sample("pricelist_item_m5_large_us-east-1.json")).unwrap()
    }

    #[test]
    fn zero_price_and_other_operations_are_rejected() {
        // $0 price with an otherwise plain row.
        let mut zero = m5();
        for term in zero["terms"]["OnDemand"]
            .as_object_mut()
            .unwrap()
            .values_mut()
        {
            for dim in term["priceDimensions"]
                .as_object_mut()
                .unwrap()
                .values_mut()
            {
                dim["pricePerUnit"]["USD"] = Value::from("0.0000000000");
            }
        }
        let why = parse_price_list_value(&zero, now()).unwrap_err();
        assert!(why.contains("price is 0"), "{why}");

        let mut cb = m5();
        edit(&mut cb, |a| {
            a.insert("operation".into(), "RunInstances:CB".into());
        });
        let why = parse_price_list_value(&cb, now()).unwrap_err();
        assert!(why.contains("not RunInstances"), "{why}");

        let mut sql = m5();
        edit(&mut sql, |a| {
            a.insert("operation".into(), "RunInstances:0002".into());
        });
        assert!(parse_price_list_value(&sql, now()).is_err());

        let mut lz = m5();
        edit(&mut lz, |a| {
            a.insert("locationType".into(), "AWS Local Zone".into());
        });
        assert!(parse_price_list_value(&lz, now()).is_err());

        let mut win = m5();
        edit(&mut win, |a| {
            a.insert("operatingSystem".into(), "Windows".into());
        });
        assert!(parse_price_list_value(&win, now()).is_err());
    }

    #[test]
    fn malformed_element_is_not_a_rejection() {
        assert!(matches!(
            parse_price_list_item("{not json", now()),
            Err(ItemError::Malformed(_))
        ));
        assert!(matches!(
            parse_price_list_item("[1,2]", now()),
            Err(ItemError::Malformed(_))
        ));
        assert!(matches!(
            parse_price_list_item("{}", now()),
            Err(ItemError::Rejected(_))
        ));
    }

    #[test]
    fn region_falls_back_to_location_table() {
        let mut item = m5();
        edit(&mut item, |a| {
            a.remove("regionCode");
            a.insert("location".into(), "EU (Frankfurt)".into());
        });
        let offer = parse_price_list_value(&item, now()).unwrap();
        assert_eq!(offer.key.region, "eu-central-1");

        let mut unknown = m5();
        edit(&mut unknown, |a| {
            a.insert("location".into(), "Nowhere (Atlantis)".into());
        });
        let why = parse_price_list_value(&unknown, now()).unwrap_err();
        assert!(why.contains("unknown location"), "{why}");
    }

    #[test]
    fn graviton_is_arm64_and_accelerators_come_from_the_table() {
        let mut item = m5();
        edit(&mut item, |a| {
            a.insert("instanceType".into(), "g5g.xlarge".into());
            a.insert("physicalProcessor".into(), "AWS Graviton2 Processor".into());
            a.insert("gpu".into(), "1".into());
            a.insert("memory".into(), "1,024 GiB".into());
        });
        let hw = parse_price_list_value(&item, now()).unwrap().attrs.unwrap();
        assert_eq!(hw.arch, "arm64");
        assert_eq!(hw.gpu_model.as_deref(), Some("T4G"));
        assert_eq!(hw.gpu_count, 1.0);
        assert_eq!(hw.gpu_memory_gib, 16.0);
        assert_eq!(hw.memory_gib, 1024.0);

        let mut inf = m5();
        edit(&mut inf, |a| {
            a.insert("instanceType".into(), "inf2.48xlarge".into());
            a.remove("gpu");
        });
        let hw = parse_price_list_value(&inf, now()).unwrap().attrs.unwrap();
        assert_eq!(hw.gpu_model.as_deref(), Some("Inferentia2"));
        assert_eq!(hw.gpu_count, 12.0);
    }

    #[test]
    fn filters_add_region_code_only_when_asked() {
        let all = filters(None).unwrap();
        assert_eq!(all.len(), 4);
        assert!(all.iter().all(|f| *f.r#type() == FilterType::TermMatch));
        let one = filters(Some("eu-west-1")).unwrap();
        assert_eq!(one.len(), 5);
        assert_eq!(one[4].field(), "regionCode");
        assert_eq!(one[4].value(), "eu-west-1");
    }
}

/// The SDK path against a local stand-in of the Pricing API.
#[cfg(test)]
mod sdk_tests {
    use std::time::Duration;

    use super::*;
    use crate::remote::aws::stub::{Canned, serve};

    const SAMPLES: &str = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../shared/data/price-api-samples/aws/"
    );
    const JSON: &str = "application/x-amz-json-1.1";

    fn sample(name: &str) -> String {
        std::fs::read_to_string(format!("{SAMPLES}{name}")).unwrap()
    }

    fn settings(url: &str) -> HttpSettings {
        HttpSettings {
            endpoint: Some(url.to_string()),
            timeout: Duration::from_secs(5),
            max_retries: 2,
            base_backoff: Duration::from_millis(1),
            max_backoff: Duration::from_millis(5),
        }
    }

    /// GetProducts page 1: the two p4d rows of the offer-file excerpt, as JSON strings.
    fn p4d_page(next_token: Option<&str>) -> String {
        let doc: Value =
            serde_json::from_str(&sample("offer_index_AmazonEC2_us-east-1_p4d_excerpt.json"))
                .unwrap();
        let items: Vec<Value> = doc["products"]
            .as_object()
            .unwrap()
            .iter()
            .map(|(sku, product)| {
                let item = serde_json::json!({
                    "product": product,
                    "terms": {"OnDemand": doc["terms"]["OnDemand"][sku]},
                });
                Value::from(item.to_string())
            })
            .collect();
        let mut page = serde_json::json!({"FormatVersion": "aws_v1", "PriceList": items});
        if let Some(t) = next_token {
            page["NextToken"] = Value::from(t);
        }
        page.to_string()
    }

    #[tokio::test]
    async fn walks_every_page_and_rejects_capacity_blocks() {
        let stub = serve(vec![
            Canned::new(200, JSON, p4d_page(Some("page-2"))),
            Canned::new(
                200,
                JSON,
                sample("derived_getproducts_response_m5_large.wire.json"),
            ),
        ])
        .await;
        let source = AwsOnDemandSource::new(settings(&stub.url), vec![]);
        assert_eq!(source.name(), "aws-ondemand");
        let batch = source.fetch(&KnownInstances::new()).await.unwrap();
        assert_eq!(batch.pages, 2);
        let mut got: Vec<(String, String)> = batch
            .offers
            .iter()
            .map(|o| (o.key.instance_type.clone(), o.price_per_hour.to_string()))
            .collect();
        got.sort();
        assert_eq!(
            got,
            vec![
                ("m5.large".to_string(), "0.096".to_string()),
                ("p4d.24xlarge".to_string(), "32.7726".to_string()),
            ]
        );
        assert_eq!(batch.rejected.len(), 1, "{:?}", batch.rejected);
        assert!(batch.rejected[0].contains("Capacity Block"));

        let reqs = stub.requests();
        assert_eq!(reqs.len(), 2);
        for r in &reqs {
            assert_eq!(
                r.headers.get("x-amz-target").unwrap(),
                "AWSPriceListService.GetProducts"
            );
            assert!(r.headers.contains_key("authorization"));
            let body: Value = serde_json::from_str(&r.body).unwrap();
            assert_eq!(body["ServiceCode"], "AmazonEC2");
            assert_eq!(body["Filters"].as_array().unwrap().len(), 4);
        }
        let first: Value = serde_json::from_str(&reqs[0].body).unwrap();
        assert!(first.get("NextToken").is_none());
        let second: Value = serde_json::from_str(&reqs[1].body).unwrap();
        assert_eq!(second["NextToken"], "page-2");
    }

    #[tokio::test]
    async fn one_walk_per_configured_region() {
        let stub = serve(vec![Canned::new(
            200,
            JSON,
            sample("derived_getproducts_response_m5_large.wire.json"),
        )])
        .await;
        let source = AwsOnDemandSource::new(
            settings(&stub.url),
            vec!["us-east-1".into(), "eu-west-1".into()],
        );
        let batch = source.fetch(&KnownInstances::new()).await.unwrap();
        assert_eq!(batch.pages, 2);
        // Both walks returned the same us-east-1 row: the second is a duplicate.
        assert_eq!(batch.offers.len(), 1);
        assert_eq!(batch.rejected.len(), 1);
        let regions: Vec<String> = stub
            .requests()
            .iter()
            .map(|r| {
                let body: Value = serde_json::from_str(&r.body).unwrap();
                body["Filters"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .find(|f| f["Field"] == "regionCode")
                    .map(|f| f["Value"].as_str().unwrap().to_string())
                    .unwrap()
            })
            .collect();
        assert_eq!(regions, vec!["eu-west-1", "us-east-1"]);
    }

    #[tokio::test]
    async fn repeated_token_is_a_pagination_loop() {
        let stub = serve(vec![Canned::new(200, JSON, p4d_page(Some("again")))]).await;
        let source = AwsOnDemandSource::new(settings(&stub.url), vec![]);
        let err = source.fetch(&KnownInstances::new()).await.unwrap_err();
        assert!(
            matches!(&err, SourceError::PaginationLoop { token, .. } if token == "again"),
            "{err:?}"
        );
        assert_eq!(stub.requests().len(), 2);
    }

    #[tokio::test]
    async fn empty_or_null_token_ends_the_walk() {
        for token in [r#""NextToken": """#, r#""NextToken": null"#] {
            let body = format!(r#"{{"FormatVersion": "aws_v1", {token}, "PriceList": []}}"#);
            let stub = serve(vec![Canned::new(200, JSON, body)]).await;
            let source = AwsOnDemandSource::new(settings(&stub.url), vec![]);
            let batch = source.fetch(&KnownInstances::new()).await.unwrap();
            assert_eq!(batch.pages, 1);
            assert!(batch.offers.is_empty());
        }
    }

    #[tokio::test]
    async fn server_errors_are_retried_then_reported() {
        let body = r#"{"__type": "InternalErrorException", "message": "boom"}"#;
        let stub = serve(vec![Canned::new(500, JSON, body)]).await;
        let source = AwsOnDemandSource::new(settings(&stub.url), vec![]);
        let err = source.fetch(&KnownInstances::new()).await.unwrap_err();
        match err {
            SourceError::Http {
                status, attempts, ..
            } => {
                assert_eq!(status, 500);
                assert_eq!(attempts, 3);
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(stub.requests().len(), 3);
    }

    #[tokio::test]
    async fn recovers_after_a_transient_error() {
        let stub = serve(vec![
            Canned::new(503, JSON, r#"{"__type": "ServiceUnavailable"}"#),
            Canned::new(
                200,
                JSON,
                sample("derived_getproducts_response_m5_large.wire.json"),
            ),
        ])
        .await;
        let source = AwsOnDemandSource::new(settings(&stub.url), vec![]);
        let batch = source.fetch(&KnownInstances::new()).await.unwrap();
        assert_eq!(batch.offers.len(), 1);
        assert_eq!(stub.requests().len(), 2);
    }

    #[tokio::test]
    async fn throttling_auth_and_malformed_bodies_map_to_their_errors() {
        let throttled = serve(vec![Canned::new(
            400,
            JSON,
            r#"{"__type": "ThrottlingException", "message": "Rate exceeded"}"#,
        )])
        .await;
        let err = AwsOnDemandSource::new(settings(&throttled.url), vec![])
            .fetch(&KnownInstances::new())
            .await
            .unwrap_err();
        assert!(
            matches!(err, SourceError::Throttled { attempts: 3, .. }),
            "{err:?}"
        );

        let denied = serve(vec![Canned::new(
            400,
            JSON,
            r#"{"__type": "AccessDeniedException", "message": "no"}"#,
        )])
        .await;
        let err = AwsOnDemandSource::new(settings(&denied.url), vec![])
            .fetch(&KnownInstances::new())
            .await
            .unwrap_err();
        assert!(matches!(err, SourceError::Auth(_)), "{err:?}");

        let forbidden = serve(vec![Canned::new(403, JSON, "{}")]).await;
        let err = AwsOnDemandSource::new(settings(&forbidden.url), vec![])
            .fetch(&KnownInstances::new())
            .await
            .unwrap_err();
        assert!(matches!(err, SourceError::Auth(_)), "{err:?}");

        let garbage = serve(vec![Canned::new(200, JSON, "<html>not json")]).await;
        let err = AwsOnDemandSource::new(settings(&garbage.url), vec![])
            .fetch(&KnownInstances::new())
            .await
            .unwrap_err();
        assert!(matches!(err, SourceError::Malformed { .. }), "{err:?}");

        let bad_item = serve(vec![Canned::new(
            200,
            JSON,
            r#"{"FormatVersion": "aws_v1", "PriceList": ["{truncated"]}"#,
        )])
        .await;
        let err = AwsOnDemandSource::new(settings(&bad_item.url), vec![])
            .fetch(&KnownInstances::new())
            .await
            .unwrap_err();
        assert!(matches!(err, SourceError::Malformed { .. }), "{err:?}");
    }
}
