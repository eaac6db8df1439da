/// `BURSAR_PERF_FILE=/path cargo test --release --lib billing::read::perf -- --ignored --nocapture`
#[test]
#[ignore]
#[allow(clippy::print_stdout)] // a manual measurement, run with --nocapture
fn parse_speed() {
    let Ok(path) = std::env::var("BURSAR_PERF_FILE") else {
        return;
    };
    let start = std::time::Instant::now();
    let mut n = 0usize;
    let mut sink = |b: Vec<crate::billing::CostLine>| {
        n += b.len();
        Ok(())
    };
    let s = super::parse_file(std::path::Path::new(&path), None, &mut sink).unwrap();
    let secs = start.elapsed().as_secs_f64();
    println!(
        "{} rows in {secs:.2}s = {:.0} rows/s ({} quarantined)",
        s.rows_read,
        s.rows_read as f64 / secs,
        s.quarantined.len()
    );
    assert_eq!(n as u64, s.lines);
}
