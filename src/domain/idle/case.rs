//! `Case`: where one idle instance stands on the ladder between two passes (notice given,
//! action due, held back, acted), which the caller stores (`fleet_case`) and hands back to
//! the next pass; and `CaseChange`, what a pass does to it.
use std::fmt;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::IdleMode;

/// One idle episode of one instance, from the pass that found it idle until it turns busy,
/// stops running, is kept, or (stop/terminate) `grace` after the act.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Case {
    pub opened_at: DateTime<Utc>,
    /// When notice went out (dry_run: when "would notify" was recorded). `None` while the
    /// notice itself is held back by the breaker.
    pub notified_at: Option<DateTime<Utc>>,
    /// When the action is due: notice + grace.
    pub due_at: DateTime<Utc>,
    /// The mode the case was opened under. A pass under another mode starts a new case.
    pub mode: IdleMode,
    pub stage: Stage,
    /// When the act was commanded (dry_run: when "would stop" was recorded).
    pub acted_at: Option<DateTime<Utc>>,
}

/// Where the case is. Stored as [`Stage::as_str`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Stage {
    /// Notice given; waiting for `due_at` (notify mode: waiting for the machine to turn
    /// busy; it never acts).
    Waiting,
    /// The next step (the notice, or the act) is held back; the reason was audited once.
    Held(Hold),
    /// The act was commanded (dry_run: recorded as "would stop"); nothing more is said
    /// until the machine stops running or turns busy.
    Acted,
    /// Idle, but protected or managed: audited once as `Skipped`, never acted on.
    Skipped,
}

/// Why an act (or a notice) is held back.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Hold {
    /// The breaker: the utilisation feed is silent.
    FeedSilent,
    /// `max_actions_per_hour` reached.
    RateLimit,
    /// `max_fleet_fraction` of the GPU fleet already stopped by the policy.
    FleetFraction,
}

impl Hold {
    pub fn as_str(self) -> &'static str {
        match self {
            Hold::FeedSilent => "feed_silent",
            Hold::RateLimit => "rate_limit",
            Hold::FleetFraction => "fleet_fraction",
        }
    }
}

impl Stage {
    /// `waiting`, `held:feed_silent`, `held:rate_limit`, `held:fleet_fraction`, `acted`,
    /// `skipped`: the store's column.
    pub fn as_str(self) -> &'static str {
        match self {
            Stage::Waiting => "waiting",
            Stage::Held(Hold::FeedSilent) => "held:feed_silent",
            Stage::Held(Hold::RateLimit) => "held:rate_limit",
            Stage::Held(Hold::FleetFraction) => "held:fleet_fraction",
            Stage::Acted => "acted",
            Stage::Skipped => "skipped",
        }
    }

    /// `as_str`'s words back; `None` for anything else.
    pub fn parse(s: &str) -> Option<Stage> {
        [
            Stage::Waiting,
            Stage::Held(Hold::FeedSilent),
            Stage::Held(Hold::RateLimit),
            Stage::Held(Hold::FleetFraction),
            Stage::Acted,
            Stage::Skipped,
        ]
        .into_iter()
        .find(|st| st.as_str() == s)
    }
}

impl fmt::Display for Stage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a pass does to an instance's case. `Open` and `Update` both carry the whole case
/// to store (an upsert serves both).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CaseChange {
    /// Nothing changes.
    Keep,
    /// A new case (there was none).
    Open(Case),
    /// The case changes (or is replaced by a new one, when the mode changed).
    Update(Case),
    /// The case ends: delete it.
    Close,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stages_round_trip_through_their_words() {
        for st in [
            Stage::Waiting,
            Stage::Held(Hold::FeedSilent),
            Stage::Held(Hold::RateLimit),
            Stage::Held(Hold::FleetFraction),
            Stage::Acted,
            Stage::Skipped,
        ] {
            assert_eq!(Stage::parse(st.as_str()), Some(st));
        }
        assert_eq!(Stage::parse("held"), None);
    }
}
