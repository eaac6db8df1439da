//! Where utilisation is read from: `[[idle_gpu.dcgm_targets]]` (dcgm-exporter endpoints
//! scraped directly) and `[idle_gpu.prometheus]` (a Prometheus server that already scrapes
//! them). Owned here so the readers need not import `config`; `config::fleet` re-exports
//! them under the same names and validates their URLs.
use std::time::Duration;

use serde::Deserialize;

use crate::serde_duration;

/// Default for `DcgmTarget::timeout`.
pub const DEFAULT_SCRAPE_TIMEOUT: Duration = Duration::from_secs(10);

/// `[[idle_gpu.dcgm_targets]]`: a dcgm-exporter endpoint scraped directly.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct DcgmTarget {
    pub url: String,
    /// The instance id its samples belong to; empty = matched by the `Hostname` label
    /// against the inventory's private hostnames.
    #[serde(default)]
    pub instance: String,
    /// How long one scrape may take (default 10s); keep it below `scrape_every`.
    #[serde(default = "default_scrape_timeout", with = "serde_duration")]
    pub timeout: Duration,
}

fn default_scrape_timeout() -> Duration {
    DEFAULT_SCRAPE_TIMEOUT
}

impl DcgmTarget {
    /// A target at `url`, matched by hostname, with the default timeout.
    pub fn new(url: impl Into<String>) -> DcgmTarget {
        DcgmTarget {
            url: url.into(),
            instance: String::new(),
            timeout: DEFAULT_SCRAPE_TIMEOUT,
        }
    }

    /// The instance id the target names, if any (blank = none).
    pub fn instance(&self) -> Option<&str> {
        Some(self.instance.trim()).filter(|s| !s.is_empty())
    }
}

/// `[idle_gpu.prometheus]`: a Prometheus server that already scrapes dcgm-exporter.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct PrometheusConfig {
    /// Base URL (`http://prometheus:9090`, or with a path prefix); empty = not used.
    pub url: String,
    /// An instant query returning one series per GPU with a `Hostname`/`hostname` (or
    /// `instance_id`) label, a `gpu` label and the utilisation in percent; `$range` is
    /// replaced by the read interval (`"15s"`). Empty = the built-in query
    /// (`utilization::default_query`): the maximum over the range of
    /// `DCGM_FI_PROF_GR_ENGINE_ACTIVE`×100, else of `DCGM_FI_DEV_GPU_UTIL`.
    pub query: String,
    /// How long one query may take (default 10s).
    #[serde(with = "serde_duration")]
    pub timeout: Duration,
}

impl Default for PrometheusConfig {
    fn default() -> Self {
        PrometheusConfig {
            url: String::new(),
            query: String::new(),
            timeout: Duration::from_secs(10),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_default_their_timeout_and_refuse_unknown_keys() {
        #[derive(Deserialize)]
        struct T {
            dcgm_targets: Vec<DcgmTarget>,
            prometheus: PrometheusConfig,
        }
        let t: T = toml::from_str(
            r#"
[[dcgm_targets]]
url = "http://10.0.0.5:9400/metrics"
[[dcgm_targets]]
url = "http://10.0.0.6:9400/metrics"
instance = " i-0abc "
timeout = "2s"
[prometheus]
url = "http://prom:9090"
"#,
        )
        .unwrap();
        assert_eq!(
            t.dcgm_targets[0],
            DcgmTarget::new("http://10.0.0.5:9400/metrics")
        );
        assert_eq!(t.dcgm_targets[0].instance(), None);
        assert_eq!(t.dcgm_targets[1].instance(), Some("i-0abc"));
        assert_eq!(t.dcgm_targets[1].timeout, Duration::from_secs(2));
        assert_eq!(t.prometheus.timeout, Duration::from_secs(10));
        assert!(t.prometheus.query.is_empty());
        let e =
            toml::from_str::<T>("dcgm_targets = [{ url = \"u\", instace = \"x\" }]\n[prometheus]")
                .err()
                .unwrap();
        assert!(e.to_string().contains("instace"), "{e}");
    }
}
