//! The GCP fleet: Compute Engine REST v1 over reqwest. Lists instances per project
//! (`aggregated/instances`, or per configured zone), stops (`instances.stop`) and deletes
//! (`instances.delete`) one, and polls the zonal operation each returns until `DONE`.
//!
//! Every mutating call carries a `requestId` (a UUID) kept across its retries, so a retried
//! call is the same call for GCE. A stop first reads the instance: gone (404), `TERMINATED`,
//! `STOPPED`, `SUSPENDED` or already `STOPPING` is `Done::Already`. A `DONE` operation that
//! carries an error is a failure, unless the error says the instance is gone. The token is the
//! configured one, else the metadata server's service-account token (cached).
use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use reqwest::{Method, StatusCode};
use serde::Deserialize;
use tokio::time::Instant;

use crate::domain::Provider;
use crate::domain::fleet::{FleetInstance, InstanceState};
use crate::domain::quote::quote;
use crate::fleet::rest::{Act, Rest, describe};
use crate::fleet::{Done, Fleet, FleetError};
use crate::remote::HttpSettings;
use crate::remote::http::TokenGuard;

/// The Compute Engine API.
pub const DEFAULT_ENDPOINT: &str = "https://compute.googleapis.com";
/// The metadata server's token for the instance's default service account.
pub const DEFAULT_TOKEN_URL: &str =
    "http://metadata.google.internal/computeMetadata/v1/instance/service-accounts/default/token";
const PROVIDER: &str = "gcp";

/// What `GcpFleet` needs (built from `[fleet.gcp]` by `config`).
#[derive(Clone)]
pub struct GcpSettings {
    pub projects: Vec<String>,
    /// Empty = every zone, through `aggregated/instances`.
    pub zones: Vec<String>,
    /// `endpoint` (None = `DEFAULT_ENDPOINT`), request timeout, retries and backoff.
    pub http: HttpSettings,
    /// A fixed OAuth2 access token (secret); empty = fetched from `token_url`.
    pub access_token: String,
    pub token_url: String,
    /// `maxResults` of each list page (GCE allows 1–500).
    pub page_size: u32,
    /// How often a long-running operation is polled.
    pub poll_interval: Duration,
    /// How long an operation may take before the action is reported failed.
    pub operation_timeout: Duration,
}

impl Default for GcpSettings {
    fn default() -> Self {
        GcpSettings {
            projects: Vec::new(),
            zones: Vec::new(),
            http: HttpSettings::default(),
            access_token: String::new(),
            token_url: DEFAULT_TOKEN_URL.into(),
            page_size: 500,
            poll_interval: Duration::from_secs(2),
            operation_timeout: Duration::from_secs(10 * 60),
        }
    }
}

impl fmt::Debug for GcpSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GcpSettings")
            .field("projects", &self.projects)
            .field("zones", &self.zones)
            .field("http", &self.http)
            .field(
                "access_token",
                &(!self.access_token.is_empty()).then_some("<redacted>"),
            )
            .field("token_url", &self.token_url)
            .field("page_size", &self.page_size)
            .field("poll_interval", &self.poll_interval)
            .field("operation_timeout", &self.operation_timeout)
            .finish()
    }
}

/// Compute Engine instances of the configured projects.
#[derive(Debug)]
pub struct GcpFleet {
    settings: GcpSettings,
    rest: Rest,
}

impl GcpFleet {
    pub fn new(settings: GcpSettings) -> Result<GcpFleet, FleetError> {
        if settings.projects.is_empty() {
            return Err(FleetError::Config("fleet.gcp.projects is empty".into()));
        }
        let rest = Rest::new(
            &settings.http,
            DEFAULT_ENDPOINT,
            &settings.access_token,
            &settings.token_url,
            ("Metadata-Flavor", "Google"),
        )?;
        Ok(GcpFleet { settings, rest })
    }

    /// Every page of one list URL (`aggregated` or one zone's), mapped.
    async fn list_pages(
        &self,
        project: &str,
        first: &str,
        out: &mut Vec<FleetInstance>,
    ) -> Result<(), FleetError> {
        let list_err = |detail: String| FleetError::List {
            provider: PROVIDER,
            detail,
        };
        let mut guard = TokenGuard::default();
        let mut url = first.to_string();
        loop {
            let a = self
                .rest
                .send(Method::GET, &url)
                .await
                .map_err(|e| list_err(e.to_string()))?;
            if !a.status.is_success() {
                return Err(list_err(describe(&a, &url)));
            }
            let page: ListPage = serde_json::from_slice(&a.body)
                .map_err(|e| list_err(format!("malformed answer from {url}: {e}")))?;
            if !page.unreachables.is_empty() {
                tracing::warn!(project, unreachable = ?page.unreachables, "GCE list: some zones did not answer; their instances are missing from this inventory");
            }
            for (i, v) in page.instances().enumerate() {
                match instance_from_json(project, v) {
                    Ok(inst) => out.push(inst),
                    Err(e) => {
                        tracing::warn!(project, url = %url, index = i, error = %e, "GCE list: skipped a malformed instance")
                    }
                }
            }
            let next = guard
                .next(page.next_page_token.as_deref(), &url)
                .map_err(|e| list_err(e.to_string()))?;
            match next {
                Some(t) => url = with_page_token(first, &t),
                None => return Ok(()),
            }
        }
    }

    async fn act(&self, instance: &FleetInstance, action: Action) -> Result<Done, FleetError> {
        let act = Act {
            provider: PROVIDER,
            action: action.word(),
            instance: &instance.resource,
        };
        let Some(path) = ResourcePath::parse(&instance.resource) else {
            return Err(act.refused(format!(
                "{} is not projects/P/zones/Z/instances/NAME",
                quote(&instance.resource)
            )));
        };
        let instance_url = format!("{}/compute/v1/{}", self.rest.base, instance.resource);
        if action == Action::Stop {
            let a = self
                .rest
                .send(Method::GET, &instance_url)
                .await
                .map_err(|e| act.source(e, &self.rest.http))?;
            if a.status == StatusCode::NOT_FOUND {
                return Ok(Done::Already);
            }
            if !a.status.is_success() {
                return Err(act.answer(&a, &instance_url));
            }
            let v: serde_json::Value = serde_json::from_slice(&a.body).map_err(|e| {
                act.failed(
                    a.attempts,
                    format!("malformed answer from {instance_url}: {e}"),
                )
            })?;
            let status = v["status"].as_str().unwrap_or("");
            if matches!(
                state_of(status),
                InstanceState::Stopped | InstanceState::Stopping | InstanceState::Terminated
            ) {
                return Ok(Done::Already);
            }
        }
        // One id for every retry of this call: GCE runs a repeated requestId once.
        let rid = request_id();
        let (method, url) = match action {
            Action::Stop => (Method::POST, format!("{instance_url}/stop?requestId={rid}")),
            Action::Delete => (Method::DELETE, format!("{instance_url}?requestId={rid}")),
        };
        let a = self
            .rest
            .send(method, &url)
            .await
            .map_err(|e| act.source(e, &self.rest.http))?;
        if a.status == StatusCode::NOT_FOUND {
            return Ok(Done::Already);
        }
        if !a.status.is_success() {
            return Err(act.answer(&a, &url));
        }
        let op: Operation = serde_json::from_slice(&a.body)
            .map_err(|e| act.failed(a.attempts, format!("malformed operation from {url}: {e}")))?;
        self.wait(op, &path, &act, a.attempts).await
    }

    /// Polls `op` until `DONE` (or the operation timeout).
    async fn wait(
        &self,
        mut op: Operation,
        path: &ResourcePath<'_>,
        act: &Act<'_>,
        attempts: u32,
    ) -> Result<Done, FleetError> {
        let deadline = Instant::now() + self.settings.operation_timeout;
        loop {
            if op.status == "DONE" {
                return match &op.error {
                    None => Ok(Done::Now),
                    Some(e) if op.says_gone() => {
                        tracing::info!(instance = act.instance, operation = %op.name, error = %e, "GCE: the instance was already gone");
                        Ok(Done::Already)
                    }
                    Some(e) => Err(act.failed(
                        attempts,
                        format!("operation {} ended in error: {e}", op.name),
                    )),
                };
            }
            let now = Instant::now();
            if now >= deadline {
                return Err(act.failed(
                    attempts,
                    format!(
                        "operation {} still {} after {}",
                        op.name,
                        op.status,
                        humantime::format_duration(self.settings.operation_timeout)
                    ),
                ));
            }
            tokio::time::sleep(self.settings.poll_interval.min(deadline - now)).await;
            let zone = op
                .zone
                .as_deref()
                .and_then(|z| z.rsplit('/').next())
                .filter(|z| !z.is_empty())
                .unwrap_or(path.zone);
            let url = format!(
                "{}/compute/v1/projects/{}/zones/{zone}/operations/{}",
                self.rest.base, path.project, op.name
            );
            let a = self
                .rest
                .send(Method::GET, &url)
                .await
                .map_err(|e| act.source(e, &self.rest.http))?;
            if !a.status.is_success() {
                // The operation cannot be followed: whatever became of it, not done.
                return Err(act.failed(a.attempts, describe(&a, &url)));
            }
            op = serde_json::from_slice(&a.body).map_err(|e| {
                act.failed(attempts, format!("malformed operation from {url}: {e}"))
            })?;
        }
    }
}

#[async_trait]
impl Fleet for GcpFleet {
    fn provider(&self) -> Provider {
        Provider::Gcp
    }

    async fn list(&self) -> Result<Vec<FleetInstance>, FleetError> {
        let mut out = Vec::new();
        for project in &self.settings.projects {
            let base = format!("{}/compute/v1/projects/{project}", self.rest.base);
            let size = self.settings.page_size;
            if self.settings.zones.is_empty() {
                let url = format!(
                    "{base}/aggregated/instances?maxResults={size}&returnPartialSuccess=true"
                );
                self.list_pages(project, &url, &mut out).await?;
            } else {
                for zone in &self.settings.zones {
                    let url = format!("{base}/zones/{zone}/instances?maxResults={size}");
                    self.list_pages(project, &url, &mut out).await?;
                }
            }
        }
        Ok(out)
    }

    async fn stop(&self, instance: &FleetInstance) -> Result<Done, FleetError> {
        self.act(instance, Action::Stop).await
    }

    async fn terminate(&self, instance: &FleetInstance) -> Result<Done, FleetError> {
        self.act(instance, Action::Delete).await
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Action {
    Stop,
    Delete,
}

impl Action {
    fn word(self) -> &'static str {
        match self {
            Action::Stop => "stop",
            Action::Delete => "delete",
        }
    }
}

/// `projects/P/zones/Z/instances/NAME`.
struct ResourcePath<'a> {
    project: &'a str,
    zone: &'a str,
}

impl<'a> ResourcePath<'a> {
    fn parse(resource: &'a str) -> Option<ResourcePath<'a>> {
        match resource.split('/').collect::<Vec<_>>()[..] {
            ["projects", project, "zones", zone, "instances", name]
                if !project.is_empty() && !zone.is_empty() && !name.is_empty() =>
            {
                Some(ResourcePath { project, zone })
            }
            _ => None,
        }
    }
}

/// A page of `instances.list` (`items` is a list) or `instances.aggregatedList` (`items`
/// maps `zones/Z` to `{instances: [...]}` or a warning).
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ListPage {
    #[serde(default)]
    items: serde_json::Value,
    #[serde(default)]
    next_page_token: Option<String>,
    #[serde(default)]
    unreachables: Vec<String>,
}

impl ListPage {
    fn instances(&self) -> impl Iterator<Item = &serde_json::Value> {
        let flat = self.items.as_array().into_iter().flatten();
        let scoped = self
            .items
            .as_object()
            .into_iter()
            .flat_map(|m| m.values())
            .filter_map(|scope| scope["instances"].as_array())
            .flatten();
        flat.chain(scoped)
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Operation {
    name: String,
    #[serde(default)]
    status: String,
    #[serde(default)]
    zone: Option<String>,
    #[serde(default)]
    error: Option<OperationError>,
    #[serde(default)]
    http_error_status_code: Option<u16>,
}

impl Operation {
    fn says_gone(&self) -> bool {
        self.http_error_status_code == Some(404)
            || self.error.as_ref().is_some_and(|e| {
                e.errors
                    .iter()
                    .any(|x| x.code == "RESOURCE_NOT_FOUND" || x.code == "NOT_FOUND")
            })
    }
}

#[derive(Deserialize)]
struct OperationError {
    #[serde(default)]
    errors: Vec<OperationErrorItem>,
}

#[derive(Deserialize)]
struct OperationErrorItem {
    #[serde(default)]
    code: String,
    #[serde(default)]
    message: String,
}

impl fmt::Display for OperationError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.errors.is_empty() {
            return f.write_str("(no detail)");
        }
        for (i, e) in self.errors.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            write!(f, "{}: {}", e.code, e.message)?;
        }
        Ok(())
    }
}

/// GCE's `status` word, normalised.
pub fn state_of(status: &str) -> InstanceState {
    match status {
        "PROVISIONING" | "STAGING" => InstanceState::Pending,
        "RUNNING" => InstanceState::Running,
        "STOPPING" | "SUSPENDING" | "PENDING_STOP" => InstanceState::Stopping,
        "TERMINATED" | "STOPPED" | "SUSPENDED" => InstanceState::Stopped,
        other => InstanceState::Other(other.to_ascii_lowercase()),
    }
}

/// The catalog's name for a GCE accelerator type (`nvidia-tesla-t4` → `T4`); `None` when
/// not known (the catalog then fills the model from the machine type).
pub fn gpu_model(accelerator_type: &str) -> Option<&'static str> {
    let name = accelerator_type.rsplit('/').next().unwrap_or("");
    let name = name.strip_suffix("-vws").unwrap_or(name);
    Some(match name {
        "nvidia-tesla-t4" => "T4",
        "nvidia-tesla-v100" => "V100",
        "nvidia-tesla-p100" => "P100",
        "nvidia-tesla-p4" => "P4",
        "nvidia-tesla-k80" => "K80",
        "nvidia-tesla-a100" => "A100",
        "nvidia-a100-80gb" => "A100-80GB",
        "nvidia-l4" => "L4",
        "nvidia-h100-80gb" => "H100",
        "nvidia-h100-mega-80gb" => "H100-MEGA",
        "nvidia-h200-141gb" => "H200",
        "nvidia-b200" => "B200",
        _ => return None,
    })
}

/// One GCE instance resource (of `project`) as a `FleetInstance`; an error names the
/// missing field.
pub fn instance_from_json(project: &str, v: &serde_json::Value) -> Result<FleetInstance, String> {
    let text = |f: &str| v[f].as_str().map(str::to_string);
    let id = match &v["id"] {
        serde_json::Value::String(s) if !s.is_empty() => s.clone(),
        serde_json::Value::Number(n) => n.to_string(),
        _ => return Err("id: missing".into()),
    };
    let name = text("name")
        .filter(|n| !n.is_empty())
        .ok_or("name: missing")?;
    let zone = text("zone")
        .as_deref()
        .and_then(|z| z.rsplit('/').next())
        .filter(|z| !z.is_empty())
        .map(str::to_string)
        .ok_or_else(|| format!("zone: missing on {name}"))?;
    let region = zone
        .rsplit_once('-')
        .map(|(r, _)| r.to_string())
        .unwrap_or_else(|| zone.clone());
    let instance_type = text("machineType")
        .as_deref()
        .and_then(|m| m.rsplit('/').next())
        .unwrap_or("")
        .to_string();
    let (gpu_model, gpu_count) = v["guestAccelerators"]
        .as_array()
        .into_iter()
        .flatten()
        .find_map(|a| {
            let model = gpu_model(a["acceleratorType"].as_str()?)?;
            let count = a["acceleratorCount"].as_u64().unwrap_or(0);
            Some((Some(model.to_string()), u32::try_from(count).unwrap_or(0)))
        })
        .unwrap_or((None, 0));
    let labels: BTreeMap<String, String> = v["labels"]
        .as_object()
        .into_iter()
        .flatten()
        .map(|(k, v)| (k.clone(), v.as_str().unwrap_or("").to_string()))
        .collect();
    let launched_at = text("creationTimestamp")
        .and_then(|t| DateTime::parse_from_rfc3339(&t).ok())
        .map(|t| t.with_timezone(&Utc));
    let status = text("status").unwrap_or_default();
    let private_hostname = text("hostname")
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| format!("{name}.{zone}.c.{project}.internal"));
    let cloud_protection = v["deletionProtection"]
        .as_bool()
        .unwrap_or(false)
        .then(|| "deletionProtection".to_string());
    let managed_by = v["metadata"]["items"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|i| i["key"] == "created-by")
        .and_then(|i| i["value"].as_str())
        .map(str::to_string);
    Ok(FleetInstance {
        provider: Provider::Gcp,
        resource: format!("projects/{project}/zones/{zone}/instances/{name}"),
        id,
        name,
        scope: project.to_string(),
        region,
        zone,
        instance_type,
        gpu_model,
        gpu_count,
        labels,
        launched_at,
        state: state_of(&status),
        private_hostname,
        cloud_protection,
        managed_by,
    })
}

/// `first` (a list URL) with `pageToken` set.
fn with_page_token(first: &str, token: &str) -> String {
    let encoded: String = url::form_urlencoded::byte_serialize(token.as_bytes()).collect();
    format!("{first}&pageToken={encoded}")
}

/// A random (version 4) UUID, GCE's `requestId`.
pub fn request_id() -> String {
    let mut b: [u8; 16] = rand::random();
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let mut s = String::with_capacity(36);
    for (i, byte) in b.iter().enumerate() {
        if matches!(i, 4 | 6 | 8 | 10) {
            s.push('-');
        }
        s.push_str(&format!("{byte:02x}"));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLES: &str = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../shared/data/fleet-api-samples"
    );

    fn flight(name: &str) -> serde_json::Value {
        let text = std::fs::read_to_string(format!("{SAMPLES}/{name}")).unwrap();
        serde_json::from_str::<serde_json::Value>(&text).unwrap()["body"].clone()
    }

    #[test]
    fn the_recorded_list_maps_to_an_instance() {
        let body = flight("gcp-instances-list-after-stop.flight.json");
        let page: ListPage = serde_json::from_value(body).unwrap();
        let all: Vec<_> = page
            .instances()
            .map(|v| instance_from_json("cloud-custodian", v).unwrap())
            .collect();
        assert_eq!(all.len(), 1);
        let i = &all[0];
        assert_eq!(i.id, "6624228363236670454");
        assert_eq!(i.name, "instance-1");
        assert_eq!(
            i.resource,
            "projects/cloud-custodian/zones/us-central1-c/instances/instance-1"
        );
        assert_eq!(
            (i.region.as_str(), i.zone.as_str()),
            ("us-central1", "us-central1-c")
        );
        assert_eq!(i.instance_type, "n1-standard-1");
        assert_eq!(i.state, InstanceState::Stopping);
        assert_eq!(
            i.private_hostname,
            "instance-1.us-central1-c.c.cloud-custodian.internal"
        );
        assert_eq!(i.cloud_protection, None);
        assert_eq!(i.managed_by, None);
        assert_eq!((i.gpu_model.as_deref(), i.gpu_count), (None, 0));
        assert_eq!(
            i.launched_at.unwrap().to_rfc3339(),
            "2018-08-03T12:05:46.403+00:00"
        );
    }

    #[test]
    fn the_recorded_operations_parse() {
        let op: Operation =
            serde_json::from_value(flight("gcp-instances-stop.flight.json")).unwrap();
        assert_eq!(op.status, "PENDING");
        assert!(op.error.is_none());
        let done: Operation =
            serde_json::from_value(flight("gcp-zone-operation-done.flight.json")).unwrap();
        assert_eq!(done.status, "DONE");
        assert!(!done.says_gone());
    }

    #[test]
    fn accelerators_protection_and_groups_are_read() {
        let v = serde_json::json!({
            "id": 42, "name": "trainer", "status": "RUNNING",
            "zone": "projects/p/zones/europe-west4-a",
            "machineType": "zones/europe-west4-a/machineTypes/a2-highgpu-1g",
            "guestAccelerators": [{"acceleratorType": "projects/p/zones/europe-west4-a/acceleratorTypes/nvidia-tesla-a100", "acceleratorCount": 1}],
            "deletionProtection": true,
            "hostname": "trainer.example.internal",
            "labels": {"goog-gke-node": "", "team": "ml"},
            "metadata": {"items": [{"key": "created-by", "value": "projects/1/zones/europe-west4-a/instanceGroupManagers/pool"}]}
        });
        let i = instance_from_json("p", &v).unwrap();
        assert_eq!(i.id, "42");
        assert_eq!((i.gpu_model.as_deref(), i.gpu_count), (Some("A100"), 1));
        assert_eq!(i.cloud_protection.as_deref(), Some("deletionProtection"));
        assert_eq!(
            i.managed_by.as_deref(),
            Some("projects/1/zones/europe-west4-a/instanceGroupManagers/pool")
        );
        assert_eq!(i.private_hostname, "trainer.example.internal");
        assert!(i.labels.contains_key("goog-gke-node"));
        assert_eq!(i.region, "europe-west4");
        let e = instance_from_json("p", &serde_json::json!({"name": "x"})).unwrap_err();
        assert!(e.starts_with("id"), "{e}");
    }

    #[test]
    fn states_and_models_are_normalised() {
        assert_eq!(state_of("TERMINATED"), InstanceState::Stopped);
        assert_eq!(state_of("STAGING"), InstanceState::Pending);
        assert_eq!(
            state_of("REPAIRING"),
            InstanceState::Other("repairing".into())
        );
        assert_eq!(gpu_model("nvidia-h100-80gb"), Some("H100"));
        assert_eq!(gpu_model("nvidia-tesla-t4-vws"), Some("T4"));
        assert_eq!(gpu_model("nvidia-future-9000"), None);
    }

    #[test]
    fn request_ids_are_v4_uuids_and_differ() {
        let a = request_id();
        assert_eq!(a.len(), 36);
        assert_eq!(&a[14..15], "4");
        assert!(matches!(&a[19..20], "8" | "9" | "a" | "b"), "{a}");
        assert_ne!(a, request_id());
    }
}
