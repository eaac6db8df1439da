//! The AWS fleet adapter (`fleet::aws::AwsFleet`) against a real moto_server started per
//! test: machines are launched with RunInstances (p4d, g5, t3), then listed, stopped and
//! terminated through the adapter and checked with DescribeInstances. Faults moto cannot
//! produce (HTTP 500, throttling) come from `FaultProxy`, a loopback proxy in front of moto
//! that answers chosen EC2 actions with an error and forwards everything else.
mod common;

use std::collections::HashMap;
use std::time::Duration;

use aws_sdk_ec2::types::{
    AttributeBooleanValue, InstanceType, Placement, ResourceType, Tag, TagSpecification,
};
use bursar::config::Config;
use bursar::domain::Provider;
use bursar::domain::fleet::{FleetInstance, InstanceState};
use bursar::fleet::aws::{AwsFleet, AwsFleetSettings, UNVERIFIED};
use bursar::fleet::{Done, Fleet, FleetError};
use bursar::remote::HttpSettings;
use chrono::Utc;
use common::Moto;
use common::fault_proxy::FaultProxy;

const REGION: &str = "us-east-1";

fn settings(endpoint: &str) -> AwsFleetSettings {
    AwsFleetSettings {
        regions: vec![REGION.into()],
        http: HttpSettings {
            endpoint: Some(endpoint.to_string()),
            timeout: Duration::from_secs(30),
            max_retries: 2,
            base_backoff: Duration::from_millis(1),
            max_backoff: Duration::from_millis(20),
        },
        ..AwsFleetSettings::default()
    }
}

async fn fleet(endpoint: &str) -> AwsFleet {
    AwsFleet::new(&settings(endpoint)).await.unwrap()
}

/// A plain EC2 client on moto, for launching and checking machines.
async fn ec2(moto: &Moto) -> aws_sdk_ec2::Client {
    let cfg = bursar::remote::aws::sdk_config(&settings(&moto.url).http, REGION)
        .await
        .unwrap();
    aws_sdk_ec2::Client::new(&cfg)
}

/// Launches one machine (its own reservation) in `zone` with `tags`; returns its id.
async fn launch(
    ec2: &aws_sdk_ec2::Client,
    itype: &str,
    zone: &str,
    tags: &[(&str, &str)],
) -> String {
    let mut spec = TagSpecification::builder().resource_type(ResourceType::Instance);
    for (k, v) in tags {
        spec = spec.tags(Tag::builder().key(*k).value(*v).build());
    }
    let mut req = ec2
        .run_instances()
        .image_id("ami-12c6146b")
        .instance_type(InstanceType::from(itype))
        .min_count(1)
        .max_count(1)
        .placement(Placement::builder().availability_zone(zone).build());
    if !tags.is_empty() {
        req = req.tag_specifications(spec.build());
    }
    let out = req.send().await.unwrap();
    out.instances()[0].instance_id().unwrap().to_string()
}

async fn set_protection(ec2: &aws_sdk_ec2::Client, id: &str, stop: bool, terminate: bool) {
    let on = |b| AttributeBooleanValue::builder().value(b).build();
    ec2.modify_instance_attribute()
        .instance_id(id)
        .disable_api_stop(on(stop))
        .send()
        .await
        .unwrap();
    ec2.modify_instance_attribute()
        .instance_id(id)
        .disable_api_termination(on(terminate))
        .send()
        .await
        .unwrap();
}

/// What moto says of the machine: (state, private DNS name, launch time).
async fn describe(ec2: &aws_sdk_ec2::Client, id: &str) -> (String, String, i64) {
    let out = ec2
        .describe_instances()
        .instance_ids(id)
        .send()
        .await
        .unwrap();
    let i = &out.reservations()[0].instances()[0];
    (
        i.state().unwrap().name().unwrap().as_str().to_string(),
        i.private_dns_name().unwrap_or("").to_string(),
        i.launch_time().unwrap().secs(),
    )
}

async fn state(ec2: &aws_sdk_ec2::Client, id: &str) -> String {
    describe(ec2, id).await.0
}

/// The `FleetInstance` the policy would hand back for `id` (as `list` builds it).
fn target(id: &str) -> FleetInstance {
    FleetInstance {
        provider: Provider::Aws,
        id: id.into(),
        name: id.into(),
        scope: REGION.into(),
        resource: id.into(),
        region: REGION.into(),
        zone: format!("{REGION}a"),
        instance_type: "g5.xlarge".into(),
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

// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn list_reads_every_gpu_machine_across_pages_with_its_fields() {
    let moto = Moto::start().await;
    let ec2 = ec2(&moto).await;
    let before = Utc::now().timestamp() - 5;
    let trainer = launch(
        &ec2,
        "p4d.24xlarge",
        "us-east-1b",
        &[("Name", "trainer"), ("team", "ml")],
    )
    .await;
    let protected_tag = launch(
        &ec2,
        "g5.xlarge",
        "us-east-1a",
        &[("bursar.io/protect", "true")],
    )
    .await;
    let asg = launch(
        &ec2,
        "g5.xlarge",
        "us-east-1c",
        &[("aws:autoscaling:groupName", "asg-1")],
    )
    .await;
    let no_stop = launch(&ec2, "g5.xlarge", "us-east-1a", &[("Name", "pinned")]).await;
    set_protection(&ec2, &no_stop, true, false).await;
    let no_terminate = launch(&ec2, "g5.2xlarge", "us-east-1a", &[]).await;
    set_protection(&ec2, &no_terminate, false, true).await;
    let small = launch(&ec2, "t3.micro", "us-east-1a", &[("Name", "bastion")]).await;
    let stopped = launch(&ec2, "g5.xlarge", "us-east-1a", &[]).await;
    ec2.stop_instances()
        .instance_ids(&stopped)
        .send()
        .await
        .unwrap();
    let gone = launch(&ec2, "g5.xlarge", "us-east-1a", &[]).await;
    ec2.terminate_instances()
        .instance_ids(&gone)
        .send()
        .await
        .unwrap();
    let mut filler = Vec::new();
    for _ in 0..5 {
        filler.push(launch(&ec2, "g5.xlarge", "us-east-1d", &[]).await);
    }
    let after = Utc::now().timestamp() + 5;

    // The [fleet.aws] keys as a user writes them, through a proxy that counts pages.
    let proxy = FaultProxy::start(&moto.url).await;
    let cfg = Config::from_toml(&format!(
        "[fleet.aws]\nregions = [\"{REGION}\"]\nendpoint = \"{}\"\npage_size = 5\n\
         max_retries = 1\nbase_backoff = \"1ms\"\nmax_backoff = \"5ms\"\n",
        proxy.url
    ))
    .unwrap();
    cfg.validate().unwrap();
    let fleet = AwsFleet::new(&cfg.fleet.aws.unwrap().settings().unwrap())
        .await
        .unwrap();
    assert_eq!(fleet.provider(), Provider::Aws);
    let listed = fleet.list().await.unwrap();

    // 12 listed reservations (the terminated one is filtered out by state) in pages of 5.
    let pages = proxy.calls("DescribeInstances");
    assert_eq!(pages.len(), 3, "{pages:?}");
    assert!(
        pages
            .iter()
            .all(|p| p.get("MaxResults").map(String::as_str) == Some("5"))
    );
    assert!(pages[1].contains_key("NextToken") && pages[2].contains_key("NextToken"));

    let by_id: HashMap<&str, &FleetInstance> = listed.iter().map(|i| (i.id.as_str(), i)).collect();
    let mut expected: Vec<&str> = vec![
        &trainer,
        &protected_tag,
        &asg,
        &no_stop,
        &no_terminate,
        &stopped,
    ];
    expected.extend(filler.iter().map(String::as_str));
    assert_eq!(listed.len(), expected.len(), "{listed:#?}");
    for id in &expected {
        assert!(by_id.contains_key(id), "{id} missing");
    }
    assert!(
        !by_id.contains_key(small.as_str()),
        "t3.micro is not a GPU family"
    );
    assert!(
        !by_id.contains_key(gone.as_str()),
        "terminated machines are not listed"
    );

    let t = by_id[trainer.as_str()];
    let (st, dns, launched) = describe(&ec2, &trainer).await;
    assert_eq!(st, "running");
    assert_eq!(t.provider, Provider::Aws);
    assert_eq!(t.name, "trainer");
    assert_eq!(
        (t.scope.as_str(), t.resource.as_str()),
        (REGION, trainer.as_str())
    );
    assert_eq!((t.region.as_str(), t.zone.as_str()), (REGION, "us-east-1b"));
    assert_eq!(t.instance_type, "p4d.24xlarge");
    assert_eq!(t.labels.get("team").map(String::as_str), Some("ml"));
    assert_eq!(t.labels.get("Name").map(String::as_str), Some("trainer"));
    assert_eq!(t.state, InstanceState::Running);
    assert!(!dns.is_empty());
    assert_eq!(t.private_hostname, dns);
    let at = t.launched_at.unwrap().timestamp();
    assert_eq!(at, launched);
    assert!(
        (before..=after).contains(&at),
        "{at} not in {before}..{after}"
    );
    assert_eq!(t.cloud_protection, None);
    assert_eq!(
        (t.gpu_model.clone(), t.gpu_count, t.managed_by.clone()),
        (None, 0, None)
    );

    let p = by_id[protected_tag.as_str()];
    assert_eq!(p.name, protected_tag, "no Name tag: named by its id");
    assert_eq!(
        p.labels.get("bursar.io/protect").map(String::as_str),
        Some("true")
    );
    assert_eq!(
        by_id[asg.as_str()]
            .labels
            .get("aws:autoscaling:groupName")
            .map(String::as_str),
        Some("asg-1")
    );
    assert_eq!(by_id[asg.as_str()].zone, "us-east-1c");
    assert_eq!(
        by_id[no_stop.as_str()].cloud_protection.as_deref(),
        Some("disableApiStop")
    );
    assert_eq!(
        by_id[no_terminate.as_str()].cloud_protection.as_deref(),
        Some("disableApiTermination")
    );
    assert_eq!(by_id[no_terminate.as_str()].instance_type, "g5.2xlarge");
    let s = by_id[stopped.as_str()];
    assert_eq!(s.state, InstanceState::Stopped);
    // Protection is read for running machines only.
    let attr_calls = proxy.calls("DescribeInstanceAttribute");
    assert!(
        attr_calls
            .iter()
            .all(|c| c.get("InstanceId") != Some(&stopped))
    );
    assert_eq!(
        attr_calls.len(),
        2 * (expected.len() - 1),
        "two attributes per running machine"
    );

    // families = [] lists every machine.
    let mut all = settings(&moto.url);
    all.families.clear();
    let every = AwsFleet::new(&all).await.unwrap().list().await.unwrap();
    assert_eq!(every.len(), expected.len() + 1);
    let bastion = every.iter().find(|i| i.id == small).unwrap();
    assert_eq!(
        (bastion.name.as_str(), bastion.instance_type.as_str()),
        ("bastion", "t3.micro")
    );
}

#[tokio::test]
async fn stop_and_terminate_are_idempotent_on_moto() {
    let moto = Moto::start().await;
    let ec2 = ec2(&moto).await;
    let fleet = fleet(&moto.url).await;
    let a = launch(&ec2, "g5.xlarge", "us-east-1a", &[]).await;
    let b = launch(&ec2, "p4d.24xlarge", "us-east-1a", &[]).await;

    assert_eq!(fleet.stop(&target(&a)).await.unwrap(), Done::Now);
    assert_eq!(state(&ec2, &a).await, "stopped");
    assert_eq!(fleet.stop(&target(&a)).await.unwrap(), Done::Already);
    assert_eq!(state(&ec2, &a).await, "stopped");
    // A stopped machine can still be terminated.
    assert_eq!(fleet.terminate(&target(&a)).await.unwrap(), Done::Now);
    assert_eq!(state(&ec2, &a).await, "terminated");
    assert_eq!(fleet.terminate(&target(&a)).await.unwrap(), Done::Already);
    // Stopping a terminated machine is done (it is gone) and does not revive it.
    assert_eq!(fleet.stop(&target(&a)).await.unwrap(), Done::Already);
    assert_eq!(state(&ec2, &a).await, "terminated");

    assert_eq!(fleet.terminate(&target(&b)).await.unwrap(), Done::Now);
    assert_eq!(state(&ec2, &b).await, "terminated");

    let unknown = target("i-0123456789abcdef0");
    assert_eq!(fleet.stop(&unknown).await.unwrap(), Done::Already);
    assert_eq!(fleet.terminate(&unknown).await.unwrap(), Done::Already);

    // A machine in a region the fleet is not configured for is refused without a call.
    let mut elsewhere = target(&b);
    elsewhere.region = "eu-west-1".into();
    let e = fleet.stop(&elsewhere).await.unwrap_err();
    assert!(matches!(e, FleetError::Refused { .. }), "{e:?}");
    assert!(e.to_string().contains("eu-west-1"), "{e}");
}

/// The recorded EC2 answer to a stop of a machine with `disableApiStop`.
fn recorded_stop_protection_code() -> String {
    let doc: serde_json::Value = serde_json::from_str(&common::read_shared(
        "fleet-api-samples/aws-ec2-StopInstances-disableApiStop-error.placebo.json",
    ))
    .unwrap();
    assert_eq!(doc["status_code"], 400);
    doc["data"]["Error"]["Code"].as_str().unwrap().to_string()
}

#[tokio::test]
async fn protected_machines_are_refused_and_keep_running() {
    let code = recorded_stop_protection_code();
    assert_eq!(code, "OperationNotPermitted");
    let moto = Moto::start().await;
    let ec2 = ec2(&moto).await;
    let proxy = FaultProxy::start(&moto.url).await;
    let fleet = fleet(&proxy.url).await;
    let id = launch(&ec2, "p4d.24xlarge", "us-east-1a", &[("Name", "pinned")]).await;
    set_protection(&ec2, &id, true, true).await;

    let e = fleet.stop(&target(&id)).await.unwrap_err();
    match &e {
        FleetError::Refused {
            provider,
            action,
            instance,
            detail,
        } => {
            assert_eq!(
                (*provider, *action, instance.as_str()),
                ("aws", "stop", id.as_str())
            );
            assert!(detail.contains(&code), "{detail}");
            assert!(detail.contains("disableApiStop"), "what AWS said: {detail}");
            assert!(!detail.contains("bursar-test-secret") && !detail.contains("AKIDBURSARTEST"));
        }
        other => panic!("expected Refused, got {other:?}"),
    }
    assert!(e.to_string().contains(&id), "{e}");
    // Refused is not retried.
    assert_eq!(proxy.calls("StopInstances").len(), 1);
    assert_eq!(state(&ec2, &id).await, "running");

    let e = fleet.terminate(&target(&id)).await.unwrap_err();
    assert!(
        matches!(&e, FleetError::Refused { action: "terminate", detail, .. } if detail.contains(&code)),
        "{e:?}"
    );
    assert_eq!(proxy.calls("TerminateInstances").len(), 1);
    assert_eq!(state(&ec2, &id).await, "running");

    // UnauthorizedOperation (an IAM policy without ec2:StopInstances) is refused too.
    let other = launch(&ec2, "g5.xlarge", "us-east-1a", &[]).await;
    proxy.fail("StopInstances", 403, "UnauthorizedOperation", 10);
    let e = fleet.stop(&target(&other)).await.unwrap_err();
    assert!(
        matches!(&e, FleetError::Refused { detail, .. } if detail.contains("UnauthorizedOperation")),
        "{e:?}"
    );
    assert_eq!(
        proxy.calls("StopInstances").len(),
        2,
        "one more call, not retried"
    );
    assert_eq!(state(&ec2, &other).await, "running");
}

#[tokio::test]
async fn failures_are_retried_a_bounded_number_of_times_and_never_reported_done() {
    let moto = Moto::start().await;
    let ec2 = ec2(&moto).await;
    let proxy = FaultProxy::start(&moto.url).await;
    let fleet = fleet(&proxy.url).await; // max_retries = 2: three attempts
    let a = launch(&ec2, "g5.xlarge", "us-east-1a", &[]).await;
    let b = launch(&ec2, "g5.xlarge", "us-east-1a", &[]).await;

    // A stop that always gets HTTP 500.
    proxy.fail("StopInstances", 500, "InternalError", u32::MAX);
    let e = fleet.stop(&target(&a)).await.unwrap_err();
    match &e {
        FleetError::Failed {
            action,
            instance,
            attempts,
            detail,
            ..
        } => {
            assert_eq!(
                (*action, instance.as_str(), *attempts),
                ("stop", a.as_str(), 3)
            );
            assert!(
                detail.contains("500") && detail.contains("InternalError"),
                "{detail}"
            );
        }
        other => panic!("expected Failed, got {other:?}"),
    }
    assert_eq!(proxy.calls("StopInstances").len(), 3);
    assert_eq!(state(&ec2, &a).await, "running");

    // Two 500s, then moto answers: done after the retries.
    proxy.fail("StopInstances", 500, "InternalError", 2);
    assert_eq!(fleet.stop(&target(&a)).await.unwrap(), Done::Now);
    assert_eq!(proxy.calls("StopInstances").len(), 3 + 3);
    assert_eq!(state(&ec2, &a).await, "stopped");

    // Throttling (EC2 answers 503 RequestLimitExceeded) is retried, then Failed.
    proxy.fail("TerminateInstances", 503, "RequestLimitExceeded", u32::MAX);
    let e = fleet.terminate(&target(&b)).await.unwrap_err();
    assert!(matches!(e, FleetError::Failed { attempts: 3, .. }), "{e:?}");
    assert_eq!(proxy.calls("TerminateInstances").len(), 3);
    assert_eq!(state(&ec2, &b).await, "running");

    // The look before acting failing is a failure too, and nothing is stopped.
    proxy.fail("DescribeInstances", 500, "InternalError", u32::MAX);
    let e = fleet.stop(&target(&b)).await.unwrap_err();
    assert!(matches!(e, FleetError::Failed { attempts: 3, .. }), "{e:?}");
    let e = fleet.list().await.unwrap_err();
    assert!(
        matches!(&e, FleetError::List { detail, .. } if detail.contains("us-east-1") && detail.contains("3 attempts")),
        "{e:?}"
    );
    proxy.fail("DescribeInstances", 500, "InternalError", 0);
    assert_eq!(state(&ec2, &b).await, "running");

    // Nothing listens: transport errors are retried and fail.
    let dead = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}", l.local_addr().unwrap())
    };
    let e = AwsFleet::new(&settings(&dead))
        .await
        .unwrap()
        .stop(&target(&b))
        .await
        .unwrap_err();
    assert!(matches!(e, FleetError::Failed { .. }), "{e:?}");
}

#[tokio::test]
async fn protection_that_cannot_be_read_counts_as_protected() {
    let moto = Moto::start().await;
    let ec2 = ec2(&moto).await;
    let proxy = FaultProxy::start(&moto.url).await;
    let fleet = fleet(&proxy.url).await;
    let id = launch(&ec2, "g5.xlarge", "us-east-1a", &[]).await;
    proxy.fail("DescribeInstanceAttribute", 500, "InternalError", u32::MAX);
    let listed = fleet.list().await.unwrap();
    assert_eq!(listed.len(), 1);
    let p = listed[0].cloud_protection.as_deref().unwrap_or("");
    assert!(
        p.starts_with(UNVERIFIED) && p.contains("disableApiStop"),
        "{p}"
    );
    assert_eq!(listed[0].id, id);
}

#[tokio::test]
async fn bad_settings_are_refused_naming_the_key() {
    let mut s = settings("http://127.0.0.1:9");
    s.page_size = 2;
    let e = AwsFleet::new(&s).await.err().unwrap();
    assert!(
        matches!(&e, FleetError::Config(m) if m.contains("fleet.aws.page_size")),
        "{e:?}"
    );
    let e = AwsFleet::new(&AwsFleetSettings::default())
        .await
        .err()
        .unwrap();
    assert!(e.to_string().contains("fleet.aws.regions"), "{e}");
}
