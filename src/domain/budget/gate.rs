//! The budget gate: `apply_gate` keeps, warns about, removes or refuses ranked
//! placements by the budgets that cover them (`BudgetSnapshot`, `GateDecision`).
use std::collections::BTreeMap;

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use super::*;

/// What the gate needs of a budget: its definition's scope and policy and the current
/// period's spend.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BudgetSnapshot {
    pub name: String,
    pub scope: BudgetScope,
    pub metric: BudgetMetric,
    pub policy: GatePolicy,
    pub amount: Decimal,
    pub currency: String,
    pub actual: Decimal,
    pub forecast: Decimal,
}

impl BudgetSnapshot {
    pub fn new(budget: &Budget, actual: Decimal, forecast: Decimal) -> Self {
        BudgetSnapshot {
            name: budget.name.clone(),
            scope: budget.scope.clone(),
            metric: budget.metric,
            policy: budget.gate,
            amount: budget.amount,
            currency: budget.currency.clone(),
            actual,
            forecast,
        }
    }

    /// `amount − actual`; may be zero or negative.
    pub fn remaining(&self) -> Decimal {
        self.amount.checked_sub(self.actual).unwrap_or(Decimal::MIN)
    }

    /// Whether a placement spends from this budget: same currency, provider and region in
    /// scope.
    pub fn covers(&self, p: &PlacementCost<'_>) -> bool {
        // No FX: a budget only gates placements priced in its own currency.
        p.currency.eq_ignore_ascii_case(&self.currency)
            && self.scope.covers_placement(p.provider, p.region)
    }
}

/// A candidate placement's expected cost for the job.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PlacementCost<'a> {
    pub provider: &'a str,
    pub region: &'a str,
    pub total: Decimal,
    pub currency: &'a str,
}

/// A budget the job may push over (`warn`), or that removed placements (`downgrade`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GateWarning {
    pub budget: String,
    pub policy: GatePolicy,
    pub amount: Decimal,
    pub currency: String,
    pub remaining: Decimal,
    pub actual: Decimal,
    pub forecast: Decimal,
    /// `warn`: the cheapest placement the budget covers (among those kept);
    /// `downgrade`: the cheapest placement it removed.
    pub job_cost: Decimal,
    /// Placements removed (`downgrade`); 0 for `warn`.
    pub removed: usize,
}

/// Why the request is refused.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GateDeny {
    pub budget: String,
    /// `Deny`, or `Downgrade` when no placement was left.
    pub policy: GatePolicy,
    pub amount: Decimal,
    pub currency: String,
    pub remaining: Decimal,
    pub actual: Decimal,
    pub forecast: Decimal,
    /// The cheapest placement the budget covers — more than `remaining`.
    pub job_cost: Decimal,
}

/// The outcome of [`apply_gate`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GateDecision {
    /// `None` keeps every placement; else `keep[i]` says whether placement `i` stays.
    pub keep: Option<Vec<bool>>,
    pub warnings: Vec<GateWarning>,
    pub deny: Option<GateDeny>,
}

impl GateDecision {
    pub fn is_denied(&self) -> bool {
        self.deny.is_some()
    }
    /// Whether placement `i` stays (false for all when denied).
    pub fn kept(&self, i: usize) -> bool {
        self.deny.is_none()
            && self
                .keep
                .as_ref()
                .is_none_or(|k| k.get(i).copied().unwrap_or(false))
    }
}

fn cheapest_covered(
    b: &BudgetSnapshot,
    placements: &[PlacementCost<'_>],
    keep: Option<&[bool]>,
) -> Option<Decimal> {
    placements
        .iter()
        .enumerate()
        .filter(|(i, p)| keep.is_none_or(|k| k[*i]) && b.covers(p))
        .map(|(_, p)| p.total)
        .min()
}

fn deny_of(b: &BudgetSnapshot, job_cost: Decimal) -> GateDeny {
    GateDeny {
        budget: b.name.clone(),
        policy: b.policy,
        amount: b.amount,
        currency: b.currency.clone(),
        remaining: b.remaining(),
        actual: b.actual,
        forecast: b.forecast,
        job_cost,
    }
}

fn warning_of(b: &BudgetSnapshot, job_cost: Decimal, removed: usize) -> GateWarning {
    GateWarning {
        budget: b.name.clone(),
        policy: b.policy,
        amount: b.amount,
        currency: b.currency.clone(),
        remaining: b.remaining(),
        actual: b.actual,
        forecast: b.forecast,
        job_cost,
        removed,
    }
}

/// Applies the cost budgets' gate policies to a request's placements (see the module
/// documentation for the rules). Allocates only when a budget takes part.
pub fn apply_gate(
    snapshots: &[BudgetSnapshot],
    labels: &BTreeMap<String, String>,
    placements: &[PlacementCost<'_>],
) -> GateDecision {
    let mut order: Vec<&BudgetSnapshot> = snapshots
        .iter()
        .filter(|b| {
            b.metric == BudgetMetric::Cost
                && b.policy != GatePolicy::None
                && b.scope.applies_to_request(labels)
        })
        .collect();
    let mut decision = GateDecision::default();
    if order.is_empty() {
        return decision;
    }
    order.sort_by(|a, b| a.name.cmp(&b.name));

    for b in order.iter().filter(|b| b.policy == GatePolicy::Deny) {
        if let Some(cost) = cheapest_covered(b, placements, None)
            && cost > b.remaining()
        {
            decision.deny = Some(deny_of(b, cost));
            return decision;
        }
    }

    for b in order.iter().filter(|b| b.policy == GatePolicy::Downgrade) {
        let keep = decision.keep.as_deref();
        let remaining = b.remaining();
        let over = |i: usize, p: &PlacementCost<'_>| {
            keep.is_none_or(|k| k[i]) && b.covers(p) && p.total > remaining
        };
        let (mut removed, mut cheapest_removed) = (0usize, None::<Decimal>);
        for (i, p) in placements.iter().enumerate() {
            if over(i, p) {
                removed += 1;
                cheapest_removed = Some(cheapest_removed.map_or(p.total, |c| c.min(p.total)));
            }
        }
        let Some(job_cost) = cheapest_removed else {
            continue;
        };
        let kept_before = keep.map_or(placements.len(), |k| k.iter().filter(|x| **x).count());
        if removed == kept_before {
            return GateDecision {
                keep: None,
                warnings: Vec::new(),
                deny: Some(deny_of(b, job_cost)),
            };
        }
        let mask: Vec<bool> = placements
            .iter()
            .enumerate()
            .map(|(i, p)| keep.is_none_or(|k| k[i]) && !over(i, p))
            .collect();
        decision.keep = Some(mask);
        decision.warnings.push(warning_of(b, job_cost, removed));
    }

    for b in order.iter().filter(|b| b.policy == GatePolicy::Warn) {
        let Some(cost) = cheapest_covered(b, placements, decision.keep.as_deref()) else {
            continue;
        };
        if cost > b.remaining() || b.forecast >= b.amount {
            decision.warnings.push(warning_of(b, cost, 0));
        }
    }
    decision
}
