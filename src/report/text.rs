//! The report's plain-text summary: the body of the monthly email beside the HTML page.
use std::collections::BTreeMap;
use std::fmt::Write as _;

use rust_decimal::Decimal;

use crate::domain::report::MonthlyReport;

/// Totals, budgets, savings, idle GPUs and the top movers, one line each.
pub fn summary(r: &MonthlyReport) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "bursar spend report: {} ({})", r.month.title(), r.month);
    if r.partial {
        let _ = writeln!(s, "Month to date: the month has not ended.");
    }
    if r.is_empty() {
        let _ = writeln!(
            s,
            "\nNo spend, placement decisions or idle-GPU actions were recorded for {}.",
            r.month.title()
        );
        return s;
    }
    if let Some(d) = r.data_through() {
        let _ = writeln!(s, "Billing data through {d}.");
    }
    let _ = writeln!(s, "\nTotals");
    for t in &r.totals {
        let _ = writeln!(
            s,
            "  {}: billed {}, effective {} ({} cost lines)",
            t.currency,
            t.billed.normalize(),
            t.effective.normalize(),
            t.lines
        );
    }
    if !r.budgets.is_empty() {
        let _ = writeln!(s, "\nBudgets");
        for b in &r.budgets {
            let _ = writeln!(
                s,
                "  {} ({}): actual {} / forecast {} of {} {}: {}",
                b.name,
                b.period_key,
                b.actual.normalize(),
                b.forecast.normalize(),
                b.amount.normalize(),
                b.unit,
                b.health.label()
            );
        }
    }
    let mut placement: BTreeMap<&str, Decimal> = BTreeMap::new();
    for p in &r.placement {
        *placement.entry(p.currency.as_str()).or_default() += p.saving;
    }
    if !placement.is_empty() || !r.idle.avoided.is_empty() {
        let _ = writeln!(s, "\nSavings");
        for (c, v) in placement {
            let _ = writeln!(s, "  placement against the baseline: {} {c}", v.normalize());
        }
        for (c, v) in &r.idle.avoided {
            let _ = writeln!(s, "  idle GPUs stopped: {} {c} avoided", v.normalize());
        }
    }
    if !r.idle.actions.is_empty() {
        let actions: Vec<String> = r
            .idle
            .actions
            .iter()
            .map(|(k, n)| format!("{} {n}", k.replace('_', " ")))
            .collect();
        let _ = writeln!(s, "\nIdle-GPU actions: {}", actions.join(", "));
    }
    if !r.movers.is_empty() {
        let _ = writeln!(s, "\nTop cost movers against {}", r.month.previous());
        for m in &r.movers {
            let _ = writeln!(
                s,
                "  {}: {} -> {} {} ({}{})",
                m.name.as_deref().unwrap_or("(no service)"),
                m.previous.normalize(),
                m.current.normalize(),
                m.currency,
                if m.change().is_sign_positive() {
                    "+"
                } else {
                    ""
                },
                m.change().normalize()
            );
        }
    }
    s
}
