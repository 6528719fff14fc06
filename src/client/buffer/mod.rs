//! [`BufferResponse`]: reads a response body into memory, up to a bound, so that a retry
//! policy can decide on what the body says (a job's state, a delay in a JSON field).
//!
//! Opt-in, through [`BackoffLayerBuilder::retry_if_body`](crate::backoff::BackoffLayerBuilder::retry_if_body):
//! a body is read whole before the response goes on, which costs
//!
//! - **latency**: the caller gets the response when its last byte (or the bound) has
//!   arrived, not at its first byte. A streaming response that sends a few bytes and then
//!   waits would hold the caller, so `text/event-stream` and gRPC bodies are never read, and
//!   [`read_body_when`](crate::backoff::BackoffLayerBuilder::read_body_when) can narrow
//!   which responses are;
//! - **memory**: at most the bound (default [`DEFAULT_MAX_RESPONSE_BYTES`], 64 KiB) per
//!   response in flight, plus the chunks' headers;
//! - **CPU**: one allocation to hold the body, and one copy when it came in more than one
//!   chunk (a body that came in one chunk is handed on without a copy).
//!
//! A body over the bound, or one that fails while it is read, goes on as it came: the
//! bytes read so far, then the rest of the body (or its error). Nothing is truncated or
//! lost, and the policy is told nothing about it (the response is not retried for its
//! body).

use std::sync::Arc;

use bytes::Bytes;
use http::header::CONTENT_TYPE;
use http::{HeaderMap, StatusCode};

mod body;
mod future;
mod service;
#[cfg(test)]
mod tests;

pub(crate) use body::poll_bytes;
pub use body::BufferedBody;
pub use future::BufferResponseFuture;
pub use service::BufferResponse;

/// Default bound on a response body read for a retry decision: 64 KiB.
pub const DEFAULT_MAX_RESPONSE_BYTES: usize = 64 * 1024;

/// A response body read whole, put in the response's extensions for the retry policies
/// above (a cheap `Bytes` clone of the body).
#[derive(Debug, Clone)]
pub(crate) struct ResponseBytes(pub(crate) Bytes);

/// Which responses have their body read.
type ReadWhen = Arc<dyn Fn(StatusCode, &HeaderMap) -> bool + Send + Sync>;

/// Which response bodies are read, and up to how many bytes.
#[derive(Clone)]
pub(crate) struct BufferSettings {
    pub(crate) max_bytes: usize,
    pub(crate) read_when: Option<ReadWhen>,
}

impl Default for BufferSettings {
    fn default() -> Self {
        BufferSettings {
            max_bytes: DEFAULT_MAX_RESPONSE_BYTES,
            read_when: None,
        }
    }
}

impl std::fmt::Debug for BufferSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BufferSettings")
            .field("max_bytes", &self.max_bytes)
            .field("read_when", &self.read_when.is_some())
            .finish()
    }
}

impl BufferSettings {
    /// Whether to read the body of a response with this head, whose body declares at
    /// least `min_len` bytes: never a gRPC body (a stream of messages) or one declared
    /// over the bound; then as `read_when` says, by default anything but
    /// `text/event-stream`.
    pub(crate) fn reads(&self, status: StatusCode, headers: &HeaderMap, min_len: u64) -> bool {
        if crate::headers::is_grpc(headers) || min_len > self.max_bytes as u64 {
            return false;
        }
        match &self.read_when {
            Some(read_when) => read_when(status, headers),
            None => !is_event_stream(headers),
        }
    }
}

/// Whether a response is a server-sent event stream (never ends on its own).
fn is_event_stream(headers: &HeaderMap) -> bool {
    const EVENT_STREAM: &[u8] = b"text/event-stream";
    headers.get(CONTENT_TYPE).is_some_and(|v| {
        let v = v.as_bytes();
        v.len() >= EVENT_STREAM.len() && v[..EVENT_STREAM.len()].eq_ignore_ascii_case(EVENT_STREAM)
    })
}
