//! Tests of the ladder: [`evaluate`] driven pass after pass by a small simulated executor
//! that applies each outcome the way `tasks::fleet` does (store the case change, write the
//! audit row, queue the notice, stop the machine). Time is `now`, given explicitly: minutes
//! from a fixed instant.
use std::collections::{BTreeMap, VecDeque};
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};

use super::*;
use crate::domain::Provider;
use crate::domain::fleet::{FleetInstance, GpuSample, InstanceState, SampleSource};

const T0: i64 = 1_800_000_000;

/// `m` minutes from T0.
fn at(m: i64) -> DateTime<Utc> {
    DateTime::from_timestamp(T0 + m * 60, 0).unwrap()
}

fn machine(i: usize) -> FleetInstance {
    FleetInstance {
        provider: Provider::Aws,
        id: format!("i-{i}"),
        name: format!("gpu-{i}"),
        scope: "us-east-1".into(),
        resource: format!("i-{i}"),
        region: "us-east-1".into(),
        zone: "us-east-1a".into(),
        instance_type: "g5.xlarge".into(),
        gpu_model: Some("A10G".into()),
        gpu_count: 1,
        labels: BTreeMap::new(),
        launched_at: Some(at(-24 * 60)),
        state: InstanceState::Running,
        private_hostname: format!("ip-10-0-0-{i}.ec2.internal"),
        cloud_protection: None,
        managed_by: None,
    }
}

struct Machine {
    inst: FleetInstance,
    /// Samples planned by `Sim::feed`, delivered to the window when their time comes.
    pending: VecDeque<GpuSample>,
    window: SampleWindow,
    case: Option<Case>,
    kept_until: Option<DateTime<Utc>>,
    /// The executor's acts on this machine fail (a 500 after retries).
    fails: bool,
    /// The inventory does not see the machine's state change (a stale poll).
    stale: bool,
    /// The policy stopped it.
    by_policy: bool,
}

#[derive(Clone, Debug, PartialEq)]
struct Row {
    minute: i64,
    machine: usize,
    decision: Decision,
    reason: String,
}

struct Sim {
    policy: IdlePolicy,
    m: Vec<Machine>,
    rows: Vec<Row>,
    notices: Vec<(i64, usize, Option<Planned>)>,
    acts: Vec<DateTime<Utc>>,
    /// Overrides the newest sample time (None = from the windows).
    newest: Option<Option<DateTime<Utc>>>,
    last: Vec<Outcome>,
}

impl Sim {
    fn new(mode: IdleMode, n: usize) -> Sim {
        Sim {
            policy: IdlePolicy {
                mode,
                ..IdlePolicy::default()
            },
            m: (0..n)
                .map(|i| Machine {
                    inst: machine(i),
                    pending: VecDeque::new(),
                    window: SampleWindow::new(),
                    case: None,
                    kept_until: None,
                    fails: false,
                    stale: false,
                    by_policy: false,
                })
                .collect(),
            rows: Vec::new(),
            notices: Vec::new(),
            acts: Vec::new(),
            newest: None,
            last: Vec::new(),
        }
    }

    /// Readings every 15 s from minute `from` (inclusive) to `to` (exclusive), all GPUs,
    /// delivered by the first pass at or after their time.
    fn feed(&mut self, i: usize, from: i64, to: i64, util: f64) {
        let m = &mut self.m[i];
        for s in (from * 60..to * 60).step_by(15) {
            for g in 0..m.inst.gpu_count.max(1) {
                m.pending.push_back(GpuSample {
                    instance_id: m.inst.id.clone(),
                    gpu: g.to_string(),
                    at: DateTime::from_timestamp(T0 + s, 0).unwrap(),
                    utilization_percent: util,
                    memory_used_mib: Some(1024.0),
                    power_watts: Some(65.0 + util),
                    source: SampleSource::Push,
                });
            }
        }
        m.pending.make_contiguous().sort_by_key(|s| s.at);
    }

    fn deliver(&mut self, now: DateTime<Utc>) {
        for m in &mut self.m {
            while m.pending.front().is_some_and(|s| s.at <= now) {
                let s = m.pending.pop_front().unwrap();
                assert!(m.window.push(&s));
            }
        }
    }

    fn feed_all(&mut self, from: i64, to: i64, util: f64) {
        for i in 0..self.m.len() {
            self.feed(i, from, to, util);
        }
    }

    fn fleet(&self, now: DateTime<Utc>) -> FleetView {
        let hour_ago = now - TimeDelta::hours(1);
        FleetView {
            actions_last_hour: self.acts.iter().filter(|t| **t > hour_ago).count() as u32,
            stopped_by_policy: self
                .m
                .iter()
                .filter(|m| m.by_policy && m.inst.state.not_billed())
                .count() as u32,
            fleet_size: self.m.len() as u32,
            last_sample_at: self
                .newest
                .unwrap_or_else(|| self.m.iter().filter_map(|m| m.window.last_at()).max()),
        }
    }

    /// One pass at minute `minute`, applied.
    fn pass(&mut self, minute: i64) -> &[Outcome] {
        let now = at(minute);
        self.deliver(now);
        let (from, to) = self.policy.window_at(now);
        let fleet = self.fleet(now);
        let views: Vec<InstanceView> = self
            .m
            .iter()
            .map(|m| InstanceView {
                instance: &m.inst,
                summary: m.window.summary(from, to),
                case: m.case.clone(),
                kept_until: m.kept_until,
            })
            .collect();
        let out = evaluate(&self.policy, now, &views, &fleet);
        drop(views);
        for o in &out {
            let m = &mut self.m[o.index];
            match &o.case {
                CaseChange::Keep => {}
                CaseChange::Open(c) => {
                    assert!(m.case.is_none(), "open over an open case");
                    m.case = Some(c.clone());
                }
                CaseChange::Update(c) => m.case = Some(c.clone()),
                CaseChange::Close => m.case = None,
            }
            let mut row = |decision, reason: String| {
                self.rows.push(Row {
                    minute,
                    machine: o.index,
                    decision,
                    reason,
                })
            };
            if let Some(a) = &o.audit {
                row(a.decision, a.reason.clone());
            }
            match &o.command {
                None => {}
                Some(Command::Notify { planned }) => {
                    row(Decision::Notified, o.describe());
                    self.notices.push((minute, o.index, *planned));
                }
                Some(Command::Act(action)) => {
                    if m.fails {
                        row(Decision::Failed, "HTTP 500 after 3 tries".into());
                    } else {
                        row(action.done(), o.describe());
                        self.acts.push(now);
                        m.by_policy = true;
                        if !m.stale {
                            m.inst.state = match action {
                                Action::Stop => InstanceState::Stopped,
                                Action::Terminate => InstanceState::Terminated,
                            };
                        }
                    }
                }
            }
        }
        self.last = out;
        &self.last
    }

    fn passes(&mut self, from: i64, to: i64) {
        for minute in from..to {
            self.pass(minute);
        }
    }

    fn decisions(&self) -> Vec<(i64, usize, Decision)> {
        self.rows
            .iter()
            .map(|r| (r.minute, r.machine, r.decision))
            .collect()
    }
}

use Decision::*;

#[test]
fn an_idle_machine_gets_notice_then_the_action_after_the_grace_period() {
    for (mode, action, done) in [
        (IdleMode::Stop, Action::Stop, Stopped),
        (IdleMode::Terminate, Action::Terminate, Terminated),
    ] {
        let mut sim = Sim::new(mode, 2);
        sim.feed(0, -60, 120, 0.5);
        sim.feed(1, -60, 120, 85.0);
        let first = sim.pass(0);
        assert_eq!(first[0].verdict, Verdict::Idle);
        assert_eq!(first[1].verdict, Verdict::Busy);
        assert!(first[0].audit.is_none(), "the executor writes Notified");
        assert_eq!(
            first[0].command,
            Some(Command::Notify {
                planned: Some(Planned { action, at: at(15) })
            })
        );
        assert!(matches!(first[0].case, CaseChange::Open(ref c) if c.due_at == at(15)));
        sim.passes(1, 90);
        assert_eq!(
            sim.decisions(),
            vec![(0, 0, Notified), (15, 0, done)],
            "{mode:?}"
        );
        assert!(
            sim.m[0].case.is_none(),
            "closed once the inventory shows it stopped"
        );
        assert_eq!(sim.m[1].inst.state, InstanceState::Running);
        assert!(sim.m[1].case.is_none());
    }
}

#[test]
fn machines_the_policy_never_touches() {
    type Setup = fn(&mut Sim);
    let cases: Vec<(&str, Setup, Vec<Decision>)> = vec![
        ("busy", |s| s.feed(0, -60, 300, 10.0), vec![]),
        (
            "young",
            |s| s.policy.min_age = Duration::from_secs(48 * 3600),
            vec![],
        ),
        (
            "launch time unknown",
            |s| s.m[0].inst.launched_at = None,
            vec![],
        ),
        (
            "protect tag",
            |s| {
                s.m[0]
                    .inst
                    .labels
                    .insert("bursar.io/protect".into(), "true".into());
            },
            vec![Skipped],
        ),
        (
            "cloud protection",
            |s| s.m[0].inst.cloud_protection = Some("disableApiStop".into()),
            vec![Skipped],
        ),
        (
            "Auto Scaling group",
            |s| {
                s.m[0]
                    .inst
                    .labels
                    .insert("aws:autoscaling:groupName".into(), "gpu".into());
            },
            vec![Skipped],
        ),
        (
            "scale set",
            |s| s.m[0].inst.managed_by = Some("scale set vmss-1".into()),
            vec![Skipped],
        ),
        (
            "excluded region",
            |s| s.policy.selectors.exclude_regions = vec!["us-east-1".into()],
            vec![],
        ),
        (
            "other provider selected",
            |s| s.policy.selectors.providers = vec![Provider::Gcp],
            vec![],
        ),
        ("kept", |s| s.m[0].kept_until = Some(at(500)), vec![]),
        (
            "stopped",
            |s| s.m[0].inst.state = InstanceState::Stopped,
            vec![],
        ),
        (
            "pending",
            |s| s.m[0].inst.state = InstanceState::Pending,
            vec![],
        ),
        ("no samples", |_| {}, vec![]),
    ];
    for (name, setup, want) in cases {
        for mode in IdleMode::ALL {
            let mut sim = Sim::new(mode, 1);
            if name != "no samples" {
                sim.feed(0, -60, 300, 0.2);
            }
            setup(&mut sim);
            sim.passes(0, 300);
            let got: Vec<Decision> = sim.rows.iter().map(|r| r.decision).collect();
            assert_eq!(got, want, "{name} in {mode:?}: {:?}", sim.rows);
            assert!(sim.notices.is_empty() && sim.acts.is_empty(), "{name}");
            let verdict = &sim.last[0].verdict;
            let want_verdict = match name {
                "busy" => "busy",
                "no samples" => "unknown",
                _ => "skipped",
            };
            assert_eq!(verdict.as_str(), want_verdict, "{name}");
        }
    }
}

#[test]
fn a_skipped_machine_says_why() {
    let mut sim = Sim::new(IdleMode::Stop, 1);
    sim.feed(0, -60, 10, 0.2);
    sim.m[0]
        .inst
        .labels
        .insert("eks:nodegroup-name".into(), "gpu-ng".into());
    sim.pass(0);
    let o = &sim.last[0];
    assert_eq!(
        o.verdict,
        Verdict::Skipped(SkipReason::Managed(
            "EKS node group: eks:nodegroup-name=gpu-ng".into()
        ))
    );
    assert_eq!(o.activity, Activity::Idle);
    assert!(
        sim.rows[0]
            .reason
            .starts_with("idle, but managed by EKS node group: eks:nodegroup-name=gpu-ng"),
        "{}",
        sim.rows[0].reason
    );
    // Once per idle episode: busy ends it, idle again is a new one.
    sim.passes(1, 10);
    sim.feed(0, 10, 11, 50.0);
    sim.feed(0, 11, 100, 0.2);
    sim.passes(10, 100);
    assert_eq!(sim.decisions(), vec![(0, 0, Skipped), (42, 0, Skipped)]);
}

#[test]
fn unknown_is_never_idle() {
    type Setup = fn(&mut Sim);
    let cases: Vec<(&str, Setup, UnknownWhy)> = vec![
        ("no samples", |_| {}, UnknownWhy::TooFewSamples),
        (
            "two readings, three needed",
            |s| {
                s.feed(0, -20, -19, 0.0);
                s.deliver(at(-19));
                s.m[0].window.prune(at(-19) - TimeDelta::seconds(30));
                assert_eq!(s.m[0].window.len(), 2);
            },
            UnknownWhy::TooFewSamples,
        ),
        (
            "seven of eight GPUs",
            |s| {
                s.m[0].inst.gpu_count = 7;
                s.feed(0, -60, 10, 0.0);
                s.m[0].inst.gpu_count = 8;
            },
            UnknownWhy::MissingGpus,
        ),
        (
            "only the last 5 minutes",
            |s| s.feed(0, -6, 10, 0.0),
            UnknownWhy::Gap,
        ),
        (
            "nothing for the last 15 minutes",
            |s| s.feed(0, -60, -16, 0.0),
            UnknownWhy::Gap,
        ),
        (
            "a hole of 12 minutes",
            |s| {
                s.feed(0, -60, -20, 0.0);
                s.feed(0, -8, 10, 0.0);
            },
            UnknownWhy::Gap,
        ),
    ];
    for (name, setup, why) in cases {
        let mut sim = Sim::new(IdleMode::Stop, 1);
        setup(&mut sim);
        sim.newest = Some(Some(at(0)));
        let o = &sim.pass(0)[0];
        assert_eq!(o.verdict, Verdict::Unknown, "{name}");
        assert_eq!(o.activity, Activity::Unknown(why), "{name}");
        assert!(o.describe().starts_with("unknown: "), "{}", o.describe());
        assert_eq!(o.case, CaseChange::Keep, "{name}");
        assert!(o.command.is_none() && o.audit.is_none(), "{name}");
    }
    // The boundary: a stretch of exactly window / min_samples is allowed.
    let mut sim = Sim::new(IdleMode::Stop, 1);
    sim.feed(0, -21, 10, 0.0);
    assert_eq!(sim.pass(0)[0].verdict, Verdict::Idle);
}

#[test]
fn activity_during_grace_cancels_once_and_a_new_episode_starts_over() {
    let mut sim = Sim::new(IdleMode::Stop, 1);
    sim.feed(0, -60, 5, 0.0);
    sim.feed(0, 5, 6, 80.0);
    sim.feed(0, 6, 200, 0.0);
    sim.passes(0, 100);
    // Busy at minute 5 is in the window from pass 6 (the lag is only for completeness,
    // but minute 5's readings are newer than pass 5's window end and count there too).
    // It leaves the window at 5 + 1 (its last reading) + 30 + 1 (lag) = 37.
    assert_eq!(
        sim.decisions(),
        vec![
            (0, 0, Notified),
            (5, 0, Cancelled),
            (37, 0, Notified),
            (52, 0, Stopped)
        ]
    );
    let cancel = &sim.rows[1].reason;
    assert!(
        cancel.contains("busy: max 80% (after the window) ≥ 10%"),
        "{cancel}"
    );
    assert!(cancel.contains("is cancelled"), "{cancel}");
}

#[test]
fn fresh_activity_within_the_lag_cancels_at_once() {
    let mut sim = Sim::new(IdleMode::Stop, 1);
    sim.feed(0, -60, 15, 1.0);
    sim.passes(0, 15);
    // 20 s before the due pass: newer than the window's end, still activity.
    sim.m[0].window.push(&GpuSample {
        instance_id: "i-0".into(),
        gpu: "0".into(),
        at: at(15) - TimeDelta::seconds(20),
        utilization_percent: 99.0,
        memory_used_mib: None,
        power_watts: None,
        source: SampleSource::Dcgm,
    });
    let o = &sim.pass(15)[0];
    assert_eq!(o.verdict, Verdict::Busy);
    assert_eq!(o.command, None);
    assert_eq!(sim.decisions(), vec![(0, 0, Notified), (15, 0, Cancelled)]);
}

#[test]
fn a_late_busy_sample_for_the_past_cancels_when_it_arrives() {
    let mut sim = Sim::new(IdleMode::Stop, 1);
    sim.feed(0, -60, 30, 1.0);
    sim.passes(0, 10);
    // Arrives at minute 10, dated minute 4: out of order, inside the window.
    sim.m[0].window.push(&GpuSample {
        instance_id: "i-0".into(),
        gpu: "0".into(),
        at: at(4),
        utilization_percent: 40.0,
        memory_used_mib: None,
        power_watts: None,
        source: SampleSource::Prometheus,
    });
    sim.passes(10, 20);
    assert_eq!(sim.decisions(), vec![(0, 0, Notified), (10, 0, Cancelled)]);
    assert!(sim.acts.is_empty());
}

#[test]
fn unknown_during_grace_waits_and_never_acts_on_unknown() {
    let mut sim = Sim::new(IdleMode::Stop, 1);
    sim.feed(0, -60, 3, 1.0);
    sim.feed(0, 25, 100, 1.0);
    sim.passes(0, 46);
    // Due at 15; no data from 3 to 25. The window only closes over the hole once its
    // start is within 10 minutes (window / min_samples) of minute 25: pass 46.
    assert_eq!(sim.decisions(), vec![(0, 0, Notified)]);
    assert_eq!(sim.last[0].activity, Activity::Unknown(UnknownWhy::Gap));
    assert!(sim.m[0].case.is_some(), "still waiting");
    sim.pass(46);
    assert_eq!(sim.decisions(), vec![(0, 0, Notified), (46, 0, Stopped)]);
}

#[test]
fn kept_protected_managed_or_stopped_during_grace_cancels() {
    type Change = fn(&mut Machine);
    let cases: Vec<(&str, Change, bool)> = vec![
        ("kept", |m| m.kept_until = Some(at(240)), false),
        (
            "protected",
            |m| {
                m.inst
                    .labels
                    .insert("bursar.io/protect".into(), "true".into());
            },
            true,
        ),
        (
            "managed",
            |m| {
                m.inst
                    .labels
                    .insert("kubernetes.io/cluster/prod".into(), "owned".into());
            },
            true,
        ),
        (
            "stopped by its owner",
            |m| m.inst.state = InstanceState::Stopped,
            false,
        ),
        ("restarted", |m| m.inst.launched_at = Some(at(7)), false),
    ];
    // Until the restarted one is old enough again (7 + 30).
    for (name, change, skipped_after) in cases {
        let mut sim = Sim::new(IdleMode::Stop, 1);
        sim.feed(0, -60, 200, 1.0);
        sim.passes(0, 8);
        change(&mut sim.m[0]);
        sim.passes(8, 37);
        assert_eq!(
            sim.decisions(),
            vec![(0, 0, Notified), (8, 0, Cancelled)],
            "{name}"
        );
        assert!(sim.acts.is_empty(), "{name}");
        // Protected/managed: the cancel leaves a skipped case, so no Skipped row follows.
        let stage = sim.m[0].case.as_ref().map(|c| c.stage);
        assert_eq!(
            stage == Some(Stage::Skipped),
            skipped_after,
            "{name}: {stage:?}"
        );
    }
}

#[test]
fn dry_run_records_what_would_happen_once_and_touches_nothing() {
    let mut sim = Sim::new(IdleMode::DryRun, 2);
    sim.feed(0, -60, 300, 0.3);
    sim.feed(1, -60, 300, 60.0);
    sim.passes(0, 300);
    assert_eq!(
        sim.decisions(),
        vec![(0, 0, WouldNotify), (15, 0, WouldStop)]
    );
    assert!(sim.notices.is_empty() && sim.acts.is_empty());
    assert_eq!(sim.m[0].inst.state, InstanceState::Running);
    let notify = &sim.rows[0].reason;
    assert!(
        notify.starts_with("idle: max 0.3% < 10% over 121 readings of 1 GPU"),
        "{notify}"
    );
    assert!(
        notify.ends_with("would notify the owners and stop at 2027-01-15T08:15:00Z"),
        "{notify}"
    );
    assert!(
        sim.rows[1].reason.ends_with("would stop"),
        "{}",
        sim.rows[1].reason
    );
    // Busy ends the episode quietly (nothing was pending); idle again is a new one.
    sim.feed(0, 300, 301, 90.0);
    sim.feed(0, 301, 400, 0.3);
    sim.passes(300, 400);
    assert_eq!(
        sim.decisions()[2..],
        [(332, 0, WouldNotify), (347, 0, WouldStop)]
    );
}

#[test]
fn notify_mode_notifies_once_per_episode_and_never_acts() {
    let mut sim = Sim::new(IdleMode::Notify, 1);
    sim.feed(0, -60, 300, 0.3);
    sim.feed(0, 300, 301, 90.0);
    sim.feed(0, 301, 500, 0.3);
    sim.passes(0, 500);
    assert_eq!(sim.decisions(), vec![(0, 0, Notified), (332, 0, Notified)]);
    assert_eq!(sim.notices, vec![(0, 0, None), (332, 0, None)]);
    assert!(sim.acts.is_empty());
}

#[test]
fn the_rate_limit_holds_acts_back_once_and_serves_the_oldest_due_first() {
    let mut sim = Sim::new(IdleMode::Stop, 5);
    sim.policy.max_actions_per_hour = 2;
    sim.policy.max_fleet_fraction = 1.0;
    sim.feed_all(-60, 300, 0.0);
    // Machine i is kept until minute 4 - i: notices at 4, 3, 2, 1, 0; due 19, 18, ..., 15.
    for i in 0..5 {
        sim.m[i].kept_until = Some(at(4 - i as i64));
    }
    sim.passes(0, 200);
    let acts: Vec<(i64, usize, Decision)> = sim
        .decisions()
        .into_iter()
        .filter(|d| d.2 != Notified)
        .collect();
    assert_eq!(
        acts,
        vec![
            (15, 4, Stopped),
            (16, 3, Stopped),
            (17, 2, Held),
            (18, 1, Held),
            (19, 0, Held),
            (75, 2, Stopped), // the act of minute 15 is an hour old
            (76, 1, Stopped),
            (135, 0, Stopped),
        ]
    );
    let held = &sim.rows.iter().find(|r| r.decision == Held).unwrap().reason;
    assert!(
        held.contains("rate limit: 2 actions in the past hour, max_actions_per_hour = 2"),
        "{held}"
    );
}

#[test]
fn several_due_in_one_pass_count_against_the_limit_together() {
    let mut sim = Sim::new(IdleMode::Stop, 6);
    sim.policy.max_actions_per_hour = 3;
    sim.policy.max_fleet_fraction = 1.0;
    sim.feed_all(-60, 100, 0.0);
    sim.passes(0, 16);
    let at15: Vec<(usize, Decision)> = sim
        .decisions()
        .into_iter()
        .filter(|d| d.0 == 15)
        .map(|d| (d.1, d.2))
        .collect();
    assert_eq!(
        at15,
        vec![
            (0, Stopped),
            (1, Stopped),
            (2, Stopped),
            (3, Held),
            (4, Held),
            (5, Held)
        ]
    );
}

#[test]
fn the_fleet_fraction_caps_machines_stopped_at_once() {
    let mut sim = Sim::new(IdleMode::Stop, 8);
    sim.feed_all(-60, 300, 0.0);
    sim.passes(0, 40);
    // 0.25 × 8 = 2.
    let stopped = |s: &Sim| s.rows.iter().filter(|r| r.decision == Stopped).count();
    let held = |s: &Sim| s.rows.iter().filter(|r| r.decision == Held).count();
    assert_eq!(stopped(&sim), 2);
    assert_eq!(held(&sim), 6, "once each, not every pass");
    let reason = &sim.rows.iter().find(|r| r.decision == Held).unwrap().reason;
    assert!(
        reason.contains("fleet fraction: 2 of 8 GPU machines stopped by the policy, at most 2"),
        "{reason}"
    );
    // Someone starts machine 0 again: a slot frees, the oldest held case is served.
    sim.m[0].inst.state = InstanceState::Running;
    sim.m[0].inst.launched_at = Some(at(40));
    sim.pass(40);
    assert_eq!(stopped(&sim), 3);
    assert_eq!(sim.rows.last().unwrap().machine, 2);

    // A tiny fleet: 3 machines at 0.25 still get one at a time; a fraction of 0 gets none.
    for (fraction, want) in [(0.25, 1), (0.0, 0)] {
        let mut sim = Sim::new(IdleMode::Stop, 3);
        sim.policy.max_fleet_fraction = fraction;
        sim.feed_all(-60, 100, 0.0);
        sim.passes(0, 60);
        assert_eq!(stopped(&sim), want, "{fraction}");
        assert_eq!(held(&sim), 3 - want, "{fraction}");
    }
}

#[test]
fn the_breaker_holds_every_notice_and_act_while_the_feed_is_silent() {
    let mut sim = Sim::new(IdleMode::Stop, 2);
    sim.policy.max_fleet_fraction = 1.0;
    sim.feed_all(-60, 200, 0.0);
    sim.newest = Some(None);
    sim.passes(0, 10);
    assert_eq!(sim.decisions(), vec![(0, 0, Held), (0, 1, Held)]);
    assert!(sim.rows[0].reason.contains("no sample received yet"));
    assert!(sim.notices.is_empty());
    // The feed resumes: notices, due 15 minutes later.
    sim.newest = None;
    sim.passes(10, 25);
    assert_eq!(sim.notices.len(), 2);
    assert_eq!(sim.notices[0].2.unwrap().at, at(25));
    // Silent again when the act is due: held, once; resumes: acts.
    sim.newest = Some(Some(at(19)));
    sim.passes(25, 30);
    sim.newest = None;
    sim.pass(30);
    assert_eq!(
        sim.decisions()[2..],
        [
            (10, 0, Notified),
            (10, 1, Notified),
            (25, 0, Held),
            (25, 1, Held),
            (30, 0, Stopped),
            (30, 1, Stopped),
        ]
    );
    assert!(
        sim.rows[4]
            .reason
            .contains("last sample at 2027-01-15T08:19:00Z, over 5m ago")
    );
    // Exactly at the limit is not silent yet.
    let mut sim = Sim::new(IdleMode::Stop, 1);
    sim.feed_all(-60, 10, 0.0);
    sim.newest = Some(Some(at(-5)));
    sim.pass(0);
    assert_eq!(sim.decisions(), vec![(0, 0, Notified)]);
}

#[test]
fn dry_run_follows_the_limits_and_the_breaker_too() {
    let mut sim = Sim::new(IdleMode::DryRun, 4);
    sim.feed_all(-60, 100, 0.0);
    sim.passes(0, 30);
    let kinds: Vec<Decision> = sim.rows.iter().map(|r| r.decision).collect();
    // 0.25 × 4 = 1 per pass (dry_run stops nothing, so nothing stays stopped).
    assert_eq!(
        kinds,
        vec![
            WouldNotify,
            WouldNotify,
            WouldNotify,
            WouldNotify,
            WouldStop,
            Held,
            Held,
            Held,
            WouldStop,
            WouldStop,
            WouldStop
        ]
    );
    let mut sim = Sim::new(IdleMode::DryRun, 1);
    sim.feed_all(-60, 100, 0.0);
    sim.newest = Some(None);
    sim.passes(0, 30);
    assert_eq!(sim.decisions(), vec![(0, 0, Held)]);
}

#[test]
fn a_failed_act_is_not_repeated_at_once_and_the_ladder_starts_over_after_grace() {
    let mut sim = Sim::new(IdleMode::Stop, 1);
    sim.m[0].fails = true;
    sim.feed(0, -60, 200, 0.0);
    sim.passes(0, 50);
    assert_eq!(
        sim.decisions(),
        vec![
            (0, 0, Notified),
            (15, 0, Failed),
            (31, 0, Notified),
            (46, 0, Failed)
        ]
    );
    assert_eq!(
        sim.m[0].inst.state,
        InstanceState::Running,
        "never recorded as stopped"
    );
}

#[test]
fn a_stale_inventory_after_an_act_does_not_act_twice() {
    let mut sim = Sim::new(IdleMode::Stop, 1);
    sim.m[0].stale = true;
    sim.feed(0, -60, 200, 0.0);
    sim.passes(0, 25);
    assert_eq!(sim.decisions(), vec![(0, 0, Notified), (15, 0, Stopped)]);
    // The next poll sees it stopped: the case closes quietly.
    sim.m[0].inst.state = InstanceState::Stopped;
    sim.passes(25, 60);
    assert_eq!(sim.rows.len(), 2);
    assert!(sim.m[0].case.is_none());
}

#[test]
fn a_changed_mode_starts_over_with_a_notice_in_the_new_mode() {
    let mut sim = Sim::new(IdleMode::DryRun, 1);
    sim.feed(0, -60, 200, 0.0);
    sim.passes(0, 5);
    sim.policy.mode = IdleMode::Stop;
    sim.passes(5, 30);
    assert_eq!(
        sim.decisions(),
        vec![(0, 0, WouldNotify), (5, 0, Notified), (20, 0, Stopped)]
    );
}

#[test]
fn steady_states_write_nothing() {
    let mut sim = Sim::new(IdleMode::DryRun, 5);
    sim.feed(0, -60, 600, 50.0); // busy
    sim.feed(1, -60, 600, 0.0); // idle: would notify, would stop, then quiet
    sim.feed(2, -60, 600, 0.0); // idle and protected
    sim.m[2]
        .inst
        .labels
        .insert("bursar.io/protect".into(), "yes".into());
    sim.m[2].inst.cloud_protection = Some("deletionProtection".into());
    sim.feed(3, -60, -40, 0.0); // unknown
    sim.feed(4, -60, 600, 0.0); // idle, kept for a while
    sim.m[4].kept_until = Some(at(100));
    sim.passes(0, 600);
    assert_eq!(
        sim.decisions(),
        vec![
            (0, 1, WouldNotify),
            (0, 2, Skipped),
            (15, 1, WouldStop),
            (100, 4, WouldNotify),
            (115, 4, WouldStop),
        ]
    );
}

#[test]
fn outcomes_carry_evidence_that_serialises() {
    let mut sim = Sim::new(IdleMode::Stop, 1);
    sim.m[0].inst.gpu_count = 8;
    sim.feed(0, -60, 10, 0.4656);
    let o = sim.pass(0)[0].clone();
    let json = serde_json::to_value(&o.evidence).unwrap();
    assert_eq!(json["samples"], 121, "both ends included");
    assert_eq!(json["gpus"], 8);
    assert_eq!(json["gpu_count"], 8);
    assert_eq!(json["threshold_percent"], 10.0);
    assert_eq!(json["min_samples"], 3);
    assert_eq!(json["from"], "2027-01-15T07:29:00Z");
    assert_eq!(json["to"], "2027-01-15T07:59:00Z");
    assert!((json["max_util_percent"].as_f64().unwrap() - 0.4656).abs() < 1e-6);
    assert!((json["max_power_watts"].as_f64().unwrap() - 65.4656).abs() < 1e-4);
    assert_eq!(json["max_memory_mib"], 1024.0);
    assert_eq!(
        o.describe(),
        "idle: max 0.47% < 10% over 121 readings of 8 GPUs from 2027-01-15T07:29:00Z to 2027-01-15T07:59:00Z"
    );
}

#[test]
fn the_window_ends_lag_before_now() {
    let p = IdlePolicy::default();
    let (from, to) = p.window_at(at(0));
    assert_eq!(to, at(-1));
    assert_eq!(from, at(-31));
    let huge = IdlePolicy {
        window: Duration::from_secs(u64::MAX),
        ..IdlePolicy::default()
    };
    assert_eq!(huge.window_at(at(0)).0, DateTime::<Utc>::MIN_UTC);
}
