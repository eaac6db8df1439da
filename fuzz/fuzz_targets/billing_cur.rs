//! A cur billing export (CSV or JSON lines) through the readers and the cur row builder.
#![no_main]
use bursar::billing::BillingFormat;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| bursar_fuzz::billing(BillingFormat::Cur, data));
