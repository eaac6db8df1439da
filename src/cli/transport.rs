//! How a client command or the agent reaches the server: `TransportArgs` (`--token`,
//! `--ca-file`, `--cert-file`, `--key-file`), the TLS endpoint for an `https://` server, and
//! `BearerToken`, which adds `authorization: Bearer …` to every call. The token is never
//! printed, in an error or in `Debug`.
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::Args;
use tonic::metadata::{AsciiMetadataValue, MetadataValue};
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};

use crate::domain::quote::quote;

#[derive(Args, Clone, Default)]
pub struct TransportArgs {
    /// Bearer token sent with every call (env BURSAR_TOKEN).
    #[arg(long, env = "BURSAR_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// PEM CA certificate to trust for an https:// server (default: the system's roots).
    #[arg(long, env = "BURSAR_CA_FILE")]
    pub ca_file: Option<PathBuf>,
    /// PEM client certificate for a server that requires mutual TLS (with --key-file).
    #[arg(long, env = "BURSAR_CERT_FILE")]
    pub cert_file: Option<PathBuf>,
    /// PEM private key of --cert-file.
    #[arg(long, env = "BURSAR_KEY_FILE")]
    pub key_file: Option<PathBuf>,
}

impl fmt::Debug for TransportArgs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TransportArgs")
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .field("ca_file", &self.ca_file)
            .field("cert_file", &self.cert_file)
            .field("key_file", &self.key_file)
            .finish()
    }
}

/// Adds the bearer token (when there is one) to each call.
#[derive(Clone)]
pub struct BearerToken(Option<AsciiMetadataValue>);

impl tonic::service::Interceptor for BearerToken {
    fn call(&mut self, mut req: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        if let Some(v) = &self.0 {
            req.metadata_mut().insert("authorization", v.clone());
        }
        Ok(req)
    }
}

/// The channel client commands use: the connection plus the token.
pub type ClientChannel = InterceptedService<Channel, BearerToken>;

impl TransportArgs {
    /// The `authorization` value of `--token`; a usage error (which does not show the
    /// token) when it cannot be a header.
    pub fn bearer(&self) -> Result<BearerToken, String> {
        let Some(t) = self
            .token
            .as_deref()
            .map(str::trim)
            .filter(|t| !t.is_empty())
        else {
            return Ok(BearerToken(None));
        };
        let mut v: AsciiMetadataValue =
            MetadataValue::try_from(format!("Bearer {t}")).map_err(|_| {
                "--token: not usable in a header (printable ASCII without line breaks)".to_string()
            })?;
        v.set_sensitive(true);
        Ok(BearerToken(Some(v)))
    }

    /// The endpoint of `uri` (already with its scheme), with TLS for `https://`.
    pub fn endpoint(&self, uri: &str, shown: &str) -> Result<Endpoint, String> {
        let mut e = Endpoint::from_shared(uri.to_string())
            .map_err(|e| format!("--server {}: {e}", quote(shown)))?
            .connect_timeout(Duration::from_secs(5))
            .timeout(Duration::from_secs(30));
        let https = uri.starts_with("https://");
        if !https {
            if self.ca_file.is_some() || self.cert_file.is_some() {
                return Err(format!(
                    "--ca-file and --cert-file need an https:// server, not {}",
                    quote(shown)
                ));
            }
            return Ok(e);
        }
        let mut tls = ClientTlsConfig::new();
        tls = match &self.ca_file {
            Some(p) => tls.ca_certificate(Certificate::from_pem(read("--ca-file", p)?)),
            None => tls.with_native_roots(),
        };
        match (&self.cert_file, &self.key_file) {
            (Some(c), Some(k)) => {
                tls = tls.identity(Identity::from_pem(
                    read("--cert-file", c)?,
                    read("--key-file", k)?,
                ))
            }
            (None, None) => {}
            _ => return Err("--cert-file and --key-file go together".into()),
        }
        // The process's rustls provider, as the server's (ring).
        let _ = tokio_rustls::rustls::crypto::ring::default_provider().install_default();
        e = e
            .tls_config(tls)
            .map_err(|e| format!("--server {}: TLS: {e}", quote(shown)))?;
        Ok(e)
    }
}

fn read(flag: &str, p: &Path) -> Result<Vec<u8>, String> {
    std::fs::read(p).map_err(|e| format!("{flag} {}: {e}", p.display()))
}
