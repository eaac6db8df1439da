//! `[idle_gpu]` (the idle-GPU policy and where utilisation comes from) and `[fleet.*]`
//! (which AWS regions, GCP projects/zones and Azure subscriptions hold the GPU fleet).
//! `IdleGpuConfig::policy` validates into `domain::idle::IdlePolicy`; every error names
//! its key.
use std::fmt;
use std::time::Duration;

use serde::Deserialize;

use crate::config::ConfigError;
use crate::domain::Provider;
use crate::domain::budget::Channels;
use crate::domain::idle::{IdleMode, IdlePolicy, Selectors, TagMatch};
use crate::domain::quote::quote;
use crate::fleet::aws::AwsFleetSettings;
use crate::remote::HttpSettings;
use crate::serde_duration;

/// `[idle_gpu]`.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct IdleGpuConfig {
    pub enabled: bool,
    /// dry_run | notify | stop | terminate.
    pub mode: String,
    pub threshold_percent: String,
    #[serde(with = "serde_duration")]
    pub window: Duration,
    pub min_samples: u32,
    /// How late metrics may arrive: the window ends this long before now.
    #[serde(with = "serde_duration")]
    pub lag: Duration,
    #[serde(with = "serde_duration")]
    pub grace: Duration,
    #[serde(with = "serde_duration")]
    pub min_age: Duration,
    pub protect_tag: String,
    pub max_actions_per_hour: u32,
    pub max_fleet_fraction: String,
    /// How often the policy runs.
    #[serde(with = "serde_duration")]
    pub every: Duration,
    /// How often dcgm targets and Prometheus are read.
    #[serde(with = "serde_duration")]
    pub scrape_every: Duration,
    /// How often the clouds' inventories are listed.
    #[serde(with = "serde_duration")]
    pub inventory_every: Duration,
    /// How long samples are kept.
    #[serde(with = "serde_duration")]
    pub retention: Duration,
    /// The breaker: no sample from any source for this long stops every action.
    #[serde(with = "serde_duration")]
    pub feed_silence: Duration,
    /// The tag naming an instance's owners (email addresses, comma-separated).
    pub owner_tag: String,
    /// Where notices go when the instance names no owner.
    pub channels: Channels,
    pub selectors: SelectorsConfig,
    pub dcgm_targets: Vec<DcgmTarget>,
    pub prometheus: PrometheusConfig,
}

impl Default for IdleGpuConfig {
    fn default() -> Self {
        let p = IdlePolicy::default();
        IdleGpuConfig {
            enabled: false,
            mode: p.mode.as_str().into(),
            threshold_percent: "10".into(),
            window: p.window,
            min_samples: p.min_samples,
            lag: p.lag,
            grace: p.grace,
            min_age: p.min_age,
            protect_tag: "bursar.io/protect=true".into(),
            max_actions_per_hour: p.max_actions_per_hour,
            max_fleet_fraction: "0.25".into(),
            every: Duration::from_secs(60),
            scrape_every: Duration::from_secs(15),
            inventory_every: Duration::from_secs(5 * 60),
            retention: Duration::from_secs(7 * 24 * 3600),
            feed_silence: p.feed_silence,
            owner_tag: p.owner_tag,
            channels: Channels::default(),
            selectors: SelectorsConfig::default(),
            dcgm_targets: Vec::new(),
            prometheus: PrometheusConfig::default(),
        }
    }
}

/// `[idle_gpu.selectors]`: allow lists (empty = all) and deny lists (always win).
#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct SelectorsConfig {
    pub providers: Vec<String>,
    pub regions: Vec<String>,
    pub exclude_regions: Vec<String>,
    /// `key=value` or `key`.
    pub tags: Vec<String>,
    pub exclude_tags: Vec<String>,
}

/// `[[idle_gpu.dcgm_targets]]`: a dcgm-exporter endpoint scraped directly.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct DcgmTarget {
    pub url: String,
    /// The instance id its samples belong to; empty = matched by the `Hostname` label
    /// against the inventory's private hostnames.
    #[serde(default)]
    pub instance: String,
}

/// `[idle_gpu.prometheus]`: a Prometheus server that already scrapes dcgm-exporter.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct PrometheusConfig {
    /// Empty = not used.
    pub url: String,
    /// An instant query returning one series per GPU with a `Hostname`/`hostname` (or
    /// `instance_id`) label and the utilisation in percent. Empty = the built-in query.
    pub query: String,
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

/// `[fleet]`: the clouds whose GPU machines are inventoried.
#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct FleetConfig {
    pub aws: Option<AwsFleetConfig>,
    pub gcp: Option<GcpFleetConfig>,
    pub azure: Option<AzureFleetConfig>,
}

/// `[fleet.aws]`. Credentials come from the AWS SDK's usual chain (environment, profile,
/// instance role). `settings` validates it into what `fleet::aws::AwsFleet` is built from.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct AwsFleetConfig {
    pub regions: Vec<String>,
    /// "" = AWS; a moto_server URL in tests.
    pub endpoint: String,
    /// Instance families listed: the letters before the generation digit (`p` of
    /// `p4d.24xlarge`). Default `["g", "gr", "p"]` (the NVIDIA GPU families); `[]` = every
    /// instance.
    pub families: Vec<String>,
    /// DescribeInstances page size (MaxResults, 5–1000). Default 1000.
    pub page_size: u32,
    /// DescribeInstanceAttribute calls (stop/termination protection) in flight at once per
    /// region. Default 4.
    pub attribute_concurrency: u32,
    /// Per-attempt timeout. Default 30s.
    #[serde(with = "serde_duration")]
    pub timeout: Duration,
    /// Retries after the first attempt (throttling, 5xx, transport). Default 4.
    pub max_retries: u32,
    /// First backoff, doubled each retry with jitter. Default 500ms.
    #[serde(with = "serde_duration")]
    pub base_backoff: Duration,
    /// Backoff cap. Default 20s.
    #[serde(with = "serde_duration")]
    pub max_backoff: Duration,
}

impl Default for AwsFleetConfig {
    fn default() -> Self {
        let s = AwsFleetSettings::default();
        AwsFleetConfig {
            regions: s.regions,
            endpoint: String::new(),
            families: s.families,
            page_size: s.page_size,
            attribute_concurrency: s.attribute_concurrency,
            timeout: s.http.timeout,
            max_retries: s.http.max_retries,
            base_backoff: s.http.base_backoff,
            max_backoff: s.http.max_backoff,
        }
    }
}

impl AwsFleetConfig {
    /// The validated settings; an error names the key (`fleet.aws.page_size`).
    pub fn settings(&self) -> Result<AwsFleetSettings, ConfigError> {
        let endpoint = self.endpoint.trim();
        let s = AwsFleetSettings {
            regions: self.regions.iter().map(|r| r.trim().to_string()).collect(),
            http: HttpSettings {
                endpoint: (!endpoint.is_empty()).then(|| endpoint.to_string()),
                timeout: self.timeout,
                max_retries: self.max_retries,
                base_backoff: self.base_backoff,
                max_backoff: self.max_backoff,
            },
            families: self.families.iter().map(|f| f.trim().to_string()).collect(),
            page_size: self.page_size,
            attribute_concurrency: self.attribute_concurrency,
        };
        s.validate().map_err(|(key, detail)| ConfigError::Field {
            field: format!("fleet.aws.{key}"),
            detail,
        })?;
        Ok(s)
    }
}

/// `[fleet.gcp]`.
#[derive(Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct GcpFleetConfig {
    pub projects: Vec<String>,
    /// Empty = every zone (aggregatedList).
    pub zones: Vec<String>,
    /// "" = https://compute.googleapis.com.
    pub endpoint: String,
    /// An OAuth2 access token (secret; `BURSAR_GCP_ACCESS_TOKEN` overrides it); "" = the
    /// metadata server's service-account token.
    pub access_token: String,
}

impl fmt::Debug for GcpFleetConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GcpFleetConfig")
            .field("projects", &self.projects)
            .field("zones", &self.zones)
            .field("endpoint", &self.endpoint)
            .field(
                "access_token",
                &(!self.access_token.is_empty()).then_some("<redacted>"),
            )
            .finish()
    }
}

/// `[fleet.azure]`.
#[derive(Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct AzureFleetConfig {
    pub subscriptions: Vec<String>,
    /// "" = https://management.azure.com.
    pub endpoint: String,
    /// An ARM bearer token (secret; `BURSAR_AZURE_ACCESS_TOKEN` overrides it); "" = the
    /// managed identity's token (IMDS).
    pub access_token: String,
}

impl fmt::Debug for AzureFleetConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AzureFleetConfig")
            .field("subscriptions", &self.subscriptions)
            .field("endpoint", &self.endpoint)
            .field(
                "access_token",
                &(!self.access_token.is_empty()).then_some("<redacted>"),
            )
            .finish()
    }
}

impl IdleGpuConfig {
    /// The validated policy; an error names the key (`idle_gpu.mode`).
    pub fn policy(&self) -> Result<IdlePolicy, ConfigError> {
        let field = |f: &str, detail: String| ConfigError::Field {
            field: format!("idle_gpu.{f}"),
            detail,
        };
        let mode = IdleMode::parse(&self.mode).ok_or_else(|| {
            field(
                "mode",
                format!(
                    "{}: expected dry_run, notify, stop or terminate",
                    quote(&self.mode)
                ),
            )
        })?;
        let number = |f: &str, v: &str| -> Result<f64, ConfigError> {
            v.trim()
                .parse::<f64>()
                .ok()
                .filter(|x| x.is_finite())
                .ok_or_else(|| field(f, format!("{} is not a number", quote(v))))
        };
        let threshold_percent = number("threshold_percent", &self.threshold_percent)?;
        if !(threshold_percent > 0.0 && threshold_percent <= 100.0) {
            return Err(field(
                "threshold_percent",
                format!("{threshold_percent} is outside (0, 100]"),
            ));
        }
        let max_fleet_fraction = number("max_fleet_fraction", &self.max_fleet_fraction)?;
        if !(max_fleet_fraction > 0.0 && max_fleet_fraction <= 1.0) {
            return Err(field(
                "max_fleet_fraction",
                format!("{max_fleet_fraction} is outside (0, 1]"),
            ));
        }
        if self.min_samples == 0 {
            return Err(field("min_samples", "must be at least 1".into()));
        }
        for (k, d) in [
            ("window", self.window),
            ("every", self.every),
            ("scrape_every", self.scrape_every),
            ("inventory_every", self.inventory_every),
            ("retention", self.retention),
            ("feed_silence", self.feed_silence),
        ] {
            if d.is_zero() {
                return Err(field(k, "must be longer than 0s".into()));
            }
        }
        if self.retention < self.window + self.lag {
            return Err(field(
                "retention",
                "must be at least window + lag (the samples the policy reads)".into(),
            ));
        }
        let protect_tag = TagMatch::parse(&self.protect_tag).ok_or_else(|| {
            field(
                "protect_tag",
                format!("{}: expected key=value", quote(&self.protect_tag)),
            )
        })?;
        let tags = |f: &str, list: &[String]| -> Result<Vec<TagMatch>, ConfigError> {
            list.iter()
                .map(|t| {
                    TagMatch::parse(t).ok_or_else(|| {
                        field(
                            &format!("selectors.{f}"),
                            format!("{}: expected key=value or key", quote(t)),
                        )
                    })
                })
                .collect()
        };
        let providers = self
            .selectors
            .providers
            .iter()
            .map(|p| {
                p.parse::<Provider>()
                    .map_err(|e| field("selectors.providers", e.to_string()))
            })
            .collect::<Result<_, _>>()?;
        for (i, t) in self.dcgm_targets.iter().enumerate() {
            let ok = url::Url::parse(&t.url)
                .is_ok_and(|u| matches!(u.scheme(), "http" | "https") && u.has_host());
            if !ok {
                return Err(field(
                    &format!("dcgm_targets[{i}].url"),
                    format!("{} is not an http(s) URL", quote(&t.url)),
                ));
            }
        }
        if !self.prometheus.url.is_empty()
            && !url::Url::parse(&self.prometheus.url)
                .is_ok_and(|u| matches!(u.scheme(), "http" | "https") && u.has_host())
        {
            return Err(field(
                "prometheus.url",
                format!("{} is not an http(s) URL", quote(&self.prometheus.url)),
            ));
        }
        Ok(IdlePolicy {
            mode,
            threshold_percent,
            window: self.window,
            min_samples: self.min_samples,
            lag: self.lag,
            grace: self.grace,
            min_age: self.min_age,
            protect_tag,
            selectors: Selectors {
                providers,
                regions: self.selectors.regions.clone(),
                exclude_regions: self.selectors.exclude_regions.clone(),
                tags: tags("tags", &self.selectors.tags)?,
                exclude_tags: tags("exclude_tags", &self.selectors.exclude_tags)?,
            },
            max_actions_per_hour: self.max_actions_per_hour,
            max_fleet_fraction,
            feed_silence: self.feed_silence,
            owner_tag: self.owner_tag.clone(),
            channels: self.channels.clone(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    #[test]
    fn the_issue_s_example_parses_into_the_documented_policy() {
        let c = Config::from_toml(
            r#"
[idle_gpu]
enabled = true
mode = "stop"
threshold_percent = "10"
window = "30m"
min_samples = 3
grace = "15m"
min_age = "30m"
protect_tag = "bursar.io/protect=true"
max_actions_per_hour = 10
max_fleet_fraction = "0.25"
every = "1m"
scrape_every = "15s"
retention = "7d"
[[idle_gpu.dcgm_targets]]
url = "http://10.0.0.5:9400/metrics"
instance = "i-0abc"
[idle_gpu.prometheus]
url = ""
[fleet.aws]
regions = ["us-east-1"]
endpoint = ""
[fleet.gcp]
projects = ["p"]
[fleet.azure]
subscriptions = ["s"]
"#,
        )
        .unwrap();
        let p = c.idle_gpu.policy().unwrap();
        assert_eq!(p.mode, IdleMode::Stop);
        assert_eq!(p.threshold_percent, 10.0);
        assert_eq!(p.window, Duration::from_secs(1800));
        assert_eq!(p.protect_tag.key, "bursar.io/protect");
        assert_eq!(c.idle_gpu.dcgm_targets[0].instance, "i-0abc");
        let aws = c.fleet.aws.unwrap();
        assert_eq!(aws.regions, ["us-east-1"]);
        let s = aws.settings().unwrap();
        assert_eq!(s.http.endpoint, None);
        assert_eq!(s.families, ["g", "gr", "p"]);
        assert_eq!(s.page_size, 1000);
        let d = IdleGpuConfig::default().policy().unwrap();
        assert_eq!(d, IdlePolicy::default());
    }

    #[test]
    fn bad_values_name_their_key() {
        for (toml, key) in [
            ("mode = \"yolo\"", "idle_gpu.mode"),
            ("threshold_percent = \"ten\"", "idle_gpu.threshold_percent"),
            ("threshold_percent = \"150\"", "idle_gpu.threshold_percent"),
            ("max_fleet_fraction = \"2\"", "idle_gpu.max_fleet_fraction"),
            ("min_samples = 0", "idle_gpu.min_samples"),
            ("protect_tag = \"\"", "idle_gpu.protect_tag"),
            ("retention = \"1m\"", "idle_gpu.retention"),
            (
                "[idle_gpu.selectors]\nproviders = [\"oracle\"]",
                "idle_gpu.selectors.providers",
            ),
            (
                "[[idle_gpu.dcgm_targets]]\nurl = \"10.0.0.5:9400\"",
                "idle_gpu.dcgm_targets[0].url",
            ),
        ] {
            let c = Config::from_toml(&format!("[idle_gpu]\n{toml}")).unwrap();
            let e = c.idle_gpu.policy().unwrap_err().to_string();
            assert!(e.contains(key), "{toml}: {e}");
        }
        for (toml, key) in [
            ("regions = []", "fleet.aws.regions"),
            (
                "regions = [\"us-east-1\"]\npage_size = 2",
                "fleet.aws.page_size",
            ),
            (
                "regions = [\"us-east-1\"]\nfamilies = [\"p4d\"]",
                "fleet.aws.families",
            ),
            (
                "regions = [\"us-east-1\"]\nendpoint = \"moto:5000\"",
                "fleet.aws.endpoint",
            ),
            (
                "regions = [\"us-east-1\"]\nattribute_concurrency = 0",
                "fleet.aws.attribute_concurrency",
            ),
        ] {
            let c = Config::from_toml(&format!("[fleet.aws]\n{toml}")).unwrap();
            let e = c.fleet.aws.unwrap().settings().unwrap_err().to_string();
            assert!(e.contains(key), "{toml}: {e}");
            let e = Config::from_toml(&format!("[fleet.aws]\n{toml}"))
                .unwrap()
                .validate()
                .unwrap_err()
                .to_string();
            assert!(e.contains(key), "validate, {toml}: {e}");
        }
        let e = Config::from_toml("[idle_gpu]\nwindow = \"soon\"").unwrap_err();
        assert!(e.contains("window"), "{e}");
    }
}
