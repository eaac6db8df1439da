//! The renderer on hand-made models: escaping, the empty month, exact totals, structure.
use std::collections::BTreeMap;

use rust_decimal::Decimal;

use super::{page, summary};
use crate::domain::report::{
    BudgetLine, CurrencyTotal, DaySpend, GroupSpend, IdleSummary, Month, MonthlyReport,
    PlacementSaving, top_movers,
};

fn d(s: &str) -> Decimal {
    s.parse().unwrap()
}

fn empty(month: &str) -> MonthlyReport {
    MonthlyReport {
        month: Month::parse(month).unwrap(),
        generated_at: "2026-11-01T08:00:00Z".parse().unwrap(),
        partial: false,
        totals: vec![],
        days: vec![],
        by_service: vec![],
        by_team: vec![],
        team_tag: "team".into(),
        budgets: vec![],
        placement: vec![],
        idle: IdleSummary::default(),
        movers: vec![],
    }
}

const HOSTILE: &str = "<script>alert('x')</script>&\"";

fn full() -> MonthlyReport {
    let mut r = empty("2026-10");
    r.totals = vec![CurrencyTotal {
        currency: "USD".into(),
        billed: d("20.52022672899"),
        effective: d("14.97651418586"),
        lines: 1000,
    }];
    r.days = vec![
        DaySpend {
            day: "2026-10-01".parse().unwrap(),
            provider: Some("AWS".into()),
            currency: "USD".into(),
            billed: d("12.5"),
        },
        DaySpend {
            day: "2026-10-02".parse().unwrap(),
            provider: Some(HOSTILE.into()),
            currency: "USD".into(),
            billed: d("8.02022672899"),
        },
    ];
    let svc = |n: &str, b: &str| GroupSpend {
        name: Some(n.into()),
        currency: "USD".into(),
        billed: d(b),
        effective: d(b),
    };
    r.by_service = (0..20).map(|i| svc(&format!("svc{i:02}"), "1")).collect();
    r.by_service.push(svc(HOSTILE, "0.52022672899"));
    r.by_team = vec![GroupSpend {
        name: None,
        currency: "USD".into(),
        billed: d("20.52022672899"),
        effective: d("14.97651418586"),
    }];
    r.budgets = vec![
        BudgetLine::new(
            HOSTILE.into(),
            "2026-10".into(),
            "USD".into(),
            d("10"),
            d("20.5"),
            d("20.5"),
            true,
        ),
        BudgetLine::new(
            "ok".into(),
            "2026-Q4".into(),
            "USD".into(),
            d("100"),
            d("20.5"),
            d("150"),
            false,
        ),
    ];
    r.placement = vec![PlacementSaving {
        team: Some("ml".into()),
        currency: "USD".into(),
        decisions: 3,
        saving: d("4.125"),
    }];
    r.idle = IdleSummary {
        actions: BTreeMap::from([("stopped".to_string(), 2), ("would_stop".to_string(), 5)]),
        avoided: BTreeMap::from([("USD".to_string(), d("65.5452"))]),
        hours: d("2"),
        acted: 1,
    };
    r.movers = top_movers(
        &[svc("EC2", "5")],
        &[svc("EC2", "7.25"), svc(HOSTILE, "1")],
        10,
    );
    r
}

#[test]
fn database_values_are_escaped_everywhere() {
    let html = page(&full());
    assert!(!html.contains("<script"), "no script element");
    assert!(!html.contains("alert('x')"));
    assert!(html.contains("&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;&amp;&quot;"));
    let text = summary(&full());
    assert!(
        text.contains(HOSTILE),
        "the plain text keeps the name as it is"
    );
}

#[test]
fn the_page_is_self_contained_and_fetches_nothing() {
    let html = page(&full());
    assert!(html.starts_with("<!DOCTYPE html>"));
    assert!(html.contains(
        "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; style-src 'unsafe-inline'; img-src data:\">"
    ));
    for banned in [
        "http://", "https://", "src=", "href=", "<link", "<script", "@import", "url(",
    ] {
        assert!(!html.contains(banned), "page contains {banned}");
    }
    assert!(html.contains("@media print"));
}

#[test]
fn totals_are_the_exact_decimals() {
    let html = page(&full());
    assert!(html.contains(
        "<tr data-total=\"USD\"><th scope=\"row\">USD</th><td class=\"num billed\">20.52022672899</td><td class=\"num effective\">14.97651418586</td><td class=\"num lines\">1000</td></tr>"
    ));
    let text = summary(&full());
    assert!(
        text.contains("USD: billed 20.52022672899, effective 14.97651418586 (1000 cost lines)")
    );
}

#[test]
fn every_section_is_present_with_table_headers() {
    let html = page(&full());
    for id in [
        "totals", "daily", "services", "teams", "budgets", "savings", "idle", "movers",
    ] {
        assert!(
            html.contains(&format!("<section id=\"{id}\" aria-labelledby=\"h-{id}\">")),
            "{id}"
        );
    }
    assert_eq!(
        html.matches("<table>").count(),
        html.matches("<thead>").count()
    );
    assert!(html.matches("scope=\"col\"").count() > 20);
    assert!(html.contains("<span class=\"status unhealthy\">Unhealthy</span>"));
    assert!(html.contains("<span class=\"status forecasted\">Forecasted Unhealthy</span>"));
    assert!(html.contains("By team (tag team)"));
    assert!(html.contains("<em>(untagged)</em>"));
    // 21 services: 15 rows, then the other 6 summed exactly.
    assert!(
        html.contains("<em>6 others</em></th><td>USD</td><td class=\"num\">5.52022672899</td>")
    );
    assert!(html.contains("<tr data-saving=\"idle\"><th scope=\"row\">Idle GPUs stopped (dollars avoided)</th><td>USD</td><td class=\"num\">65.5452</td></tr>"));
    assert!(html.contains("<td class=\"num\">4.125</td>"));
    assert!(html.contains("<tr data-action=\"would stop\"><th scope=\"row\">would stop</th><td class=\"num\">5</td></tr>"));
    assert!(html.contains("<td class=\"num up\">+2.25</td><td class=\"num\">+45.0%</td>"));
    assert!(!html.contains("id=\"no-data\""));
    assert!(html.contains("billing data through <span id=\"data-through\">2026-10-02</span>"));
    assert!(summary(&full()).contains("Billing data through 2026-10-02."));
    assert!(!page(&empty("2026-10")).contains("data-through"));
}

#[test]
fn an_empty_month_says_so_plainly() {
    let r = empty("2026-10");
    let html = page(&r);
    assert!(html.contains("<section id=\"no-data\""));
    assert!(html.contains(
        "No spend, placement decisions or idle-GPU actions were recorded for October 2026."
    ));
    assert!(!html.contains("id=\"totals\""));
    assert!(summary(&r).contains(
        "No spend, placement decisions or idle-GPU actions were recorded for October 2026."
    ));
}

#[test]
fn a_month_in_progress_is_marked_month_to_date() {
    let mut r = full();
    r.partial = true;
    assert!(page(&r).contains("month to date"));
    assert!(summary(&r).contains("Month to date"));
    assert!(!page(&full()).contains("month to date"));
}
