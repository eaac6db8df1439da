//! What one pass of the policy says about one instance: an [`Outcome`] holding the
//! [`Verdict`], the utilisation [`Evidence`], the change to its case, the audit row to
//! write (a [`Decision`] and its reason) and the [`Command`] to execute.
use std::fmt;

use chrono::{DateTime, SecondsFormat, Utc};
use serde::Serialize;

use super::{CaseChange, WindowSummary};

/// The policy's answer for one instance (`index` into the views given to `evaluate`).
#[derive(Clone, Debug, PartialEq)]
pub struct Outcome {
    pub index: usize,
    pub verdict: Verdict,
    /// What the GPUs say, whether or not the instance may be acted on.
    pub activity: Activity,
    pub evidence: Evidence,
    pub case: CaseChange,
    /// The audit row to write, on a transition only.
    pub audit: Option<Audit>,
    /// What the executor is to do. Its own audit row (`Notified`, `Stopped`, `Terminated`,
    /// `Failed`) is the executor's to write, with [`Outcome::describe`] as the reason.
    pub command: Option<Command>,
}

impl Outcome {
    /// One line: the verdict and its evidence (`idle: max 0.47% < 10% over 118 readings of
    /// 8 GPUs, 09:29:00Z–09:59:00Z`).
    pub fn describe(&self) -> String {
        let e = &self.evidence;
        let w = &e.window;
        let util =
            |u: Option<f64>| u.map_or_else(|| "none".to_string(), |u| format!("{}%", pct(u)));
        let readings = format!(
            "{} readings of {} GPU{} from {} to {}",
            w.samples,
            w.gpus,
            if w.gpus == 1 { "" } else { "s" },
            time(w.from),
            time(w.to)
        );
        let activity = match self.activity {
            Activity::Idle => format!(
                "idle: max {} < {}% over {readings}",
                util(w.max_util_percent),
                pct(e.threshold_percent)
            ),
            Activity::Busy => {
                let (max, when) = match (w.max_util_percent, w.newer_max_util_percent) {
                    (Some(a), Some(b)) if b > a => (b, " (after the window)"),
                    (None, Some(b)) => (b, " (after the window)"),
                    (a, _) => (a.unwrap_or(0.0), ""),
                };
                format!(
                    "busy: max {}%{when} ≥ {}%",
                    pct(max),
                    pct(e.threshold_percent)
                )
            }
            Activity::Unknown(why) => format!("unknown: {}", why.describe(e)),
        };
        match &self.verdict {
            Verdict::Skipped(r) => format!("skipped: {r}; {activity}"),
            _ => activity,
        }
    }
}

/// The verdict on one instance.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    Idle,
    Busy,
    /// Not enough data to say: never idle.
    Unknown,
    /// Never acted on, whatever its GPUs say.
    Skipped(SkipReason),
}

impl Verdict {
    /// `idle`, `busy`, `unknown`, `skipped`.
    pub fn as_str(&self) -> &'static str {
        match self {
            Verdict::Idle => "idle",
            Verdict::Busy => "busy",
            Verdict::Unknown => "unknown",
            Verdict::Skipped(_) => "skipped",
        }
    }
}

/// Why an instance is never acted on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SkipReason {
    /// Not in state running (pending, stopping, stopped, ...): the state's word.
    NotRunning(String),
    /// Younger than `min_age`, or launch time unknown (`None`).
    Young(Option<DateTime<Utc>>),
    Protected(String),
    Managed(String),
    Excluded(String),
    /// Snoozed (`bursar fleet keep`) until then.
    Kept(DateTime<Utc>),
}

impl SkipReason {
    /// `not_running`, `young`, `protected`, `managed`, `excluded`, `kept`.
    pub fn as_str(&self) -> &'static str {
        match self {
            SkipReason::NotRunning(_) => "not_running",
            SkipReason::Young(_) => "young",
            SkipReason::Protected(_) => "protected",
            SkipReason::Managed(_) => "managed",
            SkipReason::Excluded(_) => "excluded",
            SkipReason::Kept(_) => "kept",
        }
    }

    /// Protected and managed machines: idle ones get one `Skipped` row per idle episode.
    pub(crate) fn audited(&self) -> bool {
        matches!(self, SkipReason::Protected(_) | SkipReason::Managed(_))
    }
}

impl fmt::Display for SkipReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SkipReason::NotRunning(s) => write!(f, "not running ({s})"),
            SkipReason::Young(Some(at)) => {
                write!(f, "launched at {}, younger than min_age", time(*at))
            }
            SkipReason::Young(None) => f.write_str("launch time unknown (treated as young)"),
            SkipReason::Protected(p) => write!(f, "protected ({p})"),
            SkipReason::Managed(m) => write!(f, "managed by {m}"),
            SkipReason::Excluded(e) => write!(f, "outside the selectors ({e})"),
            SkipReason::Kept(until) => write!(f, "kept until {}", time(*until)),
        }
    }
}

/// What the GPUs say.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Activity {
    Idle,
    Busy,
    Unknown(UnknownWhy),
}

/// Why the data does not say idle (nor busy).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UnknownWhy {
    /// Fewer readings than `min_samples` in the window.
    TooFewSamples,
    /// Readings from fewer GPUs than the machine has.
    MissingGpus,
    /// A stretch of the window without a reading longer than window / min_samples (at
    /// either end or between two readings).
    Gap,
}

impl UnknownWhy {
    fn describe(self, e: &Evidence) -> String {
        let w = &e.window;
        match self {
            UnknownWhy::TooFewSamples => format!(
                "{} readings from {} to {}, {} needed",
                w.samples,
                time(w.from),
                time(w.to),
                e.min_samples
            ),
            UnknownWhy::MissingGpus => {
                format!("readings from {} of its {} GPUs", w.gpus, e.gpu_count)
            }
            UnknownWhy::Gap => format!(
                "no reading for {} of the window {} to {}",
                humantime::format_duration(std::time::Duration::from_secs(w.max_gap_secs)),
                time(w.from),
                time(w.to)
            ),
        }
    }
}

/// The utilisation behind a verdict: the window summary and the policy's bar. Serialises
/// to the audit row's JSON.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Evidence {
    #[serde(flatten)]
    pub window: WindowSummary,
    pub threshold_percent: f64,
    pub min_samples: u32,
    /// GPUs the inventory says the machine has.
    pub gpu_count: u32,
}

/// An audit row's decision. Stored as [`Decision::as_str`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Decision {
    /// dry_run: found idle; would notify.
    WouldNotify,
    /// dry_run: still idle after the grace period; would stop.
    WouldStop,
    /// Not written by `evaluate` (dry_run's action is stop); kept for a dry run that
    /// models terminate.
    WouldTerminate,
    /// The executor queued the notice.
    Notified,
    /// An action pending (notice given, not yet acted) was called off.
    Cancelled,
    /// Written by the Keep RPC when an operator snoozes a machine.
    Kept,
    /// The executor stopped (Azure: deallocated) the machine.
    Stopped,
    Terminated,
    /// The executor's notice or action failed (after its retries).
    Failed,
    /// Idle, but protected or managed: never acted on.
    Skipped,
    /// A notice or act held back: the breaker, the rate limit or the fleet fraction.
    Held,
}

impl Decision {
    pub const ALL: [Decision; 11] = [
        Decision::WouldNotify,
        Decision::WouldStop,
        Decision::WouldTerminate,
        Decision::Notified,
        Decision::Cancelled,
        Decision::Kept,
        Decision::Stopped,
        Decision::Terminated,
        Decision::Failed,
        Decision::Skipped,
        Decision::Held,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Decision::WouldNotify => "would_notify",
            Decision::WouldStop => "would_stop",
            Decision::WouldTerminate => "would_terminate",
            Decision::Notified => "notified",
            Decision::Cancelled => "cancelled",
            Decision::Kept => "kept",
            Decision::Stopped => "stopped",
            Decision::Terminated => "terminated",
            Decision::Failed => "failed",
            Decision::Skipped => "skipped",
            Decision::Held => "held",
        }
    }

    pub fn parse(s: &str) -> Option<Decision> {
        Decision::ALL.into_iter().find(|d| d.as_str() == s)
    }
}

impl fmt::Display for Decision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One audit row: the decision and why (one line). The evidence is the outcome's.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Audit {
    pub decision: Decision,
    pub reason: String,
}

/// What the executor is to do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Command {
    /// Tell the owners the machine is idle, and what will happen when (`None`: notify mode,
    /// nothing will).
    Notify { planned: Option<Planned> },
    /// Stop (Azure: deallocate) or terminate the machine now.
    Act(Action),
}

/// The action a notice announces.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Planned {
    pub action: Action,
    pub at: DateTime<Utc>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Action {
    Stop,
    Terminate,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Stop => "stop",
            Action::Terminate => "terminate",
        }
    }

    /// The audit row for this action done.
    pub fn done(self) -> Decision {
        match self {
            Action::Stop => Decision::Stopped,
            Action::Terminate => Decision::Terminated,
        }
    }

    /// The audit row for this action in dry_run.
    pub fn would(self) -> Decision {
        match self {
            Action::Stop => Decision::WouldStop,
            Action::Terminate => Decision::WouldTerminate,
        }
    }
}

/// A time for a reason line: `2026-11-28T09:59:00Z`.
pub(crate) fn time(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// A percentage for a reason line: at most two decimals, no trailing zeros.
pub(crate) fn pct(u: f64) -> String {
    let s = format!("{u:.2}");
    s.trim_end_matches('0').trim_end_matches('.').to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decisions_round_trip_and_percentages_read_well() {
        for d in Decision::ALL {
            assert_eq!(Decision::parse(d.as_str()), Some(d));
        }
        assert_eq!(pct(10.0), "10");
        assert_eq!(pct(0.4656), "0.47");
        assert_eq!(pct(12.5), "12.5");
    }
}
