//! `bursar bench dashboards`: every panel query of every dashboard in `dashboards/*.json`,
//! expanded as Grafana would send it (`crate::dashboards`), timed on a Postgres database
//! holding a year of billing. The database is filled by the real ingest of one generated
//! FOCUS file per month (`benches/dashboard_inputs.py`: the shared sample repeated with
//! shifted dates, resources and teams), so the summary tables are the ones ingest writes.
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use chrono::{Datelike, Months, NaiveDate};

use super::load::{cores, percentile};
use crate::dashboards::{Dashboard, QueryContext, TimeRange, expand};
use crate::store::Store;

/// A panel over this is flagged.
pub const GOAL: Duration = Duration::from_millis(500);

/// What the benchmark runs over.
pub struct DashboardBench {
    pub shared: PathBuf,
    pub python: PathBuf,
    pub work: PathBuf,
    pub dashboards: PathBuf,
    /// SQL adding decisions, budgets and the GPU fleet (`benches/dashboard_seed.sql`).
    pub seed: PathBuf,
    pub database_url: String,
    pub months: u32,
    pub lines_per_month: u64,
    /// The last month of billing (its first day); the data ends 28 days into it.
    pub last_month: NaiveDate,
    /// Runs per query and range.
    pub runs: usize,
    /// Time the queries on the database as it is (filled by an earlier run).
    pub skip_fill: bool,
}

/// The first day of the month before today's (UTC): the default last month of billing.
pub fn default_last_month(today: NaiveDate) -> NaiveDate {
    let first = today.with_day(1).unwrap_or(today);
    first.checked_sub_months(Months::new(1)).unwrap_or(first)
}

pub async fn bench_dashboards(b: &DashboardBench) -> Result<(), String> {
    if !b.database_url.starts_with("postgres") {
        return Err("bench dashboards runs on Postgres (Grafana's data source): give a postgres:// --database-url".into());
    }
    let store = Store::open(&b.database_url)
        .await
        .map_err(|e| e.to_string())?;
    crate::outln!(
        "machine: {} cores; {} months of ~{} lines; dashboards from {}",
        cores(),
        b.months,
        b.lines_per_month,
        b.dashboards.display()
    );
    // The ranges end where the generated billing does.
    let now = b
        .last_month
        .checked_add_days(chrono::Days::new(28))
        .unwrap_or(b.last_month)
        .and_time(chrono::NaiveTime::MIN)
        .and_utc();
    let Store::Postgres(pg) = &store else {
        return Err("not a Postgres database".into());
    };
    if !b.skip_fill {
        fill(&store, b).await?;
        let seed =
            std::fs::read_to_string(&b.seed).map_err(|e| format!("{}: {e}", b.seed.display()))?;
        let t = Instant::now();
        sqlx::raw_sql(&seed.replace("{now}", &now.to_rfc3339()))
            .execute(pg.pool())
            .await
            .map_err(|e| format!("{}: {e}", b.seed.display()))?;
        let prices = crate::tasks::poller::seed_if_empty(&store)
            .await
            .map_err(|e| e.to_string())?;
        crate::outln!(
            "seeded decisions, budgets and the GPU fleet ({}) and {prices} prices in {:.0}s",
            b.seed.display(),
            t.elapsed().as_secs_f64()
        );
    }
    sqlx::query("ANALYZE")
        .execute(pg.pool())
        .await
        .map_err(|e| e.to_string())?;
    let counts: (i64, i64) = sqlx::query_as(
        "SELECT (SELECT COUNT(*) FROM cost_fact), (SELECT COUNT(*) FROM cost_daily)",
    )
    .fetch_one(pg.pool())
    .await
    .map_err(|e| e.to_string())?;
    crate::outln!(
        "database: {} cost lines, {} cost_daily rows",
        counts.0,
        counts.1
    );

    let ranges = [
        ("30d", TimeRange::relative("now-30d", "now", now)?),
        ("12M", TimeRange::relative("now-12M", "now", now)?),
    ];
    let dashboards = Dashboard::load_dir(&b.dashboards).map_err(|e| e.to_string())?;
    crate::outln!(
        "now = {}; {} runs per query and range; goal {} ms",
        now.to_rfc3339(),
        b.runs,
        GOAL.as_millis()
    );
    crate::outln!("| dashboard | panel | range | rows | p50 ms | max ms | |");
    crate::outln!("|---|---|---|---|---|---|---|");
    let (mut over, mut failed, mut total) = (0, 0, 0);
    for (path, d) in &dashboards {
        let file = path
            .file_name()
            .map(|f| f.to_string_lossy().into_owned())
            .unwrap_or_default();
        let vars = d.bindings();
        for (panel, target, sql) in d.sql_queries() {
            for (name, range) in &ranges {
                total += 1;
                let label = if panel.targets.len() > 1 {
                    format!("{} ({})", panel.title, target.ref_id)
                } else {
                    panel.title.clone()
                };
                let ctx =
                    QueryContext::for_panel(panel, *range, &vars).map_err(|e| e.to_string())?;
                let query = match expand(sql, &ctx) {
                    Ok(q) => q,
                    Err(e) => {
                        failed += 1;
                        crate::outln!("| {file} | {label} | {name} | expand failed: {e} | | | |");
                        continue;
                    }
                };
                match time_query(pg.pool(), &query, b.runs).await {
                    Ok((rows, mut times)) => {
                        times.sort();
                        let (p50, max) = (percentile(&times, 0.5), times[times.len() - 1]);
                        let flag = if max > GOAL {
                            over += 1;
                            "**over**"
                        } else {
                            ""
                        };
                        crate::outln!(
                            "| {file} | {label} | {name} | {rows} | {:.1} | {:.1} | {flag} |",
                            ms(p50),
                            ms(max)
                        );
                    }
                    Err(e) => {
                        failed += 1;
                        crate::outln!("| {file} | {label} | {name} | failed: {e} | | | |");
                    }
                }
            }
        }
    }
    crate::outln!(
        "{total} panel queries × ranges: {over} over {} ms, {failed} failed",
        GOAL.as_millis()
    );
    store.close().await;
    if failed > 0 {
        return Err(format!("{failed} panel queries failed"));
    }
    Ok(())
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// Runs `sql` `runs` times (after one untimed run that warms the cache): rows and times.
async fn time_query(
    pool: &sqlx::PgPool,
    sql: &str,
    runs: usize,
) -> Result<(usize, Vec<Duration>), String> {
    let rows = sqlx::query(sql)
        .fetch_all(pool)
        .await
        .map_err(|e| e.to_string())?
        .len();
    let mut times = Vec::with_capacity(runs.max(1));
    for _ in 0..runs.max(1) {
        let t = Instant::now();
        sqlx::query(sql)
            .fetch_all(pool)
            .await
            .map_err(|e| e.to_string())?;
        times.push(t.elapsed());
    }
    Ok((rows, times))
}

/// The months of billing: `months` ending with `last` (first days).
fn month_starts(last: NaiveDate, months: u32) -> Vec<NaiveDate> {
    (0..months)
        .rev()
        .filter_map(|k| last.checked_sub_months(Months::new(k)))
        .collect()
}

/// One generated FOCUS file per month, each through the real ingest.
async fn fill(store: &Store, b: &DashboardBench) -> Result<(), String> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("benches")
        .join("dashboard_inputs.py");
    std::fs::create_dir_all(&b.work).map_err(|e| format!("{}: {e}", b.work.display()))?;
    let started = Instant::now();
    let mut lines = 0u64;
    for month in month_starts(b.last_month, b.months) {
        let file = b
            .work
            .join(format!("focus-{}.parquet", month.format("%Y-%m")));
        let out = std::process::Command::new(&b.python)
            .arg(&script)
            .arg(&b.shared)
            .arg(&file)
            .arg(month.to_string())
            .arg(b.lines_per_month.to_string())
            .output()
            .map_err(|e| format!("{}: {e}", b.python.display()))?;
        if !out.status.success() {
            return Err(format!(
                "{}: {}",
                script.display(),
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        let r = crate::tasks::ingest::ingest_file(store, &file, None, false)
            .await
            .map_err(|e| format!("{}: {e}", file.display()))?;
        let _ = std::fs::remove_file(&file);
        lines += r.rows_stored;
        crate::outln!(
            "ingested {}: {} lines in {:.1}s = {:.0} lines/s",
            month.format("%Y-%m"),
            r.rows_stored,
            r.seconds,
            r.rows_stored as f64 / r.seconds
        );
    }
    crate::outln!(
        "filled: {lines} lines in {:.0}s (generation included)",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_year_of_months_ends_with_the_last() {
        let d = |s: &str| s.parse::<NaiveDate>().unwrap();
        assert_eq!(default_last_month(d("2026-12-06")), d("2026-11-01"));
        assert_eq!(default_last_month(d("2026-01-31")), d("2025-12-01"));
        let m = month_starts(d("2026-11-01"), 12);
        assert_eq!(m.len(), 12);
        assert_eq!((m[0], m[11]), (d("2025-12-01"), d("2026-11-01")));
    }
}
