//! A gcp billing export (CSV or JSON lines) through the readers and the gcp row builder.
#![no_main]
use bursar::billing::BillingFormat;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| bursar_fuzz::billing(BillingFormat::Gcp, data));
