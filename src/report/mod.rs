//! The monthly report, rendered: `html::page` (one self-contained page: inline CSS and SVG,
//! no script, no fetch, print-friendly) and `text::summary` (the email's plain part), both
//! pure functions of a `domain::report::MonthlyReport`. `svg` draws the charts. The data is
//! gathered by `tasks::report_page`; `bursar report`, `GET /report` and the monthly email
//! all render through here.
//!
//! Invariant: every value from the database is HTML-escaped; amounts shown as text are exact.
pub mod html;
pub mod svg;
pub mod text;

pub use html::page;
pub use text::summary;

#[cfg(test)]
mod tests;
