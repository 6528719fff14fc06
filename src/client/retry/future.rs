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

use super::{outcome_of, AttemptInfo, Policy, RetryContext, Verdict};
use crate::client::grpc::is_grpc_call;
use crate::client::{into_box_error, poll_ready_boxed, BoxError, Error, ReplayBody, RetryError};

pin_project! {
    /// Response future of [`Retrying`](crate::Retrying): sends the request, waits and
    /// sends it again as the layer's policy decides.
    pub struct RetryFuture<S, F, P> {
        #[pin]
        state: State<F>,
        svc: S,
        attempts: Attempts<P>,
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

/// Everything a request's attempts share, apart from the service and the state.
struct Attempts<P> {
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
    sent: u32,
    started: Option<Instant>,
    prev_delay: Option<Duration>,
    // The current attempt's span (`attempt`, DEBUG): entered while the attempt is sent
    // and polled, so the inner service's events nest in it. Disabled (free) unless a
    // subscriber wants DEBUG spans of this crate.
    span: tracing::Span,
}

/// What follows an attempt's outcome.
enum Settled<T> {
    /// The caller gets this.
    Done(Result<T, Error>),
    /// Send again after this delay.
    Retry(Duration),
}

const POLLED_AFTER_COMPLETION: &str = "retry future polled after completion";

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
            Ok(Some(wait)) => {
                tracing::debug!(
                    method = %head.method,
                    uri = %head.uri,
                    wait_ms = millis(wait),
                    "waiting at the endpoint gate"
                );
                State::Waiting {
                    sleep: tokio::time::sleep(wait),
                }
            }
            Err(e) => {
                tracing::warn!(method = %head.method, uri = %head.uri, "not sent: {e}");
                State::Failed {
                    error: Some(Box::new(e)),
                }
            }
        };
        let first_extensions = std::mem::take(&mut head.extensions);
        if first_extensions.len() > 1 {
            head.extensions = first_extensions.clone();
        }
        RetryFuture {
            state,
            svc,
            attempts: Attempts {
                head,
                first_extensions: Some(first_extensions),
                next_body: Some(body),
                spare,
                policy,
                ctx,
                sent: 0,
                started: None,
                prev_delay: None,
                span: tracing::Span::none(),
            },
        }
    }
}

/// A duration in whole milliseconds, for log fields.
fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
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

impl<P: Policy> Attempts<P> {
    /// The request of the next attempt, carrying `body` (taken from `next_body`), and the
    /// attempt counted. Returned bare rather than in an `Option`, so that it is built where
    /// the service call takes it instead of being copied there.
    fn next_request(&mut self, body: ReplayBody) -> Request<ReplayBody> {
        let extensions = self.first_extensions.take().unwrap_or_else(|| {
            let mut extensions = self.head.extensions.clone();
            if extensions.get::<RetryContext>().is_none() {
                extensions.insert(self.ctx.clone());
            }
            extensions
        });
        if self.policy.reads_elapsed() {
            self.started.get_or_insert_with(Instant::now);
        }
        self.sent += 1;
        self.span = tracing::debug_span!(
            "attempt",
            // Counted over every stacked retrying layer, the first attempt being 1.
            attempt = self.ctx.retries() + 1,
            method = %self.head.method,
            uri = %self.head.uri,
        );
        Request::from_parts(attempt_head(&self.head, extensions), body)
    }

    /// Asks the policy about an attempt's outcome and turns its verdict into what follows.
    fn settle<ResB>(
        &mut self,
        result: Result<Response<ResB>, BoxError>,
    ) -> Settled<Response<ResB>> {
        let info = AttemptInfo {
            attempts: self.sent,
            elapsed: self.started.map_or(Duration::ZERO, |s| s.elapsed()),
            prev_delay: self.prev_delay,
            replayable: self.spare.as_ref().is_some_and(ReplayBody::is_replayable),
        };
        let outcome = outcome_of(&result);
        let verdict = self.policy.decide(&self.head, &self.ctx, info, &outcome);
        if let Verdict::Retry(delay) = &verdict {
            tracing::debug!(
                parent: &self.span,
                attempt = self.ctx.retries(),
                delay_ms = millis(*delay),
                reason = outcome.retry_reason(),
                status = outcome.status().map(|s| s.as_u16()),
                "retry scheduled"
            );
        }
        match verdict {
            Verdict::Return => Settled::Done(result.map_err(Error::new)),
            Verdict::Fail(e) => Settled::Done(self.give_up(result, e)),
            Verdict::GiveUp { hint } => {
                let exhausted = RetryError::Exhausted {
                    // Attempts by every stacked layer: all retries plus the first.
                    attempts: self.ctx.retries() + 1,
                    last_status: outcome_of(&result).status(),
                    hint,
                    source: None,
                };
                Settled::Done(self.give_up(result, exhausted))
            }
            Verdict::Retry(delay) if self.rearm(delay) => Settled::Retry(delay),
            // A body that can no longer be replayed ends the retries: the caller gets this
            // attempt's outcome.
            Verdict::Retry(_) => {
                tracing::debug!(parent: &self.span, "not retried: the body cannot be replayed");
                Settled::Done(result.map_err(Error::new))
            }
        }
    }

    /// What the caller gets when the layer stops retrying with `why`: the last response
    /// itself for a gRPC call (so that the gRPC client reads the server's status, message
    /// and metadata), else `why`, carrying the last attempt's error as its source. No
    /// layer retries this request again.
    fn give_up<ResB>(
        &self,
        result: Result<Response<ResB>, BoxError>,
        why: RetryError,
    ) -> Result<Response<ResB>, Error> {
        self.ctx.stop();
        tracing::warn!(
            parent: &self.span,
            attempts = self.ctx.retries() + 1,
            last_status = outcome_of(&result).status().map(|s| s.as_u16()),
            "{why}"
        );
        match result {
            Ok(res) if is_grpc_call(&self.head, res.headers()) => Ok(res),
            Ok(_) => Err(why.into()),
            Err(e) => Err(why.caused_by(e).into()),
        }
    }

    /// Readies the body for a retry after `delay`; false when it can no longer be replayed.
    fn rearm(&mut self, delay: Duration) -> bool {
        let Some(body) = self.spare.take().filter(ReplayBody::is_replayable) else {
            return false;
        };
        self.spare = body.try_clone();
        self.next_body = Some(body);
        self.prev_delay = Some(delay);
        true
    }
}

impl<S, F, P, ResB> Future for RetryFuture<S, F, P>
where
    S: Service<Request<ReplayBody>, Response = Response<ResB>, Future = F>,
    S::Error: Into<BoxError>,
    F: Future<Output = Result<Response<ResB>, S::Error>>,
    P: Policy,
{
    type Output = Result<Response<ResB>, Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        loop {
            // Each arm sets the next state itself: a state built in place is moved once,
            // where one assigned after the match would be copied whole once more.
            match this.state.as_mut().project() {
                StateProj::Failed { error } => {
                    let e = error
                        .take()
                        .unwrap_or_else(|| POLLED_AFTER_COMPLETION.into());
                    return Poll::Ready(Err(Error::new(e)));
                }
                StateProj::Waiting { sleep } => {
                    ready!(sleep.poll(cx));
                    this.state.set(State::Ready);
                }
                StateProj::Ready => {
                    // The first send uses the service that was polled ready by `call`;
                    // polling a ready service again is harmless.
                    if let Err(e) = ready!(poll_ready_boxed(this.svc, cx)) {
                        return Poll::Ready(Err(Error::new(e)));
                    }
                    // No body once it was handed out for good.
                    let Some(body) = this.attempts.next_body.take() else {
                        return Poll::Ready(Err(Error::new(POLLED_AFTER_COMPLETION)));
                    };
                    let req = this.attempts.next_request(body);
                    let fut = this.attempts.span.in_scope(|| this.svc.call(req));
                    this.state.set(State::Calling { fut });
                }
                StateProj::Calling { fut } => {
                    let polled = this.attempts.span.in_scope(|| fut.poll(cx));
                    let result = ready!(polled).map_err(into_box_error);
                    match this.attempts.settle(result) {
                        Settled::Done(out) => return Poll::Ready(out),
                        Settled::Retry(delay) => this.state.set(State::Waiting {
                            sleep: tokio::time::sleep(delay),
                        }),
                    }
                }
            }
        }
    }
}
