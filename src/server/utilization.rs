//! `FleetService/ReportGpuUtilization`: node agents push GPU utilisation in batches. Each
//! sample is converted and checked on its own (`sample`); the good ones are stored even when
//! others in the batch are bad, and the answer lists every rejection by index and field.
//!
//! A batch with rejections answers INVALID_ARGUMENT (`rejection_status`): its message names
//! the first bad sample's index and field and counts the stored ones, and its details are a
//! `google.rpc.Status` (the gRPC rich error model, what `grpc-status-details-bin` carries)
//! whose one `Any` is the `ReportGpuUtilizationResponse`. `response_in_status` reads it back.
//!
//! The server stores pushes through a `SampleWriter` (group commit): an agent pushes a few
//! samples at a time, and one transaction per push would cost SQLite a WAL write of every
//! page it touches for each push. The writer stores all the pushes waiting at once in one
//! insert and answers each when it is stored; under light load a push is stored alone,
//! without waiting.
use chrono::{DateTime, Duration, Utc};
use prost::Message as _;
use tokio::sync::{mpsc, oneshot};
use tonic::{Code, Status};

use super::errors::store_status;
use crate::domain::fleet::{BadSample, GpuSample, SampleSource};
use crate::domain::limits;
use crate::proto;
use crate::store::Store;

/// How far ahead of the server's clock a sample's `at` may be (clock skew on the node).
pub const MAX_FUTURE: Duration = Duration::minutes(5);

/// The `Any` type URL of the response carried in an INVALID_ARGUMENT's details.
pub const RESPONSE_TYPE_URL: &str = "type.googleapis.com/bursar.v1.ReportGpuUtilizationResponse";

/// `google.rpc.Status`, the message `grpc-status-details-bin` carries.
#[derive(Clone, PartialEq, prost::Message)]
struct RpcStatus {
    #[prost(int32, tag = "1")]
    code: i32,
    #[prost(string, tag = "2")]
    message: String,
    #[prost(message, repeated, tag = "3")]
    details: Vec<prost_types::Any>,
}

fn bad(field: &'static str, reason: impl Into<String>) -> BadSample {
    BadSample {
        field,
        reason: reason.into(),
    }
}

/// One pushed sample as a `GpuSample`, or why it is refused (naming its field). A missing
/// `at` is `now`, the server's receive time; one more than `MAX_FUTURE` ahead of `now` is
/// refused.
pub fn sample(s: &proto::GpuUtilizationSample, now: DateTime<Utc>) -> Result<GpuSample, BadSample> {
    limits::GPU_INSTANCE_ID
        .check(&s.instance_id)
        .map_err(|e| bad("instance_id", e))?;
    limits::GPU_ID.check(&s.gpu).map_err(|e| bad("gpu", e))?;
    let at = match &s.at {
        None => now,
        Some(t) => u32::try_from(t.nanos)
            .ok()
            .and_then(|n| DateTime::from_timestamp(t.seconds, n))
            .ok_or_else(|| bad("at", "not a valid timestamp"))?,
    };
    if at > now + MAX_FUTURE {
        return Err(bad(
            "at",
            format!(
                "{} is more than {} minutes ahead of the server's clock ({})",
                at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
                MAX_FUTURE.num_minutes(),
                now.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
            ),
        ));
    }
    let sample = GpuSample {
        instance_id: s.instance_id.clone(),
        gpu: s.gpu.clone(),
        at,
        utilization_percent: s.utilization_percent,
        memory_used_mib: s.memory_used_mib,
        power_watts: s.power_watts,
        source: SampleSource::Push,
    };
    sample.validate()?;
    Ok(sample)
}

/// Checks a batch: its good samples, and a rejection (index, field, reason) for each bad
/// one. `Err` for more than `limits::GPU_SAMPLES` samples.
pub fn check(
    req: &proto::ReportGpuUtilizationRequest,
    now: DateTime<Utc>,
) -> Result<(Vec<GpuSample>, Vec<proto::RejectedSample>), Status> {
    limits::GPU_SAMPLES
        .check(req.samples.len())
        .map_err(|e| Status::invalid_argument(format!("samples: {e}")))?;
    let mut good = Vec::with_capacity(req.samples.len());
    let mut rejected = Vec::new();
    for (i, s) in req.samples.iter().enumerate() {
        match sample(s, now) {
            Ok(s) => good.push(s),
            Err(e) => rejected.push(proto::RejectedSample {
                index: i as u32,
                field: e.field.to_string(),
                reason: e.reason,
            }),
        }
    }
    if !rejected.is_empty() {
        tracing::debug!(
            rejected = rejected.len(),
            accepted = good.len(),
            "ReportGpuUtilization: samples rejected"
        );
    }
    Ok((good, rejected))
}

/// Checks a batch, stores its good samples and answers how many were stored and which were
/// rejected (with the stored samples, for the idle policy's in-memory windows). `Err` only
/// for the whole batch: more than `limits::GPU_SAMPLES` samples (nothing stored), or the
/// store failing. A response with rejections is turned into INVALID_ARGUMENT by
/// `rejection_status` (the handler's answer).
pub async fn report(
    store: &Store,
    req: proto::ReportGpuUtilizationRequest,
    now: DateTime<Utc>,
) -> Result<(proto::ReportGpuUtilizationResponse, Vec<GpuSample>), Status> {
    let (good, rejected) = check(&req, now)?;
    let accepted = store
        .insert_gpu_samples(&good)
        .await
        .map_err(store_status)? as u32;
    Ok((
        proto::ReportGpuUtilizationResponse { accepted, rejected },
        good,
    ))
}

/// Samples stored in one transaction at most by the `SampleWriter`.
pub const GROUP_MAX: usize = 50_000;

/// Pushes waiting for the writer; a handler waits for room beyond this.
const QUEUE: usize = 1024;

type Job = (
    Vec<GpuSample>,
    oneshot::Sender<Result<Vec<GpuSample>, Status>>,
);

/// Group commit of pushed samples: every push waiting when the previous insert ends goes
/// into the next one, up to `GROUP_MAX` samples. Cheap to clone; the task ends when the
/// last clone is dropped.
#[derive(Clone)]
pub struct SampleWriter {
    jobs: mpsc::Sender<Job>,
}

impl SampleWriter {
    /// Starts the writer's task on `store`.
    pub fn spawn(store: Store) -> SampleWriter {
        let (jobs, rx) = mpsc::channel(QUEUE);
        tokio::spawn(write_groups(store, rx));
        SampleWriter { jobs }
    }

    /// Stores `samples` (with others waiting, in one transaction) and gives them back.
    pub async fn write(&self, samples: Vec<GpuSample>) -> Result<Vec<GpuSample>, Status> {
        if samples.is_empty() {
            return Ok(samples);
        }
        let gone = || Status::unavailable("the sample writer has stopped (server shutting down)");
        let (tx, rx) = oneshot::channel();
        self.jobs.send((samples, tx)).await.map_err(|_| gone())?;
        rx.await.map_err(|_| gone())?
    }

    /// `report`, storing through the writer.
    pub async fn report(
        &self,
        req: proto::ReportGpuUtilizationRequest,
        now: DateTime<Utc>,
    ) -> Result<(proto::ReportGpuUtilizationResponse, Vec<GpuSample>), Status> {
        let (good, rejected) = check(&req, now)?;
        let good = self.write(good).await?;
        Ok((
            proto::ReportGpuUtilizationResponse {
                accepted: good.len() as u32,
                rejected,
            },
            good,
        ))
    }
}

/// The writer's task: one insert per group of waiting jobs; each job gets its samples back
/// once they are stored, or the error.
async fn write_groups(store: Store, mut rx: mpsc::Receiver<Job>) {
    while let Some(first) = rx.recv().await {
        let mut n = first.0.len();
        let mut jobs = vec![first];
        while n < GROUP_MAX {
            match rx.try_recv() {
                Ok(job) => {
                    n += job.0.len();
                    jobs.push(job);
                }
                Err(_) => break,
            }
        }
        if jobs.len() == 1 {
            let (samples, reply) = jobs.pop().expect("one job");
            let r = store.insert_gpu_samples(&samples).await;
            let _ = reply.send(r.map(|_| samples).map_err(store_status));
            continue;
        }
        let mut all = Vec::with_capacity(n);
        let mut replies = Vec::with_capacity(jobs.len());
        for (samples, reply) in jobs {
            replies.push((samples.len(), reply));
            all.extend(samples);
        }
        match store.insert_gpu_samples(&all).await {
            Ok(_) => {
                for (len, reply) in replies.into_iter().rev() {
                    let mine = all.split_off(all.len() - len);
                    let _ = reply.send(Ok(mine));
                }
            }
            Err(e) => {
                let status = store_status(e);
                for (_, reply) in replies {
                    let _ = reply.send(Err(status.clone()));
                }
            }
        }
    }
}

/// The answer to a batch: OK with the response when nothing was rejected, else
/// INVALID_ARGUMENT naming the first rejection's index and field and counting the stored
/// samples, with the response in the details.
pub fn rejection_status(
    resp: proto::ReportGpuUtilizationResponse,
) -> Result<proto::ReportGpuUtilizationResponse, Status> {
    let Some(first) = resp.rejected.first() else {
        return Ok(resp);
    };
    let total = resp.accepted as usize + resp.rejected.len();
    let message = crate::domain::quote::clip(&format!(
        "samples[{}].{}: {}; {} of {} samples stored, {} rejected",
        first.index,
        first.field,
        first.reason,
        resp.accepted,
        total,
        resp.rejected.len()
    ))
    .to_string();
    let details = RpcStatus {
        code: Code::InvalidArgument as i32,
        message: message.clone(),
        details: vec![prost_types::Any {
            type_url: RESPONSE_TYPE_URL.to_string(),
            value: resp.encode_to_vec(),
        }],
    };
    Err(Status::with_details(
        Code::InvalidArgument,
        message,
        details.encode_to_vec().into(),
    ))
}

/// The `ReportGpuUtilizationResponse` an INVALID_ARGUMENT from `rejection_status` carries,
/// for clients (the agent, tests); `None` for any other status.
pub fn response_in_status(status: &Status) -> Option<proto::ReportGpuUtilizationResponse> {
    let rpc = RpcStatus::decode(status.details()).ok()?;
    rpc.details
        .iter()
        .find(|a| a.type_url == RESPONSE_TYPE_URL)
        .and_then(|a| proto::ReportGpuUtilizationResponse::decode(a.value.as_slice()).ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> DateTime<Utc> {
        "2026-11-28T12:00:00Z".parse().unwrap()
    }

    fn pushed(u: f64) -> proto::GpuUtilizationSample {
        proto::GpuUtilizationSample {
            instance_id: "i-0abc".into(),
            gpu: "0".into(),
            at: Some(prost_types::Timestamp {
                seconds: now().timestamp() - 15,
                nanos: 0,
            }),
            utilization_percent: u,
            memory_used_mib: Some(1024.0),
            power_watts: Some(67.5),
        }
    }

    #[test]
    fn a_good_sample_converts_and_a_missing_time_is_the_receive_time() {
        let s = sample(&pushed(3.5), now()).unwrap();
        assert_eq!(s.at, now() - Duration::seconds(15));
        assert_eq!(s.utilization_percent, 3.5);
        assert_eq!(s.source, SampleSource::Push);
        let mut p = pushed(3.5);
        p.at = None;
        assert_eq!(sample(&p, now()).unwrap().at, now());
    }

    #[test]
    fn bad_samples_name_their_field() {
        let field = |p: proto::GpuUtilizationSample| sample(&p, now()).unwrap_err().field;
        assert_eq!(field(pushed(f64::NAN)), "utilization_percent");
        assert_eq!(field(pushed(-0.5)), "utilization_percent");
        let mut p = pushed(1.0);
        p.power_watts = Some(f64::INFINITY);
        assert_eq!(field(p), "power_watts");
        let mut p = pushed(1.0);
        p.instance_id = String::new();
        assert_eq!(field(p), "instance_id");
        let mut p = pushed(1.0);
        p.instance_id = "i".repeat(300);
        assert_eq!(field(p), "instance_id");
        let mut p = pushed(1.0);
        p.gpu = "0\n1".into();
        assert_eq!(field(p), "gpu");
        let mut p = pushed(1.0);
        p.at = Some(prost_types::Timestamp {
            seconds: 0,
            nanos: -1,
        });
        assert_eq!(field(p), "at");
    }

    #[test]
    fn a_sample_from_the_future_is_refused_but_clock_skew_is_not() {
        let at = |secs: i64| {
            let mut p = pushed(1.0);
            p.at = Some(prost_types::Timestamp {
                seconds: now().timestamp() + secs,
                nanos: 0,
            });
            sample(&p, now())
        };
        assert!(at(299).is_ok());
        assert!(at(300).is_ok());
        let e = at(301).unwrap_err();
        assert_eq!(e.field, "at");
        assert!(e.reason.contains("5 minutes ahead"), "{}", e.reason);
    }

    #[test]
    fn rejections_become_invalid_argument_carrying_the_response() {
        let resp = proto::ReportGpuUtilizationResponse {
            accepted: 2,
            rejected: vec![
                proto::RejectedSample {
                    index: 1,
                    field: "utilization_percent".into(),
                    reason: "not a finite number".into(),
                },
                proto::RejectedSample {
                    index: 3,
                    field: "at".into(),
                    reason: "not a valid timestamp".into(),
                },
            ],
        };
        let status = rejection_status(resp.clone()).unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument);
        assert_eq!(
            status.message(),
            "samples[1].utilization_percent: not a finite number; 2 of 4 samples stored, 2 rejected"
        );
        assert_eq!(response_in_status(&status), Some(resp));
        let ok = proto::ReportGpuUtilizationResponse {
            accepted: 5,
            rejected: vec![],
        };
        assert_eq!(rejection_status(ok.clone()).unwrap(), ok);
        assert_eq!(response_in_status(&Status::internal("x")), None);
    }
}
