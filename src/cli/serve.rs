//! `bursar serve`: the gRPC service on `--listen` and the HTTP port (`/metrics`) on
//! `--metrics-listen`, until Ctrl-C or SIGTERM. SIGHUP re-reads the config file's `[auth]`
//! (token rotation without a restart; see `server::reload`).
use clap::Args;

use super::CliError;
use super::setup::{DbArgs, shutdown_signal};
use crate::config::Config;
use crate::domain::quote::quote;

#[derive(Args, Debug)]
pub struct ServeArgs {
    /// Address to listen on.
    #[arg(long, env = "BURSAR_LISTEN")]
    pub listen: Option<String>,
    /// Address of the HTTP port serving `/metrics` (default 127.0.0.1:9464); "" turns it
    /// off.
    #[arg(long, env = "BURSAR_METRICS_LISTEN")]
    pub metrics_listen: Option<String>,
    #[command(flatten)]
    pub db: DbArgs,
}

/// Binds `--listen` (or the configured address) and runs `server::run` until stopped.
pub async fn run(a: ServeArgs, mut cfg: Config) -> Result<(), CliError> {
    if let Some(l) = a.listen {
        cfg.listen = l;
    }
    if let Some(m) = a.metrics_listen {
        cfg.metrics_listen = m;
    }
    let addr: std::net::SocketAddr = cfg.listen.parse().map_err(|_| {
        CliError::Usage(format!(
            "--listen {} is not an address like 127.0.0.1:50051",
            quote(&cfg.listen)
        ))
    })?;
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| CliError::Failed(format!("cannot listen on {addr}: {e}")))?;
    crate::server::run(cfg, listener, shutdown_signal())
        .await
        .map_err(|e| {
            if e.is_configuration() {
                CliError::Usage(e.to_string())
            } else {
                CliError::Failed(e.to_string())
            }
        })
}
