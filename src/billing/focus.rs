//! FOCUS 1.0–1.3 exports (CSV, CSV.gz, Parquet).
//!
//! Lenient where real files deviate (each counted): `YYYY-MM-DD HH:MM:SS` timestamps as
//! UTC, `NULL`/`null`/empty as null, wrong-case enum values, `M/D/YY` dates and
//! `"$10,000.00 "` money strings in the spec's SaaS examples (accepted, counted as
//! `money_formatted_string`, since they are unambiguous). A file without a
//! `BillingCurrency` column (the spec's commitment-discount examples) is taken as USD
//! (`currency_missing_assumed_usd`); a null currency in a file that has the column
//! quarantines the row. Without an `EffectiveCost` column (or with a null value) the
//! billed cost is used and counted.
use super::BillingFormat;
use super::mapping::{
    CHARGE_CATEGORIES, CHARGE_CLASSES, COMMITMENT_DISCOUNT_CATEGORIES, Column, Dev, Deviations,
    Field as F, Kind as K, NullStyle, PRICING_CATEGORIES, Table, Values, col, req,
};
use super::{CostLine, DimsCache};

const COLUMNS: &[Column] = &[
    req(F::BilledCost, &["BilledCost"], K::Money),
    col(F::EffectiveCost, &["EffectiveCost"], K::Money),
    col(F::ListCost, &["ListCost"], K::Money),
    col(F::BillingCurrency, &["BillingCurrency"], K::Currency),
    req(F::BillingPeriodStart, &["BillingPeriodStart"], K::Time),
    req(F::BillingPeriodEnd, &["BillingPeriodEnd"], K::Time),
    req(F::ChargePeriodStart, &["ChargePeriodStart"], K::Time),
    req(F::ChargePeriodEnd, &["ChargePeriodEnd"], K::Time),
    req(
        F::ChargeCategory,
        &["ChargeCategory"],
        K::Enum(CHARGE_CATEGORIES),
    ),
    col(
        F::ProviderName,
        &["ServiceProviderName", "ProviderName"],
        K::Text,
    ),
    col(F::ServiceName, &["ServiceName"], K::Text),
    col(F::ServiceCategory, &["ServiceCategory"], K::Text),
    col(F::RegionId, &["RegionId", "Region"], K::Text),
    col(F::AvailabilityZone, &["AvailabilityZone"], K::Text),
    col(F::ResourceId, &["ResourceId"], K::Text),
    col(F::SkuId, &["SkuId"], K::Text),
    col(F::BillingAccountId, &["BillingAccountId"], K::Text),
    col(F::SubAccountId, &["SubAccountId"], K::Text),
    col(
        F::PricingCategory,
        &["PricingCategory"],
        K::Enum(PRICING_CATEGORIES),
    ),
    col(F::ConsumedQuantity, &["ConsumedQuantity"], K::Number),
    col(F::ConsumedUnit, &["ConsumedUnit"], K::Text),
    col(F::Tags, &["Tags"], K::Tags),
    col(F::ContractedCost, &["ContractedCost"], K::Money),
    col(F::ChargeClass, &["ChargeClass"], K::Enum(CHARGE_CLASSES)),
    col(
        F::CommitmentDiscountCategory,
        &["CommitmentDiscountCategory"],
        K::Enum(COMMITMENT_DISCOUNT_CATEGORIES),
    ),
];

pub static TABLE: Table = Table {
    format: BillingFormat::Focus,
    columns: COLUMNS,
    tag_prefixes: &[],
    nulls: NullStyle::Focus,
    strict_names: true,
};

/// Builds a cost line from one row's values. `Err` is the quarantine reason.
pub fn build(
    mut v: Values<'_>,
    line: u64,
    dev: &mut Deviations,
    dims: &mut DimsCache,
) -> Result<CostLine, String> {
    let tags = v.take_tags(F::Tags);
    let billed = v
        .dec(F::BilledCost)
        .ok_or("BilledCost: missing required value")?;
    let effective = match v.dec(F::EffectiveCost) {
        Some(e) => e,
        None if v.has(F::EffectiveCost) => {
            dev.add(Dev::EffectiveCostNullAssumedBilled);
            billed
        }
        None => {
            dev.add(Dev::EffectiveCostMissingAssumedBilled);
            billed
        }
    };
    let billing_currency = match v.text(F::BillingCurrency) {
        Some(c) => c,
        None if v.has(F::BillingCurrency) => return Err("BillingCurrency: missing value".into()),
        None => {
            dev.add(Dev::CurrencyMissingAssumedUsd);
            "USD"
        }
    };
    let provider_name = match v.text(F::ProviderName) {
        Some(p) => p,
        None => {
            dev.add(Dev::ProviderNameMissing);
            ""
        }
    };
    let time = |f: F, name: &str| {
        v.time(f)
            .ok_or_else(|| format!("{name}: missing required value"))
    };
    Ok(CostLine {
        line,
        billed_cost: billed,
        effective_cost: effective,
        list_cost: v.dec(F::ListCost),
        contracted_cost: v.dec(F::ContractedCost),
        billing_period_start: time(F::BillingPeriodStart, "BillingPeriodStart")?,
        billing_period_end: time(F::BillingPeriodEnd, "BillingPeriodEnd")?,
        charge_period_start: time(F::ChargePeriodStart, "ChargePeriodStart")?,
        charge_period_end: time(F::ChargePeriodEnd, "ChargePeriodEnd")?,
        consumed_quantity: v.dec(F::ConsumedQuantity),
        dims: dims.intern(
            v.dims(
                billing_currency,
                v.text(F::ChargeCategory)
                    .ok_or("ChargeCategory: missing required value")?,
                provider_name,
                tags,
            ),
        ),
    })
}

#[cfg(test)]
mod tests {
    use std::path::Path;
    use std::sync::Arc;

    use arrow_array::{
        ArrayRef, Float64Array, RecordBatch, StringArray, TimestampMillisecondArray,
    };
    use rust_decimal::Decimal;

    use crate::billing::read::tests::{DATA, dec, parse_mem, parse_path};
    use crate::billing::{BillingFormat, CostLine};

    /// The FOCUS sample as Parquet (doubles for costs, timestamps for periods, strings
    /// with real nulls elsewhere) gives the same exact totals.
    #[test]
    fn focus_parquet_same_totals_as_csv() {
        let csv_path = Path::new(DATA).join("focus-sample/multi-provider/focus_sample.csv");
        let mut rdr = csv::Reader::from_path(&csv_path).unwrap();
        let header: Vec<String> = rdr.headers().unwrap().iter().map(str::to_string).collect();
        let rows: Vec<csv::StringRecord> = rdr.records().map(Result::unwrap).collect();
        let null = |s: &str| s.is_empty() || s == "NULL";
        let mut cols: Vec<(String, ArrayRef)> = Vec::new();
        for (i, h) in header.iter().enumerate() {
            let vals = rows.iter().map(|r| &r[i]);
            let arr: ArrayRef = match h.as_str() {
                "BilledCost" | "EffectiveCost" | "ListCost" | "ConsumedQuantity" => {
                    Arc::new(Float64Array::from(
                        vals.map(|v| (!null(v)).then(|| v.parse::<f64>().unwrap()))
                            .collect::<Vec<_>>(),
                    ))
                }
                "BillingPeriodStart" | "BillingPeriodEnd" | "ChargePeriodStart"
                | "ChargePeriodEnd" => {
                    let ms = vals.map(|v| {
                        chrono::NaiveDateTime::parse_from_str(v, "%Y-%m-%d %H:%M:%S")
                            .unwrap()
                            .and_utc()
                            .timestamp_millis()
                    });
                    Arc::new(
                        TimestampMillisecondArray::from(ms.collect::<Vec<_>>())
                            .with_timezone("UTC"),
                    )
                }
                _ => Arc::new(StringArray::from(
                    vals.map(|v| (!null(v)).then_some(v)).collect::<Vec<_>>(),
                )),
            };
            cols.push((h.clone(), arr));
        }
        let batch = RecordBatch::try_from_iter(cols).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("focus.parquet");
        let mut w = parquet::arrow::ArrowWriter::try_new(
            std::fs::File::create(&path).unwrap(),
            batch.schema(),
            None,
        )
        .unwrap();
        w.write(&batch).unwrap();
        w.close().unwrap();

        let (s, lines) = parse_path(&path, None).unwrap();
        assert_eq!(
            (s.format, s.variant.as_str()),
            (Some(BillingFormat::Focus), "1.0")
        );
        assert_eq!((s.rows_read, s.lines), (1000, 1000));
        let total =
            |f: fn(&CostLine) -> Option<Decimal>| lines.iter().filter_map(f).sum::<Decimal>();
        assert_eq!(total(|l| Some(l.billed_cost)), dec("20.52022672899"));
        assert_eq!(total(|l| Some(l.effective_cost)), dec("14.97651418586"));
        assert_eq!(total(|l| l.list_cost), dec("20.39090575119"));
        let (_, csv_lines) = parse_path(&csv_path, None).unwrap();
        for (a, b) in lines.iter().zip(&csv_lines) {
            assert_eq!(a.billed_cost, b.billed_cost);
            assert_eq!(a.charge_period_start, b.charge_period_start);
            assert_eq!(a.dims.tags, b.dims.tags);
            assert_eq!(a.dims.billing_account_id, b.dims.billing_account_id);
            assert_eq!(a.line + 1, b.line);
        }
    }

    #[test]
    fn focus_1_3_provider_and_missing_columns() {
        let csv = "BilledCost,EffectiveCost,ListCost,BillingCurrency,BillingPeriodStart,BillingPeriodEnd,ChargePeriodStart,\
ChargePeriodEnd,ChargeCategory,ServiceProviderName,HostProviderName,ProviderName,Region,ConsumedQuantity,Tags\n\
1.25,null,,USD,2025-01-01T00:00:00Z,2025-02-01T00:00:00Z,2025-01-01T00:00:00Z,2025-01-01T01:00:00Z,Usage,Acme,Cloud,Old,eu-1,2,\"{\"\"k\"\":1}\"\n\
1,1,1,USD,2025-01-01T00:00:00Z,2025-02-01T00:00:00Z,2025-01-01T00:00:00Z,2025-01-01T01:00:00Z,Refund,Acme,Cloud,Old,eu-1,x,\n";
        let (s, lines) = parse_mem("f13.csv", csv.as_bytes(), None).unwrap();
        assert_eq!(s.variant, "1.3");
        assert_eq!(lines.len(), 1);
        let l = &lines[0];
        assert_eq!(l.dims.provider_name, "Acme");
        assert_eq!(l.dims.region_id.as_deref(), Some("eu-1"));
        assert_eq!(l.effective_cost, dec("1.25"));
        assert_eq!(l.list_cost, None);
        assert_eq!(l.dims.tags.get("k").map(String::as_str), Some("1"));
        assert_eq!(
            s.deviations.get("effective_cost_null_assumed_billed"),
            Some(&1)
        );
        assert_eq!(s.quarantined.len(), 1);
        assert!(
            s.quarantined[0]
                .reason
                .starts_with("ConsumedQuantity: not a number"),
            "{}",
            s.quarantined[0].reason
        );

        // A FOCUS file missing a mandatory column is rejected up front.
        let csv = "BilledCost,ChargePeriodStart,ChargePeriodEnd,BillingPeriodStart,BillingPeriodEnd\n1,2025-01-01,2025-01-02,2025-01-01,2025-02-01\n";
        match parse_mem("f.csv", csv.as_bytes(), None) {
            Err(crate::billing::BillingError::MissingColumn { column, .. }) => {
                assert_eq!(column, "ChargeCategory")
            }
            other => panic!("{:?}", other.map(|(s, _)| s)),
        }
    }
}
