//! What the AWS SDK clients share, price sources (`clouds::aws::{ondemand, spot}`) and
//! billing sources (`billing::{cost_explorer, s3}`) alike: one place that turns
//! `HttpSettings` + a region into an `aws_config::SdkConfig` (endpoint override, static test
//! credentials, retry and timeout settings), an interceptor that counts attempts, and the
//! mapping of SDK errors onto `SourceError`. `stub` is a canned-response HTTP server for
//! unit tests.
use std::error::Error as StdError;
use std::future::Future;
use std::marker::PhantomData;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_sdk_pricing::config::interceptors::BeforeTransmitInterceptorContextRef;
use aws_sdk_pricing::config::{
    ConfigBag, Credentials, Intercept, ProvideCredentials, RuntimeComponents,
};
use aws_sdk_pricing::error::{BoxError, DisplayErrorContext, ProvideErrorMetadata, SdkError};

use super::{HttpSettings, SourceError};

/// Environment variables whose presence means the host supplies AWS credentials itself.
const CREDENTIAL_ENV: &[&str] = &[
    "AWS_ACCESS_KEY_ID",
    "AWS_PROFILE",
    "AWS_WEB_IDENTITY_TOKEN_FILE",
    "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
    "AWS_CONTAINER_CREDENTIALS_FULL_URI",
];

fn env_has_credentials() -> bool {
    CREDENTIAL_ENV
        .iter()
        .any(|k| std::env::var_os(k).is_some_and(|v| !v.is_empty()))
}

/// Checks an endpoint override: an absolute http(s) URL ("http://127.0.0.1:4566").
fn validate_endpoint(endpoint: &str) -> Result<(), SourceError> {
    let url = url::Url::parse(endpoint)
        .map_err(|e| SourceError::Config(format!("AWS endpoint {endpoint:?}: {e}")))?;
    match url.scheme() {
        "http" | "https" if url.host().is_some() => Ok(()),
        _ => Err(SourceError::Config(format!(
            "AWS endpoint {endpoint:?}: expected an http:// or https:// URL with a host"
        ))),
    }
}

/// Static test credentials are only ever used against a loopback endpoint (a test peer);
/// a real endpoint override (VPC, FIPS) keeps the normal credential chain.
fn is_loopback(endpoint: &str) -> bool {
    url::Url::parse(endpoint)
        .ok()
        .and_then(|u| u.host_str().map(str::to_string))
        .is_some_and(|h| h == "localhost" || h == "127.0.0.1" || h == "[::1]" || h == "::1")
}

/// Builds the SDK configuration both SDK sources use:
/// - `region` as given (the Pricing API lives in us-east-1; EC2 clients get one per region);
/// - `settings.endpoint`, if set, as the endpoint URL for every operation, unchanged;
/// - credentials from the default chain, except that with an endpoint override and no
///   credentials in the environment (`AWS_ACCESS_KEY_ID`, `AWS_PROFILE`, web identity or
///   container variables) and a loopback endpoint, static test credentials are used, so local stand-ins and
///   moto work without a real account;
/// - standard retries: `max_retries + 1` attempts, `base_backoff` initial backoff (the SDK
///   applies it to throttling; its own short backoff to transient 5xx), `max_backoff` cap;
/// - `timeout` as the per-attempt timeout.
pub async fn sdk_config(settings: &HttpSettings, region: &str) -> Result<SdkConfig, SourceError> {
    let region = region.trim();
    if region.is_empty() {
        return Err(SourceError::Config("AWS region is empty".into()));
    }
    let retry = RetryConfig::standard()
        .with_max_attempts(settings.max_retries.saturating_add(1))
        .with_initial_backoff(settings.base_backoff)
        .with_max_backoff(settings.max_backoff.max(settings.base_backoff));
    let timeout = TimeoutConfig::builder()
        .operation_attempt_timeout(settings.timeout)
        .build();
    let mut loader = aws_config::defaults(BehaviorVersion::latest())
        .region(Region::new(region.to_string()))
        .retry_config(retry)
        .timeout_config(timeout);
    let endpoint = settings
        .endpoint
        .as_deref()
        .map(str::trim)
        .filter(|e| !e.is_empty());
    if let Some(endpoint) = endpoint {
        validate_endpoint(endpoint)?;
        loader = loader.endpoint_url(endpoint);
        if !env_has_credentials() && is_loopback(endpoint) {
            loader = loader.credentials_provider(Credentials::new(
                "AKIDBURSARTEST",
                "bursar-test-secret",
                None,
                None,
                "bursar-static-test",
            ));
        }
    }
    let config = loader.load().await;
    // Clients panic on construction without a sleep implementation; refuse instead.
    if config.sleep_impl().is_none() {
        return Err(SourceError::Config(
            "AWS SDK config has no async sleep (tokio runtime feature missing)".into(),
        ));
    }
    Ok(config)
}

/// What an error names as "url": the override, or the service's public endpoint.
pub(crate) fn endpoint_label(settings: &HttpSettings, default: impl FnOnce() -> String) -> String {
    settings
        .endpoint
        .as_deref()
        .map(str::trim)
        .filter(|e| !e.is_empty())
        .map_or_else(default, str::to_string)
}

/// Counts the attempts (first try plus retries) of one operation, so errors can say how
/// many were made. Attach a fresh one per call with `.customize().interceptor(..)`.
#[derive(Clone, Debug, Default)]
pub(crate) struct AttemptCounter(Arc<AtomicU32>);

impl AttemptCounter {
    pub(crate) fn get(&self) -> u32 {
        self.0.load(Ordering::Relaxed).max(1)
    }
}

impl Intercept for AttemptCounter {
    fn name(&self) -> &'static str {
        "BursarAttemptCounter"
    }

    fn read_before_attempt(
        &self,
        _context: &BeforeTransmitInterceptorContextRef<'_>,
        _runtime_components: &RuntimeComponents,
        _cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        self.0.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }
}

const THROTTLING_CODES: &[&str] = &[
    "Throttling",
    "ThrottlingException",
    "ThrottledException",
    "RequestThrottled",
    "RequestThrottledException",
    "RequestLimitExceeded",
    "TooManyRequestsException",
    "SlowDown",
    "ProvisionedThroughputExceededException",
    "BandwidthLimitExceeded",
    "PriorRequestNotComplete",
    "LimitExceededException",
];

const AUTH_CODES: &[&str] = &[
    "AuthFailure",
    "AccessDenied",
    "AccessDeniedException",
    "UnauthorizedOperation",
    "UnrecognizedClientException",
    "InvalidClientTokenId",
    "SignatureDoesNotMatch",
    "IncompleteSignature",
    "InvalidSignatureException",
    "MissingAuthenticationToken",
    "ExpiredToken",
    "ExpiredTokenException",
    "RequestExpired",
    "OptInRequired",
    "Blocked",
];

/// `PhantomData` of the error type a future resolves to, so the SDK's credentials error
/// type can be named through `ProvideCredentials` without depending on its crate.
fn error_type_of<F, T, E>(_future: &F) -> PhantomData<E>
where
    F: Future<Output = Result<T, E>>,
{
    PhantomData
}

fn chain_contains<E: StdError + 'static>(
    _marker: PhantomData<E>,
    err: &(dyn StdError + 'static),
) -> bool {
    let mut cur: Option<&(dyn StdError + 'static)> = Some(err);
    while let Some(e) = cur {
        if e.is::<E>() {
            return true;
        }
        cur = e.source();
    }
    false
}

/// True when some error in the chain is the SDK's credentials error (no credentials found,
/// provider misconfigured or failing).
fn is_credentials_failure(err: &(dyn StdError + 'static)) -> bool {
    let probe = Credentials::new("probe", "probe", None, None, "probe");
    let future = probe.provide_credentials();
    chain_contains(error_type_of(&future), err)
}

fn clip(s: &str) -> String {
    s.chars().take(300).collect()
}

/// Maps an SDK error onto `SourceError`. `url` names the endpoint (and operation),
/// `attempts` is how many attempts were made (see `AttemptCounter`).
///
/// - throttling error codes or HTTP 429 → `Throttled`;
/// - auth error codes, 401/403, or credentials that could not be loaded → `Auth`;
/// - any other error status → `Http` (5xx arrive here after the SDK's retries);
/// - a 2xx the SDK could not parse → `Malformed`;
/// - timeouts and connection failures → `Transport`; request construction → `Sdk`.
pub(crate) fn map_sdk_error<E>(
    err: SdkError<E, aws_sdk_pricing::config::http::HttpResponse>,
    url: &str,
    attempts: u32,
) -> SourceError
where
    E: ProvideErrorMetadata + StdError + Send + Sync + 'static,
{
    let detail = clip(&DisplayErrorContext(&err).to_string());
    match &err {
        SdkError::ServiceError(se) => {
            let status = se.raw().status().as_u16();
            let code = se.err().code().unwrap_or("");
            let message = se.err().message().unwrap_or("");
            let body = clip(
                &[code, message]
                    .iter()
                    .filter(|s| !s.is_empty())
                    .copied()
                    .collect::<Vec<_>>()
                    .join(": "),
            );
            if (200..300).contains(&status) {
                return SourceError::Malformed {
                    url: url.to_string(),
                    detail,
                };
            }
            if status == 429 || THROTTLING_CODES.contains(&code) {
                return SourceError::Throttled {
                    url: url.to_string(),
                    status,
                    attempts,
                };
            }
            if status == 401 || status == 403 || AUTH_CODES.contains(&code) {
                return SourceError::Auth(format!("HTTP {status} from {url}: {body}"));
            }
            SourceError::Http {
                url: url.to_string(),
                status,
                attempts,
                body: if body.is_empty() { detail } else { body },
            }
        }
        SdkError::ResponseError(re) => {
            let status = re.raw().status().as_u16();
            match status {
                200..=299 => SourceError::Malformed {
                    url: url.to_string(),
                    detail,
                },
                401 | 403 => SourceError::Auth(format!("HTTP {status} from {url}: {detail}")),
                429 => SourceError::Throttled {
                    url: url.to_string(),
                    status,
                    attempts,
                },
                _ => SourceError::Http {
                    url: url.to_string(),
                    status,
                    attempts,
                    body: detail,
                },
            }
        }
        SdkError::TimeoutError(_) => SourceError::Transport {
            url: url.to_string(),
            detail: format!("timed out after {attempts} attempt(s): {detail}"),
        },
        SdkError::DispatchFailure(df) => {
            let credentials = df
                .as_connector_error()
                .is_some_and(|ce| is_credentials_failure(ce));
            if credentials || is_credentials_failure(&err) {
                SourceError::Auth(format!("no usable AWS credentials for {url}: {detail}"))
            } else {
                SourceError::Transport {
                    url: url.to_string(),
                    detail,
                }
            }
        }
        SdkError::ConstructionFailure(_) => {
            if is_credentials_failure(&err) {
                SourceError::Auth(format!("no usable AWS credentials for {url}: {detail}"))
            } else {
                SourceError::Sdk(format!("building request for {url}: {detail}"))
            }
        }
        _ => SourceError::Sdk(format!("{url}: {detail}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoint_override_must_be_http_url() {
        assert!(validate_endpoint("http://127.0.0.1:4566").is_ok());
        assert!(validate_endpoint("https://pricing.example").is_ok());
        assert!(matches!(
            validate_endpoint("127.0.0.1:4566"),
            Err(SourceError::Config(_))
        ));
        assert!(matches!(
            validate_endpoint("ftp://x"),
            Err(SourceError::Config(_))
        ));
    }

    #[tokio::test]
    async fn sdk_config_applies_settings() {
        let s = HttpSettings {
            endpoint: Some("http://127.0.0.1:9".into()),
            max_retries: 2,
            ..Default::default()
        };
        let cfg = sdk_config(&s, "eu-west-1").await.unwrap();
        assert_eq!(cfg.region().map(|r| r.as_ref()), Some("eu-west-1"));
        assert_eq!(cfg.endpoint_url(), Some("http://127.0.0.1:9"));
        assert_eq!(cfg.retry_config().unwrap().max_attempts(), 3);
        assert_eq!(
            cfg.timeout_config().unwrap().operation_attempt_timeout(),
            Some(s.timeout)
        );
        assert!(cfg.credentials_provider().is_some());
        assert!(matches!(
            sdk_config(&s, " ").await,
            Err(SourceError::Config(_))
        ));
    }

    #[tokio::test]
    async fn missing_credentials_map_to_auth() {
        let s = HttpSettings {
            endpoint: Some("http://127.0.0.1:9".into()),
            max_retries: 0,
            ..Default::default()
        };
        let cfg = sdk_config(&s, "us-east-1").await.unwrap();
        let no_such_profile = aws_config::profile::ProfileFileCredentialsProvider::builder()
            .profile_name("bursar-unit-test-no-such-profile")
            .build();
        let conf = aws_sdk_pricing::config::Builder::from(&cfg)
            .credentials_provider(no_such_profile)
            .build();
        let client = aws_sdk_pricing::Client::from_conf(conf);
        let counter = AttemptCounter::default();
        let err = client
            .get_products()
            .service_code("AmazonEC2")
            .customize()
            .interceptor(counter.clone())
            .send()
            .await
            .unwrap_err();
        let mapped = map_sdk_error(err, "test", counter.get());
        assert!(matches!(mapped, SourceError::Auth(_)), "{mapped:?}");
    }

    #[tokio::test]
    async fn unreachable_endpoint_is_transport() {
        // Port 9 (discard) on loopback: nothing listens there in a test sandbox.
        let s = HttpSettings {
            endpoint: Some("http://127.0.0.1:9".into()),
            max_retries: 1,
            base_backoff: std::time::Duration::from_millis(1),
            max_backoff: std::time::Duration::from_millis(5),
            timeout: std::time::Duration::from_secs(5),
        };
        let cfg = sdk_config(&s, "us-east-1").await.unwrap();
        let client = aws_sdk_pricing::Client::new(&cfg);
        let counter = AttemptCounter::default();
        let err = client
            .get_products()
            .service_code("AmazonEC2")
            .customize()
            .interceptor(counter.clone())
            .send()
            .await
            .unwrap_err();
        let mapped = map_sdk_error(err, "test", counter.get());
        assert!(
            matches!(mapped, SourceError::Transport { .. }),
            "{mapped:?}"
        );
    }
}

/// A tiny local HTTP server for unit tests: answers requests with canned responses in
/// order (the last one repeats) and records what it was sent.
#[cfg(test)]
pub(crate) mod stub {
    use std::sync::{Arc, Mutex};

    use axum::body::Bytes;
    use axum::extract::State;
    use axum::http::{HeaderMap, StatusCode, header};
    use axum::response::{IntoResponse, Response};

    #[derive(Clone, Debug)]
    pub(crate) struct Canned {
        pub status: u16,
        pub content_type: &'static str,
        pub body: String,
    }

    impl Canned {
        pub(crate) fn new(
            status: u16,
            content_type: &'static str,
            body: impl Into<String>,
        ) -> Self {
            Canned {
                status,
                content_type,
                body: body.into(),
            }
        }
    }

    #[derive(Clone, Debug)]
    pub(crate) struct Seen {
        pub headers: HeaderMap,
        pub body: String,
    }

    #[derive(Clone, Default)]
    struct Shared {
        canned: Arc<Vec<Canned>>,
        seen: Arc<Mutex<Vec<Seen>>>,
    }

    pub(crate) struct Stub {
        pub url: String,
        seen: Arc<Mutex<Vec<Seen>>>,
        task: tokio::task::JoinHandle<()>,
    }

    impl Stub {
        pub(crate) fn requests(&self) -> Vec<Seen> {
            self.seen.lock().unwrap().clone()
        }
    }

    impl Drop for Stub {
        fn drop(&mut self) {
            self.task.abort();
        }
    }

    async fn answer(State(s): State<Shared>, headers: HeaderMap, body: Bytes) -> Response {
        let n = {
            let mut seen = s.seen.lock().unwrap();
            seen.push(Seen {
                headers,
                body: String::from_utf8_lossy(&body).into_owned(),
            });
            seen.len() - 1
        };
        let c = &s.canned[n.min(s.canned.len() - 1)];
        (
            StatusCode::from_u16(c.status).unwrap(),
            [(header::CONTENT_TYPE, c.content_type)],
            c.body.clone(),
        )
            .into_response()
    }

    pub(crate) async fn serve(canned: Vec<Canned>) -> Stub {
        assert!(!canned.is_empty());
        let shared = Shared {
            canned: Arc::new(canned),
            seen: Arc::default(),
        };
        let seen = shared.seen.clone();
        let app = axum::Router::new().fallback(answer).with_state(shared);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let task = tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        Stub { url, seen, task }
    }
}
