//! Talking to cloud APIs, for price sources (`clouds`) and billing sources (`billing`)
//! alike: `HttpSettings` (endpoint override, timeout, retries, backoff) that every source
//! takes, `SourceError`, the typed error the core branches on, `http.rs` (the one REST
//! retry/backoff/jitter helper and the pagination `TokenGuard`), `token.rs` (bearer tokens,
//! fixed or from a metadata service, cached) and `aws.rs` (the shared
//! AWS SDK configuration and error mapping). Knows nothing of what the sources fetch.
pub mod aws;
pub mod http;
pub mod token;

use std::time::Duration;

/// Why a source could not produce a full, trustworthy walk.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error("throttled by {url} after {attempts} attempts (HTTP {status})")]
    Throttled {
        url: String,
        status: u16,
        attempts: u32,
    },
    #[error("HTTP {status} from {url} after {attempts} attempts: {body}")]
    Http {
        url: String,
        status: u16,
        attempts: u32,
        body: String,
    },
    #[error("transport error talking to {url}: {detail}")]
    Transport { url: String, detail: String },
    #[error("malformed response from {url}: {detail}")]
    Malformed { url: String, detail: String },
    #[error("pagination loop: token {token:?} was returned twice by {url}")]
    PaginationLoop { url: String, token: String },
    #[error("rejected credentials or key: {0}")]
    Auth(String),
    #[error("{0}")]
    Sdk(String),
    #[error("bad source configuration: {0}")]
    Config(String),
}

/// Endpoint, timeout and retry settings every source takes.
#[derive(Clone, Debug)]
pub struct HttpSettings {
    /// Base URL or endpoint override; `None` = the provider's public endpoint.
    pub endpoint: Option<String>,
    pub timeout: Duration,
    /// Retries after the first attempt on throttling (429), 5xx and transport errors.
    pub max_retries: u32,
    /// First backoff; doubles each retry, with full jitter, capped at `max_backoff`.
    pub base_backoff: Duration,
    pub max_backoff: Duration,
}

impl Default for HttpSettings {
    fn default() -> Self {
        HttpSettings {
            endpoint: None,
            timeout: Duration::from_secs(30),
            max_retries: 4,
            base_backoff: Duration::from_millis(500),
            max_backoff: Duration::from_secs(20),
        }
    }
}
