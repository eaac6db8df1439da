//! One Cloud Billing Catalog SKU page, then the rate card and the composed machine offers.
#![no_main]
use bursar::clouds::gcp::catalog::{batch_from_pages, parse_page};
use bursar::domain::KnownInstances;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(page) = parse_page(data, "https://billing.example/v1/services/x/skus") else {
        return;
    };
    let at = chrono::DateTime::from_timestamp(1_700_000_000, 0).unwrap();
    let batch = batch_from_pages(&[page], &[], &KnownInstances::new(), at);
    for o in &batch.offers {
        assert!(o.price_per_hour > rust_decimal::Decimal::ZERO, "{o:?}");
    }
});
