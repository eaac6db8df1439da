//! The agent's way to the server: a bounded buffer of samples not yet delivered (oldest
//! dropped first, counted) and one `ReportGpuUtilization` call per batch over a lazily
//! connected channel, so a server that is down at start or goes away is retried, not fatal.
//! A batch the server rejected in part is not sent again: its good samples are stored, and
//! its bad ones would be rejected again.
use std::collections::VecDeque;
use std::time::Duration;

use tonic::Code;
use tonic::service::interceptor::InterceptedService;

use crate::cli::transport::{ClientChannel, TransportArgs};

use crate::domain::limits;
use crate::proto;
use crate::proto::fleet_service_client::FleetServiceClient;
use crate::server::utilization::response_in_status;

/// Samples waiting for the server, oldest first, at most `cap`.
#[derive(Debug)]
pub struct Buffer {
    queue: VecDeque<proto::GpuUtilizationSample>,
    cap: usize,
    dropped: u64,
}

impl Buffer {
    pub fn new(cap: usize) -> Buffer {
        let cap = cap.max(1);
        Buffer {
            queue: VecDeque::with_capacity(cap.min(limits::GPU_SAMPLES.max)),
            cap,
            dropped: 0,
        }
    }

    /// Adds samples, dropping the oldest ones over the cap.
    pub fn extend(&mut self, samples: impl IntoIterator<Item = proto::GpuUtilizationSample>) {
        for s in samples {
            if self.queue.len() == self.cap {
                self.queue.pop_front();
                self.dropped += 1;
            }
            self.queue.push_back(s);
        }
    }

    pub fn len(&self) -> usize {
        self.queue.len()
    }

    pub fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }

    /// Samples dropped so far because the buffer was full.
    pub fn dropped(&self) -> u64 {
        self.dropped
    }

    /// The oldest samples, at most one call's worth.
    fn batch(&self) -> Vec<proto::GpuUtilizationSample> {
        let n = self.queue.len().min(limits::GPU_SAMPLES.max);
        self.queue.iter().take(n).cloned().collect()
    }

    /// Forgets the `n` oldest samples (delivered).
    fn consume(&mut self, n: usize) {
        self.queue.drain(..n.min(self.queue.len()));
    }
}

/// What one call achieved.
#[derive(Debug, Clone, PartialEq)]
pub struct Delivered {
    /// Samples sent in the call.
    pub sent: usize,
    pub accepted: u32,
    pub rejected: Vec<proto::RejectedSample>,
    /// The server's message when it rejected some samples.
    pub message: Option<String>,
}

/// A call that did not deliver: the samples stay in the buffer for the next try.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{0}")]
pub struct NotDelivered(pub String);

/// A channel to `server` that connects on first use and again after a failure, with TLS
/// for `https://` and the bearer token of `transport`.
pub fn lazy_channel(server: &str, transport: &TransportArgs) -> Result<ClientChannel, String> {
    let uri = crate::cli::client::server_uri(server);
    let bearer = transport.bearer()?;
    let channel = transport.endpoint(&uri, server)?.connect_lazy();
    Ok(InterceptedService::new(channel, bearer))
}

/// Sends the oldest batch of `buffer`. Delivered (in whole or in part: a partly rejected
/// batch is consumed too) or not (the server could not be reached or failed; the batch
/// stays). `Ok(None)` when the buffer is empty.
pub async fn send_batch(
    client: &mut FleetServiceClient<ClientChannel>,
    buffer: &mut Buffer,
) -> Result<Option<Delivered>, NotDelivered> {
    if buffer.is_empty() {
        return Ok(None);
    }
    let samples = buffer.batch();
    let sent = samples.len();
    match client
        .report_gpu_utilization(proto::ReportGpuUtilizationRequest { samples })
        .await
    {
        Ok(r) => {
            buffer.consume(sent);
            let r = r.into_inner();
            Ok(Some(Delivered {
                sent,
                accepted: r.accepted,
                rejected: r.rejected,
                message: None,
            }))
        }
        Err(status) if status.code() == Code::InvalidArgument => {
            // Sending the same samples again would meet the same answer.
            buffer.consume(sent);
            let r = response_in_status(&status).unwrap_or_default();
            Ok(Some(Delivered {
                sent,
                accepted: r.accepted,
                rejected: r.rejected,
                message: Some(status.message().to_string()),
            }))
        }
        Err(status) => Err(NotDelivered(format!(
            "{:?}: {}",
            status.code(),
            crate::domain::quote::clip(status.message())
        ))),
    }
}

/// Delay before retry `attempt` (0-based) of an undelivered batch: doubling from `first`
/// up to `max`, with ±20 % jitter so many agents do not retry in step.
pub fn backoff(attempt: u32, first: Duration, max: Duration) -> Duration {
    let base = first
        .saturating_mul(1u32 << attempt.min(16))
        .min(max.max(first));
    let jitter = rand::random_range(0.8..=1.2);
    base.mul_f64(jitter)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(i: u32) -> proto::GpuUtilizationSample {
        proto::GpuUtilizationSample {
            instance_id: "i-1".into(),
            gpu: i.to_string(),
            ..Default::default()
        }
    }

    #[test]
    fn a_full_buffer_drops_the_oldest_and_counts_them() {
        let mut b = Buffer::new(3);
        b.extend((0..5).map(s));
        assert_eq!(b.len(), 3);
        assert_eq!(b.dropped(), 2);
        let gpus: Vec<String> = b.batch().into_iter().map(|x| x.gpu).collect();
        assert_eq!(gpus, ["2", "3", "4"]);
        b.consume(2);
        assert_eq!(b.batch()[0].gpu, "4");
        b.consume(5);
        assert!(b.is_empty());
    }

    #[test]
    fn a_batch_holds_at_most_one_call_s_worth() {
        let mut b = Buffer::new(25_000);
        b.extend((0..25_000).map(s));
        assert_eq!(b.batch().len(), limits::GPU_SAMPLES.max);
        assert_eq!(b.dropped(), 0);
    }

    #[test]
    fn backoff_doubles_up_to_its_ceiling_with_jitter() {
        let first = Duration::from_secs(1);
        let max = Duration::from_secs(60);
        for (attempt, expect) in [(0, 1.0), (1, 2.0), (3, 8.0), (6, 60.0), (40, 60.0)] {
            let d = backoff(attempt, first, max).as_secs_f64();
            assert!(
                (expect * 0.8..=expect * 1.2).contains(&d),
                "attempt {attempt}: {d}s"
            );
        }
    }
}
