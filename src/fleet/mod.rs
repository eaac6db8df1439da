//! The GPU fleet's clouds: one `Fleet` per cloud, one file each (`aws.rs` over aws-sdk-ec2,
//! `gcp.rs` over the Compute REST API, `azure.rs` over ARM REST), that lists machines and
//! stops or terminates one. The idle policy (`domain::idle`) decides; `tasks::fleet` calls
//! these. Adding a cloud: a file here implementing `Fleet`, its `[fleet.<cloud>]` section in
//! `config`, and one line in `fleets_from_config`.
//!
//! Invariant: an action is idempotent — a machine already stopped (or gone) counts as done
//! (`Done::Already`). A failure is retried with backoff inside the adapter and then returned
//! as `FleetError`; the caller never records a failed action as done.
use async_trait::async_trait;

use crate::domain::Provider;
use crate::domain::fleet::FleetInstance;

pub mod aws;
pub mod azure;
pub mod gcp;
mod rest;

/// What a stop or terminate call achieved.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Done {
    /// The cloud accepted the request and (for long-running operations) finished it.
    Now,
    /// The machine was already stopped / already gone.
    Already,
}

#[derive(Debug, thiserror::Error)]
pub enum FleetError {
    /// The cloud refused: protection, permissions, a conflicting state. Not retried.
    #[error("{provider} refused {action} of {instance}: {detail}")]
    Refused {
        provider: &'static str,
        action: &'static str,
        instance: String,
        detail: String,
    },
    /// The call failed after its retries (5xx, throttling, transport), or a long-running
    /// operation ended in error or did not finish in time.
    #[error("{provider} {action} of {instance} failed after {attempts} attempts: {detail}")]
    Failed {
        provider: &'static str,
        action: &'static str,
        instance: String,
        attempts: u32,
        detail: String,
    },
    /// Listing failed (after retries).
    #[error("{provider} inventory failed: {detail}")]
    List {
        provider: &'static str,
        detail: String,
    },
    #[error("bad fleet configuration: {0}")]
    Config(String),
}

/// One cloud's GPU machines.
#[async_trait]
pub trait Fleet: Send + Sync {
    fn provider(&self) -> Provider;
    /// Every machine in the configured scopes (regions, projects/zones, subscriptions) that
    /// is not yet deleted, GPU or not (the caller keeps those the catalog says carry GPUs;
    /// an adapter may pre-filter by instance family). Paginated to the end.
    async fn list(&self) -> Result<Vec<FleetInstance>, FleetError>;
    /// Stops the machine (Azure: deallocates it; powering off leaves it billed) and waits
    /// until the cloud has accepted it (GCP/Azure: the long-running operation is done).
    async fn stop(&self, instance: &FleetInstance) -> Result<Done, FleetError>;
    /// Terminates (deletes) the machine.
    async fn terminate(&self, instance: &FleetInstance) -> Result<Done, FleetError>;
}
