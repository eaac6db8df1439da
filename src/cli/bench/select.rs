//! `bursar bench select CATALOG`: in-process SelectProvider decision latency over a
//! SkyPilot catalog, with `naive_best` (a full Decimal scan, also used by
//! benches/placement.rs) as the baseline in the same run, then a gRPC load run straight on
//! hyper's HTTP/2 client with a pre-encoded request whose answers are checked, not decoded.
use std::path::Path;
use std::time::{Duration, Instant};

use super::load::{LoadStats, cores, drive, percentile, start_server, start_server_with};
use crate::proto;
use crate::store::Store;

/// Per-call latencies of `f`, run `n` times: (p50, p99, mean).
fn time_calls(n: usize, mut f: impl FnMut()) -> (Duration, Duration, Duration) {
    let mut lat = Vec::with_capacity(n);
    let all = Instant::now();
    for _ in 0..n {
        let t = Instant::now();
        f();
        lat.push(t.elapsed());
    }
    let mean = all.elapsed() / n.max(1) as u32;
    lat.sort();
    (percentile(&lat, 0.5), percentile(&lat, 0.99), mean)
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// The two SelectProvider requests the benchmarks use.
pub fn select_requests() -> Vec<(&'static str, proto::SelectProviderRequest)> {
    let data = vec![proto::DataInput {
        size_gb: 2000.0,
        location: Some(proto::DataLocation {
            uri: "s3://bench/data@us-east-1".into(),
            ..Default::default()
        }),
    }];
    vec![
        (
            "gpu A100:8 spot-allowed 2TB@us-east-1",
            proto::SelectProviderRequest {
                resources: Some(proto::Resources {
                    accelerators: vec!["A100".into()],
                    accelerator_count: 8,
                    ..Default::default()
                }),
                expected_hours: 2.0,
                market: proto::MarketPolicy::SpotAllowed as i32,
                inputs: data.clone(),
                top_k: 5,
                ..Default::default()
            },
        ),
        (
            "cpu 8 vCPU/32 GiB spot-allowed 2TB@us-east-1",
            proto::SelectProviderRequest {
                resources: Some(proto::Resources {
                    min_vcpus: 8,
                    min_memory_gib: 32.0,
                    ..Default::default()
                }),
                expected_hours: 4.0,
                market: proto::MarketPolicy::SpotAllowed as i32,
                inputs: data,
                top_k: 5,
                ..Default::default()
            },
        ),
    ]
}

/// `bursar bench select`: in-process decision latency over the catalog in `dir` (with a
/// naive full-Decimal scan as the baseline in the same run), then SelectProvider over
/// loopback gRPC with `concurrency` requests in flight, against `server` or an in-process
/// server on a temporary SQLite database holding the catalog.
pub async fn bench_select(
    dir: &Path,
    server: Option<String>,
    requests: u64,
    concurrency: usize,
    connections: usize,
    grpc_only: bool,
) -> Result<(), String> {
    use crate::domain::placement::{Conditions, CostModel};
    crate::outln!("machine: {} cores; catalog: {}", cores(), dir.display());
    let opts = crate::clouds::skypilot::ImportOptions {
        observed_at: Some(chrono::Utc::now()),
        ..Default::default()
    };
    let (offers, _) =
        crate::clouds::skypilot::load_catalog_dir(dir, &opts).map_err(|e| e.to_string())?;
    let t = Instant::now();
    let catalog = crate::domain::Catalog::new(offers, Vec::new());
    crate::outln!(
        "catalog: {} offers; sort + placement index built in {:.1} ms",
        catalog.len(),
        ms(t.elapsed())
    );
    let model = CostModel::default();
    let cond = Conditions {
        now: chrono::Utc::now(),
        failing: [false; 3],
        marks: &[],
    };
    for (name, r) in select_requests().into_iter().filter(|_| !grpc_only) {
        let req = crate::server::convert::placement_request(&r, catalog.placement())
            .map_err(|e| format!("{}: {}", e.field, e.message))?;
        let d = catalog
            .placement()
            .select(&req, &model, &cond)
            .map_err(|e| e.to_string())?;
        let (p50, p99, mean) = time_calls(20_000, || {
            let _ = std::hint::black_box(catalog.placement().select(&req, &model, &cond));
        });
        let (np50, np99, nmean) = time_calls(50, || {
            std::hint::black_box(naive_best(&catalog, &req, &model));
        });
        crate::outln!(
            "in-process {name}: {} feasible of {}; indexed p50 {:.4} ms p99 {:.4} ms mean {:.4} ms; \
             naive Decimal scan p50 {:.2} ms p99 {:.2} ms mean {:.2} ms; speed-up {:.0}x (mean)",
            d.feasible(),
            d.considered,
            ms(p50),
            ms(p99),
            ms(mean),
            ms(np50),
            ms(np99),
            ms(nmean),
            nmean.as_secs_f64() / mean.as_secs_f64().max(1e-12)
        );
    }

    // gRPC. In process, a second server over a copy of the database requires a bearer
    // token: SelectProvider through it, beside the open one in the same run, is what
    // authentication costs per call.
    let mut stops = Vec::new();
    let mut handles = Vec::new();
    let mut tmps = Vec::new();
    let mut authed: Option<(String, String)> = None;
    let url = match server {
        Some(u) => u,
        None => {
            let tmp = std::env::temp_dir().join(format!("bursar-bench-{}.db", std::process::id()));
            let _ = std::fs::remove_file(&tmp);
            let db = format!("sqlite://{}", tmp.display());
            let store = Store::open(&db).await.map_err(|e| e.to_string())?;
            crate::tasks::import::import_catalog(&store, dir, None, false)
                .await
                .map_err(|e| e.to_string())?;
            store.close().await;
            let tmp2 = tmp.with_extension("auth.db");
            std::fs::copy(&tmp, &tmp2).map_err(|e| format!("{}: {e}", tmp2.display()))?;
            let (addr, tx, server) = start_server(db).await?;
            handles.push(server);
            stops.push(tx);
            let token = format!("bench-{:x}", rand::random::<u128>());
            let auth = crate::config::AuthConfig {
                tokens: vec![crate::config::auth::TokenConfig {
                    name: "bench".into(),
                    sha256: crate::domain::auth::sha256_hex(&token),
                    roles: vec!["placement".into()],
                }],
                ..Default::default()
            };
            let (addr2, tx2, server2) =
                start_server_with(format!("sqlite://{}", tmp2.display()), auth).await?;
            handles.push(server2);
            stops.push(tx2);
            authed = Some((format!("http://{addr2}"), format!("Bearer {token}")));
            tmps.push(TempFile(tmp));
            tmps.push(TempFile(tmp2));
            format!("http://{addr}")
        }
    };
    // Wait for each server to answer a first SelectProvider: up to 60 s (an in-process
    // server loads the catalog first), then give up with the last error instead of hanging.
    wait_for_select(&url, None, &handles).await?;
    let mut senders = Vec::new();
    for _ in 0..connections.max(1) {
        senders.push(h2_connect(&url).await?);
    }
    let mut authed_senders = Vec::new();
    if let Some((u, bearer)) = &authed {
        wait_for_select(u, Some(bearer), &handles).await?;
        for _ in 0..connections.max(1) {
            authed_senders.push(h2_connect(u).await?);
        }
    }
    // Health/Check on the same server, at the same concurrency, in the same run: the floor
    // a unary gRPC call costs here. Each SelectProvider run is put beside the health run
    // before it.
    let health = UnaryCall::health();
    for (name, r) in select_requests() {
        let h = load_unary(&url, senders.clone(), concurrency, requests, &health, None).await?;
        report_load(
            "grpc.health.v1.Health/Check",
            &h,
            concurrency,
            senders.len(),
        );
        let s = load_unary(
            &url,
            senders.clone(),
            concurrency,
            requests,
            &UnaryCall::select(&r),
            None,
        )
        .await?;
        report_load(
            &format!("SelectProvider {name}"),
            &s,
            concurrency,
            senders.len(),
        );
        crate::outln!(
            "  SelectProvider / Health/Check throughput: {:.2} (goal >= 0.8)",
            s.throughput() / h.throughput().max(1e-9)
        );
        if let Some((u, bearer)) = &authed {
            let a = load_unary(
                u,
                authed_senders.clone(),
                concurrency,
                requests,
                &UnaryCall::select(&r),
                Some(bearer.as_str()),
            )
            .await?;
            if a.errors > 0 {
                return Err(format!(
                    "{} of {} calls with the token failed",
                    a.errors, a.requests
                ));
            }
            report_load(
                &format!("SelectProvider {name} with a bearer token"),
                &a,
                concurrency,
                authed_senders.len(),
            );
            crate::outln!(
                "  with a token / open: throughput {:.3}, p50 {:+.1} us",
                a.throughput() / s.throughput().max(1e-9),
                (a.p50.as_secs_f64() - s.p50.as_secs_f64()) * 1e6
            );
        }
    }
    for tx in stops {
        let _ = tx.send(());
    }
    for h in handles {
        let _ = h.await;
    }
    drop(tmps);
    Ok(())
}

/// A file removed when the benchmark ends.
struct TempFile(std::path::PathBuf);

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// Waits up to 60 s for a server to answer a SelectProvider (with `bearer` as its
/// `authorization`), failing at once if a server task ended.
async fn wait_for_select<T>(
    url: &str,
    bearer: Option<&str>,
    handles: &[tokio::task::JoinHandle<T>],
) -> Result<(), String> {
    let waited = Instant::now();
    loop {
        let err = match tonic::transport::Endpoint::from_shared(url.to_string())
            .map_err(|e| e.to_string())?
            .connect()
            .await
        {
            Ok(ch) => {
                let mut c = proto::placement_service_client::PlacementServiceClient::new(ch);
                let mut req = tonic::Request::new(select_requests()[0].1.clone());
                if let Some(b) = bearer {
                    req.metadata_mut().insert(
                        "authorization",
                        b.parse().map_err(|_| "bad token".to_string())?,
                    );
                }
                match c.select_provider(req).await {
                    Ok(_) => return Ok(()),
                    Err(e) => format!("SelectProvider: {}", e.message()),
                }
            }
            Err(e) => format!("connect: {e}"),
        };
        if handles.iter().any(|h| h.is_finished()) {
            return Err("server stopped".into());
        }
        if waited.elapsed() > Duration::from_secs(60) {
            return Err(format!("{url} did not answer within 60 s ({err})"));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// One load run's line: requests, errors, req/s, p50, p99.
pub fn report_load(name: &str, s: &LoadStats, concurrency: usize, connections: usize) {
    crate::outln!(
        "gRPC {name}: {} req, {} errors, {:.0} req/s, p50 {:.3} ms, p99 {:.3} ms ({} in flight over {} connections)",
        s.requests,
        s.errors,
        s.throughput(),
        ms(s.p50),
        ms(s.p99),
        concurrency,
        connections
    );
}

/// The unindexed baseline: every offer evaluated with Decimal arithmetic, egress priced
/// per offer (what a straightforward implementation does).
pub fn naive_best(
    cat: &crate::domain::Catalog,
    req: &crate::domain::placement::PlacementRequest,
    model: &crate::domain::placement::CostModel,
) -> Option<rust_decimal::Decimal> {
    use crate::domain::placement::MarketPolicy;
    use rust_decimal::Decimal;
    let hours = Decimal::new(req.hours_milli, 3);
    let mut best: Option<Decimal> = None;
    for o in cat.offers() {
        let Some(a) = &o.attrs else { continue };
        if !req.accelerators.is_empty()
            && !a
                .gpu_model
                .as_deref()
                .is_some_and(|m| req.accelerators.iter().any(|x| x.eq_ignore_ascii_case(m)))
        {
            continue;
        }
        if a.vcpus < req.min_vcpus || a.memory_gib < req.min_memory_gib {
            continue;
        }
        if !req.accelerators.is_empty() && a.gpu_count < f64::from(req.accelerator_count) {
            continue;
        }
        if req.market == MarketPolicy::OnDemandOnly && o.key.market == crate::domain::Market::Spot {
            continue;
        }
        let mut total = o.price_per_hour * hours * Decimal::from(req.nodes);
        for i in &req.inputs {
            total += model.egress.cost(
                i.provider,
                &i.region,
                o.key.provider,
                &o.key.region,
                Decimal::new(i.gb_milli, 3),
            );
        }
        if best.is_none_or(|b| total < b) {
            best = Some(total);
        }
    }
    best
}

/// An HTTP/2 connection to the server for the load generator (no tower buffer in between:
/// requests go straight onto the connection's streams).
pub async fn h2_connect(
    url: &str,
) -> Result<hyper::client::conn::http2::SendRequest<http_body_util::Full<bytes::Bytes>>, String> {
    let uri: tonic::codegen::http::Uri = url.parse().map_err(|e| format!("{url}: {e}"))?;
    if uri.scheme_str() != Some("http") {
        return Err(format!(
            "{url}: the load generator speaks plaintext HTTP/2 (h2c): use http://"
        ));
    }
    let host = uri
        .host()
        .ok_or_else(|| format!("{url}: no host"))?
        .trim_start_matches('[')
        .trim_end_matches(']');
    let port = uri.port_u16().unwrap_or(80);
    let tcp = tokio::net::TcpStream::connect((host, port))
        .await
        .map_err(|e| format!("{url}: {e}"))?;
    tcp.set_nodelay(true).map_err(|e| e.to_string())?;
    // Requests sent together leave in one write, as the server's answers do.
    let (sender, conn) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(crate::server::coalesce::CoalescingIo::new(tcp)),
    )
    .await
    .map_err(|e| format!("{url}: HTTP/2 handshake: {e}"))?;
    tokio::spawn(conn);
    Ok(sender)
}

/// A gRPC method's path and one request to it, encoded and framed once.
pub struct UnaryCall {
    pub path: &'static str,
    pub framed: bytes::Bytes,
}

impl UnaryCall {
    pub fn new(path: &'static str, msg: &impl prost::Message) -> Self {
        use bytes::BufMut;
        let msg = msg.encode_to_vec();
        let mut framed = bytes::BytesMut::with_capacity(5 + msg.len());
        framed.put_u8(0);
        framed.put_u32(msg.len() as u32);
        framed.extend_from_slice(&msg);
        UnaryCall {
            path,
            framed: framed.freeze(),
        }
    }

    pub fn select(req: &proto::SelectProviderRequest) -> Self {
        Self::new("/bursar.v1.PlacementService/SelectProvider", req)
    }

    /// `grpc.health.v1.Health/Check` for the whole server: the floor a unary call costs.
    pub fn health() -> Self {
        Self::new(
            "/grpc.health.v1.Health/Check",
            &tonic_health::pb::HealthCheckRequest::default(),
        )
    }
}

/// Runs `total` calls of `call` with `concurrency` in flight over `senders`' HTTP/2
/// connections, each carrying `authorization` when given. The request is encoded once;
/// each response is checked (HTTP 200, `grpc-status: 0`, a non-empty message) without
/// being decoded, so the generator's share of the two cores stays small and what is
/// measured is the server.
pub async fn load_unary(
    url: &str,
    senders: Vec<hyper::client::conn::http2::SendRequest<http_body_util::Full<bytes::Bytes>>>,
    concurrency: usize,
    total: u64,
    call: &UnaryCall,
    authorization: Option<&str>,
) -> Result<LoadStats, String> {
    let uri: tonic::codegen::http::Uri = format!("{}{}", url.trim_end_matches('/'), call.path)
        .parse()
        .map_err(|e| format!("{url}: {e}"))?;
    let auth = authorization
        .map(tonic::codegen::http::HeaderValue::from_str)
        .transpose()
        .map_err(|_| "the token is not a valid header value".to_string())?;
    let framed = call.framed.clone();
    Ok(drive(concurrency, total, move |w, _| {
        let mut sender = senders[w % senders.len()].clone();
        let (body, uri, auth) = (framed.clone(), uri.clone(), auth.clone());
        async move { unary_ok(&mut sender, uri, body, auth).await }
    })
    .await)
}

/// One call on `sender`: true when it answered OK with a message.
pub async fn unary_ok(
    sender: &mut hyper::client::conn::http2::SendRequest<http_body_util::Full<bytes::Bytes>>,
    uri: tonic::codegen::http::Uri,
    body: bytes::Bytes,
    auth: Option<tonic::codegen::http::HeaderValue>,
) -> bool {
    let mut req = tonic::codegen::http::Request::post(uri)
        .header("content-type", "application/grpc")
        .header("te", "trailers");
    if let Some(a) = auth {
        req = req.header("authorization", a);
    }
    let Ok(req) = req.body(http_body_util::Full::new(body)) else {
        return false;
    };
    let Ok(resp) = sender.send_request(req).await else {
        return false;
    };
    if resp.status() != 200 {
        return false;
    }
    // A trailers-only answer (an error) carries its status in the headers.
    if resp.headers().get("grpc-status").is_some_and(|s| s != "0") {
        return false;
    }
    let mut body = resp.into_body();
    let (mut bytes, mut ok) = (0usize, false);
    while let Some(frame) = http_body_util::BodyExt::frame(&mut body).await {
        let Ok(frame) = frame else { return false };
        if let Some(d) = frame.data_ref() {
            bytes += d.len();
        } else if let Some(t) = frame.trailers_ref() {
            ok = t.get("grpc-status").is_some_and(|s| s == "0");
        }
    }
    ok && bytes > 5
}
