//! A Prometheus instant-query answer (utilisation, then evidence) into per-GPU samples.
#![no_main]
use bursar::utilization::prometheus::{read_evidence, read_utilization};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let at = chrono::DateTime::from_timestamp(1_700_000_000, 0).unwrap();
    let url = "http://127.0.0.1:9090/api/v1/query";
    if let Ok(mut r) = read_utilization(data, url, at) {
        for s in &r.samples {
            let u = s.utilization_percent;
            assert!((0.0..=100.0).contains(&u), "utilisation {u} kept: {s:?}");
        }
        let _ = read_evidence(data, url, &mut r);
    }
});
