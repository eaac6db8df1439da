//! In-process SelectProvider decisions over the whole ../shared/data/skypilot-catalog
//! (about 167k offers): a GPU request and a CPU-only request (the harder one: tens of
//! thousands of candidates). Baseline in the same run: a naive scan that evaluates every
//! offer with Decimal arithmetic, as an unindexed implementation would.
//! Run: `cargo bench --bench placement`.
use std::path::PathBuf;

use bursar::clouds::skypilot::{ImportOptions, load_catalog_dir};
use bursar::domain::placement::{
    Conditions, CostModel, DataItem, Distinct, MarketPolicy, PlacementRequest,
};
use bursar::domain::{Catalog, Provider};
use criterion::{Criterion, criterion_group, criterion_main};

fn catalog() -> Catalog {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/data/skypilot-catalog");
    let opts = ImportOptions {
        observed_at: Some(chrono::Utc::now()),
        ..Default::default()
    };
    let (offers, _) = load_catalog_dir(&dir, &opts).expect("catalog");
    Catalog::new(offers, Vec::new())
}

fn input() -> Vec<DataItem> {
    vec![DataItem {
        label: "input[0]".into(),
        provider: Provider::Aws,
        region: "us-east-1".into(),
        gb_milli: 2_000_000,
    }]
}

fn bench(c: &mut Criterion) {
    let cat = catalog();
    let model = CostModel::default();
    let cond = Conditions {
        now: chrono::Utc::now(),
        failing: [false; 3],
        marks: &[],
    };
    println!("catalog offers: {}", cat.len());
    let gpu = PlacementRequest {
        accelerators: vec!["A100".into()],
        accelerator_count: 8,
        hours_milli: 2000,
        market: MarketPolicy::SpotAllowed,
        inputs: input(),
        ..Default::default()
    };
    let cpu = PlacementRequest {
        min_vcpus: 8.0,
        min_memory_gib: 32.0,
        hours_milli: 4000,
        market: MarketPolicy::SpotAllowed,
        inputs: input(),
        ..Default::default()
    };
    let gpu_distinct = PlacementRequest {
        distinct: Some(Distinct::Region),
        ..gpu.clone()
    };
    let cpu_distinct = PlacementRequest {
        distinct: Some(Distinct::Region),
        ..cpu.clone()
    };
    for (name, req) in [
        ("gpu_a100x8", &gpu),
        ("cpu_8vcpu_32gib", &cpu),
        ("gpu_a100x8_distinct_region", &gpu_distinct),
        ("cpu_8vcpu_32gib_distinct_region", &cpu_distinct),
    ] {
        let d = cat.placement().select(req, &model, &cond).unwrap();
        println!(
            "{name}: {} feasible of {} considered",
            d.feasible(),
            d.considered
        );
        c.bench_function(&format!("select/{name}"), |b| {
            b.iter(|| {
                cat.placement()
                    .select(std::hint::black_box(req), &model, &cond)
                    .unwrap()
            })
        });
        // The naive scan knows nothing of `distinct`: measured for the plain requests.
        if req.distinct.is_none() {
            c.bench_function(&format!("naive_baseline/{name}"), |b| {
                b.iter(|| {
                    bursar::cli::bench::select::naive_best(&cat, std::hint::black_box(req), &model)
                })
            });
        }
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
