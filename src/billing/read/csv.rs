//! The CSV reader: a reader thread splits records (and decompresses) while the caller's
//! thread maps them; blank lines are skipped, each record's first line is told exactly,
//! and a file that ends inside a record is marked truncated.
use std::io::{BufRead, Read};

use crate::billing::mapping::{Cell, Dev, Deviations, Row, normalize_header};
use crate::billing::{BillingError, BillingFormat, ParseSummary, Sink};

use super::emit::{Emitter, resolve};
use super::*;

pub(super) fn is_blank(rec: &::csv::ByteRecord) -> bool {
    rec.is_empty() || (rec.len() == 1 && rec[0].iter().all(|b| b.is_ascii_whitespace()))
}

/// Keeps the bytes the CSV reader has read but not yet passed, so a record's first line
/// can be told exactly: the `csv` crate reports a record's position *before* the blank
/// lines (and the `\n` of a CRLF) it skips, so the CR/LF run at that position is counted.
#[derive(Default)]
pub(super) struct Window {
    pub(super) base: u64,
    pub(super) buf: Vec<u8>,
    /// Where the row being read starts (the CSV reader's position after the last record);
    /// the input is cut off once the row passes [`MAX_ROW_BYTES`].
    pub(super) row_start: u64,
}

/// The reader's error for a row past [`MAX_ROW_BYTES`], carried through the `csv` crate as
/// an I/O error.
#[derive(Debug)]
pub(super) struct RowTooLong;

impl std::fmt::Display for RowTooLong {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "row longer than {MAX_ROW_BYTES} bytes")
    }
}

impl std::error::Error for RowTooLong {}

/// Whether a CSV error is the cut-off of an over-long row.
pub(super) fn is_row_too_long(e: &::csv::Error) -> bool {
    matches!(e.kind(), ::csv::ErrorKind::Io(io) if io.get_ref().is_some_and(|r| r.is::<RowTooLong>()))
}

impl Window {
    /// The 1-based line where the record read from `pos` starts.
    pub(super) fn record_line(&mut self, pos: &::csv::Position) -> u64 {
        let at = pos.byte();
        let mut line = pos.line();
        if at >= self.base {
            let from = (at - self.base) as usize;
            for &b in self.buf.get(from..).unwrap_or(&[]) {
                match b {
                    b'\n' => line += 1,
                    b'\r' => {}
                    _ => break,
                }
            }
            // Forget what lies before this record (amortised).
            if from > 4 * READ_BUFFER {
                self.buf.drain(..from);
                self.base = at;
            }
        }
        line
    }
}

/// The input as the CSV reader sees it, keeping a [`Window`] of what it has read.
pub(super) struct Tracked<'r> {
    pub(super) inner: Box<dyn BufRead + Send + 'r>,
    pub(super) window: Window,
}

impl Read for Tracked<'_> {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        let w = &self.window;
        let read = w.base + w.buf.len() as u64;
        if read.saturating_sub(w.row_start) > (MAX_ROW_BYTES + READ_BUFFER) as u64 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                RowTooLong,
            ));
        }
        let n = self.inner.read(out)?;
        self.window.buf.extend_from_slice(&out[..n]);
        Ok(n)
    }
}

/// Records (with their first line) handed from the reader thread to the mapping thread.
pub(super) type Chunk = Vec<(Rec, u64)>;

/// Why the reader thread stopped early: the error, and the line and byte offset it had
/// reached (where the row it was reading starts).
pub(super) struct ReadFailure {
    pub(super) error: ::csv::Error,
    pub(super) line: u64,
    pub(super) offset: u64,
}

/// A record, UTF-8 checked once in the reader thread.
pub(super) enum Rec {
    Utf8(::csv::StringRecord),
    Bytes(::csv::ByteRecord),
}

impl Rec {
    pub(super) fn new(b: ::csv::ByteRecord) -> Rec {
        match ::csv::StringRecord::from_byte_record(b) {
            Ok(s) => Rec::Utf8(s),
            Err(e) => Rec::Bytes(e.into_byte_record()),
        }
    }
    pub(super) fn into_bytes(self) -> ::csv::ByteRecord {
        match self {
            Rec::Utf8(s) => s.into_byte_record(),
            Rec::Bytes(b) => b,
        }
    }
}
pub(super) const CHUNK: usize = 1024;

/// What the reader thread counted besides the records.
#[derive(Default)]
pub(super) struct ReadCounts {
    pub(super) blank_lines: u64,
    pub(super) field_count_mismatch: u64,
    /// The last record, if the input ends inside it: its line and text as read.
    pub(super) truncated: Option<(u64, String)>,
}

pub(super) fn newlines(rec: &::csv::ByteRecord) -> u64 {
    memchr::memchr_iter(b'\n', rec.as_slice()).count() as u64
}

/// Whether the input ends inside its last record, given that record's bytes as read (from
/// its first byte to the end of the input) and its field count: the record is not ended by
/// a line break, and it is either inside a quoted field or short of the header's fields. A
/// last record with every field and no final line break is complete (many exporters write
/// no final newline).
pub(super) fn ends_inside_record(tail: &[u8], fields: usize, ncols: usize) -> bool {
    let terminated = matches!(tail.last(), Some(b'\n' | b'\r'));
    let open_quote = memchr::memchr_iter(b'"', tail).count() % 2 == 1;
    !terminated && (open_quote || fields < ncols)
}

/// Reader thread: splits CSV records (and decompresses) while the caller's thread maps
/// them, so the two stages overlap on two cores. The newest record is held back until the
/// next one is read, so the last can be checked for a cut-off end before it is passed on.
pub(super) fn read_records(
    mut csv: ::csv::Reader<Tracked<'_>>,
    mut next_line: u64,
    ncols: usize,
    tx: std::sync::mpsc::SyncSender<Result<Chunk, ReadFailure>>,
    recycled: std::sync::mpsc::Receiver<Chunk>,
) -> ReadCounts {
    let mut counts = ReadCounts::default();
    let mut chunk: Chunk = Vec::with_capacity(CHUNK);
    let mut spare: Vec<::csv::ByteRecord> = Vec::new();
    // The newest record, its first line and the offset of its first byte.
    let mut held: Option<(::csv::ByteRecord, u64, u64)> = None;
    loop {
        let mut rec = spare.pop().unwrap_or_default();
        let row_start = csv.get_ref().window.row_start;
        match csv.read_byte_record(&mut rec) {
            Ok(true) => {}
            Ok(false) => break,
            Err(e) => {
                let _ = tx.send(Err(ReadFailure {
                    error: e,
                    line: next_line,
                    offset: row_start,
                }));
                return counts;
            }
        }
        csv.get_mut().window.row_start = csv.position().byte();
        if is_blank(&rec) {
            // Lets the window forget a long run of blank lines.
            if let Some(p) = rec.position() {
                csv.get_mut().window.record_line(p);
            }
            spare.push(rec);
            continue;
        }
        let (line, start) = rec.position().map_or((0, u64::MAX), |p| {
            (csv.get_mut().window.record_line(p), p.byte())
        });
        counts.blank_lines += line.saturating_sub(next_line);
        next_line = line + newlines(&rec) + 1;
        let Some((prev, prev_line, _)) = held.replace((rec, line, start)) else {
            continue;
        };
        if prev.len() != ncols {
            counts.field_count_mismatch += 1;
        }
        chunk.push((Rec::new(prev), prev_line));
        if chunk.len() == CHUNK {
            let mut fresh = recycled
                .try_recv()
                .unwrap_or_else(|_| Vec::with_capacity(CHUNK));
            spare.extend(fresh.drain(..).map(|(r, _)| r.into_bytes()));
            if tx.send(Ok(std::mem::replace(&mut chunk, fresh))).is_err() {
                return counts; // the mapping side stopped
            }
        }
    }
    if let Some((last, line, start)) = held {
        let window = &csv.get_ref().window;
        let tail = start
            .checked_sub(window.base)
            .and_then(|from| window.buf.get(from as usize..))
            .unwrap_or(&[]);
        if ends_inside_record(tail, last.len(), ncols) {
            counts.truncated = Some((line, String::from_utf8_lossy(tail).into_owned()));
        } else {
            if last.len() != ncols {
                counts.field_count_mismatch += 1;
            }
            chunk.push((Rec::new(last), line));
        }
    }
    if !chunk.is_empty() {
        let _ = tx.send(Ok(chunk));
    }
    counts
}

pub(super) fn parse_csv<'r>(
    name: &str,
    rdr: Box<dyn BufRead + Send + 'r>,
    gz: bool,
    dev: Deviations,
    hint: Option<BillingFormat>,
    sink: &mut Sink<'_>,
) -> Result<ParseSummary, BillingError> {
    let mut dev = dev;
    let tracked = Tracked {
        inner: rdr,
        window: Window::default(),
    };
    let mut csv = ::csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .buffer_capacity(READ_BUFFER)
        .from_reader(tracked);
    let mut rec = ::csv::ByteRecord::new();
    let csv_err = |e: ::csv::Error| io_error(name, gz, e);
    let mut line = 1;
    let (header, next_line) = loop {
        let row_start = csv.get_ref().window.row_start;
        match csv.read_byte_record(&mut rec) {
            Ok(true) => {}
            Ok(false) => return Err(empty_file(name)),
            Err(e) if is_row_too_long(&e) => return Err(row_too_long(name, line, row_start)),
            Err(e) => return Err(csv_err(e)),
        }
        csv.get_mut().window.row_start = csv.position().byte();
        let at = rec
            .position()
            .map_or(line, |p| csv.get_mut().window.record_line(p));
        line = at + newlines(&rec) + 1;
        if !is_blank(&rec) {
            let header = rec
                .iter()
                .map(|f| normalize_header(&String::from_utf8_lossy(f)))
                .collect::<Vec<_>>();
            break (header, line);
        }
    };
    let (format, variant, plan) = resolve(name, header, hint, &mut dev)?;
    let ncols = plan.header.len();
    let mut em = Emitter::new(format, variant, dev, sink);
    let (tx, rx) = std::sync::mpsc::sync_channel::<Result<Chunk, ReadFailure>>(4);
    let (back_tx, back_rx) = std::sync::mpsc::channel::<Chunk>();
    let (result, counts) = std::thread::scope(|scope| {
        let reader = scope.spawn(move || read_records(csv, next_line, ncols, tx, back_rx));
        let mut result = Ok(());
        'chunks: for msg in rx.iter() {
            match msg {
                Ok(chunk) => {
                    for (rec, line) in &chunk {
                        if let Err(e) = em.row(&plan, &CsvRow { rec, line: *line }) {
                            result = Err(e);
                            break 'chunks;
                        }
                    }
                    let _ = back_tx.send(chunk);
                }
                Err(ReadFailure {
                    error,
                    line,
                    offset,
                }) if is_row_too_long(&error) => {
                    result = Err(row_too_long(name, line, offset));
                    break;
                }
                // Named by the line the reader had reached (a gzip stream cut short).
                Err(ReadFailure { error, line, .. }) => {
                    result = Err(match csv_err(error) {
                        BillingError::Io { file, detail } => BillingError::Io {
                            file,
                            detail: format!("line {line}: {detail}"),
                        },
                        other => other,
                    });
                    break;
                }
            }
        }
        // Dropping the receiver stops a reader still sending.
        drop(rx);
        drop(back_tx);
        (result, reader.join())
    });
    result?;
    let counts = counts.map_err(|_| BillingError::Io {
        file: name.to_string(),
        detail: "CSV reader thread panicked".into(),
    })?;
    em.dev.add_n(Dev::BlankLine, counts.blank_lines);
    em.dev
        .add_n(Dev::RowFieldCountMismatch, counts.field_count_mismatch);
    if let Some((line, raw)) = counts.truncated {
        em.truncated(line, raw);
    }
    em.finish()
}

pub(super) struct CsvRow<'a> {
    pub(super) rec: &'a Rec,
    pub(super) line: u64,
}

impl Row for CsvRow<'_> {
    fn line(&self) -> u64 {
        self.line
    }
    #[inline]
    fn cell(&self, col: usize) -> Cell<'_> {
        match self.rec {
            Rec::Utf8(r) => r.get(col).map_or(Cell::Null, Cell::Text),
            Rec::Bytes(r) => match r.get(col) {
                None => Cell::Null,
                Some(b) => match std::str::from_utf8(b) {
                    Ok(s) => Cell::Text(s),
                    Err(_) => Cell::Bad("invalid UTF-8"),
                },
            },
        }
    }
    fn raw(&self) -> String {
        let fields: Vec<std::borrow::Cow<'_, str>> = match self.rec {
            Rec::Utf8(r) => r.iter().map(std::borrow::Cow::Borrowed).collect(),
            Rec::Bytes(r) => r.iter().map(String::from_utf8_lossy).collect(),
        };
        let mut out = String::new();
        for (i, s) in fields.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            if s.contains([',', '"', '\n', '\r']) {
                out.push('"');
                out.push_str(&s.replace('"', "\"\""));
                out.push('"');
            } else {
                out.push_str(s);
            }
            if out.len() > 2 * crate::billing::mapping::RAW_LIMIT {
                break;
            }
        }
        out
    }
}
