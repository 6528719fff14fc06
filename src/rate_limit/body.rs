//! The response body of [`RateLimit`](super::RateLimit): the inner service's body, or a
//! body of our own for responses the layer answers itself (429, 401, …); or, with
//! [`Unwrapped`], the inner service's body type itself.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;

pin_project! {
    /// Either the inner service's body, untouched, or a complete body written by the layer.
    pub struct RateLimitBody<B> {
        #[pin]
        kind: Kind<B>,
    }
}

pin_project! {
    #[project = KindProj]
    enum Kind<B> {
        Inner { #[pin] body: B },
        Full { data: Option<Bytes> },
    }
}

impl<B> RateLimitBody<B> {
    pub(crate) fn inner(body: B) -> Self {
        RateLimitBody {
            kind: Kind::Inner { body },
        }
    }

    pub(crate) fn full(data: Bytes) -> Self {
        RateLimitBody {
            kind: Kind::Full {
                data: (!data.is_empty()).then_some(data),
            },
        }
    }
}

impl<B: std::fmt::Debug> std::fmt::Debug for RateLimitBody<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.kind {
            Kind::Inner { body } => f.debug_tuple("Inner").field(body).finish(),
            Kind::Full { data } => f.debug_tuple("Full").field(data).finish(),
        }
    }
}

impl<B> Body for RateLimitBody<B>
where
    B: Body<Data = Bytes>,
{
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        match self.project().kind.project() {
            KindProj::Inner { body } => body.poll_frame(cx),
            KindProj::Full { data } => Poll::Ready(data.take().map(|d| Ok(Frame::data(d)))),
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.kind {
            Kind::Inner { body } => body.is_end_stream(),
            Kind::Full { data } => data.is_none(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.kind {
            Kind::Inner { body } => body.size_hint(),
            Kind::Full { data } => {
                SizeHint::with_exact(data.as_ref().map_or(0, |d| d.len() as u64))
            }
        }
    }
}

mod sealed {
    pub trait Sealed {}
}

/// How a [`RateLimit`](super::RateLimit) service types its response body: [`Wrapped`]
/// (the default) or [`Unwrapped`]. Sealed; chosen with
/// [`RateLimitLayer::unwrapped_body`](super::RateLimitLayer::unwrapped_body).
pub trait BodyMode<B>: sealed::Sealed {
    /// The response body type.
    type Body;
    /// The inner service's body, forwarded.
    fn inner(body: B) -> Self::Body;
    /// The body of a response the layer writes itself.
    fn full(data: Bytes) -> Self::Body;
}

/// The default [`BodyMode`]: responses carry a [`RateLimitBody`] around the inner
/// service's body, whatever its type.
#[derive(Debug, Clone, Copy, Default)]
pub struct Wrapped;

/// The [`BodyMode`] of [`RateLimitLayer::unwrapped_body`](super::RateLimitLayer::unwrapped_body):
/// responses keep the inner service's body type `B`, and the layer's own responses are
/// made with `B::from(Bytes)`. Requires `B: From<Bytes>` (axum's `Body`,
/// `http_body_util::Full<Bytes>`, `String`-like bodies), which rules out bodies such as
/// hyper's `Incoming` or boxed bodies.
#[derive(Debug, Clone, Copy, Default)]
pub struct Unwrapped;

impl sealed::Sealed for Wrapped {}
impl sealed::Sealed for Unwrapped {}

impl<B> BodyMode<B> for Wrapped {
    type Body = RateLimitBody<B>;
    fn inner(body: B) -> Self::Body {
        RateLimitBody::inner(body)
    }
    fn full(data: Bytes) -> Self::Body {
        RateLimitBody::full(data)
    }
}

impl<B: From<Bytes>> BodyMode<B> for Unwrapped {
    type Body = B;
    fn inner(body: B) -> B {
        body
    }
    fn full(data: Bytes) -> B {
        B::from(data)
    }
}
