//! [`ReplayBody`]: a request body that a retry can send again, byte for byte.

use std::any::Any;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll, Waker};
use std::{fmt, mem, pin::Pin};

use bytes::Bytes;
use http::HeaderMap;
use http_body::{Body, Frame, SizeHint};
use http_body_util::combinators::UnsyncBoxBody;
use pin_project_lite::pin_project;

use super::BoxError;

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
        super::poll_bytes(self.project().body, cx)
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
///
/// The retrying layers wrap request bodies themselves; the inner service (a client such as
/// hyper-util's) is built for `ReplayBody`:
///
/// ```
/// use http_body_util::BodyExt;
/// use tower_throttle::ReplayBody;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
/// let body = ReplayBody::new(String::from("{\"n\":1}"), 64 * 1024);
/// let again = body.try_clone().expect("within the limit");
/// assert_eq!(body.collect().await?.to_bytes(), "{\"n\":1}");
/// assert_eq!(again.collect().await?.to_bytes(), "{\"n\":1}");
/// # Ok(())
/// # }
/// ```
pub struct ReplayBody {
    shared: Arc<Common>,
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

/// What every clone of one body shares: `replayable` (only ever turned off, under the lock)
/// and `max_bytes` are read without the lock; the rest is behind it.
struct Common {
    replayable: AtomicBool,
    max_bytes: usize,
    state: Mutex<Shared>,
}

/// The state every clone of one body shares behind the lock. `body` is the inner body while
/// no instance reads it; `chunks` holds every non-empty data frame read from it while
/// replayable; `bytes_read` counts all data bytes read from it; `finished` says it ended
/// (`None`, trailers or `is_end_stream`); `lost` says something read from it was not kept,
/// so clones behind the reader are stuck; `waiters` are clones waiting for the instance that
/// holds it.
struct Shared {
    body: Option<Inner>,
    chunks: Vec<Bytes>,
    bytes_read: u64,
    trailers: Option<HeaderMap>,
    finished: bool,
    lost: bool,
    orig_hint: SizeHint,
    waiters: Vec<Waker>,
}

impl Common {
    fn replayable(&self) -> bool {
        self.replayable.load(Ordering::Acquire)
    }

    /// Under the lock (`shared` is its guard's contents).
    fn discard(&self, shared: &mut Shared) {
        self.replayable.store(false, Ordering::Release);
        shared.lost = true;
        shared.chunks = Vec::new();
        shared.trailers = None;
    }

    /// Under the lock, as [`discard`](Self::discard).
    fn record_data(&self, shared: &mut Shared, data: &Bytes) {
        if data.is_empty() {
            return;
        }
        shared.bytes_read = shared.bytes_read.saturating_add(data.len() as u64);
        if self.replayable() && shared.bytes_read <= self.max_bytes as u64 {
            shared.chunks.push(data.clone());
        } else {
            self.discard(shared);
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
            trailers: None,
            finished: false,
            lost: false,
            orig_hint,
            waiters: Vec::new(),
        };
        Self::with_shared(Arc::new(Common {
            replayable: AtomicBool::new(replayable),
            max_bytes,
            state: Mutex::new(shared),
        }))
    }

    /// `body` ready for a retrying layer keeping up to `max_bytes`: an unread
    /// `ReplayBody` with that same limit (an outer retrying layer's) is used as it is, so
    /// the layers share one copy of the bytes; any other body is wrapped with
    /// [`new`](Self::new).
    ///
    /// Sharing is what wrapping would do, minus the second copy: the outer instance is
    /// unread, so wrapping it would keep the same bytes, with the same limit, and replay
    /// them from the first byte too.
    pub(crate) fn wrap<B>(body: B, max_bytes: usize) -> ReplayBody
    where
        B: Body + Send + 'static,
        B::Error: Into<BoxError>,
    {
        let mut slot = Some(body);
        let reusable = (&mut slot as &mut dyn Any)
            .downcast_mut::<Option<ReplayBody>>()
            .and_then(|outer| outer.take_if(|b| b.is_unread_with_limit(max_bytes)));
        match (reusable, slot) {
            (Some(outer), _) => outer,
            (None, Some(body)) => ReplayBody::new(body, max_bytes),
            (None, None) => unreachable!("the body is taken only when reused"),
        }
    }

    /// This instance has yielded nothing and keeps at most `max_bytes`.
    fn is_unread_with_limit(&mut self, max_bytes: usize) -> bool {
        let untouched = self.pos == 0 && self.yielded == 0 && !self.trailers_sent && !self.done;
        untouched && self.slot().is_none() && self.shared.max_bytes == max_bytes
    }

    /// A body for another attempt, starting from the first byte, or `None` when the body can no
    /// longer be replayed (over the limit, or the inner body failed).
    pub fn try_clone(&self) -> Option<ReplayBody> {
        let replayable = self.shared.replayable();
        replayable.then(|| Self::with_shared(Arc::clone(&self.shared)))
    }

    /// Whether a retry is still possible.
    pub fn is_replayable(&self) -> bool {
        self.shared.replayable()
    }

    fn slot(&mut self) -> &mut Option<Inner> {
        self.inner.get_mut().unwrap_or_else(PoisonError::into_inner)
    }

    fn with_shared(shared: Arc<Common>) -> ReplayBody {
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
        let mut shared = lock(&self.shared.state);
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
        let common = &*this.shared;
        let mut shared = lock(&common.state);
        match &out {
            Some(Ok(frame)) => {
                if let Some(data) = frame.data_ref() {
                    common.record_data(&mut shared, data);
                    this.pos = shared.chunks.len();
                    this.yielded = shared.bytes_read;
                } else if let Some(trailers) = frame.trailers_ref() {
                    let replayable = common.replayable();
                    shared.trailers = replayable.then(|| trailers.clone());
                    shared.lost |= !replayable;
                    (this.trailers_sent, end) = (true, true);
                }
            }
            Some(Err(_)) => {
                // Keep the failed body: later polls go to it, as without the wrapper.
                common.discard(&mut shared);
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
        let shared = lock(&self.shared.state);
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
        let shared = lock(&self.shared.state);
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
        let mut shared = lock(&self.shared.state);
        // Hand the inner body back so a later clone goes on from here; useless once lost.
        shared.body = (!shared.lost).then_some(body);
        let waiters = mem::take(&mut shared.waiters);
        drop(shared);
        waiters.into_iter().for_each(Waker::wake);
    }
}

impl fmt::Debug for ReplayBody {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let replayable = self.shared.replayable();
        let (pos, done) = (self.pos, self.done);
        write!(
            f,
            "ReplayBody {{ replayable: {replayable}, pos: {pos}, done: {done} }}"
        )
    }
}

#[cfg(test)]
mod tests;
