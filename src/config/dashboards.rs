//! `[dashboards]`: what bursar does for the Grafana dashboards (dashboards/). Today, the
//! password of the read-only Postgres role `bursar_reader` they connect as.
use std::fmt;

use serde::Deserialize;

use super::ConfigError;

pub const READER_PASSWORD_ENV: &str = "BURSAR_DASHBOARDS_READER_PASSWORD";

/// `[dashboards]`. `Debug` redacts the password.
#[derive(Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct DashboardsConfig {
    /// When set, `serve` and `bursar migrate` give `bursar_reader` this password and let it
    /// log in (Postgres only). Unset: the role stays NOLOGIN.
    pub reader_password: Option<String>,
}

impl fmt::Debug for DashboardsConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DashboardsConfig")
            .field(
                "reader_password",
                &self.reader_password.as_ref().map(|_| "<redacted>"),
            )
            .finish()
    }
}

impl DashboardsConfig {
    /// BURSAR_DASHBOARDS_READER_PASSWORD.
    pub fn apply_env(&mut self, get: impl Fn(&str) -> Option<String>) {
        if let Some(v) = get(READER_PASSWORD_ENV) {
            self.reader_password = Some(v);
        }
    }

    /// An empty password is refused (the role would be LOGIN with no usable password).
    pub fn validate(&self) -> Result<(), ConfigError> {
        match &self.reader_password {
            Some(p) if p.is_empty() => Err(ConfigError::Field {
                field: "dashboards.reader_password".into(),
                detail: format!(
                    "must not be empty (unset it, or {READER_PASSWORD_ENV}, to keep the role NOLOGIN)"
                ),
            }),
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    #[test]
    fn the_password_comes_from_toml_or_the_environment_and_is_never_printed() {
        let c = Config::from_toml("[dashboards]\nreader_password = \"s3cret'pw\"\n").unwrap();
        assert_eq!(c.dashboards.reader_password.as_deref(), Some("s3cret'pw"));
        assert!(!format!("{c:?}").contains("s3cret"), "Debug redacts it");
        let mut c = Config::default();
        assert_eq!(c.dashboards.reader_password, None, "unset by default");
        c.apply_env(|k| (k == READER_PASSWORD_ENV).then(|| "from-env".into()))
            .unwrap();
        assert_eq!(c.dashboards.reader_password.as_deref(), Some("from-env"));
        assert!(!format!("{c:?}").contains("from-env"));
    }

    #[test]
    fn an_empty_password_or_an_unknown_key_is_refused_by_name() {
        let c = Config::from_toml("[dashboards]\nreader_password = \"\"\n").unwrap();
        let e = c.validate().unwrap_err().to_string();
        assert!(e.contains("dashboards.reader_password"), "{e}");
        let e = Config::from_toml("[dashboards]\nreader_pasword = \"x\"\n").unwrap_err();
        assert!(e.contains("reader_pasword"), "{e}");
    }
}
