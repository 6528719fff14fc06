//! [`RateLimitLayer`] and its builder: rules are validated and compiled once, here.

use std::fmt;
use std::marker::PhantomData;
use std::sync::Arc;

use tower_layer::Layer;

use super::body::{Unwrapped, Wrapped};
use super::handle::{RateLimitHandle, Source};
use super::limiter::{Limiter, StoreFailure};
use super::reload::Live;
use super::responder::{AutoResponder, Responder};
use super::rule_set::{self, RuleSet};
use super::RateLimit;
use crate::engine::gcra::MAX_CHECKS;
use crate::engine::store::{MemoryStore, Store};
use crate::headers::HeaderDialects;
use crate::rules::{PathMatching, Route, Rule};

/// Why a [`RateLimitLayer`] could not be built.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum BuildError {
    /// No rule was added.
    NoRules,
    /// More than 64 rules.
    TooManyRules(usize),
    /// Two rules share a name.
    DuplicateRule(String),
    /// A rule name is empty, too long (over 64) or not printable ASCII.
    BadRuleName(String),
    /// A route template does not parse.
    BadTemplate {
        /// The rule (or `"exempt"`).
        rule: String,
        /// The route.
        route: String,
        /// What is wrong.
        reason: String,
    },
    /// A rule's concurrency limit is zero.
    ZeroConcurrency(String),
    /// A key reads a path parameter that one of the rule's routes does not capture (or
    /// the rule has no routes to capture it from).
    UnknownPathParam {
        /// The rule.
        rule: String,
        /// The parameter.
        param: String,
    },
    /// The store is shared between instances ([`Store::is_shared`], e.g. Redis) and no
    /// [`key_secret`](RateLimitLayerBuilder::key_secret) was set: each instance would hash
    /// keys with its own random secret, so none would see the others' counts.
    SharedStoreWithoutKeySecret,
    /// [`RateLimitHandle::reload`] on the handle of a layer whose rules cannot be
    /// replaced (a [`PacingLayer`](crate::pacing::PacingLayer)'s).
    NotReloadable,
}

impl fmt::Display for BuildError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BuildError::NoRules => f.write_str("a rate-limit layer needs at least one rule"),
            BuildError::TooManyRules(n) => write!(f, "{n} rules; at most {MAX_CHECKS} allowed"),
            BuildError::DuplicateRule(n) => write!(f, "two rules are called {n:?}"),
            BuildError::BadRuleName(n) => write!(
                f,
                "rule name {n:?} must be 1 to 64 printable ASCII characters"
            ),
            BuildError::BadTemplate {
                rule,
                route,
                reason,
            } => write!(f, "rule {rule:?}: route `{route}`: {reason}"),
            BuildError::ZeroConcurrency(rule) => {
                write!(f, "rule {rule:?} has a concurrency limit of zero")
            }
            BuildError::UnknownPathParam { rule, param } => write!(
                f,
                "rule {rule:?} is keyed by path parameter {param:?}, which not all of its routes capture"
            ),
            BuildError::SharedStoreWithoutKeySecret => f.write_str(
                "the store is shared between instances but no key_secret was set: each \
                 instance would hash request keys with its own random secret and enforce \
                 its own limit (N instances, N times the limit); set the same key_secret on \
                 every instance, from configuration",
            ),
            BuildError::NotReloadable => {
                f.write_str("this layer's rules cannot be reloaded (only a RateLimitLayer's can)")
            }
        }
    }
}

impl std::error::Error for BuildError {}

/// Applies [`RateLimit`] to a service: the server side of tower-throttle.
///
/// Cheap to clone; every clone and every service it makes share the same limits, store
/// and counters (unlike `tower::limit::RateLimit`, whose state is per clone).
///
/// ```
/// use std::time::Duration;
/// use tower_throttle::key::PeerIp;
/// use tower_throttle::{Quota, RateLimitLayer, Route, Rule};
///
/// let layer = RateLimitLayer::builder()
///     .rule(
///         Rule::new("sign_in", Quota::new(5, Duration::from_secs(10))?)
///             .route(Route::post("/v1/sign_ins"))
///             .key(PeerIp::new()),
///     )
///     .exempt(Route::get("/v1/jwks"))
///     .build()?;
/// let handle = layer.handle();
/// // let app = axum::Router::new()./* routes */.layer(layer);
/// // tonic: Server::builder().layer(layer).add_service(..), or for one service
/// // Server::builder().add_service(layer.layer(GreeterServer::new(..)))
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
///
/// `M` is the [`BodyMode`](super::BodyMode) of the services it makes: see
/// [`unwrapped_body`](Self::unwrapped_body).
pub struct RateLimitLayer<St = MemoryStore, M = Wrapped> {
    /// The rules as built (the client mode's `PacingLayer` takes them from here).
    pub(crate) limiter: Arc<Limiter>,
    /// The rules in force, which services read and a reload replaces.
    pub(crate) live: Arc<Live>,
    pub(crate) store: St,
    pub(crate) mode: PhantomData<fn() -> M>,
}

impl<St: Clone, M> Clone for RateLimitLayer<St, M> {
    fn clone(&self) -> Self {
        RateLimitLayer {
            limiter: Arc::clone(&self.limiter),
            live: Arc::clone(&self.live),
            store: self.store.clone(),
            mode: PhantomData,
        }
    }
}

impl<St, M> fmt::Debug for RateLimitLayer<St, M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let limiter = self.live.current.load();
        let names: Vec<&str> = limiter
            .rules
            .rules
            .iter()
            .map(|r| r.name.as_str())
            .collect();
        f.debug_struct("RateLimitLayer")
            .field("rules", &names)
            .finish_non_exhaustive()
    }
}

impl RateLimitLayer {
    /// Starts a layer on a new [`MemoryStore`].
    pub fn builder() -> RateLimitLayerBuilder {
        RateLimitLayerBuilder {
            rules: Vec::new(),
            exempt: Vec::new(),
            path_matching: PathMatching::default(),
            dialects: HeaderDialects::default(),
            responder: None,
            store_failure: StoreFailure::default(),
            key_secret: None,
            store: MemoryStore::new(),
        }
    }
}

impl<St> RateLimitLayer<St> {
    /// Makes services whose responses keep the inner service's body type `B` (the
    /// layer's own responses are built with `B::from(Bytes)`), instead of wrapping it in a
    /// [`RateLimitBody`](super::RateLimitBody). Needs `B: From<Bytes>`.
    ///
    /// With axum, whose `Body` qualifies, this spares boxing every response body again
    /// (one allocation per response and a dynamic call per frame): axum boxes any body
    /// type other than its own. Bodies that are not `From<Bytes>` (hyper's `Incoming`
    /// in a proxy, boxed bodies) need the default mode.
    ///
    /// ```
    /// use axum::{routing::get, Router};
    /// use tower_throttle::key::PeerIp;
    /// use tower_throttle::{Quota, RateLimitLayer, Rule};
    ///
    /// let layer = RateLimitLayer::builder()
    ///     .rule(Rule::new("per_ip", Quota::per_second(10)?).key(PeerIp::new()))
    ///     .build()?
    ///     .unwrapped_body();
    /// let app: Router = Router::new().route("/", get(|| async { "hi" })).layer(layer);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn unwrapped_body(self) -> RateLimitLayer<St, Unwrapped> {
        RateLimitLayer {
            limiter: self.limiter,
            live: self.live,
            store: self.store,
            mode: PhantomData,
        }
    }
}

impl<St, M> RateLimitLayer<St, M> {
    /// The counters of this layer, and its [reload](RateLimitHandle::reload) (shared
    /// with every clone).
    pub fn handle(&self) -> RateLimitHandle {
        RateLimitHandle {
            source: Source::Live(Arc::clone(&self.live)),
        }
    }

    /// The layer's store.
    pub fn store(&self) -> &St {
        &self.store
    }
}

impl<S, St: Clone, M> Layer<S> for RateLimitLayer<St, M> {
    type Service = RateLimit<S, St, M>;

    fn layer(&self, inner: S) -> Self::Service {
        RateLimit {
            inner,
            live: Arc::clone(&self.live),
            store: self.store.clone(),
            mode: PhantomData,
        }
    }
}

/// Configures a [`RateLimitLayer`]; [`build`](Self::build) validates everything.
pub struct RateLimitLayerBuilder<St = MemoryStore> {
    rules: Vec<Rule>,
    exempt: Vec<Route>,
    path_matching: PathMatching,
    dialects: HeaderDialects,
    /// `None`: the default [`AutoResponder`] (or, on a reload, the layer's own).
    responder: Option<Arc<dyn Responder>>,
    store_failure: StoreFailure,
    key_secret: Option<[u8; 16]>,
    store: St,
}

/// A builder's settings apart from its store, for a reload.
pub(crate) struct BuilderParts {
    pub(crate) rules: Vec<Rule>,
    pub(crate) exempt: Vec<Route>,
    pub(crate) path_matching: PathMatching,
    pub(crate) dialects: HeaderDialects,
    pub(crate) responder: Option<Arc<dyn Responder>>,
    pub(crate) store_failure: StoreFailure,
    pub(crate) key_secret: Option<[u8; 16]>,
}

impl<St> RateLimitLayerBuilder<St> {
    pub(crate) fn into_parts(self) -> BuilderParts {
        BuilderParts {
            rules: self.rules,
            exempt: self.exempt,
            path_matching: self.path_matching,
            dialects: self.dialects,
            responder: self.responder,
            store_failure: self.store_failure,
            key_secret: self.key_secret,
        }
    }
}

impl<St> fmt::Debug for RateLimitLayerBuilder<St> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RateLimitLayerBuilder")
            .field("rules", &self.rules)
            .field("exempt", &self.exempt)
            .field("dialects", &self.dialects)
            .finish_non_exhaustive()
    }
}

impl<St: Store + Clone> RateLimitLayerBuilder<St> {
    /// Adds a rule. Every rule matching a request is decided at once: the request is
    /// admitted only if all admit it, and only then is any quota consumed.
    pub fn rule(mut self, rule: Rule) -> Self {
        self.rules.push(rule);
        self
    }

    /// Requests matching `route` bypass every rule (no quota spent, no headers).
    pub fn exempt(mut self, route: Route) -> Self {
        self.exempt.push(route);
        self
    }

    /// How requests are matched to routes (default [`PathMatching::Canonical`]: the
    /// canonical form of the path); see [what the router must
    /// agree with](crate::Rule#what-the-router-must-agree-with).
    pub fn path_matching(mut self, matching: PathMatching) -> Self {
        self.path_matching = matching;
        self
    }

    /// Which rate-limit header dialects to write (default: legacy and IETF).
    pub fn headers(mut self, dialects: HeaderDialects) -> Self {
        self.dialects = dialects;
        self
    }

    /// Who answers refused requests. The responder builds the whole response, status
    /// included: see [`Responder`].
    ///
    /// The default, [`AutoResponder`], tells gRPC calls by their content type
    /// ([`is_grpc`](crate::headers::is_grpc)) and answers them the gRPC way
    /// ([`GrpcResponder`](super::GrpcResponder): HTTP 200, `grpc-status` 8
    /// RESOURCE_EXHAUSTED with `grpc-retry-pushback-ms` when rate limited), every other
    /// request with a problem document ([`HttpResponder`](super::HttpResponder): 429 with
    /// `Retry-After` when rate limited). To answer every request one way:
    ///
    /// - HTTP only: `.responder(HttpResponder::new())`;
    /// - gRPC only: `.responder(GrpcResponder::new())`;
    /// - both, configured: `.responder(AutoResponder::new().http(..).grpc(..))`.
    ///
    /// ```
    /// use tower_throttle::rate_limit::HttpResponder;
    /// use tower_throttle::{Quota, RateLimitLayer, Rule};
    ///
    /// // A plain HTTP API: gRPC content types get problem documents too.
    /// let layer = RateLimitLayer::builder()
    ///     .rule(Rule::new("global", Quota::per_second(100)?))
    ///     .responder(HttpResponder::new())
    ///     .build()?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn responder(mut self, responder: impl Responder) -> Self {
        self.responder = Some(Arc::new(responder));
        self
    }

    /// What to do when the store reports a failure (default: admit, counted and logged).
    ///
    /// The stores of this crate never leave this policy unlimited by default: the
    /// in-memory store cannot fail, and a `RedisStore` (feature `redis`) decides on its
    /// in-memory fallback while Redis is down unless built with `RedisFallback::Error`,
    /// which hands each failure to this policy (fail open with `Admit`, fail closed with
    /// `Reject`, answered by the [responder](Self::responder)).
    pub fn on_store_failure(mut self, policy: StoreFailure) -> Self {
        self.store_failure = policy;
        self
    }

    /// The 128-bit secret keying the hash of request keys. Random per layer by default;
    /// required on a [shared store](Store::is_shared) (such as Redis), where every
    /// instance must set the same secret (read it from configuration or the environment,
    /// not from source code: whoever knows it can predict which keys collide).
    pub fn key_secret(mut self, secret: [u8; 16]) -> Self {
        self.key_secret = Some(secret);
        self
    }

    /// Uses another store (for example one shared by several instances).
    pub fn store<St2: Store + Clone>(self, store: St2) -> RateLimitLayerBuilder<St2> {
        RateLimitLayerBuilder {
            rules: self.rules,
            exempt: self.exempt,
            path_matching: self.path_matching,
            dialects: self.dialects,
            responder: self.responder,
            store_failure: self.store_failure,
            key_secret: self.key_secret,
            store,
        }
    }

    /// Validates the configuration and builds the layer.
    pub fn build(self) -> Result<RateLimitLayer<St>, BuildError> {
        rule_set::check_count(self.rules.len())?;
        if self.key_secret.is_none() && self.store.is_shared() {
            return Err(BuildError::SharedStoreWithoutKeySecret);
        }
        let rules = RuleSet::compile(
            self.rules,
            &self.exempt,
            self.path_matching,
            self.key_secret,
        )?;
        let responder = self
            .responder
            .unwrap_or_else(|| Arc::new(AutoResponder::new()));
        let limiter = Arc::new(Limiter {
            rules,
            dialects: self.dialects,
            responder,
            store_failure: self.store_failure,
        });
        Ok(RateLimitLayer {
            live: Live::new(Arc::clone(&limiter)),
            limiter,
            store: self.store,
            mode: PhantomData,
        })
    }
}
