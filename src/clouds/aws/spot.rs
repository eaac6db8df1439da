//! AWS spot prices from EC2 DescribeSpotPriceHistory through `aws-sdk-ec2`, one client per
//! configured region. Each walk asks for "Linux/UNIX" with StartTime = now, which makes EC2
//! return the price in effect now for every (availability zone, instance type), optionally
//! only for the configured instance types, and follows `NextToken` under a `TokenGuard`
//! (EC2 ends with `<nextToken/>`, an empty token). `latest_spot_offers` is the pure part:
//! it keeps the newest row per (zone, type) and turns it into a zonal spot `Offer`; the
//! hardware comes from `KnownInstances` because the history reports only prices.
use std::collections::HashMap;
use std::time::SystemTime;

use async_trait::async_trait;
use aws_sdk_ec2::primitives::DateTime as AwsDateTime;
use aws_sdk_ec2::types::{InstanceType, SpotPrice};
use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use tokio::sync::OnceCell;

use crate::clouds::{HttpSettings, PriceSource, SourceBatch, SourceError};
use crate::domain::money::parse_amount;
use crate::domain::{Currency, KnownInstances, Market, Offer, OfferKey, Provider};
use crate::remote::aws::{AttemptCounter, endpoint_label, map_sdk_error, sdk_config};
use crate::remote::http::TokenGuard;

/// Source name, also written to `Offer::source`.
pub const NAME: &str = "aws-spot";
/// The product description asked for.
pub const PRODUCT_DESCRIPTION: &str = "Linux/UNIX";
/// Product descriptions kept: the VPC variant is the same Linux price (EC2 reported it
/// separately in the EC2-Classic era; moto still answers with it).
pub const LINUX_DESCRIPTIONS: &[&str] = &["Linux/UNIX", "Linux/UNIX (Amazon VPC)"];
/// Largest page DescribeSpotPriceHistory allows.
const PAGE_SIZE: i32 = 1000;

/// Current spot prices per availability zone from EC2 DescribeSpotPriceHistory.
pub struct AwsSpotSource {
    settings: HttpSettings,
    regions: Vec<String>,
    instance_types: Vec<String>,
    clients: OnceCell<Vec<(String, aws_sdk_ec2::Client)>>,
}

impl AwsSpotSource {
    /// `regions`: region codes to query (at least one; a client each). `instance_types`:
    /// types to ask for; empty = all. `settings.endpoint` overrides the EC2 endpoint and is
    /// used unchanged for every region.
    pub fn new(settings: HttpSettings, regions: Vec<String>, instance_types: Vec<String>) -> Self {
        let clean = |v: Vec<String>| {
            let mut v: Vec<String> = v
                .into_iter()
                .map(|s| s.trim().to_string())
                .filter(|s| !s.is_empty())
                .collect();
            v.sort();
            v.dedup();
            v
        };
        AwsSpotSource {
            settings,
            regions: clean(regions),
            instance_types: clean(instance_types),
            clients: OnceCell::new(),
        }
    }

    fn url(&self, region: &str) -> String {
        endpoint_label(&self.settings, || {
            format!("https://ec2.{region}.amazonaws.com")
        })
    }

    async fn clients(&self) -> Result<&[(String, aws_sdk_ec2::Client)], SourceError> {
        if self.regions.is_empty() {
            return Err(SourceError::Config(
                "aws-spot needs at least one region".into(),
            ));
        }
        let clients = self
            .clients
            .get_or_try_init(|| async {
                let mut out = Vec::with_capacity(self.regions.len());
                for region in &self.regions {
                    let cfg = sdk_config(&self.settings, region).await?;
                    out.push((region.clone(), aws_sdk_ec2::Client::new(&cfg)));
                }
                Ok::<_, SourceError>(out)
            })
            .await?;
        Ok(clients)
    }

    /// Every page of one region's walk: (rows, rejected rows, pages).
    async fn walk(
        &self,
        region: &str,
        client: &aws_sdk_ec2::Client,
    ) -> Result<(Vec<SpotRow>, Vec<String>, u32), SourceError> {
        let url = format!(
            "{} DescribeSpotPriceHistory region={region}",
            self.url(region)
        );
        let types: Option<Vec<InstanceType>> = if self.instance_types.is_empty() {
            None
        } else {
            Some(
                self.instance_types
                    .iter()
                    .map(|t| InstanceType::from(t.as_str()))
                    .collect(),
            )
        };
        let start = AwsDateTime::from(SystemTime::now());
        let mut guard = TokenGuard::default();
        let mut token: Option<String> = None;
        let mut rows = Vec::new();
        let mut rejected = Vec::new();
        let mut pages = 0u32;
        loop {
            let attempts = AttemptCounter::default();
            let page = client
                .describe_spot_price_history()
                .product_descriptions(PRODUCT_DESCRIPTION)
                .start_time(start)
                .set_instance_types(types.clone())
                .max_results(PAGE_SIZE)
                .set_next_token(token.take())
                .customize()
                .interceptor(attempts.clone())
                .send()
                .await
                .map_err(|e| map_sdk_error(e, &url, attempts.get()))?;
            pages += 1;
            for sp in page.spot_price_history() {
                match SpotRow::from_sdk(sp) {
                    Ok(row) => rows.push(row),
                    Err(why) => rejected.push(format!("{region}: {why}")),
                }
            }
            match guard.next(page.next_token(), &url)? {
                Some(next) => token = Some(next),
                None => return Ok((rows, rejected, pages)),
            }
        }
    }
}

#[async_trait]
impl PriceSource for AwsSpotSource {
    fn name(&self) -> &str {
        NAME
    }

    fn provider(&self) -> Provider {
        Provider::Aws
    }

    async fn fetch(&self, known: &KnownInstances) -> Result<SourceBatch, SourceError> {
        let clients = self.clients().await?;
        let walks =
            futures::future::try_join_all(clients.iter().map(|(region, client)| async move {
                let walked = self.walk(region, client).await?;
                Ok::<_, SourceError>((region.as_str(), walked))
            }))
            .await?;
        let mut batch = SourceBatch::default();
        for (region, (rows, rejected, pages)) in walks {
            batch.pages += pages;
            batch.rejected.extend(rejected);
            let (offers, rejected) = latest_spot_offers(region, &rows, known);
            batch.offers.extend(offers);
            batch.rejected.extend(rejected);
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

/// One row of spot price history, as EC2 reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SpotRow {
    pub availability_zone: String,
    pub instance_type: String,
    /// "Linux/UNIX", ...; `None` if the row did not say.
    pub product_description: Option<String>,
    /// The price as sent, e.g. "0.043700".
    pub spot_price: String,
    pub timestamp: DateTime<Utc>,
}

impl SpotRow {
    /// From the SDK's shape; `Err` names what was missing.
    pub fn from_sdk(sp: &SpotPrice) -> Result<SpotRow, String> {
        let instance_type = sp
            .instance_type()
            .map(|t| t.as_str().to_string())
            .filter(|t| !t.is_empty())
            .ok_or("spot price row without instance type")?;
        let availability_zone = sp
            .availability_zone()
            .map(str::to_string)
            .filter(|z| !z.is_empty())
            .ok_or_else(|| format!("{instance_type}: row without availability zone"))?;
        let spot_price = sp
            .spot_price()
            .map(str::to_string)
            .ok_or_else(|| format!("{instance_type} {availability_zone}: row without price"))?;
        let ts = sp
            .timestamp()
            .ok_or_else(|| format!("{instance_type} {availability_zone}: row without timestamp"))?;
        let timestamp =
            DateTime::from_timestamp(ts.secs(), ts.subsec_nanos()).ok_or_else(|| {
                format!("{instance_type} {availability_zone}: timestamp out of range")
            })?;
        Ok(SpotRow {
            availability_zone,
            instance_type,
            product_description: sp.product_description().map(|d| d.as_str().to_string()),
            spot_price,
            timestamp,
        })
    }
}

/// Keeps the newest row per (availability zone, instance type) and turns each into a spot
/// `Offer` in `region` (zone = the AZ, observed at the row's timestamp, hardware from
/// `known` if the type is there). Returns offers sorted by (zone, type), and the
/// rejections (unreadable or non-positive prices, descriptions not in
/// `LINUX_DESCRIPTIONS`). On equal timestamps the row that came first wins. Pure.
pub fn latest_spot_offers(
    region: &str,
    rows: &[SpotRow],
    known: &KnownInstances,
) -> (Vec<Offer>, Vec<String>) {
    let mut rejected = Vec::new();
    let mut newest: HashMap<(&str, &str), (&SpotRow, Decimal)> = HashMap::new();
    for row in rows {
        let who = format!(
            "{} {} at {}",
            row.instance_type,
            row.availability_zone,
            row.timestamp.to_rfc3339()
        );
        if let Some(desc) = &row.product_description
            && !LINUX_DESCRIPTIONS.contains(&desc.as_str())
        {
            rejected.push(format!("{who}: product {desc:?} is not Linux/UNIX"));
            continue;
        }
        let price = match parse_amount(&row.spot_price) {
            Ok(p) if p > Decimal::ZERO => p,
            Ok(p) => {
                rejected.push(format!("{who}: non-positive spot price {p}"));
                continue;
            }
            Err(e) => {
                rejected.push(format!("{who}: {e}"));
                continue;
            }
        };
        let key = (row.availability_zone.as_str(), row.instance_type.as_str());
        match newest.get(&key) {
            Some((kept, _)) if kept.timestamp >= row.timestamp => {}
            _ => {
                newest.insert(key, (row, price));
            }
        }
    }
    let mut offers: Vec<Offer> = newest
        .into_values()
        .map(|(row, price)| Offer {
            key: OfferKey {
                provider: Provider::Aws,
                region: region.to_string(),
                zone: row.availability_zone.clone(),
                instance_type: row.instance_type.clone(),
                market: Market::Spot,
            },
            price_per_hour: price.normalize(),
            currency: Currency::USD,
            attrs: known
                .get(&(Provider::Aws, row.instance_type.clone()))
                .cloned(),
            source: NAME.to_string(),
            observed_at: row.timestamp,
        })
        .collect();
    offers.sort_by(|a, b| a.key.cmp(&b.key));
    (offers, rejected)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::InstanceAttrs;
    use serde_json::Value;

    const SDK_JSON: &str = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../shared/data/price-api-samples/aws/describe_spot_price_history_m5_large_us-east-1.sdk.json"
    );

    fn recorded_rows() -> Vec<SpotRow> {
        let text = std::fs::read_to_string(SDK_JSON).expect("sample present");
        let doc: Value = serde_json::from_str(&text).unwrap();
        doc["SpotPriceHistory"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| SpotRow {
                availability_zone: r["AvailabilityZone"].as_str().unwrap().into(),
                instance_type: r["InstanceType"].as_str().unwrap().into(),
                product_description: r["ProductDescription"].as_str().map(Into::into),
                spot_price: r["SpotPrice"].as_str().unwrap().into(),
                timestamp: DateTime::parse_from_rfc3339(r["Timestamp"].as_str().unwrap())
                    .unwrap()
                    .with_timezone(&Utc),
            })
            .collect()
    }

    fn ts(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn newest_row_per_zone_wins_on_recorded_history() {
        let rows = recorded_rows();
        assert_eq!(rows.len(), 250);
        let mut known = KnownInstances::new();
        let m5 = InstanceAttrs {
            vcpus: 2.0,
            memory_gib: 8.0,
            arch: "x86_64".into(),
            ..Default::default()
        };
        known.insert((Provider::Aws, "m5.large".into()), m5.clone());
        let (offers, rejected) = latest_spot_offers("us-east-1", &rows, &known);
        assert!(rejected.is_empty(), "{rejected:?}");
        let got: Vec<(&str, String, DateTime<Utc>)> = offers
            .iter()
            .map(|o| {
                (
                    o.key.zone.as_str(),
                    o.price_per_hour.to_string(),
                    o.observed_at,
                )
            })
            .collect();
        assert_eq!(
            got,
            vec![
                ("us-east-1a", "0.0423".into(), ts("2021-02-08T23:58:38Z")),
                ("us-east-1b", "0.0389".into(), ts("2021-02-08T21:46:09Z")),
                ("us-east-1c", "0.0381".into(), ts("2021-02-08T20:38:39Z")),
                ("us-east-1d", "0.0431".into(), ts("2021-02-08T19:14:31Z")),
                ("us-east-1f", "0.0437".into(), ts("2021-02-09T01:40:10Z")),
            ]
        );
        for o in &offers {
            assert_eq!(o.key.provider, Provider::Aws);
            assert_eq!(o.key.region, "us-east-1");
            assert_eq!(o.key.instance_type, "m5.large");
            assert_eq!(o.key.market, Market::Spot);
            assert_eq!(o.currency, Currency::USD);
            assert_eq!(o.source, "aws-spot");
            assert_eq!(o.attrs.as_ref(), Some(&m5));
        }
        // Order of rows must not matter.
        let mut reversed = rows.clone();
        reversed.reverse();
        let (again, _) = latest_spot_offers("us-east-1", &reversed, &known);
        assert_eq!(again, offers);
    }

    #[test]
    fn unknown_types_have_no_attrs_and_bad_rows_are_rejected() {
        let row = |zone: &str, price: &str, desc: Option<&str>| SpotRow {
            availability_zone: zone.into(),
            instance_type: "x9.huge".into(),
            product_description: desc.map(Into::into),
            spot_price: price.into(),
            timestamp: ts("2024-01-01T00:00:00Z"),
        };
        let rows = vec![
            row("eu-west-1a", "0.5", Some("Linux/UNIX")),
            row("eu-west-1b", "0.000000", Some("Linux/UNIX")),
            row("eu-west-1c", "n/a", None),
            row("eu-west-1a", "0.7", Some("Windows")),
            row("eu-west-1d", "0.6", Some("Linux/UNIX (Amazon VPC)")),
        ];
        let (offers, rejected) = latest_spot_offers("eu-west-1", &rows, &KnownInstances::new());
        assert_eq!(offers.len(), 2);
        assert_eq!(offers[1].key.zone, "eu-west-1d");
        assert_eq!(offers[0].attrs, None);
        assert_eq!(offers[0].price_per_hour, parse_amount("0.5").unwrap());
        assert_eq!(rejected.len(), 3, "{rejected:?}");
    }

    #[test]
    fn sdk_rows_convert() {
        let sp = SpotPrice::builder()
            .availability_zone("us-east-1a")
            .instance_type(InstanceType::from("m5.large"))
            .spot_price("0.042300")
            .timestamp(AwsDateTime::from_secs(1_612_828_718))
            .build();
        let row = SpotRow::from_sdk(&sp).unwrap();
        assert_eq!(row.instance_type, "m5.large");
        assert_eq!(row.timestamp, ts("2021-02-08T23:58:38Z"));
        let missing = SpotPrice::builder()
            .instance_type(InstanceType::from("m5.large"))
            .build();
        assert!(SpotRow::from_sdk(&missing).is_err());
    }
}

/// The SDK path against a local stand-in serving the recorded EC2 XML pages.
#[cfg(test)]
mod sdk_tests {
    use std::time::Duration;

    use super::*;
    use crate::remote::aws::stub::{Canned, serve};

    const SAMPLES: &str = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../shared/data/price-api-samples/aws/"
    );
    const XML: &str = "text/xml;charset=UTF-8";

    fn page(n: u8) -> String {
        std::fs::read_to_string(format!(
            "{SAMPLES}derived_describe_spot_price_history_m5_large.page{n}.xml"
        ))
        .unwrap()
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

    #[tokio::test]
    async fn walks_both_recorded_pages() {
        let stub = serve(vec![
            Canned::new(200, XML, page(1)),
            Canned::new(200, XML, page(2)),
        ])
        .await;
        let source = AwsSpotSource::new(
            settings(&stub.url),
            vec!["us-east-1".into()],
            vec!["m5.large".into()],
        );
        assert_eq!(source.name(), "aws-spot");
        let batch = source.fetch(&KnownInstances::new()).await.unwrap();
        assert_eq!(batch.pages, 2);
        assert!(batch.rejected.is_empty(), "{:?}", batch.rejected);
        let zones: Vec<(&str, String)> = batch
            .offers
            .iter()
            .map(|o| (o.key.zone.as_str(), o.price_per_hour.to_string()))
            .collect();
        assert_eq!(
            zones,
            vec![
                ("us-east-1a", "0.0423".to_string()),
                ("us-east-1b", "0.0389".to_string()),
                ("us-east-1c", "0.0381".to_string()),
                ("us-east-1d", "0.0431".to_string()),
                ("us-east-1f", "0.0437".to_string()),
            ]
        );
        assert!(batch.offers.iter().all(|o| o.attrs.is_none()));

        let reqs = stub.requests();
        assert_eq!(reqs.len(), 2);
        for r in &reqs {
            assert!(
                r.body.contains("Action=DescribeSpotPriceHistory"),
                "{}",
                r.body
            );
            assert!(
                r.body.contains("ProductDescription.1=Linux%2FUNIX"),
                "{}",
                r.body
            );
            assert!(r.body.contains("InstanceType.1=m5.large"), "{}", r.body);
            assert!(r.body.contains("StartTime="), "{}", r.body);
        }
        assert!(!reqs[0].body.contains("NextToken"));
        assert!(reqs[1].body.contains("NextToken=derived-page-2-token"));
    }

    #[tokio::test]
    async fn every_region_uses_the_override_and_gets_its_own_offers() {
        let stub = serve(vec![Canned::new(200, XML, page(2))]).await;
        let source = AwsSpotSource::new(
            settings(&stub.url),
            vec!["us-east-1".into(), "us-west-2".into()],
            vec![],
        );
        let batch = source.fetch(&KnownInstances::new()).await.unwrap();
        assert_eq!(batch.pages, 2);
        assert_eq!(batch.offers.len(), 10);
        for region in ["us-east-1", "us-west-2"] {
            assert_eq!(
                batch
                    .offers
                    .iter()
                    .filter(|o| o.key.region == region)
                    .count(),
                5
            );
        }
        let reqs = stub.requests();
        assert_eq!(reqs.len(), 2);
        assert!(reqs.iter().all(|r| !r.body.contains("InstanceType.1")));
    }

    #[tokio::test]
    async fn repeated_token_and_ec2_errors() {
        let looping = page(1);
        let stub = serve(vec![Canned::new(200, XML, looping)]).await;
        let err = AwsSpotSource::new(settings(&stub.url), vec!["us-east-1".into()], vec![])
            .fetch(&KnownInstances::new())
            .await
            .unwrap_err();
        assert!(matches!(err, SourceError::PaginationLoop { .. }), "{err:?}");

        let limit = r#"<?xml version="1.0" encoding="UTF-8"?>
<Response><Errors><Error><Code>RequestLimitExceeded</Code><Message>Request limit exceeded.</Message></Error></Errors><RequestID>r</RequestID></Response>"#;
        let stub = serve(vec![Canned::new(503, XML, limit)]).await;
        let err = AwsSpotSource::new(settings(&stub.url), vec!["us-east-1".into()], vec![])
            .fetch(&KnownInstances::new())
            .await
            .unwrap_err();
        assert!(
            matches!(err, SourceError::Throttled { attempts: 3, .. }),
            "{err:?}"
        );

        let auth = r#"<?xml version="1.0" encoding="UTF-8"?>
<Response><Errors><Error><Code>AuthFailure</Code><Message>AWS was not able to validate the provided access credentials</Message></Error></Errors><RequestID>r</RequestID></Response>"#;
        let stub = serve(vec![Canned::new(401, XML, auth)]).await;
        let err = AwsSpotSource::new(settings(&stub.url), vec!["us-east-1".into()], vec![])
            .fetch(&KnownInstances::new())
            .await
            .unwrap_err();
        assert!(matches!(err, SourceError::Auth(_)), "{err:?}");

        let err = AwsSpotSource::new(settings(&stub.url), vec![], vec![])
            .fetch(&KnownInstances::new())
            .await
            .unwrap_err();
        assert!(matches!(err, SourceError::Config(_)), "{err:?}");
    }
}
