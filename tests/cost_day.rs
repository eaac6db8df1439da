//! The daily summary (`cost_daily` behind the `cost_day` view, migration 0012) on SQLite and
//! Postgres: after the real ingest of every shared sample its sums equal the lines' by
//! provider, day, charge category and currency (money, quantity, egress GB by the domain
//! rule, line counts); ContractedCost lands with the exact recorded totals; a replaced
//! period is not counted twice; a rejected file changes nothing; and lines stored before
//! the summary existed are summed by `migrate`.
mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use bursar::domain::egress_lines::egress_gb_per_unit;
use bursar::store::Store;
use bursar::tasks::ingest::ingest_file;
use rust_decimal::Decimal;
use sqlx::Row;

fn dec(s: &str) -> Decimal {
    s.parse().unwrap()
}

/// (provider, UTC day, charge category, currency)
type Key = (String, String, String, String);

/// Sums of one key: billed, effective, list, contracted, quantity, egress GB, lines.
#[derive(Debug, Default, Clone, PartialEq)]
struct Sums {
    billed: Decimal,
    effective: Decimal,
    list: Decimal,
    contracted: Decimal,
    quantity: Decimal,
    egress_gb: Decimal,
    egress_cost: Decimal,
    lines: i64,
}

impl Sums {
    fn normalized(mut self) -> Sums {
        for d in [
            &mut self.billed,
            &mut self.effective,
            &mut self.list,
            &mut self.contracted,
            &mut self.quantity,
            &mut self.egress_gb,
            &mut self.egress_cost,
        ] {
            *d = d.normalize();
        }
        self
    }
}

fn opt(r: &dyn Fn(usize) -> Option<String>, i: usize) -> Option<Decimal> {
    r(i).map(|s| dec(&s))
}

/// Every row of `sql` (text columns; money as exact text on both backends).
async fn text_rows(store: &Store, sql: &str) -> Vec<Vec<Option<String>>> {
    fn cols<R: Row>(r: &R) -> Vec<Option<String>>
    where
        for<'a> Option<String>: sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
        usize: sqlx::ColumnIndex<R>,
    {
        (0..r.len())
            .map(|i| r.get::<Option<String>, _>(i))
            .collect()
    }
    match store {
        Store::Sqlite(s) => sqlx::query(sql)
            .fetch_all(s.pool())
            .await
            .unwrap()
            .iter()
            .map(cols)
            .collect(),
        Store::Postgres(s) => sqlx::query(sql)
            .fetch_all(s.pool())
            .await
            .unwrap()
            .iter()
            .map(cols)
            .collect(),
    }
}

/// The `cost_day` view summed per key.
async fn day_sums(store: &Store) -> BTreeMap<Key, Sums> {
    let rows = text_rows(
        store,
        "SELECT provider_name, CAST(day AS TEXT), charge_category, billing_currency, \
         CAST(billed_cost AS TEXT), CAST(effective_cost AS TEXT), CAST(list_cost AS TEXT), \
         CAST(contracted_cost AS TEXT), CAST(consumed_quantity AS TEXT), CAST(egress_gb AS TEXT), \
         CAST(lines AS TEXT), CAST(day_start AS TEXT), CAST(billing_period_start AS TEXT), \
         CAST(egress_cost AS TEXT) FROM cost_day",
    )
    .await;
    let mut out: BTreeMap<Key, Sums> = BTreeMap::new();
    for r in rows {
        let get = |i: usize| r[i].clone();
        let day = get(1).unwrap();
        assert!(
            get(11).unwrap().starts_with(&format!("{day} 00:00:00"))
                || get(11).unwrap() == format!("{day}T00:00:00+00:00"),
            "day_start {:?} is the start of {day}",
            get(11)
        );
        assert!(get(12).is_some(), "every row has its billing period");
        let e = out
            .entry((get(0).unwrap(), day, get(2).unwrap(), get(3).unwrap()))
            .or_default();
        e.billed += dec(&get(4).unwrap());
        e.effective += dec(&get(5).unwrap());
        e.list += opt(&get, 6).unwrap_or_default();
        e.contracted += opt(&get, 7).unwrap_or_default();
        e.quantity += opt(&get, 8).unwrap_or_default();
        e.egress_gb += dec(&get(9).unwrap());
        e.lines += get(10).unwrap().parse::<i64>().unwrap();
        e.egress_cost += dec(&get(13).unwrap());
    }
    out.into_iter().map(|(k, v)| (k, v.normalized())).collect()
}

/// The `cost_line` view summed per key, the egress GB by the domain rule line by line.
async fn line_sums(store: &Store) -> BTreeMap<Key, Sums> {
    let day = match store {
        Store::Sqlite(_) => "substr(charge_period_start, 1, 10)",
        Store::Postgres(_) => "CAST(CAST(charge_period_start AT TIME ZONE 'UTC' AS DATE) AS TEXT)",
    };
    let rows = text_rows(
        store,
        &format!(
            "SELECT provider_name, {day}, charge_category, billing_currency, \
             CAST(billed_cost AS TEXT), CAST(effective_cost AS TEXT), CAST(list_cost AS TEXT), \
             CAST(contracted_cost AS TEXT), CAST(consumed_quantity AS TEXT), service_category, \
             consumed_unit FROM cost_line"
        ),
    )
    .await;
    let mut out: BTreeMap<Key, Sums> = BTreeMap::new();
    for r in rows {
        let get = |i: usize| r[i].clone();
        let (category, billed, list, qty) = (
            get(2).unwrap(),
            dec(&get(4).unwrap()),
            opt(&get, 6),
            opt(&get, 8),
        );
        let (gb, egress_cost) = match (
            qty,
            egress_gb_per_unit(
                &category,
                get(9).as_deref(),
                billed,
                list,
                get(10).as_deref(),
            ),
        ) {
            (Some(q), Some(f)) => (q * f, billed),
            _ => (Decimal::ZERO, Decimal::ZERO),
        };
        let e = out
            .entry((get(0).unwrap(), get(1).unwrap(), category, get(3).unwrap()))
            .or_default();
        e.billed += billed;
        e.effective += dec(&get(5).unwrap());
        e.list += list.unwrap_or_default();
        e.contracted += opt(&get, 7).unwrap_or_default();
        e.quantity += qty.unwrap_or_default();
        e.egress_gb += gb;
        e.egress_cost += egress_cost;
        e.lines += 1;
    }
    out.into_iter().map(|(k, v)| (k, v.normalized())).collect()
}

fn total(sums: &BTreeMap<Key, Sums>) -> Sums {
    let mut t = Sums::default();
    for s in sums.values() {
        t.billed += s.billed;
        t.effective += s.effective;
        t.list += s.list;
        t.contracted += s.contracted;
        t.quantity += s.quantity;
        t.egress_gb += s.egress_gb;
        t.egress_cost += s.egress_cost;
        t.lines += s.lines;
    }
    t.normalized()
}

/// Every FOCUS sample, and every native sample bursar reads (all but OCI).
fn samples() -> Vec<String> {
    let mut out = Vec::new();
    for (base, json) in [
        ("focus-sample", "focus-sample/expected_totals.json"),
        ("native-billing", "native-billing/expected_totals.json"),
    ] {
        let v: serde_json::Value = serde_json::from_str(&common::read_shared(json)).unwrap();
        for name in v["files"].as_object().unwrap().keys() {
            if !name.starts_with("oci/") {
                out.push(format!("{base}/{name}"));
            }
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cost_day_sums_equal_the_lines_and_contracted_cost_the_recorded_totals() {
    let focus: serde_json::Value =
        serde_json::from_str(&common::read_shared("focus-sample/expected_totals.json")).unwrap();
    let samples = samples();
    assert!(samples.len() > 30, "{} samples", samples.len());
    for db in common::both_backends().await {
        let (store, backend) = (Store::open(&db.url).await.unwrap(), db.backend);
        let mut with_contracted = 0;
        for file in &samples {
            let r = ingest_file(&store, &common::shared(file), None, false)
                .await
                .unwrap_or_else(|e| panic!("{backend}: {file}: {e}"));
            // ContractedCost: the exact recorded sum, and NULL where the file has none.
            let Some(f) = file
                .strip_prefix("focus-sample/")
                .and_then(|n| focus["files"].get(n))
            else {
                continue;
            };
            let Some(want) = f.get("ContractedCost_sum").and_then(|v| v.as_str()) else {
                continue;
            };
            with_contracted += 1;
            let rows = text_rows(
                &store,
                &format!(
                    "SELECT CAST(contracted_cost AS TEXT) FROM cost_line WHERE ingest_run_id = '{}'",
                    r.run_id
                ),
            )
            .await;
            let nulls = rows.iter().filter(|r| r[0].is_none()).count() as u64;
            let sum: Decimal = rows.iter().filter_map(|r| r[0].as_deref()).map(dec).sum();
            assert_eq!(sum.normalize(), dec(want).normalize(), "{backend}: {file}");
            assert_eq!(
                nulls,
                f["ContractedCost_nulls"].as_u64().unwrap(),
                "{backend}: {file}: nulls"
            );
        }
        assert_eq!(with_contracted, 16, "{backend}: files with ContractedCost");

        let (days, lines) = (day_sums(&store).await, line_sums(&store).await);
        assert!(days.len() > 100, "{backend}: {} keys", days.len());
        assert_eq!(days, lines, "{backend}: cost_day against cost_line");
        let t = total(&days);
        assert_eq!(
            t.lines as u64,
            store.count_cost_lines().await.unwrap(),
            "{backend}"
        );
        assert!(
            t.egress_gb > Decimal::ZERO && t.egress_cost > Decimal::ZERO,
            "{backend}: some egress"
        );

        // The FOCUS sample's own figures, as its expected totals and the egress rule's
        // documentation record them.
        let sample = focus["files"]["multi-provider/focus_sample.csv"].clone();
        let mut one = BTreeMap::new();
        let rows = text_rows(
            &store,
            "SELECT CAST(d.billed_cost AS TEXT), CAST(d.effective_cost AS TEXT), \
             CAST(d.list_cost AS TEXT), CAST(d.contracted_cost AS TEXT), CAST(d.egress_gb AS TEXT) \
             FROM cost_daily d JOIN cost_range r ON r.id = d.range_id \
             JOIN ingest_run i ON i.id = r.ingest_run_id WHERE i.source LIKE '%focus_sample.csv'",
        )
        .await;
        for r in &rows {
            for (i, name) in ["billed", "effective", "list", "contracted", "egress"]
                .iter()
                .enumerate()
            {
                *one.entry(*name).or_insert(Decimal::ZERO) +=
                    r[i].as_deref().map(dec).unwrap_or_default();
            }
        }
        let want = |k: &str| dec(sample[k].as_str().unwrap()).normalize();
        assert_eq!(
            one["billed"].normalize(),
            want("BilledCost_sum"),
            "{backend}"
        );
        assert_eq!(
            one["effective"].normalize(),
            want("EffectiveCost_sum"),
            "{backend}"
        );
        assert_eq!(one["list"].normalize(), want("ListCost_sum"), "{backend}");
        assert_eq!(
            one["contracted"].normalize(),
            want("ContractedCost_sum"),
            "{backend}"
        );
        assert_eq!(
            one["egress"].normalize(),
            dec("5.25487946858897"),
            "{backend}"
        );
        store.close().await;
    }
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

/// The CUR sample with the unblended cost of line item `row` (0-based) rewritten by `f`.
fn cur_with(row: usize, f: impl Fn(&str) -> String) -> String {
    let text = common::read_shared("native-billing/aws/sample-anonymous-aws-export-dataset.csv");
    let mut rdr = csv::Reader::from_reader(text.as_bytes());
    let header = rdr.headers().unwrap().clone();
    let col = header
        .iter()
        .position(|c| c == "lineItem/UnblendedCost")
        .unwrap();
    let mut w = csv::Writer::from_writer(vec![]);
    w.write_record(&header).unwrap();
    for (i, rec) in rdr.records().enumerate() {
        let mut cells: Vec<String> = rec.unwrap().iter().map(String::from).collect();
        if i == row {
            cells[col] = f(&cells[col]);
        }
        w.write_record(&cells).unwrap();
    }
    String::from_utf8(w.into_inner().unwrap()).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replaced_period_counts_once_and_a_rejected_file_changes_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    for db in common::both_backends().await {
        let (store, backend) = (Store::open(&db.url).await.unwrap(), db.backend);
        let focus = common::shared("focus-sample/multi-provider/focus_sample.csv");
        ingest_file(&store, &focus, None, false).await.unwrap();
        let p = write(tmp.path(), "cur.csv", &cur_with(0, str::to_string));
        ingest_file(&store, &p, None, false).await.unwrap();
        let once = day_sums(&store).await;
        let again = ingest_file(&store, &p, None, false).await.unwrap();
        assert_eq!(again.replaced_rows, 1281, "{backend}");
        assert_eq!(day_sums(&store).await, once, "{backend}: not doubled");

        // A newer export of the month replaces its summary with the lines.
        let p2 = write(
            tmp.path(),
            "cur-v2.csv",
            &cur_with(0, |v| (dec(v) + dec("100.5")).to_string()),
        );
        ingest_file(&store, &p2, None, false).await.unwrap();
        let v2 = day_sums(&store).await;
        assert_eq!(v2, line_sums(&store).await, "{backend}");
        assert_eq!(
            (total(&v2).billed - total(&once).billed).normalize(),
            dec("100.5"),
            "{backend}"
        );
        let (orphans, ranges) = scalar_pair(
            &store,
            "SELECT (SELECT COUNT(*) FROM cost_daily d WHERE NOT EXISTS \
             (SELECT 1 FROM cost_range r WHERE r.id = d.range_id)), (SELECT COUNT(*) FROM cost_range)",
        )
        .await;
        assert_eq!(orphans, 0, "{backend}: no summary outlives its lines");
        assert!(ranges >= 2, "{backend}");

        // A rejected newer export (one unreadable cost, after every other line was
        // streamed in) leaves lines and summary as they were.
        let bad = cur_with(1280, |_| "not a number".into());
        let p3 = write(tmp.path(), "cur-bad.csv", &bad);
        assert!(
            ingest_file(&store, &p3, None, false).await.is_err(),
            "{backend}"
        );
        assert_eq!(day_sums(&store).await, v2, "{backend}: nothing changed");
        store.close().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lines_stored_before_the_summary_are_summed_by_migrate() {
    for db in common::both_backends().await {
        let (store, backend) = (Store::open(&db.url).await.unwrap(), db.backend);
        for file in [
            "focus-sample/multi-provider/focus_sample.csv",
            "native-billing/aws/Oct2018-WorkshopCUR-00001.snappy.parquet",
        ] {
            ingest_file(&store, &common::shared(file), None, false)
                .await
                .unwrap();
        }
        let before = day_sums(&store).await;
        assert!(!before.is_empty(), "{backend}");
        const ROWS: &str = "SELECT COUNT(*), COUNT(DISTINCT range_id) FROM cost_daily";
        let rows = scalar_pair(&store, ROWS).await;
        // As if the lines had been stored before migration 0012.
        execute(&store, "DELETE FROM cost_daily").await;
        assert!(day_sums(&store).await.is_empty(), "{backend}");
        assert_eq!(
            store.summarize_missing_ranges().await.unwrap(),
            rows.1 as u64,
            "{backend}: every range"
        );
        assert_eq!(day_sums(&store).await, before, "{backend}");
        assert_eq!(
            scalar_pair(&store, ROWS).await,
            rows,
            "{backend}: the same rows"
        );
        // Nothing left to do: opening again sums nothing twice.
        store.migrate().await.unwrap();
        assert_eq!(
            store.summarize_missing_ranges().await.unwrap(),
            0,
            "{backend}"
        );
        assert_eq!(day_sums(&store).await, before, "{backend}");
        store.close().await;
    }
}

async fn execute(store: &Store, sql: &str) {
    match store {
        Store::Sqlite(s) => sqlx::query(sql).execute(s.pool()).await.map(|_| ()),
        Store::Postgres(s) => sqlx::query(sql).execute(s.pool()).await.map(|_| ()),
    }
    .unwrap();
}

/// Two integers from one row, on either backend.
async fn scalar_pair(store: &Store, sql: &str) -> (i64, i64) {
    match store {
        Store::Sqlite(s) => sqlx::query_as(sql).fetch_one(s.pool()).await.unwrap(),
        Store::Postgres(s) => sqlx::query_as(sql).fetch_one(s.pool()).await.unwrap(),
    }
}
