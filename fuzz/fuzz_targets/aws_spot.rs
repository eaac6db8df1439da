//! EC2 spot price history rows (as the SDK hands them, here from its JSON shape) into the
//! newest spot offer per zone and type.
#![no_main]
use bursar::clouds::aws::spot::{SpotRow, latest_spot_offers};
use bursar::domain::KnownInstances;
use libfuzzer_sys::fuzz_target;
use serde_json::Value;

fuzz_target!(|data: &[u8]| {
    let Ok(doc) = serde_json::from_slice::<Value>(data) else {
        return;
    };
    let Some(rows) = doc["SpotPriceHistory"].as_array() else {
        return;
    };
    let text = |r: &Value, k: &str| r[k].as_str().map(str::to_string);
    let rows: Vec<SpotRow> = rows
        .iter()
        .filter_map(|r| {
            Some(SpotRow {
                availability_zone: text(r, "AvailabilityZone")?,
                instance_type: text(r, "InstanceType")?,
                product_description: text(r, "ProductDescription"),
                spot_price: text(r, "SpotPrice")?,
                timestamp: chrono::DateTime::parse_from_rfc3339(r["Timestamp"].as_str()?)
                    .ok()?
                    .to_utc(),
            })
        })
        .collect();
    let (offers, _) = latest_spot_offers("us-east-1", &rows, &KnownInstances::new());
    for o in &offers {
        assert!(o.price_per_hour > rust_decimal::Decimal::ZERO, "{o:?}");
    }
});
