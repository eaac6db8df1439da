//! GPU utilisation in by push: the sample store (`Store::insert_gpu_samples` and its reads),
//! `FleetService/ReportGpuUtilization` on a real server, and `bursar agent` against that
//! server with a stand-in for NVML and local stand-ins for the three clouds' metadata
//! services. Every storage test runs on SQLite and Postgres. Nothing leaves loopback.
mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::http::{HeaderMap, Method, StatusCode, Uri};
use chrono::{DateTime, Utc};
use clap::Parser;
use tokio::sync::oneshot;

use bursar::cli::agent::{self, AgentArgs, GpuReader, GpuReading};
use bursar::cli::{Cli, Command};
use bursar::domain::fleet::{GpuSample, SampleSource};
use bursar::proto;
use bursar::proto::fleet_service_client::FleetServiceClient;
use bursar::server::utilization::response_in_status;
use bursar::store::Store;
use common::TestServer;

// ---------------------------------------------------------------------------------------
// Helpers

fn ms(t: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(t).unwrap()
}

fn sample(instance: &str, gpu: &str, at_ms: i64, u: f64) -> GpuSample {
    GpuSample {
        instance_id: instance.into(),
        gpu: gpu.into(),
        at: ms(at_ms),
        utilization_percent: u,
        memory_used_mib: Some(74_000.5),
        power_watts: Some(110.25),
        source: SampleSource::Dcgm,
    }
}

fn pushed(instance: &str, gpu: &str, u: f64) -> proto::GpuUtilizationSample {
    proto::GpuUtilizationSample {
        instance_id: instance.into(),
        gpu: gpu.into(),
        at: Some(bursar::server::convert::timestamp(Utc::now())),
        utilization_percent: u,
        memory_used_mib: Some(512.0),
        power_watts: Some(67.0),
    }
}

async fn all_samples(url: &str) -> Vec<GpuSample> {
    let store = Store::open(url).await.unwrap();
    let all = store.gpu_samples_since(ms(0)).await.unwrap();
    store.close().await;
    all
}

async fn fleet(server: &TestServer) -> FleetServiceClient<tonic::transport::Channel> {
    FleetServiceClient::new(server.channel().await)
}

/// The NVML stand-in: the same readings every time (or a failure).
struct FakeGpus(Vec<GpuReading>);

impl GpuReader for FakeGpus {
    fn read(&mut self) -> Result<Vec<GpuReading>, String> {
        Ok(self.0.clone())
    }
}

fn gpus(utilisations: &[f64]) -> Box<dyn GpuReader> {
    Box::new(FakeGpus(
        utilisations
            .iter()
            .enumerate()
            .map(|(i, &u)| GpuReading {
                gpu: i.to_string(),
                utilization_percent: u,
                memory_used_mib: Some(1000.0 * i as f64),
                power_watts: Some(60.0 + i as f64),
            })
            .collect(),
    ))
}

/// `bursar agent …` parsed as the binary parses it.
fn agent_args(flags: &[&str]) -> AgentArgs {
    let mut argv = vec!["bursar", "agent"];
    argv.extend_from_slice(flags);
    match Cli::try_parse_from(argv).expect("flags parse").command {
        Command::Agent(a) => a,
        other => panic!("not the agent: {other:?}"),
    }
}

/// A local stand-in for one cloud's instance metadata service: it answers only requests
/// with that cloud's method, path, query and headers (else 404, or 401 for a wrong token
/// or header, as the real ones do) and records what it was asked.
struct Metadata {
    base: String,
    seen: Arc<Mutex<Vec<String>>>,
    _stop: oneshot::Sender<()>,
}

const AWS_ID: &str = "i-0abc1234def567890";
const GCP_ID: &str = "4567890123456789012";
const AZURE_ID: &str = "5c08b38e-4d57-4c23-ac45-aca61037f084";
const AWS_TOKEN: &str = "AQAEAFake-token==";

fn metadata_answer(
    cloud: &str,
    method: &Method,
    uri: &Uri,
    h: &HeaderMap,
) -> (StatusCode, HeaderMap, String) {
    let header = |k: &str| {
        h.get(k)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string()
    };
    let mut out = HeaderMap::new();
    let path = uri.path();
    let query = uri.query().unwrap_or("");
    let answer = match (cloud, method.as_str(), path) {
        ("aws", "PUT", "/latest/api/token") => {
            if header("x-aws-ec2-metadata-token-ttl-seconds")
                .parse::<u32>()
                .is_ok()
            {
                (StatusCode::OK, AWS_TOKEN.to_string())
            } else {
                (StatusCode::BAD_REQUEST, "missing TTL".into())
            }
        }
        ("aws", "GET", "/latest/meta-data/instance-id") => {
            if header("x-aws-ec2-metadata-token") == AWS_TOKEN {
                (StatusCode::OK, AWS_ID.to_string())
            } else {
                (StatusCode::UNAUTHORIZED, String::new())
            }
        }
        ("gcp", "GET", "/computeMetadata/v1/instance/id") => {
            out.insert("metadata-flavor", "Google".parse().unwrap());
            if header("metadata-flavor") == "Google" {
                (StatusCode::OK, GCP_ID.to_string())
            } else {
                (
                    StatusCode::FORBIDDEN,
                    "Missing Metadata-Flavor:Google header.".into(),
                )
            }
        }
        ("azure", "GET", "/metadata/instance/compute/vmId") => {
            let api = query.split('&').any(|p| p == "api-version=2021-02-01");
            let text = query.split('&').any(|p| p == "format=text");
            if header("metadata") != "true" {
                (
                    StatusCode::BAD_REQUEST,
                    "Required metadata header not specified".into(),
                )
            } else if !api || !text {
                (StatusCode::BAD_REQUEST, "Bad api-version or format".into())
            } else {
                // IMDS answers text without a newline; a trailing one must not matter.
                (StatusCode::OK, format!("{AZURE_ID}\n"))
            }
        }
        // GCE's metadata server marks every answer, its 404s too.
        ("gcp", _, _) => {
            out.insert("metadata-flavor", "Google".parse().unwrap());
            (StatusCode::NOT_FOUND, "not found".into())
        }
        // Azure IMDS refuses any request without its header with a 400 (AWS's token
        // request among them), so a 400 is not yet a failure of the cloud being asked.
        ("azure", _, _) if header("metadata") != "true" => (
            StatusCode::BAD_REQUEST,
            "Required metadata header not specified".into(),
        ),
        _ => (StatusCode::NOT_FOUND, "not found".into()),
    };
    (answer.0, out, answer.1)
}

impl Metadata {
    async fn start(cloud: &'static str) -> Metadata {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = seen.clone();
        let app =
            axum::Router::new().fallback(move |method: Method, uri: Uri, headers: HeaderMap| {
                let log = log.clone();
                async move {
                    log.lock().unwrap().push(format!("{method} {}", uri.path()));
                    metadata_answer(cloud, &method, &uri, &headers)
                }
            });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, rx) = oneshot::channel::<()>();
        tokio::spawn(async move {
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(async move {
                    let _ = rx.await;
                })
                .await;
        });
        Metadata {
            base: format!("http://{addr}"),
            seen,
            _stop: tx,
        }
    }

    fn seen(&self) -> Vec<String> {
        self.seen.lock().unwrap().clone()
    }
}

// ---------------------------------------------------------------------------------------
// The sample store

#[tokio::test]
async fn samples_read_back_as_written_oldest_first_from_a_time_on() {
    for db in common::both_backends().await {
        let store = Store::open(&db.url).await.unwrap();
        assert_eq!(store.insert_gpu_samples(&[]).await.unwrap(), 0);
        assert_eq!(store.latest_gpu_sample_at().await.unwrap(), None);
        let mut bare = sample("i-2", "GPU-8a1f", 3_000, 0.4656);
        bare.memory_used_mib = None;
        bare.power_watts = None;
        bare.source = SampleSource::Push;
        let mut prom = sample("i-1", "1", 2_000, 100.0);
        prom.source = SampleSource::Prometheus;
        let written = vec![
            sample("i-1", "0", 5_000, 12.5),
            bare.clone(),
            prom.clone(),
            sample("i-1", "0", 1_000, 0.0),
        ];
        assert_eq!(store.insert_gpu_samples(&written).await.unwrap(), 4);

        let all = store.gpu_samples_since(ms(0)).await.unwrap();
        assert_eq!(
            all,
            vec![
                sample("i-1", "0", 1_000, 0.0),
                prom,
                bare.clone(),
                sample("i-1", "0", 5_000, 12.5),
            ],
            "{}",
            db.backend
        );
        // `since` is inclusive.
        let later = store.gpu_samples_since(ms(3_000)).await.unwrap();
        assert_eq!(
            later,
            vec![bare, sample("i-1", "0", 5_000, 12.5)],
            "{}",
            db.backend
        );
        assert_eq!(store.latest_gpu_sample_at().await.unwrap(), Some(ms(5_000)));
        store.close().await;
    }
}

#[tokio::test]
async fn pruning_deletes_only_samples_older_than_the_cut() {
    for db in common::both_backends().await {
        let store = Store::open(&db.url).await.unwrap();
        let written: Vec<GpuSample> = (0..10)
            .map(|i| sample("i-1", "0", i * 1_000, 5.0))
            .collect();
        store.insert_gpu_samples(&written).await.unwrap();
        assert_eq!(
            store.prune_gpu_samples(ms(4_000)).await.unwrap(),
            4,
            "{}",
            db.backend
        );
        assert_eq!(store.prune_gpu_samples(ms(4_000)).await.unwrap(), 0);
        let left = store.gpu_samples_since(ms(0)).await.unwrap();
        assert_eq!(left, written[4..].to_vec(), "{}", db.backend);
        assert_eq!(store.latest_gpu_sample_at().await.unwrap(), Some(ms(9_000)));
        assert_eq!(
            store
                .prune_gpu_samples(DateTime::<Utc>::MAX_UTC)
                .await
                .unwrap(),
            6
        );
        assert_eq!(store.latest_gpu_sample_at().await.unwrap(), None);
        store.close().await;
    }
}

/// A batch larger than one SQLite statement and one COPY buffer goes in whole: every
/// sample, each with its own values.
#[tokio::test]
async fn a_large_batch_is_stored_whole() {
    for db in common::both_backends().await {
        let store = Store::open(&db.url).await.unwrap();
        let written: Vec<GpuSample> = (0..25_003)
            .map(|i| {
                let mut s = sample(
                    &format!("i-{}", i % 97),
                    &(i % 8).to_string(),
                    i,
                    (i % 1001) as f64 / 10.0,
                );
                s.power_watts = (i % 3 != 0).then_some(i as f64 / 4.0);
                s
            })
            .collect();
        assert_eq!(store.insert_gpu_samples(&written).await.unwrap(), 25_003);
        let mut back = store.gpu_samples_since(ms(0)).await.unwrap();
        back.sort_by_key(|s| s.at);
        assert_eq!(back, written, "{}", db.backend);
        store.close().await;
    }
}

// ---------------------------------------------------------------------------------------
// ReportGpuUtilization

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_sample_is_invalid_argument_naming_index_and_field_and_the_others_are_stored() {
    for db in common::both_backends().await {
        let server = TestServer::start(common::test_config(&db)).await;
        let mut client = fleet(&server).await;
        let mut late = pushed("i-1", "3", 5.0);
        late.at = Some(bursar::server::convert::timestamp(
            Utc::now() + chrono::Duration::minutes(10),
        ));
        let mut no_time = pushed("i-1", "4", 6.0);
        no_time.at = None;
        let batch = vec![
            pushed("i-1", "0", 1.0),
            pushed("i-1", "1", 2.0),
            pushed("i-1", "2", f64::NAN),
            late,
            no_time,
        ];
        let before = Utc::now();
        let status = client
            .report_gpu_utilization(proto::ReportGpuUtilizationRequest { samples: batch })
            .await
            .unwrap_err();
        assert_eq!(
            status.code(),
            tonic::Code::InvalidArgument,
            "{}",
            db.backend
        );
        assert!(
            status
                .message()
                .starts_with("samples[2].utilization_percent: ")
                && status
                    .message()
                    .contains("3 of 5 samples stored, 2 rejected"),
            "{}",
            status.message()
        );
        let resp = response_in_status(&status).expect("the response in the details");
        assert_eq!(resp.accepted, 3);
        let rejected: Vec<(u32, &str)> = resp
            .rejected
            .iter()
            .map(|r| (r.index, r.field.as_str()))
            .collect();
        assert_eq!(rejected, [(2, "utilization_percent"), (3, "at")]);

        let stored = all_samples(&db.url).await;
        let gpus: Vec<&str> = stored.iter().map(|s| s.gpu.as_str()).collect();
        assert_eq!(gpus, ["0", "1", "4"], "{}", db.backend);
        assert!(stored.iter().all(|s| s.source == SampleSource::Push));
        // A sample without `at` is dated when the server received it.
        let received = stored[2].at;
        assert!(received >= before - chrono::Duration::milliseconds(1) && received <= Utc::now());

        // A batch that is all good answers OK.
        let ok = client
            .report_gpu_utilization(proto::ReportGpuUtilizationRequest {
                samples: vec![pushed("i-2", "0", 50.0)],
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(ok.accepted, 1);
        assert!(ok.rejected.is_empty());
        server.stop().await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn more_than_ten_thousand_samples_in_one_call_are_refused_whole() {
    for db in common::both_backends().await {
        let server = TestServer::start(common::test_config(&db)).await;
        let mut client = fleet(&server).await;
        let status = client
            .report_gpu_utilization(proto::ReportGpuUtilizationRequest {
                samples: (0..10_001)
                    .map(|i| pushed("i-1", &(i % 8).to_string(), 1.0))
                    .collect(),
            })
            .await
            .unwrap_err();
        assert_eq!(status.code(), tonic::Code::InvalidArgument);
        assert!(
            status.message().starts_with(
                "samples: 10001 GPU utilisation samples per call given: at most 10000"
            ),
            "{}",
            status.message()
        );
        assert!(all_samples(&db.url).await.is_empty(), "{}", db.backend);
        // Exactly the limit is fine.
        let ok = client
            .report_gpu_utilization(proto::ReportGpuUtilizationRequest {
                samples: (0..10_000)
                    .map(|i| pushed("i-1", &(i % 8).to_string(), 1.0))
                    .collect(),
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(ok.accepted, 10_000);
        assert_eq!(all_samples(&db.url).await.len(), 10_000, "{}", db.backend);
        server.stop().await.unwrap();
    }
}

/// Many pushes at once go through the group-commit writer: each is answered with exactly
/// its own samples, and all of them are stored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_pushes_are_stored_together_and_each_gets_its_own_answer() {
    for db in common::both_backends().await {
        let store = Store::open(&db.url).await.unwrap();
        let writer = bursar::server::utilization::SampleWriter::spawn(store.clone());
        let mut calls = Vec::new();
        for m in 0..300 {
            let writer = writer.clone();
            calls.push(tokio::spawn(async move {
                let id = format!("i-{m:04}");
                let batch: Vec<GpuSample> = (0..8)
                    .map(|g| sample(&id, &g.to_string(), 1_000 + m, g as f64))
                    .collect();
                let back = writer.write(batch.clone()).await.unwrap();
                assert_eq!(back, batch);
            }));
        }
        for c in calls {
            c.await.unwrap();
        }
        assert_eq!(writer.write(Vec::new()).await.unwrap(), vec![]);
        let stored = store.gpu_samples_since(ms(0)).await.unwrap();
        assert_eq!(stored.len(), 2_400, "{}", db.backend);
        for m in [0, 150, 299] {
            let id = format!("i-{m:04}");
            assert_eq!(stored.iter().filter(|s| s.instance_id == id).count(), 8);
        }
        store.close().await;
    }
}

// ---------------------------------------------------------------------------------------
// bursar agent

/// `--once` on each cloud: the id comes from that cloud's metadata service (asked the way
/// the real one wants), and the readings of every GPU are in the store under it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn once_pushes_every_gpu_under_the_id_each_cloud_s_metadata_gives() {
    for db in common::both_backends().await {
        let server = TestServer::start(common::test_config(&db)).await;
        for (cloud, id) in [("aws", AWS_ID), ("gcp", GCP_ID), ("azure", AZURE_ID)] {
            let md = Metadata::start(cloud).await;
            let a = agent_args(&[
                "--server",
                &server.url,
                "--cloud",
                cloud,
                "--metadata-url",
                &md.base,
                "--once",
            ]);
            let before = Utc::now();
            let summary = agent::run_with(&a, gpus(&[0.0, 97.0, 4.5]), std::future::pending())
                .await
                .unwrap_or_else(|e| panic!("{cloud} on {}: {e}", db.backend));
            assert_eq!(summary.instance_id, id);
            assert_eq!(summary.cloud.map(|c| c.as_str()), Some(cloud));
            assert_eq!(
                (summary.read, summary.accepted, summary.rejected),
                (3, 3, 0)
            );
            let mut mine: Vec<GpuSample> = all_samples(&db.url)
                .await
                .into_iter()
                .filter(|s| s.instance_id == id)
                .collect();
            mine.sort_by(|a, b| a.gpu.cmp(&b.gpu));
            let seen: Vec<(&str, f64, Option<f64>, Option<f64>)> = mine
                .iter()
                .map(|s| {
                    (
                        s.gpu.as_str(),
                        s.utilization_percent,
                        s.memory_used_mib,
                        s.power_watts,
                    )
                })
                .collect();
            assert_eq!(
                seen,
                [
                    ("0", 0.0, Some(0.0), Some(60.0)),
                    ("1", 97.0, Some(1000.0), Some(61.0)),
                    ("2", 4.5, Some(2000.0), Some(62.0)),
                ],
                "{cloud} on {}",
                db.backend
            );
            assert!(
                mine.iter()
                    .all(|s| s.at >= before - chrono::Duration::milliseconds(1))
            );
            let asked = md.seen();
            match cloud {
                "aws" => assert_eq!(
                    asked,
                    ["PUT /latest/api/token", "GET /latest/meta-data/instance-id"]
                ),
                "gcp" => assert_eq!(asked, ["GET /computeMetadata/v1/instance/id"]),
                _ => assert_eq!(asked, ["GET /metadata/instance/compute/vmId"]),
            }
        }
        server.stop().await.unwrap();
    }
}

/// `--cloud auto` asks AWS, then GCP, then Azure, and takes the first that answers as its
/// cloud; `--instance-id` asks no one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auto_takes_the_cloud_whose_metadata_service_answers() {
    let db = common::fresh_sqlite();
    let server = TestServer::start(common::test_config(&db)).await;
    let md = Metadata::start("azure").await;
    let a = agent_args(&[
        "--server",
        &server.url,
        "--metadata-url",
        &md.base,
        "--once",
        "--json",
    ]);
    let summary = agent::run_with(&a, gpus(&[3.0]), std::future::pending())
        .await
        .unwrap();
    assert_eq!(summary.instance_id, AZURE_ID);
    assert_eq!(summary.cloud.map(|c| c.as_str()), Some("azure"));
    assert_eq!(
        md.seen(),
        [
            "PUT /latest/api/token",
            "GET /computeMetadata/v1/instance/id",
            "GET /metadata/instance/compute/vmId"
        ]
    );

    let gcp = Metadata::start("gcp").await;
    let a = agent_args(&[
        "--server",
        &server.url,
        "--metadata-url",
        &gcp.base,
        "--once",
    ]);
    let summary = agent::run_with(&a, gpus(&[3.0]), std::future::pending())
        .await
        .unwrap();
    assert_eq!(
        (
            summary.instance_id.as_str(),
            summary.cloud.map(|c| c.as_str())
        ),
        (GCP_ID, Some("gcp"))
    );

    // Nothing answers as a cloud: a usage error (exit 2) saying what to pass.
    let nobody = Metadata::start("none").await;
    let a = agent_args(&[
        "--server",
        &server.url,
        "--metadata-url",
        &nobody.base,
        "--once",
    ]);
    let e = agent::run_with(&a, gpus(&[3.0]), std::future::pending())
        .await
        .unwrap_err();
    assert_eq!(e.exit_code(), 2, "{e}");
    assert!(e.to_string().contains("pass --instance-id"), "{e}");

    // The named cloud's service failing is a failure (exit 1), naming the cloud.
    let a = agent_args(&[
        "--server",
        &server.url,
        "--cloud",
        "gcp",
        "--metadata-url",
        &md.base,
        "--once",
    ]);
    let e = agent::run_with(&a, gpus(&[3.0]), std::future::pending())
        .await
        .unwrap_err();
    assert_eq!(e.exit_code(), 1, "{e}");
    assert!(e.to_string().starts_with("gcp instance metadata"), "{e}");

    let asked_before = md.seen().len();
    let a = agent_args(&[
        "--server",
        &server.url,
        "--instance-id",
        "i-given",
        "--metadata-url",
        &md.base,
        "--once",
    ]);
    let summary = agent::run_with(&a, gpus(&[3.0]), std::future::pending())
        .await
        .unwrap();
    assert_eq!(
        (summary.instance_id.as_str(), summary.cloud),
        ("i-given", None)
    );
    assert_eq!(md.seen().len(), asked_before);
    server.stop().await.unwrap();
}

/// A reading the server refuses (a NaN from a broken reader): the push answers
/// INVALID_ARGUMENT naming the sample's index and field, the other GPUs are stored, and
/// `--once` fails (exit 1) with the server's message.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_reading_is_refused_by_index_and_field_and_the_other_gpus_are_stored() {
    for db in common::both_backends().await {
        let server = TestServer::start(common::test_config(&db)).await;
        let a = agent_args(&["--server", &server.url, "--instance-id", "i-nan", "--once"]);
        let e = agent::run_with(&a, gpus(&[12.0, f64::NAN, 0.5]), std::future::pending())
            .await
            .unwrap_err();
        assert_eq!(e.exit_code(), 1);
        let text = e.to_string();
        assert!(
            text.contains("samples[1].utilization_percent: not a finite number; 2 of 3 samples stored, 1 rejected"),
            "{text}"
        );
        let stored = all_samples(&db.url).await;
        let gpus: Vec<(&str, f64)> = stored
            .iter()
            .map(|s| (s.gpu.as_str(), s.utilization_percent))
            .collect();
        assert_eq!(gpus.len(), 2, "{}", db.backend);
        assert!(
            gpus.contains(&("0", 12.0)) && gpus.contains(&("2", 0.5)),
            "{gpus:?}"
        );
        server.stop().await.unwrap();
    }
}

/// Started while the server is down, the agent keeps its readings and retries with backoff;
/// once the server is up every reading arrives, and on shutdown nothing is left behind.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readings_taken_while_the_server_is_away_arrive_once_it_is_up() {
    for db in common::both_backends().await {
        // Migrated up front: the server migrates again at its start, while this test reads.
        let store = Store::open(&db.url).await.unwrap();
        let port = common::free_port();
        let url = format!("http://127.0.0.1:{port}");
        let a = agent_args(&[
            "--server",
            &url,
            "--instance-id",
            "i-patient",
            "--interval",
            "200ms",
        ]);
        let (stop_agent, stopped) = oneshot::channel::<()>();
        let agent_task = tokio::spawn(async move {
            agent::run_with(&a, gpus(&[1.0, 2.0]), async move {
                let _ = stopped.await;
            })
            .await
        });
        // Several readings pile up with nowhere to go.
        tokio::time::sleep(Duration::from_millis(900)).await;
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
            .await
            .unwrap();
        let (stop_server, server_stopped) = oneshot::channel::<()>();
        let server = tokio::spawn(bursar::server::run(
            common::test_config(&db),
            listener,
            async move {
                let _ = server_stopped.await;
            },
        ));
        // Wait until at least 8 readings (4 intervals × 2 GPUs) are in, then stop the agent.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        loop {
            let n = store.gpu_samples_since(ms(0)).await.unwrap().len();
            if n >= 8 {
                break;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "only {n} samples arrived on {}",
                db.backend
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        stop_agent.send(()).unwrap();
        let summary = agent_task.await.unwrap().unwrap();
        let stored = store.gpu_samples_since(ms(0)).await.unwrap();
        store.close().await;
        assert_eq!(summary.undelivered, 0, "{}", db.backend);
        assert_eq!(summary.dropped, 0);
        assert_eq!(summary.accepted, summary.read);
        assert_eq!(stored.len() as u64, summary.read, "{}", db.backend);
        // Readings from before the server was up are among them.
        let first = stored.iter().map(|s| s.at).min().unwrap();
        let last = stored.iter().map(|s| s.at).max().unwrap();
        assert!(
            last - first >= chrono::Duration::milliseconds(800),
            "{first} .. {last}"
        );
        stop_server.send(()).unwrap();
        server.await.unwrap().unwrap();
    }
}

#[test]
fn bad_agent_flags_are_usage_errors_naming_the_flag() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    for (flags, names) in [
        (
            vec![
                "--server",
                "127.0.0.1:1",
                "--instance-id",
                "i-1",
                "--interval",
                "soon",
            ],
            "--interval",
        ),
        (
            vec![
                "--server",
                "127.0.0.1:1",
                "--instance-id",
                "i-1",
                "--interval",
                "1ms",
            ],
            "--interval",
        ),
        (
            vec!["--server", "127.0.0.1:1", "--instance-id", " "],
            "--instance-id",
        ),
        (
            vec!["--server", "127.0.0.1:1", "--metadata-url", "not a url"],
            "--metadata-url",
        ),
        (
            vec![
                "--server",
                "127.0.0.1:1",
                "--instance-id",
                "i-1",
                "--buffer",
                "0",
            ],
            "--buffer",
        ),
    ] {
        let a = agent_args(&flags);
        let e = rt
            .block_on(agent::run_with(&a, gpus(&[1.0]), std::future::pending()))
            .unwrap_err();
        assert_eq!(e.exit_code(), 2, "{flags:?}: {e}");
        assert!(e.to_string().starts_with(names), "{flags:?}: {e}");
    }
}

/// The real binary on this machine, which has no NVIDIA driver: one line on standard error
/// that says so, exit 2, before it asks any metadata service or server. (On a machine with
/// the driver, the same command reads the GPUs and fails only to reach the server: exit 1.)
#[test]
fn the_binary_without_an_nvidia_driver_says_so_in_one_line_and_exits_2() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_bursar"))
        .args([
            "agent",
            "--once",
            "--server",
            "http://127.0.0.1:9",
            "--instance-id",
            "i-0abc",
            "--metadata-url",
            "http://127.0.0.1:9",
        ])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    match agent::NvmlReader::open() {
        Err(_) => {
            assert_eq!(out.status.code(), Some(2), "{stderr}");
            assert_eq!(stderr.lines().count(), 1, "{stderr}");
            assert!(
                stderr.starts_with("bursar: NVML is not available"),
                "{stderr}"
            );
            assert!(stderr.contains("needs the NVIDIA driver"), "{stderr}");
            assert!(out.stdout.is_empty());
        }
        Ok(_) => assert_eq!(out.status.code(), Some(1), "{stderr}"),
    }
}
