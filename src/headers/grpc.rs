//! gRPC's status fields, as gRPC over HTTP/2 carries them (PROTOCOL-HTTP2.md): the call's
//! status code in `grpc-status`, its message in `grpc-message` (percent-encoded), and the
//! server's retry guidance in `grpc-retry-pushback-ms` (gRFC A6). In a *trailers-only*
//! response (HTTP 200, no message, every field in the headers) they are response headers,
//! which is how a refused call is answered and where the client layers read them.
//!
//! Everything here is feature-free: any gRPC peer, not only tonic, speaks these fields.

use std::fmt;
use std::time::Duration;

use http::header::CONTENT_TYPE;
use http::{HeaderMap, HeaderName, HeaderValue};

use super::parse::{parse_pushback, DEFAULT_HINT_CAP, GRPC_RETRY_PUSHBACK_MS};

/// `grpc-status`.
pub const GRPC_STATUS: HeaderName = HeaderName::from_static("grpc-status");
/// `grpc-message`.
pub const GRPC_MESSAGE: HeaderName = HeaderName::from_static("grpc-message");

/// A gRPC status code (the numbers of gRPC's `status.proto`, as tonic's `Code`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum GrpcCode {
    /// 0: not an error.
    Ok = 0,
    /// 1: cancelled, typically by the caller.
    Cancelled = 1,
    /// 2: unknown error (also any code a peer sends that is not one of these).
    Unknown = 2,
    /// 3: the client specified an invalid argument.
    InvalidArgument = 3,
    /// 4: the deadline expired before the operation could complete.
    DeadlineExceeded = 4,
    /// 5: some requested entity was not found.
    NotFound = 5,
    /// 6: the entity the client tried to create already exists.
    AlreadyExists = 6,
    /// 7: the caller may not execute the operation.
    PermissionDenied = 7,
    /// 8: some resource has been exhausted (a rate limit, a quota).
    ResourceExhausted = 8,
    /// 9: the system is not in a state required for the operation.
    FailedPrecondition = 9,
    /// 10: the operation was aborted (a concurrency conflict).
    Aborted = 10,
    /// 11: the operation was attempted past the valid range.
    OutOfRange = 11,
    /// 12: the operation is not implemented or supported.
    Unimplemented = 12,
    /// 13: an internal error.
    Internal = 13,
    /// 14: the service is currently unavailable; a transient condition.
    Unavailable = 14,
    /// 15: unrecoverable data loss or corruption.
    DataLoss = 15,
    /// 16: the request lacks valid authentication credentials.
    Unauthenticated = 16,
}

const CODES: [GrpcCode; 17] = [
    GrpcCode::Ok,
    GrpcCode::Cancelled,
    GrpcCode::Unknown,
    GrpcCode::InvalidArgument,
    GrpcCode::DeadlineExceeded,
    GrpcCode::NotFound,
    GrpcCode::AlreadyExists,
    GrpcCode::PermissionDenied,
    GrpcCode::ResourceExhausted,
    GrpcCode::FailedPrecondition,
    GrpcCode::Aborted,
    GrpcCode::OutOfRange,
    GrpcCode::Unimplemented,
    GrpcCode::Internal,
    GrpcCode::Unavailable,
    GrpcCode::DataLoss,
    GrpcCode::Unauthenticated,
];

const DIGITS: [&str; 17] = [
    "0", "1", "2", "3", "4", "5", "6", "7", "8", "9", "10", "11", "12", "13", "14", "15", "16",
];

const NAMES: [&str; 17] = [
    "OK",
    "CANCELLED",
    "UNKNOWN",
    "INVALID_ARGUMENT",
    "DEADLINE_EXCEEDED",
    "NOT_FOUND",
    "ALREADY_EXISTS",
    "PERMISSION_DENIED",
    "RESOURCE_EXHAUSTED",
    "FAILED_PRECONDITION",
    "ABORTED",
    "OUT_OF_RANGE",
    "UNIMPLEMENTED",
    "INTERNAL",
    "UNAVAILABLE",
    "DATA_LOSS",
    "UNAUTHENTICATED",
];

impl GrpcCode {
    /// The code's number (`ResourceExhausted` is 8).
    pub const fn as_u8(self) -> u8 {
        self as u8
    }

    /// The code numbered `n`, if there is one.
    pub fn from_number(n: u32) -> Option<GrpcCode> {
        usize::try_from(n).ok().and_then(|i| CODES.get(i)).copied()
    }

    /// The code's name in gRPC's documentation (`"RESOURCE_EXHAUSTED"`).
    pub fn name(self) -> &'static str {
        NAMES[self as usize]
    }

    /// The `grpc-status` value of this code (`"8"`).
    pub fn header_value(self) -> HeaderValue {
        HeaderValue::from_static(DIGITS[self as usize])
    }
}

impl fmt::Display for GrpcCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.name(), self.as_u8())
    }
}

/// Whether a message's `content-type` is gRPC's: `application/grpc`, alone or followed by
/// `+` (`+proto`, `+json`, any codec) or `;` (parameters), compared ASCII
/// case-insensitively as media types are; gRPC-Web (`application/grpc-web`,
/// `application/grpc-web-text`, and their `+` forms) too, whose trailers-only responses
/// carry the status in the headers the same way.
///
/// ```
/// use http::HeaderMap;
/// use tower_throttle::headers::is_grpc;
///
/// let mut headers = HeaderMap::new();
/// headers.insert("content-type", "application/grpc+proto".parse().unwrap());
/// assert!(is_grpc(&headers));
/// headers.insert("content-type", "application/grpcfoo".parse().unwrap());
/// assert!(!is_grpc(&headers));
/// ```
pub fn is_grpc(headers: &HeaderMap) -> bool {
    let Some(value) = headers.get(CONTENT_TYPE) else {
        return false;
    };
    let bytes = value.as_bytes();
    const PREFIX: &[u8] = b"application/grpc";
    if bytes.len() < PREFIX.len() || !bytes[..PREFIX.len()].eq_ignore_ascii_case(PREFIX) {
        return false;
    }
    let mut rest = &bytes[PREFIX.len()..];
    for web in [&b"-web-text"[..], b"-web"] {
        if rest.len() >= web.len() && rest[..web.len()].eq_ignore_ascii_case(web) {
            rest = &rest[web.len()..];
            break;
        }
    }
    matches!(rest.first(), None | Some(b'+' | b';' | b' ' | b'\t'))
}

/// The status code of a response whose headers carry one (a trailers-only response): `None`
/// when there is no `grpc-status` header, and [`GrpcCode::Unknown`] when its value is not
/// a code (as gRPC clients read an unknown or malformed status: never a silent OK).
///
/// ```
/// use http::HeaderMap;
/// use tower_throttle::headers::{grpc_status, GrpcCode};
///
/// let mut headers = HeaderMap::new();
/// assert_eq!(grpc_status(&headers), None);
/// headers.insert("grpc-status", "8".parse().unwrap());
/// assert_eq!(grpc_status(&headers), Some(GrpcCode::ResourceExhausted));
/// headers.insert("grpc-status", "0x8".parse().unwrap());
/// assert_eq!(grpc_status(&headers), Some(GrpcCode::Unknown));
/// ```
pub fn grpc_status(headers: &HeaderMap) -> Option<GrpcCode> {
    let value = headers.get(GRPC_STATUS)?;
    let digits = value.as_bytes();
    // At most 3 digits: no real code is longer, and nothing longer needs reading.
    let code = (!digits.is_empty() && digits.len() <= 3 && digits.iter().all(u8::is_ascii_digit))
        .then(|| {
            digits
                .iter()
                .fold(0u32, |n, d| n * 10 + u32::from(d - b'0'))
        })
        .and_then(GrpcCode::from_number);
    Some(code.unwrap_or(GrpcCode::Unknown))
}

/// The `grpc-message` of a response, percent-decoded (invalid escapes are kept as they
/// are, and bytes that are not UTF-8 are replaced, as the gRPC spec asks of receivers:
/// never an error). `None` when there is none.
pub fn grpc_message(headers: &HeaderMap) -> Option<String> {
    let raw = headers.get(GRPC_MESSAGE)?.as_bytes();
    let mut out = Vec::with_capacity(raw.len());
    let mut i = 0;
    while i < raw.len() {
        let escaped = (raw[i] == b'%')
            .then(|| raw.get(i + 1..i + 3))
            .flatten()
            .and_then(|hex| Some(hex_value(hex[0])? << 4 | hex_value(hex[1])?));
        match escaped {
            Some(byte) => {
                out.push(byte);
                i += 3;
            }
            None => {
                out.push(raw[i]);
                i += 1;
            }
        }
    }
    Some(String::from_utf8_lossy(&out).into_owned())
}

fn hex_value(c: u8) -> Option<u8> {
    char::from(c).to_digit(16).map(|d| d as u8)
}

/// `message` as a `grpc-message` value: percent-encoded as the gRPC spec requires (every
/// byte outside `0x20..=0x7E`, and `%` itself, as `%XX`), so any UTF-8 text is a valid
/// header value.
///
/// ```
/// use tower_throttle::headers::encode_grpc_message;
///
/// assert_eq!(encode_grpc_message("50% done: ü"), "50%25 done: %C3%BC");
/// ```
pub fn encode_grpc_message(message: &str) -> HeaderValue {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    let mut out = Vec::with_capacity(message.len());
    for &b in message.as_bytes() {
        if (0x20..=0x7e).contains(&b) && b != b'%' {
            out.push(b);
        } else {
            out.extend_from_slice(&[b'%', HEX[usize::from(b >> 4)], HEX[usize::from(b & 15)]]);
        }
    }
    HeaderValue::from_bytes(&out).unwrap_or_else(|_| unreachable!("visible ASCII and spaces"))
}

/// What a response's `grpc-retry-pushback-ms` says (gRFC A6).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GrpcPushback {
    /// No pushback: the client's own policy decides.
    Absent,
    /// Retry after exactly this delay (capped at [`DEFAULT_HINT_CAP`], one day).
    After(Duration),
    /// A negative or malformed value: the server asks not to retry.
    DoNotRetry,
}

/// The pushback of a response: the first line that is a non-negative integer of
/// milliseconds; when every line is negative or malformed, [`GrpcPushback::DoNotRetry`].
///
/// ```
/// use std::time::Duration;
/// use http::HeaderMap;
/// use tower_throttle::headers::{grpc_pushback, GrpcPushback};
///
/// let mut headers = HeaderMap::new();
/// assert_eq!(grpc_pushback(&headers), GrpcPushback::Absent);
/// headers.insert("grpc-retry-pushback-ms", "1500".parse().unwrap());
/// assert_eq!(grpc_pushback(&headers), GrpcPushback::After(Duration::from_millis(1500)));
/// headers.insert("grpc-retry-pushback-ms", "-1".parse().unwrap());
/// assert_eq!(grpc_pushback(&headers), GrpcPushback::DoNotRetry);
/// ```
pub fn grpc_pushback(headers: &HeaderMap) -> GrpcPushback {
    let mut lines = headers.get_all(GRPC_RETRY_PUSHBACK_MS).iter().peekable();
    if lines.peek().is_none() {
        return GrpcPushback::Absent;
    }
    match lines.find_map(|v| parse_pushback(v.as_bytes())) {
        Some(wait) => GrpcPushback::After(wait.min(DEFAULT_HINT_CAP)),
        None => GrpcPushback::DoNotRetry,
    }
}

/// A `grpc-retry-pushback-ms` value for `wait`: whole milliseconds, rounded up, so a
/// client that honors it is never early.
///
/// ```
/// use std::time::Duration;
/// use tower_throttle::headers::pushback_value;
///
/// assert_eq!(pushback_value(Duration::from_micros(2_500_001)), "2501");
/// assert_eq!(pushback_value(Duration::ZERO), "0");
/// ```
pub fn pushback_value(wait: Duration) -> HeaderValue {
    let millis = wait.as_nanos().div_ceil(1_000_000);
    let millis = u64::try_from(millis).unwrap_or(u64::MAX);
    HeaderValue::from(millis)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with(name: &'static str, values: &[&'static str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in values {
            h.append(name, HeaderValue::from_static(v));
        }
        h
    }

    #[test]
    fn codes_round_trip() {
        for (n, code) in CODES.iter().enumerate() {
            assert_eq!(code.as_u8() as usize, n);
            assert_eq!(GrpcCode::from_number(n as u32), Some(*code));
            assert_eq!(code.header_value(), n.to_string().as_str());
            let headers = with("grpc-status", &[DIGITS[n]]);
            assert_eq!(grpc_status(&headers), Some(*code));
        }
        assert_eq!(GrpcCode::from_number(17), None);
        assert_eq!(GrpcCode::from_number(u32::MAX), None);
        assert_eq!(
            GrpcCode::ResourceExhausted.to_string(),
            "RESOURCE_EXHAUSTED (8)"
        );
    }

    #[test]
    fn hostile_status_is_unknown_never_ok() {
        for bad in [
            "", " 0", "0 ", "-0", "+8", "17", "999", "0000", "8.0", "abc",
        ] {
            let headers = with("grpc-status", &[bad]);
            assert_eq!(grpc_status(&headers), Some(GrpcCode::Unknown), "{bad:?}");
        }
        // The first line is the status.
        let headers = with("grpc-status", &["14", "0"]);
        assert_eq!(grpc_status(&headers), Some(GrpcCode::Unavailable));
        // Three digits with a leading zero are still a number.
        let headers = with("grpc-status", &["008"]);
        assert_eq!(grpc_status(&headers), Some(GrpcCode::ResourceExhausted));
    }

    #[test]
    fn content_types() {
        for yes in [
            "application/grpc",
            "application/grpc+proto",
            "application/grpc+json",
            "Application/GRPC",
            "application/grpc; charset=utf-8",
            "application/grpc-web",
            "application/grpc-web+proto",
            "application/grpc-web-text",
        ] {
            assert!(is_grpc(&with("content-type", &[yes])), "{yes}");
        }
        for no in [
            "application/json",
            "application/grpcx",
            "application/grpc-webx",
            "application/gr",
            "text/application/grpc",
            "",
        ] {
            assert!(!is_grpc(&with("content-type", &[no])), "{no}");
        }
        assert!(!is_grpc(&HeaderMap::new()));
    }

    #[test]
    fn messages_round_trip() {
        for text in ["rate limit 'per_key' exceeded", "100% ü 日本 \t\n\r", ""] {
            let value = encode_grpc_message(text);
            assert!(value.as_bytes().iter().all(|b| (0x20..=0x7e).contains(b)));
            let mut headers = HeaderMap::new();
            headers.insert(GRPC_MESSAGE, value);
            assert_eq!(grpc_message(&headers).as_deref(), Some(text));
        }
        // Invalid escapes and invalid UTF-8 are kept or replaced, never an error.
        let headers = with("grpc-message", &["%zz %4 %E2%82 ok%"]);
        assert_eq!(grpc_message(&headers).unwrap(), "%zz %4 \u{fffd} ok%");
        assert_eq!(grpc_message(&HeaderMap::new()), None);
    }

    #[test]
    fn pushback() {
        let ms = Duration::from_millis;
        assert_eq!(grpc_pushback(&HeaderMap::new()), GrpcPushback::Absent);
        for (lines, want) in [
            (&["0"][..], GrpcPushback::After(ms(0))),
            (&["250"], GrpcPushback::After(ms(250))),
            (&["-1"], GrpcPushback::DoNotRetry),
            (&["1.5"], GrpcPushback::DoNotRetry),
            (&["soon"], GrpcPushback::DoNotRetry),
            (&[""], GrpcPushback::DoNotRetry),
            (&["-1", "20"], GrpcPushback::After(ms(20))),
            (
                &["99999999999999999999999"],
                GrpcPushback::After(DEFAULT_HINT_CAP),
            ),
        ] {
            assert_eq!(
                grpc_pushback(&with("grpc-retry-pushback-ms", lines)),
                want,
                "{lines:?}"
            );
        }
    }

    #[test]
    fn pushback_rounds_up() {
        assert_eq!(pushback_value(Duration::from_millis(2500)), "2500");
        assert_eq!(pushback_value(Duration::from_nanos(1)), "1");
        assert_eq!(pushback_value(Duration::from_nanos(1_000_001)), "2");
        // Beyond u64 milliseconds it saturates rather than wrap.
        assert_eq!(pushback_value(Duration::MAX), "18446744073709551615");
    }
}
