//! `bursar bench soak`: several `bursar serve` processes on one database, loaded with
//! SelectProvider for minutes while a price poll (the Azure source against a local copy of
//! a recorded retail page) and repeated billing ingests run. Per minute: requests, errors,
//! req/s, p50, p99 and each replica's resident memory; at the end the totals.
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use super::load::{LoadStats, cores, drive_until};
use super::select::{UnaryCall, h2_connect, select_requests, unary_ok};

type Sender = hyper::client::conn::http2::SendRequest<http_body_util::Full<bytes::Bytes>>;

/// What `bursar bench soak` runs.
pub struct SoakBench {
    pub database_url: String,
    pub catalog: PathBuf,
    pub shared: PathBuf,
    pub work: PathBuf,
    pub replicas: usize,
    pub duration: Duration,
    pub concurrency: usize,
    pub connections: usize,
    /// A config file for the replicas (e.g. with `[auth]`); the soak adds its poll source.
    pub config: Option<PathBuf>,
    /// Sent as `authorization: Bearer …` on every call.
    pub token: Option<String>,
    pub ingest_every: Duration,
    pub poll_every: Duration,
}

/// A `bursar serve` child process.
struct Replica {
    addr: String,
    child: tokio::process::Child,
}

impl Replica {
    fn pid(&self) -> Option<u32> {
        self.child.id()
    }
}

/// Resident memory of `pid` in MiB (VmRSS), 0 when unknown.
fn rss_mib(pid: Option<u32>) -> f64 {
    let Some(pid) = pid else { return 0.0 };
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        })
        .map(|kb| kb / 1024.0)
        .unwrap_or(0.0)
}

fn free_addr() -> Result<String, String> {
    let l = std::net::TcpListener::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
    Ok(l.local_addr().map_err(|e| e.to_string())?.to_string())
}

/// Serves the recorded Azure retail page to the replicas' `azure` source, counting polls.
async fn azure_fixture(shared: &Path, hits: Arc<AtomicU64>) -> Result<String, String> {
    let page = shared.join("price-api-samples/azure/retail_vm_d2s_v3_eastus_consumption.json");
    let body = std::fs::read_to_string(&page).map_err(|e| format!("{}: {e}", page.display()))?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(|e| e.to_string())?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    let app = axum::Router::new().fallback(move || {
        let (body, hits) = (body.clone(), hits.clone());
        async move {
            hits.fetch_add(1, Ordering::Relaxed);
            ([("content-type", "application/json")], body)
        }
    });
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Ok(format!("http://{addr}"))
}

/// The replicas' config: `--config` (if any) with the Azure source pointed at the fixture.
fn replica_config(b: &SoakBench, endpoint: &str) -> Result<PathBuf, String> {
    let mut t: toml::Table = match &b.config {
        Some(p) => std::fs::read_to_string(p)
            .map_err(|e| format!("{}: {e}", p.display()))?
            .parse()
            .map_err(|e| format!("{}: {e}", p.display()))?,
        None => toml::Table::new(),
    };
    let sources = t
        .entry("sources")
        .or_insert_with(|| toml::Value::Table(toml::Table::new()));
    let Some(sources) = sources.as_table_mut() else {
        return Err("the config's `sources` is not a table".into());
    };
    let mut azure = toml::Table::new();
    azure.insert("enabled".into(), true.into());
    azure.insert("endpoint".into(), endpoint.into());
    azure.insert(
        "interval".into(),
        humantime::format_duration(b.poll_every).to_string().into(),
    );
    sources.insert("azure".into(), toml::Value::Table(azure));
    let path = b.work.join("soak.toml");
    std::fs::write(&path, toml::to_string(&t).map_err(|e| e.to_string())?)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(path)
}

async fn start_replica(b: &SoakBench, config: &Path, i: usize) -> Result<Replica, String> {
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let addr = free_addr()?;
    let log = b.work.join(format!("replica-{i}.log"));
    let out = std::fs::File::create(&log).map_err(|e| format!("{}: {e}", log.display()))?;
    let err = out.try_clone().map_err(|e| e.to_string())?;
    let child = tokio::process::Command::new(exe)
        .args(["serve", "--listen", &addr, "--metrics-listen", ""])
        .env("BURSAR_DATABASE_URL", &b.database_url)
        .env("BURSAR_CONFIG", config)
        .env("BURSAR_SEED_WHEN_EMPTY", "false")
        .stdin(Stdio::null())
        .stdout(Stdio::from(out))
        .stderr(Stdio::from(err))
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| format!("bursar serve: {e}"))?;
    Ok(Replica {
        addr: format!("http://{addr}"),
        child,
    })
}

/// Waits until `url` answers Health/Check SERVING (60 s at most).
async fn wait_serving(url: &str) -> Result<(), String> {
    let started = Instant::now();
    let health = UnaryCall::health();
    loop {
        if let Ok(mut s) = h2_connect(url).await {
            let uri = format!("{url}{}", health.path)
                .parse()
                .map_err(|e| format!("{url}: {e}"))?;
            if unary_ok(&mut s, uri, health.framed.clone(), None).await {
                return Ok(());
            }
        }
        if started.elapsed() > Duration::from_secs(60) {
            return Err(format!("{url} was not SERVING within 60 s"));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Load for `d` over `senders` (spread over the replicas), SelectProvider's GPU request.
async fn load_for(
    senders: &[(String, Sender)],
    concurrency: usize,
    d: Duration,
    auth: Option<tonic::codegen::http::HeaderValue>,
) -> Result<LoadStats, String> {
    let call = UnaryCall::select(&select_requests()[0].1);
    let mut targets = Vec::new();
    for (url, s) in senders {
        let uri: tonic::codegen::http::Uri = format!("{url}{}", call.path)
            .parse()
            .map_err(|e| format!("{url}: {e}"))?;
        targets.push((uri, s.clone()));
    }
    let framed = call.framed.clone();
    let deadline = Instant::now() + d;
    Ok(
        drive_until(concurrency, u64::MAX, Some(deadline), move |w, _| {
            let (uri, mut sender) = targets[w % targets.len()].clone();
            let (body, auth) = (framed.clone(), auth.clone());
            async move { unary_ok(&mut sender, uri, body, auth).await }
        })
        .await,
    )
}

/// Runs `bursar ingest FILE` every `every` until `stop`; (runs, failures).
async fn ingest_loop(
    database_url: String,
    file: PathBuf,
    every: Duration,
    mut stop: tokio::sync::watch::Receiver<bool>,
) -> (u64, u64) {
    let (mut runs, mut failed) = (0, 0);
    let Ok(exe) = std::env::current_exe() else {
        return (0, 1);
    };
    loop {
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = stop.changed() => return (runs, failed),
        }
        let st = tokio::process::Command::new(&exe)
            .arg("ingest")
            .arg(&file)
            .env("BURSAR_DATABASE_URL", &database_url)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .await;
        runs += 1;
        if !st.is_ok_and(|s| s.success()) {
            failed += 1;
        }
    }
}

pub async fn bench_soak(b: &SoakBench) -> Result<(), String> {
    std::fs::create_dir_all(&b.work).map_err(|e| format!("{}: {e}", b.work.display()))?;
    crate::outln!(
        "machine: {} cores; {} replicas on {}; {} in flight over {} connections per replica; {} s",
        cores(),
        b.replicas,
        crate::store::redact_url(&b.database_url),
        b.concurrency,
        b.connections,
        b.duration.as_secs()
    );
    let store = crate::store::Store::open(&b.database_url)
        .await
        .map_err(|e| e.to_string())?;
    let n = crate::tasks::import::import_catalog(&store, &b.catalog, None, false)
        .await
        .map_err(|e| e.to_string())?;
    store.close().await;
    crate::outln!("catalog imported: {} offers", n.offers_written);

    let hits = Arc::new(AtomicU64::new(0));
    let endpoint = azure_fixture(&b.shared, hits.clone()).await?;
    let config = replica_config(b, &endpoint)?;
    let mut replicas = Vec::new();
    for i in 0..b.replicas.max(1) {
        replicas.push(start_replica(b, &config, i).await?);
    }
    for r in &replicas {
        wait_serving(&r.addr).await?;
    }
    let mut senders = Vec::new();
    for r in &replicas {
        for _ in 0..b.connections.max(1) {
            senders.push((r.addr.clone(), h2_connect(&r.addr).await?));
        }
    }
    let auth = b
        .token
        .as_deref()
        .map(|t| tonic::codegen::http::HeaderValue::from_str(&format!("Bearer {t}")))
        .transpose()
        .map_err(|_| "the token is not a valid header value".to_string())?;

    // Warm-up, not counted: connections, the catalog, the allocator's pools.
    let warm = load_for(
        &senders,
        b.concurrency,
        Duration::from_secs(10),
        auth.clone(),
    )
    .await?;
    if warm.requests == 0 {
        return Err(format!(
            "no call succeeded in the warm-up ({} errors): see {}",
            warm.errors,
            b.work.join("replica-0.log").display()
        ));
    }
    let rss_start: Vec<f64> = replicas.iter().map(|r| rss_mib(r.pid())).collect();
    crate::outln!(
        "warm-up: {:.0} req/s; resident memory at start: {}",
        warm.throughput(),
        mib_list(&rss_start)
    );

    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let ingest = tokio::spawn(ingest_loop(
        b.database_url.clone(),
        b.shared
            .join("focus-sample/multi-provider/focus_sample.csv"),
        b.ingest_every,
        stop_rx,
    ));
    let polls_before = hits.load(Ordering::Relaxed);
    let started = Instant::now();
    let (mut total, mut errors, mut worst_p99, mut p50s) = (0u64, 0u64, Duration::ZERO, Vec::new());
    let mut minute = 0;
    while started.elapsed() < b.duration {
        minute += 1;
        let left = b.duration.saturating_sub(started.elapsed());
        let s = load_for(
            &senders,
            b.concurrency,
            left.min(Duration::from_secs(60)),
            auth.clone(),
        )
        .await?;
        let rss: Vec<f64> = replicas.iter().map(|r| rss_mib(r.pid())).collect();
        crate::outln!(
            "minute {minute}: {} req, {} errors, {:.0} req/s, p50 {:.3} ms, p99 {:.3} ms; memory {}",
            s.requests,
            s.errors,
            s.throughput(),
            s.p50.as_secs_f64() * 1e3,
            s.p99.as_secs_f64() * 1e3,
            mib_list(&rss)
        );
        total += s.requests;
        errors += s.errors;
        worst_p99 = worst_p99.max(s.p99);
        p50s.push(s.p50);
    }
    let seconds = started.elapsed().as_secs_f64();
    let _ = stop_tx.send(true);
    let (ingests, ingest_failed) = ingest.await.unwrap_or((0, 1));
    let rss_end: Vec<f64> = replicas.iter().map(|r| rss_mib(r.pid())).collect();
    p50s.sort();
    crate::outln!(
        "total: {total} req, {errors} errors, {:.0} req/s over {seconds:.0} s; median minute p50 {:.3} ms; worst minute p99 {:.3} ms",
        total as f64 / seconds.max(1e-9),
        p50s.get(p50s.len() / 2)
            .copied()
            .unwrap_or_default()
            .as_secs_f64()
            * 1e3,
        worst_p99.as_secs_f64() * 1e3
    );
    crate::outln!(
        "during the soak: {} price polls answered, {ingests} ingests ({ingest_failed} failed)",
        hits.load(Ordering::Relaxed) - polls_before
    );
    crate::outln!(
        "resident memory: start {} → end {}",
        mib_list(&rss_start),
        mib_list(&rss_end)
    );
    for mut r in replicas {
        let _ = r.child.start_kill();
        let _ = r.child.wait().await;
    }
    Ok(())
}

fn mib_list(v: &[f64]) -> String {
    v.iter()
        .enumerate()
        .map(|(i, m)| format!("r{i} {m:.1} MiB"))
        .collect::<Vec<_>>()
        .join(", ")
}
