//! `bursar.v1.PlacementService`: SelectProvider answered from the in-memory catalog (no
//! database on the request path), and the operator's availability marks. Decisions go to
//! the decision log through a bounded queue.
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::time::Instant;

use arc_swap::ArcSwap;
use chrono::Utc;
use tonic::{Request, Response, Status};

use super::convert;
use super::errors::{FieldError, store_status};
use crate::clouds::source_kind;
use crate::domain::Provider;
use crate::domain::budget::{BudgetSnapshot, GateDecision, PlacementCost, apply_gate};
use crate::domain::catalog::CatalogHandle;
use crate::domain::limits;
use crate::domain::money::units_to_decimal;
use crate::domain::placement::{AvailabilityMark, Conditions, CostModel, Outcome, PlacementError};
use crate::domain::quote::quote;
use crate::domain::regions::region_info;
use crate::proto;
use crate::proto::placement_service_server::PlacementService;
use crate::store::Store;
use crate::tasks::decisions::{DecisionLog, PendingDecision};

/// Live inputs to decisions, refreshed off the request path.
pub struct PlacementState {
    pub model: CostModel,
    pub marks: ArcSwap<Vec<AvailabilityMark>>,
    /// Bit per provider (aws 1, gcp 2, azure 4): a price source of it is failing.
    failing: AtomicU8,
    pub log: DecisionLog,
    seq: AtomicU64,
    /// Budgets that gate placements, as of their last evaluation (`tasks::budgets`).
    pub budgets: Arc<ArcSwap<Vec<BudgetSnapshot>>>,
}

impl PlacementState {
    pub fn new(model: CostModel, log: DecisionLog) -> Self {
        PlacementState {
            model,
            marks: ArcSwap::from_pointee(Vec::new()),
            failing: AtomicU8::new(0),
            log,
            seq: AtomicU64::new(0),
            budgets: Arc::new(ArcSwap::from_pointee(Vec::new())),
        }
    }

    pub fn set_failing(&self, failing: [bool; 3]) {
        let bits = failing
            .iter()
            .enumerate()
            .fold(0u8, |b, (i, f)| if *f { b | (1 << i) } else { b });
        self.failing.store(bits, Ordering::Relaxed);
    }

    pub fn failing(&self) -> [bool; 3] {
        let b = self.failing.load(Ordering::Relaxed);
        [b & 1 != 0, b & 2 != 0, b & 4 != 0]
    }

    fn next_id(&self, prefix: &str) -> String {
        let n = self.seq.fetch_add(1, Ordering::Relaxed);
        let t = Utc::now().timestamp_nanos_opt().unwrap_or_default();
        format!("{prefix}-{t:x}-{n:x}")
    }
}

pub struct PlacementApi {
    pub store: Store,
    pub catalog: CatalogHandle,
    pub state: Arc<PlacementState>,
}

/// What the budget gate sees of a placement (catalog prices are USD).
fn placement_cost(
    o: &crate::domain::Offer,
    total: crate::domain::money::Units,
) -> PlacementCost<'_> {
    PlacementCost {
        provider: o.key.provider.as_str(),
        region: &o.key.region,
        total: units_to_decimal(total),
        currency: "USD",
    }
}

/// Applies the budgets in the request's scope to its ranked placements: FAILED_PRECONDITION
/// when a `deny` budget (or a `downgrade` budget with nothing left) cannot afford the job.
fn budget_gate(
    snapshots: &[BudgetSnapshot],
    r: &proto::SelectProviderRequest,
    choices: &[crate::domain::placement::Choice],
    offers: &[crate::domain::Offer],
) -> Result<GateDecision, Status> {
    let labels: std::collections::BTreeMap<String, String> = r
        .labels
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let costs: Vec<PlacementCost<'_>> = choices
        .iter()
        .map(|c| placement_cost(&offers[c.offer], c.total))
        .collect();
    let gate = apply_gate(snapshots, &labels, &costs);
    if let Some(d) = &gate.deny {
        return Err(Status::failed_precondition(format!(
            "budget {:?} ({}) cannot afford this job: spent {} of {} {}, forecast {}, remaining {}, \
             this job's estimated cost {}",
            d.budget,
            d.policy.as_str(),
            d.actual.normalize(),
            d.amount.normalize(),
            d.currency,
            d.forecast.normalize(),
            d.remaining.normalize(),
            d.job_cost.normalize()
        )));
    }
    Ok(gate)
}

#[tonic::async_trait]
impl PlacementService for PlacementApi {
    // A debug-level span: under the default INFO filter the hot path creates none.
    #[tracing::instrument(level = "debug", skip_all)]
    async fn select_provider(
        &self,
        request: Request<proto::SelectProviderRequest>,
    ) -> Result<Response<proto::SelectProviderResponse>, Status> {
        let started = Instant::now();
        let mut r = request.into_inner();
        let catalog = self.catalog.load();
        let index = catalog.placement();
        let req = convert::placement_request(&r, index)?;
        let marks = self.state.marks.load();
        let cond = Conditions {
            now: Utc::now(),
            failing: self.state.failing(),
            marks: &marks,
        };
        let decision = index
            .select(&req, &self.state.model, &cond)
            .map_err(|e| match e {
                PlacementError::UnknownAccelerator { .. } => {
                    FieldError::new("resources.accelerators", e.to_string())
                }
            })?;
        let id = self.state.next_id("d");
        let offers = catalog.offers();
        // The budget gate (issue #5) reads an in-memory snapshot; a refusal is logged too.
        let snapshots = self.state.budgets.load();
        let gate = if snapshots.is_empty() || decision.choices.is_empty() {
            Ok(GateDecision::default())
        } else {
            budget_gate(&snapshots, &r, &decision.choices, offers)
        };
        let outcome = if decision.choices.is_empty() {
            Outcome::NoFeasible
        } else if gate.is_err() {
            Outcome::DeniedByBudget
        } else {
            Outcome::Placed
        };
        crate::metrics::global().decision(outcome);
        // The log records what the caller got: the placements the gate kept (none if denied).
        let mut kept = decision
            .choices
            .iter()
            .enumerate()
            .filter(|(i, _)| gate.as_ref().is_ok_and(|g| g.kept(*i)))
            .map(|(_, c)| (c.offer, c.total));
        let (chosen, runner_up) = (kept.next(), kept.next());
        let feasible = decision.feasible();
        let answer = if decision.choices.is_empty() {
            let parts: Vec<String> = decision
                .exclusions()
                .iter()
                .map(|(c, n)| format!("{c} excluded {n}"))
                .collect();
            Err(Status::failed_precondition(format!(
                "no feasible placement among {} offers: {}",
                decision.considered,
                if parts.is_empty() {
                    "the catalog is empty".to_string()
                } else {
                    parts.join(", ")
                }
            )))
        } else {
            gate.map(|gate| {
                let mut placements: Vec<proto::Placement> =
                    Vec::with_capacity(decision.choices.len());
                for (i, c) in decision.choices.iter().enumerate() {
                    if !gate.kept(i) {
                        continue;
                    }
                    let mut p = convert::placement(
                        c,
                        &offers[c.offer],
                        // Looked up only for the few flagged choices.
                        c.suspect.then(|| catalog.suspicion_at(c.offer)).flatten(),
                        &req,
                        placements.len() + 1,
                        feasible,
                    );
                    // Priced for the gate only when a budget warned (no budgets: no work).
                    if !gate.warnings.is_empty() {
                        let cost = placement_cost(&offers[c.offer], c.total);
                        for w in &gate.warnings {
                            // Only budgets this placement would spend from.
                            let covers = snapshots
                                .iter()
                                .any(|s| s.name == w.budget && s.covers(&cost));
                            if covers && cost.total > w.remaining {
                                p.over_budget.push(w.budget.clone());
                            }
                        }
                    }
                    placements.push(p);
                }
                let seed_prices = placements.iter().all(|p| p.seed);
                proto::SelectProviderResponse {
                    placements,
                    excluded: decision
                        .exclusions()
                        .into_iter()
                        .map(|(c, n)| proto::Exclusion {
                            constraint: c.to_string(),
                            offers: n,
                        })
                        .collect(),
                    offers_considered: decision.considered,
                    feasible,
                    decision_id: id.clone(),
                    seed_prices,
                    budgets: gate.warnings.iter().map(convert::budget_notice).collect(),
                }
            })
        };
        // Logged after the answer is built, handing over what the request owns: the writer
        // renders the row's text off the request path.
        self.state.log.record(PendingDecision {
            id,
            decided_at: cond.now,
            labels: std::mem::take(&mut r.labels),
            request: req,
            catalog: catalog.clone(),
            considered: decision.considered,
            feasible,
            chosen,
            runner_up,
            baseline: decision.baseline,
            outcome: outcome.as_str(),
            latency_us: started.elapsed().as_micros() as i64,
        });
        answer.map(Response::new)
    }

    #[tracing::instrument(skip_all)]
    async fn mark_unavailable(
        &self,
        request: Request<proto::MarkUnavailableRequest>,
    ) -> Result<Response<proto::AvailabilityMark>, Status> {
        let r = request.into_inner();
        let provider = convert::provider_from_proto(r.provider, "provider")?
            .ok_or_else(|| FieldError::new("provider", "required"))?;
        convert::limited(&r.region, limits::REGION, "region")?;
        convert::limited(&r.zone, limits::REGION, "zone")?;
        convert::limited(&r.reason, limits::MARK_REASON, "reason")?;
        let region = Some(r.region.trim().to_string()).filter(|s| !s.is_empty());
        let zone = Some(r.zone.trim().to_string()).filter(|s| !s.is_empty());
        if zone.is_some() && region.is_none() {
            return Err(FieldError::new("region", "a zone mark needs its region").into());
        }
        if let Some(reg) = &region
            && region_info(provider, reg).is_none()
            && !self.catalog.load().placement().has_region(provider, reg)
        {
            return Err(FieldError::new(
                "region",
                format!("unknown {provider} region {}", quote(reg)),
            )
            .into());
        }
        if r.reason.trim().is_empty() {
            return Err(
                FieldError::new("reason", "say why (it is shown to callers and kept)").into(),
            );
        }
        if r.ttl_seconds == 0 || r.ttl_seconds > 90 * 24 * 3600 {
            return Err(FieldError::new("ttl_seconds", "must be > 0 and at most 90 days").into());
        }
        let now = Utc::now();
        let mark = AvailabilityMark {
            id: self.state.next_id("m"),
            provider,
            region,
            zone,
            reason: r.reason.trim().to_string(),
            created_at: now,
            expires_at: now + chrono::Duration::seconds(r.ttl_seconds as i64),
        };
        self.store.insert_mark(&mark).await.map_err(store_status)?;
        // Honoured at once by this replica; others when notified (Postgres) or at their next
        // refresh.
        let mut marks: Vec<AvailabilityMark> = self.state.marks.load().as_ref().clone();
        marks.push(mark.clone());
        self.state.marks.store(Arc::new(marks));
        tracing::info!(id = %mark.id, provider = %provider, region = ?mark.region, zone = ?mark.zone, reason = %mark.reason, "marked unavailable");
        Ok(Response::new(convert::mark(&mark)))
    }

    async fn list_unavailable(
        &self,
        _request: Request<proto::ListUnavailableRequest>,
    ) -> Result<Response<proto::ListUnavailableResponse>, Status> {
        let now = Utc::now();
        let marks = self.store.list_marks().await.map_err(store_status)?;
        Ok(Response::new(proto::ListUnavailableResponse {
            marks: marks
                .iter()
                .filter(|m| m.expires_at > now)
                .map(convert::mark)
                .collect(),
        }))
    }

    async fn clear_unavailable(
        &self,
        request: Request<proto::ClearUnavailableRequest>,
    ) -> Result<Response<proto::ClearUnavailableResponse>, Status> {
        let id = request.into_inner().id;
        if id.trim().is_empty() {
            return Err(FieldError::new("id", "required").into());
        }
        convert::limited(&id, limits::MARK_ID, "id")?;
        if !self
            .store
            .delete_mark(id.trim())
            .await
            .map_err(store_status)?
        {
            return Err(Status::not_found(format!(
                "no availability mark {}",
                quote(&id)
            )));
        }
        let marks: Vec<AvailabilityMark> = self
            .state
            .marks
            .load()
            .iter()
            .filter(|m| m.id != id.trim())
            .cloned()
            .collect();
        self.state.marks.store(Arc::new(marks));
        Ok(Response::new(proto::ClearUnavailableResponse {}))
    }
}

/// Reloads marks and provider health from the store (for other replicas' writes and
/// source status changes).
pub async fn refresh_state(store: &Store, state: &PlacementState, enabled: &[(String, bool)]) {
    match store.list_marks().await {
        Ok(m) => {
            let now = Utc::now();
            state.marks.store(Arc::new(
                m.into_iter().filter(|m| m.expires_at > now).collect(),
            ));
        }
        Err(e) => tracing::warn!(error = %e, "cannot reload availability marks"),
    }
    match store.source_statuses().await {
        Ok(rows) => {
            let mut failing = [false; 3];
            for r in rows.iter().filter(|r| r.state == "failed") {
                let enabled = enabled.iter().any(|(n, e)| n == &r.name && *e);
                let p = source_kind(&r.name)
                    .filter(|k| k.reports_prices)
                    .map(|k| k.provider);
                if let (true, Some(p)) = (enabled, p) {
                    failing[Provider::ALL.iter().position(|x| *x == p).unwrap_or(0)] = true;
                }
            }
            state.set_failing(failing);
        }
        Err(e) => tracing::warn!(error = %e, "cannot reload source status"),
    }
}
