//! Utilisation readers against real parts: local dcgm-exporter stand-ins serve the recorded
//! exporter output (../shared/data/gpu-metrics) with the values each test sets, scraped
//! directly by `scrape_dcgm`, and scraped every second by a real Prometheus that
//! `query_prometheus` then queries. Readings are matched to an inventory by `resolve`.
mod common;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bursar::domain::Provider;
use bursar::domain::fleet::{FleetInstance, InstanceState, SampleSource};
use bursar::remote::SourceError;
use bursar::utilization::{
    DcgmTarget, InstanceHint, PrometheusConfig, RawSample, query_prometheus, resolve, scrape_dcgm,
};
use chrono::Utc;
use common::prometheus::{Prometheus, ScrapeJob};
use common::{Fixture, FixtureResponse, free_port, read_shared};

// ---------------------------------------------------------------------------------------
// A dcgm-exporter stand-in: the recorded output, one block per GPU, with values we set.

/// What one GPU reports.
#[derive(Clone)]
struct Gpu {
    /// `DCGM_FI_PROF_GR_ENGINE_ACTIVE` (a ratio); `None` = the exporter does not have it.
    gr_engine: Option<f64>,
    /// `DCGM_FI_DEV_GPU_UTIL` (%).
    gpu_util: f64,
    power: f64,
    fb_used: f64,
    /// The exporter's own pod on an idle GPU, the workload's on an allocated one.
    pod: String,
}

fn gpu(gr_engine: Option<f64>, gpu_util: f64, power: f64, fb_used: f64) -> Gpu {
    Gpu {
        gr_engine,
        gpu_util,
        power,
        fb_used,
        pod: "nvidia-dcgm-exporter-9v4gs".into(),
    }
}

struct Host {
    /// `Hostname` (released exporters) or `hostname` (its development branch).
    label: &'static str,
    name: String,
    gpus: Vec<Gpu>,
}

const RECORDED_HOST: &str = r#"Hostname="lke529760-766837-0a634ab30000""#;
const RECORDED_POD: &str = r#"pod="cuda-75454ffb9f-8ljq7""#;
const RECORDED_UUID: &str = "GPU-a8394b51-c086-568a-9f1a-c1e1c934c44c";

/// The recorded scrape rewritten for `host`: every metric family as recorded (HELP, TYPE),
/// with one line per GPU carrying that GPU's labels and, for the four metrics read, the
/// values set.
fn render(host: &Host) -> String {
    let recorded = read_shared("gpu-metrics/dcgm-exporter-rtx4000ada.prom");
    assert!(recorded.contains(RECORDED_HOST) && recorded.contains(RECORDED_POD));
    let mut out = String::new();
    for line in recorded.lines() {
        if line.starts_with('#') {
            out.push_str(line);
            out.push('\n');
            continue;
        }
        let metric = &line[..line.find('{').expect("a labelled sample")];
        let labels_end = line.rfind(' ').unwrap();
        for (i, g) in host.gpus.iter().enumerate() {
            let value = match metric {
                "DCGM_FI_PROF_GR_ENGINE_ACTIVE" => match g.gr_engine {
                    Some(v) => v.to_string(),
                    None => continue,
                },
                "DCGM_FI_DEV_GPU_UTIL" => g.gpu_util.to_string(),
                "DCGM_FI_DEV_POWER_USAGE" => g.power.to_string(),
                "DCGM_FI_DEV_FB_USED" => g.fb_used.to_string(),
                _ => line[labels_end + 1..].to_string(),
            };
            let labels = line[..labels_end]
                .replace(r#"gpu="0""#, &format!(r#"gpu="{i}""#))
                .replace(r#"device="nvidia0""#, &format!(r#"device="nvidia{i}""#))
                .replace(RECORDED_UUID, &format!("{}{i}", &RECORDED_UUID[..35]))
                .replace(RECORDED_HOST, &format!("{}={:?}", host.label, host.name))
                .replace(RECORDED_POD, &format!("pod={:?}", g.pod));
            out.push_str(&format!("{labels} {value}\n"));
        }
    }
    out
}

/// A local endpoint serving `host` as dcgm-exporter would, at `/metrics`.
struct Exporter {
    host: Arc<Mutex<Host>>,
    fixture: Fixture,
}

impl Exporter {
    async fn start(host: Host) -> Exporter {
        let host = Arc::new(Mutex::new(host));
        let h = host.clone();
        let fixture = Fixture::start(move |req| {
            if req.path != "/metrics" {
                return FixtureResponse::status(404, "not found");
            }
            FixtureResponse {
                content_type: "text/plain; version=0.0.4; charset=utf-8",
                ..FixtureResponse::json(render(&h.lock().unwrap()))
            }
        })
        .await;
        Exporter { host, fixture }
    }

    fn url(&self) -> String {
        format!("{}/metrics", self.fixture.base)
    }

    fn set(&self, i: usize, f: impl FnOnce(&mut Gpu)) {
        f(&mut self.host.lock().unwrap().gpus[i]);
    }
}

const HOST_A: &str = "ip-10-0-0-5.ec2.internal";
const HOST_B: &str = "gke-gpu-node-b";

/// Host A: two GPUs, `Hostname` label. GPU 0 idle as recorded (GR_ENGINE_ACTIVE 0.004656),
/// its GPU_UTIL set to 55 so a test can tell which metric was read; GPU 1 lightly used.
fn host_a() -> Host {
    Host {
        label: "Hostname",
        name: HOST_A.into(),
        gpus: vec![
            gpu(Some(0.004656), 55.0, 40.979, 1.0),
            gpu(Some(0.02), 1.0, 70.0, 74166.0),
        ],
    }
}

/// Host B: one GPU whose exporter has no GR_ENGINE_ACTIVE; the `hostname` spelling.
fn host_b() -> Host {
    Host {
        label: "hostname",
        name: HOST_B.into(),
        gpus: vec![gpu(None, 37.0, 67.25, 512.0)],
    }
}

fn instance(provider: Provider, id: &str, host: &str) -> FleetInstance {
    FleetInstance {
        provider,
        id: id.into(),
        name: id.into(),
        scope: "s".into(),
        resource: id.into(),
        region: "r".into(),
        zone: "z".into(),
        instance_type: "g5.12xlarge".into(),
        gpu_model: None,
        gpu_count: 2,
        labels: BTreeMap::new(),
        launched_at: None,
        state: InstanceState::Running,
        private_hostname: host.into(),
        cloud_protection: None,
        managed_by: None,
    }
}

fn inventory() -> Vec<FleetInstance> {
    vec![
        instance(Provider::Aws, "i-0aaa", HOST_A),
        instance(
            Provider::Gcp,
            "4711",
            "gke-gpu-node-b.us-central1-a.c.proj.internal",
        ),
        instance(Provider::Aws, "i-0bbb", "ip-10-0-0-9.ec2.internal"),
    ]
}

fn by_gpu<'a>(samples: &'a [RawSample], host: &str, gpu: &str) -> &'a RawSample {
    samples
        .iter()
        .find(|s| s.hint == InstanceHint::Hostname(host.into()) && s.gpu == gpu)
        .unwrap_or_else(|| panic!("no sample for {host} GPU {gpu} in {samples:#?}"))
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() < 1e-6
}

// ---------------------------------------------------------------------------------------
// dcgm-exporter, scraped directly

#[tokio::test]
async fn scraping_dcgm_reads_each_gpu_as_the_exporter_serves_it() {
    let a = Exporter::start(host_a()).await;
    let b = Exporter::start(host_b()).await;
    let client = reqwest::Client::new();
    let at = Utc::now();

    let ra = scrape_dcgm(&client, &DcgmTarget::new(a.url()), at)
        .await
        .unwrap();
    assert_eq!((ra.bad, ra.samples.len()), (0, 2), "{:?}", ra.problems);
    let g0 = by_gpu(&ra.samples, HOST_A, "0");
    // GR_ENGINE_ACTIVE 0.004656 → 0.4656 %, preferred to GPU_UTIL's 55.
    assert!(close(g0.utilization_percent, 0.4656), "{g0:?}");
    assert_eq!(
        (g0.power_watts, g0.memory_used_mib, g0.at),
        (Some(40.979), Some(1.0), at)
    );
    let g1 = by_gpu(&ra.samples, HOST_A, "1");
    assert!(close(g1.utilization_percent, 2.0), "{g1:?}");
    assert_eq!(g1.memory_used_mib, Some(74166.0));

    // No GR_ENGINE_ACTIVE: GPU_UTIL, and the host from the lower-case `hostname` label.
    let rb = scrape_dcgm(&client, &DcgmTarget::new(b.url()), at)
        .await
        .unwrap();
    assert_eq!(rb.bad, 0, "{:?}", rb.problems);
    assert_eq!(by_gpu(&rb.samples, HOST_B, "0").utilization_percent, 37.0);

    // A target naming its instance keys every sample by that id.
    let named = DcgmTarget {
        instance: "i-0bbb".into(),
        ..DcgmTarget::new(a.url())
    };
    let rn = scrape_dcgm(&client, &named, at).await.unwrap();
    assert!(
        rn.samples
            .iter()
            .all(|s| s.hint == InstanceHint::Id("i-0bbb".into()))
    );

    // What is read is what the exporter serves now.
    a.set(1, |g| g.gr_engine = Some(0.91));
    let ra2 = scrape_dcgm(&client, &DcgmTarget::new(a.url()), at)
        .await
        .unwrap();
    assert!(close(
        by_gpu(&ra2.samples, HOST_A, "1").utilization_percent,
        91.0
    ));

    // Matched to the inventory: A by its FQDN, B's short name to the GCE FQDN, the named
    // target by id; a host outside the inventory is unknown.
    let mut raw = ra.samples.clone();
    raw.extend(rb.samples.clone());
    raw.extend(rn.samples.clone());
    let mut stray = rb.samples[0].clone();
    stray.hint = InstanceHint::Hostname("ip-10-9-9-9".into());
    raw.push(stray);
    let r = resolve(raw, &inventory(), SampleSource::Dcgm);
    assert_eq!((r.unknown, r.bad), (1, 0), "{:?}", r.problems);
    let ids: Vec<(&str, &str)> = r
        .samples
        .iter()
        .map(|s| (s.instance_id.as_str(), s.gpu.as_str()))
        .collect();
    assert_eq!(
        ids,
        [
            ("i-0aaa", "0"),
            ("i-0aaa", "1"),
            ("4711", "0"),
            ("i-0bbb", "0"),
            ("i-0bbb", "1")
        ]
    );
    assert!(r.samples.iter().all(|s| s.source == SampleSource::Dcgm));
}

#[tokio::test]
async fn a_scrape_with_bad_lines_keeps_the_rest() {
    let f = Fixture::start(|_| {
        let mut text = read_shared("gpu-metrics/dcgm-exporter-rtx4000ada.prom");
        text.push_str("DCGM_FI_DEV_GPU_UTIL{gpu=\"1\",Hostname=\"h\"} NaN\n");
        text.push_str("DCGM_FI_DEV_GPU_UTIL{gpu=\"2\",Hostname=\"h\" 3\n");
        text.push_str("DCGM_FI_DEV_GPU_UTIL{gpu=\"3\",Hostname=\"h\"} 4\n");
        FixtureResponse {
            content_type: "text/plain",
            ..FixtureResponse::json(text)
        }
    })
    .await;
    let r = scrape_dcgm(
        &reqwest::Client::new(),
        &DcgmTarget::new(&f.base),
        Utc::now(),
    )
    .await
    .unwrap();
    assert_eq!(r.bad, 2, "{:?}", r.problems);
    assert!(r.problems[0].contains("NaN"), "{:?}", r.problems);
    assert!(
        r.problems[1].contains("expected , or }"),
        "{:?}",
        r.problems
    );
    let mut gpus: Vec<&str> = r.samples.iter().map(|s| s.gpu.as_str()).collect();
    gpus.sort();
    assert_eq!(gpus, ["0", "3"]);
}

#[tokio::test]
async fn failed_scrapes_are_errors_naming_the_url_without_its_credentials() {
    let client = reqwest::Client::new();
    let at = Utc::now();

    let broken = Fixture::start(|_| FixtureResponse::status(500, "exporter crashed")).await;
    let url = format!("http://scraper:s3cret@{}/metrics", broken.addr);
    let e = scrape_dcgm(&client, &DcgmTarget::new(&url), at)
        .await
        .unwrap_err();
    assert!(matches!(e, SourceError::Http { status: 500, .. }), "{e:?}");
    let shown = e.to_string();
    assert!(
        shown.contains(&format!("{}/metrics", broken.addr)),
        "{shown}"
    );
    assert!(
        shown.contains("exporter crashed") && !shown.contains("s3cret"),
        "{shown}"
    );

    let slow = Fixture::start(|_| FixtureResponse::json("").delayed(Duration::from_secs(5))).await;
    let target = DcgmTarget {
        timeout: Duration::from_millis(300),
        ..DcgmTarget::new(format!("{}/metrics", slow.base))
    };
    let started = std::time::Instant::now();
    let e = scrape_dcgm(&client, &target, at).await.unwrap_err();
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "the timeout was not applied"
    );
    assert!(matches!(e, SourceError::Transport { .. }), "{e:?}");
    assert!(e.to_string().contains("timed out after 300ms"), "{e}");
    assert!(e.to_string().contains(&slow.base), "{e}");

    let closed = format!("http://127.0.0.1:{}/metrics", free_port());
    let e = scrape_dcgm(&client, &DcgmTarget::new(&closed), at)
        .await
        .unwrap_err();
    assert!(matches!(e, SourceError::Transport { .. }), "{e:?}");
    assert!(e.to_string().contains(&closed), "{e}");
}

// ---------------------------------------------------------------------------------------
// A real Prometheus scraping the stand-ins

fn hostport(base: &str) -> String {
    base.trim_start_matches("http://").to_string()
}

/// The instant value of a one-series result, or NaN.
fn only_value(r: &[serde_json::Value]) -> f64 {
    match r {
        [one] => one["value"][1].as_str().unwrap().parse().unwrap(),
        _ => f64::NAN,
    }
}

#[tokio::test]
async fn prometheus_gives_each_gpu_s_max_over_the_range() {
    let a = Exporter::start(host_a()).await;
    let b = Exporter::start(host_b()).await;
    let prom = Prometheus::start(&[
        ScrapeJob {
            name: "dcgm-a".into(),
            targets: vec![hostport(&a.fixture.base)],
            labels: vec![],
        },
        // As in a Kubernetes scrape, the target's own `pod` label turns the exporter's into
        // `exported_pod`.
        ScrapeJob {
            name: "dcgm-b".into(),
            targets: vec![hostport(&b.fixture.base)],
            labels: vec![("pod".into(), "nvidia-dcgm-exporter-b".into())],
        },
    ])
    .await;
    prom.wait_targets_up(2).await;
    prom.wait_for("three GPUs", "DCGM_FI_DEV_GPU_UTIL", |r| r.len() == 3)
        .await;
    let b_series = prom
        .query("DCGM_FI_DEV_GPU_UTIL{hostname=\"gke-gpu-node-b\"}")
        .await;
    assert_eq!(
        b_series[0]["metric"]["exported_pod"],
        "nvidia-dcgm-exporter-9v4gs"
    );
    let t0 = Utc::now();

    // A's GPU 1 gets busy under a workload (its pod label changes, so a new series), then
    // idles again before the next read: the read must still see the spike.
    a.set(1, |g| {
        g.gr_engine = Some(0.85);
        g.power = 250.5;
        g.pod = "trainer-7f9c".into();
    });
    let busy = r#"DCGM_FI_PROF_GR_ENGINE_ACTIVE{Hostname="ip-10-0-0-5.ec2.internal",gpu="1"}"#;
    prom.wait_for("GPU 1 busy", busy, |r| only_value(r) == 0.85)
        .await;
    a.set(1, |g| {
        g.gr_engine = Some(0.02);
        g.power = 70.0;
        g.pod = "nvidia-dcgm-exporter-9v4gs".into();
    });
    prom.wait_for("GPU 1 idle again", busy, |r| only_value(r) == 0.02)
        .await;

    let client = reqwest::Client::new();
    let cfg = PrometheusConfig {
        url: format!("{}/", prom.url),
        ..PrometheusConfig::default()
    };
    let at = Utc::now();
    let range = (at - t0).to_std().unwrap() + Duration::from_secs(2);
    let r = query_prometheus(&client, &cfg, range, at).await.unwrap();
    assert_eq!(r.bad, 0, "{:?}", r.problems);
    assert_eq!(r.samples.len(), 3, "one sample per GPU: {:#?}", r.samples);
    let a0 = by_gpu(&r.samples, HOST_A, "0");
    assert!(
        close(a0.utilization_percent, 0.4656),
        "GR_ENGINE_ACTIVE, not 55: {a0:?}"
    );
    assert_eq!(
        (a0.power_watts, a0.memory_used_mib),
        (Some(40.979), Some(1.0))
    );
    let a1 = by_gpu(&r.samples, HOST_A, "1");
    assert!(close(a1.utilization_percent, 85.0), "the spike: {a1:?}");
    assert_eq!(a1.power_watts, Some(250.5));
    let b0 = by_gpu(&r.samples, HOST_B, "0");
    assert_eq!(
        b0.utilization_percent, 37.0,
        "GPU_UTIL where GR_ENGINE_ACTIVE is absent"
    );
    assert_eq!((b0.power_watts, b0.at), (Some(67.25), at));

    let resolved = resolve(r.samples, &inventory(), SampleSource::Prometheus);
    assert_eq!((resolved.unknown, resolved.bad), (0, 0));
    let ids: Vec<&str> = resolved
        .samples
        .iter()
        .map(|s| s.instance_id.as_str())
        .collect();
    assert_eq!(ids, ["4711", "i-0aaa", "i-0aaa"]);
    assert!(
        resolved
            .samples
            .iter()
            .all(|s| s.source == SampleSource::Prometheus)
    );

    // A range that ends after the spike does not see it.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let r = query_prometheus(&client, &cfg, Duration::from_secs(2), Utc::now())
        .await
        .unwrap();
    let a1 = by_gpu(&r.samples, HOST_A, "1");
    assert!(close(a1.utilization_percent, 2.0), "{a1:?}");

    // A user's own query, with `$range` substituted: here GPU_UTIL only.
    let own = PrometheusConfig {
        query: "max by (Hostname, hostname, gpu) (max_over_time(DCGM_FI_DEV_GPU_UTIL[$range]))"
            .into(),
        ..cfg.clone()
    };
    let r = query_prometheus(&client, &own, Duration::from_secs(5), Utc::now())
        .await
        .unwrap();
    assert_eq!((r.bad, r.samples.len()), (0, 3), "{:?}", r.problems);
    assert_eq!(by_gpu(&r.samples, HOST_A, "0").utilization_percent, 55.0);
    assert_eq!(by_gpu(&r.samples, HOST_A, "0").power_watts, Some(40.979));

    // A query whose series name no machine (a pod is not one): each counted, none kept.
    let hostless = PrometheusConfig {
        query: "max by (gpu, exported_pod) (DCGM_FI_DEV_GPU_UTIL)".into(),
        ..cfg.clone()
    };
    let r = query_prometheus(&client, &hostless, Duration::from_secs(5), Utc::now())
        .await
        .unwrap();
    assert!(r.samples.is_empty());
    assert_eq!(r.bad, 3, "{:?}", r.problems);
    assert!(r.problems[0].contains("no Hostname, hostname or instance_id label"));

    // A query Prometheus refuses: an error naming the URL and Prometheus's reason.
    let broken = PrometheusConfig {
        query: "max_over_time(".into(),
        ..cfg.clone()
    };
    let e = query_prometheus(&client, &broken, Duration::from_secs(5), Utc::now())
        .await
        .unwrap_err();
    assert!(matches!(e, SourceError::Http { status: 400, .. }), "{e:?}");
    let shown = e.to_string();
    assert!(
        shown.contains(&format!("{}/api/v1/query", prom.url)),
        "{shown}"
    );
    assert!(shown.contains("bad_data"), "{shown}");
}

#[tokio::test]
async fn an_unreachable_or_slow_prometheus_is_an_error_naming_it() {
    let client = reqwest::Client::new();
    let down = PrometheusConfig {
        url: format!("http://127.0.0.1:{}", free_port()),
        ..PrometheusConfig::default()
    };
    let e = query_prometheus(&client, &down, Duration::from_secs(15), Utc::now())
        .await
        .unwrap_err();
    assert!(matches!(e, SourceError::Transport { .. }), "{e:?}");
    assert!(e.to_string().contains(&down.url), "{e}");

    let slow =
        Fixture::start(|_| FixtureResponse::json("{}").delayed(Duration::from_secs(5))).await;
    let cfg = PrometheusConfig {
        url: slow.base.clone(),
        timeout: Duration::from_millis(300),
        ..PrometheusConfig::default()
    };
    let e = query_prometheus(&client, &cfg, Duration::from_secs(15), Utc::now())
        .await
        .unwrap_err();
    assert!(e.to_string().contains("timed out after 300ms"), "{e}");

    // The request is an instant query at the read's time, with the built-in PromQL.
    let seen = slow.requests.lock().unwrap()[0].clone();
    assert_eq!(
        (seen.method.as_str(), seen.path.as_str()),
        ("POST", "/api/v1/query")
    );
    assert!(seen.param("query").unwrap().contains("[15s]"));
    assert!(seen.param("time").is_some());

    let unset = PrometheusConfig::default();
    let e = query_prometheus(&client, &unset, Duration::from_secs(15), Utc::now())
        .await
        .unwrap_err();
    assert!(e.to_string().contains("idle_gpu.prometheus.url"), "{e}");
}
