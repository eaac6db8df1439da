//! `bursar poll`: polls price sources into the database, once (`--once`) or on each
//! source's interval until Ctrl-C or SIGTERM.
use clap::Args;

use super::CliError;
use super::setup::{DbArgs, shutdown_signal};
use crate::clouds::SOURCE_NAMES;
use crate::config::Config;
use crate::store::Store;

#[derive(Args, Debug)]
pub struct PollArgs {
    /// Poll each selected source once and exit (otherwise poll on each source's interval).
    #[arg(long)]
    pub once: bool,
    /// Source to poll (repeatable); default: every enabled source. Naming a source polls
    /// it even if the config leaves it disabled.
    #[arg(long = "source", value_parser = clap::builder::PossibleValuesParser::new(SOURCE_NAMES))]
    pub sources: Vec<String>,
    #[command(flatten)]
    pub db: DbArgs,
}

/// Enables exactly the named sources (if any), then polls.
pub async fn run(a: PollArgs, mut cfg: Config) -> Result<(), CliError> {
    let (once, named) = (a.once, a.sources);
    for n in &named {
        if let Some(s) = cfg.sources.get_mut(n) {
            s.enabled = true;
        }
    }
    if !named.is_empty() {
        for n in SOURCE_NAMES {
            if !named.iter().any(|x| x == n)
                && let Some(s) = cfg.sources.get_mut(n)
            {
                s.enabled = false;
            }
        }
    }
    cfg.validate()?;
    let sources = crate::wiring::sources_from_config(&cfg.sources)
        .await
        .map_err(|e| CliError::Usage(e.to_string()))?;
    if sources.is_empty() {
        return Err(CliError::Usage(
            "no price source is enabled: name one with --source or enable it in the config".into(),
        ));
    }
    let store = Store::open(&cfg.database_url).await?;
    if once {
        let mut failed = Vec::new();
        for (s, _) in &sources {
            match crate::tasks::poll_once(&store, s.as_ref()).await {
                Ok(r) => crate::outln!(
                    "{}: {} offers ({} changed), {} spot bands, {} rejected, {} pages",
                    r.source,
                    r.offers,
                    r.observations,
                    r.bands,
                    r.rejected,
                    r.pages
                ),
                Err(e) => {
                    crate::outln!("{}: FAILED: {e}", s.name());
                    failed.push(s.name().to_string());
                }
            }
        }
        store.close().await;
        if failed.is_empty() {
            Ok(())
        } else {
            Err(CliError::Failed(format!(
                "sources failed: {}",
                failed.join(", ")
            )))
        }
    } else {
        let (tx, rx) = tokio::sync::watch::channel(false);
        let catalog = crate::domain::catalog::CatalogHandle::default();
        let mut loops = Vec::new();
        for (s, interval) in sources {
            loops.push(tokio::spawn(crate::tasks::poller::source_loop(
                store.clone(),
                catalog.clone(),
                s,
                interval,
                rx.clone(),
            )));
        }
        shutdown_signal().await;
        let _ = tx.send(true);
        for l in loops {
            let _ = l.await;
        }
        store.close().await;
        Ok(())
    }
}
