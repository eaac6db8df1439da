//! Budget persistence: budget definitions (`domain::budget::Budget` in, `StoredBudget` out;
//! the `spec` column holds the budget's JSON, written and read only here), fired alerts, the
//! alert outbox, the evaluation history, and the spend reads a budget evaluation needs.
//!
//! Invariant: a (budget, period, threshold) fires at most once — `budget_alert`'s primary key
//! decides, and its outbox rows are written in the same transaction, so an alert is either
//! fired with all its messages queued or not fired at all.
//! Invariant: a claimed outbox row is leased to one sender (`claimed_until`); Postgres claims
//! with `FOR UPDATE SKIP LOCKED`, SQLite with one atomic `UPDATE … RETURNING`.
//! Invariant: `target` (an email address or a webhook URL) is a secret: the `Debug` of the
//! outbox types (`notify::outbox`) redacts it, and nothing here logs it.
use std::collections::BTreeMap;
use std::str::FromStr;
use std::time::Duration;

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use sqlx::{Postgres, QueryBuilder, Row, Sqlite};

use super::billing::{SQLITE_LINES, from_sqlite_micros, sqlite_micros};
use super::sql::{BindMoney, MoneyRow, both};
use super::{Store, StoreError};
use crate::domain::budget::Budget;
use crate::domain::egress_lines::{
    NON_TRANSFER_CATEGORIES, egress_gb_per_unit, egress_unit_factor,
};
use crate::domain::tags::valid_tag_key;
use crate::notify::outbox::{OutboxMessage, OutboxRow};

/// Where a budget was declared (the `origin` column).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BudgetOrigin {
    /// Created through the BudgetService API.
    Api,
    /// Declared in the config file (read-only through the API).
    Config,
}

impl BudgetOrigin {
    /// The stored (and API) spelling: `api` or `config`.
    pub const fn as_str(self) -> &'static str {
        match self {
            BudgetOrigin::Api => "api",
            BudgetOrigin::Config => "config",
        }
    }
}

impl FromStr for BudgetOrigin {
    type Err = StoreError;

    fn from_str(s: &str) -> Result<Self, StoreError> {
        match s {
            "api" => Ok(BudgetOrigin::Api),
            "config" => Ok(BudgetOrigin::Config),
            other => Err(StoreError::Corrupt {
                table: "budget",
                detail: format!("unknown origin {other:?}"),
            }),
        }
    }
}

/// One row of `budget`, its spec read back as a [`Budget`] (whose `name` is the row's).
#[derive(Debug, Clone, PartialEq)]
pub struct StoredBudget {
    pub budget: Budget,
    pub origin: BudgetOrigin,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// The JSON stored as a budget's `spec` (the same serde shape as `[[budgets]]`).
fn spec_json(b: &Budget) -> String {
    // A Budget is plain data (strings, decimals as text, enums): serialising cannot fail.
    serde_json::to_string(b).unwrap_or_default()
}

/// Reads the stored spec of budget `name`. The serde error is not passed on: it may quote a
/// value, and values include webhook URLs.
pub(crate) fn read_spec(name: &str, spec: &str) -> Result<Budget, StoreError> {
    serde_json::from_str::<Budget>(spec).map_err(|e| StoreError::BudgetSpec {
        budget: name.to_string(),
        line: e.line(),
        column: e.column(),
    })
}

/// A threshold crossing to record (one row of `budget_alert`).
#[derive(Debug, Clone, PartialEq)]
pub struct FiredAlert {
    pub budget: String,
    pub period_key: String,
    pub threshold_key: String,
    pub actual: Decimal,
    pub forecast: Decimal,
    /// The budget's amount for the period.
    pub amount: Decimal,
    /// ISO currency code, or `GB` for egress budgets.
    pub currency: String,
    pub fired_at: DateTime<Utc>,
}

/// One row of `budget_evaluation` (history for dashboards).
#[derive(Debug, Clone, PartialEq)]
pub struct BudgetEvaluation {
    pub budget: String,
    pub evaluated_at: DateTime<Utc>,
    pub period_key: String,
    pub period_start: DateTime<Utc>,
    pub period_end: DateTime<Utc>,
    pub amount: Decimal,
    /// ISO currency code, or `GB` for egress budgets.
    pub currency: String,
    pub actual: Decimal,
    pub forecast: Option<Decimal>,
}

/// Which cost lines a budget covers; every set field must match (same semantics as the
/// filters of `billing::SpendQuery`). Tag keys must pass `domain::tags::valid_tag_key`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BudgetSpendFilter {
    pub provider: Option<String>,
    pub service: Option<String>,
    pub account: Option<String>,
    pub region: Option<String>,
    pub tag: Option<(String, String)>,
    /// Only lines billed in this currency; `None` = every currency (egress budgets, which
    /// count GB). A money budget sets its own currency so that currencies never mix.
    pub currency: Option<String>,
}

/// Spend of one charge period start and charge category.
#[derive(Debug, Clone, PartialEq)]
pub struct BudgetSpendRow {
    pub charge_start: DateTime<Utc>,
    pub charge_category: String,
    pub currency: String,
    pub billed: Decimal,
    pub effective: Decimal,
    /// GB of data transfer on egress lines (see [`egress_gb_per_unit`]).
    pub egress_gb: Decimal,
}

/// What `top_contributors` groups by.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Contributor {
    Service,
    /// The value of this tag key.
    Tag(String),
}

/// Label of lines without a service name or without the tag, in `top_contributors`.
pub const NO_VALUE: &str = "(none)";

fn parse_dec(table: &'static str, s: &str) -> Result<Decimal, StoreError> {
    crate::domain::money::parse_amount(s).map_err(|e| StoreError::Corrupt {
        table,
        detail: e.to_string(),
    })
}

fn lease(d: Duration) -> chrono::Duration {
    chrono::Duration::from_std(d).unwrap_or(chrono::Duration::MAX)
}

/// Longest `last_error` kept.
const MAX_ERROR: usize = 1000;

const BUDGET_COLS: &str = "name, spec, origin, created_at, updated_at";

const OUTBOX_COLS: &str = "id, budget, period_key, threshold_key, channel, target, subject, \
     body_text, body_html, slack_payload, state, attempts, next_attempt_at, claimed_until, \
     last_error, created_at, delivered_at";

pub(super) const INSERT_OUTBOX: &str = "INSERT INTO alert_outbox (budget, period_key, threshold_key, \
     channel, target, subject, body_text, body_html, slack_payload, state, attempts, \
     next_attempt_at, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, 'pending', 0, $10, $10)";

/// The same code over a `SqliteRow` or a `PgRow` (columns in `BUDGET_COLS` order): the
/// outer `Result` a failed column read, the inner one a spec that does not parse.
macro_rules! budget_from_row {
    ($r:expr) => {{
        let name: String = $r.try_get(0)?;
        let spec: &str = $r.try_get(1)?;
        let origin: &str = $r.try_get(2)?;
        let origin: BudgetOrigin = origin.parse()?;
        let (created_at, updated_at) = ($r.try_get(3)?, $r.try_get(4)?);
        read_spec(&name, spec).map(|budget| StoredBudget {
            budget,
            origin,
            created_at,
            updated_at,
        })
    }};
}

/// Columns in `OUTBOX_COLS` order.
macro_rules! outbox_from_row {
    ($r:expr) => {
        OutboxRow {
            id: $r.try_get(0)?,
            budget: $r.try_get(1)?,
            period_key: $r.try_get(2)?,
            threshold_key: $r.try_get(3)?,
            channel: $r.try_get(4)?,
            target: $r.try_get(5)?,
            subject: $r.try_get(6)?,
            body_text: $r.try_get(7)?,
            body_html: $r.try_get(8)?,
            slack_payload: $r.try_get(9)?,
            state: $r.try_get(10)?,
            attempts: $r.try_get(11)?,
            next_attempt_at: $r.try_get(12)?,
            claimed_until: $r.try_get(13)?,
            last_error: $r.try_get(14)?,
            created_at: $r.try_get(15)?,
            delivered_at: $r.try_get(16)?,
        }
    };
}

fn bad_tag_key(k: &str) -> StoreError {
    StoreError::Query(sqlx::Error::InvalidArgument(format!(
        "tag key {k:?} cannot be queried (empty, too long, or contains quotes, backslashes or control characters)"
    )))
}

impl Store {
    // ---- budgets ----------------------------------------------------------------------

    /// Creates a budget (named by `budget.name`); `false` if one with that name exists
    /// (nothing changes).
    pub async fn create_budget(
        &self,
        budget: &Budget,
        origin: BudgetOrigin,
    ) -> Result<bool, StoreError> {
        const SQL: &str = "INSERT INTO budget (name, spec, origin, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $4) ON CONFLICT (name) DO NOTHING";
        let n = self.write_budget(SQL, budget, origin).await?;
        Ok(n == 1)
    }

    /// Replaces the spec and origin of the budget named `budget.name`; `false` if there is
    /// none with that name.
    pub async fn update_budget(
        &self,
        budget: &Budget,
        origin: BudgetOrigin,
    ) -> Result<bool, StoreError> {
        const SQL: &str =
            "UPDATE budget SET spec = $2, origin = $3, updated_at = $4 WHERE name = $1";
        let n = self.write_budget(SQL, budget, origin).await?;
        Ok(n > 0)
    }

    /// Creates or replaces a budget (config budgets at start). `updated_at` only moves when
    /// the spec or origin changed.
    pub async fn upsert_budget(
        &self,
        budget: &Budget,
        origin: BudgetOrigin,
    ) -> Result<(), StoreError> {
        const SQL: &str = "INSERT INTO budget (name, spec, origin, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $4) \
             ON CONFLICT (name) DO UPDATE SET spec = excluded.spec, origin = excluded.origin, \
             updated_at = CASE WHEN budget.spec <> excluded.spec OR budget.origin <> excluded.origin \
                 THEN excluded.updated_at ELSE budget.updated_at END";
        self.write_budget(SQL, budget, origin).await?;
        Ok(())
    }

    /// Runs a budget write whose parameters are `$1` name, `$2` spec (the budget's JSON),
    /// `$3` origin and `$4` now; the rows it affected.
    async fn write_budget(
        &self,
        sql: &str,
        budget: &Budget,
        origin: BudgetOrigin,
    ) -> Result<u64, StoreError> {
        let spec = spec_json(budget);
        let now = Utc::now();
        Ok(both!(self, Store, |s, spell| sqlx::query(&spell(sql))
            .bind(&budget.name)
            .bind(&spec)
            .bind(origin.as_str())
            .bind(now)
            .execute(s.pool())
            .await?
            .rows_affected()))
    }

    /// Deletes a budget; `false` if there was none. Its fired alerts and history stay.
    pub async fn delete_budget(&self, name: &str) -> Result<bool, StoreError> {
        const SQL: &str = "DELETE FROM budget WHERE name = $1";
        let n = both!(self, Store, |s, spell| sqlx::query(&spell(SQL))
            .bind(name)
            .execute(s.pool())
            .await?
            .rows_affected());
        Ok(n > 0)
    }

    /// The budget named `name`; [`StoreError::BudgetSpec`] if its stored spec does not parse.
    pub async fn get_budget(&self, name: &str) -> Result<Option<StoredBudget>, StoreError> {
        let sql = format!("SELECT {BUDGET_COLS} FROM budget WHERE name = $1");
        both!(self, Store, |s, spell| {
            match sqlx::query(&spell(&sql))
                .bind(name)
                .fetch_optional(s.pool())
                .await?
            {
                Some(r) => budget_from_row!(r).map(Some),
                None => Ok(None),
            }
        })
    }

    /// Every budget, ordered by name. A budget whose stored spec does not parse is an
    /// `Err(StoreError::BudgetSpec)` in its place, so a caller may fail or skip it.
    pub async fn list_budgets(&self) -> Result<Vec<Result<StoredBudget, StoreError>>, StoreError> {
        let sql = format!("SELECT {BUDGET_COLS} FROM budget ORDER BY name");
        both!(self, Store, |s, spell| {
            let rows = sqlx::query(&spell(&sql)).fetch_all(s.pool()).await?;
            rows.iter().map(|r| Ok(budget_from_row!(r))).collect()
        })
    }

    /// The origin of the budget named `name`, without reading its spec (so a budget whose
    /// spec does not parse can still be replaced or deleted).
    pub async fn budget_origin(&self, name: &str) -> Result<Option<BudgetOrigin>, StoreError> {
        const SQL: &str = "SELECT origin FROM budget WHERE name = $1";
        let origin: Option<String> = both!(self, Store, |s, spell| sqlx::query_scalar(&spell(SQL))
            .bind(name)
            .fetch_optional(s.pool())
            .await?);
        origin.map(|o| o.parse()).transpose()
    }

    /// Every budget's name and origin, ordered by name, without reading the specs.
    pub async fn budget_origins(&self) -> Result<Vec<(String, BudgetOrigin)>, StoreError> {
        const SQL: &str = "SELECT name, origin FROM budget ORDER BY name";
        let rows: Vec<(String, String)> =
            both!(self, Store, |s, spell| sqlx::query_as(&spell(SQL))
                .fetch_all(s.pool())
                .await?);
        rows.into_iter()
            .map(|(name, origin)| Ok((name, origin.parse()?)))
            .collect()
    }

    // ---- alerts and the outbox ------------------------------------------------------------

    /// Records that `alert` fired and queues `messages`, in one transaction — unless this
    /// (budget, period, threshold) already fired, in which case nothing is written.
    /// Returns whether it fired now. Outbox rows are due at `alert.fired_at`.
    pub async fn fire_alert(
        &self,
        alert: &FiredAlert,
        messages: &[OutboxMessage],
    ) -> Result<bool, StoreError> {
        const INSERT_ALERT: &str = "INSERT INTO budget_alert (budget, period_key, threshold_key, \
             fired_at, actual, forecast, amount, currency) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) \
             ON CONFLICT (budget, period_key, threshold_key) DO NOTHING";
        let a = alert;
        both!(self, Store, |s, spell| {
            let mut tx = s.pool().begin().await?;
            let n = sqlx::query(&spell(INSERT_ALERT))
                .bind(&a.budget)
                .bind(&a.period_key)
                .bind(&a.threshold_key)
                .bind(a.fired_at)
                .bind_money(a.actual)
                .bind_money(a.forecast)
                .bind_money(a.amount)
                .bind(&a.currency)
                .execute(&mut *tx)
                .await?
                .rows_affected();
            if n == 0 {
                tx.rollback().await?;
                return Ok(false);
            }
            let insert_outbox = spell(INSERT_OUTBOX);
            for m in messages {
                sqlx::query(&insert_outbox)
                    .bind(&a.budget)
                    .bind(&a.period_key)
                    .bind(&a.threshold_key)
                    .bind(&m.channel)
                    .bind(&m.target)
                    .bind(&m.subject)
                    .bind(&m.body_text)
                    .bind(&m.body_html)
                    .bind(&m.slack_payload)
                    .bind(a.fired_at)
                    .execute(&mut *tx)
                    .await?;
            }
            tx.commit().await?;
        });
        Ok(true)
    }

    /// Threshold keys that fired for a budget's period, sorted.
    pub async fn alerts_fired(
        &self,
        budget: &str,
        period_key: &str,
    ) -> Result<Vec<String>, StoreError> {
        const SQL: &str = "SELECT threshold_key FROM budget_alert \
             WHERE budget = $1 AND period_key = $2 ORDER BY threshold_key";
        Ok(both!(self, Store, |s, spell| sqlx::query_scalar(&spell(
            SQL
        ))
        .bind(budget)
        .bind(period_key)
        .fetch_all(s.pool())
        .await?))
    }

    /// Every fired alert of a budget, oldest first.
    pub async fn list_fired_alerts(&self, budget: &str) -> Result<Vec<FiredAlert>, StoreError> {
        const SQL: &str = "SELECT budget, period_key, threshold_key, actual, forecast, amount, \
             currency, fired_at FROM budget_alert WHERE budget = $1 \
             ORDER BY fired_at, period_key, threshold_key";
        const T: &str = "budget_alert";
        both!(self, Store, |s, spell| {
            let rows = sqlx::query(&spell(SQL))
                .bind(budget)
                .fetch_all(s.pool())
                .await?;
            rows.iter()
                .map(|r| {
                    Ok(FiredAlert {
                        budget: r.try_get(0)?,
                        period_key: r.try_get(1)?,
                        threshold_key: r.try_get(2)?,
                        actual: r.money(3, T)?,
                        forecast: r.money(4, T)?,
                        amount: r.money(5, T)?,
                        currency: r.try_get(6)?,
                        fired_at: r.try_get(7)?,
                    })
                })
                .collect()
        })
    }

    /// Claims up to `limit` pending rows due at `now` (next attempt ≤ now, no live lease)
    /// by leasing them until `now + lease`; a row is never handed to two claimers at once.
    /// Oldest due first.
    pub async fn claim_due_outbox(
        &self,
        now: DateTime<Utc>,
        lease_for: Duration,
        limit: i64,
    ) -> Result<Vec<OutboxRow>, StoreError> {
        let until = now + lease(lease_for);
        let pick = "SELECT id FROM alert_outbox WHERE state = 'pending' AND next_attempt_at <= $2 \
             AND (claimed_until IS NULL OR claimed_until < $2) ORDER BY next_attempt_at, id LIMIT $3";
        // The one difference: Postgres skips rows another claimer has locked; SQLite's
        // single writer makes the UPDATE atomic as it is.
        let lock = match self {
            Store::Sqlite(_) => "",
            Store::Postgres(_) => " FOR UPDATE SKIP LOCKED",
        };
        let sql = format!(
            "UPDATE alert_outbox SET claimed_until = $1 WHERE id IN ({pick}{lock}) \
             RETURNING {OUTBOX_COLS}"
        );
        let mut rows: Vec<OutboxRow> = both!(self, Store, |s, spell| {
            let rows = sqlx::query(&spell(&sql))
                .bind(until)
                .bind(now)
                .bind(limit)
                .fetch_all(s.pool())
                .await?;
            rows.iter()
                .map(|r| Ok::<_, StoreError>(outbox_from_row!(r)))
                .collect::<Result<_, _>>()?
        });
        rows.sort_by_key(|r| (r.next_attempt_at, r.id));
        Ok(rows)
    }

    /// Marks a pending row delivered (counting the attempt) and releases its lease.
    pub async fn mark_delivered(&self, id: i64, at: DateTime<Utc>) -> Result<(), StoreError> {
        const SQL: &str = "UPDATE alert_outbox SET state = 'delivered', delivered_at = $2, \
             attempts = attempts + 1, claimed_until = NULL WHERE id = $1 AND state = 'pending'";
        both!(self, Store, |s, spell| sqlx::query(&spell(SQL))
            .bind(id)
            .bind(at)
            .execute(s.pool())
            .await?
            .rows_affected());
        Ok(())
    }

    /// Records a failed attempt: attempts + 1, the error (must not contain the target), the
    /// next attempt time, and releases the lease. The row stays pending.
    pub async fn mark_failed(
        &self,
        id: i64,
        error: &str,
        next_attempt_at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        const SQL: &str = "UPDATE alert_outbox SET attempts = attempts + 1, last_error = $2, \
             next_attempt_at = $3, claimed_until = NULL WHERE id = $1 AND state = 'pending'";
        let error: String = error.chars().take(MAX_ERROR).collect();
        both!(self, Store, |s, spell| sqlx::query(&spell(SQL))
            .bind(id)
            .bind(&error)
            .bind(next_attempt_at)
            .execute(s.pool())
            .await?
            .rows_affected());
        Ok(())
    }

    /// Gives back a claim this sender will not use (a replica shutting down, a round that
    /// ran out of lease): the row's lease is cleared, so any replica may send it at once.
    /// `claimed_until` is the lease as the claim returned it: a row claimed again since (its
    /// lease ran out, another replica took it) is left alone. Says whether it released it.
    pub async fn release_outbox_claim(
        &self,
        id: i64,
        claimed_until: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        const SQL: &str = "UPDATE alert_outbox SET claimed_until = NULL \
             WHERE id = $1 AND state = 'pending' AND claimed_until = $2";
        let n = both!(self, Store, |s, spell| sqlx::query(&spell(SQL))
            .bind(id)
            .bind(claimed_until)
            .execute(s.pool())
            .await?
            .rows_affected());
        Ok(n == 1)
    }

    /// Rows not yet delivered.
    pub async fn outbox_pending_count(&self) -> Result<u64, StoreError> {
        const SQL: &str = "SELECT COUNT(*) FROM alert_outbox WHERE state = 'pending'";
        let n: i64 = both!(self, Store, |s, spell| sqlx::query_scalar(&spell(SQL))
            .fetch_one(s.pool())
            .await?);
        Ok(n as u64)
    }

    /// Outbox rows (all, or one budget's), by id — for tests and the CLI. Rows carry their
    /// targets: show them to the operator who asked, never log them.
    pub async fn list_outbox(&self, budget: Option<&str>) -> Result<Vec<OutboxRow>, StoreError> {
        let sql = match budget {
            Some(_) => {
                format!("SELECT {OUTBOX_COLS} FROM alert_outbox WHERE budget = $1 ORDER BY id")
            }
            None => format!("SELECT {OUTBOX_COLS} FROM alert_outbox ORDER BY id"),
        };
        both!(self, Store, |s, spell| {
            let spelled = spell(&sql);
            let mut q = sqlx::query(&spelled);
            if let Some(b) = budget {
                q = q.bind(b);
            }
            let rows = q.fetch_all(s.pool()).await?;
            rows.iter().map(|r| Ok(outbox_from_row!(r))).collect()
        })
    }

    // ---- evaluation history ---------------------------------------------------------------

    /// Appends one evaluation to `budget_evaluation`.
    pub async fn record_evaluation(&self, e: &BudgetEvaluation) -> Result<(), StoreError> {
        const SQL: &str = "INSERT INTO budget_evaluation (budget, evaluated_at, period_key, \
             period_start, period_end, amount, currency, actual, forecast) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)";
        both!(self, Store, |s, spell| sqlx::query(&spell(SQL))
            .bind(&e.budget)
            .bind(e.evaluated_at)
            .bind(&e.period_key)
            .bind(e.period_start)
            .bind(e.period_end)
            .bind_money(e.amount)
            .bind(&e.currency)
            .bind_money(e.actual)
            .bind_opt_money(e.forecast)
            .execute(s.pool())
            .await?
            .rows_affected());
        Ok(())
    }

    /// A budget's evaluations, newest first.
    pub async fn list_evaluations(
        &self,
        budget: &str,
        limit: i64,
    ) -> Result<Vec<BudgetEvaluation>, StoreError> {
        const SQL: &str = "SELECT budget, evaluated_at, period_key, period_start, period_end, \
             amount, currency, actual, forecast FROM budget_evaluation WHERE budget = $1 \
             ORDER BY evaluated_at DESC, id DESC LIMIT $2";
        const T: &str = "budget_evaluation";
        both!(self, Store, |s, spell| {
            let rows = sqlx::query(&spell(SQL))
                .bind(budget)
                .bind(limit)
                .fetch_all(s.pool())
                .await?;
            rows.iter()
                .map(|r| {
                    Ok(BudgetEvaluation {
                        budget: r.try_get(0)?,
                        evaluated_at: r.try_get(1)?,
                        period_key: r.try_get(2)?,
                        period_start: r.try_get(3)?,
                        period_end: r.try_get(4)?,
                        amount: r.money(5, T)?,
                        currency: r.try_get(6)?,
                        actual: r.money(7, T)?,
                        forecast: r.opt_money(8, T)?,
                    })
                })
                .collect()
        })
    }

    // ---- spend for evaluation -------------------------------------------------------------

    /// Exact spend of the lines matching `f` with a charge period starting in [start, end),
    /// summed per (charge period start, charge category, currency), with the GB of egress
    /// lines ([`egress_gb_per_unit`]). The caller buckets into days in the budget's timezone.
    pub async fn budget_spend(
        &self,
        f: &BudgetSpendFilter,
        start: DateTime<Utc>,
        end: DateTime<Utc>,
    ) -> Result<Vec<BudgetSpendRow>, StoreError> {
        if let Some((k, _)) = &f.tag
            && !valid_tag_key(k)
        {
            return Err(bad_tag_key(k));
        }
        type Key = (DateTime<Utc>, String, String);
        let mut acc: BTreeMap<Key, (Decimal, Decimal, Decimal)> = BTreeMap::new();
        match self {
            Store::Sqlite(s) => {
                let mut qb = QueryBuilder::<Sqlite>::new(format!(
                    "SELECT charge_period_start, charge_category, billing_currency, billed_cost, \
                         effective_cost, list_cost, service_category, consumed_quantity, consumed_unit \
                         FROM {SQLITE_LINES} WHERE "
                ));
                push_filter_sqlite(&mut qb, f, start, end);
                let mut rows = qb.build().fetch(s.pool());
                while let Some(r) = futures::TryStreamExt::try_next(&mut rows).await? {
                    let t = from_sqlite_micros(r.try_get(0)?)?;
                    let cat: String = r.try_get(1)?;
                    let cur: String = r.try_get(2)?;
                    let billed = parse_dec("cost_line", r.try_get::<&str, _>(3)?)?;
                    let eff = parse_dec("cost_line", r.try_get::<&str, _>(4)?)?;
                    let list = match r.try_get::<Option<&str>, _>(5)? {
                        Some(v) => Some(parse_dec("cost_line", v)?),
                        None => None,
                    };
                    let svc_cat: Option<&str> = r.try_get(6)?;
                    let qty: Option<&str> = r.try_get(7)?;
                    let unit: Option<&str> = r.try_get(8)?;
                    let gb = match (qty, egress_gb_per_unit(&cat, svc_cat, billed, list, unit)) {
                        (Some(q), Some(factor)) => parse_dec("cost_line", q)? * factor,
                        _ => Decimal::ZERO,
                    };
                    let e = acc.entry((t, cat, cur)).or_insert((
                        Decimal::ZERO,
                        Decimal::ZERO,
                        Decimal::ZERO,
                    ));
                    e.0 += billed;
                    e.1 += eff;
                    e.2 += gb;
                }
            }
            Store::Postgres(s) => {
                // Money is summed in SQL; the GB of egress lines are summed per unit in SQL
                // (rule clauses 1, 3, 4) and converted to GB here (clause 2).
                let excluded = NON_TRANSFER_CATEGORIES
                    .iter()
                    .map(|c| format!("'{}'", c.replace('\'', "''")))
                    .collect::<Vec<_>>()
                    .join(", ");
                let mut qb = QueryBuilder::<Postgres>::new(format!(
                    "SELECT charge_period_start, charge_category, billing_currency, consumed_unit, \
                     SUM(billed_cost), SUM(effective_cost), \
                     SUM(CASE WHEN charge_category = 'Usage' \
                         AND (billed_cost > 0 OR COALESCE(list_cost, 0) > 0) \
                         AND (service_category IS NULL OR service_category NOT IN ({excluded})) \
                         THEN consumed_quantity END) \
                     FROM cost_line WHERE "
                ));
                push_filter_pg(&mut qb, f, start, end);
                qb.push(" GROUP BY 1, 2, 3, 4");
                let rows = qb.build().fetch_all(s.pool()).await?;
                for r in rows {
                    let t: DateTime<Utc> = r.try_get(0)?;
                    let cat: String = r.try_get(1)?;
                    let cur: String = r.try_get(2)?;
                    let unit: Option<String> = r.try_get(3)?;
                    let billed: Decimal = r.try_get(4)?;
                    let eff: Decimal = r.try_get(5)?;
                    let qty: Option<Decimal> = r.try_get(6)?;
                    let gb = match (qty, unit.as_deref().and_then(egress_unit_factor)) {
                        (Some(q), Some(factor)) => q * factor,
                        _ => Decimal::ZERO,
                    };
                    let e = acc.entry((t, cat, cur)).or_insert((
                        Decimal::ZERO,
                        Decimal::ZERO,
                        Decimal::ZERO,
                    ));
                    e.0 += billed;
                    e.1 += eff;
                    e.2 += gb;
                }
            }
        }
        Ok(acc
            .into_iter()
            .map(|((t, cat, cur), (b, e, gb))| BudgetSpendRow {
                charge_start: t,
                charge_category: cat,
                currency: cur,
                billed: b.normalize(),
                effective: e.normalize(),
                egress_gb: gb.normalize(),
            })
            .collect())
    }

    /// The `limit` largest contributors to the spend of the lines matching `f` in
    /// [start, end), by service or by a tag's value, on effective or billed cost; ties by
    /// name. Lines without a service or the tag are grouped under [`NO_VALUE`].
    pub async fn top_contributors(
        &self,
        f: &BudgetSpendFilter,
        start: DateTime<Utc>,
        end: DateTime<Utc>,
        by: Contributor,
        basis_effective: bool,
        limit: usize,
    ) -> Result<Vec<(String, Decimal)>, StoreError> {
        for k in f.tag.iter().map(|(k, _)| k).chain(match &by {
            Contributor::Tag(k) => Some(k),
            Contributor::Service => None,
        }) {
            if !valid_tag_key(k) {
                return Err(bad_tag_key(k));
            }
        }
        let cost = if basis_effective {
            "effective_cost"
        } else {
            "billed_cost"
        };
        let mut sums: BTreeMap<Option<String>, Decimal> = BTreeMap::new();
        match self {
            Store::Sqlite(s) => {
                let mut qb = QueryBuilder::<Sqlite>::new("SELECT ");
                match &by {
                    Contributor::Service => {
                        qb.push("service_name");
                    }
                    Contributor::Tag(k) => {
                        qb.push("json_extract(tags, ")
                            .push_bind(format!("$.\"{k}\""))
                            .push(")");
                    }
                }
                qb.push(format!(", {cost} FROM {SQLITE_LINES} WHERE "));
                push_filter_sqlite(&mut qb, f, start, end);
                let mut rows = qb.build().fetch(s.pool());
                while let Some(r) = futures::TryStreamExt::try_next(&mut rows).await? {
                    // Tag values are always JSON strings (ingest writes them so).
                    let group: Option<String> = r.try_get(0)?;
                    let v = parse_dec("cost_line", r.try_get::<&str, _>(1)?)?;
                    *sums.entry(group).or_insert(Decimal::ZERO) += v;
                }
            }
            Store::Postgres(s) => {
                let mut qb = QueryBuilder::<Postgres>::new("SELECT ");
                match &by {
                    Contributor::Service => {
                        qb.push("service_name");
                    }
                    Contributor::Tag(k) => {
                        qb.push("tags ->> ").push_bind(k.clone());
                    }
                }
                qb.push(format!(", SUM({cost}) FROM cost_line WHERE "));
                push_filter_pg(&mut qb, f, start, end);
                qb.push(" GROUP BY 1");
                let rows = qb.build().fetch_all(s.pool()).await?;
                for r in rows {
                    let g: Option<String> = r.try_get(0)?;
                    let v: Decimal = r.try_get(1)?;
                    *sums.entry(g).or_insert(Decimal::ZERO) += v;
                }
            }
        }
        let mut out: Vec<(String, Decimal)> = sums
            .into_iter()
            .map(|(g, v)| (g.unwrap_or_else(|| NO_VALUE.to_string()), v.normalize()))
            .collect();
        // Two NULL-ish groups (SQL NULL and a literal "(none)") would be unusual; merge them.
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out.dedup_by(|later, earlier| {
            if later.0 == earlier.0 {
                earlier.1 += later.1;
                true
            } else {
                false
            }
        });
        out.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        out.truncate(limit);
        Ok(out)
    }
}

/// `charge_period_start` in [start, end) and the filter's fields other than the tag (whose
/// SQL differs per backend), written once for both.
fn push_common_filter<'a, DB, T>(
    qb: &mut QueryBuilder<'a, DB>,
    f: &BudgetSpendFilter,
    start: T,
    end: T,
) where
    DB: sqlx::Database,
    String: sqlx::Encode<'a, DB> + sqlx::Type<DB>,
    T: 'a + sqlx::Encode<'a, DB> + sqlx::Type<DB>,
{
    qb.push("charge_period_start >= ")
        .push_bind(start)
        .push(" AND charge_period_start < ")
        .push_bind(end);
    if let Some(p) = &f.provider {
        qb.push(" AND LOWER(provider_name) IN (");
        let mut sep = qb.separated(", ");
        for name in crate::domain::provider_spellings(p) {
            sep.push_bind(name);
        }
        qb.push(")");
    }
    for (col, v) in [
        ("service_name", &f.service),
        ("region_id", &f.region),
        ("sub_account_id", &f.account),
        ("billing_currency", &f.currency),
    ] {
        if let Some(v) = v {
            qb.push(format!(" AND {col} = ")).push_bind(v.clone());
        }
    }
}

/// `charge_period_start` in [start, end) and the filter's fields, for SQLite.
fn push_filter_sqlite(
    qb: &mut QueryBuilder<'_, Sqlite>,
    f: &BudgetSpendFilter,
    start: DateTime<Utc>,
    end: DateTime<Utc>,
) {
    // cost_fact keeps the charge period in microseconds.
    push_common_filter(qb, f, sqlite_micros(start), sqlite_micros(end));
    if let Some((k, v)) = &f.tag {
        qb.push(" AND json_extract(tags, ")
            .push_bind(format!("$.\"{k}\""))
            .push(") = ")
            .push_bind(v.clone());
    }
}

/// `charge_period_start` in [start, end) and the filter's fields, for Postgres (the tag
/// filter uses JSONB containment, which the GIN index on `tags` serves).
fn push_filter_pg(
    qb: &mut QueryBuilder<'_, Postgres>,
    f: &BudgetSpendFilter,
    start: DateTime<Utc>,
    end: DateTime<Utc>,
) {
    push_common_filter(qb, f, start, end);
    if let Some((k, v)) = &f.tag {
        qb.push(" AND tags @> jsonb_build_object(")
            .push_bind(k.clone())
            .push("::text, ")
            .push_bind(v.clone())
            .push("::text)");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stored_specs_round_trip_and_bad_ones_do_not_leak() {
        let mut b = Budget::new("ml", "100".parse().unwrap(), "USD");
        b.channels.slack_webhooks = vec!["https://h/SECRET".into()];
        assert_eq!(read_spec("ml", &spec_json(&b)).unwrap(), b);
        let bad = r#"{"name":"ml","amount":"1","channels":{"slack_webhooks":"https://h/SECRET"}}"#;
        let e = read_spec("ml", bad).unwrap_err();
        assert!(matches!(e, StoreError::BudgetSpec { .. }), "{e:?}");
        let msg = e.to_string();
        assert!(msg.contains("budget \"ml\""), "{msg}");
        assert!(!msg.contains("SECRET"), "{msg}");
    }

    #[test]
    fn origins_read_back_as_written() {
        for o in [BudgetOrigin::Api, BudgetOrigin::Config] {
            assert_eq!(o.as_str().parse::<BudgetOrigin>().unwrap(), o);
        }
        assert!("yaml".parse::<BudgetOrigin>().is_err());
    }
}
