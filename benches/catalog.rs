//! In-process ListPrices over the whole ../shared/data/skypilot-catalog: the cost of one
//! filtered page from the in-memory catalog, without gRPC. Run: `cargo bench --bench catalog`.
use std::path::PathBuf;

use bursar::clouds::skypilot::{ImportOptions, load_catalog_dir};
use bursar::domain::{Catalog, Market, PriceFilter, Provider};
use criterion::{Criterion, criterion_group, criterion_main};

fn catalog() -> Catalog {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/data/skypilot-catalog");
    let (offers, _) = load_catalog_dir(&dir, &ImportOptions::default()).expect("catalog");
    Catalog::new(offers, Vec::new())
}

fn bench(c: &mut Criterion) {
    let cat = catalog();
    println!("catalog offers: {}", cat.len());
    let cases = [
        (
            "gpu_a100x8_page20",
            PriceFilter {
                gpu_model: Some("A100".into()),
                min_gpu_count: 8,
                ..Default::default()
            },
            20,
        ),
        (
            "azure_eastus_spot_page50",
            PriceFilter {
                provider: Some(Provider::Azure),
                region: Some("eastus".into()),
                market: Some(Market::Spot),
                ..Default::default()
            },
            50,
        ),
        (
            "max_price_0.50_page100",
            PriceFilter {
                max_price_per_hour: Some("0.50".parse().unwrap()),
                ..Default::default()
            },
            100,
        ),
        ("unfiltered_page100", PriceFilter::default(), 100),
    ];
    for (name, filter, page) in cases {
        c.bench_function(&format!("list_prices/{name}"), |b| {
            b.iter(|| {
                let p = cat.list(std::hint::black_box(&filter), None, page);
                std::hint::black_box(p.total_matching)
            })
        });
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
