//! `bursar.v1.FleetService`: validates and converts. ListInstances reads the fleet engine's
//! last inventory and verdicts (or, when `[idle_gpu]` is off, the stored inventory);
//! ListActions the audit log; Keep writes a snooze and its audit row; GetSavings the
//! ledger; ReportGpuUtilization is `utilization::report`, whose stored samples also feed
//! the engine's windows.
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use tonic::{Request, Response, Status};

use super::convert::{limited, provider_from_proto, provider_to_proto, timestamp};
use super::errors::{FieldError, store_status};
use super::utilization;
use crate::domain::idle::Decision;
use crate::domain::limits;
use crate::domain::quote::quote;
use crate::proto;
use crate::store::Store;
use crate::store::fleet::{ActionRow, KeepRow, StoredInstance};
use crate::tasks::fleet::{FleetEngine, InstanceStatus};

/// The longest snooze.
pub const MAX_KEEP: Duration = Duration::from_secs(90 * 24 * 3600);

pub struct FleetApi {
    pub store: Store,
    /// `None` when `[idle_gpu]` is off: the inventory is read from the store, with no verdicts.
    pub engine: Option<Arc<FleetEngine>>,
    /// Where pushed samples are stored (group commit).
    pub samples: utilization::SampleWriter,
}

fn money(amount: Option<rust_decimal::Decimal>, currency: &str) -> Option<proto::Money> {
    let amount = amount?;
    Some(proto::Money {
        amount: amount.normalize().to_string(),
        currency: currency.to_string(),
    })
}

fn opt_ts(t: Option<DateTime<Utc>>) -> Option<prost_types::Timestamp> {
    t.map(timestamp)
}

fn from_ts(t: &prost_types::Timestamp, field: &'static str) -> Result<DateTime<Utc>, FieldError> {
    DateTime::from_timestamp(t.seconds, t.nanos.max(0) as u32)
        .ok_or_else(|| FieldError::new(field, "timestamp out of range"))
}

/// The machine whose id or name is `key`; a name several machines hold is
/// INVALID_ARGUMENT listing them.
async fn find_instance(store: &Store, key: &str) -> Result<Option<StoredInstance>, Status> {
    match store.find_fleet_instance(key).await.map_err(store_status)? {
        Ok(found) => Ok(found),
        Err(many) => Err(Status::invalid_argument(format!(
            "instance: the name {} is held by several machines ({}); give the id",
            quote(key),
            many.join(", ")
        ))),
    }
}

fn instance_message(s: &StoredInstance, status: Option<&InstanceStatus>) -> proto::GpuInstance {
    let i = &s.instance;
    let mut m = proto::GpuInstance {
        provider: provider_to_proto(i.provider) as i32,
        id: i.id.clone(),
        name: i.name.clone(),
        scope: i.scope.clone(),
        region: i.region.clone(),
        zone: i.zone.clone(),
        instance_type: i.instance_type.clone(),
        gpu_model: i.gpu_model.clone().unwrap_or_default(),
        gpu_count: i.gpu_count,
        state: i.state.as_str().to_string(),
        launched_at: opt_ts(i.launched_at),
        private_hostname: i.private_hostname.clone(),
        labels: i.labels.clone().into_iter().collect(),
        managed_by: i.managed_by.clone().unwrap_or_default(),
        cloud_protection: i.cloud_protection.clone().unwrap_or_default(),
        price_per_hour: money(s.price_per_hour, &s.currency),
        last_seen: Some(timestamp(s.last_seen)),
        ..Default::default()
    };
    if let Some(st) = status {
        m.idle_state = st.state.clone();
        m.reason = st.reason.clone();
        m.samples = st.summary.samples;
        m.max_utilization_percent = st.summary.max_util_percent;
        m.max_power_watts = st.summary.max_power_watts;
        m.action_due_at = opt_ts(st.due_at);
        m.kept_until = opt_ts(st.kept_until);
    }
    m
}

fn action_message(a: &ActionRow) -> proto::FleetAction {
    proto::FleetAction {
        id: a.id,
        at: Some(timestamp(a.at)),
        provider: provider_to_proto(a.provider) as i32,
        instance_id: a.instance_id.clone(),
        instance_name: a.instance_name.clone(),
        decision: a.decision.clone(),
        mode: a.mode.clone(),
        reason: a.reason.clone(),
        evidence_json: a.evidence.clone(),
        price_per_hour: money(a.price_per_hour, &a.currency),
        error: a.error.clone(),
    }
}

/// A Keep duration: "4h", "30m", "2d"; more than 0 and at most `MAX_KEEP`.
pub fn keep_duration(s: &str) -> Result<Duration, FieldError> {
    let d = humantime::parse_duration(s.trim()).map_err(|_| {
        FieldError::new(
            "for",
            format!("{} is not a duration like \"4h\" or \"30m\"", quote(s)),
        )
    })?;
    if d.is_zero() || d > MAX_KEEP {
        return Err(FieldError::new(
            "for",
            format!("{} must be more than 0s and at most 90 days", quote(s)),
        ));
    }
    Ok(d)
}

#[tonic::async_trait]
impl proto::fleet_service_server::FleetService for FleetApi {
    async fn list_instances(
        &self,
        request: Request<proto::ListInstancesRequest>,
    ) -> Result<Response<proto::ListInstancesResponse>, Status> {
        let r = request.into_inner();
        let provider = provider_from_proto(r.provider, "provider")?;
        let stored = self
            .store
            .list_fleet_instances()
            .await
            .map_err(store_status)?;
        let (statuses, inventory_at) = match &self.engine {
            Some(e) => {
                let (machines, at) = e.machines();
                let map: std::collections::HashMap<String, InstanceStatus> = machines
                    .into_iter()
                    .filter_map(|(m, s)| s.map(|s| (m.instance.key(), s)))
                    .collect();
                (map, at)
            }
            None => (Default::default(), None),
        };
        let instances = stored
            .iter()
            .filter(|s| provider.is_none_or(|p| s.instance.provider == p))
            .filter(|s| s.instance.state.as_str() != "terminated")
            .map(|s| instance_message(s, statuses.get(&s.instance.key())))
            .filter(|m| !r.idle_only || m.idle_state == "idle")
            .collect();
        Ok(Response::new(proto::ListInstancesResponse {
            instances,
            inventory_at: opt_ts(inventory_at),
        }))
    }

    async fn list_actions(
        &self,
        request: Request<proto::ListActionsRequest>,
    ) -> Result<Response<proto::ListActionsResponse>, Status> {
        let r = request.into_inner();
        let key = limited(r.instance.trim(), limits::INSTANCE, "instance")?;
        let instance_id = if key.is_empty() {
            None
        } else {
            // A name is resolved to its id; an id the inventory no longer holds still has
            // its history.
            match find_instance(&self.store, key).await? {
                Some(s) => Some(s.instance.id),
                None => Some(key.to_string()),
            }
        };
        let decision = r.decision.trim();
        if !decision.is_empty() && Decision::parse(decision).is_none() {
            let all: Vec<&str> = Decision::ALL.iter().map(|d| d.as_str()).collect();
            return Err(FieldError::new(
                "decision",
                format!("{}: expected one of {}", quote(decision), all.join(", ")),
            )
            .into());
        }
        let limit = match r.limit {
            0 => 100,
            n if n > 1000 => {
                return Err(FieldError::new("limit", format!("{n} is more than 1000")).into());
            }
            n => n,
        };
        let rows = self
            .store
            .list_fleet_actions(
                instance_id.as_deref(),
                (!decision.is_empty()).then_some(decision),
                limit,
            )
            .await
            .map_err(store_status)?;
        Ok(Response::new(proto::ListActionsResponse {
            actions: rows.iter().map(action_message).collect(),
        }))
    }

    async fn keep(
        &self,
        request: Request<proto::KeepRequest>,
    ) -> Result<Response<proto::KeepResponse>, Status> {
        // The token's name, when the call was authenticated: recorded as the requester.
        let caller = request
            .extensions()
            .get::<crate::domain::auth::Caller>()
            .map(|c| c.name.clone());
        let r = request.into_inner();
        let key = limited(r.instance.trim(), limits::INSTANCE, "instance")?;
        if key.is_empty() {
            return Err(FieldError::new("instance", "required").into());
        }
        let d = keep_duration(&r.r#for)?;
        let reason = limited(r.reason.trim(), limits::KEEP_REASON, "reason")?;
        let by = limited(r.requested_by.trim(), limits::KEEP_REASON, "requested_by")?;
        let by_caller;
        let by = match (&caller, by.is_empty()) {
            (Some(name), true) => name.as_ref(),
            (Some(name), false) if by != name.as_ref() => {
                by_caller = format!("{by} (token {name})");
                by_caller.as_str()
            }
            _ => by,
        };
        let Some(found) = find_instance(&self.store, key).await? else {
            return Err(Status::not_found(format!(
                "no machine with id or name {} in the fleet inventory",
                quote(key)
            )));
        };
        let now = Utc::now();
        let until = now + chrono::Duration::from_std(d).unwrap_or(chrono::Duration::MAX);
        let i = &found.instance;
        let mode = self
            .engine
            .as_ref()
            .map_or("off", |e| e.policy().mode.as_str());
        let audit = ActionRow {
            id: 0,
            at: now,
            provider: i.provider,
            instance_id: i.id.clone(),
            instance_name: i.name.clone(),
            decision: Decision::Kept.as_str().into(),
            mode: mode.into(),
            reason: format!(
                "kept until {} by {}{}",
                until.to_rfc3339(),
                if by.is_empty() { "an operator" } else { by },
                if reason.is_empty() {
                    String::new()
                } else {
                    format!(": {reason}")
                }
            ),
            evidence: "{}".into(),
            price_per_hour: found.price_per_hour,
            currency: found.currency.clone(),
            error: String::new(),
            stopped_until: None,
            restarted_at: None,
        };
        let keep = KeepRow {
            provider: i.provider,
            instance_id: i.id.clone(),
            until,
            reason: reason.to_string(),
            requested_by: by.to_string(),
        };
        self.store
            .keep_fleet_instance(&keep, &audit, now)
            .await
            .map_err(store_status)?;
        crate::metrics::global().idle_action(Decision::Kept);
        Ok(Response::new(proto::KeepResponse {
            until: Some(timestamp(until)),
            instance_id: i.id.clone(),
        }))
    }

    async fn get_savings(
        &self,
        request: Request<proto::GetSavingsRequest>,
    ) -> Result<Response<proto::GetSavingsResponse>, Status> {
        let r = request.into_inner();
        let start = r.start.as_ref().map(|t| from_ts(t, "start")).transpose()?;
        let end = r.end.as_ref().map(|t| from_ts(t, "end")).transpose()?;
        if let (Some(s), Some(e)) = (start, end)
            && e <= s
        {
            return Err(FieldError::new("end", "must be after start").into());
        }
        let s = self
            .store
            .fleet_savings(start, end)
            .await
            .map_err(store_status)?;
        Ok(Response::new(proto::GetSavingsResponse {
            days: s
                .days
                .iter()
                .map(|((day, currency), d)| proto::SavingsDay {
                    day: day.to_string(),
                    avoided: money(Some(d.amount), currency),
                    hours: d.hours().normalize().to_string(),
                })
                .collect(),
            total: s
                .totals
                .iter()
                .filter_map(|(c, a)| money(Some(*a), c))
                .collect(),
            actions: s.actions,
        }))
    }

    async fn report_gpu_utilization(
        &self,
        request: Request<proto::ReportGpuUtilizationRequest>,
    ) -> Result<Response<proto::ReportGpuUtilizationResponse>, Status> {
        let (answer, stored) = self
            .samples
            .report(request.into_inner(), Utc::now())
            .await?;
        if let Some(e) = &self.engine {
            e.feed(&stored);
        }
        utilization::rejection_status(answer).map(Response::new)
    }
}
