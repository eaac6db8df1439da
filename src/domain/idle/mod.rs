//! The idle-GPU policy, pure: what counts as idle, who is never touched, and the ladder
//! (dry-run → notice → grace → stop/terminate) with its blast-radius limits. `IdlePolicy` is
//! the validated `[idle_gpu]` config. No I/O and no clock: every function takes `now`.
//!
//! One file per concern:
//! - `window.rs`: [`SampleWindow`], one instance's recent readings in a few bytes each, and
//!   its [`WindowSummary`] over a time range;
//! - `eligibility.rs`: who is never touched: [`managed_by`] (autoscalers, Kubernetes),
//!   [`protection`] (the protect tag, the cloud's own flags), [`excluded`] (selectors);
//! - `case.rs`: [`Case`], the per-instance state of the ladder the caller stores between
//!   passes, and [`CaseChange`];
//! - `outcome.rs`: what one pass says about one instance: [`Outcome`], [`Verdict`],
//!   [`Decision`] (the audit log's words), [`Command`], [`Evidence`];
//! - `ladder.rs`: [`evaluate`], one pass over the whole fleet.
//!
//! # How the caller uses it (tasks::fleet)
//! Every `every`: for each GPU instance of the inventory, `summary = window.summary(from, to)`
//! with `(from, to) = policy.window_at(now)`; load its open [`Case`] and its keep; call
//! [`evaluate`]. Then for each [`Outcome`]: apply `case` to the store, write `audit` (when
//! set) with the outcome's evidence, and execute `command`: [`Command::Notify`] → queue the
//! notice in the alert outbox and write a `Notified` row (if queuing fails, write `Failed`
//! and do not store the case change, so the next pass notifies again); [`Command::Act`] → call
//! the cloud and write `Stopped`/`Terminated` or `Failed`. `evaluate` never claims that an
//! action happened.
//!
//! # Rules, and the choices made where the issue left room
//! - **Idle** = at least `min_samples` readings (sample *times*: all GPUs read at one second
//!   count once) in the window `[now − lag − window, now − lag]`, readings from at least as
//!   many GPUs as the inventory says the machine has, no stretch of the window longer than
//!   `window / min_samples` without a reading (at either end or in between: 10 minutes by
//!   default), and every reading of every GPU below `threshold_percent`. Anything short of that is **unknown**, never idle.
//! - **Busy** needs one reading at or over the threshold in the window *or after it* (the
//!   lag only delays when a window counts as complete; fresh activity counts at once).
//! - **Never acted on**, checked in this order: not running; kept (snoozed) until after
//!   now; protected (the protect tag, or the cloud's own protection); managed by an
//!   autoscaler or Kubernetes; outside the selectors; younger than `min_age`. An unknown
//!   launch time counts as young: the adapters always know it, and a machine whose age is
//!   unknown is not proven old. A protected or managed machine that is idle gets one
//!   `Skipped` audit row per idle episode (so the operator sees the money it burns).
//! - **The ladder**: the first pass that finds a machine idle opens a case and gives notice
//!   (dry_run: a `WouldNotify` row; notify/stop/terminate: a Notify command), due
//!   `grace` later. At or after due, if still idle: stop/terminate → an Act command;
//!   dry_run → one `WouldStop` row (dry_run's intended action is stop); notify → nothing,
//!   ever. The case then stays open (stage `Acted`) until the machine stops running or
//!   turns busy, so nothing is said twice. In stop/terminate mode, a machine still running
//!   `grace` after the act (the act failed, or someone started it again) has its case
//!   closed quietly, and the next idle pass starts over with a new notice.
//! - **Cancel**: busy, stopped by someone else, kept, protected, managed, excluded or young
//!   again while an action is pending → one `Cancelled` row and the case closes. Unknown
//!   while pending → keep waiting, never act on unknown.
//! - **Blast radius**: an act is allowed while `actions_last_hour` + this pass's acts <
//!   `max_actions_per_hour`, and `stopped_by_policy` + this pass's acts < the fleet cap. The
//!   fleet cap is `floor(max_fleet_fraction × fleet_size)` but at least 1 when the fraction
//!   is above 0 and the fleet is not empty: one machine at a time is the smallest blast
//!   radius there is, and a 3-machine team would otherwise never be served. Set the fraction
//!   to 0 to forbid acts. Acts due in one pass are served oldest due first. A held act
//!   writes one `Held` row per case and reason, and waits.
//! - **Breaker**: no sample from any source yet, or none for `feed_silence`: no notice and
//!   no act anywhere (one `Held` row per case). dry_run follows the same rules (limits,
//!   breaker) so its rows show what the real mode would do; its would-acts count against
//!   the limits of the pass they happen in.
//! - **A changed mode** (say dry_run → stop) closes the case opened under the old mode and
//!   starts a new one, so no machine is acted on without a notice given in the mode that acts.
//! - Audit rows are written on transitions only: a steady state writes nothing.
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};

use crate::domain::Provider;
use crate::domain::budget::Channels;

mod case;
mod eligibility;
mod ladder;
mod outcome;
#[cfg(test)]
mod tests;
mod window;

pub use case::{Case, CaseChange, Hold, Stage};
pub use eligibility::{excluded, managed_by, protection};
pub use ladder::{FleetView, InstanceView, evaluate, fleet_cap};
pub use outcome::{
    Action, Activity, Audit, Command, Decision, Evidence, Outcome, Planned, SkipReason, UnknownWhy,
    Verdict,
};
pub use window::{SampleWindow, WindowSummary};

/// How far down the ladder the policy may go.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum IdleMode {
    /// Record "would notify" and "would stop"; touch nothing, send nothing. The default.
    DryRun,
    /// Send notices to the owners; never act.
    Notify,
    /// Notice, then stop after the grace period if still idle (Azure: deallocate).
    Stop,
    /// Notice, then terminate (delete) after the grace period if still idle.
    Terminate,
}

impl IdleMode {
    pub const ALL: [IdleMode; 4] = [
        IdleMode::DryRun,
        IdleMode::Notify,
        IdleMode::Stop,
        IdleMode::Terminate,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            IdleMode::DryRun => "dry_run",
            IdleMode::Notify => "notify",
            IdleMode::Stop => "stop",
            IdleMode::Terminate => "terminate",
        }
    }

    pub fn parse(s: &str) -> Option<IdleMode> {
        IdleMode::ALL.into_iter().find(|m| m.as_str() == s)
    }
}

/// A `key=value` tag condition; an empty value matches any value of the key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TagMatch {
    pub key: String,
    pub value: String,
}

impl TagMatch {
    /// `key=value`, or `key` alone (any value).
    pub fn parse(s: &str) -> Option<TagMatch> {
        let (k, v) = s.split_once('=').unwrap_or((s, ""));
        let k = k.trim();
        (!k.is_empty()).then(|| TagMatch {
            key: k.to_string(),
            value: v.trim().to_string(),
        })
    }
}

/// Which instances the policy may act on. Empty allow lists allow all; a deny list entry
/// always wins.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Selectors {
    pub providers: Vec<Provider>,
    pub regions: Vec<String>,
    pub exclude_regions: Vec<String>,
    /// The instance must carry one of these tags (when non-empty).
    pub tags: Vec<TagMatch>,
    /// An instance carrying any of these is never touched.
    pub exclude_tags: Vec<TagMatch>,
}

/// The validated `[idle_gpu]` section.
#[derive(Clone, Debug, PartialEq)]
pub struct IdlePolicy {
    pub mode: IdleMode,
    /// Idle means every GPU stays below this utilisation (percent) for the whole window.
    pub threshold_percent: f64,
    pub window: Duration,
    /// Fewer samples than this in the window: the instance is "unknown", never idle.
    pub min_samples: u32,
    /// Metrics arrive late: the window ends this long before now.
    pub lag: Duration,
    pub grace: Duration,
    pub min_age: Duration,
    pub protect_tag: TagMatch,
    pub selectors: Selectors,
    pub max_actions_per_hour: u32,
    /// At most this share (0–1) of the GPU fleet stopped by the policy at once.
    pub max_fleet_fraction: f64,
    /// The breaker: no utilisation sample from any source for this long stops all actions.
    pub feed_silence: Duration,
    /// The tag whose value names the owners (email addresses, comma-separated).
    pub owner_tag: String,
    /// Where notices go when the instance names no owner.
    pub channels: Channels,
}

impl Default for IdlePolicy {
    /// The documented defaults.
    fn default() -> Self {
        IdlePolicy {
            mode: IdleMode::DryRun,
            threshold_percent: 10.0,
            window: Duration::from_secs(30 * 60),
            min_samples: 3,
            lag: Duration::from_secs(60),
            grace: Duration::from_secs(15 * 60),
            min_age: Duration::from_secs(30 * 60),
            protect_tag: TagMatch {
                key: "bursar.io/protect".into(),
                value: "true".into(),
            },
            selectors: Selectors::default(),
            max_actions_per_hour: 10,
            max_fleet_fraction: 0.25,
            feed_silence: Duration::from_secs(5 * 60),
            owner_tag: "owner".into(),
            channels: Channels::default(),
        }
    }
}

impl IdlePolicy {
    /// The window a pass at `now` judges: `[now − lag − window, now − lag]`.
    pub fn window_at(&self, now: DateTime<Utc>) -> (DateTime<Utc>, DateTime<Utc>) {
        let to = minus(now, self.lag);
        (minus(to, self.window), to)
    }

    /// What this mode finally does to an idle machine (dry_run: what it would do).
    pub fn action(&self) -> Option<Action> {
        match self.mode {
            IdleMode::DryRun | IdleMode::Stop => Some(Action::Stop),
            IdleMode::Terminate => Some(Action::Terminate),
            IdleMode::Notify => None,
        }
    }
}

/// `t − d`, saturating at chrono's range instead of panicking.
pub(crate) fn minus(t: DateTime<Utc>, d: Duration) -> DateTime<Utc> {
    TimeDelta::from_std(d)
        .ok()
        .and_then(|d| t.checked_sub_signed(d))
        .unwrap_or(DateTime::<Utc>::MIN_UTC)
}

/// `t + d`, saturating at chrono's range instead of panicking.
pub(crate) fn plus(t: DateTime<Utc>, d: Duration) -> DateTime<Utc> {
    TimeDelta::from_std(d)
        .ok()
        .and_then(|d| t.checked_add_signed(d))
        .unwrap_or(DateTime::<Utc>::MAX_UTC)
}
