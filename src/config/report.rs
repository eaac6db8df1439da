//! `[report]`: the monthly report page (`bursar report`, `GET /report`) and its email. With
//! `email_to` set, `serve` queues the previous month's report in the alert outbox on
//! `day_of_month` at `at` (UTC), once per month across restarts and replicas. Errors name
//! the key.
use std::fmt;

use chrono::NaiveTime;
use serde::Deserialize;

use crate::config::ConfigError;
use crate::domain::budget::check_email;
use crate::domain::quote::quote;

/// `[report]`. `Debug` counts the addresses instead of showing them (recipient addresses
/// never reach a log).
#[derive(Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct ReportConfig {
    /// Addresses the monthly report is emailed to; empty: no email.
    pub email_to: Vec<String>,
    /// The day of the month (1–28) the previous month's report is sent.
    pub day_of_month: u32,
    /// The time of day, UTC, `HH:MM`.
    pub at: String,
    /// The email's subject; `{month}` becomes the month (`2026-10`).
    pub subject: String,
    /// The tag whose values are the report's teams.
    pub team_tag: String,
}

impl Default for ReportConfig {
    fn default() -> Self {
        ReportConfig {
            email_to: Vec::new(),
            day_of_month: 1,
            at: "08:00".into(),
            subject: "bursar spend report {month}".into(),
            team_tag: "team".into(),
        }
    }
}

impl fmt::Debug for ReportConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReportConfig")
            .field(
                "email_to",
                &format_args!("<{} addresses>", self.email_to.len()),
            )
            .field("day_of_month", &self.day_of_month)
            .field("at", &self.at)
            .field("subject", &self.subject)
            .field("team_tag", &self.team_tag)
            .finish()
    }
}

fn field(key: &str, detail: String) -> ConfigError {
    ConfigError::Field {
        field: format!("report.{key}"),
        detail,
    }
}

impl ReportConfig {
    /// `at` as a time of day.
    pub fn time_of_day(&self) -> Result<NaiveTime, ConfigError> {
        NaiveTime::parse_from_str(self.at.trim(), "%H:%M").map_err(|_| {
            field(
                "at",
                format!(
                    "{} is not a time of day: expected HH:MM (UTC), e.g. 08:00",
                    quote(&self.at)
                ),
            )
        })
    }

    /// The subject of `month`'s email.
    pub fn subject_for(&self, month: &str) -> String {
        self.subject.replace("{month}", month)
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        if !(1..=28).contains(&self.day_of_month) {
            return Err(field(
                "day_of_month",
                format!(
                    "{} is outside 1..=28 (every month has it)",
                    self.day_of_month
                ),
            ));
        }
        self.time_of_day()?;
        if self.team_tag.trim().is_empty() || !crate::domain::tags::valid_tag_key(&self.team_tag) {
            return Err(field(
                "team_tag",
                format!("{} is not a tag key", quote(&self.team_tag)),
            ));
        }
        if self.subject.trim().is_empty() || self.subject.contains(['\r', '\n']) {
            return Err(field("subject", "must be one non-empty line".into()));
        }
        // The same address rules as a budget's email channel.
        for (i, addr) in self.email_to.iter().enumerate() {
            check_email(addr).map_err(|detail| field(&format!("email_to[{i}]"), detail))?;
        }
        Ok(())
    }

    /// `BURSAR_REPORT_EMAIL_TO` (comma-separated), `BURSAR_REPORT_DAY_OF_MONTH`,
    /// `BURSAR_REPORT_AT`, `BURSAR_REPORT_TEAM_TAG`.
    pub fn apply_env(&mut self, get: &impl Fn(&str) -> Option<String>) -> Result<(), ConfigError> {
        if let Some(v) = get("BURSAR_REPORT_EMAIL_TO") {
            self.email_to = v
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(String::from)
                .collect();
        }
        if let Some(v) = get("BURSAR_REPORT_DAY_OF_MONTH") {
            self.day_of_month = v.trim().parse().map_err(|_| ConfigError::Field {
                field: "BURSAR_REPORT_DAY_OF_MONTH".into(),
                detail: format!("{} is not a whole number", quote(&v)),
            })?;
        }
        if let Some(v) = get("BURSAR_REPORT_AT") {
            self.at = v;
        }
        if let Some(v) = get("BURSAR_REPORT_TEAM_TAG") {
            self.team_tag = v;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_off_on_the_first_at_eight() {
        let c = ReportConfig::default();
        assert!(c.email_to.is_empty());
        assert_eq!(
            (c.day_of_month, c.at.as_str(), c.team_tag.as_str()),
            (1, "08:00", "team")
        );
        assert_eq!(c.subject_for("2026-10"), "bursar spend report 2026-10");
        c.validate().unwrap();
    }

    #[test]
    fn the_readme_block_is_the_defaults_and_unknown_keys_are_refused() {
        let readme = include_str!("../../README.md");
        let start = readme
            .find("```toml\n[report]\n")
            .expect("README has a [report] block")
            + 8;
        let block = &readme[start..start + readme[start..].find("```").unwrap()];
        let c = crate::config::Config::from_toml(block).unwrap();
        assert_eq!(c.report, ReportConfig::default());
        let e = crate::config::Config::from_toml("[report]\nemail = [\"a@b.c\"]\n").unwrap_err();
        assert!(e.contains("report.email"), "{e}");
    }

    #[test]
    fn bad_values_name_the_key() {
        let bad = |c: ReportConfig, key: &str| {
            let e = c.validate().unwrap_err().to_string();
            assert!(e.contains(key), "{e}");
        };
        bad(
            ReportConfig {
                day_of_month: 31,
                ..Default::default()
            },
            "report.day_of_month",
        );
        bad(
            ReportConfig {
                day_of_month: 0,
                ..Default::default()
            },
            "report.day_of_month",
        );
        bad(
            ReportConfig {
                at: "8am".into(),
                ..Default::default()
            },
            "report.at",
        );
        bad(
            ReportConfig {
                at: "25:00".into(),
                ..Default::default()
            },
            "report.at",
        );
        bad(
            ReportConfig {
                team_tag: String::new(),
                ..Default::default()
            },
            "report.team_tag",
        );
        bad(
            ReportConfig {
                subject: "a\r\nBcc: x@y".into(),
                ..Default::default()
            },
            "report.subject",
        );
        bad(
            ReportConfig {
                email_to: vec!["not an address".into()],
                ..Default::default()
            },
            "report.email_to",
        );
    }

    #[test]
    fn env_overrides_read_lists_and_numbers() {
        let mut c = ReportConfig::default();
        let env = |k: &str| match k {
            "BURSAR_REPORT_EMAIL_TO" => Some("cfo@example.com, fin@example.com".to_string()),
            "BURSAR_REPORT_DAY_OF_MONTH" => Some("3".to_string()),
            "BURSAR_REPORT_AT" => Some("06:30".to_string()),
            _ => None,
        };
        c.apply_env(&env).unwrap();
        assert_eq!(c.email_to, ["cfo@example.com", "fin@example.com"]);
        let shown = format!("{c:?}");
        assert!(
            !shown.contains("cfo@") && shown.contains("<2 addresses>"),
            "{shown}"
        );
        assert_eq!((c.day_of_month, c.at.as_str()), (3, "06:30"));
        c.validate().unwrap();
        let e = c
            .apply_env(&|k: &str| (k == "BURSAR_REPORT_DAY_OF_MONTH").then(|| "first".to_string()))
            .unwrap_err();
        assert!(e.to_string().contains("BURSAR_REPORT_DAY_OF_MONTH"));
    }
}
