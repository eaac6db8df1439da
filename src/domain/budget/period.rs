//! Budget periods: `period_window` finds the current day, week, month, quarter or year
//! with boundaries at local midnight in the budget's timezone.
use std::fmt;

use chrono::{DateTime, Datelike, Days, Months, NaiveDate, NaiveTime, TimeZone, Utc};
use chrono_tz::Tz;
use serde::{Deserialize, Serialize};

use super::*;

impl BudgetPeriod {
    pub fn as_str(self) -> &'static str {
        match self {
            BudgetPeriod::Monthly => "monthly",
            BudgetPeriod::Quarterly => "quarterly",
            BudgetPeriod::Annual => "annual",
            BudgetPeriod::Daily => "daily",
        }
    }
}

impl fmt::Display for BudgetPeriod {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One budget period: local midnight to local midnight in the budget's timezone.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeriodWindow {
    /// `"2026-11"`, `"2026-Q4"`, `"2026"` or `"2026-11-27"`.
    pub key: String,
    pub start: DateTime<Utc>,
    /// Exclusive.
    pub end: DateTime<Utc>,
    pub first_day: NaiveDate,
    /// Exclusive.
    pub end_day: NaiveDate,
    pub tz: Tz,
}

impl PeriodWindow {
    /// Calendar days in the period.
    pub fn days(&self) -> i64 {
        (self.end_day - self.first_day).num_days()
    }

    pub fn contains(&self, at: DateTime<Utc>) -> bool {
        self.start <= at && at < self.end
    }

    /// The calendar day of an instant in the period's timezone (how spend is bucketed).
    pub fn local_day(&self, at: DateTime<Utc>) -> NaiveDate {
        at.with_timezone(&self.tz).date_naive()
    }
}

/// The first instant of `day` in `tz`: local midnight, or — when midnight falls in a DST
/// gap — the first valid instant after it; an ambiguous midnight takes the earlier one.
pub fn local_midnight(tz: Tz, day: NaiveDate) -> DateTime<Utc> {
    let midnight = day.and_time(NaiveTime::MIN);
    // Modern offsets are whole minutes, so a gap ends on a minute boundary.
    for minute in 0..24 * 60 {
        let local = midnight + chrono::Duration::minutes(minute);
        if let Some(t) = tz.from_local_datetime(&local).earliest() {
            return t.with_timezone(&Utc);
        }
    }
    // No valid minute in a whole day cannot happen with the IANA data; stay total anyway.
    Utc.from_utc_datetime(&midnight)
}

/// The period of `period` containing `now`, with boundaries at local midnight in `tz`.
pub fn period_window(period: BudgetPeriod, tz: Tz, now: DateTime<Utc>) -> PeriodWindow {
    let today = now.with_timezone(&tz).date_naive();
    let (y, m) = (today.year(), today.month());
    let first_of = |month: u32| NaiveDate::from_ymd_opt(y, month, 1).unwrap_or(today);
    let (first_day, end_day, key) = match period {
        BudgetPeriod::Daily => (
            today,
            today + Days::new(1),
            today.format("%Y-%m-%d").to_string(),
        ),
        BudgetPeriod::Monthly => {
            let first = first_of(m);
            (first, first + Months::new(1), format!("{y:04}-{m:02}"))
        }
        BudgetPeriod::Quarterly => {
            let q = (m - 1) / 3;
            let first = first_of(q * 3 + 1);
            (first, first + Months::new(3), format!("{y:04}-Q{}", q + 1))
        }
        BudgetPeriod::Annual => {
            let first = first_of(1);
            (first, first + Months::new(12), format!("{y:04}"))
        }
    };
    PeriodWindow {
        key,
        start: local_midnight(tz, first_day),
        end: local_midnight(tz, end_day),
        first_day,
        end_day,
        tz,
    }
}
