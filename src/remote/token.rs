//! Bearer tokens for the REST clouds (the GCP and Azure fleets): a fixed token from the
//! configuration, or one fetched from the machine's metadata service (the GCE metadata
//! server's service-account token, Azure IMDS's managed-identity token) and cached until
//! shortly before it expires. `send_authed` sends a request with the token and, when the
//! cloud answers 401 to a fetched token, fetches a new one and tries once more. A token never
//! reaches a log, an error or `Debug`.
use std::fmt;
use std::time::Duration;

use reqwest::StatusCode;
use serde::Deserialize;
use tokio::sync::Mutex;
use tokio::time::Instant;

use super::http::{Answer, send_with_retry};
use super::{HttpSettings, SourceError};

/// Lifetime assumed when a token answer names none.
const DEFAULT_LIFETIME: Duration = Duration::from_secs(300);
/// A token is refreshed this long before it expires (at most half its lifetime).
const REFRESH_MARGIN: Duration = Duration::from_secs(60);

enum Source {
    Fixed(String),
    Metadata {
        url: String,
        header: (&'static str, &'static str),
    },
}

/// Where a cloud client's bearer token comes from, with its cache.
pub struct BearerToken {
    source: Source,
    client: reqwest::Client,
    settings: HttpSettings,
    cache: Mutex<Option<(String, Instant)>>,
}

impl fmt::Debug for BearerToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.source {
            Source::Fixed(_) => f.write_str("BearerToken(fixed, <redacted>)"),
            Source::Metadata { url, .. } => write!(f, "BearerToken(metadata {url})"),
        }
    }
}

#[derive(Deserialize)]
struct TokenAnswer {
    #[serde(default)]
    access_token: String,
    /// Seconds; GCE sends a number, Azure IMDS a string.
    #[serde(default)]
    expires_in: Option<serde_json::Value>,
}

impl BearerToken {
    /// A token given in the configuration; never refreshed.
    pub fn fixed(token: impl Into<String>) -> BearerToken {
        BearerToken {
            source: Source::Fixed(token.into()),
            client: reqwest::Client::new(),
            settings: HttpSettings::default(),
            cache: Mutex::new(None),
        }
    }

    /// A token fetched with `GET url` and the header `header` (`Metadata-Flavor: Google`,
    /// `Metadata: true`), whose JSON answer has `access_token` and `expires_in`.
    pub fn metadata(
        url: impl Into<String>,
        header: (&'static str, &'static str),
        client: reqwest::Client,
        settings: HttpSettings,
    ) -> BearerToken {
        BearerToken {
            source: Source::Metadata {
                url: url.into(),
                header,
            },
            client,
            settings,
            cache: Mutex::new(None),
        }
    }

    /// Whether a rejected token can be replaced by fetching a new one.
    pub fn refreshable(&self) -> bool {
        matches!(self.source, Source::Metadata { .. })
    }

    /// The token to send now: the fixed one, or the cached one while it is fresh, else a
    /// newly fetched one. A failure is `SourceError::Auth` naming the token URL.
    pub async fn get(&self) -> Result<String, SourceError> {
        let (url, header) = match &self.source {
            Source::Fixed(t) => return Ok(t.clone()),
            Source::Metadata { url, header } => (url, *header),
        };
        let mut cache = self.cache.lock().await;
        if let Some((token, until)) = cache.as_ref()
            && Instant::now() < *until
        {
            return Ok(token.clone());
        }
        let auth = |detail: String| {
            SourceError::Auth(format!("cannot get an access token from {url}: {detail}"))
        };
        let answer = send_with_retry(
            || self.client.get(url).header(header.0, header.1),
            url,
            &self.settings,
        )
        .await
        .map_err(|e| auth(e.to_string()))?;
        if !answer.status.is_success() {
            return Err(auth(format!(
                "HTTP {}: {}",
                answer.status,
                answer.body_excerpt()
            )));
        }
        let parsed: TokenAnswer = serde_json::from_slice(&answer.body)
            .map_err(|e| auth(format!("malformed answer: {e}")))?;
        if parsed.access_token.trim().is_empty() {
            return Err(auth("the answer has no access_token".into()));
        }
        let lifetime = parsed
            .expires_in
            .as_ref()
            .and_then(|v| match v {
                serde_json::Value::Number(n) => n.as_u64(),
                serde_json::Value::String(s) => s.trim().parse().ok(),
                _ => None,
            })
            .map(Duration::from_secs)
            .unwrap_or(DEFAULT_LIFETIME);
        let margin = REFRESH_MARGIN.min(lifetime / 2);
        *cache = Some((
            parsed.access_token.clone(),
            Instant::now() + lifetime - margin,
        ));
        Ok(parsed.access_token)
    }

    /// Forgets the cached token (the cloud rejected it).
    pub async fn invalidate(&self) {
        *self.cache.lock().await = None;
    }
}

/// Sends the request `make` builds with the bearer token, with the retries of `send_with_retry`. When the
/// answer is 401 and the token was fetched (not fixed), the token is fetched anew and the
/// request sent once more. Returns the answer whatever its status.
pub async fn send_authed(
    token: &BearerToken,
    make: impl Fn() -> reqwest::RequestBuilder,
    url: &str,
    settings: &HttpSettings,
) -> Result<Answer, SourceError> {
    let t = token.get().await?;
    let answer = send_with_retry(|| make().bearer_auth(&t), url, settings).await?;
    if answer.status != StatusCode::UNAUTHORIZED || !token.refreshable() {
        return Ok(answer);
    }
    token.invalidate().await;
    let t = token.get().await?;
    let mut again = send_with_retry(|| make().bearer_auth(&t), url, settings).await?;
    again.attempts += answer.attempts;
    Ok(again)
}
