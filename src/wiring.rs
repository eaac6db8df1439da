//! The composition root's shared part: what `server::run` and `bursar poll` both build from
//! a `Config` and that belongs to neither `config` nor the adapters — the enabled price
//! sources, each with its polling interval, in the order of `clouds::SOURCES`.
use std::sync::Arc;
use std::time::Duration;

use crate::clouds::{PriceSource, SOURCES, SourceError};
use crate::config::Sources;

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
