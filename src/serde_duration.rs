//! `#[serde(with = "serde_duration")]`: a duration written as text (`"30s"`, `"6h"`) in
//! the TOML config. Its own module so that `config` and the settings structs other modules
//! own (`notify::AlertsConfig`) share one spelling and one error without importing each
//! other.
use std::time::Duration;

use serde::{Deserialize, Deserializer};

pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    let s = String::deserialize(d)?;
    humantime::parse_duration(&s).map_err(|e| {
        serde::de::Error::custom(format!(
            "{} is not a duration like \"30s\" or \"6h\": {e}",
            crate::domain::quote::quote(&s)
        ))
    })
}
