//! Pure domain: money, offers and the in-memory price catalog. Nothing here knows about
//! tonic, sqlx, reqwest or cloud SDKs; everything here is unit-tested without I/O.
pub mod budget;
pub mod catalog;
pub mod egress;
pub mod egress_lines;
pub mod forecast;
pub mod limits;
pub mod money;
pub mod offer;
pub mod placement;
pub mod quote;
pub mod regions;
pub mod sanity;
pub mod tags;

pub use catalog::{Catalog, PriceFilter, PricePage};
pub use money::{Currency, Money};
pub use offer::{
    InstanceAttrs, KnownInstances, Market, Offer, OfferKey, Provider, SpotBand, provider_spellings,
    same_provider,
};
