//! AWS spot interruption bands from the public spot advisor JSON
//! (<https://spot-bid-advisor.s3.amazonaws.com/spot-advisor-data.json>), fetched with the
//! shared `get_with_retry`. The document lists `ranges` (index, label such as "<5%", upper
//! bound) and `spot_advisor[region][os][instance type] = {s: savings %, r: range index}`;
//! `parse_spot_advisor` (pure) turns the Linux entries into `SpotBand`s for every region,
//! or only the configured ones. This source reports bands only, never offers.
use std::collections::{BTreeMap, HashMap};

use async_trait::async_trait;
use serde::Deserialize;
use serde_json::Value;
use tokio::sync::OnceCell;

use crate::clouds::{HttpSettings, PriceSource, SourceBatch, SourceError};
use crate::domain::{KnownInstances, Provider, SpotBand};
use crate::remote::http::{client as http_client, get_with_retry};

/// Source name.
pub const NAME: &str = "aws-spot-advisor";
/// Where AWS publishes the advisor data.
pub const DEFAULT_URL: &str = "https://spot-bid-advisor.s3.amazonaws.com/spot-advisor-data.json";
/// The operating system whose entries are used.
pub const OS: &str = "Linux";

/// Spot interruption-frequency bands from the AWS spot advisor.
pub struct AwsSpotAdvisorSource {
    settings: HttpSettings,
    regions: Vec<String>,
    url: String,
    client: OnceCell<reqwest::Client>,
}

impl AwsSpotAdvisorSource {
    /// `regions`: keep only these regions; empty = all. `settings.endpoint`, if set, is the
    /// full URL of the document (default `DEFAULT_URL`).
    pub fn new(settings: HttpSettings, regions: Vec<String>) -> Self {
        let url = settings
            .endpoint
            .as_deref()
            .map(str::trim)
            .filter(|u| !u.is_empty())
            .unwrap_or(DEFAULT_URL)
            .to_string();
        let mut regions: Vec<String> = regions
            .into_iter()
            .map(|r| r.trim().to_string())
            .filter(|r| !r.is_empty())
            .collect();
        regions.sort();
        regions.dedup();
        AwsSpotAdvisorSource {
            settings,
            regions,
            url,
            client: OnceCell::new(),
        }
    }

    /// The URL fetched.
    pub fn url(&self) -> &str {
        &self.url
    }
}

#[async_trait]
impl PriceSource for AwsSpotAdvisorSource {
    fn name(&self) -> &str {
        NAME
    }

    fn provider(&self) -> Provider {
        Provider::Aws
    }

    async fn fetch(&self, _known: &KnownInstances) -> Result<SourceBatch, SourceError> {
        let client = self
            .client
            .get_or_try_init(|| async { http_client(&self.settings) })
            .await?;
        let body = get_with_retry(client, &self.url, &self.settings).await?;
        let parsed = parse_spot_advisor(&body.0, &self.regions).map_err(|detail| {
            SourceError::Malformed {
                url: self.url.clone(),
                detail,
            }
        })?;
        for missing in &parsed.missing_regions {
            tracing::warn!(source = NAME, region = %missing, "region not in spot advisor data");
        }
        tracing::info!(
            source = NAME,
            bands = parsed.bands.len(),
            rejected = parsed.rejected.len(),
            "walk complete"
        );
        Ok(SourceBatch {
            offers: Vec::new(),
            bands: parsed.bands,
            rejected: parsed.rejected,
            pages: 1,
        })
    }
}

/// What one advisor document yielded.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AdvisorData {
    /// Sorted by (region, instance type).
    pub bands: Vec<SpotBand>,
    /// Entries seen but not usable, with the reason.
    pub rejected: Vec<String>,
    /// Configured regions the document does not mention.
    pub missing_regions: Vec<String>,
}

#[derive(Deserialize)]
struct Range {
    index: u8,
    label: String,
}

#[derive(Deserialize)]
struct Doc {
    ranges: Vec<Range>,
    spot_advisor: BTreeMap<String, BTreeMap<String, BTreeMap<String, Value>>>,
}

/// Parses a spot advisor document into bands for `regions` (empty = every region). `Err`
/// is a description of why the document as a whole is unusable (not JSON, no `ranges` or
/// `spot_advisor`, ranges without index/label); a single odd entry is only rejected.
pub fn parse_spot_advisor(body: &[u8], regions: &[String]) -> Result<AdvisorData, String> {
    let doc: Doc = serde_json::from_slice(body).map_err(|e| e.to_string())?;
    if doc.ranges.is_empty() {
        return Err("spot advisor document has no ranges".into());
    }
    let labels: HashMap<u8, &str> = doc
        .ranges
        .iter()
        .map(|r| (r.index, r.label.as_str()))
        .collect();
    let mut out = AdvisorData::default();
    for (region, by_os) in &doc.spot_advisor {
        if !regions.is_empty() && !regions.iter().any(|r| r == region) {
            continue;
        }
        let Some(types) = by_os.get(OS) else {
            continue;
        };
        for (instance_type, entry) in types {
            let who = format!("{region} {instance_type}");
            let savings = entry.get("s").and_then(Value::as_u64);
            let range = entry.get("r").and_then(Value::as_u64);
            let (Some(savings), Some(range)) = (savings, range) else {
                out.rejected
                    .push(format!("{who}: entry {entry} lacks integer s and r"));
                continue;
            };
            let savings_pct = match u8::try_from(savings) {
                Ok(s) if s <= 100 => s,
                _ => {
                    out.rejected
                        .push(format!("{who}: savings {savings}% out of range"));
                    continue;
                }
            };
            let Some((band, label)) = u8::try_from(range)
                .ok()
                .and_then(|b| labels.get(&b).map(|l| (b, *l)))
            else {
                out.rejected
                    .push(format!("{who}: range index {range} not in ranges"));
                continue;
            };
            out.bands.push(SpotBand {
                provider: Provider::Aws,
                region: region.clone(),
                instance_type: instance_type.clone(),
                band,
                label: label.to_string(),
                savings_pct,
            });
        }
    }
    out.missing_regions = regions
        .iter()
        .filter(|r| !doc.spot_advisor.contains_key(*r))
        .cloned()
        .collect();
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../shared/data/price-api-samples/aws/spot-advisor-data.trimmed.json"
    );

    fn sample() -> Vec<u8> {
        std::fs::read(SAMPLE).expect("sample present")
    }

    fn band<'a>(data: &'a AdvisorData, region: &str, t: &str) -> &'a SpotBand {
        data.bands
            .iter()
            .find(|b| b.region == region && b.instance_type == t)
            .unwrap_or_else(|| panic!("no band for {region} {t}"))
    }

    #[test]
    fn recorded_document_gives_labelled_linux_bands() {
        let data = parse_spot_advisor(&sample(), &[]).unwrap();
        assert!(data.rejected.is_empty(), "{:?}", data.rejected);
        // Linux entries only: eu-west-1 13, us-east-1 16, us-west-2 16.
        assert_eq!(data.bands.len(), 13 + 16 + 16);
        let b = band(&data, "us-east-1", "m5.large");
        assert_eq!(b.provider, Provider::Aws);
        assert_eq!((b.band, b.label.as_str(), b.savings_pct), (3, "15-20%", 66));
        let b = band(&data, "eu-west-1", "p4d.24xlarge");
        assert_eq!((b.band, b.label.as_str(), b.savings_pct), (4, ">20%", 34));
        let b = band(&data, "us-east-1", "inf2.xlarge");
        assert_eq!((b.band, b.label.as_str(), b.savings_pct), (0, "<5%", 78));
        let b = band(&data, "eu-west-1", "g4dn.xlarge");
        assert_eq!((b.band, b.label.as_str()), (1, "5-10%"));
        let b = band(&data, "eu-west-1", "g5.xlarge");
        assert_eq!((b.band, b.label.as_str()), (2, "10-15%"));
        // Sorted by region then type.
        let keys: Vec<(&str, &str)> = data
            .bands
            .iter()
            .map(|b| (b.region.as_str(), b.instance_type.as_str()))
            .collect();
        let mut sorted = keys.clone();
        sorted.sort();
        assert_eq!(keys, sorted);
    }

    #[test]
    fn region_list_restricts_bands() {
        let regions = vec!["us-west-2".to_string(), "ap-south-1".to_string()];
        let data = parse_spot_advisor(&sample(), &regions).unwrap();
        assert_eq!(data.bands.len(), 16);
        assert!(data.bands.iter().all(|b| b.region == "us-west-2"));
        assert_eq!(data.missing_regions, vec!["ap-south-1".to_string()]);
    }

    #[test]
    fn malformed_documents_and_odd_entries() {
        assert!(parse_spot_advisor(b"<html>", &[]).is_err());
        assert!(parse_spot_advisor(b"{\"ranges\": []}", &[]).is_err());
        assert!(parse_spot_advisor(br#"{"ranges": [], "spot_advisor": {}}"#, &[]).is_err());
        let doc = br#"{
            "ranges": [{"index": 0, "label": "<5%", "max": 5}],
            "spot_advisor": {"us-east-1": {"Linux": {
                "a.large": {"s": 50, "r": 0},
                "b.large": {"s": 50, "r": 7},
                "c.large": {"s": "x", "r": 0},
                "d.large": {"s": 500, "r": 0}
            }}}
        }"#;
        let data = parse_spot_advisor(doc, &[]).unwrap();
        assert_eq!(data.bands.len(), 1);
        assert_eq!(data.bands[0].label, "<5%");
        assert_eq!(data.rejected.len(), 3, "{:?}", data.rejected);
    }

    #[test]
    fn endpoint_override_is_the_full_url() {
        let s = HttpSettings {
            endpoint: Some("http://127.0.0.1:8080/advisor.json".into()),
            ..Default::default()
        };
        assert_eq!(
            AwsSpotAdvisorSource::new(s, vec![]).url(),
            "http://127.0.0.1:8080/advisor.json"
        );
        assert_eq!(
            AwsSpotAdvisorSource::new(HttpSettings::default(), vec![]).url(),
            DEFAULT_URL
        );
    }
}

/// The fetch path against a local stand-in.
#[cfg(test)]
mod fetch_tests {
    use std::time::Duration;

    use super::*;
    use crate::remote::aws::stub::{Canned, serve};

    fn settings(url: String) -> HttpSettings {
        HttpSettings {
            endpoint: Some(url),
            timeout: Duration::from_secs(5),
            max_retries: 1,
            base_backoff: Duration::from_millis(1),
            max_backoff: Duration::from_millis(5),
        }
    }

    #[tokio::test]
    async fn fetches_bands_and_reports_malformed_json() {
        let doc = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../shared/data/price-api-samples/aws/spot-advisor-data.trimmed.json"
        ))
        .unwrap();
        let stub = serve(vec![Canned::new(200, "application/json", doc)]).await;
        let source = AwsSpotAdvisorSource::new(
            settings(format!("{}/spot-advisor-data.json", stub.url)),
            vec!["eu-west-1".into()],
        );
        assert_eq!(source.name(), "aws-spot-advisor");
        let batch = source.fetch(&KnownInstances::new()).await.unwrap();
        assert!(batch.offers.is_empty());
        assert_eq!(batch.bands.len(), 13);
        assert_eq!(batch.pages, 1);

        let stub = serve(vec![Canned::new(200, "application/json", "{\"ranges\":")]).await;
        let err = AwsSpotAdvisorSource::new(settings(stub.url.clone()), vec![])
            .fetch(&KnownInstances::new())
            .await
            .unwrap_err();
        assert!(matches!(err, SourceError::Malformed { .. }), "{err:?}");
    }
}
