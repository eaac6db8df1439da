pub mod select;
pub use select::*;
