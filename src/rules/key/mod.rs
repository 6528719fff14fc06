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
use std::hash::{Hash, Hasher};
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use http::header::{HeaderName, AUTHORIZATION};
use http::{Extensions, HeaderMap, Method, Uri};
use siphasher::sip::SipHasher13;

pub mod proxy;

pub use proxy::{group_ip, InvalidCidr, IpNet, ProxyHeader, TrustedProxies};

/// The most path parameters one route template may capture.
pub const MAX_PATH_PARAMS: usize = 8;

/// Path parameters captured by the route template a rule matched, as they appear in the
/// [canonical path](crate::rules::path) (unreserved escapes decoded, other escapes upper-cased);
/// [`PathParam`] decodes the rest.
#[derive(Debug, Clone, Copy, Default)]
pub struct PathParams<'a> {
    items: [(&'a str, &'a str); MAX_PATH_PARAMS],
    len: usize,
}

impl<'a> PathParams<'a> {
    /// Looks a parameter up by name.
    pub fn get(&self, name: &str) -> Option<&'a str> {
        self.items[..self.len]
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| *v)
    }

    /// Adds a parameter; returns `false` when full.
    pub(crate) fn push(&mut self, name: &'a str, value: &'a str) -> bool {
        if self.len == MAX_PATH_PARAMS {
            return false;
        }
        self.items[self.len] = (name, value);
        self.len += 1;
        true
    }

    pub(crate) fn clear(&mut self) {
        self.len = 0;
    }
}

/// A borrowed view of a request, as key extractors see it.
#[derive(Debug, Clone, Copy)]
pub struct RequestParts<'a> {
    /// The request method.
    pub method: &'a Method,
    /// The request URI.
    pub uri: &'a Uri,
    /// The request headers.
    pub headers: &'a HeaderMap,
    /// The request extensions (peer address, authenticated user, …).
    pub extensions: &'a Extensions,
    /// Parameters captured by the matched route template.
    pub path_params: PathParams<'a>,
}

impl<'a> RequestParts<'a> {
    /// A view of `req` with no path parameters.
    pub fn new<B>(req: &'a http::Request<B>) -> Self {
        RequestParts {
            method: req.method(),
            uri: req.uri(),
            headers: req.headers(),
            extensions: req.extensions(),
            path_params: PathParams::default(),
        }
    }

    /// The peer's socket address: axum's `ConnectInfo<SocketAddr>` (feature `axum`) or a
    /// plain `SocketAddr` request extension (insert one in a hyper service).
    pub fn peer_addr(&self) -> Option<SocketAddr> {
        #[cfg(feature = "axum")]
        if let Some(ci) = self
            .extensions
            .get::<axum::extract::ConnectInfo<SocketAddr>>()
        {
            return Some(ci.0);
        }
        self.extensions.get::<SocketAddr>().copied()
    }
}

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
}

impl<K: KeyExtractor + ?Sized> KeyExtractor for Arc<K> {
    fn extract(&self, req: &RequestParts<'_>, key: &mut KeyBuilder) -> Result<(), KeyMissing> {
        (**self).extract(req, key)
    }
    fn path_params(&self, visit: &mut dyn FnMut(&str)) {
        (**self).path_params(visit)
    }
}

/// One bucket for every request.
#[derive(Debug, Clone, Copy, Default)]
pub struct Global;

impl KeyExtractor for Global {
    fn extract(&self, _: &RequestParts<'_>, _: &mut KeyBuilder) -> Result<(), KeyMissing> {
        Ok(())
    }
}

/// The client's IP address, grouped by prefix.
///
/// The peer address comes from [`RequestParts::peer_addr`]. By default no proxy is trusted
/// and forwarding headers are ignored; see [`TrustedProxies`]. IPv6 clients are grouped by
/// their /64 by default (one subscriber usually holds a whole /64), IPv4 by /32.
///
/// **No peer address is never silent.** A request without one has no key: the rule's
/// [`MissingKey`](crate::MissingKey) policy applies (by default all such requests share
/// one bucket), and the first time a rule's `PeerIp` meets such a request it logs a
/// `tracing` warning naming the sources it reads. The usual causes: the server was not
/// started with axum's `into_make_service_with_connect_info::<SocketAddr>()`, or the crate
/// was built without its `axum` feature (then axum's `ConnectInfo` is not read; insert a
/// plain `SocketAddr` extension instead). To refuse such requests rather than share a
/// bucket, set `MissingKey::Reject` on the rule (and answer them 500 with
/// [`HttpResponder::missing_key_status`](crate::rate_limit::HttpResponder::missing_key_status)).
///
/// ```
/// use tower_throttle::key::{PeerIp, TrustedProxies};
///
/// let key = PeerIp::new()
///     .trusted_proxies(TrustedProxies::from_cidrs(["10.0.0.0/8"])?)
///     .ipv6_prefix(56);
/// # Ok::<(), tower_throttle::key::InvalidCidr>(())
/// ```
#[derive(Debug, Clone)]
pub struct PeerIp {
    proxies: TrustedProxies,
    v4_prefix: u8,
    v6_prefix: u8,
    /// Whether the missing peer address was logged (shared by clones).
    warned: Arc<AtomicBool>,
}

impl Default for PeerIp {
    fn default() -> Self {
        PeerIp {
            proxies: TrustedProxies::none(),
            v4_prefix: 32,
            v6_prefix: 64,
            warned: Arc::default(),
        }
    }
}

#[cfg(feature = "axum")]
const NO_PEER: &str = "PeerIp: a request has no peer address (neither axum's \
    ConnectInfo<SocketAddr> nor a SocketAddr extension); such requests have no key and \
    fall under the rule's MissingKey policy (default: one shared bucket). Serve with \
    into_make_service_with_connect_info::<SocketAddr>() or insert a SocketAddr extension";
#[cfg(not(feature = "axum"))]
const NO_PEER: &str = "PeerIp: a request has no SocketAddr extension, and axum's \
    ConnectInfo is not read without the crate's `axum` feature; such requests have no key \
    and fall under the rule's MissingKey policy (default: one shared bucket). Insert a \
    SocketAddr extension or enable the `axum` feature";

impl PeerIp {
    /// Peer address, no trusted proxy, IPv4 /32, IPv6 /64.
    pub fn new() -> Self {
        Self::default()
    }

    /// Trust these proxies' forwarding headers.
    pub fn trusted_proxies(mut self, proxies: TrustedProxies) -> Self {
        self.proxies = proxies;
        self
    }

    /// Group IPv4 clients by this prefix length (clamped to 0..=32).
    pub fn ipv4_prefix(mut self, bits: u8) -> Self {
        self.v4_prefix = bits.min(32);
        self
    }

    /// Group IPv6 clients by this prefix length (clamped to 0..=128).
    pub fn ipv6_prefix(mut self, bits: u8) -> Self {
        self.v6_prefix = bits.min(128);
        self
    }

    /// The grouped client address of a request, if its peer address is known.
    pub fn client_ip(&self, req: &RequestParts<'_>) -> Option<IpAddr> {
        let peer = req.peer_addr()?.ip();
        let client = self.proxies.client_ip(peer, req.headers);
        Some(group_ip(client, self.v4_prefix, self.v6_prefix))
    }
}

impl KeyExtractor for PeerIp {
    fn extract(&self, req: &RequestParts<'_>, key: &mut KeyBuilder) -> Result<(), KeyMissing> {
        let Some(ip) = self.client_ip(req) else {
            crate::rules::warn_once(&self.warned, NO_PEER);
            return Err(KeyMissing {
                what: "peer address (serve with axum's into_make_service_with_connect_info::<SocketAddr>() or insert a SocketAddr extension)",
            });
        };
        key.push_ip(ip);
        Ok(())
    }
}

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

/// A path parameter captured by the rule's route template (e.g. `user_id` in
/// `/v1/users/{user_id}`). Rules check at build time that every template captures it.
///
/// The value is percent-decoded the way axum's `Path` extractor decodes it: every valid
/// `%XY` escape (reserved ones too: `a%2Fb` is `a/b`), an invalid one kept as is. So
/// `user_1`, `user%5F1` and `%75ser_1` are one key. A value that decodes to invalid UTF-8
/// (which axum's `Path` refuses) is keyed by its bytes.
#[derive(Debug, Clone)]
pub struct PathParam {
    name: Arc<str>,
}

impl PathParam {
    /// Key by the parameter called `name`.
    pub fn new(name: impl Into<Arc<str>>) -> Self {
        PathParam { name: name.into() }
    }
}

impl KeyExtractor for PathParam {
    fn extract(&self, req: &RequestParts<'_>, key: &mut KeyBuilder) -> Result<(), KeyMissing> {
        match req.path_params.get(&self.name) {
            Some(v) if !v.is_empty() => {
                key.push_percent_decoded(v.as_bytes());
                Ok(())
            }
            _ => Err(KeyMissing {
                what: "path parameter",
            }),
        }
    }
    fn path_params(&self, visit: &mut dyn FnMut(&str)) {
        visit(&self.name)
    }
}

/// Several extractors together: the key is the combination of all parts, and it is
/// missing if any part is.
#[derive(Clone, Default)]
pub struct Composite {
    parts: Vec<Arc<dyn KeyExtractor>>,
}

impl fmt::Debug for Composite {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Composite")
            .field("parts", &self.parts.len())
            .finish()
    }
}

impl Composite {
    /// No parts yet (behaves like [`Global`]).
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a part.
    pub fn with(mut self, part: impl KeyExtractor) -> Self {
        self.parts.push(Arc::new(part));
        self
    }
}

impl KeyExtractor for Composite {
    fn extract(&self, req: &RequestParts<'_>, key: &mut KeyBuilder) -> Result<(), KeyMissing> {
        self.parts.iter().try_for_each(|p| p.extract(req, key))
    }
    fn path_params(&self, visit: &mut dyn FnMut(&str)) {
        for p in &self.parts {
            p.path_params(visit);
        }
    }
}

/// A key computed by a closure; `None` means missing.
///
/// ```
/// use tower_throttle::key::{from_fn, RequestParts};
///
/// // Key by tenant, from a header set by an authentication layer.
/// let key = from_fn(|req: &RequestParts<'_>| {
///     req.headers.get("x-tenant").map(|v| v.as_bytes().to_vec())
/// });
/// ```
pub fn from_fn<F, K>(f: F) -> FromFn<F>
where
    F: Fn(&RequestParts<'_>) -> Option<K> + Send + Sync + 'static,
    K: Hash,
{
    FromFn { f }
}

/// See [`from_fn`].
#[derive(Clone)]
pub struct FromFn<F> {
    f: F,
}

impl<F> fmt::Debug for FromFn<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("FromFn")
    }
}

impl<F, K> KeyExtractor for FromFn<F>
where
    F: Fn(&RequestParts<'_>) -> Option<K> + Send + Sync + 'static,
    K: Hash,
{
    fn extract(&self, req: &RequestParts<'_>, key: &mut KeyBuilder) -> Result<(), KeyMissing> {
        let k = (self.f)(req).ok_or(KeyMissing { what: "custom key" })?;
        key.push_hash(&k);
        Ok(())
    }
}

#[cfg(test)]
mod tests;
