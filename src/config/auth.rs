//! `[auth]` and `[[auth.tokens]]`: bearer tokens by their SHA-256, with roles. Validated into
//! a `domain::auth::TokenTable`; errors name the entry and key (`auth.tokens[1].sha256`).
//! `BURSAR_AUTH_REQUIRED` and `BURSAR_AUTH_TOKENS` override the file.
use serde::Deserialize;

use super::{ConfigError, parse_bool};
use crate::domain::auth::{TokenSpec, TokenTable};

/// `[auth]`.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct AuthConfig {
    /// Every RPC (but health and reflection) and `/report` need a token. `false` only for
    /// local development. With no token configured, a server listening on loopback only runs
    /// open (with a warning); elsewhere it refuses to start.
    pub required: bool,
    /// Whether `/metrics` answers without a token. `false`: any configured token.
    pub metrics_open: bool,
    pub tokens: Vec<TokenConfig>,
}

impl Default for AuthConfig {
    fn default() -> Self {
        AuthConfig {
            required: true,
            metrics_open: true,
            tokens: Vec::new(),
        }
    }
}

/// `[[auth.tokens]]`: the token itself never sits in the file, only its SHA-256.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct TokenConfig {
    pub name: String,
    pub sha256: String,
    pub roles: Vec<String>,
}

pub const REQUIRED_ENV: &str = "BURSAR_AUTH_REQUIRED";
pub const TOKENS_ENV: &str = "BURSAR_AUTH_TOKENS";
pub const METRICS_OPEN_ENV: &str = "BURSAR_AUTH_METRICS_OPEN";

impl AuthConfig {
    /// `BURSAR_AUTH_REQUIRED`, `BURSAR_AUTH_METRICS_OPEN` (booleans) and `BURSAR_AUTH_TOKENS`
    /// (replaces the file's tokens): `name:role,role:sha256` entries separated by `;`.
    pub fn apply_env(&mut self, get: impl Fn(&str) -> Option<String>) -> Result<(), ConfigError> {
        if let Some(v) = get(REQUIRED_ENV) {
            self.required = parse_bool(REQUIRED_ENV, &v)?;
        }
        if let Some(v) = get(METRICS_OPEN_ENV) {
            self.metrics_open = parse_bool(METRICS_OPEN_ENV, &v)?;
        }
        if let Some(v) = get(TOKENS_ENV) {
            self.tokens = parse_tokens_env(&v)?;
        }
        Ok(())
    }

    /// The token table; an error names the entry and key.
    pub fn table(&self) -> Result<TokenTable, ConfigError> {
        let specs: Vec<TokenSpec> = self
            .tokens
            .iter()
            .map(|t| TokenSpec {
                name: t.name.clone(),
                sha256: t.sha256.clone(),
                roles: t.roles.clone(),
            })
            .collect();
        TokenTable::new(&specs).map_err(|e| ConfigError::Field {
            field: format!("auth.tokens[{}].{}", e.index, e.field),
            detail: e.detail,
        })
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        self.table().map(|_| ())
    }
}

fn parse_tokens_env(v: &str) -> Result<Vec<TokenConfig>, ConfigError> {
    v.split(';')
        .map(str::trim)
        .filter(|e| !e.is_empty())
        .enumerate()
        .map(|(i, entry)| {
            let mut parts = entry.splitn(3, ':');
            match (parts.next(), parts.next(), parts.next()) {
                (Some(name), Some(roles), Some(sha256)) => Ok(TokenConfig {
                    name: name.trim().into(),
                    sha256: sha256.trim().into(),
                    roles: super::parse_list(roles),
                }),
                // The entry is not echoed: it may be a token pasted by mistake.
                _ => Err(ConfigError::Field {
                    field: format!("{TOKENS_ENV} entry {}", i + 1),
                    detail: "expected name:role[,role…]:sha256, entries separated by ';'".into(),
                }),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use crate::domain::auth::{Role, sha256_hex};

    #[test]
    fn tokens_from_the_file_and_the_environment() {
        let c = Config::default();
        assert!(c.auth.required, "required by default");
        assert!(c.auth.metrics_open);
        assert!(c.auth.tokens.is_empty());
        let text = format!(
            "[auth]\nrequired = true\n[[auth.tokens]]\nname = \"airflow\"\nsha256 = \"{}\"\nroles = [\"placement\"]\n",
            sha256_hex("s3cr3t")
        );
        let c = Config::from_toml(&text).unwrap();
        c.validate().unwrap();
        let t = c.auth.table().unwrap();
        let caller = t.authenticate(b"s3cr3t").unwrap();
        assert_eq!(&*caller.name, "airflow");
        assert!(caller.roles.has(Role::Placement));

        let mut c = Config::default();
        let env = format!(
            "agent:fleet:{} ; ops:admin,finance:{}",
            sha256_hex("a"),
            sha256_hex("o")
        );
        c.apply_env(|k| match k {
            TOKENS_ENV => Some(env.clone()),
            REQUIRED_ENV => Some("false".into()),
            METRICS_OPEN_ENV => Some("no".into()),
            _ => None,
        })
        .unwrap();
        assert!(!c.auth.required && !c.auth.metrics_open);
        let t = c.auth.table().unwrap();
        assert_eq!(t.len(), 2);
        assert!(t.authenticate(b"o").unwrap().roles.has(Role::Finance));
    }

    #[test]
    fn bad_tokens_name_the_entry_and_never_echo_a_token() {
        let text = format!(
            "[[auth.tokens]]\nname = \"a\"\nsha256 = \"{}\"\nroles = [\"fleet\"]\n[[auth.tokens]]\nname = \"b\"\nsha256 = \"plain-token-by-mistake\"\nroles = [\"fleet\"]\n",
            sha256_hex("x")
        );
        let e = Config::from_toml(&text)
            .unwrap()
            .validate()
            .unwrap_err()
            .to_string();
        assert!(e.contains("auth.tokens[1].sha256"), "{e}");
        assert!(!e.contains("plain-token-by-mistake"), "{e}");
        let e = Config::from_toml("[[auth.tokens]]\nname = \"a\"\nsha256 = \"x\"\n").unwrap_err();
        assert!(e.contains("roles"), "{e}");
        let e = Config::from_toml("[auth]\nrequierd = false\n").unwrap_err();
        assert!(e.contains("requierd"), "{e}");
        let e = Config::default()
            .apply_env(|k| (k == TOKENS_ENV).then(|| "my-secret-token".into()))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains(TOKENS_ENV) && !e.contains("my-secret-token"),
            "{e}"
        );
        let e = Config::default()
            .apply_env(|k| (k == REQUIRED_ENV).then(|| "maybe".into()))
            .unwrap_err()
            .to_string();
        assert!(e.contains(REQUIRED_ENV), "{e}");
    }
}
