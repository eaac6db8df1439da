//! Idle-GPU enforcement, the loop around the pure policy (`domain::idle`): list each cloud's
//! machines (`fleet::Fleet`) and keep those the catalog says carry GPUs, with their hourly
//! price; read utilisation (dcgm-exporter scrapes and Prometheus queries, `utilization`;
//! agents' pushes arrive through `FleetEngine::feed`) into per-instance in-memory windows and
//! the store; run the policy every `idle_gpu.every`; carry out its commands (queue a notice
//! in the alert outbox; stop or terminate through the cloud) and write its audit rows and
//! case changes. `run_fleet` drives it until shutdown; tests call the steps with their own
//! `now`.
//!
//! Invariant: an action is audited `stopped`/`terminated` only after the cloud said it was
//! done; a failure is audited `failed` with the cloud's answer and the case is retried
//! after the grace period again.
//! Invariant: with replicas only the leader runs `run_fleet`, writing through the fenced
//! store; the act's intent (the case at stage `acted`) is stored before the cloud call, and
//! the call is made only while `Leadership::may_act`. An intent a former leader left without
//! an outcome is resolved from the cloud's listing (`resolve_intents`), never by calling
//! again: a machine the listing shows stopped gets its outcome row; one still running is
//! left to the ladder (started over after the grace period).
//! Invariant: in `dry_run` no cloud call other than listing is ever made and no notice is
//! queued (the policy issues no commands; `execute` refuses any in dry-run all the same).
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;

use super::leader::Leadership;
use crate::config::IdleGpuConfig;
use crate::domain::Market;
use crate::domain::Provider;
use crate::domain::catalog::CatalogHandle;
use crate::domain::fleet::{FleetInstance, GpuSample, InstanceState, SampleSource};
use crate::domain::idle::{
    Action, Audit, Case, CaseChange, Command, Decision, FleetView, IdleMode, IdlePolicy,
    InstanceView, Outcome, SampleWindow, Stage, Verdict, WindowSummary, evaluate, managed_by,
    minus, plus,
};
use crate::fleet::{Done, Fleet, FleetError};
use crate::metrics;
use crate::notify::idle_notice::IdleNotice;
use crate::store::fleet::ActionRow;
use crate::store::{Store, StoreError};
use crate::utilization::{self, ReadReport};

/// What the policy last said about one machine (for `ListInstances`).
#[derive(Clone, Debug, PartialEq)]
pub struct InstanceStatus {
    /// "idle", "busy", "unknown", or the skip reason ("young", "protected", ...).
    pub state: String,
    pub reason: String,
    pub summary: WindowSummary,
    pub due_at: Option<DateTime<Utc>>,
    pub kept_until: Option<DateTime<Utc>>,
}

/// A machine and what the policy last said about it (`None` before its first pass).
pub type MachineStatus = (Machine, Option<InstanceStatus>);

/// One inventoried GPU machine with its hourly on-demand price.
#[derive(Clone, Debug)]
pub struct Machine {
    pub instance: FleetInstance,
    pub price_per_hour: Option<Decimal>,
    pub currency: String,
}

#[derive(Default)]
struct State {
    /// The GPU machines of each provider's last successful listing.
    machines: HashMap<Provider, Vec<Machine>>,
    inventory_at: Option<DateTime<Utc>>,
    /// Per instance id.
    windows: HashMap<String, SampleWindow>,
    last_sample_at: Option<DateTime<Utc>>,
    /// Per `FleetInstance::key`.
    status: HashMap<String, InstanceStatus>,
}

/// What one utilisation read did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ReadSummary {
    pub stored: u64,
    /// Readings whose host or instance the inventory does not hold.
    pub unknown: u32,
    /// Malformed lines, NaN, negative or out-of-range values.
    pub bad: u32,
    /// Targets or queries that could not be read.
    pub failed: u32,
}

/// What one policy pass did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PassSummary {
    pub evaluated: usize,
    pub idle: usize,
    pub audited: usize,
    pub notified: usize,
    pub acted: usize,
    pub failed: usize,
}

pub struct FleetEngine {
    store: Store,
    fleets: Vec<Arc<dyn Fleet>>,
    policy: IdlePolicy,
    cfg: IdleGpuConfig,
    catalog: CatalogHandle,
    http: reqwest::Client,
    state: Mutex<State>,
    /// With replicas: cloud calls only while this process may act.
    leadership: Option<Leadership>,
}

impl FleetEngine {
    pub fn new(
        store: Store,
        fleets: Vec<Arc<dyn Fleet>>,
        policy: IdlePolicy,
        cfg: IdleGpuConfig,
        catalog: CatalogHandle,
    ) -> Self {
        let http = reqwest::Client::builder()
            .timeout(cfg.prometheus.timeout)
            .build()
            .unwrap_or_default();
        FleetEngine {
            store,
            fleets,
            policy,
            cfg,
            catalog,
            http,
            state: Mutex::new(State::default()),
            leadership: None,
        }
    }

    /// Cloud calls are made only while `leadership` may act.
    pub fn with_leadership(mut self, leadership: Leadership) -> Self {
        self.leadership = Some(leadership);
        self
    }

    /// Resolves the acts a former leader commanded (case `acted`, intent stored) that have
    /// no outcome in the audit log, from the last inventory: a machine no longer running
    /// gets its `stopped`/`terminated` row, said to be resolved after a leader change, and
    /// is not called again. One still running is left as it is: the ladder starts it over
    /// `grace` after the act. Returns how many were resolved.
    pub async fn resolve_intents(&self, now: DateTime<Utc>) -> Result<usize, StoreError> {
        let Some(action) = self.policy.action() else {
            return Ok(0);
        };
        if !matches!(self.policy.mode, IdleMode::Stop | IdleMode::Terminate) {
            return Ok(0);
        }
        let machines: Vec<Machine> = self.state().machines.values().flatten().cloned().collect();
        let mut resolved = 0;
        for ((provider, id), json) in self.store.fleet_cases().await? {
            let Ok(case) = serde_json::from_str::<Case>(&json) else {
                continue;
            };
            let (Stage::Acted, Some(acted_at)) = (case.stage, case.acted_at) else {
                continue;
            };
            if case.mode != self.policy.mode
                || self
                    .store
                    .fleet_outcome_since(provider, &id, acted_at)
                    .await?
            {
                continue;
            }
            let Some(m) = machines
                .iter()
                .find(|m| m.instance.provider == provider && m.instance.id == id)
            else {
                continue;
            };
            if matches!(
                m.instance.state,
                InstanceState::Running | InstanceState::Pending
            ) {
                tracing::info!(instance = %m.instance.key(), "an earlier act has no outcome and the machine still runs; left to the ladder");
                continue;
            }
            let done_as = action.done();
            let reason = format!(
                "{} commanded by a former leader at {}; the cloud shows it {}: recorded without calling again",
                action.as_str(),
                acted_at.to_rfc3339(),
                m.instance.state.as_str()
            );
            self.store
                .record_fleet_action(&self.action_row(m, done_as.as_str(), &reason, "{}", now))
                .await?;
            metrics::global().idle_action(done_as);
            tracing::info!(instance = %m.instance.key(), "an act left by a former leader resolved from the listing");
            resolved += 1;
        }
        Ok(resolved)
    }

    pub fn policy(&self) -> &IdlePolicy {
        &self.policy
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The window the policy reads at `now`: [now - lag - window, now - lag].
    pub fn window_at(&self, now: DateTime<Utc>) -> (DateTime<Utc>, DateTime<Utc>) {
        self.policy.window_at(now)
    }

    /// Loads the samples the policy's window needs from the store (after a restart).
    pub async fn warm(&self, now: DateTime<Utc>) -> Result<usize, StoreError> {
        let (from, _) = self.window_at(now);
        let samples = self.store.gpu_samples_since(from).await?;
        let n = samples.len();
        self.feed(&samples);
        Ok(n)
    }

    /// Adds samples to the in-memory windows (already stored).
    pub fn feed(&self, samples: &[GpuSample]) {
        let mut st = self.state();
        for s in samples {
            st.windows.entry(s.instance_id.clone()).or_default().push(s);
            if st.last_sample_at.is_none_or(|t| s.at > t) {
                st.last_sample_at = Some(s.at);
            }
        }
    }

    /// The on-demand hourly price and the GPUs of an instance type, from the catalog.
    fn catalog_facts(
        &self,
        provider: Provider,
        region: &str,
        instance_type: &str,
    ) -> (Option<Decimal>, String, Option<(String, u32)>) {
        let catalog = self.catalog.load();
        let mut price: Option<(Decimal, String)> = None;
        let mut gpus = None;
        for o in catalog.offers() {
            let k = &o.key;
            if k.provider != provider || k.instance_type != instance_type {
                continue;
            }
            if gpus.is_none()
                && let Some(a) = &o.attrs
                && a.gpu_count > 0.0
            {
                gpus = a.gpu_model.clone().map(|m| (m, a.gpu_count.round() as u32));
            }
            if k.market == Market::OnDemand
                && k.region == region
                && price.as_ref().is_none_or(|(p, _)| o.price_per_hour < *p)
            {
                price = Some((o.price_per_hour, o.currency.as_str().to_string()));
            }
        }
        let (p, c) = price.map_or((None, "USD".to_string()), |(p, c)| (Some(p), c));
        (p, c, gpus)
    }

    /// Lists every cloud; keeps and stores the GPU machines. A cloud whose listing fails
    /// keeps its previous inventory (and the ledger does not move for it).
    pub async fn poll_inventory(&self, now: DateTime<Utc>) -> Vec<FleetError> {
        let mut errors = Vec::new();
        for fleet in &self.fleets {
            let provider = fleet.provider();
            let listed = match fleet.list().await {
                Ok(l) => l,
                Err(e) => {
                    tracing::warn!(provider = provider.as_str(), error = %e, "fleet inventory failed");
                    errors.push(e);
                    continue;
                }
            };
            let mut machines = Vec::new();
            for mut inst in listed {
                let (price, currency, gpus) =
                    self.catalog_facts(provider, &inst.region, &inst.instance_type);
                if inst.gpu_count == 0 {
                    if let Some((model, n)) = gpus {
                        inst.gpu_model = Some(model);
                        inst.gpu_count = n;
                    }
                } else if inst.gpu_model.is_none() {
                    inst.gpu_model = gpus.map(|(m, _)| m);
                }
                if inst.gpu_count == 0 {
                    continue;
                }
                inst.managed_by = managed_by(&inst);
                machines.push(Machine {
                    instance: inst,
                    price_per_hour: price,
                    currency,
                });
            }
            let rows: Vec<(FleetInstance, Option<Decimal>, String)> = machines
                .iter()
                .map(|m| (m.instance.clone(), m.price_per_hour, m.currency.clone()))
                .collect();
            if let Err(e) = self.store.write_fleet_inventory(provider, &rows, now).await {
                tracing::warn!(provider = provider.as_str(), error = %e, "storing the inventory failed");
            }
            tracing::debug!(
                provider = provider.as_str(),
                gpu_machines = machines.len(),
                "fleet inventory"
            );
            let mut st = self.state();
            st.machines.insert(provider, machines);
            st.inventory_at = Some(now);
        }
        errors
    }

    /// The machines of the last inventory, with the policy's last word on each, and when
    /// that inventory was taken.
    pub fn machines(&self) -> (Vec<MachineStatus>, Option<DateTime<Utc>>) {
        let st = self.state();
        let mut out: Vec<_> = st
            .machines
            .values()
            .flatten()
            .map(|m| (m.clone(), st.status.get(&m.instance.key()).cloned()))
            .collect();
        out.sort_by(|a, b| {
            (a.0.instance.provider.as_str(), &a.0.instance.name)
                .cmp(&(b.0.instance.provider.as_str(), &b.0.instance.name))
        });
        (out, st.inventory_at)
    }

    fn inventory_snapshot(&self) -> Vec<FleetInstance> {
        self.state()
            .machines
            .values()
            .flatten()
            .map(|m| m.instance.clone())
            .collect()
    }

    /// Reads every dcgm target and the Prometheus server once; stores and feeds what
    /// matches an inventoried machine.
    pub async fn read_utilization(&self, now: DateTime<Utc>) -> ReadSummary {
        let mut summary = ReadSummary::default();
        let inventory = self.inventory_snapshot();
        let mut reports: Vec<(ReadReport, SampleSource)> = Vec::new();
        for t in &self.cfg.dcgm_targets {
            match utilization::scrape_dcgm(&self.http, t, now).await {
                Ok(r) => reports.push((r, SampleSource::Dcgm)),
                Err(e) => {
                    summary.failed += 1;
                    tracing::warn!(error = %e, "dcgm-exporter scrape failed");
                }
            }
        }
        if !self.cfg.prometheus.url.is_empty() {
            match utilization::query_prometheus(
                &self.http,
                &self.cfg.prometheus,
                self.cfg.scrape_every,
                now,
            )
            .await
            {
                Ok(r) => reports.push((r, SampleSource::Prometheus)),
                Err(e) => {
                    summary.failed += 1;
                    tracing::warn!(error = %e, "Prometheus query failed");
                }
            }
        }
        for (report, source) in reports {
            summary.bad += report.bad;
            report.log_problems(source.as_str());
            let resolved = utilization::resolve(report.samples, &inventory, source);
            summary.unknown += resolved.unknown;
            summary.bad += resolved.bad;
            for p in &resolved.problems {
                tracing::debug!(source = source.as_str(), problem = %p, "utilisation reading skipped");
            }
            if resolved.samples.is_empty() {
                continue;
            }
            match self.store.insert_gpu_samples(&resolved.samples).await {
                Ok(n) => summary.stored += n,
                Err(e) => tracing::warn!(error = %e, "storing utilisation samples failed"),
            }
            self.feed(&resolved.samples);
        }
        if summary.unknown > 0 || summary.bad > 0 {
            tracing::info!(
                unknown = summary.unknown,
                bad = summary.bad,
                "utilisation readings skipped (unknown machine or bad value)"
            );
        }
        summary
    }

    /// Drops samples older than the retention, in memory and in the store.
    pub async fn prune(&self, now: DateTime<Utc>) -> Result<u64, StoreError> {
        let keep_from = minus(now, self.cfg.retention);
        let window_from = self.window_at(now).0;
        {
            let mut st = self.state();
            for w in st.windows.values_mut() {
                w.prune(window_from.min(keep_from));
            }
            st.windows.retain(|_, w| !w.is_empty());
        }
        self.store.prune_gpu_samples(keep_from).await
    }

    /// One policy pass at `now`, and its commands carried out.
    pub async fn run_policy(&self, now: DateTime<Utc>) -> Result<PassSummary, StoreError> {
        let keeps: HashMap<(Provider, String), DateTime<Utc>> = self
            .store
            .fleet_keeps(now)
            .await?
            .into_iter()
            .map(|k| ((k.provider, k.instance_id), k.until))
            .collect();
        let mut cases: HashMap<(Provider, String), Case> = HashMap::new();
        for (k, json) in self.store.fleet_cases().await? {
            match serde_json::from_str::<Case>(&json) {
                Ok(c) => {
                    cases.insert(k, c);
                }
                Err(e) => {
                    tracing::warn!(instance = %k.1, error = %e, "unreadable fleet case dropped")
                }
            }
        }
        let fleet = FleetView {
            actions_last_hour: self
                .store
                .fleet_actions_since(
                    now - chrono::Duration::hours(1),
                    self.policy.mode == IdleMode::DryRun,
                )
                .await?,
            stopped_by_policy: self.store.fleet_stopped_by_policy().await?,
            fleet_size: 0,
            last_sample_at: None,
        };
        let (from, to) = self.window_at(now);
        let (machines, summaries, last_sample_at) = {
            let st = self.state();
            let machines: Vec<Machine> = st.machines.values().flatten().cloned().collect();
            let summaries: Vec<WindowSummary> = machines
                .iter()
                .map(|m| {
                    st.windows
                        .get(&m.instance.id)
                        .map(|w| w.summary(from, to))
                        .unwrap_or_else(|| WindowSummary::empty(from, to))
                })
                .collect();
            (machines, summaries, st.last_sample_at)
        };
        let fleet = FleetView {
            fleet_size: machines.len() as u32,
            last_sample_at,
            ..fleet
        };
        let views: Vec<InstanceView> = machines
            .iter()
            .zip(&summaries)
            .map(|(m, s)| {
                let k = (m.instance.provider, m.instance.id.clone());
                InstanceView {
                    instance: &m.instance,
                    summary: s.clone(),
                    case: cases.get(&k).cloned(),
                    kept_until: keeps.get(&k).copied(),
                }
            })
            .collect();
        // Cases of machines the inventory no longer holds end with them.
        for (provider, id) in cases.keys() {
            if !machines
                .iter()
                .any(|m| m.instance.provider == *provider && &m.instance.id == id)
            {
                self.store.close_fleet_case(*provider, id).await?;
            }
        }
        let outcomes = evaluate(&self.policy, now, &views, &fleet);
        drop(views);
        let mut pass = PassSummary {
            evaluated: machines.len(),
            ..PassSummary::default()
        };
        for o in outcomes {
            let m = &machines[o.index];
            if matches!(o.verdict, Verdict::Idle) {
                pass.idle += 1;
            }
            self.apply(m, &summaries[o.index], &keeps, o, now, &mut pass)
                .await?;
        }
        Ok(pass)
    }

    fn action_row(
        &self,
        m: &Machine,
        decision: &str,
        reason: &str,
        evidence: &str,
        now: DateTime<Utc>,
    ) -> ActionRow {
        ActionRow {
            id: 0,
            at: now,
            provider: m.instance.provider,
            instance_id: m.instance.id.clone(),
            instance_name: m.instance.name.clone(),
            decision: decision.to_string(),
            mode: self.policy.mode.as_str().to_string(),
            reason: reason.to_string(),
            evidence: evidence.to_string(),
            price_per_hour: m.price_per_hour,
            currency: m.currency.clone(),
            error: String::new(),
            stopped_until: None,
            restarted_at: None,
        }
    }

    async fn apply(
        &self,
        m: &Machine,
        summary: &WindowSummary,
        keeps: &HashMap<(Provider, String), DateTime<Utc>>,
        o: Outcome,
        now: DateTime<Utc>,
        pass: &mut PassSummary,
    ) -> Result<(), StoreError> {
        let inst = &m.instance;
        let evidence = serde_json::to_string(&o.evidence).unwrap_or_else(|_| "{}".into());
        let (word, reason) = match &o.verdict {
            Verdict::Skipped(r) => (r.as_str(), o.describe()),
            v => (v.as_str(), o.describe()),
        };
        let mut case_after: Option<Case> = None;
        match &o.case {
            CaseChange::Keep => {}
            CaseChange::Open(c) | CaseChange::Update(c) => {
                case_after = Some(c.clone());
                self.put_case(inst, c).await?;
            }
            CaseChange::Close => self.store.close_fleet_case(inst.provider, &inst.id).await?,
        }
        if let Some(Audit { decision, reason }) = &o.audit {
            self.store
                .record_fleet_action(&self.action_row(m, decision.as_str(), reason, &evidence, now))
                .await?;
            metrics::global().idle_action(*decision);
            pass.audited += 1;
        }
        let due_at = case_after.as_ref().map(|c| c.due_at);
        {
            let mut st = self.state();
            st.status.insert(
                inst.key(),
                InstanceStatus {
                    state: word.to_string(),
                    reason,
                    summary: summary.clone(),
                    due_at,
                    kept_until: keeps.get(&(inst.provider, inst.id.clone())).copied(),
                },
            );
        }
        let Some(command) = o.command else {
            return Ok(());
        };
        if self.policy.mode == IdleMode::DryRun {
            tracing::error!(instance = %inst.key(), "the policy issued a command in dry_run; ignored");
            return Ok(());
        }
        match command {
            Command::Notify { planned } => {
                let due_at = planned.map(|p| p.at);
                let (emails, slack) = self.recipients(inst);
                let notice = IdleNotice {
                    provider: inst.provider.as_str().to_string(),
                    instance_id: inst.id.clone(),
                    instance_name: inst.name.clone(),
                    region: inst.region.clone(),
                    instance_type: inst.instance_type.clone(),
                    gpus: inst
                        .gpu_model
                        .as_ref()
                        .map(|g| format!("{} × {g}", inst.gpu_count))
                        .unwrap_or_default(),
                    window: humantime::format_duration(self.policy.window).to_string(),
                    threshold_percent: self.policy.threshold_percent,
                    max_utilization_percent: summary.max_util_percent,
                    samples: summary.samples,
                    action: planned.map_or("none", |p| p.action.as_str()).into(),
                    due_at,
                    price_per_hour: m.price_per_hour,
                    currency: m.currency.clone(),
                };
                let messages = notice.messages(&emails, &slack);
                let reason = format!(
                    "idle; notice queued to {} recipient(s){}",
                    messages.len(),
                    due_at.map_or(String::new(), |d| format!(
                        ", action due {}",
                        d.to_rfc3339()
                    ))
                );
                let opened = case_after.as_ref().map_or(now, |c| c.opened_at);
                self.store
                    .queue_fleet_notice(
                        &messages,
                        &self.action_row(m, Decision::Notified.as_str(), &reason, &evidence, now),
                        opened,
                    )
                    .await?;
                metrics::global().idle_action(Decision::Notified);
                pass.notified += 1;
            }
            Command::Act(action) => {
                let terminate = action == Action::Terminate;
                let Some(fleet) = self.fleets.iter().find(|f| f.provider() == inst.provider) else {
                    return Ok(());
                };
                // The last moment before the cloud call: the intent (case `acted`) is
                // stored; a former leader makes no call, the next one resolves it.
                if self.leadership.as_ref().is_some_and(|l| !l.may_act()) {
                    tracing::warn!(instance = %inst.key(), "not the leader any more; the act is left for the next leader");
                    return Ok(());
                }
                let result = if terminate {
                    fleet.terminate(inst).await
                } else {
                    fleet.stop(inst).await
                };
                let done_as = action.done();
                let word = done_as.as_str();
                match result {
                    Ok(done) => {
                        let reason = match done {
                            Done::Now => format!("idle through the grace period; {word}"),
                            Done::Already => {
                                format!("idle through the grace period; was already {word}")
                            }
                        };
                        // The case stays (stage `acted`) until an inventory sees the machine
                        // stopped: the policy closes it then.
                        self.store
                            .record_fleet_action(&self.action_row(m, word, &reason, &evidence, now))
                            .await?;
                        metrics::global().idle_action(done_as);
                        pass.acted += 1;
                    }
                    Err(e) => {
                        let mut row = self.action_row(
                            m,
                            Decision::Failed.as_str(),
                            &format!(
                                "{} failed; retried after the grace period",
                                if terminate { "terminate" } else { "stop" }
                            ),
                            &evidence,
                            now,
                        );
                        row.error = e.to_string();
                        self.store.record_fleet_action(&row).await?;
                        metrics::global().idle_action(Decision::Failed);
                        // Back to waiting: the act is due again after another grace period.
                        if let Some(mut c) = case_after {
                            c.stage = Stage::Waiting;
                            c.acted_at = None;
                            c.due_at = plus(now, self.policy.grace);
                            self.put_case(inst, &c).await?;
                        }
                        pass.failed += 1;
                    }
                }
            }
        }
        Ok(())
    }

    /// Stores a machine's case (as JSON) for the next pass.
    async fn put_case(&self, inst: &FleetInstance, c: &Case) -> Result<(), StoreError> {
        let json = serde_json::to_string(c).unwrap_or_default();
        self.store
            .put_fleet_case(inst.provider, &inst.id, c.opened_at, &json)
            .await
    }

    /// The owners named by the owner tag (email addresses), else the policy's channels.
    fn recipients(&self, inst: &FleetInstance) -> (Vec<String>, Vec<String>) {
        let owners: Vec<String> = inst
            .labels
            .get(&self.policy.owner_tag)
            .map(|v| {
                v.split([',', ';', ' '])
                    .map(str::trim)
                    .filter(|a| a.contains('@'))
                    .map(str::to_string)
                    .collect()
            })
            .unwrap_or_default();
        if owners.is_empty() {
            (
                self.policy.channels.emails.clone(),
                self.policy.channels.slack_webhooks.clone(),
            )
        } else {
            (owners, self.policy.channels.slack_webhooks.clone())
        }
    }
}

/// Runs inventory polls, utilisation reads, policy passes and sample pruning on their
/// intervals until shutdown.
pub async fn run_fleet(engine: Arc<FleetEngine>, mut shutdown: tokio::sync::watch::Receiver<bool>) {
    let cfg = engine.cfg.clone();
    if let Err(e) = engine.warm(Utc::now()).await {
        tracing::warn!(error = %e, "could not load recent utilisation samples");
    }
    let mut inventory = tokio::time::interval(cfg.inventory_every);
    let mut scrape = tokio::time::interval(cfg.scrape_every);
    let mut policy = tokio::time::interval(cfg.every);
    let mut prune = tokio::time::interval(Duration::from_secs(3600));
    for i in [&mut inventory, &mut scrape, &mut policy, &mut prune] {
        i.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    }
    // The first pass waits for the first inventory and read.
    policy.reset();
    loop {
        tokio::select! {
            _ = inventory.tick() => {
                engine.poll_inventory(Utc::now()).await;
                if let Err(e) = engine.resolve_intents(Utc::now()).await
                    && !super::leader::note_refusal(&e, "idle-GPU intents")
                {
                    tracing::warn!(error = %e, "resolving earlier acts failed");
                }
            }
            _ = scrape.tick() => { engine.read_utilization(Utc::now()).await; }
            _ = policy.tick() => {
                match engine.run_policy(Utc::now()).await {
                    Ok(p) => tracing::debug!(?p, "idle-GPU policy pass"),
                    Err(e) => {
                        if !super::leader::note_refusal(&e, "idle-GPU policy pass") {
                            tracing::warn!(error = %e, "idle-GPU policy pass failed");
                        }
                    }
                }
            }
            _ = prune.tick() => {
                if let Err(e) = engine.prune(Utc::now()).await {
                    tracing::warn!(error = %e, "pruning utilisation samples failed");
                }
            }
            r = shutdown.changed() => {
                if r.is_err() || *shutdown.borrow() {
                    return;
                }
            }
        }
    }
}
