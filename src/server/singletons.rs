//! Which loops are singleton work, run only on the leader (`tasks::singleton` starts them
//! for each term and stops them when it ends): the price pollers, the Cost Explorer poll,
//! idle-GPU enforcement, the monthly report's mail and the alert outbox. They all write
//! through the fenced store. Budget evaluation runs on every replica (each refreshes its own
//! gate snapshot) and records and fires only while leading (`BudgetEngine::with_leadership`).
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::clouds::PriceSource;
use crate::config::Config;
use crate::domain::catalog::CatalogHandle;
use crate::notify::Notifier;
use crate::store::Store;
use crate::tasks::budgets::BudgetEngine;
use crate::tasks::fleet::FleetEngine;
use crate::tasks::leader::Leadership;
use crate::tasks::{self, report_page::ReportSettings};

/// What the singleton loops need; `start` is called once per term.
pub struct Singletons {
    /// The fenced store.
    pub store: Store,
    pub catalog: CatalogHandle,
    pub sources: Vec<(Arc<dyn PriceSource>, Duration)>,
    pub config: Config,
    pub budgets: Arc<BudgetEngine>,
    pub fleet: Option<Arc<FleetEngine>>,
    pub notifiers: Vec<Arc<dyn Notifier>>,
    pub leadership: Leadership,
    /// True from the shutdown signal on: the outbox stops then, before the other loops.
    pub draining: watch::Receiver<bool>,
}

impl Singletons {
    /// Spawns every singleton loop, stopped by `stop`.
    pub fn start(&self, stop: watch::Receiver<bool>) -> Vec<JoinHandle<()>> {
        let mut loops = Vec::new();
        for (source, interval) in &self.sources {
            tracing::info!(source = source.name(), ?interval, "polling enabled");
            loops.push(tokio::spawn(tasks::poller::source_loop(
                self.store.clone(),
                self.catalog.clone(),
                source.clone(),
                *interval,
                stop.clone(),
            )));
        }
        let config = &self.config;
        if config.cost_explorer.enabled {
            let ce = &config.cost_explorer;
            let settings = crate::remote::HttpSettings {
                endpoint: (!ce.endpoint.is_empty()).then(|| ce.endpoint.clone()),
                ..Default::default()
            };
            let engine = self.budgets.clone();
            tracing::info!(every = ?ce.every, lookback_days = ce.lookback_days, "Cost Explorer polling enabled");
            loops.push(tokio::spawn(tasks::cost_explorer::run_cost_explorer(
                self.store.clone(),
                settings,
                ce.every,
                ce.lookback_days,
                move || {
                    let engine = engine.clone();
                    async move {
                        if let Err(e) = engine.evaluate_all(chrono::Utc::now()).await {
                            tracing::warn!(error = %e, "budget evaluation after Cost Explorer failed");
                        }
                    }
                },
                stop.clone(),
            )));
        }
        if let Some(e) = &self.fleet {
            loops.push(tokio::spawn(tasks::fleet::run_fleet(
                e.clone(),
                stop.clone(),
            )));
        }
        // The monthly report by email, when `[report] email_to` names anyone.
        if !config.report.email_to.is_empty() {
            loops.push(tokio::spawn(tasks::report::run_report_mail(
                self.store.clone(),
                config.report.clone(),
                ReportSettings::from_config(config),
                stop.clone(),
            )));
        }
        loops.push(tokio::spawn(tasks::alerts::run_outbox(
            self.store.clone(),
            self.notifiers.clone(),
            config.alerts.clone(),
            self.leadership.clone(),
            either(stop, self.draining.clone()),
        )));
        loops
    }
}

/// A signal that turns true when either `a` or `b` does (or its sender goes).
fn either(mut a: watch::Receiver<bool>, mut b: watch::Receiver<bool>) -> watch::Receiver<bool> {
    let (tx, rx) = watch::channel(*a.borrow() || *b.borrow());
    tokio::spawn(async move {
        tokio::select! {
            _ = a.wait_for(|v| *v) => {}
            _ = b.wait_for(|v| *v) => {}
            _ = tx.closed() => return,
        }
        let _ = tx.send(true);
    });
    rx
}
