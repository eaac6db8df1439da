//! bursar: cost-aware placement and FinOps for jobs on AWS, GCP and Azure.
//!
//! Codemap (see ARCHITECTURE.md): `domain` is pure (money, offers, the in-memory catalog);
//! `clouds` adapts price feeds behind `PriceSource` and `billing` reads cost exports, both
//! over `remote` (HTTP and AWS SDK settings, retries, `SourceError`); `store` persists to
//! SQLite or Postgres behind one `Store`; `tasks` runs the polling loops; `server` is the
//! gRPC glue (validate, convert, map errors); `config` reads TOML + BURSAR_* overrides;
//! `wiring` builds the enabled sources from it for the server and the CLI; `cli` is the
//! command line.
#![forbid(unsafe_code)]
// Standard output goes through `cli::out` (`outln!`), which ends quietly on a closed pipe.
#![warn(clippy::print_stdout)]

pub mod billing;
pub mod cli;
pub mod clouds;
pub mod config;
pub mod domain;
pub mod notify;
pub mod remote;
pub mod serde_duration;
pub mod server;
pub mod store;
pub mod tasks;
pub mod wiring;

pub mod proto {
    #![allow(clippy::all, missing_docs)]
    tonic::include_proto!("bursar.v1");
    pub const FILE_DESCRIPTOR_SET: &[u8] = tonic::include_file_descriptor_set!("bursar_descriptor");
}
