//! The GCP and Azure fleet adapters against local stand-ins of the Compute Engine and ARM
//! APIs (tests/common/fleet_standins.rs), which check method, path, api-version and the
//! bearer token and answer in the recorded shapes of ../shared/data/fleet-api-samples:
//! listing across pages, stop (GCE) / deallocate (Azure) and delete polled to the end,
//! "already" outcomes, retries that reuse GCE's requestId, failures that are never done,
//! authentication errors and metadata-service tokens. Nothing leaves loopback.
#[path = "common/fleet_standins.rs"]
mod fleet_standins;

use std::time::{Duration, Instant};

use bursar::domain::Provider;
use bursar::domain::fleet::{FleetInstance, InstanceState};
use bursar::fleet::azure::{AzureFleet, AzureSettings};
use bursar::fleet::gcp::{GcpFleet, GcpSettings};
use bursar::fleet::{Done, Fleet, FleetError};
use bursar::remote::HttpSettings;
use fleet_standins::{
    AzureStandIn, AzureVm, Fault, GceInstance, GcpStandIn, TokenStandIn, azure_recording,
};
use serde_json::json;

const TOKEN: &str = "ya29.test-token";
const API: &str = "2024-11-01";
const RETRIES: u32 = 3;

fn http(base: &str) -> HttpSettings {
    HttpSettings {
        endpoint: Some(base.to_string()),
        timeout: Duration::from_secs(5),
        max_retries: RETRIES,
        base_backoff: Duration::from_millis(2),
        max_backoff: Duration::from_millis(10),
    }
}

fn gcp_settings(base: &str, projects: &[&str]) -> GcpSettings {
    GcpSettings {
        projects: projects.iter().map(|p| p.to_string()).collect(),
        http: http(base),
        access_token: TOKEN.into(),
        page_size: 2,
        poll_interval: Duration::from_millis(10),
        operation_timeout: Duration::from_secs(5),
        ..GcpSettings::default()
    }
}

fn gcp(stand_in: &GcpStandIn) -> GcpFleet {
    GcpFleet::new(gcp_settings(&stand_in.base, &["ml-prod"])).unwrap()
}

fn azure_settings(base: &str) -> AzureSettings {
    AzureSettings {
        subscriptions: vec!["00000000-0000-0000-0000-000000000000".into()],
        http: http(base),
        access_token: TOKEN.into(),
        api_version: API.into(),
        poll_interval: Duration::from_millis(10),
        operation_timeout: Duration::from_secs(5),
        ..AzureSettings::default()
    }
}

fn azure(stand_in: &AzureStandIn) -> AzureFleet {
    AzureFleet::new(azure_settings(&stand_in.base)).unwrap()
}

/// The instance as the policy would hand it to `stop`/`terminate`: only `resource` matters.
fn target(provider: Provider, resource: &str) -> FleetInstance {
    FleetInstance {
        provider,
        id: "x".into(),
        name: "x".into(),
        scope: String::new(),
        resource: resource.into(),
        region: String::new(),
        zone: String::new(),
        instance_type: String::new(),
        gpu_model: None,
        gpu_count: 0,
        labels: Default::default(),
        launched_at: None,
        state: InstanceState::Running,
        private_hostname: String::new(),
        cloud_protection: None,
        managed_by: None,
    }
}

fn fleet() -> Vec<GceInstance> {
    let a = GceInstance {
        labels: vec![("team", "ml")],
        ..GceInstance::running("ml-prod", "us-central1-a", "trainer-1", 1001)
    };
    let protected = GceInstance {
        deletion_protection: true,
        machine_type: "a3-highgpu-8g",
        accelerator: Some(("nvidia-h100-80gb", 8)),
        ..GceInstance::running("ml-prod", "us-central1-a", "h100-keep", 1002)
    };
    let mig = GceInstance {
        created_by: Some("projects/123/zones/europe-west4-b/instanceGroupManagers/pool"),
        labels: vec![("goog-gke-node", "")],
        ..GceInstance::running("ml-prod", "europe-west4-b", "pool-x1", 1003)
    };
    let stopped = GceInstance {
        status: "TERMINATED",
        ..GceInstance::running("ml-prod", "europe-west4-b", "parked", 1004)
    };
    let other_project = GceInstance::running("other", "us-east1-b", "elsewhere", 2001);
    vec![a, protected, mig, stopped, other_project]
}

fn gce_target(project: &str, zone: &str, name: &str) -> FleetInstance {
    target(
        Provider::Gcp,
        &format!("projects/{project}/zones/{zone}/instances/{name}"),
    )
}

// ---------------------------------------------------------------------------------------
// GCP

#[tokio::test]
async fn gcp_lists_every_page_of_the_aggregated_list_and_maps_each_field() {
    let s = GcpStandIn::start(TOKEN, &fleet()).await;
    let mut got = gcp(&s).list().await.unwrap();
    got.sort_by(|a, b| a.name.cmp(&b.name));
    let names: Vec<&str> = got.iter().map(|i| i.name.as_str()).collect();
    assert_eq!(names, ["h100-keep", "parked", "pool-x1", "trainer-1"]);

    let seen = s.seen();
    assert_eq!(seen.len(), 2, "4 instances in pages of 2: {seen:?}");
    for r in &seen {
        assert_eq!(r.method, "GET");
        assert_eq!(r.path, "/compute/v1/projects/ml-prod/aggregated/instances");
        assert_eq!(r.param("returnPartialSuccess").as_deref(), Some("true"));
        assert_eq!(r.param("maxResults").as_deref(), Some("2"));
        assert_eq!(r.authorization.as_deref(), Some("Bearer ya29.test-token"));
    }
    assert_eq!(seen[0].param("pageToken"), None);
    assert_eq!(seen[1].param("pageToken").as_deref(), Some("tok-2"));

    let by = |n: &str| got.iter().find(|i| i.name == n).unwrap();
    let t = by("trainer-1");
    assert_eq!(t.provider, Provider::Gcp);
    assert_eq!(t.id, "1001");
    assert_eq!(t.scope, "ml-prod");
    assert_eq!(
        t.resource,
        "projects/ml-prod/zones/us-central1-a/instances/trainer-1"
    );
    assert_eq!(
        (t.region.as_str(), t.zone.as_str()),
        ("us-central1", "us-central1-a")
    );
    assert_eq!(t.instance_type, "g2-standard-4");
    assert_eq!((t.gpu_model.as_deref(), t.gpu_count), (Some("L4"), 1));
    assert_eq!(t.labels.get("team").map(String::as_str), Some("ml"));
    assert_eq!(t.state, InstanceState::Running);
    assert_eq!(
        t.private_hostname,
        "trainer-1.us-central1-a.c.ml-prod.internal"
    );
    assert_eq!(
        t.launched_at.unwrap().to_rfc3339(),
        "2024-05-01T10:00:00+00:00"
    );
    assert_eq!(
        (t.cloud_protection.as_deref(), t.managed_by.as_deref()),
        (None, None)
    );

    let p = by("h100-keep");
    assert_eq!(p.cloud_protection.as_deref(), Some("deletionProtection"));
    assert_eq!((p.gpu_model.as_deref(), p.gpu_count), (Some("H100"), 8));
    let m = by("pool-x1");
    assert_eq!(
        m.managed_by.as_deref(),
        Some("projects/123/zones/europe-west4-b/instanceGroupManagers/pool")
    );
    assert!(
        m.labels.contains_key("goog-gke-node"),
        "GKE labels stay for the policy"
    );
    assert_eq!(by("parked").state, InstanceState::Stopped);
}

#[tokio::test]
async fn gcp_lists_configured_zones_one_by_one_across_projects() {
    let s = GcpStandIn::start(TOKEN, &fleet()).await;
    let settings = GcpSettings {
        zones: vec!["us-central1-a".into(), "us-east1-b".into()],
        ..gcp_settings(&s.base, &["ml-prod", "other"])
    };
    let got = GcpFleet::new(settings).unwrap().list().await.unwrap();
    let mut names: Vec<&str> = got.iter().map(|i| i.name.as_str()).collect();
    names.sort();
    assert_eq!(names, ["elsewhere", "h100-keep", "trainer-1"]);
    let paths: Vec<String> = s.seen().iter().map(|r| r.path.clone()).collect();
    assert_eq!(
        paths,
        [
            "/compute/v1/projects/ml-prod/zones/us-central1-a/instances",
            "/compute/v1/projects/ml-prod/zones/us-east1-b/instances",
            "/compute/v1/projects/other/zones/us-central1-a/instances",
            "/compute/v1/projects/other/zones/us-east1-b/instances",
        ]
    );
}

#[tokio::test]
async fn gcp_stop_polls_the_operation_to_done_and_the_instance_ends_terminated() {
    let s = GcpStandIn::start(TOKEN, &fleet()).await;
    let f = gcp(&s);
    let t = gce_target("ml-prod", "us-central1-a", "trainer-1");
    assert_eq!(s.status_of(&t.resource).as_deref(), Some("RUNNING"));
    assert_eq!(f.stop(&t).await.unwrap(), Done::Now);
    assert_eq!(s.status_of(&t.resource).as_deref(), Some("TERMINATED"));

    let seen = s.seen();
    let calls: Vec<(String, String)> = seen
        .iter()
        .map(|r| (r.method.clone(), r.path.clone()))
        .collect();
    let inst = "/compute/v1/projects/ml-prod/zones/us-central1-a/instances/trainer-1";
    let op = "/compute/v1/projects/ml-prod/zones/us-central1-a/operations/operation-1-stop";
    assert_eq!(
        calls,
        [
            ("GET".to_string(), inst.to_string()),
            ("POST".to_string(), format!("{inst}/stop")),
            ("GET".to_string(), op.to_string()),
            ("GET".to_string(), op.to_string()),
        ]
    );
    let rid = seen[1].param("requestId").unwrap();
    assert_eq!(rid.len(), 36, "a UUID: {rid}");

    // Already stopped: the instance is read, nothing is sent.
    let before = s.seen().len();
    assert_eq!(f.stop(&t).await.unwrap(), Done::Already);
    let after = s.seen();
    assert_eq!(after.len(), before + 1);
    assert_eq!(after.last().unwrap().method, "GET");
    // An instance the inventory saw TERMINATED is stopped already, too.
    let parked = gce_target("ml-prod", "europe-west4-b", "parked");
    assert_eq!(f.stop(&parked).await.unwrap(), Done::Already);
    assert!(
        s.seen()
            .iter()
            .all(|r| r.method != "POST" || r.path.ends_with("trainer-1/stop"))
    );
}

#[tokio::test]
async fn gcp_delete_polls_to_done_and_a_missing_instance_is_already_gone() {
    let s = GcpStandIn::start(TOKEN, &fleet()).await;
    let f = gcp(&s);
    let t = gce_target("ml-prod", "us-central1-a", "trainer-1");
    assert_eq!(f.terminate(&t).await.unwrap(), Done::Now);
    assert_eq!(s.status_of(&t.resource), None, "deleted from the stand-in");
    let deletes: Vec<_> = s
        .seen()
        .into_iter()
        .filter(|r| r.method == "DELETE")
        .collect();
    assert_eq!(deletes.len(), 1);
    assert!(deletes[0].param("requestId").is_some());
    assert!(
        s.seen()
            .iter()
            .any(|r| r.path.ends_with("/operations/operation-1-delete"))
    );

    // 404 on delete and on the stop's read: already gone.
    assert_eq!(f.terminate(&t).await.unwrap(), Done::Already);
    assert_eq!(f.stop(&t).await.unwrap(), Done::Already);
    let nowhere = gce_target("ml-prod", "us-central1-a", "never-was");
    assert_eq!(f.terminate(&nowhere).await.unwrap(), Done::Already);
}

#[tokio::test]
async fn gcp_a_stop_answered_500_twice_succeeds_on_the_third_call_with_the_same_request_id() {
    let s = GcpStandIn::start(TOKEN, &fleet()).await;
    s.state.lock().unwrap().faults.push(Fault {
        method: "POST",
        path_contains: "/stop".into(),
        status: 500,
        remaining: 2,
    });
    let t = gce_target("ml-prod", "us-central1-a", "trainer-1");
    assert_eq!(gcp(&s).stop(&t).await.unwrap(), Done::Now);
    assert_eq!(s.status_of(&t.resource).as_deref(), Some("TERMINATED"));
    let posts: Vec<_> = s
        .seen()
        .into_iter()
        .filter(|r| r.method == "POST")
        .collect();
    assert_eq!(posts.len(), 3);
    let ids: Vec<String> = posts
        .iter()
        .map(|r| r.param("requestId").unwrap())
        .collect();
    assert!(
        ids.iter().all(|i| *i == ids[0]),
        "one requestId for every retry: {ids:?}"
    );
}

#[tokio::test]
async fn gcp_a_stop_that_always_gets_500_fails_with_its_attempts_and_is_never_done() {
    let s = GcpStandIn::start(TOKEN, &fleet()).await;
    s.state.lock().unwrap().faults.push(Fault {
        method: "POST",
        path_contains: "/stop".into(),
        status: 500,
        remaining: 1000,
    });
    let t = gce_target("ml-prod", "us-central1-a", "trainer-1");
    let e = gcp(&s).stop(&t).await.unwrap_err();
    match &e {
        FleetError::Failed {
            provider,
            action,
            instance,
            attempts,
            detail,
        } => {
            assert_eq!((*provider, *action), ("gcp", "stop"));
            assert_eq!(instance, &t.resource);
            assert_eq!(*attempts, RETRIES + 1);
            assert!(detail.contains("HTTP 500"), "{detail}");
        }
        other => panic!("expected Failed, got {other:?}"),
    }
    let posts = s.seen().iter().filter(|r| r.method == "POST").count();
    assert_eq!(posts as u32, RETRIES + 1);
    assert_eq!(s.status_of(&t.resource).as_deref(), Some("RUNNING"));
}

#[tokio::test]
async fn gcp_an_operation_done_with_an_error_is_failed_unless_the_instance_is_gone() {
    let s = GcpStandIn::start(TOKEN, &fleet()).await;
    s.state.lock().unwrap().op_error = Some(json!({"errors": [{
        "code": "ZONE_RESOURCE_POOL_EXHAUSTED_WITH_DETAILS",
        "message": "The zone does not have enough resources"
    }]}));
    let f = gcp(&s);
    let t = gce_target("ml-prod", "us-central1-a", "trainer-1");
    let e = f.stop(&t).await.unwrap_err();
    assert!(
        matches!(&e, FleetError::Failed { detail, .. } if detail.contains("ZONE_RESOURCE_POOL_EXHAUSTED")),
        "{e:?}"
    );
    assert_eq!(s.status_of(&t.resource).as_deref(), Some("RUNNING"));

    s.state.lock().unwrap().op_error = Some(json!({"errors": [{
        "code": "RESOURCE_NOT_FOUND",
        "message": "The resource was not found"
    }]}));
    assert_eq!(f.terminate(&t).await.unwrap(), Done::Already);
}

#[tokio::test]
async fn gcp_an_operation_that_never_finishes_fails_at_the_timeout() {
    let s = GcpStandIn::start(TOKEN, &fleet()).await;
    s.state.lock().unwrap().polls_to_done = u32::MAX;
    let settings = GcpSettings {
        operation_timeout: Duration::from_millis(100),
        ..gcp_settings(&s.base, &["ml-prod"])
    };
    let t = gce_target("ml-prod", "us-central1-a", "trainer-1");
    let e = GcpFleet::new(settings).unwrap().stop(&t).await.unwrap_err();
    assert!(
        matches!(&e, FleetError::Failed { detail, .. } if detail.contains("operation-1-stop") && detail.contains("100ms")),
        "{e:?}"
    );
}

#[tokio::test]
async fn gcp_a_wrong_token_is_an_error_naming_authentication() {
    let s = GcpStandIn::start(TOKEN, &fleet()).await;
    let settings = GcpSettings {
        access_token: "ya29.stale".into(),
        ..gcp_settings(&s.base, &["ml-prod"])
    };
    let f = GcpFleet::new(settings).unwrap();
    let e = f.list().await.unwrap_err();
    assert!(
        matches!(&e, FleetError::List { detail, .. } if detail.contains("authentication") && detail.contains("401")),
        "{e}"
    );
    let t = gce_target("ml-prod", "us-central1-a", "trainer-1");
    let e = f.stop(&t).await.unwrap_err();
    assert!(
        matches!(&e, FleetError::Refused { detail, .. } if detail.contains("authentication")),
        "{e}"
    );
    assert!(!e.to_string().contains("ya29"), "no token in errors: {e}");
    assert_eq!(s.status_of(&t.resource).as_deref(), Some("RUNNING"));
}

#[tokio::test]
async fn gcp_without_a_configured_token_fetches_one_from_the_metadata_server_once() {
    let s = GcpStandIn::start("ya29.from-metadata", &fleet()).await;
    let md = TokenStandIn::start(
        "/computeMetadata/v1/instance/service-accounts/default/token",
        ("Metadata-Flavor", "Google"),
        "ya29.from-metadata",
        json!(3599),
    )
    .await;
    let settings = GcpSettings {
        access_token: String::new(),
        token_url: md.url.clone(),
        ..gcp_settings(&s.base, &["ml-prod"])
    };
    let f = GcpFleet::new(settings).unwrap();
    assert_eq!(f.list().await.unwrap().len(), 4);
    assert_eq!(f.list().await.unwrap().len(), 4);
    assert_eq!(md.count(), 1, "the token is cached until it expires");
    assert!(
        s.seen()
            .iter()
            .all(|r| r.authorization.as_deref() == Some("Bearer ya29.from-metadata"))
    );

    // The token is rotated: the cached one is answered 401, a new one is fetched once and
    // the call sent again.
    *md.token.lock().unwrap() = "ya29.rotated".into();
    s.state.lock().unwrap().token = "ya29.rotated".into();
    assert_eq!(f.list().await.unwrap().len(), 4);
    assert_eq!(md.count(), 2);
    let last = s.seen();
    let n = last.len();
    assert_eq!(
        last[n - 3].authorization.as_deref(),
        Some("Bearer ya29.from-metadata")
    );
    assert_eq!(
        last[n - 2].authorization.as_deref(),
        Some("Bearer ya29.rotated")
    );

    // No metadata server: the error names the token URL and authentication.
    let settings = GcpSettings {
        access_token: String::new(),
        token_url: format!("{}/nothing-here", s.base),
        ..gcp_settings(&s.base, &["ml-prod"])
    };
    let e = GcpFleet::new(settings).unwrap().list().await.unwrap_err();
    assert!(e.to_string().contains("access token"), "{e}");
}

// ---------------------------------------------------------------------------------------
// Azure

fn vms() -> Vec<AzureVm> {
    let running = AzureVm {
        tags: vec![("team", "ml")],
        ..AzureVm::running("gpu-a", "11111111-1111-4111-8111-111111111111")
    };
    let powered_off = AzureVm {
        power: "stopped",
        ..AzureVm::running("gpu-b", "22222222-2222-4222-8222-222222222222")
    };
    let deallocated = AzureVm {
        power: "deallocated",
        ..AzureVm::running("gpu-c", "33333333-3333-4333-8333-333333333333")
    };
    let scale_set = AzureVm {
        scale_set: Some("nodes"),
        ..AzureVm::running("gpu-d", "44444444-4444-4444-8444-444444444444")
    };
    vec![running, powered_off, deallocated, scale_set]
}

fn vm(name: &'static str) -> FleetInstance {
    target(Provider::Azure, &AzureVm::running(name, "").id())
}

#[tokio::test]
async fn azure_the_recording_is_read_as_served() {
    let r = azure_recording();
    let shape: Vec<(String, u16)> = r.iter().map(|i| (i.method.clone(), i.status)).collect();
    let expect = [
        ("POST", 202),
        ("GET", 200),
        ("GET", 200),
        ("DELETE", 202),
        ("GET", 200),
        ("GET", 200),
    ];
    assert_eq!(shape, expect.map(|(m, s)| (m.to_string(), s)));
    assert!(r[0].headers["azure-asyncoperation"].contains("/operations/6385197f"));
    assert!(r[0].headers["location"].contains("monitor=true"));
    let statuses: Vec<String> = r
        .iter()
        .filter(|i| i.method == "GET")
        .map(|i| {
            serde_json::from_str::<serde_json::Value>(&i.body).unwrap()["status"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    assert_eq!(
        statuses,
        ["InProgress", "Succeeded", "InProgress", "Succeeded"]
    );
}

#[tokio::test]
async fn azure_lists_every_page_with_power_states_and_scale_sets() {
    let s = AzureStandIn::start(TOKEN, API, &vms()).await;
    s.state.lock().unwrap().page_size = 3;
    let got = azure(&s).list().await.unwrap();
    assert_eq!(got.len(), 4);
    let seen = s.seen();
    assert_eq!(seen.len(), 2, "4 VMs in pages of 3, by nextLink");
    for r in &seen {
        assert_eq!(r.method, "GET");
        assert_eq!(
            r.path,
            "/subscriptions/00000000-0000-0000-0000-000000000000/providers/Microsoft.Compute/virtualMachines"
        );
        assert_eq!(r.param("api-version").as_deref(), Some(API));
        assert_eq!(r.param("statusOnly").as_deref(), Some("true"));
    }
    assert_eq!(seen[1].param("$skiptoken").as_deref(), Some("3"));

    let by = |n: &str| got.iter().find(|i| i.name == n).unwrap();
    let a = by("gpu-a");
    assert_eq!(a.provider, Provider::Azure);
    assert_eq!(a.id, "11111111-1111-4111-8111-111111111111");
    assert_eq!(a.scope, "00000000-0000-0000-0000-000000000000/gpu-rg");
    assert_eq!(a.resource, AzureVm::running("gpu-a", "").id());
    assert_eq!((a.region.as_str(), a.zone.as_str()), ("westus", "1"));
    assert_eq!(a.instance_type, "Standard_NC24ads_A100_v4");
    assert_eq!(a.private_hostname, "gpu-a-host");
    assert_eq!(a.labels.get("team").map(String::as_str), Some("ml"));
    assert_eq!(a.state, InstanceState::Running);
    assert_eq!(
        a.launched_at.unwrap().to_rfc3339(),
        "2024-05-01T10:00:00+00:00"
    );
    assert_eq!(by("gpu-b").state, InstanceState::PoweredOff);
    assert!(
        !by("gpu-b").state.not_billed(),
        "powered off is still billed"
    );
    assert_eq!(by("gpu-c").state, InstanceState::Stopped);
    assert!(
        by("gpu-d")
            .managed_by
            .as_deref()
            .unwrap()
            .ends_with("/virtualMachineScaleSets/nodes")
    );
    assert_eq!(by("gpu-a").managed_by, None);
}

#[tokio::test]
async fn azure_a_stop_deallocates_following_the_async_operation_and_honours_retry_after() {
    let s = AzureStandIn::start(TOKEN, API, &vms()).await;
    s.state.lock().unwrap().retry_after = Some(1);
    let t = vm("gpu-a");
    let started = Instant::now();
    assert_eq!(azure(&s).stop(&t).await.unwrap(), Done::Now);
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "Retry-After: 1 was waited"
    );
    assert_eq!(s.power_of(&t.resource).as_deref(), Some("deallocated"));

    let seen = s.seen();
    let calls: Vec<(&str, &str)> = seen
        .iter()
        .map(|r| (r.method.as_str(), r.path.as_str()))
        .collect();
    let op = "/subscriptions/00000000-0000-0000-0000-000000000000/providers/Microsoft.Compute/locations/westus/operations/00000000-0000-4000-8000-000000000001";
    let deallocate = format!("{}/deallocate", t.resource);
    assert_eq!(
        calls,
        [
            ("GET", t.resource.as_str()),
            ("POST", deallocate.as_str()),
            ("GET", op),
            ("GET", op),
        ]
    );
    assert_eq!(seen[0].param("$expand").as_deref(), Some("instanceView"));
    assert!(
        seen.iter()
            .all(|r| r.param("api-version").as_deref() == Some(API))
    );
    assert!(
        seen[2].param("monitor").is_none(),
        "Azure-AsyncOperation is preferred"
    );
    assert!(
        !seen.iter().any(|r| r.path.ends_with("/powerOff")),
        "never powerOff"
    );
}

#[tokio::test]
async fn azure_a_powered_off_vm_is_still_deallocated() {
    let s = AzureStandIn::start(TOKEN, API, &vms()).await;
    let t = vm("gpu-b");
    assert_eq!(azure(&s).stop(&t).await.unwrap(), Done::Now);
    assert_eq!(s.power_of(&t.resource).as_deref(), Some("deallocated"));
}

#[tokio::test]
async fn azure_location_only_answers_are_polled_until_200() {
    let s = AzureStandIn::start(TOKEN, API, &vms()).await;
    {
        let mut st = s.state.lock().unwrap();
        st.location_only = true;
        st.polls_to_done = 3;
    }
    let t = vm("gpu-a");
    assert_eq!(azure(&s).stop(&t).await.unwrap(), Done::Now);
    assert_eq!(s.power_of(&t.resource).as_deref(), Some("deallocated"));
    let polls: Vec<_> = s
        .seen()
        .into_iter()
        .filter(|r| r.path.contains("/operations/"))
        .collect();
    assert_eq!(polls.len(), 3);
    assert!(
        polls
            .iter()
            .all(|r| r.param("monitor").as_deref() == Some("true"))
    );
}

#[tokio::test]
async fn azure_delete_polls_to_succeeded_and_gone_or_deallocated_vms_are_already() {
    let s = AzureStandIn::start(TOKEN, API, &vms()).await;
    let f = azure(&s);
    let a = vm("gpu-a");
    assert_eq!(f.terminate(&a).await.unwrap(), Done::Now);
    assert_eq!(s.power_of(&a.resource), None, "deleted from the stand-in");
    // DELETE of a VM that does not exist answers 204: already gone.
    assert_eq!(f.terminate(&a).await.unwrap(), Done::Already);
    // The stop's read answers 404: already gone.
    assert_eq!(f.stop(&a).await.unwrap(), Done::Already);
    // Already deallocated: read, nothing sent.
    let c = vm("gpu-c");
    let before = s.seen().len();
    assert_eq!(f.stop(&c).await.unwrap(), Done::Already);
    assert_eq!(s.seen().len(), before + 1);
    let posts = s.seen().iter().filter(|r| r.method == "POST").count();
    assert_eq!(posts, 0);
}

#[tokio::test]
async fn azure_a_failed_operation_is_failed_and_the_vm_stays_running() {
    let s = AzureStandIn::start(TOKEN, API, &vms()).await;
    s.state.lock().unwrap().op_fails = Some(("AllocationFailed".into(), "no capacity".into()));
    let t = vm("gpu-a");
    let e = azure(&s).stop(&t).await.unwrap_err();
    assert!(
        matches!(&e, FleetError::Failed { action: "deallocate", detail, .. } if detail.contains("AllocationFailed")),
        "{e:?}"
    );
    assert_eq!(s.power_of(&t.resource).as_deref(), Some("running"));
}

#[tokio::test]
async fn azure_500s_are_retried_and_a_deallocate_that_always_fails_is_never_done() {
    let s = AzureStandIn::start(TOKEN, API, &vms()).await;
    s.state.lock().unwrap().faults.push(Fault {
        method: "POST",
        path_contains: "/deallocate".into(),
        status: 503,
        remaining: 2,
    });
    let f = azure(&s);
    let a = vm("gpu-a");
    assert_eq!(f.stop(&a).await.unwrap(), Done::Now);
    let posts = s.seen().iter().filter(|r| r.method == "POST").count();
    assert_eq!(posts, 3);

    s.state.lock().unwrap().faults.push(Fault {
        method: "POST",
        path_contains: "/deallocate".into(),
        status: 500,
        remaining: 1000,
    });
    let b = vm("gpu-b");
    let e = f.stop(&b).await.unwrap_err();
    assert!(
        matches!(&e, FleetError::Failed { attempts, .. } if *attempts == RETRIES + 1),
        "{e:?}"
    );
    assert_eq!(
        s.power_of(&b.resource).as_deref(),
        Some("stopped"),
        "still powered off, still billed"
    );
}

#[tokio::test]
async fn azure_a_wrong_token_or_api_version_is_refused_by_the_stand_in() {
    let s = AzureStandIn::start(TOKEN, API, &vms()).await;
    let settings = AzureSettings {
        access_token: "eyJ.stale".into(),
        ..azure_settings(&s.base)
    };
    let f = AzureFleet::new(settings).unwrap();
    let e = f.list().await.unwrap_err();
    assert!(
        matches!(&e, FleetError::List { detail, .. } if detail.contains("authentication") && detail.contains("InvalidAuthenticationToken")),
        "{e}"
    );
    let e = f.stop(&vm("gpu-a")).await.unwrap_err();
    assert!(
        matches!(&e, FleetError::Refused { detail, .. } if detail.contains("authentication")),
        "{e}"
    );

    let settings = AzureSettings {
        api_version: "2020-06-01".into(),
        ..azure_settings(&s.base)
    };
    let e = AzureFleet::new(settings).unwrap().list().await.unwrap_err();
    assert!(e.to_string().contains("InvalidApiVersionParameter"), "{e}");
    assert_eq!(
        s.power_of(&vm("gpu-a").resource).as_deref(),
        Some("running")
    );
}

#[tokio::test]
async fn azure_the_token_never_follows_an_operation_link_to_another_host() {
    let s = AzureStandIn::start(TOKEN, API, &vms()).await;
    s.state.lock().unwrap().foreign_operation_host = Some("http://127.0.0.2:9".into());
    let e = azure(&s).stop(&vm("gpu-a")).await.unwrap_err();
    assert!(
        matches!(&e, FleetError::Failed { detail, .. } if detail.contains("refusing to poll")),
        "{e:?}"
    );
}

#[tokio::test]
async fn azure_without_a_configured_token_uses_the_managed_identity_from_imds() {
    let s = AzureStandIn::start("eyJ.imds", API, &vms()).await;
    let imds = TokenStandIn::start(
        "/metadata/identity/oauth2/token",
        ("Metadata", "true"),
        "eyJ.imds",
        json!("3599"),
    )
    .await;
    let settings = AzureSettings {
        access_token: String::new(),
        token_url: imds.url.clone(),
        ..azure_settings(&s.base)
    };
    let f = AzureFleet::new(settings).unwrap();
    assert_eq!(f.list().await.unwrap().len(), 4);
    assert_eq!(f.stop(&vm("gpu-a")).await.unwrap(), Done::Now);
    assert_eq!(
        imds.count(),
        1,
        "IMDS's expires_in (a string) keeps the token cached"
    );
}
