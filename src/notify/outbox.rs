//! The alert outbox's rows as notify sees them: `OutboxMessage` (what `render` builds for a
//! fired alert and the store queues with it) and `OutboxRow` (a stored message, claimed and
//! handed to a `Notifier`). The store reads and writes them; notify owns their shape.
//!
//! Invariant: `target` (an email address or a webhook URL) is a secret: their `Debug`
//! redacts it.
use std::fmt;

use chrono::{DateTime, Utc};

/// A message to queue with a fired alert.
#[derive(Clone, PartialEq)]
pub struct OutboxMessage {
    /// `email` or `slack`.
    pub channel: String,
    /// Email address or Slack webhook URL (secret).
    pub target: String,
    pub subject: String,
    pub body_text: String,
    pub body_html: String,
    /// JSON (Slack Block Kit); empty for email.
    pub slack_payload: String,
}

impl fmt::Debug for OutboxMessage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OutboxMessage")
            .field("channel", &self.channel)
            .field("target", &"<redacted>")
            .field("subject", &self.subject)
            .finish_non_exhaustive()
    }
}

/// One row of `alert_outbox`.
#[derive(Clone, PartialEq)]
pub struct OutboxRow {
    pub id: i64,
    pub budget: String,
    pub period_key: String,
    pub threshold_key: String,
    pub channel: String,
    /// Email address or Slack webhook URL (secret).
    pub target: String,
    pub subject: String,
    pub body_text: String,
    pub body_html: String,
    pub slack_payload: String,
    /// `pending` or `delivered`.
    pub state: String,
    /// Delivery attempts made so far (failed ones and the successful one).
    pub attempts: i64,
    pub next_attempt_at: DateTime<Utc>,
    pub claimed_until: Option<DateTime<Utc>>,
    pub last_error: Option<String>,
    pub created_at: DateTime<Utc>,
    pub delivered_at: Option<DateTime<Utc>>,
}

impl fmt::Debug for OutboxRow {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OutboxRow")
            .field("id", &self.id)
            .field("budget", &self.budget)
            .field("period_key", &self.period_key)
            .field("threshold_key", &self.threshold_key)
            .field("channel", &self.channel)
            .field("target", &"<redacted>")
            .field("state", &self.state)
            .field("attempts", &self.attempts)
            .field("next_attempt_at", &self.next_attempt_at)
            .field("claimed_until", &self.claimed_until)
            .field("last_error", &self.last_error)
            .field("delivered_at", &self.delivered_at)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_of_messages_and_rows_never_shows_the_target() {
        let m = OutboxMessage {
            channel: "slack".into(),
            target: "https://hooks.slack.com/services/T000/B000/SECRETPATH".into(),
            subject: "s".into(),
            body_text: String::new(),
            body_html: String::new(),
            slack_payload: "{}".into(),
        };
        assert!(!format!("{m:?}").contains("SECRETPATH"));
        let now = Utc::now();
        let r = OutboxRow {
            id: 1,
            budget: "b".into(),
            period_key: "p".into(),
            threshold_key: "t".into(),
            channel: "email".into(),
            target: "cfo@example.com".into(),
            subject: "s".into(),
            body_text: String::new(),
            body_html: String::new(),
            slack_payload: String::new(),
            state: "pending".into(),
            attempts: 0,
            next_attempt_at: now,
            claimed_until: None,
            last_error: None,
            created_at: now,
            delivered_at: None,
        };
        assert!(!format!("{r:?}").contains("cfo@example.com"));
    }
}
