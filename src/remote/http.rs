//! The one HTTP helper the REST clients share: any request (`send_with_retry`, for the
//! fleet's POST/DELETE calls and their polls) or a GET of a body (`get_with_retry`) with a
//! timeout, retries on 429/5xx and transport errors with exponential backoff and full jitter
//! (honouring Retry-After), and a guard that stops a pagination walk when a next-page token
//! repeats.
use std::collections::HashSet;
use std::time::Duration;

use rand::Rng;
use reqwest::StatusCode;

use super::{HttpSettings, SourceError};

pub fn client(settings: &HttpSettings) -> Result<reqwest::Client, SourceError> {
    reqwest::Client::builder()
        .timeout(settings.timeout)
        .user_agent(concat!("bursar/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| SourceError::Config(format!("HTTP client: {e}")))
}

/// Backoff before retry number `attempt` (1-based): full jitter, uniform in 0 ..=
/// `min(max, base * 2^(attempt-1))`.
pub fn backoff(settings: &HttpSettings, attempt: u32) -> Duration {
    let exp = settings
        .base_backoff
        .saturating_mul(1u32 << (attempt.saturating_sub(1)).min(16));
    let cap = exp.min(settings.max_backoff);
    let ms = cap.as_millis() as u64;
    if ms == 0 {
        return Duration::ZERO;
    }
    Duration::from_millis(rand::rng().random_range(0..=ms))
}

/// Replaces the values of secret query parameters of `url` wherever they appear in `text`.
pub fn redact_secrets(url: &str, text: &str) -> String {
    let Ok(u) = url::Url::parse(url) else {
        return text.to_string();
    };
    let mut out = text.to_string();
    for (k, v) in u.query_pairs() {
        if is_secret_param(&k) && v.len() >= 4 {
            out = out.replace(v.as_ref(), "***");
        }
    }
    out
}

fn is_secret_param(k: &str) -> bool {
    matches!(
        k.to_ascii_lowercase().as_str(),
        "key" | "api_key" | "apikey" | "token" | "sig" | "signature"
    )
}

/// A URL safe to log: the values of `key`, `api_key`, `token`, `sig` and `signature`
/// query parameters are replaced by `***`.
pub fn loggable_url(url: &str) -> String {
    let Ok(mut u) = url::Url::parse(url) else {
        return url.to_string();
    };
    let secret = is_secret_param;
    if !u.query_pairs().any(|(k, _)| secret(&k)) {
        return url.to_string();
    }
    let pairs: Vec<(String, String)> = u
        .query_pairs()
        .map(|(k, v)| {
            let v = if secret(&k) {
                "***".to_string()
            } else {
                v.to_string()
            };
            (k.to_string(), v)
        })
        .collect();
    u.query_pairs_mut().clear().extend_pairs(pairs);
    u.to_string()
}

fn retryable(status: StatusCode) -> bool {
    status == StatusCode::TOO_MANY_REQUESTS || status.is_server_error()
}

fn retry_after_header(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    let v = headers.get(reqwest::header::RETRY_AFTER)?;
    let secs: u64 = v.to_str().ok()?.trim().parse().ok()?;
    Some(Duration::from_secs(secs.min(60)))
}

/// One HTTP answer that `send_with_retry` stopped at: any status the caller has to judge
/// (2xx, 202 to poll, 404, 401, ...), or the last retryable one when the retries ran out.
#[derive(Debug)]
pub struct Answer {
    pub status: StatusCode,
    pub headers: reqwest::header::HeaderMap,
    pub body: bytes::Bytes,
    /// How many times the request was sent (1 = no retry).
    pub attempts: u32,
}

impl Answer {
    /// True when this is a 429 or 5xx: the retries ran out on it.
    pub fn exhausted(&self) -> bool {
        retryable(self.status)
    }

    /// `Retry-After` in seconds (at most 60), when present.
    pub fn retry_after(&self) -> Option<Duration> {
        retry_after_header(&self.headers)
    }

    /// The first 300 characters of the body, for an error message.
    pub fn body_excerpt(&self) -> String {
        String::from_utf8_lossy(&self.body)
            .chars()
            .take(300)
            .collect()
    }
}

/// Sends the request `make` builds (called once per attempt, so a retried call is the same
/// call: keep any idempotency key outside the closure) and returns the first answer that is
/// not 429 or 5xx, whatever its status; 429, 5xx and transport errors are retried
/// `settings.max_retries` times with backoff (honouring Retry-After). When the retries run
/// out on a status, that last answer is returned (`Answer::exhausted`); on a transport error,
/// `SourceError::Transport` (after `max_retries + 1` attempts).
pub async fn send_with_retry(
    make: impl Fn() -> reqwest::RequestBuilder,
    url: &str,
    settings: &HttpSettings,
) -> Result<Answer, SourceError> {
    let mut attempt = 0u32;
    loop {
        attempt += 1;
        let last = attempt > settings.max_retries;
        match make().send().await {
            Ok(resp) => {
                let status = resp.status();
                if retryable(status) && !last {
                    let wait = retry_after_header(resp.headers())
                        .map(|d| d.min(settings.max_backoff))
                        .unwrap_or_else(|| backoff(settings, attempt));
                    tracing::warn!(url = %loggable_url(url), status = status.as_u16(), attempt, ?wait, "retrying");
                    tokio::time::sleep(wait).await;
                    continue;
                }
                let headers = resp.headers().clone();
                let body = resp.bytes().await.map_err(|e| SourceError::Transport {
                    url: url.to_string(),
                    detail: format!("reading body: {}", e.without_url()),
                })?;
                return Ok(Answer {
                    status,
                    headers,
                    body,
                    attempts: attempt,
                });
            }
            Err(e) => {
                if !last {
                    let wait = backoff(settings, attempt);
                    tracing::warn!(url = %loggable_url(url), error = %e.without_url(), attempt, ?wait, "retrying after transport error");
                    tokio::time::sleep(wait).await;
                    continue;
                }
                return Err(SourceError::Transport {
                    url: url.to_string(),
                    detail: redact_secrets(url, &e.without_url().to_string()),
                });
            }
        }
    }
}

/// GETs `url` and returns the body of the first 2xx answer. 4xx other than 429 fail at once
/// (401/403 as `Auth`); 429, 5xx and transport errors are retried `max_retries` times.
pub async fn get_with_retry(
    client: &reqwest::Client,
    url: &str,
    settings: &HttpSettings,
) -> Result<bytes_body::Body, SourceError> {
    let answer = send_with_retry(|| client.get(url), url, settings).await?;
    let status = answer.status;
    if status.is_success() {
        return Ok(bytes_body::Body(answer.body));
    }
    let body = redact_secrets(url, &String::from_utf8_lossy(&answer.body));
    let body: String = body.chars().take(300).collect();
    Err(match status.as_u16() {
        401 | 403 => SourceError::Auth(format!("HTTP {status} from {url}: {body}")),
        429 => SourceError::Throttled {
            url: url.to_string(),
            status: 429,
            attempts: answer.attempts,
        },
        s => SourceError::Http {
            url: url.to_string(),
            status: s,
            attempts: answer.attempts,
            body,
        },
    })
}

/// The reason in a Google or ARM error body (`{"error": {"code": …, "message": …}}`):
/// `CODE: message` (ARM's string code, or Google's first `errors[].reason`), else the body's
/// first 300 characters.
pub fn error_message(body: &[u8]) -> String {
    let v: serde_json::Value = serde_json::from_slice(body).unwrap_or_default();
    let e = &v["error"];
    let message = e["message"].as_str().or_else(|| e.as_str());
    let code = e["code"]
        .as_str()
        .or_else(|| e["errors"][0]["reason"].as_str())
        .or_else(|| e["status"].as_str());
    match (code, message) {
        (Some(c), Some(m)) => format!("{c}: {m}"),
        (None, Some(m)) => m.to_string(),
        (Some(c), None) => c.to_string(),
        (None, None) => String::from_utf8_lossy(body).chars().take(300).collect(),
    }
}

/// Parses a JSON body, naming the URL in the error.
pub fn parse_json<T: serde::de::DeserializeOwned>(
    body: &bytes_body::Body,
    url: &str,
) -> Result<T, SourceError> {
    serde_json::from_slice(&body.0).map_err(|e| SourceError::Malformed {
        url: url.to_string(),
        detail: e.to_string(),
    })
}

/// Remembers every next-page token of one walk; a repeat is a server bug that would loop
/// forever.
#[derive(Default)]
pub struct TokenGuard(HashSet<String>);

impl TokenGuard {
    /// Normalises a next token: `None`, `null` and `""` all end the walk (returns `Ok(None)`).
    pub fn next(&mut self, token: Option<&str>, url: &str) -> Result<Option<String>, SourceError> {
        match token.map(str::trim) {
            None | Some("") => Ok(None),
            Some(t) => {
                if !self.0.insert(t.to_string()) {
                    return Err(SourceError::PaginationLoop {
                        url: url.to_string(),
                        token: t.to_string(),
                    });
                }
                Ok(Some(t.to_string()))
            }
        }
    }
}

pub mod bytes_body {
    /// A response body.
    #[derive(Debug, Clone)]
    pub struct Body(pub bytes::Bytes);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_is_capped() {
        let s = HttpSettings {
            base_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_millis(1000),
            ..Default::default()
        };
        for _ in 0..50 {
            let b1 = backoff(&s, 1);
            assert!(b1 <= Duration::from_millis(100));
            let b3 = backoff(&s, 3);
            assert!(b3 <= Duration::from_millis(400));
            let b10 = backoff(&s, 10);
            assert!(b10 <= Duration::from_millis(1000));
        }
    }

    #[test]
    fn secrets_are_not_logged() {
        let u = loggable_url("http://127.0.0.1:9/v1/services/X/skus?key=SECRET123&pageSize=5000");
        assert!(!u.contains("SECRET123"), "{u}");
        assert!(u.contains("pageSize=5000"));
        assert_eq!(loggable_url("http://a/b?c=d"), "http://a/b?c=d");
    }

    #[test]
    fn error_messages_of_google_and_arm_bodies() {
        let arm = br#"{"error":{"code":"OperationNotAllowed","message":"locked"}}"#;
        assert_eq!(error_message(arm), "OperationNotAllowed: locked");
        let google = br#"{"error":{"code":400,"message":"protected","errors":[{"reason":"resourceInUseByAnotherResource"}]}}"#;
        assert_eq!(
            error_message(google),
            "resourceInUseByAnotherResource: protected"
        );
        assert_eq!(error_message(b"plain text"), "plain text");
    }

    #[test]
    fn token_guard_ends_on_empty_and_detects_repeats() {
        let mut g = TokenGuard::default();
        assert_eq!(g.next(None, "u").unwrap(), None);
        assert_eq!(g.next(Some(""), "u").unwrap(), None);
        assert_eq!(g.next(Some("a"), "u").unwrap(), Some("a".into()));
        assert_eq!(g.next(Some("b"), "u").unwrap(), Some("b".into()));
        assert!(matches!(
            g.next(Some("a"), "u"),
            Err(SourceError::PaginationLoop { .. })
        ));
    }
}
