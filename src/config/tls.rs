//! `[tls]`: the certificate and key both ports (gRPC and HTTP) serve, and the CA whose
//! client certificates they require (mutual TLS) when `client_ca_file` is set. The files
//! are read by `serve` at start; here only which keys go together is checked.
use std::path::PathBuf;

use serde::Deserialize;

use super::ConfigError;

/// `[tls]`. Empty: plaintext.
#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct TlsConfig {
    /// PEM certificate chain of the server (leaf first).
    pub cert_file: Option<PathBuf>,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1).
    pub key_file: Option<PathBuf>,
    /// PEM CA certificate(s): clients must present a certificate it signed.
    pub client_ca_file: Option<PathBuf>,
}

impl TlsConfig {
    /// `BURSAR_TLS_CERT_FILE`, `BURSAR_TLS_KEY_FILE`, `BURSAR_TLS_CLIENT_CA_FILE` (empty:
    /// unset).
    pub fn apply_env(&mut self, get: impl Fn(&str) -> Option<String>) {
        for (var, slot) in [
            ("BURSAR_TLS_CERT_FILE", &mut self.cert_file),
            ("BURSAR_TLS_KEY_FILE", &mut self.key_file),
            ("BURSAR_TLS_CLIENT_CA_FILE", &mut self.client_ca_file),
        ] {
            if let Some(v) = get(var) {
                *slot = (!v.trim().is_empty()).then(|| PathBuf::from(v.trim()));
            }
        }
    }

    pub fn enabled(&self) -> bool {
        self.cert_file.is_some()
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        let field = |f: &str, detail: &str| ConfigError::Field {
            field: format!("tls.{f}"),
            detail: detail.into(),
        };
        match (&self.cert_file, &self.key_file) {
            (Some(_), None) => return Err(field("key_file", "required with tls.cert_file")),
            (None, Some(_)) => return Err(field("cert_file", "required with tls.key_file")),
            _ => {}
        }
        if self.client_ca_file.is_some() && self.cert_file.is_none() {
            return Err(field(
                "client_ca_file",
                "mutual TLS needs the server's own tls.cert_file and tls.key_file",
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use crate::config::Config;

    #[test]
    fn cert_and_key_go_together_and_env_overrides() {
        let c = Config::default();
        assert!(!c.tls.enabled());
        let c = Config::from_toml("[tls]\ncert_file = \"/c.pem\"\n").unwrap();
        let e = c.validate().unwrap_err().to_string();
        assert!(e.contains("tls.key_file"), "{e}");
        let c = Config::from_toml("[tls]\nclient_ca_file = \"/ca.pem\"\n").unwrap();
        assert!(
            c.validate()
                .unwrap_err()
                .to_string()
                .contains("tls.client_ca_file")
        );
        let mut c = Config::default();
        c.apply_env(|k| match k {
            "BURSAR_TLS_CERT_FILE" => Some("/c.pem".into()),
            "BURSAR_TLS_KEY_FILE" => Some("/k.pem".into()),
            _ => None,
        })
        .unwrap();
        c.validate().unwrap();
        assert!(c.tls.enabled());
        assert_eq!(
            c.tls.key_file.as_deref(),
            Some(std::path::Path::new("/k.pem"))
        );
    }
}
