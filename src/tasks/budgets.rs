//! Budget evaluation: for each stored budget, the period-to-date spend in its scope (from
//! `cost_line`), the forecast to period end (`domain::forecast`), each threshold's state
//! (`domain::budget::evaluate`); a row in `budget_evaluation` for the dashboards; every
//! newly crossed threshold fired into the alert outbox (once per budget, period and
//! threshold: `Store::fire_alert`); and the in-memory snapshot SelectProvider's budget gate
//! reads. Runs inside `serve` at start, every `budget_evaluation.every`, and within
//! `budget_evaluation.poll` of any committed ingest or budget write by any process (it polls
//! `spend_generation`); also after each `bursar ingest` and on demand.
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use chrono::{DateTime, Days, NaiveDate, Utc};
use rust_decimal::Decimal;

use super::leader::Leadership;
use crate::domain::budget::{
    Budget, BudgetMetric, BudgetSnapshot, BudgetStatus, GatePolicy, PeriodWindow, ThresholdValue,
    evaluate, period_window,
};
use crate::domain::forecast::{CostKind, bucket, classify, forecast};
use crate::notify::AlertsConfig;
use crate::notify::render::{AlertContext, outbox_messages};
use crate::store::budgets::{BudgetEvaluation, BudgetSpendFilter, Contributor, FiredAlert};
use crate::store::{Store, StoreError};

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("budget {budget:?}: {detail}")]
    Spec { budget: String, detail: String },
}

/// One budget, evaluated.
#[derive(Debug, Clone)]
pub struct Evaluated {
    pub budget: Budget,
    pub status: BudgetStatus,
    /// Mean daily usage-based spend the forecast extrapolates.
    pub run_rate: Decimal,
    /// Thresholds fired this period, with when.
    pub fired: Vec<(String, DateTime<Utc>)>,
    pub evaluated_at: DateTime<Utc>,
}

/// Evaluates budgets and keeps the gate's snapshot.
pub struct BudgetEngine {
    store: Store,
    /// Where evaluations and fired alerts are written: `store`, or with replicas the
    /// leader's fenced store (`with_leadership`).
    writes: Store,
    /// With replicas: evaluations are recorded and alerts fired only while this process
    /// leads; every replica still evaluates (read-only) to refresh its own gate snapshot.
    leadership: Option<Leadership>,
    alerts: AlertsConfig,
    trailing_days: u32,
    snapshots: Arc<ArcSwap<Vec<BudgetSnapshot>>>,
    /// `spend_generation` as read before the last evaluation that swapped the snapshot;
    /// the lock also keeps evaluations in turn, so an older one never swaps in last.
    /// With whether that evaluation was recorded (this process led): a process that
    /// becomes the leader records at its next poll even if nothing else changed.
    evaluated_at_generation: tokio::sync::Mutex<Option<(i64, bool)>>,
}

/// The cost lines a budget covers.
pub fn spend_filter(b: &Budget) -> BudgetSpendFilter {
    BudgetSpendFilter {
        provider: b.scope.provider.clone(),
        service: b.scope.service.clone(),
        account: b.scope.account.clone(),
        region: b.scope.region.clone(),
        tag: b
            .scope
            .tag
            .as_ref()
            .map(|t| (t.key.clone(), t.value.clone())),
        currency: match b.metric {
            BudgetMetric::Cost => Some(b.currency.clone()),
            BudgetMetric::EgressGb => None,
        },
    }
}

fn describe_threshold(b: &Budget, key: &str) -> String {
    let Some(t) = b.thresholds.iter().find(|t| t.key() == key) else {
        return key.to_string();
    };
    let on = t.on.as_str();
    match t.value {
        ThresholdValue::Percent(p) => format!("{on} spend reached {}% of budget", p.normalize()),
        ThresholdValue::Amount(a) => {
            format!("{on} spend reached {} {}", a.normalize(), b.unit())
        }
    }
}

impl BudgetEngine {
    pub fn new(store: Store, alerts: AlertsConfig, trailing_days: u32) -> Self {
        BudgetEngine {
            writes: store.clone(),
            store,
            leadership: None,
            alerts,
            trailing_days: trailing_days.max(1),
            snapshots: Arc::new(ArcSwap::from_pointee(Vec::new())),
            evaluated_at_generation: tokio::sync::Mutex::new(None),
        }
    }

    /// With replicas: records and fires through `writes` (the fenced store) only while
    /// `leadership` may act; otherwise evaluations only refresh the gate snapshot.
    pub fn with_leadership(mut self, writes: Store, leadership: Leadership) -> Self {
        self.writes = writes;
        self.leadership = Some(leadership);
        self
    }

    /// Whether evaluations are recorded and alerts fired now: always without replicas,
    /// else while this process leads.
    fn records(&self) -> bool {
        self.leadership.as_ref().is_none_or(Leadership::may_act)
    }

    /// Shared with SelectProvider's budget gate; refreshed by [`BudgetEngine::evaluate_all`].
    pub fn snapshots(&self) -> Arc<ArcSwap<Vec<BudgetSnapshot>>> {
        self.snapshots.clone()
    }

    /// Period-to-date actual, forecast and threshold states of one budget at `now`
    /// (nothing is written).
    pub async fn status(&self, b: &Budget, now: DateTime<Utc>) -> Result<Evaluated, EngineError> {
        let tz = b.tz().map_err(|e| EngineError::Spec {
            budget: b.name.clone(),
            detail: e.to_string(),
        })?;
        let window = period_window(b.period, tz, now);
        let (actual, fc, run_rate) = self.spend_and_forecast(b, &window, now).await?;
        let status = evaluate(b, &window, actual, fc);
        let fired = self
            .store
            .list_fired_alerts(&b.name)
            .await?
            .into_iter()
            .filter(|a| a.period_key == window.key)
            .map(|a| (a.threshold_key, a.fired_at))
            .collect();
        Ok(Evaluated {
            budget: b.clone(),
            status,
            run_rate,
            fired,
            evaluated_at: now,
        })
    }

    /// Sums the budget's spend per day in its timezone and forecasts the period: the
    /// query starts `trailing_days` before the period so the run-rate has data on day one,
    /// and ends at `now` (spend "to date").
    async fn spend_and_forecast(
        &self,
        b: &Budget,
        w: &PeriodWindow,
        now: DateTime<Utc>,
    ) -> Result<(Decimal, Decimal, Decimal), EngineError> {
        let lookback_day = w
            .first_day
            .checked_sub_days(Days::new(u64::from(self.trailing_days)))
            .unwrap_or(w.first_day);
        let from = crate::domain::budget::local_midnight(w.tz, lookback_day);
        let to = now.min(w.end);
        let rows = if to > from {
            self.store.budget_spend(&spend_filter(b), from, to).await?
        } else {
            Vec::new()
        };
        let items = rows.iter().map(|r| {
            let kind = classify(&r.charge_category);
            let amount = match b.metric {
                BudgetMetric::Cost => b.basis.pick(r.billed, r.effective),
                // Egress volume is usage by nature; fees carry no GB.
                BudgetMetric::EgressGb => {
                    if kind == CostKind::Usage {
                        r.egress_gb
                    } else {
                        Decimal::ZERO
                    }
                }
            };
            (w.local_day(r.charge_start), kind, amount)
        });
        let days = bucket(items, |k| b.includes(k));
        let today = w.local_day(now);
        let yesterday = today.pred_opt().unwrap_or(today);
        // The last complete day of data: yesterday, or the last day with data if the
        // export lags (the days in between are then extrapolated, not taken as zero).
        let last_data: Option<NaiveDate> =
            days.iter().map(|d| d.day).filter(|d| *d <= yesterday).max();
        // Without any data, the day before the period (or yesterday): the run-rate is 0.
        let as_of = last_data
            .unwrap_or_else(|| yesterday.min(w.first_day.pred_opt().unwrap_or(w.first_day)));
        let f = forecast(&days, (w.first_day, w.end_day), as_of, self.trailing_days);
        Ok((f.actual, f.forecast, f.run_rate))
    }

    /// Evaluates every stored budget at `now`: records its evaluation, fires crossed
    /// thresholds into the outbox (once per period), and swaps in a new gate snapshot. A
    /// budget whose stored definition does not parse is logged and skipped.
    pub async fn evaluate_all(&self, now: DateTime<Utc>) -> Result<Vec<Evaluated>, EngineError> {
        let mut seen = self.evaluated_at_generation.lock().await;
        self.evaluate_locked(now, &mut seen).await
    }

    /// Evaluates every budget as [`BudgetEngine::evaluate_all`] does, but only if an ingest
    /// or a budget write committed since the last evaluation (`spend_generation` moved):
    /// `None` when nothing changed, which costs one small query.
    pub async fn evaluate_if_changed(
        &self,
        now: DateTime<Utc>,
    ) -> Result<Option<Vec<Evaluated>>, EngineError> {
        let mut seen = self.evaluated_at_generation.lock().await;
        let generation = self.store.spend_generation().await?;
        if let Some((g, recorded)) = *seen
            && g == generation
            && (recorded || !self.records())
        {
            return Ok(None);
        }
        self.evaluate_locked(now, &mut seen).await.map(Some)
    }

    async fn evaluate_locked(
        &self,
        now: DateTime<Utc>,
        seen: &mut Option<(i64, bool)>,
    ) -> Result<Vec<Evaluated>, EngineError> {
        // Read first: a write committing during the evaluation moves it again, so the next
        // poll evaluates again.
        let generation = self.store.spend_generation().await?;
        let rows = self.store.list_budgets().await?;
        let records = self.records();
        let mut out = Vec::with_capacity(rows.len());
        let mut snaps = Vec::new();
        let mut failures = 0usize;
        for row in rows {
            let b = match row {
                Ok(stored) => stored.budget,
                Err(e) => {
                    tracing::warn!(error = %e, "skipping budget");
                    continue;
                }
            };
            let mut ev = match self.status(&b, now).await {
                Ok(ev) => ev,
                Err(e) => {
                    crate::metrics::global().budget_evaluation(false);
                    // The budget leaves the gate until it evaluates again: a stale snapshot
                    // (last period's spend, say) must not keep refusing placements.
                    tracing::warn!(budget = %b.name, error = %e, "budget evaluation failed");
                    continue;
                }
            };
            if b.metric == BudgetMetric::Cost && b.gate != GatePolicy::None {
                snaps.push(BudgetSnapshot::new(
                    &b,
                    ev.status.actual,
                    ev.status.forecast,
                ));
            }
            if !records {
                // A follower: the snapshot only; the leader records and fires.
                out.push(ev);
                continue;
            }
            let recorded = self
                .writes
                .record_evaluation(&BudgetEvaluation {
                    budget: b.name.clone(),
                    evaluated_at: now,
                    period_key: ev.status.period.key.clone(),
                    period_start: ev.status.period.start,
                    period_end: ev.status.period.end,
                    amount: b.amount,
                    currency: b.unit().to_string(),
                    actual: ev.status.actual,
                    forecast: Some(ev.status.forecast),
                })
                .await;
            let fired = match recorded {
                Ok(()) => self.fire_crossed(&b, &mut ev, now).await,
                Err(e) => Err(e.into()),
            };
            crate::metrics::global().budget_evaluation(fired.is_ok());
            if let Err(e) = fired {
                if let EngineError::Store(se) = &e {
                    super::leader::note_refusal(se, "budget evaluation");
                }
                tracing::warn!(budget = %b.name, error = %e, "recording a budget evaluation failed");
                failures += 1;
            }
            out.push(ev);
        }
        self.snapshots.store(Arc::new(snaps));
        *seen = Some((generation, records));
        if failures > 0 {
            tracing::warn!(
                failures,
                "some budget evaluations were not recorded; retried next time"
            );
        }
        Ok(out)
    }

    async fn fire_crossed(
        &self,
        b: &Budget,
        ev: &mut Evaluated,
        now: DateTime<Utc>,
    ) -> Result<(), EngineError> {
        let w = &ev.status.period;
        let crossed: Vec<_> = ev
            .status
            .crossed()
            .filter(|t| !ev.fired.iter().any(|(k, _)| *k == t.key))
            .cloned()
            .collect();
        if crossed.is_empty() {
            return Ok(());
        }
        let filter = spend_filter(b);
        let effective = matches!(b.basis, crate::domain::budget::CostBasis::Effective);
        let to = now.min(w.end);
        let top_services = self
            .store
            .top_contributors(&filter, w.start, to, Contributor::Service, effective, 5)
            .await?;
        let tag_key = self.alerts.contributor_tag_key.clone();
        let top_tags = self
            .store
            .top_contributors(
                &filter,
                w.start,
                to,
                Contributor::Tag(tag_key.clone()),
                effective,
                5,
            )
            .await?;
        for t in crossed {
            let ctx = AlertContext {
                budget: b.name.clone(),
                period_key: w.key.clone(),
                period_start: w.first_day,
                period_end: w.end_day.pred_opt().unwrap_or(w.end_day),
                threshold_key: t.key.clone(),
                threshold_description: describe_threshold(b, &t.key),
                on: t.on.as_str().to_string(),
                limit: t.limit,
                amount: b.amount,
                actual: ev.status.actual,
                forecast: ev.status.forecast,
                currency: b.unit().to_string(),
                top_services: top_services.clone(),
                top_tags: top_tags.clone(),
                tag_key: tag_key.clone(),
                dashboard_url: self.alerts.dashboard_url.clone(),
                metric_unit: b.unit().to_string(),
            };
            let messages = outbox_messages(&ctx, &b.channels.emails, &b.channels.slack_webhooks);
            let fired = self
                .writes
                .fire_alert(
                    &FiredAlert {
                        budget: b.name.clone(),
                        period_key: w.key.clone(),
                        threshold_key: t.key.clone(),
                        actual: ev.status.actual,
                        forecast: ev.status.forecast,
                        amount: b.amount,
                        currency: b.unit().to_string(),
                        fired_at: now,
                    },
                    &messages,
                )
                .await?;
            if fired {
                tracing::info!(
                    budget = %b.name,
                    period = %w.key,
                    threshold = %t.key,
                    messages = messages.len(),
                    "budget threshold crossed; alert queued"
                );
                ev.fired.push((t.key.clone(), now));
            }
        }
        Ok(())
    }
}

/// Evaluates every budget now and then every `every` until shutdown; in between, every
/// `poll` and whenever `wake` says spend changed (a notification: `tasks::changes`),
/// re-evaluates as soon as `spend_generation` moved (an ingest or a budget write by any
/// process or replica), so SelectProvider's gate follows new spend within `poll`, or at once
/// on Postgres while its notifications arrive.
pub async fn run_evaluations(
    engine: Arc<BudgetEngine>,
    every: Duration,
    poll: Duration,
    mut wake: crate::tasks::changes::Wake,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) {
    let poll = poll.min(every);
    let mut next_full = tokio::time::Instant::now();
    loop {
        let evaluated = if tokio::time::Instant::now() >= next_full {
            next_full = tokio::time::Instant::now() + every;
            engine.evaluate_all(Utc::now()).await.map(Some)
        } else {
            engine.evaluate_if_changed(Utc::now()).await
        };
        match evaluated {
            Ok(Some(v)) => tracing::debug!(budgets = v.len(), "budgets evaluated"),
            Ok(None) => {}
            Err(e) => tracing::warn!(error = %e, "budget evaluation failed"),
        }
        tokio::select! {
            _ = tokio::time::sleep(poll) => {}
            _ = wake.changed() => {}
            r = shutdown.changed() => {
                if r.is_err() || *shutdown.borrow() {
                    return;
                }
            }
        }
    }
}
