//! One SkyPilot v8 `vms.csv` (the first byte picks AWS, GCP or Azure), read as
//! `bursar import-catalog` reads a catalog folder (written to a folder in /dev/shm).
#![no_main]
use std::path::PathBuf;
use std::sync::OnceLock;

use bursar::clouds::skypilot::{ImportOptions, load_catalog_dir};
use libfuzzer_sys::fuzz_target;

fn dir() -> &'static PathBuf {
    static D: OnceLock<PathBuf> = OnceLock::new();
    D.get_or_init(|| {
        let base = if std::path::Path::new("/dev/shm").is_dir() {
            PathBuf::from("/dev/shm")
        } else {
            std::env::temp_dir()
        };
        base.join(format!("bursar-fuzz-skypilot-{}", std::process::id()))
    })
}

fuzz_target!(|data: &[u8]| {
    let Some((&sel, body)) = data.split_first() else {
        return;
    };
    let d = dir();
    let _ = std::fs::remove_dir_all(d);
    let provider = ["aws", "gcp", "azure"][sel as usize % 3];
    std::fs::create_dir_all(d.join(provider)).unwrap();
    std::fs::write(d.join(provider).join("vms.csv"), body).unwrap();
    let opts = ImportOptions {
        observed_at: chrono::DateTime::from_timestamp(1_700_000_000, 0),
        batch_size: 7,
        strict: sel & 0x80 != 0,
    };
    if let Ok((offers, _)) = load_catalog_dir(d, &opts) {
        let mut keys = std::collections::HashSet::new();
        for o in &offers {
            assert!(o.price_per_hour > rust_decimal::Decimal::ZERO, "{o:?}");
            assert!(
                keys.insert(o.key.clone()),
                "two offers with key {:?}",
                o.key
            );
        }
    }
});
