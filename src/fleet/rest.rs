//! What the two REST fleets (`gcp.rs`, `azure.rs`) share: `Rest`, a client bound to one API
//! base URL and its bearer token, and `Act`, which turns an answer that is not a success
//! into the right `FleetError` (authentication and 4xx refusals are `Refused`; 429/5xx after
//! the retries, transport errors and unfinished operations are `Failed`, with the attempts).
use reqwest::Method;

use crate::fleet::FleetError;
use crate::remote::http::{Answer, client, error_message};
use crate::remote::token::{BearerToken, send_authed};
use crate::remote::{HttpSettings, SourceError};

/// A client for one cloud API: base URL (no trailing slash), HTTP settings, token.
#[derive(Debug)]
pub(crate) struct Rest {
    pub base: String,
    pub http: HttpSettings,
    client: reqwest::Client,
    token: BearerToken,
}

impl Rest {
    /// `http.endpoint` (or `default_endpoint`) as the base; `access_token` when given, else
    /// a token fetched from `token_url` with the metadata header `token_header`.
    pub fn new(
        http: &HttpSettings,
        default_endpoint: &str,
        access_token: &str,
        token_url: &str,
        token_header: (&'static str, &'static str),
    ) -> Result<Rest, FleetError> {
        let client = client(http).map_err(|e| FleetError::Config(e.to_string()))?;
        let base = http
            .endpoint
            .as_deref()
            .map(str::trim)
            .filter(|e| !e.is_empty())
            .unwrap_or(default_endpoint)
            .trim_end_matches('/')
            .to_string();
        let token = if access_token.trim().is_empty() {
            BearerToken::metadata(token_url, token_header, client.clone(), http.clone())
        } else {
            BearerToken::fixed(access_token.trim())
        };
        Ok(Rest {
            base,
            http: http.clone(),
            client,
            token,
        })
    }

    /// Sends `method url` with the token and the retries; any status comes back.
    pub async fn send(&self, method: Method, url: &str) -> Result<Answer, SourceError> {
        send_authed(
            &self.token,
            || self.client.request(method.clone(), url),
            url,
            &self.http,
        )
        .await
    }

    /// Whether `url` is on the base's origin (scheme, host, port): the only place the
    /// token is sent, whatever a next-page link or an operation header says.
    pub fn same_origin(&self, url: &str) -> bool {
        match (url::Url::parse(&self.base), url::Url::parse(url)) {
            (Ok(a), Ok(b)) => a.origin() == b.origin(),
            _ => false,
        }
    }
}

/// Builds one action's errors.
pub(crate) struct Act<'a> {
    pub provider: &'static str,
    pub action: &'static str,
    pub instance: &'a str,
}

impl Act<'_> {
    pub fn refused(&self, detail: String) -> FleetError {
        FleetError::Refused {
            provider: self.provider,
            action: self.action,
            instance: self.instance.to_string(),
            detail,
        }
    }

    pub fn failed(&self, attempts: u32, detail: String) -> FleetError {
        FleetError::Failed {
            provider: self.provider,
            action: self.action,
            instance: self.instance.to_string(),
            attempts,
            detail,
        }
    }

    /// An answer to the action's own call that is neither a success nor "not found": 429/5xx
    /// after the retries (or a rate-limit 403) failed; 401/403 and other 4xx refused.
    pub fn answer(&self, a: &Answer, url: &str) -> FleetError {
        let reason = error_message(&a.body);
        let rate_limited = reason.to_ascii_lowercase().contains("ratelimitexceeded");
        if a.exhausted() || rate_limited {
            self.failed(a.attempts, describe(a, url))
        } else {
            self.refused(describe(a, url))
        }
    }

    /// A call that got no answer: the token could not be had (refused, naming
    /// authentication), or the transport failed after every retry.
    pub fn source(&self, e: SourceError, http: &HttpSettings) -> FleetError {
        match e {
            SourceError::Auth(m) => self.refused(format!("authentication failed: {m}")),
            SourceError::Transport { .. } => self.failed(http.max_retries + 1, e.to_string()),
            other => self.failed(1, other.to_string()),
        }
    }
}

/// One line for an answer that is not a success; 401/403 name authentication.
pub(crate) fn describe(a: &Answer, url: &str) -> String {
    let s = a.status.as_u16();
    let reason = error_message(&a.body);
    if s == 401 || s == 403 {
        format!("authentication rejected: HTTP {s} from {url}: {reason}")
    } else {
        format!(
            "HTTP {s} from {url} after {} attempts: {reason}",
            a.attempts
        )
    }
}
