//! The keyed hash a key's parts are fed into.

use std::hash::{Hash, Hasher};
use std::net::IpAddr;

use siphasher::sip::SipHasher13;

/// Hashes a key's parts. Each part is length-prefixed, so `("ab", "c")` and `("a", "bc")`
/// are different keys.
#[derive(Clone, Debug)]
pub struct KeyBuilder {
    hasher: SipHasher13,
    /// Whether anything was written since `new`.
    written: bool,
}

impl KeyBuilder {
    #[inline]
    pub(crate) fn new(hasher: SipHasher13) -> Self {
        KeyBuilder {
            hasher,
            written: false,
        }
    }

    /// Adds a part of the key.
    pub fn push(&mut self, part: &[u8]) {
        self.written = true;
        self.hasher.write_usize(part.len());
        self.hasher.write(part);
    }

    /// Adds `part` percent-decoded as axum's `Path` decodes it (every valid `%XY`
    /// escape; an invalid one is kept as is): the same key as [`push`](Self::push) of the
    /// decoded bytes, without allocating them.
    pub(crate) fn push_percent_decoded(&mut self, part: &[u8]) {
        if !part.contains(&b'%') {
            return self.push(part);
        }
        self.written = true;
        self.hasher
            .write_usize(crate::rules::path::decoded_len(part));
        crate::rules::path::for_each_decoded(part, |b| self.hasher.write(b));
    }

    /// Adds an IP address (v4 and v6 never collide).
    pub fn push_ip(&mut self, ip: IpAddr) {
        match ip {
            IpAddr::V4(v4) => self.push(&v4.octets()),
            IpAddr::V6(v6) => self.push(&v6.octets()),
        }
    }

    /// Adds any hashable value.
    pub fn push_hash<H: Hash + ?Sized>(&mut self, value: &H) {
        self.written = true;
        value.hash(&mut self.hasher);
    }

    pub(crate) fn finish(&self) -> u64 {
        self.hasher.finish()
    }

    /// [`finish`](Self::finish), or `empty` when nothing was written: `empty` must be the
    /// starting hasher's own `finish()`, precomputed (a [`Global`] key then costs no
    /// SipHash finalization per request).
    #[inline]
    pub(crate) fn finish_or(&self, empty: u64) -> u64 {
        if self.written {
            self.hasher.finish()
        } else {
            empty
        }
    }
}
