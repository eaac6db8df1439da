//! Inline SVG charts for the report page: `daily_stacked` (spend per day, stacked by
//! provider, credits below the axis) and `share_bar` (one row's share of a table). Geometry
//! is f64 (drawing only); every number shown as text is the exact decimal, escaped.
use std::collections::BTreeMap;
use std::fmt::Write as _;

use chrono::NaiveDate;
use rust_decimal::Decimal;
use rust_decimal::prelude::ToPrimitive;

use crate::domain::report::{DaySpend, Month};
use crate::notify::render::{format_amount, html_escape};

/// Chart size in SVG user units.
pub const WIDTH: f64 = 720.0;
pub const HEIGHT: f64 = 260.0;
const LEFT: f64 = 70.0;
const RIGHT: f64 = 10.0;
const TOP: f64 = 10.0;
const BOTTOM: f64 = 24.0;

/// Series colours, in order of spend (colour-blind-safe Okabe–Ito, then greys).
pub const PALETTE: [&str; 8] = [
    "#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#F0E442", "#777777",
];

/// The colour of the `i`-th series.
pub fn colour(i: usize) -> &'static str {
    PALETTE[i.min(PALETTE.len() - 1)]
}

/// Providers in one currency's chart, largest total first, then by name; "(none)" for lines
/// without a provider.
pub fn series_order(days: &[DaySpend]) -> Vec<String> {
    let mut totals: BTreeMap<String, Decimal> = BTreeMap::new();
    for d in days {
        *totals.entry(provider_label(&d.provider)).or_default() += d.billed.abs();
    }
    let mut v: Vec<(String, Decimal)> = totals.into_iter().collect();
    v.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    v.into_iter().map(|(k, _)| k).collect()
}

pub fn provider_label(p: &Option<String>) -> String {
    p.clone().unwrap_or_else(|| "(none)".into())
}

fn f(d: Decimal) -> f64 {
    d.to_f64().unwrap_or(0.0)
}

/// A stacked bar chart of `days` (one currency) over every day of `month`: positive amounts
/// stack up from the zero line, negative ones (credits) down from it. `id` makes the title
/// and description ids unique on the page.
pub fn daily_stacked(id: &str, month: Month, currency: &str, days: &[DaySpend]) -> String {
    let order = series_order(days);
    let mut per_day: BTreeMap<NaiveDate, Vec<(usize, Decimal)>> = BTreeMap::new();
    for d in days {
        let i = order
            .iter()
            .position(|p| *p == provider_label(&d.provider))
            .unwrap_or(0);
        per_day.entry(d.day).or_default().push((i, d.billed));
    }
    let (mut top, mut bottom) = (Decimal::ZERO, Decimal::ZERO);
    for v in per_day.values() {
        let up: Decimal = v.iter().map(|x| x.1).filter(|x| x.is_sign_positive()).sum();
        let down: Decimal = v.iter().map(|x| x.1).filter(|x| x.is_sign_negative()).sum();
        top = top.max(up);
        bottom = bottom.min(down);
    }
    let range = f(top) - f(bottom);
    let plot_h = HEIGHT - TOP - BOTTOM;
    let scale = if range > 0.0 { plot_h / range } else { 0.0 };
    let zero_y = TOP + f(top) * scale;
    let n = month.days().max(1) as f64;
    let slot = (WIDTH - LEFT - RIGHT) / n;
    let bar_w = (slot * 0.8).max(1.0);
    let mut s = String::new();
    let title = format!("Billed spend per day in {currency}, stacked by provider");
    let _ = write!(
        s,
        "<svg class=\"chart\" viewBox=\"0 0 {WIDTH} {HEIGHT}\" width=\"{WIDTH}\" height=\"{HEIGHT}\" \
         role=\"img\" aria-labelledby=\"{id}-title {id}-desc\">\
         <title id=\"{id}-title\">{}</title>\
         <desc id=\"{id}-desc\">{} days, {} providers; largest day {} {}</desc>",
        html_escape(&title),
        per_day.len(),
        order.len(),
        html_escape(&format_amount(top)),
        html_escape(currency),
    );
    // Axis: the zero line, the top value and the month's days.
    let _ = write!(
        s,
        "<line class=\"axis\" x1=\"{LEFT}\" y1=\"{zero_y:.2}\" x2=\"{:.2}\" y2=\"{zero_y:.2}\"/>",
        WIDTH - RIGHT
    );
    let _ = write!(
        s,
        "<text class=\"tick\" x=\"{:.2}\" y=\"{:.2}\" text-anchor=\"end\">{}</text>",
        LEFT - 4.0,
        TOP + 8.0,
        html_escape(&format_amount(top))
    );
    let _ = write!(
        s,
        "<text class=\"tick\" x=\"{:.2}\" y=\"{:.2}\" text-anchor=\"end\">0</text>",
        LEFT - 4.0,
        zero_y + 4.0
    );
    if bottom.is_sign_negative() && !bottom.is_zero() {
        let _ = write!(
            s,
            "<text class=\"tick\" x=\"{:.2}\" y=\"{:.2}\" text-anchor=\"end\">{}</text>",
            LEFT - 4.0,
            HEIGHT - BOTTOM,
            html_escape(&format_amount(bottom))
        );
    }
    for (k, day) in month.each_day().enumerate() {
        let x = LEFT + slot * k as f64 + (slot - bar_w) / 2.0;
        if k % 5 == 0 {
            let _ = write!(
                s,
                "<text class=\"tick\" x=\"{:.2}\" y=\"{:.2}\" text-anchor=\"middle\">{}</text>",
                x + bar_w / 2.0,
                HEIGHT - 6.0,
                day.format("%d")
            );
        }
        let Some(parts) = per_day.get(&day) else {
            continue;
        };
        let mut parts = parts.clone();
        parts.sort_by_key(|p| p.0);
        let (mut up, mut down) = (zero_y, zero_y);
        for (i, amount) in parts {
            let h = (f(amount).abs() * scale).max(0.0);
            let y = if amount.is_sign_negative() {
                let y = down;
                down += h;
                y
            } else {
                up -= h;
                up
            };
            let _ = write!(
                s,
                "<rect x=\"{x:.2}\" y=\"{y:.2}\" width=\"{bar_w:.2}\" height=\"{h:.2}\" fill=\"{}\">\
                 <title>{} {}: {} {}</title></rect>",
                colour(i),
                day,
                html_escape(&order[i]),
                amount.normalize(),
                html_escape(currency)
            );
        }
    }
    s.push_str("</svg>");
    s
}

/// A small horizontal bar: `part` as a share of `whole` (decorative; the table says the
/// numbers).
pub fn share_bar(part: Decimal, whole: Decimal) -> String {
    let share = if whole.is_zero() || part.is_sign_negative() {
        0.0
    } else {
        (f(part) / f(whole) * 100.0).clamp(0.0, 100.0)
    };
    format!(
        "<svg class=\"bar\" viewBox=\"0 0 100 8\" width=\"120\" height=\"8\" aria-hidden=\"true\">\
         <rect width=\"{share:.2}\" height=\"8\" fill=\"{}\"/></svg>",
        PALETTE[0]
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn day(d: &str, p: &str, amount: &str) -> DaySpend {
        DaySpend {
            day: d.parse().unwrap(),
            provider: Some(p.into()),
            currency: "USD".into(),
            billed: amount.parse().unwrap(),
        }
    }

    /// (x, y, width, height) of every `<rect` with a `y` attribute.
    fn rects(svg: &str) -> Vec<(f64, f64, f64, f64)> {
        let attr = |r: &str, name: &str| -> f64 {
            let k = format!(" {name}=\"");
            let i = r.find(&k).unwrap() + k.len();
            r[i..i + r[i..].find('"').unwrap()].parse().unwrap()
        };
        svg.split("<rect")
            .skip(1)
            .map(|r| {
                (
                    attr(r, "x"),
                    attr(r, "y"),
                    attr(r, "width"),
                    attr(r, "height"),
                )
            })
            .collect()
    }

    #[test]
    fn bars_stay_inside_the_chart_and_stack_in_proportion() {
        let m = Month::parse("2024-09").unwrap();
        let days = [
            day("2024-09-01", "AWS", "30"),
            day("2024-09-01", "Microsoft", "10"),
            day("2024-09-30", "AWS", "20"),
            day("2024-09-15", "Oracle", "-10"),
        ];
        let svg = daily_stacked("c", m, "USD", &days);
        let r = rects(&svg);
        assert_eq!(r.len(), 4);
        for (x, y, w, h) in &r {
            assert!(*x >= LEFT && x + w <= WIDTH - RIGHT + 0.01, "x {x} w {w}");
            assert!(
                *y >= TOP - 0.01 && y + h <= HEIGHT - BOTTOM + 0.01,
                "y {y} h {h}"
            );
            assert!(*h >= 0.0);
        }
        // 30 and 10 stack to the top (40 is the largest day); 20 is half of 40.
        let plot = HEIGHT - TOP - BOTTOM;
        let unit = plot / 50.0; // 40 up, 10 down
        assert!((r[0].3 - 30.0 * unit).abs() < 0.02);
        assert!((r[1].3 - 10.0 * unit).abs() < 0.02);
        assert!((r[1].1 - TOP).abs() < 0.02, "the stack reaches the top");
        assert!((r[3].3 - 20.0 * unit).abs() < 0.02);
        // The credit hangs below the zero line.
        let zero = TOP + 40.0 * unit;
        assert!((r[2].1 - zero).abs() < 0.02);
        assert!(svg.contains("<title>2024-09-15 Oracle: -10 USD</title>"));
        assert!(svg.contains("role=\"img\""));
    }

    #[test]
    fn names_are_escaped_and_an_empty_month_draws_no_bars() {
        let m = Month::parse("2024-02").unwrap();
        let svg = daily_stacked("c", m, "USD", &[day("2024-02-03", "<b>&x", "1")]);
        assert!(svg.contains("&lt;b&gt;&amp;x"));
        assert!(!svg.contains("<b>"));
        let empty = daily_stacked("e", m, "USD", &[]);
        assert!(rects(&empty).is_empty());
        assert!(!empty.contains("NaN") && !empty.contains("inf"));
    }

    #[test]
    fn share_bars_are_clamped() {
        let d = |s: &str| s.parse::<Decimal>().unwrap();
        assert!(share_bar(d("1"), d("4")).contains("width=\"25.00\""));
        assert!(share_bar(d("-1"), d("4")).contains("width=\"0.00\""));
        assert!(share_bar(d("1"), d("0")).contains("width=\"0.00\""));
    }
}
