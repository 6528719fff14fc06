//! The response to a refused request: [`Rejection`] says why, a [`Responder`] builds it.
//! [`HttpResponder`] (RFC 9457 problem documents) is the default.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::header::{CONTENT_TYPE, RETRY_AFTER};
use http::{Extensions, HeaderMap, HeaderValue, Method, Request, Response, StatusCode, Uri};

use super::rule_set::CompiledRule;
use crate::engine::gcra::LimitState;
use crate::engine::quota::Quota;
use crate::headers::{ceil_secs, retry_after_value, HeaderDialects, LimitSnapshot};

/// Why the layer answered a request itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum RejectionReason {
    /// A rule's limit was exceeded: [`Rejection::rule`] names it, and
    /// [`Rejection::retry_after`] says when the request would be admitted.
    RateLimited,
    /// A rule with [`MissingKey::Reject`](crate::MissingKey::Reject) found no key
    /// ([`Rejection::rule`] names it); the text says what was missing.
    MissingKey(&'static str),
    /// The store failed and the policy is [`StoreFailure::Reject`](crate::StoreFailure::Reject).
    StoreUnavailable,
    /// The request path has no canonical form (a dot segment, see [`crate::path`]):
    /// refused before any rule.
    BadPath(&'static str),
}

/// A request the layer refuses, handed to its [`Responder`].
///
/// It carries why (the [`reason`](Self::reason), the [`rule`](Self::rule), when a retry
/// would be admitted), the state of the rule's limit, and the request's method, URI and
/// headers (a responder can answer gRPC requests differently from HTTP ones).
#[derive(Debug, Clone, Copy)]
pub struct Rejection<'a> {
    reason: RejectionReason,
    rule: Option<&'a CompiledRule>,
    state: Option<LimitState>,
    retry_after: Option<Duration>,
    dialects: HeaderDialects,
    method: &'a Method,
    uri: &'a Uri,
    headers: &'a HeaderMap,
    extensions: &'a Extensions,
}

impl<'a> Rejection<'a> {
    pub(crate) fn new<B>(
        reason: RejectionReason,
        rule: Option<&'a CompiledRule>,
        dialects: HeaderDialects,
        req: &'a Request<B>,
    ) -> Self {
        Rejection {
            reason,
            rule,
            state: None,
            retry_after: None,
            dialects,
            method: req.method(),
            uri: req.uri(),
            headers: req.headers(),
            extensions: req.extensions(),
        }
    }

    /// A rate-limited rejection: the limit's state and the wait.
    pub(crate) fn limited(mut self, state: LimitState, retry_after: Duration) -> Self {
        self.state = Some(state);
        self.retry_after = Some(retry_after);
        self
    }

    /// Why the request is refused.
    pub fn reason(&self) -> RejectionReason {
        self.reason
    }

    /// The name of the rule responsible ([`RateLimited`](RejectionReason::RateLimited) and
    /// [`MissingKey`](RejectionReason::MissingKey)).
    pub fn rule(&self) -> Option<&'a str> {
        self.rule.map(|r| r.name.as_str())
    }

    /// The quota of the rule responsible.
    pub fn quota(&self) -> Option<&'a Quota> {
        self.rule.map(|r| &r.quota)
    }

    /// Until the request would be admitted (rate-limited rejections only): the wait of the
    /// limit that needs the longest, for this request as it was sent.
    pub fn retry_after(&self) -> Option<Duration> {
        self.retry_after
    }

    /// The state of the refusing limit (rate-limited rejections only): what the rate-limit
    /// headers report.
    pub fn limit(&self) -> Option<LimitSnapshot<'a>> {
        let (rule, state) = (self.rule?, self.state?);
        Some(LimitSnapshot {
            policy: &rule.name,
            quota: &rule.quota,
            remaining: state.remaining,
            reset_after: state.reset_after,
        })
    }

    /// Writes the rate-limit header dialects the layer is configured with
    /// ([`RateLimitLayerBuilder::headers`](crate::RateLimitLayerBuilder::headers)) for the
    /// refusing limit, replacing earlier values; nothing when there is no limit state (see
    /// [`limit`](Self::limit)). `Retry-After` is not one of them: see
    /// [`retry_after_value`].
    pub fn write_rate_limit_headers(&self, headers: &mut HeaderMap) {
        if let (Some(rule), Some(state)) = (self.rule, self.state) {
            rule.headers
                .write(headers, self.dialects, state.remaining, state.reset_after);
        }
    }

    /// The refused request's method.
    pub fn method(&self) -> &'a Method {
        self.method
    }

    /// The refused request's URI.
    pub fn uri(&self) -> &'a Uri {
        self.uri
    }

    /// The refused request's headers (`content-type: application/grpc` tells a gRPC call).
    pub fn headers(&self) -> &'a HeaderMap {
        self.headers
    }

    /// The refused request's extensions.
    pub fn extensions(&self) -> &'a Extensions {
        self.extensions
    }
}

/// Builds the whole response (status, headers, body) to a request the layer refuses.
///
/// The default is [`HttpResponder`]. A closure taking `&Rejection` is a responder, so is an
/// `Arc` of one. The body is complete bytes; an empty body ends the response with its
/// headers (as a gRPC trailers-only response does).
///
/// ```
/// use bytes::Bytes;
/// use http::{header, HeaderValue, Response, StatusCode};
/// use tower_throttle::headers::retry_after_value;
/// use tower_throttle::{Quota, RateLimitLayer, Rejection, Rule};
///
/// let layer = RateLimitLayer::builder()
///     .rule(Rule::new("global", Quota::per_second(100)?))
///     .responder(|r: &Rejection<'_>| {
///         let mut res = Response::new(Bytes::from_static(b"busy, try again later"));
///         *res.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
///         let headers = res.headers_mut();
///         headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
///         r.write_rate_limit_headers(headers);
///         if let Some(wait) = r.retry_after() {
///             headers.insert(header::RETRY_AFTER, retry_after_value(wait));
///         }
///         res
///     })
///     .build()?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub trait Responder: Send + Sync + 'static {
    /// The response to `rejection`.
    fn respond(&self, rejection: &Rejection<'_>) -> Response<Bytes>;
}

impl<F> Responder for F
where
    F: Fn(&Rejection<'_>) -> Response<Bytes> + Send + Sync + 'static,
{
    fn respond(&self, rejection: &Rejection<'_>) -> Response<Bytes> {
        self(rejection)
    }
}

impl<R: Responder + ?Sized> Responder for Arc<R> {
    fn respond(&self, rejection: &Rejection<'_>) -> Response<Bytes> {
        (**self).respond(rejection)
    }
}

/// The default [`Responder`]: an RFC 9457 problem document (`application/problem+json`)
/// with the status of the reason, the configured rate-limit headers and, when rate
/// limited, `Retry-After` (whole seconds, rounded up).
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
    match (r.reason, r.rule()) {
        (RejectionReason::RateLimited, Some(rule)) => {
            body.push_str("rate limit '");
            json_escape(rule, &mut body);
            body.push_str("' exceeded");
            if let Some(q) = r.quota() {
                body.push_str(&format!(" ({} per {:?})", q.count(), q.period()));
            }
        }
        (RejectionReason::MissingKey(what), _) => {
            body.push_str("missing ");
            json_escape(what, &mut body);
        }
        (RejectionReason::BadPath(what), _) => {
            body.push_str("unreadable path: ");
            json_escape(what, &mut body);
        }
        _ => body.push_str("rate limiter unavailable"),
    }
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
