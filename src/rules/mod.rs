//! Rules: which requests a limit applies to, how they are keyed, and what happens when a
//! request has no key. The user-facing documentation is on [`Rule`].

pub mod key;
pub mod path;
mod route;

pub(crate) use route::{warn_once, CompiledRoute, Target};
pub use route::{PathMatching, Route, RouteParseError};

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use crate::engine::quota::Quota;
use crate::rules::key::{Global, KeyExtractor};

/// What a rule does with a request from which its key cannot be extracted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum MissingKey {
    /// All such requests share one bucket of the rule (the default): leaving the key out
    /// never escapes the limit, and the service stays available.
    #[default]
    Shared,
    /// The rule does not apply to such requests.
    Skip,
    /// Refuse the request at once, before any limit is consumed: the server mode's
    /// [responder](crate::rate_limit::Responder) answers it
    /// ([`RejectionReason::MissingKey`](crate::RejectionReason::MissingKey); 401 by
    /// default, see [`HttpResponder::missing_key_status`](crate::rate_limit::HttpResponder::missing_key_status),
    /// and `UNAUTHENTICATED` for gRPC calls, see
    /// [`GrpcResponder::missing_key_code`](crate::rate_limit::GrpcResponder::missing_key_code)),
    /// the client mode fails it with
    /// [`PacingError::MissingKey`](crate::pacing::PacingError::MissingKey).
    Reject,
}

impl MissingKey {
    fn as_str(self) -> &'static str {
        match self {
            MissingKey::Shared => "shared",
            MissingKey::Skip => "skip",
            MissingKey::Reject => "reject",
        }
    }
}

/// `shared`, `skip` or `reject`, as [`FromStr`](std::str::FromStr) reads it.
impl fmt::Display for MissingKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Reads `shared`, `skip` or `reject`.
///
/// ```
/// use tower_throttle::MissingKey;
///
/// assert_eq!("reject".parse::<MissingKey>()?, MissingKey::Reject);
/// assert_eq!(MissingKey::Skip.to_string(), "skip");
/// assert!("Reject".parse::<MissingKey>().is_err());
/// # Ok::<(), tower_throttle::MissingKeyParseError>(())
/// ```
impl std::str::FromStr for MissingKey {
    type Err = MissingKeyParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        [MissingKey::Shared, MissingKey::Skip, MissingKey::Reject]
            .into_iter()
            .find(|m| m.as_str() == s)
            .ok_or(MissingKeyParseError)
    }
}

/// A string that is not `shared`, `skip` or `reject`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MissingKeyParseError;

impl fmt::Display for MissingKeyParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("expected one of shared, skip, reject")
    }
}

impl std::error::Error for MissingKeyParseError {}

/// A named limit and the requests it applies to.
///
/// ```
/// use std::time::Duration;
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
///     .on_missing_key(MissingKey::Reject);
/// # Ok::<(), tower_throttle::QuotaError>(())
/// ```
///
/// # Routes and templates
///
/// A [`Rule`] names a [`Quota`], a [`KeyExtractor`], and the routes it covers: method +
/// path templates such as `/v1/users/{user_id}`. A rule with several routes is one bucket
/// for all of them (Clerk's `PATCH /v1/users/{user_id}` and `…/{user_id}/metadata` share a
/// per-user limit). A rule without routes applies to every request; `except` carves routes
/// out of it. Exempt routes bypass every rule (see
/// [`RateLimitLayerBuilder::exempt`](crate::RateLimitLayerBuilder::exempt)).
///
/// Templates: segments are literals, `{name}` (one segment, captured), or a final
/// `{*name}` (the rest of the path, possibly empty). For a rule's routes a single trailing
/// slash on the request path is ignored, so `/v1/sign_ins/` matches `/v1/sign_ins`, and a
/// `GET` route also covers `HEAD` (routers serve `HEAD` with the `GET` handler).
/// Carve-outs are exact: see below.
///
/// # gRPC methods
///
/// A gRPC method is the route [`Route::grpc_method("helloworld.Greeter",
/// "SayHello")`](Route::grpc_method) (`/helloworld.Greeter/SayHello`, any HTTP method), and
/// every method of a service is [`Route::grpc_service("helloworld.Greeter")`](Route::grpc_service);
/// metadata such as `x-api-key` are request headers, read by
/// [`Header`](crate::rules::key::Header). Exempt a service, e.g. health checks, with
/// `.exempt(Route::grpc_service("grpc.health.v1.Health"))`, or carve it out of one rule
/// with [`except`](Self::except). Refused calls are answered the gRPC way (see
/// [`RateLimitLayerBuilder::responder`](crate::RateLimitLayerBuilder::responder)).
///
/// ```
/// use std::time::Duration;
/// use tower_throttle::key::{Header, PeerIp};
/// use tower_throttle::{Quota, RateLimitLayer, Route, Rule};
///
/// let layer = RateLimitLayer::builder()
///     .rule(
///         Rule::new("per_api_key", Quota::new(3, Duration::from_secs(10))?)
///             .route(Route::grpc_method("helloworld.Greeter", "SayHello"))
///             .key(Header::new("x-api-key".parse()?)),
///     )
///     .rule(
///         Rule::new("per_ip", Quota::new(10, Duration::from_secs(10))?)
///             .except(Route::grpc_service("grpc.reflection.v1.ServerReflection"))
///             .key(PeerIp::new()),
///     )
///     .exempt(Route::grpc_service("grpc.health.v1.Health"))
///     .build()?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
///
/// # Which path is matched
///
/// By default ([`PathMatching::Canonical`]) a rule's routes match the [canonical
/// form](crate::rules::path) of the request path, worked out once per request: `//v1//sign_ins`,
/// `/v1/sign_%69ns` and `/v1/sign_ins/` are all the sign-in route, and spend its bucket.
/// Template literals are put in the same form. A path with a dot segment (`.`, `..`,
/// `%2e%2e`) has no canonical form: the layer answers it `400 Bad Request` before any rule
/// or route of the service is involved ([`RejectionReason::BadPath`](crate::RejectionReason::BadPath)).
///
/// Carve-outs (`except` routes and exempt routes) are the other way round: they match the
/// path **as sent** only. Canonical matching can only add rules to a request (every path
/// that matches a template as sent also matches it canonically), so a request is never
/// limited less than its spelling as sent would be; a spelling of an exempt route is not
/// exempt (`GET //v1/jwks` pays the backend limit), because a router that does not
/// canonicalize may serve it under some other route. For the same reason a carve-out
/// matches a trailing slash only if its template has one (`GET /v1/jwks/` is not the
/// exempt `GET /v1/jwks`; a final `{*rest}` takes any), and a `GET` carve-out does not
/// cover `HEAD`.
///
/// [`PathParam`](crate::rules::key::PathParam) keys are percent-decoded the way axum's `Path`
/// extractor decodes them (every valid escape, `%2F` included; an invalid escape is kept
/// as is), so `user_1`, `user%5F1` and `%75ser_1` are one bucket.
///
/// # What the router must agree with
///
/// The limit is only as good as the agreement between these templates and the router
/// behind the layer. With the default matching, the router must:
///
/// - route on the path as sent (axum, hyper, matchit do) or on a form that merges empty
///   segments and decodes unreserved escapes at most — **not** decode reserved escapes
///   (`%2F` into `/`) before routing, not strip dot segments (the layer refuses those), not
///   fold case (or use [`PathMatching::CanonicalIgnoreCase`]);
/// - give `{name}` one non-empty segment and `{*name}` the rest of the path, like axum;
/// - serve every route it has under a rule that covers it, and answer the rest with 404
///   (a catch-all handler is served under whatever rule its path spells).
///
/// With axum, `PathMatching::AxumMatchedPath` (feature `axum`) removes the question: the
/// layer, applied with `Router::route_layer`, reads the template axum matched
/// (`MatchedPath`) and applies the rules whose routes are that template, so limiter and
/// router cannot disagree.
///
/// ```
/// # #[cfg(feature = "axum")]
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use axum::{routing::post, Router};
/// use tower_throttle::key::PeerIp;
/// use tower_throttle::PathMatching;
/// use tower_throttle::{Quota, RateLimitLayer, Route, Rule};
///
/// let layer = RateLimitLayer::builder()
///     .path_matching(PathMatching::AxumMatchedPath)
///     .rule(
///         Rule::new("sign_in", Quota::per_second(1)?)
///             .route(Route::post("/v1/sign_ins"))
///             .key(PeerIp::new()),
///     )
///     .build()?;
/// let app: Router = Router::new()
///     .route("/v1/sign_ins", post(|| async { "signed in" }))
///     .route_layer(layer);
/// # Ok(())
/// # }
/// # #[cfg(not(feature = "axum"))]
/// # fn main() {}
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

/// Two rules are equal when every setting is: name, quota, routes, carve-outs, block,
/// shadow, missing-key policy, concurrency, and a key of the same kind with the same
/// settings (see [`KeyExtractor::fingerprint`]).
impl PartialEq for Rule {
    fn eq(&self, other: &Rule) -> bool {
        self.fingerprint() == other.fingerprint()
            && self.name == other.name
            && self.quota == other.quota
            && self.routes == other.routes
            && self.except == other.except
    }
}

impl Rule {
    /// A hash of every setting of the rule, the key's kind and settings included: a
    /// reload keeps the state of a rule whose fingerprint did not change.
    pub(crate) fn fingerprint(&self) -> u64 {
        use std::hash::{Hash, Hasher};
        let mut h = siphasher::sip::SipHasher13::new();
        self.name.hash(&mut h);
        self.quota.hash(&mut h);
        for routes in [&self.routes, &self.except] {
            routes.len().hash(&mut h);
            for r in routes {
                r.to_string().hash(&mut h);
            }
        }
        self.block.hash(&mut h);
        self.shadow.hash(&mut h);
        self.missing_key.hash(&mut h);
        self.concurrency.hash(&mut h);
        let mut key = siphasher::sip::SipHasher13::new();
        self.key.fingerprint(&mut key);
        h.write_u64(key.finish());
        h.finish()
    }

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

    /// [`key`](Self::key) with an extractor already shared (no second indirection).
    #[cfg_attr(not(feature = "serde"), allow(dead_code))]
    pub(crate) fn key_arc(mut self, key: Arc<dyn KeyExtractor>) -> Self {
        self.key = key;
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

    /// Client mode ([`PacingLayer`](crate::rate_limit::pacing::PacingLayer)): at most `limit` requests
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
