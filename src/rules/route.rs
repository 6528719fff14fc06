//! Route templates, and matching them against what a request says about its path.

use std::borrow::Cow;
use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};

use http::Method;

use crate::rules::key::{PathParams, MAX_PATH_PARAMS};
use crate::rules::path::{canonicalize, PathError};

pub use parse::RouteParseError;

/// A method (or any method) and a path template.
///
/// # gRPC methods
///
/// A gRPC call is a request to `/{package.Service}/{Method}`, so gRPC methods are routes:
/// [`grpc_method`](Self::grpc_method) names one method, [`grpc_service`](Self::grpc_service)
/// every method of a service. Both take any HTTP method: tonic's router and generated
/// servers dispatch on the path alone, so a route for `POST` only could be walked around
/// with a `GET` to the same path. Names are checked when the layer is built: an invalid
/// one is a [`BuildError::BadTemplate`](crate::rate_limit::BuildError::BadTemplate), never
/// a route that silently matches something else.
///
/// ```
/// use tower_throttle::key::Header;
/// use tower_throttle::{Quota, RateLimitLayer, Route, Rule};
///
/// let layer = RateLimitLayer::builder()
///     // Every method of the service, one bucket per API key...
///     .rule(
///         Rule::new("greeter", Quota::per_minute(600)?)
///             .route(Route::grpc_service("helloworld.Greeter"))
///             .key(Header::new("x-api-key".parse()?)),
///     )
///     // ...and a tighter limit on one method.
///     .rule(
///         Rule::new("say_hello", Quota::per_second(3)?)
///             .route(Route::grpc_method("helloworld.Greeter", "SayHello"))
///             .key(Header::new("x-api-key".parse()?)),
///     )
///     // Health checks are never limited.
///     .exempt(Route::grpc_service("grpc.health.v1.Health"))
///     .build()?;
///
/// let bad = RateLimitLayer::builder()
///     .rule(Rule::new("r", Quota::per_second(1)?).route(Route::grpc_service("helloworld/Greeter")))
///     .build();
/// assert!(bad.is_err());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    method: Option<Method>,
    template: String,
    /// Why the route cannot be built (an invalid gRPC name), reported by `compile`.
    invalid: Option<String>,
}

impl Route {
    /// `method` requests whose path matches `template`.
    pub fn new(method: Method, template: impl Into<String>) -> Self {
        Route {
            method: Some(method),
            template: template.into(),
            invalid: None,
        }
    }

    /// Requests of any method matching `template`.
    pub fn any(template: impl Into<String>) -> Self {
        Route {
            method: None,
            template: template.into(),
            invalid: None,
        }
    }

    /// `GET` requests matching `template`. As a rule's route it also covers `HEAD`, which
    /// routers (axum, hyper services built on `http`'s conventions) serve with the `GET`
    /// handler, so `HEAD` cannot be used to walk around a `GET` limit; as a carve-out
    /// (`except`, exempt) it covers `GET` only.
    pub fn get(template: impl Into<String>) -> Self {
        Self::new(Method::GET, template)
    }

    /// `POST` requests matching `template`.
    pub fn post(template: impl Into<String>) -> Self {
        Self::new(Method::POST, template)
    }

    /// `PUT` requests matching `template`.
    pub fn put(template: impl Into<String>) -> Self {
        Self::new(Method::PUT, template)
    }

    /// `PATCH` requests matching `template`.
    pub fn patch(template: impl Into<String>) -> Self {
        Self::new(Method::PATCH, template)
    }

    /// `DELETE` requests matching `template`.
    pub fn delete(template: impl Into<String>) -> Self {
        Self::new(Method::DELETE, template)
    }

    pub(crate) fn compile(&self) -> Result<CompiledRoute, String> {
        if let Some(invalid) = &self.invalid {
            return Err(invalid.clone());
        }
        let segments = parse_template(&self.template)?;
        // A trailing slash that is not the root's, after a segment that is not `{*rest}`
        // (which captures whatever follows, slashes included).
        let trailing_slash = self.template.len() > 1
            && self.template.ends_with('/')
            && !matches!(segments.last(), Some(Segment::Rest(_)));
        Ok(CompiledRoute {
            method: self.method.clone(),
            segments,
            trailing_slash,
        })
    }
}

impl fmt::Display for Route {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.method {
            Some(m) => write!(f, "{m} {}", self.template),
            None => write!(f, "* {}", self.template),
        }
    }
}

/// How a layer finds which of its routes a request is on (see [what the router must
/// agree with](crate::Rule#what-the-router-must-agree-with)); set with
/// [`RateLimitLayerBuilder::path_matching`](crate::RateLimitLayerBuilder::path_matching).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum PathMatching {
    /// Templates match the [canonical form](crate::rules::path) of the request path,
    /// case-sensitively (RFC 3986). The default.
    #[default]
    Canonical,
    /// As [`Canonical`](Self::Canonical), with literal segments compared ASCII
    /// case-insensitively (`/V1/SIGN_INS` is `/v1/sign_ins`): for routers that fold
    /// case. Path parameter values keep their case.
    CanonicalIgnoreCase,
    /// The route axum matched: a template applies when it is the request's
    /// `axum::extract::MatchedPath` (literals equal, parameters in the same places, names
    /// free), so the limiter and the router cannot disagree. Needs the layer applied with
    /// `Router::route_layer` on the outermost router (after any `nest`); parameters are
    /// captured from the path axum matched, and decoded as its `Path` decodes them. A
    /// request without `MatchedPath` (the layer applied with `Router::layer`) is matched
    /// as [`Canonical`](Self::Canonical) and a warning is logged once. Under a nested
    /// router's own `route_layer` axum hands the layer a path stripped of the prefix: the
    /// rule still applies, and a [`PathParam`](crate::rules::key::PathParam) key it cannot capture
    /// counts as missing (the rule's [`MissingKey`](crate::MissingKey) policy).
    #[cfg(feature = "axum")]
    AxumMatchedPath,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment {
    /// A literal segment: canonical (compared with canonical request paths) and as
    /// written (compared with axum's `MatchedPath`, which is the template as registered).
    Literal {
        canonical: String,
        written: String,
    },
    Param(String),
    Rest(String),
}

fn parse_template(t: &str) -> Result<Vec<Segment>, String> {
    let body = t
        .strip_prefix('/')
        .ok_or_else(|| "a template must start with '/'".to_owned())?;
    let body = body.strip_suffix('/').unwrap_or(body);
    let mut segments = Vec::new();
    let mut names: Vec<&str> = Vec::new();
    let parts: Vec<&str> = if body.is_empty() {
        Vec::new()
    } else {
        body.split('/').collect()
    };
    for (i, part) in parts.iter().enumerate() {
        let seg = match part.strip_prefix('{').and_then(|p| p.strip_suffix('}')) {
            Some(inner) => {
                let (rest, name) = match inner.strip_prefix('*') {
                    Some(n) => (true, n),
                    None => (false, inner),
                };
                if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                    return Err(format!("bad parameter name in segment {part:?}"));
                }
                if names.contains(&name) {
                    return Err(format!("parameter {name:?} appears twice"));
                }
                if names.len() == MAX_PATH_PARAMS {
                    return Err(format!("more than {MAX_PATH_PARAMS} parameters"));
                }
                names.push(name);
                if rest {
                    if i + 1 != parts.len() {
                        return Err("a {*rest} parameter must be the last segment".to_owned());
                    }
                    Segment::Rest(name.to_owned())
                } else {
                    Segment::Param(name.to_owned())
                }
            }
            None if part.contains(['{', '}']) => {
                return Err(format!("segment {part:?} mixes text and braces"))
            }
            None if part.is_empty() => return Err("empty segment ('//')".to_owned()),
            // Literals are kept canonical, as the request paths they are compared with.
            None => match canonicalize(&format!("/{part}")) {
                Ok(c) => Segment::Literal {
                    canonical: c[1..].to_owned(),
                    written: (*part).to_owned(),
                },
                Err(e) => return Err(format!("segment {part:?}: {e}")),
            },
        };
        segments.push(seg);
    }
    Ok(segments)
}

fn seg_param(seg: &Segment) -> Option<&str> {
    match seg {
        Segment::Param(n) | Segment::Rest(n) => Some(n),
        Segment::Literal { .. } => None,
    }
}

/// What a request says about its route, worked out once per request.
pub(crate) enum Target<'a> {
    /// The request path, as sent and in canonical form.
    Path {
        raw: &'a str,
        canonical: Cow<'a, str>,
        fold_case: bool,
    },
    /// axum's matched template, and the path it was matched against.
    #[cfg(feature = "axum")]
    Matched { template: &'a str, raw: &'a str },
}

/// Whether the warning about a missing `MatchedPath` was logged.
#[cfg(feature = "axum")]
static MATCHED_PATH_WARNED: AtomicBool = AtomicBool::new(false);

impl<'a> Target<'a> {
    /// The target of a request to `uri` with `extensions`, or why it has none.
    pub(crate) fn of(
        uri: &'a http::Uri,
        #[cfg_attr(not(feature = "axum"), allow(unused_variables))]
        extensions: &'a http::Extensions,
        matching: PathMatching,
    ) -> Result<Self, PathError> {
        let raw = uri.path();
        let fold_case = match matching {
            PathMatching::Canonical => false,
            PathMatching::CanonicalIgnoreCase => true,
            #[cfg(feature = "axum")]
            PathMatching::AxumMatchedPath => {
                if let Some(m) = extensions.get::<axum::extract::MatchedPath>() {
                    return Ok(Target::Matched {
                        template: m.as_str(),
                        raw,
                    });
                }
                warn_once(
                    &MATCHED_PATH_WARNED,
                    "PathMatching::AxumMatchedPath: a request has no MatchedPath (apply the \
                     layer with Router::route_layer); matching canonical paths instead",
                );
                false
            }
        };
        Ok(Target::Path {
            raw,
            canonical: canonicalize(raw)?,
            fold_case,
        })
    }
}

/// Logs `message` as a warning the first time `flag` is seen unset.
pub(crate) fn warn_once(flag: &AtomicBool, message: &str) {
    if !flag.load(Ordering::Relaxed) && !flag.swap(true, Ordering::Relaxed) {
        tracing::warn!("{message}");
    }
}

/// A parsed route.
#[derive(Debug, Clone)]
pub(crate) struct CompiledRoute {
    method: Option<Method>,
    segments: Vec<Segment>,
    /// Whether the template ends with a slash (carve-outs match the path as sent
    /// exactly, so `/v1/jwks/` is not the exempt `/v1/jwks`).
    trailing_slash: bool,
}

impl CompiledRoute {
    /// Whether a rule on this route applies to the request; captures parameters into
    /// `params` when it does. Matches the canonical path: every spelling of the route.
    pub(crate) fn includes<'a>(
        &'a self,
        method: &Method,
        target: &'a Target<'_>,
        params: &mut PathParams<'a>,
    ) -> bool {
        let head_of_get = *method == Method::HEAD && self.method == Some(Method::GET);
        if !self.method_is(method) && !head_of_get {
            return false;
        }
        match target {
            Target::Path {
                canonical,
                fold_case,
                ..
            } => self.matches_path(canonical, *fold_case, params),
            #[cfg(feature = "axum")]
            Target::Matched { template, raw } => {
                if !self.is_template(template) {
                    return false;
                }
                // The rule applies whether or not the captures come out (under a nested
                // router the path is shorter than the template): a missing parameter is
                // then the rule's `MissingKey` case, never a way around it.
                if !self.matches_path(raw, false, params) {
                    params.clear();
                }
                true
            }
        }
    }

    /// Whether a carve-out on this route (`except`, exempt) applies. Only the path as
    /// sent counts: a spelling of an exempt route is not exempt, since a router that does
    /// not canonicalize may serve it under another route.
    pub(crate) fn excludes<'a>(
        &'a self,
        method: &Method,
        target: &'a Target<'_>,
        params: &mut PathParams<'a>,
    ) -> bool {
        if !self.method_is(method) {
            return false;
        }
        match target {
            Target::Path { raw, fold_case, .. } => {
                // Exactly as sent: no trailing slash allowance (routers such as axum
                // serve `/x/` under another route, or the fallback, than `/x`).
                let slash = raw.len() > 1 && raw.ends_with('/');
                let rest = matches!(self.segments.last(), Some(Segment::Rest(_)));
                (rest || slash == self.trailing_slash) && self.matches_path(raw, *fold_case, params)
            }
            #[cfg(feature = "axum")]
            Target::Matched { template, .. } => self.is_template(template),
        }
    }

    /// Whether the route takes requests of `method`.
    pub(crate) fn method_is(&self, method: &Method) -> bool {
        self.method.as_ref().is_none_or(|m| m == method)
    }

    /// Whether `path` matches, capturing parameters into `params`.
    pub(crate) fn matches_path<'a>(
        &'a self,
        path: &'a str,
        fold_case: bool,
        params: &mut PathParams<'a>,
    ) -> bool {
        params.clear();
        let Some(body) = path.strip_prefix('/') else {
            return false;
        };
        let body = body.strip_suffix('/').unwrap_or(body);
        let mut rest = body;
        for seg in &self.segments {
            let (part, tail, slash) = match seg {
                Segment::Rest(name) => return params.push(name, rest),
                _ if rest.is_empty() => return false,
                _ => match rest.split_once('/') {
                    Some((part, tail)) => (part, tail, true),
                    None => (rest, "", false),
                },
            };
            let ok = match seg {
                Segment::Literal { canonical, .. } if fold_case => {
                    canonical.eq_ignore_ascii_case(part)
                }
                Segment::Literal { canonical, .. } => canonical == part,
                _ => !part.is_empty() && seg_param(seg).is_some_and(|n| params.push(n, part)),
            };
            // `slash` with an empty tail means a doubled trailing slash: no match.
            if !ok || (slash && tail.is_empty()) {
                return false;
            }
            rest = tail;
        }
        rest.is_empty()
    }

    /// Whether axum's matched template `t` is this route's template: the same literals,
    /// parameters in the same places (their names may differ), a trailing slash ignored.
    #[cfg(feature = "axum")]
    fn is_template(&self, t: &str) -> bool {
        let Some(body) = t.strip_prefix('/') else {
            return false;
        };
        let body = body.strip_suffix('/').unwrap_or(body);
        let mut parts = body.split('/').filter(|_| !body.is_empty());
        let same = self.segments.iter().all(|seg| {
            let Some(part) = parts.next() else {
                return false;
            };
            let param = part.strip_prefix('{').and_then(|p| p.strip_suffix('}'));
            match (seg, param) {
                (Segment::Literal { written, .. }, None) => written == part,
                (Segment::Param(_), Some(p)) => !p.starts_with('*'),
                (Segment::Rest(_), Some(p)) => p.starts_with('*'),
                _ => false,
            }
        });
        same && parts.next().is_none()
    }

    pub(crate) fn has_param(&self, name: &str) -> bool {
        self.segments.iter().any(|s| seg_param(s) == Some(name))
    }
}

mod grpc;
mod parse;
#[cfg(test)]
mod tests;
