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
use crate::fleet::azure::AzureSettings;
use crate::fleet::gcp::GcpSettings;
use crate::remote::HttpSettings;
use crate::serde_duration;
pub use crate::utilization::settings::{DcgmTarget, PrometheusConfig};

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

/// `[fleet.gcp]`: Compute Engine (`fleet::gcp`). Every key but `projects` has a default.
#[derive(Clone, Deserialize, PartialEq, Eq)]
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
    /// Where the token comes from when `access_token` is "" (header `Metadata-Flavor:
    /// Google`). Default: the metadata server's default service account.
    pub token_url: String,
    /// Instances per list page (`maxResults`, 1–500). Default 500.
    pub page_size: u32,
    /// Each request's timeout. Default 30s.
    #[serde(with = "serde_duration")]
    pub timeout: Duration,
    /// Retries of a call answered 429/5xx or failing in transport. Default 4.
    pub max_retries: u32,
    /// First backoff (doubling, with jitter, up to `max_backoff`). Default 500ms.
    #[serde(with = "serde_duration")]
    pub base_backoff: Duration,
    /// Default 20s.
    #[serde(with = "serde_duration")]
    pub max_backoff: Duration,
    /// How often a stop/delete operation is polled. Default 2s.
    #[serde(with = "serde_duration")]
    pub poll_interval: Duration,
    /// How long a stop/delete may take before it is reported failed. Default 10m.
    #[serde(with = "serde_duration")]
    pub operation_timeout: Duration,
}

impl Default for GcpFleetConfig {
    fn default() -> Self {
        let s = GcpSettings::default();
        GcpFleetConfig {
            projects: s.projects,
            zones: s.zones,
            endpoint: String::new(),
            access_token: String::new(),
            token_url: s.token_url,
            page_size: s.page_size,
            timeout: s.http.timeout,
            max_retries: s.http.max_retries,
            base_backoff: s.http.base_backoff,
            max_backoff: s.http.max_backoff,
            poll_interval: s.poll_interval,
            operation_timeout: s.operation_timeout,
        }
    }
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
            .field("token_url", &self.token_url)
            .field("page_size", &self.page_size)
            .field("timeout", &self.timeout)
            .field("max_retries", &self.max_retries)
            .field("base_backoff", &self.base_backoff)
            .field("max_backoff", &self.max_backoff)
            .field("poll_interval", &self.poll_interval)
            .field("operation_timeout", &self.operation_timeout)
            .finish()
    }
}

impl GcpFleetConfig {
    /// The validated settings of `fleet::gcp::GcpFleet`; an error names the key
    /// (`fleet.gcp.projects`).
    pub fn settings(&self) -> Result<GcpSettings, ConfigError> {
        let field = |f: &str, detail: String| ConfigError::Field {
            field: format!("fleet.gcp.{f}"),
            detail,
        };
        if self.projects.is_empty() {
            return Err(field("projects", "name at least one project".into()));
        }
        names(&self.projects, "fleet.gcp.projects")?;
        names(&self.zones, "fleet.gcp.zones")?;
        if !(1..=500).contains(&self.page_size) {
            return Err(field(
                "page_size",
                format!("{} is outside 1–500", self.page_size),
            ));
        }
        let calls = Calls {
            section: "fleet.gcp",
            endpoint: &self.endpoint,
            token_url: &self.token_url,
            timeout: self.timeout,
            max_retries: self.max_retries,
            base_backoff: self.base_backoff,
            max_backoff: self.max_backoff,
            poll_interval: self.poll_interval,
            operation_timeout: self.operation_timeout,
        };
        Ok(GcpSettings {
            projects: self.projects.clone(),
            zones: self.zones.clone(),
            http: calls.http()?,
            access_token: self.access_token.clone(),
            token_url: self.token_url.clone(),
            page_size: self.page_size,
            poll_interval: self.poll_interval,
            operation_timeout: self.operation_timeout,
        })
    }
}

/// `[fleet.azure]`: Azure Resource Manager (`fleet::azure`). Every key but
/// `subscriptions` has a default.
#[derive(Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct AzureFleetConfig {
    pub subscriptions: Vec<String>,
    /// "" = https://management.azure.com.
    pub endpoint: String,
    /// An ARM bearer token (secret; `BURSAR_AZURE_ACCESS_TOKEN` overrides it); "" = the
    /// managed identity's token (IMDS).
    pub access_token: String,
    /// Where the token comes from when `access_token` is "" (header `Metadata: true`).
    /// Default: IMDS's managed-identity token for https://management.azure.com/.
    pub token_url: String,
    /// The Microsoft.Compute api-version. Default "2024-11-01".
    pub api_version: String,
    /// Each request's timeout. Default 30s.
    #[serde(with = "serde_duration")]
    pub timeout: Duration,
    /// Retries of a call answered 429/5xx or failing in transport. Default 4.
    pub max_retries: u32,
    /// First backoff (doubling, with jitter, up to `max_backoff`). Default 500ms.
    #[serde(with = "serde_duration")]
    pub base_backoff: Duration,
    /// Default 20s.
    #[serde(with = "serde_duration")]
    pub max_backoff: Duration,
    /// How often a deallocate/delete operation is polled when Azure names no Retry-After.
    /// Default 5s.
    #[serde(with = "serde_duration")]
    pub poll_interval: Duration,
    /// How long a deallocate/delete may take before it is reported failed. Default 15m.
    #[serde(with = "serde_duration")]
    pub operation_timeout: Duration,
}

impl Default for AzureFleetConfig {
    fn default() -> Self {
        let s = AzureSettings::default();
        AzureFleetConfig {
            subscriptions: s.subscriptions,
            endpoint: String::new(),
            access_token: String::new(),
            token_url: s.token_url,
            api_version: s.api_version,
            timeout: s.http.timeout,
            max_retries: s.http.max_retries,
            base_backoff: s.http.base_backoff,
            max_backoff: s.http.max_backoff,
            poll_interval: s.poll_interval,
            operation_timeout: s.operation_timeout,
        }
    }
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
            .field("token_url", &self.token_url)
            .field("api_version", &self.api_version)
            .field("timeout", &self.timeout)
            .field("max_retries", &self.max_retries)
            .field("base_backoff", &self.base_backoff)
            .field("max_backoff", &self.max_backoff)
            .field("poll_interval", &self.poll_interval)
            .field("operation_timeout", &self.operation_timeout)
            .finish()
    }
}

impl AzureFleetConfig {
    /// The validated settings of `fleet::azure::AzureFleet`; an error names the key
    /// (`fleet.azure.api_version`).
    pub fn settings(&self) -> Result<AzureSettings, ConfigError> {
        let field = |f: &str, detail: String| ConfigError::Field {
            field: format!("fleet.azure.{f}"),
            detail,
        };
        if self.subscriptions.is_empty() {
            return Err(field(
                "subscriptions",
                "name at least one subscription id".into(),
            ));
        }
        names(&self.subscriptions, "fleet.azure.subscriptions")?;
        if !api_version_ok(&self.api_version) {
            return Err(field(
                "api_version",
                format!(
                    "{}: expected a date like \"2024-11-01\"",
                    quote(&self.api_version)
                ),
            ));
        }
        let calls = Calls {
            section: "fleet.azure",
            endpoint: &self.endpoint,
            token_url: &self.token_url,
            timeout: self.timeout,
            max_retries: self.max_retries,
            base_backoff: self.base_backoff,
            max_backoff: self.max_backoff,
            poll_interval: self.poll_interval,
            operation_timeout: self.operation_timeout,
        };
        Ok(AzureSettings {
            subscriptions: self.subscriptions.clone(),
            http: calls.http()?,
            access_token: self.access_token.clone(),
            token_url: self.token_url.clone(),
            api_version: self.api_version.clone(),
            poll_interval: self.poll_interval,
            operation_timeout: self.operation_timeout,
        })
    }
}

/// The call settings `[fleet.gcp]` and `[fleet.azure]` share, for validation.
struct Calls<'a> {
    section: &'static str,
    endpoint: &'a str,
    token_url: &'a str,
    timeout: Duration,
    max_retries: u32,
    base_backoff: Duration,
    max_backoff: Duration,
    poll_interval: Duration,
    operation_timeout: Duration,
}

impl Calls<'_> {
    fn http(&self) -> Result<HttpSettings, ConfigError> {
        let field = |f: &str, detail: String| ConfigError::Field {
            field: format!("{}.{f}", self.section),
            detail,
        };
        let is_http = |u: &str| {
            url::Url::parse(u).is_ok_and(|u| matches!(u.scheme(), "http" | "https") && u.has_host())
        };
        if !self.endpoint.is_empty() && !is_http(self.endpoint) {
            return Err(field(
                "endpoint",
                format!("{} is not an http(s) URL", quote(self.endpoint)),
            ));
        }
        if !is_http(self.token_url) {
            return Err(field(
                "token_url",
                format!("{} is not an http(s) URL", quote(self.token_url)),
            ));
        }
        for (k, d) in [
            ("timeout", self.timeout),
            ("poll_interval", self.poll_interval),
            ("operation_timeout", self.operation_timeout),
        ] {
            if d.is_zero() {
                return Err(field(k, "must be longer than 0s".into()));
            }
        }
        if self.operation_timeout < self.poll_interval {
            return Err(field(
                "operation_timeout",
                "must be at least poll_interval".into(),
            ));
        }
        if self.base_backoff > self.max_backoff {
            return Err(field(
                "base_backoff",
                "must not be longer than max_backoff".into(),
            ));
        }
        Ok(HttpSettings {
            endpoint: (!self.endpoint.is_empty()).then(|| self.endpoint.to_string()),
            timeout: self.timeout,
            max_retries: self.max_retries,
            base_backoff: self.base_backoff,
            max_backoff: self.max_backoff,
        })
    }
}

/// Project, zone and subscription names go into URL paths: no empty name, no `/`, `?`, `#`,
/// `%` or whitespace.
fn names(list: &[String], key: &str) -> Result<(), ConfigError> {
    for (i, n) in list.iter().enumerate() {
        let bad = n.is_empty()
            || n.chars()
                .any(|c| c.is_whitespace() || matches!(c, '/' | '?' | '#' | '%' | '&'));
        if bad {
            return Err(ConfigError::Field {
                field: format!("{key}[{i}]"),
                detail: format!("{} is not a valid name", quote(n)),
            });
        }
    }
    Ok(())
}

/// `YYYY-MM-DD` with an optional `-preview`.
fn api_version_ok(v: &str) -> bool {
    let date = v.strip_suffix("-preview").unwrap_or(v);
    let b = date.as_bytes();
    b.len() == 10
        && b.iter().enumerate().all(|(i, c)| match i {
            4 | 7 => *c == b'-',
            _ => c.is_ascii_digit(),
        })
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
    fn gcp_and_azure_sections_validate_into_settings_naming_their_keys() {
        let c = Config::from_toml(
            r#"
[fleet.gcp]
projects = ["p1"]
zones = ["us-central1-a"]
endpoint = "http://127.0.0.1:9/"
poll_interval = "50ms"
[fleet.azure]
subscriptions = ["s1"]
api_version = "2020-06-01"
"#,
        )
        .unwrap();
        let g = c.fleet.gcp.unwrap().settings().unwrap();
        assert_eq!(g.http.endpoint.as_deref(), Some("http://127.0.0.1:9/"));
        assert_eq!(g.poll_interval, Duration::from_millis(50));
        assert_eq!(g.page_size, 500);
        assert_eq!(g.operation_timeout, Duration::from_secs(600));
        let a = c.fleet.azure.unwrap().settings().unwrap();
        assert_eq!(a.api_version, "2020-06-01");
        assert_eq!(a.http.endpoint, None);
        assert!(a.token_url.starts_with("http://169.254.169.254/"));
        for (toml, key) in [
            ("[fleet.gcp]", "fleet.gcp.projects"),
            ("[fleet.gcp]\nprojects = [\"a/b\"]", "fleet.gcp.projects[0]"),
            (
                "[fleet.gcp]\nprojects = [\"p\"]\npage_size = 0",
                "fleet.gcp.page_size",
            ),
            (
                "[fleet.gcp]\nprojects = [\"p\"]\nendpoint = \"nope\"",
                "fleet.gcp.endpoint",
            ),
            (
                "[fleet.gcp]\nprojects = [\"p\"]\npoll_interval = \"0s\"",
                "fleet.gcp.poll_interval",
            ),
            ("[fleet.azure]", "fleet.azure.subscriptions"),
            (
                "[fleet.azure]\nsubscriptions = [\"s\"]\napi_version = \"latest\"",
                "fleet.azure.api_version",
            ),
            (
                "[fleet.azure]\nsubscriptions = [\"s\"]\ntoken_url = \"\"",
                "fleet.azure.token_url",
            ),
        ] {
            let c = Config::from_toml(toml).unwrap();
            let e = match (c.fleet.gcp, c.fleet.azure) {
                (Some(g), _) => g.settings().unwrap_err(),
                (_, Some(a)) => a.settings().unwrap_err(),
                _ => unreachable!(),
            };
            assert!(e.to_string().contains(key), "{toml}: {e}");
        }
        let secret = GcpFleetConfig {
            access_token: "ya29.SECRET".into(),
            ..Default::default()
        };
        assert!(!format!("{secret:?}").contains("SECRET"));
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
