//! What a command sets up before it runs: `DbArgs` (`--database-url`, `--config`) and
//! `load_config` for the commands that open the database themselves, `init_logging` (text
//! or JSON on standard error), and `shutdown_signal` (Ctrl-C or SIGTERM) for the commands
//! that run until they are stopped.
use std::path::PathBuf;

use clap::Args;

use super::CliError;
use crate::config::Config;

#[derive(Args, Debug, Clone)]
pub struct DbArgs {
    /// Database URL: sqlite://FILE or postgres://USER@HOST:PORT/DB.
    #[arg(long, env = "BURSAR_DATABASE_URL")]
    pub database_url: Option<String>,
    /// TOML config file (default: ./bursar.toml if present).
    #[arg(long, env = "BURSAR_CONFIG")]
    pub config: Option<PathBuf>,
}

/// The configuration (file, then `BURSAR_*`), with `--database-url` over both.
pub fn load_config(db: &DbArgs) -> Result<Config, CliError> {
    let mut cfg = Config::load(db.config.as_deref())?;
    if let Some(url) = &db.database_url {
        cfg.database_url = url.clone();
    }
    Ok(cfg)
}

/// Logs to standard error in `format` ("json" or text) at `default_level` unless
/// `RUST_LOG` says otherwise.
pub fn init_logging(format: &str, default_level: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_level));
    // Colour only on a terminal (a log file or a journal gets plain text), and not there
    // either under NO_COLOR, which an explicit with_ansi would otherwise override.
    let colour = std::io::IsTerminal::is_terminal(&std::io::stderr())
        && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(colour)
        .with_writer(std::io::stderr);
    let _ = if format == "json" {
        builder.json().try_init()
    } else {
        builder.try_init()
    };
}

/// Resolves on Ctrl-C or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {}
        _ = term => {}
    }
}
