//! Billing exports kept in S3 (CUR / Data Exports deliver there): parse an
//! `s3://bucket/prefix` location, list the objects under it and fetch one object whole.
//!
//! The client comes from the shared `remote::aws::sdk_config` (endpoint override, static
//! test credentials on loopback, retries, per-attempt timeout). With an endpoint override
//! (moto_server, MinIO, LocalStack, a VPC endpoint) requests use path-style addressing
//! (`http://host/bucket/key`), which stand-ins need; against the public AWS endpoint the
//! SDK's default virtual-hosted style is kept, as AWS recommends.
//!
//! Listing follows ListObjectsV2 continuation tokens under a `TokenGuard` (a repeated token
//! is an error, never an endless walk) and skips "directory" placeholder keys (ending in
//! `/`). Errors are `SourceError`s; a missing bucket or key names the bucket and key.
use std::fmt;

use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};
use chrono::{DateTime, Utc};

use crate::remote::aws::{AttemptCounter, endpoint_label, map_sdk_error, sdk_config};
use crate::remote::http::TokenGuard;
use crate::remote::{HttpSettings, SourceError};

/// Largest page ListObjectsV2 returns.
const PAGE_SIZE: i32 = 1000;

/// Where billing exports live: a bucket and a key prefix (possibly empty).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct S3Location {
    pub bucket: String,
    /// Key prefix as given, e.g. `"cur/report/"`; `""` = the whole bucket. Not normalised:
    /// `"cur/report"` also matches `"cur/report-old/..."`, as in S3 itself.
    pub prefix: String,
}

impl fmt::Display for S3Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "s3://{}/{}", self.bucket, self.prefix)
    }
}

impl std::str::FromStr for S3Location {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        parse_s3_uri(s)
    }
}

/// Parses `s3://bucket`, `s3://bucket/` or `s3://bucket/some/prefix` (surrounding
/// whitespace ignored; the scheme is case-insensitive). The bucket must be 3–63
/// characters of letters, digits, `.`, `-` or `_` (the last and capitals only exist in old
/// us-east-1 buckets), starting and ending with a letter or digit.
pub fn parse_s3_uri(uri: &str) -> Result<S3Location, String> {
    let t = uri.trim();
    let rest = t
        .get(..5)
        .filter(|scheme| scheme.eq_ignore_ascii_case("s3://"))
        .map(|_| &t[5..])
        .ok_or_else(|| format!("{uri:?} is not an S3 location: expected s3://bucket/prefix"))?;
    let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
    if bucket.is_empty() {
        return Err(format!(
            "{uri:?}: the bucket name is missing (expected s3://bucket/prefix)"
        ));
    }
    if !(3..=63).contains(&bucket.len()) {
        return Err(format!(
            "{uri:?}: bucket name {bucket:?} must be 3 to 63 characters long"
        ));
    }
    if let Some(c) = bucket
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_')))
    {
        return Err(format!(
            "{uri:?}: bucket name {bucket:?} contains {c:?} (allowed: letters, digits, '.', '-', '_')"
        ));
    }
    let edge_ok = |c: Option<char>| c.is_some_and(|c| c.is_ascii_alphanumeric());
    if !edge_ok(bucket.chars().next()) || !edge_ok(bucket.chars().last()) {
        return Err(format!(
            "{uri:?}: bucket name {bucket:?} must start and end with a letter or digit"
        ));
    }
    Ok(S3Location {
        bucket: bucket.to_string(),
        prefix: prefix.to_string(),
    })
}

/// One object found under a location.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct S3Object {
    pub key: String,
    pub size: u64,
    pub last_modified: Option<DateTime<Utc>>,
    /// The ETag without its surrounding quotes (`None` if S3 sent none). Changes whenever
    /// the object is rewritten, so it can serve as a "seen this version" marker.
    pub etag: Option<String>,
}

/// An S3 client for one region, reusable across calls (the free functions below build a
/// fresh one per call; hold one of these when listing and then fetching many objects).
#[derive(Clone, Debug)]
pub struct S3Client {
    client: aws_sdk_s3::Client,
    region: String,
    /// Endpoint named in errors.
    url: String,
}

impl S3Client {
    /// `region` is the bucket's region (a request to the wrong one is answered with a
    /// redirect, reported as an error saying so).
    pub async fn new(settings: &HttpSettings, region: &str) -> Result<S3Client, SourceError> {
        let region = region.trim();
        let cfg = sdk_config(settings, region).await?;
        let overridden = settings
            .endpoint
            .as_deref()
            .is_some_and(|e| !e.trim().is_empty());
        let conf = aws_sdk_s3::config::Builder::from(&cfg)
            .force_path_style(overridden)
            .build();
        Ok(S3Client {
            client: aws_sdk_s3::Client::from_conf(conf),
            region: region.to_string(),
            url: endpoint_label(settings, || format!("https://s3.{region}.amazonaws.com")),
        })
    }

    /// Every object under `loc` (all pages), in the order S3 lists them (by key),
    /// without directory placeholders (keys ending in `/`).
    pub async fn list_objects(&self, loc: &S3Location) -> Result<Vec<S3Object>, SourceError> {
        self.list_pages(loc, PAGE_SIZE)
            .await
            .map(|(objects, _)| objects)
    }

    /// `list_objects` with a page size; also returns the number of pages.
    async fn list_pages(
        &self,
        loc: &S3Location,
        page_size: i32,
    ) -> Result<(Vec<S3Object>, u32), SourceError> {
        let url = format!("{} ListObjectsV2 {loc}", self.url);
        let mut guard = TokenGuard::default();
        let mut token: Option<String> = None;
        let mut out = Vec::new();
        let mut pages = 0u32;
        loop {
            let attempts = AttemptCounter::default();
            let page = self
                .client
                .list_objects_v2()
                .bucket(&loc.bucket)
                .set_prefix(Some(loc.prefix.clone()).filter(|p| !p.is_empty()))
                .max_keys(page_size)
                .set_continuation_token(token.take())
                .customize()
                .interceptor(attempts.clone())
                .send()
                .await
                .map_err(|e| self.map_error(e, &url, attempts.get(), &loc.bucket, None))?;
            pages += 1;
            for obj in page.contents() {
                let Some(key) = obj.key() else {
                    return Err(SourceError::Malformed {
                        url,
                        detail: "an object in the listing has no key".into(),
                    });
                };
                if key.ends_with('/') {
                    continue;
                }
                let size = obj.size().unwrap_or(0);
                let size = u64::try_from(size).map_err(|_| SourceError::Malformed {
                    url: url.clone(),
                    detail: format!("object {key:?} has a negative size {size}"),
                })?;
                out.push(S3Object {
                    key: key.to_string(),
                    size,
                    last_modified: obj.last_modified().and_then(to_chrono),
                    etag: obj.e_tag().map(|e| e.trim_matches('"').to_string()),
                });
            }
            // S3 sends a continuation token only on truncated pages; a stand-in that sets
            // one on the last page too still ends the walk via IsTruncated=false.
            let next = if page.is_truncated() == Some(false) {
                None
            } else {
                page.next_continuation_token()
            };
            match guard.next(next, &url)? {
                Some(t) => token = Some(t),
                None if page.is_truncated() == Some(true) => {
                    return Err(SourceError::Malformed {
                        url,
                        detail: "page is truncated but carries no continuation token".into(),
                    });
                }
                None => return Ok((out, pages)),
            }
        }
    }

    /// The whole body of one object.
    pub async fn get_object(&self, bucket: &str, key: &str) -> Result<Vec<u8>, SourceError> {
        let url = format!("{} GetObject s3://{bucket}/{key}", self.url);
        let attempts = AttemptCounter::default();
        let out = self
            .client
            .get_object()
            .bucket(bucket)
            .key(key)
            .customize()
            .interceptor(attempts.clone())
            .send()
            .await
            .map_err(|e| self.map_error(e, &url, attempts.get(), bucket, Some(key)))?;
        let expected = out.content_length();
        let body = out
            .body
            .collect()
            .await
            .map_err(|e| SourceError::Transport {
                url: url.clone(),
                detail: format!("reading the body of s3://{bucket}/{key}: {e}"),
            })?
            .into_bytes();
        if let Some(n) = expected.filter(|&n| n >= 0 && n as u64 != body.len() as u64) {
            return Err(SourceError::Transport {
                url,
                detail: format!(
                    "s3://{bucket}/{key}: expected {n} bytes, received {}",
                    body.len()
                ),
            });
        }
        Ok(body.to_vec())
    }

    /// S3-specific errors first (missing bucket or key, wrong region), then the shared
    /// mapping.
    fn map_error<E>(
        &self,
        err: SdkError<E, aws_sdk_s3::config::http::HttpResponse>,
        url: &str,
        attempts: u32,
        bucket: &str,
        key: Option<&str>,
    ) -> SourceError
    where
        E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    {
        let code = err.code().unwrap_or("").to_string();
        let status = match &err {
            SdkError::ServiceError(se) => se.raw().status().as_u16(),
            _ => 0,
        };
        match code.as_str() {
            "NoSuchBucket" => SourceError::Config(format!(
                "S3 bucket {bucket:?} does not exist (region {}, endpoint {})",
                self.region, self.url
            )),
            "NoSuchKey" => SourceError::Http {
                url: url.to_string(),
                status: if status == 0 { 404 } else { status },
                attempts,
                body: format!(
                    "NoSuchKey: object {:?} does not exist in bucket {bucket:?}",
                    key.unwrap_or("")
                ),
            },
            "PermanentRedirect"
            | "AuthorizationHeaderMalformed"
            | "IllegalLocationConstraintException" => SourceError::Config(format!(
                "S3 bucket {bucket:?} is not in region {} ({code}); configure the bucket's region",
                self.region
            )),
            _ => map_sdk_error(err, url, attempts),
        }
    }
}

fn to_chrono(t: &aws_sdk_s3::primitives::DateTime) -> Option<DateTime<Utc>> {
    DateTime::from_timestamp(t.secs(), t.subsec_nanos())
}

/// Every object under `loc` (see `S3Client::list_objects`).
pub async fn list_objects(
    settings: &HttpSettings,
    region: &str,
    loc: &S3Location,
) -> Result<Vec<S3Object>, SourceError> {
    S3Client::new(settings, region)
        .await?
        .list_objects(loc)
        .await
}

/// The whole body of one object (see `S3Client::get_object`).
pub async fn get_object(
    settings: &HttpSettings,
    region: &str,
    bucket: &str,
    key: &str,
) -> Result<Vec<u8>, SourceError> {
    S3Client::new(settings, region)
        .await?
        .get_object(bucket, key)
        .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::billing::cost_explorer::moto::Moto;

    #[test]
    fn parses_locations() {
        assert_eq!(
            parse_s3_uri("s3://my-bucket/cur/report/").unwrap(),
            S3Location {
                bucket: "my-bucket".into(),
                prefix: "cur/report/".into()
            }
        );
        assert_eq!(
            parse_s3_uri("  S3://bkt.example  ").unwrap(),
            S3Location {
                bucket: "bkt.example".into(),
                prefix: "".into()
            }
        );
        assert_eq!(parse_s3_uri("s3://abc/").unwrap().prefix, "");
        assert_eq!(parse_s3_uri("s3://abc/a/b c").unwrap().prefix, "a/b c");
        let loc: S3Location = "s3://abc/x/".parse().unwrap();
        assert_eq!(loc.to_string(), "s3://abc/x/");
    }

    #[test]
    fn rejects_bad_locations() {
        let err = |s: &str| parse_s3_uri(s).unwrap_err();
        assert!(err("https://bucket/x").contains("expected s3://bucket/prefix"));
        assert!(err("bucket/x").contains("not an S3 location"));
        assert!(err("s3:/").contains("not an S3 location"));
        assert!(err("s3://").contains("bucket name is missing"));
        assert!(err("s3:///prefix").contains("bucket name is missing"));
        assert!(err("s3://ab/x").contains("3 to 63"));
        assert!(err(&format!("s3://{}", "a".repeat(64))).contains("3 to 63"));
        assert!(err("s3://bu cket/x").contains("contains ' '"));
        assert!(err("s3://bucket:1/x").contains("contains ':'"));
        assert!(err("s3://-bucket/x").contains("start and end"));
        assert!(err("s3://bucket./x").contains("start and end"));
    }

    fn moto_settings(url: &str) -> HttpSettings {
        HttpSettings {
            endpoint: Some(url.to_string()),
            max_retries: 1,
            base_backoff: std::time::Duration::from_millis(10),
            max_backoff: std::time::Duration::from_millis(50),
            timeout: std::time::Duration::from_secs(20),
        }
    }

    #[tokio::test]
    async fn lists_and_gets_objects_from_moto() {
        let moto = Moto::start().await;
        let settings = moto_settings(&moto.url);
        let region = "us-east-1";
        let cfg = sdk_config(&settings, region).await.unwrap();
        let raw = aws_sdk_s3::Client::from_conf(
            aws_sdk_s3::config::Builder::from(&cfg)
                .force_path_style(true)
                .build(),
        );
        raw.create_bucket()
            .bucket("bursar-billing")
            .send()
            .await
            .unwrap();
        let csv = b"BilledCost,BillingCurrency\n1.2300000001,USD\n".to_vec();
        let gz: Vec<u8> = (0u8..=255).cycle().take(5000).collect();
        for (key, body) in [
            ("exports/a.csv", csv.clone()),
            ("exports/2024-01/b.csv.gz", gz.clone()),
            ("exports/2024-01/", Vec::new()),
            ("elsewhere/c.csv", b"x".to_vec()),
        ] {
            raw.put_object()
                .bucket("bursar-billing")
                .key(key)
                .body(body.into())
                .send()
                .await
                .unwrap();
        }

        let loc = parse_s3_uri("s3://bursar-billing/exports/").unwrap();
        let objects = list_objects(&settings, region, &loc).await.unwrap();
        let keys: Vec<&str> = objects.iter().map(|o| o.key.as_str()).collect();
        assert_eq!(keys, ["exports/2024-01/b.csv.gz", "exports/a.csv"]);
        assert_eq!(objects[0].size, gz.len() as u64);
        assert_eq!(objects[1].size, csv.len() as u64);
        assert!(objects.iter().all(|o| o.last_modified.is_some()));
        assert!(
            objects
                .iter()
                .all(|o| o.etag.as_deref().is_some_and(|e| !e.contains('"')))
        );

        // One key per page: three pages (the placeholder counts toward a page).
        let client = S3Client::new(&settings, region).await.unwrap();
        let (paged, pages) = client.list_pages(&loc, 1).await.unwrap();
        assert_eq!(paged, objects);
        assert_eq!(pages, 3);

        // The whole bucket.
        let all = client
            .list_objects(&parse_s3_uri("s3://bursar-billing").unwrap())
            .await
            .unwrap();
        assert_eq!(all.len(), 3);

        assert_eq!(
            get_object(&settings, region, "bursar-billing", "exports/a.csv")
                .await
                .unwrap(),
            csv
        );
        assert_eq!(
            client
                .get_object("bursar-billing", "exports/2024-01/b.csv.gz")
                .await
                .unwrap(),
            gz
        );

        let missing_key = client
            .get_object("bursar-billing", "exports/nope.csv")
            .await
            .unwrap_err();
        assert!(
            matches!(&missing_key, SourceError::Http { status: 404, body, .. }
                if body.contains("exports/nope.csv") && body.contains("bursar-billing")),
            "{missing_key:?}"
        );
        let missing_bucket = list_objects(
            &settings,
            region,
            &parse_s3_uri("s3://no-such-bucket/x").unwrap(),
        )
        .await
        .unwrap_err();
        assert!(
            matches!(&missing_bucket, SourceError::Config(m) if m.contains("no-such-bucket")),
            "{missing_bucket:?}"
        );
        let missing_bucket = client.get_object("no-such-bucket", "k").await.unwrap_err();
        assert!(
            matches!(&missing_bucket, SourceError::Config(m) if m.contains("no-such-bucket")),
            "{missing_bucket:?}"
        );
    }
}
