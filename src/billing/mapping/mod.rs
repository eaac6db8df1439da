//! The one table-driven mapping from source columns to FOCUS fields.
//!
//! Each format (`focus.rs`, `cur.rs`, `gcp.rs`, `azure.rs`) declares a [`Table`]: for every
//! target [`Field`] the source column names to try, in order, and the [`Kind`] of value
//! (money, quantity, timestamp, text, enum, tags, ...). [`Plan::new`] resolves a table
//! against a file's header once; [`Plan::extract`] turns one row into typed [`Values`],
//! quarantining the row (with a reason naming the column) when a value cannot be read.
//! The format module then derives the few fields that need provider logic (charge
//! category from a line item type, amortized cost, billing period from an invoice month).
//!
//! The value parsers (`parse.rs`) are lenient in documented ways; every tolerated deviation
//! is counted in [`Deviations`] by kind. Files: `table.rs` (the model), `plan.rs`,
//! `values.rs` (`convert`), `parse.rs`, `lit.rs` (JSON/Python literals); the deviations and
//! the reader interface (`Row`, `Cell`) are here.
use std::collections::BTreeMap;

use chrono::{DateTime, NaiveDate, Utc};
use rust_decimal::Decimal;

// ---------------------------------------------------------------------------------------
// Deviations
// ---------------------------------------------------------------------------------------

macro_rules! deviations {
    ($($name:ident => $text:literal,)*) => {
        /// A tolerated deviation from the format's spec, counted by kind.
        #[derive(Clone, Copy, Debug, PartialEq, Eq)]
        #[repr(u8)]
        pub enum Dev { $($name,)* }
        impl Dev {
            pub const ALL: &'static [Dev] = &[$(Dev::$name,)*];
            pub fn as_str(self) -> &'static str {
                match self { $(Dev::$name => $text,)* }
            }
        }
    };
}

deviations! {
    Bom => "bom",
    BlankLine => "blank_line",
    RowFieldCountMismatch => "row_field_count_mismatch",
    EmptyStringNull => "empty_string_null",
    NullTokenUpper => "null_token_NULL",
    WrongCaseColumn => "wrong_case_column",
    WrongCaseValue => "wrong_case_value",
    UnknownEnumValue => "unknown_enum_value",
    ScientificNotation => "scientific_notation",
    MoneyFormattedString => "money_formatted_string",
    WhitespaceTrimmed => "whitespace_trimmed",
    DecimalRounded => "decimal_rounded_to_28_digits",
    FloatRounded => "float_rounded_to_28_decimals",
    TimestampSpaceNoZ => "timestamp_space_no_z",
    TimestampSpaceWithOffset => "timestamp_space_with_offset",
    TimestampNoZone => "timestamp_no_zone",
    TimestampNoSeconds => "timestamp_no_seconds",
    TimestampHourOverflow => "timestamp_hour_overflow",
    TimestampAmPm => "timestamp_am_pm",
    DateOnly => "date_only",
    DateMmDdYyyy => "date_mm_dd_yyyy",
    DateMDYyyy => "date_m_d_yyyy",
    DateMDYy => "date_m_d_yy",
    TagsMissingBraces => "tags_missing_braces",
    TagsPythonRepr => "tags_python_repr",
    TagsUnparseable => "tags_unparseable",
    CurrencyMissingAssumedUsd => "currency_missing_assumed_usd",
    EffectiveCostMissingAssumedBilled => "effective_cost_missing_assumed_billed",
    EffectiveCostNullAssumedBilled => "effective_cost_null_assumed_billed",
    ProviderNameMissing => "provider_name_missing",
    BillingPeriodDerived => "billing_period_derived_from_usage_date",
    ChargeCategoryDefaulted => "charge_category_defaulted",
    JsonUnknownKey => "jsonl_key_not_in_header",
}

/// Deviation counters (a fixed array: counting is on the hot path).
#[derive(Clone, Debug)]
pub struct Deviations {
    counts: [u64; Dev::ALL.len()],
}

impl Default for Deviations {
    fn default() -> Self {
        Deviations {
            counts: [0; Dev::ALL.len()],
        }
    }
}

impl Deviations {
    #[inline]
    pub fn add(&mut self, d: Dev) {
        self.counts[d as usize] += 1;
    }
    pub fn add_n(&mut self, d: Dev, n: u64) {
        self.counts[d as usize] += n;
    }
    pub fn get(&self, d: Dev) -> u64 {
        self.counts[d as usize]
    }
    pub fn into_map(self, into: &mut BTreeMap<String, u64>) {
        for d in Dev::ALL {
            let n = self.counts[*d as usize];
            if n > 0 {
                *into.entry(d.as_str().to_string()).or_default() += n;
            }
        }
    }
}

// ---------------------------------------------------------------------------------------
// Rows and cells
// ---------------------------------------------------------------------------------------

/// One cell as a reader yields it: text for CSV/JSON, typed values for Parquet.
#[derive(Clone, Debug)]
pub enum Cell<'a> {
    Null,
    Text(&'a str),
    Float(f64),
    Int(i64),
    Dec(Decimal),
    Bool(bool),
    Time(DateTime<Utc>),
    /// Text the reader had to build (a Parquet decimal beyond 28 digits).
    Owned(String),
    /// A Parquet map column (CUR 2.0 `resource_tags`).
    Pairs(Vec<(&'a str, Option<&'a str>)>),
    /// A value the reader could not read (invalid UTF-8, unsupported Parquet type): the
    /// row is quarantined with this reason if the column is used.
    Bad(&'static str),
}

/// One source row; `col` indexes the file's header.
pub trait Row {
    /// 1-based line (CSV, JSON lines) or row (Parquet) number.
    fn line(&self) -> u64;
    fn cell(&self, col: usize) -> Cell<'_>;
    /// The row as read, for quarantine records.
    fn raw(&self) -> String;
}

/// Cap on the raw text kept with a quarantined row.
pub const RAW_LIMIT: usize = 4096;

pub fn truncate_raw(mut s: String) -> String {
    if s.len() > RAW_LIMIT {
        let mut cut = RAW_LIMIT;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
        s.push('…');
    }
    s
}

/// The column a quarantine reason names: reasons start with the column at fault followed
/// by `": "` (`Plan::extract` uses the file's own header name; the format builders use the
/// format's canonical name, matched here case-insensitively). The longest match wins, so
/// `cost` does not take a reason about `cost_at_list`. `None` when no header column leads.
pub fn fault_column(header: &[String], reason: &str) -> Option<String> {
    header
        .iter()
        .filter(|h| {
            !h.is_empty()
                && reason.len() > h.len()
                && reason.is_char_boundary(h.len())
                && reason[..h.len()].eq_ignore_ascii_case(h)
                && reason[h.len()..].starts_with(": ")
        })
        .max_by_key(|h| h.len())
        .cloned()
}

// ---------------------------------------------------------------------------------------
// Shared enum values
// ---------------------------------------------------------------------------------------

pub const CHARGE_CATEGORIES: &[&str] = &["Usage", "Purchase", "Tax", "Credit", "Adjustment"];
pub const PRICING_CATEGORIES: &[&str] = &["Standard", "Dynamic", "Committed", "Other"];
/// FOCUS ChargeClass: null, or a correction of an earlier billing period.
pub const CHARGE_CLASSES: &[&str] = &["Correction"];
/// FOCUS CommitmentDiscountCategory: spend-based (savings plans) or usage-based
/// (reservations) commitments.
pub const COMMITMENT_DISCOUNT_CATEGORIES: &[&str] = &["Spend", "Usage"];

/// First day of the month of `t`, and of the next month (UTC).
pub fn calendar_month(t: DateTime<Utc>) -> (DateTime<Utc>, DateTime<Utc>) {
    use chrono::Datelike;
    let (y, m) = (t.year(), t.month());
    let start = NaiveDate::from_ymd_opt(y, m, 1)
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .map(|d| d.and_utc());
    let (ny, nm) = if m == 12 { (y + 1, 1) } else { (y, m + 1) };
    let end = NaiveDate::from_ymd_opt(ny, nm, 1)
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .map(|d| d.and_utc());
    match (start, end) {
        (Some(s), Some(e)) => (s, e),
        _ => (t, t),
    }
}

pub mod lit;
mod parse;
mod plan;
mod table;
#[cfg(test)]
mod tests;
mod values;

pub use parse::*;
pub use plan::*;
pub use table::*;
pub use values::*;
