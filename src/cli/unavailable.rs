//! `bursar unavailable mark|list|clear`: operator marks on a running server
//! (PlacementService.MarkUnavailable, ListUnavailable, ClearUnavailable) that take a
//! provider, region or zone out of placement for a while.
use clap::Subcommand;
use serde_json::json;

use super::CliError;
use super::client::{ClientArgs, channel, print_json, provider_flag, provider_name, status_error};
use super::display;
use crate::domain::quote::quote;
use crate::proto;
use crate::proto::placement_service_client::PlacementServiceClient;

#[derive(Subcommand, Debug)]
pub enum UnavailableCommand {
    /// Mark a provider, region or zone unavailable.
    Mark {
        #[arg(long)]
        provider: String,
        #[arg(long)]
        region: Option<String>,
        #[arg(long)]
        zone: Option<String>,
        #[arg(long)]
        reason: String,
        /// How long, e.g. 30m, 2h, 1d.
        #[arg(long = "for", default_value = "1h")]
        duration: String,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// List current marks.
    List {
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Remove a mark.
    Clear {
        id: String,
        #[command(flatten)]
        client: ClientArgs,
    },
}

pub async fn run(cmd: UnavailableCommand) -> Result<(), CliError> {
    let print_marks = |marks: &[proto::AvailabilityMark], c: &ClientArgs| {
        let ts = |t: &Option<prost_types::Timestamp>| {
            t.as_ref()
                .and_then(|t| chrono::DateTime::from_timestamp(t.seconds, 0))
                .map(|t| t.to_rfc3339())
                .unwrap_or_default()
        };
        if c.json {
            let rows: Vec<_> = marks
                .iter()
                .map(|m| {
                    json!({"id": m.id, "provider": provider_name(m.provider), "region": m.region,
                           "zone": m.zone, "reason": m.reason, "created_at": ts(&m.created_at),
                           "expires_at": ts(&m.expires_at)})
                })
                .collect();
            print_json(&json!({ "marks": rows }));
        } else {
            let rows: Vec<Vec<String>> = marks
                .iter()
                .map(|m| {
                    vec![
                        m.id.clone(),
                        provider_name(m.provider).to_string(),
                        m.region.clone(),
                        m.zone.clone(),
                        ts(&m.expires_at),
                        m.reason.clone(),
                    ]
                })
                .collect();
            crate::out!(
                "{}",
                display::list(
                    &["ID", "PROVIDER", "REGION", "ZONE", "EXPIRES", "REASON"],
                    &rows,
                    "availability marks"
                )
            );
        }
    };
    match cmd {
        UnavailableCommand::Mark {
            provider,
            region,
            zone,
            reason,
            duration,
            client,
        } => {
            let ttl = humantime::parse_duration(&duration)
                .map_err(|e| CliError::Usage(format!("--for {}: {e}", quote(&duration))))?;
            let mut c = PlacementServiceClient::new(channel(&client).await?);
            let m = c
                .mark_unavailable(proto::MarkUnavailableRequest {
                    provider: provider_flag(&provider, "--provider")?,
                    region: region.unwrap_or_default(),
                    zone: zone.unwrap_or_default(),
                    reason,
                    ttl_seconds: ttl.as_secs(),
                })
                .await
                .map_err(status_error)?
                .into_inner();
            print_marks(&[m], &client);
            Ok(())
        }
        UnavailableCommand::List { client } => {
            let mut c = PlacementServiceClient::new(channel(&client).await?);
            let r = c
                .list_unavailable(proto::ListUnavailableRequest {})
                .await
                .map_err(status_error)?
                .into_inner();
            print_marks(&r.marks, &client);
            Ok(())
        }
        UnavailableCommand::Clear { id, client } => {
            let mut c = PlacementServiceClient::new(channel(&client).await?);
            c.clear_unavailable(proto::ClearUnavailableRequest { id: id.clone() })
                .await
                .map_err(|s| match s.code() {
                    tonic::Code::NotFound => CliError::Failed(s.message().to_string()),
                    _ => status_error(s),
                })?;
            crate::outln!("cleared {id}");
            Ok(())
        }
    }
}
