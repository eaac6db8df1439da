//! Renders a budget alert: email subject, plain text and HTML (every value HTML-escaped),
//! and a Slack Block Kit payload (with a plain `text` fallback). Amounts are shown rounded
//! to two decimals with thousands separators; what is stored stays exact.
use chrono::NaiveDate;
use rust_decimal::{Decimal, RoundingStrategy};
use serde_json::{Value, json};

use crate::notify::outbox::OutboxMessage;

/// Everything an alert message says.
#[derive(Debug, Clone, PartialEq)]
pub struct AlertContext {
    pub budget: String,
    pub period_key: String,
    /// First day of the period, in the budget's timezone.
    pub period_start: NaiveDate,
    /// Last day of the period (inclusive), in the budget's timezone.
    pub period_end: NaiveDate,
    pub threshold_key: String,
    /// e.g. "80% of budget".
    pub threshold_description: String,
    /// `actual` or `forecast`: which figure crossed the threshold.
    pub on: String,
    /// The threshold as an amount (e.g. 80% of the budget amount).
    pub limit: Decimal,
    /// The budget amount for the period.
    pub amount: Decimal,
    pub actual: Decimal,
    pub forecast: Decimal,
    pub currency: String,
    pub top_services: Vec<(String, Decimal)>,
    pub top_tags: Vec<(String, Decimal)>,
    /// The tag key of `top_tags`.
    pub tag_key: String,
    pub dashboard_url: Option<String>,
    /// Unit of `limit`, `amount`, `actual`, `forecast`: the currency, or `GB`.
    pub metric_unit: String,
}

/// `1234567.891` → `1,234,567.89` (half away from zero).
pub fn format_amount(d: Decimal) -> String {
    let r = d.round_dp_with_strategy(2, RoundingStrategy::MidpointAwayFromZero);
    let s = format!("{:.2}", r.abs());
    let (int, frac) = s.split_once('.').unwrap_or((&s, "00"));
    let mut grouped = String::with_capacity(int.len() + int.len() / 3);
    for (i, c) in int.chars().enumerate() {
        if i > 0 && (int.len() - i) % 3 == 0 {
            grouped.push(',');
        }
        grouped.push(c);
    }
    let sign = if r.is_sign_negative() && !r.is_zero() {
        "-"
    } else {
        ""
    };
    format!("{sign}{grouped}.{frac}")
}

fn money(d: Decimal, unit: &str) -> String {
    format!("{} {unit}", format_amount(d))
}

/// `part` as a percentage of `whole`, one decimal; `None` when `whole` is zero.
fn percent(part: Decimal, whole: Decimal) -> Option<String> {
    if whole.is_zero() {
        return None;
    }
    let p = (part * Decimal::ONE_HUNDRED / whole)
        .round_dp_with_strategy(1, RoundingStrategy::MidpointAwayFromZero);
    Some(format!("{p:.1}%"))
}

pub fn html_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// Slack mrkdwn / plain text escaping (`&`, `<`, `>` are control characters there).
pub(crate) fn slack_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

fn truncate(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        s.to_string()
    } else {
        let mut t: String = s.chars().take(max.saturating_sub(1)).collect();
        t.push('…');
        t
    }
}

impl AlertContext {
    fn on_forecast(&self) -> bool {
        self.on.eq_ignore_ascii_case("forecast")
    }

    /// "actual spend" / "forecast" (or egress wording for GB budgets).
    fn basis_label(&self) -> &'static str {
        match (self.on_forecast(), self.metric_unit == "GB") {
            (true, _) => "forecast",
            (false, true) => "actual egress",
            (false, false) => "actual spend",
        }
    }

    fn headline(&self) -> String {
        let verb = if self.on_forecast() {
            "is forecast to reach"
        } else {
            "has reached"
        };
        format!(
            "Budget {} {verb} {} ({})",
            self.budget,
            self.threshold_description,
            money(self.limit, &self.metric_unit)
        )
    }

    fn period_text(&self) -> String {
        format!(
            "{} ({} to {})",
            self.period_key, self.period_start, self.period_end
        )
    }

    fn figure(&self, v: Decimal) -> String {
        match percent(v, self.amount) {
            Some(p) => format!("{} ({p} of budget)", money(v, &self.metric_unit)),
            None => money(v, &self.metric_unit),
        }
    }

    fn top_tag_title(&self) -> String {
        format!("Top by tag \"{}\"", self.tag_key)
    }
}

/// Email subject, plain text and HTML.
pub fn render_email(ctx: &AlertContext) -> (String, String, String) {
    let subject = format!("[bursar] {}", ctx.headline());
    let unit = &ctx.metric_unit;

    let mut text = String::new();
    text.push_str(&ctx.headline());
    text.push_str(".\n\n");
    let rows: Vec<(&str, String)> = vec![
        ("Budget", ctx.budget.clone()),
        ("Period", ctx.period_text()),
        (
            "Threshold",
            format!(
                "{} = {} on {}",
                ctx.threshold_description,
                money(ctx.limit, unit),
                ctx.basis_label()
            ),
        ),
        ("Budget amount", money(ctx.amount, unit)),
        ("Actual to date", ctx.figure(ctx.actual)),
        ("Forecast for the period", ctx.figure(ctx.forecast)),
    ];
    for (k, v) in &rows {
        text.push_str(&format!("{k}: {v}\n"));
    }
    let lists = [
        ("Top services".to_string(), &ctx.top_services),
        (ctx.top_tag_title(), &ctx.top_tags),
    ];
    for (title, list) in &lists {
        if list.is_empty() {
            continue;
        }
        text.push_str(&format!("\n{title} (cost in the period):\n"));
        for (i, (name, v)) in list.iter().enumerate() {
            text.push_str(&format!(
                "  {}. {name}: {}\n",
                i + 1,
                money(*v, &ctx.currency)
            ));
        }
    }
    if let Some(u) = &ctx.dashboard_url {
        text.push_str(&format!("\nDashboard: {u}\n"));
    }
    text.push_str(&format!(
        "\n-- \nbursar budget alert {}/{}/{}\n",
        ctx.budget, ctx.period_key, ctx.threshold_key
    ));

    let e = html_escape;
    let mut html = String::new();
    html.push_str("<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>");
    html.push_str(&e(&subject));
    html.push_str("</title></head>\n<body style=\"font-family: sans-serif\">\n");
    html.push_str(&format!("<h2>{}</h2>\n<table>\n", e(&ctx.headline())));
    for (k, v) in &rows {
        html.push_str(&format!(
            "<tr><th align=\"left\">{}</th><td>{}</td></tr>\n",
            e(k),
            e(v)
        ));
    }
    html.push_str("</table>\n");
    for (title, list) in &lists {
        if list.is_empty() {
            continue;
        }
        html.push_str(&format!(
            "<h3>{}</h3>\n<table>\n<tr><th align=\"left\">Name</th><th align=\"right\">Cost</th></tr>\n",
            e(title)
        ));
        for (name, v) in list.iter() {
            html.push_str(&format!(
                "<tr><td>{}</td><td align=\"right\">{}</td></tr>\n",
                e(name),
                e(&money(*v, &ctx.currency))
            ));
        }
        html.push_str("</table>\n");
    }
    if let Some(u) = &ctx.dashboard_url {
        html.push_str(&format!("<p><a href=\"{}\">Open dashboard</a></p>\n", e(u)));
    }
    html.push_str(&format!(
        "<p style=\"color: #888\">bursar budget alert {}</p>\n</body></html>\n",
        e(&format!(
            "{}/{}/{}",
            ctx.budget, ctx.period_key, ctx.threshold_key
        ))
    ));
    (subject, text, html)
}

/// Slack Block Kit payload: header, fields, top contributors, a dashboard button when
/// `dashboard_url` is set, and a plain `text` fallback for notifications.
pub fn render_slack(ctx: &AlertContext) -> Value {
    let unit = &ctx.metric_unit;
    let field = |k: &str, v: String| json!({"type": "mrkdwn", "text": truncate(&format!("*{}*\n{}", slack_escape(k), slack_escape(&v)), 2000)});
    let mut blocks = vec![
        json!({
            "type": "header",
            "text": {"type": "plain_text", "text": truncate(&ctx.headline(), 150), "emoji": false}
        }),
        json!({
            "type": "section",
            "fields": [
                field("Budget", ctx.budget.clone()),
                field("Period", ctx.period_text()),
                field("Threshold", format!("{} = {} on {}", ctx.threshold_description, money(ctx.limit, unit), ctx.basis_label())),
                field("Budget amount", money(ctx.amount, unit)),
                field("Actual to date", ctx.figure(ctx.actual)),
                field("Forecast", ctx.figure(ctx.forecast)),
            ]
        }),
    ];
    let lists = [
        ("Top services".to_string(), &ctx.top_services),
        (ctx.top_tag_title(), &ctx.top_tags),
    ];
    for (title, list) in &lists {
        if list.is_empty() {
            continue;
        }
        let lines: Vec<String> = list
            .iter()
            .map(|(n, v)| {
                format!(
                    "• {} — {}",
                    slack_escape(n),
                    slack_escape(&money(*v, &ctx.currency))
                )
            })
            .collect();
        blocks.push(json!({
            "type": "section",
            "text": {"type": "mrkdwn", "text": truncate(&format!("*{}*\n{}", slack_escape(title), lines.join("\n")), 3000)}
        }));
    }
    if let Some(u) = &ctx.dashboard_url {
        blocks.push(json!({
            "type": "actions",
            "elements": [{
                "type": "button",
                "text": {"type": "plain_text", "text": "Open dashboard"},
                "url": u,
            }]
        }));
    }
    blocks.push(json!({
        "type": "context",
        "elements": [{"type": "mrkdwn", "text": slack_escape(&format!("bursar budget alert {}/{}/{}", ctx.budget, ctx.period_key, ctx.threshold_key))}]
    }));
    let fallback = format!(
        "{}: actual {}, forecast {}",
        ctx.headline(),
        money(ctx.actual, unit),
        money(ctx.forecast, unit)
    );
    json!({"text": slack_escape(&fallback), "blocks": blocks})
}

/// One outbox message per email recipient and per Slack webhook.
pub fn outbox_messages(
    ctx: &AlertContext,
    emails: &[String],
    slack_webhooks: &[String],
) -> Vec<OutboxMessage> {
    let mut out = Vec::with_capacity(emails.len() + slack_webhooks.len());
    if !emails.is_empty() {
        let (subject, text, html) = render_email(ctx);
        for to in emails {
            out.push(OutboxMessage {
                channel: "email".into(),
                target: to.clone(),
                subject: subject.clone(),
                body_text: text.clone(),
                body_html: html.clone(),
                slack_payload: String::new(),
            });
        }
    }
    if !slack_webhooks.is_empty() {
        let payload = render_slack(ctx);
        let subject = format!("[bursar] {}", ctx.headline());
        let text = payload["text"].as_str().unwrap_or_default().to_string();
        let payload = payload.to_string();
        for hook in slack_webhooks {
            out.push(OutboxMessage {
                channel: "slack".into(),
                target: hook.clone(),
                subject: subject.clone(),
                body_text: text.clone(),
                body_html: String::new(),
                slack_payload: payload.clone(),
            });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(s: &str) -> Decimal {
        s.parse().unwrap()
    }

    pub(crate) fn ctx() -> AlertContext {
        AlertContext {
            budget: "ml <platform> & co".into(),
            period_key: "2024-09".into(),
            period_start: NaiveDate::from_ymd_opt(2024, 9, 1).unwrap(),
            period_end: NaiveDate::from_ymd_opt(2024, 9, 30).unwrap(),
            threshold_key: "actual-80".into(),
            threshold_description: "80% of budget".into(),
            on: "actual".into(),
            limit: d("8000"),
            amount: d("10000"),
            actual: d("8123.456"),
            forecast: d("11000.5"),
            currency: "USD".into(),
            top_services: vec![
                ("Amazon EC2".into(), d("5000")),
                ("<script>alert(1)</script>".into(), d("12.345")),
            ],
            top_tags: vec![("research".into(), d("7000"))],
            tag_key: "team".into(),
            dashboard_url: Some("https://grafana.example.com/d/b?x=1&y=2".into()),
            metric_unit: "USD".into(),
        }
    }

    #[test]
    fn amounts_are_grouped_and_rounded() {
        assert_eq!(format_amount(d("1234567.891")), "1,234,567.89");
        assert_eq!(format_amount(d("0.005")), "0.01");
        assert_eq!(format_amount(d("-1000")), "-1,000.00");
        assert_eq!(format_amount(d("999.999")), "1,000.00");
        assert_eq!(format_amount(d("12")), "12.00");
    }

    #[test]
    fn email_has_the_numbers_and_escapes_html() {
        let (subject, text, html) = render_email(&ctx());
        assert!(subject.contains("80% of budget"), "{subject}");
        assert!(subject.contains("8,000.00 USD"));
        assert!(
            text.contains("Actual to date: 8,123.46 USD (81.2% of budget)"),
            "{text}"
        );
        assert!(text.contains("Forecast for the period: 11,000.50 USD (110.0% of budget)"));
        assert!(text.contains("1. Amazon EC2: 5,000.00 USD"));
        assert!(text.contains("research: 7,000.00 USD"));
        assert!(text.contains("Dashboard: https://grafana.example.com/d/b?x=1&y=2"));
        assert!(!html.contains("<script>"), "{html}");
        assert!(html.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
        assert!(html.contains("ml &lt;platform&gt; &amp; co"));
        assert!(html.contains("href=\"https://grafana.example.com/d/b?x=1&amp;y=2\""));
        assert!(html.contains("8,123.46 USD"));
    }

    #[test]
    fn slack_payload_is_block_kit_with_a_fallback() {
        let v = render_slack(&ctx());
        assert!(v["text"].as_str().unwrap().contains("8,123.46 USD"));
        let blocks = v["blocks"].as_array().unwrap();
        assert_eq!(blocks[0]["type"], "header");
        assert_eq!(blocks[1]["type"], "section");
        assert_eq!(blocks[1]["fields"].as_array().unwrap().len(), 6);
        let s = v.to_string();
        assert!(!s.contains("<script>"));
        assert!(blocks.iter().any(|b| b["type"] == "actions"
            && b["elements"][0]["url"] == "https://grafana.example.com/d/b?x=1&y=2"));
        let mut c = ctx();
        c.dashboard_url = None;
        let v = render_slack(&c);
        assert!(
            !v["blocks"]
                .as_array()
                .unwrap()
                .iter()
                .any(|b| b["type"] == "actions")
        );
    }

    #[test]
    fn forecast_alerts_and_egress_say_so() {
        let mut c = ctx();
        c.on = "forecast".into();
        c.metric_unit = "GB".into();
        let (subject, text, _) = render_email(&c);
        assert!(subject.contains("is forecast to reach"), "{subject}");
        assert!(subject.contains("8,000.00 GB"));
        assert!(text.contains("on forecast"));
    }

    #[test]
    fn one_message_per_recipient_and_webhook() {
        let m = outbox_messages(
            &ctx(),
            &["a@example.com".into(), "b@example.com".into()],
            &["https://hooks.slack.com/services/X".into()],
        );
        assert_eq!(m.len(), 3);
        assert_eq!(m[0].channel, "email");
        assert_eq!(m[1].target, "b@example.com");
        assert!(m[0].body_html.starts_with("<!DOCTYPE html>"));
        assert_eq!(m[2].channel, "slack");
        let v: Value = serde_json::from_str(&m[2].slack_payload).unwrap();
        assert!(v["blocks"].is_array());
        assert!(outbox_messages(&ctx(), &[], &[]).is_empty());
    }
}
