//! What every reader shares once it has a header: `resolve` (the format, from the hint or
//! the columns, and its mapping `Plan`) and the `Emitter`, which applies the plan to rows,
//! batches lines to the sink and quarantines rows that cannot be read.

use crate::billing::mapping::{Deviations, Plan, Row, fault_column, truncate_raw};
use crate::billing::{
    BATCH, BillingError, BillingFormat, CostLine, DimsCache, ParseSummary, Quarantined, Sink,
    detect,
};

use super::*;

pub(super) fn resolve(
    file: &str,
    header: Vec<String>,
    hint: Option<BillingFormat>,
    dev: &mut Deviations,
) -> Result<(BillingFormat, String, Plan), BillingError> {
    let detected = detect::detect(&header);
    let (format, variant) = match (hint, detected) {
        (Some(h), Some(d)) if d.format == h => (h, d.variant),
        (Some(h), _) => (h, detect::variant(h, &header)),
        (None, Some(d)) => (d.format, d.variant),
        (None, None) => {
            return Err(BillingError::UnknownFormat {
                file: file.to_string(),
                columns: detect::describe_columns(&header),
            });
        }
    };
    let table = format.table();
    let plan = Plan::new(table, header, file, dev)?;
    Ok((format, variant, plan))
}

/// Applies the plan to rows, batches lines to the sink, records quarantined rows.
pub(super) struct Emitter<'s, 'a> {
    pub(super) format: BillingFormat,
    pub(super) sink: &'s mut Sink<'a>,
    pub(super) batch: Vec<CostLine>,
    pub(super) summary: ParseSummary,
    pub(super) dev: Deviations,
    pub(super) dims: DimsCache,
}

impl<'s, 'a> Emitter<'s, 'a> {
    pub(super) fn new(
        format: BillingFormat,
        variant: String,
        dev: Deviations,
        sink: &'s mut Sink<'a>,
    ) -> Self {
        let summary = ParseSummary {
            format: Some(format),
            variant,
            ..ParseSummary::default()
        };
        Emitter {
            format,
            sink,
            batch: Vec::with_capacity(1024),
            summary,
            dev,
            dims: DimsCache::default(),
        }
    }

    pub(super) fn row(&mut self, plan: &Plan, row: &dyn Row) -> Result<(), BillingError> {
        let format = self.format;
        let line = row.line();
        let (dev, dims) = (&mut self.dev, &mut self.dims);
        let res = plan
            .extract(row, dev)
            .and_then(|v| format.build_line(v, line, dev, dims));
        match res {
            Ok(l) => {
                self.summary.rows_read += 1;
                self.summary.lines += 1;
                self.batch.push(l);
                if self.batch.len() >= BATCH {
                    self.flush()?;
                }
            }
            Err(reason) => {
                let column = fault_column(&plan.header, &reason);
                self.quarantine(line, column, reason, row.raw())
            }
        }
        Ok(())
    }

    pub(super) fn quarantine(
        &mut self,
        line: u64,
        column: Option<String>,
        reason: String,
        raw: String,
    ) {
        self.summary.rows_read += 1;
        self.summary.quarantined.push(Quarantined {
            line,
            column,
            reason,
            raw: truncate_raw(raw),
        });
    }

    /// The file ends inside the row at `line`: the row is quarantined unread and the file
    /// marked incomplete.
    pub(super) fn truncated(&mut self, line: u64, raw: String) {
        self.quarantine(line, None, TRUNCATED_ROW.to_string(), raw);
        self.summary.truncated_at = Some(line);
    }

    pub(super) fn flush(&mut self) -> Result<(), BillingError> {
        if self.batch.is_empty() {
            return Ok(());
        }
        let cap = BATCH.min(self.batch.len() * 2);
        let batch = std::mem::replace(&mut self.batch, Vec::with_capacity(cap));
        (self.sink)(batch).map_err(BillingError::Sink)
    }

    pub(super) fn finish(mut self) -> Result<ParseSummary, BillingError> {
        self.flush()?;
        let mut summary = self.summary;
        self.dev.into_map(&mut summary.deviations);
        Ok(summary)
    }
}
