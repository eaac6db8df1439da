//! The daily summary of cost lines (`cost_daily`, read through the `cost_day` view; migration
//! 0012): an ingest's lines summed per (range, UTC day of the charge period start, the
//! descriptive fields a dashboard groups or filters by: everything but resource, SKU and
//! zone), with the GB of egress lines (`domain::egress_lines`). `IngestTx` adds each line
//! as it streams in ([`DailyTotals::add`]) and writes the rows in the same transaction, so
//! the summary always matches the lines; replacing a scope deletes both by range.
//!
//! Rows are partial sums: once [`DAILY_HELD`] keys are held they are written and the next
//! lines start afresh, so readers always `SUM`. Money is exact (`Decimal`), and a nullable
//! column's sum is NULL only when every line's value was (as SQL's `SUM` does).
use std::collections::BTreeMap;
use std::sync::Arc;

use chrono::{DateTime, NaiveDate, Utc};
use rust_decimal::Decimal;
use sqlx::QueryBuilder;

use super::StoreError;
use super::sql::money_text;
use crate::billing::{CostLine, LineDims};
use crate::domain::egress_lines::{charged, egress_factor};

/// Keys held in memory before they are written (each ~200 bytes plus a shared `LineDims`).
pub const DAILY_HELD: usize = 100_000;

const SECONDS_PER_DAY: i64 = 86_400;

/// What the lines of one key add up to.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Sums {
    pub billed: Decimal,
    pub effective: Decimal,
    pub list: Option<Decimal>,
    pub contracted: Option<Decimal>,
    pub quantity: Option<Decimal>,
    pub egress_gb: Decimal,
    /// The billed cost of the egress lines.
    pub egress_cost: Decimal,
    pub lines: i64,
}

/// `a + b` where a missing value counts as nothing, and both missing stay missing; `None`
/// when the sum leaves exact decimal range.
fn add_opt(a: &mut Option<Decimal>, b: Option<Decimal>) -> Option<()> {
    if let Some(b) = b {
        *a = Some(match *a {
            Some(a) => a.checked_add(b)?,
            None => b,
        });
    }
    Some(())
}

/// `a += b`, or the field's name when the sum leaves exact decimal range.
fn add_to(a: &mut Decimal, b: Decimal, field: &'static str) -> Result<(), &'static str> {
    *a = a.checked_add(b).ok_or(field)?;
    Ok(())
}

impl Sums {
    /// Adds one line; `factor` is its fields' egress factor ([`egress_factor`]). On overflow,
    /// the name of the field whose sum overflowed (the sums are then partly added: the
    /// caller fails the ingest, which rolls back).
    fn add_line(&mut self, l: &CostLine, factor: Option<Decimal>) -> Result<(), &'static str> {
        add_to(&mut self.billed, l.billed_cost, "BilledCost")?;
        add_to(&mut self.effective, l.effective_cost, "EffectiveCost")?;
        add_opt(&mut self.list, l.list_cost).ok_or("ListCost")?;
        add_opt(&mut self.contracted, l.contracted_cost).ok_or("ContractedCost")?;
        add_opt(&mut self.quantity, l.consumed_quantity).ok_or("ConsumedQuantity")?;
        if let (Some(f), Some(q)) = (factor, l.consumed_quantity)
            && charged(l.billed_cost, l.list_cost)
        {
            let gb = q.checked_mul(f).ok_or("ConsumedQuantity")?;
            add_to(&mut self.egress_gb, gb, "ConsumedQuantity")?;
            add_to(&mut self.egress_cost, l.billed_cost, "BilledCost")?;
        }
        self.lines += 1;
        Ok(())
    }
}

/// One combination of the fields a `cost_daily` row keeps (a line's, but resource, SKU and
/// zone), with its tags as JSON, serialised once.
#[derive(Clone, Debug, PartialEq)]
pub struct DayKind {
    pub dims: Arc<LineDims>,
    pub tags_json: String,
}

/// One `cost_daily` row: its range, day, kind (an index into [`DailyBatch::kinds`]) and sums.
#[derive(Clone, Debug, PartialEq)]
pub struct DailyRow {
    pub range_id: i64,
    pub day: NaiveDate,
    pub kind: usize,
    pub sums: Sums,
}

/// What [`DailyTotals::take`] hands over for writing.
#[derive(Debug, Default)]
pub struct DailyBatch {
    pub kinds: Vec<DayKind>,
    pub rows: Vec<DailyRow>,
}

/// The sums of the lines added since the last [`DailyTotals::take`]. The work that depends
/// only on a line's fields (which kind it is, its egress factor) is done once per distinct
/// `LineDims` the parser shares (by `Arc` address); per line it costs one lookup by address,
/// one by (range, day, kind), and the additions.
#[derive(Default)]
pub struct DailyTotals {
    /// By the address of a `LineDims` in `held`: its kind and egress factor.
    by_address: hashbrown::HashMap<usize, (usize, Option<Decimal>)>,
    /// Keeps the addresses in `by_address` from being reused while they are there.
    held: Vec<Arc<LineDims>>,
    kinds: Vec<DayKind>,
    /// Indexes into `kinds`, by value.
    kind_of: hashbrown::HashTable<usize>,
    hasher: hashbrown::DefaultHashBuilder,
    /// By (range id, day since the Unix epoch, kind).
    entries: hashbrown::HashMap<(i64, i64, usize), Sums>,
}

/// The fields a `cost_daily` row keeps of a line's: all but resource, SKU and zone.
pub(crate) type DayKey<'a> = ([Option<&'a str>; 12], &'a BTreeMap<String, String>);

/// The kept fields of `d`, in `cost_daily` column order (currency .. consumed unit), and its
/// tags.
pub(crate) fn day_key(d: &LineDims) -> DayKey<'_> {
    (
        [
            Some(d.billing_currency.as_str()),
            Some(d.charge_category.as_str()),
            d.charge_class.as_deref(),
            Some(d.provider_name.as_str()),
            d.service_name.as_deref(),
            d.service_category.as_deref(),
            d.region_id.as_deref(),
            d.billing_account_id.as_deref(),
            d.sub_account_id.as_deref(),
            d.pricing_category.as_deref(),
            d.commitment_discount_category.as_deref(),
            d.consumed_unit.as_deref(),
        ],
        &d.tags,
    )
}

/// The UTC day `t` falls in, as days since the Unix epoch.
fn epoch_day(t: DateTime<Utc>) -> i64 {
    t.timestamp().div_euclid(SECONDS_PER_DAY)
}

/// The first instant of an epoch day (UTC).
pub fn day_start(day: NaiveDate) -> DateTime<Utc> {
    day.and_time(chrono::NaiveTime::MIN).and_utc()
}

impl DailyTotals {
    /// Adds line `l`, stored in range `range_id`; an error naming the line and field when a
    /// sum would leave exact decimal range.
    pub fn add(&mut self, range_id: i64, l: &CostLine) -> Result<(), StoreError> {
        let address = Arc::as_ptr(&l.dims) as usize;
        let (kind, factor) = match self.by_address.get(&address) {
            Some(&known) => known,
            None => self.learn(&l.dims),
        };
        self.entries
            .entry((range_id, epoch_day(l.charge_period_start), kind))
            .or_default()
            .add_line(l, factor)
            .map_err(|field| StoreError::Overflow {
                line: l.line,
                field,
            })
    }

    /// The kind and egress factor of fields not seen at this address yet.
    fn learn(&mut self, d: &Arc<LineDims>) -> (usize, Option<Decimal>) {
        use std::hash::BuildHasher;
        let key = day_key(d);
        let hash = self.hasher.hash_one(key);
        let kinds = &self.kinds;
        let kind = match self.kind_of.find(hash, |&k| day_key(&kinds[k].dims) == key) {
            Some(&k) => k,
            None => {
                let k = self.kinds.len();
                let hasher = &self.hasher;
                self.kind_of
                    .insert_unique(hash, k, |&j| hasher.hash_one(day_key(&kinds[j].dims)));
                self.kinds.push(DayKind {
                    dims: d.clone(),
                    tags_json: serde_json::to_string(&d.tags).unwrap_or_else(|_| "{}".into()),
                });
                k
            }
        };
        let factor = egress_factor(
            &d.charge_category,
            d.service_category.as_deref(),
            d.consumed_unit.as_deref(),
        );
        self.by_address
            .insert(Arc::as_ptr(d) as usize, (kind, factor));
        self.held.push(d.clone());
        (kind, factor)
    }

    /// What is held: keys, and distinct fields (bounded too, as a file whose lines are all
    /// distinct would otherwise keep every one alive).
    pub fn len(&self) -> usize {
        self.entries.len().max(self.held.len())
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The rows to write, one per (range, day, kind), in (range, day) order, and the kinds
    /// they name; starts afresh.
    pub fn take(&mut self) -> DailyBatch {
        let entries = std::mem::take(&mut self.entries);
        let kinds = std::mem::take(&mut self.kinds);
        self.by_address.clear();
        self.held.clear();
        self.kind_of.clear();
        let mut rows: Vec<DailyRow> = entries
            .into_iter()
            .map(|((range_id, day, kind), sums)| DailyRow {
                range_id,
                day: DateTime::from_timestamp(day * SECONDS_PER_DAY, 0)
                    .map(|t| t.date_naive())
                    .unwrap_or_default(),
                kind,
                sums,
            })
            .collect();
        // In (range, day) order, as both indexes of `cost_daily` are keyed: in hash order a
        // large file's rows land on random index pages (SQLite took ~2x as long).
        rows.sort_unstable_by_key(|r| (r.range_id, r.day));
        DailyBatch { kinds, rows }
    }
}

pub const DAILY_COLS: &str = "range_id, day, day_start, \
     billing_currency, charge_category, charge_class, provider_name, service_name, \
     service_category, region_id, billing_account_id, sub_account_id, pricing_category, \
     commitment_discount_category, consumed_unit, tags, billed_cost, effective_cost, list_cost, \
     contracted_cost, consumed_quantity, egress_gb, egress_cost, lines";

/// Rows per `cost_daily` INSERT (SQLite) or COPY message (Postgres): 24 parameters each,
/// under SQLite's limit.
pub const DAILY_CHUNK: usize = 1000;

/// The VALUES of a SQLite `cost_daily` insert (money as exact decimal text).
pub fn push_daily<'a>(
    qb: &mut QueryBuilder<'a, sqlx::Sqlite>,
    kinds: &'a [DayKind],
    chunk: &'a [DailyRow],
) {
    qb.push_values(chunk, |mut b, r| {
        let kind = &kinds[r.kind];
        b.push_bind(r.range_id)
            .push_bind(r.day)
            .push_bind(day_start(r.day));
        for v in day_key(&kind.dims).0 {
            b.push_bind(v);
        }
        b.push_bind(kind.tags_json.as_str());
        let s = &r.sums;
        b.push_bind(money_text(s.billed))
            .push_bind(money_text(s.effective))
            .push_bind(s.list.map(money_text))
            .push_bind(s.contracted.map(money_text))
            .push_bind(s.quantity.map(money_text))
            .push_bind(money_text(s.egress_gb))
            .push_bind(money_text(s.egress_cost))
            .push_bind(s.lines);
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(s: &str) -> Decimal {
        s.parse().unwrap()
    }

    fn add(t: &mut DailyTotals, range: i64, l: &CostLine) {
        t.add(range, l).unwrap();
    }

    fn line(
        dims: &Arc<LineDims>,
        start: &str,
        billed: &str,
        list: Option<&str>,
        qty: Option<&str>,
    ) -> CostLine {
        let t: DateTime<Utc> = start.parse().unwrap();
        CostLine {
            line: 1,
            billed_cost: d(billed),
            effective_cost: d(billed),
            list_cost: list.map(d),
            contracted_cost: None,
            billing_period_start: t,
            billing_period_end: t,
            charge_period_start: t,
            charge_period_end: t,
            consumed_quantity: qty.map(d),
            dims: dims.clone(),
        }
    }

    fn dims(resource: &str, unit: &str) -> Arc<LineDims> {
        Arc::new(LineDims {
            billing_currency: "USD".into(),
            charge_category: "Usage".into(),
            provider_name: "AWS".into(),
            resource_id: Some(resource.into()),
            consumed_unit: Some(unit.into()),
            ..LineDims::default()
        })
    }

    #[test]
    fn lines_sum_per_range_day_and_kept_fields_exactly() {
        let (a, b) = (dims("i-1", "GB"), dims("i-2", "GB"));
        let hours = dims("i-1", "Hours");
        let mut t = DailyTotals::default();
        // Two resources on one day collapse into one row; the free line moves no egress.
        add(
            &mut t,
            7,
            &line(&a, "2026-10-01T00:00:00Z", "0.1", None, Some("2")),
        );
        add(
            &mut t,
            7,
            &line(&b, "2026-10-01T23:59:59Z", "0.2", Some("0.3"), Some("1.5")),
        );
        add(
            &mut t,
            7,
            &line(&b, "2026-10-01T05:00:00Z", "0", Some("0"), Some("10")),
        );
        add(
            &mut t,
            7,
            &line(&a, "2026-10-02T00:00:00Z", "1", None, None),
        );
        add(
            &mut t,
            8,
            &line(&a, "2026-10-01T00:00:00Z", "5", None, Some("1")),
        );
        add(
            &mut t,
            7,
            &line(&hours, "2026-10-01T00:00:00Z", "3", None, Some("4")),
        );
        assert_eq!(t.len(), 4, "keys: resources collapse as they are added");
        let batch = t.take();
        assert!(t.is_empty());
        let mut got: Vec<(i64, String, Option<&str>, Sums)> = batch
            .rows
            .iter()
            .map(|r| {
                (
                    r.range_id,
                    r.day.to_string(),
                    batch.kinds[r.kind].dims.consumed_unit.as_deref(),
                    r.sums.clone(),
                )
            })
            .collect();
        got.sort_by(|a, b| (a.0, &a.1, a.2).cmp(&(b.0, &b.1, b.2)));
        assert_eq!(batch.kinds.len(), 2, "GB and Hours");
        let sums = |billed: &str, list: Option<&str>, qty: Option<&str>, gb: &str, n| Sums {
            billed: d(billed),
            effective: d(billed),
            list: list.map(d),
            contracted: None,
            quantity: qty.map(d),
            egress_gb: d(gb),
            // Egress lines' billed cost: the charged GB lines only.
            egress_cost: if gb == "0" { Decimal::ZERO } else { d(billed) },
            lines: n,
        };
        assert_eq!(
            got,
            vec![
                (
                    7,
                    "2026-10-01".into(),
                    Some("GB"),
                    sums("0.3", Some("0.3"), Some("13.5"), "3.5", 3)
                ),
                (
                    7,
                    "2026-10-01".into(),
                    Some("Hours"),
                    sums("3", None, Some("4"), "0", 1)
                ),
                (
                    7,
                    "2026-10-02".into(),
                    Some("GB"),
                    sums("1", None, None, "0", 1)
                ),
                (
                    8,
                    "2026-10-01".into(),
                    Some("GB"),
                    sums("5", None, Some("1"), "1", 1)
                ),
            ]
        );
        assert_eq!(
            day_start("2026-10-01".parse().unwrap()).to_rfc3339(),
            "2026-10-01T00:00:00+00:00"
        );
    }

    #[test]
    fn days_before_the_epoch_and_equal_fields_at_other_addresses() {
        let a = dims("i-1", "GB");
        let copy = Arc::new((*a).clone());
        let mut t = DailyTotals::default();
        add(
            &mut t,
            1,
            &line(&a, "1969-12-31T23:00:00Z", "1", None, None),
        );
        add(
            &mut t,
            1,
            &line(&copy, "1969-12-31T01:00:00Z", "2", None, None),
        );
        let rows = t.take().rows;
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0].day.to_string(), "1969-12-31");
        assert_eq!((rows[0].sums.billed, rows[0].sums.lines), (d("3"), 2));
    }

    #[test]
    fn a_sum_beyond_exact_decimal_range_is_an_error_naming_the_line_and_field() {
        let a = dims("i-1", "TB");
        let mut t = DailyTotals::default();
        let mut big = line(
            &a,
            "2026-10-01T00:00:00Z",
            "1",
            None,
            Some("70000000000000000000000000000"),
        );
        big.line = 42;
        // 7e28 GB of quantity in TB is 7e31 GB: beyond Decimal's ~7.9e28.
        let e = t.add(1, &big).unwrap_err();
        assert!(
            matches!(
                e,
                StoreError::Overflow {
                    line: 42,
                    field: "ConsumedQuantity"
                }
            ),
            "{e}"
        );
        assert!(
            e.to_string().starts_with("line 42: ConsumedQuantity"),
            "{e}"
        );
        let mut max = line(
            &a,
            "2026-10-02T00:00:00Z",
            "79228162514264337593543950335",
            None,
            None,
        );
        max.line = 7;
        add(&mut t, 1, &max);
        let e = t.add(1, &max).unwrap_err();
        assert!(
            matches!(
                e,
                StoreError::Overflow {
                    line: 7,
                    field: "BilledCost"
                }
            ),
            "{e}"
        );
        // A unit whose count is too large for a decimal is no data-volume unit.
        assert_eq!(
            crate::domain::egress_lines::egress_unit_factor("79228162514264337593543950335 PB"),
            None
        );
    }
}
