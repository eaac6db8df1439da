//! What an import reports: `ImportProgress` for the callback, and `ImportReport` with
//! each provider's rows read, offers made and rows skipped (`SkipReason`, `BadRow`).
use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;

use crate::domain::Provider;
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
