//! gRPC semantics shared by both retrying layers ([`RetryAfterLayer`](crate::RetryAfterLayer)
//! and [`BackoffLayer`](crate::BackoffLayer)): which responses carrying `grpc-status` are
//! retried (gRFC A6), which calls are gRPC calls, and the error a gRPC call gets where no
//! response can be returned.
//!
//! | the response's headers carry | the layers |
//! | --- | --- |
//! | no `grpc-status` (a proxy's `503` on a gRPC call too) | follow the HTTP rules |
//! | `grpc-status: 0` (OK) | return it |
//! | a negative or malformed `grpc-retry-pushback-ms` | return it: the server asks not to retry |
//! | a code of [`NEVER_RETRIED_GRPC_CODES`] | return it, pushback or not |
//! | a code of the layer's `grpc_retry_codes` (default [`DEFAULT_GRPC_RETRY_CODES`]) | retry it: after the pushback when there is one |
//! | `RESOURCE_EXHAUSTED` with a valid pushback | retry it after the pushback |
//! | any other code | return it |
//!
//! A trailers-only refusal is HTTP `200`: the gRPC rules come first and replace the HTTP
//! status rules. The server's delay is `grpc-retry-pushback-ms`; a gRPC response without
//! one may still carry `Retry-After`-style headers (as tower_governor sends), read as the
//! HTTP rules read them.

use std::fmt;
use std::time::{Duration, SystemTime};

use http::HeaderMap;

use crate::client::{BoxError, RetryError};
use crate::headers::parse::{retry_hint, DEFAULT_HINT_CAP};
use crate::headers::{grpc_pushback, grpc_status, is_grpc, GrpcCode, GrpcPushback, GRPC_STATUS};

/// gRPC status codes the retrying layers never retry, whatever their configuration and
/// whatever pushback comes with them: each says the call itself is wrong (or unsafe to
/// repeat), so sending it again gets the same answer.
///
/// `INVALID_ARGUMENT`, `NOT_FOUND`, `ALREADY_EXISTS`, `PERMISSION_DENIED`,
/// `FAILED_PRECONDITION`, `OUT_OF_RANGE`, `UNIMPLEMENTED`, `DATA_LOSS` (unrecoverable:
/// repeating a call that lost data is not a fix) and `UNAUTHENTICATED`. `OK` is not a
/// failure and is never retried either. Every other code (`CANCELLED`, `UNKNOWN`,
/// `DEADLINE_EXCEEDED`, `RESOURCE_EXHAUSTED`, `ABORTED`, `INTERNAL`, `UNAVAILABLE`) may
/// be listed in a layer's `grpc_retry_codes`; a builder given one of these (or `OK`)
/// refuses to build.
///
/// ```
/// use tower_throttle::headers::GrpcCode;
/// use tower_throttle::NEVER_RETRIED_GRPC_CODES;
///
/// assert!(NEVER_RETRIED_GRPC_CODES.contains(&GrpcCode::InvalidArgument));
/// assert!(!NEVER_RETRIED_GRPC_CODES.contains(&GrpcCode::Unavailable));
/// ```
pub const NEVER_RETRIED_GRPC_CODES: [GrpcCode; 9] = [
    GrpcCode::InvalidArgument,
    GrpcCode::NotFound,
    GrpcCode::AlreadyExists,
    GrpcCode::PermissionDenied,
    GrpcCode::FailedPrecondition,
    GrpcCode::OutOfRange,
    GrpcCode::Unimplemented,
    GrpcCode::DataLoss,
    GrpcCode::Unauthenticated,
];

/// The gRPC status codes the retrying layers retry by default: `UNAVAILABLE`, the one
/// code gRPC defines as transient. `RESOURCE_EXHAUSTED` is retried when the server
/// sends a valid `grpc-retry-pushback-ms` (it says when), or when listed.
pub const DEFAULT_GRPC_RETRY_CODES: [GrpcCode; 1] = [GrpcCode::Unavailable];

/// A set of gRPC codes, as a bit per code.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) struct GrpcRetryCodes {
    mask: u32,
}

impl GrpcRetryCodes {
    /// The set of `codes` (any code: [`unretryable`](Self::unretryable) finds the ones a
    /// builder refuses).
    pub(crate) fn new(codes: impl IntoIterator<Item = GrpcCode>) -> Self {
        let mask = codes
            .into_iter()
            .fold(0, |mask, code| mask | 1 << code.as_u8());
        GrpcRetryCodes { mask }
    }

    pub(crate) fn contains(self, code: GrpcCode) -> bool {
        self.mask & 1 << code.as_u8() != 0
    }

    /// The lowest code of the set that is never retried (`OK` or one of
    /// [`NEVER_RETRIED_GRPC_CODES`]), if any.
    pub(crate) fn unretryable(self) -> Option<GrpcCode> {
        (0..=16)
            .filter_map(GrpcCode::from_number)
            .find(|&code| self.contains(code) && !may_retry(code))
    }
}

impl Default for GrpcRetryCodes {
    fn default() -> Self {
        GrpcRetryCodes::new(DEFAULT_GRPC_RETRY_CODES)
    }
}

impl fmt::Debug for GrpcRetryCodes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let codes = (0..=16).filter_map(GrpcCode::from_number);
        f.debug_set()
            .entries(codes.filter(|&c| self.contains(c)).map(GrpcCode::name))
            .finish()
    }
}

/// Whether any configuration may retry `code`.
fn may_retry(code: GrpcCode) -> bool {
    code != GrpcCode::Ok && !NEVER_RETRIED_GRPC_CODES.contains(&code)
}

/// What a response carrying `grpc-status` asks of a retrying layer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum GrpcVerdict {
    /// Hand it to the caller.
    Final,
    /// Retry it: after `hint` when the server sent a delay, else after the layer's own.
    Retry {
        /// The server's delay: the pushback, or a `Retry-After`-style header.
        hint: Option<Duration>,
    },
}

/// The gRPC verdict on a response (see the module's table), or `None` when its headers
/// carry no `grpc-status`: the HTTP rules apply then.
pub(crate) fn classify(headers: &HeaderMap, retry_codes: GrpcRetryCodes) -> Option<GrpcVerdict> {
    let code = grpc_status(headers)?;
    if !may_retry(code) {
        return Some(GrpcVerdict::Final);
    }
    let (hint, pushback) = match grpc_pushback(headers) {
        GrpcPushback::DoNotRetry => return Some(GrpcVerdict::Final),
        GrpcPushback::After(delay) => (Some(delay), true),
        GrpcPushback::Absent => {
            let hint = retry_hint(headers, SystemTime::now(), DEFAULT_HINT_CAP);
            (hint.map(|h| h.delay), false)
        }
    };
    let retry = retry_codes.contains(code) || (code == GrpcCode::ResourceExhausted && pushback);
    Some(match retry {
        true => GrpcVerdict::Retry { hint },
        false => GrpcVerdict::Final,
    })
}

/// Whether a call is a gRPC call: its request's `content-type` is gRPC's, or its response
/// carries `grpc-status`. A layer that gives up on one hands the caller the response.
pub(crate) fn is_grpc_call(head: &http::request::Parts, response: &HeaderMap) -> bool {
    response.contains_key(GRPC_STATUS) || is_grpc(&head.headers)
}

/// The error of a new request that an endpoint gate holds back longer than `max_wait`
/// (`hint`: the wait it would need, `blocked`: the block left). For a gRPC call with
/// feature `tonic`, its source is the `tonic::Status` a tonic caller receives:
/// `RESOURCE_EXHAUSTED`, with the block left as `grpc-retry-pushback-ms` metadata (so
/// that a caller, or a retry policy above, knows when to call again).
pub(crate) fn gate_refusal(
    head: &http::request::Parts,
    hint: Duration,
    blocked: Duration,
    max_wait: Duration,
) -> RetryError {
    let source = is_grpc(&head.headers)
        .then(|| {
            local_status(
                GrpcCode::ResourceExhausted,
                format_args!(
                    "not sent: the server's last answer blocks this method for {blocked:?}, \
                     longer than max_wait {max_wait:?}"
                ),
                Some(blocked),
            )
        })
        .flatten();
    RetryError::WaitTooLong {
        hint,
        max_wait,
        last_status: None,
        source,
    }
}

/// The status a tonic caller should read for a gRPC call that a client layer failed
/// without sending (a gate refusal, a pacing error): a boxed `tonic::Status` of `code`
/// and `message`, with `pushback` (rounded up to whole milliseconds) as
/// `grpc-retry-pushback-ms` metadata when a wait is known. Put it in the error's
/// `source()` chain: tonic's `Status::from_error` walks it and finds the status. `None`
/// without feature `tonic` (the message is not even formatted then).
#[cfg(feature = "tonic")]
pub(crate) fn local_status(
    code: GrpcCode,
    message: impl fmt::Display,
    pushback: Option<Duration>,
) -> Option<BoxError> {
    let mut headers = HeaderMap::new();
    if let Some(wait) = pushback {
        headers.insert(
            crate::headers::GRPC_RETRY_PUSHBACK_MS,
            crate::headers::pushback_value(wait),
        );
    }
    let status = tonic::Status::with_metadata(
        tonic::Code::from_i32(i32::from(code.as_u8())),
        message.to_string(),
        tonic::metadata::MetadataMap::from_headers(headers),
    );
    Some(Box::new(status))
}

/// Without feature `tonic` there is no status type to build: always `None`.
#[cfg(not(feature = "tonic"))]
pub(crate) fn local_status(
    _code: GrpcCode,
    _message: impl fmt::Display,
    _pushback: Option<Duration>,
) -> Option<BoxError> {
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(fields: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in fields {
            h.append(*k, http::HeaderValue::from_static(v));
        }
        h
    }

    fn verdict(fields: &[(&'static str, &'static str)]) -> Option<GrpcVerdict> {
        classify(&headers(fields), GrpcRetryCodes::default())
    }

    const FINAL: Option<GrpcVerdict> = Some(GrpcVerdict::Final);

    fn retry(hint: Option<Duration>) -> Option<GrpcVerdict> {
        Some(GrpcVerdict::Retry { hint })
    }

    #[test]
    fn the_table() {
        let ms = Duration::from_millis;
        assert_eq!(verdict(&[]), None, "no grpc-status: HTTP rules");
        assert_eq!(verdict(&[("grpc-status", "0")]), FINAL);
        assert_eq!(verdict(&[("grpc-status", "14")]), retry(None));
        let unavailable = [("grpc-status", "14"), ("grpc-retry-pushback-ms", "250")];
        assert_eq!(verdict(&unavailable), retry(Some(ms(250))));
        // RESOURCE_EXHAUSTED: retried when the server says when.
        assert_eq!(verdict(&[("grpc-status", "8")]), FINAL);
        let exhausted = [("grpc-status", "8"), ("grpc-retry-pushback-ms", "1500")];
        assert_eq!(verdict(&exhausted), retry(Some(ms(1500))));
        // A negative or malformed pushback: never retried.
        for bad in ["-1", "soon", "1.5"] {
            let h = [("grpc-status", "14"), ("grpc-retry-pushback-ms", bad)];
            assert_eq!(verdict(&h), FINAL, "{bad}");
        }
        // Never-retried codes, even with a pushback.
        for code in ["3", "5", "6", "7", "9", "11", "12", "15", "16"] {
            let h = [("grpc-status", code), ("grpc-retry-pushback-ms", "10")];
            assert_eq!(verdict(&h), FINAL, "{code}");
        }
        // Other codes are not retried unless listed; a malformed code is UNKNOWN.
        assert_eq!(verdict(&[("grpc-status", "10")]), FINAL);
        assert_eq!(verdict(&[("grpc-status", "x")]), FINAL);
        let aborted = headers(&[("grpc-status", "10"), ("grpc-retry-pushback-ms", "7")]);
        let listed = GrpcRetryCodes::new([GrpcCode::Aborted]);
        assert_eq!(classify(&aborted, listed), retry(Some(ms(7))));
        let unavailable = headers(&[("grpc-status", "14")]);
        assert_eq!(classify(&unavailable, listed), FINAL, "not listed");
    }

    #[test]
    fn pushback_comes_before_retry_after() {
        let ms = Duration::from_millis;
        let both = [
            ("grpc-status", "8"),
            ("retry-after-ms", "9000"),
            ("retry-after", "30"),
            ("grpc-retry-pushback-ms", "1200"),
        ];
        assert_eq!(verdict(&both), retry(Some(ms(1200))));
        // Without pushback, a listed code waits the Retry-After-style hint; it does not
        // make RESOURCE_EXHAUSTED retryable (only a pushback does).
        let retry_after = [("grpc-status", "14"), ("retry-after", "3")];
        assert_eq!(verdict(&retry_after), retry(Some(ms(3000))));
        assert_eq!(
            verdict(&[("grpc-status", "8"), ("retry-after", "3")]),
            FINAL
        );
        let codes = GrpcRetryCodes::new([GrpcCode::ResourceExhausted]);
        let h = headers(&[("grpc-status", "8"), ("retry-after", "3")]);
        assert_eq!(classify(&h, codes), retry(Some(ms(3000))));
        // A negative pushback vetoes a Retry-After.
        let veto = [
            ("grpc-status", "14"),
            ("grpc-retry-pushback-ms", "-1"),
            ("retry-after", "3"),
        ];
        assert_eq!(verdict(&veto), FINAL);
    }

    #[test]
    fn code_sets() {
        let set = GrpcRetryCodes::new([GrpcCode::Unavailable, GrpcCode::Aborted]);
        assert!(set.contains(GrpcCode::Aborted) && !set.contains(GrpcCode::Internal));
        assert_eq!(set.unretryable(), None);
        assert_eq!(format!("{set:?}"), r#"{"ABORTED", "UNAVAILABLE"}"#);
        let bad = GrpcRetryCodes::new([GrpcCode::Unavailable, GrpcCode::NotFound, GrpcCode::Ok]);
        assert_eq!(bad.unretryable(), Some(GrpcCode::Ok));
        for code in NEVER_RETRIED_GRPC_CODES {
            assert_eq!(GrpcRetryCodes::new([code]).unretryable(), Some(code));
        }
        assert_eq!(GrpcRetryCodes::new([]).unretryable(), None);
    }

    #[test]
    fn grpc_calls() {
        let (grpc, ()) = http::Request::post("/helloworld.Greeter/SayHello")
            .header("content-type", "application/grpc")
            .body(())
            .unwrap()
            .into_parts();
        let (plain, ()) = http::Request::post("/x").body(()).unwrap().into_parts();
        let none = HeaderMap::new();
        assert!(is_grpc_call(&grpc, &none));
        assert!(!is_grpc_call(&plain, &none));
        assert!(is_grpc_call(&plain, &headers(&[("grpc-status", "14")])));
        let err = gate_refusal(
            &plain,
            Duration::from_secs(9),
            Duration::from_secs(8),
            Duration::from_secs(1),
        );
        assert!(
            std::error::Error::source(&err).is_none(),
            "an HTTP call has no status"
        );
        let err = gate_refusal(
            &grpc,
            Duration::from_secs(9),
            Duration::from_secs(8),
            Duration::from_secs(1),
        );
        assert_eq!(err.hint(), Some(Duration::from_secs(9)));
        #[cfg(feature = "tonic")]
        {
            let status = std::error::Error::source(&err)
                .and_then(|e| e.downcast_ref::<tonic::Status>())
                .expect("a tonic::Status");
            assert_eq!(status.code(), tonic::Code::ResourceExhausted);
            assert_eq!(
                status.metadata().get("grpc-retry-pushback-ms").unwrap(),
                "8000"
            );
        }
    }
}
