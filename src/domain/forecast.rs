//! Spend forecast to period end (pure).
//!
//! # How bursar forecasts a budget period
//!
//! **forecast = period-to-date actual + run-rate × days remaining**, where
//!
//! - *period-to-date actual* is everything the budget counts from the first day of the
//!   period through the last complete day of data (`as_of`): usage, one-off and recurring
//!   fees (FOCUS ChargeCategory `Purchase`: reservation and savings-plan fees, marketplace
//!   purchases, monthly charges), and — when the budget includes them — tax, credits and
//!   refunds/adjustments;
//! - *run-rate* is the mean daily **usage** cost over the trailing window: the last
//!   [`DEFAULT_TRAILING_DAYS`] calendar days ending at `as_of`, shortened to the days for
//!   which there is data (early in a period, when only the period's own days are known, the
//!   window is the days elapsed so far). A day inside the window without any line counts as
//!   a zero day — the data is complete through `as_of`. No day at all gives a run-rate of 0;
//! - *days remaining* are the days after `as_of` up to the end of the period.
//!
//! One-off and recurring fees, tax, credits and adjustments are counted once, on the day
//! they were charged, and never extrapolated: a reservation fee charged on the 1st is not a
//! daily rate. Spend already recorded for days after `as_of` (a partial day) is part of the
//! actual, and the forecast is never below the actual.
//!
//! Days are calendar days in the budget's timezone. Arithmetic is exact `Decimal`; the only
//! rounding is the division by the number of days in the window (to `Decimal`'s 28
//! significant digits), and in [`backtest`] the error percentages, which are rounded to 2
//! decimal places for display.
//!
//! The trailing window follows level shifts (a fleet scaled down mid-month) within a week,
//! where a straight line through the period-to-date average does not; `tests/forecast.rs`
//! measures both on real AWS Cost and Usage Reports.
use std::collections::BTreeMap;

use chrono::{Days, NaiveDate};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

/// Trailing window of the run-rate, in days. Chosen by backtesting 3, 7 and 14 days on the
/// AWS Workshop CUR months (October and November 2018, billed cost, forecasts from day 7;
/// see `tests/forecast.rs`). Mean absolute error, October / November: 3 days 6.09% /
/// 25.02%, 7 days 5.14% / 26.92%, 14 days 6.10% / 28.35%. Seven days is best on the steady
/// month and within half a point of 3 days over both; 3 days reacts faster to November's
/// level shift but follows every dip, and a window of whole weeks is not moved by
/// weekday/weekend cycles (which these months do not have).
pub const DEFAULT_TRAILING_DAYS: u32 = 7;

/// How a cost line counts towards a budget and its forecast, from FOCUS ChargeCategory.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CostKind {
    /// `Usage`: extrapolated by the run-rate.
    Usage,
    /// `Purchase`: one-off and recurring fees (reservation and savings-plan fees,
    /// marketplace purchases, monthly charges), counted once.
    OneOff,
    /// `Credit`: counted once when the budget includes credits.
    Credit,
    /// `Tax`: counted once when the budget includes tax.
    Tax,
    /// `Adjustment` (refunds, corrections) and any category this version does not know:
    /// counted once when the budget includes refunds, never extrapolated.
    Adjustment,
}

/// Maps a FOCUS ChargeCategory (`Usage`, `Purchase`, `Tax`, `Credit`, `Adjustment`;
/// case-insensitive, surrounding spaces ignored) to how it counts. An unknown category is
/// an [`CostKind::Adjustment`]: counted, never extrapolated.
pub fn classify(charge_category: &str) -> CostKind {
    let c = charge_category.trim();
    if c.eq_ignore_ascii_case("usage") {
        CostKind::Usage
    } else if c.eq_ignore_ascii_case("purchase") {
        CostKind::OneOff
    } else if c.eq_ignore_ascii_case("credit") {
        CostKind::Credit
    } else if c.eq_ignore_ascii_case("tax") {
        CostKind::Tax
    } else {
        CostKind::Adjustment
    }
}

/// One day's spend in the budget's timezone: usage-based cost (extrapolated) and
/// everything counted once (fees, and tax/credits/adjustments when the budget includes
/// them).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct DaySpend {
    pub day: NaiveDate,
    pub usage: Decimal,
    pub one_off: Decimal,
}

impl DaySpend {
    pub fn new(day: NaiveDate) -> Self {
        DaySpend {
            day,
            usage: Decimal::ZERO,
            one_off: Decimal::ZERO,
        }
    }

    /// Adds an amount of a kind: usage to `usage`, every other kind to `one_off`.
    pub fn add(&mut self, kind: CostKind, amount: Decimal) {
        match kind {
            CostKind::Usage => self.usage += amount,
            _ => self.one_off += amount,
        }
    }

    pub fn total(&self) -> Decimal {
        self.usage + self.one_off
    }
}

/// Buckets `(day, kind, amount)` items into [`DaySpend`]s sorted by day, keeping only the
/// kinds `include` accepts (e.g. `|k| budget.includes(k)`).
pub fn bucket<I>(items: I, include: impl Fn(CostKind) -> bool) -> Vec<DaySpend>
where
    I: IntoIterator<Item = (NaiveDate, CostKind, Decimal)>,
{
    let mut by_day: BTreeMap<NaiveDate, DaySpend> = BTreeMap::new();
    for (day, kind, amount) in items {
        if include(kind) {
            by_day
                .entry(day)
                .or_insert_with(|| DaySpend::new(day))
                .add(kind, amount);
        }
    }
    by_day.into_values().collect()
}

/// The forecast of one period as of one day.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Forecast {
    /// Everything counted in the period so far, including days after `as_of`.
    pub actual: Decimal,
    /// Mean daily usage over the trailing window (0 when there is no day of data).
    pub run_rate: Decimal,
    /// Days after `as_of` up to the end of the period.
    pub days_remaining: i64,
    /// Spend at the end of the period: max(actual through `as_of` + run-rate × days
    /// remaining, actual).
    pub forecast: Decimal,
}

fn days_between(from: NaiveDate, to: NaiveDate) -> i64 {
    (to - from).num_days()
}

fn add_days(day: NaiveDate, n: i64) -> NaiveDate {
    if n >= 0 {
        day.checked_add_days(Days::new(n as u64))
    } else {
        day.checked_sub_days(Days::new(n.unsigned_abs()))
    }
    .unwrap_or(day)
}

/// Forecasts spend to the end of the period `window = (first_day, end_day)` (`end_day`
/// exclusive) as of `as_of`, the last complete day of data, with a run-rate over the last
/// `trailing_days` days (0 is treated as 1). `days` need not be sorted; days outside the
/// period only feed the run-rate (when they fall in the trailing window).
pub fn forecast(
    days: &[DaySpend],
    window: (NaiveDate, NaiveDate),
    as_of: NaiveDate,
    trailing_days: u32,
) -> Forecast {
    let (first_day, end_day) = window;
    let trailing = i64::from(trailing_days.max(1));
    // Days of data the trailing window may use: up to as_of, from the earliest day known.
    let earliest = days.iter().map(|d| d.day).min();
    let trail_from = add_days(as_of, 1 - trailing);
    let (mut complete, mut later, mut usage_sum) = (Decimal::ZERO, Decimal::ZERO, Decimal::ZERO);
    for d in days {
        if d.day >= first_day && d.day < end_day {
            if d.day <= as_of {
                complete += d.total();
            } else {
                later += d.total();
            }
        }
        if d.day <= as_of && d.day >= trail_from {
            usage_sum += d.usage;
        }
    }
    let window_days = match earliest {
        Some(e) if e <= as_of => days_between(trail_from.max(e), as_of) + 1,
        _ => 0,
    };
    let days_remaining = days_between(as_of.max(add_days(first_day, -1)), end_day) - 1;
    let days_remaining = days_remaining.clamp(0, days_between(first_day, end_day).max(0));
    let actual = complete + later;
    let (run_rate, projected) = if window_days > 0 {
        let n = Decimal::from(window_days);
        // Multiply before dividing so the projection is rounded once.
        let extra = usage_sum
            .checked_mul(Decimal::from(days_remaining))
            .map(|x| x / n)
            .unwrap_or(Decimal::MAX);
        (
            usage_sum / n,
            complete.checked_add(extra).unwrap_or(Decimal::MAX),
        )
    } else {
        (Decimal::ZERO, complete)
    };
    Forecast {
        actual,
        run_rate,
        days_remaining,
        forecast: projected.max(actual),
    }
}

/// One as-of day of a [`backtest`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct BacktestPoint {
    pub as_of: NaiveDate,
    /// Actual through `as_of`.
    pub actual: Decimal,
    pub forecast: Decimal,
    /// actual through `as_of` / elapsed days × days in the period.
    pub naive_linear: Decimal,
    /// (forecast − final) / final × 100, rounded to 2 dp.
    pub error_pct: Decimal,
    /// (naive − final) / final × 100, rounded to 2 dp.
    pub naive_error_pct: Decimal,
}

/// How the forecast would have done over one period whose final spend is known.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Backtest {
    pub final_actual: Decimal,
    pub points: Vec<BacktestPoint>,
    /// Mean absolute error of the forecast, % of the final actual (2 dp).
    pub mape: Decimal,
    pub max_abs_error_pct: Decimal,
    /// Mean absolute error of the naive linear extrapolation (2 dp).
    pub naive_mape: Decimal,
}

fn pct_error(value: Decimal, truth: Decimal) -> Decimal {
    if truth.is_zero() {
        // Nothing to forecast: report no error rather than divide by zero.
        return Decimal::ZERO;
    }
    (value - truth) * Decimal::ONE_HUNDRED / truth
}

/// Replays the period `[first_day, end_day)` day by day: for each `as_of` from
/// `first_day + from_day_index` (0-based, so 6 = "the 7th day is complete") to the day
/// before the last day with data (the last point that still has a day to forecast),
/// forecasts with only the days up to `as_of` and compares with the final actual (every
/// day of the period in `days`). Errors are signed percentages of the final actual; the
/// means are over the absolute errors (computed exactly, then rounded to 2 dp).
pub fn backtest(
    days: &[DaySpend],
    first_day: NaiveDate,
    end_day: NaiveDate,
    trailing_days: u32,
    from_day_index: usize,
) -> Backtest {
    let mut sorted: Vec<DaySpend> = days
        .iter()
        .filter(|d| d.day >= first_day && d.day < end_day)
        .copied()
        .collect();
    sorted.sort_by_key(|d| d.day);
    let final_actual: Decimal = sorted.iter().map(DaySpend::total).sum();
    let total_days = Decimal::from(days_between(first_day, end_day));
    let mut points = Vec::new();
    let (mut sum_abs, mut sum_naive_abs, mut max_abs) =
        (Decimal::ZERO, Decimal::ZERO, Decimal::ZERO);
    if let Some(last) = sorted.last().map(|d| d.day) {
        let mut as_of = add_days(first_day, from_day_index as i64);
        let stop = last.min(add_days(end_day, -1));
        while as_of < stop {
            let known = &sorted[..sorted.partition_point(|d| d.day <= as_of)];
            let f = forecast(known, (first_day, end_day), as_of, trailing_days);
            let elapsed = Decimal::from(days_between(first_day, as_of) + 1);
            let naive = f.actual * total_days / elapsed;
            let err = pct_error(f.forecast, final_actual);
            let naive_err = pct_error(naive, final_actual);
            sum_abs += err.abs();
            sum_naive_abs += naive_err.abs();
            max_abs = max_abs.max(err.abs());
            points.push(BacktestPoint {
                as_of,
                actual: f.actual,
                forecast: f.forecast,
                naive_linear: naive,
                error_pct: err.round_dp(2),
                naive_error_pct: naive_err.round_dp(2),
            });
            as_of = add_days(as_of, 1);
        }
    }
    let n = Decimal::from(points.len().max(1));
    Backtest {
        final_actual,
        mape: (sum_abs / n).round_dp(2),
        max_abs_error_pct: max_abs.round_dp(2),
        naive_mape: (sum_naive_abs / n).round_dp(2),
        points,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(s: &str) -> Decimal {
        s.parse().unwrap()
    }
    fn day(s: &str) -> NaiveDate {
        s.parse().unwrap()
    }
    fn spend(s: &str, usage: &str, one_off: &str) -> DaySpend {
        DaySpend {
            day: day(s),
            usage: d(usage),
            one_off: d(one_off),
        }
    }
    const NOV: (&str, &str) = ("2026-11-01", "2026-12-01");
    fn nov() -> (NaiveDate, NaiveDate) {
        (day(NOV.0), day(NOV.1))
    }

    #[test]
    fn classify_maps_every_focus_charge_category() {
        assert_eq!(classify("Usage"), CostKind::Usage);
        assert_eq!(classify(" usage "), CostKind::Usage);
        assert_eq!(classify("Purchase"), CostKind::OneOff);
        assert_eq!(classify("Tax"), CostKind::Tax);
        assert_eq!(classify("CREDIT"), CostKind::Credit);
        assert_eq!(classify("Adjustment"), CostKind::Adjustment);
        assert_eq!(classify("Refund"), CostKind::Adjustment);
        assert_eq!(classify(""), CostKind::Adjustment);
    }

    #[test]
    fn one_off_fees_are_counted_once_and_never_extrapolated() {
        // 10 days of 10/day usage, a 300 reservation fee on the 1st.
        let mut days: Vec<DaySpend> = (1..=10)
            .map(|i| spend(&format!("2026-11-{i:02}"), "10", "0"))
            .collect();
        days[0].one_off = d("300");
        let f = forecast(&days, nov(), day("2026-11-10"), 7);
        assert_eq!(f.actual, d("400"));
        assert_eq!(f.run_rate, d("10"));
        assert_eq!(f.days_remaining, 20);
        assert_eq!(f.forecast, d("600"));
    }

    #[test]
    fn trailing_window_follows_a_level_shift() {
        // 100/day for 14 days, then 20/day for 7 days.
        let days: Vec<DaySpend> = (1..=21)
            .map(|i| {
                spend(
                    &format!("2026-11-{i:02}"),
                    if i <= 14 { "100" } else { "20" },
                    "0",
                )
            })
            .collect();
        let f = forecast(&days, nov(), day("2026-11-21"), 7);
        assert_eq!(f.actual, d("1540"));
        assert_eq!(f.run_rate, d("20"));
        assert_eq!(f.forecast, d("1540") + d("20") * d("9"));
        // A 14-day window still remembers half of the old level.
        let f14 = forecast(&days, nov(), day("2026-11-21"), 14);
        assert_eq!(f14.run_rate, d("60"));
    }

    #[test]
    fn early_in_the_period_the_window_is_the_days_elapsed() {
        let days = vec![
            spend("2026-11-01", "30", "0"),
            spend("2026-11-02", "10", "5"),
        ];
        let f = forecast(&days, nov(), day("2026-11-02"), 7);
        assert_eq!(f.run_rate, d("20"));
        assert_eq!(f.days_remaining, 28);
        assert_eq!(f.forecast, d("45") + d("20") * d("28"));
    }

    #[test]
    fn days_before_the_period_feed_the_run_rate_but_not_the_actual() {
        let days = vec![
            spend("2026-10-30", "12", "0"),
            spend("2026-10-31", "12", "99"),
            spend("2026-11-01", "12", "0"),
        ];
        let f = forecast(&days, nov(), day("2026-11-01"), 7);
        assert_eq!(f.actual, d("12"));
        assert_eq!(f.run_rate, d("12"));
        assert_eq!(f.forecast, d("12") + d("12") * d("29"));
    }

    #[test]
    fn a_missing_day_inside_the_window_counts_as_zero() {
        let days = vec![
            spend("2026-11-01", "14", "0"),
            spend("2026-11-07", "14", "0"),
        ];
        let f = forecast(&days, nov(), day("2026-11-07"), 7);
        assert_eq!(f.run_rate, d("4"));
    }

    #[test]
    fn no_data_gives_a_zero_run_rate_and_the_whole_period_remaining() {
        let f = forecast(&[], nov(), day("2026-10-31"), 7);
        assert_eq!(
            f,
            Forecast {
                actual: Decimal::ZERO,
                run_rate: Decimal::ZERO,
                days_remaining: 30,
                forecast: Decimal::ZERO,
            }
        );
        // Zero trailing days behaves as one.
        let days = vec![spend("2026-11-01", "5", "0"), spend("2026-11-02", "7", "0")];
        assert_eq!(
            forecast(&days, nov(), day("2026-11-02"), 0).run_rate,
            d("7")
        );
    }

    #[test]
    fn partial_days_after_as_of_count_in_actual_and_floor_the_forecast() {
        let days = vec![
            spend("2026-11-29", "1", "0"),
            spend("2026-11-30", "500", "0"), // partial, after as_of
        ];
        let f = forecast(&days, nov(), day("2026-11-29"), 7);
        assert_eq!(f.actual, d("501"));
        assert_eq!(f.days_remaining, 1);
        // 1 + 1 × 1 < 501: never below the actual.
        assert_eq!(f.forecast, d("501"));
        // At the last day nothing remains.
        let f = forecast(&days, nov(), day("2026-11-30"), 7);
        assert_eq!((f.days_remaining, f.forecast), (0, d("501")));
    }

    #[test]
    fn division_rounds_once() {
        let days: Vec<DaySpend> = (1..=3)
            .map(|i| {
                spend(
                    &format!("2026-11-{i:02}"),
                    if i == 1 { "1" } else { "0" },
                    "0",
                )
            })
            .collect();
        let f = forecast(&days, nov(), day("2026-11-03"), 3);
        // 1 + 1 × 27 / 3 = 10 exactly, although the run-rate 1/3 is not exact.
        assert_eq!(f.forecast, d("10"));
        assert_eq!(f.run_rate.round_dp(4), d("0.3333"));
    }

    #[test]
    fn bucket_groups_by_day_and_drops_excluded_kinds() {
        let items = vec![
            (day("2026-11-02"), CostKind::Usage, d("1.5")),
            (day("2026-11-01"), CostKind::Tax, d("0.2")),
            (day("2026-11-02"), CostKind::Credit, d("-1")),
            (day("2026-11-02"), CostKind::OneOff, d("3")),
        ];
        let all = bucket(items.clone(), |_| true);
        assert_eq!(
            all,
            vec![
                spend("2026-11-01", "0", "0.2"),
                spend("2026-11-02", "1.5", "2")
            ]
        );
        let no_credit = bucket(items, |k| k != CostKind::Credit);
        assert_eq!(no_credit[1], spend("2026-11-02", "1.5", "3"));
    }

    #[test]
    fn backtest_compares_with_the_final_actual_and_the_naive_line() {
        // 10/day for 15 days, then 0: the trailing window sees the drop, the line does not.
        let days: Vec<DaySpend> = (1..=30)
            .map(|i| {
                spend(
                    &format!("2026-11-{i:02}"),
                    if i <= 15 { "10" } else { "0" },
                    "0",
                )
            })
            .collect();
        let b = backtest(&days, day(NOV.0), day(NOV.1), 3, 6);
        assert_eq!(b.final_actual, d("150"));
        // as_of from Nov 7 to Nov 29.
        assert_eq!(b.points.len(), 23);
        assert_eq!(b.points[0].as_of, day("2026-11-07"));
        assert_eq!(b.points.last().unwrap().as_of, day("2026-11-29"));
        // Nov 7: 70 + 10 × 23 = 300 → +100%; naive 70/7×30 = 300 too.
        assert_eq!(b.points[0].forecast, d("300"));
        assert_eq!(b.points[0].error_pct, d("100"));
        assert_eq!(b.points[0].naive_error_pct, d("100"));
        // Nov 18: three zero days → exact; naive 150/18×30 = 250 → +66.67%.
        let p = b
            .points
            .iter()
            .find(|p| p.as_of == day("2026-11-18"))
            .unwrap();
        assert_eq!((p.forecast, p.error_pct), (d("150"), d("0")));
        assert_eq!(p.naive_error_pct, d("66.67"));
        assert!(b.mape < b.naive_mape);
        assert_eq!(b.max_abs_error_pct, d("100"));
    }

    #[test]
    fn backtest_of_empty_data_has_no_points() {
        let b = backtest(&[], day(NOV.0), day(NOV.1), 7, 6);
        assert_eq!(b.final_actual, Decimal::ZERO);
        assert!(b.points.is_empty());
        assert_eq!(b.mape, Decimal::ZERO);
    }
}
