//! `bursar bench gpu-samples`: how fast GPU utilisation samples go into each database —
//! `Store::insert_gpu_samples` in batches of one ReportGpuUtilization call, a naive
//! one-INSERT-per-sample baseline in the same run for the ratio, and the whole push path
//! (proto, validation, store) over loopback gRPC to an in-process server.
use std::time::Instant;

use chrono::{DateTime, Duration, Utc};

use super::load::{cores, drive, start_server};
use crate::domain::fleet::{GpuSample, SampleSource};
use crate::proto;
use crate::store::Store;

/// GPUs per machine in the generated fleet (p4d/p5: 8).
const GPUS: usize = 8;

/// Samples like a fleet's: machine after machine, 8 GPUs each, 15 s apart, utilisation,
/// memory and power varying.
fn fleet_samples(n: usize, start: DateTime<Utc>) -> Vec<GpuSample> {
    let machines = (n / GPUS / 120).max(1);
    (0..n)
        .map(|i| {
            let gpu = i % GPUS;
            let machine = (i / GPUS) % machines;
            let step = i / (GPUS * machines);
            GpuSample {
                instance_id: format!("i-{machine:017x}"),
                gpu: gpu.to_string(),
                at: start + Duration::seconds(15 * step as i64),
                utilization_percent: ((i * 37) % 1000) as f64 / 10.0,
                memory_used_mib: Some(((i * 7919) % 81_920) as f64),
                power_watts: Some(60.0 + ((i * 13) % 640) as f64),
                source: SampleSource::Push,
            }
        })
        .collect()
}

fn to_proto(s: &GpuSample) -> proto::GpuUtilizationSample {
    proto::GpuUtilizationSample {
        instance_id: s.instance_id.clone(),
        gpu: s.gpu.clone(),
        at: Some(crate::server::convert::timestamp(s.at)),
        utilization_percent: s.utilization_percent,
        memory_used_mib: s.memory_used_mib,
        power_watts: s.power_watts,
    }
}

/// Empties `gpu_sample` and checks it holds `expect` rows first.
async fn count_and_clear(store: &Store, expect: usize, what: &str) -> Result<(), String> {
    let n = store
        .prune_gpu_samples(DateTime::<Utc>::MAX_UTC)
        .await
        .map_err(|e| e.to_string())?;
    if n != expect as u64 {
        return Err(format!("{what}: {n} rows stored, expected {expect}"));
    }
    Ok(())
}

/// The baseline: one single-row INSERT per sample (a statement each, one transaction).
async fn naive_insert(store: &Store, samples: &[GpuSample]) -> Result<(), String> {
    const SQL: &str = "INSERT INTO gpu_sample (instance_id, gpu, at, utilization, memory_mib, \
         power_watts, source) VALUES ($1, $2, $3, $4, $5, $6, $7)";
    macro_rules! each_row {
        ($tx:expr, $sql:expr) => {
            for s in samples {
                sqlx::query($sql)
                    .bind(&s.instance_id)
                    .bind(&s.gpu)
                    .bind(s.at.timestamp_millis())
                    .bind(s.utilization_percent)
                    .bind(s.memory_used_mib)
                    .bind(s.power_watts)
                    .bind(s.source.as_str())
                    .execute(&mut *$tx)
                    .await
                    .map_err(|e| e.to_string())?;
            }
        };
    }
    match store {
        Store::Sqlite(s) => {
            let mut tx = s.pool().begin().await.map_err(|e| e.to_string())?;
            each_row!(tx, &SQL.replace('$', "?"));
            tx.commit().await.map_err(|e| e.to_string())?;
        }
        Store::Postgres(p) => {
            let mut tx = p.pool().begin().await.map_err(|e| e.to_string())?;
            each_row!(tx, SQL);
            tx.commit().await.map_err(|e| e.to_string())?;
        }
    }
    Ok(())
}

/// `samples` pushed to an in-process server on `url` in calls of `batch`, `concurrency` in
/// flight.
async fn grpc(
    url: &str,
    samples: &[GpuSample],
    batch: usize,
    concurrency: usize,
) -> Result<super::load::LoadStats, String> {
    let (addr, stop, server) = start_server(url.to_string()).await?;
    let channel = crate::cli::agent::push::lazy_channel(&addr.to_string(), &Default::default())?;
    let client = proto::fleet_service_client::FleetServiceClient::new(channel)
        .max_decoding_message_size(16 << 20)
        .max_encoding_message_size(16 << 20);
    let requests: std::sync::Arc<Vec<proto::ReportGpuUtilizationRequest>> = std::sync::Arc::new(
        samples
            .chunks(batch)
            .map(|c| proto::ReportGpuUtilizationRequest {
                samples: c.iter().map(to_proto).collect(),
            })
            .collect(),
    );
    let n = requests.len() as u64;
    let stats = drive(concurrency.max(1), n, move |_, i| {
        let (mut client, requests) = (client.clone(), requests.clone());
        async move {
            let req = requests[i as usize].clone();
            client.report_gpu_utilization(req).await.is_ok()
        }
    })
    .await;
    let _ = stop.send(());
    let _ = server.await;
    if stats.errors > 0 {
        return Err(format!(
            "{} ReportGpuUtilization calls failed",
            stats.errors
        ));
    }
    Ok(stats)
}

/// `bursar bench gpu-samples`: per database, `samples` samples through the store in
/// batches of `batch`, `naive` through the baseline, then over gRPC: `samples` in calls of
/// `batch` with `concurrency` in flight, and a quarter as many in agent-sized pushes of
/// `push` with `push_concurrency` in flight (the group commit at work).
pub async fn bench_gpu_samples(
    urls: &[String],
    samples: usize,
    naive: usize,
    batch: usize,
    concurrency: usize,
    push: usize,
    push_concurrency: usize,
) -> Result<(), String> {
    let batch = batch.clamp(1, crate::domain::limits::GPU_SAMPLES.max);
    let push = push.clamp(1, crate::domain::limits::GPU_SAMPLES.max);
    crate::outln!(
        "machine: {} cores; {samples} samples ({GPUS} GPUs per machine, 15 s apart) in batches of {batch}",
        cores()
    );
    let start = Utc::now() - Duration::days(1);
    let all = fleet_samples(samples, start);
    for url in urls {
        let store = Store::open(url).await.map_err(|e| e.to_string())?;
        let backend = store.backend();
        store
            .prune_gpu_samples(DateTime::<Utc>::MAX_UTC)
            .await
            .map_err(|e| e.to_string())?;

        let t = Instant::now();
        for chunk in all.chunks(batch) {
            store
                .insert_gpu_samples(chunk)
                .await
                .map_err(|e| e.to_string())?;
        }
        let fast = samples as f64 / t.elapsed().as_secs_f64();
        count_and_clear(&store, samples, "insert_gpu_samples").await?;

        let some = &all[..naive.min(samples)];
        let t = Instant::now();
        naive_insert(&store, some).await?;
        let slow = some.len() as f64 / t.elapsed().as_secs_f64();
        count_and_clear(&store, some.len(), "naive").await?;
        crate::outln!(
            "{backend}: insert_gpu_samples {fast:.0} samples/s; naive one row per INSERT {slow:.0} samples/s ({} samples); {:.1}x",
            some.len(),
            fast / slow
        );
        store.close().await;

        for (what, batch, concurrency, n) in [
            ("batches", batch, concurrency, samples),
            ("agent pushes", push, push_concurrency, samples / 4),
        ] {
            let stats = grpc(url, &all[..n], batch, concurrency).await?;
            let store = Store::open(url).await.map_err(|e| e.to_string())?;
            count_and_clear(&store, n, "ReportGpuUtilization").await?;
            store.close().await;
            crate::outln!(
                "{backend}: ReportGpuUtilization over loopback gRPC, {what} of {batch}, {concurrency} calls in flight: {:.0} samples/s (p50 {:.1} ms, p99 {:.1} ms per call)",
                n as f64 / stats.seconds,
                stats.p50.as_secs_f64() * 1e3,
                stats.p99.as_secs_f64() * 1e3
            );
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_generated_fleet_is_valid_and_spread_over_machines_and_time() {
        let start = Utc::now();
        let s = fleet_samples(GPUS * 120 * 3, start);
        assert!(s.iter().all(|x| x.validate().is_ok()));
        let machines: std::collections::HashSet<&str> =
            s.iter().map(|x| x.instance_id.as_str()).collect();
        assert_eq!(machines.len(), 3);
        assert_eq!(s.last().unwrap().at, start + Duration::seconds(15 * 119));
    }
}
