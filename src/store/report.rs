//! What the monthly report reads, on both backends: a month's spend (totals, per day and
//! provider, per service, per team tag: the `spend` query, exact), placement savings from the
//! decision log, idle-GPU audit rows per decision, and `report_mail` (migration 0014), which
//! queues a month's report in the alert outbox at most once.
//!
//! Invariant: amounts are exact (SQLite sums decimal text in Rust, Postgres sums NUMERIC).
use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use sqlx::Row;

use super::billing::{Granularity, GroupBy, SpendQuery, SpendRow};
use super::budgets::INSERT_OUTBOX;
use super::sql::{MoneyRow, both};
use super::{Store, StoreError};
use crate::domain::report::{CurrencyTotal, DaySpend, GroupSpend, PlacementSaving};
use crate::notify::outbox::OutboxMessage;

/// The `budget` column of monthly reports in the alert outbox.
pub const REPORT_OUTBOX_BUDGET: &str = "monthly-report";

/// A month's spend, as the report shows it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MonthSpend {
    pub totals: Vec<CurrencyTotal>,
    pub days: Vec<DaySpend>,
    pub by_service: Vec<GroupSpend>,
    pub by_team: Vec<GroupSpend>,
}

fn spend_query(
    start: DateTime<Utc>,
    end: DateTime<Utc>,
    g: Granularity,
    by: GroupBy,
) -> SpendQuery {
    SpendQuery {
        start,
        end,
        granularity: g,
        group_by: by,
        provider: None,
        service: None,
        region: None,
        account: None,
        tag: None,
    }
}

fn groups(rows: Vec<SpendRow>) -> Vec<GroupSpend> {
    rows.into_iter()
        .map(|r| GroupSpend {
            name: r.group,
            currency: r.currency,
            billed: r.billed,
            effective: r.effective,
        })
        .collect()
}

impl Store {
    /// Spend with a charge period starting in [start, end): totals per currency, billed per
    /// day and provider, and per service and per value of `team_tag`.
    pub async fn month_spend(
        &self,
        start: DateTime<Utc>,
        end: DateTime<Utc>,
        team_tag: &str,
    ) -> Result<MonthSpend, StoreError> {
        let totals = self
            .spend(&spend_query(start, end, Granularity::Total, GroupBy::None))
            .await?
            .into_iter()
            .map(|r| CurrencyTotal {
                currency: r.currency,
                billed: r.billed,
                effective: r.effective,
                lines: r.lines,
            })
            .collect();
        let days = self
            .spend(&spend_query(
                start,
                end,
                Granularity::Day,
                GroupBy::Provider,
            ))
            .await?
            .into_iter()
            .map(|r| DaySpend {
                day: r.period_start,
                provider: r.group,
                currency: r.currency,
                billed: r.billed,
            })
            .collect();
        let by_service = groups(
            self.spend(&spend_query(
                start,
                end,
                Granularity::Total,
                GroupBy::Service,
            ))
            .await?,
        );
        let by_team = groups(
            self.spend(&spend_query(
                start,
                end,
                Granularity::Total,
                GroupBy::Tag(team_tag.to_string()),
            ))
            .await?,
        );
        Ok(MonthSpend {
            totals,
            days,
            by_service,
            by_team,
        })
    }

    /// Billed and effective spend per service in [start, end).
    pub async fn service_spend(
        &self,
        start: DateTime<Utc>,
        end: DateTime<Utc>,
    ) -> Result<Vec<GroupSpend>, StoreError> {
        Ok(groups(
            self.spend(&spend_query(
                start,
                end,
                Granularity::Total,
                GroupBy::Service,
            ))
            .await?,
        ))
    }

    /// Placed decisions in [start, end) per team and currency, with the sum of their
    /// estimated savings against the baseline (decisions without one add nothing).
    pub async fn placement_savings(
        &self,
        start: DateTime<Utc>,
        end: DateTime<Utc>,
    ) -> Result<Vec<PlacementSaving>, StoreError> {
        const WHERE: &str = "FROM placement_decision WHERE outcome = 'placed' AND decided_at >= $1 AND decided_at < $2";
        const T: &str = "placement_decision";
        let mut acc: BTreeMap<(Option<String>, String), (u64, Decimal)> = BTreeMap::new();
        match self {
            // SQLite keeps the amounts as decimal text: summed here, exactly.
            Store::Sqlite(s) => {
                let sql = format!("SELECT team, currency, estimated_saving {WHERE}");
                let rows = sqlx::query(&super::sql::sqlite_spelling(&sql))
                    .bind(start)
                    .bind(end)
                    .fetch_all(s.pool())
                    .await?;
                for r in rows {
                    let e = acc.entry((r.try_get(0)?, r.try_get(1)?)).or_default();
                    e.0 += 1;
                    e.1 += r.opt_money(2, T)?.unwrap_or_default();
                }
            }
            Store::Postgres(s) => {
                let sql = format!(
                    "SELECT team, currency, COUNT(*), COALESCE(SUM(estimated_saving), 0) {WHERE} \
                     GROUP BY 1, 2"
                );
                let rows = sqlx::query(&sql)
                    .bind(start)
                    .bind(end)
                    .fetch_all(s.pool())
                    .await?;
                for r in rows {
                    let n: i64 = r.try_get(2)?;
                    acc.insert(
                        (r.try_get(0)?, r.try_get(1)?),
                        (n.max(0) as u64, r.money(3, T)?),
                    );
                }
            }
        }
        Ok(acc
            .into_iter()
            .map(|((team, currency), (decisions, saving))| PlacementSaving {
                team,
                currency,
                decisions,
                saving: saving.normalize(),
            })
            .collect())
    }

    /// Idle-GPU audit rows written in [start, end), per decision.
    pub async fn fleet_action_counts(
        &self,
        start: DateTime<Utc>,
        end: DateTime<Utc>,
    ) -> Result<BTreeMap<String, u64>, StoreError> {
        const SQL: &str = "SELECT decision, COUNT(*) FROM fleet_action \
             WHERE at >= $1 AND at < $2 GROUP BY decision ORDER BY decision";
        both!(self, Store, |s, spell| {
            let rows = sqlx::query(&spell(SQL))
                .bind(start)
                .bind(end)
                .fetch_all(s.pool())
                .await?;
            rows.iter()
                .map(|r| Ok((r.try_get(0)?, r.try_get::<i64, _>(1)?.max(0) as u64)))
                .collect()
        })
    }

    /// Whether the report of `month` (`YYYY-MM`) was queued.
    pub async fn report_mail_queued(&self, month: &str) -> Result<bool, StoreError> {
        const SQL: &str = "SELECT COUNT(*) FROM report_mail WHERE month = $1";
        let n: i64 = both!(self, Store, |s, spell| sqlx::query_scalar(&spell(SQL))
            .bind(month)
            .fetch_one(s.pool())
            .await?);
        Ok(n > 0)
    }

    /// Queues the report of `month` in the alert outbox (as budget
    /// [`REPORT_OUTBOX_BUDGET`], period the month), due at `at`, together with its
    /// `report_mail` row — unless that month was queued already (by this process, an
    /// earlier run or another replica), when nothing is written. Returns whether it queued.
    pub async fn queue_report_mail(
        &self,
        month: &str,
        messages: &[OutboxMessage],
        at: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        const MARK: &str = "INSERT INTO report_mail (month, queued_at, recipients) \
             VALUES ($1, $2, $3) ON CONFLICT (month) DO NOTHING";
        let recipients = i64::try_from(messages.len()).unwrap_or(i64::MAX);
        both!(self, Store, |s, spell| {
            let mut tx = s.pool().begin().await?;
            let n = sqlx::query(&spell(MARK))
                .bind(month)
                .bind(at)
                .bind(recipients)
                .execute(&mut *tx)
                .await?
                .rows_affected();
            if n == 0 {
                tx.rollback().await?;
                return Ok(false);
            }
            let insert = spell(INSERT_OUTBOX);
            for m in messages {
                sqlx::query(&insert)
                    .bind(REPORT_OUTBOX_BUDGET)
                    .bind(month)
                    .bind("report")
                    .bind(&m.channel)
                    .bind(&m.target)
                    .bind(&m.subject)
                    .bind(&m.body_text)
                    .bind(&m.body_html)
                    .bind(&m.slack_payload)
                    .bind(at)
                    .execute(&mut *tx)
                    .await?;
            }
            tx.commit().await?;
        });
        Ok(true)
    }
}
