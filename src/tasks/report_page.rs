//! Gathers a month's `MonthlyReport` from the store: spend (totals, per day and provider,
//! per service and team), the previous month per service (the movers), every budget's
//! standing through `BudgetEngine::status` (the same actual and forecast the alerts use),
//! placement savings and the idle-GPU ledger. `bursar report`, `GET /report` and the monthly
//! email call `build` and render with `report::page`.
use chrono::{DateTime, Utc};

use crate::domain::report::{
    BudgetLine, IdleSummary, Month, MonthlyReport, sort_groups, top_movers,
};
use crate::notify::AlertsConfig;
use crate::store::Store;
use crate::tasks::budgets::{BudgetEngine, EngineError};

/// Movers the report lists.
pub const MOVERS: usize = 10;

/// What a report needs besides the store.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReportSettings {
    /// The tag whose values are the teams (`[report] team_tag`).
    pub team_tag: String,
    /// The budgets' forecast window (`[budget_evaluation] trailing_days`).
    pub trailing_days: u32,
}

impl ReportSettings {
    pub fn from_config(c: &crate::config::Config) -> ReportSettings {
        ReportSettings {
            team_tag: c.report.team_tag.clone(),
            trailing_days: c.budget_evaluation.trailing_days,
        }
    }
}

/// The report of `month` as of `now` (a month not yet over is reported to date).
pub async fn build(
    store: &Store,
    month: Month,
    now: DateTime<Utc>,
    settings: &ReportSettings,
) -> Result<MonthlyReport, EngineError> {
    let (start, end) = (month.start(), month.end());
    let mut spend = store.month_spend(start, end, &settings.team_tag).await?;
    sort_groups(&mut spend.by_service);
    sort_groups(&mut spend.by_team);
    let previous = store.service_spend(month.previous().start(), start).await?;
    let movers = top_movers(&previous, &spend.by_service, MOVERS);
    let budgets = budget_lines(store, month, now, settings).await?;
    let placement = store.placement_savings(start, end).await?;
    let ledger = store.fleet_savings(Some(start), Some(end)).await?;
    let idle = IdleSummary {
        actions: store.fleet_action_counts(start, end).await?,
        hours: ledger.days.values().map(|d| d.hours()).sum(),
        avoided: ledger
            .totals
            .into_iter()
            .map(|(c, v)| (c, v.normalize()))
            .collect(),
        acted: ledger.actions,
    };
    Ok(MonthlyReport {
        month,
        generated_at: now,
        partial: now < end,
        totals: spend.totals,
        days: spend.days,
        by_service: spend.by_service,
        by_team: spend.by_team,
        team_tag: settings.team_tag.clone(),
        budgets,
        placement,
        idle,
        movers,
    })
}

/// Each budget's period containing the month's last instant (or now, in a month not over),
/// evaluated as the budget engine does; a period over by then is judged on its actual.
async fn budget_lines(
    store: &Store,
    month: Month,
    now: DateTime<Utc>,
    settings: &ReportSettings,
) -> Result<Vec<BudgetLine>, EngineError> {
    let engine = BudgetEngine::new(
        store.clone(),
        AlertsConfig::default(),
        settings.trailing_days,
    );
    let at = now.min(month.end() - chrono::Duration::microseconds(1));
    let mut out = Vec::new();
    for row in store.list_budgets().await? {
        let b = match row {
            Ok(stored) => stored.budget,
            Err(e) => {
                tracing::warn!(error = %e, "report: skipping a budget that cannot be read");
                continue;
            }
        };
        let ev = engine.status(&b, at).await?;
        let st = ev.status;
        out.push(BudgetLine::new(
            b.name.clone(),
            st.period.key.clone(),
            st.currency.clone(),
            st.amount,
            st.actual,
            st.forecast,
            st.period.end <= now,
        ));
    }
    Ok(out)
}
