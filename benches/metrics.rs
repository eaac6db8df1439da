//! What metrics cost: recording one gRPC call and one decision on the request path, and
//! rendering a `/metrics` page with realistic label sets.
//! - `record/rpc_cell`: `RpcMetrics::record` as the tower layer calls it (path looked up in
//!   the method table, then the pre-resolved cell), against `record/rpc_family_lookup`, the
//!   same counter and histogram found through the families' label maps on every call (what a
//!   plain `Family::get_or_create` per request costs), in the same run;
//! - `record/decision`: `Events::decision` (an index and an atomic add);
//! - `render`: one scrape's page — every method of every served service with OK and one error
//!   code (each a counter and a 17-bucket histogram), every event family with series, the
//!   catalog and process collectors — and its size in bytes (printed).
//!
//! Run: `cargo bench --bench metrics`.
use std::hint::black_box;
use std::time::Duration;

use bursar::domain::catalog::CatalogHandle;
use bursar::domain::idle::Decision;
use bursar::domain::placement::Outcome;
use bursar::metrics::rpc::RpcLabels;
use bursar::metrics::{Events, Exporter, IngestStatus, RpcMetrics};
use bursar::server::rpc_metrics::served_methods;
use criterion::{Criterion, criterion_group, criterion_main};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;

const PATH: &str = "/bursar.v1.PlacementService/SelectProvider";

fn bench(c: &mut Criterion) {
    let methods = served_methods();
    let rpc = RpcMetrics::new(methods.clone());

    let mut g = c.benchmark_group("record");
    g.bench_function("rpc_cell", |b| {
        b.iter(|| {
            let m = rpc.method(black_box(PATH));
            rpc.record(m, 0, Duration::from_micros(40));
        })
    });
    // The baseline: the families' own label lookup on every call.
    let requests = Family::<RpcLabels, Counter>::default();
    let seconds: Family<RpcLabels, Histogram, fn() -> Histogram> =
        Family::new_with_constructor(|| Histogram::new(bursar::metrics::rpc::BUCKETS));
    g.bench_function("rpc_family_lookup", |b| {
        b.iter(|| {
            let (service, method) = black_box(PATH)[1..].split_once('/').unwrap();
            let labels = RpcLabels {
                service: service.to_string(),
                method: method.to_string(),
                code: "OK",
            };
            requests.get_or_create(&labels).inc();
            seconds.get_or_create(&labels).observe(40e-6);
        })
    });
    let events: &'static Events = Box::leak(Box::default());
    g.bench_function("decision", |b| {
        b.iter(|| events.decision(black_box(Outcome::Placed)))
    });
    g.finish();

    // Realistic label sets: every method called, OK and one error each; events of each kind.
    for (service, method) in &methods {
        let m = rpc.method(&format!("/{service}/{method}"));
        for code in [0, 3] {
            rpc.record(m, code, Duration::from_micros(120));
        }
    }
    for s in [
        "aws-ondemand",
        "aws-spot",
        "aws-spot-advisor",
        "azure",
        "gcp",
        "seed",
    ] {
        events.price_poll(s, true, chrono::Utc::now());
        events.price_poll(s, false, chrono::Utc::now());
    }
    for f in ["focus", "cur", "gcp", "azure"] {
        events.ingest(f, IngestStatus::Ok, 1000, 2);
        events.ingest(f, IngestStatus::Rejected, 0, 40);
    }
    for ch in ["email", "slack"] {
        events.alert_delivery(ch, true);
        events.alert_delivery(ch, false);
    }
    events.idle_action(Decision::Notified);
    let exporter = Exporter::new(events, Some(&rpc), CatalogHandle::default());
    let page = exporter.render();
    let series = page.lines().filter(|l| !l.starts_with('#')).count();
    println!(
        "metrics page: {} bytes, {series} samples, {} methods in the table",
        page.len(),
        methods.len()
    );
    c.bench_function("render", |b| b.iter(|| black_box(exporter.render().len())));
}

criterion_group!(benches, bench);
criterion_main!(benches);
