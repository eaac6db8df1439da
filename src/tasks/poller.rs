//! Price polling: one loop per enabled source. A walk is fetched whole, then written in one
//! transaction; a failing source is marked failed in `source_status` and its earlier prices
//! stay. A failing source never stops the server or the other sources.
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use tokio::sync::watch;

use crate::clouds::{PriceSource, seed};
use crate::domain::Catalog;
use crate::domain::catalog::CatalogHandle;
use crate::metrics;
use crate::store::{Store, StoreError};
use crate::tasks::changes::Wake;

/// What one poll of one source did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PollReport {
    pub source: String,
    pub offers: u64,
    pub observations: u64,
    pub bands: u64,
    pub rejected: u64,
    pub pages: u32,
}

#[derive(Debug, thiserror::Error)]
pub enum PollError {
    #[error("source {source_name} failed: {error}")]
    Source { source_name: String, error: String },
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// How long a poll keeps retrying its write while another writer (a SQLite ingest) holds
/// the database: as long as an ingest may wait for another.
const WRITE_PATIENCE: Duration = crate::store::DEFAULT_INGEST_LOCK_WAIT;

/// Polls `source` once and stores the result. On failure records it and keeps old prices.
pub async fn poll_once(store: &Store, source: &dyn PriceSource) -> Result<PollReport, PollError> {
    let name = source.name().to_string();
    let started = Utc::now();
    let known = store.known_instances().await?;
    let batch = match source.fetch(&known).await {
        Ok(b) => b,
        Err(e) => {
            let msg = e.to_string();
            tracing::warn!(source = %name, error = %msg, "price source failed; earlier prices kept");
            metrics::global().price_poll(&name, false, started);
            store.record_source_failure(&name, &msg, started).await?;
            return Err(PollError::Source {
                source_name: name,
                error: msg,
            });
        }
    };
    for reason in batch.rejected.iter().take(20) {
        tracing::debug!(source = %name, %reason, "item rejected");
    }
    let mut current = store.current_prices().await?;
    // A SQLite ingest holds the database's write lock for a whole file, longer than one
    // statement's busy timeout: wait it out rather than lose a good walk of the feed.
    let (since, mut waiting) = (std::time::Instant::now(), false);
    let write = loop {
        let write = async {
            let stats = store.upsert_offers(&batch.offers, &mut current).await?;
            let bands = store.upsert_bands(&batch.bands, started).await?;
            Ok::<_, StoreError>((stats, bands))
        }
        .await;
        match write {
            Err(e) if e.is_busy() && since.elapsed() < WRITE_PATIENCE => {
                if !waiting {
                    tracing::warn!(source = %name, error = %e, "another writer holds the database; the prices will be stored when it lets go");
                    waiting = true;
                }
                tokio::time::sleep(crate::store::BUSY_RETRY).await;
            }
            other => break other,
        }
    };
    let (stats, bands) = match write {
        Ok(v) => v,
        Err(e) => {
            metrics::global().price_poll(&name, false, started);
            store
                .record_source_failure(&name, &format!("storing prices: {e}"), started)
                .await?;
            return Err(e.into());
        }
    };
    let rows = stats.offers + bands;
    store.record_source_success(&name, rows, started).await?;
    metrics::global().price_poll(&name, true, started);
    let report = PollReport {
        source: name,
        offers: stats.offers,
        observations: stats.observations,
        bands,
        rejected: batch.rejected.len() as u64,
        pages: batch.pages,
    };
    tracing::info!(
        source = %report.source,
        offers = report.offers,
        changed = report.observations,
        bands = report.bands,
        rejected = report.rejected,
        pages = report.pages,
        "poll finished"
    );
    Ok(report)
}

/// Reloads the in-memory catalog from the store and swaps it in.
pub async fn refresh_catalog(store: &Store, handle: &CatalogHandle) -> Result<usize, StoreError> {
    // Read first: a write landing during the load moves it again, so the next check reloads.
    let version = store.catalog_generation().await?;
    let (offers, bands) = store.load_catalog().await?;
    let n = offers.len();
    // Sorting and indexing the whole catalog takes a few hundred milliseconds of one core:
    // on the blocking pool, so the runtime's workers keep answering requests meanwhile.
    let catalog = tokio::task::spawn_blocking(move || Catalog::new(offers, bands))
        .await
        .map_err(|e| StoreError::Corrupt {
            table: "price_current",
            detail: format!("building the catalog failed: {e}"),
        })?;
    handle.swap_built_from(catalog, Some(version));
    Ok(n)
}

/// Rebuilds the catalog only if the stored prices, hardware or spot bands changed since it
/// was built (another replica's poll, an import); says whether it did.
pub async fn refresh_if_changed(store: &Store, handle: &CatalogHandle) -> Result<bool, StoreError> {
    if handle.built_from() == Some(store.catalog_generation().await?) {
        return Ok(false);
    }
    refresh_catalog(store, handle).await?;
    Ok(true)
}

/// Loads the shipped seed snapshot when the store holds no prices. Returns offers written.
pub async fn seed_if_empty(store: &Store) -> Result<u64, PollError> {
    if store.count_current().await? > 0 {
        return Ok(0);
    }
    let offers = seed::seed_offers().map_err(|e| PollError::Source {
        source_name: "seed".into(),
        error: e.to_string(),
    })?;
    let mut current = store.current_prices().await?;
    let stats = store.upsert_offers(&offers, &mut current).await?;
    store
        .record_source_success("seed", stats.offers, Utc::now())
        .await?;
    tracing::info!(
        offers = stats.offers,
        "database was empty: loaded the seed price snapshot"
    );
    Ok(stats.offers)
}

/// Polls `source` every `interval` until shutdown, refreshing the catalog after each poll.
pub async fn source_loop(
    store: Store,
    catalog: CatalogHandle,
    source: Arc<dyn PriceSource>,
    interval: Duration,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        // Each poll runs in its own task so that a panic in an adapter is recorded as a
        // failed poll instead of silently ending this loop.
        let (s, src) = (store.clone(), source.clone());
        let mut poll = tokio::spawn(async move { poll_once(&s, src.as_ref()).await });
        tokio::select! {
            r = &mut poll => match r {
                // The poll's write moved `catalog_generation`; a concurrent refresh may
                // already have built from it.
                Ok(Ok(_)) => {
                    if let Err(e) = refresh_if_changed(&store, &catalog).await {
                        tracing::warn!(error = %e, "catalog refresh failed");
                    }
                }
                Ok(Err(e)) => tracing::warn!(source = source.name(), error = %e, "poll failed"),
                Err(join) => {
                    let msg = format!("poll task failed: {join}");
                    tracing::error!(source = source.name(), error = %msg);
                    metrics::global().price_poll(source.name(), false, Utc::now());
                    if let Err(e) = store.record_source_failure(source.name(), &msg, Utc::now()).await {
                        tracing::warn!(error = %e, "cannot record source failure");
                    }
                }
            },
            _ = shutdown.changed() => {
                poll.abort();
                return;
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(interval) => {}
            _ = shutdown.changed() => return,
        }
    }
}

/// Checks every `every`, and whenever `wake` says the catalog changed (a notification from
/// another process: `tasks::changes`), whether the stored catalog data moved (other
/// replicas' polls, imports) and rebuilds the catalog only then: an unchanged store costs
/// one small query.
pub async fn refresh_loop(
    store: Store,
    catalog: CatalogHandle,
    every: Duration,
    mut wake: Wake,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = wake.changed() => {}
            _ = shutdown.changed() => return,
        }
        if let Err(e) = refresh_if_changed(&store, &catalog).await {
            tracing::warn!(error = %e, "catalog refresh failed");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clouds::{SourceBatch, SourceError};
    use crate::domain::KnownInstances;
    use crate::domain::{Currency, Market, Offer, OfferKey, Provider};

    /// A feed that always answers with one offer.
    struct OneOffer;

    #[async_trait::async_trait]
    impl PriceSource for OneOffer {
        fn name(&self) -> &str {
            "one-offer"
        }
        fn provider(&self) -> Provider {
            Provider::Aws
        }
        async fn fetch(&self, _known: &KnownInstances) -> Result<SourceBatch, SourceError> {
            Ok(SourceBatch {
                offers: vec![Offer {
                    key: OfferKey {
                        provider: Provider::Aws,
                        region: "us-east-1".into(),
                        zone: String::new(),
                        instance_type: "m5.large".into(),
                        market: Market::OnDemand,
                    },
                    price_per_hour: "0.096".parse().unwrap(),
                    currency: Currency::USD,
                    attrs: None,
                    source: "one-offer".into(),
                    observed_at: Utc::now(),
                }],
                bands: Vec::new(),
                rejected: Vec::new(),
                pages: 1,
            })
        }
    }

    /// SQLite only: there an ingest holds the database's one write lock for a whole file,
    /// longer than a statement's busy timeout (Postgres writers do not wait on it).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_poll_waits_out_an_ingests_write_lock_and_stores_its_prices() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("p.db").display());
        let store = Store::open(&url).await.unwrap();
        let holder = store.begin_ingest().await.unwrap();
        let poll = {
            let store = store.clone();
            tokio::spawn(async move { poll_once(&store, &OneOffer).await })
        };
        // Past the 10 s busy timeout: the first write has failed and is being retried.
        tokio::time::sleep(Duration::from_millis(
            crate::store::SQLITE_BUSY_TIMEOUT_MS + 1500,
        ))
        .await;
        assert!(!poll.is_finished(), "the poll waits instead of failing");
        holder.commit().await.unwrap();
        let report = tokio::time::timeout(Duration::from_secs(30), poll)
            .await
            .expect("the poll goes on once the lock is free")
            .unwrap()
            .unwrap();
        assert_eq!(report.offers, 1);
        assert_eq!(store.count_current().await.unwrap(), 1);
        let status = store.source_statuses().await.unwrap();
        assert_eq!(status[0].state, "ok");
        store.close().await;
    }
}
