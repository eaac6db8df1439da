//! The HTTP port (`metrics_listen`): `/metrics` for Prometheus. Other pages join with one
//! `.merge(..)` of their router onto `routes` in `server::run`. Served by axum until the
//! service's stop signal, after the gRPC server has drained.
use std::sync::Arc;

use axum::Router;
use axum::http::header;
use axum::routing::get;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::metrics::{CONTENT_TYPE, Exporter};

/// `/metrics`: the exporter's page, rendered per scrape.
pub fn routes(exporter: Arc<Exporter>) -> Router {
    Router::new().route(
        "/metrics",
        get(move || {
            let exporter = exporter.clone();
            async move { ([(header::CONTENT_TYPE, CONTENT_TYPE)], exporter.render()) }
        }),
    )
}

/// Serves `app` on `listener` until `stop` turns true; requests in flight finish first.
pub async fn serve(listener: TcpListener, app: Router, mut stop: watch::Receiver<bool>) {
    match listener.local_addr() {
        Ok(addr) => tracing::info!(%addr, "serving HTTP (/metrics)"),
        Err(e) => tracing::info!(error = %e, "serving HTTP (local address unknown)"),
    }
    let stopped = async move {
        let _ = stop.wait_for(|s| *s).await;
    };
    if let Err(e) = axum::serve(listener, app)
        .with_graceful_shutdown(stopped)
        .await
    {
        tracing::error!(error = %e, "the HTTP port stopped");
    }
}
