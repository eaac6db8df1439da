//! Header normalisation and the `Plan`: a table resolved against one file's header, which
//! turns each row into typed `Values`.
use std::collections::{BTreeMap, HashMap};

use crate::billing::BillingError;

use super::*;

/// Normalises a header cell: trims, strips a BOM, and takes the English name from a
/// localised Azure header such as `Abonnement-GUID (SubscriptionGuid)`.
pub fn normalize_header(name: &str) -> String {
    let s = name.trim_start_matches('\u{feff}').trim();
    if let Some(open) = s.rfind(" (")
        && s.ends_with(')')
    {
        let inner = &s[open + 2..s.len() - 1];
        if !inner.is_empty()
            && inner
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_')
        {
            return inner.to_string();
        }
    }
    s.to_string()
}

/// A header lookup: exact, then ASCII case-insensitive.
pub struct HeaderIndex {
    pub(super) exact: HashMap<String, usize>,
    pub(super) lower: HashMap<String, usize>,
}

impl HeaderIndex {
    pub fn new(header: &[String]) -> Self {
        let mut exact = HashMap::with_capacity(header.len());
        let mut lower = HashMap::with_capacity(header.len());
        for (i, h) in header.iter().enumerate() {
            exact.entry(h.clone()).or_insert(i);
            lower.entry(h.to_ascii_lowercase()).or_insert(i);
        }
        HeaderIndex { exact, lower }
    }
    /// `(index, matched only case-insensitively)`.
    pub fn find(&self, name: &str) -> Option<(usize, bool)> {
        if let Some(&i) = self.exact.get(name) {
            return Some((i, false));
        }
        self.lower
            .get(&name.to_ascii_lowercase())
            .map(|&i| (i, true))
    }
    pub fn has(&self, name: &str) -> bool {
        self.find(name).is_some()
    }
}

/// A table resolved against one file's header.
pub struct Plan {
    pub table: &'static Table,
    pub header: Vec<String>,
    pub(super) cols: Vec<(usize, &'static Column)>,
    pub(super) present: [bool; Field::COUNT],
    pub(super) tag_cols: Vec<(usize, String)>,
}

impl Plan {
    /// `header` must already be normalised ([`normalize_header`]).
    pub fn new(
        table: &'static Table,
        header: Vec<String>,
        file: &str,
        dev: &mut Deviations,
    ) -> Result<Plan, BillingError> {
        let index = HeaderIndex::new(&header);
        let mut cols = Vec::with_capacity(table.columns.len());
        let mut present = [false; Field::COUNT];
        let mut used = vec![false; header.len()];
        for c in table.columns {
            let found = c.names.iter().find_map(|n| index.find(n));
            match found {
                Some((i, folded)) => {
                    if folded && table.strict_names {
                        dev.add(Dev::WrongCaseColumn);
                    }
                    cols.push((i, c));
                    present[c.field as usize] = true;
                    used[i] = true;
                }
                None if c.required => {
                    return Err(BillingError::MissingColumn {
                        file: file.to_string(),
                        column: c.names.join(" or "),
                    });
                }
                None => {}
            }
        }
        let mut tag_cols = Vec::new();
        for (i, h) in header.iter().enumerate() {
            if used[i] {
                continue;
            }
            for p in table.tag_prefixes {
                if let Some(rest) = h.strip_prefix(p.prefix)
                    && !rest.is_empty()
                {
                    tag_cols.push((i, (p.key)(rest)));
                    break;
                }
            }
        }
        Ok(Plan {
            table,
            header,
            cols,
            present,
            tag_cols,
        })
    }

    /// Whether the file has a column for `f`.
    pub fn has(&self, f: Field) -> bool {
        self.present[f as usize]
    }

    /// Header indices this plan reads (for Parquet projection), ascending.
    pub fn needed_columns(&self) -> Vec<usize> {
        let mut v: Vec<usize> = self
            .cols
            .iter()
            .map(|(i, _)| *i)
            .chain(self.tag_cols.iter().map(|(i, _)| *i))
            .collect();
        v.sort_unstable();
        v.dedup();
        v
    }

    /// Reads one row. `Err` is the quarantine reason (it names the column).
    pub fn extract<'r>(
        &self,
        row: &'r dyn Row,
        dev: &mut Deviations,
    ) -> Result<Values<'r>, String> {
        let mut v = Values::new(self.present);
        let nulls = self.table.nulls;
        for &(i, c) in &self.cols {
            let cell = row.cell(i);
            let val = convert(cell, c.kind, nulls, dev)
                .map_err(|e| format!("{}: {e}", self.header[i]))?;
            if c.required && matches!(val, Val::Null) {
                return Err(format!("{}: missing required value", self.header[i]));
            }
            v.vals[c.field as usize] = val;
        }
        if !self.tag_cols.is_empty() {
            let mut extra = BTreeMap::new();
            for (i, key) in &self.tag_cols {
                match row.cell(*i) {
                    Cell::Text(s) if !s.is_empty() => {
                        extra.insert(key.clone(), s.to_string());
                    }
                    Cell::Null | Cell::Text(_) | Cell::Bad(_) | Cell::Pairs(_) => {}
                    other => {
                        if let Some(s) = cell_to_string(&other) {
                            extra.insert(key.clone(), s);
                        }
                    }
                }
            }
            if !extra.is_empty() {
                let slot = &mut v.vals[Field::Tags as usize];
                match slot {
                    Val::Tags(t) => {
                        for (k, val) in extra {
                            t.entry(k).or_insert(val);
                        }
                    }
                    _ => *slot = Val::Tags(extra),
                }
            }
        }
        Ok(v)
    }
}

pub(super) fn cell_to_string(c: &Cell<'_>) -> Option<String> {
    match c {
        Cell::Null | Cell::Bad(_) | Cell::Pairs(_) => None,
        Cell::Text(s) => Some((*s).to_string()),
        Cell::Owned(s) => Some(s.clone()),
        Cell::Float(x) => Some(format!("{x}")),
        Cell::Int(x) => Some(x.to_string()),
        Cell::Dec(d) => Some(d.to_string()),
        Cell::Bool(b) => Some(b.to_string()),
        Cell::Time(t) => Some(t.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true)),
    }
}
