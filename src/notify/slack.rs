//! Slack alerts: POST the stored Block Kit payload to the row's incoming-webhook URL.
//! A 2xx answer is delivered; any other status, a transport error or the timeout is an
//! error (the outbox retries later). The webhook URL is a secret: errors never carry it.
use std::time::Duration;

use async_trait::async_trait;

use super::{Notifier, NotifyError, error_chain, scrub};
use crate::notify::outbox::OutboxRow;

/// Longest part of a rejection body kept in the error (Slack answers e.g. `invalid_payload`).
const MAX_BODY: usize = 200;

pub struct SlackNotifier {
    client: reqwest::Client,
    timeout: Duration,
}

impl SlackNotifier {
    pub fn new(timeout: Duration) -> Result<Self, NotifyError> {
        let client = reqwest::Client::builder()
            .timeout(timeout)
            .user_agent(concat!("bursar/", env!("CARGO_PKG_VERSION")))
            // A redirect would send the payload somewhere else; webhooks do not redirect.
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| NotifyError::Config(format!("HTTP client: {}", e.without_url())))?;
        Ok(SlackNotifier { client, timeout })
    }
}

#[async_trait]
impl Notifier for SlackNotifier {
    fn channel(&self) -> &'static str {
        "slack"
    }

    async fn send(&self, msg: &OutboxRow) -> Result<(), NotifyError> {
        let url = url::Url::parse(&msg.target)
            .ok()
            .filter(|u| matches!(u.scheme(), "https" | "http"))
            .ok_or_else(|| NotifyError::Invalid("the webhook is not an http(s) URL".into()))?;
        let secrets = [msg.target.as_str()];
        let result = self
            .client
            .post(url)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(msg.slack_payload.clone())
            .send()
            .await;
        let resp = match result {
            Ok(r) => r,
            Err(e) if e.is_timeout() => return Err(NotifyError::Timeout(self.timeout)),
            Err(e) => {
                return Err(NotifyError::Transport(scrub(
                    &error_chain(&e.without_url()),
                    &secrets,
                )));
            }
        };
        let status = resp.status();
        if status.is_success() {
            return Ok(());
        }
        let body = match resp.text().await {
            Ok(b) => b.chars().take(MAX_BODY).collect::<String>(),
            Err(e) if e.is_timeout() => return Err(NotifyError::Timeout(self.timeout)),
            Err(_) => String::new(),
        };
        Err(NotifyError::Rejected {
            status: status.as_u16(),
            body: scrub(body.trim(), &secrets),
        })
    }
}
