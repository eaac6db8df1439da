//! SIGHUP: `serve` re-reads its config file (and `BURSAR_*`) and swaps the token table,
//! with no restart. A config that does not load or validate keeps the tokens in force and
//! logs the error, which names the field. Only `[auth]` is applied; other changes need a
//! restart (the log says so).
use std::path::PathBuf;
use std::sync::Arc;

use tokio::sync::watch;

use super::auth::AuthHandle;
use crate::config::Config;

/// Runs until `stop` turns true.
pub async fn on_sighup(path: PathBuf, auth: Arc<AuthHandle>, mut stop: watch::Receiver<bool>) {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut hup = match signal(SignalKind::hangup()) {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, "cannot listen for SIGHUP: tokens reload only with a restart");
                return;
            }
        };
        loop {
            tokio::select! {
                got = hup.recv() => {
                    if got.is_none() {
                        return;
                    }
                    reload(&path, &auth);
                }
                _ = stop.wait_for(|s| *s) => return,
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = (path, auth);
        let _ = stop.wait_for(|s| *s).await;
    }
}

fn reload(path: &std::path::Path, auth: &AuthHandle) {
    let result = Config::load(Some(path)).and_then(|cfg| auth.reload(&cfg.auth));
    match result {
        Ok(()) => tracing::info!(
            file = %path.display(),
            "SIGHUP: [auth] reloaded (other sections apply at the next restart)"
        ),
        Err(e) => tracing::error!(
            file = %path.display(),
            error = %e,
            "SIGHUP: config not reloaded; the tokens in force stay"
        ),
    }
}
