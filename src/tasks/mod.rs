//! Long-running work: price polling, catalog refresh and seeding (`poller`), the SkyPilot
//! catalog import (`import`), the placement decision log (`decisions`), billing ingest
//! (`ingest`, `watch`, `cost_explorer`), budget evaluation (`budgets`) and alert delivery
//! (`alerts`), change notifications between replicas (`changes`), idle-GPU enforcement
//! (`fleet`), the monthly report's data (`report_page`) and its email (`report`); the leader
//! election (`leader`) and the singleton work it gates (`singleton`). Every loop `select!`s
//! on its work and the shutdown signal, so `server::run`
//! can wait for all of them.
pub mod alerts;
pub mod budgets;
pub mod changes;
pub mod cost_explorer;
pub mod decisions;
pub mod fleet;
pub mod import;
pub mod ingest;
pub mod leader;
pub mod poller;
pub mod report;
pub mod report_page;
pub mod singleton;
pub mod watch;

pub use poller::{PollReport, poll_once, refresh_catalog, refresh_if_changed, seed_if_empty};
