//! Response headers a hostile server can send: every rate-limit and retry reader, never a
//! panic, never a duration past its cap.
#![no_main]

use std::time::{Duration, SystemTime};

use http::{HeaderMap, HeaderName, HeaderValue};
use libfuzzer_sys::fuzz_target;
use tower_throttle::headers::{parse_rate_limit, retry_hint};

const NAMES: [&str; 10] = [
    "ratelimit-policy",
    "ratelimit",
    "x-ratelimit-limit",
    "x-ratelimit-remaining",
    "x-ratelimit-reset",
    "retry-after",
    "retry-after-ms",
    "x-amz-retry-after",
    "grpc-retry-pushback-ms",
    "date",
];

fuzz_target!(|data: &[u8]| {
    let mut headers = HeaderMap::new();
    for line in data.split(|b| *b == b'\n') {
        let Some((&selector, value)) = line.split_first() else { continue };
        if let Ok(v) = HeaderValue::from_bytes(value) {
            headers.append(HeaderName::from_static(NAMES[selector as usize % NAMES.len()]), v);
        }
    }
    let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
    let cap = Duration::from_secs(3600);
    if let Some(hint) = retry_hint(&headers, now, cap) {
        assert!(hint.delay <= cap);
    }
    let _ = parse_rate_limit(&headers, now);
});
