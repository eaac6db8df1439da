//! Prometheus metrics (`prometheus-client`), low in the layer order so the task layer and
//! the server can record: it imports only `domain`.
//!
//! - `events.rs`: `Events`, what the service counts as it works (decisions, price polls,
//!   ingests, budget evaluations, alerts, idle-GPU actions). **One per process**, behind
//!   [`global()`]: tasks run in `serve`, in CLI commands and in tests without a server to
//!   hand them a registry, and counters of one process add up anyway (as `process_*` do).
//! - `rpc.rs`: `RpcMetrics`, gRPC calls by service, method and code, owned by the server
//!   that measures them (its tower layer records, its page shows them).
//! - `exporter.rs`: `Exporter`, one server's `/metrics` page: the families above plus what is
//!   read at scrape time (catalog offers, price-source ages, process memory and CPU).
//! - `process.rs`: the `/proc` readings.
//!
//! Names follow Prometheus' conventions: `bursar_` prefix, base units in the name
//! (`_seconds`, `_bytes`), counters end in `_total` (added by the encoder). README lists them.
pub mod events;
pub mod exporter;
pub mod process;
pub mod rpc;

use std::sync::LazyLock;

pub use events::{Events, IngestStatus};
pub use exporter::{CONTENT_TYPE, Exporter};
pub use rpc::RpcMetrics;

static EVENTS: LazyLock<Events> = LazyLock::new(Events::default);

/// The process's `Events`: record here (`metrics::global().decision(..)`).
#[inline]
pub fn global() -> &'static Events {
    &EVENTS
}
