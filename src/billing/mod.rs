//! Billing exports → one FOCUS-shaped cost line. One parser per source format (`focus.rs`,
//! `cur.rs`, `gcp.rs`, `azure.rs`), all driven by the column tables in `mapping/` and the
//! readers in `read/` (CSV, CSV.gz, JSON lines, Parquet); `detect.rs` tells the format
//! (and FOCUS version) from the columns.
//!
//! Invariant: money is exact (`Decimal`, up to 28 significant digits; Parquet doubles are
//! converted through their shortest round-trip decimal text). A row that cannot be read is
//! quarantined with its line and reason, never dropped silently; a tolerated deviation from
//! the spec (space instead of `T` in timestamps, empty string as null, wrong case) is
//! counted, not rejected.
pub mod accept;
pub mod azure;
pub mod cost_explorer;
pub mod cur;
pub mod detect;
pub mod dims;
pub mod focus;
pub mod gcp;
pub mod mapping;
pub mod read;
pub mod s3;

use std::collections::BTreeMap;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;

pub use dims::{DimsCache, DimsRef, LineDims};

/// A source format, as `bursar ingest --format` names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum BillingFormat {
    Focus,
    /// AWS Cost and Usage Report: legacy CSV, Athena/Parquet snake_case, CUR 2.0.
    Cur,
    /// GCP BigQuery billing export delivered as files.
    Gcp,
    /// Azure Cost Management exports (EA, PayAsYouGo/MCA; actual or amortized).
    Azure,
}

impl BillingFormat {
    pub fn as_str(&self) -> &'static str {
        match self {
            BillingFormat::Focus => "focus",
            BillingFormat::Cur => "cur",
            BillingFormat::Gcp => "gcp",
            BillingFormat::Azure => "azure",
        }
    }

    /// The format's column table (its file: `focus.rs`, `cur.rs`, `gcp.rs`, `azure.rs`).
    pub fn table(self) -> &'static mapping::Table {
        match self {
            BillingFormat::Focus => &focus::TABLE,
            BillingFormat::Cur => &cur::TABLE,
            BillingFormat::Gcp => &gcp::TABLE,
            BillingFormat::Azure => &azure::TABLE,
        }
    }

    /// One cost line from a row's mapped values, by the format's rules.
    #[inline]
    pub fn build_line(
        self,
        v: mapping::Values<'_>,
        line: u64,
        dev: &mut mapping::Deviations,
        dims: &mut DimsCache,
    ) -> Result<CostLine, String> {
        match self {
            BillingFormat::Focus => focus::build(v, line, dev, dims),
            BillingFormat::Cur => cur::build(v, line, dev, dims),
            BillingFormat::Gcp => gcp::build(v, line, dev, dims),
            BillingFormat::Azure => azure::build(v, line, dev, dims),
        }
    }
}

impl std::str::FromStr for BillingFormat {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "focus" => Ok(BillingFormat::Focus),
            "cur" | "aws" => Ok(BillingFormat::Cur),
            "gcp" | "google" => Ok(BillingFormat::Gcp),
            "azure" => Ok(BillingFormat::Azure),
            other => Err(format!(
                "unknown billing format {}: expected auto, focus, cur, gcp or azure",
                crate::domain::quote::quote(other)
            )),
        }
    }
}

/// One cost line in FOCUS terms: its own money, quantity and periods, and its descriptive
/// fields, which lines with the same ones share (see [`dims`]).
#[derive(Clone, Debug, PartialEq)]
pub struct CostLine {
    /// 1-based line (CSV, JSON lines) or row number (Parquet) in the source file.
    pub line: u64,
    pub billed_cost: Decimal,
    pub effective_cost: Decimal,
    pub list_cost: Option<Decimal>,
    /// FOCUS ContractedCost: the cost at negotiated rates, before commitment discounts;
    /// `None` when the source has no such column (native exports).
    pub contracted_cost: Option<Decimal>,
    pub billing_period_start: DateTime<Utc>,
    pub billing_period_end: DateTime<Utc>,
    pub charge_period_start: DateTime<Utc>,
    pub charge_period_end: DateTime<Utc>,
    pub consumed_quantity: Option<Decimal>,
    /// Currency, category, provider, service, region, resource, SKU, accounts, tags.
    pub dims: Arc<LineDims>,
}

/// A row that could not be turned into a cost line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Quarantined {
    pub line: u64,
    /// The column the row failed on, as the file names it (`None` when the row as a whole
    /// is at fault: invalid JSON, a file that ends inside the row).
    pub column: Option<String>,
    pub reason: String,
    /// The row as read (truncated to a few KB).
    pub raw: String,
}

/// What parsing one file found, besides the lines themselves.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ParseSummary {
    pub format: Option<BillingFormat>,
    /// FOCUS version told from the columns ("1.0", "1.1", "1.2", "1.3"), or the native
    /// variant ("cur-legacy-csv", "cur-parquet", "cur2", "azure-ea", "azure-mca", ...).
    pub variant: String,
    pub rows_read: u64,
    pub lines: u64,
    /// Tolerated deviations, counted by kind.
    pub deviations: BTreeMap<String, u64>,
    pub quarantined: Vec<Quarantined>,
    /// The line of the row the file ends inside (a CSV cut mid-row, a JSON line cut short):
    /// the file is incomplete. That row is quarantined, not parsed.
    pub truncated_at: Option<u64>,
}

#[derive(Debug, thiserror::Error)]
pub enum BillingError {
    #[error("cannot read {file}: {detail}")]
    Io { file: String, detail: String },
    #[error("{file}: not a known billing export (columns: {columns})")]
    UnknownFormat { file: String, columns: String },
    #[error("{file}: missing required column {column}")]
    MissingColumn { file: String, column: String },
    #[error("{file} line {line}: {detail}")]
    Malformed {
        file: String,
        line: u64,
        detail: String,
    },
    #[error("ingest stopped: {0}")]
    Sink(String),
}

/// Receives parsed lines in batches; an error stops the parse.
pub type Sink<'a> = dyn FnMut(Vec<CostLine>) -> Result<(), String> + 'a;

/// Lines per sink call.
pub const BATCH: usize = 10_000;
