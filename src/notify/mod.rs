//! Alert notifiers: the `[alerts]` configuration, one small `Notifier` trait with one file per
//! channel (`email.rs`: SMTP via lettre; `slack.rs`: incoming webhooks via reqwest), and
//! `render.rs`, which turns an alert into the subject, text, HTML and Block Kit payload
//! that the outbox stores; `idle_notice.rs` renders the idle-GPU notice the same ways.
//! Delivery (claim, send, retry) is `tasks::alerts`.
//!
//! Invariant: secrets — the SMTP password, webhook URLs, recipient addresses — never appear
//! in a `NotifyError`, a `Debug` of the configuration, or a log line.
//! API boundary: a notifier sends one stored outbox row; it knows nothing of budgets.
pub mod email;
pub mod idle_notice;
pub mod outbox;
pub mod render;
pub mod slack;

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use rand::Rng;
use serde::Deserialize;

use outbox::OutboxRow;

/// `[alerts]`: how budget alerts are delivered.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct AlertsConfig {
    /// Linked from every alert ("Open dashboard"), when set.
    pub dashboard_url: Option<String>,
    /// How often the outbox is polled for due messages.
    #[serde(with = "serde_duration")]
    pub outbox_interval: Duration,
    /// Retry delays: exponential from `retry_base` up to `retry_max`, with full jitter in
    /// between. Delivery never gives up: an outage delays alerts, it never drops them.
    #[serde(with = "serde_duration")]
    pub retry_base: Duration,
    #[serde(with = "serde_duration")]
    pub retry_max: Duration,
    /// How long a replica owns the rows it claimed; another replica may retry them after.
    /// Must exceed the longest send (the channel timeouts).
    #[serde(with = "serde_duration")]
    pub claim_lease: Duration,
    /// Rows claimed per poll.
    pub outbox_batch: i64,
    /// The tag whose values are listed as top contributors in alerts.
    pub contributor_tag_key: String,
    pub smtp: SmtpConfig,
    #[serde(with = "serde_duration")]
    pub slack_timeout: Duration,
}

impl Default for AlertsConfig {
    fn default() -> Self {
        AlertsConfig {
            dashboard_url: None,
            outbox_interval: Duration::from_secs(15),
            retry_base: Duration::from_secs(30),
            retry_max: Duration::from_secs(3600),
            claim_lease: Duration::from_secs(300),
            outbox_batch: 50,
            contributor_tag_key: "team".into(),
            smtp: SmtpConfig::default(),
            slack_timeout: Duration::from_secs(10),
        }
    }
}

/// How the SMTP connection is secured.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum SmtpTls {
    /// Plain text (a local relay, tests).
    None,
    /// Upgrade with STARTTLS (required, not opportunistic); port 587 by default.
    #[default]
    Starttls,
    /// Implicit TLS from the first byte ("SMTPS"); port 465 by default.
    Tls,
}

/// `[alerts.smtp]`. `Debug` redacts the password.
///
/// With `tls = "starttls"` or `"tls"` the server certificate is verified against the
/// bundled Mozilla roots (webpki-roots) plus, if set, the certificates in `ca_file`: a PEM
/// file of extra root certificates to trust, e.g. a private CA of an internal relay.
#[derive(Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct SmtpConfig {
    pub host: String,
    /// Defaults by `tls`: 25 (none), 587 (starttls), 465 (tls).
    pub port: Option<u16>,
    pub tls: SmtpTls,
    pub username: Option<String>,
    /// Secret.
    pub password: Option<String>,
    /// The From address, e.g. `bursar <finops@example.com>`.
    pub from: String,
    #[serde(with = "serde_duration")]
    pub timeout: Duration,
    /// PEM file of extra root certificates to trust, e.g. a private CA of an internal
    /// relay; added to the default roots. Unused with `tls = "none"`.
    pub ca_file: Option<std::path::PathBuf>,
}

impl Default for SmtpConfig {
    fn default() -> Self {
        SmtpConfig {
            host: "localhost".into(),
            port: None,
            tls: SmtpTls::Starttls,
            username: None,
            password: None,
            from: "bursar <bursar@localhost>".into(),
            timeout: Duration::from_secs(30),
            ca_file: None,
        }
    }
}

impl SmtpConfig {
    pub fn effective_port(&self) -> u16 {
        self.port.unwrap_or(match self.tls {
            SmtpTls::None => 25,
            SmtpTls::Starttls => 587,
            SmtpTls::Tls => 465,
        })
    }
}

impl fmt::Debug for SmtpConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SmtpConfig")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("tls", &self.tls)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .field("from", &self.from)
            .field("timeout", &self.timeout)
            .field("ca_file", &self.ca_file)
            .finish()
    }
}

impl AlertsConfig {
    /// Checks values serde cannot; the error names the field (under `alerts.`).
    pub fn validate(&self) -> Result<(), (String, String)> {
        let err = |f: &str, d: String| Err((format!("alerts.{f}"), d));
        if let Some(u) = &self.dashboard_url
            && url::Url::parse(u).is_err()
        {
            return err("dashboard_url", format!("{u:?} is not a URL"));
        }
        for (f, d) in [
            ("outbox_interval", self.outbox_interval),
            ("retry_base", self.retry_base),
            ("claim_lease", self.claim_lease),
            ("slack_timeout", self.slack_timeout),
            ("smtp.timeout", self.smtp.timeout),
        ] {
            if d.is_zero() {
                return err(f, "must be more than zero".into());
            }
        }
        if self.retry_max < self.retry_base {
            return err("retry_max", "must be at least retry_base".into());
        }
        if self.claim_lease <= self.smtp.timeout.max(self.slack_timeout) {
            return err(
                "claim_lease",
                "must exceed smtp.timeout and slack_timeout (a send must end within its lease)"
                    .into(),
            );
        }
        if self.outbox_batch < 1 {
            return err("outbox_batch", "must be at least 1".into());
        }
        if !crate::domain::tags::valid_tag_key(&self.contributor_tag_key) {
            return err(
                "contributor_tag_key",
                format!("{:?} is not a usable tag key", self.contributor_tag_key),
            );
        }
        if self.smtp.from.parse::<lettre::message::Mailbox>().is_err() {
            return err(
                "smtp.from",
                format!("{:?} is not an email address", self.smtp.from),
            );
        }
        if self.smtp.password.is_some() && self.smtp.username.is_none() {
            return err("smtp.username", "is required with smtp.password".into());
        }
        Ok(())
    }

    /// Delay before attempt `attempt + 1` after `attempt` failed ones (1-based): uniform in
    /// `retry_base ..= min(retry_max, retry_base · 2^(attempt−1))`.
    pub fn retry_delay(&self, attempt: u32) -> Duration {
        let exp = self
            .retry_base
            .saturating_mul(1u32 << attempt.saturating_sub(1).min(20));
        let cap = exp.min(self.retry_max).max(self.retry_base);
        let lo = self.retry_base.as_millis() as u64;
        let hi = cap.as_millis() as u64;
        if hi <= lo {
            return self.retry_base;
        }
        Duration::from_millis(rand::rng().random_range(lo..=hi))
    }
}

/// Why a message was not delivered. Never contains the target (address or webhook URL)
/// or the SMTP password: every text taken from a transport is scrubbed first.
#[derive(Debug, thiserror::Error)]
pub enum NotifyError {
    #[error("no notifier for channel {0:?}")]
    NoChannel(String),
    #[error("invalid message: {0}")]
    Invalid(String),
    #[error("timed out after {0:?}")]
    Timeout(Duration),
    #[error("rejected with HTTP {status}: {body}")]
    Rejected { status: u16, body: String },
    #[error("SMTP: {0}")]
    Smtp(String),
    #[error("transport: {0}")]
    Transport(String),
    #[error("configuration: {0}")]
    Config(String),
}

/// `text` with every non-empty secret (and, for URLs, their path and query) replaced by `***`.
pub(crate) fn scrub(text: &str, secrets: &[&str]) -> String {
    let mut out = text.to_string();
    let mut all: Vec<String> = Vec::new();
    for s in secrets {
        if s.is_empty() {
            continue;
        }
        all.push(s.to_string());
        if let Ok(u) = url::Url::parse(s) {
            if u.path().len() > 1 {
                all.push(u.path().to_string());
            }
            if let Some(q) = u.query() {
                all.push(q.to_string());
            }
        }
    }
    // Longest first, so a URL goes before its own path.
    all.sort_by_key(|s| std::cmp::Reverse(s.len()));
    for s in all {
        out = out.replace(&s, "***");
    }
    out
}

/// An error and its sources, `: `-separated (scrub before use: sources may carry URLs).
pub(crate) fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut cur = e.source();
    while let Some(s) = cur {
        let t = s.to_string();
        if !out.contains(&t) {
            out.push_str(": ");
            out.push_str(&t);
        }
        cur = s.source();
    }
    out
}

/// Sends one stored outbox message over one channel.
#[async_trait]
pub trait Notifier: Send + Sync {
    /// The `alert_outbox.channel` this notifier serves: `email` or `slack`.
    fn channel(&self) -> &'static str;
    /// Delivers `msg` to `msg.target`; `Ok` only when the far end accepted it.
    async fn send(&self, msg: &OutboxRow) -> Result<(), NotifyError>;
}

/// The email and Slack notifiers for a configuration.
pub fn notifiers_from_config(cfg: &AlertsConfig) -> Result<Vec<Arc<dyn Notifier>>, NotifyError> {
    Ok(vec![
        Arc::new(email::EmailNotifier::new(&cfg.smtp)?),
        Arc::new(slack::SlackNotifier::new(cfg.slack_timeout)?),
    ])
}

use crate::serde_duration;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_parses_with_defaults_and_rejects_unknown_fields() {
        let c: AlertsConfig = toml::from_str(
            r#"
            dashboard_url = "https://grafana.example.com/d/budgets"
            outbox_interval = "5s"
            retry_max = "10m"
            [smtp]
            host = "smtp.example.com"
            tls = "tls"
            username = "bursar"
            password = "hunter2-secret"
            from = "FinOps <finops@example.com>"
            "#,
        )
        .unwrap();
        assert_eq!(c.outbox_interval, Duration::from_secs(5));
        assert_eq!(c.retry_base, Duration::from_secs(30));
        assert_eq!(c.retry_max, Duration::from_secs(600));
        assert_eq!(c.contributor_tag_key, "team");
        assert_eq!(c.smtp.tls, SmtpTls::Tls);
        assert_eq!(c.smtp.effective_port(), 465);
        c.validate().unwrap();
        let dbg = format!("{c:?}");
        assert!(!dbg.contains("hunter2"), "{dbg}");
        assert!(dbg.contains("<redacted>"));

        assert!(toml::from_str::<AlertsConfig>("nope = 1").is_err());
        assert!(toml::from_str::<AlertsConfig>("[smtp]\nport = 25\nhots = \"x\"").is_err());
        assert!(toml::from_str::<AlertsConfig>("retry_base = \"soon\"").is_err());
        assert!(toml::from_str::<AlertsConfig>("[smtp]\ntls = \"ssl\"").is_err());
    }

    #[test]
    fn validation_names_the_field() {
        let c = AlertsConfig {
            retry_max: Duration::from_secs(1),
            ..AlertsConfig::default()
        };
        assert_eq!(c.validate().unwrap_err().0, "alerts.retry_max");
        let mut c = AlertsConfig::default();
        c.smtp.from = "not an address".into();
        assert_eq!(c.validate().unwrap_err().0, "alerts.smtp.from");
        AlertsConfig::default().validate().unwrap();
    }

    #[test]
    fn retry_delays_grow_within_bounds_and_never_stop() {
        let c = AlertsConfig {
            retry_base: Duration::from_secs(10),
            retry_max: Duration::from_secs(300),
            ..AlertsConfig::default()
        };
        assert_eq!(c.retry_delay(1), Duration::from_secs(10));
        for attempt in 1..200 {
            let d = c.retry_delay(attempt);
            assert!(d >= c.retry_base && d <= c.retry_max, "{attempt}: {d:?}");
            let cap = Duration::from_secs(10 * (1u64 << (attempt - 1).min(20))).min(c.retry_max);
            assert!(d <= cap);
        }
    }

    #[test]
    fn scrub_removes_urls_paths_and_addresses() {
        let url = "https://hooks.slack.com/services/T0/B0/XYZSECRET";
        let t = format!(
            "error sending request for url ({url}): /services/T0/B0/XYZSECRET and cfo@example.com"
        );
        let s = scrub(&t, &[url, "cfo@example.com", ""]);
        assert!(
            !s.contains("XYZSECRET") && !s.contains("cfo@example.com"),
            "{s}"
        );
    }
}
