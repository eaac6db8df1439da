//! `bursar.v1.BudgetService`: create, update, delete and list budget definitions, and their
//! status in the current period (through `tasks::budgets::BudgetEngine`).
//!
//! Handlers only validate and convert (the `convert` section below: proto `Budget` ↔
//! `domain::budget::Budget`) and map errors:
//! - a definition that does not validate, or a Create whose name is taken → INVALID_ARGUMENT
//!   naming the proto field (`budget.thresholds[1].percent`, `budget.name`);
//! - Update/Delete/GetStatus of an unknown name → NOT_FOUND;
//! - Update/Delete of a budget declared in the config file → FAILED_PRECONDITION.
//!
//! Invariant: webhook URLs are secrets: every budget leaves through `Budget::redacted`, and
//! no log line here carries a definition (only budget names).
use std::collections::HashMap;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use tonic::{Request, Response, Status};

use super::convert::{limited, timestamp};
use super::errors::{FieldError, store_status};
use crate::domain::budget::{
    Budget, BudgetError, BudgetMetric, BudgetPeriod, BudgetScope, CostBasis, GatePolicy, TagFilter,
    Threshold, ThresholdOn, ThresholdValue,
};
use crate::domain::limits;
use crate::domain::money::parse_amount;
use crate::domain::quote::{clip, quote};
use crate::domain::tags::{tag_key_problem, valid_tag_key};
use crate::proto;
use crate::proto::budget_service_server::BudgetService;
use crate::store::Store;
use crate::store::budgets::BudgetOrigin;
use crate::tasks::budgets::{BudgetEngine, EngineError, Evaluated};

pub struct BudgetApi {
    pub store: Store,
    pub engine: Arc<BudgetEngine>,
}

/// Stores the config file's budgets with origin `config` (replacing any API budget of the
/// same name: the file wins), and removes stored `config` budgets the file no longer
/// declares (their fired alerts and history stay). Returns how many were removed.
pub async fn apply_config_budgets(
    store: &Store,
    budgets: &[Budget],
) -> Result<usize, crate::store::StoreError> {
    for b in budgets {
        store.upsert_budget(b, BudgetOrigin::Config).await?;
    }
    let mut removed = 0;
    for (name, origin) in store.budget_origins().await? {
        if origin == BudgetOrigin::Config && !budgets.iter().any(|b| b.name == name) {
            if store.delete_budget(&name).await? {
                removed += 1;
            }
            tracing::info!(
                budget = %name,
                "budget removed: it was declared in the config file, which no longer names it"
            );
        }
    }
    tracing::info!(
        declared = budgets.len(),
        removed,
        "config file budgets applied"
    );
    Ok(removed)
}

impl BudgetApi {
    /// Re-evaluates every budget so the gate snapshot and alerts follow a change at once.
    /// A failure is logged and left to the next scheduled evaluation.
    async fn reevaluate(&self) {
        if let Err(e) = self.engine.evaluate_all(Utc::now()).await {
            tracing::warn!(error = %e, "budget evaluation after a change failed; the next scheduled one will retry");
        }
    }

    /// The origin of the stored budget `name`, or NOT_FOUND.
    async fn existing(&self, name: &str) -> Result<BudgetOrigin, Status> {
        self.store
            .budget_origin(name)
            .await
            .map_err(store_status)?
            .ok_or_else(|| not_found(name))
    }
}

fn not_found(name: &str) -> Status {
    Status::not_found(format!("no budget named {}", quote(name)))
}

fn config_owned(name: &str) -> Status {
    Status::failed_precondition(format!(
        "budget {} is declared in the config file; edit the file",
        quote(name)
    ))
}

fn engine_status(e: EngineError) -> Status {
    match e {
        EngineError::Store(s) => store_status(s),
        EngineError::Spec { budget, detail } => {
            tracing::error!(budget = %budget, detail = %detail, "budget cannot be evaluated");
            Status::internal(format!(
                "budget {} cannot be evaluated: {}",
                quote(&budget),
                clip(&detail)
            ))
        }
    }
}

#[tonic::async_trait]
impl BudgetService for BudgetApi {
    #[tracing::instrument(skip_all, fields(budget = tracing::field::Empty))]
    async fn create_budget(
        &self,
        request: Request<proto::CreateBudgetRequest>,
    ) -> Result<Response<proto::Budget>, Status> {
        let budget = budget_from_request(request.get_ref().budget.as_ref())?;
        tracing::Span::current().record("budget", budget.name.as_str());
        let created = self
            .store
            .create_budget(&budget, BudgetOrigin::Api)
            .await
            .map_err(store_status)?;
        if !created {
            let origin = self
                .store
                .budget_origin(&budget.name)
                .await
                .map_err(store_status)?;
            let whence = if origin == Some(BudgetOrigin::Config) {
                " (declared in the config file)"
            } else {
                ""
            };
            return Err(Status::invalid_argument(format!(
                "budget.name: a budget named {} already exists{whence}",
                quote(&budget.name)
            )));
        }
        tracing::info!("budget created");
        self.reevaluate().await;
        Ok(Response::new(budget_to_proto(&budget, BudgetOrigin::Api)))
    }

    #[tracing::instrument(skip_all, fields(budget = tracing::field::Empty))]
    async fn update_budget(
        &self,
        request: Request<proto::UpdateBudgetRequest>,
    ) -> Result<Response<proto::Budget>, Status> {
        let budget = budget_from_request(request.get_ref().budget.as_ref())?;
        tracing::Span::current().record("budget", budget.name.as_str());
        if self.existing(&budget.name).await? == BudgetOrigin::Config {
            return Err(config_owned(&budget.name));
        }
        let updated = self
            .store
            .update_budget(&budget, BudgetOrigin::Api)
            .await
            .map_err(store_status)?;
        if !updated {
            return Err(not_found(&budget.name));
        }
        tracing::info!("budget updated");
        self.reevaluate().await;
        Ok(Response::new(budget_to_proto(&budget, BudgetOrigin::Api)))
    }

    #[tracing::instrument(skip_all, fields(budget = tracing::field::Empty))]
    async fn delete_budget(
        &self,
        request: Request<proto::DeleteBudgetRequest>,
    ) -> Result<Response<proto::DeleteBudgetResponse>, Status> {
        let name = request.get_ref().name.as_str();
        if name.trim().is_empty() {
            return Err(FieldError::new("name", "required").into());
        }
        limited(name, limits::BUDGET_NAME, "name")?;
        tracing::Span::current().record("budget", name);
        if self.existing(name).await? == BudgetOrigin::Config {
            return Err(config_owned(name));
        }
        if !self.store.delete_budget(name).await.map_err(store_status)? {
            return Err(not_found(name));
        }
        tracing::info!("budget deleted");
        self.reevaluate().await;
        Ok(Response::new(proto::DeleteBudgetResponse {}))
    }

    #[tracing::instrument(skip_all)]
    async fn list_budgets(
        &self,
        _request: Request<proto::ListBudgetsRequest>,
    ) -> Result<Response<proto::ListBudgetsResponse>, Status> {
        let rows = self.store.list_budgets().await.map_err(store_status)?;
        let budgets = rows
            .into_iter()
            .map(|r| r.map(|r| budget_to_proto(&r.budget, r.origin)))
            .collect::<Result<Vec<_>, _>>()
            .map_err(store_status)?;
        Ok(Response::new(proto::ListBudgetsResponse { budgets }))
    }

    #[tracing::instrument(skip_all, fields(budget = tracing::field::Empty))]
    async fn get_budget_status(
        &self,
        request: Request<proto::GetBudgetStatusRequest>,
    ) -> Result<Response<proto::GetBudgetStatusResponse>, Status> {
        let name = request.get_ref().name.as_str();
        let now = match &request.get_ref().at {
            None => Utc::now(),
            Some(t) => DateTime::from_timestamp(t.seconds, t.nanos.max(0) as u32)
                .ok_or_else(|| FieldError::new("at", "out of range"))?,
        };
        let rows = if name.is_empty() {
            self.store.list_budgets().await.map_err(store_status)?
        } else {
            limited(name, limits::BUDGET_NAME, "name")?;
            tracing::Span::current().record("budget", name);
            let found = self.store.get_budget(name).await.transpose();
            vec![found.ok_or_else(|| not_found(name))?]
        };
        let mut statuses = Vec::with_capacity(rows.len());
        for r in rows {
            let budget = r.map_err(store_status)?.budget;
            let evaluated = self
                .engine
                .status(&budget, now)
                .await
                .map_err(engine_status)?;
            statuses.push(status_to_proto(&evaluated));
        }
        Ok(Response::new(proto::GetBudgetStatusResponse { statuses }))
    }
}

// ---------------------------------------------------------------------------------------
// convert: proto ↔ domain
// ---------------------------------------------------------------------------------------

fn invalid(field: impl std::fmt::Display, message: impl std::fmt::Display) -> Status {
    Status::invalid_argument(format!("{field}: {}", clip(&message.to_string())))
}

/// The proto field path of a `BudgetError` field (`channels.emails[0]` → `budget.emails[0]`).
pub fn proto_field(domain_field: &str) -> String {
    match domain_field {
        "amount" => "budget.amount.amount".into(),
        "currency" => "budget.amount.currency".into(),
        "scope.tag.key" | "scope.tag.value" => "budget.scope.tag".into(),
        f => match f.strip_prefix("channels.") {
            Some(rest) => format!("budget.{rest}"),
            None => format!("budget.{f}"),
        },
    }
}

fn budget_error(e: BudgetError) -> Status {
    invalid(proto_field(&e.field), e.message)
}

/// Decodes and validates the `budget` of a Create/Update request.
pub fn budget_from_request(b: Option<&proto::Budget>) -> Result<Budget, Status> {
    let b = b.ok_or_else(|| invalid("budget", "required"))?;
    let budget = budget_from_proto(b)?;
    budget.validate().map_err(budget_error)?;
    Ok(budget)
}

fn enum_value<T: TryFrom<i32>>(v: i32, field: &str) -> Result<T, Status> {
    T::try_from(v).map_err(|_| invalid(field, format!("unknown value {v}")))
}

fn decimal(s: &str, field: &str) -> Result<Decimal, Status> {
    parse_amount(s).map_err(|_| {
        invalid(
            field,
            format!(
                "{} is not an exact decimal number such as \"5000\" or \"80.5\"",
                quote(s)
            ),
        )
    })
}

fn non_empty(s: &str) -> Option<String> {
    let t = s.trim();
    (!t.is_empty()).then(|| t.to_string())
}

/// Decodes a proto budget (enums, decimal strings, defaults); `Budget::validate` does the
/// rest.
pub fn budget_from_proto(b: &proto::Budget) -> Result<Budget, Status> {
    let metric = match enum_value(b.metric, "budget.metric")? {
        proto::BudgetMetric::Unspecified | proto::BudgetMetric::Cost => BudgetMetric::Cost,
        proto::BudgetMetric::EgressGb => BudgetMetric::EgressGb,
    };
    let money = b
        .amount
        .as_ref()
        .ok_or_else(|| invalid("budget.amount", "required: an amount and its currency"))?;
    let amount = decimal(&money.amount, "budget.amount.amount")?;
    let currency = match metric {
        BudgetMetric::Cost => money.currency.trim().to_string(),
        // The amount counts gigabytes; the proto documents the currency as ignored.
        BudgetMetric::EgressGb => String::new(),
    };
    let period = match enum_value(b.period, "budget.period")? {
        proto::BudgetPeriod::Unspecified | proto::BudgetPeriod::Monthly => BudgetPeriod::Monthly,
        proto::BudgetPeriod::Quarterly => BudgetPeriod::Quarterly,
        proto::BudgetPeriod::Annual => BudgetPeriod::Annual,
        proto::BudgetPeriod::Daily => BudgetPeriod::Daily,
    };
    let basis = match enum_value(b.basis, "budget.basis")? {
        proto::CostBasis::Unspecified | proto::CostBasis::Billed => CostBasis::Billed,
        proto::CostBasis::Effective => CostBasis::Effective,
    };
    let gate = match enum_value(b.gate, "budget.gate")? {
        proto::GatePolicy::Unspecified | proto::GatePolicy::GateNone => GatePolicy::None,
        proto::GatePolicy::GateWarn => GatePolicy::Warn,
        proto::GatePolicy::GateDeny => GatePolicy::Deny,
        proto::GatePolicy::GateDowngrade => GatePolicy::Downgrade,
    };
    let mut thresholds = Vec::with_capacity(b.thresholds.len());
    for (i, t) in b.thresholds.iter().enumerate() {
        let on = match enum_value(t.on, &format!("budget.thresholds[{i}].on"))? {
            proto::ThresholdOn::Unspecified | proto::ThresholdOn::Actual => ThresholdOn::Actual,
            proto::ThresholdOn::Forecast => ThresholdOn::Forecast,
        };
        let (percent, amount) = (t.percent.trim(), t.amount.trim());
        let value = match (percent.is_empty(), amount.is_empty()) {
            (false, true) => {
                let p = percent.strip_suffix('%').unwrap_or(percent);
                ThresholdValue::Percent(decimal(p, &format!("budget.thresholds[{i}].percent"))?)
            }
            (true, false) => {
                ThresholdValue::Amount(decimal(amount, &format!("budget.thresholds[{i}].amount"))?)
            }
            _ => {
                return Err(invalid(
                    format!("budget.thresholds[{i}]"),
                    "set exactly one of percent or amount",
                ));
            }
        };
        thresholds.push(Threshold { value, on });
    }
    let s = b.scope.clone().unwrap_or_default();
    let tag = match non_empty(&s.tag) {
        None => None,
        Some(t) => match t.split_once('=') {
            Some((k, v)) if valid_tag_key(k.trim()) && !v.trim().is_empty() => Some(TagFilter {
                key: k.trim().to_string(),
                value: v.trim().to_string(),
            }),
            Some((k, _)) if !valid_tag_key(k.trim()) => {
                let problem = tag_key_problem(k.trim()).unwrap_or_default();
                return Err(invalid(
                    "budget.scope.tag",
                    format!("{}: {problem}", quote(&t)),
                ));
            }
            _ => {
                return Err(invalid(
                    "budget.scope.tag",
                    format!("{}: expected key=value, e.g. team=ml", quote(&t)),
                ));
            }
        },
    };
    let mut budget = Budget::new(b.name.clone(), amount, currency);
    budget.period = period;
    budget.metric = metric;
    budget.basis = basis;
    budget.include_credits = b.include_credits.unwrap_or(true);
    budget.include_tax = b.include_tax.unwrap_or(true);
    budget.include_refunds = b.include_refunds.unwrap_or(true);
    if let Some(tz) = non_empty(&b.timezone) {
        budget.timezone = tz;
    }
    budget.gate = gate;
    budget.thresholds = thresholds;
    budget.scope = BudgetScope {
        provider: non_empty(&s.provider),
        service: non_empty(&s.service),
        account: non_empty(&s.account),
        region: non_empty(&s.region),
        tag,
    };
    budget.channels.emails = b.emails.iter().map(|e| e.trim().to_string()).collect();
    budget.channels.slack_webhooks = b
        .slack_webhooks
        .iter()
        .map(|w| w.trim().to_string())
        .collect();
    Ok(budget)
}

/// A budget as the API returns it: always redacted (webhook URLs → `scheme://host/…`).
pub fn budget_to_proto(b: &Budget, origin: BudgetOrigin) -> proto::Budget {
    let b = b.redacted();
    proto::Budget {
        name: b.name.clone(),
        scope: Some(proto::BudgetScope {
            provider: b.scope.provider.clone().unwrap_or_default(),
            service: b.scope.service.clone().unwrap_or_default(),
            account: b.scope.account.clone().unwrap_or_default(),
            region: b.scope.region.clone().unwrap_or_default(),
            tag: b
                .scope
                .tag
                .as_ref()
                .map(|t| format!("{}={}", t.key, t.value))
                .unwrap_or_default(),
        }),
        period: match b.period {
            BudgetPeriod::Monthly => proto::BudgetPeriod::Monthly,
            BudgetPeriod::Quarterly => proto::BudgetPeriod::Quarterly,
            BudgetPeriod::Annual => proto::BudgetPeriod::Annual,
            BudgetPeriod::Daily => proto::BudgetPeriod::Daily,
        } as i32,
        amount: Some(proto::Money {
            amount: b.amount.to_string(),
            currency: b.unit().to_string(),
        }),
        metric: match b.metric {
            BudgetMetric::Cost => proto::BudgetMetric::Cost,
            BudgetMetric::EgressGb => proto::BudgetMetric::EgressGb,
        } as i32,
        basis: match b.basis {
            CostBasis::Billed => proto::CostBasis::Billed,
            CostBasis::Effective => proto::CostBasis::Effective,
        } as i32,
        include_credits: Some(b.include_credits),
        include_tax: Some(b.include_tax),
        include_refunds: Some(b.include_refunds),
        thresholds: b
            .thresholds
            .iter()
            .map(|t| {
                let (percent, amount) = match t.value {
                    ThresholdValue::Percent(p) => (p.to_string(), String::new()),
                    ThresholdValue::Amount(a) => (String::new(), a.to_string()),
                };
                proto::Threshold {
                    percent,
                    amount,
                    on: threshold_on(t.on),
                }
            })
            .collect(),
        emails: b.channels.emails.clone(),
        slack_webhooks: b.channels.slack_webhooks.clone(),
        timezone: b.timezone.clone(),
        gate: match b.gate {
            GatePolicy::None => proto::GatePolicy::GateNone,
            GatePolicy::Warn => proto::GatePolicy::GateWarn,
            GatePolicy::Deny => proto::GatePolicy::GateDeny,
            GatePolicy::Downgrade => proto::GatePolicy::GateDowngrade,
        } as i32,
        origin: origin.as_str().to_string(),
    }
}

fn threshold_on(on: ThresholdOn) -> i32 {
    let on = match on {
        ThresholdOn::Actual => proto::ThresholdOn::Actual,
        ThresholdOn::Forecast => proto::ThresholdOn::Forecast,
    };
    on as i32
}

fn money(amount: Decimal, unit: &str) -> proto::Money {
    proto::Money {
        amount: amount.normalize().to_string(),
        currency: unit.to_string(),
    }
}

/// A budget's standing for GetBudgetStatus; `fired_at` from this period's fired alerts.
pub fn status_to_proto(e: &Evaluated) -> proto::BudgetStatus {
    let s = &e.status;
    let fired: HashMap<&str, DateTime<Utc>> =
        e.fired.iter().map(|(k, t)| (k.as_str(), *t)).collect();
    let unit = s.currency.as_str();
    proto::BudgetStatus {
        name: s.budget.clone(),
        period: s.period.key.clone(),
        period_start: Some(timestamp(s.period.start)),
        period_end: Some(timestamp(s.period.end)),
        amount: Some(money(s.amount, unit)),
        actual: Some(money(s.actual, unit)),
        forecast: Some(money(s.forecast, unit)),
        remaining: Some(money(
            s.amount.checked_sub(s.actual).unwrap_or(Decimal::MIN),
            unit,
        )),
        thresholds: s
            .thresholds
            .iter()
            .map(|t| proto::ThresholdStatus {
                key: t.key.clone(),
                on: threshold_on(t.on),
                limit: t.limit.normalize().to_string(),
                crossed: t.crossed,
                fired_at: fired.get(t.key.as_str()).map(|at| timestamp(*at)),
            })
            .collect(),
        evaluated_at: Some(timestamp(e.evaluated_at)),
        run_rate: Some(money(e.run_rate, unit)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::budgets::read_spec;

    fn d(s: &str) -> Decimal {
        s.parse().unwrap()
    }

    fn proto_budget() -> proto::Budget {
        proto::Budget {
            name: "ml".into(),
            scope: Some(proto::BudgetScope {
                provider: "aws".into(),
                tag: "team = ml".into(),
                ..Default::default()
            }),
            amount: Some(proto::Money {
                amount: "5000.50".into(),
                currency: "USD".into(),
            }),
            thresholds: vec![
                proto::Threshold {
                    percent: "80%".into(),
                    ..Default::default()
                },
                proto::Threshold {
                    amount: "4500".into(),
                    on: proto::ThresholdOn::Forecast as i32,
                    ..Default::default()
                },
            ],
            emails: vec!["finops@example.com".into()],
            slack_webhooks: vec!["https://hooks.slack.com/services/T0/B0/SECRET".into()],
            include_tax: Some(false),
            gate: proto::GatePolicy::GateWarn as i32,
            origin: "config".into(),
            ..Default::default()
        }
    }

    #[test]
    fn proto_budgets_decode_with_defaults_and_round_trip_redacted() {
        let b = budget_from_request(Some(&proto_budget())).unwrap();
        assert_eq!(b.amount, d("5000.50"));
        assert_eq!(b.period, BudgetPeriod::Monthly);
        assert_eq!(b.timezone, "UTC");
        assert!(b.include_credits && !b.include_tax && b.include_refunds);
        assert_eq!(b.gate, GatePolicy::Warn);
        assert_eq!(
            b.thresholds,
            vec![
                Threshold::percent(d("80"), ThresholdOn::Actual),
                Threshold::amount(d("4500"), ThresholdOn::Forecast),
            ]
        );
        assert_eq!(b.scope.tag.as_ref().unwrap().value, "ml");
        let p = budget_to_proto(&b, BudgetOrigin::Api);
        assert_eq!(p.origin, "api");
        assert_eq!(p.amount.as_ref().unwrap().amount, "5000.50");
        assert_eq!(p.scope.as_ref().unwrap().tag, "team=ml");
        assert_eq!(
            p.slack_webhooks,
            vec!["https://hooks.slack.com/…".to_string()]
        );
        assert!(!format!("{p:?}").contains("SECRET"));
        // What comes back decodes to the same budget, but for the redacted webhook.
        let mut again = budget_from_proto(&p).unwrap();
        again.channels.slack_webhooks = b.channels.slack_webhooks.clone();
        assert_eq!(again, b);
    }

    #[test]
    fn bad_fields_are_named_by_their_proto_path() {
        let field = |f: &dyn Fn(&mut proto::Budget)| {
            let mut p = proto_budget();
            f(&mut p);
            let s = budget_from_request(Some(&p)).unwrap_err();
            assert_eq!(s.code(), tonic::Code::InvalidArgument);
            s.message().split(':').next().unwrap().to_string()
        };
        assert_eq!(
            field(&|p| p.thresholds[1].amount = "0".into()),
            "budget.thresholds[1].amount"
        );
        assert_eq!(
            field(&|p| p.thresholds[0].percent = "-5".into()),
            "budget.thresholds[0].percent"
        );
        assert_eq!(
            field(&|p| p.thresholds[0].amount = "5".into()),
            "budget.thresholds[0]"
        );
        assert_eq!(
            field(&|p| p.thresholds[0].on = 9),
            "budget.thresholds[0].on"
        );
        assert_eq!(
            field(&|p| p.amount.as_mut().unwrap().currency = "USX".into()),
            "budget.amount.currency"
        );
        assert_eq!(
            field(&|p| p.amount.as_mut().unwrap().amount = "lots".into()),
            "budget.amount.amount"
        );
        assert_eq!(field(&|p| p.amount = None), "budget.amount");
        assert_eq!(
            field(&|p| p.emails[0] = "nobody".into()),
            "budget.emails[0]"
        );
        assert_eq!(
            field(&|p| p.slack_webhooks[0] = "hooks/x".into()),
            "budget.slack_webhooks[0]"
        );
        assert_eq!(
            field(&|p| p.timezone = "Mars/Base".into()),
            "budget.timezone"
        );
        assert_eq!(field(&|p| p.name = String::new()), "budget.name");
        assert_eq!(
            field(&|p| p.scope.as_mut().unwrap().tag = "team".into()),
            "budget.scope.tag"
        );
        assert_eq!(field(&|p| p.period = 42), "budget.period");
        // A key with a quote is well formed key=value: the message says what is wrong.
        let mut p = proto_budget();
        p.scope.as_mut().unwrap().tag = "te\"am=ml".into();
        let s = budget_from_request(Some(&p)).unwrap_err();
        assert_eq!(s.code(), tonic::Code::InvalidArgument);
        assert!(
            s.message().starts_with("budget.scope.tag:"),
            "{}",
            s.message()
        );
        assert!(s.message().contains("contains '\"'"), "{}", s.message());
        assert!(
            !s.message().contains("expected key=value"),
            "{}",
            s.message()
        );
        // A 10 KB key is named by its length, not echoed whole.
        p.scope.as_mut().unwrap().tag = format!("{}=ml", "k".repeat(10_000));
        let s = budget_from_request(Some(&p)).unwrap_err();
        assert!(s.message().len() < 300, "{}", s.message());
        assert!(
            s.message().contains("(10003 bytes)") && s.message().contains("more than 256"),
            "{}",
            s.message()
        );
        let s = budget_from_request(None).unwrap_err();
        assert_eq!(s.message(), "budget: required");
        // An invalid URL is refused without echoing the URL's secret path.
        let mut p = proto_budget();
        p.slack_webhooks[0] = "ftp://hooks.example.com/SECRETPATH".into();
        let s = budget_from_request(Some(&p)).unwrap_err();
        assert!(!s.message().contains("SECRETPATH"), "{}", s.message());
    }

    #[test]
    fn egress_budgets_ignore_the_currency() {
        let mut p = proto_budget();
        p.metric = proto::BudgetMetric::EgressGb as i32;
        p.gate = proto::GatePolicy::GateNone as i32;
        let b = budget_from_request(Some(&p)).unwrap();
        assert_eq!((b.metric, b.unit()), (BudgetMetric::EgressGb, "GB"));
        assert_eq!(
            budget_to_proto(&b, BudgetOrigin::Api)
                .amount
                .unwrap()
                .currency,
            "GB"
        );
    }

    #[test]
    fn stored_specs_round_trip_and_bad_ones_do_not_leak() {
        let b = budget_from_request(Some(&proto_budget())).unwrap();
        let spec = serde_json::to_string(&b).unwrap();
        assert_eq!(read_spec(&b.name, &spec).unwrap(), b);
        let bad = r#"{"name":"ml","amount":"1","channels":{"slack_webhooks":"https://h/SECRET"}}"#;
        let s = store_status(read_spec(&b.name, bad).unwrap_err());
        assert_eq!(s.code(), tonic::Code::Internal);
        assert!(!s.message().contains("SECRET"), "{}", s.message());
    }
}
