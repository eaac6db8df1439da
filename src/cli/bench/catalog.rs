//! `bursar bench catalog DIR --database-url URL…`: imports a SkyPilot catalog into each
//! (empty) database (rows/s), starts the server in-process on that database, reads its
//! resident memory, and drives ListPrices over loopback gRPC with concurrent clients
//! (throughput, p50, p99).
use std::path::Path;
use std::time::Duration;

use super::load::{LoadStats, cores, drive, start_server};
use crate::proto;
use crate::store::Store;

/// Resident set size of this process in KiB (Linux /proc), if readable.
pub fn rss_kib() -> Option<u64> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    s.lines()
        .find(|l| l.starts_with("VmRSS:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// Runs `total` ListPrices requests made by `make` with `concurrency` in flight.
pub async fn load<F>(
    channel: tonic::transport::Channel,
    concurrency: usize,
    total: u64,
    make: F,
) -> LoadStats
where
    F: Fn(u64) -> proto::ListPricesRequest + Send + Sync + Clone + 'static,
{
    drive(concurrency, total, move |_, i| {
        let mut client = proto::pricing_service_client::PricingServiceClient::new(channel.clone());
        let req = make(i);
        async move { client.list_prices(req).await.is_ok() }
    })
    .await
}

/// The request mix: a GPU query, a CPU-only filtered listing, a price cap, an unfiltered page.
pub fn request_mix(i: u64) -> proto::ListPricesRequest {
    match i % 4 {
        0 => proto::ListPricesRequest {
            gpu_model: "A100".into(),
            min_gpu_count: 8,
            page_size: 20,
            ..Default::default()
        },
        1 => proto::ListPricesRequest {
            provider: proto::Provider::Azure as i32,
            region: "eastus".into(),
            market: proto::Market::Spot as i32,
            page_size: 50,
            ..Default::default()
        },
        2 => proto::ListPricesRequest {
            max_price_per_hour: "0.50".into(),
            page_size: 100,
            ..Default::default()
        },
        _ => proto::ListPricesRequest {
            page_size: 100,
            ..Default::default()
        },
    }
}

/// `bursar bench catalog`: everything BENCHMARKS.md reports for issue #2, per database.
pub async fn bench_catalog(
    dir: &Path,
    urls: &[String],
    requests: u64,
    concurrency: usize,
) -> Result<(), String> {
    crate::outln!("machine: {} cores; catalog: {}", cores(), dir.display());
    for url in urls {
        let store = Store::open(url).await.map_err(|e| e.to_string())?;
        let backend = store.backend();
        let before = store.count_current().await.map_err(|e| e.to_string())?;
        if before > 0 {
            return Err(format!(
                "{backend}: database {} already holds {before} prices; give an empty one",
                crate::store::redact_url(url)
            ));
        }
        let out = crate::tasks::import::import_catalog(&store, dir, None, false)
            .await
            .map_err(|e| e.to_string())?;
        let rows = out.report.rows_read();
        crate::outln!(
            "[{backend}] import: {} CSV rows -> {} offers in {:.2}s = {:.0} rows/s, {:.0} offers/s",
            rows,
            out.offers_written,
            out.seconds,
            rows as f64 / out.seconds,
            out.offers_written as f64 / out.seconds
        );
        // Re-import: nothing changed, so no new history.
        let again = crate::tasks::import::import_catalog(&store, dir, None, false)
            .await
            .map_err(|e| e.to_string())?;
        crate::outln!(
            "[{backend}] re-import (unchanged): {:.2}s, {} new history rows",
            again.seconds,
            again.observations
        );
        store.close().await;

        let rss_before = rss_kib().unwrap_or(0);
        let (addr, tx, server) = start_server(url.clone()).await?;
        let endpoint = format!("http://{addr}");
        let channel = loop {
            if let Ok(ch) = tonic::transport::Endpoint::from_shared(endpoint.clone())
                .map_err(|e| e.to_string())?
                .connect()
                .await
            {
                let mut c = proto::pricing_service_client::PricingServiceClient::new(ch.clone());
                if c.list_prices(proto::ListPricesRequest::default())
                    .await
                    .is_ok()
                {
                    break ch;
                }
            }
            if server.is_finished() {
                return Err("server stopped".into());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        let rss_after = rss_kib().unwrap_or(0);
        crate::outln!(
            "[{backend}] resident memory: {:.1} MiB after loading the catalog (+{:.1} MiB over the process before start)",
            rss_after as f64 / 1024.0,
            (rss_after.saturating_sub(rss_before)) as f64 / 1024.0
        );
        for (name, make) in [
            ("mix", request_mix as fn(u64) -> proto::ListPricesRequest),
            ("gpu A100:8", |_| request_mix(0)),
            ("azure eastus spot", |_| request_mix(1)),
            ("unfiltered page", |_| request_mix(3)),
        ] {
            let s = load(channel.clone(), concurrency, requests, make).await;
            crate::outln!(
                "[{backend}] ListPrices {name}: {} req, {} errors, {:.0} req/s, p50 {:.3} ms, p99 {:.3} ms ({} in flight)",
                s.requests,
                s.errors,
                s.throughput(),
                s.p50.as_secs_f64() * 1e3,
                s.p99.as_secs_f64() * 1e3,
                concurrency
            );
        }
        let _ = tx.send(());
        let _ = server.await;
    }
    Ok(())
}
