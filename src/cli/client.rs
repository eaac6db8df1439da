//! What every client command shares (the commands that talk to a running server instead
//! of opening the database): `ClientArgs` (`--server`, `--json`, and `transport`'s
//! `--token`, `--ca-file`, `--cert-file`, `--key-file`), the `channel` to the server,
//! `status_error` (a gRPC status → `CliError`: INVALID_ARGUMENT exits 2 like bad flags,
//! anything else 1, with a hint for UNAUTHENTICATED and PERMISSION_DENIED), `print_json` for `--json`, and the proto enums as flags and
//! text (`provider_flag`, `provider_name`, `market_name`).
use clap::Args;

use super::CliError;
use super::transport::{ClientChannel, TransportArgs};
use crate::config::DEFAULT_SERVER;
use crate::domain::Provider;
use crate::domain::quote::quote;
use crate::proto;

#[derive(Args, Debug, Clone)]
pub struct ClientArgs {
    /// Address of a running bursar server.
    #[arg(long, env = "BURSAR_SERVER", default_value = DEFAULT_SERVER)]
    pub server: String,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub transport: TransportArgs,
}

/// The URI of `--server`: `http://` is assumed when no scheme is given, so
/// `127.0.0.1:50051` means `http://127.0.0.1:50051`.
pub(crate) fn server_uri(server: &str) -> String {
    let s = server.trim();
    if s.contains("://") {
        s.to_string()
    } else {
        format!("http://{s}")
    }
}

/// The channel every client command talks to the server through: TLS for `https://`,
/// the bearer token on every call.
pub(crate) async fn channel(c: &ClientArgs) -> Result<ClientChannel, CliError> {
    let server = &c.server;
    let bearer = c.transport.bearer().map_err(CliError::Usage)?;
    let endpoint = c
        .transport
        .endpoint(&server_uri(server), server)
        .map_err(CliError::Usage)?;
    let ch = endpoint.connect().await.map_err(|e| {
        let mut detail = e.to_string();
        // tonic's top-level message is "transport error"; the cause says what went wrong
        // (refused, a certificate the CA did not sign, …).
        let mut src = std::error::Error::source(&e);
        while let Some(s) = src {
            detail = format!("{detail}: {s}");
            src = s.source();
        }
        CliError::Failed(format!(
            "cannot reach bursar at {}: {}",
            quote(server),
            crate::domain::quote::clip(&detail)
        ))
    })?;
    Ok(tonic::service::interceptor::InterceptedService::new(
        ch, bearer,
    ))
}

/// A failed call: INVALID_ARGUMENT is bad usage (exit 2) and shows the server's message
/// as is; any other code fails (exit 1) naming the code.
pub(crate) fn status_error(s: tonic::Status) -> CliError {
    match s.code() {
        tonic::Code::InvalidArgument => CliError::Usage(s.message().to_string()),
        tonic::Code::Unauthenticated => CliError::Failed(format!(
            "not authenticated: {} (give a token the server knows with --token or BURSAR_TOKEN)",
            s.message()
        )),
        tonic::Code::PermissionDenied => CliError::Failed(format!(
            "permission denied: {} (ask for a token with that role)",
            s.message()
        )),
        _ => CliError::Failed(format!("{:?}: {}", s.code(), s.message())),
    }
}

/// `--json` output: one pretty-printed document.
pub(crate) fn print_json(v: &serde_json::Value) {
    crate::outln!("{}", serde_json::to_string_pretty(v).unwrap_or_default());
}

/// A provider flag (`--provider aws`) as the proto enum; a bad one is a usage error
/// naming `flag`.
pub(crate) fn provider_flag(s: &str, flag: &str) -> Result<i32, CliError> {
    let p: Provider = s
        .parse()
        .map_err(|e| CliError::Usage(format!("{flag}: {e}")))?;
    Ok(match p {
        Provider::Aws => proto::Provider::Aws,
        Provider::Gcp => proto::Provider::Gcp,
        Provider::Azure => proto::Provider::Azure,
    } as i32)
}

pub(crate) fn provider_name(v: i32) -> &'static str {
    match proto::Provider::try_from(v) {
        Ok(proto::Provider::Aws) => "aws",
        Ok(proto::Provider::Gcp) => "gcp",
        Ok(proto::Provider::Azure) => "azure",
        _ => "?",
    }
}

pub(crate) fn market_name(v: i32) -> &'static str {
    match proto::Market::try_from(v) {
        Ok(proto::Market::OnDemand) => "on_demand",
        Ok(proto::Market::Spot) => "spot",
        _ => "?",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_server_without_a_scheme_is_http() {
        assert_eq!(server_uri("127.0.0.1:50051"), "http://127.0.0.1:50051");
        assert_eq!(server_uri(" localhost:1 "), "http://localhost:1");
        assert_eq!(
            server_uri("http://127.0.0.1:50051"),
            "http://127.0.0.1:50051"
        );
        assert_eq!(
            server_uri("https://bursar.example.com"),
            "https://bursar.example.com"
        );
    }
}
