//! SkyPilot v8 catalog import: reads a catalog folder laid out like `~/.sky/catalogs/v8/`
//! (`aws/vms.csv`, `gcp/vms.csv`, `azure/vms.csv`, optional `common/metadata.csv` for GPU
//! memory) and streams domain `Offer`s (source `"catalog"`) to a sink in batches, with
//! progress callbacks and an `ImportReport` that counts every row read, every offer made
//! and every offer or row not made, by `SkipReason`.
//!
//! Per provider: AWS gives one region-wide on-demand offer per (type, region) (zone `""`)
//! and one spot offer per (type, AZ id); GCP gives offers per zone, composing GPU machines
//! from the host row plus the accelerator row of the same zone (built-in GPU families such
//! as `a2-highgpu-1g`, and N1 hosts with attachable GPUs as `n1-highmem-8+T4x1`); Azure gives
//! region-wide offers. TPUs are skipped.
//!
//! Invariants: prices are exact `Decimal`s parsed with `parse_amount`, never `f64`; one
//! import never yields two offers with the same `OfferKey` (later ones are counted as
//! `DuplicateOffer`); no offer has a price <= 0. Errors: a structurally broken CSV (wrong
//! field count), an unreadable file or a missing required column is a `CatalogError` naming
//! the file (and line or column). A row with an unparseable number or price is, by default,
//! skipped, counted as `BadValue` and listed (file, line, column, value) in the report;
//! with `ImportOptions::strict` it is a `CatalogError::BadValue` instead.
//!
//! Here: the entry points and the dispatch to one `RowHandler` per provider (`aws.rs`,
//! `gcp.rs`, `azure.rs`); what they share is in `rows.rs`, the report types in `report.rs`.
use std::collections::HashSet;
use std::error::Error as StdError;
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use csv::ByteRecord;

use crate::domain::{Offer, Provider};

/// The `source` of every offer this module produces.
pub const SOURCE: &str = "catalog";
/// Offers per sink call unless `ImportOptions::batch_size` says otherwise.
pub const DEFAULT_BATCH_SIZE: usize = 5_000;
/// How many rows between two progress callbacks (one more comes at the end of each file).
pub const PROGRESS_EVERY_ROWS: u64 = 8_192;
/// How many bad rows each `ProviderReport` lists; all of them are counted.
pub const MAX_LISTED_BAD_ROWS: usize = 50;

/// How an import runs.
#[derive(Clone, Debug)]
pub struct ImportOptions {
    /// Timestamp put on every offer; `None` = when the read starts. A SkyPilot catalog
    /// carries no date of its own (no version or metadata file, no date column), and a
    /// file's modification time says when it was copied, not when it was priced.
    pub observed_at: Option<DateTime<Utc>>,
    /// Offers per sink call (at least 1).
    pub batch_size: usize,
    /// Fail on the first row with an unparseable value instead of skipping and counting it.
    pub strict: bool,
}

impl Default for ImportOptions {
    fn default() -> Self {
        ImportOptions {
            observed_at: None,
            batch_size: DEFAULT_BATCH_SIZE,
            strict: false,
        }
    }
}

/// Why an import stopped. Nothing after the failing point was sent to the sink.
#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    #[error("cannot read {}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}:{line}: malformed CSV: {detail}", path.display())]
    Csv {
        path: PathBuf,
        line: u64,
        detail: String,
    },
    #[error("{}: missing required column {column:?}", path.display())]
    MissingColumn { path: PathBuf, column: &'static str },
    #[error("{}:{line}: unparseable {column} value {value:?}", path.display())]
    BadValue {
        path: PathBuf,
        line: u64,
        column: String,
        value: String,
    },
    #[error("no SkyPilot catalog in {}: none of aws/vms.csv, gcp/vms.csv, azure/vms.csv", dir.display())]
    NotACatalog { dir: PathBuf },
    #[error("offer sink failed: {0}")]
    Sink(#[source] Box<dyn StdError + Send + Sync>),
}

/// Imports every provider file found in `dir`, calling `sink` with batches of at most
/// `opts.batch_size` offers and `progress` as it goes. Providers are read in
/// `Provider::ALL` order; absent files are listed in the report (all three absent is
/// `CatalogError::NotACatalog`). An error from `sink` stops the import as
/// `CatalogError::Sink`.
pub fn read_catalog_dir<E>(
    dir: &Path,
    opts: &ImportOptions,
    mut sink: impl FnMut(Vec<Offer>) -> Result<(), E>,
    mut progress: impl FnMut(&ImportProgress),
) -> Result<ImportReport, CatalogError>
where
    E: Into<Box<dyn StdError + Send + Sync>>,
{
    let mut report = ImportReport::default();
    let meta_path = dir.join("common").join("metadata.csv");
    let gpu_memory = if meta_path.is_file() {
        GpuMemory::load(&meta_path)?
    } else {
        report.missing_files.push(meta_path);
        GpuMemory::default()
    };

    let mut sink_dyn = |batch: Vec<Offer>| sink(batch).map_err(|e| CatalogError::Sink(e.into()));
    let mut out = Out {
        batch: Vec::new(),
        batch_size: opts.batch_size.max(1),
        offers_total: 0,
        sink: &mut sink_dyn,
        progress: &mut progress,
    };
    let observed_at = opts.observed_at.unwrap_or_else(Utc::now);
    let mut found = false;
    for provider in Provider::ALL {
        let path = dir.join(provider.as_str()).join("vms.csv");
        if !path.is_file() {
            report.missing_files.push(path);
            continue;
        }
        found = true;
        let r = read_provider_file(provider, &path, opts, observed_at, &gpu_memory, &mut out)?;
        report.providers.insert(provider, r);
    }
    if !found {
        return Err(CatalogError::NotACatalog {
            dir: dir.to_path_buf(),
        });
    }
    out.flush()?;
    Ok(report)
}

/// Convenience for small folders and tests: the whole import in memory.
pub fn load_catalog_dir(
    dir: &Path,
    opts: &ImportOptions,
) -> Result<(Vec<Offer>, ImportReport), CatalogError> {
    let mut offers = Vec::new();
    let report = read_catalog_dir(
        dir,
        opts,
        |batch| {
            offers.extend(batch);
            Ok::<(), std::convert::Infallible>(())
        },
        |_| {},
    )?;
    Ok((offers, report))
}

fn read_provider_file(
    provider: Provider,
    path: &Path,
    opts: &ImportOptions,
    observed_at: DateTime<Utc>,
    gpu_memory: &GpuMemory,
    out: &mut Out<'_>,
) -> Result<ProviderReport, CatalogError> {
    let bytes_total =
        std::fs::metadata(path)
            .map(|m| m.len())
            .map_err(|source| CatalogError::Io {
                path: path.to_path_buf(),
                source,
            })?;
    let mut rdr = open_csv(path)?;
    let headers = rdr.byte_headers().map_err(|e| csv_error(path, &e))?.clone();
    let mut ctx = FileCtx {
        provider,
        path,
        observed_at,
        strict: opts.strict,
        gpu_memory,
        report: ProviderReport {
            file: path.to_path_buf(),
            ..Default::default()
        },
        seen: HashSet::new(),
        key_buf: String::with_capacity(128),
    };
    let mut handler: Box<dyn RowHandler> = match provider {
        Provider::Aws => Box::new(AwsFile::new(&headers, path)?),
        Provider::Gcp => Box::new(GcpFile::new(&headers, path)?),
        Provider::Azure => Box::new(AzureFile::new(&headers, path)?),
    };

    let mut rec = ByteRecord::new();
    loop {
        let more = rdr
            .read_byte_record(&mut rec)
            .map_err(|e| csv_error(path, &e))?;
        if !more {
            break;
        }
        ctx.report.rows_read += 1;
        let line = rec.position().map(|p| p.line()).unwrap_or(0);
        if let Err(issue) = handler.row(&rec, &mut ctx, out)? {
            ctx.bad_row(line, issue)?;
        }
        if ctx.report.rows_read.is_multiple_of(PROGRESS_EVERY_ROWS) {
            let bytes_read = rec.position().map(|p| p.byte()).unwrap_or(0);
            (out.progress)(&ImportProgress {
                provider,
                rows_read: ctx.report.rows_read,
                bytes_read,
                bytes_total,
                offers_total: out.offers_total,
                file_done: false,
            });
        }
    }
    handler.finish(&mut ctx, out)?;
    (out.progress)(&ImportProgress {
        provider,
        rows_read: ctx.report.rows_read,
        bytes_read: bytes_total,
        bytes_total,
        offers_total: out.offers_total,
        file_done: true,
    });
    Ok(ctx.report)
}

mod aws;
mod azure;
mod gcp;
mod report;
mod rows;
#[cfg(test)]
mod tests;

use aws::AwsFile;
use azure::AzureFile;
use gcp::GcpFile;
pub use report::*;
use rows::*;
