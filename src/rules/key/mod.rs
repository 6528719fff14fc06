//! Key extractors: which bucket a request belongs to.
//!
//! An extractor reads a [`RequestParts`] and feeds the key's bytes into a [`KeyBuilder`],
//! which hashes them with a keyed SipHash-1-3: **no key is ever stored raw**, so bearer
//! tokens and API keys used as keys never sit in the store (or in Redis) in clear.
//!
//! Built-in extractors: [`PeerIp`] (with trusted proxies and IPv6 prefix grouping),
//! [`Header`], [`BearerToken`], [`PathParam`], [`Global`], [`Composite`] and [`from_fn`].
//! When an extractor finds no key, the rule's [`MissingKey`](crate::MissingKey) policy
//! decides what happens.

use std::fmt;
use std::hash::Hasher;
use std::sync::Arc;

mod builder;
mod combine;
mod header;
mod peer;
mod proxy;
mod request;

pub use builder::KeyBuilder;
pub use combine::{from_fn, Composite, FromFn, Global, PathParam};
pub use header::{BearerToken, Header};
pub use peer::PeerIp;
pub use proxy::{InvalidCidr, IpNet, ProxyHeader, TrustedProxies};
pub use request::{PathParams, RequestParts, MAX_PATH_PARAMS};

/// An extractor found no key in the request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyMissing {
    /// What was missing, for logs and problem responses.
    pub what: &'static str,
}

impl fmt::Display for KeyMissing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "rate-limit key missing: {}", self.what)
    }
}

impl std::error::Error for KeyMissing {}

/// Decides which bucket of a rule a request falls into.
pub trait KeyExtractor: Send + Sync + 'static {
    /// Feeds the request's key into `key`, or reports that the request has none.
    fn extract(&self, req: &RequestParts<'_>, key: &mut KeyBuilder) -> Result<(), KeyMissing>;

    /// Names the path parameters this extractor reads, so rules can check at build time
    /// that each of their route templates captures them.
    fn path_params(&self, visit: &mut dyn FnMut(&str)) {
        let _ = visit;
    }

    /// Writes what identifies the keys this extractor makes (its kind and settings) into
    /// `state`. Two extractors that write the same make the same keys; a rule whose
    /// extractor's fingerprint changes is a changed rule (see
    /// [`RateLimitHandle::reload`](crate::RateLimitHandle::reload), and equality of
    /// [`Rule`](crate::Rule)s). The default writes the extractor's type name: right for an
    /// extractor without settings; one with settings (like the built-in ones) writes them
    /// too, and a closure ([`from_fn`]) cannot tell, so two closures of one type are one.
    fn fingerprint(&self, state: &mut dyn Hasher) {
        state.write(std::any::type_name::<Self>().as_bytes());
    }
}

impl<K: KeyExtractor + ?Sized> KeyExtractor for Arc<K> {
    fn extract(&self, req: &RequestParts<'_>, key: &mut KeyBuilder) -> Result<(), KeyMissing> {
        (**self).extract(req, key)
    }
    fn path_params(&self, visit: &mut dyn FnMut(&str)) {
        (**self).path_params(visit)
    }
    fn fingerprint(&self, state: &mut dyn Hasher) {
        (**self).fingerprint(state)
    }
}

#[cfg(test)]
mod tests;
