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
use std::collections::{BTreeMap, HashMap, HashSet};
use std::error::Error as StdError;
use std::fmt;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use csv::{ByteRecord, ReaderBuilder};
use rust_decimal::Decimal;

use crate::domain::money::parse_amount;
use crate::domain::{Currency, InstanceAttrs, Market, Offer, OfferKey, Provider};

/// The `source` of every offer this module produces.
pub const SOURCE: &str = "catalog";
/// Offers per sink call unless `ImportOptions::batch_size` says otherwise.
pub const DEFAULT_BATCH_SIZE: usize = 5_000;
/// How many rows between two progress callbacks (one more comes at the end of each file).
pub const PROGRESS_EVERY_ROWS: u64 = 8_192;
/// How many bad rows each `ProviderReport` lists; all of them are counted.
pub const MAX_LISTED_BAD_ROWS: usize = 50;

/// GPUs that GCP attaches to N1 hosts, and the `n1-highmem-N` host used per GPU count.
const N1_GPUS: [&str; 5] = ["T4", "V100", "P100", "P4", "K80"];
const N1_HOSTS: [(u32, u32); 4] = [(1, 8), (2, 16), (4, 32), (8, 64)];

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

/// Where an import is; passed to the progress callback every `PROGRESS_EVERY_ROWS` rows
/// and once at the end of each provider file (`file_done`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ImportProgress {
    pub provider: Provider,
    /// Rows of this provider's file read so far.
    pub rows_read: u64,
    /// Bytes of this provider's file read so far, and its size.
    pub bytes_read: u64,
    pub bytes_total: u64,
    /// Offers produced so far by the whole import (all providers).
    pub offers_total: u64,
    pub file_done: bool,
}

/// Why an offer (or a row) was not produced. Counts are of offers unless noted.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum SkipReason {
    /// Row with an unparseable number or price (rows; listed in `bad_rows`).
    BadValue,
    /// Empty `Price` (AWS: rows; GCP and Azure: offers).
    NoOnDemandPrice,
    /// Empty `SpotPrice`: the source has no spot price there.
    NoSpotPrice,
    /// Price (or composed price) of zero or less.
    NonPositivePrice,
    /// Same `OfferKey` produced earlier in this import; the first one is kept.
    DuplicateOffer,
    /// AWS: an AZ row whose region-wide `Price` differs from the first one seen (rows).
    ConflictingOnDemand,
    /// GCP: TPU accelerator rows (`tpu-*`) (rows).
    Tpu,
    /// GCP: TPU host VM types (`*-tpu`), not rentable as plain VMs (rows).
    TpuHost,
    /// GCP: accelerator row repeated for the same (accelerator, count, zone) (rows).
    DuplicateAcceleratorRow,
    /// GCP: a GPU machine family (a2-/a3-/a4-/g2-…) whose shape is not known (rows).
    UnknownGpuMachine,
    /// GCP GPU machine: no accelerator price for that (accelerator, count, zone, market).
    MissingAccelerator,
    /// GCP N1-attachable GPU row with a count that has no n1-highmem host (rows).
    N1CountUnsupported,
    /// GCP N1-attachable GPU row in a zone without its n1-highmem host row (rows).
    N1HostMissing,
}

impl SkipReason {
    pub fn as_str(&self) -> &'static str {
        match self {
            SkipReason::BadValue => "bad_value",
            SkipReason::NoOnDemandPrice => "no_on_demand_price",
            SkipReason::NoSpotPrice => "no_spot_price",
            SkipReason::NonPositivePrice => "non_positive_price",
            SkipReason::DuplicateOffer => "duplicate_offer",
            SkipReason::ConflictingOnDemand => "conflicting_on_demand_price",
            SkipReason::Tpu => "tpu",
            SkipReason::TpuHost => "tpu_host_vm",
            SkipReason::DuplicateAcceleratorRow => "duplicate_accelerator_row",
            SkipReason::UnknownGpuMachine => "unknown_gpu_machine",
            SkipReason::MissingAccelerator => "missing_accelerator_price",
            SkipReason::N1CountUnsupported => "n1_gpu_count_unsupported",
            SkipReason::N1HostMissing => "n1_host_missing",
        }
    }
}

impl fmt::Display for SkipReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One row skipped because a value did not parse.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BadRow {
    pub file: PathBuf,
    /// 1-based line of the record in the file (the header is line 1).
    pub line: u64,
    pub column: String,
    pub value: String,
}

/// What one provider file gave.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ProviderReport {
    pub file: PathBuf,
    /// Data rows read (header excluded).
    pub rows_read: u64,
    pub offers: u64,
    pub on_demand: u64,
    pub spot: u64,
    /// GCP accelerator rows kept as price components of composed GPU machines.
    pub component_rows: u64,
    pub skipped: BTreeMap<SkipReason, u64>,
    /// The first `MAX_LISTED_BAD_ROWS` rows counted as `SkipReason::BadValue`.
    pub bad_rows: Vec<BadRow>,
}

impl ProviderReport {
    pub fn skipped(&self, reason: SkipReason) -> u64 {
        self.skipped.get(&reason).copied().unwrap_or(0)
    }
}

/// What a whole catalog import gave.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ImportReport {
    /// One entry per provider whose `vms.csv` was present.
    pub providers: BTreeMap<Provider, ProviderReport>,
    /// Expected files that were absent (`{aws,gcp,azure}/vms.csv`, `common/metadata.csv`).
    pub missing_files: Vec<PathBuf>,
}

impl ImportReport {
    pub fn provider(&self, p: Provider) -> Option<&ProviderReport> {
        self.providers.get(&p)
    }
    pub fn rows_read(&self) -> u64 {
        self.providers.values().map(|r| r.rows_read).sum()
    }
    pub fn offers(&self) -> u64 {
        self.providers.values().map(|r| r.offers).sum()
    }
    pub fn skipped(&self, reason: SkipReason) -> u64 {
        self.providers.values().map(|r| r.skipped(reason)).sum()
    }
}

impl fmt::Display for ImportReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} rows, {} offers", self.rows_read(), self.offers())?;
        for (p, r) in &self.providers {
            write!(
                f,
                "; {p}: {} rows -> {} offers ({} on-demand, {} spot)",
                r.rows_read, r.offers, r.on_demand, r.spot
            )?;
            for (reason, n) in &r.skipped {
                write!(f, ", {n} {reason}")?;
            }
        }
        for m in &self.missing_files {
            write!(f, "; missing {}", m.display())?;
        }
        Ok(())
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

// ---------------------------------------------------------------------------------------
// Output batching

struct Out<'s> {
    batch: Vec<Offer>,
    batch_size: usize,
    offers_total: u64,
    sink: &'s mut dyn FnMut(Vec<Offer>) -> Result<(), CatalogError>,
    progress: &'s mut dyn FnMut(&ImportProgress),
}

impl Out<'_> {
    fn push(&mut self, offer: Offer) -> Result<(), CatalogError> {
        if self.batch.capacity() == 0 {
            self.batch.reserve_exact(self.batch_size);
        }
        self.batch.push(offer);
        self.offers_total += 1;
        if self.batch.len() >= self.batch_size {
            self.flush()?;
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<(), CatalogError> {
        if self.batch.is_empty() {
            return Ok(());
        }
        let full = std::mem::take(&mut self.batch);
        (self.sink)(full)
    }
}

// ---------------------------------------------------------------------------------------
// GPU memory (common/metadata.csv)

/// Per-accelerator memory in GiB, keyed by lower-cased model name.
#[derive(Debug, Default)]
struct GpuMemory(HashMap<String, f64>);

impl GpuMemory {
    /// Reads `GPU,MemoryGB,...`; rows whose memory does not parse are ignored (the file is
    /// only a fallback for rows without `GpuInfo`).
    fn load(path: &Path) -> Result<Self, CatalogError> {
        let mut rdr = open_csv(path)?;
        let headers = rdr.byte_headers().map_err(|e| csv_error(path, &e))?.clone();
        let name = column(&headers, "GPU", path)?;
        let mem = column(&headers, "MemoryGB", path)?;
        let mut map = HashMap::new();
        let mut rec = ByteRecord::new();
        while rdr
            .read_byte_record(&mut rec)
            .map_err(|e| csv_error(path, &e))?
        {
            let (Ok(n), Ok(m)) = (text(&rec, name), text(&rec, mem)) else {
                continue;
            };
            if let Ok(gib) = m.trim().parse::<f64>()
                && gib.is_finite()
                && gib > 0.0
            {
                map.insert(n.trim().to_ascii_lowercase(), gib);
            }
        }
        Ok(GpuMemory(map))
    }

    /// Exact (case-insensitive) name, else a vendor-prefixed entry such as "Radeon MI25"
    /// for "MI25".
    fn lookup(&self, model: &str) -> Option<f64> {
        let want = model.trim().to_ascii_lowercase();
        if want.is_empty() {
            return None;
        }
        if let Some(g) = self.0.get(&want) {
            return Some(*g);
        }
        self.0
            .iter()
            .filter(|(k, _)| k.len() > want.len() && k.ends_with(&want))
            .find(|(k, _)| k.as_bytes()[k.len() - want.len() - 1] == b' ')
            .map(|(_, g)| *g)
    }
}

/// Per-GPU memory from a SkyPilot `GpuInfo` Python-repr (or JSON) dict string: the first
/// `'SizeInMiB': N`, in GiB.
fn gpu_info_memory_gib(info: &str) -> Option<f64> {
    let at = info.find("SizeInMiB")?;
    let rest = info[at + "SizeInMiB".len()..].trim_start_matches(['\'', '"', ':', ' ']);
    let end = rest
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(rest.len());
    let mib: f64 = rest[..end].parse().ok()?;
    (mib.is_finite() && mib > 0.0).then_some(mib / 1024.0)
}

/// Per-accelerator memory as the VM sees it: from `GpuInfo`, else metadata; a fractional
/// GPU (Azure `A10` × 0.333) gets its share.
fn gpu_memory(gpu_info: &str, model: &str, count: f64, table: &GpuMemory) -> f64 {
    if model.is_empty() {
        return 0.0;
    }
    let per_gpu = gpu_info_memory_gib(gpu_info)
        .or_else(|| table.lookup(model))
        .unwrap_or(0.0);
    if count > 0.0 && count < 1.0 {
        per_gpu * count
    } else {
        per_gpu
    }
}

// ---------------------------------------------------------------------------------------
// CSV plumbing

#[derive(Clone, Copy, Debug)]
struct Col {
    idx: usize,
    name: &'static str,
}

/// A value that did not parse, before it is tied to a file and line.
#[derive(Debug)]
struct RowIssue {
    column: &'static str,
    value: String,
}

fn open_csv(path: &Path) -> Result<csv::Reader<std::fs::File>, CatalogError> {
    let file = std::fs::File::open(path).map_err(|source| CatalogError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    Ok(ReaderBuilder::new()
        .has_headers(true)
        .flexible(false)
        .buffer_capacity(1 << 16)
        .from_reader(file))
}

fn csv_error(path: &Path, e: &csv::Error) -> CatalogError {
    if let csv::ErrorKind::Io(io) = e.kind() {
        return CatalogError::Io {
            path: path.to_path_buf(),
            source: std::io::Error::new(io.kind(), io.to_string()),
        };
    }
    let line = e.position().map(|p| p.line()).unwrap_or(0);
    let detail = match e.kind() {
        csv::ErrorKind::UnequalLengths {
            expected_len, len, ..
        } => format!("{len} fields where the header has {expected_len}"),
        _ => e.to_string(),
    };
    CatalogError::Csv {
        path: path.to_path_buf(),
        line,
        detail,
    }
}

fn column(headers: &ByteRecord, name: &'static str, path: &Path) -> Result<Col, CatalogError> {
    optional_column(headers, name).ok_or_else(|| CatalogError::MissingColumn {
        path: path.to_path_buf(),
        column: name,
    })
}

fn optional_column(headers: &ByteRecord, name: &'static str) -> Option<Col> {
    headers
        .iter()
        .position(|h| {
            let h = h.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(h); // BOM on the first header
            h.trim_ascii() == name.as_bytes()
        })
        .map(|idx| Col { idx, name })
}

fn text(rec: &ByteRecord, c: Col) -> Result<&str, RowIssue> {
    let raw = rec.get(c.idx).unwrap_or(b"");
    std::str::from_utf8(raw)
        .map(str::trim)
        .map_err(|_| RowIssue {
            column: c.name,
            value: String::from_utf8_lossy(raw).into_owned(),
        })
}

fn opt_text(rec: &ByteRecord, c: Option<Col>) -> Result<&str, RowIssue> {
    c.map_or(Ok(""), |c| text(rec, c))
}

fn issue(c: Col, v: &str) -> RowIssue {
    RowIssue {
        column: c.name,
        value: v.to_string(),
    }
}

/// A required non-negative finite number.
fn number(rec: &ByteRecord, c: Col) -> Result<f64, RowIssue> {
    let v = text(rec, c)?;
    match v.parse::<f64>() {
        Ok(x) if x.is_finite() && x >= 0.0 => Ok(x),
        _ => Err(issue(c, v)),
    }
}

/// A non-negative number where empty means 0 (accelerator counts).
fn number_or_zero(rec: &ByteRecord, c: Col) -> Result<f64, RowIssue> {
    if text(rec, c)?.is_empty() {
        Ok(0.0)
    } else {
        number(rec, c)
    }
}

/// An exact price; empty means "no price".
fn price(rec: &ByteRecord, c: Col) -> Result<Option<Decimal>, RowIssue> {
    let v = text(rec, c)?;
    if v.is_empty() {
        return Ok(None);
    }
    parse_amount(v).map(Some).map_err(|_| issue(c, v))
}

// ---------------------------------------------------------------------------------------
// Per-file state

struct FileCtx<'a> {
    provider: Provider,
    path: &'a Path,
    observed_at: DateTime<Utc>,
    strict: bool,
    gpu_memory: &'a GpuMemory,
    report: ProviderReport,
    /// Offer keys produced so far, as "market\x1fregion\x1fzone\x1ftype".
    seen: HashSet<String>,
    key_buf: String,
}

impl FileCtx<'_> {
    fn skip(&mut self, reason: SkipReason) {
        *self.report.skipped.entry(reason).or_default() += 1;
    }

    fn bad_row(&mut self, line: u64, issue: RowIssue) -> Result<(), CatalogError> {
        if self.strict {
            return Err(CatalogError::BadValue {
                path: self.path.to_path_buf(),
                line,
                column: issue.column.to_string(),
                value: issue.value,
            });
        }
        self.skip(SkipReason::BadValue);
        if self.report.bad_rows.len() < MAX_LISTED_BAD_ROWS {
            self.report.bad_rows.push(BadRow {
                file: self.path.to_path_buf(),
                line,
                column: issue.column.to_string(),
                value: issue.value,
            });
        }
        Ok(())
    }

    /// Emits one offer unless its price is missing or not positive, or its key was seen.
    #[allow(clippy::too_many_arguments)]
    fn emit(
        &mut self,
        out: &mut Out<'_>,
        market: Market,
        price: Option<Decimal>,
        region: &str,
        zone: &str,
        instance_type: &str,
        attrs: &InstanceAttrs,
    ) -> Result<(), CatalogError> {
        let Some(price) = price else {
            self.skip(match market {
                Market::OnDemand => SkipReason::NoOnDemandPrice,
                Market::Spot => SkipReason::NoSpotPrice,
            });
            return Ok(());
        };
        if price <= Decimal::ZERO {
            self.skip(SkipReason::NonPositivePrice);
            return Ok(());
        }
        self.key_buf.clear();
        let _ = write!(
            self.key_buf,
            "{}\x1f{region}\x1f{zone}\x1f{instance_type}",
            market.as_str()
        );
        if self.seen.contains(self.key_buf.as_str()) {
            self.skip(SkipReason::DuplicateOffer);
            return Ok(());
        }
        self.seen.insert(self.key_buf.clone());
        match market {
            Market::OnDemand => self.report.on_demand += 1,
            Market::Spot => self.report.spot += 1,
        }
        self.report.offers += 1;
        out.push(Offer {
            key: OfferKey {
                provider: self.provider,
                region: region.to_string(),
                zone: zone.to_string(),
                instance_type: instance_type.to_string(),
                market,
            },
            price_per_hour: price.normalize(),
            currency: Currency::USD,
            attrs: Some(attrs.clone()),
            source: SOURCE.to_string(),
            observed_at: self.observed_at,
        })
    }
}

fn attrs(
    vcpus: f64,
    memory_gib: f64,
    gpu_model: &str,
    gpu_count: f64,
    gpu_memory_gib: f64,
    arch: &str,
) -> InstanceAttrs {
    InstanceAttrs {
        vcpus,
        memory_gib,
        gpu_model: (!gpu_model.is_empty() && gpu_count > 0.0).then(|| gpu_model.to_string()),
        gpu_count: if gpu_model.is_empty() { 0.0 } else { gpu_count },
        gpu_memory_gib,
        arch: arch.to_string(),
    }
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

/// One provider's row rules. `row` returns `Ok(Err(issue))` for a row whose values do not
/// parse (nothing of it was emitted) and `Err` for a failure that stops the import.
trait RowHandler {
    fn row(
        &mut self,
        rec: &ByteRecord,
        ctx: &mut FileCtx<'_>,
        out: &mut Out<'_>,
    ) -> Result<Result<(), RowIssue>, CatalogError>;

    fn finish(&mut self, _ctx: &mut FileCtx<'_>, _out: &mut Out<'_>) -> Result<(), CatalogError> {
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------
// AWS

struct AwsFile {
    instance_type: Col,
    acc_name: Col,
    acc_count: Col,
    vcpus: Col,
    memory: Col,
    gpu_info: Option<Col>,
    price: Col,
    spot: Col,
    region: Col,
    zone: Col,
    arch: Col,
    /// Region-wide on-demand price already emitted, keyed "type\x1fregion".
    on_demand: HashMap<String, Decimal>,
    key_buf: String,
}

impl AwsFile {
    fn new(h: &ByteRecord, path: &Path) -> Result<Self, CatalogError> {
        Ok(AwsFile {
            instance_type: column(h, "InstanceType", path)?,
            acc_name: column(h, "AcceleratorName", path)?,
            acc_count: column(h, "AcceleratorCount", path)?,
            vcpus: column(h, "vCPUs", path)?,
            memory: column(h, "MemoryGiB", path)?,
            gpu_info: optional_column(h, "GpuInfo"),
            price: column(h, "Price", path)?,
            spot: column(h, "SpotPrice", path)?,
            region: column(h, "Region", path)?,
            zone: column(h, "AvailabilityZone", path)?,
            arch: column(h, "Arch", path)?,
            on_demand: HashMap::new(),
            key_buf: String::new(),
        })
    }
}

fn normalise_arch(a: &str) -> &str {
    match a {
        "" | "x86_64" | "amd64" | "x86-64" => "x86_64",
        "arm64" | "aarch64" => "arm64",
        other => other,
    }
}

impl RowHandler for AwsFile {
    fn row(
        &mut self,
        rec: &ByteRecord,
        ctx: &mut FileCtx<'_>,
        out: &mut Out<'_>,
    ) -> Result<Result<(), RowIssue>, CatalogError> {
        let parsed = (|| {
            Ok::<_, RowIssue>((
                text(rec, self.instance_type)?,
                text(rec, self.acc_name)?,
                number_or_zero(rec, self.acc_count)?,
                number(rec, self.vcpus)?,
                number(rec, self.memory)?,
                opt_text(rec, self.gpu_info)?,
                price(rec, self.price)?,
                price(rec, self.spot)?,
                text(rec, self.region)?,
                text(rec, self.zone)?,
                text(rec, self.arch)?,
            ))
        })();
        let (ty, acc, count, vcpus, mem, info, od, spot, region, zone, arch) = match parsed {
            Ok(v) => v,
            Err(e) => return Ok(Err(e)),
        };
        if ty.is_empty() {
            return Ok(Err(issue(self.instance_type, ty)));
        }
        let gpu_mem = gpu_memory(info, acc, count, ctx.gpu_memory);
        let a = attrs(vcpus, mem, acc, count, gpu_mem, normalise_arch(arch));

        match od {
            None => ctx.skip(SkipReason::NoOnDemandPrice),
            Some(p) => {
                self.key_buf.clear();
                let _ = write!(self.key_buf, "{ty}\x1f{region}");
                match self.on_demand.get(self.key_buf.as_str()) {
                    Some(prev) if *prev == p => {}
                    Some(_) => ctx.skip(SkipReason::ConflictingOnDemand),
                    None => {
                        self.on_demand.insert(self.key_buf.clone(), p);
                        ctx.emit(out, Market::OnDemand, Some(p), region, "", ty, &a)?;
                    }
                }
            }
        }
        ctx.emit(out, Market::Spot, spot, region, zone, ty, &a)?;
        Ok(Ok(()))
    }
}

// ---------------------------------------------------------------------------------------
// GCP

/// What a GCP machine type is, for pricing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum GcpKind {
    Plain,
    /// Host price only in its row; add the accelerator row (model, count) of its zone.
    BuiltinGpu(&'static str, u32),
    /// Looks like a GPU machine family but the shape is not one we know how to price.
    UnknownGpu,
    TpuHost,
}

fn classify_gcp(ty: &str) -> GcpKind {
    if ty.ends_with("-tpu") {
        return GcpKind::TpuHost;
    }
    let base = ty.strip_suffix("-nolssd").unwrap_or(ty);
    if let Some(size) = base.strip_prefix("g2-standard-") {
        return match size {
            "4" | "8" | "12" | "16" | "32" => GcpKind::BuiltinGpu("L4", 1),
            "24" => GcpKind::BuiltinGpu("L4", 2),
            "48" => GcpKind::BuiltinGpu("L4", 4),
            "96" => GcpKind::BuiltinGpu("L4", 8),
            _ => GcpKind::UnknownGpu,
        };
    }
    const FAMILIES: [(&str, &str); 8] = [
        ("a2-highgpu-", "A100"),
        ("a2-megagpu-", "A100"),
        ("a2-ultragpu-", "A100-80GB"),
        ("a3-highgpu-", "H100"),
        ("a3-edgegpu-", "H100"),
        ("a3-megagpu-", "H100-MEGA"),
        ("a3-ultragpu-", "H200"),
        ("a4-highgpu-", "B200"),
    ];
    for (prefix, model) in FAMILIES {
        if let Some(rest) = base.strip_prefix(prefix) {
            return match rest
                .strip_suffix('g')
                .and_then(|n| n.parse::<u32>().ok())
                .filter(|n| *n > 0)
            {
                Some(n) => GcpKind::BuiltinGpu(model, n),
                None => GcpKind::UnknownGpu,
            };
        }
    }
    const GPU_FAMILY_PREFIXES: [&str; 6] = ["a2-", "a3-", "a4-", "a4x-", "g2-", "g4-"];
    if GPU_FAMILY_PREFIXES.iter().any(|p| base.starts_with(p)) {
        return GcpKind::UnknownGpu;
    }
    GcpKind::Plain
}

/// GCP Arm machine families (Ampere Altra T2A, Google Axion C4A/N4A).
fn gcp_arch(ty: &str) -> &'static str {
    if ["t2a-", "c4a-", "n4a-"].iter().any(|p| ty.starts_with(p)) {
        "arm64"
    } else {
        "x86_64"
    }
}

struct GcpAccel {
    model: String,
    count: u32,
    region: String,
    zone: String,
    price: Option<Decimal>,
    spot: Option<Decimal>,
    gpu_memory_gib: f64,
}

struct GcpGpuVm {
    instance_type: String,
    region: String,
    zone: String,
    vcpus: f64,
    memory_gib: f64,
    model: &'static str,
    count: u32,
    price: Option<Decimal>,
    spot: Option<Decimal>,
}

struct GcpHost {
    vcpus: f64,
    memory_gib: f64,
    price: Option<Decimal>,
    spot: Option<Decimal>,
}

struct GcpFile {
    instance_type: Col,
    vcpus: Col,
    memory: Col,
    acc_name: Col,
    acc_count: Col,
    gpu_info: Option<Col>,
    region: Col,
    zone: Col,
    price: Col,
    spot: Col,
    /// Accelerator rows in file order, indexed by "model\x1fcount\x1fzone".
    accels: Vec<GcpAccel>,
    accel_index: HashMap<String, usize>,
    /// GPU machines waiting for their accelerator rows (composed in `finish`).
    gpu_vms: Vec<GcpGpuVm>,
    /// n1-highmem-{8,16,32,64} host rows, keyed "size\x1fzone".
    n1_hosts: HashMap<String, GcpHost>,
    key_buf: String,
}

fn accel_key(buf: &mut String, model: &str, count: u32, zone: &str) {
    buf.clear();
    let _ = write!(buf, "{model}\x1f{count}\x1f{zone}");
}

fn n1_key(buf: &mut String, size: u32, zone: &str) {
    buf.clear();
    let _ = write!(buf, "{size}\x1f{zone}");
}

impl GcpFile {
    fn new(h: &ByteRecord, path: &Path) -> Result<Self, CatalogError> {
        Ok(GcpFile {
            instance_type: column(h, "InstanceType", path)?,
            vcpus: column(h, "vCPUs", path)?,
            memory: column(h, "MemoryGiB", path)?,
            acc_name: column(h, "AcceleratorName", path)?,
            acc_count: column(h, "AcceleratorCount", path)?,
            gpu_info: optional_column(h, "GpuInfo"),
            region: column(h, "Region", path)?,
            zone: column(h, "AvailabilityZone", path)?,
            price: column(h, "Price", path)?,
            spot: column(h, "SpotPrice", path)?,
            accels: Vec::new(),
            accel_index: HashMap::new(),
            gpu_vms: Vec::new(),
            n1_hosts: HashMap::new(),
            key_buf: String::new(),
        })
    }

    fn accelerator_row(&mut self, rec: &ByteRecord, ctx: &mut FileCtx<'_>) -> Result<(), RowIssue> {
        let model = text(rec, self.acc_name)?;
        if model.is_empty() {
            return Err(issue(self.acc_name, model));
        }
        if model.starts_with("tpu-") {
            ctx.skip(SkipReason::Tpu);
            return Ok(());
        }
        let count_text = text(rec, self.acc_count)?;
        let count = match count_text.parse::<f64>() {
            Ok(c) if c >= 1.0 && c.fract() == 0.0 && c <= f64::from(u16::MAX) => c as u32,
            _ => return Err(issue(self.acc_count, count_text)),
        };
        let region = text(rec, self.region)?;
        let zone = text(rec, self.zone)?;
        let od = price(rec, self.price)?;
        let spot = price(rec, self.spot)?;
        let info = opt_text(rec, self.gpu_info)?;
        accel_key(&mut self.key_buf, model, count, zone);
        if self.accel_index.contains_key(self.key_buf.as_str()) {
            ctx.skip(SkipReason::DuplicateAcceleratorRow);
            return Ok(());
        }
        self.accel_index
            .insert(self.key_buf.clone(), self.accels.len());
        self.accels.push(GcpAccel {
            model: model.to_string(),
            count,
            region: region.to_string(),
            zone: zone.to_string(),
            price: od,
            spot,
            gpu_memory_gib: gpu_memory(info, model, f64::from(count), ctx.gpu_memory),
        });
        ctx.report.component_rows += 1;
        Ok(())
    }

    /// Emits the composed offers of one GPU machine in one market.
    #[allow(clippy::too_many_arguments)]
    fn emit_composed(
        ctx: &mut FileCtx<'_>,
        out: &mut Out<'_>,
        market: Market,
        host: Option<Decimal>,
        accel: Option<Decimal>,
        region: &str,
        zone: &str,
        ty: &str,
        a: &InstanceAttrs,
    ) -> Result<(), CatalogError> {
        match (host, accel) {
            (None, _) => ctx.emit(out, market, None, region, zone, ty, a),
            (Some(_), None) => {
                ctx.skip(SkipReason::MissingAccelerator);
                Ok(())
            }
            (Some(h), Some(g)) => match h.checked_add(g) {
                Some(sum) => ctx.emit(out, market, Some(sum), region, zone, ty, a),
                None => {
                    ctx.skip(SkipReason::NonPositivePrice);
                    Ok(())
                }
            },
        }
    }
}

impl RowHandler for GcpFile {
    fn row(
        &mut self,
        rec: &ByteRecord,
        ctx: &mut FileCtx<'_>,
        out: &mut Out<'_>,
    ) -> Result<Result<(), RowIssue>, CatalogError> {
        let ty = match text(rec, self.instance_type) {
            Ok(t) => t,
            Err(e) => return Ok(Err(e)),
        };
        if ty.is_empty() {
            return Ok(self.accelerator_row(rec, ctx));
        }
        let kind = classify_gcp(ty);
        match kind {
            GcpKind::TpuHost => {
                ctx.skip(SkipReason::TpuHost);
                return Ok(Ok(()));
            }
            GcpKind::UnknownGpu => {
                ctx.skip(SkipReason::UnknownGpuMachine);
                return Ok(Ok(()));
            }
            GcpKind::Plain | GcpKind::BuiltinGpu(..) => {}
        }
        let parsed = (|| {
            Ok::<_, RowIssue>((
                number(rec, self.vcpus)?,
                number(rec, self.memory)?,
                text(rec, self.acc_name)?,
                number_or_zero(rec, self.acc_count)?,
                opt_text(rec, self.gpu_info)?,
                text(rec, self.region)?,
                text(rec, self.zone)?,
                price(rec, self.price)?,
                price(rec, self.spot)?,
            ))
        })();
        let (vcpus, mem, acc, acc_count, info, region, zone, od, spot) = match parsed {
            Ok(v) => v,
            Err(e) => return Ok(Err(e)),
        };
        match kind {
            GcpKind::BuiltinGpu(model, count) => {
                self.gpu_vms.push(GcpGpuVm {
                    instance_type: ty.to_string(),
                    region: region.to_string(),
                    zone: zone.to_string(),
                    vcpus,
                    memory_gib: mem,
                    model,
                    count,
                    price: od,
                    spot,
                });
            }
            _ => {
                if let Some(size) = ty.strip_prefix("n1-highmem-").and_then(|s| s.parse().ok())
                    && N1_HOSTS.iter().any(|(_, s)| *s == size)
                {
                    n1_key(&mut self.key_buf, size, zone);
                    self.n1_hosts
                        .entry(self.key_buf.clone())
                        .or_insert(GcpHost {
                            vcpus,
                            memory_gib: mem,
                            price: od,
                            spot,
                        });
                }
                let gpu_mem = gpu_memory(info, acc, acc_count, ctx.gpu_memory);
                let a = attrs(vcpus, mem, acc, acc_count, gpu_mem, gcp_arch(ty));
                ctx.emit(out, Market::OnDemand, od, region, zone, ty, &a)?;
                ctx.emit(out, Market::Spot, spot, region, zone, ty, &a)?;
            }
        }
        Ok(Ok(()))
    }

    fn finish(&mut self, ctx: &mut FileCtx<'_>, out: &mut Out<'_>) -> Result<(), CatalogError> {
        // Built-in GPU machines: host row + accelerator row of the same zone.
        let gpu_vms = std::mem::take(&mut self.gpu_vms);
        for vm in &gpu_vms {
            accel_key(&mut self.key_buf, vm.model, vm.count, &vm.zone);
            let accel = self
                .accel_index
                .get(self.key_buf.as_str())
                .map(|&i| &self.accels[i]);
            let gpu_mem = accel
                .map(|g| g.gpu_memory_gib)
                .filter(|m| *m > 0.0)
                .or_else(|| ctx.gpu_memory.lookup(vm.model))
                .unwrap_or(0.0);
            let a = attrs(
                vm.vcpus,
                vm.memory_gib,
                vm.model,
                f64::from(vm.count),
                gpu_mem,
                "x86_64",
            );
            let (g_od, g_spot) = accel.map_or((None, None), |g| (g.price, g.spot));
            for (market, host, acc) in [
                (Market::OnDemand, vm.price, g_od),
                (Market::Spot, vm.spot, g_spot),
            ] {
                Self::emit_composed(
                    ctx,
                    out,
                    market,
                    host,
                    acc,
                    &vm.region,
                    &vm.zone,
                    &vm.instance_type,
                    &a,
                )?;
            }
        }

        // N1-attachable GPUs: n1-highmem host chosen by GPU count + accelerator row.
        let mut ty = String::new();
        for g in &self.accels {
            if !N1_GPUS.contains(&g.model.as_str()) {
                continue;
            }
            let Some(&(_, size)) = N1_HOSTS.iter().find(|(c, _)| *c == g.count) else {
                ctx.skip(SkipReason::N1CountUnsupported);
                continue;
            };
            n1_key(&mut self.key_buf, size, &g.zone);
            let Some(host) = self.n1_hosts.get(self.key_buf.as_str()) else {
                ctx.skip(SkipReason::N1HostMissing);
                continue;
            };
            ty.clear();
            let _ = write!(ty, "n1-highmem-{size}+{}x{}", g.model, g.count);
            let a = attrs(
                host.vcpus,
                host.memory_gib,
                &g.model,
                f64::from(g.count),
                g.gpu_memory_gib,
                "x86_64",
            );
            for (market, h, acc) in [
                (Market::OnDemand, host.price, g.price),
                (Market::Spot, host.spot, g.spot),
            ] {
                Self::emit_composed(ctx, out, market, h, acc, &g.region, &g.zone, &ty, &a)?;
            }
        }
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------
// Azure

/// Azure Arm (Ampere/Cobalt) sizes carry a `p` among the lower-case feature letters after
/// the vCPU count: `Standard_D4ps_v5`, `Standard_E8pds_v6`, `Standard_B2pls_v2`.
fn azure_arch(ty: &str) -> &'static str {
    let name = ty.strip_prefix("Standard_").unwrap_or(ty);
    let rest = name.trim_start_matches(|c: char| c.is_ascii_uppercase());
    let rest = rest.trim_start_matches(|c: char| c.is_ascii_digit());
    let rest = match rest.strip_prefix('-') {
        Some(r) => r.trim_start_matches(|c: char| c.is_ascii_digit()),
        None => rest,
    };
    let features: &str = &rest[..rest
        .find(|c: char| !c.is_ascii_lowercase())
        .unwrap_or(rest.len())];
    if features.contains('p') {
        "arm64"
    } else {
        "x86_64"
    }
}

struct AzureFile {
    instance_type: Col,
    acc_name: Col,
    acc_count: Col,
    vcpus: Col,
    memory: Col,
    gpu_info: Option<Col>,
    price: Col,
    spot: Col,
    region: Col,
}

impl AzureFile {
    fn new(h: &ByteRecord, path: &Path) -> Result<Self, CatalogError> {
        Ok(AzureFile {
            instance_type: column(h, "InstanceType", path)?,
            acc_name: column(h, "AcceleratorName", path)?,
            acc_count: column(h, "AcceleratorCount", path)?,
            vcpus: column(h, "vCPUs", path)?,
            memory: column(h, "MemoryGiB", path)?,
            gpu_info: optional_column(h, "GpuInfo"),
            price: column(h, "Price", path)?,
            spot: column(h, "SpotPrice", path)?,
            region: column(h, "Region", path)?,
        })
    }
}

impl RowHandler for AzureFile {
    fn row(
        &mut self,
        rec: &ByteRecord,
        ctx: &mut FileCtx<'_>,
        out: &mut Out<'_>,
    ) -> Result<Result<(), RowIssue>, CatalogError> {
        let parsed = (|| {
            Ok::<_, RowIssue>((
                text(rec, self.instance_type)?,
                text(rec, self.acc_name)?,
                number_or_zero(rec, self.acc_count)?,
                number(rec, self.vcpus)?,
                number(rec, self.memory)?,
                opt_text(rec, self.gpu_info)?,
                price(rec, self.price)?,
                price(rec, self.spot)?,
                text(rec, self.region)?,
            ))
        })();
        let (ty, acc, count, vcpus, mem, info, od, spot, region) = match parsed {
            Ok(v) => v,
            Err(e) => return Ok(Err(e)),
        };
        if ty.is_empty() {
            return Ok(Err(issue(self.instance_type, ty)));
        }
        let gpu_mem = gpu_memory(info, acc, count, ctx.gpu_memory);
        let a = attrs(vcpus, mem, acc, count, gpu_mem, azure_arch(ty));
        ctx.emit(out, Market::OnDemand, od, region, "", ty, &a)?;
        ctx.emit(out, Market::Spot, spot, region, "", ty, &a)?;
        Ok(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::OnceLock;

    use super::*;

    const CATALOG: &str = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../shared/data/skypilot-catalog"
    );

    fn real() -> &'static (Vec<Offer>, ImportReport) {
        static REAL: OnceLock<(Vec<Offer>, ImportReport)> = OnceLock::new();
        REAL.get_or_init(|| {
            load_catalog_dir(Path::new(CATALOG), &ImportOptions::default()).expect("import")
        })
    }

    fn find(p: Provider, region: &str, zone: &str, ty: &str, m: Market) -> &'static Offer {
        real()
            .0
            .iter()
            .find(|o| {
                o.key.provider == p
                    && o.key.region == region
                    && o.key.zone == zone
                    && o.key.instance_type == ty
                    && o.key.market == m
            })
            .unwrap_or_else(|| panic!("no offer {p} {region} {zone:?} {ty} {m}"))
    }

    fn dec(s: &str) -> Decimal {
        parse_amount(s).unwrap()
    }

    /// The price-sanity rule (`domain::sanity`) over the whole real catalog flags exactly
    /// the 17 offers an independent Python pass over the CSVs flags: newzealandnorth's whole
    /// `Standard_F…ams_v6` family (a tenth of the family median, both markets) and three
    /// spot prices just under a fifth of theirs.
    #[test]
    fn real_catalog_suspects() {
        let cat = crate::domain::Catalog::new(real().0.clone(), vec![]);
        let mut flagged: Vec<(&str, &str, Market)> = (0..cat.len())
            .filter(|&i| cat.suspicion_at(i).is_some())
            .map(|i| {
                let k = &cat.offers()[i].key;
                (k.region.as_str(), k.instance_type.as_str(), k.market)
            })
            .collect();
        flagged.sort();
        let mut want: Vec<(&str, &str, Market)> = vec![
            ("australiacentral2", "Standard_NC4as_T4_v3", Market::Spot),
            ("austriaeast", "Standard_B2ls_v2", Market::Spot),
            ("belgiumcentral", "Standard_B2ls_v2", Market::Spot),
        ];
        for ty in [
            "Standard_F2ams_v6",
            "Standard_F4ams_v6",
            "Standard_F8ams_v6",
            "Standard_F16ams_v6",
            "Standard_F32ams_v6",
            "Standard_F48ams_v6",
            "Standard_F64ams_v6",
        ] {
            for m in [Market::OnDemand, Market::Spot] {
                want.push(("newzealandnorth", ty, m));
            }
        }
        want.sort();
        assert_eq!(flagged, want);
        let i = cat
            .offers()
            .iter()
            .position(|o| {
                o.key.region == "newzealandnorth"
                    && o.key.instance_type == "Standard_F8ams_v6"
                    && o.key.market == Market::Spot
            })
            .unwrap();
        assert_eq!(
            cat.suspicion_at(i).unwrap().reason(Market::Spot),
            "suspect price: 0.002074/h per vCPU, 10% of the Standard_Fams_v6 spot median \
             0.02003/h (below 1/5)"
        );
    }

    /// Counts computed independently (Python over the same files, same rules).
    #[test]
    fn real_catalog_counts() {
        let (offers, r) = real();
        assert_eq!(r.rows_read(), 88_099);
        assert_eq!(r.offers(), 167_242);
        assert_eq!(offers.len(), 167_242);
        assert!(r.missing_files.is_empty(), "{:?}", r.missing_files);

        let aws = r.provider(Provider::Aws).unwrap();
        assert_eq!(
            (aws.rows_read, aws.offers, aws.on_demand, aws.spot),
            (143, 190, 51, 139)
        );
        assert_eq!(aws.skipped(SkipReason::NoSpotPrice), 4);
        assert_eq!(aws.skipped.len(), 1, "{:?}", aws.skipped);

        let gcp = r.provider(Provider::Gcp).unwrap();
        assert_eq!(
            (gcp.rows_read, gcp.offers, gcp.on_demand, gcp.spot),
            (31_285, 56_556, 28_280, 28_276)
        );
        assert_eq!(gcp.component_rows, 747);
        assert_eq!(gcp.skipped(SkipReason::Tpu), 1_648);
        assert_eq!(gcp.skipped(SkipReason::TpuHost), 896);
        assert_eq!(gcp.skipped(SkipReason::MissingAccelerator), 8);
        assert_eq!(gcp.skipped.len(), 3, "{:?}", gcp.skipped);

        let az = r.provider(Provider::Azure).unwrap();
        assert_eq!(
            (az.rows_read, az.offers, az.on_demand, az.spot),
            (56_671, 110_496, 56_671, 53_825)
        );
        assert_eq!(az.skipped(SkipReason::NoSpotPrice), 2_846);
        assert_eq!(az.skipped.len(), 1, "{:?}", az.skipped);
    }

    #[test]
    fn real_catalog_offers_are_well_formed() {
        let (offers, _) = real();
        let mut keys = HashSet::new();
        for o in offers {
            assert!(o.price_per_hour > Decimal::ZERO, "{o:?}");
            assert_eq!(o.currency, Currency::USD);
            assert_eq!(o.source, SOURCE);
            assert!(o.attrs.is_some());
            assert!(
                !o.key.instance_type.to_ascii_lowercase().contains("tpu"),
                "{o:?}"
            );
            if o.key.provider != Provider::Gcp && o.key.market == Market::OnDemand {
                assert_eq!(o.key.zone, "", "{o:?}");
            }
            assert!(keys.insert(o.key.clone()), "duplicate key {:?}", o.key);
        }
    }

    #[test]
    fn aws_prices_and_attrs() {
        let od = find(
            Provider::Aws,
            "us-east-1",
            "",
            "p4d.24xlarge",
            Market::OnDemand,
        );
        assert_eq!(od.price_per_hour, dec("21.957642"));
        let a = od.attrs.as_ref().unwrap();
        assert_eq!(a.gpu_model.as_deref(), Some("A100"));
        assert_eq!((a.gpu_count, a.gpu_memory_gib), (8.0, 40.0));
        assert_eq!((a.vcpus, a.arch.as_str()), (96.0, "x86_64"));
        let spot = find(
            Provider::Aws,
            "us-east-1",
            "use1-az1",
            "p4d.24xlarge",
            Market::Spot,
        );
        assert_eq!(spot.price_per_hour, dec("2.4655"));
        let p4de = find(
            Provider::Aws,
            "us-east-1",
            "",
            "p4de.24xlarge",
            Market::OnDemand,
        );
        assert_eq!(p4de.price_per_hour, dec("27.44705"));
        let a = p4de.attrs.as_ref().unwrap();
        assert_eq!(a.gpu_model.as_deref(), Some("A100-80GB"));
        assert_eq!(a.gpu_memory_gib, 80.0);
        let m6i = find(
            Provider::Aws,
            "us-east-1",
            "",
            "m6i.2xlarge",
            Market::OnDemand,
        );
        assert_eq!(m6i.price_per_hour, dec("0.384"));
        assert_eq!(m6i.attrs.as_ref().unwrap().gpu_model, None);
    }

    #[test]
    fn gcp_gpu_machines_are_host_plus_accelerator() {
        let z = "us-central1-a";
        // a2-highgpu-1g host 0.73948 / 0.36975 + A100×1 row 2.93391 / 1.4341
        let od = find(
            Provider::Gcp,
            "us-central1",
            z,
            "a2-highgpu-1g",
            Market::OnDemand,
        );
        assert_eq!(od.price_per_hour, dec("0.73948") + dec("2.93391"));
        assert_eq!(od.price_per_hour, dec("3.67339"));
        let a = od.attrs.as_ref().unwrap();
        assert_eq!(a.gpu_model.as_deref(), Some("A100"));
        assert_eq!(
            (a.gpu_count, a.gpu_memory_gib, a.vcpus, a.memory_gib),
            (1.0, 40.0, 12.0, 85.0)
        );
        let spot = find(
            Provider::Gcp,
            "us-central1",
            z,
            "a2-highgpu-1g",
            Market::Spot,
        );
        assert_eq!(spot.price_per_hour, dec("1.80385"));
        // a3-highgpu-8g 9.46006 + H100×8 33.60609
        let h100 = find(
            Provider::Gcp,
            "us-central1",
            z,
            "a3-highgpu-8g",
            Market::OnDemand,
        );
        assert_eq!(h100.price_per_hour, dec("43.06615"));
        // a4-highgpu-8g: host row priced 0.0, the B200×8 row carries the price
        let b200 = find(
            Provider::Gcp,
            "us-central1",
            "us-central1-b",
            "a4-highgpu-8g",
            Market::OnDemand,
        );
        assert_eq!(b200.price_per_hour, dec("90.216"));
        assert_eq!(b200.attrs.as_ref().unwrap().gpu_memory_gib, 180.0);
        let g2 = find(
            Provider::Gcp,
            "us-central1",
            z,
            "g2-standard-24",
            Market::OnDemand,
        );
        assert_eq!(g2.price_per_hour, dec("2.00083"));
        assert_eq!(g2.attrs.as_ref().unwrap().gpu_count, 2.0);
        // n1-highmem-8 0.47321 / 0.17276 + T4×1 0.35 / 0.1654
        let t4 = find(
            Provider::Gcp,
            "us-central1",
            z,
            "n1-highmem-8+T4x1",
            Market::OnDemand,
        );
        assert_eq!(t4.price_per_hour, dec("0.82321"));
        let a = t4.attrs.as_ref().unwrap();
        assert_eq!(a.gpu_model.as_deref(), Some("T4"));
        assert_eq!(
            (a.gpu_count, a.gpu_memory_gib, a.vcpus, a.memory_gib),
            (1.0, 16.0, 8.0, 52.0)
        );
        let t4s = find(
            Provider::Gcp,
            "us-central1",
            z,
            "n1-highmem-8+T4x1",
            Market::Spot,
        );
        assert_eq!(t4s.price_per_hour, dec("0.33816"));
        // plain hosts are offers too, and Arm families are marked
        let host = find(
            Provider::Gcp,
            "us-central1",
            z,
            "n1-highmem-8",
            Market::OnDemand,
        );
        assert_eq!(host.price_per_hour, dec("0.47321"));
        assert!(
            real()
                .0
                .iter()
                .any(|o| o.key.instance_type.starts_with("t2a-")
                    && o.attrs.as_ref().unwrap().arch == "arm64")
        );
    }

    #[test]
    fn azure_prices_and_attrs() {
        let od = find(
            Provider::Azure,
            "eastus",
            "",
            "Standard_ND96asr_v4",
            Market::OnDemand,
        );
        assert_eq!(od.price_per_hour, dec("27.197"));
        let spot = find(
            Provider::Azure,
            "eastus",
            "",
            "Standard_ND96asr_v4",
            Market::Spot,
        );
        assert_eq!(spot.price_per_hour, dec("5.98334"));
        let a100 = find(
            Provider::Azure,
            "eastus",
            "",
            "Standard_NC24ads_A100_v4",
            Market::OnDemand,
        );
        assert_eq!(a100.price_per_hour, dec("3.673"));
        let a = a100.attrs.as_ref().unwrap();
        assert_eq!(a.gpu_model.as_deref(), Some("A100-80GB"));
        assert_eq!((a.gpu_count, a.gpu_memory_gib), (1.0, 80.0));
        let arm = find(
            Provider::Azure,
            "eastus",
            "",
            "Standard_D4ps_v5",
            Market::OnDemand,
        );
        assert_eq!(arm.attrs.as_ref().unwrap().arch, "arm64");
        let a10 = find(
            Provider::Azure,
            "eastus",
            "",
            "Standard_NV6ads_A10_v5",
            Market::OnDemand,
        );
        let a = a10.attrs.as_ref().unwrap();
        assert_eq!(a.gpu_count, 0.167);
        assert!((a.gpu_memory_gib - 24.0 * 0.167).abs() < 1e-9);
        let mi25 = find(
            Provider::Azure,
            "eastus",
            "",
            "Standard_NV4as_v4",
            Market::OnDemand,
        );
        assert_eq!(mi25.attrs.as_ref().unwrap().gpu_memory_gib, 16.0);
    }

    #[test]
    fn batches_progress_and_timestamp() {
        let at = DateTime::parse_from_rfc3339("2026-05-20T00:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        let opts = ImportOptions {
            observed_at: Some(at),
            batch_size: 1_000,
            strict: true,
        };
        let mut sizes = Vec::new();
        let mut done = Vec::new();
        let mut last_total = 0;
        let r = read_catalog_dir(
            Path::new(CATALOG),
            &opts,
            |b: Vec<Offer>| {
                assert!(b.iter().all(|o| o.observed_at == at));
                sizes.push(b.len());
                Ok::<(), std::convert::Infallible>(())
            },
            |p| {
                assert!(p.bytes_read <= p.bytes_total);
                assert!(p.offers_total >= last_total);
                last_total = p.offers_total;
                if p.file_done {
                    done.push(p.provider);
                }
            },
        )
        .unwrap();
        assert_eq!(done, Provider::ALL);
        assert_eq!(sizes.iter().sum::<usize>() as u64, r.offers());
        assert!(sizes[..sizes.len() - 1].iter().all(|&n| n == 1_000));
        assert_eq!(sizes.len(), 168);
    }

    const AWS_HEADER: &str = "InstanceType,AcceleratorName,AcceleratorCount,vCPUs,MemoryGiB,GpuInfo,Price,SpotPrice,Region,AvailabilityZone,Arch\n";

    fn aws_dir(body: &str) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("aws")).unwrap();
        std::fs::write(dir.path().join("aws/vms.csv"), body).unwrap();
        dir
    }

    #[test]
    fn offers_are_dated_by_the_read_not_by_the_file_modification_time() {
        let dir = aws_dir(&format!(
            "{AWS_HEADER}m6i.large,,,2,8,,0.096,0.03,us-east-1,use1-az1,x86_64\n"
        ));
        // A catalog copied months ago keeps its old modification time.
        let old = std::time::SystemTime::now() - std::time::Duration::from_secs(90 * 86_400);
        std::fs::File::options()
            .write(true)
            .open(dir.path().join("aws/vms.csv"))
            .unwrap()
            .set_modified(old)
            .unwrap();
        let before = Utc::now();
        let (offers, _) = load_catalog_dir(dir.path(), &ImportOptions::default()).unwrap();
        assert_eq!(offers.len(), 2);
        assert!(offers.iter().all(|o| o.observed_at >= before), "{offers:?}");
    }

    #[test]
    fn malformed_csv_names_file_and_line() {
        let dir = aws_dir(&format!(
            "{AWS_HEADER}m6i.large,,,2,8,,0.096,0.03,us-east-1,use1-az1,x86_64\n\
             m6i.large,,,2,8,,0.096,0.03,us-east-1,use1-az2\n"
        ));
        let err = load_catalog_dir(dir.path(), &ImportOptions::default()).unwrap_err();
        assert!(matches!(err, CatalogError::Csv { line: 3, .. }), "{err:?}");
        let msg = err.to_string();
        assert!(msg.contains("aws/vms.csv:3:"), "{msg}");
        assert!(msg.contains("10 fields where the header has 11"), "{msg}");
    }

    #[test]
    fn bad_values_are_counted_or_fatal_when_strict() {
        let dir = aws_dir(&format!(
            "{AWS_HEADER}m6i.large,,,2,8,,0.096,0.03,us-east-1,use1-az1,x86_64\n\
             m6i.large,,,2,8,,0.0960,abc,us-east-1,use1-az2,x86_64\n\
             m6g.large,,,two,8,,0.077,,us-east-1,use1-az1,arm64\n\
             m6g.large,,,2,8,,0.077,,us-east-1,use1-az2,arm64\n"
        ));
        let (offers, r) = load_catalog_dir(dir.path(), &ImportOptions::default()).unwrap();
        let aws = r.provider(Provider::Aws).unwrap();
        assert_eq!(aws.rows_read, 4);
        assert_eq!(aws.skipped(SkipReason::BadValue), 2);
        assert_eq!(aws.skipped(SkipReason::NoSpotPrice), 1);
        let bad: Vec<_> = aws
            .bad_rows
            .iter()
            .map(|b| (b.line, b.column.as_str(), b.value.as_str()))
            .collect();
        assert_eq!(bad, [(3, "SpotPrice", "abc"), (4, "vCPUs", "two")]);
        assert_eq!(offers.len(), 3); // m6i od + spot az1, m6g od
        let m6g = offers
            .iter()
            .find(|o| o.key.instance_type == "m6g.large")
            .unwrap();
        assert_eq!(m6g.attrs.as_ref().unwrap().arch, "arm64");
        assert!(r.missing_files.iter().any(|p| p.ends_with("gcp/vms.csv")));

        let strict = ImportOptions {
            strict: true,
            ..Default::default()
        };
        let err = load_catalog_dir(dir.path(), &strict).unwrap_err();
        let msg = err.to_string();
        assert!(
            matches!(err, CatalogError::BadValue { line: 3, .. }),
            "{err:?}"
        );
        assert!(
            msg.contains("vms.csv:3:") && msg.contains("SpotPrice"),
            "{msg}"
        );
    }

    #[test]
    fn missing_column_is_named() {
        let dir = aws_dir(
            "InstanceType,AcceleratorName,AcceleratorCount,vCPUs,MemoryGiB,GpuInfo,Price,Region,AvailabilityZone,Arch\n",
        );
        let err = load_catalog_dir(dir.path(), &ImportOptions::default()).unwrap_err();
        assert!(
            matches!(
                err,
                CatalogError::MissingColumn {
                    column: "SpotPrice",
                    ..
                }
            ),
            "{err:?}"
        );
        assert!(err.to_string().contains("\"SpotPrice\""));
    }

    #[test]
    fn empty_dir_and_sink_errors() {
        let dir = tempfile::tempdir().unwrap();
        let err = load_catalog_dir(dir.path(), &ImportOptions::default()).unwrap_err();
        assert!(matches!(err, CatalogError::NotACatalog { .. }), "{err:?}");

        let dir = aws_dir(&format!(
            "{AWS_HEADER}m6i.large,,,2,8,,0.096,0.03,us-east-1,use1-az1,x86_64\n"
        ));
        let err = read_catalog_dir(
            dir.path(),
            &ImportOptions::default(),
            |_| Err(std::io::Error::other("disk full")),
            |_| {},
        )
        .unwrap_err();
        assert!(matches!(err, CatalogError::Sink(_)));
        assert!(err.to_string().contains("disk full"));
    }

    #[test]
    fn gcp_composition_rules_on_a_small_file() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("gcp")).unwrap();
        std::fs::write(
            dir.path().join("gcp/vms.csv"),
            "InstanceType,vCPUs,MemoryGiB,AcceleratorName,AcceleratorCount,GpuInfo,Region,AvailabilityZone,Price,SpotPrice\n\
             a2-ultragpu-2g,24.0,340.0,,,,r1,r1-a,1.5,0.5\n\
             a2-ultragpu-2g,24.0,340.0,,,,r1,r1-b,1.5,0.5\n\
             a3-weirdgpu-8g,1.0,1.0,,,,r1,r1-a,1.0,1.0\n\
             n1-highmem-16,16.0,104.0,,,,r1,r1-a,0.9,0.2\n\
             n1-standard-1,1.0,3.75,,,,r1,r1-a,0.0475,\n\
             ,,,A100-80GB,2,,r1,r1-a,10.0,3.0\n\
             ,,,A100-80GB,2,,r1,r1-b,10.0,\n\
             ,,,V100,2,,r1,r1-a,5.0,1.0\n\
             ,,,V100,2,,r1,r1-b,5.0,1.0\n\
             ,,,P4,3,,r1,r1-a,1.0,1.0\n\
             ,,,tpu-v5p-8,1,,r1,r1-a,1.0,1.0\n",
        )
        .unwrap();
        let (offers, r) = load_catalog_dir(dir.path(), &ImportOptions::default()).unwrap();
        let g = r.provider(Provider::Gcp).unwrap();
        let price = |ty: &str, zone: &str, m: Market| {
            offers
                .iter()
                .find(|o| o.key.instance_type == ty && o.key.zone == zone && o.key.market == m)
                .map(|o| o.price_per_hour.to_string())
        };
        assert_eq!(
            price("a2-ultragpu-2g", "r1-a", Market::OnDemand).as_deref(),
            Some("11.5")
        );
        assert_eq!(
            price("a2-ultragpu-2g", "r1-a", Market::Spot).as_deref(),
            Some("3.5")
        );
        assert_eq!(
            price("a2-ultragpu-2g", "r1-b", Market::OnDemand).as_deref(),
            Some("11.5")
        );
        assert_eq!(price("a2-ultragpu-2g", "r1-b", Market::Spot), None);
        assert_eq!(
            price("n1-highmem-16+V100x2", "r1-a", Market::OnDemand).as_deref(),
            Some("5.9")
        );
        assert_eq!(
            price("n1-highmem-16+V100x2", "r1-a", Market::Spot).as_deref(),
            Some("1.2")
        );
        assert_eq!(
            price("n1-highmem-16+V100x2", "r1-b", Market::OnDemand),
            None
        );
        assert_eq!(
            price("n1-standard-1", "r1-a", Market::OnDemand).as_deref(),
            Some("0.0475")
        );
        assert_eq!(g.skipped(SkipReason::MissingAccelerator), 1);
        assert_eq!(g.skipped(SkipReason::N1HostMissing), 1);
        assert_eq!(g.skipped(SkipReason::N1CountUnsupported), 1);
        assert_eq!(g.skipped(SkipReason::UnknownGpuMachine), 1);
        assert_eq!(g.skipped(SkipReason::Tpu), 1);
        assert_eq!(g.skipped(SkipReason::NoSpotPrice), 1);
        assert_eq!(g.component_rows, 5);
        assert_eq!(g.offers, 8);
    }

    #[test]
    fn classifies_gcp_machine_types() {
        use GcpKind::*;
        assert_eq!(classify_gcp("a2-highgpu-4g"), BuiltinGpu("A100", 4));
        assert_eq!(classify_gcp("a2-megagpu-16g"), BuiltinGpu("A100", 16));
        assert_eq!(classify_gcp("a2-ultragpu-8g"), BuiltinGpu("A100-80GB", 8));
        assert_eq!(classify_gcp("a3-edgegpu-8g-nolssd"), BuiltinGpu("H100", 8));
        assert_eq!(classify_gcp("a3-megagpu-8g"), BuiltinGpu("H100-MEGA", 8));
        assert_eq!(classify_gcp("a3-ultragpu-8g-nolssd"), BuiltinGpu("H200", 8));
        assert_eq!(classify_gcp("a4-highgpu-8g"), BuiltinGpu("B200", 8));
        assert_eq!(classify_gcp("g2-standard-12"), BuiltinGpu("L4", 1));
        assert_eq!(classify_gcp("g2-standard-96"), BuiltinGpu("L4", 8));
        assert_eq!(classify_gcp("g2-standard-20"), UnknownGpu);
        assert_eq!(classify_gcp("a3-highgpu-xg"), UnknownGpu);
        assert_eq!(classify_gcp("n2d-48-24-v5lite-tpu"), TpuHost);
        assert_eq!(classify_gcp("n2-standard-8"), Plain);
        assert_eq!(gcp_arch("t2a-standard-4"), "arm64");
        assert_eq!(gcp_arch("n2-standard-4"), "x86_64");
    }

    #[test]
    fn azure_arm_sizes() {
        for t in ["Standard_D4ps_v5", "Standard_E8pds_v6", "Standard_B2pls_v2"] {
            assert_eq!(azure_arch(t), "arm64", "{t}");
        }
        for t in [
            "Standard_D2s_v3",
            "Standard_NC24ads_A100_v4",
            "Standard_NP10s",
            "Standard_E4-2ds_v5",
        ] {
            assert_eq!(azure_arch(t), "x86_64", "{t}");
        }
    }

    #[test]
    fn gpu_info_and_metadata_memory() {
        let aws = "{'Gpus': [{'Name': 'A100', 'Count': 8, 'MemoryInfo': {'SizeInMiB': 40960}}], 'TotalGpuMemoryInMiB': 327680}";
        assert_eq!(gpu_info_memory_gib(aws), Some(40.0));
        assert_eq!(
            gpu_info_memory_gib(r#"{"MemoryInfo": {"SizeInMiB": 16384}}"#),
            Some(16.0)
        );
        assert_eq!(gpu_info_memory_gib("A10"), None);
        let t = GpuMemory(HashMap::from([
            ("a10".to_string(), 24.0),
            ("radeon mi25".to_string(), 16.0),
        ]));
        assert_eq!(t.lookup("A10"), Some(24.0));
        assert_eq!(t.lookup("MI25"), Some(16.0));
        assert_eq!(t.lookup("I25"), None);
        assert_eq!(gpu_memory("", "A10", 0.5, &t), 12.0);
        assert_eq!(gpu_memory("", "", 0.0, &t), 0.0);
    }
}
