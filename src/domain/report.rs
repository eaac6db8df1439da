//! The monthly report's model and rules, pure: `Month` (a UTC calendar month, parsed from
//! `YYYY-MM`), `Health` (a budget's standing as AWS Budgets names it), `top_movers` (the
//! services whose spend changed most against the previous month), and `MonthlyReport`, the
//! plain data the page and the email are rendered from (`report::`). Amounts are exact
//! `Decimal`s; nothing here rounds.
use std::collections::BTreeMap;
use std::fmt;

use chrono::{DateTime, Datelike, NaiveDate, TimeZone, Utc};
use rust_decimal::Decimal;

/// A calendar month in UTC.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Month {
    year: i32,
    month: u32,
}

/// Why a month could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{} is not a month: expected YYYY-MM, e.g. 2026-10", crate::domain::quote::quote(.0))]
pub struct MonthError(pub String);

impl Month {
    /// `2026-10`: four digits, a dash, two digits, month 01–12, year 2000–2999.
    pub fn parse(s: &str) -> Result<Month, MonthError> {
        let bad = || MonthError(s.to_string());
        let b = s.as_bytes();
        if b.len() != 7
            || b[4] != b'-'
            || !b
                .iter()
                .enumerate()
                .all(|(i, c)| i == 4 || c.is_ascii_digit())
        {
            return Err(bad());
        }
        let year: i32 = s[..4].parse().map_err(|_| bad())?;
        let month: u32 = s[5..].parse().map_err(|_| bad())?;
        if !(1..=12).contains(&month) || !(2000..=2999).contains(&year) {
            return Err(bad());
        }
        Ok(Month { year, month })
    }

    /// The month `t` falls in (UTC).
    pub fn of(t: DateTime<Utc>) -> Month {
        Month {
            year: t.year(),
            month: t.month(),
        }
    }

    pub fn previous(self) -> Month {
        if self.month == 1 {
            Month {
                year: self.year - 1,
                month: 12,
            }
        } else {
            Month {
                year: self.year,
                month: self.month - 1,
            }
        }
    }

    pub fn next(self) -> Month {
        if self.month == 12 {
            Month {
                year: self.year + 1,
                month: 1,
            }
        } else {
            Month {
                year: self.year,
                month: self.month + 1,
            }
        }
    }

    pub fn first_day(self) -> NaiveDate {
        NaiveDate::from_ymd_opt(self.year, self.month, 1).unwrap_or(NaiveDate::MIN)
    }

    /// Calendar days in the month.
    pub fn days(self) -> u32 {
        (self.next().first_day() - self.first_day()).num_days() as u32
    }

    /// The month's first instant.
    pub fn start(self) -> DateTime<Utc> {
        Utc.from_utc_datetime(&self.first_day().and_time(chrono::NaiveTime::MIN))
    }

    /// The next month's first instant (exclusive end).
    pub fn end(self) -> DateTime<Utc> {
        self.next().start()
    }

    /// Every day of the month, in order.
    pub fn each_day(self) -> impl Iterator<Item = NaiveDate> {
        let first = self.first_day();
        (0..self.days())
            .filter_map(move |i| first.checked_add_days(chrono::Days::new(u64::from(i))))
    }

    /// `October 2026`.
    pub fn title(self) -> String {
        self.first_day().format("%B %Y").to_string()
    }
}

impl fmt::Display for Month {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:04}-{:02}", self.year, self.month)
    }
}

/// A budget's standing, as finance reads it in AWS's budget dashboards.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Health {
    /// Actual and forecast within the amount.
    Healthy,
    /// Actual over the amount.
    Unhealthy,
    /// Actual within, forecast over.
    ForecastedUnhealthy,
}

impl Health {
    /// Over means strictly more than the amount: spending exactly the budget is healthy.
    pub fn of(amount: Decimal, actual: Decimal, forecast: Decimal) -> Health {
        if actual > amount {
            Health::Unhealthy
        } else if forecast > amount {
            Health::ForecastedUnhealthy
        } else {
            Health::Healthy
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            Health::Healthy => "Healthy",
            Health::Unhealthy => "Unhealthy",
            Health::ForecastedUnhealthy => "Forecasted Unhealthy",
        }
    }

    /// A CSS class name.
    pub fn class(self) -> &'static str {
        match self {
            Health::Healthy => "healthy",
            Health::Unhealthy => "unhealthy",
            Health::ForecastedUnhealthy => "forecasted",
        }
    }
}

/// Spend of one group (a service, a team, a provider) in one currency.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupSpend {
    /// `None`: lines without the field (or the tag).
    pub name: Option<String>,
    pub currency: String,
    pub billed: Decimal,
    pub effective: Decimal,
}

/// A currency's totals for the month.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CurrencyTotal {
    pub currency: String,
    pub billed: Decimal,
    pub effective: Decimal,
    pub lines: u64,
}

/// Billed spend of one provider on one day.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DaySpend {
    pub day: NaiveDate,
    pub provider: Option<String>,
    pub currency: String,
    pub billed: Decimal,
}

/// One service's billed spend this month against the previous one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mover {
    pub name: Option<String>,
    pub currency: String,
    pub previous: Decimal,
    pub current: Decimal,
}

impl Mover {
    pub fn change(&self) -> Decimal {
        self.current - self.previous
    }

    /// Change as a percentage of the previous month, `None` when it was zero.
    pub fn percent(&self) -> Option<Decimal> {
        (!self.previous.is_zero())
            .then(|| (self.change() * Decimal::ONE_HUNDRED / self.previous).round_dp(1))
    }
}

/// The `n` groups whose billed spend changed most (by absolute change, then by name) from
/// `previous` to `current`; a group missing from one month counts zero there, and groups
/// that did not change are left out. Groups are compared per currency, never across.
pub fn top_movers(previous: &[GroupSpend], current: &[GroupSpend], n: usize) -> Vec<Mover> {
    let mut by: BTreeMap<(Option<String>, String), (Decimal, Decimal)> = BTreeMap::new();
    for g in previous {
        by.entry((g.name.clone(), g.currency.clone()))
            .or_default()
            .0 += g.billed;
    }
    for g in current {
        by.entry((g.name.clone(), g.currency.clone()))
            .or_default()
            .1 += g.billed;
    }
    let mut movers: Vec<Mover> = by
        .into_iter()
        .map(|((name, currency), (previous, current))| Mover {
            name,
            currency,
            previous: previous.normalize(),
            current: current.normalize(),
        })
        .filter(|m| !m.change().is_zero())
        .collect();
    movers.sort_by(|a, b| {
        b.change()
            .abs()
            .cmp(&a.change().abs())
            .then_with(|| a.name.cmp(&b.name))
            .then_with(|| a.currency.cmp(&b.currency))
    });
    movers.truncate(n);
    movers
}

/// One budget in the report month.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BudgetLine {
    pub name: String,
    /// The budget's period containing the month's end: `2026-10`, `2026-Q4`, ...
    pub period_key: String,
    /// The currency, or `GB`.
    pub unit: String,
    pub amount: Decimal,
    pub actual: Decimal,
    pub forecast: Decimal,
    /// The period had ended when the report was made: the forecast is the actual.
    pub closed: bool,
    pub health: Health,
}

impl BudgetLine {
    /// A budget line; a closed period's forecast is its actual.
    pub fn new(
        name: String,
        period_key: String,
        unit: String,
        amount: Decimal,
        actual: Decimal,
        forecast: Decimal,
        closed: bool,
    ) -> BudgetLine {
        let forecast = if closed { actual } else { forecast };
        BudgetLine {
            health: Health::of(amount, actual, forecast),
            name,
            period_key,
            unit,
            amount,
            actual,
            forecast,
            closed,
        }
    }
}

/// Placement savings of one team in one currency: what SelectProvider's choices saved
/// against the baseline, from the decision log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlacementSaving {
    pub team: Option<String>,
    pub currency: String,
    pub decisions: u64,
    pub saving: Decimal,
}

/// Idle-GPU enforcement in the month.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IdleSummary {
    /// Audit rows per decision (`would_stop`, `notified`, `stopped`, ...).
    pub actions: BTreeMap<String, u64>,
    /// Dollars avoided per currency (the savings ledger, clipped to the month).
    pub avoided: BTreeMap<String, Decimal>,
    /// Stopped-machine hours counted on the ledger in the month.
    pub hours: Decimal,
    /// Stops and terminations counted on the ledger.
    pub acted: u32,
}

impl IdleSummary {
    pub fn is_empty(&self) -> bool {
        self.actions.is_empty() && self.avoided.is_empty()
    }
}

/// Everything the monthly report shows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MonthlyReport {
    pub month: Month,
    pub generated_at: DateTime<Utc>,
    /// The month had not ended when the report was made: figures are month to date.
    pub partial: bool,
    pub totals: Vec<CurrencyTotal>,
    pub days: Vec<DaySpend>,
    pub by_service: Vec<GroupSpend>,
    pub by_team: Vec<GroupSpend>,
    /// The tag whose values are the teams.
    pub team_tag: String,
    pub budgets: Vec<BudgetLine>,
    pub placement: Vec<PlacementSaving>,
    pub idle: IdleSummary,
    pub movers: Vec<Mover>,
}

impl MonthlyReport {
    /// Nothing was billed, placed or acted on in the month.
    pub fn is_empty(&self) -> bool {
        self.totals.is_empty() && self.placement.is_empty() && self.idle.is_empty()
    }

    /// The last day of the month with billed lines: how far the exports reach, so a reader
    /// knows whether the month is complete.
    pub fn data_through(&self) -> Option<NaiveDate> {
        self.days.iter().map(|d| d.day).max()
    }
}

/// Sorts groups by billed spend, largest first, then by name; per currency.
pub fn sort_groups(groups: &mut [GroupSpend]) {
    groups.sort_by(|a, b| {
        a.currency
            .cmp(&b.currency)
            .then_with(|| b.billed.cmp(&a.billed))
            .then_with(|| a.name.cmp(&b.name))
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(s: &str) -> Decimal {
        s.parse().unwrap()
    }

    fn g(name: &str, billed: &str) -> GroupSpend {
        GroupSpend {
            name: Some(name.into()),
            currency: "USD".into(),
            billed: d(billed),
            effective: d(billed),
        }
    }

    #[test]
    fn months_parse_strictly_and_name_the_value() {
        let m = Month::parse("2026-10").unwrap();
        assert_eq!(m.to_string(), "2026-10");
        assert_eq!(m.start().to_rfc3339(), "2026-10-01T00:00:00+00:00");
        assert_eq!(m.end().to_rfc3339(), "2026-11-01T00:00:00+00:00");
        assert_eq!(m.days(), 31);
        assert_eq!(m.title(), "October 2026");
        for bad in [
            "2026-13",
            "2026-00",
            "oct",
            "2026-1",
            "2026/10",
            "",
            "२०२६-१०",
            "1999-12",
            "2026-10-01",
            "+026-10",
        ] {
            let e = Month::parse(bad).unwrap_err();
            assert!(e.to_string().contains("expected YYYY-MM"), "{bad}: {e}");
        }
    }

    #[test]
    fn months_step_across_years_and_know_their_days() {
        let jan = Month::parse("2027-01").unwrap();
        assert_eq!(jan.previous().to_string(), "2026-12");
        assert_eq!(jan.previous().next(), jan);
        assert_eq!(Month::parse("2028-02").unwrap().days(), 29);
        assert_eq!(Month::parse("2026-02").unwrap().each_day().count(), 28);
        assert_eq!(
            Month::of("2026-12-06T07:00:00Z".parse().unwrap()).to_string(),
            "2026-12"
        );
    }

    #[test]
    fn health_follows_aws_budgets() {
        let h = |a, f| Health::of(d("100"), d(a), d(f));
        assert_eq!(h("50", "90"), Health::Healthy);
        assert_eq!(h("100", "100"), Health::Healthy);
        assert_eq!(h("60", "100.01"), Health::ForecastedUnhealthy);
        assert_eq!(h("100.01", "100.01"), Health::Unhealthy);
        assert_eq!(h("120", "90"), Health::Unhealthy);
        assert_eq!(Health::ForecastedUnhealthy.label(), "Forecasted Unhealthy");
    }

    #[test]
    fn a_closed_period_is_judged_on_its_actual() {
        let b = BudgetLine::new(
            "b".into(),
            "2026-10".into(),
            "USD".into(),
            d("100"),
            d("90"),
            d("130"),
            true,
        );
        assert_eq!((b.forecast, b.health), (d("90"), Health::Healthy));
        let open = BudgetLine::new(
            "b".into(),
            "2026-10".into(),
            "USD".into(),
            d("100"),
            d("90"),
            d("130"),
            false,
        );
        assert_eq!(open.health, Health::ForecastedUnhealthy);
    }

    #[test]
    fn movers_rank_by_absolute_change_and_count_missing_months_as_zero() {
        let prev = [
            g("EC2", "100"),
            g("S3", "10"),
            g("RDS", "50"),
            g("Same", "5"),
        ];
        let cur = [
            g("EC2", "80"),
            g("S3", "45.5"),
            g("Lambda", "30"),
            g("Same", "5"),
        ];
        let m = top_movers(&prev, &cur, 10);
        let names: Vec<_> = m.iter().map(|m| m.name.clone().unwrap()).collect();
        assert_eq!(names, ["RDS", "S3", "Lambda", "EC2"]);
        assert_eq!(m[0].change(), d("-50"));
        assert_eq!(m[0].percent(), Some(d("-100")));
        assert_eq!(m[1].change(), d("35.5"));
        assert_eq!(m[1].percent(), Some(d("355")));
        assert_eq!(m[2].percent(), None);
        assert_eq!(top_movers(&prev, &cur, 2).len(), 2);
        assert!(top_movers(&[], &[], 10).is_empty());
    }

    #[test]
    fn movers_never_mix_currencies() {
        let prev = [g("EC2", "100")];
        let mut eur = g("EC2", "100");
        eur.currency = "EUR".into();
        let m = top_movers(&prev, &[eur], 10);
        assert_eq!(m.len(), 2);
        assert!(m.iter().any(|m| m.currency == "USD" && m.current.is_zero()));
        assert!(
            m.iter()
                .any(|m| m.currency == "EUR" && m.previous.is_zero())
        );
    }
}
