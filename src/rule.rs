//! Rules: which requests a limit applies to, how they are keyed, and what happens when a
//! request has no key.
//!
//! A [`Rule`] names a [`Quota`], a [`KeyExtractor`], and the routes it covers: method +
//! path templates such as `/v1/users/{user_id}`. A rule with several routes is one bucket
//! for all of them (Clerk's `PATCH /v1/users/{user_id}` and `…/{user_id}/metadata` share a
//! per-user limit). A rule without routes applies to every request; `except` carves routes
//! out of it. Exempt routes bypass every rule (see
//! [`RateLimitLayerBuilder::exempt`](crate::RateLimitLayerBuilder::exempt)).
//!
//! Templates: segments are literals, `{name}` (one segment, captured), or a final
//! `{*name}` (the rest of the path, possibly empty). A single trailing slash on the request
//! path is ignored, so `/v1/sign_ins/` matches `/v1/sign_ins`. Matching is on the raw
//! (percent-encoded) path.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use http::{Method, StatusCode};

use crate::key::{Global, KeyExtractor, PathParams, MAX_PATH_PARAMS};
use crate::quota::Quota;

/// A method (or any method) and a path template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    method: Option<Method>,
    template: String,
}

impl Route {
    /// `method` requests whose path matches `template`.
    pub fn new(method: Method, template: impl Into<String>) -> Self {
        Route {
            method: Some(method),
            template: template.into(),
        }
    }

    /// Requests of any method matching `template`.
    pub fn any(template: impl Into<String>) -> Self {
        Route {
            method: None,
            template: template.into(),
        }
    }

    /// `GET` requests matching `template`.
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
        Ok(CompiledRoute {
            method: self.method.clone(),
            segments: parse_template(&self.template)?,
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

#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment {
    Literal(String),
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
            None => Segment::Literal((*part).to_owned()),
        };
        segments.push(seg);
    }
    Ok(segments)
}

fn seg_param(seg: &Segment) -> Option<&str> {
    match seg {
        Segment::Param(n) | Segment::Rest(n) => Some(n),
        Segment::Literal(_) => None,
    }
}

/// A parsed route.
#[derive(Debug, Clone)]
pub(crate) struct CompiledRoute {
    method: Option<Method>,
    segments: Vec<Segment>,
}

impl CompiledRoute {
    /// Whether the request matches; captures parameters into `params` when it does.
    pub(crate) fn matches<'a>(
        &'a self,
        method: &Method,
        path: &'a str,
        params: &mut PathParams<'a>,
    ) -> bool {
        if self.method.as_ref().is_some_and(|m| m != method) {
            return false;
        }
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
                Segment::Literal(l) => l == part,
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

    pub(crate) fn has_param(&self, name: &str) -> bool {
        self.segments.iter().any(|s| seg_param(s) == Some(name))
    }
}

/// What a rule does with a request from which its key cannot be extracted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum MissingKey {
    /// All such requests share one bucket of the rule (the default): leaving the key out
    /// never escapes the limit, and the service stays available.
    #[default]
    Shared,
    /// The rule does not apply to such requests.
    Skip,
    /// Answer at once with this status and a problem document (e.g. 401 for an API that
    /// requires a key). Checked before any limit is consumed.
    Reject(StatusCode),
}

/// A named limit and the requests it applies to.
///
/// ```
/// use std::time::Duration;
/// use http::StatusCode;
/// use tower_throttle::key::{BearerToken, PathParam};
/// use tower_throttle::{MissingKey, Quota, Route, Rule};
///
/// // One bucket per user for both PATCH routes.
/// let per_user = Rule::new("update_user", Quota::new(10, Duration::from_secs(10))?)
///     .route(Route::patch("/v1/users/{user_id}"))
///     .route(Route::patch("/v1/users/{user_id}/metadata"))
///     .key(PathParam::new("user_id"));
///
/// // Every request except the sign-in routes, keyed by API key.
/// let instance = Rule::new("instance", Quota::new(100, Duration::from_secs(10))?)
///     .except(Route::post("/v1/sign_ins"))
///     .key(BearerToken)
///     .on_missing_key(MissingKey::Reject(StatusCode::UNAUTHORIZED));
/// # Ok::<(), tower_throttle::QuotaError>(())
/// ```
#[derive(Clone)]
pub struct Rule {
    pub(crate) name: String,
    pub(crate) quota: Quota,
    pub(crate) routes: Vec<Route>,
    pub(crate) except: Vec<Route>,
    pub(crate) key: Arc<dyn KeyExtractor>,
    pub(crate) block: Duration,
    pub(crate) shadow: bool,
    pub(crate) missing_key: MissingKey,
    pub(crate) concurrency: Option<u32>,
}

impl fmt::Debug for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Rule")
            .field("name", &self.name)
            .field("quota", &self.quota)
            .field("routes", &self.routes)
            .field("except", &self.except)
            .field("block", &self.block)
            .field("shadow", &self.shadow)
            .field("missing_key", &self.missing_key)
            .field("concurrency", &self.concurrency)
            .finish_non_exhaustive()
    }
}

impl Rule {
    /// A rule called `name` (used in headers, logs and counters; printable ASCII, unique
    /// in a layer) enforcing `quota` on every request, with one global bucket.
    pub fn new(name: impl Into<String>, quota: Quota) -> Self {
        Rule {
            name: name.into(),
            quota,
            routes: Vec::new(),
            except: Vec::new(),
            key: Arc::new(Global),
            block: Duration::ZERO,
            shadow: false,
            missing_key: MissingKey::default(),
            concurrency: None,
        }
    }

    /// Restricts the rule to `route` (adding to earlier routes: any of them matches).
    pub fn route(mut self, route: Route) -> Self {
        self.routes.push(route);
        self
    }

    /// Excludes `route` from the rule.
    pub fn except(mut self, route: Route) -> Self {
        self.except.push(route);
        self
    }

    /// Keys the rule's buckets (default: one global bucket).
    pub fn key(mut self, key: impl KeyExtractor) -> Self {
        self.key = Arc::new(key);
        self
    }

    /// Once a key is refused, it stays refused for `block` (default: no block).
    pub fn block_for(mut self, block: Duration) -> Self {
        self.block = block;
        self
    }

    /// Shadow mode: decided, counted, logged and reported in headers, never refusing.
    pub fn shadow(mut self, shadow: bool) -> Self {
        self.shadow = shadow;
        self
    }

    /// Client mode ([`PacingLayer`](crate::pacing::PacingLayer)): at most `limit` requests
    /// of one key in flight at once (Clay: concurrency 1). Ignored by the server mode.
    /// Zero is a build error.
    pub fn concurrency(mut self, limit: u32) -> Self {
        self.concurrency = Some(limit);
        self
    }

    /// What to do with requests that have no key (default [`MissingKey::Shared`]).
    pub fn on_missing_key(mut self, policy: MissingKey) -> Self {
        self.missing_key = policy;
        self
    }

    /// The rule's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The rule's quota.
    pub fn quota(&self) -> &Quota {
        &self.quota
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(route: &Route, method: Method, path: &str) -> Option<Vec<(String, String)>> {
        let c = route.compile().unwrap();
        let mut p = PathParams::default();
        c.matches(&method, path, &mut p).then(|| {
            ["id", "user_id", "rest", "organization_id"]
                .iter()
                .filter_map(|n| p.get(n).map(|v| ((*n).to_owned(), v.to_owned())))
                .collect()
        })
    }

    #[test]
    fn templates_match_and_capture() {
        let r = Route::patch("/v1/users/{user_id}");
        assert_eq!(
            m(&r, Method::PATCH, "/v1/users/u_1"),
            Some(vec![("user_id".into(), "u_1".into())])
        );
        assert!(m(&r, Method::PATCH, "/v1/users/u_1/").is_some());
        assert!(m(&r, Method::GET, "/v1/users/u_1").is_none());
        assert!(m(&r, Method::PATCH, "/v1/users/").is_none());
        assert!(m(&r, Method::PATCH, "/v1/users").is_none());
        assert!(m(&r, Method::PATCH, "/v1/users/u_1/metadata").is_none());
        assert!(m(&r, Method::PATCH, "/v1/users//").is_none());
        let lit = Route::post("/v1/sign_ins");
        assert!(m(&lit, Method::POST, "/v1/sign_ins").is_some());
        assert!(m(&lit, Method::POST, "/v1/sign_ins/").is_some());
        assert!(m(&lit, Method::POST, "/v1/sign_insx").is_none());
        assert!(m(&lit, Method::POST, "/v1/sign_ins/x").is_none());
        let rest = Route::any("/v1/{*rest}");
        assert_eq!(
            m(&rest, Method::DELETE, "/v1/a/b"),
            Some(vec![("rest".into(), "a/b".into())])
        );
        assert!(m(&rest, Method::GET, "/v2/a").is_none());
        let root = Route::any("/");
        assert!(m(&root, Method::GET, "/").is_some());
        assert!(m(&root, Method::GET, "/a").is_none());
    }

    #[test]
    fn bad_templates_are_errors() {
        for t in [
            "v1/x",
            "/v1/{}",
            "/v1/{a}/{a}",
            "/v1/{*a}/b",
            "/v1/x{a}",
            "/v1//x",
            "/{a-b}",
        ] {
            assert!(Route::any(t).compile().is_err(), "{t}");
        }
        let nine = (0..9).map(|i| format!("/{{p{i}}}")).collect::<String>();
        assert!(Route::any(nine).compile().is_err());
    }
}
