//! `bursar ingest-runs`: recent ingest runs on a running server (SpendService.ListIngestRuns),
//! or with `--quarantine RUN` the rows that run could not read (ListQuarantine, page after
//! page).
use clap::Args;
use serde_json::json;

use super::CliError;
use super::client::{ClientArgs, channel, print_json, status_error};
use super::display;
use crate::proto;
use crate::proto::spend_service_client::SpendServiceClient;

#[derive(Args, Debug)]
pub struct IngestRunsArgs {
    /// At most this many runs (or quarantined rows).
    #[arg(long, default_value_t = 50)]
    pub limit: i32,
    /// List this run's quarantined rows: file, line, column, reason.
    #[arg(long, value_name = "RUN")]
    pub quarantine: Option<String>,
    #[command(flatten)]
    pub client: ClientArgs,
}

pub async fn run(a: IngestRunsArgs) -> Result<(), CliError> {
    match a.quarantine {
        Some(run) => quarantine(a.client, &run, a.limit).await,
        None => runs(a.client, a.limit).await,
    }
}

async fn runs(client: ClientArgs, limit: i32) -> Result<(), CliError> {
    let mut c = SpendServiceClient::new(channel(&client).await?);
    let r = c
        .list_ingest_runs(proto::ListIngestRunsRequest { limit })
        .await
        .map_err(status_error)?
        .into_inner();
    if client.json {
        let rows: Vec<_> = r
            .runs
            .iter()
            .map(|x| json!({"id": x.id, "source": x.source, "format": x.format, "variant": x.variant, "status": x.status,
                "rows_read": x.rows_read, "rows_stored": x.rows_stored, "rows_quarantined": x.rows_quarantined,
                "deviations": x.deviations, "error": x.error,
                "billed_totals": x.billed_totals.iter().map(|m| json!({"amount": m.amount, "currency": m.currency})).collect::<Vec<_>>()}))
            .collect();
        print_json(&json!({"runs": rows}));
        return Ok(());
    }
    let rows: Vec<Vec<String>> = r
        .runs
        .iter()
        .map(|x| {
            vec![
                x.id.clone(),
                x.status.clone(),
                format!("{} {}", x.format, x.variant),
                x.rows_read.to_string(),
                x.rows_stored.to_string(),
                x.rows_quarantined.to_string(),
                x.billed_totals
                    .iter()
                    .map(|m| format!("{} {}", display::cents(&m.amount), m.currency))
                    .collect::<Vec<_>>()
                    .join(", "),
                x.source.clone(),
            ]
        })
        .collect();
    crate::out!(
        "{}",
        display::list(
            &[
                "RUN",
                "STATUS",
                "FORMAT",
                "READ",
                "STORED",
                "QUARANTINED",
                "BILLED",
                "SOURCE"
            ],
            &rows,
            "ingest runs"
        )
    );
    Ok(())
}

/// `bursar ingest-runs --quarantine RUN`: the run's quarantined rows, at most `limit`,
/// page after page.
async fn quarantine(client: ClientArgs, run: &str, limit: i32) -> Result<(), CliError> {
    if limit < 1 {
        return Err(CliError::Usage(format!(
            "--limit {limit}: must be at least 1"
        )));
    }
    let mut c = SpendServiceClient::new(channel(&client).await?);
    let mut rows: Vec<proto::QuarantinedRow> = Vec::new();
    let mut page_token = String::new();
    while rows.len() < limit as usize {
        let r = c
            .list_quarantine(proto::ListQuarantineRequest {
                run_id: run.to_string(),
                limit: (limit as usize - rows.len()).min(1000) as i32,
                page_token,
            })
            .await
            .map_err(status_error)?
            .into_inner();
        rows.extend(r.rows);
        if r.next_page_token.is_empty() {
            break;
        }
        page_token = r.next_page_token;
    }
    if client.json {
        let rows: Vec<_> = rows
            .iter()
            .map(|q| json!({"file": q.file, "line": q.line, "column": q.column, "reason": q.reason, "raw": q.raw}))
            .collect();
        print_json(&json!({"run_id": run, "rows": rows}));
        return Ok(());
    }
    let table_rows: Vec<Vec<String>> = rows
        .iter()
        .map(|q| {
            vec![
                q.line.to_string(),
                q.column.clone(),
                q.reason.clone(),
                q.file.clone(),
            ]
        })
        .collect();
    crate::out!(
        "{}",
        display::list(
            &["LINE", "COLUMN", "REASON", "FILE"],
            &table_rows,
            "quarantined rows"
        )
    );
    Ok(())
}
