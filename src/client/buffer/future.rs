//! [`BufferResponseFuture`]: waits for the response, then reads its body up to the bound.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use bytes::{Buf, Bytes, BytesMut};
use http::{HeaderMap, Response};
use http_body::Body;
use pin_project_lite::pin_project;

use super::{BufferSettings, BufferedBody, ResponseBytes};
use crate::BoxError;

pin_project! {
    /// Response future of [`BufferResponse`](super::BufferResponse).
    pub struct BufferResponseFuture<F, B> {
        #[pin]
        state: State<F, B>,
        settings: Arc<BufferSettings>,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<F, B> {
        Calling { #[pin] fut: F },
        // `None` once the response was handed on.
        Reading { read: Option<Reading<B>> },
    }
}

/// A body being read: what came so far.
struct Reading<B> {
    head: http::response::Parts,
    // Boxed so that a body over the bound can be handed on after it was polled here.
    body: Pin<Box<B>>,
    read: Joined,
    trailers: Option<HeaderMap>,
}

/// The bytes read so far, in as few buffers as possible: a body that came in one chunk is
/// kept as that chunk (no copy); from the second chunk on they are copied into one buffer,
/// so many small chunks cost no more memory than their bytes (a server sending 1-byte
/// chunks must not make a 64 KiB bound hold 64 Ki chunk handles).
enum Joined {
    Empty,
    One(Bytes),
    Many(BytesMut),
}

impl Joined {
    fn len(&self) -> usize {
        match self {
            Joined::Empty => 0,
            Joined::One(b) => b.len(),
            Joined::Many(b) => b.len(),
        }
    }

    fn push(&mut self, data: Bytes) {
        *self = match std::mem::replace(self, Joined::Empty) {
            Joined::Empty => Joined::One(data),
            Joined::One(first) => {
                let mut many = BytesMut::with_capacity(first.len() + data.len());
                many.extend_from_slice(&first);
                many.extend_from_slice(&data);
                Joined::Many(many)
            }
            Joined::Many(mut many) => {
                many.extend_from_slice(&data);
                Joined::Many(many)
            }
        }
    }

    fn into_bytes(self) -> Bytes {
        match self {
            Joined::Empty => Bytes::new(),
            Joined::One(b) => b,
            Joined::Many(b) => b.freeze(),
        }
    }
}

impl<F, B> BufferResponseFuture<F, B> {
    pub(crate) fn new(fut: F, settings: Arc<BufferSettings>) -> Self {
        BufferResponseFuture {
            state: State::Calling { fut },
            settings,
        }
    }
}

impl<F, B, E> Future for BufferResponseFuture<F, B>
where
    F: Future<Output = Result<Response<B>, E>>,
    B: Body,
    B::Error: Into<BoxError>,
{
    type Output = Result<Response<BufferedBody<B>>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        loop {
            match this.state.as_mut().project() {
                StateProj::Calling { fut } => {
                    let (head, body) = ready!(fut.poll(cx))?.into_parts();
                    let hint = body.size_hint();
                    if !this
                        .settings
                        .reads(head.status, &head.headers, hint.lower())
                    {
                        let body = BufferedBody::untouched(body);
                        return Poll::Ready(Ok(Response::from_parts(head, body)));
                    }
                    if body.is_end_stream() {
                        return Poll::Ready(Ok(whole(head, Bytes::new(), None)));
                    }
                    this.state.set(State::Reading {
                        read: Some(Reading {
                            head,
                            body: Box::pin(body),
                            read: Joined::Empty,
                            trailers: None,
                        }),
                    });
                }
                StateProj::Reading { read } => {
                    let Some(mut reading) = read.take() else {
                        panic!("BufferResponseFuture polled after completion");
                    };
                    match reading.poll_read(cx, this.settings.max_bytes) {
                        Poll::Ready(ended) => return Poll::Ready(Ok(reading.finish(ended))),
                        Poll::Pending => {
                            *read = Some(reading);
                            return Poll::Pending;
                        }
                    }
                }
            }
        }
    }
}

/// The response with a body read whole: the bytes go in its extensions too, for the
/// retry policies above.
fn whole<B>(
    mut head: http::response::Parts,
    bytes: Bytes,
    trailers: Option<HeaderMap>,
) -> Response<BufferedBody<B>> {
    head.extensions.insert(ResponseBytes(bytes.clone()));
    Response::from_parts(head, BufferedBody::whole(bytes, trailers))
}

/// How a read ended.
enum Ended {
    /// The body ended within the bound.
    Whole,
    /// The body passed the bound with this chunk; the rest is still in it.
    OverBound(Bytes),
    /// The body failed.
    Failed(BoxError),
}

impl<B> Reading<B>
where
    B: Body,
    B::Error: Into<BoxError>,
{
    /// Reads frames until the body ends, passes `max_bytes` or fails.
    fn poll_read(&mut self, cx: &mut Context<'_>, max_bytes: usize) -> Poll<Ended> {
        Poll::Ready(loop {
            let frame = match ready!(self.body.as_mut().poll_frame(cx)) {
                None => break Ended::Whole,
                Some(Err(e)) => break Ended::Failed(e.into()),
                Some(Ok(frame)) => frame,
            };
            match frame.into_data() {
                Ok(mut data) => {
                    let data = data.copy_to_bytes(data.remaining());
                    if data.len() > max_bytes.saturating_sub(self.read.len()) {
                        break Ended::OverBound(data);
                    }
                    if !data.is_empty() {
                        self.read.push(data);
                    }
                }
                Err(frame) => {
                    if let Ok(trailers) = frame.into_trailers() {
                        self.trailers
                            .get_or_insert_with(HeaderMap::new)
                            .extend(trailers);
                    }
                }
            }
        })
    }

    /// The response to hand on: the body whole, or what was read followed by the rest
    /// (or the error) as it came.
    fn finish(self, ended: Ended) -> Response<BufferedBody<B>> {
        let Reading {
            head,
            body,
            read,
            trailers,
        } = self;
        let len = read.len();
        let (crossing, rest, error) = match ended {
            Ended::Whole => return whole(head, read.into_bytes(), trailers),
            Ended::OverBound(crossing) => {
                tracing::debug!(read = len, "response body over the bound: handed on unread");
                (Some(crossing), Some(body), None)
            }
            Ended::Failed(e) => {
                tracing::debug!(read = len, "response body failed while read: handed on");
                (None, None, Some(e))
            }
        };
        let prefix = Some(read.into_bytes())
            .filter(|b| !b.is_empty())
            .into_iter()
            .chain(crossing)
            .collect();
        let body = BufferedBody::partial(prefix, trailers, rest, error);
        Response::from_parts(head, body)
    }
}
