//! bursar: cost-aware placement and FinOps for jobs on AWS, GCP and Azure.
//!
//! Codemap (see ARCHITECTURE.md), from the bottom layer up: `domain` is pure (money, offers,
//! the catalog, placement, budgets, forecasts); `metrics` holds the Prometheus families the
//! layers above record into; `remote` holds what cloud clients share
//! (HTTP and AWS SDK settings, retries, `SourceError`); `clouds` adapts price feeds behind
//! `PriceSource` and `billing` reads cost exports; `notify` sends alerts (email, Slack) from
//! the outbox and `report` renders the monthly report page; `store` persists to SQLite or Postgres behind one `Store`; `config` reads TOML
//! and BURSAR_* overrides; `tasks` runs the long-running loops (polling, ingest, budget
//! evaluation, alert delivery); `wiring` builds the enabled sources from config; `server` is
//! the gRPC glue (validate, convert, map errors); `cli` is the command line. `dashboards`
//! (pure, beside `domain`) reads the Grafana dashboards and expands their queries as Grafana
//! would.
#![forbid(unsafe_code)]
// Standard output goes through `cli::out` (`outln!`), which ends quietly on a closed pipe.
#![warn(clippy::print_stdout)]

pub mod billing;
pub mod cli;
pub mod clouds;
pub mod config;
pub mod dashboards;
pub mod domain;
pub mod fleet;
pub mod metrics;
pub mod notify;
pub mod remote;
pub mod report;
pub mod serde_duration;
pub mod server;
pub mod store;
pub mod tasks;
pub mod utilization;
pub mod wiring;

pub mod proto {
    #![allow(clippy::all, missing_docs)]
    tonic::include_proto!("bursar.v1");
    pub const FILE_DESCRIPTOR_SET: &[u8] = tonic::include_file_descriptor_set!("bursar_descriptor");
}
