//! Threshold evaluation: `evaluate` compares a period's actual and forecast spend with
//! each of a budget's thresholds (`BudgetStatus`, `ThresholdState`).

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use super::*;

/// A budget's standing in one period.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BudgetStatus {
    pub budget: String,
    pub period: PeriodWindow,
    pub amount: Decimal,
    /// Currency, or `"GB"` for egress budgets.
    pub currency: String,
    pub actual: Decimal,
    pub forecast: Decimal,
    pub thresholds: Vec<ThresholdState>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ThresholdState {
    /// [`Threshold::key`].
    pub key: String,
    pub on: ThresholdOn,
    pub limit: Decimal,
    pub crossed: bool,
}

impl BudgetStatus {
    /// Thresholds at or over their limit.
    pub fn crossed(&self) -> impl Iterator<Item = &ThresholdState> {
        self.thresholds.iter().filter(|t| t.crossed)
    }
}

/// Compares spend with each threshold: actual thresholds are crossed when
/// `actual ≥ limit`, forecast thresholds when `forecast ≥ limit`.
pub fn evaluate(
    budget: &Budget,
    window: &PeriodWindow,
    actual: Decimal,
    forecast: Decimal,
) -> BudgetStatus {
    let thresholds = budget
        .thresholds
        .iter()
        .map(|t| {
            let limit = t.limit(budget.amount);
            let seen = match t.on {
                ThresholdOn::Actual => actual,
                ThresholdOn::Forecast => forecast,
            };
            ThresholdState {
                key: t.key(),
                on: t.on,
                limit,
                crossed: seen >= limit,
            }
        })
        .collect();
    BudgetStatus {
        budget: budget.name.clone(),
        period: window.clone(),
        amount: budget.amount,
        currency: budget.unit().to_string(),
        actual,
        forecast,
        thresholds,
    }
}
