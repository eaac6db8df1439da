//! `Events`: what the service counts as it works — placement decisions, price polls, ingests,
//! budget evaluations, alert deliveries, idle-GPU audit decisions. One instance per process
//! (`metrics::global()`), recorded by the task layer and SelectProvider; each server's
//! `Exporter` registers the same families, so a scrape reads what every caller recorded.
//!
//! Label sets with a fixed, small domain (decision outcomes, idle-GPU states) are resolved
//! once, when the families are made: recording one is an index into an array and an atomic
//! add, and their series exist (at zero) from the first scrape on.
use std::collections::BTreeMap;
use std::sync::Mutex;

use chrono::{DateTime, Utc};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use crate::domain::idle::Decision;
use crate::domain::placement::Outcome;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabel {
    pub outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SourceResult {
    pub source: String,
    /// `success` or `failure`.
    pub result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct FormatLabel {
    pub format: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct FormatStatus {
    pub format: &'static str,
    /// `ok`, `rejected` or `failed`.
    pub status: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabel {
    /// `ok` or `failed`.
    pub result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ChannelLabel {
    pub channel: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StateLabel {
    pub state: &'static str,
}

/// How one ingest ended, for `Events::ingest`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IngestStatus {
    /// Stored (possibly with quarantined rows within the accepted share).
    Ok,
    /// Read but not stored: too many bad rows, or an incomplete file.
    Rejected,
    /// An error (store, unreadable file) ended it.
    Failed,
}

impl IngestStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            IngestStatus::Ok => "ok",
            IngestStatus::Rejected => "rejected",
            IngestStatus::Failed => "failed",
        }
    }
}

/// The format label of an ingest whose format was never told (it failed first).
pub const UNKNOWN_FORMAT: &str = "unknown";

pub struct Events {
    decisions: Family<OutcomeLabel, Counter>,
    /// `decisions`' series, by `Outcome as usize`.
    decided: [Counter; Outcome::ALL.len()],
    source_polls: Family<SourceResult, Counter>,
    /// Each price source's last successful poll (read at scrape time for its age).
    source_success: Mutex<BTreeMap<String, DateTime<Utc>>>,
    ingest_rows: Family<FormatLabel, Counter>,
    ingest_quarantined: Family<FormatLabel, Counter>,
    ingest_runs: Family<FormatStatus, Counter>,
    budget_evaluations: Family<ResultLabel, Counter>,
    alerts_sent: Family<ChannelLabel, Counter>,
    alerts_failed: Family<ChannelLabel, Counter>,
    alerts_pending: Gauge,
    /// 1 while this replica holds the singleton lease, else 0 (`tasks::leader`).
    leader: Gauge,
    /// The term of the lease this replica last held (0 before any).
    leader_term: Gauge,
    /// Stale-term writes the database refused (a renewal or a fenced singleton write).
    leader_refusals: Counter,
    idle_actions: Family<StateLabel, Counter>,
    /// `idle_actions`' series, by position in `Decision::ALL`.
    idle: [Counter; Decision::ALL.len()],
}

impl Default for Events {
    fn default() -> Self {
        let decisions = Family::<OutcomeLabel, Counter>::default();
        let decided = Outcome::ALL.map(|o| {
            decisions
                .get_or_create(&OutcomeLabel {
                    outcome: o.as_str(),
                })
                .clone()
        });
        let idle_actions = Family::<StateLabel, Counter>::default();
        let idle = Decision::ALL.map(|d| {
            idle_actions
                .get_or_create(&StateLabel { state: d.as_str() })
                .clone()
        });
        let budget_evaluations = Family::<ResultLabel, Counter>::default();
        for result in ["ok", "failed"] {
            // Made now, so that both series show from the first scrape.
            let _ = budget_evaluations.get_or_create(&ResultLabel { result });
        }
        Events {
            decisions,
            decided,
            source_polls: Family::default(),
            source_success: Mutex::new(BTreeMap::new()),
            ingest_rows: Family::default(),
            ingest_quarantined: Family::default(),
            ingest_runs: Family::default(),
            budget_evaluations,
            alerts_sent: Family::default(),
            alerts_failed: Family::default(),
            alerts_pending: Gauge::default(),
            leader: Gauge::default(),
            leader_term: Gauge::default(),
            leader_refusals: Counter::default(),
            idle_actions,
            idle,
        }
    }
}

impl Events {
    /// One SelectProvider request's outcome (the request path: an atomic add).
    #[inline]
    pub fn decision(&self, o: Outcome) {
        self.decided[o as usize].inc();
    }

    /// One poll of price source `source`: stored (`ok`) or failed, at `at`.
    pub fn price_poll(&self, source: &str, ok: bool, at: DateTime<Utc>) {
        self.source_polls
            .get_or_create(&SourceResult {
                source: source.to_string(),
                result: if ok { "success" } else { "failure" },
            })
            .inc();
        if ok {
            self.price_source_seen(source, at);
        }
    }

    /// Source `source` last succeeded at `at` (from a poll, or from the store at start):
    /// kept only if later than what is known.
    pub fn price_source_seen(&self, source: &str, at: DateTime<Utc>) {
        let mut m = self
            .source_success
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        match m.get_mut(source) {
            Some(t) if *t >= at => {}
            Some(t) => *t = at,
            None => {
                m.insert(source.to_string(), at);
            }
        }
    }

    /// Each source's last success, by name.
    pub fn price_source_successes(&self) -> Vec<(String, DateTime<Utc>)> {
        let m = self
            .source_success
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        m.iter().map(|(k, v)| (k.clone(), *v)).collect()
    }

    /// One ingest of a file (or Cost Explorer run) of `format`: rows stored, rows
    /// quarantined, and how it ended.
    pub fn ingest(
        &self,
        format: &'static str,
        status: IngestStatus,
        stored: u64,
        quarantined: u64,
    ) {
        let f = FormatLabel { format };
        self.ingest_rows.get_or_create(&f).inc_by(stored);
        self.ingest_quarantined
            .get_or_create(&f)
            .inc_by(quarantined);
        self.ingest_runs
            .get_or_create(&FormatStatus {
                format,
                status: status.as_str(),
            })
            .inc();
    }

    /// One budget evaluated (and recorded) or not.
    pub fn budget_evaluation(&self, ok: bool) {
        self.budget_evaluations
            .get_or_create(&ResultLabel {
                result: if ok { "ok" } else { "failed" },
            })
            .inc();
    }

    /// One outbox message sent through `channel`, or failed (to be retried).
    pub fn alert_delivery(&self, channel: &str, sent: bool) {
        let family = if sent {
            &self.alerts_sent
        } else {
            &self.alerts_failed
        };
        family
            .get_or_create(&ChannelLabel {
                channel: channel.to_string(),
            })
            .inc();
    }

    /// Outbox messages not yet delivered, as counted by the sender after its round.
    pub fn alerts_pending(&self, n: u64) {
        self.alerts_pending
            .set(i64::try_from(n).unwrap_or(i64::MAX));
    }

    /// This replica became the leader with `term` (`Some`), or stopped being it (`None`).
    pub fn leader(&self, term: Option<i64>) {
        self.leader.set(i64::from(term.is_some()));
        if let Some(t) = term {
            self.leader_term.set(t);
        }
    }

    /// The database refused a write carrying a stale leader term.
    pub fn leader_refusal(&self) {
        self.leader_refusals.inc();
    }

    /// One idle-GPU audit row written with decision `d`.
    pub fn idle_action(&self, d: Decision) {
        if let Some(i) = Decision::ALL.iter().position(|x| *x == d) {
            self.idle[i].inc();
        }
    }

    /// Registers every family (clones share their values) with `r`.
    pub fn register(&self, r: &mut Registry) {
        r.register(
            "bursar_placement_decisions",
            "SelectProvider requests by outcome (placed, no_feasible, denied_by_budget)",
            self.decisions.clone(),
        );
        r.register(
            "bursar_price_source_polls",
            "Price source polls by source and result (success, failure)",
            self.source_polls.clone(),
        );
        r.register(
            "bursar_ingest_rows",
            "Billing rows stored by ingests, by export format",
            self.ingest_rows.clone(),
        );
        r.register(
            "bursar_ingest_quarantined_rows",
            "Billing rows quarantined by ingests, by export format",
            self.ingest_quarantined.clone(),
        );
        r.register(
            "bursar_ingest_runs",
            "Ingest runs by export format and status (ok, rejected, failed)",
            self.ingest_runs.clone(),
        );
        r.register(
            "bursar_budget_evaluations",
            "Budget evaluations by result (ok, failed)",
            self.budget_evaluations.clone(),
        );
        r.register(
            "bursar_alerts_sent",
            "Alert outbox messages delivered, by channel",
            self.alerts_sent.clone(),
        );
        r.register(
            "bursar_alerts_failed",
            "Alert outbox deliveries that failed (retried later), by channel",
            self.alerts_failed.clone(),
        );
        r.register(
            "bursar_alerts_pending",
            "Alert outbox messages not yet delivered, after the sender's last round",
            self.alerts_pending.clone(),
        );
        r.register(
            "bursar_leader",
            "1 while this replica holds the singleton lease (leader), else 0",
            self.leader.clone(),
        );
        r.register(
            "bursar_leader_term",
            "The term of the singleton lease this replica last held",
            self.leader_term.clone(),
        );
        r.register(
            "bursar_leader_stale_refusals",
            "Writes carrying a stale leader term that the database refused",
            self.leader_refusals.clone(),
        );
        r.register(
            "bursar_idle_gpu_actions",
            "Idle-GPU audit decisions by state (would_notify, notified, stopped, ...)",
            self.idle_actions.clone(),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(e: &Events) -> String {
        let mut r = Registry::default();
        e.register(&mut r);
        let mut s = String::new();
        prometheus_client::encoding::text::encode(&mut s, &r).unwrap();
        s
    }

    #[test]
    fn fixed_label_sets_exist_at_zero_and_count_through_their_arrays() {
        let e = Events::default();
        let t = text(&e);
        for o in Outcome::ALL {
            let line = format!(
                "bursar_placement_decisions_total{{outcome=\"{}\"}} 0\n",
                o.as_str()
            );
            assert!(t.contains(&line), "{line} in\n{t}");
        }
        assert!(t.contains("bursar_idle_gpu_actions_total{state=\"would_notify\"} 0\n"));
        e.decision(Outcome::DeniedByBudget);
        e.decision(Outcome::DeniedByBudget);
        e.idle_action(Decision::Stopped);
        let t = text(&e);
        assert!(
            t.contains("bursar_placement_decisions_total{outcome=\"denied_by_budget\"} 2\n"),
            "{t}"
        );
        assert!(
            t.contains("bursar_placement_decisions_total{outcome=\"placed\"} 0\n"),
            "{t}"
        );
        assert!(
            t.contains("bursar_idle_gpu_actions_total{state=\"stopped\"} 1\n"),
            "{t}"
        );
    }

    #[test]
    fn ingests_polls_budgets_and_alerts_are_counted_by_their_labels() {
        let e = Events::default();
        e.ingest("focus", IngestStatus::Ok, 1200, 3);
        e.ingest("focus", IngestStatus::Rejected, 0, 40);
        e.price_poll("aws-spot", true, Utc::now());
        e.price_poll("aws-spot", false, Utc::now());
        e.budget_evaluation(true);
        e.alert_delivery("email", true);
        e.alert_delivery("slack", false);
        e.alerts_pending(4);
        e.leader(Some(7));
        e.leader(None);
        e.leader_refusal();
        let t = text(&e);
        for line in [
            "bursar_ingest_rows_total{format=\"focus\"} 1200\n",
            "bursar_ingest_quarantined_rows_total{format=\"focus\"} 43\n",
            "bursar_ingest_runs_total{format=\"focus\",status=\"rejected\"} 1\n",
            "bursar_price_source_polls_total{source=\"aws-spot\",result=\"failure\"} 1\n",
            "bursar_budget_evaluations_total{result=\"ok\"} 1\n",
            "bursar_budget_evaluations_total{result=\"failed\"} 0\n",
            "bursar_alerts_sent_total{channel=\"email\"} 1\n",
            "bursar_alerts_failed_total{channel=\"slack\"} 1\n",
            "bursar_alerts_pending 4\n",
            "bursar_leader 0\n",
            "bursar_leader_term 7\n",
            "bursar_leader_stale_refusals_total 1\n",
        ] {
            assert!(t.contains(line), "{line} in\n{t}");
        }
    }

    #[test]
    fn a_source_keeps_its_latest_success() {
        let e = Events::default();
        let t0 = Utc::now();
        let t1 = t0 + chrono::Duration::seconds(60);
        e.price_source_seen("azure", t1);
        e.price_source_seen("azure", t0);
        e.price_poll("gcp", false, t1);
        assert_eq!(e.price_source_successes(), vec![("azure".to_string(), t1)]);
    }
}
