//! Renders the idle-GPU notice: the machine, the evidence that it sat idle, what will happen
//! to it and when, and how to keep it — as an email (subject, text, HTML with every value
//! escaped) and a Slack Block Kit payload with a plain-text fallback.
use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use serde_json::json;

use crate::notify::outbox::OutboxMessage;
use crate::notify::render::{format_amount, html_escape, slack_escape};

/// Everything a notice says.
#[derive(Clone, Debug, PartialEq)]
pub struct IdleNotice {
    pub provider: String,
    pub instance_id: String,
    pub instance_name: String,
    pub region: String,
    pub instance_type: String,
    /// e.g. "8 × A100-80GB"; empty when unknown.
    pub gpus: String,
    /// "30m".
    pub window: String,
    pub threshold_percent: f64,
    pub max_utilization_percent: Option<f64>,
    pub samples: u32,
    /// "stop", "terminate", or "none" (notify mode: nothing will be done).
    pub action: String,
    /// When the action is due (the end of the grace period).
    pub due_at: Option<DateTime<Utc>>,
    pub price_per_hour: Option<Decimal>,
    pub currency: String,
}

impl IdleNotice {
    fn what_happens(&self) -> String {
        match (self.action.as_str(), self.due_at) {
            ("stop" | "terminate", Some(due)) => format!(
                "bursar will {} it at {} UTC unless it becomes busy or is kept.",
                self.action,
                due.format("%Y-%m-%d %H:%M")
            ),
            _ => "bursar will not act on it (notify mode); please stop it if it is not needed."
                .to_string(),
        }
    }

    fn keep_command(&self) -> String {
        format!("bursar fleet keep {} --for 4h", self.instance_id)
    }

    fn cost(&self) -> String {
        match self.price_per_hour {
            Some(p) => format!("{} {}/hour", format_amount(p), self.currency),
            None => "unknown".into(),
        }
    }

    fn evidence(&self) -> String {
        let max = self
            .max_utilization_percent
            .map_or("n/a".into(), |m| format!("{m:.1}%"));
        format!(
            "highest GPU utilisation {max} over the last {} ({} readings; idle below {}%)",
            self.window, self.samples, self.threshold_percent
        )
    }

    fn subject(&self) -> String {
        format!(
            "[bursar] Idle GPU machine {} ({} {})",
            self.instance_name, self.provider, self.instance_type
        )
    }

    fn lines(&self) -> Vec<(&'static str, String)> {
        vec![
            (
                "Machine",
                format!("{} ({})", self.instance_name, self.instance_id),
            ),
            (
                "Where",
                format!("{} {} {}", self.provider, self.region, self.instance_type),
            ),
            (
                "GPUs",
                if self.gpus.is_empty() {
                    "unknown".into()
                } else {
                    self.gpus.clone()
                },
            ),
            ("Costs", self.cost()),
            ("Evidence", self.evidence()),
            ("What happens", self.what_happens()),
            ("To keep it", self.keep_command()),
        ]
    }

    /// (subject, text, html).
    pub fn email(&self) -> (String, String, String) {
        let mut text = String::from("A GPU machine has been idle.\n\n");
        let mut html = String::from("<html><body><p>A GPU machine has been idle.</p><table>");
        for (k, v) in self.lines() {
            text.push_str(&format!("{k}: {v}\n"));
            html.push_str(&format!(
                "<tr><th align=\"left\">{}</th><td>{}</td></tr>",
                html_escape(k),
                html_escape(&v)
            ));
        }
        html.push_str("</table></body></html>");
        (self.subject(), text, html)
    }

    pub fn slack(&self) -> serde_json::Value {
        let fields: Vec<_> = self
            .lines()
            .into_iter()
            .map(|(k, v)| json!({"type": "mrkdwn", "text": format!("*{k}*\n{}", slack_escape(&v))}))
            .collect();
        json!({
            "text": slack_escape(&format!("{}: {}", self.subject(), self.what_happens())),
            "blocks": [
                {"type": "header", "text": {"type": "plain_text", "text": "Idle GPU machine"}},
                {"type": "section", "fields": fields.iter().take(10).collect::<Vec<_>>()},
            ]
        })
    }

    /// One message per address and per webhook.
    pub fn messages(&self, emails: &[String], slack_webhooks: &[String]) -> Vec<OutboxMessage> {
        let mut out = Vec::new();
        let (subject, text, html) = self.email();
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
        if !slack_webhooks.is_empty() {
            let payload = self.slack();
            let fallback = payload["text"].as_str().unwrap_or_default().to_string();
            for hook in slack_webhooks {
                out.push(OutboxMessage {
                    channel: "slack".into(),
                    target: hook.clone(),
                    subject: subject.clone(),
                    body_text: fallback.clone(),
                    body_html: String::new(),
                    slack_payload: payload.to_string(),
                });
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn notice() -> IdleNotice {
        IdleNotice {
            provider: "aws".into(),
            instance_id: "i-0abc".into(),
            instance_name: "train<1>".into(),
            region: "us-east-1".into(),
            instance_type: "p4d.24xlarge".into(),
            gpus: "8 × A100".into(),
            window: "30m".into(),
            threshold_percent: 10.0,
            max_utilization_percent: Some(0.4656),
            samples: 120,
            action: "stop".into(),
            due_at: Some("2026-12-06T10:15:00Z".parse().unwrap()),
            price_per_hour: Some("32.7726".parse().unwrap()),
            currency: "USD".into(),
        }
    }

    #[test]
    fn the_notice_says_what_when_why_and_how_to_keep_it() {
        let (subject, text, html) = notice().email();
        assert!(subject.contains("train<1>") && subject.contains("p4d.24xlarge"));
        assert!(
            text.contains("bursar will stop it at 2026-12-06 10:15 UTC"),
            "{text}"
        );
        assert!(text.contains("bursar fleet keep i-0abc --for 4h"));
        assert!(text.contains("highest GPU utilisation 0.5% over the last 30m"));
        assert!(text.contains("32.77 USD/hour"), "{text}");
        assert!(html.contains("train&lt;1&gt;") && !html.contains("train<1>"));
        let slack = notice().slack();
        assert!(slack["text"].as_str().unwrap().contains("train&lt;1&gt;"));
        assert_eq!(slack["blocks"][1]["fields"].as_array().unwrap().len(), 7);
        let m = notice().messages(&["a@example.com".into()], &["http://hook".into()]);
        assert_eq!(m.len(), 2);
        assert_eq!(
            (m[0].channel.as_str(), m[1].channel.as_str()),
            ("email", "slack")
        );
    }

    #[test]
    fn notify_mode_says_nothing_will_be_done() {
        let mut n = notice();
        n.action = "none".into();
        n.due_at = None;
        assert!(n.email().1.contains("will not act on it"));
    }
}
