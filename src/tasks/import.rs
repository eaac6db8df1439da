//! `bursar import-catalog DIR`: streams a SkyPilot v8 catalog folder into the store. The CSV
//! reader runs on a blocking thread and hands batches over a bounded channel to the async
//! writer, so reading and writing overlap and memory stays bounded. A SkyPilot catalog has
//! no date of its own, so its offers are dated by the import (or by `--observed-at`), which
//! lets them go stale after `placement.max_price_age`.
use std::path::Path;
use std::time::Instant;

use chrono::{DateTime, Utc};
use indicatif::{ProgressBar, ProgressStyle};

use crate::clouds::skypilot::{self, ImportOptions, ImportReport};
use crate::domain::Offer;
use crate::store::{Store, StoreError};

#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("catalog: {0}")]
    Catalog(#[from] skypilot::CatalogError),
    #[error("import reader stopped unexpectedly: {0}")]
    Join(String),
}

/// What an import did, for the CLI and benchmarks.
#[derive(Debug)]
pub struct ImportOutcome {
    pub report: ImportReport,
    pub offers_written: u64,
    pub observations: u64,
    pub seconds: f64,
}

/// Imports `dir` into `store`, dating every offer `observed_at` (default: now). `progress`
/// shows a bar on stderr.
pub async fn import_catalog(
    store: &Store,
    dir: &Path,
    observed_at: Option<DateTime<Utc>>,
    progress: bool,
) -> Result<ImportOutcome, ImportError> {
    let started = Instant::now();
    let at = Utc::now();
    let observed_at = observed_at.unwrap_or(at);
    let total_bytes: u64 = ["aws", "gcp", "azure"]
        .iter()
        .filter_map(|p| std::fs::metadata(dir.join(p).join("vms.csv")).ok())
        .map(|m| m.len())
        .sum();
    let bar = if progress {
        let b = ProgressBar::new(total_bytes);
        b.set_style(
            ProgressStyle::with_template(
                "{spinner} {msg} [{bar:30}] {bytes}/{total_bytes} ({eta})",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        b
    } else {
        ProgressBar::hidden()
    };

    let (tx, mut rx) = tokio::sync::mpsc::channel::<Vec<Offer>>(4);
    let dir_owned = dir.to_path_buf();
    let bar_reader = bar.clone();
    let reader = tokio::task::spawn_blocking(move || {
        let mut done_bytes = 0u64;
        let opts = ImportOptions {
            observed_at: Some(observed_at),
            ..ImportOptions::default()
        };
        skypilot::read_catalog_dir(
            &dir_owned,
            &opts,
            |batch| tx.blocking_send(batch).map_err(|_| "writer stopped"),
            |p| {
                bar_reader.set_message(format!("{} · {} offers", p.provider, p.offers_total));
                bar_reader.set_position(done_bytes + p.bytes_read);
                if p.file_done {
                    done_bytes += p.bytes_total;
                }
            },
        )
    });

    let mut current = store.current_prices().await?;
    let mut written = 0u64;
    let mut observations = 0u64;
    let mut write_error = None;
    while let Some(batch) = rx.recv().await {
        match store.upsert_offers(&batch, &mut current).await {
            Ok(s) => {
                written += s.offers;
                observations += s.observations;
            }
            Err(e) => {
                write_error = Some(e);
                break;
            }
        }
    }
    drop(rx);
    let read = reader.await.map_err(|e| ImportError::Join(e.to_string()))?;
    bar.finish_and_clear();
    if let Some(e) = write_error {
        store
            .record_source_failure("catalog", &e.to_string(), at)
            .await
            .ok();
        return Err(e.into());
    }
    let report = match read {
        Ok(r) => r,
        Err(e) => {
            store
                .record_source_failure("catalog", &e.to_string(), at)
                .await
                .ok();
            return Err(e.into());
        }
    };
    store.record_source_success("catalog", written, at).await?;
    Ok(ImportOutcome {
        report,
        offers_written: written,
        observations,
        seconds: started.elapsed().as_secs_f64(),
    })
}
