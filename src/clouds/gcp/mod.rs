//! GCP adapters: `catalog.rs` composes machine-type prices from the Cloud Billing Catalog's
//! per-vCPU, per-GiB and per-GPU SKUs; `shapes.rs` is the rule-built table of machine
//! shapes (vCPUs, memory, built-in accelerators) that composition multiplies out.
pub mod catalog;
pub mod shapes;

pub use catalog::GcpCatalogSource;
pub use shapes::{GpuSpec, MachineShape};
