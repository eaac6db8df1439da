//! `GET /report?month=YYYY-MM`: the monthly report page over HTTP (mounted on the HTTP
//! port beside `/metrics`). Without `month`, the previous month. A bad month is a 400 with a
//! one-line text body naming `month`; the page is `text/html; charset=utf-8` with the same
//! Content-Security-Policy as its meta tag. Handlers only validate, build and render.
use std::sync::Arc;

use axum::Router;
use axum::extract::{RawQuery, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use chrono::Utc;

use crate::domain::report::Month;
use crate::store::Store;
use crate::tasks::report_page::{ReportSettings, build};

struct ReportState {
    store: Store,
    settings: ReportSettings,
}

/// The `/report` route, to merge into the HTTP server's router.
pub fn routes(store: Store, settings: ReportSettings) -> Router {
    Router::new()
        .route("/report", get(report))
        .with_state(Arc::new(ReportState { store, settings }))
}

fn text(status: StatusCode, body: String) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        body + "\n",
    )
        .into_response()
}

/// The month a query asks for: its `month` parameter, else the month before `now`'s.
pub fn requested_month(query: Option<&str>, now: chrono::DateTime<Utc>) -> Result<Month, String> {
    let given = query.and_then(|q| {
        url::form_urlencoded::parse(q.as_bytes())
            .find(|(k, _)| k == "month")
            .map(|(_, v)| v.into_owned())
    });
    match given {
        None => Ok(Month::of(now).previous()),
        Some(m) => Month::parse(&m).map_err(|e| format!("month: {e}")),
    }
}

async fn report(State(st): State<Arc<ReportState>>, RawQuery(q): RawQuery) -> Response {
    let now = Utc::now();
    let month = match requested_month(q.as_deref(), now) {
        Ok(m) => m,
        Err(e) => return text(StatusCode::BAD_REQUEST, crate::domain::quote::clip(&e)),
    };
    match build(&st.store, month, now, &st.settings).await {
        Ok(r) => (
            [
                (header::CONTENT_TYPE, "text/html; charset=utf-8"),
                (header::CONTENT_SECURITY_POLICY, crate::report::html::CSP),
                (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
                (header::CACHE_CONTROL, "no-store"),
            ],
            crate::report::page(&r),
        )
            .into_response(),
        Err(e) => {
            tracing::warn!(month = %month, error = %e, "report failed");
            text(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("the report for {month} could not be made; see the server log"),
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_month_defaults_to_the_previous_one_and_bad_ones_name_the_parameter() {
        let now = "2027-01-15T10:00:00Z".parse().unwrap();
        assert_eq!(requested_month(None, now).unwrap().to_string(), "2026-12");
        assert_eq!(
            requested_month(Some("x=1"), now).unwrap().to_string(),
            "2026-12"
        );
        assert_eq!(
            requested_month(Some("month=2026-10"), now)
                .unwrap()
                .to_string(),
            "2026-10"
        );
        for bad in ["month=2026-13", "month=oct", "month=", "month=2026-10%27"] {
            let e = requested_month(Some(bad), now).unwrap_err();
            assert!(
                e.starts_with("month: ") && e.contains("YYYY-MM"),
                "{bad}: {e}"
            );
        }
    }
}
