//! Idle-GPU enforcement end to end, on SQLite and Postgres: GPU machines launched on a real
//! moto_server (p4d, g5), utilisation served by local dcgm-exporter-format endpoints built
//! from the recorded real output, the fleet engine (`tasks::fleet::FleetEngine`) driven
//! with explicit times, its audit rows and ledger read back from the store and through
//! FleetService, and notices delivered to a real SMTP server (aiosmtpd).
mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_sdk_ec2::types::{InstanceType, ResourceType, Tag, TagSpecification};
use bursar::config::IdleGpuConfig;
use bursar::config::fleet::DcgmTarget;
use bursar::domain::catalog::{Catalog, CatalogHandle};
use bursar::domain::{InstanceAttrs, Market, Offer, OfferKey, Provider};
use bursar::fleet::Fleet;
use bursar::fleet::aws::{AwsFleet, AwsFleetSettings};
use bursar::remote::HttpSettings;
use bursar::store::Store;
use bursar::store::fleet::ActionRow;
use bursar::tasks::fleet::FleetEngine;
use chrono::{DateTime, Utc};
use common::{Fixture, FixtureResponse, Moto, TestDb, both_backends, read_shared};
use rust_decimal::Decimal;

const REGION: &str = "us-east-1";

fn aws_settings(endpoint: &str) -> AwsFleetSettings {
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

async fn ec2(endpoint: &str) -> aws_sdk_ec2::Client {
    let cfg = bursar::remote::aws::sdk_config(&aws_settings(endpoint).http, REGION)
        .await
        .unwrap();
    aws_sdk_ec2::Client::new(&cfg)
}

/// Launches one machine; returns (id, private DNS name).
async fn launch(ec2: &aws_sdk_ec2::Client, itype: &str, tags: &[(&str, &str)]) -> (String, String) {
    let mut spec = TagSpecification::builder().resource_type(ResourceType::Instance);
    for (k, v) in tags {
        spec = spec.tags(Tag::builder().key(*k).value(*v).build());
    }
    let out = ec2
        .run_instances()
        .image_id("ami-12c6146b")
        .instance_type(InstanceType::from(itype))
        .min_count(1)
        .max_count(1)
        .tag_specifications(spec.build())
        .send()
        .await
        .unwrap();
    let i = &out.instances()[0];
    (
        i.instance_id().unwrap().to_string(),
        i.private_dns_name().unwrap_or("").to_string(),
    )
}

async fn state(ec2: &aws_sdk_ec2::Client, id: &str) -> String {
    let out = ec2
        .describe_instances()
        .instance_ids(id)
        .send()
        .await
        .unwrap();
    out.reservations()[0].instances()[0]
        .state()
        .unwrap()
        .name()
        .unwrap()
        .as_str()
        .to_string()
}

/// The catalog's facts for the two types: seed on-demand prices and hardware.
fn catalog() -> CatalogHandle {
    let offer = |itype: &str, price: &str, gpu: &str, n: f64| Offer {
        key: OfferKey {
            provider: Provider::Aws,
            region: REGION.into(),
            zone: String::new(),
            instance_type: itype.into(),
            market: Market::OnDemand,
        },
        price_per_hour: price.parse().unwrap(),
        currency: bursar::domain::Currency::USD,
        attrs: Some(InstanceAttrs {
            vcpus: 4.0,
            memory_gib: 16.0,
            gpu_model: Some(gpu.into()),
            gpu_count: n,
            gpu_memory_gib: 24.0,
            arch: "x86_64".into(),
        }),
        source: "test".into(),
        observed_at: Utc::now(),
    };
    CatalogHandle::new(Catalog::new(
        vec![
            offer("p4d.24xlarge", "21.957642", "A100", 8.0),
            offer("g5.xlarge", "1.006", "A10G", 1.0),
        ],
        Vec::new(),
    ))
}

/// A dcgm-exporter endpoint for one host: the recorded real output with its `Hostname`
/// label and utilisation values set by the test.
struct Dcgm {
    fixture: Fixture,
    util: Arc<Mutex<f64>>,
}

/// The recorded output, its one GPU repeated as `gpus` GPUs (index and UUID changed).
fn dcgm_text(host: &str, util_percent: f64, gpus: u32) -> String {
    let recorded = read_shared("gpu-metrics/dcgm-exporter-rtx4000ada.prom");
    let mut out = Vec::new();
    for l in recorded.lines() {
        if l.starts_with('#') {
            out.push(l.to_string());
            continue;
        }
        for g in 0..gpus {
            let l = l
                .replace("lke529760-766837-0a634ab30000", host)
                .replace("gpu=\"0\"", &format!("gpu=\"{g}\""))
                .replace("c1e1c934c44c", &format!("c1e1c934c4{g:02}"));
            let line = if l.starts_with("DCGM_FI_PROF_GR_ENGINE_ACTIVE{") {
                let (series, _) = l.rsplit_once(' ').unwrap();
                format!("{series} {}", util_percent / 100.0)
            } else if l.starts_with("DCGM_FI_DEV_GPU_UTIL{") {
                let (series, _) = l.rsplit_once(' ').unwrap();
                format!("{series} {util_percent}")
            } else {
                l
            };
            out.push(line);
        }
    }
    out.join("\n") + "\n"
}

impl Dcgm {
    async fn start(host: &str, util: f64, gpus: u32) -> Dcgm {
        let util = Arc::new(Mutex::new(util));
        let (u, host) = (util.clone(), host.to_string());
        let fixture = Fixture::start(move |_| {
            FixtureResponse::status(200, dcgm_text(&host, *u.lock().unwrap(), gpus))
        })
        .await;
        Dcgm { fixture, util }
    }

    fn set(&self, util: f64) {
        *self.util.lock().unwrap() = util;
    }

    fn target(&self, instance: &str) -> DcgmTarget {
        DcgmTarget {
            instance: instance.to_string(),
            ..DcgmTarget::new(format!("{}/metrics", self.fixture.base))
        }
    }
}

fn idle_config(mode: &str, targets: Vec<DcgmTarget>) -> IdleGpuConfig {
    IdleGpuConfig {
        enabled: true,
        mode: mode.into(),
        window: Duration::from_secs(120),
        lag: Duration::ZERO,
        min_samples: 3,
        grace: Duration::from_secs(300),
        min_age: Duration::from_secs(600),
        dcgm_targets: targets,
        ..IdleGpuConfig::default()
    }
}

async fn engine(db: &TestDb, moto: &str, cfg: IdleGpuConfig) -> (Store, FleetEngine) {
    let store = Store::open(&db.url).await.unwrap();
    let fleet: Arc<dyn Fleet> = Arc::new(AwsFleet::new(&aws_settings(moto)).await.unwrap());
    let policy = cfg.policy().unwrap();
    let e = FleetEngine::new(store.clone(), vec![fleet], policy, cfg, catalog());
    (store, e)
}

/// Reads utilisation every 15 s of [from, to] (the scrape is dated by the step).
async fn read_between(e: &FleetEngine, from: DateTime<Utc>, to: DateTime<Utc>) {
    let mut t = from;
    while t <= to {
        e.read_utilization(t).await;
        t += chrono::Duration::seconds(15);
    }
}

fn decisions(rows: &[ActionRow], id: &str) -> Vec<String> {
    let mut d: Vec<(DateTime<Utc>, i64, String)> = rows
        .iter()
        .filter(|r| r.instance_id == id)
        .map(|r| (r.at, r.id, r.decision.clone()))
        .collect();
    d.sort();
    d.into_iter().map(|x| x.2).collect()
}

/// The scenario in `stop` (and `terminate`) mode: idle → notified then stopped
/// after the grace period; busy, protected, no samples, and busy-during-grace untouched.
#[tokio::test]
async fn stop_mode_stops_only_the_idle_unprotected_machine_and_cancels_on_activity() {
    for mode in ["stop", "terminate"] {
        for db in both_backends().await {
            let moto = Moto::start().await;
            let c = ec2(&moto.url).await;
            let (idle, idle_host) = launch(&c, "p4d.24xlarge", &[("Name", "idle")]).await;
            let (busy, busy_host) = launch(&c, "g5.xlarge", &[("Name", "busy")]).await;
            let (prot, prot_host) = launch(
                &c,
                "g5.xlarge",
                &[("Name", "protected"), ("bursar.io/protect", "true")],
            )
            .await;
            let (silent, _) = launch(&c, "g5.xlarge", &[("Name", "silent")]).await;
            let (wakes, wakes_host) = launch(&c, "g5.xlarge", &[("Name", "wakes")]).await;
            let (cpu, _) = launch(&c, "t3.micro", &[("Name", "cpu")]).await;
            // Matched by Hostname (idle, busy, protected) and by a configured id (wakes).
            let d_idle = Dcgm::start(&idle_host, 0.4656, 8).await;
            let d_busy = Dcgm::start(&busy_host, 87.0, 1).await;
            let d_prot = Dcgm::start(&prot_host, 0.0, 1).await;
            let d_wakes = Dcgm::start(&wakes_host, 1.0, 1).await;
            let cfg = idle_config(
                mode,
                vec![
                    d_idle.target(""),
                    d_busy.target(""),
                    d_prot.target(""),
                    d_wakes.target(&wakes),
                ],
            );
            let (store, e) = engine(&db, &moto.url, cfg).await;
            // An hour after launch, so every machine is older than min_age (10m).
            let t0 = Utc::now() + chrono::Duration::hours(1);
            assert!(e.poll_inventory(t0).await.is_empty());
            let (machines, _) = e.machines();
            let ids: Vec<&str> = machines.iter().map(|m| m.0.instance.id.as_str()).collect();
            assert_eq!(ids.len(), 5, "the t3.micro is not a GPU machine: {ids:?}");
            assert!(!ids.contains(&cpu.as_str()));
            read_between(&e, t0 - chrono::Duration::seconds(120), t0).await;
            let pass = e.run_policy(t0).await.unwrap();
            assert_eq!(
                (pass.notified, pass.acted),
                (2, 0),
                "{} {mode}: {pass:?}",
                db.backend
            );
            // During the grace period `wakes` becomes busy.
            d_wakes.set(55.0);
            let t1 = t0 + chrono::Duration::seconds(300);
            read_between(&e, t0 + chrono::Duration::seconds(15), t1).await;
            let pass = e.run_policy(t1).await.unwrap();
            assert_eq!(pass.acted, 1, "{mode}: {pass:?}");
            let want = if mode == "stop" {
                "stopped"
            } else {
                "terminated"
            };
            assert_eq!(state(&c, &idle).await, want);
            for id in [&busy, &prot, &silent, &wakes, &cpu] {
                assert_eq!(state(&c, id).await, "running", "{id} was touched");
            }
            let rows = store.list_fleet_actions(None, None, 1000).await.unwrap();
            assert_eq!(decisions(&rows, &idle), ["notified", want]);
            assert_eq!(decisions(&rows, &wakes), ["notified", "cancelled"]);
            for id in [&busy, &prot, &silent] {
                assert!(
                    !decisions(&rows, id)
                        .iter()
                        .any(|d| d == "notified" || d == "stopped" || d == "terminated"),
                    "{id}: {rows:?}"
                );
            }
            let acted = rows.iter().find(|r| r.decision == want).unwrap();
            assert_eq!(acted.price_per_hour, Some("21.957642".parse().unwrap()));
            let evidence: serde_json::Value = serde_json::from_str(&acted.evidence).unwrap();
            let max = evidence["max_util_percent"].as_f64().unwrap();
            assert!((max - 0.4656).abs() < 1e-6, "{evidence}");
            assert_eq!(evidence["gpus"], 8, "{evidence}");
            // The next inventory sees it stopped: one minute on the ledger.
            let t2 = t1 + chrono::Duration::seconds(60);
            e.poll_inventory(t2).await;
            let savings = store.fleet_savings(None, None).await.unwrap();
            // 21.957642 $/h for exactly one minute.
            let expected: Decimal = "0.3659607".parse().unwrap();
            assert_eq!(
                savings.totals["USD"].normalize(),
                expected,
                "{}",
                db.backend
            );
            assert_eq!(savings.actions, 1);
            // Statuses carry the reasons.
            let (machines, _) = e.machines();
            let status = |id: &str| {
                machines
                    .iter()
                    .find(|m| m.0.instance.id == id)
                    .and_then(|m| m.1.clone())
                    .map(|s| s.state)
                    .unwrap_or_default()
            };
            assert_eq!(status(&busy), "busy");
            assert_eq!(status(&silent), "unknown");
            assert_eq!(status(&prot), "protected");
        }
    }
}

#[tokio::test]
async fn dry_run_touches_nothing_and_says_what_it_would_have_done() {
    for db in both_backends().await {
        let moto = Moto::start().await;
        let c = ec2(&moto.url).await;
        let (idle, host) = launch(&c, "p4d.24xlarge", &[("Name", "idle")]).await;
        let d = Dcgm::start(&host, 0.2, 8).await;
        let (store, e) = engine(&db, &moto.url, idle_config("dry_run", vec![d.target("")])).await;
        let t0 = Utc::now() + chrono::Duration::hours(1);
        e.poll_inventory(t0).await;
        read_between(&e, t0 - chrono::Duration::seconds(120), t0).await;
        e.run_policy(t0).await.unwrap();
        let t1 = t0 + chrono::Duration::seconds(300);
        read_between(&e, t0 + chrono::Duration::seconds(15), t1).await;
        e.run_policy(t1).await.unwrap();
        // A steady state writes nothing more.
        e.run_policy(t1 + chrono::Duration::seconds(60))
            .await
            .unwrap();
        assert_eq!(state(&c, &idle).await, "running");
        let rows = store.list_fleet_actions(None, None, 1000).await.unwrap();
        assert_eq!(
            decisions(&rows, &idle),
            ["would_notify", "would_stop"],
            "{}",
            db.backend
        );
        assert!(rows.iter().all(|r| r.mode == "dry_run"));
        assert!(store.list_outbox(None).await.unwrap().is_empty());
    }
}

#[tokio::test]
async fn young_machines_and_machines_without_samples_are_never_idle() {
    for db in both_backends().await {
        let moto = Moto::start().await;
        let c = ec2(&moto.url).await;
        let (young, host) = launch(&c, "g5.xlarge", &[("Name", "young")]).await;
        let d = Dcgm::start(&host, 0.0, 1).await;
        let mut cfg = idle_config("stop", vec![d.target("")]);
        cfg.min_age = Duration::from_secs(3 * 3600);
        let (store, e) = engine(&db, &moto.url, cfg).await;
        let t0 = Utc::now() + chrono::Duration::hours(1);
        e.poll_inventory(t0).await;
        read_between(&e, t0 - chrono::Duration::seconds(120), t0).await;
        let pass = e.run_policy(t0).await.unwrap();
        assert_eq!((pass.notified, pass.acted), (0, 0));
        let (machines, _) = e.machines();
        assert_eq!(
            machines[0].1.as_ref().unwrap().state,
            "young",
            "{}",
            db.backend
        );
        assert_eq!(state(&c, &young).await, "running");
        assert!(
            store
                .list_fleet_actions(None, Some("notified"), 10)
                .await
                .unwrap()
                .is_empty()
        );
    }
}

#[tokio::test]
async fn the_rate_limit_and_the_fleet_fraction_hold_actions_back() {
    for (per_hour, fraction) in [(1u32, "1"), (10, "0.25")] {
        for db in both_backends().await {
            let moto = Moto::start().await;
            let c = ec2(&moto.url).await;
            let mut targets = Vec::new();
            let mut ids = Vec::new();
            let mut dcgms = Vec::new();
            for n in 0..4 {
                let (id, host) = launch(&c, "g5.xlarge", &[("Name", &format!("g{n}"))]).await;
                let d = Dcgm::start(&host, 0.0, 1).await;
                targets.push(d.target(""));
                dcgms.push(d);
                ids.push(id);
            }
            let mut cfg = idle_config("stop", targets);
            cfg.max_actions_per_hour = per_hour;
            cfg.max_fleet_fraction = fraction.into();
            let (store, e) = engine(&db, &moto.url, cfg).await;
            let t0 = Utc::now() + chrono::Duration::hours(1);
            e.poll_inventory(t0).await;
            read_between(&e, t0 - chrono::Duration::seconds(120), t0).await;
            e.run_policy(t0).await.unwrap();
            let t1 = t0 + chrono::Duration::seconds(300);
            read_between(&e, t0 + chrono::Duration::seconds(15), t1).await;
            let pass = e.run_policy(t1).await.unwrap();
            // 1 per hour; or a quarter of a fleet of 4.
            assert_eq!(pass.acted, 1, "{per_hour} {fraction}: {pass:?}");
            let mut stopped = 0;
            for id in &ids {
                if state(&c, id).await == "stopped" {
                    stopped += 1;
                }
            }
            assert_eq!(stopped, 1);
            let held: Vec<_> = store
                .list_fleet_actions(None, Some("held"), 100)
                .await
                .unwrap()
                .into_iter()
                .filter(|r| ids.contains(&r.instance_id))
                .collect();
            assert_eq!(
                held.len(),
                3,
                "{} {per_hour} {fraction}: {held:?}",
                db.backend
            );
        }
    }
}

/// A stop that the cloud keeps failing (HTTP 500, through a proxy in front of moto) is
/// retried by the adapter, then audited `failed` with the cloud's answer — never `stopped`
/// — and tried again after another grace period, when it succeeds.
#[tokio::test]
async fn a_failing_stop_is_retried_reported_and_never_recorded_as_done() {
    for db in both_backends().await {
        let moto = Moto::start().await;
        let proxy = common::fault_proxy::FaultProxy::start(&moto.url).await;
        let c = ec2(&moto.url).await;
        let (id, host) = launch(&c, "g5.xlarge", &[("Name", "flaky")]).await;
        let d = Dcgm::start(&host, 0.0, 1).await;
        let cfg = idle_config("stop", vec![d.target("")]);
        let (store, e) = engine(&db, &proxy.url, cfg).await;
        let t0 = Utc::now() + chrono::Duration::hours(1);
        e.poll_inventory(t0).await;
        read_between(&e, t0 - chrono::Duration::seconds(120), t0).await;
        e.run_policy(t0).await.unwrap();
        proxy.fail("StopInstances", 500, "InternalError", 100);
        let t1 = t0 + chrono::Duration::seconds(300);
        read_between(&e, t0 + chrono::Duration::seconds(15), t1).await;
        let pass = e.run_policy(t1).await.unwrap();
        assert_eq!(
            (pass.acted, pass.failed),
            (0, 1),
            "{}: {pass:?}",
            db.backend
        );
        // 1 call + 2 retries (aws_settings' max_retries).
        assert_eq!(proxy.calls("StopInstances").len(), 3);
        assert_eq!(state(&c, &id).await, "running");
        let rows = store
            .list_fleet_actions(Some(&id), None, 100)
            .await
            .unwrap();
        assert_eq!(decisions(&rows, &id), ["notified", "failed"]);
        let failed = &rows[0];
        assert!(failed.error.contains("InternalError"), "{}", failed.error);
        assert!(store.fleet_savings(None, None).await.unwrap().actions == 0);
        // Before the next grace period ends nothing is tried; after it, the stop goes through.
        proxy.fail("StopInstances", 500, "InternalError", 0);
        let t2 = t1 + chrono::Duration::seconds(60);
        read_between(&e, t1 + chrono::Duration::seconds(15), t2).await;
        assert_eq!(e.run_policy(t2).await.unwrap().acted, 0);
        let t3 = t1 + chrono::Duration::seconds(300);
        read_between(&e, t2 + chrono::Duration::seconds(15), t3).await;
        assert_eq!(e.run_policy(t3).await.unwrap().acted, 1);
        assert_eq!(state(&c, &id).await, "stopped");
    }
}

/// `notify` mode: the notice goes through the alert outbox to the owner named by the
/// machine's `owner` tag (a real SMTP server receives it), says what and how to keep it,
/// and nothing is stopped.
#[tokio::test]
async fn notify_mode_emails_the_owner_and_never_acts() {
    use bursar::notify::email::EmailNotifier;
    use bursar::notify::{AlertsConfig, Notifier, SmtpConfig, SmtpTls};
    for db in both_backends().await {
        let smtp = common::SmtpServer::start().await;
        let moto = Moto::start().await;
        let c = ec2(&moto.url).await;
        let (id, host) = launch(
            &c,
            "p4d.24xlarge",
            &[("Name", "train-7"), ("owner", "alice@example.com")],
        )
        .await;
        let d = Dcgm::start(&host, 0.0, 8).await;
        let mut cfg = idle_config("notify", vec![d.target("")]);
        cfg.channels.emails = vec!["oncall@example.com".into()];
        let (store, e) = engine(&db, &moto.url, cfg).await;
        let t0 = Utc::now() + chrono::Duration::hours(1);
        e.poll_inventory(t0).await;
        read_between(&e, t0 - chrono::Duration::seconds(120), t0).await;
        let pass = e.run_policy(t0).await.unwrap();
        assert_eq!((pass.notified, pass.acted), (1, 0));
        // A second pass in the same idle episode sends nothing more.
        read_between(
            &e,
            t0 + chrono::Duration::seconds(15),
            t0 + chrono::Duration::seconds(60),
        )
        .await;
        assert_eq!(
            e.run_policy(t0 + chrono::Duration::seconds(60))
                .await
                .unwrap()
                .notified,
            0
        );
        let alerts = AlertsConfig {
            smtp: SmtpConfig {
                host: "127.0.0.1".into(),
                port: Some(smtp.port),
                tls: SmtpTls::None,
                from: "bursar <bursar@example.com>".into(),
                ..SmtpConfig::default()
            },
            ..AlertsConfig::default()
        };
        let notifiers: Vec<Arc<dyn Notifier>> =
            vec![Arc::new(EmailNotifier::new(&alerts.smtp).unwrap())];
        let report = bursar::tasks::alerts::deliver_due(&store, &notifiers, &alerts, t0)
            .await
            .unwrap();
        assert_eq!(report.delivered, 1, "{}: {report:?}", db.backend);
        let mut mails = smtp.messages();
        for _ in 0..100 {
            if !mails.is_empty() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
            mails = smtp.messages();
        }
        assert_eq!(mails.len(), 1);
        let m = &mails[0];
        assert_eq!(m.rcpt_tos, ["alice@example.com"]);
        assert!(m.subject.contains("train-7"), "{}", m.subject);
        let text = m.text.clone().unwrap_or_default();
        assert!(
            text.contains(&format!("bursar fleet keep {id} --for 4h")),
            "{text}"
        );
        assert!(text.contains("will not act on it"), "{text}");
        assert_eq!(state(&c, &id).await, "running");
    }
}

/// FleetService and `bursar fleet` over a running server with `[idle_gpu]` in dry_run:
/// instances with their verdicts, Keep (and its errors), the audit log, the ledger.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fleet_service_and_cli_over_a_running_server() {
    use bursar::proto;
    use bursar::proto::fleet_service_client::FleetServiceClient;
    for db in both_backends().await {
        let moto = Moto::start().await;
        let c = ec2(&moto.url).await;
        let (id, host) = launch(&c, "p4d.24xlarge", &[("Name", "kept-one")]).await;
        let d = Dcgm::start(&host, 0.0, 8).await;
        let mut config = common::test_config(&db);
        config.idle_gpu = idle_config("dry_run", vec![d.target("")]);
        config.idle_gpu.inventory_every = Duration::from_millis(200);
        config.idle_gpu.scrape_every = Duration::from_millis(200);
        config.idle_gpu.every = Duration::from_millis(200);
        config.fleet.aws = Some(bursar::config::fleet::AwsFleetConfig {
            regions: vec![REGION.into()],
            endpoint: moto.url.clone(),
            ..Default::default()
        });
        let server = common::TestServer::start(config).await;
        let mut fleet = FleetServiceClient::new(server.channel().await);
        // The inventory arrives within a few polls.
        let mut listed = Vec::new();
        for _ in 0..100 {
            listed = fleet
                .list_instances(proto::ListInstancesRequest::default())
                .await
                .unwrap()
                .into_inner()
                .instances;
            if !listed.is_empty() && !listed[0].idle_state.is_empty() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert_eq!(listed.len(), 1, "{}", db.backend);
        let i = &listed[0];
        assert_eq!(
            (i.id.as_str(), i.gpu_model.as_str(), i.gpu_count),
            (id.as_str(), "A100", 8)
        );
        assert_eq!(i.price_per_hour.as_ref().unwrap().amount, "21.957642");
        // Launched seconds ago: younger than min_age, whatever its GPUs say.
        assert_eq!(i.idle_state, "young", "{i:?}");
        // Keep: by name; unknown → NOT_FOUND; bad duration → INVALID_ARGUMENT naming `for`.
        let kept = fleet
            .keep(proto::KeepRequest {
                instance: "kept-one".into(),
                r#for: "4h".into(),
                reason: "demo on Friday".into(),
                requested_by: "alice".into(),
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(kept.instance_id, id);
        let e = fleet
            .keep(proto::KeepRequest {
                instance: "nope".into(),
                r#for: "4h".into(),
                ..Default::default()
            })
            .await
            .unwrap_err();
        assert_eq!(e.code(), tonic::Code::NotFound);
        let e = fleet
            .keep(proto::KeepRequest {
                instance: id.clone(),
                r#for: "forever".into(),
                ..Default::default()
            })
            .await
            .unwrap_err();
        assert_eq!(e.code(), tonic::Code::InvalidArgument);
        assert!(e.message().starts_with("for:"), "{}", e.message());
        let e = fleet
            .list_actions(proto::ListActionsRequest {
                decision: "exploded".into(),
                ..Default::default()
            })
            .await
            .unwrap_err();
        assert_eq!(e.code(), tonic::Code::InvalidArgument);
        // The CLI: the keep is in the audit log; JSON and table.
        let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_bursar"))
            .args(["fleet", "actions", "--json", "--server", &server.url])
            .output()
            .await
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        let first = &v["actions"][0];
        assert_eq!(first["decision"], "kept");
        assert_eq!(first["instance_id"], id.as_str());
        assert!(first["reason"].as_str().unwrap().contains("demo on Friday"));
        let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_bursar"))
            .args(["fleet", "instances", "--server", &server.url])
            .output()
            .await
            .unwrap();
        let table = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success() && table.contains("kept-one") && table.contains("8×A100"),
            "{table}"
        );
        let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_bursar"))
            .args([
                "fleet",
                "keep",
                "nope",
                "--for",
                "1h",
                "--server",
                &server.url,
            ])
            .output()
            .await
            .unwrap();
        assert_eq!(out.status.code(), Some(1), "NOT_FOUND fails the operation");
        let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_bursar"))
            .args(["fleet", "savings", "--json", "--server", &server.url])
            .output()
            .await
            .unwrap();
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(v["actions"], 0);
        server.stop().await.unwrap();
    }
}

/// A bad `[idle_gpu]` key exits 2 with one line naming it.
#[test]
fn a_bad_idle_gpu_config_exits_2_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bursar.toml");
    std::fs::write(&path, "[idle_gpu]\nenabled = true\nmode = \"nuke\"\n").unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_bursar"))
        .args([
            "serve",
            "--config",
            path.to_str().unwrap(),
            "--listen",
            "127.0.0.1:0",
        ])
        .env(
            "BURSAR_DATABASE_URL",
            format!("sqlite://{}", dir.path().join("b.db").display()),
        )
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("idle_gpu.mode"), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
}
