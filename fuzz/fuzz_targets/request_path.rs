//! Request paths as a client can send them: never a panic, and the canonical form is a
//! fixed point (canonicalizing it again changes nothing).
#![no_main]

use libfuzzer_sys::fuzz_target;
use tower_throttle::path::canonicalize;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let Ok(path) = http::uri::PathAndQuery::try_from(text) else { return };
    if let Ok(canonical) = canonicalize(path.path()) {
        assert_eq!(canonicalize(&canonical).as_deref(), Ok(&*canonical));
    }
});
