use std::path::Path;

use rust_decimal::Decimal;

use crate::billing::mapping::{Cell, Dev, Deviations};
use crate::billing::{BATCH, BillingError, BillingFormat, CostLine, ParseSummary};

use super::parquet::decimal128_cell;
use super::*;

use std::collections::BTreeMap;
use std::io::Write;
use std::str::FromStr;

pub(crate) const DATA: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../shared/data");

pub(crate) fn parse_path(
    p: &Path,
    hint: Option<BillingFormat>,
) -> Result<(ParseSummary, Vec<CostLine>), BillingError> {
    let mut lines = Vec::new();
    let mut sink = |b: Vec<CostLine>| {
        assert!(b.len() <= BATCH);
        lines.extend(b);
        Ok(())
    };
    let s = parse_file(p, hint, &mut sink)?;
    Ok((s, lines))
}

pub(crate) fn parse_mem(
    name: &str,
    bytes: &[u8],
    hint: Option<BillingFormat>,
) -> Result<(ParseSummary, Vec<CostLine>), BillingError> {
    let mut lines = Vec::new();
    let mut sink = |b: Vec<CostLine>| {
        lines.extend(b);
        Ok(())
    };
    let s = parse_bytes(name, bytes, hint, &mut sink)?;
    Ok((s, lines))
}

pub(crate) fn dec(s: &str) -> Decimal {
    Decimal::from_str(s)
        .or_else(|_| Decimal::from_scientific(s))
        .unwrap_or_else(|e| panic!("{s}: {e}"))
}

fn load(rel: &str) -> serde_json::Value {
    let text = std::fs::read_to_string(format!("{DATA}/{rel}")).unwrap();
    serde_json::from_str(&text).unwrap()
}

fn sum(lines: &[CostLine], f: impl Fn(&CostLine) -> Option<Decimal>) -> Decimal {
    lines.iter().filter_map(f).sum()
}

fn currencies(lines: &[CostLine]) -> BTreeMap<String, u64> {
    let mut m = BTreeMap::new();
    for l in lines {
        *m.entry(l.dims.billing_currency.clone()).or_default() += 1;
    }
    m
}

fn expect_currencies(lines: &[CostLine], e: &serde_json::Value, rel: &str) {
    let want: BTreeMap<String, u64> = e["currencies"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| (k.clone(), v.as_u64().unwrap()))
        .collect();
    assert_eq!(currencies(lines), want, "{rel}: currencies");
}

fn csv_files_under(dir: &Path, out: &mut Vec<String>, root: &Path) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            csv_files_under(&p, out, root);
        } else if p.extension().is_some_and(|x| x == "csv" || x == "parquet") {
            out.push(p.strip_prefix(root).unwrap().to_string_lossy().into_owned());
        }
    }
}

fn focus_version_of(rel: &str) -> &'static str {
    if rel.starts_with("multi-provider/") {
        "1.0"
    } else if rel.contains("virtual_currency_pricing_model") {
        "1.2"
    } else {
        "1.1"
    }
}

#[test]
fn every_focus_sample_matches_expected_totals() {
    let exp = load("focus-sample/expected_totals.json");
    let files = exp["files"].as_object().unwrap();
    let root = Path::new(DATA).join("focus-sample");
    let mut on_disk = Vec::new();
    csv_files_under(&root, &mut on_disk, &root);
    on_disk.sort();
    let mut listed: Vec<String> = files.keys().cloned().collect();
    listed.sort();
    assert_eq!(on_disk, listed, "every sample file has expected totals");
    for (rel, e) in files {
        let (s, lines) =
            parse_path(&root.join(rel), None).unwrap_or_else(|err| panic!("{rel}: {err}"));
        assert_eq!(s.format, Some(BillingFormat::Focus), "{rel}");
        assert_eq!(s.variant, focus_version_of(rel), "{rel}: version");
        let rows = e["rows"].as_u64().unwrap();
        assert_eq!(s.rows_read, rows, "{rel}: rows");
        assert_eq!(s.lines + s.quarantined.len() as u64, s.rows_read, "{rel}");
        assert_eq!(lines.len() as u64, s.lines);
        assert!(s.quarantined.is_empty(), "{rel}: {:?}", s.quarantined);
        // The spec's purchase scenarios 2 and 3 end their last row at
        // `2023-02-01T30:00:00Z` (30 h after midnight): rolled over into the next day
        // and counted as a deviation, so every row is stored.
        if rel.contains("commitment_discount_purchase_scenario_2")
            || rel.contains("commitment_discount_purchase_scenario_3")
        {
            assert_eq!(
                s.deviations.get("timestamp_hour_overflow"),
                Some(&1),
                "{rel}"
            );
            let last = lines.last().unwrap();
            assert_eq!(
                last.charge_period_end.to_rfc3339(),
                "2023-02-02T06:00:00+00:00"
            );
        } else {
            assert_eq!(s.deviations.get("timestamp_hour_overflow"), None, "{rel}");
        }
        assert_eq!(
            sum(&lines, |l| Some(l.billed_cost)),
            dec(e["BilledCost_sum"].as_str().unwrap()),
            "{rel}: BilledCost"
        );
        if let Some(x) = e.get("EffectiveCost_sum") {
            assert_eq!(
                sum(&lines, |l| Some(l.effective_cost)),
                dec(x.as_str().unwrap()),
                "{rel}: EffectiveCost"
            );
        }
        if let Some(x) = e.get("ListCost_sum") {
            assert_eq!(
                sum(&lines, |l| l.list_cost),
                dec(x.as_str().unwrap()),
                "{rel}: ListCost"
            );
            assert_eq!(
                lines.iter().filter(|l| l.list_cost.is_none()).count() as u64,
                e["ListCost_nulls"].as_u64().unwrap()
            );
        }
        if e.get("currencies").is_some() {
            expect_currencies(&lines, e, rel);
        } else {
            assert!(
                lines.iter().all(|l| l.dims.billing_currency == "USD"),
                "{rel}"
            );
            assert_eq!(
                s.deviations.get("currency_missing_assumed_usd"),
                Some(&s.lines),
                "{rel}"
            );
        }
        for (cat, c) in e["by_ChargeCategory"].as_object().unwrap() {
            let these: Vec<CostLine> = lines
                .iter()
                .filter(|l| &l.dims.charge_category == cat)
                .cloned()
                .collect();
            assert_eq!(
                these.len() as u64,
                c["rows"].as_u64().unwrap(),
                "{rel}: {cat} rows"
            );
            assert_eq!(
                sum(&these, |l| Some(l.billed_cost)),
                dec(c["BilledCost_sum"].as_str().unwrap()),
                "{rel}: {cat}"
            );
        }
        if rel.contains("commitment_discount_flexibility") {
            // Rows are separated by blank lines: line numbers count them.
            let want: Vec<u64> = (0..lines.len() as u64).map(|i| 2 + 2 * i).collect();
            assert_eq!(
                lines.iter().map(|l| l.line).collect::<Vec<_>>(),
                want,
                "{rel}"
            );
            assert_eq!(
                s.deviations.get("blank_line"),
                Some(&(lines.len() as u64 - 1)),
                "{rel}"
            );
        }
        if let Some(by) = e.get("by_ProviderName") {
            for (p, c) in by.as_object().unwrap() {
                let these: Vec<CostLine> = lines
                    .iter()
                    .filter(|l| &l.dims.provider_name == p)
                    .cloned()
                    .collect();
                assert_eq!(
                    these.len() as u64,
                    c["rows"].as_u64().unwrap(),
                    "{rel}: {p} rows"
                );
                assert_eq!(
                    sum(&these, |l| Some(l.billed_cost)),
                    dec(c["BilledCost_sum"].as_str().unwrap())
                );
                assert_eq!(
                    sum(&these, |l| Some(l.effective_cost)),
                    dec(c["EffectiveCost_sum"].as_str().unwrap())
                );
            }
        }
        if rel.contains("simple_agreements") {
            assert!(
                s.deviations
                    .get("money_formatted_string")
                    .is_some_and(|n| *n > 0),
                "{rel}"
            );
            assert!(
                s.deviations.get("date_m_d_yy").is_some_and(|n| *n > 0),
                "{rel}"
            );
        }
    }
}

#[test]
fn focus_sample_deviations_and_fields() {
    let (s, lines) = parse_path(
        &Path::new(DATA).join("focus-sample/multi-provider/focus_sample.csv"),
        None,
    )
    .unwrap();
    assert_eq!(s.deviations.get("timestamp_space_no_z"), Some(&4000));
    assert!(s.deviations.get("null_token_NULL").is_some_and(|n| *n > 0));
    assert!(
        s.deviations
            .get("empty_string_null")
            .is_some_and(|n| *n > 0)
    );
    assert_eq!(lines[0].line, 2);
    assert_eq!(
        lines[0].charge_period_start.to_rfc3339(),
        "2024-09-18T22:00:00+00:00"
    );
    assert_eq!(
        lines[0].charge_period_end.to_rfc3339(),
        "2024-09-18T23:00:00+00:00"
    );
    assert_eq!(lines[0].billed_cost, dec("0.0000008"));
    // IDs stay strings; tags keep a key with a leading space.
    assert!(lines.iter().any(|l| l.dims.billing_account_id.as_deref()
        == Some("/providers/Microsoft.Billing/billingAccounts/8611537")));
    assert!(lines.iter().any(|l| l.dims.tags.contains_key(" org")));
    assert!(
        lines
            .iter()
            .filter(|l| l.dims.provider_name == "Oracle")
            .all(|l| l.dims.pricing_category.is_none() && l.dims.region_id.is_none())
    );
    let tagged = lines
        .iter()
        .find(|l| l.dims.tags.contains_key("application"))
        .unwrap();
    assert!(tagged.dims.tags.contains_key("environment"));
    // A line with the expected shape.
    let l = lines
        .iter()
        .find(|l| l.dims.provider_name == "AWS" && l.dims.charge_category == "Usage")
        .unwrap();
    assert_eq!(
        l.billing_period_start.to_rfc3339(),
        "2024-09-01T00:00:00+00:00"
    );
    assert_eq!(l.dims.billing_currency, "USD");
}

fn native_variant(rel: &str) -> &'static str {
    match rel {
        "aws/sample-anonymous-aws-export-dataset.csv" | "aws/koku-2023-06-01.csv" => {
            "cur-legacy-csv"
        }
        r if r.ends_with(".parquet") => "cur-parquet",
        r if r.starts_with("azure/") => "azure-ea",
        "gcp/2022-08-01_5.csv" => "gcp-detailed",
        r if r.starts_with("gcp/") => "gcp-standard",
        other => panic!("no variant for {other}"),
    }
}

#[test]
fn every_native_export_matches_expected_totals() {
    let exp = load("native-billing/expected_totals.json");
    let root = Path::new(DATA).join("native-billing");
    for (rel, e) in exp["files"].as_object().unwrap() {
        let path = root.join(rel);
        if rel.starts_with("oci/") {
            match parse_path(&path, None) {
                Err(BillingError::UnknownFormat { columns, .. }) => {
                    assert!(columns.contains("cost/myCost"), "{columns}")
                }
                other => panic!(
                    "OCI must be an unknown format, got {:?}",
                    other.map(|(s, _)| s)
                ),
            }
            continue;
        }
        let (s, lines) = parse_path(&path, None).unwrap_or_else(|err| panic!("{rel}: {err}"));
        let want_format = match rel.split('/').next().unwrap() {
            "aws" => BillingFormat::Cur,
            "azure" => BillingFormat::Azure,
            "gcp" => BillingFormat::Gcp,
            other => panic!("{other}"),
        };
        assert_eq!(s.format, Some(want_format), "{rel}");
        assert_eq!(s.variant, native_variant(rel), "{rel}");
        assert_eq!(s.rows_read, e["rows"].as_u64().unwrap(), "{rel}: rows");
        assert!(
            s.quarantined.is_empty(),
            "{rel}: {:?}",
            &s.quarantined[..s.quarantined.len().min(3)]
        );
        assert_eq!(s.lines, s.rows_read);
        assert_eq!(lines.len() as u64, s.lines);
        expect_currencies(&lines, e, rel);
        let billed = sum(&lines, |l| Some(l.billed_cost));
        let effective = sum(&lines, |l| Some(l.effective_cost));
        let list = sum(&lines, |l| l.list_cost);
        let key = [
            "lineItem/UnblendedCost_sum",
            "line_item_unblended_cost_sum",
            "Cost_sum",
            "CostInBillingCurrency_sum",
            "cost_sum",
        ]
        .iter()
        .find_map(|k| e.get(*k))
        .unwrap();
        assert_eq!(billed, dec(key.as_str().unwrap()), "{rel}: billed");
        if let Some(x) = e
            .get("pricing/publicOnDemandCost_sum")
            .or_else(|| e.get("pricing_public_on_demand_cost_sum"))
        {
            assert_eq!(list, dec(x.as_str().unwrap()), "{rel}: list");
        }
        if let Some(x) = e.get("amortized_cost_sum") {
            assert_eq!(effective, dec(x.as_str().unwrap()), "{rel}: amortized");
        }
        if let Some(x) = e.get("credits_amount_sum") {
            assert_eq!(
                effective - billed,
                dec(x.as_str().unwrap()),
                "{rel}: credits"
            );
        }
        if let Some(by) = e.get("by_ChargeType") {
            for (t, c) in by.as_object().unwrap() {
                let these: Vec<CostLine> = lines
                    .iter()
                    .filter(|l| &l.dims.charge_category == t)
                    .cloned()
                    .collect();
                assert_eq!(
                    these.len() as u64,
                    c["rows"].as_u64().unwrap(),
                    "{rel}: {t}"
                );
                let k = if c.get("Cost_sum").is_some() {
                    "Cost_sum"
                } else {
                    "CostInBillingCurrency_sum"
                };
                assert_eq!(
                    sum(&these, |l| Some(l.billed_cost)),
                    dec(c[k].as_str().unwrap()),
                    "{rel}: {t}"
                );
            }
        }
        for l in &lines {
            assert!(
                l.charge_period_start <= l.charge_period_end,
                "{rel} line {}",
                l.line
            );
            assert!(
                l.billing_period_start < l.billing_period_end,
                "{rel} line {}",
                l.line
            );
        }
    }
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    enc.write_all(bytes).unwrap();
    enc.finish().unwrap()
}

#[test]
fn gzip_round_trip_gives_the_same_totals() {
    let path = Path::new(DATA).join("focus-sample/multi-provider/focus_sample.csv");
    let raw = std::fs::read(&path).unwrap();
    let gz = gzip(&raw);
    let dir = tempfile::tempdir().unwrap();
    let gz_path = dir.path().join("focus_sample.csv.gz");
    std::fs::write(&gz_path, &gz).unwrap();
    let (plain, plain_lines) = parse_path(&path, None).unwrap();
    let (s, lines) = parse_path(&gz_path, None).unwrap();
    assert_eq!(s, plain);
    assert_eq!(lines, plain_lines);
    assert_eq!(sum(&lines, |l| Some(l.billed_cost)), dec("20.52022672899"));
    let (s2, lines2) = parse_mem("s3://bucket/focus_sample.csv.gz", &gz, None).unwrap();
    assert_eq!(s2, plain);
    assert_eq!(lines2.len(), 1000);
    // And from memory, uncompressed.
    let (s3, _) = parse_mem("focus_sample.csv", &raw, None).unwrap();
    assert_eq!(s3, plain);
}

#[test]
fn truncated_gzip_is_a_clear_error() {
    let raw = std::fs::read(Path::new(DATA).join("focus-sample/multi-provider/focus_sample.csv"))
        .unwrap();
    let gz = gzip(&raw);
    let cut = &gz[..gz.len() / 2];
    match parse_mem("focus_sample.csv.gz", cut, None) {
        Err(BillingError::Io { file, detail }) => {
            assert_eq!(file, "focus_sample.csv.gz");
            assert!(detail.contains("gzip"), "{detail}");
        }
        other => panic!("expected an Io error, got {:?}", other.map(|(s, _)| s)),
    }
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("cut.csv.gz");
    std::fs::write(&p, cut).unwrap();
    assert!(matches!(parse_path(&p, None), Err(BillingError::Io { .. })));
}

const FOCUS_HEAD: &str = "BilledCost,EffectiveCost,BillingCurrency,BillingPeriodStart,BillingPeriodEnd,ChargePeriodStart,ChargePeriodEnd,ChargeCategory,ProviderName,PricingCategory,Tags\n";

#[test]
fn broken_values_are_quarantined_with_line_and_column() {
    let text = format!(
        "{FOCUS_HEAD}\
         1.50,1.50,USD,2024-09-01T00:00:00Z,2024-10-01T00:00:00Z,2024-09-01T00:00:00Z,2024-09-01T01:00:00Z,Usage,AWS,Standard,\n\
         abc,1.50,USD,2024-09-01T00:00:00Z,2024-10-01T00:00:00Z,2024-09-01T00:00:00Z,2024-09-01T01:00:00Z,Usage,AWS,Standard,\n\
         2.00,2.00,USD,2024-09-01T00:00:00Z,2024-10-01T00:00:00Z,not-a-date,2024-09-01T01:00:00Z,Usage,AWS,Standard,\n\
         3.00,3.00,USD,2024-09-01T00:00:00Z,2024-10-01T00:00:00Z,,2024-09-01T01:00:00Z,Usage,AWS,Standard,\n\
         4.00,4.00,usd,2024-09-01T00:00:00Z,2024-10-01T00:00:00Z,2024-09-01T00:00:00Z,2024-09-01T01:00:00Z,usage,AWS,committed,\"{{\"\"a\"\":\"\"b\"\"}}\"\n"
    );
    let (s, lines) = parse_mem("broken.csv", text.as_bytes(), None).unwrap();
    assert_eq!(s.rows_read, 5);
    assert_eq!(s.lines, 2);
    assert_eq!(s.quarantined.len(), 3);
    let q = &s.quarantined[0];
    assert_eq!(q.line, 3);
    assert!(
        q.reason.starts_with("BilledCost:") && q.reason.contains("abc"),
        "{}",
        q.reason
    );
    assert!(q.raw.starts_with("abc,1.50,USD"), "{}", q.raw);
    assert_eq!(s.quarantined[1].line, 4);
    assert!(
        s.quarantined[1].reason.starts_with("ChargePeriodStart:"),
        "{}",
        s.quarantined[1].reason
    );
    assert_eq!(s.quarantined[2].line, 5);
    assert_eq!(
        s.quarantined[2].reason,
        "ChargePeriodStart: missing required value"
    );
    let l = &lines[1];
    assert_eq!(
        (
            l.line,
            l.dims.billing_currency.as_str(),
            l.dims.charge_category.as_str()
        ),
        (6, "USD", "Usage")
    );
    assert_eq!(l.dims.pricing_category.as_deref(), Some("Committed"));
    assert_eq!(l.dims.tags.get("a").map(String::as_str), Some("b"));
    assert_eq!(s.deviations.get("wrong_case_value"), Some(&3));
}

#[test]
fn invalid_utf8_only_matters_in_mapped_columns() {
    let mut text = b"BilledCost,BillingPeriodStart,BillingPeriodEnd,ChargePeriodStart,ChargePeriodEnd,ChargeCategory,ProviderName,x_Note\n".to_vec();
    let row = |provider: &[u8], note: &[u8]| {
        let mut r = b"1.5,2024-09-01T00:00:00Z,2024-10-01T00:00:00Z,2024-09-01T00:00:00Z,2024-09-01T01:00:00Z,Usage,".to_vec();
        r.extend_from_slice(provider);
        r.push(b',');
        r.extend_from_slice(note);
        r.push(b'\n');
        r
    };
    text.extend(row(b"AWS", b"caf\xe9"));
    text.extend(row(b"Bad\xff", b"ok"));
    let (s, lines) = parse_mem("latin1.csv", &text, None).unwrap();
    assert_eq!((s.rows_read, s.lines), (2, 1));
    assert_eq!(lines[0].dims.provider_name, "AWS");
    assert_eq!(s.quarantined[0].line, 3);
    assert_eq!(s.quarantined[0].reason, "ProviderName: invalid UTF-8");
    assert!(
        s.quarantined[0].raw.contains("Bad\u{fffd}"),
        "{}",
        s.quarantined[0].raw
    );
}

#[test]
fn parquet_decimals_beyond_28_digits() {
    let d = |v: i128, s: i8| match decimal128_cell(v, s) {
        Cell::Dec(d) => d.normalize().to_string(),
        Cell::Owned(t) => format!("text:{t}"),
        other => format!("{other:?}"),
    };
    assert_eq!(d(12345, 2), "123.45");
    assert_eq!(d(-5, 3), "-0.005");
    // DECIMAL(38, 30): trailing zeros dropped to fit.
    assert_eq!(d(1_250_000_000_000_000_000_000_000_000_000, 30), "1.25");
    assert_eq!(d(12, -3), "12000");
    // Too many significant digits: text, rounded (and counted) by the mapping.
    assert_eq!(
        d(1_234_567_890_123_456_789_012_345_678_901, 30),
        "text:1.234567890123456789012345678901"
    );
    assert_eq!(d(-7, 35), "text:-0.00000000000000000000000000000000007");
    let mut dev = Deviations::default();
    let v = super::super::mapping::convert(
        decimal128_cell(1_234_567_890_123_456_789_012_345_678_901, 30),
        super::super::mapping::Kind::Money,
        super::super::mapping::NullStyle::Native,
        &mut dev,
    )
    .unwrap();
    match v {
        super::super::mapping::Val::Dec(x) => {
            assert_eq!(x, dec("1.2345678901234567890123456789"))
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(dev.get(Dev::DecimalRounded), 1);
}

#[test]
fn unknown_header_lists_columns() {
    match parse_mem("mystery.csv", b"foo,bar,baz\n1,2,3\n", None) {
        Err(BillingError::UnknownFormat { file, columns }) => {
            assert_eq!(file, "mystery.csv");
            assert_eq!(columns, "foo, bar, baz");
        }
        other => panic!("{:?}", other.map(|(s, _)| s)),
    }
    assert!(matches!(
        parse_mem("empty.csv", b"", None),
        Err(BillingError::Malformed { .. })
    ));
    // A hint that does not fit the columns names the missing column.
    match parse_mem("f.csv", FOCUS_HEAD.as_bytes(), Some(BillingFormat::Cur)) {
        Err(BillingError::MissingColumn { column, .. }) => {
            assert!(column.contains("UnblendedCost"), "{column}")
        }
        other => panic!("{:?}", other.map(|(s, _)| s)),
    }
    assert!(matches!(
        parse_mem("x.snappy.parquet", b"a,b\n1,2\n", None),
        Err(BillingError::Io { .. })
    ));
    let pq = std::fs::read(
        Path::new(DATA).join("native-billing/aws/Nov2018-WorkshopCUR-00001.snappy.parquet"),
    )
    .unwrap();
    match parse_mem("cut.parquet", &pq[..pq.len() / 2], None) {
        Err(BillingError::Io { detail, .. }) => {
            assert!(detail.starts_with("Parquet"), "{detail}")
        }
        other => panic!("{:?}", other.map(|(s, _)| s)),
    }
    let err = parse_path(Path::new("/nonexistent/file.csv"), None).unwrap_err();
    assert!(matches!(err, BillingError::Io { .. }));
}

#[test]
fn sink_errors_stop_the_parse() {
    let path = Path::new(DATA).join("native-billing/aws/Oct2018-WorkshopCUR-00001.snappy.parquet");
    let mut calls = 0;
    let mut sink = |_b: Vec<CostLine>| {
        calls += 1;
        if calls == 2 {
            Err("disk full".to_string())
        } else {
            Ok(())
        }
    };
    match parse_file(&path, None, &mut sink) {
        Err(BillingError::Sink(m)) => assert_eq!(m, "disk full"),
        other => panic!("{other:?}"),
    }
    assert_eq!(calls, 2);
}

#[test]
fn blank_lines_bom_and_short_rows() {
    let text = format!(
        "\u{feff}{FOCUS_HEAD}\n\
         1,1,USD,2023-01-01T00:00:00Z,2023-02-01T00:00:00Z,2023-01-01T00:00:00Z,2023-01-01T01:00:00Z,Usage,X,null\n\n\
         2,2,USD,2023-01-01T00:00:00Z,2023-02-01T00:00:00Z,2023-01-01T00:00:00Z,2023-01-01T01:00:00Z,Usage,X,Standard,{{}}\n"
    );
    let (s, lines) = parse_mem("b.csv", text.as_bytes(), None).unwrap();
    assert_eq!(s.lines, 2);
    assert_eq!(s.deviations.get("bom"), Some(&1));
    assert_eq!(s.deviations.get("row_field_count_mismatch"), Some(&1));
    assert_eq!(lines.iter().map(|l| l.line).collect::<Vec<_>>(), vec![3, 5]);
    assert_eq!(lines[0].dims.pricing_category, None);
}

/// The FOCUS sample, its bytes cut `cut` bytes before the end.
fn focus_sample_cut(cut: usize) -> Vec<u8> {
    let b = std::fs::read(Path::new(DATA).join("focus-sample/multi-provider/focus_sample.csv"))
        .unwrap();
    b[..b.len() - cut].to_vec()
}

#[test]
fn a_csv_cut_mid_row_is_incomplete_and_its_last_row_is_not_parsed() {
    let bytes = focus_sample_cut(200);
    let (s, lines) = parse_mem("focus.csv", &bytes, None).unwrap();
    let last_line = lines.last().unwrap().line;
    assert_eq!(lines.len(), 999);
    assert_eq!(s.truncated_at, Some(last_line + 1));
    assert_eq!(s.rows_read, 1000);
    assert_eq!(s.quarantined.len(), 1);
    let q = &s.quarantined[0];
    assert_eq!((q.line, q.column.as_deref()), (last_line + 1, None));
    assert_eq!(q.reason, TRUNCATED_ROW);
    assert_eq!(s.deviations.get("row_field_count_mismatch"), None);
    // The complete file is not.
    let (s, lines) = parse_mem("focus.csv", &focus_sample_cut(0), None).unwrap();
    assert_eq!((s.truncated_at, lines.len()), (None, 1000));
}

#[test]
fn a_csv_cut_inside_a_quoted_field_or_short_of_fields_is_incomplete() {
    let head = "BilledCost,EffectiveCost,BillingCurrency,BillingPeriodStart,BillingPeriodEnd,\
                ChargePeriodStart,ChargePeriodEnd,ChargeCategory,ProviderName,Tags\n";
    let row = "1.5,1.5,USD,2024-09-01T00:00:00Z,2024-10-01T00:00:00Z,2024-09-02T00:00:00Z,\
               2024-09-02T01:00:00Z,Usage,AWS,\"{\"\"team\"\": \"\"ml\"\"}\"";
    let parse = |text: String| parse_mem("f.csv", text.as_bytes(), None).unwrap();
    // Complete, with and without a final line break.
    for end in ["\n", "\r\n", ""] {
        let (s, lines) = parse(format!("{head}{row}\n{row}{end}"));
        assert_eq!((s.truncated_at, lines.len()), (None, 2), "{end:?}");
        assert!(s.quarantined.is_empty());
    }
    // Inside the quoted tags, and short of the last fields.
    let quoted = &row[..row.len() - 8];
    let short = &row[..row.find(",Usage").unwrap()];
    for cut in [quoted, short] {
        let (s, lines) = parse(format!("{head}{row}\n{cut}"));
        assert_eq!((s.truncated_at, lines.len()), (Some(3), 1), "{cut}");
        assert_eq!(s.quarantined[0].raw, cut);
    }
}

#[test]
fn a_json_lines_file_cut_mid_line_is_incomplete() {
    let line = r#"{"BilledCost": "1.5", "EffectiveCost": "1.5", "BillingCurrency": "USD", "BillingPeriodStart": "2024-09-01T00:00:00Z", "BillingPeriodEnd": "2024-10-01T00:00:00Z", "ChargePeriodStart": "2024-09-02T00:00:00Z", "ChargePeriodEnd": "2024-09-02T01:00:00Z", "ChargeCategory": "Usage", "ProviderName": "AWS"}"#;
    let whole = format!("{line}\n{line}");
    let (s, lines) = parse_mem("f.jsonl", whole.as_bytes(), None).unwrap();
    assert_eq!((s.truncated_at, lines.len()), (None, 2));
    let cut = &whole[..whole.len() - 10];
    let (s, lines) = parse_mem("f.jsonl", cut.as_bytes(), None).unwrap();
    assert_eq!((s.truncated_at, lines.len()), (Some(2), 1));
    // A bad line with its line break is only a bad row.
    let bad = format!("{line}\n{{not json\n{line}\n");
    let (s, _) = parse_mem("f.jsonl", bad.as_bytes(), None).unwrap();
    assert_eq!(s.truncated_at, None);
    assert_eq!(s.quarantined[0].line, 2);
    assert!(s.quarantined[0].reason.starts_with("invalid JSON"));
}

#[test]
fn truncated_gzip_and_parquet_fail_to_parse() {
    use std::io::Write;
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(&focus_sample_cut(0)).unwrap();
    let gz = gz.finish().unwrap();
    for cut in [gz.len() / 2, gz.len() - 4] {
        // Named by the line the stream was cut at.
        let err = parse_mem("f.csv.gz", &gz[..cut], None)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("gzip") && err.contains(": line "),
            "{cut}: {err}"
        );
    }
    let pq = std::fs::read(
        Path::new(DATA).join("native-billing/aws/Oct2018-WorkshopCUR-00001.snappy.parquet"),
    )
    .unwrap();
    let err = parse_mem("f.parquet", &pq[..pq.len() / 2], None).unwrap_err();
    assert!(err.to_string().contains("Parquet"), "{err}");
}

#[test]
fn a_quarantined_row_names_its_column() {
    let text = String::from_utf8(focus_sample_cut(0)).unwrap();
    let mut rows: Vec<&str> = text.lines().collect();
    let head: Vec<&str> = rows[0].split(',').collect();
    let at = head
        .iter()
        .position(|h| h.trim_matches('"') == "BilledCost")
        .unwrap();
    let bad: String = rows[1]
        .split(',')
        .enumerate()
        .map(|(i, c)| if i == at { "twelve" } else { c })
        .collect::<Vec<_>>()
        .join(",");
    rows[1] = &bad;
    let (s, _) = parse_mem("f.csv", rows.join("\n").as_bytes(), None).unwrap();
    assert_eq!(s.quarantined.len(), 1);
    assert_eq!(s.quarantined[0].column.as_deref(), Some("BilledCost"));
    assert_eq!(s.quarantined[0].line, 2);
}

/// The FOCUS sample's header and first `rows` rows.
fn focus_head(rows: usize) -> String {
    let text = std::fs::read_to_string(format!(
        "{DATA}/focus-sample/multi-provider/focus_sample.csv"
    ))
    .unwrap();
    text.lines()
        .take(rows + 1)
        .map(|l| format!("{l}\n"))
        .collect()
}

#[track_caller]
fn too_long(r: Result<(ParseSummary, Vec<CostLine>), BillingError>, line: u64, offset: usize) {
    match r {
        Err(BillingError::Malformed {
            line: l, detail, ..
        }) => {
            assert_eq!(l, line, "{detail}");
            let want = format!("the row starting at byte offset {offset} is longer than 16 MiB");
            assert!(detail.starts_with(&want), "{detail}");
        }
        other => panic!(
            "expected a row-too-long error, got {:?}",
            other.map(|(s, _)| s)
        ),
    }
}

#[test]
fn a_row_past_the_cap_stops_the_parse_naming_line_and_offset() {
    let head = focus_head(3);
    // Zeros (a sparse file) from the start: the header itself never ends.
    let zeros = vec![0u8; MAX_ROW_BYTES + 3 * READ_BUFFER];
    too_long(parse_mem("export.csv", &zeros, None), 1, 0);
    too_long(parse_mem("export.jsonl", &zeros, None), 1, 0);
    // The same behind gzip: the cap applies to the decompressed text.
    too_long(parse_mem("export.csv.gz", &gzip(&zeros), None), 1, 0);
    // After three good rows, a quote that never closes.
    let mut open = head.clone().into_bytes();
    open.extend_from_slice(b"\"");
    open.resize(open.len() + MAX_ROW_BYTES + READ_BUFFER * 2, b'x');
    too_long(parse_mem("export.csv", &open, None), 5, head.len());
    // A JSON line without an end.
    let mut json = b"{\"BilledCost\": \"1\"}\n{\"Tags\": \"".to_vec();
    json.resize(json.len() + MAX_ROW_BYTES + 10, b'y');
    too_long(parse_mem("export.jsonl", &json, None), 2, 20);
}

#[test]
fn rows_and_blank_runs_under_the_cap_still_parse() {
    let head = focus_head(3);
    // A row just under the cap (its Tags cell), and 4 MiB of blank lines before the last
    // (blank lines count towards the row after them: 16 MiB of them is not an export).
    let mut r = ::csv::Reader::from_reader(head.as_bytes());
    let header = r.headers().unwrap().clone();
    let tags_col = header
        .iter()
        .position(|h| h.trim_start_matches('\u{feff}') == "Tags");
    let mut rows: Vec<Vec<String>> = r
        .records()
        .map(|rec| rec.unwrap().iter().map(str::to_string).collect())
        .collect();
    rows[0][tags_col.unwrap()] = format!("{{\"big\": \"{}\"}}", "v".repeat(MAX_ROW_BYTES - 4096));
    let mut w = ::csv::Writer::from_writer(Vec::new());
    w.write_record(&header).unwrap();
    w.write_record(&rows[0]).unwrap();
    w.write_record(&rows[1]).unwrap();
    w.flush().unwrap();
    let mut text = w.into_inner().unwrap();
    text.extend(std::iter::repeat_n(b'\n', 4 << 20));
    let mut w = ::csv::Writer::from_writer(text);
    w.write_record(&rows[2]).unwrap();
    let text = w.into_inner().unwrap();
    let (s, got) = parse_mem("export.csv", &text, None).unwrap();
    assert_eq!(s.lines, 3, "{:?}", s.quarantined);
    assert_eq!(got[0].dims.tags["big"].len(), MAX_ROW_BYTES - 4096);
    assert_eq!(
        got[2].line,
        4 + (4 << 20),
        "the last row's line counts the blank ones"
    );
}
