//! Pure domain: the types and rules the rest of bursar is built on, unit-tested without I/O.
//! Nothing here knows about tonic, sqlx, reqwest or cloud SDKs.
//!
//! Codemap: `money` (exact `Money`, `Units`), `offer` (`Provider` and its one name matcher,
//! `Offer`, `KnownInstances`, `SpotBand`); `catalog` (the in-memory price catalog) and
//! `sanity` (the `suspect` rule); `placement` (`PlacementIndex::select`, the cost model),
//! `egress` (egress price tables), `regions` (continents, jurisdictions); `budget/` (spec and
//! validation, period windows, threshold evaluation, the placement gate) and `forecast`;
//! `egress_lines` and `tags` (billing-line rules); `limits` and `quote` (input safety);
//! `fleet` (GPU machines and utilisation samples), `idle/` (the idle-GPU policy) and
//! `savings` (the savings ledger's arithmetic); `report` (the monthly report's model: `Month`,
//! `Health`, `top_movers`); `auth` (roles, the hashed token table, when tokens are enforced).
pub mod auth;
pub mod budget;
pub mod catalog;
pub mod egress;
pub mod egress_lines;
pub mod fleet;
pub mod forecast;
pub mod idle;
pub mod leader;
pub mod limits;
pub mod money;
pub mod offer;
pub mod placement;
pub mod quote;
pub mod regions;
pub mod report;
pub mod sanity;
pub mod savings;
pub mod tags;

pub use catalog::{Catalog, PriceFilter, PricePage};
pub use money::{Currency, Money};
pub use offer::{
    InstanceAttrs, KnownInstances, Market, Offer, OfferKey, Provider, SpotBand, provider_spellings,
    same_provider,
};
