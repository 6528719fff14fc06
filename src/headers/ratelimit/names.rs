//! The header names the rate-limit reading looks up, made once (no per-response parsing or
//! formatting of names), and the cheap test that lets a response without any of them skip
//! the reading.

use http::header::HeaderName;
use http::HeaderMap;

/// IETF `RateLimit-Policy`.
pub(super) static RATELIMIT_POLICY: HeaderName = HeaderName::from_static("ratelimit-policy");
/// IETF `RateLimit`.
pub(super) static RATELIMIT: HeaderName = HeaderName::from_static("ratelimit");
/// IETF drafts up to 06: `RateLimit-Limit`.
pub(super) static RATELIMIT_LIMIT: HeaderName = HeaderName::from_static("ratelimit-limit");
/// IETF drafts up to 06: `RateLimit-Remaining`.
pub(super) static RATELIMIT_REMAINING: HeaderName = HeaderName::from_static("ratelimit-remaining");
/// IETF drafts up to 06: `RateLimit-Reset`.
pub(super) static RATELIMIT_RESET: HeaderName = HeaderName::from_static("ratelimit-reset");

/// The fields of one `X-RateLimit-*` family.
pub(super) struct Family {
    pub(super) limit: HeaderName,
    pub(super) limit_requests: HeaderName,
    pub(super) remaining: HeaderName,
    pub(super) remaining_requests: HeaderName,
    pub(super) reset_after: HeaderName,
    pub(super) reset: HeaderName,
    pub(super) reset_requests: HeaderName,
}

/// `X-RateLimit-*` (GitHub, Discord, OpenAI).
pub(super) static X_RATELIMIT: Family = Family {
    limit: HeaderName::from_static("x-ratelimit-limit"),
    limit_requests: HeaderName::from_static("x-ratelimit-limit-requests"),
    remaining: HeaderName::from_static("x-ratelimit-remaining"),
    remaining_requests: HeaderName::from_static("x-ratelimit-remaining-requests"),
    reset_after: HeaderName::from_static("x-ratelimit-reset-after"),
    reset: HeaderName::from_static("x-ratelimit-reset"),
    reset_requests: HeaderName::from_static("x-ratelimit-reset-requests"),
};

/// `X-Rate-Limit-*` (Twitter/X).
pub(super) static X_RATE_LIMIT: Family = Family {
    limit: HeaderName::from_static("x-rate-limit-limit"),
    limit_requests: HeaderName::from_static("x-rate-limit-limit-requests"),
    remaining: HeaderName::from_static("x-rate-limit-remaining"),
    remaining_requests: HeaderName::from_static("x-rate-limit-remaining-requests"),
    reset_after: HeaderName::from_static("x-rate-limit-reset-after"),
    reset: HeaderName::from_static("x-rate-limit-reset"),
    reset_requests: HeaderName::from_static("x-rate-limit-reset-requests"),
};

/// Whether `headers` has any field the reading looks at (a superset: every name above, and
/// `Retry-After` with its relatives read by `retry_hint`). Without one, every dialect reads
/// as empty and nothing is malformed, so the reading is the default one.
pub(super) fn any_relevant(headers: &HeaderMap) -> bool {
    headers.keys().any(|name| {
        let name = name.as_str();
        name.starts_with("ratelimit")
            || name.starts_with("x-ratelimit-")
            || name.starts_with("x-rate-limit-")
            || name.starts_with("retry-after")
            || name == "x-amz-retry-after"
            || name == "grpc-retry-pushback-ms"
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    #[test]
    fn every_name_read_is_relevant() {
        let families = [&X_RATELIMIT, &X_RATE_LIMIT];
        let mut names: Vec<&HeaderName> = families
            .iter()
            .flat_map(|f| {
                [
                    &f.limit,
                    &f.limit_requests,
                    &f.remaining,
                    &f.remaining_requests,
                    &f.reset_after,
                    &f.reset,
                    &f.reset_requests,
                ]
            })
            .collect();
        let retry = [
            http::header::RETRY_AFTER,
            crate::headers::parse::RETRY_AFTER_MS,
            crate::headers::parse::X_AMZ_RETRY_AFTER,
            HeaderName::from_static("grpc-retry-pushback-ms"),
        ];
        names.extend([
            &RATELIMIT_POLICY,
            &RATELIMIT,
            &RATELIMIT_LIMIT,
            &RATELIMIT_REMAINING,
            &RATELIMIT_RESET,
        ]);
        names.extend(&retry);
        for name in names {
            let mut headers = HeaderMap::new();
            headers.insert(http::header::CONTENT_TYPE, HeaderValue::from_static("x"));
            assert!(!any_relevant(&headers));
            headers.insert(name.clone(), HeaderValue::from_static("1"));
            assert!(any_relevant(&headers), "{name}");
        }
    }
}
