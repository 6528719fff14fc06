//! [`RateLimitLayer`] and its builder: rules are validated and compiled once, here.

use std::fmt;
use std::hash::{BuildHasher, Hasher};
use std::marker::PhantomData;
use std::sync::Arc;

use siphasher::sip::SipHasher13;
use tower_layer::Layer;

use super::body::{Unwrapped, Wrapped};
use super::handle::{Counter, RateLimitHandle, RuleCounters, Stats};
use super::response::{RejectionFn, StoreFailure};
use super::RateLimit;
use crate::engine::clock::TokioClock;
use crate::engine::gcra::{GcraParams, MAX_CHECKS};
use crate::engine::quota::Quota;
use crate::engine::store::{MemoryStore, Store};
use crate::headers::write::LimitHeaders;
use crate::headers::HeaderDialects;
use crate::rules::key::KeyExtractor;
use crate::rules::{CompiledRoute, MissingKey, PathMatching, Route, Rule};

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
        }
    }
}

impl std::error::Error for BuildError {}

pub(crate) struct CompiledRule {
    pub(crate) name: String,
    pub(crate) quota: Quota,
    pub(crate) routes: Vec<CompiledRoute>,
    pub(crate) except: Vec<CompiledRoute>,
    pub(crate) key: Arc<dyn KeyExtractor>,
    pub(crate) params: GcraParams,
    pub(crate) shadow: bool,
    pub(crate) missing_key: MissingKey,
    pub(crate) concurrency: Option<u32>,
    /// Hasher keyed by the layer's secret with the rule name already written.
    pub(crate) seed: SipHasher13,
    /// The key of the shared bucket for requests without a key.
    pub(crate) keyless: u64,
    /// `seed.finish()`: the key of an extractor that wrote nothing ([`Global`](crate::rules::key::Global)).
    pub(crate) empty_key: u64,
    /// The rule's id for the store ([`Check::rule`](crate::engine::gcra::Check::rule)).
    pub(crate) id: u64,
    /// The rule's rate-limit header values, prepared once.
    pub(crate) headers: LimitHeaders,
}

/// Everything a request needs except the store; shared by every clone.
pub(crate) struct Shared {
    pub(crate) rules: Box<[CompiledRule]>,
    pub(crate) exempt: Box<[CompiledRoute]>,
    pub(crate) path_matching: PathMatching,
    pub(crate) dialects: HeaderDialects,
    pub(crate) rejection: Option<RejectionFn>,
    pub(crate) store_failure: StoreFailure,
    pub(crate) stats: Arc<Stats>,
    /// The SipHash keys of request keys (from `key_secret`, or random).
    pub(crate) key_secret: (u64, u64),
    /// Read once per request: the arrival time the store decides at.
    pub(crate) clock: TokioClock,
}

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
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
///
/// `M` is the [`BodyMode`](super::BodyMode) of the services it makes: see
/// [`unwrapped_body`](Self::unwrapped_body).
pub struct RateLimitLayer<St = MemoryStore, M = Wrapped> {
    pub(crate) shared: Arc<Shared>,
    pub(crate) store: St,
    pub(crate) mode: PhantomData<fn() -> M>,
}

impl<St: Clone, M> Clone for RateLimitLayer<St, M> {
    fn clone(&self) -> Self {
        RateLimitLayer {
            shared: Arc::clone(&self.shared),
            store: self.store.clone(),
            mode: PhantomData,
        }
    }
}

impl<St, M> fmt::Debug for RateLimitLayer<St, M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<&str> = self.shared.rules.iter().map(|r| r.name.as_str()).collect();
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
            rejection: None,
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
            shared: self.shared,
            store: self.store,
            mode: PhantomData,
        }
    }
}

impl<St, M> RateLimitLayer<St, M> {
    /// The counters of this layer (shared with every clone).
    pub fn handle(&self) -> RateLimitHandle {
        RateLimitHandle {
            stats: Arc::clone(&self.shared.stats),
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
            shared: Arc::clone(&self.shared),
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
    rejection: Option<RejectionFn>,
    store_failure: StoreFailure,
    key_secret: Option<[u8; 16]>,
    store: St,
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
    /// agree with](crate::rules#what-the-router-must-agree-with).
    pub fn path_matching(mut self, matching: PathMatching) -> Self {
        self.path_matching = matching;
        self
    }

    /// Which rate-limit header dialects to write (default: legacy and IETF).
    pub fn headers(mut self, dialects: HeaderDialects) -> Self {
        self.dialects = dialects;
        self
    }

    /// Replaces the default problem-document body of responses the layer writes itself.
    /// The status and the rate-limit and `Retry-After` headers are set by the layer after
    /// the closure returns (headers the closure set are kept).
    pub fn rejection_response<F>(mut self, f: F) -> Self
    where
        F: Fn(&super::Rejection<'_>) -> http::Response<bytes::Bytes> + Send + Sync + 'static,
    {
        self.rejection = Some(Arc::new(f));
        self
    }

    /// What to do when the store reports a failure (default: admit, counted and logged).
    ///
    /// The stores of this crate never leave this policy unlimited by default: the
    /// in-memory store cannot fail, and a `RedisStore` (feature `redis`) decides on its
    /// in-memory fallback while Redis is down unless built with `RedisFallback::Error`,
    /// which hands each failure to this policy (fail open with `Admit`, fail closed with
    /// `Reject`).
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
            rejection: self.rejection,
            store_failure: self.store_failure,
            key_secret: self.key_secret,
            store,
        }
    }

    /// Validates the configuration and builds the layer.
    pub fn build(self) -> Result<RateLimitLayer<St>, BuildError> {
        if self.rules.is_empty() {
            return Err(BuildError::NoRules);
        }
        if self.rules.len() > MAX_CHECKS {
            return Err(BuildError::TooManyRules(self.rules.len()));
        }
        if self.key_secret.is_none() && self.store.is_shared() {
            return Err(BuildError::SharedStoreWithoutKeySecret);
        }
        let (k0, k1) = match self.key_secret {
            Some(s) => (
                u64::from_le_bytes(s[..8].try_into().unwrap_or_default()),
                u64::from_le_bytes(s[8..].try_into().unwrap_or_default()),
            ),
            None => {
                let rs = std::collections::hash_map::RandomState::new();
                (rs.hash_one(0u8), rs.hash_one(1u8))
            }
        };
        let mut names: Vec<String> = Vec::new();
        let mut rules = Vec::with_capacity(self.rules.len());
        for rule in self.rules {
            let valid = !rule.name.is_empty()
                && rule.name.len() <= 64
                && rule.name.bytes().all(|b| b.is_ascii_graphic() || b == b' ');
            if !valid {
                return Err(BuildError::BadRuleName(rule.name));
            }
            if names.contains(&rule.name) {
                return Err(BuildError::DuplicateRule(rule.name));
            }
            names.push(rule.name.clone());
            rules.push(compile_rule(rule, k0, k1)?);
        }
        let exempt = self
            .exempt
            .iter()
            .map(|r| compile_route("exempt", r))
            .collect::<Result<Vec<_>, _>>()?;
        let stats = Arc::new(Stats {
            rules: names.iter().map(|_| RuleCounters::default()).collect(),
            names: names.into_boxed_slice(),
            exempted: Counter::default(),
            store_errors: Counter::default(),
            bad_paths: Counter::default(),
            store_failing: Default::default(),
        });
        Ok(RateLimitLayer {
            shared: Arc::new(Shared {
                rules: rules.into_boxed_slice(),
                exempt: exempt.into_boxed_slice(),
                path_matching: self.path_matching,
                dialects: self.dialects,
                rejection: self.rejection,
                store_failure: self.store_failure,
                stats,
                key_secret: (k0, k1),
                clock: TokioClock::new(),
            }),
            store: self.store,
            mode: PhantomData,
        })
    }
}

fn compile_route(rule: &str, route: &Route) -> Result<CompiledRoute, BuildError> {
    route.compile().map_err(|reason| BuildError::BadTemplate {
        rule: rule.to_owned(),
        route: route.to_string(),
        reason,
    })
}

fn compile_rule(rule: Rule, k0: u64, k1: u64) -> Result<CompiledRule, BuildError> {
    let routes = rule
        .routes
        .iter()
        .map(|r| compile_route(&rule.name, r))
        .collect::<Result<Vec<_>, _>>()?;
    let except = rule
        .except
        .iter()
        .map(|r| compile_route(&rule.name, r))
        .collect::<Result<Vec<_>, _>>()?;
    let mut missing_param = None;
    rule.key.path_params(&mut |p| {
        if missing_param.is_none() && (routes.is_empty() || routes.iter().any(|r| !r.has_param(p)))
        {
            missing_param = Some(p.to_owned());
        }
    });
    if rule.concurrency == Some(0) {
        return Err(BuildError::ZeroConcurrency(rule.name));
    }
    if let Some(param) = missing_param {
        return Err(BuildError::UnknownPathParam {
            rule: rule.name,
            param,
        });
    }
    // The rule's name in one of three domains: the seed of its keys (0xff), the key of
    // keyless requests (0xfe), and the rule's id for the store (0xfd).
    let hasher = |domain: u8| {
        let mut h = SipHasher13::new_with_keys(k0, k1);
        h.write(rule.name.as_bytes());
        h.write_u8(domain);
        h
    };
    let (seed, keyless, id) = (hasher(0xff), hasher(0xfe), hasher(0xfd));
    Ok(CompiledRule {
        id: id.finish(),
        params: GcraParams::new(&rule.quota, rule.block),
        keyless: keyless.finish(),
        empty_key: seed.finish(),
        headers: LimitHeaders::new(&rule.name, &rule.quota),
        name: rule.name,
        quota: rule.quota,
        routes,
        except,
        key: rule.key,
        shadow: rule.shadow,
        missing_key: rule.missing_key,
        concurrency: rule.concurrency,
        seed,
    })
}
