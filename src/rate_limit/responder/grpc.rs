//! [`GrpcResponder`]: refusals as gRPC trailers-only responses.

use std::fmt::Write as _;

use bytes::Bytes;
use http::header::CONTENT_TYPE;
use http::{HeaderValue, Response};

use super::{Rejection, RejectionReason, Responder};
use crate::headers::{
    encode_grpc_message, is_grpc, pushback_value, GrpcCode, GRPC_MESSAGE, GRPC_RETRY_PUSHBACK_MS,
    GRPC_STATUS,
};

/// The gRPC [`Responder`]: a refused call ends the gRPC way, as a *trailers-only* response
/// (HTTP 200, an empty body, every field in the headers), so any gRPC client (tonic,
/// grpc-go, grpcurl, …) sees a status, never a protocol error.
///
/// The response carries:
///
/// - `content-type`: the request's own when it is a gRPC one (`application/grpc+proto`,
///   gRPC-Web), else `application/grpc`;
/// - `grpc-status`, by reason:
///
///   | reason | code |
///   |---|---|
///   | [`RateLimited`](RejectionReason::RateLimited) | `RESOURCE_EXHAUSTED` (8) |
///   | [`MissingKey`](RejectionReason::MissingKey) | `UNAUTHENTICATED` (16), or [`missing_key_code`](Self::missing_key_code) |
///   | [`StoreUnavailable`](RejectionReason::StoreUnavailable) | `UNAVAILABLE` (14), or [`store_failure_code`](Self::store_failure_code) |
///   | [`BadPath`](RejectionReason::BadPath) | `INVALID_ARGUMENT` (3) |
///
/// - `grpc-message`: what the problem document's `detail` says (the rule, its quota, and
///   the wait), percent-encoded as the gRPC spec requires
///   ([`encode_grpc_message`]); clients decode it (tonic's `Status::message`);
/// - when rate limited, `grpc-retry-pushback-ms` (gRFC A6): the wait in milliseconds,
///   rounded up so a client that honors it is never early ([`pushback_value`]), and the
///   configured rate-limit headers as metadata; no `Retry-After`.
///
/// The layer's default, [`AutoResponder`](super::AutoResponder), answers gRPC calls with
/// it and other requests with the [`HttpResponder`](super::HttpResponder); a server that
/// speaks only gRPC can set it alone, so that every refusal is a gRPC one whatever the
/// request's content type:
///
/// ```
/// use tower_throttle::headers::GrpcCode;
/// use tower_throttle::key::Header;
/// use tower_throttle::rate_limit::GrpcResponder;
/// use tower_throttle::{MissingKey, Quota, RateLimitLayer, Route, Rule};
///
/// let layer = RateLimitLayer::builder()
///     .rule(
///         Rule::new("per_api_key", Quota::per_minute(60)?)
///             .route(Route::grpc_service("helloworld.Greeter"))
///             .key(Header::new("x-api-key".parse()?))
///             .on_missing_key(MissingKey::Reject),
///     )
///     .responder(GrpcResponder::new().missing_key_code(GrpcCode::PermissionDenied))
///     .build()?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GrpcResponder {
    missing_key: GrpcCode,
    store_failure: GrpcCode,
}

impl Default for GrpcResponder {
    fn default() -> Self {
        GrpcResponder {
            missing_key: GrpcCode::Unauthenticated,
            store_failure: GrpcCode::Unavailable,
        }
    }
}

impl GrpcResponder {
    /// The default gRPC responder.
    pub fn new() -> Self {
        Self::default()
    }

    /// The code of a call whose key is missing (default `UNAUTHENTICATED`;
    /// `PERMISSION_DENIED` or `INVALID_ARGUMENT` are common, `INTERNAL` when the key
    /// should always be there, as the peer address).
    pub fn missing_key_code(self, code: GrpcCode) -> Self {
        GrpcResponder {
            missing_key: code,
            ..self
        }
    }

    /// The code of a call refused because the store failed (default `UNAVAILABLE`, which
    /// gRPC clients may retry).
    pub fn store_failure_code(self, code: GrpcCode) -> Self {
        GrpcResponder {
            store_failure: code,
            ..self
        }
    }

    /// The code this responder answers `reason` with.
    pub fn code(&self, reason: RejectionReason) -> GrpcCode {
        match reason {
            RejectionReason::RateLimited => GrpcCode::ResourceExhausted,
            RejectionReason::MissingKey(_) => self.missing_key,
            RejectionReason::StoreUnavailable => self.store_failure,
            RejectionReason::BadPath(_) => GrpcCode::InvalidArgument,
        }
    }
}

impl Responder for GrpcResponder {
    fn respond(&self, r: &Rejection<'_>) -> Response<Bytes> {
        let mut res = Response::new(Bytes::new());
        let headers = res.headers_mut();
        let content_type = match r.headers.get(CONTENT_TYPE) {
            Some(grpc) if is_grpc(r.headers) => grpc.clone(),
            _ => HeaderValue::from_static("application/grpc"),
        };
        headers.insert(CONTENT_TYPE, content_type);
        headers.insert(GRPC_STATUS, self.code(r.reason).header_value());
        headers.insert(GRPC_MESSAGE, encode_grpc_message(&message(r)));
        if let Some(wait) = r.retry_after {
            headers.insert(GRPC_RETRY_PUSHBACK_MS, pushback_value(wait));
        }
        r.write_rate_limit_headers(headers);
        res
    }
}

/// The `grpc-message` of `r`, before encoding: the problem document's `detail`, the rule
/// of a missing key, and the wait of a rate-limited call (the pushback, in words).
fn message(r: &Rejection<'_>) -> String {
    let mut text = r.detail();
    match (r.reason, r.rule(), r.retry_after) {
        (RejectionReason::RateLimited, _, Some(wait)) => {
            let millis = pushback_value(wait);
            let millis = String::from_utf8_lossy(millis.as_bytes());
            let _ = write!(text, "; retry in {millis} ms");
        }
        (RejectionReason::MissingKey(_), Some(rule), _) => {
            let _ = write!(text, " (rate limit '{rule}')");
        }
        _ => {}
    }
    text
}
