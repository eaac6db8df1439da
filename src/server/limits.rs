//! The tower layer that bounds what RPCs take of the server (`[limits]`): at most
//! `max_concurrent_rpcs` calls in progress — one more is answered RESOURCE_EXHAUSTED at once
//! (a semaphore's `try_acquire`, never a queue) — and `default_deadline` for a call whose
//! client sent no `grpc-timeout`, answered DEADLINE_EXCEEDED (the handler's future is
//! dropped: its transaction rolls back). Health and reflection are outside both (probes
//! must answer under load; reflection and Watch are streams). The message size limit is
//! set on each service in `mod.rs` (tonic answers OUT_OF_RANGE).
//!
//! A call holds its slot until its response is ready (for these unary RPCs: the handler
//! has finished).
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use futures::future::{Either, Ready, ready};
use pin_project_lite::pin_project;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Sleep;

use super::roles::is_open;
use crate::config::LimitsConfig;

#[derive(Clone)]
pub struct LimitsLayer {
    slots: Arc<Semaphore>,
    max: usize,
    deadline: Duration,
}

impl LimitsLayer {
    pub fn new(cfg: &LimitsConfig) -> LimitsLayer {
        let max = cfg.max_concurrent_rpcs.clamp(1, Semaphore::MAX_PERMITS);
        LimitsLayer {
            slots: Arc::new(Semaphore::new(max)),
            max,
            deadline: cfg.default_deadline,
        }
    }
}

impl<S> tower_layer::Layer<S> for LimitsLayer {
    type Service = Limited<S>;
    fn layer(&self, inner: S) -> Limited<S> {
        Limited {
            inner,
            layer: self.clone(),
        }
    }
}

#[derive(Clone)]
pub struct Limited<S> {
    inner: S,
    layer: LimitsLayer,
}

type Refused<R, E> = Ready<Result<R, E>>;

impl<S, B, RB> tower_service::Service<http::Request<B>> for Limited<S>
where
    S: tower_service::Service<http::Request<B>, Response = http::Response<RB>>,
    RB: Default,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future =
        Either<Either<LimitedFuture<S::Future>, S::Future>, Refused<S::Response, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        if is_open(req.uri().path()) {
            return Either::Left(Either::Right(self.inner.call(req)));
        }
        let Ok(permit) = self.layer.slots.clone().try_acquire_owned() else {
            let status = tonic::Status::resource_exhausted(format!(
                "the server is at its limit of {} RPCs in progress (limits.max_concurrent_rpcs); retry with backoff",
                self.layer.max
            ));
            return Either::Right(ready(Ok(status.into_http())));
        };
        let sleep = (!req.headers().contains_key("grpc-timeout"))
            .then(|| tokio::time::sleep(self.layer.deadline));
        Either::Left(Either::Left(LimitedFuture {
            inner: self.inner.call(req),
            sleep,
            deadline: self.layer.deadline,
            permit: Some(permit),
        }))
    }
}

pin_project! {
    pub struct LimitedFuture<F> {
        #[pin]
        inner: F,
        #[pin]
        sleep: Option<Sleep>,
        deadline: Duration,
        permit: Option<OwnedSemaphorePermit>,
    }
}

impl<F, RB, E> Future for LimitedFuture<F>
where
    F: Future<Output = Result<http::Response<RB>, E>>,
    RB: Default,
{
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        if let Poll::Ready(out) = this.inner.poll(cx) {
            this.permit.take();
            return Poll::Ready(out);
        }
        if let Some(sleep) = this.sleep.as_pin_mut()
            && sleep.poll(cx).is_ready()
        {
            this.permit.take();
            let status = tonic::Status::deadline_exceeded(format!(
                "no answer within the default deadline of {} (limits.default_deadline; the client sent no grpc-timeout)",
                humantime::format_duration(*this.deadline)
            ));
            return Poll::Ready(Ok(status.into_http()));
        }
        Poll::Pending
    }
}
