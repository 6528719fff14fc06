//! [`ReplayBody`]: a request body that a retry can send again, byte for byte.

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll, Waker};
use std::{fmt, mem, pin::Pin};

use bytes::{Buf, Bytes};
use http::HeaderMap;
use http_body::{Body, Frame, SizeHint};
use http_body_util::combinators::UnsyncBoxBody;
use pin_project_lite::pin_project;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The inner body, type-erased so that stacked retrying layers and clients name one body
/// type (`ReplayBody`) however deep the stack.
type Inner = UnsyncBoxBody<Bytes, BoxError>;

/// A replayed body reached bytes that were not kept (the original passed the limit or
/// failed after this clone was made).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BodyNotReplayable;

impl fmt::Display for BodyNotReplayable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("request body can no longer be replayed")
    }
}

impl std::error::Error for BodyNotReplayable {}

pin_project! {
    /// Converts any body to `Bytes` data and boxed errors, keeping its size hint and end.
    struct ToBytes<B> {
        #[pin]
        body: B,
    }
}

impl<B> Body for ToBytes<B>
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
        self.project().body.poll_frame(cx).map(|frame| {
            frame.map(|r| {
                r.map(|f| f.map_data(|mut d| d.copy_to_bytes(d.remaining())))
                    .map_err(Into::into)
            })
        })
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

/// Default limit on buffered request bytes: 64 KiB.
pub const DEFAULT_MAX_REPLAY_BYTES: usize = 64 * 1024;

/// Wraps a request body so it can be sent again.
///
/// The first attempt streams the inner body unchanged while a copy of each data frame is kept,
/// up to `max_bytes` (inclusive). Once more than `max_bytes` have been seen, or the inner body
/// fails, the copy is dropped and the body is no longer replayable; the attempt that is
/// reading goes on normally and is never failed because a retry became impossible.
///
/// All clones share the buffer; each keeps its own read position. Only one instance reads the
/// inner body at a time: a clone that has replayed everything buffered while another instance
/// still holds the inner body waits until that instance buffers more or is dropped.
///
/// A clone made while the body was replayable whose remaining bytes were later discarded
/// fails with [`BodyNotReplayable`] when it reaches them (never a hang, never a truncated
/// body). Check [`is_replayable`](Self::is_replayable) before sending a clone made in advance.
pub struct ReplayBody {
    shared: Arc<Mutex<Shared>>,
    /// The inner body while this instance reads it. A mutex only so that `ReplayBody` is
    /// `Sync` although the boxed body is not; polling reaches it through `get_mut`.
    inner: Mutex<Option<Inner>>,
    /// Buffered chunks this instance has yielded.
    pos: usize,
    /// Data bytes this instance has yielded.
    yielded: u64,
    trailers_sent: bool,
    done: bool,
}

/// The state every clone of one body shares. `body` is the inner body while no instance reads
/// it; `chunks` holds every non-empty data frame read from it while replayable; `bytes_read`
/// counts all data bytes read from it; `finished` says it ended (`None`, trailers or
/// `is_end_stream`); `lost` says something read from it was not kept, so clones behind the
/// reader are stuck; `waiters` are clones waiting for the instance that holds it.
struct Shared {
    body: Option<Inner>,
    chunks: Vec<Bytes>,
    bytes_read: u64,
    max_bytes: usize,
    trailers: Option<HeaderMap>,
    finished: bool,
    replayable: bool,
    lost: bool,
    orig_hint: SizeHint,
    waiters: Vec<Waker>,
}

impl Shared {
    fn discard(&mut self) {
        self.replayable = false;
        self.lost = true;
        self.chunks = Vec::new();
        self.trailers = None;
    }

    fn record_data(&mut self, data: &Bytes) {
        if data.is_empty() {
            return;
        }
        self.bytes_read = self.bytes_read.saturating_add(data.len() as u64);
        if self.replayable && self.bytes_read <= self.max_bytes as u64 {
            self.chunks.push(data.clone());
        } else {
            self.discard();
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A size hint from bounds that may be inconsistent, without panicking.
fn hint(lower: u64, upper: Option<u64>) -> SizeHint {
    let mut hint = upper.map_or_else(SizeHint::new, SizeHint::with_exact);
    hint.set_lower(upper.map_or(lower, |upper| lower.min(upper)));
    hint
}

impl ReplayBody {
    /// Wraps `body`, keeping up to `max_bytes` of its data for replays.
    ///
    /// A body whose size hint shows it exceeds `max_bytes` is not replayable from the start
    /// and nothing of it is buffered.
    pub fn new<B>(body: B, max_bytes: usize) -> ReplayBody
    where
        B: Body + Send + 'static,
        B::Error: Into<BoxError>,
    {
        let orig_hint = body.size_hint();
        let limit = max_bytes as u64;
        let replayable = orig_hint.lower() <= limit && orig_hint.upper().is_none_or(|u| u <= limit);
        let shared = Shared {
            body: Some(UnsyncBoxBody::new(ToBytes { body })),
            chunks: Vec::new(),
            bytes_read: 0,
            max_bytes,
            trailers: None,
            finished: false,
            replayable,
            lost: false,
            orig_hint,
            waiters: Vec::new(),
        };
        Self::with_shared(Arc::new(Mutex::new(shared)))
    }

    /// A body for another attempt, starting from the first byte, or `None` when the body can no
    /// longer be replayed (over the limit, or the inner body failed).
    pub fn try_clone(&self) -> Option<ReplayBody> {
        let replayable = lock(&self.shared).replayable;
        replayable.then(|| Self::with_shared(Arc::clone(&self.shared)))
    }

    /// Whether a retry is still possible.
    pub fn is_replayable(&self) -> bool {
        lock(&self.shared).replayable
    }

    fn slot(&mut self) -> &mut Option<Inner> {
        self.inner.get_mut().unwrap_or_else(PoisonError::into_inner)
    }

    fn with_shared(shared: Arc<Mutex<Shared>>) -> ReplayBody {
        ReplayBody {
            shared,
            inner: Mutex::new(None),
            pos: 0,
            yielded: 0,
            trailers_sent: false,
            done: false,
        }
    }

    /// Yields the next buffered frame, or takes the inner body to read past the buffer.
    #[allow(clippy::type_complexity)]
    fn resume(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Result<Inner, Poll<Option<Result<Frame<Bytes>, BoxError>>>> {
        let mut shared = lock(&self.shared);
        if let Some(chunk) = shared.chunks.get(self.pos).cloned() {
            self.pos += 1;
            self.yielded = self.yielded.saturating_add(chunk.len() as u64);
            return Err(Poll::Ready(Some(Ok(Frame::data(chunk)))));
        }
        if shared.lost {
            // The rest of this clone's bytes were discarded: fail rather than hang or send
            // a truncated body.
            self.done = true;
            return Err(Poll::Ready(Some(Err(Box::new(BodyNotReplayable)))));
        }
        if shared.finished {
            if !mem::replace(&mut self.trailers_sent, true) {
                if let Some(trailers) = shared.trailers.clone() {
                    return Err(Poll::Ready(Some(Ok(Frame::trailers(trailers)))));
                }
            }
            self.done = true;
            return Err(Poll::Ready(None));
        }
        match shared.body.take() {
            Some(body) => Ok(body),
            None => {
                // Another instance is reading: wait until it buffers more or lets go.
                if !shared.waiters.iter().any(|w| w.will_wake(cx.waker())) {
                    shared.waiters.push(cx.waker().clone());
                }
                Err(Poll::Pending)
            }
        }
    }
}

impl Body for ReplayBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        if this.done {
            return Poll::Ready(None);
        }
        let mut body = match this.slot().take() {
            Some(body) => body,
            None => match this.resume(cx) {
                Ok(body) => body,
                Err(poll) => return poll,
            },
        };
        let Poll::Ready(polled) = Pin::new(&mut body).poll_frame(cx) else {
            *this.slot() = Some(body);
            return Poll::Pending;
        };
        let out = polled;
        let mut end = out.is_none() || body.is_end_stream();
        let mut shared = lock(&this.shared);
        match &out {
            Some(Ok(frame)) => {
                if let Some(data) = frame.data_ref() {
                    shared.record_data(data);
                    this.pos = shared.chunks.len();
                    this.yielded = shared.bytes_read;
                } else if let Some(trailers) = frame.trailers_ref() {
                    shared.trailers = shared.replayable.then(|| trailers.clone());
                    shared.lost |= !shared.replayable;
                    (this.trailers_sent, end) = (true, true);
                }
            }
            Some(Err(_)) => {
                // Keep the failed body: later polls go to it, as without the wrapper.
                shared.discard();
                end = false;
            }
            None => {}
        }
        if end {
            shared.finished = true;
            this.done = true;
        }
        let waiters = mem::take(&mut shared.waiters);
        drop(shared);
        if !end {
            *this.slot() = Some(body);
        }
        waiters.into_iter().for_each(Waker::wake);
        Poll::Ready(out)
    }

    fn is_end_stream(&self) -> bool {
        if self.done {
            return true;
        }
        if let Some(body) = lock(&self.inner).as_ref() {
            return body.is_end_stream();
        }
        let shared = lock(&self.shared);
        if self.pos < shared.chunks.len() || shared.lost {
            false
        } else if shared.finished {
            self.trailers_sent || shared.trailers.is_none()
        } else {
            matches!(&shared.body, Some(body) if body.is_end_stream())
        }
    }

    fn size_hint(&self) -> SizeHint {
        if self.done {
            return SizeHint::with_exact(0);
        }
        if let Some(body) = lock(&self.inner).as_ref() {
            return body.size_hint();
        }
        let shared = lock(&self.shared);
        // Bytes read from the inner body that this instance has still to replay.
        let buffered = shared.bytes_read.saturating_sub(self.yielded);
        match (&shared.body, shared.lost, shared.finished) {
            (_, false, true) => SizeHint::with_exact(buffered),
            (Some(body), false, false) => {
                let inner = body.size_hint();
                let upper = inner.upper().and_then(|u| u.checked_add(buffered));
                hint(inner.lower().saturating_add(buffered), upper)
            }
            (_, lost, _) => {
                // The inner body is elsewhere (or lost): estimate from the original hint.
                let orig = &shared.orig_hint;
                let lower = orig.lower().saturating_sub(self.yielded);
                let upper = orig.upper().map(|u| u.saturating_sub(self.yielded));
                hint(if lost { lower } else { lower.max(buffered) }, upper)
            }
        }
    }
}

impl Drop for ReplayBody {
    fn drop(&mut self) {
        let inner = self.inner.get_mut().unwrap_or_else(PoisonError::into_inner);
        let Some(body) = inner.take() else { return };
        let mut shared = lock(&self.shared);
        // Hand the inner body back so a later clone goes on from here; useless once lost.
        shared.body = (!shared.lost).then_some(body);
        let waiters = mem::take(&mut shared.waiters);
        drop(shared);
        waiters.into_iter().for_each(Waker::wake);
    }
}

impl fmt::Debug for ReplayBody {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let replayable = lock(&self.shared).replayable;
        let (pos, done) = (self.pos, self.done);
        write!(
            f,
            "ReplayBody {{ replayable: {replayable}, pos: {pos}, done: {done} }}"
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::FutureExt;
    use http_body_util::{BodyExt, Empty, Full, StreamBody};
    use std::convert::Infallible;

    type Frames = Vec<Result<Bytes, HeaderMap>>;
    type Stream<E> =
        StreamBody<futures_util::stream::Iter<std::vec::IntoIter<Result<Frame<Bytes>, E>>>>;

    fn trailers() -> HeaderMap {
        HeaderMap::from_iter([(http::header::ETAG, http::HeaderValue::from_static("\"v1\""))])
    }

    fn stream<E>(items: Vec<Result<Frame<Bytes>, E>>) -> Stream<E> {
        StreamBody::new(futures_util::stream::iter(items))
    }

    /// A streaming body of `parts` then the test trailers, and the frames it should yield.
    fn chunked(parts: &[&'static str]) -> (Stream<Infallible>, Frames) {
        let data = parts.iter().map(|p| Ok(Bytes::from_static(p.as_bytes())));
        let frames: Frames = data.chain([Err(trailers())]).collect();
        let items = frames.iter().cloned();
        let items = items.map(|f| Ok(f.map_or_else(Frame::trailers, Frame::data)));
        (stream(items.collect()), frames)
    }

    async fn next_data<B: Body<Data = Bytes, Error: fmt::Debug> + Unpin>(body: &mut B) -> Bytes {
        let frame = body.frame().await.expect("a frame").expect("no error");
        frame.into_data().expect("a data frame")
    }

    async fn drain<B: Body<Data = Bytes, Error: fmt::Debug> + Unpin>(body: &mut B) -> Frames {
        let mut out = Vec::new();
        while let Some(frame) = body.frame().await {
            let frame = frame.expect("no error").into_data();
            out.push(frame.map_err(|f| f.into_trailers().unwrap_or_default()));
        }
        out
    }

    #[tokio::test]
    async fn full_body_replays_identical_bytes() {
        let expected: Frames = vec![Ok(Bytes::from_static(b"hello, world"))];
        let mut first = ReplayBody::new(Full::new(Bytes::from_static(b"hello, world")), 64);
        let mut spare = first.try_clone().unwrap();
        assert_eq!(spare.size_hint().exact(), Some(12));
        assert_eq!(drain(&mut first).await, expected);
        assert!(first.is_end_stream());
        let mut again = first.try_clone().unwrap();
        assert_eq!(again.size_hint().exact(), Some(12));
        assert_eq!(drain(&mut spare).await, expected);
        assert_eq!(drain(&mut again).await, expected);
        assert!(again.is_end_stream() && again.size_hint().exact() == Some(0));
    }

    #[tokio::test]
    async fn streaming_body_under_limit_replays_chunks_and_trailers() {
        let (body, expected) = chunked(&["one", "two", "three"]);
        let mut first = ReplayBody::new(body, 64);
        assert_eq!(drain(&mut first).await, expected);
        assert!(first.is_replayable());
        let mut clone = first.try_clone().unwrap();
        assert_eq!(clone.size_hint().exact(), Some(11));
        assert!(!clone.is_end_stream());
        assert_eq!(drain(&mut clone).await, expected);
        assert!(clone.is_end_stream());
        assert_eq!(drain(&mut clone.try_clone().unwrap()).await, expected);
    }

    #[tokio::test]
    async fn streaming_body_over_limit_streams_but_cannot_replay() {
        let (body, expected) = chunked(&["aaaa", "bbbb", "cccc"]);
        let mut first = ReplayBody::new(body, 10);
        let mut spare = first.try_clone().unwrap();
        assert_eq!(drain(&mut first).await, expected);
        assert!(!first.is_replayable() && !spare.is_replayable());
        assert!(first.try_clone().is_none());
        assert!(lock(&first.shared).chunks.is_empty());
        // A clone made in advance fails instead of ending early with a truncated body.
        let err = spare.frame().await.unwrap().unwrap_err();
        assert!(err.is::<BodyNotReplayable>());
        assert!(spare.is_end_stream());
    }

    #[tokio::test]
    async fn size_hint_over_limit_is_not_replayable_from_the_start() {
        let data = Bytes::from(vec![b'x'; 100]);
        let mut first = ReplayBody::new(Full::new(data.clone()), 99);
        assert!(!first.is_replayable());
        assert!(first.try_clone().is_none());
        assert_eq!(first.size_hint().exact(), Some(100));
        assert_eq!(drain(&mut first).await, vec![Ok(data)]);
        assert!(lock(&first.shared).chunks.is_empty());
    }

    #[tokio::test]
    async fn clone_after_partial_read_and_drop_yields_whole_body() {
        let (body, expected) = chunked(&["one", "two", "three"]);
        let mut first = ReplayBody::new(body, 64);
        let mut spare = first.try_clone().unwrap();
        assert_eq!(next_data(&mut first).await, "one");
        let mut mid = first.try_clone().unwrap();
        assert_eq!(mid.size_hint().lower(), 3);
        drop(first);
        assert_eq!(drain(&mut spare).await, expected);
        assert_eq!(drain(&mut mid).await, expected);
        assert_eq!(spare.try_clone().unwrap().size_hint().exact(), Some(11));
    }

    #[tokio::test]
    async fn clone_waits_for_the_reading_instance() {
        let (body, expected) = chunked(&["one", "two", "three"]);
        let mut first = ReplayBody::new(body, 64);
        assert_eq!(next_data(&mut first).await, "one");
        let mut clone = first.try_clone().unwrap();
        assert_eq!(next_data(&mut clone).await, "one");
        assert!(clone.frame().now_or_never().is_none());
        let task = tokio::spawn(async move { drain(&mut clone).await });
        tokio::task::yield_now().await;
        assert_eq!(next_data(&mut first).await, "two");
        drop(first);
        assert_eq!(task.await.unwrap(), expected[1..]);
    }

    #[tokio::test]
    async fn error_passes_through_and_ends_replay() {
        let body = stream(vec![Ok(Frame::data(Bytes::from("ok"))), Err("boom")]);
        let mut first = ReplayBody::new(body, 64);
        let mut spare = first.try_clone().unwrap();
        assert_eq!(next_data(&mut first).await, "ok");
        assert!(first.is_replayable());
        assert_eq!(
            first.frame().await.unwrap().unwrap_err().to_string(),
            "boom"
        );
        assert!(!first.is_replayable());
        assert!(first.try_clone().is_none());
        // A clone made in advance fails (the copy was dropped): no hang, no truncation.
        let err = spare.frame().await.unwrap().unwrap_err();
        assert!(err.is::<BodyNotReplayable>());
        assert!(spare.frame().await.is_none());
    }

    #[tokio::test]
    async fn empty_body_is_end_stream() {
        let mut empty = ReplayBody::new(Empty::<Bytes>::new(), 0);
        let mut clone = empty.try_clone().unwrap();
        assert!(empty.is_end_stream() && clone.is_end_stream());
        assert_eq!(empty.size_hint().exact(), Some(0));
        assert_eq!(drain(&mut empty).await, Frames::new());
        assert_eq!(drain(&mut clone).await, Frames::new());
        let full = ReplayBody::new(Full::new(Bytes::new()), 0);
        assert!(full.is_end_stream() && full.try_clone().unwrap().is_end_stream());
    }

    #[tokio::test]
    async fn body_exactly_at_limit_is_replayable() {
        let data = Bytes::from_static(b"0123456789");
        let mut full = ReplayBody::new(Full::new(data.clone()), 10);
        assert!(full.is_replayable());
        assert_eq!(drain(&mut full).await, vec![Ok(data.clone())]);
        assert_eq!(drain(&mut full.try_clone().unwrap()).await, vec![Ok(data)]);
        let (body, expected) = chunked(&["01234", "56789"]);
        let mut first = ReplayBody::new(body, 10);
        assert_eq!(drain(&mut first).await, expected);
        assert_eq!(drain(&mut first.try_clone().unwrap()).await, expected);
        let (body, expected) = chunked(&["01234", "567890"]);
        let mut over = ReplayBody::new(body, 10);
        assert_eq!(drain(&mut over).await, expected);
        assert!(!over.is_replayable());
    }

    #[test]
    fn is_send_and_sync_without_sync_inner() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<ReplayBody>();
        assert_eq!(DEFAULT_MAX_REPLAY_BYTES, 65_536);
    }
}
