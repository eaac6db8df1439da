//! What the benchmarks share: `drive` (a closed-loop load generator: calls in flight,
//! latencies) and its `LoadStats`, `percentile`, `start_server` (the service in-process on
//! a loopback port) and `cores`.
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use crate::config::Config;
use crate::server::RunError;

/// Latency summary of a load run.
#[derive(Debug, Clone)]
pub struct LoadStats {
    pub requests: u64,
    pub errors: u64,
    pub seconds: f64,
    pub p50: Duration,
    pub p99: Duration,
}

impl LoadStats {
    pub fn throughput(&self) -> f64 {
        self.requests as f64 / self.seconds.max(1e-9)
    }
}

pub fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx.min(sorted.len() - 1)]
}

/// Runs `total` calls with `concurrency` in flight; `call(worker, i)` makes call number `i`
/// on worker `worker` and says whether it succeeded.
pub async fn drive<F, Fut>(concurrency: usize, total: u64, call: F) -> LoadStats
where
    F: Fn(usize, u64) -> Fut + Send + Sync + Clone + 'static,
    Fut: std::future::Future<Output = bool> + Send,
{
    drive_until(concurrency, total, None, call).await
}

/// `drive`, also stopping each worker at `deadline` (a soak runs for a time, not a count).
pub async fn drive_until<F, Fut>(
    concurrency: usize,
    total: u64,
    deadline: Option<Instant>,
    call: F,
) -> LoadStats
where
    F: Fn(usize, u64) -> Fut + Send + Sync + Clone + 'static,
    Fut: std::future::Future<Output = bool> + Send,
{
    let next = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for w in 0..concurrency {
        let (next, call) = (next.clone(), call.clone());
        tasks.push(tokio::spawn(async move {
            let (mut lat, mut errors) = (Vec::new(), 0u64);
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if i >= total || deadline.is_some_and(|d| Instant::now() >= d) {
                    break;
                }
                let t = Instant::now();
                if call(w, i).await {
                    lat.push(t.elapsed());
                } else {
                    errors += 1;
                }
            }
            (lat, errors)
        }));
    }
    let (mut all, mut errors) = (Vec::new(), 0);
    for t in tasks {
        if let Ok((l, e)) = t.await {
            all.extend(l);
            errors += e;
        }
    }
    let seconds = started.elapsed().as_secs_f64();
    all.sort();
    LoadStats {
        requests: all.len() as u64,
        errors,
        seconds,
        p50: percentile(&all, 0.50),
        p99: percentile(&all, 0.99),
    }
}

/// The service in-process on a loopback port over `database_url` (no seeding, catalog
/// rebuilt hourly): its address, the sender that stops it, and its task.
pub async fn start_server(
    database_url: String,
) -> Result<
    (
        SocketAddr,
        tokio::sync::oneshot::Sender<()>,
        tokio::task::JoinHandle<Result<(), RunError>>,
    ),
    String,
> {
    start_server_with(database_url, crate::config::AuthConfig::default()).await
}

/// `start_server` with the given `[auth]` (with no token, a loopback server runs open).
pub async fn start_server_with(
    database_url: String,
    auth: crate::config::AuthConfig,
) -> Result<
    (
        SocketAddr,
        tokio::sync::oneshot::Sender<()>,
        tokio::task::JoinHandle<Result<(), RunError>>,
    ),
    String,
> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(|e| e.to_string())?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let cfg = Config {
        database_url,
        seed_when_empty: false,
        catalog_refresh: Duration::from_secs(3600),
        // No HTTP port: the load generator measures gRPC only.
        metrics_listen: String::new(),
        auth,
        ..Config::default()
    };
    let server = tokio::spawn(crate::server::run(cfg, listener, async move {
        let _ = rx.await;
    }));
    Ok((addr, tx, server))
}

/// The machine's cores, for the first line of each benchmark's output (0 if unknown).
pub fn cores() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(0)
}
