//! Readers: CSV (BOM stripped, blank lines skipped), gzip (by magic bytes), JSON lines
//! (nested objects flattened to dotted names, numbers kept as their literal text) and
//! Parquet (only the mapped columns are read). Each yields rows against a header; the
//! format is detected from the header (or taken from the hint) and the mapping applied.
//!
//! Entry points: [`parse_file`] and [`parse_bytes`]. One reader per file (`csv.rs`,
//! `jsonl.rs`, `parquet.rs`); what they share once a header is read is in `emit.rs`.
use std::fs::File;
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom};
use std::path::Path;

use super::{BillingError, BillingFormat, ParseSummary, Sink};
use crate::billing::mapping::{Dev, Deviations};

const BOM: &[u8] = b"\xEF\xBB\xBF";
/// The quarantine reason of a row the file ends inside.
pub const TRUNCATED_ROW: &str =
    "the file ends inside this row: the file is incomplete (cut off or still being written)";
const READ_BUFFER: usize = 256 * 1024;
/// JSON lines read ahead to collect the header (keys may be missing from some lines).
const JSONL_HEADER_LINES: usize = 1000;
/// The longest row a text export may have (a CSV record, its quoted line breaks and the
/// blank lines before it included, or a JSON line). Real rows are a few KB; a longer one is
/// a file that is not an export (a sparse or binary file, a quote never closed), and
/// reading it whole would hold it all in memory. The parse stops with an error naming the
/// line and byte offset.
pub const MAX_ROW_BYTES: usize = 16 << 20;

/// Parses a billing export file. `hint: None` detects the format from the columns. Lines
/// go to `sink` in batches of up to [`BATCH`]; unreadable rows are quarantined in the
/// summary with their line and a reason. A text export (CSV, JSON lines, gzipped or not)
/// is read once front to back, so it may be a named pipe; Parquet needs a regular file.
pub fn parse_file(
    path: &Path,
    hint: Option<BillingFormat>,
    sink: &mut Sink<'_>,
) -> Result<ParseSummary, BillingError> {
    let name = path.display().to_string();
    let io = |e: std::io::Error| BillingError::Io {
        file: name.clone(),
        detail: e.to_string(),
    };
    let mut f = File::open(path).map_err(io)?;
    let mut magic = [0u8; 4];
    let n = read_up_to(&mut f, &mut magic).map_err(io)?;
    if n == 4 && &magic == b"PAR1" {
        f.seek(SeekFrom::Start(0)).map_err(io)?;
        return parse_parquet(&name, f, hint, sink);
    }
    if is_parquet_name(&name) {
        return Err(not_parquet(&name));
    }
    // The bytes already read go first, so a text input need not be seekable (a pipe).
    let input = std::io::Cursor::new(magic[..n].to_vec()).chain(f);
    if n >= 2 && magic[..2] == [0x1f, 0x8b] {
        let gz = flate2::read::MultiGzDecoder::new(BufReader::with_capacity(READ_BUFFER, input));
        parse_text(
            &name,
            Box::new(BufReader::with_capacity(READ_BUFFER, gz)),
            true,
            hint,
            sink,
        )
    } else {
        parse_text(
            &name,
            Box::new(BufReader::with_capacity(READ_BUFFER, input)),
            false,
            hint,
            sink,
        )
    }
}

/// Parses an export held in memory (an object fetched from S3). The name's suffix
/// (`.csv`, `.csv.gz`, `.gz`, `.parquet`, `.json`, `.jsonl`) helps tell JSON lines from
/// CSV; gzip and Parquet are recognised by their magic bytes.
pub fn parse_bytes(
    name: &str,
    bytes: &[u8],
    hint: Option<BillingFormat>,
    sink: &mut Sink<'_>,
) -> Result<ParseSummary, BillingError> {
    if bytes.len() >= 4 && &bytes[..4] == b"PAR1" {
        parse_parquet(name, bytes::Bytes::copy_from_slice(bytes), hint, sink)
    } else if is_parquet_name(name) {
        Err(not_parquet(name))
    } else if bytes.len() >= 2 && bytes[..2] == [0x1f, 0x8b] {
        let gz = flate2::read::MultiGzDecoder::new(bytes);
        parse_text(
            name,
            Box::new(BufReader::with_capacity(READ_BUFFER, gz)),
            true,
            hint,
            sink,
        )
    } else {
        parse_text(name, Box::new(bytes), false, hint, sink)
    }
}

fn is_parquet_name(name: &str) -> bool {
    let lower = name.to_ascii_lowercase();
    lower.ends_with(".parquet") || lower.ends_with(".parq")
}

fn not_parquet(name: &str) -> BillingError {
    BillingError::Io {
        file: name.to_string(),
        detail: "not a Parquet file (no PAR1 magic bytes)".into(),
    }
}

fn read_up_to(r: &mut impl Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..])? {
            0 => break,
            k => n += k,
        }
    }
    Ok(n)
}

fn empty_file(name: &str) -> BillingError {
    BillingError::Malformed {
        file: name.to_string(),
        line: 1,
        detail: "empty file: no header row".into(),
    }
}

/// The error for a row past [`MAX_ROW_BYTES`] starting at `line` (byte `offset` of the
/// decompressed text).
fn row_too_long(file: &str, line: u64, offset: u64) -> BillingError {
    BillingError::Malformed {
        file: file.to_string(),
        line,
        detail: format!(
            "the row starting at byte offset {offset} is longer than {} MiB: not a billing \
             export (or a quote that is never closed); nothing was stored",
            MAX_ROW_BYTES >> 20
        ),
    }
}

fn io_error(file: &str, gz: bool, e: impl std::fmt::Display) -> BillingError {
    let detail = if gz {
        format!("corrupt or truncated gzip data: {e}")
    } else {
        e.to_string()
    };
    BillingError::Io {
        file: file.to_string(),
        detail,
    }
}

fn parse_text<'r>(
    name: &str,
    mut rdr: Box<dyn BufRead + Send + 'r>,
    gz: bool,
    hint: Option<BillingFormat>,
    sink: &mut Sink<'_>,
) -> Result<ParseSummary, BillingError> {
    let mut dev = Deviations::default();
    let buf = rdr.fill_buf().map_err(|e| io_error(name, gz, e))?;
    if buf.starts_with(BOM) {
        rdr.consume(BOM.len());
        dev.add(Dev::Bom);
    }
    let buf = rdr.fill_buf().map_err(|e| io_error(name, gz, e))?;
    let first = buf.iter().find(|b| !b.is_ascii_whitespace()).copied();
    let lower = name.to_ascii_lowercase();
    let base = lower.strip_suffix(".gz").unwrap_or(&lower);
    let json = base.ends_with(".json")
        || base.ends_with(".jsonl")
        || base.ends_with(".ndjson")
        || first == Some(b'{');
    if json {
        parse_jsonl(name, rdr, gz, dev, hint, sink)
    } else {
        parse_csv(name, rdr, gz, dev, hint, sink)
    }
}

mod csv;
mod emit;
mod jsonl;
mod parquet;
#[cfg(test)]
mod perf;
#[cfg(test)]
pub(crate) mod tests;

use self::csv::parse_csv;
use self::jsonl::parse_jsonl;
use self::parquet::parse_parquet;
