//! What every provider file's reader shares: CSV plumbing (columns, typed cells, a row's
//! `RowIssue`), per-file state (`FileCtx`: de-duplication, skips, bad rows), output
//! batching (`Out`), GPU memory from `common/metadata.csv`, and the `RowHandler` trait
//! each provider implements.
use std::collections::{HashMap, HashSet};
use std::fmt::Write as _;
use std::path::Path;

use chrono::{DateTime, Utc};
use csv::{ByteRecord, ReaderBuilder};
use rust_decimal::Decimal;

use super::*;

use crate::domain::money::parse_amount;
use crate::domain::{Currency, InstanceAttrs, Market, Offer, OfferKey, Provider};
pub(super) struct Out<'s> {
    pub(super) batch: Vec<Offer>,
    pub(super) batch_size: usize,
    pub(super) offers_total: u64,
    pub(super) sink: &'s mut dyn FnMut(Vec<Offer>) -> Result<(), CatalogError>,
    pub(super) progress: &'s mut dyn FnMut(&ImportProgress),
}

impl Out<'_> {
    pub(super) fn push(&mut self, offer: Offer) -> Result<(), CatalogError> {
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

    pub(super) fn flush(&mut self) -> Result<(), CatalogError> {
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
pub(super) struct GpuMemory(pub(super) HashMap<String, f64>);

impl GpuMemory {
    /// Reads `GPU,MemoryGB,...`; rows whose memory does not parse are ignored (the file is
    /// only a fallback for rows without `GpuInfo`).
    pub(super) fn load(path: &Path) -> Result<Self, CatalogError> {
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
    pub(super) fn lookup(&self, model: &str) -> Option<f64> {
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
pub(super) fn gpu_info_memory_gib(info: &str) -> Option<f64> {
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
pub(super) fn gpu_memory(gpu_info: &str, model: &str, count: f64, table: &GpuMemory) -> f64 {
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

#[derive(Clone, Copy, Debug)]
pub(super) struct Col {
    pub(super) idx: usize,
    pub(super) name: &'static str,
}

/// A value that did not parse, before it is tied to a file and line.
#[derive(Debug)]
pub(super) struct RowIssue {
    pub(super) column: &'static str,
    pub(super) value: String,
}

pub(super) fn open_csv(path: &Path) -> Result<csv::Reader<std::fs::File>, CatalogError> {
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

pub(super) fn csv_error(path: &Path, e: &csv::Error) -> CatalogError {
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

pub(super) fn column(
    headers: &ByteRecord,
    name: &'static str,
    path: &Path,
) -> Result<Col, CatalogError> {
    optional_column(headers, name).ok_or_else(|| CatalogError::MissingColumn {
        path: path.to_path_buf(),
        column: name,
    })
}

pub(super) fn optional_column(headers: &ByteRecord, name: &'static str) -> Option<Col> {
    headers
        .iter()
        .position(|h| {
            let h = h.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(h); // BOM on the first header
            h.trim_ascii() == name.as_bytes()
        })
        .map(|idx| Col { idx, name })
}

pub(super) fn text(rec: &ByteRecord, c: Col) -> Result<&str, RowIssue> {
    let raw = rec.get(c.idx).unwrap_or(b"");
    std::str::from_utf8(raw)
        .map(str::trim)
        .map_err(|_| RowIssue {
            column: c.name,
            value: String::from_utf8_lossy(raw).into_owned(),
        })
}

pub(super) fn opt_text(rec: &ByteRecord, c: Option<Col>) -> Result<&str, RowIssue> {
    c.map_or(Ok(""), |c| text(rec, c))
}

pub(super) fn issue(c: Col, v: &str) -> RowIssue {
    RowIssue {
        column: c.name,
        value: v.to_string(),
    }
}

/// A required non-negative finite number.
pub(super) fn number(rec: &ByteRecord, c: Col) -> Result<f64, RowIssue> {
    let v = text(rec, c)?;
    match v.parse::<f64>() {
        Ok(x) if x.is_finite() && x >= 0.0 => Ok(x),
        _ => Err(issue(c, v)),
    }
}

/// A non-negative number where empty means 0 (accelerator counts).
pub(super) fn number_or_zero(rec: &ByteRecord, c: Col) -> Result<f64, RowIssue> {
    if text(rec, c)?.is_empty() {
        Ok(0.0)
    } else {
        number(rec, c)
    }
}

/// An exact price; empty means "no price".
pub(super) fn price(rec: &ByteRecord, c: Col) -> Result<Option<Decimal>, RowIssue> {
    let v = text(rec, c)?;
    if v.is_empty() {
        return Ok(None);
    }
    parse_amount(v).map(Some).map_err(|_| issue(c, v))
}
pub(super) struct FileCtx<'a> {
    pub(super) provider: Provider,
    pub(super) path: &'a Path,
    pub(super) observed_at: DateTime<Utc>,
    pub(super) strict: bool,
    pub(super) gpu_memory: &'a GpuMemory,
    pub(super) report: ProviderReport,
    /// Offer keys produced so far, as "market\x1fregion\x1fzone\x1ftype".
    pub(super) seen: HashSet<String>,
    pub(super) key_buf: String,
}

impl FileCtx<'_> {
    pub(super) fn skip(&mut self, reason: SkipReason) {
        *self.report.skipped.entry(reason).or_default() += 1;
    }

    pub(super) fn bad_row(&mut self, line: u64, issue: RowIssue) -> Result<(), CatalogError> {
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
    pub(super) fn emit(
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

pub(super) fn attrs(
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

/// One provider's row rules. `row` returns `Ok(Err(issue))` for a row whose values do not
/// parse (nothing of it was emitted) and `Err` for a failure that stops the import.
pub(super) trait RowHandler {
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
