//! [`RetryFuture`]: send, decide, wait, replay.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use http::{Extensions, Request, Response};
use pin_project_lite::pin_project;
use tokio::time::{Instant, Sleep};
use tower_service::Service;

use super::error::{into_box_error, poll_ready_boxed};
use super::{outcome_of, AttemptInfo, BoxError, Policy, RetryContext, RetryError, Step};
use crate::backoff::replay::ReplayBody;

pin_project! {
    /// Response future of the retrying layers.
    pub struct RetryFuture<S, F, P> {
        #[pin]
        state: State<F>,
        svc: S,
        // Kept for retries. Its extensions are the request's, or none when the request's
        // held only the context (each retry adds the context back).
        head: http::request::Parts,
        // The request's own extensions, moved into the first attempt (no copy).
        first_extensions: Option<Extensions>,
        // The body for the next send, and a handle kept to replay it later.
        next_body: Option<ReplayBody>,
        spare: Option<ReplayBody>,
        policy: Arc<P>,
        ctx: RetryContext,
        attempts: u32,
        started: Option<Instant>,
        prev_delay: Option<Duration>,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<F> {
        Waiting { #[pin] sleep: Sleep },
        Ready,
        Calling { #[pin] fut: F },
        Failed { error: Option<BoxError> },
    }
}

impl<S, F, P: Policy> RetryFuture<S, F, P> {
    /// `svc` must be ready (it was polled ready by the service that made this future).
    pub(crate) fn new<B>(svc: S, req: Request<B>, policy: Arc<P>) -> Self
    where
        B: http_body::Body + Send + 'static,
        B::Error: Into<BoxError>,
    {
        let (mut head, body) = req.into_parts();
        let ctx = match head.extensions.get::<RetryContext>() {
            Some(ctx) => ctx.clone(),
            None => {
                let ctx = RetryContext::new();
                head.extensions.insert(ctx.clone());
                ctx
            }
        };
        policy.prepare(&mut head, &ctx);
        let body = ReplayBody::wrap(body, policy.max_replay_bytes());
        let spare = body.try_clone();
        let state = match policy.admit(&head) {
            Ok(None) => State::Ready,
            Ok(Some(wait)) => State::Waiting {
                sleep: tokio::time::sleep(wait),
            },
            Err(e) => State::Failed {
                error: Some(Box::new(e)),
            },
        };
        let first_extensions = std::mem::take(&mut head.extensions);
        if first_extensions.len() > 1 {
            head.extensions = first_extensions.clone();
        }
        RetryFuture {
            state,
            svc,
            head,
            first_extensions: Some(first_extensions),
            next_body: Some(body),
            spare,
            policy,
            ctx,
            attempts: 0,
            started: None,
            prev_delay: None,
        }
    }
}

/// The head of one attempt: a copy of `head` carrying `extensions` (the kept head's
/// extensions are not copied only to be replaced).
fn attempt_head(head: &http::request::Parts, extensions: Extensions) -> http::request::Parts {
    let (mut parts, ()) = Request::new(()).into_parts();
    parts.method = head.method.clone();
    parts.uri = head.uri.clone();
    parts.version = head.version;
    parts.headers = head.headers.clone();
    parts.extensions = extensions;
    parts
}

impl<S, F, P, ResB> Future for RetryFuture<S, F, P>
where
    S: Service<Request<ReplayBody>, Response = Response<ResB>, Future = F>,
    S::Error: Into<BoxError>,
    F: Future<Output = Result<Response<ResB>, S::Error>>,
    P: Policy,
{
    type Output = Result<Response<ResB>, super::Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        loop {
            match this.state.as_mut().project() {
                StateProj::Failed { error } => {
                    let e = error
                        .take()
                        .unwrap_or_else(|| "retry future polled after completion".into());
                    return Poll::Ready(Err(super::Error::new(e)));
                }
                StateProj::Waiting { sleep } => {
                    ready!(sleep.poll(cx));
                    this.state.set(State::Ready);
                }
                StateProj::Ready => {
                    // The first send uses the service that was polled ready by `call`;
                    // polling a ready service again is harmless.
                    if let Err(e) = ready!(poll_ready_boxed(this.svc, cx)) {
                        return Poll::Ready(Err(super::Error::new(e)));
                    }
                    let Some(body) = this.next_body.take() else {
                        return Poll::Ready(Err(super::Error::new(
                            "retry future polled after completion",
                        )));
                    };
                    let extensions = this.first_extensions.take().unwrap_or_else(|| {
                        let mut extensions = this.head.extensions.clone();
                        if extensions.get::<RetryContext>().is_none() {
                            extensions.insert(this.ctx.clone());
                        }
                        extensions
                    });
                    let req = Request::from_parts(attempt_head(this.head, extensions), body);
                    if this.policy.reads_elapsed() {
                        this.started.get_or_insert_with(Instant::now);
                    }
                    *this.attempts += 1;
                    let fut = this.svc.call(req);
                    this.state.set(State::Calling { fut });
                }
                StateProj::Calling { fut } => {
                    let result = ready!(fut.poll(cx)).map_err(into_box_error);
                    let info = AttemptInfo {
                        attempts: *this.attempts,
                        elapsed: this.started.map_or(Duration::ZERO, |s| s.elapsed()),
                        prev_delay: *this.prev_delay,
                        replayable: this.spare.as_ref().is_some_and(|b| b.is_replayable()),
                    };
                    let outcome = outcome_of(&result);
                    match this.policy.decide(this.head, this.ctx, info, &outcome) {
                        Step::Return => return Poll::Ready(result.map_err(super::Error::new)),
                        Step::Fail(e) => return Poll::Ready(Err(e.into())),
                        Step::GiveUp { hint } => {
                            let (last_status, source) = match result {
                                Ok(res) => (Some(res.status()), None),
                                Err(e) => (None, Some(e)),
                            };
                            // Attempts by every stacked layer: all retries plus the first.
                            return Poll::Ready(Err(RetryError::Exhausted {
                                attempts: this.ctx.retries() + 1,
                                last_status,
                                hint,
                                source,
                            }
                            .into()));
                        }
                        Step::Retry(delay) => {
                            // A body that can no longer be replayed ends the retries: the
                            // caller gets this attempt's outcome.
                            let Some(body) = this.spare.take().filter(|b| b.is_replayable()) else {
                                return Poll::Ready(result.map_err(super::Error::new));
                            };
                            *this.spare = body.try_clone();
                            *this.next_body = Some(body);
                            *this.prev_delay = Some(delay);
                            drop(result);
                            this.state.set(State::Waiting {
                                sleep: tokio::time::sleep(delay),
                            });
                        }
                    }
                }
            }
        }
    }
}
