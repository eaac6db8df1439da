//! `bursar health`: asks a running server's `grpc.health.v1.Health/Check`, the way
//! grpc-health-probe does, for container health checks and probes. Exit 0 when the server
//! (or `--service`) is SERVING; 1 when it is NOT_SERVING, unknown, unreachable or too slow;
//! 2 for bad flags.
use std::time::Duration;

use clap::Args;
use serde_json::json;

use super::CliError;
use super::client::{ClientArgs, channel, print_json};
use crate::domain::quote::quote;

#[derive(Args, Debug)]
pub struct HealthArgs {
    #[command(flatten)]
    pub client: ClientArgs,
    /// The service to ask about, e.g. `bursar.v1.PlacementService`; empty asks about the
    /// server as a whole.
    #[arg(long, default_value = "")]
    pub service: String,
    /// How long to wait for the answer (connecting included), e.g. `2s`.
    #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
    pub timeout: Duration,
}

/// The health status's name as grpc-health-probe prints it.
fn status_name(s: i32) -> &'static str {
    use tonic_health::pb::health_check_response::ServingStatus;
    match ServingStatus::try_from(s) {
        Ok(ServingStatus::Serving) => "SERVING",
        Ok(ServingStatus::NotServing) => "NOT_SERVING",
        Ok(ServingStatus::ServiceUnknown) => "SERVICE_UNKNOWN",
        _ => "UNKNOWN",
    }
}

pub async fn run(a: HealthArgs) -> Result<(), CliError> {
    let c = &a.client;
    let target = if a.service.is_empty() {
        "the server".to_string()
    } else {
        quote(&a.service)
    };
    let ask = async {
        let mut client = tonic_health::pb::health_client::HealthClient::new(channel(c).await?);
        client
            .check(tonic_health::pb::HealthCheckRequest {
                service: a.service.clone(),
            })
            .await
            .map(|r| r.into_inner().status)
            .map_err(|s| match s.code() {
                tonic::Code::NotFound => {
                    CliError::Failed(format!("{target}: SERVICE_UNKNOWN (not served here)"))
                }
                code => CliError::Failed(format!(
                    "{target}: health check failed: {code:?}: {}",
                    s.message()
                )),
            })
    };
    let status = tokio::time::timeout(a.timeout, ask).await.map_err(|_| {
        CliError::Failed(format!(
            "{target}: no health answer from {} within {}",
            c.server,
            humantime::format_duration(a.timeout)
        ))
    })??;
    let name = status_name(status);
    if c.json {
        print_json(&json!({ "service": a.service, "status": name }));
    } else {
        crate::outln!("status: {name}");
    }
    if name == "SERVING" {
        Ok(())
    } else {
        Err(CliError::Failed(format!("{target} is {name}")))
    }
}
