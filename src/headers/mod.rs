//! Every rate-limit header dialect in one place.
//!
//! Server side ([`write`](mod@write)): legacy `X-RateLimit-Limit/Remaining/Reset`, the IETF
//! draft-ietf-httpapi-ratelimit-headers-11 `RateLimit-Policy` / `RateLimit` fields (RFC 9651
//! Structured Field Lists, serialized with the `sfv` crate), and `Retry-After`.
//!
//! Client side ([`parse`]): the server's retry guidance — `Retry-After` as delay-seconds or
//! any RFC 9110 HTTP-date (measured against the response's `Date`), `retry-after-ms`,
//! `x-amz-retry-after`, `grpc-retry-pushback-ms` — tolerant, capped, never fatal; and
//! ([`ratelimit`]) the remaining quota in every rate-limit dialect.
//!
//! Every reader treats headers as hostile input: linear in their size (up to hyper's
//! 8 KiB + 400 KiB head), SP and HTAB as the only padding (RFC 9110 OWS), lists kept to
//! [`MAX_ITEMS`] members, waits capped ([`DEFAULT_HINT_CAP`](parse::DEFAULT_HINT_CAP),
//! [`DEFAULT_RESET_CAP`]) with a `capped` flag.

pub mod parse;
pub mod ratelimit;
pub mod write;

pub use parse::{retry_hint, HintSource, RetryHint};
pub use ratelimit::{
    parse_rate_limit, parse_rate_limit_capped, parse_reset, Dialect, RateLimitInfo,
    DEFAULT_RESET_CAP, MAX_ITEMS,
};
pub use write::{ceil_secs, retry_after_value, HeaderDialects, LimitSnapshot};

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
