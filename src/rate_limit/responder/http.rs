//! [`HttpResponder`]: refusals as RFC 9457 problem documents.

use bytes::Bytes;
use http::header::{CONTENT_TYPE, RETRY_AFTER};
use http::{HeaderValue, Response, StatusCode};

use super::{Rejection, RejectionReason, Responder};
use crate::headers::{ceil_secs, retry_after_value};

/// The HTTP [`Responder`]: an RFC 9457 problem document (`application/problem+json`) with
/// the status of the reason, the configured rate-limit headers and, when rate limited,
/// `Retry-After` (whole seconds, rounded up).
///
/// The layer's default, [`AutoResponder`](super::AutoResponder), answers every request
/// that is not a gRPC call with it; to answer *every* request this way (gRPC calls too),
/// set it alone: `.responder(HttpResponder::new())`.
///
/// | reason | status |
/// |---|---|
/// | [`RateLimited`](RejectionReason::RateLimited) | 429 Too Many Requests |
/// | [`MissingKey`](RejectionReason::MissingKey) | 401 Unauthorized, or [`missing_key_status`](Self::missing_key_status) |
/// | [`StoreUnavailable`](RejectionReason::StoreUnavailable) | 503 Service Unavailable, or [`store_failure_status`](Self::store_failure_status) |
/// | [`BadPath`](RejectionReason::BadPath) | 400 Bad Request |
///
/// To replace only the body, wrap it:
///
/// ```
/// use bytes::Bytes;
/// use http::StatusCode;
/// use tower_throttle::rate_limit::{HttpResponder, Responder};
/// use tower_throttle::{MissingKey, Quota, RateLimitLayer, Rejection, Rule};
/// use tower_throttle::key::BearerToken;
///
/// let http = HttpResponder::new().missing_key_status(StatusCode::FORBIDDEN);
/// let layer = RateLimitLayer::builder()
///     .rule(
///         Rule::new("per_token", Quota::per_second(10)?)
///             .key(BearerToken)
///             .on_missing_key(MissingKey::Reject),
///     )
///     .responder(move |r: &Rejection<'_>| {
///         let mut res = http.respond(r);
///         *res.body_mut() = Bytes::from_static(b"{\"error\":\"slow down\"}");
///         res
///     })
///     .build()?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HttpResponder {
    missing_key: StatusCode,
    store_failure: StatusCode,
}

impl Default for HttpResponder {
    fn default() -> Self {
        HttpResponder {
            missing_key: StatusCode::UNAUTHORIZED,
            store_failure: StatusCode::SERVICE_UNAVAILABLE,
        }
    }
}

impl HttpResponder {
    /// The default responder.
    pub fn new() -> Self {
        Self::default()
    }

    /// The status of a request whose key is missing (default 401; 400 or 403 are common,
    /// 500 when the key should always be there, as the peer address).
    pub fn missing_key_status(self, status: StatusCode) -> Self {
        HttpResponder {
            missing_key: status,
            ..self
        }
    }

    /// The status of a request refused because the store failed (default 503).
    pub fn store_failure_status(self, status: StatusCode) -> Self {
        HttpResponder {
            store_failure: status,
            ..self
        }
    }

    /// The status this responder answers `reason` with.
    pub fn status(&self, reason: RejectionReason) -> StatusCode {
        match reason {
            RejectionReason::RateLimited => StatusCode::TOO_MANY_REQUESTS,
            RejectionReason::MissingKey(_) => self.missing_key,
            RejectionReason::StoreUnavailable => self.store_failure,
            RejectionReason::BadPath(_) => StatusCode::BAD_REQUEST,
        }
    }
}

impl Responder for HttpResponder {
    fn respond(&self, r: &Rejection<'_>) -> Response<Bytes> {
        let status = self.status(r.reason);
        let mut res = Response::new(Bytes::from(problem(status, r)));
        *res.status_mut() = status;
        let headers = res.headers_mut();
        headers.insert(
            CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        r.write_rate_limit_headers(headers);
        if let Some(wait) = r.retry_after {
            headers.insert(RETRY_AFTER, retry_after_value(wait));
        }
        res
    }
}

/// The problem document of `r`, answered with `status`.
fn problem(status: StatusCode, r: &Rejection<'_>) -> String {
    let title = status.canonical_reason().unwrap_or("Error");
    let mut body = format!(
        "{{\"type\":\"about:blank\",\"title\":\"{title}\",\"status\":{},\"detail\":\"",
        status.as_u16()
    );
    json_escape(&r.detail(), &mut body);
    body.push('"');
    if let Some(rule) = r.rule() {
        body.push_str(",\"rule\":\"");
        json_escape(rule, &mut body);
        body.push('"');
    }
    if let Some(wait) = r.retry_after {
        body.push_str(&format!(",\"retry_after\":{}", ceil_secs(wait).max(1)));
    }
    body.push('}');
    body
}

fn json_escape(s: &str, out: &mut String) {
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
}
