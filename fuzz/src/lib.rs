//! What the fuzz targets share: one billing-export run with its invariants checked.
use bursar::billing::{BillingFormat, read::parse_bytes};

/// Parses `data` as an export of `format`. The first byte picks how the file is named
/// (`.csv` or `.jsonl`, so both text readers run) and whether the format is detected from
/// the columns or given; the rest is the file. Panics (a finding) if the parser panics or
/// if the lines handed to the sink are not the lines the summary counts.
pub fn billing(format: BillingFormat, data: &[u8]) {
    let Some((&sel, body)) = data.split_first() else {
        return;
    };
    let name = if sel & 1 == 0 {
        "export.csv"
    } else {
        "export.jsonl"
    };
    let hint = (sel & 2 == 0).then_some(format);
    let mut handed = 0u64;
    let mut sink = |batch: Vec<bursar::billing::CostLine>| -> Result<(), String> {
        for l in &batch {
            assert!(l.line >= 1, "a cost line numbered 0");
        }
        handed += batch.len() as u64;
        Ok(())
    };
    if let Ok(summary) = parse_bytes(name, body, hint, &mut sink) {
        assert_eq!(
            summary.lines, handed,
            "summary.lines vs lines handed to the sink"
        );
        for q in &summary.quarantined {
            assert!(q.line >= 1, "a quarantined row numbered 0: {q:?}");
            assert!(!q.reason.is_empty(), "a quarantined row without a reason");
        }
    }
}
