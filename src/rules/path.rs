//! The canonical form of a request path, which rules match (see [`Rule`](crate::Rule)).
//!
//! [`canonicalize`] applies the normalizations of RFC 3986 (section 6.2.2) that never
//! change which resource a path names, plus the merging of empty segments:
//!
//! - a percent-encoded **unreserved** character (`A-Z a-z 0-9 - . _ ~`) is decoded:
//!   `/v1/sign_%69ns` is `/v1/sign_ins`;
//! - the hex digits of every other escape are upper-cased: `%2f` is `%2F` (a reserved
//!   character stays encoded: `%2F` is not `/`);
//! - a `%` not followed by two hex digits is a literal `%` and written `%25` (that is how
//!   axum's `Path` and the `percent-encoding` crate read it), and a byte that may not
//!   appear raw in a path (non-ASCII, `"`, `<`, `>`, `\`, `^`, `` ` ``, `{`, `|`, `}`,
//!   `[`, `]`) is percent-encoded: `é` and `%C3%A9` are one path;
//! - empty segments are merged: `//v1//sign_ins` is `/v1/sign_ins`; a trailing slash is
//!   kept (once): `/v1/users//` is `/v1/users/`.
//!
//! **Dot segments** (`.` and `..`, also encoded: `%2e`, `.%2E`) are refused with
//! [`PathError::DotSegment`] instead of being removed. Clients that follow RFC 3986 remove
//! them before sending (section 5.2.4), so only hand-made requests carry them, and
//! routers disagree about them: axum matches `/v1/sign_ins/../x` as is (`..` can be a
//! path parameter), a normalizing proxy resolves it to `/v1/x`. Whichever way the
//! limiter read it, a router reading it the other way could serve the request under a
//! route whose limit was not applied; refusing it is the only reading that never escapes
//! a limit.
//!
//! Case is kept (RFC 3986 paths are case-sensitive); case-insensitive matching is a rule
//! option ([`PathMatching`](crate::rules::PathMatching)).
//!
//! Cost: one pass over the path, O(n), no allocation when the path is already canonical
//! (the path is returned borrowed); otherwise one allocation of about the path's length.
//!
//! ```
//! use tower_throttle::path::{canonicalize, PathError};
//!
//! assert_eq!(canonicalize("/v1/sign_ins").unwrap(), "/v1/sign_ins");
//! assert_eq!(canonicalize("//v1//sign_%69ns").unwrap(), "/v1/sign_ins");
//! assert_eq!(canonicalize("/v1/a%2fb/%zz").unwrap(), "/v1/a%2Fb/%25zz");
//! assert_eq!(canonicalize("/v1/x/%2e%2e/y"), Err(PathError::DotSegment));
//! ```

use std::borrow::Cow;
use std::fmt;

/// Why a path has no canonical form.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum PathError {
    /// A segment is `.` or `..` (possibly percent-encoded).
    DotSegment,
}

impl PathError {
    /// A short description, for logs and problem documents.
    pub fn what(&self) -> &'static str {
        match self {
            PathError::DotSegment => "a dot segment ('.' or '..') in the path",
        }
    }
}

impl fmt::Display for PathError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.what())
    }
}

impl std::error::Error for PathError {}

const HEX: &[u8; 16] = b"0123456789ABCDEF";

/// `A-Z a-z 0-9 - . _ ~` (RFC 3986 section 2.3).
#[inline]
pub(crate) const fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

/// What a path segment may hold unencoded besides unreserved characters: sub-delims,
/// `:` and `@` (RFC 3986 `pchar`).
#[inline]
const fn is_raw_pchar(b: u8) -> bool {
    is_unreserved(b)
        || matches!(
            b,
            b'!' | b'$'
                | b'&'
                | b'\''
                | b'('
                | b')'
                | b'*'
                | b'+'
                | b','
                | b';'
                | b'='
                | b':'
                | b'@'
        )
}

#[inline]
pub(crate) fn hex_value(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// The byte `%XY` at the start of `bytes` stands for, if it is a valid escape.
#[inline]
pub(crate) fn escape_at(bytes: &[u8]) -> Option<u8> {
    match bytes {
        [b'%', h, l, ..] => Some(hex_value(*h)? << 4 | hex_value(*l)?),
        _ => None,
    }
}

/// The output, allocated only once it first differs from the input; unchanged runs of
/// the input are copied in one piece.
struct Out<'a> {
    src: &'a [u8],
    buf: Option<Vec<u8>>,
    /// The input before this is in `buf` (or needs no copy, while `buf` is `None`).
    copied: usize,
}

impl Out<'_> {
    /// The `consumed` input bytes at `at` are written `ascii` instead.
    fn changed(&mut self, at: usize, consumed: usize, ascii: &[u8]) {
        let buf = self
            .buf
            .get_or_insert_with(|| Vec::with_capacity(self.src.len() + 8));
        buf.extend_from_slice(&self.src[self.copied..at]);
        buf.extend_from_slice(ascii);
        self.copied = at + consumed;
    }

    fn finish(self, path: &str) -> Cow<'_, str> {
        let Some(mut buf) = self.buf else {
            return Cow::Borrowed(path);
        };
        buf.extend_from_slice(&self.src[self.copied..]);
        // ASCII by construction (every non-ASCII byte is percent-encoded).
        Cow::Owned(
            String::from_utf8(buf)
                .unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned()),
        )
    }
}

/// The canonical form of `path` (see the [module docs](self)), borrowed when `path` is
/// already canonical. A path that does not start with `/` (`*`, or the empty path of a
/// CONNECT request) is returned as is: no route template matches it.
///
/// # Errors
///
/// [`PathError::DotSegment`] when a segment is a dot segment (`.` or `..`, percent-encoded or not):
/// such a path has no canonical form the limiter and every router would agree on.
pub fn canonicalize(path: &str) -> Result<Cow<'_, str>, PathError> {
    let bytes = path.as_bytes();
    if bytes.first() != Some(&b'/') || plainly_canonical(bytes) {
        return Ok(Cow::Borrowed(path));
    }
    let mut out = Out {
        src: bytes,
        buf: None,
        copied: 0,
    };
    // Length and dots of the current segment, as written to the output.
    let (mut seg_len, mut seg_dots) = (0usize, 0usize);
    let mut i = 1;
    while i < bytes.len() {
        let b = bytes[i];
        if b == b'/' {
            if seg_len == 0 {
                out.changed(i, 1, b"");
            } else {
                check_dots(seg_len, seg_dots)?;
            }
            (seg_len, seg_dots) = (0, 0);
            i += 1;
            continue;
        }
        let (len, canonical_byte) = match escape_at(&bytes[i..]) {
            Some(v) if is_unreserved(v) => {
                out.changed(i, 3, &[v]);
                (3, v)
            }
            Some(v) => {
                let escape = [b'%', HEX[usize::from(v >> 4)], HEX[usize::from(v & 15)]];
                if bytes[i..i + 3] != escape {
                    out.changed(i, 3, &escape);
                }
                (3, b'%')
            }
            None if is_raw_pchar(b) => (1, b),
            None => {
                out.changed(
                    i,
                    1,
                    &[b'%', HEX[usize::from(b >> 4)], HEX[usize::from(b & 15)]],
                );
                (1, b'%')
            }
        };
        seg_len += 1;
        seg_dots += usize::from(canonical_byte == b'.');
        i += len;
    }
    check_dots(seg_len, seg_dots)?;
    Ok(out.finish(path))
}

/// Bytes a canonical path holds as themselves: unreserved, sub-delims, `:` and `@`.
static PLAIN: [bool; 256] = {
    let mut t = [false; 256];
    let mut b = 0;
    while b < 256 {
        t[b] = is_raw_pchar(b as u8);
        b += 1;
    }
    t
};

/// The common case, in one table lookup per byte: only plain bytes and slashes, no empty
/// and no dot segment (a trailing slash is fine). `false` means "look closer", not "not
/// canonical" (a path with escapes takes the full pass even when canonical).
#[inline]
fn plainly_canonical(bytes: &[u8]) -> bool {
    let mut seg_start = 1;
    for (i, &b) in bytes.iter().enumerate().skip(1) {
        if PLAIN[usize::from(b)] {
            continue;
        }
        if b != b'/' || !plain_segment(&bytes[seg_start..i]) {
            return false;
        }
        seg_start = i + 1;
    }
    let last = &bytes[seg_start.min(bytes.len())..];
    last.is_empty() || plain_segment(last)
}

#[inline]
fn plain_segment(seg: &[u8]) -> bool {
    !matches!(seg, b"" | b"." | b"..")
}

#[inline]
fn check_dots(len: usize, dots: usize) -> Result<(), PathError> {
    if len == dots && (len == 1 || len == 2) {
        Err(PathError::DotSegment)
    } else {
        Ok(())
    }
}

/// The length of `s` percent-decoded the way axum's `Path` extractor decodes it (every
/// valid `%XY` escape is one byte, an invalid one is kept as is).
pub(crate) fn decoded_len(s: &[u8]) -> usize {
    let mut n = 0;
    let mut i = 0;
    while i < s.len() {
        i += if escape_at(&s[i..]).is_some() { 3 } else { 1 };
        n += 1;
    }
    n
}

/// Feeds the percent-decoded bytes of `s` (as [`decoded_len`] counts them) to `sink`: runs of plain bytes as slices, each
/// decoded escape as one byte. O(n), no allocation.
pub(crate) fn for_each_decoded(s: &[u8], mut sink: impl FnMut(&[u8])) {
    let mut run = 0;
    let mut i = 0;
    while i < s.len() {
        if let Some(v) = escape_at(&s[i..]) {
            if run < i {
                sink(&s[run..i]);
            }
            sink(&[v]);
            i += 3;
            run = i;
        } else {
            i += 1;
        }
    }
    if run < s.len() {
        sink(&s[run..]);
    }
}

#[cfg(test)]
mod tests;
