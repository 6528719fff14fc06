//! [`Endpoint`]: the one answer to "where does this request go?" for every client layer.

use http::{HeaderValue, Method, Uri};

/// Where a request goes: the authority of its URI or, for a relative URI, its `Host`
/// header, followed by its path, without scheme or query: `api.example.com/v1/users`.
///
/// Every client layer keys its per-endpoint state by this identity:
///
/// - the monitor's snapshots and pacing's adaptive rates by the endpoint itself
///   ([`key`](Self::key)): they follow what the server reports about a resource's quota;
/// - the Retry-After gate by method and endpoint ([`method_key`](Self::method_key),
///   `GET api.example.com/v1/users`): a `Retry-After` answers one operation, and APIs limit
///   operations on one path separately (Clerk's user creation has its own limit), so a
///   refused `POST` does not hold back the `GET`s of the same path.
///
/// The query is left out so that pages of one listing share their endpoint; the scheme is
/// left out because the authority already names the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Endpoint<'a> {
    authority: &'a str,
    path: &'a str,
}

impl<'a> Endpoint<'a> {
    /// The endpoint of a request with this URI and `Host` header (read only when the URI
    /// has no authority; a `Host` that is not visible ASCII counts as absent).
    #[inline]
    pub(crate) fn new(uri: &'a Uri, host: Option<&'a HeaderValue>) -> Self {
        let authority = uri
            .authority()
            .map(|a| a.as_str())
            .or_else(|| host.and_then(|h| h.to_str().ok()))
            .unwrap_or("");
        Endpoint {
            authority,
            path: uri.path(),
        }
    }

    /// The endpoint of a request head.
    #[inline]
    pub(crate) fn of(head: &'a http::request::Parts) -> Self {
        Endpoint::new(&head.uri, head.headers.get(http::header::HOST))
    }

    /// Appends `authority` + `path` to `out`, growing it at most once.
    #[inline]
    pub(crate) fn write_to(self, out: &mut String) {
        out.reserve(self.authority.len() + self.path.len());
        out.push_str(self.authority);
        out.push_str(self.path);
    }

    /// `authority` + `path`: the key of monitor snapshots and adaptive rates.
    #[inline]
    pub(crate) fn key(self) -> String {
        let mut key = String::new();
        self.write_to(&mut key);
        key
    }

    /// `method` + space + [`key`](Self::key): the key of Retry-After gate blocks.
    pub(crate) fn method_key(self, method: &Method) -> String {
        let method = method.as_str();
        let mut key =
            String::with_capacity(method.len() + 1 + self.authority.len() + self.path.len());
        key.push_str(method);
        key.push(' ');
        self.write_to(&mut key);
        key
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head(req: http::request::Builder) -> http::request::Parts {
        req.body(()).unwrap().into_parts().0
    }

    #[test]
    fn authority_then_host_then_nothing() {
        let absolute = head(http::Request::get(
            "https://api.example.com/v1/users?page=2",
        ));
        assert_eq!(Endpoint::of(&absolute).key(), "api.example.com/v1/users");
        let relative =
            head(http::Request::get("/v1/users?page=2").header("host", "api.example.com"));
        assert_eq!(Endpoint::of(&relative).key(), "api.example.com/v1/users");
        // The URI's authority wins over a disagreeing Host header.
        let both = head(http::Request::get("https://a.test/x").header("host", "b.test"));
        assert_eq!(Endpoint::of(&both).key(), "a.test/x");
        let bare = head(http::Request::get("/v1/users"));
        assert_eq!(Endpoint::of(&bare).key(), "/v1/users");
    }

    #[test]
    fn method_key_prefixes_the_method() {
        let post = head(http::Request::post("http://api.test/v1/users"));
        assert_eq!(
            Endpoint::of(&post).method_key(&post.method),
            "POST api.test/v1/users"
        );
        let mut out = String::from("x:");
        Endpoint::of(&post).write_to(&mut out);
        assert_eq!(out, "x:api.test/v1/users");
    }
}
