//! `bursar fleet instances|actions|keep|savings`: the GPU fleet on a running server
//! (FleetService): machines with their idle state and evidence, the audit log, snoozes, and
//! the savings ledger.
use clap::Subcommand;
use serde_json::{Value, json};

use super::CliError;
use super::client::{ClientArgs, channel, print_json, provider_flag, provider_name, status_error};
use super::display;
use crate::proto;
use crate::proto::fleet_service_client::FleetServiceClient;

#[derive(Subcommand, Debug)]
pub enum FleetCommand {
    /// GPU machines from the last inventory, with the idle policy's verdict and evidence.
    Instances {
        /// aws, gcp or azure.
        #[arg(long)]
        provider: Option<String>,
        /// Only the machines the policy finds idle.
        #[arg(long)]
        idle: bool,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// The audit log, newest first: every decision of the idle policy.
    Actions {
        /// An instance id or name.
        #[arg(long)]
        instance: Option<String>,
        /// One decision: would_notify, would_stop, notified, cancelled, kept, stopped,
        /// terminated, failed, ...
        #[arg(long)]
        decision: Option<String>,
        #[arg(long, default_value_t = 100)]
        limit: u32,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Keep a machine: the policy will not notify about or act on it for a while.
    Keep {
        /// Instance id or name.
        instance: String,
        /// How long, e.g. 4h, 30m, 2d (at most 90 days).
        #[arg(long = "for")]
        duration: String,
        #[arg(long, default_value = "")]
        reason: String,
        /// Who asks (recorded in the audit log); defaults to $USER.
        #[arg(long, env = "USER", default_value = "")]
        by: String,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Dollars avoided by the policy's actions, per day and in total.
    Savings {
        #[command(flatten)]
        client: ClientArgs,
    },
}

async fn client(
    c: &ClientArgs,
) -> Result<FleetServiceClient<super::transport::ClientChannel>, CliError> {
    Ok(FleetServiceClient::new(channel(c).await?))
}

fn ts(t: &Option<prost_types::Timestamp>) -> String {
    t.as_ref()
        .and_then(|t| chrono::DateTime::from_timestamp(t.seconds, 0))
        .map(|t| t.format("%Y-%m-%dT%H:%M:%SZ").to_string())
        .unwrap_or_default()
}

fn amount(m: &Option<proto::Money>) -> String {
    m.as_ref().map(|m| m.amount.clone()).unwrap_or_default()
}

fn pct(v: Option<f64>) -> String {
    v.map_or(String::new(), |v| format!("{v:.1}%"))
}

fn instance_json(i: &proto::GpuInstance) -> Value {
    json!({
        "provider": provider_name(i.provider), "id": i.id, "name": i.name, "scope": i.scope,
        "region": i.region, "zone": i.zone, "instance_type": i.instance_type,
        "gpu_model": i.gpu_model, "gpu_count": i.gpu_count, "state": i.state,
        "launched_at": ts(&i.launched_at), "private_hostname": i.private_hostname,
        "labels": i.labels, "managed_by": i.managed_by, "cloud_protection": i.cloud_protection,
        "idle_state": i.idle_state, "reason": i.reason, "samples": i.samples,
        "max_utilization_percent": i.max_utilization_percent,
        "max_power_watts": i.max_power_watts, "action_due_at": ts(&i.action_due_at),
        "kept_until": ts(&i.kept_until),
        "price_per_hour": amount(&i.price_per_hour),
        "currency": i.price_per_hour.as_ref().map(|m| m.currency.clone()).unwrap_or_default(),
        "last_seen": ts(&i.last_seen),
    })
}

pub async fn run(cmd: FleetCommand) -> Result<(), CliError> {
    match cmd {
        FleetCommand::Instances {
            provider,
            idle,
            client: c,
        } => {
            let provider = provider
                .as_deref()
                .map(|p| provider_flag(p, "--provider"))
                .transpose()?;
            let r = client(&c)
                .await?
                .list_instances(proto::ListInstancesRequest {
                    provider: provider.unwrap_or(0),
                    idle_only: idle,
                })
                .await
                .map_err(status_error)?
                .into_inner();
            if c.json {
                let rows: Vec<Value> = r.instances.iter().map(instance_json).collect();
                print_json(&json!({"instances": rows, "inventory_at": ts(&r.inventory_at)}));
                return Ok(());
            }
            let rows: Vec<Vec<String>> = r
                .instances
                .iter()
                .map(|i| {
                    vec![
                        provider_name(i.provider).to_string(),
                        i.id.clone(),
                        i.name.clone(),
                        i.instance_type.clone(),
                        if i.gpu_model.is_empty() {
                            String::new()
                        } else {
                            format!("{}×{}", i.gpu_count, i.gpu_model)
                        },
                        i.state.clone(),
                        i.idle_state.clone(),
                        pct(i.max_utilization_percent),
                        i.samples.to_string(),
                        display::price(&amount(&i.price_per_hour)),
                        ts(&i.action_due_at),
                    ]
                })
                .collect();
            crate::out!(
                "{}",
                display::list(
                    &[
                        "PROVIDER",
                        "ID",
                        "NAME",
                        "TYPE",
                        "GPUS",
                        "STATE",
                        "IDLE",
                        "MAX UTIL",
                        "SAMPLES",
                        "$/HOUR",
                        "ACTION DUE"
                    ],
                    &rows,
                    "GPU machines"
                )
            );
            for i in r.instances.iter().filter(|i| !i.reason.is_empty()) {
                crate::outln!("{} {}: {}", provider_name(i.provider), i.name, i.reason);
            }
            Ok(())
        }
        FleetCommand::Actions {
            instance,
            decision,
            limit,
            client: c,
        } => {
            let r = client(&c)
                .await?
                .list_actions(proto::ListActionsRequest {
                    instance: instance.unwrap_or_default(),
                    decision: decision.unwrap_or_default(),
                    limit,
                })
                .await
                .map_err(status_error)?
                .into_inner();
            if c.json {
                let rows: Vec<Value> = r
                    .actions
                    .iter()
                    .map(|a| {
                        json!({"id": a.id, "at": ts(&a.at), "provider": provider_name(a.provider),
                            "instance_id": a.instance_id, "instance_name": a.instance_name,
                            "decision": a.decision, "mode": a.mode, "reason": a.reason,
                            "evidence": serde_json::from_str::<Value>(&a.evidence_json).unwrap_or(Value::Null),
                            "price_per_hour": amount(&a.price_per_hour), "error": a.error})
                    })
                    .collect();
                print_json(&json!({ "actions": rows }));
                return Ok(());
            }
            let rows: Vec<Vec<String>> = r
                .actions
                .iter()
                .map(|a| {
                    vec![
                        ts(&a.at),
                        provider_name(a.provider).to_string(),
                        a.instance_id.clone(),
                        a.instance_name.clone(),
                        a.decision.clone(),
                        a.mode.clone(),
                        if a.error.is_empty() {
                            a.reason.clone()
                        } else {
                            format!("{}: {}", a.reason, a.error)
                        },
                    ]
                })
                .collect();
            crate::out!(
                "{}",
                display::list(
                    &["AT", "PROVIDER", "ID", "NAME", "DECISION", "MODE", "REASON"],
                    &rows,
                    "decisions"
                )
            );
            Ok(())
        }
        FleetCommand::Keep {
            instance,
            duration,
            reason,
            by,
            client: c,
        } => {
            let r = client(&c)
                .await?
                .keep(proto::KeepRequest {
                    instance: instance.clone(),
                    r#for: duration,
                    reason,
                    requested_by: by,
                })
                .await
                .map_err(status_error)?
                .into_inner();
            if c.json {
                print_json(&json!({"instance_id": r.instance_id, "until": ts(&r.until)}));
            } else {
                crate::outln!("kept {} until {}", r.instance_id, ts(&r.until));
            }
            Ok(())
        }
        FleetCommand::Savings { client: c } => {
            let r = client(&c)
                .await?
                .get_savings(proto::GetSavingsRequest::default())
                .await
                .map_err(status_error)?
                .into_inner();
            if c.json {
                let days: Vec<Value> = r
                    .days
                    .iter()
                    .map(|d| {
                        json!({"day": d.day, "avoided": amount(&d.avoided), "hours": d.hours,
                            "currency": d.avoided.as_ref().map(|m| m.currency.clone()).unwrap_or_default()})
                    })
                    .collect();
                let total: Vec<Value> = r
                    .total
                    .iter()
                    .map(|m| json!({"amount": m.amount, "currency": m.currency}))
                    .collect();
                print_json(&json!({"days": days, "total": total, "actions": r.actions}));
                return Ok(());
            }
            let rows: Vec<Vec<String>> = r
                .days
                .iter()
                .map(|d| {
                    vec![
                        d.day.clone(),
                        display::cents(&amount(&d.avoided)),
                        d.avoided
                            .as_ref()
                            .map(|m| m.currency.clone())
                            .unwrap_or_default(),
                        d.hours.clone(),
                    ]
                })
                .collect();
            crate::out!(
                "{}",
                display::list(&["DAY", "AVOIDED", "CURRENCY", "HOURS"], &rows, "days")
            );
            for m in &r.total {
                crate::outln!(
                    "total {}: {} avoided by {} action(s)",
                    m.currency,
                    display::cents(&m.amount),
                    r.actions
                );
            }
            Ok(())
        }
    }
}
