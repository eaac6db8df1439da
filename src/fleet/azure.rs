//! The Azure fleet: ARM REST over reqwest. Lists the virtual machines of each subscription
//! (`virtualMachines?statusOnly=true`, which carries each VM's power state, paginated by
//! `nextLink`), stops one by **deallocating** it (a VM Azure has only powered off is still
//! billed for compute) and deletes one. Both answer 200, or 202 with an
//! `Azure-AsyncOperation` (polled until Succeeded/Failed/Canceled) or `Location` (polled
//! until 200/204) header; `Retry-After` is honoured. Delete's 204 and any 404 mean the VM
//! is already gone; a stop first reads the VM, and one already deallocated (or deallocating)
//! is `Done::Already`. Links from the answers are followed only on the endpoint's own origin,
//! so the token goes nowhere else. The token is the configured one, else the managed
//! identity's from IMDS (cached).
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
use crate::remote::http::{Answer, TokenGuard};

/// Azure Resource Manager.
pub const DEFAULT_ENDPOINT: &str = "https://management.azure.com";
/// IMDS: the managed identity's token for ARM.
pub const DEFAULT_TOKEN_URL: &str = "http://169.254.169.254/metadata/identity/oauth2/token?api-version=2018-02-01&resource=https%3A%2F%2Fmanagement.azure.com%2F";
/// The Microsoft.Compute api-version the calls use.
pub const DEFAULT_API_VERSION: &str = "2024-11-01";
const PROVIDER: &str = "azure";

/// What `AzureFleet` needs (built from `[fleet.azure]` by `config`).
#[derive(Clone)]
pub struct AzureSettings {
    pub subscriptions: Vec<String>,
    /// `endpoint` (None = `DEFAULT_ENDPOINT`), request timeout, retries and backoff.
    pub http: HttpSettings,
    /// A fixed ARM bearer token (secret); empty = fetched from `token_url`.
    pub access_token: String,
    pub token_url: String,
    pub api_version: String,
    /// How often an asynchronous operation is polled when the answer names no
    /// `Retry-After`.
    pub poll_interval: Duration,
    /// How long an operation may take before the action is reported failed.
    pub operation_timeout: Duration,
}

impl Default for AzureSettings {
    fn default() -> Self {
        AzureSettings {
            subscriptions: Vec::new(),
            http: HttpSettings::default(),
            access_token: String::new(),
            token_url: DEFAULT_TOKEN_URL.into(),
            api_version: DEFAULT_API_VERSION.into(),
            poll_interval: Duration::from_secs(5),
            operation_timeout: Duration::from_secs(15 * 60),
        }
    }
}

impl fmt::Debug for AzureSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AzureSettings")
            .field("subscriptions", &self.subscriptions)
            .field("http", &self.http)
            .field(
                "access_token",
                &(!self.access_token.is_empty()).then_some("<redacted>"),
            )
            .field("token_url", &self.token_url)
            .field("api_version", &self.api_version)
            .field("poll_interval", &self.poll_interval)
            .field("operation_timeout", &self.operation_timeout)
            .finish()
    }
}

/// The virtual machines of the configured subscriptions.
#[derive(Debug)]
pub struct AzureFleet {
    settings: AzureSettings,
    rest: Rest,
}

impl AzureFleet {
    pub fn new(settings: AzureSettings) -> Result<AzureFleet, FleetError> {
        if settings.subscriptions.is_empty() {
            return Err(FleetError::Config(
                "fleet.azure.subscriptions is empty".into(),
            ));
        }
        let rest = Rest::new(
            &settings.http,
            DEFAULT_ENDPOINT,
            &settings.access_token,
            &settings.token_url,
            ("Metadata", "true"),
        )?;
        Ok(AzureFleet { settings, rest })
    }

    fn api(&self) -> &str {
        &self.settings.api_version
    }

    async fn list_subscription(
        &self,
        subscription: &str,
        out: &mut Vec<FleetInstance>,
    ) -> Result<(), FleetError> {
        let list_err = |detail: String| FleetError::List {
            provider: PROVIDER,
            detail,
        };
        let mut url = format!(
            "{}/subscriptions/{subscription}/providers/Microsoft.Compute/virtualMachines?api-version={}&statusOnly=true",
            self.rest.base,
            self.api()
        );
        let mut guard = TokenGuard::default();
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
            for (i, v) in page.value.iter().enumerate() {
                match vm_from_json(v) {
                    Ok(vm) => out.push(vm),
                    Err(e) => {
                        tracing::warn!(subscription, url = %url, index = i, error = %e, "Azure list: skipped a malformed virtual machine")
                    }
                }
            }
            let Some(next) = guard
                .next(page.next_link.as_deref(), &url)
                .map_err(|e| list_err(e.to_string()))?
            else {
                return Ok(());
            };
            if !self.rest.same_origin(&next) {
                return Err(list_err(format!(
                    "refusing to follow nextLink {}: not on {}",
                    quote(&next),
                    self.rest.base
                )));
            }
            url = next;
        }
    }

    async fn act(&self, instance: &FleetInstance, action: Action) -> Result<Done, FleetError> {
        let act = Act {
            provider: PROVIDER,
            action: action.word(),
            instance: &instance.resource,
        };
        let id = instance.resource.trim_end_matches('/');
        if !is_vm_id(id) {
            return Err(act.refused(format!(
                "{} is not an ARM virtual machine id",
                quote(&instance.resource)
            )));
        }
        let http = &self.rest.http;
        let base = &self.rest.base;
        if action == Action::Deallocate {
            let url = format!("{base}{id}?api-version={}&$expand=instanceView", self.api());
            let a = self
                .rest
                .send(Method::GET, &url)
                .await
                .map_err(|e| act.source(e, http))?;
            if a.status == StatusCode::NOT_FOUND {
                return Ok(Done::Already);
            }
            if !a.status.is_success() {
                return Err(act.answer(&a, &url));
            }
            let v: serde_json::Value = serde_json::from_slice(&a.body)
                .map_err(|e| act.failed(a.attempts, format!("malformed answer from {url}: {e}")))?;
            if matches!(
                state_of(&v["properties"]),
                InstanceState::Stopped | InstanceState::Stopping | InstanceState::Terminated
            ) {
                return Ok(Done::Already);
            }
        }
        let (method, url) = match action {
            Action::Deallocate => (
                Method::POST,
                format!("{base}{id}/deallocate?api-version={}", self.api()),
            ),
            Action::Delete => (
                Method::DELETE,
                format!("{base}{id}?api-version={}", self.api()),
            ),
        };
        let a = self
            .rest
            .send(method, &url)
            .await
            .map_err(|e| act.source(e, http))?;
        match a.status.as_u16() {
            404 => Ok(Done::Already),
            // Delete: "the VM did not exist".
            204 if action == Action::Delete => Ok(Done::Already),
            200 | 204 => Ok(Done::Now),
            202 => self.wait(&a, &act).await,
            _ => Err(act.answer(&a, &url)),
        }
    }

    /// Follows a 202's `Azure-AsyncOperation` (preferred) or `Location` until the operation
    /// ends or the timeout passes.
    async fn wait(&self, accepted: &Answer, act: &Act<'_>) -> Result<Done, FleetError> {
        let header = |name: &str| {
            accepted
                .headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string)
        };
        let (url, kind) = match (header("azure-asyncoperation"), header("location")) {
            (Some(u), _) => (u, Poll::AsyncOperation),
            (None, Some(u)) => (u, Poll::Location),
            (None, None) => {
                return Err(act.failed(
                    accepted.attempts,
                    "202 Accepted without an Azure-AsyncOperation or Location header".into(),
                ));
            }
        };
        if !self.rest.same_origin(&url) {
            return Err(act.failed(
                accepted.attempts,
                format!(
                    "refusing to poll {}: not on {}",
                    quote(&url),
                    self.rest.base
                ),
            ));
        }
        let timeout = self.settings.operation_timeout;
        let deadline = Instant::now() + timeout;
        let mut wait = accepted
            .retry_after()
            .unwrap_or(self.settings.poll_interval);
        loop {
            let now = Instant::now();
            if now >= deadline {
                return Err(act.failed(
                    accepted.attempts,
                    format!(
                        "the operation at {url} had not ended after {}",
                        humantime::format_duration(timeout)
                    ),
                ));
            }
            tokio::time::sleep(wait.min(deadline - now)).await;
            let a = self
                .rest
                .send(Method::GET, &url)
                .await
                .map_err(|e| act.source(e, &self.rest.http))?;
            wait = a.retry_after().unwrap_or(self.settings.poll_interval);
            match kind {
                Poll::Location => match a.status.as_u16() {
                    202 => continue,
                    200 | 204 => return Ok(Done::Now),
                    _ => return Err(act.failed(accepted.attempts, describe(&a, &url))),
                },
                Poll::AsyncOperation => {
                    if !a.status.is_success() {
                        return Err(act.failed(accepted.attempts, describe(&a, &url)));
                    }
                    let status: OperationStatus = serde_json::from_slice(&a.body).map_err(|e| {
                        act.failed(
                            accepted.attempts,
                            format!("malformed operation status from {url}: {e}"),
                        )
                    })?;
                    match status.status.as_str() {
                        "Succeeded" => return Ok(Done::Now),
                        "Failed" | "Canceled" => {
                            let e = status.error.unwrap_or_default();
                            if matches!(e.code.as_str(), "NotFound" | "ResourceNotFound") {
                                return Ok(Done::Already);
                            }
                            return Err(act.failed(
                                accepted.attempts,
                                format!("operation {}: {}: {}", status.status, e.code, e.message),
                            ));
                        }
                        _ => continue,
                    }
                }
            }
        }
    }
}

#[async_trait]
impl Fleet for AzureFleet {
    fn provider(&self) -> Provider {
        Provider::Azure
    }

    async fn list(&self) -> Result<Vec<FleetInstance>, FleetError> {
        let mut out = Vec::new();
        for s in &self.settings.subscriptions {
            self.list_subscription(s, &mut out).await?;
        }
        Ok(out)
    }

    /// Deallocates the VM.
    async fn stop(&self, instance: &FleetInstance) -> Result<Done, FleetError> {
        self.act(instance, Action::Deallocate).await
    }

    async fn terminate(&self, instance: &FleetInstance) -> Result<Done, FleetError> {
        self.act(instance, Action::Delete).await
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Action {
    Deallocate,
    Delete,
}

impl Action {
    fn word(self) -> &'static str {
        match self {
            Action::Deallocate => "deallocate",
            Action::Delete => "delete",
        }
    }
}

#[derive(Clone, Copy)]
enum Poll {
    AsyncOperation,
    Location,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ListPage {
    #[serde(default)]
    value: Vec<serde_json::Value>,
    #[serde(default)]
    next_link: Option<String>,
}

#[derive(Deserialize)]
struct OperationStatus {
    #[serde(default)]
    status: String,
    #[serde(default)]
    error: Option<OperationError>,
}

#[derive(Default, Deserialize)]
struct OperationError {
    #[serde(default)]
    code: String,
    #[serde(default)]
    message: String,
}

/// `/subscriptions/S/resourceGroups/G/providers/Microsoft.Compute/virtualMachines/NAME`.
fn is_vm_id(id: &str) -> bool {
    let parts: Vec<&str> = id.split('/').collect();
    matches!(
        parts[..],
        ["", s, sub, r, rg, p, ns, t, name]
            if s.eq_ignore_ascii_case("subscriptions")
                && r.eq_ignore_ascii_case("resourceGroups")
                && p.eq_ignore_ascii_case("providers")
                && ns.eq_ignore_ascii_case("Microsoft.Compute")
                && t.eq_ignore_ascii_case("virtualMachines")
                && ![sub, rg, name].contains(&"")
    )
}

/// `subscription/resourceGroup` of an ARM id.
fn scope_of(id: &str) -> Option<String> {
    let parts: Vec<&str> = id.split('/').collect();
    match parts[..] {
        ["", s, sub, r, rg, ..]
            if s.eq_ignore_ascii_case("subscriptions")
                && r.eq_ignore_ascii_case("resourceGroups") =>
        {
            Some(format!("{sub}/{rg}"))
        }
        _ => None,
    }
}

/// The state of a VM from its `properties`: the `PowerState/…` status of its instance view,
/// and `provisioningState` Deleting. `stopped` (and `stopping`, on its way there) is
/// `PoweredOff`: still billed.
pub fn state_of(properties: &serde_json::Value) -> InstanceState {
    if properties["provisioningState"]
        .as_str()
        .is_some_and(|p| p.eq_ignore_ascii_case("deleting"))
    {
        return InstanceState::Terminated;
    }
    let power = properties["instanceView"]["statuses"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|s| s["code"].as_str())
        .find_map(|c| c.strip_prefix("PowerState/"));
    match power {
        Some("running") => InstanceState::Running,
        Some("starting") => InstanceState::Pending,
        Some("deallocated") => InstanceState::Stopped,
        Some("deallocating") => InstanceState::Stopping,
        Some("stopped") | Some("stopping") => InstanceState::PoweredOff,
        Some(other) => InstanceState::Other(other.to_ascii_lowercase()),
        None => InstanceState::Other("unknown".into()),
    }
}

/// One ARM virtual machine resource as a `FleetInstance`; an error names the missing field.
pub fn vm_from_json(v: &serde_json::Value) -> Result<FleetInstance, String> {
    let p = &v["properties"];
    let arm_id = v["id"].as_str().unwrap_or("").to_string();
    let scope =
        scope_of(&arm_id).ok_or_else(|| format!("id: {} is not an ARM id", quote(&arm_id)))?;
    let name = v["name"]
        .as_str()
        .filter(|n| !n.is_empty())
        .ok_or_else(|| format!("name: missing on {arm_id}"))?
        .to_string();
    let id = p["vmId"]
        .as_str()
        .filter(|n| !n.is_empty())
        .ok_or_else(|| format!("properties.vmId: missing on {arm_id}"))?
        .to_string();
    let labels: BTreeMap<String, String> = v["tags"]
        .as_object()
        .into_iter()
        .flatten()
        .map(|(k, v)| (k.clone(), v.as_str().unwrap_or("").to_string()))
        .collect();
    let launched_at = p["timeCreated"]
        .as_str()
        .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
        .map(|t| t.with_timezone(&Utc));
    Ok(FleetInstance {
        provider: Provider::Azure,
        id,
        name: name.clone(),
        scope,
        resource: arm_id,
        region: v["location"].as_str().unwrap_or("").to_string(),
        zone: v["zones"][0].as_str().unwrap_or("").to_string(),
        instance_type: p["hardwareProfile"]["vmSize"]
            .as_str()
            .unwrap_or("")
            .to_string(),
        gpu_model: None,
        gpu_count: 0,
        labels,
        launched_at,
        state: state_of(p),
        private_hostname: p["osProfile"]["computerName"]
            .as_str()
            .filter(|h| !h.is_empty())
            .unwrap_or(&name)
            .to_string(),
        cloud_protection: None,
        managed_by: p["virtualMachineScaleSet"]["id"]
            .as_str()
            .map(str::to_string),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_listed_vm_maps_with_its_power_state_and_scale_set() {
        let v = serde_json::json!({
            "id": "/subscriptions/sub-1/resourceGroups/ml-rg/providers/Microsoft.Compute/virtualMachines/gpu-1",
            "name": "gpu-1",
            "location": "eastus",
            "zones": ["2"],
            "tags": {"team": "ml"},
            "properties": {
                "vmId": "0f6f4a4e-0000-4000-8000-000000000001",
                "hardwareProfile": {"vmSize": "Standard_NC24ads_A100_v4"},
                "osProfile": {"computerName": "gpu1host"},
                "timeCreated": "2024-05-01T10:00:00.1234567+00:00",
                "virtualMachineScaleSet": {"id": "/subscriptions/sub-1/resourceGroups/ml-rg/providers/Microsoft.Compute/virtualMachineScaleSets/pool"},
                "instanceView": {"statuses": [
                    {"code": "ProvisioningState/succeeded"},
                    {"code": "PowerState/stopped"}
                ]}
            }
        });
        let vm = vm_from_json(&v).unwrap();
        assert_eq!(vm.id, "0f6f4a4e-0000-4000-8000-000000000001");
        assert_eq!(vm.scope, "sub-1/ml-rg");
        assert_eq!((vm.region.as_str(), vm.zone.as_str()), ("eastus", "2"));
        assert_eq!(vm.instance_type, "Standard_NC24ads_A100_v4");
        assert_eq!(vm.private_hostname, "gpu1host");
        assert_eq!(vm.state, InstanceState::PoweredOff);
        assert!(!vm.state.not_billed(), "powered off is still billed");
        assert!(
            vm.managed_by
                .unwrap()
                .ends_with("virtualMachineScaleSets/pool")
        );
        assert_eq!(vm.launched_at.unwrap().timestamp(), 1714557600);
        assert!(is_vm_id(&vm.resource));
        let e = vm_from_json(&serde_json::json!({"id": v["id"], "name": "x", "properties": {}}))
            .unwrap_err();
        assert!(e.starts_with("properties.vmId"), "{e}");
    }

    #[test]
    fn power_states_are_normalised() {
        let with = |code: &str| {
            state_of(&serde_json::json!({"instanceView": {"statuses": [{"code": code}]}}))
        };
        assert_eq!(with("PowerState/running"), InstanceState::Running);
        assert_eq!(with("PowerState/deallocated"), InstanceState::Stopped);
        assert_eq!(with("PowerState/deallocating"), InstanceState::Stopping);
        assert_eq!(with("PowerState/starting"), InstanceState::Pending);
        assert_eq!(with("PowerState/stopped"), InstanceState::PoweredOff);
        assert_eq!(
            state_of(&serde_json::json!({})),
            InstanceState::Other("unknown".into())
        );
        assert_eq!(
            state_of(&serde_json::json!({"provisioningState": "Deleting"})),
            InstanceState::Terminated
        );
        assert!(!is_vm_id(
            "/subscriptions/s/resourceGroups/g/providers/Microsoft.Network/networkInterfaces/n"
        ));
    }
}
