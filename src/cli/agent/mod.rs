//! `bursar agent --server URL`: the node agent. Runs on a GPU machine, reads each GPU's
//! utilisation, memory in use and power draw through NVML (`nvml.rs`, loaded at run time),
//! learns its own instance id from the cloud's metadata service (`metadata.rs`) unless given
//! one, and pushes one batch per interval to `FleetService/ReportGpuUtilization` (`push.rs`:
//! a bounded buffer, retries with backoff while the server is away). Stops cleanly on
//! Ctrl-C or SIGTERM, trying once more to deliver what it holds.
//!
//! Exit codes: 0 ok, 1 failed (`--once` could not deliver, metadata service failed),
//! 2 bad usage or configuration, or no NVML (no NVIDIA driver).
pub mod metadata;
pub mod nvml;
pub mod push;

use std::future::Future;
use std::time::Duration;

use chrono::Utc;
use clap::Args;

use super::CliError;
use crate::domain::limits;
use crate::domain::quote::quote;
use crate::proto;
use crate::proto::fleet_service_client::FleetServiceClient;
pub use metadata::Cloud;
pub use nvml::{GpuReader, GpuReading, NvmlReader};
use push::{Buffer, Delivered};

#[derive(Args, Debug, Clone)]
pub struct AgentArgs {
    /// Address of the bursar server to push to.
    #[arg(long, env = "BURSAR_SERVER")]
    pub server: String,
    /// How often the GPUs are read and a batch is pushed.
    #[arg(long, default_value = "15s")]
    pub interval: String,
    /// This machine's instance id as the fleet inventory knows it (EC2 instance id, GCE
    /// numeric id, Azure vmId). Default: asked from the cloud's metadata service.
    #[arg(long)]
    pub instance_id: Option<String>,
    /// Which cloud's metadata service to ask for the instance id.
    #[arg(long, value_enum, default_value = "auto")]
    pub cloud: Cloud,
    /// Base URL of the metadata service (default http://169.254.169.254).
    #[arg(long)]
    pub metadata_url: Option<String>,
    /// Read and push once, then exit (0 when the server stored every sample).
    #[arg(long)]
    pub once: bool,
    /// Print each push's outcome as a JSON line instead of text.
    #[arg(long)]
    pub json: bool,
    /// Samples held while the server cannot be reached; the oldest are dropped beyond it.
    #[arg(long, default_value_t = 40_000)]
    pub buffer: usize,
    /// `--token` (a `fleet` token), `--ca-file`, `--cert-file`, `--key-file`.
    #[command(flatten)]
    pub transport: super::transport::TransportArgs,
}

/// What a run did (for tests and `--once`).
#[derive(Debug, Clone, PartialEq)]
pub struct Summary {
    pub instance_id: String,
    /// The cloud whose metadata service gave the id; `None` with `--instance-id`.
    pub cloud: Option<Cloud>,
    /// Readings taken (one per GPU per interval).
    pub read: u64,
    pub accepted: u64,
    pub rejected: u64,
    /// Dropped from a full buffer while the server was away.
    pub dropped: u64,
    /// Still undelivered at exit.
    pub undelivered: u64,
}

/// Shortest interval accepted.
const MIN_INTERVAL: Duration = Duration::from_millis(100);

/// Tries of `--once` before it gives up.
const ONCE_TRIES: u32 = 3;

/// How long the last delivery at shutdown may take.
const FINAL_FLUSH: Duration = Duration::from_secs(5);

/// The flags, checked: bad ones are usage errors (exit 2).
struct Settings {
    interval: Duration,
    instance_id: Option<String>,
}

fn settings(a: &AgentArgs) -> Result<Settings, CliError> {
    let interval = humantime::parse_duration(&a.interval).map_err(|e| {
        CliError::Usage(format!(
            "--interval {}: not a duration like 15s: {e}",
            quote(&a.interval)
        ))
    })?;
    if interval < MIN_INTERVAL {
        return Err(CliError::Usage(format!(
            "--interval {}: at least {}",
            quote(&a.interval),
            humantime::format_duration(MIN_INTERVAL)
        )));
    }
    if a.buffer == 0 {
        return Err(CliError::Usage("--buffer: at least 1".into()));
    }
    let instance_id = match a.instance_id.as_deref().map(str::trim) {
        None => None,
        Some("") => return Err(CliError::Usage("--instance-id: empty".into())),
        Some(id) => {
            limits::GPU_INSTANCE_ID
                .check(id)
                .map_err(|e| CliError::Usage(format!("--instance-id {e}")))?;
            Some(id.to_string())
        }
    };
    if let Some(u) = &a.metadata_url {
        url::Url::parse(u)
            .map_err(|e| CliError::Usage(format!("--metadata-url {}: {e}", quote(u))))?;
    }
    push::lazy_channel(&a.server, &a.transport).map_err(CliError::Usage)?;
    Ok(Settings {
        interval,
        instance_id,
    })
}

/// `bursar agent`: checks the flags, opens NVML (exit 2 in one line where there is none)
/// and runs until Ctrl-C or SIGTERM (or one push with `--once`).
pub async fn run(a: AgentArgs) -> Result<(), CliError> {
    settings(&a)?;
    let reader = NvmlReader::open().map_err(|e| CliError::Usage(e.to_string()))?;
    run_with(&a, Box::new(reader), super::setup::shutdown_signal())
        .await
        .map(|_| ())
}

/// The agent over any `GpuReader` until `shutdown` resolves (or after one push with
/// `--once`).
pub async fn run_with(
    a: &AgentArgs,
    mut reader: Box<dyn GpuReader>,
    shutdown: impl Future<Output = ()>,
) -> Result<Summary, CliError> {
    let s = settings(a)?;
    let (cloud, instance_id) = match s.instance_id {
        Some(id) => (None, id),
        None => {
            let (c, id) =
                metadata::instance_id(a.cloud, a.metadata_url.as_deref(), metadata::TIMEOUT)
                    .await
                    .map_err(|e| match e {
                        metadata::MetadataError::NoCloud { .. } => CliError::Usage(e.to_string()),
                        metadata::MetadataError::Failed { .. } => CliError::Failed(e.to_string()),
                    })?;
            (Some(c), id)
        }
    };
    tracing::info!(instance = %instance_id, cloud = cloud.map(Cloud::as_str), "agent started");
    let channel = push::lazy_channel(&a.server, &a.transport).map_err(CliError::Usage)?;
    let mut agent = Agent {
        args: a,
        client: FleetServiceClient::new(channel),
        buffer: Buffer::new(a.buffer),
        summary: Summary {
            instance_id,
            cloud,
            read: 0,
            accepted: 0,
            rejected: 0,
            dropped: 0,
            undelivered: 0,
        },
    };
    let result = if a.once {
        agent.once(reader.as_mut()).await
    } else {
        agent.run(reader.as_mut(), s.interval, shutdown).await;
        Ok(())
    };
    agent.summary.dropped = agent.buffer.dropped();
    agent.summary.undelivered = agent.buffer.len() as u64;
    result.map(|()| agent.summary)
}

struct Agent<'a> {
    args: &'a AgentArgs,
    client: FleetServiceClient<super::transport::ClientChannel>,
    buffer: Buffer,
    summary: Summary,
}

impl Agent<'_> {
    /// Reads every GPU into the buffer, stamped now. A failed read is logged and skipped:
    /// no reading is unknown, never zero.
    fn read(&mut self, reader: &mut dyn GpuReader) {
        let at = Utc::now();
        let ts = crate::server::convert::timestamp(at);
        match reader.read() {
            Ok(gpus) => {
                self.summary.read += gpus.len() as u64;
                let id = &self.summary.instance_id;
                self.buffer
                    .extend(gpus.into_iter().map(|g| proto::GpuUtilizationSample {
                        instance_id: id.clone(),
                        gpu: g.gpu,
                        at: Some(ts),
                        utilization_percent: g.utilization_percent,
                        memory_used_mib: g.memory_used_mib,
                        power_watts: g.power_watts,
                    }));
            }
            Err(e) => tracing::warn!(error = %e, "cannot read the GPUs; nothing pushed for now"),
        }
    }

    /// Delivers the buffer, batch by batch, until it is empty or a call fails.
    async fn deliver(&mut self) -> Result<(), push::NotDelivered> {
        while let Some(d) = push::send_batch(&mut self.client, &mut self.buffer).await? {
            self.record(&d);
        }
        Ok(())
    }

    fn record(&mut self, d: &Delivered) {
        self.summary.accepted += u64::from(d.accepted);
        self.summary.rejected += d.rejected.len() as u64;
        if self.args.json {
            let rejected: Vec<serde_json::Value> = d
                .rejected
                .iter()
                .map(
                    |r| serde_json::json!({"index": r.index, "field": r.field, "reason": r.reason}),
                )
                .collect();
            crate::outln!(
                "{}",
                serde_json::json!({
                    "at": Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
                    "instance_id": self.summary.instance_id,
                    "sent": d.sent,
                    "accepted": d.accepted,
                    "rejected": rejected,
                    "dropped": self.buffer.dropped(),
                })
            );
        } else {
            match &d.message {
                None => crate::outln!(
                    "pushed {} samples of {}: {} stored",
                    d.sent,
                    self.summary.instance_id,
                    d.accepted
                ),
                Some(m) => crate::outln!(
                    "pushed {} samples of {}: {} stored, {} rejected ({m})",
                    d.sent,
                    self.summary.instance_id,
                    d.accepted,
                    d.rejected.len()
                ),
            }
        }
    }

    /// `--once`: one reading, delivered within a few tries. A partly rejected batch fails
    /// (exit 1) with the server's message.
    async fn once(&mut self, reader: &mut dyn GpuReader) -> Result<(), CliError> {
        self.read(reader);
        if self.buffer.is_empty() {
            return Err(CliError::Failed("no GPU could be read".into()));
        }
        let mut attempt = 0;
        loop {
            match push::send_batch(&mut self.client, &mut self.buffer).await {
                Ok(Some(d)) => {
                    self.record(&d);
                    return match d.message {
                        Some(m) => Err(CliError::Failed(format!(
                            "the server rejected samples: {m}"
                        ))),
                        None => Ok(()),
                    };
                }
                Ok(None) => return Ok(()),
                Err(e) if attempt + 1 < ONCE_TRIES => {
                    let wait =
                        push::backoff(attempt, Duration::from_millis(500), Duration::from_secs(4));
                    tracing::warn!(error = %e, retry_in = ?wait, "push failed; retrying");
                    tokio::time::sleep(wait).await;
                    attempt += 1;
                }
                Err(e) => {
                    return Err(CliError::Failed(format!(
                        "cannot push to bursar at {} after {ONCE_TRIES} tries: {e}",
                        self.args.server
                    )));
                }
            }
        }
    }

    /// Reads every `interval` and delivers; an undelivered batch is retried with backoff
    /// (while readings keep going into the bounded buffer) until `shutdown`.
    async fn run(
        &mut self,
        reader: &mut dyn GpuReader,
        interval: Duration,
        shutdown: impl Future<Output = ()>,
    ) {
        let first = interval.min(Duration::from_secs(1));
        let max = interval.max(Duration::from_secs(60));
        let mut next_read = tokio::time::Instant::now();
        let mut next_send = next_read;
        let mut failures = 0u32;
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                _ = &mut shutdown => break,
                _ = tokio::time::sleep_until(next_read.min(next_send)) => {}
            }
            let now = tokio::time::Instant::now();
            if now >= next_read {
                self.read(reader);
                next_read += interval;
                if next_read < now {
                    // Far behind (a suspended machine): read on the interval from now.
                    next_read = now + interval;
                }
            }
            if now >= next_send || failures == 0 {
                let delivered = tokio::select! {
                    _ = &mut shutdown => break,
                    r = self.deliver() => r,
                };
                match delivered {
                    Ok(()) => {
                        if failures > 0 {
                            tracing::info!(after = failures, "pushing again");
                        }
                        failures = 0;
                        next_send = next_read;
                    }
                    Err(e) => {
                        let wait = push::backoff(failures, first, max);
                        tracing::warn!(
                            error = %e,
                            held = self.buffer.len(),
                            dropped = self.buffer.dropped(),
                            retry_in = ?wait,
                            "cannot push to bursar; keeping the samples"
                        );
                        failures += 1;
                        next_send = tokio::time::Instant::now() + wait;
                    }
                }
            }
        }
        if !self.buffer.is_empty() {
            match tokio::time::timeout(FINAL_FLUSH, self.deliver()).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => {
                    tracing::warn!(error = %e, held = self.buffer.len(), "stopping with samples undelivered")
                }
                Err(_) => tracing::warn!(
                    held = self.buffer.len(),
                    "stopping with samples undelivered (no answer)"
                ),
            }
        }
        tracing::info!("agent stopped");
    }
}
