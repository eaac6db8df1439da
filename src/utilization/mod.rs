//! Utilisation readers: how busy each GPU is, read from dcgm-exporter endpoints
//! (`dcgm.rs`, over the lenient text parser in `exposition.rs`) or from a Prometheus server
//! that already scrapes them (`prometheus.rs`). A reader turns what it read into
//! `RawSample`s, keyed by an `InstanceHint` (the id the target names, or the exporter's
//! `Hostname` label); `resolve.rs` matches them to the inventory's `FleetInstance`s and
//! validates them into `domain::fleet::GpuSample`s. `settings.rs` holds their
//! configuration (`[[idle_gpu.dcgm_targets]]`, `[idle_gpu.prometheus]`), which `config`
//! re-exports.
//!
//! Layer: like `fleet`, this module uses only `domain`, `remote` and `serde_duration`.
//! Invariant: a bad line or series is counted and described (`ReadReport::bad`,
//! `problems`), and the rest of the read is kept; missing data is absent, never zero.
use chrono::{DateTime, Utc};

pub mod dcgm;
pub mod exposition;
pub mod prometheus;
pub mod resolve;
pub mod settings;

pub use crate::remote::SourceError;
pub use dcgm::{parse_dcgm, scrape_dcgm};
pub use prometheus::{default_query, evidence_query, query_prometheus};
pub use resolve::{Resolved, resolve};
pub use settings::{DcgmTarget, PrometheusConfig};

/// How many problems a report describes; the rest are only counted.
pub const MAX_PROBLEMS: usize = 10;

/// What a reading says about which machine it came from, before it is matched to the
/// inventory.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum InstanceHint {
    /// The instance id, as configured on the target or labelled `instance_id`.
    Id(String),
    /// dcgm-exporter's `Hostname` (or `hostname`) label.
    Hostname(String),
}

impl std::fmt::Display for InstanceHint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            InstanceHint::Id(id) => write!(f, "instance {id}"),
            InstanceHint::Hostname(h) => write!(f, "host {h}"),
        }
    }
}

/// One GPU's reading before it is matched to an instance. Utilisation in percent (0–100).
#[derive(Clone, Debug, PartialEq)]
pub struct RawSample {
    pub hint: InstanceHint,
    /// The GPU's index (label `gpu`), else its `UUID`.
    pub gpu: String,
    pub at: DateTime<Utc>,
    pub utilization_percent: f64,
    pub memory_used_mib: Option<f64>,
    pub power_watts: Option<f64>,
}

/// What one read produced: the good samples, and how many lines or series were refused.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ReadReport {
    pub samples: Vec<RawSample>,
    /// Lines or series refused: malformed, NaN, negative, out of range, unattributable.
    pub bad: u32,
    /// The first `MAX_PROBLEMS` refusals, each naming its line or series.
    pub problems: Vec<String>,
}

impl ReadReport {
    /// Counts one refusal and keeps its description while there is room.
    pub fn refuse(&mut self, problem: impl FnOnce() -> String) {
        self.bad = self.bad.saturating_add(1);
        if self.problems.len() < MAX_PROBLEMS {
            self.problems.push(problem());
        }
    }

    /// Adds another read's samples and refusals to this one.
    pub fn extend(&mut self, other: ReadReport) {
        self.samples.extend(other.samples);
        self.bad = self.bad.saturating_add(other.bad);
        let room = MAX_PROBLEMS.saturating_sub(self.problems.len());
        self.problems.extend(other.problems.into_iter().take(room));
    }

    /// Logs the refusals (a warning naming `source` and the first problems), if any.
    pub fn log_problems(&self, source: &str) {
        if self.bad > 0 {
            tracing::warn!(
                source,
                bad = self.bad,
                kept = self.samples.len(),
                problems = ?self.problems,
                "utilisation read: some lines or series were refused; the rest is kept"
            );
        }
    }
}

/// `url` safe to show in an error or a log: no user or password, no secret query values.
pub(crate) fn shown_url(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut u) if !u.username().is_empty() || u.password().is_some() => {
            let _ = u.set_username("");
            let _ = u.set_password(None);
            crate::remote::http::loggable_url(u.as_str())
        }
        _ => crate::remote::http::loggable_url(url),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_in_errors_carry_no_credentials() {
        let u = shown_url("http://admin:s3cret@10.0.0.5:9090/prom?token=abcdef");
        assert!(!u.contains("s3cret") && !u.contains("admin") && !u.contains("abcdef"));
        assert!(u.contains("10.0.0.5:9090/prom"), "{u}");
        assert_eq!(shown_url("http://a:9400/metrics"), "http://a:9400/metrics");
    }

    #[test]
    fn a_report_counts_every_refusal_but_describes_only_the_first_few() {
        let mut r = ReadReport::default();
        for i in 0..25 {
            r.refuse(|| format!("line {i}"));
        }
        assert_eq!(r.bad, 25);
        assert_eq!(r.problems.len(), MAX_PROBLEMS);
        assert_eq!(r.problems[0], "line 0");
        let mut other = ReadReport::default();
        other.refuse(|| "x".into());
        r.extend(other);
        assert_eq!(r.bad, 26);
        assert_eq!(r.problems.len(), MAX_PROBLEMS);
    }
}
