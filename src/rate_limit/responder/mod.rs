//! The response to a refused request: [`Rejection`] says why, a [`Responder`] builds it.
//! [`HttpResponder`] answers with RFC 9457 problem documents, [`GrpcResponder`] with gRPC
//! trailers-only responses, and the default, [`AutoResponder`], picks one of them by the
//! request's content type.

mod grpc;
mod http;

use std::sync::Arc;
use std::time::Duration;

use ::http::{Extensions, HeaderMap, Method, Request, Response, Uri};
use bytes::Bytes;

use super::rule_set::CompiledRule;
use crate::engine::gcra::LimitState;
use crate::engine::quota::Quota;
use crate::headers::{is_grpc, HeaderDialects, LimitSnapshot};

pub use self::grpc::GrpcResponder;
pub use self::http::HttpResponder;

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
    /// [`limit`](Self::limit)). `Retry-After` and gRPC's `grpc-retry-pushback-ms` are not
    /// among them: see [`retry_after_value`](crate::headers::retry_after_value) and
    /// [`pushback_value`](crate::headers::pushback_value).
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

    /// Why the request is refused, in words: the problem document's `detail` and the
    /// start of the gRPC message.
    pub(crate) fn detail(&self) -> String {
        match (self.reason, self.rule(), self.quota()) {
            (RejectionReason::RateLimited, Some(rule), quota) => {
                let mut text = format!("rate limit '{rule}' exceeded");
                if let Some(q) = quota {
                    text.push_str(&format!(" ({} per {:?})", q.count(), q.period()));
                }
                text
            }
            (RejectionReason::MissingKey(what), ..) => format!("missing {what}"),
            (RejectionReason::BadPath(what), ..) => format!("unreadable path: {what}"),
            _ => "rate limiter unavailable".to_owned(),
        }
    }
}

/// Builds the whole response (status, headers, body) to a request the layer refuses.
///
/// The default is [`AutoResponder`] (gRPC calls answered by [`GrpcResponder`], other
/// requests by [`HttpResponder`]). A closure taking `&Rejection` is a responder, so is an
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

/// The default [`Responder`] of [`RateLimitLayer`](crate::RateLimitLayer): gRPC calls
/// (a gRPC content type, see [`is_grpc`]: `application/grpc`, its `+proto` / `+json`
/// forms, gRPC-Web) are answered by a [`GrpcResponder`] (a trailers-only response:
/// HTTP 200, `grpc-status` 8 when rate limited), every other request by an
/// [`HttpResponder`] (a problem document: 429 when rate limited).
///
/// Either part can be configured; to answer every request one way, set that responder
/// alone instead (HTTP only: `.responder(HttpResponder::new())`, gRPC only:
/// `.responder(GrpcResponder::new())`).
///
/// ```
/// use http::StatusCode;
/// use tower_throttle::headers::GrpcCode;
/// use tower_throttle::key::Header;
/// use tower_throttle::rate_limit::{AutoResponder, GrpcResponder, HttpResponder};
/// use tower_throttle::{MissingKey, Quota, RateLimitLayer, Rule};
///
/// let layer = RateLimitLayer::builder()
///     .rule(
///         Rule::new("per_api_key", Quota::per_second(10)?)
///             .key(Header::new("x-api-key".parse()?))
///             .on_missing_key(MissingKey::Reject),
///     )
///     .responder(
///         AutoResponder::new()
///             .http(HttpResponder::new().missing_key_status(StatusCode::FORBIDDEN))
///             .grpc(GrpcResponder::new().missing_key_code(GrpcCode::PermissionDenied)),
///     )
///     .build()?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct AutoResponder {
    http: HttpResponder,
    grpc: GrpcResponder,
}

impl AutoResponder {
    /// Default [`HttpResponder`] and [`GrpcResponder`]: the layer's default.
    pub fn new() -> Self {
        Self::default()
    }

    /// Answers requests that are not gRPC calls with `http`.
    pub fn http(self, http: HttpResponder) -> Self {
        AutoResponder { http, ..self }
    }

    /// Answers gRPC calls with `grpc`.
    pub fn grpc(self, grpc: GrpcResponder) -> Self {
        AutoResponder { grpc, ..self }
    }
}

impl Responder for AutoResponder {
    fn respond(&self, rejection: &Rejection<'_>) -> Response<Bytes> {
        if is_grpc(rejection.headers) {
            self.grpc.respond(rejection)
        } else {
            self.http.respond(rejection)
        }
    }
}

#[cfg(test)]
mod tests;
