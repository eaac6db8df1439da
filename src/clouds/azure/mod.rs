//! Azure adapters: `retail.rs` reads Linux pay-as-you-go and Spot VM prices from the public
//! Azure Retail Prices API.
pub mod retail;

pub use retail::AzureRetailSource;
