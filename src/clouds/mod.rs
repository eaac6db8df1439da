//! Cloud adapters. Each price feed implements one small trait, `PriceSource`, in a file of
//! its own: `aws/{ondemand,spot,advisor}.rs`, `azure/retail.rs`, `gcp/catalog.rs`; offline
//! inputs live in `skypilot/` (SkyPilot v8 catalog import) and `seed.rs` (the shipped
//! snapshot). `registry.rs` is the one table of live sources (`SOURCES`: name, provider,
//! defaults, constructor). What they share with the billing sources — `HttpSettings`,
//! `SourceError`, the retry/backoff/pagination-guard helper, the AWS SDK configuration —
//! lives in `remote`, re-exported here where it is part of `PriceSource`'s contract.
//!
//! API boundary: adapters report everything they see as domain `Offer`s/`SpotBand`s plus
//! what they rejected and why; the core (tasks::poller) decides what to store.
//! Contract of `PriceSource::fetch`: walks every page before returning; any error means
//! nothing from that walk is stored.
pub mod aws;
pub mod azure;
pub mod gcp;
pub mod registry;
pub mod seed;
pub mod skypilot;

pub use crate::remote::{HttpSettings, SourceError};
pub use registry::{SOURCE_NAMES, SOURCES, SourceKind, SourceSettings, source_kind};

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
