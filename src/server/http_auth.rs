//! Bearer tokens on the HTTP port, with the gRPC port's gate (`auth::AuthHandle`): `/report`
//! needs the `finance` role; `/metrics` answers without a token unless
//! `auth.metrics_open = false`, and then any configured token (Prometheus sends one with
//! `authorization: { credentials_file: … }`). 401 with `WWW-Authenticate: Bearer` for a
//! missing or unknown token, 403 for a token without the role.
use std::sync::Arc;

use axum::Router;
use axum::extract::Request;
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::auth::{AuthHandle, Denied};
use super::roles::Access;
use crate::domain::auth::Role;

/// `app` with every request checked.
pub fn guard(app: Router, handle: Arc<AuthHandle>) -> Router {
    app.layer(axum::middleware::from_fn(
        move |req: Request, next: Next| {
            let handle = handle.clone();
            async move { check(&handle, req, next).await }
        },
    ))
}

async fn check(handle: &AuthHandle, req: Request, next: Next) -> Response {
    let path = req.uri().path();
    let access = match path {
        "/metrics" if handle.gate().metrics_open => Access::Open,
        "/report" => Access::Role(Role::Finance),
        _ => Access::AnyToken,
    };
    let header = req
        .headers()
        .get(header::AUTHORIZATION)
        .map(|v| v.as_bytes());
    match handle.authorize(access, header) {
        Ok(_) => next.run(req).await,
        Err(denied) => {
            let status = match denied {
                Denied::Role { .. } => StatusCode::FORBIDDEN,
                _ => StatusCode::UNAUTHORIZED,
            };
            let message = denied.message(path);
            (
                status,
                [(header::WWW_AUTHENTICATE, "Bearer")],
                format!("{message}\n"),
            )
                .into_response()
        }
    }
}
