//! [`ResponseFuture`] of the [`RateLimit`](super::RateLimit) service.

use std::future::Future;
use std::marker::PhantomData;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use bytes::Bytes;
use http::{Request, Response};
use pin_project_lite::pin_project;
use tower_service::Service;

use super::body::{BodyMode, Wrapped};
use super::limiter::{Headline, Limiter, Settled};
use crate::engine::gcra::Decision;
use crate::engine::store::StoreError;
use crate::telemetry::Timer;

pin_project! {
    /// Response future of [`RateLimit`](super::RateLimit).
    pub struct ResponseFuture<F, C, S, R, M = Wrapped> {
        #[pin]
        state: State<F, C, S, R>,
        headers: Option<(Arc<Limiter>, Headline)>,
        mode: PhantomData<fn() -> M>,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<F, C, S, R> {
        // Waiting for an asynchronous store, holding the request and a ready service.
        Checking {
            check: C,
            inner: Option<S>,
            req: Option<Request<R>>,
            limiter: Arc<Limiter>,
            matched: u64,
            timer: Timer,
        },
        Calling { #[pin] fut: F },
        Respond { res: Option<Response<Bytes>> },
    }
}

impl<F, C, S, R, M> ResponseFuture<F, C, S, R, M> {
    pub(crate) fn calling(fut: F, headers: Option<(Arc<Limiter>, Headline)>) -> Self {
        ResponseFuture {
            state: State::Calling { fut },
            headers,
            mode: PhantomData,
        }
    }

    pub(crate) fn respond(res: Response<Bytes>) -> Self {
        ResponseFuture {
            state: State::Respond { res: Some(res) },
            headers: None,
            mode: PhantomData,
        }
    }

    pub(crate) fn checking(
        check: C,
        inner: S,
        req: Request<R>,
        limiter: Arc<Limiter>,
        matched: u64,
        timer: Timer,
    ) -> Self {
        ResponseFuture {
            state: State::Checking {
                check,
                inner: Some(inner),
                req: Some(req),
                limiter,
                matched,
                timer,
            },
            headers: None,
            mode: PhantomData,
        }
    }
}

impl<F, C, S, R, M, B, E> Future for ResponseFuture<F, C, S, R, M>
where
    F: Future<Output = Result<Response<B>, E>>,
    C: Future<Output = Result<Decision, StoreError>> + Unpin,
    S: Service<Request<R>, Future = F, Response = Response<B>, Error = E>,
    M: BodyMode<B>,
{
    type Output = Result<Response<M::Body>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        loop {
            match this.state.as_mut().project() {
                StateProj::Checking {
                    check,
                    inner,
                    req,
                    limiter,
                    matched,
                    timer,
                } => {
                    let result = ready!(Pin::new(check).poll(cx));
                    let (Some(mut inner), Some(req)) = (inner.take(), req.take()) else {
                        panic!("ResponseFuture polled after completion");
                    };
                    match limiter.settled(*timer).settle(*matched, result, &req) {
                        Settled::Admit(headline) => {
                            *this.headers = headline.map(|h| (Arc::clone(limiter), h));
                            let fut = inner.call(req);
                            this.state.set(State::Calling { fut });
                        }
                        Settled::Reject(res) => this.state.set(State::Respond { res: Some(res) }),
                    }
                }
                StateProj::Calling { fut } => {
                    let res = ready!(fut.poll(cx))?;
                    let (mut parts, body) = res.into_parts();
                    if let Some((limiter, headline)) = this.headers.take() {
                        limiter.write_headers(&mut parts.headers, &headline);
                    }
                    return Poll::Ready(Ok(Response::from_parts(parts, M::inner(body))));
                }
                StateProj::Respond { res } => {
                    let res = res.take().expect("ResponseFuture polled after completion");
                    return Poll::Ready(Ok(res.map(M::full)));
                }
            }
        }
    }
}
