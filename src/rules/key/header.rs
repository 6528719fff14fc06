//! Keys read from request headers.

use http::header::{HeaderName, AUTHORIZATION};
use http::HeaderMap;

use super::{KeyBuilder, KeyExtractor, KeyMissing, RequestParts};

/// The value of a request header. An empty value or a repeated header counts as missing.
///
/// A repeated header is ambiguous: applications read the first value, the last one, or
/// all of them joined, and a key built from any one choice would let a client vary the
/// others to get fresh buckets while the application authenticates it by the value it
/// reads. So two or more lines of the header are treated as no key at all, and the rule's
/// [`MissingKey`](crate::MissingKey) policy decides (a shared bucket by default, or a
/// refusal), the same as [`BearerToken`] does with a repeated `Authorization`.
#[derive(Debug, Clone)]
pub struct Header {
    name: HeaderName,
}

impl Header {
    /// Key by this header.
    pub fn new(name: HeaderName) -> Self {
        Header { name }
    }
}

impl KeyExtractor for Header {
    fn extract(&self, req: &RequestParts<'_>, key: &mut KeyBuilder) -> Result<(), KeyMissing> {
        let mut values = req.headers.get_all(&self.name).iter();
        match (values.next(), values.next()) {
            (Some(v), None) if !v.as_bytes().is_empty() => {
                key.push(v.as_bytes());
                Ok(())
            }
            _ => Err(KeyMissing { what: "header" }),
        }
    }
    fn fingerprint(&self, state: &mut dyn std::hash::Hasher) {
        state.write(b"Header");
        state.write(self.name.as_str().as_bytes());
        state.write_u8(0xff);
    }
}

/// The token of `Authorization: Bearer <token>` (scheme case-insensitive). A missing
/// header, another scheme, an empty token or a repeated header count as missing.
#[derive(Debug, Clone, Copy, Default)]
pub struct BearerToken;

impl BearerToken {
    /// The bearer token of a request, if it has exactly one well-formed one.
    pub fn token(headers: &HeaderMap) -> Option<&[u8]> {
        let mut values = headers.get_all(AUTHORIZATION).iter();
        let value = values.next()?;
        if values.next().is_some() {
            return None;
        }
        let bytes = value.as_bytes();
        let (scheme, rest) = bytes.split_at_checked(6)?;
        if !scheme.eq_ignore_ascii_case(b"bearer") || rest.first() != Some(&b' ') {
            return None;
        }
        let token = rest.trim_ascii();
        (!token.is_empty()).then_some(token)
    }
}

impl KeyExtractor for BearerToken {
    fn extract(&self, req: &RequestParts<'_>, key: &mut KeyBuilder) -> Result<(), KeyMissing> {
        let token = Self::token(req.headers).ok_or(KeyMissing {
            what: "Authorization: Bearer token",
        })?;
        key.push(token);
        Ok(())
    }
}
