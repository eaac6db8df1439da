//! The monthly report by email. When `[report] email_to` is set, `serve` runs
//! `run_report_mail`: from `day_of_month` at `at` (UTC) on, it queues the previous month's
//! report (the page as the HTML part, `report::summary` as the text part) in the alert
//! outbox, which delivers it with retries like any alert. `Store::queue_report_mail` keys
//! the month, so each month is queued once across restarts and replicas. A process started
//! later in the month catches up; months before the previous one are never sent.
use std::time::Duration;

use chrono::{DateTime, Days, Utc};

use crate::config::ReportConfig;
use crate::domain::report::Month;
use crate::notify::outbox::OutboxMessage;
use crate::store::Store;
use crate::tasks::budgets::EngineError;
use crate::tasks::report_page::{ReportSettings, build};

/// How often the loop looks at the clock.
pub const CHECK_EVERY: Duration = Duration::from_secs(60);

/// When the previous month's report falls due in the month of `now`; `None` if `cfg.at` is
/// not a time (validation refuses such a config).
pub fn due_at(cfg: &ReportConfig, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
    let at = cfg.time_of_day().ok()?;
    let day = Month::of(now)
        .first_day()
        .checked_add_days(Days::new(u64::from(cfg.day_of_month.max(1) - 1)))?;
    Some(day.and_time(at).and_utc())
}

/// Queues the previous month's report if it is due at `now` and was not queued yet; the
/// month queued, or `None`.
pub async fn queue_due(
    store: &Store,
    cfg: &ReportConfig,
    settings: &ReportSettings,
    now: DateTime<Utc>,
) -> Result<Option<Month>, EngineError> {
    if cfg.email_to.is_empty() || due_at(cfg, now).is_none_or(|due| now < due) {
        return Ok(None);
    }
    let month = Month::of(now).previous();
    let key = month.to_string();
    if store.report_mail_queued(&key).await? {
        return Ok(None);
    }
    let report = build(store, month, now, settings).await?;
    let (html, text) = (
        crate::report::page(&report),
        crate::report::summary(&report),
    );
    let subject = cfg.subject_for(&key);
    let messages: Vec<OutboxMessage> = cfg
        .email_to
        .iter()
        .map(|to| OutboxMessage {
            channel: "email".into(),
            target: to.clone(),
            subject: subject.clone(),
            body_text: text.clone(),
            body_html: html.clone(),
            slack_payload: String::new(),
        })
        .collect();
    Ok(store
        .queue_report_mail(&key, &messages, now)
        .await?
        .then_some(month))
}

/// Checks every `CHECK_EVERY` (first at once) until shutdown.
pub async fn run_report_mail(
    store: Store,
    cfg: ReportConfig,
    settings: ReportSettings,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) {
    loop {
        match queue_due(&store, &cfg, &settings, Utc::now()).await {
            Ok(Some(month)) => tracing::info!(
                month = %month,
                recipients = cfg.email_to.len(),
                "monthly report queued"
            ),
            Ok(None) => {}
            Err(e) => tracing::warn!(error = %e, "monthly report not queued; retrying"),
        }
        tokio::select! {
            _ = tokio::time::sleep(CHECK_EVERY) => {}
            r = shutdown.changed() => {
                if r.is_err() || *shutdown.borrow() {
                    return;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_report_falls_due_on_the_configured_day_and_time() {
        let cfg = ReportConfig {
            day_of_month: 3,
            at: "06:30".into(),
            ..ReportConfig::default()
        };
        let now: DateTime<Utc> = "2026-12-06T07:00:00Z".parse().unwrap();
        assert_eq!(
            due_at(&cfg, now).unwrap().to_rfc3339(),
            "2026-12-03T06:30:00+00:00"
        );
        let d = due_at(&ReportConfig::default(), now).unwrap();
        assert_eq!(d.to_rfc3339(), "2026-12-01T08:00:00+00:00");
        let bad = ReportConfig {
            at: "soon".into(),
            ..ReportConfig::default()
        };
        assert!(due_at(&bad, now).is_none());
    }
}
