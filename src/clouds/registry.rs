//! The one table of live price sources, `SOURCES`: for each, the name it goes by (status,
//! `--source`, logs, the `source` column, the `[sources.<name with _>]` section and
//! `BURSAR_<NAME>_*` variables), its provider, whether its failure marks that provider
//! failing for placement, its default polling, and how it is built from its settings.
//! Config, the server and the composition root read this table instead of spelling the
//! names out; a new source is a file of its own, one entry here and its field in
//! `config::Sources`.
use std::sync::Arc;
use std::time::Duration;

use super::{HttpSettings, PriceSource, SourceError, aws, azure, gcp};
use crate::domain::Provider;

/// What one source is built from: the `[sources.*]` settings, without the scheduling.
/// No `Debug`: it holds the API key.
#[derive(Clone, Default)]
pub struct SourceSettings {
    pub http: HttpSettings,
    /// Regions to poll; empty = all regions the API reports.
    pub regions: Vec<String>,
    /// Instance types to poll (AWS spot); empty = all.
    pub instance_types: Vec<String>,
    /// API key (GCP; secret: never logged).
    pub api_key: String,
}

/// One live price source.
pub struct SourceKind {
    pub name: &'static str,
    pub provider: Provider,
    /// Whether it reports prices, so that its failure marks its provider failing for
    /// placement (the spot advisor reports interruption bands only).
    pub reports_prices: bool,
    /// Polling interval when the config has no section for it.
    pub default_interval: Duration,
    /// Regions polled when the config has no section for it.
    pub default_regions: &'static [&'static str],
    /// Builds the source, or says which setting it cannot work without.
    pub build: fn(SourceSettings) -> Result<Arc<dyn PriceSource>, SourceError>,
}

const HOUR: u64 = 3600;

/// Every live price source, in the order status lists them and the server starts them.
pub const SOURCES: [SourceKind; 5] = [
    SourceKind {
        name: aws::ondemand::NAME,
        provider: Provider::Aws,
        reports_prices: true,
        default_interval: Duration::from_secs(6 * HOUR),
        default_regions: &[],
        build: |s| Ok(Arc::new(aws::AwsOnDemandSource::new(s.http, s.regions))),
    },
    SourceKind {
        name: aws::spot::NAME,
        provider: Provider::Aws,
        reports_prices: true,
        default_interval: Duration::from_secs(900),
        default_regions: &["us-east-1", "us-west-2", "eu-west-1"],
        build: |s| {
            if s.regions.is_empty() {
                return Err(SourceError::Config(
                    "sources.aws_spot.regions: list the regions to poll".into(),
                ));
            }
            Ok(Arc::new(aws::AwsSpotSource::new(
                s.http,
                s.regions,
                s.instance_types,
            )))
        },
    },
    SourceKind {
        name: aws::advisor::NAME,
        provider: Provider::Aws,
        reports_prices: false,
        default_interval: Duration::from_secs(HOUR),
        default_regions: &[],
        build: |s| Ok(Arc::new(aws::AwsSpotAdvisorSource::new(s.http, s.regions))),
    },
    SourceKind {
        name: azure::retail::SOURCE_NAME,
        provider: Provider::Azure,
        reports_prices: true,
        default_interval: Duration::from_secs(6 * HOUR),
        default_regions: &[],
        build: |s| Ok(Arc::new(azure::AzureRetailSource::new(s.http, s.regions))),
    },
    SourceKind {
        name: gcp::catalog::SOURCE_NAME,
        provider: Provider::Gcp,
        reports_prices: true,
        default_interval: Duration::from_secs(6 * HOUR),
        default_regions: &[],
        build: |s| {
            Ok(Arc::new(gcp::GcpCatalogSource::new(
                s.http, s.api_key, s.regions,
            )))
        },
    },
];

/// The names of `SOURCES`, in order (`--source` values, status rows).
pub const SOURCE_NAMES: [&str; SOURCES.len()] = {
    let mut names = [""; SOURCES.len()];
    let mut i = 0;
    while i < SOURCES.len() {
        names[i] = SOURCES[i].name;
        i += 1;
    }
    names
};

/// The live source of this name; `None` for offline inputs (seed, catalog import).
pub fn source_kind(name: &str) -> Option<&'static SourceKind> {
    SOURCES.iter().find(|k| k.name == name)
}

impl SourceKind {
    /// The key of its `[sources.*]` section ("aws-spot" → "aws_spot").
    pub fn config_key(&self) -> String {
        self.name.replace('-', "_")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_the_table_in_order_and_unique() {
        assert_eq!(
            SOURCE_NAMES,
            [
                "aws-ondemand",
                "aws-spot",
                "aws-spot-advisor",
                "azure",
                "gcp"
            ]
        );
        for k in &SOURCES {
            assert_eq!(source_kind(k.name).map(|f| f.name), Some(k.name));
        }
        assert!(source_kind("seed").is_none());
    }

    #[test]
    fn each_entry_builds_a_source_of_its_name_and_provider() {
        for k in &SOURCES {
            let s = (k.build)(SourceSettings {
                regions: vec!["eu-west-1".into()],
                ..SourceSettings::default()
            })
            .unwrap();
            assert_eq!((s.name(), s.provider()), (k.name, k.provider));
        }
    }
}
