//! [`evaluate`]: one pass of the idle policy over the whole GPU fleet, as a pure state
//! transition. In: the policy, `now`, each instance with its window summary, open case and
//! keep, and fleet-wide counts. Out: one [`Outcome`] per instance. The rules are written
//! out in the module's documentation (`domain::idle`).
//!
//! The pass runs in two steps. The first takes each instance on its own: its verdict, and
//! what its case does next (notice, cancel, wait, or "wants to act"). The second hands the
//! acts out under the blast-radius limits, oldest due first, and holds back the rest.
use chrono::{DateTime, Utc};

use super::outcome::time;
use super::{
    Action, Activity, Audit, Case, CaseChange, Command, Decision, Evidence, Hold, IdleMode,
    IdlePolicy, Outcome, Planned, SkipReason, Stage, UnknownWhy, Verdict, WindowSummary, excluded,
    managed_by, minus, plus, protection,
};
use crate::domain::fleet::{FleetInstance, InstanceState};

/// One instance as a pass sees it.
#[derive(Clone, Debug)]
pub struct InstanceView<'a> {
    pub instance: &'a FleetInstance,
    /// Its readings over `policy.window_at(now)` (see `SampleWindow::summary`).
    pub summary: WindowSummary,
    /// Its open case, from the previous passes.
    pub case: Option<Case>,
    /// Snoozed until then (`bursar fleet keep`).
    pub kept_until: Option<DateTime<Utc>>,
}

/// Fleet-wide counts the limits and the breaker need.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FleetView {
    /// Machines the policy acted on (stopped or terminated) in the past hour. In dry_run
    /// the caller may count `WouldStop` rows here to model the hourly limit across passes.
    pub actions_last_hour: u32,
    /// GPU machines the policy stopped or terminated that are not running again yet,
    /// acts still in flight included.
    pub stopped_by_policy: u32,
    /// GPU machines in the inventory, running or stopped.
    pub fleet_size: u32,
    /// The newest sample from any source.
    pub last_sample_at: Option<DateTime<Utc>>,
}

/// How many machines the policy may keep stopped at once: `floor(fraction × fleet_size)`,
/// at least 1 when the fraction is above 0 and the fleet is not empty; 0 when either is.
pub fn fleet_cap(fraction: f64, fleet_size: u32) -> u32 {
    if fraction.is_nan() || fraction <= 0.0 || fleet_size == 0 {
        return 0;
    }
    let cap = (fraction.min(1.0) * f64::from(fleet_size)).floor() as u32;
    cap.max(1)
}

/// One pass: an [`Outcome`] for every view, in the views' order.
pub fn evaluate(
    policy: &IdlePolicy,
    now: DateTime<Utc>,
    views: &[InstanceView],
    fleet: &FleetView,
) -> Vec<Outcome> {
    let silent = feed_silent(policy, now, fleet);
    let mut outcomes = Vec::with_capacity(views.len());
    let mut want = Vec::new();
    for (index, view) in views.iter().enumerate() {
        let (outcome, wants) = judge(policy, now, index, view, silent.as_deref());
        if let Some(case) = wants {
            want.push((case.due_at, index, case));
        }
        outcomes.push(outcome);
    }
    // Acts, oldest due first, while the limits allow.
    want.sort_by_key(|(due, index, _)| (*due, *index));
    let mut acted = 0u32;
    for (_, index, case) in want {
        let o = &mut outcomes[index];
        match limit(policy, fleet, acted) {
            None => {
                acted += 1;
                act(policy, now, o, case);
            }
            Some((hold, why)) => hold_back(o, case, hold, format!("action held: {why}")),
        }
    }
    outcomes
}

/// The breaker's reason, when the feed is silent.
fn feed_silent(policy: &IdlePolicy, now: DateTime<Utc>, fleet: &FleetView) -> Option<String> {
    match fleet.last_sample_at {
        None => Some("utilisation feed silent: no sample received yet".into()),
        Some(at) if at < minus(now, policy.feed_silence) => Some(format!(
            "utilisation feed silent: last sample at {}, over {} ago",
            time(at),
            humantime::format_duration(policy.feed_silence)
        )),
        Some(_) => None,
    }
}

/// Why the next act is held back, if it is, after `acted` acts in this pass.
fn limit(policy: &IdlePolicy, fleet: &FleetView, acted: u32) -> Option<(Hold, String)> {
    let hour = fleet.actions_last_hour.saturating_add(acted);
    if hour >= policy.max_actions_per_hour {
        return Some((
            Hold::RateLimit,
            format!(
                "rate limit: {hour} actions in the past hour, max_actions_per_hour = {}",
                policy.max_actions_per_hour
            ),
        ));
    }
    let cap = fleet_cap(policy.max_fleet_fraction, fleet.fleet_size);
    let stopped = fleet.stopped_by_policy.saturating_add(acted);
    if stopped >= cap {
        return Some((
            Hold::FleetFraction,
            format!(
                "fleet fraction: {stopped} of {} GPU machines stopped by the policy, at most {cap} (max_fleet_fraction = {})",
                fleet.fleet_size, policy.max_fleet_fraction
            ),
        ));
    }
    None
}

/// What the GPUs say, from the window summary.
fn activity(policy: &IdlePolicy, inst: &FleetInstance, w: &WindowSummary) -> Activity {
    let t = policy.threshold_percent;
    if w.max_util_percent.is_some_and(|u| u >= t)
        || w.newer_max_util_percent.is_some_and(|u| u >= t)
    {
        return Activity::Busy;
    }
    if w.samples < policy.min_samples.max(1) {
        return Activity::Unknown(UnknownWhy::TooFewSamples);
    }
    if w.gpus < inst.gpu_count {
        return Activity::Unknown(UnknownWhy::MissingGpus);
    }
    let gap = policy.window / policy.min_samples.max(1);
    if w.max_gap_secs > gap.as_secs() {
        return Activity::Unknown(UnknownWhy::Gap);
    }
    Activity::Idle
}

/// Why the instance is never acted on, if it is not, in the documented order.
fn skip(policy: &IdlePolicy, now: DateTime<Utc>, v: &InstanceView) -> Option<SkipReason> {
    let inst = v.instance;
    if inst.state != InstanceState::Running {
        return Some(SkipReason::NotRunning(inst.state.as_str().to_string()));
    }
    if let Some(until) = v.kept_until.filter(|u| *u > now) {
        return Some(SkipReason::Kept(until));
    }
    if let Some(p) = protection(inst, policy) {
        return Some(SkipReason::Protected(p));
    }
    if let Some(m) = managed_by(inst) {
        return Some(SkipReason::Managed(m));
    }
    if let Some(e) = excluded(inst, &policy.selectors) {
        return Some(SkipReason::Excluded(e));
    }
    match inst.launched_at {
        Some(at) if plus(at, policy.min_age) <= now => None,
        at => Some(SkipReason::Young(at)),
    }
}

/// The first step for one instance. Returns its outcome, and its case when it wants to act
/// (the second step decides).
fn judge(
    policy: &IdlePolicy,
    now: DateTime<Utc>,
    index: usize,
    v: &InstanceView,
    silent: Option<&str>,
) -> (Outcome, Option<Case>) {
    let act = activity(policy, v.instance, &v.summary);
    let skip = skip(policy, now, v);
    let verdict = match (&skip, act) {
        (Some(r), _) => Verdict::Skipped(r.clone()),
        (None, Activity::Idle) => Verdict::Idle,
        (None, Activity::Busy) => Verdict::Busy,
        (None, Activity::Unknown(_)) => Verdict::Unknown,
    };
    let mut o = Outcome {
        index,
        verdict,
        activity: act,
        evidence: Evidence {
            window: v.summary.clone(),
            threshold_percent: policy.threshold_percent,
            min_samples: policy.min_samples,
            gpu_count: v.instance.gpu_count,
        },
        case: CaseChange::Keep,
        audit: None,
        command: None,
    };
    let idle = act == Activity::Idle;
    let mut wants = None;
    match (skip, v.case.clone()) {
        (Some(reason), None) => {
            if idle && reason.audited() {
                o.case = CaseChange::Open(skipped_case(policy, now));
                o.audit = audit(
                    Decision::Skipped,
                    format!("idle, but {reason}: never acted on"),
                );
            }
        }
        (Some(reason), Some(case)) => match case.stage {
            Stage::Skipped if reason.audited() && act != Activity::Busy => {}
            Stage::Skipped | Stage::Acted => o.case = CaseChange::Close,
            Stage::Waiting | Stage::Held(_) => {
                if pending(&case) {
                    let why = cancel_reason(&case, &reason.to_string());
                    o.audit = audit(Decision::Cancelled, why);
                }
                o.case = if idle && reason.audited() {
                    CaseChange::Update(skipped_case(policy, now))
                } else {
                    CaseChange::Close
                };
            }
        },
        (None, None) => {
            if idle {
                let case = new_case(policy, now);
                notice(policy, now, &mut o, case, silent);
                if let CaseChange::Update(c) = &o.case {
                    o.case = CaseChange::Open(c.clone());
                }
            }
        }
        (None, Some(case)) if case.mode != policy.mode => {
            // The mode changed: its notice promised something else. Start over.
            o.case = CaseChange::Close;
            if idle {
                notice(policy, now, &mut o, new_case(policy, now), silent);
            }
        }
        (None, Some(case)) => match (act, case.stage) {
            (Activity::Busy, Stage::Waiting | Stage::Held(_)) => {
                if pending(&case) {
                    let why = o.describe();
                    o.audit = audit(Decision::Cancelled, cancel_reason(&case, &why));
                }
                o.case = CaseChange::Close;
            }
            (Activity::Busy, Stage::Acted | Stage::Skipped) => o.case = CaseChange::Close,
            (_, Stage::Acted) => {
                // Still running `grace` after a real act: the act failed or the machine was
                // started again. Start over (a new notice) on the next idle pass.
                let real = matches!(policy.mode, IdleMode::Stop | IdleMode::Terminate);
                let since = case.acted_at.unwrap_or(case.due_at);
                if real && plus(since, policy.grace) <= now {
                    o.case = CaseChange::Close;
                }
            }
            (Activity::Unknown(_), _) => {}
            (Activity::Idle, Stage::Skipped) => {
                // No longer protected or managed: onto the ladder.
                notice(policy, now, &mut o, new_case(policy, now), silent);
            }
            (Activity::Idle, Stage::Waiting | Stage::Held(_)) => {
                if case.notified_at.is_none() {
                    notice(policy, now, &mut o, case, silent);
                } else if policy.mode != IdleMode::Notify && case.due_at <= now {
                    match silent {
                        Some(why) => {
                            let why = format!("action held: {why}");
                            hold_back(&mut o, case, Hold::FeedSilent, why);
                        }
                        None => wants = Some(case),
                    }
                }
            }
        },
    }
    (o, wants)
}

/// Whether the case is heading for an action (dry_run's would-act counts) that a cancel
/// calls off. A notify-mode case only ends.
fn pending(case: &Case) -> bool {
    case.mode != IdleMode::Notify
}

fn new_case(policy: &IdlePolicy, now: DateTime<Utc>) -> Case {
    Case {
        opened_at: now,
        notified_at: None,
        due_at: plus(now, policy.grace),
        mode: policy.mode,
        stage: Stage::Waiting,
        acted_at: None,
    }
}

fn skipped_case(policy: &IdlePolicy, now: DateTime<Utc>) -> Case {
    Case {
        due_at: now,
        stage: Stage::Skipped,
        ..new_case(policy, now)
    }
}

/// Gives notice on `case` (or holds it back when the feed is silent).
fn notice(
    policy: &IdlePolicy,
    now: DateTime<Utc>,
    o: &mut Outcome,
    mut case: Case,
    silent: Option<&str>,
) {
    if let Some(why) = silent {
        let why = format!("notice held: {why}");
        return hold_back(o, case, Hold::FeedSilent, why);
    }
    case.notified_at = Some(now);
    case.due_at = plus(now, policy.grace);
    case.stage = Stage::Waiting;
    match policy.mode {
        IdleMode::DryRun => {
            let action = policy.action().unwrap_or(Action::Stop);
            let why = format!(
                "{}; would notify the owners and {} at {}",
                o.describe(),
                action.as_str(),
                time(case.due_at)
            );
            o.audit = audit(Decision::WouldNotify, why);
        }
        IdleMode::Notify => o.command = Some(Command::Notify { planned: None }),
        IdleMode::Stop | IdleMode::Terminate => {
            let planned = policy.action().map(|action| Planned {
                action,
                at: case.due_at,
            });
            o.command = Some(Command::Notify { planned });
        }
    }
    o.case = CaseChange::Update(case);
}

/// Grants the act.
fn act(policy: &IdlePolicy, now: DateTime<Utc>, o: &mut Outcome, mut case: Case) {
    let action = policy.action().unwrap_or(Action::Stop);
    case.stage = Stage::Acted;
    case.acted_at = Some(now);
    if policy.mode == IdleMode::DryRun {
        let since = case.notified_at.map_or_else(|| "-".into(), time);
        let why = format!(
            "{}; still idle after the grace period (noticed at {since}): would {}",
            o.describe(),
            action.as_str()
        );
        o.audit = audit(action.would(), why);
    } else {
        o.command = Some(Command::Act(action));
    }
    o.case = CaseChange::Update(case);
}

/// Holds the case's next step back; the reason is audited once per case and reason.
fn hold_back(o: &mut Outcome, mut case: Case, hold: Hold, why: String) {
    if case.stage == Stage::Held(hold) {
        return;
    }
    case.stage = Stage::Held(hold);
    o.case = match o.case {
        CaseChange::Keep | CaseChange::Update(_) => CaseChange::Update(case),
        CaseChange::Open(_) => CaseChange::Open(case),
        CaseChange::Close => CaseChange::Update(case),
    };
    o.audit = audit(Decision::Held, why);
}

fn cancel_reason(case: &Case, why: &str) -> String {
    let noticed = case
        .notified_at
        .map_or_else(String::new, |t| format!(" (noticed at {})", time(t)));
    format!("{why}: the pending action{noticed} is cancelled")
}

fn audit(decision: Decision, reason: String) -> Option<Audit> {
    Some(Audit { decision, reason })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_fleet_cap_rounds_down_but_serves_small_fleets_one_at_a_time() {
        for (fraction, size, cap) in [
            (0.25, 100, 25),
            (0.25, 10, 2),
            (0.25, 3, 1),
            (0.25, 1, 1),
            (0.25, 0, 0),
            (0.0, 100, 0),
            (1.0, 7, 7),
            (5.0, 7, 7),
            (f64::NAN, 7, 0),
        ] {
            assert_eq!(fleet_cap(fraction, size), cap, "{fraction} × {size}");
        }
    }
}
