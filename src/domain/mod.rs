//! Pure domain: money, offers and the in-memory price catalog. Nothing here knows about
//! tonic, sqlx, reqwest or cloud SDKs; everything here is unit-tested without I/O.
pub mod catalog;
pub mod money;
pub mod offer;

pub use catalog::{Catalog, PriceFilter, PricePage};
pub use money::{Currency, Money};
pub use offer::{InstanceAttrs, Market, Offer, OfferKey, Provider, SpotBand};
