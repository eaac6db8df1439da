//! Arbitrary bytes prost-decoded as a SelectProviderRequest, validated as the gRPC layer
//! validates it, and a valid request placed on the shipped seed catalog.
#![no_main]
use std::sync::OnceLock;

use bursar::domain::Catalog;
use bursar::domain::placement::{Conditions, CostModel};
use bursar::proto::SelectProviderRequest;
use bursar::server::convert::placement_request;
use libfuzzer_sys::fuzz_target;
use prost::Message;

fn catalog() -> &'static Catalog {
    static C: OnceLock<Catalog> = OnceLock::new();
    C.get_or_init(|| Catalog::new(bursar::clouds::seed::seed_offers().unwrap(), Vec::new()))
}

fuzz_target!(|data: &[u8]| {
    let Ok(r) = SelectProviderRequest::decode(data) else {
        return;
    };
    let c = catalog();
    let Ok(req) = placement_request(&r, c.placement()) else {
        return;
    };
    let cond = Conditions {
        now: chrono::DateTime::from_timestamp(1_700_000_000, 0).unwrap(),
        failing: [false; 3],
        marks: &[],
    };
    let _ = c.placement().select(&req, &CostModel::default(), &cond);
});
