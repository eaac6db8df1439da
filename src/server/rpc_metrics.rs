//! The tower layer that counts and times every gRPC call into `metrics::RpcMetrics`: method
//! from the request's path, status from the response's `grpc-status` — in the headers for a
//! trailers-only answer (most errors), else in the trailers at the end of the body. A call
//! whose response is dropped before its status was sent counts as CANCELLED.
//!
//! Without a table (`RpcMetricsLayer::new(None)`: the HTTP port is off) the layer passes
//! calls through untouched but for one branch.
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::Instant;

use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;
use prost::Message;

use crate::metrics::RpcMetrics;
use crate::metrics::rpc::{CANCELLED, MethodId, UNKNOWN, parse_code};

/// Every (service, method) the server answers: bursar's services, health and reflection,
/// from their own descriptor sets.
pub fn served_methods() -> Vec<(String, String)> {
    let sets = [
        crate::proto::FILE_DESCRIPTOR_SET,
        tonic_health::pb::FILE_DESCRIPTOR_SET,
        tonic_reflection::pb::v1::FILE_DESCRIPTOR_SET,
        tonic_reflection::pb::v1alpha::FILE_DESCRIPTOR_SET,
    ];
    let mut out = Vec::new();
    for bytes in sets {
        // Compiled into the binary by build.rs or the crates: decoding them cannot fail
        // unless the build is broken, and then reflection fails to start too.
        let Ok(set) = prost_types::FileDescriptorSet::decode(bytes) else {
            tracing::warn!("a descriptor set does not decode; its calls count as unknown");
            continue;
        };
        for file in set.file {
            let package = file.package.unwrap_or_default();
            for svc in file.service {
                let name = svc.name.unwrap_or_default();
                let service = if package.is_empty() {
                    name
                } else {
                    format!("{package}.{name}")
                };
                for m in svc.method {
                    out.push((service.clone(), m.name.unwrap_or_default()));
                }
            }
        }
    }
    out
}

/// Measures the calls of the service it wraps into `metrics` (none: pass through).
#[derive(Clone)]
pub struct RpcMetricsLayer {
    metrics: Option<Arc<RpcMetrics>>,
}

impl RpcMetricsLayer {
    pub fn new(metrics: Option<Arc<RpcMetrics>>) -> Self {
        RpcMetricsLayer { metrics }
    }
}

impl<S> tower_layer::Layer<S> for RpcMetricsLayer {
    type Service = Metered<S>;
    fn layer(&self, inner: S) -> Metered<S> {
        Metered {
            inner,
            metrics: self.metrics.clone(),
        }
    }
}

#[derive(Clone)]
pub struct Metered<S> {
    inner: S,
    metrics: Option<Arc<RpcMetrics>>,
}

/// One call being measured; recorded once, with CANCELLED if dropped unfinished.
struct Call {
    metrics: Arc<RpcMetrics>,
    method: MethodId,
    started: Instant,
    done: bool,
}

impl Call {
    fn finish(&mut self, code: u8) {
        if !self.done {
            self.done = true;
            self.metrics
                .record(self.method, code, self.started.elapsed());
        }
    }
}

impl Drop for Call {
    fn drop(&mut self) {
        self.finish(CANCELLED);
    }
}

impl<S, ReqBody, ResBody> tower_service::Service<http::Request<ReqBody>> for Metered<S>
where
    S: tower_service::Service<http::Request<ReqBody>, Response = http::Response<ResBody>>,
{
    type Response = http::Response<MeteredBody<ResBody>>;
    type Error = S::Error;
    type Future = MeteredFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<ReqBody>) -> Self::Future {
        let call = self.metrics.as_ref().map(|m| Call {
            method: m.method(req.uri().path()),
            metrics: m.clone(),
            started: Instant::now(),
            done: false,
        });
        MeteredFuture {
            inner: self.inner.call(req),
            call,
        }
    }
}

pin_project! {
    pub struct MeteredFuture<F> {
        #[pin]
        inner: F,
        call: Option<Call>,
    }
}

impl<F, B, E> Future for MeteredFuture<F>
where
    F: Future<Output = Result<http::Response<B>, E>>,
{
    type Output = Result<http::Response<MeteredBody<B>>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let result = ready!(this.inner.poll(cx));
        let mut call = this.call.take();
        Poll::Ready(match result {
            Ok(resp) => {
                // Trailers-only: the status is in the headers and the body is empty.
                if let Some(v) = resp.headers().get("grpc-status")
                    && let Some(mut c) = call.take()
                {
                    c.finish(parse_code(v.as_bytes()));
                }
                Ok(resp.map(|inner| MeteredBody { inner, call }))
            }
            Err(e) => {
                if let Some(mut c) = call {
                    c.finish(UNKNOWN);
                }
                Err(e)
            }
        })
    }
}

pin_project! {
    /// A response body that records its call when the trailers (with `grpc-status`) go by.
    pub struct MeteredBody<B> {
        #[pin]
        inner: B,
        call: Option<Call>,
    }
}

impl<B: Body> Body for MeteredBody<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let this = self.project();
        let frame = ready!(this.inner.poll_frame(cx));
        if this.call.is_some() {
            let code = match &frame {
                Some(Ok(f)) => f.trailers_ref().map(|t| {
                    t.get("grpc-status")
                        .map_or(UNKNOWN, |v| parse_code(v.as_bytes()))
                }),
                // A body that fails or ends without trailers carried no status.
                Some(Err(_)) | None => Some(UNKNOWN),
            };
            if let Some(code) = code
                && let Some(mut c) = this.call.take()
            {
                c.finish(code);
            }
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
