//! What an extractor sees of a request.

use std::net::SocketAddr;

use http::{Extensions, HeaderMap, Method, Uri};

/// The most path parameters one route template may capture.
pub const MAX_PATH_PARAMS: usize = 8;

/// Path parameters captured by the route template a rule matched, as they appear in the
/// [canonical path](crate::rules::path) (unreserved escapes decoded, other escapes upper-cased);
/// [`PathParam`](super::PathParam) decodes the rest.
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

    /// The peer's socket address, from the first of these request extensions that has one:
    ///
    /// - axum's `ConnectInfo<SocketAddr>` (feature `axum`; serve with
    ///   `into_make_service_with_connect_info::<SocketAddr>()`);
    /// - tonic's `TcpConnectInfo` (feature `tonic`; its `remote_addr()`, which
    ///   `tonic::transport::Server` sets on every call over TCP). tonic's `TlsConnectInfo`
    ///   (TLS servers) is not read: it exists only with tonic's TLS features, which this
    ///   crate does not enable; copy its inner `TcpConnectInfo` into the extensions (a
    ///   `map_request` layer before this one) or insert a `SocketAddr`;
    /// - a plain `SocketAddr` (insert one in a hyper service).
    pub fn peer_addr(&self) -> Option<SocketAddr> {
        #[cfg(feature = "axum")]
        if let Some(ci) = self
            .extensions
            .get::<axum::extract::ConnectInfo<SocketAddr>>()
        {
            return Some(ci.0);
        }
        #[cfg(feature = "tonic")]
        if let Some(addr) = self
            .extensions
            .get::<tonic::transport::server::TcpConnectInfo>()
            .and_then(|ci| ci.remote_addr())
        {
            return Some(addr);
        }
        self.extensions.get::<SocketAddr>().copied()
    }
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;

    use super::RequestParts;

    fn peer(req: &http::Request<()>) -> Option<SocketAddr> {
        RequestParts::new(req).peer_addr()
    }

    #[test]
    fn a_plain_socket_addr_is_the_fallback() {
        let addr: SocketAddr = "192.0.2.1:5000".parse().unwrap();
        let mut req = http::Request::new(());
        assert_eq!(peer(&req), None);
        req.extensions_mut().insert(addr);
        assert_eq!(peer(&req), Some(addr));
    }

    #[cfg(feature = "tonic")]
    #[test]
    fn tonic_connect_info_is_read() {
        use tonic::transport::server::TcpConnectInfo;
        let remote: SocketAddr = "127.0.0.2:40000".parse().unwrap();
        let plain: SocketAddr = "192.0.2.1:5000".parse().unwrap();
        let mut req = http::Request::new(());
        req.extensions_mut().insert(TcpConnectInfo {
            local_addr: Some("127.0.0.1:50051".parse().unwrap()),
            remote_addr: Some(remote),
        });
        assert_eq!(peer(&req), Some(remote));
        // tonic's address wins over a plain one; without a remote address, the plain one.
        req.extensions_mut().insert(plain);
        assert_eq!(peer(&req), Some(remote));
        req.extensions_mut().insert(TcpConnectInfo {
            local_addr: None,
            remote_addr: None,
        });
        assert_eq!(peer(&req), Some(plain));
    }
}
