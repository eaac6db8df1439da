//! One AWS Price List `GetProducts` element (a JSON document in a string) into an offer.
#![no_main]
use bursar::clouds::aws::ondemand::parse_price_list_item;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let at = chrono::DateTime::from_timestamp(1_700_000_000, 0).unwrap();
    if let Ok(offer) = parse_price_list_item(text, at) {
        assert!(
            offer.price_per_hour >= rust_decimal::Decimal::ZERO,
            "negative price accepted: {offer:?}"
        );
    }
});
