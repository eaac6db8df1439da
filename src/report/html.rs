//! The report page: one self-contained HTML document (inline CSS and SVG, no script, a
//! Content-Security-Policy that forbids any fetch), print-friendly, with table headers and
//! chart titles for screen readers. Every value from the database is escaped; every amount
//! shown as text is the exact decimal.
use std::collections::BTreeMap;
use std::fmt::Write as _;

use rust_decimal::Decimal;

use super::svg;
use crate::domain::report::{GroupSpend, MonthlyReport};
use crate::notify::render::html_escape;

/// The page's Content-Security-Policy: nothing may be fetched or run.
pub const CSP: &str = "default-src 'none'; style-src 'unsafe-inline'; img-src data:";

/// Rows a service or team table shows before it sums the rest into one row.
pub const TABLE_ROWS: usize = 15;

const STYLE: &str = "
body{font:14px/1.45 system-ui,-apple-system,'Segoe UI',Roboto,sans-serif;color:#1a1a1a;background:#fff;margin:0 auto;max-width:60rem;padding:1.5rem}
h1{font-size:1.6rem;margin:0 0 .25rem}h2{font-size:1.2rem;margin:1.8rem 0 .6rem;border-bottom:2px solid #0072B2;padding-bottom:.2rem}
.meta{color:#555;margin:0}
table{border-collapse:collapse;width:100%;margin:.4rem 0}
caption{text-align:left;color:#555;font-size:.9rem;padding:.2rem 0}
th,td{border-bottom:1px solid #ddd;padding:.3rem .5rem;text-align:left;vertical-align:middle}
thead th{border-bottom:2px solid #999}
td.num,th.num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
.status{font-weight:600;padding:.1rem .4rem;border:1px solid currentColor;border-radius:3px;white-space:nowrap}
.healthy{color:#1b6e3a}.unhealthy{color:#b00020}.forecasted{color:#8a5300}
.legend{list-style:none;padding:0;margin:.3rem 0;display:flex;flex-wrap:wrap;gap:.3rem 1rem}
.legend svg{vertical-align:middle;margin-right:.3rem}
.chart{max-width:100%;height:auto}.chart .axis{stroke:#333;stroke-width:1}.chart .tick{font-size:10px;fill:#333}
.empty{font-size:1.1rem;padding:1rem;border:1px solid #999}
.up{color:#b00020}.down{color:#1b6e3a}
footer{margin-top:2rem;color:#555;font-size:.85rem}
@page{size:A4;margin:14mm}
@media print{body{max-width:none;padding:0;font-size:11pt}h2{break-after:avoid}section{break-inside:avoid}
#budgets,#savings{break-before:page}a{color:inherit;text-decoration:none}
svg rect{print-color-adjust:exact;-webkit-print-color-adjust:exact}}
";

fn esc(s: &str) -> String {
    html_escape(s)
}

fn amount(d: Decimal) -> String {
    d.normalize().to_string()
}

fn name_or(n: &Option<String>, none: &str) -> String {
    match n {
        Some(s) if !s.is_empty() => esc(s),
        _ => format!("<em>{}</em>", esc(none)),
    }
}

/// The whole page.
pub fn page(r: &MonthlyReport) -> String {
    let mut s = String::with_capacity(32 * 1024);
    let month = r.month.title();
    let _ = write!(
        s,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta http-equiv=\"Content-Security-Policy\" content=\"{CSP}\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>Spend report: {}</title><style>{STYLE}</style></head><body>\
         <header><h1>Spend report: {}</h1><p class=\"meta\">{} UTC · generated {} UTC{}{}</p></header><main>",
        esc(&month),
        esc(&month),
        esc(&format!(
            "{} to {}",
            r.month.first_day(),
            r.month.end().date_naive().pred_opt().unwrap_or_default()
        )),
        r.generated_at.format("%Y-%m-%d %H:%M"),
        match r.data_through() {
            Some(d) => format!(" · billing data through <span id=\"data-through\">{d}</span>"),
            None => String::new(),
        },
        if r.partial {
            " · <strong>month to date</strong>: the month has not ended"
        } else {
            ""
        }
    );
    if r.is_empty() {
        let _ = write!(
            s,
            "<section id=\"no-data\"><h2>No data</h2><p class=\"empty\">No spend, placement \
             decisions or idle-GPU actions were recorded for {}. If billing exports for the month \
             exist, ingest them with <code>bursar ingest</code>.</p></section>",
            esc(&month)
        );
    } else {
        totals(&mut s, r);
        daily(&mut s, r);
        groups(
            &mut s,
            "services",
            "By service",
            "Service",
            "(no service)",
            &r.by_service,
        );
        let team_title = format!("By team (tag {})", r.team_tag);
        groups(
            &mut s,
            "teams",
            &team_title,
            "Team",
            "(untagged)",
            &r.by_team,
        );
        budgets(&mut s, r);
        savings(&mut s, r);
        idle(&mut s, r);
        movers(&mut s, r);
    }
    s.push_str(
        "</main><footer>Made by bursar from the stored billing exports, budgets, placement \
         decisions and idle-GPU ledger. Amounts are exact, in each line's billing currency; \
         charts round for drawing only.</footer></body></html>\n",
    );
    s
}

fn section_open(s: &mut String, id: &str, title: &str) {
    let _ = write!(
        s,
        "<section id=\"{id}\" aria-labelledby=\"h-{id}\"><h2 id=\"h-{id}\">{}</h2>",
        esc(title)
    );
}

fn totals(s: &mut String, r: &MonthlyReport) {
    section_open(s, "totals", "Totals");
    if r.totals.is_empty() {
        s.push_str("<p>No cost lines in this month.</p></section>");
        return;
    }
    s.push_str(
        "<table><caption>Cost lines with a charge period starting in the month, per billing currency</caption>\
         <thead><tr><th scope=\"col\">Currency</th><th scope=\"col\" class=\"num\">Billed cost</th>\
         <th scope=\"col\" class=\"num\">Effective cost</th><th scope=\"col\" class=\"num\">Cost lines</th></tr></thead><tbody>",
    );
    for t in &r.totals {
        let c = esc(&t.currency);
        let _ = write!(
            s,
            "<tr data-total=\"{c}\"><th scope=\"row\">{c}</th><td class=\"num billed\">{}</td>\
             <td class=\"num effective\">{}</td><td class=\"num lines\">{}</td></tr>",
            amount(t.billed),
            amount(t.effective),
            t.lines
        );
    }
    s.push_str("</tbody></table></section>");
}

fn daily(s: &mut String, r: &MonthlyReport) {
    section_open(s, "daily", "Spend per day, by provider");
    let mut by_currency: BTreeMap<&str, Vec<_>> = BTreeMap::new();
    for d in &r.days {
        by_currency
            .entry(d.currency.as_str())
            .or_default()
            .push(d.clone());
    }
    for (k, (currency, days)) in by_currency.iter().enumerate() {
        let _ = write!(
            s,
            "<figure><figcaption>Billed cost per day ({})</figcaption>",
            esc(currency)
        );
        s.push_str("<ul class=\"legend\">");
        for (i, p) in svg::series_order(days).iter().enumerate() {
            let _ = write!(
                s,
                "<li><svg width=\"10\" height=\"10\" aria-hidden=\"true\"><rect width=\"10\" height=\"10\" fill=\"{}\"/></svg>{}</li>",
                svg::colour(i),
                esc(p)
            );
        }
        s.push_str("</ul>");
        s.push_str(&svg::daily_stacked(
            &format!("daily-{k}"),
            r.month,
            currency,
            days,
        ));
        s.push_str("</figure>");
    }
    s.push_str("</section>");
}

/// The first `TABLE_ROWS` groups of each currency, then one row summing the others.
fn groups(s: &mut String, id: &str, title: &str, col: &str, none: &str, rows: &[GroupSpend]) {
    section_open(s, id, title);
    if rows.is_empty() {
        s.push_str("<p>No spend.</p></section>");
        return;
    }
    let _ = write!(
        s,
        "<table><thead><tr><th scope=\"col\">{}</th><th scope=\"col\">Currency</th>\
         <th scope=\"col\" class=\"num\">Billed cost</th><th scope=\"col\" class=\"num\">Effective cost</th>\
         <th scope=\"col\">Share of billed</th></tr></thead><tbody>",
        esc(col)
    );
    let mut by_currency: BTreeMap<&str, Vec<&GroupSpend>> = BTreeMap::new();
    for g in rows {
        by_currency.entry(g.currency.as_str()).or_default().push(g);
    }
    for (currency, list) in by_currency {
        let whole: Decimal = list.iter().map(|g| g.billed.max(Decimal::ZERO)).sum();
        let c = esc(currency);
        for g in list.iter().take(TABLE_ROWS) {
            let _ = write!(
                s,
                "<tr><th scope=\"row\">{}</th><td>{c}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td>{}</td></tr>",
                name_or(&g.name, none),
                amount(g.billed),
                amount(g.effective),
                svg::share_bar(g.billed, whole)
            );
        }
        if list.len() > TABLE_ROWS {
            let rest = &list[TABLE_ROWS..];
            let billed: Decimal = rest.iter().map(|g| g.billed).sum();
            let effective: Decimal = rest.iter().map(|g| g.effective).sum();
            let _ = write!(
                s,
                "<tr class=\"others\"><th scope=\"row\"><em>{} others</em></th><td>{c}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td>{}</td></tr>",
                rest.len(),
                amount(billed),
                amount(effective),
                svg::share_bar(billed, whole)
            );
        }
    }
    s.push_str("</tbody></table></section>");
}

fn budgets(s: &mut String, r: &MonthlyReport) {
    section_open(s, "budgets", "Budgets");
    if r.budgets.is_empty() {
        s.push_str("<p>No budgets are defined.</p></section>");
        return;
    }
    s.push_str(
        "<table><caption>Each budget's period containing the month's end; a period that has \
         ended is judged on its actual spend</caption><thead><tr><th scope=\"col\">Budget</th>\
         <th scope=\"col\">Period</th><th scope=\"col\" class=\"num\">Amount</th>\
         <th scope=\"col\" class=\"num\">Actual</th><th scope=\"col\" class=\"num\">Forecast</th>\
         <th scope=\"col\">Unit</th><th scope=\"col\">Status</th></tr></thead><tbody>",
    );
    for b in &r.budgets {
        let _ = write!(
            s,
            "<tr data-budget=\"{n}\"><th scope=\"row\">{n}</th><td>{}</td><td class=\"num\">{}</td>\
             <td class=\"num\">{}</td><td class=\"num\">{}</td><td>{}</td>\
             <td><span class=\"status {}\">{}</span></td></tr>",
            esc(&b.period_key),
            amount(b.amount),
            amount(b.actual),
            if b.closed {
                format!("{} <small>(final)</small>", amount(b.forecast))
            } else {
                amount(b.forecast)
            },
            esc(&b.unit),
            b.health.class(),
            b.health.label(),
            n = esc(&b.name),
        );
    }
    s.push_str("</tbody></table></section>");
}

fn savings(s: &mut String, r: &MonthlyReport) {
    section_open(s, "savings", "Savings");
    let mut totals: BTreeMap<&str, Decimal> = BTreeMap::new();
    for p in &r.placement {
        *totals.entry(p.currency.as_str()).or_default() += p.saving;
    }
    s.push_str(
        "<table><caption>Savings ledger for the month</caption><thead><tr><th scope=\"col\">Source</th>\
         <th scope=\"col\">Currency</th><th scope=\"col\" class=\"num\">Saved</th></tr></thead><tbody>",
    );
    let mut any = false;
    for (c, v) in &totals {
        any = true;
        let _ = write!(
            s,
            "<tr data-saving=\"placement\"><th scope=\"row\">Placement against the baseline</th><td>{}</td><td class=\"num\">{}</td></tr>",
            esc(c),
            amount(*v)
        );
    }
    for (c, v) in &r.idle.avoided {
        any = true;
        let _ = write!(
            s,
            "<tr data-saving=\"idle\"><th scope=\"row\">Idle GPUs stopped (dollars avoided)</th><td>{}</td><td class=\"num\">{}</td></tr>",
            esc(c),
            amount(*v)
        );
    }
    if !any {
        s.push_str("<tr><td colspan=\"3\">No savings were recorded.</td></tr>");
    }
    s.push_str("</tbody></table>");
    if !r.placement.is_empty() {
        s.push_str(
            "<table><caption>Placement savings per team</caption><thead><tr><th scope=\"col\">Team</th>\
             <th scope=\"col\">Currency</th><th scope=\"col\" class=\"num\">Placed jobs</th>\
             <th scope=\"col\" class=\"num\">Saved against the baseline</th></tr></thead><tbody>",
        );
        for p in &r.placement {
            let _ = write!(
                s,
                "<tr><th scope=\"row\">{}</th><td>{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td></tr>",
                name_or(&p.team, "(no team)"),
                esc(&p.currency),
                p.decisions,
                amount(p.saving)
            );
        }
        s.push_str("</tbody></table>");
    }
    s.push_str("</section>");
}

fn idle(s: &mut String, r: &MonthlyReport) {
    section_open(s, "idle", "Idle GPUs");
    if r.idle.is_empty() {
        s.push_str("<p>No idle-GPU actions in this month.</p></section>");
        return;
    }
    let _ = write!(
        s,
        "<p>Stops and deletions by the idle policy on the savings ledger: {}; machine hours not paid for: {}.</p>",
        r.idle.acted,
        amount(r.idle.hours)
    );
    s.push_str(
        "<table><caption>Idle-GPU actions by state</caption><thead><tr><th scope=\"col\">State</th>\
         <th scope=\"col\" class=\"num\">Actions</th></tr></thead><tbody>",
    );
    for (state, n) in &r.idle.actions {
        let _ = write!(
            s,
            "<tr data-action=\"{st}\"><th scope=\"row\">{st}</th><td class=\"num\">{n}</td></tr>",
            st = esc(&state.replace('_', " ")),
        );
    }
    s.push_str("</tbody></table></section>");
}

fn movers(s: &mut String, r: &MonthlyReport) {
    section_open(s, "movers", "Top cost movers");
    if r.movers.is_empty() {
        s.push_str("<p>No service's spend changed from the previous month.</p></section>");
        return;
    }
    let _ = write!(
        s,
        "<table><caption>Services whose billed cost changed most from {} to {}</caption>\
         <thead><tr><th scope=\"col\">Service</th><th scope=\"col\">Currency</th>\
         <th scope=\"col\" class=\"num\">{}</th><th scope=\"col\" class=\"num\">{}</th>\
         <th scope=\"col\" class=\"num\">Change</th><th scope=\"col\" class=\"num\">%</th></tr></thead><tbody>",
        r.month.previous(),
        r.month,
        r.month.previous(),
        r.month
    );
    for m in &r.movers {
        let change = m.change();
        let class = if change.is_sign_negative() {
            "down"
        } else {
            "up"
        };
        let sign = if change.is_sign_positive() { "+" } else { "" };
        let _ = write!(
            s,
            "<tr><th scope=\"row\">{}</th><td>{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td>\
             <td class=\"num {class}\">{sign}{}</td><td class=\"num\">{}</td></tr>",
            name_or(&m.name, "(no service)"),
            esc(&m.currency),
            amount(m.previous),
            amount(m.current),
            amount(change),
            m.percent()
                .map(|p| format!("{sign}{p}%"))
                .unwrap_or_else(|| "new".into())
        );
    }
    s.push_str("</tbody></table></section>");
}
