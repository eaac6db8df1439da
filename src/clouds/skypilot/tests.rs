use std::sync::OnceLock;

use super::azure::*;
use super::gcp::*;
use std::collections::{HashMap, HashSet};
use std::path::Path;

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;

use super::*;

use crate::domain::money::parse_amount;
use crate::domain::{Currency, Market, Offer, Provider};

const CATALOG: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../shared/data/skypilot-catalog"
);

fn real() -> &'static (Vec<Offer>, ImportReport) {
    static REAL: OnceLock<(Vec<Offer>, ImportReport)> = OnceLock::new();
    REAL.get_or_init(|| {
        load_catalog_dir(Path::new(CATALOG), &ImportOptions::default()).expect("import")
    })
}

fn find(p: Provider, region: &str, zone: &str, ty: &str, m: Market) -> &'static Offer {
    real()
        .0
        .iter()
        .find(|o| {
            o.key.provider == p
                && o.key.region == region
                && o.key.zone == zone
                && o.key.instance_type == ty
                && o.key.market == m
        })
        .unwrap_or_else(|| panic!("no offer {p} {region} {zone:?} {ty} {m}"))
}

fn dec(s: &str) -> Decimal {
    parse_amount(s).unwrap()
}

/// The price-sanity rule (`domain::sanity`) over the whole real catalog flags exactly
/// the 17 offers an independent Python pass over the CSVs flags: newzealandnorth's whole
/// `Standard_F…ams_v6` family (a tenth of the family median, both markets) and three
/// spot prices just under a fifth of theirs.
#[test]
fn real_catalog_suspects() {
    let cat = crate::domain::Catalog::new(real().0.clone(), vec![]);
    let mut flagged: Vec<(&str, &str, Market)> = (0..cat.len())
        .filter(|&i| cat.suspicion_at(i).is_some())
        .map(|i| {
            let k = &cat.offers()[i].key;
            (k.region.as_str(), k.instance_type.as_str(), k.market)
        })
        .collect();
    flagged.sort();
    let mut want: Vec<(&str, &str, Market)> = vec![
        ("australiacentral2", "Standard_NC4as_T4_v3", Market::Spot),
        ("austriaeast", "Standard_B2ls_v2", Market::Spot),
        ("belgiumcentral", "Standard_B2ls_v2", Market::Spot),
    ];
    for ty in [
        "Standard_F2ams_v6",
        "Standard_F4ams_v6",
        "Standard_F8ams_v6",
        "Standard_F16ams_v6",
        "Standard_F32ams_v6",
        "Standard_F48ams_v6",
        "Standard_F64ams_v6",
    ] {
        for m in [Market::OnDemand, Market::Spot] {
            want.push(("newzealandnorth", ty, m));
        }
    }
    want.sort();
    assert_eq!(flagged, want);
    let i = cat
        .offers()
        .iter()
        .position(|o| {
            o.key.region == "newzealandnorth"
                && o.key.instance_type == "Standard_F8ams_v6"
                && o.key.market == Market::Spot
        })
        .unwrap();
    assert_eq!(
        cat.suspicion_at(i).unwrap().reason(Market::Spot),
        "suspect price: 0.002074/h per vCPU, 10% of the Standard_Fams_v6 spot median \
         0.02003/h (below 1/5)"
    );
}

/// Counts computed independently (Python over the same files, same rules).
#[test]
fn real_catalog_counts() {
    let (offers, r) = real();
    assert_eq!(r.rows_read(), 88_099);
    assert_eq!(r.offers(), 167_242);
    assert_eq!(offers.len(), 167_242);
    assert!(r.missing_files.is_empty(), "{:?}", r.missing_files);

    let aws = r.provider(Provider::Aws).unwrap();
    assert_eq!(
        (aws.rows_read, aws.offers, aws.on_demand, aws.spot),
        (143, 190, 51, 139)
    );
    assert_eq!(aws.skipped(SkipReason::NoSpotPrice), 4);
    assert_eq!(aws.skipped.len(), 1, "{:?}", aws.skipped);

    let gcp = r.provider(Provider::Gcp).unwrap();
    assert_eq!(
        (gcp.rows_read, gcp.offers, gcp.on_demand, gcp.spot),
        (31_285, 56_556, 28_280, 28_276)
    );
    assert_eq!(gcp.component_rows, 747);
    assert_eq!(gcp.skipped(SkipReason::Tpu), 1_648);
    assert_eq!(gcp.skipped(SkipReason::TpuHost), 896);
    assert_eq!(gcp.skipped(SkipReason::MissingAccelerator), 8);
    assert_eq!(gcp.skipped.len(), 3, "{:?}", gcp.skipped);

    let az = r.provider(Provider::Azure).unwrap();
    assert_eq!(
        (az.rows_read, az.offers, az.on_demand, az.spot),
        (56_671, 110_496, 56_671, 53_825)
    );
    assert_eq!(az.skipped(SkipReason::NoSpotPrice), 2_846);
    assert_eq!(az.skipped.len(), 1, "{:?}", az.skipped);
}

#[test]
fn real_catalog_offers_are_well_formed() {
    let (offers, _) = real();
    let mut keys = HashSet::new();
    for o in offers {
        assert!(o.price_per_hour > Decimal::ZERO, "{o:?}");
        assert_eq!(o.currency, Currency::USD);
        assert_eq!(o.source, SOURCE);
        assert!(o.attrs.is_some());
        assert!(
            !o.key.instance_type.to_ascii_lowercase().contains("tpu"),
            "{o:?}"
        );
        if o.key.provider != Provider::Gcp && o.key.market == Market::OnDemand {
            assert_eq!(o.key.zone, "", "{o:?}");
        }
        assert!(keys.insert(o.key.clone()), "duplicate key {:?}", o.key);
    }
}

#[test]
fn aws_prices_and_attrs() {
    let od = find(
        Provider::Aws,
        "us-east-1",
        "",
        "p4d.24xlarge",
        Market::OnDemand,
    );
    assert_eq!(od.price_per_hour, dec("21.957642"));
    let a = od.attrs.as_ref().unwrap();
    assert_eq!(a.gpu_model.as_deref(), Some("A100"));
    assert_eq!((a.gpu_count, a.gpu_memory_gib), (8.0, 40.0));
    assert_eq!((a.vcpus, a.arch.as_str()), (96.0, "x86_64"));
    let spot = find(
        Provider::Aws,
        "us-east-1",
        "use1-az1",
        "p4d.24xlarge",
        Market::Spot,
    );
    assert_eq!(spot.price_per_hour, dec("2.4655"));
    let p4de = find(
        Provider::Aws,
        "us-east-1",
        "",
        "p4de.24xlarge",
        Market::OnDemand,
    );
    assert_eq!(p4de.price_per_hour, dec("27.44705"));
    let a = p4de.attrs.as_ref().unwrap();
    assert_eq!(a.gpu_model.as_deref(), Some("A100-80GB"));
    assert_eq!(a.gpu_memory_gib, 80.0);
    let m6i = find(
        Provider::Aws,
        "us-east-1",
        "",
        "m6i.2xlarge",
        Market::OnDemand,
    );
    assert_eq!(m6i.price_per_hour, dec("0.384"));
    assert_eq!(m6i.attrs.as_ref().unwrap().gpu_model, None);
}

#[test]
fn gcp_gpu_machines_are_host_plus_accelerator() {
    let z = "us-central1-a";
    // a2-highgpu-1g host 0.73948 / 0.36975 + A100×1 row 2.93391 / 1.4341
    let od = find(
        Provider::Gcp,
        "us-central1",
        z,
        "a2-highgpu-1g",
        Market::OnDemand,
    );
    assert_eq!(od.price_per_hour, dec("0.73948") + dec("2.93391"));
    assert_eq!(od.price_per_hour, dec("3.67339"));
    let a = od.attrs.as_ref().unwrap();
    assert_eq!(a.gpu_model.as_deref(), Some("A100"));
    assert_eq!(
        (a.gpu_count, a.gpu_memory_gib, a.vcpus, a.memory_gib),
        (1.0, 40.0, 12.0, 85.0)
    );
    let spot = find(
        Provider::Gcp,
        "us-central1",
        z,
        "a2-highgpu-1g",
        Market::Spot,
    );
    assert_eq!(spot.price_per_hour, dec("1.80385"));
    // a3-highgpu-8g 9.46006 + H100×8 33.60609
    let h100 = find(
        Provider::Gcp,
        "us-central1",
        z,
        "a3-highgpu-8g",
        Market::OnDemand,
    );
    assert_eq!(h100.price_per_hour, dec("43.06615"));
    // a4-highgpu-8g: host row priced 0.0, the B200×8 row carries the price
    let b200 = find(
        Provider::Gcp,
        "us-central1",
        "us-central1-b",
        "a4-highgpu-8g",
        Market::OnDemand,
    );
    assert_eq!(b200.price_per_hour, dec("90.216"));
    assert_eq!(b200.attrs.as_ref().unwrap().gpu_memory_gib, 180.0);
    let g2 = find(
        Provider::Gcp,
        "us-central1",
        z,
        "g2-standard-24",
        Market::OnDemand,
    );
    assert_eq!(g2.price_per_hour, dec("2.00083"));
    assert_eq!(g2.attrs.as_ref().unwrap().gpu_count, 2.0);
    // n1-highmem-8 0.47321 / 0.17276 + T4×1 0.35 / 0.1654
    let t4 = find(
        Provider::Gcp,
        "us-central1",
        z,
        "n1-highmem-8+T4x1",
        Market::OnDemand,
    );
    assert_eq!(t4.price_per_hour, dec("0.82321"));
    let a = t4.attrs.as_ref().unwrap();
    assert_eq!(a.gpu_model.as_deref(), Some("T4"));
    assert_eq!(
        (a.gpu_count, a.gpu_memory_gib, a.vcpus, a.memory_gib),
        (1.0, 16.0, 8.0, 52.0)
    );
    let t4s = find(
        Provider::Gcp,
        "us-central1",
        z,
        "n1-highmem-8+T4x1",
        Market::Spot,
    );
    assert_eq!(t4s.price_per_hour, dec("0.33816"));
    // plain hosts are offers too, and Arm families are marked
    let host = find(
        Provider::Gcp,
        "us-central1",
        z,
        "n1-highmem-8",
        Market::OnDemand,
    );
    assert_eq!(host.price_per_hour, dec("0.47321"));
    assert!(
        real()
            .0
            .iter()
            .any(|o| o.key.instance_type.starts_with("t2a-")
                && o.attrs.as_ref().unwrap().arch == "arm64")
    );
}

#[test]
fn azure_prices_and_attrs() {
    let od = find(
        Provider::Azure,
        "eastus",
        "",
        "Standard_ND96asr_v4",
        Market::OnDemand,
    );
    assert_eq!(od.price_per_hour, dec("27.197"));
    let spot = find(
        Provider::Azure,
        "eastus",
        "",
        "Standard_ND96asr_v4",
        Market::Spot,
    );
    assert_eq!(spot.price_per_hour, dec("5.98334"));
    let a100 = find(
        Provider::Azure,
        "eastus",
        "",
        "Standard_NC24ads_A100_v4",
        Market::OnDemand,
    );
    assert_eq!(a100.price_per_hour, dec("3.673"));
    let a = a100.attrs.as_ref().unwrap();
    assert_eq!(a.gpu_model.as_deref(), Some("A100-80GB"));
    assert_eq!((a.gpu_count, a.gpu_memory_gib), (1.0, 80.0));
    let arm = find(
        Provider::Azure,
        "eastus",
        "",
        "Standard_D4ps_v5",
        Market::OnDemand,
    );
    assert_eq!(arm.attrs.as_ref().unwrap().arch, "arm64");
    let a10 = find(
        Provider::Azure,
        "eastus",
        "",
        "Standard_NV6ads_A10_v5",
        Market::OnDemand,
    );
    let a = a10.attrs.as_ref().unwrap();
    assert_eq!(a.gpu_count, 0.167);
    assert!((a.gpu_memory_gib - 24.0 * 0.167).abs() < 1e-9);
    let mi25 = find(
        Provider::Azure,
        "eastus",
        "",
        "Standard_NV4as_v4",
        Market::OnDemand,
    );
    assert_eq!(mi25.attrs.as_ref().unwrap().gpu_memory_gib, 16.0);
}

#[test]
fn batches_progress_and_timestamp() {
    let at = DateTime::parse_from_rfc3339("2026-05-20T00:00:00Z")
        .unwrap()
        .with_timezone(&Utc);
    let opts = ImportOptions {
        observed_at: Some(at),
        batch_size: 1_000,
        strict: true,
    };
    let mut sizes = Vec::new();
    let mut done = Vec::new();
    let mut last_total = 0;
    let r = read_catalog_dir(
        Path::new(CATALOG),
        &opts,
        |b: Vec<Offer>| {
            assert!(b.iter().all(|o| o.observed_at == at));
            sizes.push(b.len());
            Ok::<(), std::convert::Infallible>(())
        },
        |p| {
            assert!(p.bytes_read <= p.bytes_total);
            assert!(p.offers_total >= last_total);
            last_total = p.offers_total;
            if p.file_done {
                done.push(p.provider);
            }
        },
    )
    .unwrap();
    assert_eq!(done, Provider::ALL);
    assert_eq!(sizes.iter().sum::<usize>() as u64, r.offers());
    assert!(sizes[..sizes.len() - 1].iter().all(|&n| n == 1_000));
    assert_eq!(sizes.len(), 168);
}

const AWS_HEADER: &str = "InstanceType,AcceleratorName,AcceleratorCount,vCPUs,MemoryGiB,GpuInfo,Price,SpotPrice,Region,AvailabilityZone,Arch\n";

fn aws_dir(body: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("aws")).unwrap();
    std::fs::write(dir.path().join("aws/vms.csv"), body).unwrap();
    dir
}

#[test]
fn offers_are_dated_by_the_read_not_by_the_file_modification_time() {
    let dir = aws_dir(&format!(
        "{AWS_HEADER}m6i.large,,,2,8,,0.096,0.03,us-east-1,use1-az1,x86_64\n"
    ));
    // A catalog copied months ago keeps its old modification time.
    let old = std::time::SystemTime::now() - std::time::Duration::from_secs(90 * 86_400);
    std::fs::File::options()
        .write(true)
        .open(dir.path().join("aws/vms.csv"))
        .unwrap()
        .set_modified(old)
        .unwrap();
    let before = Utc::now();
    let (offers, _) = load_catalog_dir(dir.path(), &ImportOptions::default()).unwrap();
    assert_eq!(offers.len(), 2);
    assert!(offers.iter().all(|o| o.observed_at >= before), "{offers:?}");
}

#[test]
fn malformed_csv_names_file_and_line() {
    let dir = aws_dir(&format!(
        "{AWS_HEADER}m6i.large,,,2,8,,0.096,0.03,us-east-1,use1-az1,x86_64\n\
         m6i.large,,,2,8,,0.096,0.03,us-east-1,use1-az2\n"
    ));
    let err = load_catalog_dir(dir.path(), &ImportOptions::default()).unwrap_err();
    assert!(matches!(err, CatalogError::Csv { line: 3, .. }), "{err:?}");
    let msg = err.to_string();
    assert!(msg.contains("aws/vms.csv:3:"), "{msg}");
    assert!(msg.contains("10 fields where the header has 11"), "{msg}");
}

#[test]
fn bad_values_are_counted_or_fatal_when_strict() {
    let dir = aws_dir(&format!(
        "{AWS_HEADER}m6i.large,,,2,8,,0.096,0.03,us-east-1,use1-az1,x86_64\n\
         m6i.large,,,2,8,,0.0960,abc,us-east-1,use1-az2,x86_64\n\
         m6g.large,,,two,8,,0.077,,us-east-1,use1-az1,arm64\n\
         m6g.large,,,2,8,,0.077,,us-east-1,use1-az2,arm64\n"
    ));
    let (offers, r) = load_catalog_dir(dir.path(), &ImportOptions::default()).unwrap();
    let aws = r.provider(Provider::Aws).unwrap();
    assert_eq!(aws.rows_read, 4);
    assert_eq!(aws.skipped(SkipReason::BadValue), 2);
    assert_eq!(aws.skipped(SkipReason::NoSpotPrice), 1);
    let bad: Vec<_> = aws
        .bad_rows
        .iter()
        .map(|b| (b.line, b.column.as_str(), b.value.as_str()))
        .collect();
    assert_eq!(bad, [(3, "SpotPrice", "abc"), (4, "vCPUs", "two")]);
    assert_eq!(offers.len(), 3); // m6i od + spot az1, m6g od
    let m6g = offers
        .iter()
        .find(|o| o.key.instance_type == "m6g.large")
        .unwrap();
    assert_eq!(m6g.attrs.as_ref().unwrap().arch, "arm64");
    assert!(r.missing_files.iter().any(|p| p.ends_with("gcp/vms.csv")));

    let strict = ImportOptions {
        strict: true,
        ..Default::default()
    };
    let err = load_catalog_dir(dir.path(), &strict).unwrap_err();
    let msg = err.to_string();
    assert!(
        matches!(err, CatalogError::BadValue { line: 3, .. }),
        "{err:?}"
    );
    assert!(
        msg.contains("vms.csv:3:") && msg.contains("SpotPrice"),
        "{msg}"
    );
}

#[test]
fn missing_column_is_named() {
    let dir = aws_dir(
        "InstanceType,AcceleratorName,AcceleratorCount,vCPUs,MemoryGiB,GpuInfo,Price,Region,AvailabilityZone,Arch\n",
    );
    let err = load_catalog_dir(dir.path(), &ImportOptions::default()).unwrap_err();
    assert!(
        matches!(
            err,
            CatalogError::MissingColumn {
                column: "SpotPrice",
                ..
            }
        ),
        "{err:?}"
    );
    assert!(err.to_string().contains("\"SpotPrice\""));
}

#[test]
fn empty_dir_and_sink_errors() {
    let dir = tempfile::tempdir().unwrap();
    let err = load_catalog_dir(dir.path(), &ImportOptions::default()).unwrap_err();
    assert!(matches!(err, CatalogError::NotACatalog { .. }), "{err:?}");

    let dir = aws_dir(&format!(
        "{AWS_HEADER}m6i.large,,,2,8,,0.096,0.03,us-east-1,use1-az1,x86_64\n"
    ));
    let err = read_catalog_dir(
        dir.path(),
        &ImportOptions::default(),
        |_| Err(std::io::Error::other("disk full")),
        |_| {},
    )
    .unwrap_err();
    assert!(matches!(err, CatalogError::Sink(_)));
    assert!(err.to_string().contains("disk full"));
}

#[test]
fn gcp_composition_rules_on_a_small_file() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("gcp")).unwrap();
    std::fs::write(
        dir.path().join("gcp/vms.csv"),
        "InstanceType,vCPUs,MemoryGiB,AcceleratorName,AcceleratorCount,GpuInfo,Region,AvailabilityZone,Price,SpotPrice\n\
         a2-ultragpu-2g,24.0,340.0,,,,r1,r1-a,1.5,0.5\n\
         a2-ultragpu-2g,24.0,340.0,,,,r1,r1-b,1.5,0.5\n\
         a3-weirdgpu-8g,1.0,1.0,,,,r1,r1-a,1.0,1.0\n\
         n1-highmem-16,16.0,104.0,,,,r1,r1-a,0.9,0.2\n\
         n1-standard-1,1.0,3.75,,,,r1,r1-a,0.0475,\n\
         ,,,A100-80GB,2,,r1,r1-a,10.0,3.0\n\
         ,,,A100-80GB,2,,r1,r1-b,10.0,\n\
         ,,,V100,2,,r1,r1-a,5.0,1.0\n\
         ,,,V100,2,,r1,r1-b,5.0,1.0\n\
         ,,,P4,3,,r1,r1-a,1.0,1.0\n\
         ,,,tpu-v5p-8,1,,r1,r1-a,1.0,1.0\n",
    )
    .unwrap();
    let (offers, r) = load_catalog_dir(dir.path(), &ImportOptions::default()).unwrap();
    let g = r.provider(Provider::Gcp).unwrap();
    let price = |ty: &str, zone: &str, m: Market| {
        offers
            .iter()
            .find(|o| o.key.instance_type == ty && o.key.zone == zone && o.key.market == m)
            .map(|o| o.price_per_hour.to_string())
    };
    assert_eq!(
        price("a2-ultragpu-2g", "r1-a", Market::OnDemand).as_deref(),
        Some("11.5")
    );
    assert_eq!(
        price("a2-ultragpu-2g", "r1-a", Market::Spot).as_deref(),
        Some("3.5")
    );
    assert_eq!(
        price("a2-ultragpu-2g", "r1-b", Market::OnDemand).as_deref(),
        Some("11.5")
    );
    assert_eq!(price("a2-ultragpu-2g", "r1-b", Market::Spot), None);
    assert_eq!(
        price("n1-highmem-16+V100x2", "r1-a", Market::OnDemand).as_deref(),
        Some("5.9")
    );
    assert_eq!(
        price("n1-highmem-16+V100x2", "r1-a", Market::Spot).as_deref(),
        Some("1.2")
    );
    assert_eq!(
        price("n1-highmem-16+V100x2", "r1-b", Market::OnDemand),
        None
    );
    assert_eq!(
        price("n1-standard-1", "r1-a", Market::OnDemand).as_deref(),
        Some("0.0475")
    );
    assert_eq!(g.skipped(SkipReason::MissingAccelerator), 1);
    assert_eq!(g.skipped(SkipReason::N1HostMissing), 1);
    assert_eq!(g.skipped(SkipReason::N1CountUnsupported), 1);
    assert_eq!(g.skipped(SkipReason::UnknownGpuMachine), 1);
    assert_eq!(g.skipped(SkipReason::Tpu), 1);
    assert_eq!(g.skipped(SkipReason::NoSpotPrice), 1);
    assert_eq!(g.component_rows, 5);
    assert_eq!(g.offers, 8);
}

#[test]
fn classifies_gcp_machine_types() {
    use GcpKind::*;
    assert_eq!(classify_gcp("a2-highgpu-4g"), BuiltinGpu("A100", 4));
    assert_eq!(classify_gcp("a2-megagpu-16g"), BuiltinGpu("A100", 16));
    assert_eq!(classify_gcp("a2-ultragpu-8g"), BuiltinGpu("A100-80GB", 8));
    assert_eq!(classify_gcp("a3-edgegpu-8g-nolssd"), BuiltinGpu("H100", 8));
    assert_eq!(classify_gcp("a3-megagpu-8g"), BuiltinGpu("H100-MEGA", 8));
    assert_eq!(classify_gcp("a3-ultragpu-8g-nolssd"), BuiltinGpu("H200", 8));
    assert_eq!(classify_gcp("a4-highgpu-8g"), BuiltinGpu("B200", 8));
    assert_eq!(classify_gcp("g2-standard-12"), BuiltinGpu("L4", 1));
    assert_eq!(classify_gcp("g2-standard-96"), BuiltinGpu("L4", 8));
    assert_eq!(classify_gcp("g2-standard-20"), UnknownGpu);
    assert_eq!(classify_gcp("a3-highgpu-xg"), UnknownGpu);
    assert_eq!(classify_gcp("n2d-48-24-v5lite-tpu"), TpuHost);
    assert_eq!(classify_gcp("n2-standard-8"), Plain);
    assert_eq!(gcp_arch("t2a-standard-4"), "arm64");
    assert_eq!(gcp_arch("n2-standard-4"), "x86_64");
}

#[test]
fn azure_arm_sizes() {
    for t in ["Standard_D4ps_v5", "Standard_E8pds_v6", "Standard_B2pls_v2"] {
        assert_eq!(azure_arch(t), "arm64", "{t}");
    }
    for t in [
        "Standard_D2s_v3",
        "Standard_NC24ads_A100_v4",
        "Standard_NP10s",
        "Standard_E4-2ds_v5",
    ] {
        assert_eq!(azure_arch(t), "x86_64", "{t}");
    }
}

#[test]
fn gpu_info_and_metadata_memory() {
    let aws = "{'Gpus': [{'Name': 'A100', 'Count': 8, 'MemoryInfo': {'SizeInMiB': 40960}}], 'TotalGpuMemoryInMiB': 327680}";
    assert_eq!(gpu_info_memory_gib(aws), Some(40.0));
    assert_eq!(
        gpu_info_memory_gib(r#"{"MemoryInfo": {"SizeInMiB": 16384}}"#),
        Some(16.0)
    );
    assert_eq!(gpu_info_memory_gib("A10"), None);
    let t = GpuMemory(HashMap::from([
        ("a10".to_string(), 24.0),
        ("radeon mi25".to_string(), 16.0),
    ]));
    assert_eq!(t.lookup("A10"), Some(24.0));
    assert_eq!(t.lookup("MI25"), Some(16.0));
    assert_eq!(t.lookup("I25"), None);
    assert_eq!(gpu_memory("", "A10", 0.5, &t), 12.0);
    assert_eq!(gpu_memory("", "", 0.0, &t), 0.0);
}
