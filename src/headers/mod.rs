//! Every rate-limit header dialect in one place.
//!
//! Server side (written by [`RateLimitLayer`](crate::RateLimitLayer), chosen with
//! [`HeaderDialects`]): legacy `X-RateLimit-Limit/Remaining/Reset`, the IETF
//! draft-ietf-httpapi-ratelimit-headers-11 `RateLimit-Policy` / `RateLimit` fields (RFC 9651
//! Structured Field Lists, serialized with the `sfv` crate), and `Retry-After`.
//!
//! Client side, for code that reads a server's answer itself (the client layers use these
//! same functions):
//! - [`retry_hint`]: the server's retry guidance — `Retry-After` as delay-seconds or any
//!   RFC 9110 HTTP-date (measured against the response's `Date`), `retry-after-ms`,
//!   `x-amz-retry-after`, `grpc-retry-pushback-ms` — tolerant, capped, never fatal;
//!   [`parse_retry_after`] for one value, [`grpc_forbids_retry`] for gRPC's veto;
//! - gRPC: [`grpc_status`] (the code of a trailers-only response, as [`GrpcCode`]),
//!   [`grpc_message`], [`grpc_pushback`] (gRFC A6's `grpc-retry-pushback-ms`) and
//!   [`is_grpc`] (a gRPC content type); [`encode_grpc_message`] and [`pushback_value`]
//!   for servers;
//! - [`parse_rate_limit`]: the remaining quota in every rate-limit dialect, and
//!   [`parse_reset`] for one reset value in any of the forms servers send.
//!
//! ```
//! use std::time::{Duration, SystemTime};
//! use http::HeaderMap;
//! use tower_throttle::headers::{parse_rate_limit, retry_hint, DEFAULT_HINT_CAP};
//!
//! let mut headers = HeaderMap::new();
//! headers.insert("retry-after", "7".parse().unwrap());
//! headers.insert("x-ratelimit-remaining", "0".parse().unwrap());
//! let now = SystemTime::now();
//! let hint = retry_hint(&headers, now, DEFAULT_HINT_CAP).unwrap();
//! assert_eq!(hint.delay, Duration::from_secs(7));
//! assert_eq!(parse_rate_limit(&headers, now).remaining, Some(0));
//! ```
//!
//! Every reader treats headers as hostile input: linear in their size (up to hyper's
//! 8 KiB + 400 KiB head), SP and HTAB as the only padding (RFC 9110 OWS), lists kept to
//! [`MAX_ITEMS`] members, waits capped ([`DEFAULT_HINT_CAP`], [`DEFAULT_RESET_CAP`]) with a
//! `capped` flag.

mod grpc;
pub(crate) mod parse;
pub(crate) mod ratelimit;
pub(crate) mod write;

pub use grpc::{
    encode_grpc_message, grpc_message, grpc_pushback, grpc_status, is_grpc, pushback_value,
    GrpcCode, GrpcPushback, GRPC_MESSAGE, GRPC_STATUS,
};
pub use parse::{
    grpc_forbids_retry, parse_retry_after, retry_hint, HintSource, RetryHint, DEFAULT_HINT_CAP,
    GRPC_RETRY_PUSHBACK_MS,
};
pub use ratelimit::{
    parse_rate_limit, parse_rate_limit_capped, parse_reset, Dialect, Dimension, RateLimitInfo,
    RateLimitPolicy, RateLimitState, DEFAULT_RESET_CAP, MAX_DIMENSIONS, MAX_ITEMS,
};
pub use write::{ceil_secs, retry_after_value, HeaderDialects, LimitSnapshot, LEGACY_RESET_MAX};

/// `X-RateLimit-Limit`.
pub const X_RATELIMIT_LIMIT: http::HeaderName = http::HeaderName::from_static("x-ratelimit-limit");
/// `X-RateLimit-Remaining`.
pub const X_RATELIMIT_REMAINING: http::HeaderName =
    http::HeaderName::from_static("x-ratelimit-remaining");
/// `X-RateLimit-Reset` (seconds until the quota is fully restored).
pub const X_RATELIMIT_RESET: http::HeaderName = http::HeaderName::from_static("x-ratelimit-reset");
/// IETF `RateLimit-Policy`.
pub const RATELIMIT_POLICY: http::HeaderName = http::HeaderName::from_static("ratelimit-policy");
/// IETF `RateLimit`.
pub const RATELIMIT: http::HeaderName = http::HeaderName::from_static("ratelimit");
