//! `bursar bench ingest`: billing ingest rows/s for ~2M-row FOCUS CSV and CUR Parquet
//! inputs made by DuckDB from the shared samples, with DuckDB loading the same files in the
//! same run for the ratio.
use std::path::Path;

use super::load::cores;
use crate::store::Store;

fn run_python(python: &Path, args: &[&str]) -> Result<serde_json::Value, String> {
    let out = std::process::Command::new(python)
        .args(args)
        .output()
        .map_err(|e| format!("{}: {e}", python.display()))?;
    if !out.status.success() {
        return Err(format!(
            "{} {}: {}",
            python.display(),
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    serde_json::from_slice(&out.stdout).map_err(|e| format!("python output: {e}"))
}

/// `bursar bench ingest`: makes ~`rows`-row FOCUS CSV and CUR Parquet inputs (DuckDB repeats
/// the samples with shifted dates), ingests each into every database given, and times DuckDB
/// loading the same file into a table in the same run.
pub async fn bench_ingest(
    shared: &Path,
    python: &Path,
    work: &Path,
    urls: &[String],
    rows: u64,
) -> Result<(), String> {
    let scripts = Path::new(env!("CARGO_MANIFEST_DIR")).join("benches");
    std::fs::create_dir_all(work).map_err(|e| format!("{}: {e}", work.display()))?;
    crate::outln!("machine: {} cores; inputs in {}", cores(), work.display());
    let made = run_python(
        python,
        &[
            scripts
                .join("ingest_inputs.py")
                .to_str()
                .unwrap_or_default(),
            shared.to_str().unwrap_or_default(),
            work.to_str().unwrap_or_default(),
            &rows.to_string(),
        ],
    )?;
    crate::outln!("inputs: {made}");
    for file in ["focus.csv", "cur.parquet"] {
        let path = work.join(file);
        let size = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
        let duck = run_python(
            python,
            &[
                scripts.join("duckdb_load.py").to_str().unwrap_or_default(),
                path.to_str().unwrap_or_default(),
                work.join("duck.db").to_str().unwrap_or_default(),
            ],
        )?;
        let duck_secs = duck["seconds"].as_f64().unwrap_or(f64::NAN);
        let duck_rows = duck["rows"].as_f64().unwrap_or(f64::NAN);
        crate::outln!(
            "{file} ({:.0} MB): DuckDB loads {} rows in {:.2}s = {:.0} rows/s",
            size as f64 / 1e6,
            duck_rows,
            duck_secs,
            duck_rows / duck_secs
        );
        for url in urls {
            let store = Store::open(url).await.map_err(|e| e.to_string())?;
            let r = crate::tasks::ingest::ingest_file(&store, &path, None, false)
                .await
                .map_err(|e| e.to_string())?;
            crate::outln!(
                "{file} -> {}: {} rows read, {} stored, {} quarantined in {:.2}s = {:.0} rows/s; {:.2}x DuckDB's time",
                store.backend(),
                r.rows_read,
                r.rows_stored,
                r.quarantined,
                r.seconds,
                r.rows_read as f64 / r.seconds,
                r.seconds / duck_secs
            );
            store.close().await;
        }
    }
    Ok(())
}
