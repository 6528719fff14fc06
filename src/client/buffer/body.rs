//! [`BufferedBody`]: the response body a body-reading layer hands on.

use std::collections::VecDeque;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{Buf, Bytes};
use http::HeaderMap;
use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;

use crate::BoxError;

pin_project! {
    /// The response body handed on by [`BufferResponse`](super::BufferResponse): the same
    /// bytes the server sent, either read whole (see [`buffered`](Self::buffered)) or, when
    /// the body was not read, passed the bound or failed while read, the bytes read so far
    /// followed by the rest of the original body (or its error), untouched.
    ///
    /// Its data is [`Bytes`] and its error a [`BoxError`].
    pub struct BufferedBody<B> {
        #[pin]
        kind: Kind<B>,
    }
}

pin_project! {
    #[project = KindProj]
    enum Kind<B> {
        // Never read: the original body.
        Untouched { #[pin] body: B },
        // Read whole.
        Whole { data: Option<Bytes>, trailers: Option<HeaderMap> },
        // Read in part: these frames, then the rest of the body, or the error it failed with.
        Partial {
            prefix: VecDeque<Frame<Bytes>>,
            rest: Option<Pin<Box<B>>>,
            error: Option<BoxError>,
        },
    }
}

impl<B> BufferedBody<B> {
    pub(crate) fn untouched(body: B) -> Self {
        BufferedBody {
            kind: Kind::Untouched { body },
        }
    }

    pub(crate) fn whole(data: Bytes, trailers: Option<HeaderMap>) -> Self {
        BufferedBody {
            kind: Kind::Whole {
                data: Some(data),
                trailers,
            },
        }
    }

    pub(crate) fn partial(
        chunks: Vec<Bytes>,
        trailers: Option<HeaderMap>,
        rest: Option<Pin<Box<B>>>,
        error: Option<BoxError>,
    ) -> Self {
        let mut prefix: VecDeque<Frame<Bytes>> = chunks.into_iter().map(Frame::data).collect();
        prefix.extend(trailers.map(Frame::trailers));
        BufferedBody {
            kind: Kind::Partial {
                prefix,
                rest,
                error,
            },
        }
    }

    /// The whole body, when it was read within the bound and has not been polled yet:
    /// the caller of a polling layer can read the final answer without collecting it.
    ///
    /// ```
    /// # use tower_throttle::BufferedBody;
    /// fn job_state<B>(res: &http::Response<BufferedBody<B>>) -> Option<&[u8]> {
    ///     res.body().buffered().map(|bytes| &bytes[..])
    /// }
    /// ```
    pub fn buffered(&self) -> Option<&Bytes> {
        match &self.kind {
            Kind::Whole { data, .. } => data.as_ref(),
            _ => None,
        }
    }

    /// Whether the body was read whole (within the bound).
    pub fn is_buffered(&self) -> bool {
        matches!(self.kind, Kind::Whole { .. })
    }
}

impl<B> Body for BufferedBody<B>
where
    B: Body,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        match self.project().kind.project() {
            KindProj::Untouched { body } => poll_bytes(body, cx),
            KindProj::Whole { data, trailers } => Poll::Ready(
                data.take()
                    .filter(|d| !d.is_empty())
                    .map(Frame::data)
                    .or_else(|| trailers.take().map(Frame::trailers))
                    .map(Ok),
            ),
            KindProj::Partial {
                prefix,
                rest,
                error,
            } => {
                if let Some(frame) = prefix.pop_front() {
                    return Poll::Ready(Some(Ok(frame)));
                }
                if let Some(e) = error.take() {
                    return Poll::Ready(Some(Err(e)));
                }
                match rest {
                    Some(body) => poll_bytes(body.as_mut(), cx),
                    None => Poll::Ready(None),
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.kind {
            Kind::Untouched { body } => body.is_end_stream(),
            Kind::Whole { data, trailers } => {
                data.as_ref().is_none_or(Bytes::is_empty) && trailers.is_none()
            }
            Kind::Partial {
                prefix,
                rest,
                error,
            } => {
                prefix.is_empty()
                    && error.is_none()
                    && rest.as_ref().is_none_or(|b| b.is_end_stream())
            }
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.kind {
            Kind::Untouched { body } => body.size_hint(),
            Kind::Whole { data, .. } => {
                SizeHint::with_exact(data.as_ref().map_or(0, |d| d.len() as u64))
            }
            Kind::Partial { prefix, rest, .. } => {
                let read: u64 = prefix
                    .iter()
                    .filter_map(Frame::data_ref)
                    .map(|d| d.len() as u64)
                    .sum();
                let Some(rest) = rest else {
                    return SizeHint::with_exact(read);
                };
                let hint = rest.size_hint();
                let mut sum = SizeHint::new();
                sum.set_lower(hint.lower().saturating_add(read));
                if let Some(upper) = hint.upper() {
                    sum.set_upper(upper.saturating_add(read));
                }
                sum
            }
        }
    }
}

/// Polls `body` for a frame, its data as `Bytes` (no copy when it is `Bytes`) and its error
/// boxed.
pub(crate) fn poll_bytes<B>(
    body: Pin<&mut B>,
    cx: &mut Context<'_>,
) -> Poll<Option<Result<Frame<Bytes>, BoxError>>>
where
    B: Body,
    B::Error: Into<BoxError>,
{
    body.poll_frame(cx).map(|frame| {
        frame.map(|r| {
            r.map(|f| f.map_data(|mut d| d.copy_to_bytes(d.remaining())))
                .map_err(Into::into)
        })
    })
}

impl<B: std::fmt::Debug> std::fmt::Debug for BufferedBody<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.kind {
            Kind::Untouched { body } => f.debug_tuple("Untouched").field(body).finish(),
            Kind::Whole { data, trailers } => f
                .debug_struct("Whole")
                .field("len", &data.as_ref().map_or(0, Bytes::len))
                .field("trailers", &trailers.is_some())
                .finish(),
            Kind::Partial {
                prefix,
                rest,
                error,
            } => f
                .debug_struct("Partial")
                .field("prefix_frames", &prefix.len())
                .field("rest", rest)
                .field("error", error)
                .finish(),
        }
    }
}
