//! Billing ingest end to end on SQLite and Postgres: every sample export lands with its
//! exact expected totals, re-ingest replaces, kill -9 mid-ingest loses nothing, bad rows
//! are quarantined with file and line, and SpendService answers exactly.
mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use bursar::proto;
use bursar::store::Store;
use bursar::tasks::ingest::{IngestReport, ingest_file};
use rust_decimal::Decimal;
use sqlx::Row;

fn dec(s: &str) -> Decimal {
    s.parse().unwrap()
}

/// One sample export and the sums `expected_totals.json` records for it, in FOCUS terms.
struct Expected {
    /// Path under ../shared/data.
    file: String,
    currency: String,
    rows: u64,
    billed: Decimal,
    /// When the file has the columns the recorded sum comes from.
    effective: Option<Decimal>,
    list: Option<Decimal>,
}

/// `key` of one file's entry in expected_totals.json: a recorded sum the test needs must be
/// there (a missing key fails, it is not taken as 0).
fn sum_of(f: &serde_json::Value, file: &str, key: &str) -> Decimal {
    let v = f
        .get(key)
        .and_then(|v| v.as_str())
        .unwrap_or_else(|| panic!("{file}: expected_totals.json has no {key}"));
    dec(v)
}

/// Whether the file has column `c` (per expected_totals.json).
fn has_column(f: &serde_json::Value, c: &str) -> bool {
    f["columns"]
        .as_array()
        .unwrap()
        .iter()
        .any(|x| x.as_str() == Some(c))
}

/// Every sample export with its recorded sums: billed always; effective, list and credits
/// wherever the file has the columns they are recorded from. FOCUS: BilledCost,
/// EffectiveCost, ListCost. CUR: unblended cost, public on-demand cost, and the amortized
/// cost the recorded formula gives (Parquet). GCP: cost, and cost plus credits. Azure: the
/// cost column.
fn expected() -> Vec<Expected> {
    let mut out = Vec::new();
    let focus: serde_json::Value =
        serde_json::from_str(&common::read_shared("focus-sample/expected_totals.json")).unwrap();
    for (name, f) in focus["files"].as_object().unwrap() {
        let file = format!("focus-sample/{name}");
        out.push(Expected {
            billed: sum_of(f, &file, "BilledCost_sum"),
            effective: has_column(f, "EffectiveCost")
                .then(|| sum_of(f, &file, "EffectiveCost_sum")),
            list: has_column(f, "ListCost").then(|| sum_of(f, &file, "ListCost_sum")),
            currency: "USD".into(),
            rows: f["rows"].as_u64().unwrap(),
            file,
        });
    }
    let native: serde_json::Value =
        serde_json::from_str(&common::read_shared("native-billing/expected_totals.json")).unwrap();
    for (name, f) in native["files"].as_object().unwrap() {
        let file = format!("native-billing/{name}");
        let (billed, effective, list) = match name.split('/').next().unwrap() {
            "oci" => continue,
            "aws" if name.ends_with(".parquet") => (
                sum_of(f, &file, "line_item_unblended_cost_sum"),
                Some(sum_of(f, &file, "amortized_cost_sum")),
                Some(sum_of(f, &file, "pricing_public_on_demand_cost_sum")),
            ),
            // expected_totals.json records no public on-demand sum for the koku sample.
            "aws" if name.ends_with("koku-2023-06-01.csv") => {
                (sum_of(f, &file, "lineItem/UnblendedCost_sum"), None, None)
            }
            "aws" => (
                sum_of(f, &file, "lineItem/UnblendedCost_sum"),
                None,
                Some(sum_of(f, &file, "pricing/publicOnDemandCost_sum")),
            ),
            "gcp" => {
                let cost = sum_of(f, &file, "cost_sum");
                assert!(
                    has_column(f, "credits"),
                    "{file}: the GCP samples have credits"
                );
                let credits = sum_of(f, &file, "credits_amount_sum");
                (cost, Some(cost + credits), None)
            }
            "azure" if has_column(f, "Cost") => (sum_of(f, &file, "Cost_sum"), None, None),
            "azure" => (sum_of(f, &file, "CostInBillingCurrency_sum"), None, None),
            other => panic!("{file}: no expectation for {other} exports"),
        };
        let currencies = f["currencies"].as_object().unwrap();
        assert_eq!(currencies.len(), 1, "{file}: one currency");
        out.push(Expected {
            currency: currencies.keys().next().unwrap().clone(),
            rows: f["rows"].as_u64().unwrap(),
            billed,
            effective,
            list,
            file,
        });
    }
    out
}

/// Exact (billed, effective, list) sums per currency of one run, read back from the
/// database (a line without a list cost adds nothing to the list sum).
async fn run_sums(store: &Store, run: &str) -> BTreeMap<String, (Decimal, Decimal, Decimal)> {
    let mut out: BTreeMap<String, (Decimal, Decimal, Decimal)> = BTreeMap::new();
    match store {
        Store::Sqlite(s) => {
            let rows = sqlx::query(
                "SELECT billing_currency, billed_cost, effective_cost, list_cost FROM cost_line \
                 WHERE ingest_run_id = ?1",
            )
            .bind(run)
            .fetch_all(s.pool())
            .await
            .unwrap();
            for r in rows {
                let e = out.entry(r.get::<String, _>(0)).or_default();
                e.0 += dec(r.get::<&str, _>(1));
                e.1 += dec(r.get::<&str, _>(2));
                e.2 += r.get::<Option<&str>, _>(3).map(dec).unwrap_or_default();
            }
        }
        Store::Postgres(s) => {
            let rows = sqlx::query(
                "SELECT billing_currency, SUM(billed_cost), SUM(effective_cost), \
                 COALESCE(SUM(list_cost), 0) FROM cost_line WHERE ingest_run_id = $1 GROUP BY 1",
            )
            .bind(run)
            .fetch_all(s.pool())
            .await
            .unwrap();
            for r in rows {
                out.insert(r.get(0), (r.get(1), r.get(2), r.get(3)));
            }
        }
    }
    out.into_iter()
        .map(|(k, (b, e, l))| (k, (b.normalize(), e.normalize(), l.normalize())))
        .collect()
}

/// Exact billed totals per currency of one run, read back from the database.
async fn run_totals(store: &Store, run: &str) -> BTreeMap<String, Decimal> {
    run_sums(store, run)
        .await
        .into_iter()
        .map(|(c, (b, _, _))| (c, b))
        .collect()
}

async fn all_totals(store: &Store) -> BTreeMap<String, Decimal> {
    let q = bursar::store::billing::SpendQuery {
        start: "2000-01-01T00:00:00Z".parse().unwrap(),
        end: "2100-01-01T00:00:00Z".parse().unwrap(),
        granularity: bursar::store::billing::Granularity::Month,
        group_by: bursar::store::billing::GroupBy::None,
        provider: None,
        service: None,
        region: None,
        account: None,
        tag: None,
    };
    let mut out = BTreeMap::new();
    for r in store.spend(&q).await.unwrap() {
        *out.entry(r.currency).or_insert(Decimal::ZERO) += r.billed;
    }
    out.into_iter().map(|(k, v)| (k, v.normalize())).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_sample_export_ingests_to_its_exact_expected_totals() {
    let expected = expected();
    let (with_effective, with_list) = (
        expected.iter().filter(|e| e.effective.is_some()).count(),
        expected.iter().filter(|e| e.list.is_some()).count(),
    );
    // 27 FOCUS files, 2 GCP (credits), 2 CUR Parquet (amortized); 20 FOCUS files with a
    // ListCost column, 3 CUR files.
    assert_eq!((with_effective, with_list), (31, 23));
    for db in common::both_backends().await {
        let store = Store::open(&db.url).await.unwrap();
        for e in &expected {
            let (file, backend) = (&e.file, db.backend);
            let r: IngestReport = ingest_file(&store, &common::shared(file), None, false)
                .await
                .unwrap_or_else(|err| panic!("{backend}: {file}: {err}"));
            assert_eq!(r.rows_read, e.rows, "{backend}: {file}: rows read");
            assert_eq!(
                (r.rows_stored, r.quarantined),
                (e.rows, 0),
                "{backend}: {file}: every row stored"
            );
            let got = run_sums(&store, &r.run_id).await;
            assert_eq!(
                got.keys().collect::<Vec<_>>(),
                vec![&e.currency],
                "{backend}: {file}: currency"
            );
            let (billed, effective, list) = got[&e.currency];
            assert_eq!(billed, e.billed.normalize(), "{backend}: {file}: billed");
            if let Some(want) = e.effective {
                assert_eq!(effective, want.normalize(), "{backend}: {file}: effective");
            }
            if let Some(want) = e.list {
                assert_eq!(list, want.normalize(), "{backend}: {file}: list");
            }
            assert_eq!(
                r.totals.get(&e.currency),
                Some(&(billed, effective)),
                "{backend}: {file}: report"
            );
        }
        store.close().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_exports_fail_clearly_and_record_a_failed_run() {
    for db in common::both_backends().await {
        let store = Store::open(&db.url).await.unwrap();
        let err = ingest_file(
            &store,
            &common::shared("native-billing/oci/reports_cost-csv_0000000030000269.csv"),
            None,
            false,
        )
        .await
        .unwrap_err();
        assert!(
            err.to_string().contains("not a known billing export"),
            "{}: {err}",
            db.backend
        );
        let runs = store.list_ingest_runs(10).await.unwrap();
        assert_eq!(runs.len(), 1, "{}", db.backend);
        assert_eq!(runs[0].status, "failed", "{}", db.backend);
        assert!(
            runs[0]
                .error
                .as_deref()
                .is_some_and(|e| e.contains("not a known billing export")),
            "{}: {:?}",
            db.backend,
            runs[0].error
        );
        assert_eq!(store.count_cost_lines().await.unwrap(), 0, "{}", db.backend);
        store.close().await;
    }
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

/// Rewrites one cell (data record `row`, column `column`) of a CSV export; returns the new
/// text and the 1-based line the record starts on.
fn edit_cell(text: &str, row: usize, column: &str, f: impl Fn(&str) -> String) -> (String, u64) {
    let mut rdr = csv::ReaderBuilder::new()
        .flexible(true)
        .from_reader(text.as_bytes());
    let header = rdr.headers().unwrap().clone();
    let col = header
        .iter()
        .position(|c| c.trim_start_matches('\u{feff}') == column)
        .unwrap();
    let mut w = csv::Writer::from_writer(vec![]);
    w.write_record(&header).unwrap();
    let mut line = 0;
    for (i, rec) in rdr.records().enumerate() {
        let rec = rec.unwrap();
        let mut cells: Vec<String> = rec.iter().map(String::from).collect();
        if i == row {
            line = rec.position().unwrap().line();
            cells[col] = f(&cells[col]);
        }
        w.write_record(&cells).unwrap();
    }
    (String::from_utf8(w.into_inner().unwrap()).unwrap(), line)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reingesting_replaces_the_period_instead_of_doubling_it() {
    let tmp = tempfile::tempdir().unwrap();
    let original =
        common::read_shared("native-billing/aws/sample-anonymous-aws-export-dataset.csv");
    for db in common::both_backends().await {
        let store = Store::open(&db.url).await.unwrap();
        let p = write(tmp.path(), "cur-2023-11.csv", &original);
        ingest_file(&store, &p, None, false).await.unwrap();
        let again = ingest_file(&store, &p, None, false).await.unwrap();
        assert_eq!(again.replaced_rows, 1281, "{}", db.backend);
        assert_eq!(
            store.count_cost_lines().await.unwrap(),
            1281,
            "{}: not doubled",
            db.backend
        );
        assert_eq!(
            all_totals(&store).await,
            [("USD".to_string(), dec("1.6823086974"))].into()
        );

        // A newer version of the same month (CUR rewrites months): one cost changes.
        let (v2, _) = edit_cell(&original, 0, "lineItem/UnblendedCost", |v| {
            (dec(v) + dec("100.5")).to_string()
        });
        let p2 = write(tmp.path(), "cur-2023-11-v2.csv", &v2);
        ingest_file(&store, &p2, None, false).await.unwrap();
        assert_eq!(
            store.count_cost_lines().await.unwrap(),
            1281,
            "{}",
            db.backend
        );
        assert_eq!(
            all_totals(&store).await,
            [("USD".to_string(), dec("102.1823086974"))].into(),
            "{}",
            db.backend
        );
        // The replaced runs' descriptive rows went with their lines: only the newest run's
        // remain, and they are fewer than its lines (an hourly export repeats them).
        let (runs, dims): (i64, i64) = scalar_pair(
            &store,
            "SELECT COUNT(DISTINCT ingest_run_id), COUNT(*) FROM cost_dims",
        )
        .await;
        assert_eq!(runs, 1, "{}", db.backend);
        assert!(dims > 0 && dims < 1281, "{}: {dims} dims", db.backend);
        store.close().await;
    }
}

/// Two integers from one row, on either backend.
async fn scalar_pair(store: &Store, sql: &str) -> (i64, i64) {
    match store {
        Store::Sqlite(s) => sqlx::query_as(sql).fetch_one(s.pool()).await.unwrap(),
        Store::Postgres(s) => sqlx::query_as(sql).fetch_one(s.pool()).await.unwrap(),
    }
}

/// Every column of the `cost_line` table (before migration 0008) or view (after), as text,
/// in id order.
async fn cost_line_snapshot(store: &Store) -> Vec<Vec<Option<String>>> {
    const COLS: [&str; 26] = [
        "id",
        "scope",
        "ingest_run_id",
        "source_line",
        "billed_cost",
        "effective_cost",
        "list_cost",
        "billing_currency",
        "billing_period_start",
        "billing_period_end",
        "charge_period_start",
        "charge_period_end",
        "charge_category",
        "provider_name",
        "service_name",
        "service_category",
        "region_id",
        "availability_zone",
        "resource_id",
        "sku_id",
        "billing_account_id",
        "sub_account_id",
        "pricing_category",
        "consumed_quantity",
        "consumed_unit",
        "tags",
    ];
    let sql = format!(
        "SELECT {} FROM cost_line ORDER BY id",
        COLS.map(|c| format!("CAST({c} AS TEXT)")).join(", ")
    );
    let read = |r: &dyn Fn(usize) -> Option<String>| (0..COLS.len()).map(r).collect::<Vec<_>>();
    match store {
        Store::Sqlite(s) => sqlx::query(&sql)
            .fetch_all(s.pool())
            .await
            .unwrap()
            .iter()
            .map(|row| read(&|i| row.get(i)))
            .collect(),
        Store::Postgres(s) => sqlx::query(&sql)
            .fetch_all(s.pool())
            .await
            .unwrap()
            .iter()
            .map(|row| read(&|i| row.get(i)))
            .collect(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_with_more_distinct_fields_than_it_holds_writes_them_early_and_loses_none() {
    // With room for only 7 combinations, the FOCUS sample's lines (hundreds of distinct
    // combinations, stored in batches of 100) write their cost_dims rows many times during
    // the run. Every line still reads back with its own fields.
    let tmp = tempfile::tempdir().unwrap();
    let lines = parsed_lines(&write(
        tmp.path(),
        "focus.csv",
        &common::read_shared("focus-sample/multi-provider/focus_sample.csv"),
    ));
    let mut expected: Vec<_> = lines.iter().map(line_fields).collect();
    expected.sort();
    for db in common::both_backends().await {
        let store = Store::open(&db.url).await.unwrap();
        let mut tx = store.begin_ingest().await.unwrap();
        tx.hold_dims_at_most(7);
        for chunk in lines.chunks(100) {
            let refs: Vec<(&str, &bursar::billing::CostLine)> =
                chunk.iter().map(|l| ("capped-scope", l)).collect();
            tx.insert_lines("capped-run", &refs).await.unwrap();
        }
        tx.commit().await.unwrap();
        assert_eq!(
            stored_line_fields(&store, "capped-run").await,
            expected,
            "{}",
            db.backend
        );
        // Every dims id a line names exists, once.
        let (lines_without, dims) = scalar_pair(
            &store,
            "SELECT (SELECT COUNT(*) FROM cost_fact f WHERE NOT EXISTS \
             (SELECT 1 FROM cost_dims d WHERE d.id = f.dims_id)), COUNT(*) FROM cost_dims",
        )
        .await;
        assert_eq!(lines_without, 0, "{}", db.backend);
        assert!(dims > 7, "{}: {dims} dims rows", db.backend);
        assert_eq!(
            all_totals(&store).await,
            all_totals_of(&lines),
            "{}",
            db.backend
        );
        store.close().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn equal_fields_share_one_dims_row_whether_or_not_the_parser_shared_them() {
    // The parser gives lines with equal fields one shared LineDims. Lines built one by one
    // (Cost Explorer's, or a parser's after its cache started afresh) carry equal fields at
    // other addresses. Either way a run stores one cost_dims row per distinct combination
    // and every line reads back with its own fields.
    let tmp = tempfile::tempdir().unwrap();
    let lines = parsed_lines(&write(
        tmp.path(),
        "focus.csv",
        &common::read_shared("focus-sample/multi-provider/focus_sample.csv"),
    ));
    let distinct: std::collections::HashSet<&bursar::billing::LineDims> =
        lines.iter().map(|l| &*l.dims).collect();
    assert!(
        distinct.len() < lines.len(),
        "the sample repeats fields: {} distinct of {}",
        distinct.len(),
        lines.len()
    );
    let copies: Vec<bursar::billing::CostLine> = lines
        .iter()
        .map(|l| bursar::billing::CostLine {
            dims: std::sync::Arc::new((*l.dims).clone()),
            ..l.clone()
        })
        .collect();
    let mut expected: Vec<_> = lines.iter().map(line_fields).collect();
    expected.sort();
    for db in common::both_backends().await {
        let store = Store::open(&db.url).await.unwrap();
        let mut tx = store.begin_ingest().await.unwrap();
        for (run, of_run) in [("shared-run", &lines), ("copied-run", &copies)] {
            for chunk in of_run.chunks(100) {
                let refs: Vec<(&str, &bursar::billing::CostLine)> =
                    chunk.iter().map(|l| (run, l)).collect();
                tx.insert_lines(run, &refs).await.unwrap();
            }
        }
        tx.commit().await.unwrap();
        let (shared, copied) = scalar_pair(
            &store,
            "SELECT (SELECT COUNT(*) FROM cost_dims WHERE ingest_run_id = 'shared-run'), \
             (SELECT COUNT(*) FROM cost_dims WHERE ingest_run_id = 'copied-run')",
        )
        .await;
        assert_eq!(
            (shared, copied),
            (distinct.len() as i64, distinct.len() as i64),
            "{}",
            db.backend
        );
        for run in ["shared-run", "copied-run"] {
            let got = stored_line_fields(&store, run).await;
            assert_eq!(got, expected, "{} {run}", db.backend);
        }
        store.close().await;
    }
}

/// A line's source line, provider, resource, SKU and region.
type LineFields = (i64, String, Option<String>, Option<String>, Option<String>);

fn line_fields(l: &bursar::billing::CostLine) -> LineFields {
    (
        l.line as i64,
        l.dims.provider_name.clone(),
        l.dims.resource_id.clone(),
        l.dims.sku_id.clone(),
        l.dims.region_id.clone(),
    )
}

/// The `LineFields` of run `run`'s stored lines, sorted.
async fn stored_line_fields(store: &Store, run: &str) -> Vec<LineFields> {
    let sql = format!(
        "SELECT source_line, provider_name, resource_id, sku_id, region_id \
         FROM cost_line WHERE ingest_run_id = '{run}'"
    );
    let mut got: Vec<LineFields> = match store {
        Store::Sqlite(s) => sqlx::query_as(&sql).fetch_all(s.pool()).await.unwrap(),
        Store::Postgres(s) => sqlx::query_as(&sql).fetch_all(s.pool()).await.unwrap(),
    };
    got.sort();
    got
}

/// Every line the parser yields for the file at `path`.
fn parsed_lines(path: &Path) -> Vec<bursar::billing::CostLine> {
    let mut lines = Vec::new();
    bursar::billing::read::parse_file(path, None, &mut |b| {
        lines.extend(b);
        Ok(())
    })
    .unwrap();
    lines
}

/// Exact billed totals per currency of parsed lines.
fn all_totals_of(lines: &[bursar::billing::CostLine]) -> BTreeMap<String, Decimal> {
    let mut out = BTreeMap::new();
    for l in lines {
        *out.entry(l.dims.billing_currency.clone())
            .or_insert(Decimal::ZERO) += l.billed_cost;
    }
    out.into_iter().map(|(k, v)| (k, v.normalize())).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lines_stored_before_the_compact_layout_migrate_unchanged_and_stay_replaceable() {
    let tmp = tempfile::tempdir().unwrap();
    let original =
        common::read_shared("native-billing/aws/sample-anonymous-aws-export-dataset.csv");
    let p = write(tmp.path(), "cur-2023-11.csv", &original);
    for db in common::both_backends().await {
        // The schema as it was before migration 0008, with two runs' lines in it.
        let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("migrations")
            .join(db.backend);
        let mut old = sqlx::migrate::Migrator::new(dir).await.unwrap();
        old.migrations = old
            .migrations
            .iter()
            .filter(|m| m.version < 8)
            .cloned()
            .collect::<Vec<_>>()
            .into();
        let store = Store::connect(&db.url).await.unwrap();
        let tags = match db.backend {
            "sqlite" => "'{\"team\":\"ml\"}'",
            _ => "'{\"team\": \"ml\"}'::jsonb",
        };
        // Timestamps as sqlx wrote them (RFC 3339, `+00:00`, fractions to 3 or 6 digits).
        let insert = |id: i64, scope: &str, run: &str, billed: &str, region: &str, tags: &str| {
            let frac = ["", ".500", ".000123", "", ""][id as usize - 1];
            format!(
                "INSERT INTO cost_line (id, scope, ingest_run_id, source_line, billed_cost, \
                 effective_cost, list_cost, billing_currency, billing_period_start, \
                 billing_period_end, charge_period_start, charge_period_end, charge_category, \
                 provider_name, service_name, region_id, consumed_quantity, consumed_unit, tags) \
                 VALUES ({id}, '{scope}', '{run}', {id}, '{billed}', '{billed}', NULL, 'USD', \
                 '2023-11-01T00:00:00+00:00', '2023-12-01T00:00:00+00:00', \
                 '2023-11-0{id}T00:00:00{frac}+00:00', '2023-11-0{id}T01:00:00+00:00', 'Usage', \
                 'AWS', 'AmazonEC2', {region}, '2', 'Hrs', {tags})"
            )
        };
        let a = "cur|AWS|111|2023-11-01T00:00:00Z";
        let b = "cur|AWS|222|2023-11-01T00:00:00Z";
        let script: Vec<String> = [
            (1, a, "old-a", "1.25", "'us-east-1'", tags),
            (2, a, "old-a", "0.0000000001", "NULL", "'{}'"),
            (3, a, "old-a", "1.25", "'us-east-1'", tags),
            (4, b, "old-b", "7", "''", "'{}'"),
            (5, b, "old-b", "9", "''", "'{}'"),
        ]
        .into_iter()
        .map(|(id, scope, run, billed, region, tags)| insert(id, scope, run, billed, region, tags))
        .chain(["DELETE FROM cost_line WHERE id = 5".to_string()])
        .collect();
        match &store {
            Store::Sqlite(s) => {
                old.run(s.pool()).await.unwrap();
                for q in &script {
                    sqlx::query(q).execute(s.pool()).await.unwrap();
                }
            }
            Store::Postgres(s) => {
                old.run(s.pool()).await.unwrap();
                for q in &script {
                    sqlx::query(q).execute(s.pool()).await.unwrap();
                }
                sqlx::query("SELECT setval('cost_line_id_seq', 5)")
                    .execute(s.pool())
                    .await
                    .unwrap();
            }
        }
        let before = cost_line_snapshot(&store).await;
        assert_eq!(before.len(), 4, "{}", db.backend);

        store.migrate().await.unwrap();
        assert_eq!(cost_line_snapshot(&store).await, before, "{}", db.backend);
        // Read by the spend query, which filters on the charge period itself: the line that
        // starts half a second into 2 November is inside [2 Nov 00:00:00.5, 3 Nov).
        let day = bursar::store::billing::SpendQuery {
            start: "2023-11-02T00:00:00.5Z".parse().unwrap(),
            end: "2023-11-03T00:00:00Z".parse().unwrap(),
            granularity: bursar::store::billing::Granularity::Day,
            group_by: bursar::store::billing::GroupBy::Region,
            provider: None,
            service: None,
            region: None,
            account: None,
            tag: None,
        };
        let rows = store.spend(&day).await.unwrap();
        assert_eq!(rows.len(), 1, "{}: {rows:?}", db.backend);
        assert_eq!(rows[0].billed, dec("0.0000000001"), "{}", db.backend);
        assert_eq!(rows[0].group, None, "{}", db.backend);
        assert_eq!(
            all_totals(&store).await,
            [("USD".to_string(), dec("9.5000000001"))].into(),
            "{}",
            db.backend
        );
        // Lines 1 and 3 share every descriptive field; '' and NULL regions stay apart.
        let (runs, dims) = scalar_pair(
            &store,
            "SELECT COUNT(DISTINCT ingest_run_id), COUNT(*) FROM cost_dims",
        )
        .await;
        assert_eq!((runs, dims), (2, 3), "{}", db.backend);
        let (ranges, _) =
            scalar_pair(&store, "SELECT COUNT(*), CAST(0 AS BIGINT) FROM cost_range").await;
        assert_eq!(ranges, 2, "{}", db.backend);

        // New lines get ids past every id used before, the deleted 5 included.
        let r = ingest_file(&store, &p, None, false).await.unwrap();
        let (min_new, _) = scalar_pair(
            &store,
            &format!(
                "SELECT MIN(id), CAST(0 AS BIGINT) FROM cost_line WHERE ingest_run_id = '{}'",
                r.run_id
            ),
        )
        .await;
        assert!(min_new > 5, "{}: new ids start at {min_new}", db.backend);
        assert_eq!(store.count_cost_lines().await.unwrap(), 4 + 1281);
        store.close().await;
    }
}

/// The test venv's Python (DuckDB is there): `.venv/bin/python`, else `python3`.
fn venv_python() -> PathBuf {
    let venv = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/python");
    if venv.exists() {
        venv
    } else {
        PathBuf::from("python3")
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zstd_and_gzip_parquet_ingest_to_the_same_totals_as_snappy() {
    // The CUR sample is Snappy-compressed; Data Exports and other tools also write Zstd and
    // Gzip. DuckDB rewrites the same rows with each codec.
    let tmp = tempfile::tempdir().unwrap();
    let src = common::shared("native-billing/aws/Oct2018-WorkshopCUR-00001.snappy.parquet");
    for db in common::both_backends().await {
        let store = Store::open(&db.url).await.unwrap();
        let base = ingest_file(&store, &src, None, false).await.unwrap();
        let want = run_totals(&store, &base.run_id).await;
        for codec in ["zstd", "gzip"] {
            let out = tmp
                .path()
                .join(format!("{}-cur-{codec}.parquet", db.backend));
            let script = format!(
                "import duckdb; duckdb.sql(\"COPY (SELECT * FROM read_parquet('{}')) TO '{}' \
                 (FORMAT parquet, COMPRESSION {codec})\")",
                src.display(),
                out.display()
            );
            let st = std::process::Command::new(venv_python())
                .args(["-c", &script])
                .status()
                .unwrap();
            assert!(st.success(), "duckdb wrote {codec} parquet");
            let r = ingest_file(&store, &out, None, false)
                .await
                .unwrap_or_else(|e| panic!("{}: {codec}: {e}", db.backend));
            assert_eq!(r.rows_stored, base.rows_stored, "{}: {codec}", db.backend);
            assert_eq!(
                run_totals(&store, &r.run_id).await,
                want,
                "{}: {codec}: same exact totals",
                db.backend
            );
        }
        store.close().await;
    }
}

/// The store holds exactly `lines` cost lines whose billed costs sum to `usd`.
async fn assert_stored(store: &Store, lines: u64, usd: Decimal, backend: &str) {
    assert_eq!(
        store.count_cost_lines().await.unwrap(),
        lines,
        "{backend}: lines"
    );
    assert_eq!(
        all_totals(store).await,
        [("USD".to_string(), usd)].into(),
        "{backend}: totals"
    );
}

/// The rows of `text` (a CSV with a header) that `keep(row)` selects, as a CSV, and the sum
/// of their `BilledCost`.
fn filter_rows(
    text: &str,
    keep: impl Fn(&csv::StringRecord, &csv::StringRecord) -> bool,
) -> (String, Decimal) {
    let mut rdr = csv::ReaderBuilder::new().from_reader(text.as_bytes());
    let head = rdr.headers().unwrap().clone();
    let cost = head
        .iter()
        .position(|h| h.trim_start_matches('\u{feff}') == "BilledCost")
        .unwrap();
    let mut out = csv::Writer::from_writer(Vec::new());
    out.write_record(&head).unwrap();
    let mut sum = Decimal::ZERO;
    for r in rdr.records() {
        let r = r.unwrap();
        if keep(&head, &r) {
            sum += dec(&r[cost]);
            out.write_record(&r).unwrap();
        }
    }
    (String::from_utf8(out.into_inner().unwrap()).unwrap(), sum)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_newer_export_of_one_interleaved_scope_replaces_only_that_scope() {
    // The FOCUS sample holds four scopes (provider | account | billing period) whose rows
    // interleave (eleven changes of scope down the file), so each scope's ids are a range
    // shared with other scopes' lines.
    let tmp = tempfile::tempdir().unwrap();
    let sample = common::read_shared("focus-sample/multi-provider/focus_sample.csv");
    let col = |head: &csv::StringRecord, r: &csv::StringRecord, name: &str| {
        let i = head
            .iter()
            .position(|h| h.trim_start_matches('\u{feff}') == name)
            .unwrap();
        r[i].to_string()
    };
    let (_, all) = filter_rows(&sample, |_, _| true);
    let (_, microsoft) = filter_rows(&sample, |h, r| col(h, r, "ProviderName") == "Microsoft");
    // A newer export of the Microsoft scope with only its first 20 lines.
    let seen = std::sync::atomic::AtomicUsize::new(0);
    let (newer, newer_sum) = filter_rows(&sample, |h, r| {
        col(h, r, "ProviderName") == "Microsoft"
            && seen.fetch_add(1, std::sync::atomic::Ordering::Relaxed) < 20
    });
    let p1 = write(tmp.path(), "focus-full.csv", &sample);
    let p2 = write(tmp.path(), "focus-microsoft-v2.csv", &newer);
    for db in common::both_backends().await {
        let store = Store::open(&db.url).await.unwrap();
        ingest_file(&store, &p1, None, false).await.unwrap();
        let r = ingest_file(&store, &p2, None, false).await.unwrap();
        assert_eq!(r.replaced_rows, 51, "{}", db.backend);
        // Only the Microsoft scope was replaced.
        assert_stored(
            &store,
            1000 - 51 + 20,
            all - microsoft + newer_sum,
            db.backend,
        )
        .await;
        // The full file again: the other scopes' lines replace themselves, Microsoft's
        // 20 lines are replaced by its 51.
        let r = ingest_file(&store, &p1, None, false).await.unwrap();
        assert_eq!(r.replaced_rows, 1000 - 51 + 20, "{}", db.backend);
        assert_stored(&store, 1000, all, db.backend).await;
        store.close().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_ingests_of_the_same_period_leave_one_copy() {
    // Two stores (as two processes or replicas) ingest copies of the same export at once:
    // ingests take turns, so the later one sees and replaces the earlier one's lines.
    let tmp = tempfile::tempdir().unwrap();
    let sample = common::read_shared("focus-sample/multi-provider/focus_sample.csv");
    let (_, all) = filter_rows(&sample, |_, _| true);
    let paths: Vec<PathBuf> = (0..3)
        .map(|i| write(tmp.path(), &format!("focus-copy-{i}.csv"), &sample))
        .collect();
    for db in common::both_backends().await {
        let mut tasks = Vec::new();
        for p in paths.clone() {
            let store = Store::open(&db.url).await.unwrap();
            tasks.push(tokio::spawn(async move {
                let r = ingest_file(&store, &p, None, false).await;
                store.close().await;
                r
            }));
        }
        for t in tasks {
            let r = t.await.unwrap().unwrap();
            assert_eq!(r.rows_stored, 1000, "{}", db.backend);
        }
        let store = Store::open(&db.url).await.unwrap();
        // One copy.
        assert_stored(&store, 1000, all, db.backend).await;
        store.close().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ingest_waits_its_turn_and_gives_up_clearly_after_its_lock_wait() {
    // Another ingest holds the database (a run's transaction, open after its first lines).
    // A second ingest with a short lock wait gives up with an error naming the wait and
    // stores nothing; one with the default wait blocks until the first commits, then lands
    // whole. The first run's lines are untouched either way.
    let tmp = tempfile::tempdir().unwrap();
    let sample = common::read_shared("focus-sample/multi-provider/focus_sample.csv");
    let (_, all) = filter_rows(&sample, |_, _| true);
    let path = write(tmp.path(), "focus.csv", &sample);
    let lines = parsed_lines(&path);
    let held_lines: Vec<(&str, &bursar::billing::CostLine)> =
        lines.iter().take(10).map(|l| ("held-scope", l)).collect();
    for db in common::both_backends().await {
        let holder = Store::open(&db.url).await.unwrap();
        let mut held = holder.begin_ingest().await.unwrap();
        held.insert_lines("held-run", &held_lines).await.unwrap();

        let impatient = Store::open(&db.url)
            .await
            .unwrap()
            .with_ingest_lock_wait(Duration::from_millis(300));
        let err = ingest_file(&impatient, &path, None, false)
            .await
            .expect_err("the lock is held");
        assert!(
            matches!(
                err,
                bursar::tasks::ingest::IngestError::Store(bursar::store::StoreError::Busy { .. })
            ),
            "{}: {err}",
            db.backend
        );
        let msg = err.to_string();
        assert!(
            msg.contains("300ms") && msg.contains("--lock-wait"),
            "{}: {msg}",
            db.backend
        );
        impatient.close().await;

        let patient = Store::open(&db.url).await.unwrap();
        let p = path.clone();
        let waiting = tokio::spawn(async move {
            let r = ingest_file(&patient, &p, None, false).await;
            patient.close().await;
            r
        });
        tokio::time::sleep(Duration::from_millis(1500)).await;
        assert!(
            !waiting.is_finished(),
            "{}: the second ingest waits for the first instead of failing or writing beside it",
            db.backend
        );
        held.commit().await.unwrap();
        let r = tokio::time::timeout(Duration::from_secs(60), waiting)
            .await
            .expect("the waiting ingest goes on once the lock is free")
            .unwrap()
            .unwrap_or_else(|e| panic!("{}: {e}", db.backend));
        assert_eq!(r.rows_stored, 1000, "{}", db.backend);
        assert_eq!(
            run_totals(&holder, &r.run_id).await,
            [("USD".to_string(), all)].into(),
            "{}",
            db.backend
        );
        assert_eq!(
            holder.count_cost_lines().await.unwrap(),
            1010,
            "{}: the first run's lines stay",
            db.backend
        );
        holder.close().await;
    }
}

/// Runs the `bursar` binary with `args` (no BURSAR_* settings from the environment but
/// `env`).
async fn bursar(args: &[&str], env: &[(&str, &str)]) -> std::process::Output {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_bursar"));
    cmd.args(args)
        .env_remove("BURSAR_DATABASE_URL")
        .env_remove("BURSAR_CONFIG")
        .env_remove("BURSAR_SERVER")
        .env_remove("BURSAR_INGEST_ACCEPT_BAD_ROWS");
    for (k, v) in env {
        cmd.env(k, v);
    }
    tokio::task::spawn_blocking(move || cmd.output().unwrap())
        .await
        .unwrap()
}

/// The newest ingest run.
async fn newest_run(store: &Store) -> bursar::store::billing::IngestRunRow {
    store.list_ingest_runs(1).await.unwrap().remove(0)
}

/// The FOCUS sample cut inside a row about halfway through, and the line of that row.
fn focus_cut_mid_row(sample: &str) -> (String, u64) {
    let mut cut = sample.len() / 2;
    while !sample.is_char_boundary(cut) || sample[..cut].ends_with('\n') {
        cut += 1;
    }
    let line = sample[..cut].matches('\n').count() as u64 + 1;
    (sample[..cut].to_string(), line)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_damaged_export_replaces_nothing_and_its_rejection_names_lines_and_reasons() {
    // Over a complete ingest of the same period, each damaged copy of it exits 1, names
    // the line and the reason, and leaves the stored lines and totals as they were; the
    // run is recorded with why.
    use std::io::Write;
    let tmp = tempfile::tempdir().unwrap();
    let sample = common::read_shared("focus-sample/multi-provider/focus_sample.csv");
    let full = write(tmp.path(), "focus.csv", &sample);
    let (cut, cut_line) = focus_cut_mid_row(&sample);
    let cut_path = write(tmp.path(), "focus-cut.csv", &cut);
    let mut bad = sample.clone();
    let mut bad_lines = Vec::new();
    for row in [0, 499, 998] {
        let (text, line) = edit_cell(&bad, row, "BilledCost", |_| "twelve dollars".into());
        bad = text;
        bad_lines.push(line);
    }
    let bad_path = write(tmp.path(), "focus-3-bad.csv", &bad);
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(sample.as_bytes()).unwrap();
    let gz = gz.finish().unwrap();
    let gz_path = tmp.path().join("focus-cut.csv.gz");
    std::fs::write(&gz_path, &gz[..gz.len() / 2]).unwrap();
    let cur = common::shared("native-billing/aws/Oct2018-WorkshopCUR-00001.snappy.parquet");
    let pq = std::fs::read(&cur).unwrap();
    let pq_path = tmp.path().join("cur-cut.parquet");
    std::fs::write(&pq_path, &pq[..pq.len() * 3 / 4]).unwrap();
    let focus_total = dec("20.52022672899");
    let cur_total = dec("4064.4831315379");
    for db in common::both_backends().await {
        let backend = db.backend;
        let store = Store::open(&db.url).await.unwrap();
        ingest_file(&store, &full, None, false).await.unwrap();
        ingest_file(&store, &cur, None, false).await.unwrap();
        let before: BTreeMap<String, Decimal> = [("USD".into(), focus_total + cur_total)].into();
        assert_eq!(all_totals(&store).await, before, "{backend}");
        let lines_before = store.count_cost_lines().await.unwrap();
        assert_eq!(lines_before, 1000 + 119_307, "{backend}");
        let bad_reasons: Vec<String> = bad_lines
            .iter()
            .map(|l| format!("line {l} (BilledCost): BilledCost: not a number"))
            .collect();
        let cases: Vec<(&Path, &str, Vec<String>)> = vec![
            (
                &cut_path,
                "rejected",
                vec![
                    format!("the file ends inside the row at line {cut_line}"),
                    format!("line {cut_line}: the file ends inside this row"),
                ],
            ),
            (&bad_path, "rejected", {
                let mut v = vec!["3 of 1000 rows could not be read".to_string()];
                v.extend(bad_reasons.clone());
                v
            }),
            (
                &gz_path,
                "failed",
                vec!["corrupt or truncated gzip data".into(), ": line ".into()],
            ),
            (&pq_path, "failed", vec!["Parquet".into()]),
        ];
        for (path, status, want) in cases {
            let name = path.file_name().unwrap().to_str().unwrap();
            let o = bursar(
                &[
                    "ingest",
                    path.to_str().unwrap(),
                    "--quiet",
                    "--database-url",
                    &db.url,
                ],
                &[],
            )
            .await;
            let stderr = String::from_utf8_lossy(&o.stderr);
            assert_eq!(o.status.code(), Some(1), "{backend}: {name}: {stderr}");
            for w in &want {
                assert!(
                    stderr.contains(w.as_str()),
                    "{backend}: {name}: {w:?} in {stderr}"
                );
            }
            assert_eq!(
                store.count_cost_lines().await.unwrap(),
                lines_before,
                "{backend}: {name}: nothing stored or replaced"
            );
            assert_eq!(all_totals(&store).await, before, "{backend}: {name}");
            let run = newest_run(&store).await;
            assert_eq!(run.status, status, "{backend}: {name}");
            assert_eq!(run.rows_stored, 0, "{backend}: {name}");
            assert!(
                run.error
                    .as_deref()
                    .is_some_and(|e| e.contains(want[0].as_str())),
                "{backend}: {name}: {:?}",
                run.error
            );
        }
        // With --json the failure is printed too.
        let o = bursar(
            &[
                "ingest",
                gz_path.to_str().unwrap(),
                "--json",
                "--database-url",
                &db.url,
            ],
            &[],
        )
        .await;
        assert_eq!(o.status.code(), Some(1), "{backend}");
        let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        assert_eq!(v["status"], "failed", "{backend}: {v}");
        assert!(
            v["error"].as_str().unwrap().contains("gzip"),
            "{backend}: {v}"
        );
        // The rejected runs' quarantined rows were kept, with line, column and reason.
        let runs = store.list_ingest_runs(10).await.unwrap();
        let bad_run = runs
            .iter()
            .find(|r| r.source.ends_with("focus-3-bad.csv"))
            .unwrap();
        assert_eq!(bad_run.rows_quarantined, 3, "{backend}");
        let rows = store
            .list_quarantine(&bad_run.id, 0, 10)
            .await
            .unwrap()
            .unwrap();
        let got: Vec<(i64, Option<&str>, bool)> = rows
            .iter()
            .map(|q| {
                let named =
                    q.reason.contains("twelve dollars") && q.file.ends_with("focus-3-bad.csv");
                (q.line, q.column.as_deref(), named)
            })
            .collect();
        let want: Vec<(i64, Option<&str>, bool)> = bad_lines
            .iter()
            .map(|l| (*l as i64, Some("BilledCost"), true))
            .collect();
        assert_eq!(got, want, "{backend}");
        let cut_run = runs
            .iter()
            .find(|r| r.source.ends_with("focus-cut.csv"))
            .unwrap();
        let rows = store
            .list_quarantine(&cut_run.id, 0, 10)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(rows.len(), 1, "{backend}");
        assert_eq!(
            (rows[0].line, rows[0].column.as_deref()),
            (cut_line as i64, None)
        );
        assert!(
            !rows[0].raw.is_empty() && cut.ends_with(&rows[0].raw),
            "{backend}: {:?} / {:?}",
            rows[0].raw,
            &cut[cut.len() - 300..]
        );
        store.close().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn accepting_a_share_of_bad_rows_stores_the_rest_and_shows_the_quarantine() {
    let tmp = tempfile::tempdir().unwrap();
    let sample = common::read_shared("focus-sample/multi-provider/focus_sample.csv");
    let full = write(tmp.path(), "focus.csv", &sample);
    // Three rows get costs that are not numbers; their original costs leave the total.
    let mut bad = sample.clone();
    let mut bad_lines = Vec::new();
    let lost = std::cell::Cell::new(Decimal::ZERO);
    for row in [3, 400, 900] {
        let (text, line) = edit_cell(&bad, row, "BilledCost", |v| {
            lost.set(lost.get() + dec(v));
            "n/a".into()
        });
        bad = text;
        bad_lines.push(line);
    }
    let bad_path = write(tmp.path(), "focus-3-bad.csv", &bad);
    let (cut, cut_line) = focus_cut_mid_row(&sample);
    let cut_path = write(tmp.path(), "focus-cut.csv", &cut);
    let all = dec("20.52022672899");
    for db in common::both_backends().await {
        let backend = db.backend;
        let store = Store::open(&db.url).await.unwrap();
        ingest_file(&store, &full, None, false).await.unwrap();
        let ingest =
            |path: PathBuf, share: &'static str, env: &'static [(&'static str, &'static str)]| {
                let url = db.url.clone();
                async move {
                    let mut args = vec![
                        "ingest",
                        path.to_str().unwrap(),
                        "--quiet",
                        "--json",
                        "--database-url",
                        &url,
                    ];
                    if !share.is_empty() {
                        args.extend(["--accept-bad-rows", share]);
                    }
                    bursar(&args, env).await
                }
            };
        // 3 of 1000 is more than 0.2%, as the config key sets it: nothing stored.
        let o = ingest(
            bad_path.clone(),
            "",
            &[("BURSAR_INGEST_ACCEPT_BAD_ROWS", "0.2%")],
        )
        .await;
        assert_eq!(o.status.code(), Some(1), "{backend}");
        let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        assert_eq!(v["status"], "rejected", "{backend}");
        assert!(
            v["reason"]
                .as_str()
                .unwrap()
                .contains("more than the accepted 0.2%"),
            "{v}"
        );
        assert_stored(&store, 1000, all, backend).await;
        // An incomplete file is rejected even when every bad row would be accepted.
        let o = ingest(cut_path.clone(), "100%", &[]).await;
        assert_eq!(o.status.code(), Some(1), "{backend}");
        let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        assert_eq!(v["quarantined"][0]["line"], cut_line, "{backend}");
        assert_stored(&store, 1000, all, backend).await;
        // 0.3% (the flag overriding the config key) stores the 997 others, replacing the
        // period, and quarantines the 3.
        let o = ingest(
            bad_path.clone(),
            "0.3%",
            &[("BURSAR_INGEST_ACCEPT_BAD_ROWS", "0")],
        )
        .await;
        assert!(
            o.status.success(),
            "{backend}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        assert_eq!(
            (
                &v["rows_stored"],
                &v["rows_quarantined"],
                &v["rows_replaced"]
            ),
            (
                &serde_json::json!(997),
                &serde_json::json!(3),
                &serde_json::json!(1000)
            ),
            "{backend}"
        );
        let lines: Vec<u64> = v["quarantined"]
            .as_array()
            .unwrap()
            .iter()
            .map(|q| q["line"].as_u64().unwrap())
            .collect();
        assert_eq!(lines, bad_lines, "{backend}");
        assert_stored(&store, 997, all - lost.get(), backend).await;
        let accepted = v["run_id"].as_str().unwrap().to_string();
        let rejected = store
            .list_ingest_runs(10)
            .await
            .unwrap()
            .into_iter()
            .find(|r| r.status == "rejected" && r.source.ends_with("focus-3-bad.csv"))
            .unwrap()
            .id;
        store.close().await;

        // The quarantine over gRPC, page by page, and through the CLI.
        let server = common::TestServer::start(common::test_config(&db)).await;
        let mut c = proto::spend_service_client::SpendServiceClient::new(server.channel().await);
        let page = |run: &str, limit: i32, page_token: String| proto::ListQuarantineRequest {
            run_id: run.to_string(),
            limit,
            page_token,
        };
        let first = c
            .list_quarantine(page(&accepted, 2, String::new()))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(first.rows.len(), 2, "{backend}");
        assert!(!first.next_page_token.is_empty());
        let rest = c
            .list_quarantine(page(&accepted, 2, first.next_page_token.clone()))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(rest.next_page_token, "", "{backend}");
        let rows: Vec<(u64, String, String)> = first
            .rows
            .iter()
            .chain(&rest.rows)
            .map(|q| (q.line, q.column.clone(), q.file.clone()))
            .collect();
        let want: Vec<(u64, String, String)> = bad_lines
            .iter()
            .map(|l| (*l, "BilledCost".to_string(), bad_path.display().to_string()))
            .collect();
        assert_eq!(rows, want, "{backend}");
        assert!(
            first.rows[0].reason.contains("\"n/a\""),
            "{:?}",
            first.rows[0]
        );
        assert!(first.rows[0].raw.contains("n/a"));
        let err = c
            .list_quarantine(page("no-such-run", 0, String::new()))
            .await
            .unwrap_err();
        assert_eq!(err.code(), tonic::Code::NotFound, "{backend}");
        assert!(err.message().starts_with("run_id"), "{}", err.message());
        for (req, field) in [
            (page("", 0, String::new()), "run_id"),
            (page(&accepted, 5000, String::new()), "limit"),
            (page(&accepted, 0, "garbage".into()), "page_token"),
        ] {
            let err = c.list_quarantine(req).await.unwrap_err();
            assert_eq!(err.code(), tonic::Code::InvalidArgument, "{backend}");
            assert!(err.message().starts_with(field), "{}", err.message());
        }
        let o = bursar(
            &[
                "ingest-runs",
                "--quarantine",
                &rejected,
                "--json",
                "--server",
                &server.url,
            ],
            &[],
        )
        .await;
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        let lines: Vec<u64> = v["rows"]
            .as_array()
            .unwrap()
            .iter()
            .map(|q| q["line"].as_u64().unwrap())
            .collect();
        assert_eq!(lines, bad_lines, "{backend}");
        assert_eq!(v["rows"][0]["column"], "BilledCost");
        let o = bursar(
            &[
                "ingest-runs",
                "--quarantine",
                &rejected,
                "--limit",
                "2",
                "--server",
                &server.url,
            ],
            &[],
        )
        .await;
        let table = String::from_utf8_lossy(&o.stdout);
        assert!(o.status.success());
        assert!(table.starts_with("LINE"), "{table}");
        assert_eq!(table.lines().count(), 3, "{table}");
        assert!(
            table.contains(&format!("{}", bad_lines[1]))
                && !table.contains(&format!(" {} ", bad_lines[2])),
            "{table}"
        );
        let o = bursar(
            &[
                "ingest-runs",
                "--quarantine",
                "no-such-run",
                "--server",
                &server.url,
            ],
            &[],
        )
        .await;
        assert_eq!(o.status.code(), Some(1), "{backend}");
        server.stop().await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_reports_a_cut_file_once_stores_nothing_and_takes_its_complete_copy() {
    // `ingest --watch`: a file still being copied (cut mid-row) that settles is rejected
    // and reported once, not retried at every scan; a later file is ingested (so the
    // watcher scanned on), and the complete copy landing over the cut one is stored.
    let sample = common::read_shared("focus-sample/multi-provider/focus_sample.csv");
    let (cut, cut_line) = focus_cut_mid_row(&sample);
    let other = common::read_shared("native-billing/aws/sample-anonymous-aws-export-dataset.csv");
    for db in common::both_backends().await {
        let backend = db.backend;
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("focus.csv");
        std::fs::write(&target, &cut).unwrap();
        let store = Store::open(&db.url).await.unwrap();
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_bursar"))
            .args([
                "ingest",
                dir.path().to_str().unwrap(),
                "--watch",
                "--watch-every",
                "50ms",
            ])
            .args(["--json", "--quiet", "--database-url", &db.url])
            .env_remove("BURSAR_INGEST_ACCEPT_BAD_ROWS")
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let out = std::sync::Arc::new(std::sync::Mutex::new(Vec::<serde_json::Value>::new()));
        let reader = {
            let out = out.clone();
            let stdout = child.stdout.take().unwrap();
            std::thread::spawn(move || {
                use std::io::BufRead;
                for line in std::io::BufReader::new(stdout).lines() {
                    let Ok(line) = line else { break };
                    if let Ok(v) = serde_json::from_str(&line) {
                        out.lock().unwrap().push(v);
                    }
                }
            })
        };
        let seen = |out: &std::sync::Arc<std::sync::Mutex<Vec<serde_json::Value>>>| {
            out.lock().unwrap().clone()
        };
        // At start, the file is taken as it is: rejected.
        eventually(
            "the cut file rejected",
            Duration::from_secs(120),
            || async { seen(&out).iter().any(|v| v["status"] == "rejected") },
        )
        .await;
        // Named after the cut file: in a scan that reports both, the cut file is handled
        // first, so once this one is stored the watcher has seen the cut file again.
        std::fs::write(dir.path().join("later-cur.csv"), &other).unwrap();
        eventually(
            "the next file ingested",
            Duration::from_secs(120),
            || async { seen(&out).iter().any(|v| v["rows_stored"] == 1281) },
        )
        .await;
        let reports = seen(&out);
        let rejected: Vec<&serde_json::Value> = reports
            .iter()
            .filter(|v| v["status"] == "rejected")
            .collect();
        assert_eq!(rejected.len(), 1, "{backend}: reported once: {reports:?}");
        assert_eq!(rejected[0]["quarantined"][0]["line"], cut_line, "{backend}");
        assert_eq!(store.count_cost_lines().await.unwrap(), 1281, "{backend}");
        let runs = store.list_ingest_runs(10).await.unwrap();
        assert_eq!(runs.len(), 2, "{backend}: not retried: {runs:?}");
        // The complete copy lands (written aside, then renamed over the cut one).
        let part = dir.path().join(".focus.csv.part");
        std::fs::write(&part, &sample).unwrap();
        std::fs::rename(&part, &target).unwrap();
        eventually(
            "the complete copy ingested",
            Duration::from_secs(120),
            || async { seen(&out).iter().any(|v| v["rows_stored"] == 1000) },
        )
        .await;
        assert_stored(
            &store,
            1000 + 1281,
            dec("20.52022672899") + dec("1.6823086974"),
            backend,
        )
        .await;
        child.kill().unwrap();
        child.wait().unwrap();
        reader.join().unwrap();
        store.close().await;
    }
}

/// Whether an ingest is inside its file transaction on the database at `url`: SQLite's
/// write lock is held, or (Postgres) the ingest advisory lock, taken as its first lines go
/// in.
async fn ingest_transaction_open(url: &str) -> bool {
    use sqlx::Connection;
    if url.starts_with("sqlite:") {
        let mut c = sqlx::SqliteConnection::connect(url).await.unwrap();
        sqlx::query("PRAGMA busy_timeout = 0")
            .execute(&mut c)
            .await
            .unwrap();
        let held = sqlx::query("BEGIN IMMEDIATE")
            .execute(&mut c)
            .await
            .is_err();
        if !held {
            sqlx::query("ROLLBACK").execute(&mut c).await.unwrap();
        }
        c.close().await.unwrap();
        held
    } else {
        let mut c = sqlx::PgConnection::connect(url).await.unwrap();
        let n: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM pg_locks WHERE locktype = 'advisory' AND granted \
             AND database = (SELECT oid FROM pg_database WHERE datname = current_database())",
        )
        .fetch_one(&mut c)
        .await
        .unwrap();
        c.close().await.unwrap();
        n > 0
    }
}

/// Polls `check` every 50 ms until it holds; panics after a generous `deadline`.
async fn eventually<F, Fut>(what: &str, deadline: Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let until = tokio::time::Instant::now() + deadline;
    while !check().await {
        assert!(
            tokio::time::Instant::now() < until,
            "timed out waiting: {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_mid_ingest_leaves_the_previous_state_whole_and_the_run_interrupted() {
    // The child reads its export from a named pipe that the test writes 30,000 rows into
    // and keeps open: the child cannot finish, so it is killed mid-ingest every time, once
    // it is inside its file transaction.
    let tmp = tempfile::tempdir().unwrap();
    let sample = common::read_shared("focus-sample/multi-provider/focus_sample.csv");
    let mut lines = sample.lines();
    let header = lines.next().unwrap();
    let body: Vec<&str> = lines.collect();
    let small = write(tmp.path(), "focus.csv", &sample);
    let copies = |n: usize| {
        let mut big = String::with_capacity(sample.len() * n);
        big.push_str(header);
        big.push('\n');
        for _ in 0..n {
            for l in &body {
                big.push_str(l);
                big.push('\n');
            }
        }
        big
    };
    let big_path = write(tmp.path(), "focus-big.csv", &copies(50));
    let feed = copies(30);
    for db in common::both_backends().await {
        let backend = db.backend;
        let store = Store::open(&db.url).await.unwrap();
        ingest_file(&store, &small, None, false).await.unwrap();
        let before = all_totals(&store).await;
        assert_eq!(store.count_cost_lines().await.unwrap(), 1000);

        let fifo = tmp.path().join(format!("focus-pipe-{backend}.csv"));
        let made = std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap();
        assert!(made.success());
        // Opened for reading and writing, so opening neither blocks nor ends at EOF.
        let mut pipe = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(&fifo)
            .unwrap();
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_bursar"))
            .args([
                "ingest",
                fifo.to_str().unwrap(),
                "--quiet",
                "--database-url",
                &db.url,
            ])
            .env("BURSAR_INGEST_HEARTBEAT", "100ms")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let data = feed.clone();
        let writer = std::thread::spawn(move || {
            use std::io::Write;
            pipe.write_all(data.as_bytes()).unwrap();
            pipe // kept open: the child waits for more
        });
        eventually(
            "the child's run under way, inside its file transaction",
            Duration::from_secs(120),
            || async {
                let running = store
                    .list_ingest_runs(5)
                    .await
                    .unwrap()
                    .iter()
                    .any(|r| r.status == "running");
                running && ingest_transaction_open(&db.url).await
            },
        )
        .await;
        let pipe = tokio::task::spawn_blocking(move || writer.join().unwrap())
            .await
            .unwrap();
        // It has taken all 30,000 rows and waits for more, inside its file transaction.
        eventually(
            "the child inside its file transaction",
            Duration::from_secs(120),
            || ingest_transaction_open(&db.url),
        )
        .await;
        let killed = std::process::Command::new("kill")
            .args(["-9", &child.id().to_string()])
            .status()
            .unwrap();
        assert!(killed.success());
        let status = child.wait().unwrap();
        drop(pipe);
        assert!(!status.success(), "{backend}: killed before it finished");
        assert_eq!(
            store.count_cost_lines().await.unwrap(),
            1000,
            "{backend}: previous state whole"
        );
        assert_eq!(all_totals(&store).await, before, "{backend}");
        // Left `running` by the dead process until its lease runs out and a check notices.
        let killed_run = newest_run(&store).await;
        assert_eq!(killed_run.status, "running", "{backend}");
        eventually(
            "the killed run marked interrupted",
            Duration::from_secs(60),
            || async {
                store
                    .interrupt_expired_runs(chrono::Utc::now())
                    .await
                    .unwrap()
                    .contains(&killed_run.id)
            },
        )
        .await;
        let run = store
            .list_ingest_runs(5)
            .await
            .unwrap()
            .into_iter()
            .find(|r| r.id == killed_run.id)
            .unwrap();
        assert_eq!(run.status, "interrupted", "{backend}");
        assert!(run.finished_at.is_some());
        assert!(
            run.error
                .as_deref()
                .is_some_and(|e| e.contains("stopped without finishing"))
        );

        // The next run ends with exactly the expected rows and totals.
        let r = ingest_file(&store, &big_path, None, false).await.unwrap();
        assert_eq!(r.rows_stored, 50_000);
        assert_eq!(store.count_cost_lines().await.unwrap(), 50_000, "{backend}");
        let want: BTreeMap<String, Decimal> = before
            .iter()
            .map(|(c, v)| (c.clone(), (*v * Decimal::from(50)).normalize()))
            .collect();
        assert_eq!(all_totals(&store).await, want, "{backend}");
        store.close().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runs_whose_process_is_gone_end_interrupted_at_serve_start_listing_and_next_ingest() {
    // Runs left `running` with a lease that ran out an hour ago (as a killed process
    // leaves them), beside one whose lease is current.
    let hour_ago = chrono::Utc::now() - chrono::Duration::hours(1);
    for db in common::both_backends().await {
        let backend = db.backend;
        let store = Store::open(&db.url).await.unwrap();
        store
            .start_ingest_run("gone-1", "a.csv", hour_ago)
            .await
            .unwrap();
        store
            .start_ingest_run("alive", "b.csv", chrono::Utc::now())
            .await
            .unwrap();
        let status = |runs: &[bursar::store::billing::IngestRunRow], id: &str| {
            runs.iter().find(|r| r.id == id).unwrap().status.clone()
        };
        // `serve` start.
        let server = common::TestServer::start(common::test_config(&db)).await;
        let runs = store.list_ingest_runs(10).await.unwrap();
        assert_eq!(status(&runs, "gone-1"), "interrupted", "{backend}");
        assert_eq!(status(&runs, "alive"), "running", "{backend}");
        // ListIngestRuns.
        store
            .start_ingest_run("gone-2", "c.csv", hour_ago)
            .await
            .unwrap();
        let mut c = proto::spend_service_client::SpendServiceClient::new(server.channel().await);
        let listed = c
            .list_ingest_runs(proto::ListIngestRunsRequest { limit: 10 })
            .await
            .unwrap()
            .into_inner()
            .runs;
        let of = |id: &str| listed.iter().find(|r| r.id == id).unwrap().clone();
        assert_eq!(of("gone-2").status, "interrupted", "{backend}");
        assert!(of("gone-2").error.contains("stopped without finishing"));
        assert_eq!(of("alive").status, "running", "{backend}");
        server.stop().await.unwrap();
        // The next ingest.
        store
            .start_ingest_run("gone-3", "d.csv", hour_ago)
            .await
            .unwrap();
        ingest_file(
            &store,
            &common::shared("focus-sample/multi-provider/focus_sample.csv"),
            None,
            false,
        )
        .await
        .unwrap();
        let runs = store.list_ingest_runs(10).await.unwrap();
        assert_eq!(status(&runs, "gone-3"), "interrupted", "{backend}");
        assert_eq!(status(&runs, "alive"), "running", "{backend}");
        store.close().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spend_service_groups_exactly_and_validates() {
    for db in common::both_backends().await {
        let store = Store::open(&db.url).await.unwrap();
        ingest_file(
            &store,
            &common::shared("focus-sample/multi-provider/focus_sample.csv"),
            None,
            false,
        )
        .await
        .unwrap();
        store.close().await;
        let server = common::TestServer::start(common::test_config(&db)).await;
        let mut c = proto::spend_service_client::SpendServiceClient::new(server.channel().await);
        let ts = |s: &str| {
            let t: chrono::DateTime<chrono::Utc> = s.parse().unwrap();
            Some(prost_types::Timestamp {
                seconds: t.timestamp(),
                nanos: 0,
            })
        };
        let r = c
            .get_spend(proto::GetSpendRequest {
                start: ts("2024-09-01T00:00:00Z"),
                end: ts("2024-11-01T00:00:00Z"),
                granularity: proto::Granularity::Month as i32,
                group_by: "provider".into(),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        let by: BTreeMap<String, Decimal> = r
            .buckets
            .iter()
            .map(|b| {
                (
                    b.group.clone(),
                    dec(&b.billed_cost.as_ref().unwrap().amount),
                )
            })
            .fold(BTreeMap::new(), |mut m, (g, v)| {
                *m.entry(g).or_insert(Decimal::ZERO) += v;
                m
            });
        assert_eq!(by["AWS"], dec("18.0066386184"), "{}", db.backend);
        assert_eq!(by["Microsoft"], dec("1.97651418586"));
        assert_eq!(by["Oracle"], dec("0.53707392473"));
        assert_eq!(r.total_billed[0].amount, "20.52022672899", "{}", db.backend);
        assert_eq!(r.total_billed[0].currency, "USD");

        let err = c
            .get_spend(proto::GetSpendRequest {
                start: ts("2024-10-01T00:00:00Z"),
                end: ts("2024-09-01T00:00:00Z"),
                ..Default::default()
            })
            .await
            .unwrap_err();
        assert_eq!(err.code(), tonic::Code::InvalidArgument);
        assert!(err.message().starts_with("end"));
        let err = c
            .get_spend(proto::GetSpendRequest {
                start: ts("2024-09-01T00:00:00Z"),
                end: ts("2024-10-01T00:00:00Z"),
                group_by: "colour".into(),
                ..Default::default()
            })
            .await
            .unwrap_err();
        assert!(err.message().starts_with("group_by"));
        let runs = c
            .list_ingest_runs(proto::ListIngestRunsRequest { limit: 10 })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(runs.runs.len(), 1);
        assert_eq!(runs.runs[0].status, "ok");
        assert_eq!(runs.runs[0].rows_stored, 1000);
        assert_eq!(runs.runs[0].format, "focus");
        server.stop().await.unwrap();
    }
}

/// `--provider` matches any spelling of a provider, as budgets do ("aws" finds CUR's "AWS"
/// and FOCUS's "Amazon Web Services"); TOTAL is one bucket per group for the whole range, the
/// CLI's default; and the CLI rounds its table to cents while `--json` stays exact.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spend_provider_filter_matches_any_spelling_and_the_total_is_one_row_per_group() {
    for db in common::both_backends().await {
        let store = Store::open(&db.url).await.unwrap();
        ingest_file(
            &store,
            &common::shared("focus-sample/multi-provider/focus_sample.csv"),
            None,
            false,
        )
        .await
        .unwrap();
        store.close().await;
        let server = common::TestServer::start(common::test_config(&db)).await;
        let mut c = proto::spend_service_client::SpendServiceClient::new(server.channel().await);
        let ts = |s: &str| {
            let t: chrono::DateTime<chrono::Utc> = s.parse().unwrap();
            Some(prost_types::Timestamp {
                seconds: t.timestamp(),
                nanos: 0,
            })
        };
        let total = |r: &proto::GetSpendResponse| {
            r.total_billed
                .first()
                .map(|m| m.amount.clone())
                .unwrap_or_default()
        };
        for (name, want) in [
            ("aws", "18.0066386184"),
            ("AWS", "18.0066386184"),
            (" Amazon Web Services ", "18.0066386184"),
            ("azure", "1.97651418586"),
            ("microsoft", "1.97651418586"),
            ("oracle", "0.53707392473"),
        ] {
            let r = c
                .get_spend(proto::GetSpendRequest {
                    start: ts("2024-09-01T00:00:00Z"),
                    end: ts("2024-11-01T00:00:00Z"),
                    provider: name.into(),
                    ..Default::default()
                })
                .await
                .unwrap()
                .into_inner();
            assert_eq!(total(&r), want, "{}: --provider {name:?}", db.backend);
        }

        let r = c
            .get_spend(proto::GetSpendRequest {
                start: ts("2024-09-01T00:00:00Z"),
                end: ts("2024-11-01T00:00:00Z"),
                granularity: proto::Granularity::Total as i32,
                group_by: "provider".into(),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        let rows: Vec<(&str, &str, &str)> = r
            .buckets
            .iter()
            .map(|b| {
                (
                    b.period_start.as_str(),
                    b.group.as_str(),
                    b.billed_cost.as_ref().unwrap().amount.as_str(),
                )
            })
            .collect();
        assert_eq!(
            rows,
            [
                ("2024-09-01", "AWS", "18.0066386184"),
                ("2024-09-01", "Microsoft", "1.97651418586"),
                ("2024-09-01", "Oracle", "0.53707392473"),
            ],
            "{}",
            db.backend
        );

        // The CLI: one row per provider by default, money to cents.
        let url = server.url.clone();
        let out = tokio::task::spawn_blocking(move || {
            std::process::Command::new(env!("CARGO_BIN_EXE_bursar"))
                .args([
                    "spend",
                    "--server",
                    &url,
                    "--from",
                    "2024-09-01",
                    "--to",
                    "2024-11-01",
                    "--group",
                    "provider",
                ])
                .output()
                .unwrap()
        })
        .await
        .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 5, "header, 3 providers, total: {text}");
        assert!(
            lines[1].starts_with("2024-09-01  AWS") && lines[1].contains(" 18.01 "),
            "{text}"
        );
        let (billed, effective) = lines[4].split_once(", effective ").expect("total line");
        assert_eq!(billed, "total USD: billed 20.52", "{text}");
        assert_eq!(
            effective.split_once('.').map(|(_, c)| c.len()),
            Some(2),
            "{text}"
        );
        let url = server.url.clone();
        let out = tokio::task::spawn_blocking(move || {
            std::process::Command::new(env!("CARGO_BIN_EXE_bursar"))
                .args([
                    "spend",
                    "--server",
                    &url,
                    "--from",
                    "2030-01-01",
                    "--to",
                    "2030-02-01",
                ])
                .output()
                .unwrap()
        })
        .await
        .unwrap();
        assert_eq!(
            String::from_utf8_lossy(&out.stdout),
            "no cost lines matched\n"
        );
        server.stop().await.unwrap();
    }
}

fn group(service: &str, account: &str, amount: &str) -> serde_json::Value {
    serde_json::json!({
        "Keys": [service, account],
        "Metrics": {
            "UnblendedCost": {"Amount": amount, "Unit": "USD"},
            "AmortizedCost": {"Amount": amount, "Unit": "USD"}
        }
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cost_explorer_and_s3_ingest_against_moto() {
    let moto = common::Moto::start().await;
    let http = reqwest::Client::new();
    // Two pages of GetCostAndUsage results, served by moto's static result injection.
    let page1 = serde_json::json!({
        "GroupDefinitions": [{"Type": "DIMENSION", "Key": "SERVICE"}, {"Type": "DIMENSION", "Key": "LINKED_ACCOUNT"}],
        "ResultsByTime": [{"TimePeriod": {"Start": "2024-03-01", "End": "2024-03-02"}, "Total": {},
            "Groups": [group("Amazon Elastic Compute Cloud - Compute", "111122223333", "12.3456789012")], "Estimated": false}],
        "DimensionValueAttributes": [], "NextPageToken": "p2"
    });
    let page2 = serde_json::json!({
        "ResultsByTime": [{"TimePeriod": {"Start": "2024-03-02", "End": "2024-03-03"}, "Total": {},
            "Groups": [group("Amazon Simple Storage Service", "111122223333", "0.0000000007")], "Estimated": false}],
        "DimensionValueAttributes": []
    });
    let inject = |body: serde_json::Value| {
        http.post(format!(
            "{}/moto-api/static/ce/cost-and-usage-results",
            moto.url
        ))
        .json(&body)
        .send()
    };
    inject(serde_json::json!({"results": [page1.clone(), page2.clone()]}))
        .await
        .unwrap();
    // S3: a bucket with the FOCUS sample under a prefix.
    http.put(format!("{}/billing-exports", moto.url))
        .send()
        .await
        .unwrap();
    let sample = std::fs::read(common::shared(
        "focus-sample/multi-provider/focus_sample.csv",
    ))
    .unwrap();
    // And a copy cut mid-row under another prefix.
    let (cut, cut_line) = focus_cut_mid_row(std::str::from_utf8(&sample).unwrap());
    http.put(format!(
        "{}/billing-exports/focus-cut/2024-09/part-0.csv",
        moto.url
    ))
    .body(cut)
    .send()
    .await
    .unwrap();
    http.put(format!(
        "{}/billing-exports/focus/2024-09/part-0.csv",
        moto.url
    ))
    .body(sample)
    .send()
    .await
    .unwrap();
    for db in common::both_backends().await {
        let run = |args: &[&str]| {
            std::process::Command::new(env!("CARGO_BIN_EXE_bursar"))
                .args(args)
                .env("AWS_ACCESS_KEY_ID", "test")
                .env("AWS_SECRET_ACCESS_KEY", "test")
                .output()
                .unwrap()
        };
        let o = run(&[
            "ingest-cost-explorer",
            "--from",
            "2024-03-01",
            "--to",
            "2024-03-03",
            "--endpoint",
            &moto.url,
            "--database-url",
            &db.url,
            "--json",
        ]);
        assert!(
            o.status.success(),
            "{}: {}",
            db.backend,
            String::from_utf8_lossy(&o.stderr)
        );
        let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        assert_eq!(v["rows_stored"], 2);
        assert_eq!(
            v["totals"]["USD"]["billed"], "12.3456789019",
            "{}",
            db.backend
        );

        let o = run(&[
            "ingest",
            "s3://billing-exports/focus/",
            "--s3-endpoint",
            &moto.url,
            "--database-url",
            &db.url,
            "--json",
        ]);
        assert!(
            o.status.success(),
            "{}: {}",
            db.backend,
            String::from_utf8_lossy(&o.stderr)
        );
        let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        assert_eq!(v["source"], "s3://billing-exports/focus/2024-09/part-0.csv");
        assert_eq!(
            v["totals"]["USD"]["billed"], "20.52022672899",
            "{}",
            db.backend
        );
        let store = Store::open(&db.url).await.unwrap();
        assert_eq!(
            store.count_cost_lines().await.unwrap(),
            1002,
            "{}",
            db.backend
        );
        // The cut object is rejected: exit 1, its line named, nothing replaced.
        let o = run(&[
            "ingest",
            "s3://billing-exports/focus-cut/",
            "--s3-endpoint",
            &moto.url,
            "--database-url",
            &db.url,
        ]);
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(1), "{}: {err}", db.backend);
        assert!(
            err.contains("s3://billing-exports/focus-cut/2024-09/part-0.csv: rejected")
                && err.contains(&format!("line {cut_line}: the file ends inside this row")),
            "{}: {err}",
            db.backend
        );
        assert_eq!(
            store.count_cost_lines().await.unwrap(),
            1002,
            "{}",
            db.backend
        );
        assert_eq!(
            newest_run(&store).await.status,
            "rejected",
            "{}",
            db.backend
        );
        store.close().await;
        // Re-inject for the next backend (moto serves injected results once).
        inject(serde_json::json!({"results": [page1.clone(), page2.clone()]}))
            .await
            .unwrap();
    }
}

/// `serve` with `[cost_explorer]` enabled polls GetCostAndUsage (moto), ingests the days it
/// covers, and evaluates budgets right after: a threshold crossed by the new spend fires.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_polls_cost_explorer_and_evaluates_budgets() {
    use bursar::domain::budget::{Budget, Threshold, ThresholdOn};
    let moto = common::Moto::start().await;
    let http = reqwest::Client::new();
    let today = chrono::Utc::now().date_naive();
    let tomorrow = today.succ_opt().unwrap();
    let page = serde_json::json!({
        "GroupDefinitions": [{"Type": "DIMENSION", "Key": "SERVICE"}, {"Type": "DIMENSION", "Key": "LINKED_ACCOUNT"}],
        "ResultsByTime": [{"TimePeriod": {"Start": today.to_string(), "End": tomorrow.to_string()}, "Total": {},
            "Groups": [group("Amazon Elastic Compute Cloud - Compute", "111122223333", "42.5000000001")], "Estimated": true}],
        "DimensionValueAttributes": []
    });
    for db in common::both_backends().await {
        http.post(format!(
            "{}/moto-api/static/ce/cost-and-usage-results",
            moto.url
        ))
        .json(&serde_json::json!({"results": [page.clone()]}))
        .send()
        .await
        .unwrap();
        let mut cfg = common::test_config(&db);
        cfg.cost_explorer.enabled = true;
        cfg.cost_explorer.endpoint = moto.url.clone();
        cfg.cost_explorer.every = Duration::from_secs(3600);
        let mut b = Budget::new("ce-aws", "100".parse().unwrap(), "USD");
        b.scope.provider = Some("aws".into());
        b.thresholds = vec![
            Threshold::amount("40".parse().unwrap(), ThresholdOn::Actual),
            Threshold::amount("50".parse().unwrap(), ThresholdOn::Actual),
        ];
        cfg.budgets = vec![b];
        let server = common::TestServer::start(cfg).await;
        let store = Store::open(&db.url).await.unwrap();
        let mut fired = Vec::new();
        for _ in 0..200 {
            fired = store.list_fired_alerts("ce-aws").await.unwrap();
            if !fired.is_empty() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert_eq!(store.count_cost_lines().await.unwrap(), 1, "{}", db.backend);
        assert_eq!(
            fired.len(),
            1,
            "{}: only the 40 threshold is crossed",
            db.backend
        );
        assert_eq!(fired[0].threshold_key, "actual:40");
        assert_eq!(fired[0].actual, "42.5000000001".parse::<Decimal>().unwrap());
        let runs = store.list_ingest_runs(10).await.unwrap();
        assert!(
            runs.iter()
                .any(|r| r.source.starts_with("aws-cost-explorer:") && r.status == "ok"),
            "{}: {runs:?}",
            db.backend
        );
        store.close().await;
        server.stop().await.unwrap();
    }
}

/// An egress-volume budget ("alert above N GB/month") uses the same machinery as money
/// budgets: GB of data transfer out from usage quantities, one alert per threshold and period.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn egress_volume_budget_fires_once_on_the_focus_sample() {
    use bursar::domain::budget::{Budget, BudgetMetric, Threshold, ThresholdOn};
    use bursar::tasks::budgets::BudgetEngine;
    let file = common::shared("focus-sample/multi-provider/focus_sample.csv");
    for db in common::both_backends().await {
        let store = Store::open(&db.url).await.unwrap();
        ingest_file(&store, &file, None, false).await.unwrap();
        let mut b = Budget::new("egress", "5".parse().unwrap(), "GB");
        b.metric = BudgetMetric::EgressGb;
        b.thresholds = vec![
            Threshold::percent("100".parse().unwrap(), ThresholdOn::Actual),
            Threshold::amount("6".parse().unwrap(), ThresholdOn::Actual),
        ];
        b.validate().unwrap();
        assert!(
            store
                .create_budget(&b, bursar::store::budgets::BudgetOrigin::Api)
                .await
                .unwrap()
        );
        let engine = BudgetEngine::new(store.clone(), bursar::notify::AlertsConfig::default(), 7);
        // The sample's charges are all in September 2024.
        let now: chrono::DateTime<chrono::Utc> = "2024-09-30T23:59:59Z".parse().unwrap();
        let ev = engine.evaluate_all(now).await.unwrap();
        assert_eq!(ev.len(), 1);
        assert_eq!(
            ev[0].status.actual,
            "5.25487946858897".parse::<Decimal>().unwrap(),
            "{}",
            db.backend
        );
        assert_eq!(ev[0].status.currency, "GB");
        let keys = |v: Vec<bursar::store::budgets::FiredAlert>| {
            v.into_iter().map(|a| a.threshold_key).collect::<Vec<_>>()
        };
        assert_eq!(
            keys(store.list_fired_alerts("egress").await.unwrap()),
            vec!["actual:100%".to_string()],
            "{}",
            db.backend
        );
        // Evaluating again in the same period fires nothing new.
        engine.evaluate_all(now).await.unwrap();
        assert_eq!(store.list_fired_alerts("egress").await.unwrap().len(), 1);
        store.close().await;
    }
}
