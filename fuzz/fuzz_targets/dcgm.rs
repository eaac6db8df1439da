//! One dcgm-exporter scrape (Prometheus text exposition) into per-GPU samples.
#![no_main]
use bursar::utilization::dcgm::parse_dcgm;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let at = chrono::DateTime::from_timestamp(1_700_000_000, 0).unwrap();
    for instance in [None, Some("i-0abc")] {
        let r = parse_dcgm(&text, instance, at);
        for s in &r.samples {
            let u = s.utilization_percent;
            assert!((0.0..=100.0).contains(&u), "utilisation {u} kept: {s:?}");
        }
    }
});
