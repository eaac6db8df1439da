//! `[leader]`: the singleton lease several replicas elect their leader with (Postgres; on
//! SQLite this process is always the leader). `BURSAR_LEADER_LEASE`, `BURSAR_LEADER_HOLDER`.
use std::time::Duration;

use serde::Deserialize;

use super::ConfigError;
use crate::domain::leader::MIN_LEASE;
use crate::domain::quote::quote;
use crate::serde_duration;

/// `[leader]`.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct LeaderConfig {
    /// How long a lease lasts without renewal (renewed every third of it); a follower takes
    /// over within two of them after the leader dies.
    #[serde(with = "serde_duration")]
    pub lease: Duration,
    /// This replica's name in the lease. Empty: `hostname:pid`.
    pub holder: String,
}

impl Default for LeaderConfig {
    fn default() -> Self {
        LeaderConfig {
            lease: Duration::from_secs(10),
            holder: String::new(),
        }
    }
}

impl LeaderConfig {
    /// The holder's name: as configured, else `hostname:pid`.
    pub fn holder(&self) -> String {
        if !self.holder.trim().is_empty() {
            return self.holder.trim().to_string();
        }
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .or_else(|_| std::fs::read_to_string("/etc/hostname"))
            .map(|h| h.trim().to_string())
            .ok()
            .filter(|h| !h.is_empty())
            .unwrap_or_else(|| "localhost".into());
        format!("{host}:{}", std::process::id())
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.lease < MIN_LEASE {
            return Err(ConfigError::Field {
                field: "leader.lease".into(),
                detail: format!(
                    "{} is shorter than the minimum of {}",
                    humantime::format_duration(self.lease),
                    humantime::format_duration(MIN_LEASE)
                ),
            });
        }
        if self.holder.chars().count() > 200 || self.holder.chars().any(char::is_control) {
            return Err(ConfigError::Field {
                field: "leader.holder".into(),
                detail: format!(
                    "{} must be one line of at most 200 characters",
                    quote(&self.holder)
                ),
            });
        }
        Ok(())
    }

    /// `BURSAR_LEADER_LEASE`, `BURSAR_LEADER_HOLDER`.
    pub fn apply_env(&mut self, get: &impl Fn(&str) -> Option<String>) -> Result<(), ConfigError> {
        if let Some(v) = get("BURSAR_LEADER_LEASE") {
            self.lease = humantime::parse_duration(v.trim()).map_err(|e| ConfigError::Field {
                field: "BURSAR_LEADER_LEASE".into(),
                detail: format!("{}: {e}", quote(&v)),
            })?;
        }
        if let Some(v) = get("BURSAR_LEADER_HOLDER") {
            self.holder = v;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_env_and_validation() {
        let mut c = LeaderConfig::default();
        assert_eq!(c.lease, Duration::from_secs(10));
        let h = c.holder();
        assert!(h.ends_with(&format!(":{}", std::process::id())), "{h}");
        c.apply_env(&|k: &str| match k {
            "BURSAR_LEADER_LEASE" => Some("2s".into()),
            "BURSAR_LEADER_HOLDER" => Some("pod-a".into()),
            _ => None,
        })
        .unwrap();
        assert_eq!(
            (c.lease, c.holder().as_str()),
            (Duration::from_secs(2), "pod-a")
        );
        c.validate().unwrap();
        let e = c
            .apply_env(&|k: &str| (k == "BURSAR_LEADER_LEASE").then(|| "soon".into()))
            .unwrap_err();
        assert!(e.to_string().contains("BURSAR_LEADER_LEASE"), "{e}");
        c.lease = Duration::from_millis(10);
        assert!(
            c.validate()
                .unwrap_err()
                .to_string()
                .contains("leader.lease")
        );
    }
}
