//! The AWS spot advisor document into interruption bands.
#![no_main]
use bursar::clouds::aws::advisor::parse_spot_advisor;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = parse_spot_advisor(data, &[]);
    let _ = parse_spot_advisor(data, &["us-east-1".to_string()]);
});
