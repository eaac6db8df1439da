//! Azure Retail Prices adapter (`AzureRetailSource`, source name "azure"). Walks
//! `GET {base}/api/retail/prices?$filter=serviceName eq 'Virtual Machines' and priceType eq
//! 'Consumption' [and armRegionName eq '<region>']`, one walk per configured region (one
//! walk for all regions when none are configured), following `NextPageLink` until it is
//! null or empty. Keeps Linux pay-as-you-go and Spot hourly USD rows; Windows, Low
//! Priority, non-hourly, non-USD, zero-priced and non-Consumption rows are reported as
//! rejected with their reason. When several rows map to one (region, armSkuName, market) —
//! price revisions with different `effectiveStartDate`, or product-name variants such as
//! "Virtual Machines DSv3 Series" vs "... Series Linux" — the row with the newest
//! `effectiveStartDate` wins, and on a tie the lower price; the losers are reported.
//! Row parsing and selection are pure (`parse_page`, `RetailSelector`); only
//! `AzureRetailSource::fetch` does HTTP.
//! Invariant: prices keep the exact decimal text of the JSON number (read through
//! `serde_json::value::RawValue`, never through `f64`).
use std::collections::{HashMap, HashSet};
use std::fmt;

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use serde::Deserialize;
use serde_json::value::RawValue;

use crate::clouds::{HttpSettings, PriceSource, SourceBatch, SourceError};
use crate::domain::money::parse_amount;
use crate::domain::{Currency, KnownInstances, Market, Offer, OfferKey, Provider};
use crate::remote::http::{self, TokenGuard};

/// Public endpoint of the Azure Retail Prices API.
pub const DEFAULT_BASE_URL: &str = "https://prices.azure.com";
/// Name of this source (status, logs, the offers' `source`).
pub const SOURCE_NAME: &str = "azure";

// ---------------------------------------------------------------------------------------
// Wire format

/// An exact decimal read from a JSON number (or a numeric string) without going through
/// `f64`: the number's own text is parsed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ExactDecimal(pub Decimal);

impl<'de> Deserialize<'de> for ExactDecimal {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::Error;
        let raw = Box::<RawValue>::deserialize(d)?;
        let text = raw.get().trim();
        let text = if text.starts_with('"') {
            serde_json::from_str::<String>(text).map_err(D::Error::custom)?
        } else {
            text.to_string()
        };
        parse_amount(&text)
            .map(ExactDecimal)
            .map_err(|e| D::Error::custom(e.to_string()))
    }
}

/// One page of the Retail Prices API.
#[derive(Debug, Deserialize)]
pub struct RetailPage {
    #[serde(rename = "Items")]
    pub items: Vec<RetailItem>,
    /// Absolute URL of the next page; null, missing or empty on the last page.
    #[serde(rename = "NextPageLink", default)]
    pub next_page_link: Option<String>,
}

/// One price row (the fields this adapter reads).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RetailItem {
    #[serde(default)]
    pub currency_code: String,
    #[serde(default)]
    pub retail_price: Option<ExactDecimal>,
    #[serde(default)]
    pub arm_region_name: String,
    #[serde(default)]
    pub effective_start_date: Option<String>,
    #[serde(default)]
    pub meter_name: String,
    #[serde(default)]
    pub product_name: String,
    #[serde(default)]
    pub sku_name: String,
    #[serde(default)]
    pub service_name: String,
    #[serde(default)]
    pub unit_of_measure: String,
    /// "Consumption", "Reservation", "DevTestConsumption".
    #[serde(rename = "type", default)]
    pub price_type: String,
    #[serde(default)]
    pub arm_sku_name: String,
}

impl RetailItem {
    fn effective(&self) -> Option<DateTime<Utc>> {
        let s = self.effective_start_date.as_deref()?;
        DateTime::parse_from_rfc3339(s.trim())
            .ok()
            .map(|d| d.with_timezone(&Utc))
    }

    fn describe(&self) -> String {
        format!(
            "azure {} {} ({:?}, {:?})",
            self.arm_region_name, self.arm_sku_name, self.product_name, self.sku_name
        )
    }
}

/// Parses one page, naming `url` in the error.
pub fn parse_page(body: &[u8], url: &str) -> Result<RetailPage, SourceError> {
    serde_json::from_slice(body).map_err(|e| SourceError::Malformed {
        url: url.to_string(),
        detail: e.to_string(),
    })
}

// ---------------------------------------------------------------------------------------
// URLs

/// Percent-encodes everything but RFC 3986 unreserved characters (spaces become %20).
fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len() * 2);
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The OData filter of one walk.
pub fn filter(region: Option<&str>) -> String {
    let mut f = String::from("serviceName eq 'Virtual Machines' and priceType eq 'Consumption'");
    if let Some(r) = region {
        // OData string literal: a quote is doubled.
        f.push_str(&format!(
            " and armRegionName eq '{}'",
            r.replace('\'', "''")
        ));
    }
    f
}

/// First page of one walk: `{base}/api/retail/prices?$filter=...`.
pub fn first_page_url(base: &str, region: Option<&str>) -> String {
    format!(
        "{}/api/retail/prices?$filter={}",
        base.trim_end_matches('/'),
        encode(&filter(region))
    )
}

/// Resolves a `NextPageLink`: absolute links are used exactly as given; a relative one (not
/// seen from Azure) is resolved against the page that returned it.
fn resolve_link(current: &str, link: &str) -> Result<String, SourceError> {
    if link.starts_with("http://") || link.starts_with("https://") {
        return Ok(link.to_string());
    }
    url::Url::parse(current)
        .and_then(|u| u.join(link))
        .map(String::from)
        .map_err(|e| SourceError::Malformed {
            url: current.to_string(),
            detail: format!("NextPageLink {link:?} is not a URL: {e}"),
        })
}

// ---------------------------------------------------------------------------------------
// Selection

/// Which market a row prices, or why it is not kept. Checks, in order: price type, unit,
/// currency, OS (Windows), Low Priority, price.
pub fn classify(item: &RetailItem) -> Result<(Market, Decimal), String> {
    if item.price_type != "Consumption" {
        return Err(format!(
            "price type {:?} is not Consumption",
            item.price_type
        ));
    }
    if !item.service_name.is_empty() && item.service_name != "Virtual Machines" {
        return Err(format!(
            "service {:?} is not Virtual Machines",
            item.service_name
        ));
    }
    if item.unit_of_measure != "1 Hour" {
        return Err(format!("unit {:?} is not \"1 Hour\"", item.unit_of_measure));
    }
    if item.currency_code != "USD" {
        return Err(format!("priced in {:?}, not USD", item.currency_code));
    }
    if item.product_name.contains("Windows") {
        return Err("Windows licence included; Linux only".into());
    }
    if item.arm_sku_name.trim().is_empty() || item.arm_region_name.trim().is_empty() {
        return Err("no armSkuName or armRegionName".into());
    }
    let ends = |suffix: &str| item.sku_name.ends_with(suffix) || item.meter_name.ends_with(suffix);
    if ends(" Low Priority") {
        return Err("low priority is retired; spot used".into());
    }
    let market = if ends(" Spot") {
        Market::Spot
    } else {
        Market::OnDemand
    };
    match item.retail_price {
        Some(ExactDecimal(p)) if p > Decimal::ZERO => Ok((market, p)),
        Some(ExactDecimal(p)) if p.is_zero() => Err("zero price".into()),
        Some(ExactDecimal(p)) => Err(format!("negative price {p}")),
        None => Err("no retailPrice".into()),
    }
}

#[derive(Debug, Clone)]
struct Candidate {
    price: Decimal,
    effective: Option<DateTime<Utc>>,
    what: String,
}

impl Candidate {
    /// Newest `effectiveStartDate` wins; on a tie, the lower price.
    fn beats(&self, other: &Candidate) -> bool {
        match self.effective.cmp(&other.effective) {
            std::cmp::Ordering::Greater => true,
            std::cmp::Ordering::Less => false,
            std::cmp::Ordering::Equal => self.price < other.price,
        }
    }
}

/// Accumulates rows across pages and walks, keeping one winner per
/// (region, armSkuName, market).
#[derive(Debug, Default)]
pub struct RetailSelector {
    /// Configured regions (lower-case); empty = all.
    regions: HashSet<String>,
    best: HashMap<(String, String, Market), Candidate>,
    rejected: Vec<String>,
}

impl RetailSelector {
    /// A selector that keeps only `regions` (all when empty).
    pub fn new(regions: &[String]) -> Self {
        RetailSelector {
            regions: regions
                .iter()
                .map(|r| r.trim().to_ascii_lowercase())
                .filter(|r| !r.is_empty())
                .collect(),
            ..Default::default()
        }
    }

    pub fn add_page(&mut self, page: &RetailPage) {
        for item in &page.items {
            self.add(item);
        }
    }

    /// Files one row as a candidate, or records why not.
    pub fn add(&mut self, item: &RetailItem) {
        let (market, price) = match classify(item) {
            Ok(v) => v,
            Err(reason) => {
                self.rejected.push(format!("{}: {reason}", item.describe()));
                return;
            }
        };
        let region = item.arm_region_name.trim().to_ascii_lowercase();
        if !self.regions.is_empty() && !self.regions.contains(&region) {
            self.rejected
                .push(format!("{}: region not configured", item.describe()));
            return;
        }
        let cand = Candidate {
            price,
            effective: item.effective(),
            what: format!(
                "{:?} effective {} at {price}",
                item.product_name,
                item.effective_start_date.as_deref().unwrap_or("?")
            ),
        };
        let key = (region, item.arm_sku_name.trim().to_string(), market);
        match self.best.get_mut(&key) {
            None => {
                self.best.insert(key, cand);
            }
            Some(old) => {
                let (winner, loser) = if cand.beats(old) {
                    let loser = std::mem::replace(old, cand);
                    (old.what.clone(), loser)
                } else {
                    (old.what.clone(), cand)
                };
                self.rejected.push(format!(
                    "azure {} {} {}: {} superseded by {winner} (newest effectiveStartDate, then lowest price)",
                    key.0, key.1, key.2, loser.what
                ));
            }
        }
    }

    /// Rows seen so far but not kept, with reasons.
    pub fn rejected(&self) -> &[String] {
        &self.rejected
    }

    /// The winning rows as offers (sorted by key), hardware from `known` when present.
    pub fn finish(self, known: &KnownInstances, now: DateTime<Utc>) -> SourceBatch {
        let mut offers: Vec<Offer> = self
            .best
            .into_iter()
            .map(|((region, sku, market), c)| Offer {
                attrs: known.get(&(Provider::Azure, sku.clone())).cloned(),
                key: OfferKey {
                    provider: Provider::Azure,
                    region,
                    zone: String::new(),
                    instance_type: sku,
                    market,
                },
                price_per_hour: c.price.normalize(),
                currency: Currency::USD,
                source: SOURCE_NAME.to_string(),
                observed_at: now,
            })
            .collect();
        offers.sort_by(|a, b| a.key.cmp(&b.key));
        SourceBatch {
            offers,
            bands: Vec::new(),
            rejected: self.rejected,
            pages: 0,
        }
    }
}

/// Everything after the walk as one pure step over parsed pages.
pub fn batch_from_pages(
    pages: &[RetailPage],
    regions: &[String],
    known: &KnownInstances,
    now: DateTime<Utc>,
) -> SourceBatch {
    let mut sel = RetailSelector::new(regions);
    for p in pages {
        sel.add_page(p);
    }
    let mut batch = sel.finish(known, now);
    batch.pages = pages.len() as u32;
    batch
}

// ---------------------------------------------------------------------------------------
// The source

/// The Azure Retail Prices API as a `PriceSource`.
pub struct AzureRetailSource {
    settings: HttpSettings,
    regions: Vec<String>,
}

impl fmt::Debug for AzureRetailSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AzureRetailSource")
            .field("endpoint", &self.base_url())
            .field("regions", &self.regions)
            .finish()
    }
}

impl AzureRetailSource {
    /// `regions` are ARM names ("eastus"); empty = one walk over every region.
    pub fn new(settings: HttpSettings, regions: Vec<String>) -> Self {
        AzureRetailSource { settings, regions }
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

    /// Walks one chain of pages from `first`, following `NextPageLink` until it is null or
    /// empty, feeding every page to `selector`. Returns the number of pages read.
    pub async fn walk(
        &self,
        client: &reqwest::Client,
        first: String,
        selector: &mut RetailSelector,
    ) -> Result<u32, SourceError> {
        let mut guard = TokenGuard::default();
        // The first URL counts as seen: a link back to it is a loop too.
        guard.next(Some(&first), &first)?;
        let mut url = first;
        let mut pages = 0u32;
        loop {
            tracing::debug!(%url, page = pages + 1, "fetching Azure retail page");
            let body = http::get_with_retry(client, &url, &self.settings).await?;
            let page = parse_page(&body.0, &url)?;
            pages += 1;
            selector.add_page(&page);
            let link = match page.next_page_link.as_deref().map(str::trim) {
                Some(l) if !l.is_empty() => Some(resolve_link(&url, l)?),
                _ => None,
            };
            match guard.next(link.as_deref(), &url)? {
                Some(next) => url = next,
                None => return Ok(pages),
            }
        }
    }

    /// First URL of each walk.
    pub fn first_urls(&self) -> Vec<String> {
        let regions: Vec<&str> = self
            .regions
            .iter()
            .map(|r| r.trim())
            .filter(|r| !r.is_empty())
            .collect();
        if regions.is_empty() {
            vec![first_page_url(self.base_url(), None)]
        } else {
            regions
                .into_iter()
                .map(|r| first_page_url(self.base_url(), Some(r)))
                .collect()
        }
    }
}

#[async_trait::async_trait]
impl PriceSource for AzureRetailSource {
    fn name(&self) -> &str {
        SOURCE_NAME
    }

    fn provider(&self) -> Provider {
        Provider::Azure
    }

    async fn fetch(&self, known: &KnownInstances) -> Result<SourceBatch, SourceError> {
        let client = http::client(&self.settings)?;
        let mut selector = RetailSelector::new(&self.regions);
        let mut pages = 0u32;
        for first in self.first_urls() {
            pages += self.walk(&client, first, &mut selector).await?;
        }
        let mut batch = selector.finish(known, Utc::now());
        batch.pages = pages;
        tracing::info!(
            pages,
            offers = batch.offers.len(),
            rejected = batch.rejected.len(),
            "Azure retail walk complete"
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
        "/../shared/data/price-api-samples/azure/"
    );

    fn page(file: &str) -> RetailPage {
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

    fn find<'a>(b: &'a SourceBatch, sku: &str, market: Market) -> Option<&'a Offer> {
        b.offers
            .iter()
            .find(|o| o.key.instance_type == sku && o.key.market == market)
    }

    fn d2s_known() -> KnownInstances {
        let mut known = KnownInstances::new();
        known.insert(
            (Provider::Azure, "Standard_D2s_v3".into()),
            InstanceAttrs {
                vcpus: 2.0,
                memory_gib: 8.0,
                arch: "x86_64".into(),
                ..Default::default()
            },
        );
        known
    }

    fn check_d2s(batch: &SourceBatch) {
        assert_eq!(batch.offers.len(), 2, "{:#?}", batch.offers);
        let od = find(batch, "Standard_D2s_v3", Market::OnDemand).unwrap();
        assert_eq!(od.price_per_hour, d("0.096"));
        assert_eq!(od.key.region, "eastus");
        assert_eq!(od.key.zone, "");
        assert_eq!(od.key.provider, Provider::Azure);
        assert_eq!(od.source, "azure");
        assert_eq!(od.currency, Currency::USD);
        assert_eq!(od.observed_at, now());
        assert_eq!(od.attrs.as_ref().map(|a| a.vcpus), Some(2.0));
        let spot = find(batch, "Standard_D2s_v3", Market::Spot).unwrap();
        assert_eq!(spot.price_per_hour, Decimal::new(18816, 6));
        assert_eq!(spot.price_per_hour.to_string(), "0.018816");

        assert_eq!(batch.rejected.len(), 4, "{:#?}", batch.rejected);
        let windows = batch
            .rejected
            .iter()
            .filter(|r| r.contains("Windows licence"))
            .count();
        assert_eq!(windows, 3);
        let lp: Vec<_> = batch
            .rejected
            .iter()
            .filter(|r| r.contains("low priority is retired; spot used"))
            .collect();
        assert_eq!(lp.len(), 1);
        assert!(lp[0].contains("Virtual Machines DSv3 Series"));
    }

    #[test]
    fn d2s_v3_keeps_linux_on_demand_and_spot() {
        let p = page("retail_vm_d2s_v3_eastus_consumption.json");
        assert!(p.next_page_link.is_none());
        check_d2s(&batch_from_pages(&[p], &[], &d2s_known(), now()));
    }

    #[test]
    fn savings_plan_preview_changes_nothing() {
        let p = page("retail_vm_d2s_v3_eastus_consumption_preview_savingsplan.json");
        let batch = batch_from_pages(&[p], &["eastus".into()], &d2s_known(), now());
        check_d2s(&batch);
        assert!(
            !batch
                .offers
                .iter()
                .any(|o| o.price_per_hour == d("0.04512"))
        );
    }

    #[test]
    fn b1s_linux_only_and_unknown_hardware_is_none() {
        let p = page("retail_vm_b1s_eastus_consumption.json");
        let batch = batch_from_pages(&[p], &[], &KnownInstances::new(), now());
        assert_eq!(batch.offers.len(), 1);
        let o = &batch.offers[0];
        assert_eq!(o.key.instance_type, "Standard_B1s");
        assert_eq!(o.key.market, Market::OnDemand);
        assert_eq!(o.price_per_hour, d("0.0104"));
        assert!(o.attrs.is_none());
        assert_eq!(batch.rejected.len(), 1);
        assert!(batch.rejected[0].contains("Windows"));
    }

    #[test]
    fn reservation_rows_are_rejected_and_next_link_is_read() {
        let p = page("retail_reservation_page1.trimmed.json");
        let link = p.next_page_link.clone().unwrap();
        assert!(link.starts_with("https://prices.azure.com:443/api/retail/prices?"));
        assert!(link.ends_with("$skip=1000"));
        let batch = batch_from_pages(&[p], &[], &KnownInstances::new(), now());
        assert!(batch.offers.is_empty());
        assert_eq!(batch.rejected.len(), 5);
        assert!(batch.rejected.iter().all(|r| r.contains("Reservation")));
    }

    #[test]
    fn region_filter_rejects_other_regions() {
        let p = page("retail_vm_b1s_eastus_consumption.json");
        let batch = batch_from_pages(&[p], &["westeurope".into()], &KnownInstances::new(), now());
        assert!(batch.offers.is_empty());
        assert!(
            batch
                .rejected
                .iter()
                .any(|r| r.contains("region not configured"))
        );
    }

    /// A D2s_v3 eastus Consumption row with `fields` set over the defaults.
    fn item(fields: serde_json::Value) -> serde_json::Value {
        let mut v = serde_json::json!({
            "currencyCode": "USD",
            "armRegionName": "eastus",
            "serviceName": "Virtual Machines",
            "unitOfMeasure": "1 Hour",
            "type": "Consumption",
            "armSkuName": "Standard_D2s_v3",
            "productName": "Virtual Machines DSv3 Series",
            "skuName": "D2s v3",
            "meterName": "D2s v3",
        });
        for (k, val) in fields.as_object().unwrap() {
            v[k] = val.clone();
        }
        v
    }

    fn page_of(items: Vec<serde_json::Value>) -> RetailPage {
        let body = serde_json::json!({ "Items": items, "NextPageLink": "" }).to_string();
        parse_page(body.as_bytes(), "u").unwrap()
    }

    #[test]
    fn newest_effective_date_wins_then_lowest_price() {
        use serde_json::json;
        let p = page_of(vec![
            item(json!({"retailPrice": 0.096, "effectiveStartDate": "2017-12-15T00:00:00Z"})),
            item(json!({"retailPrice": 0.101, "effectiveStartDate": "2024-01-01T00:00:00Z"})),
            item(
                json!({"retailPrice": 0.099, "effectiveStartDate": "2024-01-01T00:00:00Z",
                        "productName": "Virtual Machines DSv3 Series Linux"}),
            ),
            item(
                json!({"retailPrice": 0.02, "effectiveStartDate": "2020-01-01T00:00:00Z",
                        "skuName": "D2s v3 Spot", "meterName": "D2s v3 Spot"}),
            ),
            item(
                json!({"retailPrice": 0.01, "effectiveStartDate": "2019-01-01T00:00:00Z",
                        "skuName": "D2s v3 Low Priority", "meterName": "D2s v3 Low Priority"}),
            ),
        ]);
        let batch = batch_from_pages(&[p], &[], &KnownInstances::new(), now());
        assert_eq!(batch.offers.len(), 2);
        assert_eq!(
            find(&batch, "Standard_D2s_v3", Market::OnDemand)
                .unwrap()
                .price_per_hour,
            d("0.099")
        );
        // Low Priority never overwrites Spot.
        assert_eq!(
            find(&batch, "Standard_D2s_v3", Market::Spot)
                .unwrap()
                .price_per_hour,
            d("0.02")
        );
        let superseded = batch
            .rejected
            .iter()
            .filter(|r| r.contains("superseded"))
            .count();
        assert_eq!(superseded, 2, "{:#?}", batch.rejected);
    }

    #[test]
    fn units_currency_and_zero_prices_are_rejected() {
        use serde_json::json;
        let p = page_of(vec![
            item(json!({"retailPrice": 0})),
            item(json!({"retailPrice": 1.5, "unitOfMeasure": "1 GB/Month"})),
            item(json!({"retailPrice": 1.5, "currencyCode": "EUR"})),
            item(json!({"retailPrice": 1.5, "type": "DevTestConsumption"})),
        ]);
        let batch = batch_from_pages(&[p], &[], &KnownInstances::new(), now());
        assert!(batch.offers.is_empty());
        let r = &batch.rejected;
        assert!(r[0].contains("zero price"), "{r:?}");
        assert!(r[1].contains("1 GB/Month"), "{r:?}");
        assert!(r[2].contains("EUR"), "{r:?}");
        assert!(r[3].contains("DevTestConsumption"), "{r:?}");
    }

    #[test]
    fn prices_are_read_exactly() {
        for (json, want) in [
            ("0.018816", "0.018816"),
            ("0.1234567890123456789", "0.1234567890123456789"),
            ("1.5E-3", "0.0015"),
            ("\"0.0960000000\"", "0.096"),
            ("12", "12"),
        ] {
            let v: ExactDecimal = serde_json::from_str(json).unwrap();
            assert_eq!(v.0, d(want), "{json}");
        }
        assert!(serde_json::from_str::<ExactDecimal>("true").is_err());
    }

    #[test]
    fn malformed_json_names_the_url() {
        let err = parse_page(b"{\"Items\": [ {", "https://prices.example/p1").unwrap_err();
        match err {
            SourceError::Malformed { url, .. } => assert_eq!(url, "https://prices.example/p1"),
            other => panic!("{other:?}"),
        }
        assert!(parse_page(b"{\"NextPageLink\": null}", "u").is_err());
    }

    #[test]
    fn urls_are_encoded_per_region() {
        assert_eq!(
            first_page_url("https://prices.azure.com/", Some("eastus")),
            "https://prices.azure.com/api/retail/prices?$filter=serviceName%20eq%20%27Virtual%20Machines%27%20and%20priceType%20eq%20%27Consumption%27%20and%20armRegionName%20eq%20%27eastus%27"
        );
        let src = AzureRetailSource::new(
            HttpSettings {
                endpoint: Some("http://127.0.0.1:8080/".into()),
                ..Default::default()
            },
            vec!["eastus".into(), "westeurope".into()],
        );
        let urls = src.first_urls();
        assert_eq!(urls.len(), 2);
        assert!(urls[0].starts_with("http://127.0.0.1:8080/api/retail/prices?$filter="));
        assert!(urls[1].ends_with("%27westeurope%27"));
        let all = AzureRetailSource::new(HttpSettings::default(), vec![]).first_urls();
        assert_eq!(all.len(), 1);
        assert!(!all[0].contains("armRegionName"));
        assert_eq!(
            resolve_link("https://a.example/x/y?z=1", "/api?p=2").unwrap(),
            "https://a.example/api?p=2"
        );
    }
}

#[cfg(test)]
mod fetch_tests {
    use std::time::Duration;

    use axum::extract::{RawQuery, State};
    use axum::http::{StatusCode, Uri};

    use super::*;

    const D2S: &str = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../shared/data/price-api-samples/azure/retail_vm_d2s_v3_eastus_consumption.json"
    );

    /// Serves page 1 (B1s, linking to /page2) at the API path, the D2s_v3 file at /page2,
    /// a self-link at /loop and broken JSON at /broken. Returns the base URL.
    async fn serve() -> String {
        async fn answer(
            State(base): State<String>,
            uri: Uri,
            RawQuery(q): RawQuery,
        ) -> (StatusCode, String) {
            let b1s = include_str!(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/../shared/data/price-api-samples/azure/retail_vm_b1s_eastus_consumption.json"
            ));
            match uri.path() {
                "/api/retail/prices" => {
                    let q = q.unwrap_or_default();
                    assert!(q.starts_with("$filter=serviceName%20eq%20%27Virtual%20Machines%27"));
                    let next = format!("\"{base}/page2?$skip=1000\"");
                    (StatusCode::OK, b1s.replace("null", &next))
                }
                "/page2" => (StatusCode::OK, std::fs::read_to_string(D2S).unwrap()),
                "/loop" => (
                    StatusCode::OK,
                    format!(r#"{{"Items":[],"NextPageLink":"{base}/loop"}}"#),
                ),
                _ => (StatusCode::OK, "{\"Items\": [".into()),
            }
        }
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let app = axum::Router::new()
            .fallback(answer)
            .with_state(base.clone());
        tokio::spawn(async move { axum::serve(listener, app).await });
        base
    }

    fn settings(base: &str) -> HttpSettings {
        HttpSettings {
            endpoint: Some(base.to_string()),
            timeout: Duration::from_secs(5),
            max_retries: 0,
            base_backoff: Duration::from_millis(1),
            max_backoff: Duration::from_millis(5),
        }
    }

    #[tokio::test]
    async fn walks_next_page_links_and_stops_on_loops_and_bad_json() {
        let base = serve().await;
        let src = AzureRetailSource::new(settings(&base), vec!["eastus".into()]);
        assert_eq!((src.name(), src.provider()), ("azure", Provider::Azure));
        let batch = src.fetch(&KnownInstances::new()).await.unwrap();
        assert_eq!(batch.pages, 2);
        let types: Vec<_> = batch
            .offers
            .iter()
            .map(|o| (o.key.instance_type.as_str(), o.key.market))
            .collect();
        assert_eq!(
            types,
            vec![
                ("Standard_B1s", Market::OnDemand),
                ("Standard_D2s_v3", Market::OnDemand),
                ("Standard_D2s_v3", Market::Spot),
            ]
        );

        // A chain whose page links to itself, and a page of broken JSON: errors, and the
        // selector is dropped (nothing from the walk is returned).
        let client = http::client(&settings(&base)).unwrap();
        let mut sel = RetailSelector::new(&[]);
        let err = src
            .walk(&client, format!("{base}/loop"), &mut sel)
            .await
            .unwrap_err();
        assert!(matches!(err, SourceError::PaginationLoop { .. }), "{err:?}");
        match src.walk(&client, format!("{base}/broken"), &mut sel).await {
            Err(SourceError::Malformed { url, .. }) => assert!(url.ends_with("/broken")),
            other => panic!("{other:?}"),
        }
        let down = AzureRetailSource::new(settings(&format!("{base}/broken?")), vec![]);
        assert!(matches!(
            down.fetch(&KnownInstances::new()).await,
            Err(SourceError::Malformed { .. })
        ));
    }
}
