//! The agent's own instance id, from its cloud's instance metadata service: AWS IMDSv2
//! (`PUT /latest/api/token`, then `GET /latest/meta-data/instance-id` with the token), GCP
//! (`GET /computeMetadata/v1/instance/id` with `Metadata-Flavor: Google`; the answer carries
//! the same header) and Azure IMDS (`GET /metadata/instance/compute/vmId` with
//! `Metadata: true`). Each is the id the fleet inventory keys the machine by (EC2 instance
//! id, GCE numeric id, Azure vmId). `auto` asks each cloud in turn with a short timeout.
//! The base URL is the link-local address unless `--metadata-url` says otherwise (tests).
use std::time::Duration;

use crate::domain::limits;
use crate::domain::quote::{clip, quote};

/// Where every cloud serves instance metadata.
pub const DEFAULT_BASE: &str = "http://169.254.169.254";

/// How long one metadata request may take: a link-local service answers at once or is not
/// there.
pub const TIMEOUT: Duration = Duration::from_secs(2);

/// AWS IMDSv2 token lifetime asked for (seconds); the agent asks once at start.
const AWS_TOKEN_TTL: &str = "60";

/// Azure IMDS API version of the `vmId` read.
pub const AZURE_API_VERSION: &str = "2021-02-01";

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Cloud {
    /// Ask AWS, then GCP, then Azure.
    Auto,
    Aws,
    Gcp,
    Azure,
}

impl Cloud {
    pub fn as_str(self) -> &'static str {
        match self {
            Cloud::Auto => "auto",
            Cloud::Aws => "aws",
            Cloud::Gcp => "gcp",
            Cloud::Azure => "azure",
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum MetadataError {
    /// `auto` found no cloud's metadata service (not on a cloud, or blocked).
    #[error(
        "no cloud metadata service answered at {base} ({tried}); pass --instance-id, or --cloud and --metadata-url"
    )]
    NoCloud { base: String, tried: String },
    /// The named cloud's service failed or answered something that is not an id.
    #[error("{cloud} instance metadata at {base}: {detail}")]
    Failed {
        cloud: &'static str,
        base: String,
        detail: String,
    },
}

/// Why one cloud's lookup did not give an id.
enum Miss {
    /// Nothing answered, or what answered is not that cloud's service.
    NotHere(String),
    /// That cloud's service answered with an error or a bad id.
    Failed(String),
}

fn http_error(e: reqwest::Error) -> Miss {
    Miss::NotHere(clip(&e.to_string()))
}

/// The instance id of this machine, and which cloud gave it.
pub async fn instance_id(
    cloud: Cloud,
    base: Option<&str>,
    timeout: Duration,
) -> Result<(Cloud, String), MetadataError> {
    let base = base
        .unwrap_or(DEFAULT_BASE)
        .trim_end_matches('/')
        .to_string();
    let client = reqwest::Client::builder()
        .no_proxy()
        .connect_timeout(timeout)
        .timeout(timeout)
        .build()
        .map_err(|e| MetadataError::Failed {
            cloud: cloud.as_str(),
            base: base.clone(),
            detail: e.to_string(),
        })?;
    let clouds = match cloud {
        Cloud::Auto => vec![Cloud::Aws, Cloud::Gcp, Cloud::Azure],
        one => vec![one],
    };
    let mut tried = Vec::new();
    for c in clouds {
        let got = match c {
            Cloud::Aws => aws(&client, &base).await,
            Cloud::Gcp => gcp(&client, &base).await,
            Cloud::Azure | Cloud::Auto => azure(&client, &base).await,
        };
        match got.and_then(checked_id) {
            Ok(id) => return Ok((c, id)),
            Err(Miss::Failed(detail)) => {
                return Err(MetadataError::Failed {
                    cloud: c.as_str(),
                    base,
                    detail,
                });
            }
            Err(Miss::NotHere(detail)) if cloud != Cloud::Auto => {
                return Err(MetadataError::Failed {
                    cloud: c.as_str(),
                    base,
                    detail,
                });
            }
            Err(Miss::NotHere(detail)) => tried.push(format!("{}: {detail}", c.as_str())),
        }
    }
    Err(MetadataError::NoCloud {
        base,
        tried: tried.join("; "),
    })
}

/// An id as the service wrote it, trimmed; an empty or over-long one is a failure.
fn checked_id(id: String) -> Result<String, Miss> {
    let id = id.trim().to_string();
    if id.is_empty() {
        return Err(Miss::Failed("answered an empty instance id".into()));
    }
    limits::GPU_INSTANCE_ID
        .check(&id)
        .map_err(|e| Miss::Failed(format!("the instance id it answered {e}")))?;
    Ok(id)
}

/// Whether an answer comes from the cloud being asked.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Known {
    /// Not yet known: an error answer may be another cloud's service (Azure's answers 400
    /// to AWS's token request), so it is `NotHere`.
    Maybe,
    /// That cloud's service answered before (AWS gave a token) or marked its answer (GCP's
    /// `Metadata-Flavor`): an error answer is `Failed`.
    Yes,
}

/// The body of a successful answer; otherwise why not.
async fn body(r: reqwest::Response, what: &str, known: Known) -> Result<String, Miss> {
    let status = r.status();
    let text = r.text().await.map_err(http_error)?;
    if status.is_success() {
        Ok(text)
    } else if known == Known::Maybe || status == reqwest::StatusCode::NOT_FOUND {
        Err(Miss::NotHere(format!("{what}: HTTP {status}")))
    } else {
        Err(Miss::Failed(format!(
            "{what}: HTTP {status}: {}",
            quote(&text)
        )))
    }
}

async fn aws(client: &reqwest::Client, base: &str) -> Result<String, Miss> {
    let token = client
        .put(format!("{base}/latest/api/token"))
        .header("X-aws-ec2-metadata-token-ttl-seconds", AWS_TOKEN_TTL)
        .send()
        .await
        .map_err(http_error)?;
    let token = body(token, "PUT /latest/api/token", Known::Maybe).await?;
    let id = client
        .get(format!("{base}/latest/meta-data/instance-id"))
        .header("X-aws-ec2-metadata-token", token.trim())
        .send()
        .await
        .map_err(http_error)?;
    body(id, "GET /latest/meta-data/instance-id", Known::Yes).await
}

async fn gcp(client: &reqwest::Client, base: &str) -> Result<String, Miss> {
    let r = client
        .get(format!("{base}/computeMetadata/v1/instance/id"))
        .header("Metadata-Flavor", "Google")
        .send()
        .await
        .map_err(http_error)?;
    // Only GCE's metadata server answers with this header.
    let google = r
        .headers()
        .get("Metadata-Flavor")
        .is_some_and(|v| v.as_bytes() == b"Google");
    if !google {
        return Err(Miss::NotHere(format!(
            "GET /computeMetadata/v1/instance/id: HTTP {}, without `Metadata-Flavor: Google`",
            r.status()
        )));
    }
    body(r, "GET /computeMetadata/v1/instance/id", Known::Yes).await
}

async fn azure(client: &reqwest::Client, base: &str) -> Result<String, Miss> {
    let r = client
        .get(format!("{base}/metadata/instance/compute/vmId"))
        .query(&[("api-version", AZURE_API_VERSION), ("format", "text")])
        .header("Metadata", "true")
        .send()
        .await
        .map_err(http_error)?;
    body(r, "GET /metadata/instance/compute/vmId", Known::Maybe).await
}
