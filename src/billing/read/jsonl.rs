//! The JSON-lines reader: nested objects flattened to dotted names, numbers kept as their
//! literal text; the header is collected from the first lines.
use std::collections::HashMap;
use std::io::BufRead;

use serde_json::value::RawValue;

use crate::billing::mapping::{Cell, Dev, Deviations, Row};
use crate::billing::{BillingError, BillingFormat, ParseSummary, Sink};

use super::emit::{Emitter, resolve};
use super::*;

/// One JSON line flattened: dotted key → value text (`None` for JSON null). Strings are
/// unescaped; numbers, booleans and arrays keep their literal JSON text.
pub(super) fn flatten_json(line: &str) -> Result<Vec<(String, Option<String>)>, String> {
    fn walk(
        prefix: &str,
        obj: &str,
        out: &mut Vec<(String, Option<String>)>,
        depth: u32,
    ) -> Result<(), String> {
        if depth > 32 {
            return Err("objects nested too deeply".into());
        }
        let map: HashMap<String, &RawValue> =
            serde_json::from_str(obj).map_err(|e| e.to_string())?;
        let mut keys: Vec<(&String, &&RawValue)> = map.iter().collect();
        keys.sort_by(|a, b| a.0.cmp(b.0));
        for (k, v) in keys {
            let key = if prefix.is_empty() {
                k.clone()
            } else {
                format!("{prefix}.{k}")
            };
            let text = v.get().trim();
            match text.as_bytes().first() {
                Some(b'{') => walk(&key, text, out, depth + 1)?,
                Some(b'"') => out.push((
                    key,
                    Some(serde_json::from_str::<String>(text).map_err(|e| e.to_string())?),
                )),
                Some(b'n') => out.push((key, None)),
                _ => out.push((key, Some(text.to_string()))),
            }
        }
        Ok(())
    }
    let t = line.trim();
    if !t.starts_with('{') {
        return Err("not a JSON object".into());
    }
    let mut out = Vec::new();
    walk("", t, &mut out, 0)?;
    Ok(out)
}

/// Reads up to and including the next line break into `buf` (empty at the end of the
/// input). `false` when the line passes [`MAX_ROW_BYTES`]: it is not read further.
pub(super) fn read_line_capped(rdr: &mut dyn BufRead, buf: &mut Vec<u8>) -> std::io::Result<bool> {
    loop {
        let avail = match rdr.fill_buf() {
            Ok(a) => a,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if avail.is_empty() {
            return Ok(true);
        }
        let (take, done) = match memchr::memchr(b'\n', avail) {
            Some(i) => (i + 1, true),
            None => (avail.len(), false),
        };
        buf.extend_from_slice(&avail[..take]);
        rdr.consume(take);
        if buf.len() > MAX_ROW_BYTES {
            return Ok(false);
        }
        if done {
            return Ok(true);
        }
    }
}

pub(super) fn parse_jsonl<'r>(
    name: &str,
    mut rdr: Box<dyn BufRead + Send + 'r>,
    gz: bool,
    dev: Deviations,
    hint: Option<BillingFormat>,
    sink: &mut Sink<'_>,
) -> Result<ParseSummary, BillingError> {
    let mut dev = dev;
    let mut lineno = 0u64;
    let mut offset = 0u64;
    let mut buf = Vec::new();
    // Reads the next non-blank line.
    let mut next_line =
        |rdr: &mut Box<dyn BufRead + Send + 'r>| -> Result<Option<(u64, String)>, BillingError> {
            loop {
                buf.clear();
                let complete =
                    read_line_capped(rdr, &mut buf).map_err(|e| io_error(name, gz, e))?;
                if !complete {
                    return Err(row_too_long(name, lineno + 1, offset));
                }
                let n = buf.len();
                if n == 0 {
                    return Ok(None);
                }
                lineno += 1;
                offset += n as u64;
                if buf.iter().all(|b| b.is_ascii_whitespace()) {
                    continue;
                }
                return Ok(Some((lineno, String::from_utf8_lossy(&buf).into_owned())));
            }
        };
    let mut ahead = Vec::new();
    while ahead.len() < JSONL_HEADER_LINES {
        match next_line(&mut rdr)? {
            Some(l) => ahead.push(l),
            None => break,
        }
    }
    if ahead.is_empty() {
        return Err(empty_file(name));
    }
    let mut header: Vec<String> = Vec::new();
    let mut index: HashMap<String, usize> = HashMap::new();
    for (_, l) in &ahead {
        if let Ok(pairs) = flatten_json(l) {
            for (k, _) in pairs {
                if !index.contains_key(&k) {
                    index.insert(k.clone(), header.len());
                    header.push(k);
                }
            }
        }
    }
    let (format, variant, plan) = resolve(name, header, hint, &mut dev)?;
    let ncols = plan.header.len();
    let mut em = Emitter::new(format, variant, dev, sink);
    let handle = |em: &mut Emitter<'_, '_>, line: u64, text: &str| -> Result<(), BillingError> {
        match flatten_json(text) {
            Ok(pairs) => {
                let mut vals: Vec<Option<String>> = vec![None; ncols];
                for (k, v) in pairs {
                    match index.get(&k) {
                        Some(&i) => vals[i] = v,
                        None => em.dev.add(Dev::JsonUnknownKey),
                    }
                }
                em.row(&plan, &JsonRow { vals, line, text })
            }
            // Only the input's last line can lack its line break: one that is not JSON
            // either was cut off.
            Err(_) if !text.ends_with('\n') => {
                em.truncated(line, text.to_string());
                Ok(())
            }
            Err(e) => {
                em.quarantine(line, None, format!("invalid JSON: {e}"), text.to_string());
                Ok(())
            }
        }
    };
    for (line, text) in &ahead {
        handle(&mut em, *line, text)?;
    }
    drop(ahead);
    while let Some((line, text)) = next_line(&mut rdr)? {
        handle(&mut em, line, &text)?;
    }
    em.finish()
}

pub(super) struct JsonRow<'a> {
    pub(super) vals: Vec<Option<String>>,
    pub(super) line: u64,
    pub(super) text: &'a str,
}

impl Row for JsonRow<'_> {
    fn line(&self) -> u64 {
        self.line
    }
    fn cell(&self, col: usize) -> Cell<'_> {
        match self.vals.get(col) {
            Some(Some(s)) => Cell::Text(s),
            _ => Cell::Null,
        }
    }
    fn raw(&self) -> String {
        self.text.trim_end().to_string()
    }
}
