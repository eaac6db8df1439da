//! The idle-GPU policy, pure: what counts as idle, who is never touched, and the ladder
//! (dry-run → notice → grace → stop/terminate) with its blast-radius limits. `IdlePolicy` is
//! the validated `[idle_gpu]` config. No I/O and no clock: every function takes `now`.
use std::time::Duration;

use crate::domain::Provider;
use crate::domain::budget::Channels;

/// How far down the ladder the policy may go.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
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
