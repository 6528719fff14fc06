//! Responses the layer writes itself, and the headers it adds to admitted responses.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::header::{CONTENT_TYPE, RETRY_AFTER};
use http::{HeaderMap, HeaderValue, Response, StatusCode};

use super::layer::Shared;
use crate::engine::gcra::LimitState;
use crate::engine::quota::Quota;
use crate::headers::{ceil_secs, retry_after_value};

pub(crate) type RejectionFn =
    Arc<dyn Fn(&Rejection<'_>) -> Response<Bytes> + Send + Sync + 'static>;

/// Why the layer answered a request itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum RejectionReason {
    /// A rule's limit was exceeded (429).
    RateLimited,
    /// A rule with [`MissingKey::Reject`](crate::MissingKey::Reject) found no key.
    MissingKey(&'static str),
    /// The store failed and the policy is [`StoreFailure::Reject`].
    StoreUnavailable,
    /// The request path has no canonical form (a dot segment, see [`crate::rules::path`]): 400,
    /// before any rule.
    BadPath(&'static str),
}

/// A response the layer is about to write, given to a custom
/// [`rejection_response`](crate::RateLimitLayerBuilder::rejection_response).
#[derive(Debug, Clone, Copy)]
pub struct Rejection<'a> {
    /// The status the response will carry.
    pub status: StatusCode,
    /// Why.
    pub reason: RejectionReason,
    /// The rule responsible (none for store failures).
    pub rule: Option<&'a str>,
    /// The rule's quota.
    pub quota: Option<&'a Quota>,
    /// When a retry would be admitted (rate-limited responses only).
    pub retry_after: Option<Duration>,
}

/// What a layer does when its store fails.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum StoreFailure {
    /// Admit the request (fail open). The default.
    #[default]
    Admit,
    /// Answer with this status (fail closed), without a misleading `Retry-After`.
    Reject(StatusCode),
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

/// The default body: an RFC 9457 problem document.
fn problem(r: &Rejection<'_>) -> Response<Bytes> {
    let title = r.status.canonical_reason().unwrap_or("Error");
    let mut body = format!(
        "{{\"type\":\"about:blank\",\"title\":\"{title}\",\"status\":{},\"detail\":\"",
        r.status.as_u16()
    );
    match (r.reason, r.rule) {
        (RejectionReason::RateLimited, Some(rule)) => {
            body.push_str("rate limit '");
            json_escape(rule, &mut body);
            body.push_str("' exceeded");
            if let Some(q) = r.quota {
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
    if let Some(rule) = r.rule {
        body.push_str(",\"rule\":\"");
        json_escape(rule, &mut body);
        body.push('"');
    }
    if let Some(wait) = r.retry_after {
        body.push_str(&format!(",\"retry_after\":{}", ceil_secs(wait).max(1)));
    }
    body.push('}');
    let mut res = Response::new(Bytes::from(body));
    res.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("application/problem+json"),
    );
    res
}

impl Shared {
    /// Writes the headline rule's headers.
    pub(crate) fn write_headers(&self, headers: &mut HeaderMap, rule: usize, state: &LimitState) {
        if let Some(r) = self.rules.get(rule) {
            r.headers
                .write(headers, self.dialects, state.remaining, state.reset_after);
        }
    }

    /// Builds a response the layer answers with.
    pub(crate) fn reject(
        &self,
        status: StatusCode,
        reason: RejectionReason,
        rule: Option<usize>,
        state: Option<&LimitState>,
        retry_after: Option<Duration>,
    ) -> Response<Bytes> {
        let compiled = rule.and_then(|i| self.rules.get(i));
        let rejection = Rejection {
            status,
            reason,
            rule: compiled.map(|r| r.name.as_str()),
            quota: compiled.map(|r| &r.quota),
            retry_after,
        };
        let mut res = match &self.rejection {
            Some(f) => f(&rejection),
            None => problem(&rejection),
        };
        *res.status_mut() = status;
        if let (Some(i), Some(state)) = (rule, state) {
            self.write_headers(res.headers_mut(), i, state);
        }
        if let Some(wait) = retry_after {
            res.headers_mut()
                .insert(RETRY_AFTER, retry_after_value(wait));
        }
        res
    }
}
