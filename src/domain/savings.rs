//! The savings ledger's arithmetic, pure and exact: a machine the idle policy stopped at
//! `from` and that later inventory polls still saw stopped (or gone) until `to` avoided
//! `price_per_hour × hours(from, to)`, split across the UTC days it spans.
use std::collections::BTreeMap;

use chrono::{DateTime, NaiveDate, Utc};
use rust_decimal::Decimal;

/// Hours and dollars avoided on one UTC day.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DayAvoided {
    /// Milliseconds stopped (whole; hours are derived for display).
    pub millis: i64,
    /// price × millis / 3,600,000: multiplied first, so whole seconds at a cent-exact price
    /// stay exact.
    pub amount: Decimal,
}

impl DayAvoided {
    /// Hours, rounded to the millisecond's 1/3,600,000 at six decimals.
    pub fn hours(&self) -> Decimal {
        (Decimal::from(self.millis) / MS_PER_HOUR).round_dp(6)
    }
}

const MS_PER_HOUR: Decimal = Decimal::from_parts(3_600_000, 0, 0, false, 0);

/// The amount `price_per_hour` costs over `millis`, multiplied before it is divided.
pub fn cost_of(price_per_hour: Decimal, millis: i64) -> Decimal {
    price_per_hour * Decimal::from(millis) / MS_PER_HOUR
}

/// Adds one stopped interval to `days` (UTC day → hours and amount), clipped to
/// [`clip_from`, `clip_to`) when given.
pub fn add_interval(
    days: &mut BTreeMap<NaiveDate, DayAvoided>,
    price_per_hour: Decimal,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    clip_from: Option<DateTime<Utc>>,
    clip_to: Option<DateTime<Utc>>,
) {
    let from = clip_from.map_or(from, |c| from.max(c));
    let to = clip_to.map_or(to, |c| to.min(c));
    let mut cur = from;
    while cur < to {
        let day = cur.date_naive();
        let next_midnight = day
            .succ_opt()
            .and_then(|d| d.and_hms_opt(0, 0, 0))
            .map(|d| d.and_utc())
            .unwrap_or(to);
        let end = next_midnight.min(to);
        let ms = (end - cur).num_milliseconds().max(0);
        let e = days.entry(day).or_default();
        e.millis += ms;
        e.amount += cost_of(price_per_hour, ms);
        cur = end;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> DateTime<Utc> {
        s.parse().unwrap()
    }

    #[test]
    fn an_interval_across_midnight_is_split_exactly() {
        let mut days = BTreeMap::new();
        let price: Decimal = "32.7726".parse().unwrap();
        add_interval(
            &mut days,
            price,
            t("2026-12-05T22:30:00Z"),
            t("2026-12-06T01:15:00Z"),
            None,
            None,
        );
        let d5 = &days[&"2026-12-05".parse().unwrap()];
        let d6 = &days[&"2026-12-06".parse().unwrap()];
        assert_eq!(d5.hours(), Decimal::new(15, 1));
        assert_eq!(d6.hours(), Decimal::new(125, 2));
        assert_eq!(d5.amount, "49.15890".parse::<Decimal>().unwrap());
        // One minute: exact, not a rounded 1/60 of an hour times the price.
        assert_eq!(
            cost_of(price, 60_000),
            "0.54621".parse::<Decimal>().unwrap()
        );
        assert_eq!(d6.amount + d5.amount, price * Decimal::new(275, 2));
    }

    #[test]
    fn clipping_and_empty_intervals() {
        let mut days = BTreeMap::new();
        let p = Decimal::ONE;
        add_interval(
            &mut days,
            p,
            t("2026-12-06T10:00:00Z"),
            t("2026-12-06T09:00:00Z"),
            None,
            None,
        );
        assert!(days.is_empty());
        add_interval(
            &mut days,
            p,
            t("2026-12-06T00:00:00Z"),
            t("2026-12-08T00:00:00Z"),
            Some(t("2026-12-07T00:00:00Z")),
            None,
        );
        assert_eq!(days.len(), 1);
        assert_eq!(
            days[&"2026-12-07".parse().unwrap()].hours(),
            Decimal::from(24)
        );
    }
}
