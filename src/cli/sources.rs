//! `bursar sources`: the status of each price source on a running server
//! (PricingService.GetSourceStatus).
use clap::Args;
use serde_json::json;

use super::CliError;
use super::client::{ClientArgs, channel, print_json, status_error};
use super::display;
use crate::proto;
use crate::proto::pricing_service_client::PricingServiceClient;

#[derive(Args, Debug)]
pub struct SourcesArgs {
    #[command(flatten)]
    pub client: ClientArgs,
}

pub async fn run(a: SourcesArgs) -> Result<(), CliError> {
    let c = a.client;
    let mut client = PricingServiceClient::new(channel(&c).await?);
    let resp = client
        .get_source_status(proto::GetSourceStatusRequest {})
        .await
        .map_err(status_error)?
        .into_inner();
    let ts = |t: &Option<prost_types::Timestamp>| {
        t.as_ref()
            .and_then(|t| chrono::DateTime::from_timestamp(t.seconds, t.nanos as u32))
            .map(|t| t.to_rfc3339())
    };
    if c.json {
        let rows: Vec<_> = resp
            .sources
            .iter()
            .map(|s| {
                json!({
                    "name": s.name, "enabled": s.enabled, "state": s.state,
                    "last_attempt_at": ts(&s.last_attempt_at),
                    "last_success_at": ts(&s.last_success_at),
                    "last_error": s.last_error, "last_error_at": ts(&s.last_error_at),
                    "rows": s.rows,
                })
            })
            .collect();
        print_json(&json!({ "sources": rows }));
        return Ok(());
    }
    let rows: Vec<Vec<String>> = resp
        .sources
        .iter()
        .map(|s| {
            vec![
                s.name.clone(),
                if s.enabled { "yes" } else { "no" }.to_string(),
                s.state.clone(),
                s.last_success_at
                    .as_ref()
                    .and_then(|t| chrono::DateTime::from_timestamp(t.seconds, 0))
                    .map(|t| t.format("%Y-%m-%d %H:%M").to_string())
                    .unwrap_or_default(),
                s.rows.to_string(),
                s.last_error.chars().take(80).collect(),
            ]
        })
        .collect();
    crate::out!(
        "{}",
        display::list(
            &[
                "SOURCE",
                "ENABLED",
                "STATE",
                "LAST SUCCESS",
                "ROWS",
                "LAST ERROR"
            ],
            &rows,
            "price sources"
        )
    );
    Ok(())
}
