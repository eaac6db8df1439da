//! Fleet persistence for idle-GPU enforcement: the inventory (`fleet_instance`), the
//! policy's open cases (`fleet_case`, the policy's `Case` as JSON), snoozes (`fleet_keep`),
//! the audit log (`fleet_action`) and the savings ledger kept on its acted rows
//! (`stopped_until`, `restarted_at`). Utilisation samples live in `gpu_samples.rs`.
//!
//! Invariant: an inventory write and the ledger updates it implies commit together.
//! Invariant: only `stopped` and `terminated` rows count on the ledger, from their `at`
//! until the last poll that still saw the machine stopped or gone, at most
//! `LEDGER_HORIZON` (a deleted machine is not counted as saving forever).
use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, NaiveDate, Utc};
use rust_decimal::Decimal;
use sqlx::Row;

use super::budgets::INSERT_OUTBOX;
use super::sql::{BindMoney, MoneyRow, both};
use super::{Store, StoreError};
use crate::domain::Provider;
use crate::domain::fleet::{FleetInstance, InstanceState};
use crate::domain::savings::{DayAvoided, add_interval};
use crate::notify::outbox::OutboxMessage;

/// The `budget` column of idle-GPU notices in the alert outbox.
pub const NOTICE_BUDGET: &str = "idle-gpu";

/// How long one action keeps counting on the savings ledger at most.
pub const LEDGER_HORIZON: chrono::Duration = chrono::Duration::days(30);

/// Decisions that stopped or deleted a machine: the ledger's rows.
const ACTED: &str = "('stopped', 'terminated')";

/// One inventoried machine with what the store adds.
#[derive(Clone, Debug, PartialEq)]
pub struct StoredInstance {
    pub instance: FleetInstance,
    /// From the catalog when the inventory was written; `None` when it has no price.
    pub price_per_hour: Option<Decimal>,
    pub currency: String,
    pub first_seen: DateTime<Utc>,
    pub last_seen: DateTime<Utc>,
}

/// One audit row.
#[derive(Clone, Debug, PartialEq)]
pub struct ActionRow {
    /// 0 before it is written.
    pub id: i64,
    pub at: DateTime<Utc>,
    pub provider: Provider,
    pub instance_id: String,
    pub instance_name: String,
    pub decision: String,
    pub mode: String,
    pub reason: String,
    /// JSON.
    pub evidence: String,
    pub price_per_hour: Option<Decimal>,
    pub currency: String,
    pub error: String,
    pub stopped_until: Option<DateTime<Utc>>,
    pub restarted_at: Option<DateTime<Utc>>,
}

/// A snooze.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeepRow {
    pub provider: Provider,
    pub instance_id: String,
    pub until: DateTime<Utc>,
    pub reason: String,
    pub requested_by: String,
}

/// The ledger, per UTC day and in total.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Savings {
    /// Per (day, currency).
    pub days: BTreeMap<(NaiveDate, String), DayAvoided>,
    pub totals: BTreeMap<String, Decimal>,
    /// Acted rows counted.
    pub actions: u32,
}

/// Longest stored text of a reason or error.
const MAX_TEXT: usize = 2000;

fn clip(s: &str) -> String {
    s.chars().take(MAX_TEXT).collect()
}

fn provider_of(s: &str, table: &'static str) -> Result<Provider, StoreError> {
    s.parse().map_err(|_| StoreError::Corrupt {
        table,
        detail: format!("unknown provider {s:?}"),
    })
}

const INSTANCE_COLS: &str = "provider, id, name, scope, resource, region, zone, instance_type, \
     gpu_model, gpu_count, state, launched_at, private_hostname, labels, managed_by, \
     cloud_protection, price_per_hour, currency, first_seen, last_seen";

macro_rules! instance_from_row {
    ($r:expr) => {{
        let r = $r;
        const T: &str = "fleet_instance";
        let provider: String = r.try_get(0)?;
        let labels: String = r.try_get(13)?;
        let gpu_model: String = r.try_get(8)?;
        let managed_by: String = r.try_get(14)?;
        let protection: String = r.try_get(15)?;
        let gpu_count: i32 = r.try_get(9)?;
        let state: String = r.try_get(10)?;
        StoredInstance {
            instance: FleetInstance {
                provider: provider_of(&provider, T)?,
                id: r.try_get(1)?,
                name: r.try_get(2)?,
                scope: r.try_get(3)?,
                resource: r.try_get(4)?,
                region: r.try_get(5)?,
                zone: r.try_get(6)?,
                instance_type: r.try_get(7)?,
                gpu_model: (!gpu_model.is_empty()).then_some(gpu_model),
                gpu_count: gpu_count.max(0) as u32,
                labels: serde_json::from_str(&labels).map_err(|e| StoreError::Corrupt {
                    table: T,
                    detail: format!("labels: {e}"),
                })?,
                launched_at: r.try_get(11)?,
                state: InstanceState::from_word(&state),
                private_hostname: r.try_get(12)?,
                cloud_protection: (!protection.is_empty()).then_some(protection),
                managed_by: (!managed_by.is_empty()).then_some(managed_by),
            },
            price_per_hour: r.opt_money(16, T)?,
            currency: r.try_get(17)?,
            first_seen: r.try_get(18)?,
            last_seen: r.try_get(19)?,
        }
    }};
}

/// Appends one audit row through `$ex` (a pool or a transaction); evaluates to its id.
macro_rules! insert_action {
    ($spell:expr, $a:expr, $ex:expr) => {{
        let a = $a;
        let row = sqlx::query(&$spell(INSERT_ACTION))
            .bind(a.at)
            .bind(a.provider.as_str())
            .bind(&a.instance_id)
            .bind(&a.instance_name)
            .bind(&a.decision)
            .bind(&a.mode)
            .bind(clip(&a.reason))
            .bind(&a.evidence)
            .bind_opt_money(a.price_per_hour)
            .bind(&a.currency)
            .bind(clip(&a.error))
            .fetch_one($ex)
            .await?;
        row.try_get::<i64, _>(0)?
    }};
}

const ACTION_COLS: &str = "id, at, provider, instance_id, instance_name, decision, mode, reason, \
     evidence, price_per_hour, currency, error, stopped_until, restarted_at";

macro_rules! action_from_row {
    ($r:expr) => {{
        let r = $r;
        const T: &str = "fleet_action";
        let provider: String = r.try_get(2)?;
        ActionRow {
            id: r.try_get(0)?,
            at: r.try_get(1)?,
            provider: provider_of(&provider, T)?,
            instance_id: r.try_get(3)?,
            instance_name: r.try_get(4)?,
            decision: r.try_get(5)?,
            mode: r.try_get(6)?,
            reason: r.try_get(7)?,
            evidence: r.try_get(8)?,
            price_per_hour: r.opt_money(9, T)?,
            currency: r.try_get(10)?,
            error: r.try_get(11)?,
            stopped_until: r.try_get(12)?,
            restarted_at: r.try_get(13)?,
        }
    }};
}

impl Store {
    // ---- inventory ------------------------------------------------------------------------

    /// Writes one provider's complete inventory, listed at `listed_at` (when the listing
    /// started): upserts each machine with its catalog price, marks the provider's machines
    /// the listing no longer holds `terminated` (gone), and moves the ledger: acted rows
    /// older than the listing whose machine is still stopped or gone count until
    /// `listed_at`; those whose machine runs again stop counting.
    pub async fn write_fleet_inventory(
        &self,
        provider: Provider,
        instances: &[(FleetInstance, Option<Decimal>, String)],
        listed_at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        const UPSERT: &str = "INSERT INTO fleet_instance (provider, id, name, scope, resource, \
             region, zone, instance_type, gpu_model, gpu_count, state, launched_at, \
             private_hostname, labels, managed_by, cloud_protection, price_per_hour, currency, \
             first_seen, last_seen) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, \
             $13, $14, $15, $16, $17, $18, $19, $19) ON CONFLICT (provider, id) DO UPDATE SET \
             name = excluded.name, scope = excluded.scope, resource = excluded.resource, \
             region = excluded.region, zone = excluded.zone, \
             instance_type = excluded.instance_type, gpu_model = excluded.gpu_model, \
             gpu_count = excluded.gpu_count, state = excluded.state, \
             launched_at = excluded.launched_at, private_hostname = excluded.private_hostname, \
             labels = excluded.labels, managed_by = excluded.managed_by, \
             cloud_protection = excluded.cloud_protection, \
             price_per_hour = excluded.price_per_hour, currency = excluded.currency, \
             last_seen = excluded.last_seen";
        const GONE: &str = "UPDATE fleet_instance SET state = 'terminated' \
             WHERE provider = $1 AND last_seen < $2 AND state <> 'terminated'";
        let still_stopped = format!(
            "UPDATE fleet_action SET stopped_until = $2 WHERE provider = $1 \
             AND decision IN {ACTED} AND restarted_at IS NULL AND at < $2 \
             AND instance_id IN (SELECT id FROM fleet_instance WHERE provider = $1 \
             AND state IN ('stopped', 'stopping', 'terminated'))"
        );
        let restarted = format!(
            "UPDATE fleet_action SET restarted_at = $2 WHERE provider = $1 \
             AND decision IN {ACTED} AND restarted_at IS NULL AND at < $2 \
             AND instance_id IN (SELECT id FROM fleet_instance WHERE provider = $1 \
             AND state IN ('running', 'pending', 'powered_off'))"
        );
        let p = provider.as_str();
        both!(self, Store, |s, spell| {
            let mut tx = s.pool().begin().await?;
            let upsert = spell(UPSERT);
            for (i, price, currency) in instances {
                let labels = serde_json::to_string(&i.labels).unwrap_or_else(|_| "{}".into());
                sqlx::query(&upsert)
                    .bind(p)
                    .bind(&i.id)
                    .bind(&i.name)
                    .bind(&i.scope)
                    .bind(&i.resource)
                    .bind(&i.region)
                    .bind(&i.zone)
                    .bind(&i.instance_type)
                    .bind(i.gpu_model.as_deref().unwrap_or(""))
                    .bind(i32::try_from(i.gpu_count).unwrap_or(i32::MAX))
                    .bind(i.state.as_str())
                    .bind(i.launched_at)
                    .bind(&i.private_hostname)
                    .bind(labels)
                    .bind(i.managed_by.as_deref().unwrap_or(""))
                    .bind(i.cloud_protection.as_deref().unwrap_or(""))
                    .bind_opt_money(*price)
                    .bind(currency)
                    .bind(listed_at)
                    .execute(&mut *tx)
                    .await?;
            }
            for sql in [GONE, still_stopped.as_str(), restarted.as_str()] {
                sqlx::query(&spell(sql))
                    .bind(p)
                    .bind(listed_at)
                    .execute(&mut *tx)
                    .await?;
            }
            tx.commit().await?;
        });
        Ok(())
    }

    /// Every inventoried machine, by provider and name.
    pub async fn list_fleet_instances(&self) -> Result<Vec<StoredInstance>, StoreError> {
        let sql = format!("SELECT {INSTANCE_COLS} FROM fleet_instance ORDER BY provider, name, id");
        both!(self, Store, |s, spell| {
            let rows = sqlx::query(&spell(&sql)).fetch_all(s.pool()).await?;
            rows.iter().map(|r| Ok(instance_from_row!(r))).collect()
        })
    }

    /// The machine whose id or name is `key` (id first); `None` when the inventory has none.
    /// A name held by several machines is ambiguous: the error lists where.
    pub async fn find_fleet_instance(
        &self,
        key: &str,
    ) -> Result<Result<Option<StoredInstance>, Vec<String>>, StoreError> {
        let sql = format!(
            "SELECT {INSTANCE_COLS} FROM fleet_instance WHERE id = $1 OR name = $1 \
             ORDER BY provider, id"
        );
        let found: Vec<StoredInstance> = both!(self, Store, |s, spell| {
            let rows = sqlx::query(&spell(&sql))
                .bind(key)
                .fetch_all(s.pool())
                .await?;
            rows.iter()
                .map(|r| Ok::<_, StoreError>(instance_from_row!(r)))
                .collect::<Result<_, _>>()?
        });
        if let Some(by_id) = found.iter().find(|s| s.instance.id == key) {
            return Ok(Ok(Some(by_id.clone())));
        }
        match found.len() {
            0 => Ok(Ok(None)),
            1 => Ok(Ok(found.into_iter().next())),
            _ => Ok(Err(found.iter().map(|s| s.instance.key()).collect())),
        }
    }

    // ---- cases ----------------------------------------------------------------------------

    /// Every open case: (provider, instance id) → the policy's case as JSON.
    pub async fn fleet_cases(&self) -> Result<HashMap<(Provider, String), String>, StoreError> {
        const SQL: &str = "SELECT provider, instance_id, detail FROM fleet_case";
        both!(self, Store, |s, spell| {
            let rows = sqlx::query(&spell(SQL)).fetch_all(s.pool()).await?;
            rows.iter()
                .map(|r| {
                    let p: String = r.try_get(0)?;
                    Ok((
                        (provider_of(&p, "fleet_case")?, r.try_get(1)?),
                        r.try_get(2)?,
                    ))
                })
                .collect()
        })
    }

    /// Opens or updates a case (`detail` = the case as JSON).
    pub async fn put_fleet_case(
        &self,
        provider: Provider,
        instance_id: &str,
        opened_at: DateTime<Utc>,
        detail: &str,
    ) -> Result<(), StoreError> {
        const SQL: &str = "INSERT INTO fleet_case (provider, instance_id, opened_at, detail) \
             VALUES ($1, $2, $3, $4) ON CONFLICT (provider, instance_id) DO UPDATE SET \
             opened_at = excluded.opened_at, detail = excluded.detail";
        both!(self, Store, |s, spell| sqlx::query(&spell(SQL))
            .bind(provider.as_str())
            .bind(instance_id)
            .bind(opened_at)
            .bind(detail)
            .execute(s.pool())
            .await?
            .rows_affected());
        Ok(())
    }

    pub async fn close_fleet_case(
        &self,
        provider: Provider,
        instance_id: &str,
    ) -> Result<(), StoreError> {
        const SQL: &str = "DELETE FROM fleet_case WHERE provider = $1 AND instance_id = $2";
        both!(self, Store, |s, spell| sqlx::query(&spell(SQL))
            .bind(provider.as_str())
            .bind(instance_id)
            .execute(s.pool())
            .await?
            .rows_affected());
        Ok(())
    }

    // ---- keeps ----------------------------------------------------------------------------

    /// Snoozes a machine until `until` and writes its `kept` audit row, together.
    pub async fn keep_fleet_instance(
        &self,
        keep: &KeepRow,
        audit: &ActionRow,
        now: DateTime<Utc>,
    ) -> Result<i64, StoreError> {
        const SQL: &str = "INSERT INTO fleet_keep (provider, instance_id, until_at, reason, \
             requested_by, created_at) VALUES ($1, $2, $3, $4, $5, $6) \
             ON CONFLICT (provider, instance_id) DO UPDATE SET until_at = excluded.until_at, \
             reason = excluded.reason, requested_by = excluded.requested_by, \
             created_at = excluded.created_at";
        let id = both!(self, Store, |s, spell| {
            let mut tx = s.pool().begin().await?;
            sqlx::query(&spell(SQL))
                .bind(keep.provider.as_str())
                .bind(&keep.instance_id)
                .bind(keep.until)
                .bind(clip(&keep.reason))
                .bind(clip(&keep.requested_by))
                .bind(now)
                .execute(&mut *tx)
                .await?;
            let id: i64 = insert_action!(spell, audit, &mut *tx);
            tx.commit().await?;
            id
        });
        Ok(id)
    }

    /// Snoozes still running at `now`.
    pub async fn fleet_keeps(&self, now: DateTime<Utc>) -> Result<Vec<KeepRow>, StoreError> {
        const SQL: &str = "SELECT provider, instance_id, until_at, reason, requested_by \
             FROM fleet_keep WHERE until_at > $1 ORDER BY provider, instance_id";
        both!(self, Store, |s, spell| {
            let rows = sqlx::query(&spell(SQL))
                .bind(now)
                .fetch_all(s.pool())
                .await?;
            rows.iter()
                .map(|r| {
                    let p: String = r.try_get(0)?;
                    Ok(KeepRow {
                        provider: provider_of(&p, "fleet_keep")?,
                        instance_id: r.try_get(1)?,
                        until: r.try_get(2)?,
                        reason: r.try_get(3)?,
                        requested_by: r.try_get(4)?,
                    })
                })
                .collect()
        })
    }

    // ---- audit log ------------------------------------------------------------------------

    /// Appends one audit row; returns its id.
    pub async fn record_fleet_action(&self, a: &ActionRow) -> Result<i64, StoreError> {
        Ok(both!(self, Store, |s, spell| insert_action!(
            spell,
            a,
            s.pool()
        )))
    }

    /// Audit rows, newest first: all, or one machine's (by id), or one decision's.
    pub async fn list_fleet_actions(
        &self,
        instance_id: Option<&str>,
        decision: Option<&str>,
        limit: u32,
    ) -> Result<Vec<ActionRow>, StoreError> {
        let sql = format!(
            "SELECT {ACTION_COLS} FROM fleet_action \
             WHERE ($1 = '' OR instance_id = $1) AND ($2 = '' OR decision = $2) \
             ORDER BY at DESC, id DESC LIMIT $3"
        );
        both!(self, Store, |s, spell| {
            let rows = sqlx::query(&spell(&sql))
                .bind(instance_id.unwrap_or(""))
                .bind(decision.unwrap_or(""))
                .bind(i64::from(limit))
                .fetch_all(s.pool())
                .await?;
            rows.iter().map(|r| Ok(action_from_row!(r))).collect()
        })
    }

    /// Whether an act on one machine has an outcome in the audit log since `since` (a
    /// `stopped`, `terminated` or `failed` row): an `acted` case without one is an intent a
    /// former leader left unresolved.
    pub async fn fleet_outcome_since(
        &self,
        provider: Provider,
        instance_id: &str,
        since: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        const SQL: &str = "SELECT COUNT(*) FROM fleet_action WHERE provider = $1 \
             AND instance_id = $2 AND decision IN ('stopped', 'terminated', 'failed') AND at >= $3";
        let n: i64 = both!(self, Store, |s, spell| sqlx::query_scalar(&spell(SQL))
            .bind(provider.as_str())
            .bind(instance_id)
            .bind(since)
            .fetch_one(s.pool())
            .await?);
        Ok(n > 0)
    }

    /// Stops and terminations the policy made since `since` (the hourly rate limit); with
    /// `would`, the ones dry-run recorded it would have made.
    pub async fn fleet_actions_since(
        &self,
        since: DateTime<Utc>,
        would: bool,
    ) -> Result<u32, StoreError> {
        let decisions = if would {
            "('would_stop', 'would_terminate')"
        } else {
            ACTED
        };
        let sql =
            format!("SELECT COUNT(*) FROM fleet_action WHERE decision IN {decisions} AND at >= $1");
        let n: i64 = both!(self, Store, |s, spell| sqlx::query_scalar(&spell(&sql))
            .bind(since)
            .fetch_one(s.pool())
            .await?);
        Ok(n.max(0) as u32)
    }

    /// Machines of the inventory the policy stopped that have not run again, acts the
    /// inventory has not seen yet included (the fleet-fraction limit). A deleted machine
    /// has left the fleet and no longer counts.
    pub async fn fleet_stopped_by_policy(&self) -> Result<u32, StoreError> {
        let sql = format!(
            "SELECT COUNT(DISTINCT a.instance_id) FROM fleet_action a \
             JOIN fleet_instance i ON i.provider = a.provider AND i.id = a.instance_id \
             WHERE a.decision IN {ACTED} AND a.restarted_at IS NULL AND i.state <> 'terminated'"
        );
        let n: i64 = both!(self, Store, |s, spell| sqlx::query_scalar(&spell(&sql))
            .fetch_one(s.pool())
            .await?);
        Ok(n.max(0) as u32)
    }

    /// Queues a notice's messages in the alert outbox (as budget `idle-gpu`, period the
    /// machine's key, threshold the case's opening time) and writes its `notified` audit
    /// row, together; returns the row's id.
    pub async fn queue_fleet_notice(
        &self,
        messages: &[OutboxMessage],
        audit: &ActionRow,
        case_opened_at: DateTime<Utc>,
    ) -> Result<i64, StoreError> {
        let period_key = format!("{}:{}", audit.provider.as_str(), audit.instance_id);
        let threshold_key = case_opened_at.to_rfc3339();
        let id = both!(self, Store, |s, spell| {
            let mut tx = s.pool().begin().await?;
            let insert = spell(INSERT_OUTBOX);
            for m in messages {
                sqlx::query(&insert)
                    .bind(NOTICE_BUDGET)
                    .bind(&period_key)
                    .bind(&threshold_key)
                    .bind(&m.channel)
                    .bind(&m.target)
                    .bind(&m.subject)
                    .bind(&m.body_text)
                    .bind(&m.body_html)
                    .bind(&m.slack_payload)
                    .bind(audit.at)
                    .execute(&mut *tx)
                    .await?;
            }
            let id: i64 = insert_action!(spell, audit, &mut *tx);
            tx.commit().await?;
            id
        });
        Ok(id)
    }

    // ---- savings ledger -------------------------------------------------------------------

    /// Dollars avoided per UTC day and in total, over [start, end) when given: each acted
    /// row's price × the hours from its action to the last poll that saw the machine still
    /// stopped or gone (at most `LEDGER_HORIZON`).
    pub async fn fleet_savings(
        &self,
        start: Option<DateTime<Utc>>,
        end: Option<DateTime<Utc>>,
    ) -> Result<Savings, StoreError> {
        let sql = format!(
            "SELECT {ACTION_COLS} FROM fleet_action WHERE decision IN {ACTED} \
             AND price_per_hour IS NOT NULL AND stopped_until IS NOT NULL ORDER BY at, id"
        );
        let rows: Vec<ActionRow> = both!(self, Store, |s, spell| {
            let rows = sqlx::query(&spell(&sql)).fetch_all(s.pool()).await?;
            rows.iter()
                .map(|r| Ok::<_, StoreError>(action_from_row!(r)))
                .collect::<Result<_, _>>()?
        });
        let mut out = Savings::default();
        for a in rows {
            let (Some(price), Some(until)) = (a.price_per_hour, a.stopped_until) else {
                continue;
            };
            let until = until.min(a.at + LEDGER_HORIZON);
            let mut days = BTreeMap::new();
            add_interval(&mut days, price, a.at, until, start, end);
            if days.is_empty() {
                continue;
            }
            out.actions += 1;
            for (day, d) in days {
                *out.totals.entry(a.currency.clone()).or_default() += d.amount;
                let e = out.days.entry((day, a.currency.clone())).or_default();
                e.millis += d.millis;
                e.amount += d.amount;
            }
        }
        Ok(out)
    }
}

const INSERT_ACTION: &str = "INSERT INTO fleet_action (at, provider, instance_id, \
     instance_name, decision, mode, reason, evidence, price_per_hour, currency, error) \
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) RETURNING id";
