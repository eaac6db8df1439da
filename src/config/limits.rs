//! `[limits]`: what one RPC may take of the server — its message size, its time when the
//! client sets no deadline — and how many RPCs run at once before more are shed.
use std::time::Duration;

use serde::Deserialize;

use super::{ConfigError, parse_dur};
use crate::domain::quote::quote;
use crate::serde_duration;

/// `[limits]`.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsConfig {
    /// The largest request or response message, in bytes (decoded and encoded).
    pub max_message_bytes: usize,
    /// The deadline of an RPC whose client sent none (`grpc-timeout`): DEADLINE_EXCEEDED
    /// after it.
    #[serde(with = "serde_duration")]
    pub default_deadline: Duration,
    /// RPCs in progress at once (health and reflection aside); one more is answered
    /// RESOURCE_EXHAUSTED at once instead of waiting.
    pub max_concurrent_rpcs: usize,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        LimitsConfig {
            max_message_bytes: 4 * 1024 * 1024,
            default_deadline: Duration::from_secs(30),
            max_concurrent_rpcs: 1024,
        }
    }
}

impl LimitsConfig {
    /// `BURSAR_LIMITS_MAX_MESSAGE_BYTES`, `BURSAR_LIMITS_DEFAULT_DEADLINE`,
    /// `BURSAR_LIMITS_MAX_CONCURRENT_RPCS`.
    pub fn apply_env(&mut self, get: impl Fn(&str) -> Option<String>) -> Result<(), ConfigError> {
        let number = |k: &str, v: &str| {
            v.trim().parse::<usize>().map_err(|_| ConfigError::Field {
                field: k.into(),
                detail: format!("{} is not a whole number", quote(v)),
            })
        };
        if let Some(v) = get("BURSAR_LIMITS_MAX_MESSAGE_BYTES") {
            self.max_message_bytes = number("BURSAR_LIMITS_MAX_MESSAGE_BYTES", &v)?;
        }
        if let Some(v) = get("BURSAR_LIMITS_DEFAULT_DEADLINE") {
            self.default_deadline = parse_dur("BURSAR_LIMITS_DEFAULT_DEADLINE", &v)?;
        }
        if let Some(v) = get("BURSAR_LIMITS_MAX_CONCURRENT_RPCS") {
            self.max_concurrent_rpcs = number("BURSAR_LIMITS_MAX_CONCURRENT_RPCS", &v)?;
        }
        Ok(())
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        let field = |f: &str, detail: &str| ConfigError::Field {
            field: format!("limits.{f}"),
            detail: detail.into(),
        };
        if self.max_message_bytes < 1024 {
            return Err(field("max_message_bytes", "must be at least 1024"));
        }
        if self.default_deadline.is_zero() {
            return Err(field("default_deadline", "must be greater than zero"));
        }
        if self.max_concurrent_rpcs == 0 {
            return Err(field("max_concurrent_rpcs", "must be at least 1"));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    #[test]
    fn defaults_toml_env_and_bad_values() {
        let d = Config::default().limits;
        assert_eq!(d.max_message_bytes, 4 << 20);
        assert_eq!(d.default_deadline, Duration::from_secs(30));
        assert_eq!(d.max_concurrent_rpcs, 1024);
        let mut c = Config::from_toml(
            "[limits]\nmax_message_bytes = 65536\ndefault_deadline = \"2s\"\nmax_concurrent_rpcs = 8\n",
        )
        .unwrap();
        c.validate().unwrap();
        assert_eq!(c.limits.default_deadline, Duration::from_secs(2));
        c.apply_env(|k| (k == "BURSAR_LIMITS_MAX_CONCURRENT_RPCS").then(|| "3".into()))
            .unwrap();
        assert_eq!(c.limits.max_concurrent_rpcs, 3);
        for (toml, key) in [
            (
                "[limits]\nmax_message_bytes = 10\n",
                "limits.max_message_bytes",
            ),
            (
                "[limits]\ndefault_deadline = \"0s\"\n",
                "limits.default_deadline",
            ),
            (
                "[limits]\nmax_concurrent_rpcs = 0\n",
                "limits.max_concurrent_rpcs",
            ),
        ] {
            let e = Config::from_toml(toml).unwrap().validate().unwrap_err();
            assert!(e.to_string().contains(key), "{e}");
        }
        let e = Config::default()
            .apply_env(|k| (k == "BURSAR_LIMITS_DEFAULT_DEADLINE").then(|| "soon".into()))
            .unwrap_err();
        assert!(e.to_string().contains("BURSAR_LIMITS_DEFAULT_DEADLINE"));
    }
}
