//! `bursar budgets list|status|create|update|delete`: a client of BudgetService. Tables by
//! default, JSON with `--json`; INVALID_ARGUMENT from the server exits 2 like bad flags.
use clap::{Args, Subcommand, ValueEnum};
use serde_json::{Value, json};

use super::CliError;
use super::client::{ClientArgs, channel, print_json, status_error};
use super::display;
use crate::domain::money::parse_amount;
use crate::domain::quote::quote;
use crate::proto;
use crate::proto::budget_service_client::BudgetServiceClient;

#[derive(Subcommand, Debug)]
pub enum BudgetsCommand {
    /// List budgets (webhook URLs are shown redacted).
    List {
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Period-to-date actual, forecast, remaining and threshold states of one budget, or of
    /// every budget.
    Status {
        name: Option<String>,
        /// Evaluate as of this instant (RFC 3339, or YYYY-MM-DD for 00:00 UTC that day)
        /// instead of now.
        #[arg(long)]
        at: Option<String>,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Create a budget.
    Create(BudgetArgs),
    /// Replace the whole definition of a budget created through the API (flags left out
    /// take their defaults, as on create).
    Update(BudgetArgs),
    /// Delete a budget created through the API (config-file budgets: edit the file).
    Delete {
        name: String,
        #[command(flatten)]
        client: ClientArgs,
    },
}

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum PeriodArg {
    Monthly,
    Quarterly,
    Annual,
    Daily,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum MetricArg {
    Cost,
    #[value(name = "egress_gb")]
    EgressGb,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum BasisArg {
    Billed,
    Effective,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum GateArg {
    None,
    Warn,
    Deny,
    Downgrade,
}

#[derive(Args, Debug)]
pub struct BudgetArgs {
    #[arg(long)]
    pub name: String,
    /// Exact decimal amount per period (gigabytes for --metric egress_gb).
    #[arg(long)]
    pub amount: String,
    /// ISO 4217 code (ignored for --metric egress_gb).
    #[arg(long, default_value = "USD")]
    pub currency: String,
    #[arg(long, value_enum, default_value_t = PeriodArg::Monthly)]
    pub period: PeriodArg,
    #[arg(long, value_enum, default_value_t = MetricArg::Cost)]
    pub metric: MetricArg,
    #[arg(long, value_enum, default_value_t = BasisArg::Billed)]
    pub basis: BasisArg,
    /// Alert threshold, repeatable: 80% (of the amount), 4500 (absolute), on actual spend;
    /// prefix forecast: (forecast:100%) to compare with the forecast instead.
    #[arg(long = "threshold")]
    pub thresholds: Vec<String>,
    /// Email address to alert (repeatable).
    #[arg(long = "email")]
    pub emails: Vec<String>,
    /// Slack incoming-webhook URL to alert (repeatable; a secret, never shown back).
    #[arg(long = "slack")]
    pub slack_webhooks: Vec<String>,
    /// Only spend of this provider (as in the billing export, e.g. aws or AWS).
    #[arg(long)]
    pub provider: Option<String>,
    #[arg(long)]
    pub service: Option<String>,
    #[arg(long)]
    pub account: Option<String>,
    #[arg(long)]
    pub region: Option<String>,
    /// Only spend tagged KEY=VALUE, e.g. team=ml (also: SelectProvider requests labelled so).
    #[arg(long)]
    pub tag: Option<String>,
    /// IANA timezone of period boundaries, e.g. Europe/Berlin.
    #[arg(long, default_value = "UTC")]
    pub timezone: String,
    /// What SelectProvider does with placements this budget cannot afford.
    #[arg(long, value_enum, default_value_t = GateArg::None)]
    pub gate: GateArg,
    #[arg(long)]
    pub exclude_credits: bool,
    #[arg(long)]
    pub exclude_tax: bool,
    #[arg(long)]
    pub exclude_refunds: bool,
    #[command(flatten)]
    pub client: ClientArgs,
}

/// `80%`, `4500`, `forecast:100%`, `actual:4500` → a proto threshold.
pub fn parse_threshold(s: &str) -> Result<proto::Threshold, CliError> {
    let bad = |why: &str| {
        CliError::Usage(format!(
            "--threshold {}: {why} (expected 80%, 4500, forecast:100% or actual:4500)",
            quote(s)
        ))
    };
    let (on, value) = match s.split_once(':') {
        None => (proto::ThresholdOn::Actual, s),
        Some((side, v)) => match side.trim().to_ascii_lowercase().as_str() {
            "actual" => (proto::ThresholdOn::Actual, v),
            "forecast" => (proto::ThresholdOn::Forecast, v),
            _ => return Err(bad("the prefix must be actual: or forecast:")),
        },
    };
    let value = value.trim();
    let (percent, amount) = match value.strip_suffix('%') {
        Some(p) => (p.trim().to_string(), String::new()),
        None => (String::new(), value.to_string()),
    };
    let number = if percent.is_empty() {
        &amount
    } else {
        &percent
    };
    parse_amount(number).map_err(|_| bad("not a decimal number"))?;
    Ok(proto::Threshold {
        percent,
        amount,
        on: on as i32,
    })
}

/// `--at`: RFC 3339, or a date for 00:00 UTC that day.
pub fn parse_at(s: &str) -> Result<chrono::DateTime<chrono::Utc>, CliError> {
    let t = s.trim();
    if let Ok(d) = chrono::DateTime::parse_from_rfc3339(t) {
        return Ok(d.with_timezone(&chrono::Utc));
    }
    chrono::NaiveDate::parse_from_str(t, "%Y-%m-%d")
        .ok()
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .map(|d| d.and_utc())
        .ok_or_else(|| {
            CliError::Usage(format!(
                "--at {}: expected RFC 3339 (2026-11-27T10:00:00Z) or YYYY-MM-DD",
                quote(s)
            ))
        })
}

/// The flags as a proto budget (the server validates the rest).
pub fn budget_from_args(a: &BudgetArgs) -> Result<proto::Budget, CliError> {
    let thresholds = a
        .thresholds
        .iter()
        .map(|t| parse_threshold(t))
        .collect::<Result<Vec<_>, _>>()?;
    parse_amount(&a.amount).map_err(|_| {
        CliError::Usage(format!(
            "--amount {}: not a decimal number",
            quote(&a.amount)
        ))
    })?;
    let metric = match a.metric {
        MetricArg::Cost => proto::BudgetMetric::Cost,
        MetricArg::EgressGb => proto::BudgetMetric::EgressGb,
    };
    Ok(proto::Budget {
        name: a.name.clone(),
        scope: Some(proto::BudgetScope {
            provider: a.provider.clone().unwrap_or_default(),
            service: a.service.clone().unwrap_or_default(),
            account: a.account.clone().unwrap_or_default(),
            region: a.region.clone().unwrap_or_default(),
            tag: a.tag.clone().unwrap_or_default(),
        }),
        period: match a.period {
            PeriodArg::Monthly => proto::BudgetPeriod::Monthly,
            PeriodArg::Quarterly => proto::BudgetPeriod::Quarterly,
            PeriodArg::Annual => proto::BudgetPeriod::Annual,
            PeriodArg::Daily => proto::BudgetPeriod::Daily,
        } as i32,
        amount: Some(proto::Money {
            amount: a.amount.trim().to_string(),
            currency: match a.metric {
                MetricArg::Cost => a.currency.trim().to_string(),
                MetricArg::EgressGb => "GB".into(),
            },
        }),
        metric: metric as i32,
        basis: match a.basis {
            BasisArg::Billed => proto::CostBasis::Billed,
            BasisArg::Effective => proto::CostBasis::Effective,
        } as i32,
        include_credits: Some(!a.exclude_credits),
        include_tax: Some(!a.exclude_tax),
        include_refunds: Some(!a.exclude_refunds),
        thresholds,
        emails: a.emails.clone(),
        slack_webhooks: a.slack_webhooks.clone(),
        timezone: a.timezone.clone(),
        gate: match a.gate {
            GateArg::None => proto::GatePolicy::GateNone,
            GateArg::Warn => proto::GatePolicy::GateWarn,
            GateArg::Deny => proto::GatePolicy::GateDeny,
            GateArg::Downgrade => proto::GatePolicy::GateDowngrade,
        } as i32,
        origin: String::new(),
    })
}

async fn client(
    c: &ClientArgs,
) -> Result<BudgetServiceClient<super::transport::ClientChannel>, CliError> {
    Ok(BudgetServiceClient::new(channel(c).await?))
}

pub async fn run(cmd: BudgetsCommand) -> Result<(), CliError> {
    match cmd {
        BudgetsCommand::List { client: c } => {
            let r = client(&c)
                .await?
                .list_budgets(proto::ListBudgetsRequest {})
                .await
                .map_err(status_error)?
                .into_inner();
            if c.json {
                let rows: Vec<Value> = r.budgets.iter().map(budget_json).collect();
                print_json(&json!({ "budgets": rows }));
            } else {
                print_budgets(&r.budgets);
            }
            Ok(())
        }
        BudgetsCommand::Status {
            name,
            at,
            client: c,
        } => {
            let at = at.as_deref().map(parse_at).transpose()?;
            let r = client(&c)
                .await?
                .get_budget_status(proto::GetBudgetStatusRequest {
                    name: name.unwrap_or_default(),
                    at: at.map(|t| prost_types::Timestamp {
                        seconds: t.timestamp(),
                        nanos: t.timestamp_subsec_nanos() as i32,
                    }),
                })
                .await
                .map_err(status_error)?
                .into_inner();
            if c.json {
                let rows: Vec<Value> = r.statuses.iter().map(status_json).collect();
                print_json(&json!({ "statuses": rows }));
            } else {
                print_statuses(&r.statuses);
            }
            Ok(())
        }
        BudgetsCommand::Create(a) => {
            let budget = budget_from_args(&a)?;
            let b = client(&a.client)
                .await?
                .create_budget(proto::CreateBudgetRequest {
                    budget: Some(budget),
                })
                .await
                .map_err(status_error)?
                .into_inner();
            print_one(&b, "created", a.client.json);
            Ok(())
        }
        BudgetsCommand::Update(a) => {
            let budget = budget_from_args(&a)?;
            let b = client(&a.client)
                .await?
                .update_budget(proto::UpdateBudgetRequest {
                    budget: Some(budget),
                })
                .await
                .map_err(status_error)?
                .into_inner();
            print_one(&b, "updated", a.client.json);
            Ok(())
        }
        BudgetsCommand::Delete { name, client: c } => {
            client(&c)
                .await?
                .delete_budget(proto::DeleteBudgetRequest { name: name.clone() })
                .await
                .map_err(status_error)?;
            if c.json {
                print_json(&json!({ "deleted": name }));
            } else {
                crate::outln!("deleted budget {name:?}");
            }
            Ok(())
        }
    }
}

fn print_one(b: &proto::Budget, verb: &str, json: bool) {
    if json {
        print_json(&budget_json(b));
    } else {
        crate::outln!("{verb} budget {:?}", b.name);
        print_budgets(std::slice::from_ref(b));
    }
}

fn period_name(v: i32) -> &'static str {
    match proto::BudgetPeriod::try_from(v) {
        Ok(proto::BudgetPeriod::Quarterly) => "quarterly",
        Ok(proto::BudgetPeriod::Annual) => "annual",
        Ok(proto::BudgetPeriod::Daily) => "daily",
        _ => "monthly",
    }
}

fn metric_name(v: i32) -> &'static str {
    match proto::BudgetMetric::try_from(v) {
        Ok(proto::BudgetMetric::EgressGb) => "egress_gb",
        _ => "cost",
    }
}

fn basis_name(v: i32) -> &'static str {
    match proto::CostBasis::try_from(v) {
        Ok(proto::CostBasis::Effective) => "effective",
        _ => "billed",
    }
}

fn gate_name(v: i32) -> &'static str {
    match proto::GatePolicy::try_from(v) {
        Ok(proto::GatePolicy::GateWarn) => "warn",
        Ok(proto::GatePolicy::GateDeny) => "deny",
        Ok(proto::GatePolicy::GateDowngrade) => "downgrade",
        _ => "none",
    }
}

fn on_name(v: i32) -> &'static str {
    match proto::ThresholdOn::try_from(v) {
        Ok(proto::ThresholdOn::Forecast) => "forecast",
        _ => "actual",
    }
}

/// A threshold as the `--threshold` flag writes it.
fn threshold_text(t: &proto::Threshold) -> String {
    let v = if t.percent.is_empty() {
        t.amount.clone()
    } else {
        format!("{}%", t.percent)
    };
    match proto::ThresholdOn::try_from(t.on) {
        Ok(proto::ThresholdOn::Forecast) => format!("forecast:{v}"),
        _ => v,
    }
}

fn money_json(m: &Option<proto::Money>) -> Value {
    match m {
        Some(m) => json!({ "amount": m.amount, "currency": m.currency }),
        None => Value::Null,
    }
}

fn money_text(m: &Option<proto::Money>) -> String {
    m.as_ref()
        .map(|m| format!("{} {}", m.amount, m.currency))
        .unwrap_or_default()
}

fn ts(t: &Option<prost_types::Timestamp>) -> Option<chrono::DateTime<chrono::Utc>> {
    t.as_ref()
        .and_then(|t| chrono::DateTime::from_timestamp(t.seconds, t.nanos.max(0) as u32))
}

fn scope_text(s: &Option<proto::BudgetScope>) -> String {
    let Some(s) = s else {
        return "all".into();
    };
    let parts: Vec<String> = [
        ("provider", &s.provider),
        ("service", &s.service),
        ("account", &s.account),
        ("region", &s.region),
        ("tag", &s.tag),
    ]
    .iter()
    .filter(|(_, v)| !v.is_empty())
    .map(|(k, v)| format!("{k}:{v}"))
    .collect();
    if parts.is_empty() {
        "all".into()
    } else {
        parts.join(" ")
    }
}

pub fn budget_json(b: &proto::Budget) -> Value {
    let s = b.scope.clone().unwrap_or_default();
    json!({
        "name": b.name,
        "origin": b.origin,
        "amount": money_json(&b.amount),
        "period": period_name(b.period),
        "metric": metric_name(b.metric),
        "basis": basis_name(b.basis),
        "include_credits": b.include_credits.unwrap_or(true),
        "include_tax": b.include_tax.unwrap_or(true),
        "include_refunds": b.include_refunds.unwrap_or(true),
        "thresholds": b.thresholds.iter().map(|t| json!({
            "percent": (!t.percent.is_empty()).then_some(&t.percent),
            "amount": (!t.amount.is_empty()).then_some(&t.amount),
            "on": on_name(t.on),
        })).collect::<Vec<_>>(),
        "scope": {
            "provider": s.provider, "service": s.service, "account": s.account,
            "region": s.region, "tag": s.tag,
        },
        "emails": b.emails,
        "slack_webhooks": b.slack_webhooks,
        "timezone": b.timezone,
        "gate": gate_name(b.gate),
    })
}

fn print_budgets(budgets: &[proto::Budget]) {
    let rows: Vec<Vec<String>> = budgets
        .iter()
        .map(|b| {
            vec![
                b.name.clone(),
                b.origin.clone(),
                period_name(b.period).to_string(),
                money_text(&b.amount),
                format!("{}/{}", metric_name(b.metric), basis_name(b.basis)),
                scope_text(&b.scope),
                b.thresholds
                    .iter()
                    .map(threshold_text)
                    .collect::<Vec<_>>()
                    .join(", "),
                gate_name(b.gate).to_string(),
                format!("{} email, {} slack", b.emails.len(), b.slack_webhooks.len()),
                b.timezone.clone(),
            ]
        })
        .collect();
    crate::out!(
        "{}",
        display::list(
            &[
                "NAME",
                "ORIGIN",
                "PERIOD",
                "AMOUNT",
                "METRIC",
                "SCOPE",
                "THRESHOLDS",
                "GATE",
                "CHANNELS",
                "TIMEZONE",
            ],
            &rows,
            "budgets"
        )
    );
}

pub fn status_json(s: &proto::BudgetStatus) -> Value {
    let rfc = |t: &Option<prost_types::Timestamp>| ts(t).map(|t| t.to_rfc3339());
    json!({
        "name": s.name,
        "period": s.period,
        "period_start": rfc(&s.period_start),
        "period_end": rfc(&s.period_end),
        "amount": money_json(&s.amount),
        "actual": money_json(&s.actual),
        "forecast": money_json(&s.forecast),
        "remaining": money_json(&s.remaining),
        "run_rate": money_json(&s.run_rate),
        "evaluated_at": rfc(&s.evaluated_at),
        "thresholds": s.thresholds.iter().map(|t| json!({
            "key": t.key,
            "on": on_name(t.on),
            "limit": t.limit,
            "crossed": t.crossed,
            "fired_at": rfc(&t.fired_at),
        })).collect::<Vec<_>>(),
    })
}

fn print_statuses(statuses: &[proto::BudgetStatus]) {
    let amount = |m: &Option<proto::Money>| {
        m.as_ref()
            .map(|m| display::cents(&m.amount))
            .unwrap_or_default()
    };
    let rows: Vec<Vec<String>> = statuses
        .iter()
        .map(|s| {
            vec![
                s.name.clone(),
                s.period.clone(),
                amount(&s.actual),
                amount(&s.forecast),
                money_text(&s.amount),
                amount(&s.remaining),
                amount(&s.run_rate),
                s.thresholds
                    .iter()
                    .map(|t| {
                        let mark = match (t.crossed, ts(&t.fired_at)) {
                            (_, Some(at)) => {
                                format!(" (alerted {})", at.format("%Y-%m-%d %H:%M"))
                            }
                            (true, None) => " (crossed)".to_string(),
                            (false, None) => String::new(),
                        };
                        format!("{}={}{mark}", t.key, display::cents(&t.limit))
                    })
                    .collect::<Vec<_>>()
                    .join(", "),
            ]
        })
        .collect();
    crate::out!(
        "{}",
        display::list(
            &[
                "NAME",
                "PERIOD",
                "ACTUAL",
                "FORECAST",
                "BUDGET",
                "REMAINING",
                "RUN-RATE/DAY",
                "THRESHOLDS",
            ],
            &rows,
            "budgets"
        )
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thresholds_parse_like_the_flag_documents() {
        let t = parse_threshold("80%").unwrap();
        assert_eq!((t.percent.as_str(), t.amount.as_str()), ("80", ""));
        assert_eq!(t.on, proto::ThresholdOn::Actual as i32);
        let t = parse_threshold("forecast:100%").unwrap();
        assert_eq!(
            (t.percent.as_str(), t.on),
            ("100", proto::ThresholdOn::Forecast as i32)
        );
        let t = parse_threshold("4500").unwrap();
        assert_eq!((t.percent.as_str(), t.amount.as_str()), ("", "4500"));
        assert_eq!(
            threshold_text(&parse_threshold("actual:4500.50").unwrap()),
            "4500.50"
        );
        assert_eq!(
            threshold_text(&parse_threshold("forecast:90%").unwrap()),
            "forecast:90%"
        );
        for bad in ["lots", "soon:80%", "%", "forecast:"] {
            let e = parse_threshold(bad).unwrap_err();
            assert_eq!(e.exit_code(), 2, "{bad}");
        }
        // Zero and negative numbers parse here; the server refuses them, naming the field.
        assert_eq!(parse_threshold("0%").unwrap().percent, "0");
    }
}
