//! Configuration: built-in defaults < TOML file < BURSAR_* environment < command-line flags.
//! Every default is listed in the README. A config that cannot be read or parsed is a
//! `ConfigError` naming the file and field (the binary exits with code 2).
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

pub mod auth;
pub mod dashboards;
pub mod fleet;
pub mod leader;
pub mod limits;
pub mod report;
pub mod tls;
pub use auth::AuthConfig;
pub use dashboards::DashboardsConfig;
pub use fleet::{FleetConfig, IdleGpuConfig};
pub use leader::LeaderConfig;
pub use limits::LimitsConfig;
pub use report::ReportConfig;
pub use tls::TlsConfig;

use crate::billing::accept::BadRowShare;
use crate::clouds::{HttpSettings, SOURCES, SourceSettings, source_kind};
use crate::domain::budget::Budget;
use crate::domain::quote::{clip, quote};
use crate::notify::AlertsConfig;
use crate::serde_duration;

pub const DEFAULT_DATABASE_URL: &str = "sqlite://bursar.db";
pub const DEFAULT_LISTEN: &str = "127.0.0.1:50051";
pub const DEFAULT_SERVER: &str = "http://127.0.0.1:50051";
/// Where `/metrics` (and the other HTTP pages) are served by default.
pub const DEFAULT_METRICS_LISTEN: &str = "127.0.0.1:9464";

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {detail}")]
    Read { path: PathBuf, detail: String },
    #[error("invalid config file {path}: {detail}")]
    Parse { path: PathBuf, detail: String },
    #[error("invalid value for {field}: {detail}")]
    Field { field: String, detail: String },
}

/// The whole configuration of a bursar process. `Debug` redacts secrets (webhook URLs,
/// API keys, the SMTP password).
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub database_url: String,
    pub listen: String,
    /// The HTTP port: `/metrics` in the Prometheus exposition format. Empty: no HTTP
    /// server.
    pub metrics_listen: String,
    /// "text" or "json".
    pub log_format: String,
    /// Load the shipped seed snapshot when the database holds no prices.
    pub seed_when_empty: bool,
    /// How often the in-memory catalog is reloaded from the database (picks up prices
    /// written by other replicas or by `bursar import-catalog`).
    #[serde(with = "serde_duration")]
    pub catalog_refresh: Duration,
    /// On SIGTERM, how long `serve` waits for calls in flight (and open streams, such as a
    /// health Watch) to finish before it closes them and stops.
    #[serde(with = "serde_duration")]
    pub drain_timeout: Duration,
    pub sources: Sources,
    pub placement: PlacementConfig,
    /// `[alerts]`: how budget alerts are delivered (SMTP, Slack, retries).
    pub alerts: AlertsConfig,
    /// `[[budgets]]`: budgets as code. Upserted into the store at start with origin
    /// `config`; the file wins over API edits for the budgets it names.
    pub budgets: Vec<Budget>,
    /// `[budget_evaluation]`: how often budgets are evaluated and the forecast's window.
    pub budget_evaluation: BudgetEvalConfig,
    /// `[cost_explorer]`: AWS Cost Explorer polled by `serve`, for accounts without a CUR.
    pub cost_explorer: CostExplorerConfig,
    /// `[ingest]`: how billing ingests treat bad rows and renew their runs' leases.
    pub ingest: IngestConfig,
    /// `[idle_gpu]`: the idle-GPU policy and where utilisation comes from.
    pub idle_gpu: IdleGpuConfig,
    /// `[fleet.aws|gcp|azure]`: where the GPU fleet runs.
    pub fleet: FleetConfig,
    /// `[dashboards]`: the Grafana dashboards' read-only role.
    pub dashboards: DashboardsConfig,
    /// `[report]`: the monthly report page and its email.
    pub report: ReportConfig,
    /// `[leader]`: the lease replicas elect the leader of singleton work with.
    pub leader: LeaderConfig,
    /// `[auth]`, `[tls]`, `[limits]`: who may call, over what, and how much.
    pub auth: AuthConfig,
    pub tls: TlsConfig,
    pub limits: LimitsConfig,
    /// The file this config was read from (`serve` re-reads it on SIGHUP).
    #[serde(skip)]
    pub source_file: Option<PathBuf>,
}

/// `[ingest]`.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct IngestConfig {
    /// The share of a file's rows that may be quarantined while the others are stored
    /// ("0": none, the file is rejected; "0.1%"). An incomplete file is always rejected.
    #[serde(deserialize_with = "bad_row_share")]
    pub accept_bad_rows: BadRowShare,
    /// How often an ingest renews its run's lease; a run whose lease (3 heartbeats) ran out
    /// is marked `interrupted`.
    #[serde(with = "serde_duration")]
    pub heartbeat: Duration,
}

impl Default for IngestConfig {
    fn default() -> Self {
        IngestConfig {
            accept_bad_rows: BadRowShare::NONE,
            heartbeat: crate::store::DEFAULT_INGEST_HEARTBEAT,
        }
    }
}

fn bad_row_share<'de, D: serde::Deserializer<'de>>(d: D) -> Result<BadRowShare, D::Error> {
    let s = String::deserialize(d)?;
    s.parse().map_err(serde::de::Error::custom)
}

/// `[cost_explorer]`.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct CostExplorerConfig {
    /// Off by default: every GetCostAndUsage page is billed by AWS ($0.01).
    pub enabled: bool,
    /// How often the last `lookback_days` days are re-read (Cost Explorer restates recent
    /// days as billing settles; each run replaces the days it covers).
    #[serde(with = "serde_duration")]
    pub every: Duration,
    pub lookback_days: u32,
    /// Endpoint override (e.g. a local moto_server); empty = AWS.
    pub endpoint: String,
}

impl Default for CostExplorerConfig {
    fn default() -> Self {
        CostExplorerConfig {
            enabled: false,
            every: Duration::from_secs(6 * 3600),
            lookback_days: 3,
            endpoint: String::new(),
        }
    }
}

impl fmt::Debug for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let budgets: Vec<Budget> = self.budgets.iter().map(Budget::redacted).collect();
        f.debug_struct("Config")
            .field("database_url", &self.database_url)
            .field("listen", &self.listen)
            .field("metrics_listen", &self.metrics_listen)
            .field("log_format", &self.log_format)
            .field("seed_when_empty", &self.seed_when_empty)
            .field("catalog_refresh", &self.catalog_refresh)
            .field("drain_timeout", &self.drain_timeout)
            .field("sources", &self.sources)
            .field("placement", &self.placement)
            .field("alerts", &self.alerts)
            .field("budgets", &budgets)
            .field("budget_evaluation", &self.budget_evaluation)
            .field("cost_explorer", &self.cost_explorer)
            .field("ingest", &self.ingest)
            .field("idle_gpu", &self.idle_gpu)
            .field("fleet", &self.fleet)
            .field("dashboards", &self.dashboards)
            .field("report", &self.report)
            .field("auth", &self.auth)
            .field("tls", &self.tls)
            .field("limits", &self.limits)
            .finish()
    }
}

/// `[budget_evaluation]`.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct BudgetEvalConfig {
    /// How often every budget is evaluated (and crossed thresholds fire), besides after
    /// each change through the API.
    #[serde(with = "serde_duration")]
    pub every: Duration,
    /// How often `serve` checks whether an ingest or a budget write (by any process or
    /// replica) committed since its last evaluation, and re-evaluates if one did.
    #[serde(with = "serde_duration")]
    pub poll: Duration,
    /// Days of the trailing window whose mean daily usage cost the forecast extrapolates.
    pub trailing_days: u32,
}

impl Default for BudgetEvalConfig {
    fn default() -> Self {
        BudgetEvalConfig {
            every: Duration::from_secs(5 * 60),
            poll: Duration::from_secs(1),
            trailing_days: crate::domain::forecast::DEFAULT_TRAILING_DAYS,
        }
    }
}

/// SelectProvider's cost model and decision log.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PlacementConfig {
    /// Prices older than this are stale.
    #[serde(with = "serde_duration")]
    pub max_price_age: Duration,
    /// "flag" stale offers (and providers whose price source is failing), or "skip" them.
    pub on_stale: String,
    /// "flag" offers priced far below their instance family (`suspect`), or "skip" them in
    /// every SelectProvider request.
    pub on_suspect: String,
    /// Band assumed for spot offers without an advisor band: "<5%" … ">20%".
    pub default_spot_band: String,
    /// Hours to restart after a spot interruption (decimal string).
    pub restart_hours: String,
    /// Checkpoint interval in hours; half of it is lost per interruption (decimal string).
    pub checkpoint_hours: String,
    /// Decision log: queue capacity (a full queue drops rows and counts them), rows per
    /// batch, and the longest a row waits before it is written.
    pub decision_log_queue: usize,
    pub decision_log_batch: usize,
    #[serde(with = "serde_duration")]
    pub decision_log_flush: Duration,
    /// How many nice steps (0–19) below the server the decision-log writer runs (Linux), so
    /// that on a saturated machine it yields to the threads answering requests.
    pub decision_log_nice: i32,
    /// Egress price overrides per provider; unset providers keep the built-in list prices.
    pub egress: EgressConfig,
}

impl Default for PlacementConfig {
    fn default() -> Self {
        PlacementConfig {
            max_price_age: Duration::from_secs(7 * 24 * 3600),
            on_stale: "flag".into(),
            on_suspect: "flag".into(),
            default_spot_band: "10-15%".into(),
            restart_hours: "0.1".into(),
            checkpoint_hours: "1".into(),
            decision_log_queue: 10_000,
            decision_log_batch: 500,
            decision_log_flush: Duration::from_secs(1),
            decision_log_nice: 10,
            egress: EgressConfig::default(),
        }
    }
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EgressConfig {
    pub aws: Option<ProviderEgressConfig>,
    pub gcp: Option<ProviderEgressConfig>,
    pub azure: Option<ProviderEgressConfig>,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProviderEgressConfig {
    pub same_continent_per_gb: String,
    pub cross_continent_per_gb: String,
    pub internet: Vec<TierConfig>,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TierConfig {
    pub up_to_gb: Option<String>,
    pub per_gb: String,
}

impl PlacementConfig {
    /// The validated cost model; errors name the field.
    pub fn cost_model(&self) -> Result<crate::domain::placement::CostModel, ConfigError> {
        use crate::domain::egress::{EgressTable, ProviderEgress, Tier};
        use crate::domain::money::parse_amount;
        use crate::domain::placement::{CostModel, band_from_label, milli};
        let field = |f: &str, detail: String| ConfigError::Field {
            field: format!("placement.{f}"),
            detail,
        };
        let dec = |f: &str, v: &str| {
            parse_amount(v).map_err(|_| field(f, format!("{} is not a decimal number", quote(v))))
        };
        let skip_stale = match self.on_stale.as_str() {
            "flag" => false,
            "skip" => true,
            other => {
                return Err(field(
                    "on_stale",
                    format!("{}: expected \"flag\" or \"skip\"", quote(other)),
                ));
            }
        };
        let skip_suspect = match self.on_suspect.as_str() {
            "flag" => false,
            "skip" => true,
            other => {
                return Err(field(
                    "on_suspect",
                    format!("{other:?}: expected \"flag\" or \"skip\""),
                ));
            }
        };
        let band = band_from_label(&self.default_spot_band).ok_or_else(|| {
            field(
                "default_spot_band",
                format!(
                    "{}: expected one of <5%, 5-10%, 10-15%, 15-20%, >20%",
                    quote(&self.default_spot_band)
                ),
            )
        })?;
        let hours = |f: &str, v: &str| {
            let d = dec(f, v)?;
            if d.is_sign_negative() {
                return Err(field(f, "must not be negative".into()));
            }
            milli(d).ok_or_else(|| field(f, "out of range".into()))
        };
        let mut egress = EgressTable::default();
        for (name, cfg) in [
            ("aws", &self.egress.aws),
            ("gcp", &self.egress.gcp),
            ("azure", &self.egress.azure),
        ] {
            let Some(c) = cfg else { continue };
            let p = ProviderEgress {
                same_continent_per_gb: dec(
                    &format!("egress.{name}.same_continent_per_gb"),
                    &c.same_continent_per_gb,
                )?,
                cross_continent_per_gb: dec(
                    &format!("egress.{name}.cross_continent_per_gb"),
                    &c.cross_continent_per_gb,
                )?,
                internet: c
                    .internet
                    .iter()
                    .map(|t| {
                        Ok(Tier {
                            up_to_gb: t
                                .up_to_gb
                                .as_deref()
                                .map(|u| dec(&format!("egress.{name}.internet.up_to_gb"), u))
                                .transpose()?,
                            per_gb: dec(&format!("egress.{name}.internet.per_gb"), &t.per_gb)?,
                        })
                    })
                    .collect::<Result<_, ConfigError>>()?,
            };
            match name {
                "aws" => egress.aws = p,
                "gcp" => egress.gcp = p,
                _ => egress.azure = p,
            }
            egress.source = format!("{} (with config overrides)", egress.source);
        }
        egress
            .validate()
            .map_err(|e| field(&format!("egress.{}", e.field), e.detail))?;
        if self.decision_log_queue == 0 || self.decision_log_batch == 0 {
            return Err(field(
                "decision_log_queue",
                "queue and batch must be > 0".into(),
            ));
        }
        if self.decision_log_batch > self.decision_log_queue {
            return Err(field(
                "decision_log_batch",
                format!(
                    "{} is more than decision_log_queue ({}): a batch could never fill",
                    self.decision_log_batch, self.decision_log_queue
                ),
            ));
        }
        if !(0..=19).contains(&self.decision_log_nice) {
            return Err(field(
                "decision_log_nice",
                format!("{} is outside 0..=19", self.decision_log_nice),
            ));
        }
        if self.decision_log_flush.is_zero() {
            return Err(field(
                "decision_log_flush",
                "must be > 0 (the longest a decision waits before it is written)".into(),
            ));
        }
        Ok(CostModel {
            egress,
            restart_hours_milli: hours("restart_hours", &self.restart_hours)?,
            checkpoint_hours_milli: hours("checkpoint_hours", &self.checkpoint_hours)?,
            default_spot_band: band,
            max_price_age_secs: self.max_price_age.as_secs() as i64,
            skip_stale,
            skip_suspect,
        })
    }
}

impl Default for Config {
    fn default() -> Self {
        Config {
            database_url: DEFAULT_DATABASE_URL.into(),
            listen: DEFAULT_LISTEN.into(),
            metrics_listen: DEFAULT_METRICS_LISTEN.into(),
            log_format: "text".into(),
            seed_when_empty: true,
            catalog_refresh: Duration::from_secs(60),
            drain_timeout: Duration::from_secs(20),
            sources: Sources::default(),
            placement: PlacementConfig::default(),
            alerts: AlertsConfig::default(),
            budgets: Vec::new(),
            budget_evaluation: BudgetEvalConfig::default(),
            cost_explorer: CostExplorerConfig::default(),
            ingest: IngestConfig::default(),
            idle_gpu: IdleGpuConfig::default(),
            fleet: FleetConfig::default(),
            dashboards: DashboardsConfig::default(),
            report: ReportConfig::default(),
            leader: LeaderConfig::default(),
            auth: AuthConfig::default(),
            tls: TlsConfig::default(),
            limits: LimitsConfig::default(),
            source_file: None,
        }
    }
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Sources {
    pub aws_ondemand: SourceConfig,
    pub aws_spot: SourceConfig,
    pub aws_spot_advisor: SourceConfig,
    pub azure: SourceConfig,
    pub gcp: SourceConfig,
}

impl Default for Sources {
    /// Each source's defaults from its entry in `clouds::SOURCES`.
    fn default() -> Self {
        let d = SourceConfig::default_of;
        Sources {
            aws_ondemand: d("aws-ondemand"),
            aws_spot: d("aws-spot"),
            aws_spot_advisor: d("aws-spot-advisor"),
            azure: d("azure"),
            gcp: d("gcp"),
        }
    }
}

impl Sources {
    /// Each source's settings, in the order of `clouds::SOURCES` (a test checks each
    /// section against its entry).
    fn all(&self) -> [&SourceConfig; SOURCES.len()] {
        [
            &self.aws_ondemand,
            &self.aws_spot,
            &self.aws_spot_advisor,
            &self.azure,
            &self.gcp,
        ]
    }

    fn all_mut(&mut self) -> [&mut SourceConfig; SOURCES.len()] {
        [
            &mut self.aws_ondemand,
            &mut self.aws_spot,
            &mut self.aws_spot_advisor,
            &mut self.azure,
            &mut self.gcp,
        ]
    }

    pub fn get(&self, name: &str) -> Option<&SourceConfig> {
        let i = SOURCES.iter().position(|k| k.name == name)?;
        self.all().into_iter().nth(i)
    }

    pub fn get_mut(&mut self, name: &str) -> Option<&mut SourceConfig> {
        let i = SOURCES.iter().position(|k| k.name == name)?;
        self.all_mut().into_iter().nth(i)
    }
}

/// Settings every price source takes. `Debug` redacts the API key.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SourceConfig {
    pub enabled: bool,
    /// Endpoint or base URL override; empty = the provider's public endpoint.
    pub endpoint: String,
    /// Regions to poll; empty = all regions the API reports.
    pub regions: Vec<String>,
    /// Instance types to poll (AWS spot); empty = all.
    pub instance_types: Vec<String>,
    #[serde(with = "serde_duration")]
    pub interval: Duration,
    #[serde(with = "serde_duration")]
    pub timeout: Duration,
    pub max_retries: u32,
    #[serde(with = "serde_duration")]
    pub base_backoff: Duration,
    #[serde(with = "serde_duration")]
    pub max_backoff: Duration,
    /// GCP Cloud Billing API key (secret: never logged).
    pub api_key: String,
}

impl fmt::Debug for SourceConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SourceConfig")
            .field("enabled", &self.enabled)
            .field("endpoint", &self.endpoint)
            .field("regions", &self.regions)
            .field("instance_types", &self.instance_types)
            .field("interval", &self.interval)
            .field("timeout", &self.timeout)
            .field("max_retries", &self.max_retries)
            .field("base_backoff", &self.base_backoff)
            .field("max_backoff", &self.max_backoff)
            .field(
                "api_key",
                &(!self.api_key.is_empty()).then_some("<redacted>"),
            )
            .finish()
    }
}

impl SourceConfig {
    /// The settings of a source the config has no section for: its table defaults.
    fn default_of(name: &str) -> Self {
        let kind = source_kind(name).expect("a source of clouds::SOURCES");
        SourceConfig {
            interval: kind.default_interval,
            regions: kind.default_regions.iter().map(|r| r.to_string()).collect(),
            ..SourceConfig::default()
        }
    }

    /// What the source is built from (`clouds::SourceKind::build`).
    pub fn settings(&self) -> SourceSettings {
        SourceSettings {
            http: self.http(),
            regions: self.regions.clone(),
            instance_types: self.instance_types.clone(),
            api_key: self.api_key.clone(),
        }
    }

    pub fn http(&self) -> HttpSettings {
        HttpSettings {
            endpoint: (!self.endpoint.trim().is_empty()).then(|| self.endpoint.trim().to_string()),
            timeout: self.timeout,
            max_retries: self.max_retries,
            base_backoff: self.base_backoff,
            max_backoff: self.max_backoff,
        }
    }
}

impl Default for SourceConfig {
    fn default() -> Self {
        let h = HttpSettings::default();
        SourceConfig {
            enabled: false,
            endpoint: String::new(),
            regions: Vec::new(),
            instance_types: Vec::new(),
            interval: Duration::from_secs(6 * 3600),
            timeout: h.timeout,
            max_retries: h.max_retries,
            base_backoff: h.base_backoff,
            max_backoff: h.max_backoff,
            api_key: String::new(),
        }
    }
}

fn one_line_toml_error(text: &str, e: &toml::de::Error) -> String {
    let msg = e.message().trim().replace('\n', " ");
    let Some(span) = e.span() else { return msg };
    let start = span.start.min(text.len());
    let line_no = text[..start].matches('\n').count() + 1;
    let line = text.lines().nth(line_no - 1).unwrap_or("");
    let key = line.split('=').next().unwrap_or("").trim();
    let section = text
        .lines()
        .take(line_no)
        .map(str::trim)
        .filter(|l| l.starts_with('['))
        .last()
        .map(|l| l.trim_matches(|c| c == '[' || c == ']').trim().to_string());
    let field = match (section, key.is_empty() || key.starts_with('[')) {
        (_, true) => String::new(),
        (Some(s), false) => format!("{s}.{key}: "),
        (None, false) => format!("{key}: "),
    };
    format!("line {line_no}: {field}{msg}")
}

fn parse_bool(field: &str, v: &str) -> Result<bool, ConfigError> {
    match v.trim().to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" => Ok(true),
        "0" | "false" | "no" | "off" => Ok(false),
        _ => Err(ConfigError::Field {
            field: field.into(),
            detail: format!("{} is not a boolean (true/false)", quote(v)),
        }),
    }
}

fn parse_dur(field: &str, v: &str) -> Result<Duration, ConfigError> {
    humantime::parse_duration(v.trim()).map_err(|e| ConfigError::Field {
        field: field.into(),
        detail: format!("{}: {e}", quote(v)),
    })
}

fn parse_list(v: &str) -> Vec<String> {
    v.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(String::from)
        .collect()
}

impl Config {
    /// Loads the file at `path` (an explicit path must exist; without one, `bursar.toml` in
    /// the working directory is read if present), then applies environment overrides.
    pub fn load(path: Option<&Path>) -> Result<Config, ConfigError> {
        let mut cfg = match path {
            Some(p) => Config::from_file(p)?,
            None => {
                let p = Path::new("bursar.toml");
                if p.exists() {
                    Config::from_file(p)?
                } else {
                    Config::default()
                }
            }
        };
        cfg.apply_env(|k| std::env::var(k).ok())?;
        cfg.validate()?;
        Ok(cfg)
    }

    pub fn from_file(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError::Read {
            path: path.to_path_buf(),
            detail: e.to_string(),
        })?;
        let mut cfg = Config::from_toml(&text).map_err(|detail| ConfigError::Parse {
            path: path.to_path_buf(),
            detail: clip(&detail),
        })?;
        cfg.source_file = Some(path.to_path_buf());
        Ok(cfg)
    }

    /// Parses TOML; the error is one line naming the line number and the field.
    pub fn from_toml(text: &str) -> Result<Config, String> {
        toml::from_str(text).map_err(|e: toml::de::Error| one_line_toml_error(text, &e))
    }

    /// Applies BURSAR_* overrides read through `get` (the environment in production).
    pub fn apply_env(&mut self, get: impl Fn(&str) -> Option<String>) -> Result<(), ConfigError> {
        if let Some(v) = get("BURSAR_DATABASE_URL") {
            self.database_url = v;
        }
        if let Some(v) = get("BURSAR_LISTEN") {
            self.listen = v;
        }
        if let Some(v) = get("BURSAR_METRICS_LISTEN") {
            self.metrics_listen = v;
        }
        if let Some(v) = get("BURSAR_LOG_FORMAT") {
            self.log_format = v;
        }
        if let Some(v) = get("BURSAR_SEED_WHEN_EMPTY") {
            self.seed_when_empty = parse_bool("BURSAR_SEED_WHEN_EMPTY", &v)?;
        }
        if let Some(v) = get("BURSAR_CATALOG_REFRESH") {
            self.catalog_refresh = parse_dur("BURSAR_CATALOG_REFRESH", &v)?;
        }
        if let Some(v) = get("BURSAR_DRAIN_TIMEOUT") {
            self.drain_timeout = parse_dur("BURSAR_DRAIN_TIMEOUT", &v)?;
        }
        if let Some(v) = get("BURSAR_GCP_API_KEY") {
            self.sources.gcp.api_key = v;
        }
        if let Some(v) = get("BURSAR_SMTP_PASSWORD") {
            self.alerts.smtp.password = Some(v);
        }
        if let Some(v) = get("BURSAR_BUDGET_EVALUATION_EVERY") {
            self.budget_evaluation.every = parse_dur("BURSAR_BUDGET_EVALUATION_EVERY", &v)?;
        }
        if let Some(v) = get("BURSAR_INGEST_ACCEPT_BAD_ROWS") {
            self.ingest.accept_bad_rows = v.parse().map_err(|detail| ConfigError::Field {
                field: "BURSAR_INGEST_ACCEPT_BAD_ROWS".into(),
                detail,
            })?;
        }
        if let Some(v) = get("BURSAR_INGEST_HEARTBEAT") {
            self.ingest.heartbeat = parse_dur("BURSAR_INGEST_HEARTBEAT", &v)?;
        }
        if let Some(v) = get("BURSAR_IDLE_GPU_ENABLED") {
            self.idle_gpu.enabled = parse_bool("BURSAR_IDLE_GPU_ENABLED", &v)?;
        }
        if let Some(v) = get("BURSAR_IDLE_GPU_MODE") {
            self.idle_gpu.mode = v;
        }
        if let (Some(v), Some(g)) = (get("BURSAR_GCP_ACCESS_TOKEN"), self.fleet.gcp.as_mut()) {
            g.access_token = v;
        }
        if let (Some(v), Some(a)) = (get("BURSAR_AZURE_ACCESS_TOKEN"), self.fleet.azure.as_mut()) {
            a.access_token = v;
        }
        self.dashboards.apply_env(&get);
        if let Some(v) = get("BURSAR_BUDGET_EVALUATION_POLL") {
            self.budget_evaluation.poll = parse_dur("BURSAR_BUDGET_EVALUATION_POLL", &v)?;
        }
        self.report.apply_env(&get)?;
        self.leader.apply_env(&get)?;
        self.auth.apply_env(&get)?;
        self.tls.apply_env(&get);
        self.limits.apply_env(&get)?;
        for (kind, s) in SOURCES.iter().zip(self.sources.all_mut()) {
            let prefix = format!("BURSAR_{}_", kind.config_key().to_ascii_uppercase());
            let var = |suffix: &str| {
                let k = format!("{prefix}{suffix}");
                get(&k).map(|v| (k, v))
            };
            if let Some((k, v)) = var("ENABLED") {
                s.enabled = parse_bool(&k, &v)?;
            }
            if let Some((_, v)) = var("ENDPOINT") {
                s.endpoint = v;
            }
            if let Some((_, v)) = var("REGIONS") {
                s.regions = parse_list(&v);
            }
            if let Some((_, v)) = var("INSTANCE_TYPES") {
                s.instance_types = parse_list(&v);
            }
            if let Some((k, v)) = var("INTERVAL") {
                s.interval = parse_dur(&k, &v)?;
            }
            if let Some((k, v)) = var("TIMEOUT") {
                s.timeout = parse_dur(&k, &v)?;
            }
            if let Some((k, v)) = var("MAX_RETRIES") {
                s.max_retries = v.trim().parse().map_err(|_| ConfigError::Field {
                    field: k.clone(),
                    detail: format!("{} is not a whole number", quote(&v)),
                })?;
            }
            if let Some((k, v)) = var("BASE_BACKOFF") {
                s.base_backoff = parse_dur(&k, &v)?;
            }
        }
        Ok(())
    }

    /// The address of the HTTP port (`/metrics`), or `None` when `metrics_listen` is empty
    /// (no HTTP server); an error naming the key when it is not an address.
    pub fn metrics_addr(&self) -> Result<Option<std::net::SocketAddr>, ConfigError> {
        let v = self.metrics_listen.trim();
        if v.is_empty() {
            return Ok(None);
        }
        v.parse().map(Some).map_err(|_| ConfigError::Field {
            field: "metrics_listen".into(),
            detail: format!(
                "{} is not an address like 127.0.0.1:9464 (empty turns the HTTP port off)",
                quote(&self.metrics_listen)
            ),
        })
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        self.dashboards.validate()?;
        self.metrics_addr()?;
        self.auth.validate()?;
        self.tls.validate()?;
        self.limits.validate()?;
        if self.ingest.heartbeat.is_zero() {
            return Err(ConfigError::Field {
                field: "ingest.heartbeat".into(),
                detail: "must be greater than zero".into(),
            });
        }
        if !matches!(self.log_format.as_str(), "text" | "json") {
            return Err(ConfigError::Field {
                field: "log_format".into(),
                detail: format!("{}: expected \"text\" or \"json\"", quote(&self.log_format)),
            });
        }
        for (kind, s) in SOURCES.iter().zip(self.sources.all()) {
            if s.enabled && s.interval.is_zero() {
                return Err(ConfigError::Field {
                    field: format!("sources.{}.interval", kind.config_key()),
                    detail: "must be greater than zero".into(),
                });
            }
            if !s.endpoint.is_empty() && url::Url::parse(&s.endpoint).is_err() {
                return Err(ConfigError::Field {
                    field: format!("sources.{}.endpoint", kind.config_key()),
                    detail: format!("{} is not a URL", quote(&s.endpoint)),
                });
            }
        }
        self.placement.cost_model()?;
        self.idle_gpu.policy()?;
        self.report.validate()?;
        self.leader.validate()?;
        if let Some(aws) = &self.fleet.aws {
            aws.settings()?;
        }
        if let Some(gcp) = &self.fleet.gcp {
            gcp.settings()?;
        }
        if let Some(azure) = &self.fleet.azure {
            azure.settings()?;
        }
        if self.sources.gcp.enabled && self.sources.gcp.api_key.trim().is_empty() {
            return Err(ConfigError::Field {
                field: "sources.gcp.api_key".into(),
                detail: "the GCP source needs an API key (or BURSAR_GCP_API_KEY)".into(),
            });
        }
        self.validate_budgets()
    }

    /// Checks `[alerts]`, `[budget_evaluation]` and every `[[budgets]]` entry (each must
    /// validate, names must be unique); errors name the field, e.g.
    /// `budgets[0].thresholds[1].percent`. `server::run` calls it too.
    pub fn validate_budgets(&self) -> Result<(), ConfigError> {
        self.alerts
            .validate()
            .map_err(|(field, detail)| ConfigError::Field { field, detail })?;
        if self.budget_evaluation.every.is_zero() {
            return Err(ConfigError::Field {
                field: "budget_evaluation.every".into(),
                detail: "must be greater than zero".into(),
            });
        }
        if self.budget_evaluation.poll.is_zero() {
            return Err(ConfigError::Field {
                field: "budget_evaluation.poll".into(),
                detail: "must be greater than zero".into(),
            });
        }
        if self.budget_evaluation.trailing_days == 0 {
            return Err(ConfigError::Field {
                field: "budget_evaluation.trailing_days".into(),
                detail: "must be at least 1".into(),
            });
        }
        for (i, b) in self.budgets.iter().enumerate() {
            b.validate().map_err(|e| ConfigError::Field {
                field: format!("budgets[{i}].{}", e.field),
                detail: e.message,
            })?;
            if let Some(t) = &b.scope.tag
                && !crate::domain::tags::valid_tag_key(&t.key)
            {
                return Err(ConfigError::Field {
                    field: format!("budgets[{i}].scope.tag.key"),
                    detail: format!("{} is not a usable tag key", quote(&t.key)),
                });
            }
            if let Some(j) = self.budgets[..i].iter().position(|o| o.name == b.name) {
                return Err(ConfigError::Field {
                    field: format!("budgets[{i}].name"),
                    detail: format!("{} is already the name of budgets[{j}]", quote(&b.name)),
                });
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_source_of_the_table_has_its_section() {
        for kind in &SOURCES {
            let text = format!("[sources.{}]\nenabled = true", kind.config_key());
            let c = Config::from_toml(&text).unwrap();
            for other in &SOURCES {
                let on = c.sources.get(other.name).unwrap().enabled;
                assert_eq!(
                    on,
                    other.name == kind.name,
                    "[sources.{}]",
                    kind.config_key()
                );
            }
            assert_eq!(
                Sources::default().get(kind.name).unwrap().interval,
                kind.default_interval
            );
        }
    }
    use std::collections::HashMap;

    #[test]
    fn ingest_section_reads_the_share_and_heartbeat_and_names_bad_values() {
        assert_eq!(Config::default().ingest.accept_bad_rows, BadRowShare::NONE);
        let c = Config::from_toml("[ingest]\naccept_bad_rows = \"0.1%\"\nheartbeat = \"2s\"\n")
            .unwrap();
        assert_eq!(c.ingest.accept_bad_rows.to_string(), "0.1%");
        assert_eq!(c.ingest.heartbeat, Duration::from_secs(2));
        let e = Config::from_toml("[ingest]\naccept_bad_rows = \"lots\"\n").unwrap_err();
        assert!(
            e.contains("ingest.accept_bad_rows") && e.contains("lots"),
            "{e}"
        );
        let mut c = Config::default();
        c.apply_env(|k| (k == "BURSAR_INGEST_ACCEPT_BAD_ROWS").then(|| "5%".into()))
            .unwrap();
        assert_eq!(c.ingest.accept_bad_rows.to_string(), "5%");
        let e = Config::default()
            .apply_env(|k| (k == "BURSAR_INGEST_ACCEPT_BAD_ROWS").then(|| "5".into()))
            .unwrap_err();
        assert!(
            e.to_string().contains("BURSAR_INGEST_ACCEPT_BAD_ROWS"),
            "{e}"
        );
        let mut c = Config::default();
        c.ingest.heartbeat = Duration::ZERO;
        assert!(
            c.validate()
                .unwrap_err()
                .to_string()
                .contains("ingest.heartbeat")
        );
    }

    #[test]
    fn defaults_are_documented_values() {
        let c = Config::default();
        assert_eq!(c.database_url, "sqlite://bursar.db");
        assert_eq!(c.listen, "127.0.0.1:50051");
        assert_eq!(c.metrics_listen, "127.0.0.1:9464");
        assert!(c.seed_when_empty);
        assert!(!c.sources.azure.enabled);
        assert_eq!(c.sources.aws_spot.interval, Duration::from_secs(900));
    }

    #[test]
    fn toml_then_env_overrides() {
        let mut c = Config::from_toml(
            r#"
            database_url = "postgres://x@127.0.0.1/test"
            [sources.azure]
            enabled = true
            regions = ["eastus"]
            interval = "2h"
            "#,
        )
        .unwrap();
        assert_eq!(c.sources.azure.interval, Duration::from_secs(7200));
        let env: HashMap<&str, &str> = [
            ("BURSAR_DATABASE_URL", "sqlite://other.db"),
            ("BURSAR_AZURE_REGIONS", "eastus, westeurope"),
            ("BURSAR_AWS_SPOT_ENABLED", "true"),
        ]
        .into();
        c.apply_env(|k| env.get(k).map(|v| v.to_string())).unwrap();
        assert_eq!(c.database_url, "sqlite://other.db");
        assert_eq!(c.sources.azure.regions, ["eastus", "westeurope"]);
        assert!(c.sources.aws_spot.enabled);
    }

    #[test]
    fn placement_section_and_egress_overrides() {
        let c = Config::from_toml(
            r#"
            [placement]
            on_stale = "skip"
            on_suspect = "skip"
            default_spot_band = "<5%"
            [placement.egress.aws]
            same_continent_per_gb = "0.01"
            cross_continent_per_gb = "0.02"
            internet = [{ up_to_gb = "100", per_gb = "0.10" }, { per_gb = "0.05" }]
            "#,
        )
        .unwrap();
        let m = c.placement.cost_model().unwrap();
        assert!(m.skip_stale);
        assert!(m.skip_suspect);
        assert_eq!(m.default_spot_band, 0);
        assert_eq!(m.egress.aws.internet.len(), 2);
        let mut bad = c.clone();
        bad.placement.on_suspect = "maybe".into();
        assert!(
            bad.validate()
                .unwrap_err()
                .to_string()
                .contains("placement.on_suspect")
        );
        let mut bad = c.clone();
        bad.placement.on_stale = "ignore".into();
        assert!(
            bad.validate()
                .unwrap_err()
                .to_string()
                .contains("placement.on_stale")
        );
        let mut bad = c;
        if let Some(e) = bad.placement.egress.aws.as_mut() {
            e.internet[0].per_gb = "cheap".into();
        }
        assert!(
            bad.validate()
                .unwrap_err()
                .to_string()
                .contains("egress.aws.internet.per_gb")
        );
    }

    #[test]
    fn bad_values_name_the_field() {
        let e = Config::from_toml("[sources.azure]\ninterval = \"soon\"").unwrap_err();
        assert!(e.contains("interval"), "{e}");
        let e = Config::from_toml("nonsense = 1").unwrap_err();
        assert!(e.contains("nonsense"), "{e}");
        let mut c = Config::default();
        let err = c
            .apply_env(|k| (k == "BURSAR_AZURE_ENABLED").then(|| "maybe".to_string()))
            .unwrap_err();
        assert!(err.to_string().contains("BURSAR_AZURE_ENABLED"));
        let mut c = Config::default();
        c.sources.gcp.enabled = true;
        assert!(c.validate().unwrap_err().to_string().contains("api_key"));
        for (toml, field) in [
            (
                "[placement]\ndecision_log_flush = \"0s\"",
                "decision_log_flush",
            ),
            (
                "[placement]\ndecision_log_queue = 10\ndecision_log_batch = 50",
                "decision_log_batch",
            ),
            ("[placement]\ndecision_log_nice = 20", "decision_log_nice"),
        ] {
            let e = match Config::from_toml(toml) {
                Ok(c) => c.placement.cost_model().unwrap_err().to_string(),
                Err(e) => e,
            };
            assert!(e.contains(field), "{toml}: {e}");
        }
    }

    const BUDGETS_TOML: &str = r#"
        [alerts]
        dashboard_url = "https://grafana.example.com/d/budgets"
        [alerts.smtp]
        host = "smtp.example.com"
        username = "bursar"
        password = "file-password"

        [budget_evaluation]
        every = "1m"
        poll = "2s"

        [[budgets]]
        name = "ml-training"
        amount = "5000"
        currency = "USD"
        gate = "deny"
        thresholds = [{ percent = "80" }, { amount = "4500", on = "forecast" }]
        [budgets.scope]
        tag = { key = "team", value = "ml" }
        [budgets.channels]
        slack_webhooks = ["https://hooks.slack.com/services/T000/B000/XXXXSECRET"]

        [[budgets]]
        name = "egress"
        amount = "10000"
        metric = "egress_gb"
        "#;

    #[test]
    fn budgets_alerts_and_evaluation_sections() {
        let c = Config::default();
        assert!(c.budgets.is_empty());
        assert_eq!(c.budget_evaluation.every, Duration::from_secs(300));
        assert_eq!(c.budget_evaluation.poll, Duration::from_secs(1));
        assert_eq!(
            c.budget_evaluation.trailing_days,
            crate::domain::forecast::DEFAULT_TRAILING_DAYS
        );
        assert_eq!(c.alerts, AlertsConfig::default());

        let mut c = Config::from_toml(BUDGETS_TOML).unwrap();
        c.validate().unwrap();
        assert_eq!(c.budgets.len(), 2);
        assert_eq!(c.budgets[0].name, "ml-training");
        assert_eq!(c.budgets[0].thresholds.len(), 2);
        assert_eq!(c.budget_evaluation.every, Duration::from_secs(60));
        assert_eq!(c.budget_evaluation.poll, Duration::from_secs(2));
        assert_eq!(c.budget_evaluation.trailing_days, 7);
        assert_eq!(c.alerts.smtp.host, "smtp.example.com");
        let dbg = format!("{c:?}");
        assert!(!dbg.contains("XXXXSECRET"), "{dbg}");
        assert!(!dbg.contains("file-password"), "{dbg}");
        assert!(dbg.contains("ml-training"));

        let env: HashMap<&str, &str> = [
            ("BURSAR_SMTP_PASSWORD", "env-password"),
            ("BURSAR_BUDGET_EVALUATION_EVERY", "30s"),
            ("BURSAR_BUDGET_EVALUATION_POLL", "500ms"),
        ]
        .into();
        c.apply_env(|k| env.get(k).map(|v| v.to_string())).unwrap();
        assert_eq!(c.budget_evaluation.poll, Duration::from_millis(500));
        assert_eq!(c.alerts.smtp.password.as_deref(), Some("env-password"));
        assert_eq!(c.budget_evaluation.every, Duration::from_secs(30));
        let err = c
            .apply_env(|k| (k == "BURSAR_BUDGET_EVALUATION_EVERY").then(|| "soon".into()))
            .unwrap_err();
        assert!(err.to_string().contains("BURSAR_BUDGET_EVALUATION_EVERY"));
    }

    #[test]
    fn bad_budgets_name_the_field() {
        let field = |c: &Config| match c.validate().unwrap_err() {
            ConfigError::Field { field, .. } => field,
            e => panic!("{e}"),
        };
        let base = Config::from_toml(BUDGETS_TOML).unwrap();

        let mut c = base.clone();
        c.budgets[0].thresholds[1] = crate::domain::budget::Threshold::percent(
            rust_decimal::Decimal::ZERO,
            crate::domain::budget::ThresholdOn::Actual,
        );
        assert_eq!(field(&c), "budgets[0].thresholds[1].percent");

        let mut c = base.clone();
        c.budgets[1].name = "ml-training".into();
        assert_eq!(field(&c), "budgets[1].name");
        assert!(c.validate().unwrap_err().to_string().contains("budgets[0]"));

        let mut c = base.clone();
        c.budgets[1].timezone = "Mars/Olympus".into();
        assert_eq!(field(&c), "budgets[1].timezone");

        let mut c = base.clone();
        c.budgets[0].currency = "USX".into();
        assert_eq!(field(&c), "budgets[0].currency");

        let mut c = base.clone();
        c.budgets[0].channels.emails = vec!["not-an-address".into()];
        assert_eq!(field(&c), "budgets[0].channels.emails[0]");

        let mut c = base.clone();
        c.alerts.retry_max = Duration::from_secs(1);
        assert_eq!(field(&c), "alerts.retry_max");

        let mut c = base.clone();
        c.budget_evaluation.every = Duration::ZERO;
        assert_eq!(field(&c), "budget_evaluation.every");

        let mut c = base.clone();
        c.budget_evaluation.poll = Duration::ZERO;
        assert_eq!(field(&c), "budget_evaluation.poll");

        // Parse errors inside [[budgets]] name the line and field.
        let e = Config::from_toml("[[budgets]]\nname = \"x\"\namount = 5.5\n").unwrap_err();
        assert!(e.contains("line 3") && e.contains("amount"), "{e}");
        let e = Config::from_toml("[budget_evaluation]\nevery = \"often\"\n").unwrap_err();
        assert!(e.contains("every"), "{e}");
    }

    #[test]
    fn metrics_listen_is_an_address_or_empty_and_env_overrides_it() {
        let mut c = Config::from_toml("metrics_listen = \"127.0.0.1:9500\"\n").unwrap();
        assert_eq!(
            c.metrics_addr().unwrap(),
            Some("127.0.0.1:9500".parse().unwrap())
        );
        c.apply_env(|k| (k == "BURSAR_METRICS_LISTEN").then(String::new))
            .unwrap();
        assert_eq!(c.metrics_addr().unwrap(), None, "empty turns it off");
        c.validate().unwrap();
        c.metrics_listen = "localhost:port".into();
        let e = c.validate().unwrap_err().to_string();
        assert!(
            e.contains("metrics_listen") && e.contains("localhost:port"),
            "{e}"
        );
    }
}
