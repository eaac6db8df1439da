//! Leader-lease timing, pure: when the elector renews, when a leader may still act, and
//! when it must step down. The lease's expiry is kept by the database's clock; a leader
//! judges its own lease by a local monotonic clock, from the moment it *sent* its last
//! successful renewal (the database's expiry is at least that moment + `lease`), less a
//! safety margin for the round trip and scheduling.
use std::time::Duration;

/// The shortest lease accepted (the elector renews every third of it).
pub const MIN_LEASE: Duration = Duration::from_millis(300);

/// A lease's length and what follows from it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LeaseTiming {
    pub lease: Duration,
}

/// This replica's part.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    Follower,
    Leader { term: i64 },
}

/// What the elector does next.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step {
    /// Try to take the lease (it may be expired or released).
    Acquire,
    /// Renew it, waiting at most `within` for the database's answer.
    Renew { term: i64, within: Duration },
    /// The local deadline has passed: stop acting at once.
    StepDown { term: i64 },
}

impl LeaseTiming {
    pub fn new(lease: Duration) -> LeaseTiming {
        LeaseTiming {
            lease: lease.max(MIN_LEASE),
        }
    }

    /// How often the leader renews, and a follower tries to take over: a third of the lease,
    /// so two renewals can fail before the lease ends.
    pub fn renew_every(&self) -> Duration {
        self.lease / 3
    }

    /// Kept back from the lease for the renewal's round trip and a late wake-up: a fifth.
    pub fn margin(&self) -> Duration {
        self.lease / 5
    }

    /// How long after sending its last successful renewal the leader may act.
    pub fn act_for(&self) -> Duration {
        self.lease - self.margin()
    }

    /// Whether a leader whose last successful renewal was sent `since_renewal` ago may
    /// still act (send a message, call a cloud).
    pub fn may_act(&self, since_renewal: Duration) -> bool {
        since_renewal < self.act_for()
    }

    /// The longest a follower waits for a leader that died: its lease runs out (`lease`),
    /// then the next try (`renew_every`) takes it — under two lease periods.
    pub fn takeover_bound(&self) -> Duration {
        self.lease + self.renew_every()
    }

    /// The elector's next step for `role`, `since_renewal` after its last successful
    /// renewal was sent (ignored for a follower).
    pub fn next_step(&self, role: Role, since_renewal: Duration) -> Step {
        match role {
            Role::Follower => Step::Acquire,
            Role::Leader { term } if self.may_act(since_renewal) => Step::Renew {
                term,
                within: self.act_for() - since_renewal,
            },
            Role::Leader { term } => Step::StepDown { term },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: Duration = Duration::from_secs(1);

    #[test]
    fn renewal_and_margin_follow_the_lease() {
        let t = LeaseTiming::new(10 * S);
        assert_eq!(t.renew_every(), Duration::from_nanos(3_333_333_333));
        assert_eq!(t.margin(), 2 * S);
        assert_eq!(t.act_for(), 8 * S);
        assert!(t.takeover_bound() < 2 * t.lease);
        // Too short a lease is raised to the minimum.
        assert_eq!(LeaseTiming::new(Duration::ZERO).lease, MIN_LEASE);
    }

    #[test]
    fn a_leader_acts_only_before_its_local_deadline() {
        let t = LeaseTiming::new(10 * S);
        assert!(t.may_act(Duration::ZERO));
        assert!(t.may_act(8 * S - Duration::from_millis(1)));
        assert!(!t.may_act(8 * S));
        // A pause (SIGSTOP) longer than the lease: never.
        assert!(!t.may_act(60 * S));
    }

    #[test]
    fn the_elector_renews_within_what_is_left_and_steps_down_after() {
        let t = LeaseTiming::new(10 * S);
        assert_eq!(t.next_step(Role::Follower, 100 * S), Step::Acquire);
        assert_eq!(
            t.next_step(Role::Leader { term: 4 }, 3 * S),
            Step::Renew {
                term: 4,
                within: 5 * S
            }
        );
        assert_eq!(
            t.next_step(Role::Leader { term: 4 }, 8 * S),
            Step::StepDown { term: 4 }
        );
    }
}
