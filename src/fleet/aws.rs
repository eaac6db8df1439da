//! The AWS fleet: EC2 machines through `aws-sdk-ec2`, one client per configured region.
//!
//! - `list` walks DescribeInstances with the SDK paginator to the end (page size
//!   configurable; a repeated token is an error, not a silently short inventory), asks only
//!   for pending/running/stopping/stopped machines, keeps the configured instance families
//!   (`p`, `g`, `gr` by default: the NVIDIA GPU families; matched here, because EC2's
//!   wildcard filter values are not honoured by moto), and reads the cloud's own protection
//!   (`disableApiStop`, `disableApiTermination`) of each running machine with a bounded
//!   number of DescribeInstanceAttribute calls in flight. A machine whose protection could
//!   not be read is marked protected ("unverified"), so the policy leaves it alone.
//! - `stop` / `terminate` look at the machine first (already stopped, terminated or unknown
//!   → `Done::Already`), then call StopInstances / TerminateInstances and read the previous
//!   state from the answer. `OperationNotPermitted` (stop or termination protection),
//!   `UnauthorizedOperation` and other client errors → `FleetError::Refused`; throttling,
//!   5xx and transport errors are retried by the SDK (`HttpSettings`: bounded attempts,
//!   backoff) and then → `FleetError::Failed` with the attempts made. Nothing that failed is
//!   ever reported done.
use std::collections::BTreeMap;

use async_trait::async_trait;
use aws_sdk_ec2::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_ec2::types::{Filter, Instance, InstanceAttributeName, InstanceStateChange};
use chrono::{DateTime, Utc};
use futures::StreamExt;

use crate::domain::Provider;
use crate::domain::fleet::{FleetInstance, InstanceState};
use crate::fleet::{Done, Fleet, FleetError};
use crate::remote::aws::{AttemptCounter, endpoint_label, map_sdk_error, sdk_config};
use crate::remote::http::TokenGuard;
use crate::remote::{HttpSettings, SourceError};

const PROVIDER: &str = "aws";
/// The instance families listed by default: NVIDIA GPU machines (p3–p6, g4dn–g6e, gr6).
pub const DEFAULT_FAMILIES: &[&str] = &["g", "gr", "p"];
/// The states asked for: every machine that still exists.
pub const LISTED_STATES: &[&str] = &["pending", "running", "stopping", "stopped"];
/// DescribeInstances' bounds on MaxResults.
pub const PAGE_SIZE_RANGE: std::ops::RangeInclusive<u32> = 5..=1000;
/// The prefix of `cloud_protection` when the attributes could not be read.
pub const UNVERIFIED: &str = "unverified";

/// What `AwsFleet` is built from (`config::AwsFleetConfig::settings` makes one).
#[derive(Clone, Debug)]
pub struct AwsFleetSettings {
    /// Region codes, a client each.
    pub regions: Vec<String>,
    /// Endpoint override (moto in tests), timeout, retries and backoff.
    pub http: HttpSettings,
    /// Instance families kept: the letters before the generation digit (`p` of
    /// `p4d.24xlarge`, `gr` of `gr6.4xlarge`). Empty = every instance.
    pub families: Vec<String>,
    /// DescribeInstances MaxResults (5–1000).
    pub page_size: u32,
    /// DescribeInstanceAttribute calls in flight at once per region.
    pub attribute_concurrency: u32,
}

impl Default for AwsFleetSettings {
    fn default() -> Self {
        AwsFleetSettings {
            regions: Vec::new(),
            http: HttpSettings::default(),
            families: DEFAULT_FAMILIES.iter().map(|f| f.to_string()).collect(),
            page_size: *PAGE_SIZE_RANGE.end(),
            attribute_concurrency: 4,
        }
    }
}

impl AwsFleetSettings {
    /// Checks the settings; an error names the key (`regions`, `page_size`, ...) and why.
    pub fn validate(&self) -> Result<(), (&'static str, String)> {
        if self.regions.is_empty() {
            return Err(("regions", "at least one region is required".into()));
        }
        if let Some(r) = self.regions.iter().find(|r| !valid_region(r)) {
            return Err((
                "regions",
                format!("{r:?} is not a region code like \"us-east-1\""),
            ));
        }
        if let Some(f) = self
            .families
            .iter()
            .find(|f| f.is_empty() || !f.chars().all(|c| c.is_ascii_alphabetic()))
        {
            return Err((
                "families",
                format!("{f:?} is not an instance family (letters, like \"p\" or \"gr\")"),
            ));
        }
        if !PAGE_SIZE_RANGE.contains(&self.page_size) {
            return Err((
                "page_size",
                format!(
                    "{} is outside {}–{} (DescribeInstances MaxResults)",
                    self.page_size,
                    PAGE_SIZE_RANGE.start(),
                    PAGE_SIZE_RANGE.end()
                ),
            ));
        }
        if self.attribute_concurrency == 0 {
            return Err(("attribute_concurrency", "must be at least 1".into()));
        }
        if let Some(e) = self.http.endpoint.as_deref().map(str::trim)
            && !e.is_empty()
            && !url::Url::parse(e)
                .is_ok_and(|u| matches!(u.scheme(), "http" | "https") && u.has_host())
        {
            return Err(("endpoint", format!("{e:?} is not an http(s) URL")));
        }
        if self.http.max_backoff < self.http.base_backoff {
            return Err(("max_backoff", "must be at least base_backoff".into()));
        }
        if self.http.timeout.is_zero() {
            return Err(("timeout", "must be longer than 0s".into()));
        }
        Ok(())
    }
}

fn valid_region(r: &str) -> bool {
    !r.is_empty()
        && r.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
}

/// The family of an instance type: the letters before the generation digit, lower-cased
/// (`p4d.24xlarge` → `p`, `gr6.4xlarge` → `gr`, `mac2.metal` → `mac`).
pub fn family(instance_type: &str) -> String {
    instance_type
        .chars()
        .take_while(|c| c.is_ascii_alphabetic())
        .map(|c| c.to_ascii_lowercase())
        .collect()
}

/// Whether `instance_type` belongs to one of `families` (empty = all).
pub fn in_families(families: &[String], instance_type: &str) -> bool {
    if families.is_empty() {
        return true;
    }
    let f = family(instance_type);
    families.iter().any(|w| w.eq_ignore_ascii_case(&f))
}

/// EC2's state name, normalised (`shutting-down` is on its way to terminated).
pub fn state_of(name: &str) -> InstanceState {
    match name {
        "pending" => InstanceState::Pending,
        "running" => InstanceState::Running,
        "stopping" => InstanceState::Stopping,
        "stopped" => InstanceState::Stopped,
        "shutting-down" | "terminated" => InstanceState::Terminated,
        other => InstanceState::Other(other.to_string()),
    }
}

fn to_chrono(t: &aws_sdk_ec2::primitives::DateTime) -> Option<DateTime<Utc>> {
    DateTime::from_timestamp(t.secs(), t.subsec_nanos())
}

/// One DescribeInstances entry as a `FleetInstance` (`cloud_protection` not yet read);
/// `None` without an instance id.
pub fn to_fleet_instance(region: &str, i: &Instance) -> Option<FleetInstance> {
    let id = i
        .instance_id()
        .filter(|s| !s.trim().is_empty())?
        .to_string();
    let labels: BTreeMap<String, String> = i
        .tags()
        .iter()
        .filter_map(|t| Some((t.key()?.to_string(), t.value().unwrap_or("").to_string())))
        .collect();
    let name = labels
        .get("Name")
        .filter(|n| !n.trim().is_empty())
        .cloned()
        .unwrap_or_else(|| id.clone());
    let state = i
        .state()
        .and_then(|s| s.name())
        .map_or(InstanceState::Other("unknown".into()), |n| {
            state_of(n.as_str())
        });
    Some(FleetInstance {
        provider: Provider::Aws,
        name,
        scope: region.to_string(),
        resource: id.clone(),
        region: region.to_string(),
        zone: i
            .placement()
            .and_then(|p| p.availability_zone())
            .unwrap_or("")
            .to_string(),
        instance_type: i
            .instance_type()
            .map(|t| t.as_str().to_string())
            .unwrap_or_default(),
        gpu_model: None,
        gpu_count: 0,
        labels,
        launched_at: i.launch_time().and_then(to_chrono),
        state,
        private_hostname: i.private_dns_name().unwrap_or("").to_string(),
        cloud_protection: None,
        managed_by: None,
        id,
    })
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Action {
    Stop,
    Terminate,
}

impl Action {
    fn word(self) -> &'static str {
        match self {
            Action::Stop => "stop",
            Action::Terminate => "terminate",
        }
    }

    fn operation(self) -> &'static str {
        match self {
            Action::Stop => "StopInstances",
            Action::Terminate => "TerminateInstances",
        }
    }

    /// The machine is already where this action would take it.
    fn already(self, state: &InstanceState) -> bool {
        match self {
            Action::Stop => matches!(
                state,
                InstanceState::Stopped | InstanceState::Stopping | InstanceState::Terminated
            ),
            Action::Terminate => matches!(state, InstanceState::Terminated),
        }
    }
}

/// The machine's state, or `Gone` when EC2 does not know it.
enum Seen {
    Gone,
    State(InstanceState),
}

/// EC2 GPU machines in the configured regions.
pub struct AwsFleet {
    settings: AwsFleetSettings,
    clients: BTreeMap<String, aws_sdk_ec2::Client>,
}

impl AwsFleet {
    /// Validates `settings` and builds one EC2 client per region (no request is made).
    pub async fn new(settings: &AwsFleetSettings) -> Result<AwsFleet, FleetError> {
        settings
            .validate()
            .map_err(|(key, why)| FleetError::Config(format!("fleet.aws.{key}: {why}")))?;
        let mut clients = BTreeMap::new();
        for region in &settings.regions {
            let cfg = sdk_config(&settings.http, region)
                .await
                .map_err(|e| FleetError::Config(format!("fleet.aws: {e}")))?;
            clients.insert(region.clone(), aws_sdk_ec2::Client::new(&cfg));
        }
        Ok(AwsFleet {
            settings: settings.clone(),
            clients,
        })
    }

    /// The configured regions.
    pub fn regions(&self) -> impl Iterator<Item = &str> {
        self.clients.keys().map(String::as_str)
    }

    fn url(&self, region: &str, operation: &str) -> String {
        let base = endpoint_label(&self.settings.http, || {
            format!("https://ec2.{region}.amazonaws.com")
        });
        format!("{base} {operation} region={region}")
    }

    /// The machine's region (`region`, else `scope`) and its client.
    fn client_for<'a>(
        &'a self,
        instance: &'a FleetInstance,
        action: Action,
    ) -> Result<(&'a str, &'a aws_sdk_ec2::Client), FleetError> {
        let region = if instance.region.is_empty() {
            instance.scope.as_str()
        } else {
            instance.region.as_str()
        };
        let client = self
            .clients
            .get(region)
            .ok_or_else(|| FleetError::Refused {
                provider: PROVIDER,
                action: action.word(),
                instance: instance.id.clone(),
                detail: format!(
                    "region {region:?} is not among the configured fleet.aws.regions ({})",
                    self.settings.regions.join(", ")
                ),
            })?;
        Ok((region, client))
    }

    /// Every kept machine of one region, paginated to the end.
    async fn list_region(
        &self,
        region: &str,
        client: &aws_sdk_ec2::Client,
    ) -> Result<Vec<FleetInstance>, FleetError> {
        let url = self.url(region, "DescribeInstances");
        let list_err = |e: SourceError| FleetError::List {
            provider: PROVIDER,
            detail: format!("region {region}: {e}"),
        };
        // A client of its own counts this walk's attempts (the paginator takes no
        // per-call interceptor).
        let attempts = AttemptCounter::default();
        let walker = aws_sdk_ec2::Client::from_conf(
            client
                .config()
                .to_builder()
                .interceptor(attempts.clone())
                .build(),
        );
        let states = Filter::builder()
            .name("instance-state-name")
            .set_values(Some(LISTED_STATES.iter().map(|s| s.to_string()).collect()))
            .build();
        let mut pages = walker
            .describe_instances()
            .filters(states)
            .into_paginator()
            .page_size(self.settings.page_size as i32)
            .send();
        let mut guard = TokenGuard::default();
        let mut out = Vec::new();
        let mut before = 0;
        while let Some(page) = pages.next().await {
            let page =
                page.map_err(|e| list_err(map_sdk_error(e, &url, attempts.get() - before)))?;
            before = attempts.get();
            for i in page.reservations().iter().flat_map(|r| r.instances()) {
                let Some(fi) = to_fleet_instance(region, i) else {
                    tracing::warn!(region, "EC2 listed an instance without an id; skipped");
                    continue;
                };
                if in_families(&self.settings.families, &fi.instance_type) {
                    out.push(fi);
                }
            }
            // The paginator ends quietly on a repeated token; an inventory cut short would
            // look like machines that vanished, so a repeat is an error.
            guard.next(page.next_token(), &url).map_err(list_err)?;
        }
        let running: Vec<usize> = out
            .iter()
            .enumerate()
            .filter(|(_, i)| i.state == InstanceState::Running)
            .map(|(n, _)| n)
            .collect();
        let protections: Vec<(usize, Option<String>)> = futures::stream::iter(running)
            .map(|n| {
                let id = out[n].id.clone();
                async move { (n, self.protection(region, client, &id).await) }
            })
            .buffer_unordered(self.settings.attribute_concurrency as usize)
            .collect()
            .await;
        for (n, p) in protections {
            out[n].cloud_protection = p;
        }
        Ok(out)
    }

    /// `disableApiStop` / `disableApiTermination` when set (comma-separated); a read that
    /// fails marks the machine protected ("unverified: ...") so that nothing acts on it.
    async fn protection(
        &self,
        region: &str,
        client: &aws_sdk_ec2::Client,
        id: &str,
    ) -> Option<String> {
        let mut set = Vec::new();
        for (attr, word) in [
            (InstanceAttributeName::DisableApiStop, "disableApiStop"),
            (
                InstanceAttributeName::DisableApiTermination,
                "disableApiTermination",
            ),
        ] {
            let attempts = AttemptCounter::default();
            let res = client
                .describe_instance_attribute()
                .instance_id(id)
                .attribute(attr.clone())
                .customize()
                .interceptor(attempts.clone())
                .send()
                .await;
            match res {
                Ok(out) => {
                    let v = match attr {
                        InstanceAttributeName::DisableApiStop => out.disable_api_stop(),
                        _ => out.disable_api_termination(),
                    };
                    if v.and_then(|b| b.value()).unwrap_or(false) {
                        set.push(word);
                    }
                }
                Err(e) => {
                    let url = self.url(region, "DescribeInstanceAttribute");
                    let e = map_sdk_error(e, &url, attempts.get());
                    tracing::warn!(instance = id, error = %e, "reading {word}; the machine is treated as protected");
                    return Some(format!("{UNVERIFIED}: {word} could not be read: {e}"));
                }
            }
        }
        (!set.is_empty()).then(|| set.join(","))
    }

    /// The machine's current state, `Seen::Gone` when EC2 does not know it.
    async fn look(
        &self,
        instance: &FleetInstance,
        id: &str,
        (region, client): (&str, &aws_sdk_ec2::Client),
        action: Action,
    ) -> Result<Seen, FleetError> {
        let attempts = AttemptCounter::default();
        let res = client
            .describe_instances()
            .instance_ids(id)
            .customize()
            .interceptor(attempts.clone())
            .send()
            .await;
        match res {
            Ok(out) => Ok(out
                .reservations()
                .iter()
                .flat_map(|r| r.instances())
                .find(|i| i.instance_id() == Some(id))
                .and_then(|i| i.state().and_then(|s| s.name()))
                .map_or(Seen::Gone, |n| Seen::State(state_of(n.as_str())))),
            Err(e) if e.code() == Some("InvalidInstanceID.NotFound") => Ok(Seen::Gone),
            Err(e) => Err(self.error(
                e,
                instance,
                region,
                "DescribeInstances",
                action,
                attempts.get(),
            )),
        }
    }

    /// An SDK error as `Refused` (client errors, permissions) or `Failed` (after the SDK's
    /// retries: throttling, 5xx, transport, unreadable answers).
    fn error<E>(
        &self,
        err: SdkError<E, aws_sdk_ec2::config::http::HttpResponse>,
        instance: &FleetInstance,
        region: &str,
        operation: &str,
        action: Action,
        attempts: u32,
    ) -> FleetError
    where
        E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    {
        let url = self.url(region, operation);
        let mapped = map_sdk_error(err, &url, attempts);
        let refused = match &mapped {
            SourceError::Http { status, .. } => (400..500).contains(status) && *status != 429,
            SourceError::Auth(_) => true,
            _ => false,
        };
        if refused {
            FleetError::Refused {
                provider: PROVIDER,
                action: action.word(),
                instance: instance.id.clone(),
                detail: mapped.to_string(),
            }
        } else {
            FleetError::Failed {
                provider: PROVIDER,
                action: action.word(),
                instance: instance.id.clone(),
                attempts,
                detail: mapped.to_string(),
            }
        }
    }

    async fn act(&self, instance: &FleetInstance, action: Action) -> Result<Done, FleetError> {
        let (region, client) = self.client_for(instance, action)?;
        let id = if instance.resource.trim().is_empty() {
            instance.id.trim()
        } else {
            instance.resource.trim()
        };
        if id.is_empty() {
            return Err(FleetError::Refused {
                provider: PROVIDER,
                action: action.word(),
                instance: instance.name.clone(),
                detail: "no instance id".into(),
            });
        }
        match self.look(instance, id, (region, client), action).await? {
            Seen::Gone => return Ok(Done::Already),
            Seen::State(s) if action.already(&s) => return Ok(Done::Already),
            Seen::State(_) => {}
        }
        let attempts = AttemptCounter::default();
        let res: Result<Vec<InstanceStateChange>, _> = match action {
            Action::Stop => client
                .stop_instances()
                .instance_ids(id)
                .customize()
                .interceptor(attempts.clone())
                .send()
                .await
                .map(|o| o.stopping_instances().to_vec())
                .map_err(|e| (e.code().map(str::to_string), ErrorOf::Stop(e))),
            Action::Terminate => client
                .terminate_instances()
                .instance_ids(id)
                .customize()
                .interceptor(attempts.clone())
                .send()
                .await
                .map(|o| o.terminating_instances().to_vec())
                .map_err(|e| (e.code().map(str::to_string), ErrorOf::Terminate(e))),
        };
        match res {
            Ok(changes) => {
                let previous = changes
                    .iter()
                    .find(|c| c.instance_id() == Some(id))
                    .and_then(|c| c.previous_state())
                    .and_then(|s| s.name())
                    .map(|n| state_of(n.as_str()));
                Ok(match previous {
                    Some(p) if action.already(&p) => Done::Already,
                    _ => Done::Now,
                })
            }
            Err((code, err)) => match code.as_deref() {
                Some("InvalidInstanceID.NotFound") => Ok(Done::Already),
                // Not in a state this action applies to: done if it is already there,
                // else the conflict is reported (a pending machine, say).
                Some("IncorrectInstanceState") => {
                    match self.look(instance, id, (region, client), action).await? {
                        Seen::Gone => Ok(Done::Already),
                        Seen::State(s) if action.already(&s) => Ok(Done::Already),
                        Seen::State(s) => Err(FleetError::Refused {
                            provider: PROVIDER,
                            action: action.word(),
                            instance: instance.id.clone(),
                            detail: format!("IncorrectInstanceState: the machine is {s}"),
                        }),
                    }
                }
                _ => Err(match err {
                    ErrorOf::Stop(e) => self.error(
                        e,
                        instance,
                        region,
                        action.operation(),
                        action,
                        attempts.get(),
                    ),
                    ErrorOf::Terminate(e) => self.error(
                        e,
                        instance,
                        region,
                        action.operation(),
                        action,
                        attempts.get(),
                    ),
                }),
            },
        }
    }
}

/// The two operations' error types, kept apart until mapped.
enum ErrorOf {
    Stop(
        SdkError<
            aws_sdk_ec2::operation::stop_instances::StopInstancesError,
            aws_sdk_ec2::config::http::HttpResponse,
        >,
    ),
    Terminate(
        SdkError<
            aws_sdk_ec2::operation::terminate_instances::TerminateInstancesError,
            aws_sdk_ec2::config::http::HttpResponse,
        >,
    ),
}

#[async_trait]
impl Fleet for AwsFleet {
    fn provider(&self) -> Provider {
        Provider::Aws
    }

    async fn list(&self) -> Result<Vec<FleetInstance>, FleetError> {
        let walks = self
            .clients
            .iter()
            .map(|(region, client)| self.list_region(region, client));
        let mut all: Vec<FleetInstance> = futures::future::try_join_all(walks)
            .await?
            .into_iter()
            .flatten()
            .collect();
        all.sort_by(|a, b| (&a.region, &a.id).cmp(&(&b.region, &b.id)));
        Ok(all)
    }

    async fn stop(&self, instance: &FleetInstance) -> Result<Done, FleetError> {
        self.act(instance, Action::Stop).await
    }

    async fn terminate(&self, instance: &FleetInstance) -> Result<Done, FleetError> {
        self.act(instance, Action::Terminate).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_ec2::types::{InstanceStateName, InstanceType, Placement, Tag};

    #[test]
    fn families_are_the_letters_before_the_generation() {
        assert_eq!(family("p4d.24xlarge"), "p");
        assert_eq!(family("gr6.4xlarge"), "gr");
        assert_eq!(family("G5.xlarge"), "g");
        assert_eq!(family("mac2-m2.metal"), "mac");
        let d = AwsFleetSettings::default().families;
        assert!(in_families(&d, "p5.48xlarge"));
        assert!(in_families(&d, "g6e.xlarge"));
        assert!(in_families(&d, "gr6.8xlarge"));
        assert!(!in_families(&d, "t3.micro"));
        assert!(!in_families(&d, "inf2.xlarge"));
        assert!(in_families(&[], "t3.micro"));
    }

    #[test]
    fn states_map_shutting_down_to_terminated() {
        assert_eq!(state_of("running"), InstanceState::Running);
        assert_eq!(state_of("shutting-down"), InstanceState::Terminated);
        assert_eq!(state_of("stopping"), InstanceState::Stopping);
        assert_eq!(state_of("odd"), InstanceState::Other("odd".into()));
        assert!(Action::Stop.already(&InstanceState::Stopping));
        assert!(Action::Stop.already(&InstanceState::Terminated));
        assert!(!Action::Stop.already(&InstanceState::Running));
        assert!(!Action::Terminate.already(&InstanceState::Stopped));
        assert!(Action::Terminate.already(&InstanceState::Terminated));
    }

    #[test]
    fn an_instance_maps_with_its_name_tag_or_its_id() {
        let i = Instance::builder()
            .instance_id("i-1")
            .instance_type(InstanceType::from("p4d.24xlarge"))
            .placement(Placement::builder().availability_zone("us-east-1b").build())
            .tags(Tag::builder().key("Name").value("trainer").build())
            .tags(Tag::builder().key("team").value("ml").build())
            .state(
                aws_sdk_ec2::types::InstanceState::builder()
                    .name(InstanceStateName::Running)
                    .build(),
            )
            .private_dns_name("ip-10-0-0-5.ec2.internal")
            .launch_time(aws_sdk_ec2::primitives::DateTime::from_secs(1_700_000_000))
            .build();
        let f = to_fleet_instance("us-east-1", &i).unwrap();
        assert_eq!(f.id, "i-1");
        assert_eq!(f.name, "trainer");
        assert_eq!(f.scope, "us-east-1");
        assert_eq!(f.resource, "i-1");
        assert_eq!(f.zone, "us-east-1b");
        assert_eq!(f.instance_type, "p4d.24xlarge");
        assert_eq!(f.labels["team"], "ml");
        assert_eq!(f.state, InstanceState::Running);
        assert_eq!(f.private_hostname, "ip-10-0-0-5.ec2.internal");
        assert_eq!(f.launched_at.unwrap().timestamp(), 1_700_000_000);
        assert_eq!((f.gpu_model, f.gpu_count, f.managed_by), (None, 0, None));
        let bare = Instance::builder().instance_id("i-2").build();
        let f = to_fleet_instance("eu-west-1", &bare).unwrap();
        assert_eq!(f.name, "i-2");
        assert_eq!(f.state, InstanceState::Other("unknown".into()));
        assert!(to_fleet_instance("x", &Instance::builder().build()).is_none());
    }

    #[test]
    fn bad_settings_name_their_key() {
        let ok = AwsFleetSettings {
            regions: vec!["us-east-1".into()],
            ..Default::default()
        };
        assert_eq!(ok.validate(), Ok(()));
        let cases: Vec<(AwsFleetSettings, &str)> = vec![
            (AwsFleetSettings::default(), "regions"),
            (
                AwsFleetSettings {
                    regions: vec!["US East".into()],
                    ..ok.clone()
                },
                "regions",
            ),
            (
                AwsFleetSettings {
                    page_size: 4,
                    ..ok.clone()
                },
                "page_size",
            ),
            (
                AwsFleetSettings {
                    page_size: 1001,
                    ..ok.clone()
                },
                "page_size",
            ),
            (
                AwsFleetSettings {
                    families: vec!["p4d".into()],
                    ..ok.clone()
                },
                "families",
            ),
            (
                AwsFleetSettings {
                    attribute_concurrency: 0,
                    ..ok.clone()
                },
                "attribute_concurrency",
            ),
            (
                AwsFleetSettings {
                    http: HttpSettings {
                        endpoint: Some("localhost:5000".into()),
                        ..Default::default()
                    },
                    ..ok.clone()
                },
                "endpoint",
            ),
        ];
        for (s, key) in cases {
            assert_eq!(s.validate().unwrap_err().0, key, "{s:?}");
        }
    }
}
