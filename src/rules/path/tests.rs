use std::borrow::Cow;

use super::*;

fn canon(p: &str) -> Result<String, PathError> {
    canonicalize(p).map(Cow::into_owned)
}

#[test]
fn canonical_paths_are_borrowed() {
    for p in [
        "/",
        "/v1/sign_ins",
        "/v1/users/user_1/",
        "/a%2Fb/%25zz/%C3%A9",
        "/a:b@c!$&'()*+,;=/~-._",
        "*",
        "",
        "/...",
        "/.a/a./..a",
    ] {
        assert!(
            matches!(canonicalize(p), Ok(Cow::Borrowed(b)) if b == p),
            "{p}"
        );
    }
}

#[test]
fn known_spellings() {
    let cases = [
        ("//v1//sign_ins", "/v1/sign_ins"),
        ("//v1/sign_ins", "/v1/sign_ins"),
        ("/v1//sign_ins", "/v1/sign_ins"),
        ("/v1/sign_ins//", "/v1/sign_ins/"),
        ("//", "/"),
        ("///", "/"),
        ("/v1/sign_%69ns", "/v1/sign_ins"),
        ("/%76%31/sign%5fins", "/v1/sign_ins"),
        ("/v1/users/user%5F1", "/v1/users/user_1"),
        ("/v1/users/%75ser_1", "/v1/users/user_1"),
        ("/%7e%2D%2e%5F", "/~-._"),
        ("/a%2fb", "/a%2Fb"),
        ("/a%3a%40", "/a%3A%40"),
        ("/%zz", "/%25zz"),
        ("/%", "/%25"),
        ("/%4", "/%254"),
        ("/%%41", "/%25A"),
        ("/é", "/%C3%A9"),
        ("/%c3%a9", "/%C3%A9"),
        (
            "/a b\"<>\\^`{|}[]",
            "/a%20b%22%3C%3E%5C%5E%60%7B%7C%7D%5B%5D",
        ),
        ("/V1/SIGN_INS", "/V1/SIGN_INS"),
        ("/%2e%2e%2F", "/..%2F"),
        ("/.%2e.", "/..."),
    ];
    for (input, expected) in cases {
        assert_eq!(canon(input).as_deref(), Ok(expected), "{input}");
    }
}

#[test]
fn dot_segments_are_refused() {
    for p in [
        "/.",
        "/..",
        "/./",
        "/../",
        "/v1/./sign_ins",
        "/v1/x/../sign_ins",
        "/v1/sign_ins/.",
        "/v1/%2e",
        "/v1/%2E%2e/x",
        "/v1/.%2E/x",
        "//..//x",
    ] {
        assert_eq!(canonicalize(p), Err(PathError::DotSegment), "{p}");
    }
}

#[test]
fn decoding_matches_percent_encoding() {
    let decode = |s: &str| {
        let mut out = Vec::new();
        for_each_decoded(s.as_bytes(), |b| out.extend_from_slice(b));
        assert_eq!(out.len(), decoded_len(s.as_bytes()), "{s}");
        out
    };
    assert_eq!(decode("user%5F1"), b"user_1");
    assert_eq!(decode("%75ser_1"), b"user_1");
    assert_eq!(decode("a%2Fb"), b"a/b");
    assert_eq!(decode("%zz%4"), b"%zz%4");
    assert_eq!(decode("%25zz"), b"%zz");
    assert_eq!(decode("%FF"), [0xff]);
    assert_eq!(decode(""), b"");
}

/// A plain, allocating model of the canonical form: split, canonicalize each segment,
/// drop the empty ones, join.
fn model(p: &str) -> Result<String, PathError> {
    let Some(body) = p.strip_prefix('/') else {
        return Ok(p.to_owned());
    };
    let mut segments = Vec::new();
    for raw in body.split('/').filter(|s| !s.is_empty()) {
        let bytes = raw.as_bytes();
        let mut seg = String::new();
        let mut i = 0;
        while i < bytes.len() {
            match escape_at(&bytes[i..]) {
                Some(v) if is_unreserved(v) => {
                    seg.push(char::from(v));
                    i += 3;
                }
                Some(v) => {
                    seg.push_str(&format!("%{v:02X}"));
                    i += 3;
                }
                None => {
                    let b = bytes[i];
                    if is_raw_pchar(b) {
                        seg.push(char::from(b));
                    } else {
                        seg.push_str(&format!("%{b:02X}"));
                    }
                    i += 1;
                }
            }
        }
        if seg == "." || seg == ".." {
            return Err(PathError::DotSegment);
        }
        segments.push(seg);
    }
    let trailing = p.len() > 1 && p.ends_with('/') && !segments.is_empty();
    Ok(format!(
        "/{}{}",
        segments.join("/"),
        if trailing { "/" } else { "" }
    ))
}

/// Small xorshift64*: reproducible randomness without a dependency.
pub(crate) struct XorShift(pub(crate) u64);

impl XorShift {
    pub(crate) fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    pub(crate) fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// Randomized cases: `HOSTILE_CASES` (default 4,000) for longer runs.
fn cases() -> usize {
    std::env::var("HOSTILE_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(4_000)
}

const PIECES: &[&str] = &[
    "/", "/", "//", "a", "Z", "0", "_", "-", "~", ".", "..", "%", "%2", "%2e", "%2E", "%2f", "%2F",
    "%41", "%7e", "%zz", "%C3%A9", "é", " ", "{", "\\", "v1", "sign_ins", "%25", "@", ":", "+",
];

fn random_path(rng: &mut XorShift) -> String {
    let mut p = String::new();
    if rng.below(8) != 0 {
        p.push('/');
    }
    for _ in 0..rng.below(12) {
        p.push_str(PIECES[rng.below(PIECES.len())]);
    }
    p
}

#[test]
fn random_paths_follow_the_model_and_are_idempotent() {
    let mut rng = XorShift(0x9e37_79b9_7f4a_7c15);
    for _ in 0..cases() {
        let p = random_path(&mut rng);
        let got = canon(&p);
        assert_eq!(got, model(&p), "{p:?}");
        let Ok(c) = got else { continue };
        // Idempotent, and a canonical path comes back borrowed.
        assert!(
            matches!(canonicalize(&c), Ok(Cow::Borrowed(b)) if b == c),
            "{p:?} -> {c:?}"
        );
        if c.starts_with('/') {
            assert!(!c.contains("//"), "{p:?} -> {c:?}");
            for seg in c.split('/') {
                assert!(seg != "." && seg != "..", "{p:?} -> {c:?}");
            }
            assert!(c.is_ascii(), "{p:?} -> {c:?}");
        }
    }
}

/// Spells a canonical path differently: unreserved characters percent-encoded (either hex
/// case), extra slashes, other escapes in lower case.
fn respell(c: &str, rng: &mut XorShift) -> String {
    let bytes = c.as_bytes();
    let mut out = String::new();
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if b == b'%' {
            let esc = &c[i..i + 3];
            out.push_str(&if rng.below(2) == 0 {
                esc.to_ascii_lowercase()
            } else {
                esc.to_owned()
            });
            i += 3;
            continue;
        }
        match b {
            b'/' if rng.below(3) == 0 => out.push_str("//"),
            b if is_unreserved(b) && rng.below(3) == 0 => {
                let esc = format!("%{b:02X}");
                out.push_str(&if rng.below(2) == 0 {
                    esc.to_ascii_lowercase()
                } else {
                    esc
                });
            }
            b => out.push(char::from(b)),
        }
        i += 1;
    }
    out
}

#[test]
fn respellings_share_the_canonical_form() {
    let mut rng = XorShift(0x0123_4567_89ab_cdef);
    let mut checked = 0;
    for _ in 0..cases() {
        let Ok(c) = canon(&random_path(&mut rng)) else {
            continue;
        };
        if !c.starts_with('/') {
            continue;
        }
        let variant = respell(&c, &mut rng);
        assert_eq!(canon(&variant).as_deref(), Ok(c.as_str()), "{variant:?}");
        checked += 1;
    }
    assert!(checked > cases() / 2, "{checked}");
}
