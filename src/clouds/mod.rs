//! Cloud adapters. Each price feed implements one small trait, `PriceSource`, in a file of
//! its own: `aws/{ondemand,spot,advisor}.rs`, `azure/retail.rs`, `gcp/catalog.rs`; offline
//! inputs live in `skypilot/` (SkyPilot v8 catalog import) and `seed.rs` (the shipped
//! snapshot). `http.rs` holds the one retry/backoff/pagination-guard helper they share.
//!
//! API boundary: adapters report everything they see as domain `Offer`s/`SpotBand`s plus
//! what they rejected and why; the core (tasks::poller) decides what to store.
//! Contract of `PriceSource::fetch`: walks every page before returning; any error means
//! nothing from that walk is stored.
pub mod aws;
pub mod azure;
pub mod gcp;
pub mod http;
pub mod seed;
pub mod skypilot;

use std::collections::HashMap;
use std::time::Duration;

use crate::domain::{InstanceAttrs, Offer, Provider, SpotBand};

/// Why a source could not produce a full, trustworthy walk.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error("throttled by {url} after {attempts} attempts (HTTP {status})")]
    Throttled {
        url: String,
        status: u16,
        attempts: u32,
    },
    #[error("HTTP {status} from {url} after {attempts} attempts: {body}")]
    Http {
        url: String,
        status: u16,
        attempts: u32,
        body: String,
    },
    #[error("transport error talking to {url}: {detail}")]
    Transport { url: String, detail: String },
    #[error("malformed response from {url}: {detail}")]
    Malformed { url: String, detail: String },
    #[error("pagination loop: token {token:?} was returned twice by {url}")]
    PaginationLoop { url: String, token: String },
    #[error("rejected credentials or key: {0}")]
    Auth(String),
    #[error("{0}")]
    Sdk(String),
    #[error("bad source configuration: {0}")]
    Config(String),
}

/// Endpoint, timeout and retry settings every source takes.
#[derive(Clone, Debug)]
pub struct HttpSettings {
    /// Base URL or endpoint override; `None` = the provider's public endpoint.
    pub endpoint: Option<String>,
    pub timeout: Duration,
    /// Retries after the first attempt on throttling (429), 5xx and transport errors.
    pub max_retries: u32,
    /// First backoff; doubles each retry, with full jitter, capped at `max_backoff`.
    pub base_backoff: Duration,
    pub max_backoff: Duration,
}

impl Default for HttpSettings {
    fn default() -> Self {
        HttpSettings {
            endpoint: None,
            timeout: Duration::from_secs(30),
            max_retries: 4,
            base_backoff: Duration::from_millis(500),
            max_backoff: Duration::from_secs(20),
        }
    }
}

/// Instance types the store already knows, so that sources which report only a price
/// (Azure retail, AWS spot history) can still be matched to hardware.
pub type KnownInstances = HashMap<(Provider, String), InstanceAttrs>;

/// Everything one complete walk of a source produced.
#[derive(Debug, Default)]
pub struct SourceBatch {
    pub offers: Vec<Offer>,
    pub bands: Vec<SpotBand>,
    /// Items seen but not turned into offers, with the reason (logged and counted).
    pub rejected: Vec<String>,
    pub pages: u32,
}

/// One price feed. Implementations live one per file under `clouds/`.
#[async_trait::async_trait]
pub trait PriceSource: Send + Sync {
    /// Stable name used in status, logs and the `source` column ("aws-ondemand", "azure", ...).
    fn name(&self) -> &str;
    fn provider(&self) -> Provider;
    /// Walks the whole feed. Errors after retries are exhausted; never a partial batch.
    async fn fetch(&self, known: &KnownInstances) -> Result<SourceBatch, SourceError>;
}

/// Builds one source per enabled entry of the config, each with its polling interval.
pub async fn sources_from_config(
    cfg: &crate::config::Sources,
) -> Result<Vec<(std::sync::Arc<dyn PriceSource>, Duration)>, SourceError> {
    use std::sync::Arc;
    let mut out: Vec<(Arc<dyn PriceSource>, Duration)> = Vec::new();
    let c = &cfg.aws_ondemand;
    if c.enabled {
        out.push((
            Arc::new(aws::AwsOnDemandSource::new(c.http(), c.regions.clone())),
            c.interval,
        ));
    }
    let c = &cfg.aws_spot;
    if c.enabled {
        if c.regions.is_empty() {
            return Err(SourceError::Config(
                "sources.aws_spot.regions: list the regions to poll".into(),
            ));
        }
        out.push((
            Arc::new(aws::AwsSpotSource::new(
                c.http(),
                c.regions.clone(),
                c.instance_types.clone(),
            )),
            c.interval,
        ));
    }
    let c = &cfg.aws_spot_advisor;
    if c.enabled {
        out.push((
            Arc::new(aws::AwsSpotAdvisorSource::new(c.http(), c.regions.clone())),
            c.interval,
        ));
    }
    let c = &cfg.azure;
    if c.enabled {
        out.push((
            Arc::new(azure::AzureRetailSource::new(c.http(), c.regions.clone())),
            c.interval,
        ));
    }
    let c = &cfg.gcp;
    if c.enabled {
        out.push((
            Arc::new(gcp::GcpCatalogSource::new(
                c.http(),
                c.api_key.clone(),
                c.regions.clone(),
            )),
            c.interval,
        ));
    }
    Ok(out)
}
