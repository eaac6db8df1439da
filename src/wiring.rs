//! The composition root's shared part: what `server::run` and `bursar poll` build from a
//! `Config` and that belongs to neither `config` nor the adapters — the enabled price
//! sources, each with its polling interval, in the order of `clouds::SOURCES`; and the
//! configured cloud fleets for idle-GPU enforcement.
use std::sync::Arc;
use std::time::Duration;

use crate::clouds::{PriceSource, SOURCES, SourceError};
use crate::config::{ConfigError, FleetConfig, Sources};
use crate::fleet::Fleet;
use crate::fleet::aws::AwsFleet;
use crate::fleet::azure::AzureFleet;
use crate::fleet::gcp::GcpFleet;

/// Builds one source per enabled entry of the config, each with its polling interval.
pub async fn sources_from_config(
    cfg: &Sources,
) -> Result<Vec<(Arc<dyn PriceSource>, Duration)>, SourceError> {
    let mut out: Vec<(Arc<dyn PriceSource>, Duration)> = Vec::new();
    for kind in &SOURCES {
        let c = cfg.get(kind.name).expect("a config section per source");
        if c.enabled {
            out.push(((kind.build)(c.settings())?, c.interval));
        }
    }
    Ok(out)
}

/// Each live source's name and whether the config enables it, in table order.
pub fn enabled_sources(cfg: &Sources) -> Vec<(String, bool)> {
    SOURCES
        .iter()
        .map(|k| {
            let enabled = cfg.get(k.name).is_some_and(|s| s.enabled);
            (k.name.to_string(), enabled)
        })
        .collect()
}

/// One `Fleet` per `[fleet.<cloud>]` section, in the order aws, gcp, azure. An error names
/// the key.
pub async fn fleets_from_config(cfg: &FleetConfig) -> Result<Vec<Arc<dyn Fleet>>, ConfigError> {
    let built = |cloud: &str, e: crate::fleet::FleetError| ConfigError::Field {
        field: format!("fleet.{cloud}"),
        detail: e.to_string(),
    };
    let mut out: Vec<Arc<dyn Fleet>> = Vec::new();
    if let Some(a) = &cfg.aws {
        let f = AwsFleet::new(&a.settings()?)
            .await
            .map_err(|e| built("aws", e))?;
        out.push(Arc::new(f));
    }
    if let Some(g) = &cfg.gcp {
        out.push(Arc::new(
            GcpFleet::new(g.settings()?).map_err(|e| built("gcp", e))?,
        ));
    }
    if let Some(z) = &cfg.azure {
        out.push(Arc::new(
            AzureFleet::new(z.settings()?).map_err(|e| built("azure", e))?,
        ));
    }
    Ok(out)
}
