//! Keys by client address.

use std::net::IpAddr;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use super::proxy::{group_ip, TrustedProxies};
use super::{KeyBuilder, KeyExtractor, KeyMissing, RequestParts};

/// The client's IP address, grouped by prefix.
///
/// The peer address comes from [`RequestParts::peer_addr`]. By default no proxy is trusted
/// and forwarding headers are ignored; see [`TrustedProxies`]. IPv6 clients are grouped by
/// their /64 by default (one subscriber usually holds a whole /64), IPv4 by /32.
///
/// **No peer address is never silent.** A request without one has no key: the rule's
/// [`MissingKey`](crate::MissingKey) policy applies (by default all such requests share
/// one bucket), and the first time a rule's `PeerIp` meets such a request it logs a
/// `tracing` warning naming the sources it reads (they depend on the crate's features).
/// The usual causes:
///
/// - axum: the server was not started with
///   `into_make_service_with_connect_info::<SocketAddr>()`, or the crate was built
///   without its `axum` feature (then axum's `ConnectInfo` is not read);
/// - tonic: the crate was built without its `tonic` feature (then tonic's
///   `TcpConnectInfo` is not read), or the server serves TLS: tonic then sets a
///   `TlsConnectInfo`, which needs tonic's TLS features and is not read; copy its inner
///   `TcpConnectInfo` (`info.get_ref().clone()`) into the request extensions in a
///   `map_request` layer in front of this one;
/// - a plain hyper service: insert a `SocketAddr` extension.
///
/// Under tonic (`tonic::transport::Server` over TCP, feature `tonic`) nothing is needed:
/// the address of every call is its connection's, and the same trusted-proxy rules apply
/// to forwarding headers (gRPC metadata are HTTP/2 headers). To refuse requests without
/// a peer address rather than share a bucket, set `MissingKey::Reject` on the rule (and
/// answer them 500 with
/// [`HttpResponder::missing_key_status`](crate::rate_limit::HttpResponder::missing_key_status),
/// `INTERNAL` with
/// [`GrpcResponder::missing_key_code`](crate::rate_limit::GrpcResponder::missing_key_code)).
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

// The warning logged once per rule, and the `what` of the missing key, for each
// combination of the features that add peer-address sources.
#[cfg(all(feature = "axum", feature = "tonic"))]
const NO_PEER: &str = "PeerIp: a request has no peer address (neither axum's \
    ConnectInfo<SocketAddr>, nor tonic's TcpConnectInfo, nor a SocketAddr extension); such \
    requests have no key and fall under the rule's MissingKey policy (default: one shared \
    bucket). With axum, serve with into_make_service_with_connect_info::<SocketAddr>(); \
    with tonic, serve with tonic::transport::Server over TCP (a TLS server sets \
    TlsConnectInfo, which is not read: copy its TcpConnectInfo into the request \
    extensions); otherwise insert a SocketAddr extension";
#[cfg(all(feature = "axum", not(feature = "tonic")))]
const NO_PEER: &str = "PeerIp: a request has no peer address (neither axum's \
    ConnectInfo<SocketAddr> nor a SocketAddr extension); such requests have no key and \
    fall under the rule's MissingKey policy (default: one shared bucket). Serve with \
    into_make_service_with_connect_info::<SocketAddr>() or insert a SocketAddr extension \
    (tonic's TcpConnectInfo is read only with the crate's `tonic` feature)";
#[cfg(all(not(feature = "axum"), feature = "tonic"))]
const NO_PEER: &str = "PeerIp: a request has no peer address (neither tonic's \
    TcpConnectInfo nor a SocketAddr extension; axum's ConnectInfo is not read without the \
    crate's `axum` feature); such requests have no key and fall under the rule's \
    MissingKey policy (default: one shared bucket). Serve with tonic::transport::Server \
    over TCP (a TLS server sets TlsConnectInfo, which is not read: copy its \
    TcpConnectInfo into the request extensions), insert a SocketAddr extension, or \
    enable the `axum` feature";
#[cfg(not(any(feature = "axum", feature = "tonic")))]
const NO_PEER: &str = "PeerIp: a request has no SocketAddr extension, and neither axum's \
    ConnectInfo nor tonic's TcpConnectInfo is read without the crate's `axum` / `tonic` \
    feature; such requests have no key and fall under the rule's MissingKey policy \
    (default: one shared bucket). Insert a SocketAddr extension or enable the feature of \
    your server";

#[cfg(not(feature = "tonic"))]
const MISSING: &str = "peer address (serve with axum's \
    into_make_service_with_connect_info::<SocketAddr>() or insert a SocketAddr extension)";
#[cfg(feature = "tonic")]
const MISSING: &str = "peer address (serve with tonic's Server over TCP or axum's \
    into_make_service_with_connect_info::<SocketAddr>(), or insert a SocketAddr extension)";

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
            return Err(KeyMissing { what: MISSING });
        };
        key.push_ip(ip);
        Ok(())
    }
    fn fingerprint(&self, state: &mut dyn std::hash::Hasher) {
        state.write(b"PeerIp");
        self.proxies.fingerprint(state);
        state.write_u8(self.v4_prefix);
        state.write_u8(self.v6_prefix);
    }
}
