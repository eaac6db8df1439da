//! Cloud adapters. Each price feed implements one small trait, `PriceSource`, in a file of
//! its own: `aws/{ondemand,spot,advisor}.rs`, `azure/retail.rs`, `gcp/catalog.rs`; offline
//! inputs live in `skypilot.rs` (SkyPilot v8 catalog import) and `seed.rs` (the shipped
//! snapshot). `http.rs` holds the one retry/backoff/pagination-guard helper they share.
//!
//! API boundary: adapters report everything they see as domain `Offer`s/`SpotBand`s plus
//! what they rejected and why; the core (tasks::poller) decides what to store.
//! Contract of `PriceSource::fetch`: walks every page before returning; any error means
//! nothing from that walk is stored.
pub mod aws;
pub mod azure;
pub mod gcp;
pub mod seed;
pub mod skypilot;

use std::time::Duration;

pub use crate::remote::{HttpSettings, SourceError};

use crate::domain::{KnownInstances, Offer, Provider, SpotBand};

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
