//! [`Route`]'s `FromStr`: `"POST /v1/sign_ins"`, `"* /v1/{*rest}"`, `"grpc pkg.Service/Method"`.

use std::fmt;
use std::str::FromStr;

use http::Method;

use super::Route;

/// Why a string is not a [`Route`]: the input and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteParseError {
    input: String,
    reason: String,
}

impl RouteParseError {
    fn new(input: &str, reason: impl Into<String>) -> Self {
        // Bounded, so a hostile input is not echoed whole into logs.
        let input = input.chars().take(200).collect();
        RouteParseError {
            input,
            reason: reason.into(),
        }
    }

    /// The input that was refused (its first 200 characters).
    pub fn input(&self) -> &str {
        &self.input
    }
}

impl fmt::Display for RouteParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "route {:?}: {}", self.input, self.reason)
    }
}

impl std::error::Error for RouteParseError {}

/// Reads a route as [`Display`](fmt::Display) writes it, or a gRPC method or service:
///
/// | written | route |
/// | --- | --- |
/// | `"POST /v1/sign_ins"` | [`Route::new`]`(POST, "/v1/sign_ins")` (any upper-case method) |
/// | `"* /v1/{*rest}"` or `"/v1/{*rest}"` | [`Route::any`]`("/v1/{*rest}")` |
/// | `"grpc helloworld.Greeter/SayHello"` | [`Route::grpc_method`]`("helloworld.Greeter", "SayHello")` |
/// | `"grpc grpc.health.v1.Health"` | [`Route::grpc_service`]`("grpc.health.v1.Health")` |
///
/// The template is checked here (the layer's build would refuse it anyway), so a bad
/// route is an error at the line that names it. Methods must be upper case: `get` would
/// be an extension method that no `GET` request matches.
///
/// ```
/// use tower_throttle::Route;
///
/// assert_eq!("POST /v1/sign_ins".parse::<Route>()?, Route::post("/v1/sign_ins"));
/// assert_eq!("* /v1/{*rest}".parse::<Route>()?, Route::any("/v1/{*rest}"));
/// assert_eq!(
///     "grpc helloworld.Greeter/SayHello".parse::<Route>()?,
///     Route::grpc_method("helloworld.Greeter", "SayHello")
/// );
/// let route = Route::patch("/v1/users/{user_id}");
/// assert_eq!(route.to_string().parse::<Route>()?, route);
/// assert!("get /v1/users".parse::<Route>().is_err());
/// assert!("GET v1/users".parse::<Route>().is_err());
/// # Ok::<(), tower_throttle::RouteParseError>(())
/// ```
impl FromStr for Route {
    type Err = RouteParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let text = s.trim();
        let (head, rest) = match text.split_once(|c: char| c.is_ascii_whitespace()) {
            Some((h, r)) => (h, r.trim_start()),
            None => ("*", text),
        };
        let route = match head {
            _ if text.starts_with('/') => Route::any(text),
            "*" | "ANY" => Route::any(rest),
            "grpc" => match rest.split_once('/') {
                Some((service, method)) => Route::grpc_method(service, method),
                None => Route::grpc_service(rest),
            },
            m if !m.is_empty() && m.bytes().all(|b| b.is_ascii_uppercase()) => {
                let method = Method::from_bytes(m.as_bytes())
                    .map_err(|_| RouteParseError::new(s, "invalid method"))?;
                Route::new(method, rest)
            }
            _ => {
                return Err(RouteParseError::new(
                    s,
                    "expected \"METHOD /template\" (method in upper case), \"* /template\" \
                     or \"grpc package.Service[/Method]\"",
                ))
            }
        };
        if route.template.contains(char::is_whitespace) {
            return Err(RouteParseError::new(s, "the template contains whitespace"));
        }
        route
            .compile()
            .map_err(|reason| RouteParseError::new(s, reason))?;
        Ok(route)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn r(s: &str) -> Result<Route, RouteParseError> {
        s.parse()
    }

    #[test]
    fn forms() {
        assert_eq!(
            r("GET /v1/users/{user_id}"),
            Ok(Route::get("/v1/users/{user_id}"))
        );
        assert_eq!(r("  DELETE   /x "), Ok(Route::delete("/x")));
        assert_eq!(
            r("PURGE /cache"),
            Ok(Route::new(Method::from_bytes(b"PURGE").unwrap(), "/cache"))
        );
        assert_eq!(r("/v1/{*rest}"), Ok(Route::any("/v1/{*rest}")));
        assert_eq!(r("ANY /v1"), Ok(Route::any("/v1")));
        assert_eq!(r("grpc a.B"), Ok(Route::grpc_service("a.B")));
        assert_eq!(r("grpc a.B/C"), Ok(Route::grpc_method("a.B", "C")));
        // A gRPC route's display reads back as the same route.
        let g = Route::grpc_service("grpc.health.v1.Health");
        assert_eq!(r(&g.to_string()), Ok(g));
    }

    #[test]
    fn refusals() {
        for bad in [
            "",
            "get /x",
            "GET",
            "GET x",
            "GET /a b",
            "GET //x",
            "GET /{a",
            "* ",
            "grpc a/B/C",
            "grpc 1a.B",
            "grpc",
            "GET /{a}/{a}",
            "Get /x",
        ] {
            assert!(r(bad).is_err(), "{bad:?}");
        }
        assert_eq!(
            r("GET /{a").unwrap_err().to_string(),
            "route \"GET /{a\": segment \"{a\" mixes text and braces"
        );
    }

    proptest! {
        #[test]
        fn never_panics(s in "\\PC{0,60}") {
            if let Ok(route) = s.parse::<Route>() {
                prop_assert_eq!(route.to_string().parse::<Route>(), Ok(route));
            }
        }

        #[test]
        fn templates_round_trip(segs in proptest::collection::vec("[a-z_]{1,8}|\\{[a-z]{1,6}\\}", 0..5),
                                m in prop_oneof![Just("GET"), Just("POST"), Just("*")]) {
            let template = format!("/{}", segs.join("/"));
            if let Ok(route) = format!("{m} {template}").parse::<Route>() {
                prop_assert_eq!(route.to_string().parse::<Route>(), Ok(route));
            }
        }
    }
}
