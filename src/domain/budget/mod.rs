//! Budgets (pure): definitions, validation, periods, threshold evaluation and the budget
//! gate that SelectProvider applies to its ranked placements.
//!
//! A [`Budget`] is declared in the TOML config as a `[[budgets]]` table or through the API,
//! and stored as JSON; both use the same serde shape (amounts are decimal strings so they
//! stay exact). [`Budget::validate`] names the offending field. [`period_window`] finds the
//! current period in the budget's timezone, [`evaluate`] compares actual and forecast spend
//! (see [`crate::domain::forecast`]) with the thresholds. One file each: `spec.rs` (the
//! definition and its validation), `period.rs`, `evaluate.rs`, `gate.rs`.
//!
//! # The budget gate ([`apply_gate`])
//! Only cost budgets with `gate` other than `none` take part, and only those that apply to
//! the request (its labels carry the budget's tag, or the budget has no tag filter). A
//! budget *covers* a placement when its provider/region filters match it and the placement
//! is priced in the budget's currency (there is no FX: a EUR budget never gates USD
//! placements). A budget that covers no placement of the request is skipped.
//! `remaining = amount − actual` (zero or negative once the budget is spent).
//! - `warn`: every placement is kept; the decision carries a warning for the budget when
//!   the cheapest placement it covers costs more than `remaining`, or when the forecast is
//!   already at or over the amount.
//! - `deny`: the request is refused when the cheapest placement the budget covers costs
//!   more than `remaining`.
//! - `downgrade`: placements the budget covers that cost more than `remaining` are
//!   removed (a warning says how many); when that leaves nothing, the request is refused
//!   like `deny`.
//!
//! Deny wins over downgrade, and downgrade over warn: `deny` budgets are checked first,
//! then `downgrade` budgets are applied one after another, then `warn` budgets look at the
//! placements that are left. Within each step budgets are taken in name order, so the
//! outcome does not depend on the order the store returns them in; the first refusal is the
//! one reported, and a refused decision carries nothing else.

mod evaluate;
mod gate;
mod period;
mod spec;
#[cfg(test)]
mod tests;

pub use evaluate::*;
pub use gate::*;
pub use period::*;
pub use spec::*;
