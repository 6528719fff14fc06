//! The compiled rules of a rate limiter and the plan of a request (which rules apply, with
//! which keys): the part shared by the server mode ([`Limiter`](super::limiter::Limiter))
//! and the client mode ([`pacing`](super::pacing)).

use std::fmt;
use std::hash::Hasher;
use std::sync::Arc;

use http::Request;
use siphasher::sip::SipHasher13;
use smallvec::SmallVec;

use super::handle::{bump, Counter, RuleCounters, Stats};
use super::layer::BuildError;
use crate::engine::clock::TokioClock;
use crate::engine::gcra::{Check, GcraParams, MAX_CHECKS};
use crate::engine::quota::Quota;
use crate::headers::write::LimitHeaders;
use crate::rules::key::{KeyBuilder, KeyExtractor, PathParams, RequestParts};
use crate::rules::path::PathError;
use crate::rules::{CompiledRoute, MissingKey, PathMatching, Route, Rule, Target};
use crate::telemetry::ServerMetrics;

/// One rule, validated and prepared for requests.
#[derive(Clone)]
pub(crate) struct CompiledRule {
    pub(crate) name: String,
    pub(crate) quota: Quota,
    routes: Vec<CompiledRoute>,
    except: Vec<CompiledRoute>,
    key: Arc<dyn KeyExtractor>,
    params: GcraParams,
    pub(crate) shadow: bool,
    missing_key: MissingKey,
    pub(crate) concurrency: Option<u32>,
    /// A hash of every setting of the rule ([`Rule::fingerprint`]): a reload keeps the
    /// state and counters of a rule whose name and fingerprint are unchanged.
    pub(crate) fingerprint: u64,
    /// Hasher keyed by the layer's secret with the rule name already written.
    seed: SipHasher13,
    /// The key of the shared bucket for requests without a key.
    keyless: u64,
    /// `seed.finish()`: the key of an extractor that wrote nothing ([`Global`](crate::rules::key::Global)).
    empty_key: u64,
    /// The rule's id for the store ([`Check::rule`]).
    id: u64,
    /// The rule's rate-limit header values, prepared once.
    pub(crate) headers: LimitHeaders,
}

impl fmt::Debug for CompiledRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Rule")
            .field("name", &self.name)
            .field("quota", &self.quota)
            .finish_non_exhaustive()
    }
}

impl CompiledRule {
    /// Whether the rule covers a request to `target`: one of its routes (or, without
    /// routes, any) includes it and none of its carve-outs excludes it. The including
    /// route's path parameters are left in `params`; `scratch` serves the carve-outs.
    #[inline]
    fn applies<'a>(
        &'a self,
        method: &http::Method,
        target: &'a Target<'_>,
        params: &mut PathParams<'a>,
        scratch: &mut Option<PathParams<'a>>,
    ) -> bool {
        let included = if self.routes.is_empty() {
            params.clear();
            true
        } else {
            self.routes
                .iter()
                .any(|r| r.includes(method, target, params))
        };
        included
            && !self.except.iter().any(|r| {
                r.excludes(
                    method,
                    target,
                    scratch.get_or_insert_with(PathParams::default),
                )
            })
    }
}

/// The rules of a layer, their exempt routes and counters: everything that turns a request
/// into the checks a store decides.
#[derive(Clone)]
pub(crate) struct RuleSet {
    pub(crate) rules: Box<[CompiledRule]>,
    exempt: Box<[CompiledRoute]>,
    path_matching: PathMatching,
    pub(crate) stats: Arc<Stats>,
    /// The SipHash keys of request keys (from `key_secret`, or random).
    pub(crate) key_secret: (u64, u64),
    /// Read once per request: the arrival time the store decides at.
    pub(crate) clock: TokioClock,
}

/// What a request needs, decided before the store is asked. The checks themselves go into
/// a [`Checks`] the caller keeps on its stack, so their inline array is not moved with the
/// plan.
pub(crate) enum Plan {
    /// No rule applies (or the route is exempt).
    Pass,
    /// The path has no canonical form (a dot segment): refused before any rule.
    BadPath(PathError),
    /// Rule `rule` has [`MissingKey::Reject`] and found no key (`what` says which).
    MissingKey { rule: usize, what: &'static str },
    /// Decide the checks written into the caller's [`Checks`]; bit `i` of `matched` is set
    /// for each rule `i` they come from.
    Check { matched: u64 },
}

/// The checks of one request: up to 8 inline (the common case), more on the heap.
pub(crate) type Checks = SmallVec<[Check; 8]>;

impl RuleSet {
    /// Validates and compiles `rules` (their number checked by [`check_count`]) and
    /// `exempt` routes; request keys are hashed with `secret` (random when `None`).
    pub(crate) fn compile(
        rules: Vec<Rule>,
        exempt: &[Route],
        path_matching: PathMatching,
        secret: Option<[u8; 16]>,
    ) -> Result<RuleSet, BuildError> {
        let keys = sip_keys(secret.unwrap_or_else(random_secret));
        Self::compile_with_keys(rules, exempt, path_matching, keys)
    }

    /// [`compile`](Self::compile) with the SipHash keys of request keys given (a reload
    /// keeps the layer's).
    pub(crate) fn compile_with_keys(
        rules: Vec<Rule>,
        exempt: &[Route],
        path_matching: PathMatching,
        (k0, k1): (u64, u64),
    ) -> Result<RuleSet, BuildError> {
        let mut names: Vec<String> = Vec::with_capacity(rules.len());
        let mut compiled = Vec::with_capacity(rules.len());
        for rule in rules {
            check_name(&rule.name, &names)?;
            names.push(rule.name.clone());
            compiled.push(compile_rule(rule, k0, k1)?);
        }
        let exempt = exempt
            .iter()
            .map(|r| compile_route("exempt", r))
            .collect::<Result<Vec<_>, _>>()?;
        let stats = Arc::new(Stats {
            rules: names.iter().map(|_| RuleCounters::default()).collect(),
            exempted: Counter::default(),
            store_errors: Counter::default(),
            bad_paths: Counter::default(),
            store_failing: Default::default(),
            metrics: ServerMetrics::new(&names),
            names: names.into_boxed_slice(),
        });
        Ok(RuleSet {
            rules: compiled.into_boxed_slice(),
            exempt: exempt.into_boxed_slice(),
            path_matching,
            stats,
            key_secret: (k0, k1),
            clock: TokioClock::new(),
        })
    }

    /// Which rules apply to `req`; their checks (with the keys) are pushed onto `checks`,
    /// which must be empty.
    pub(crate) fn plan<B>(&self, req: &Request<B>, checks: &mut Checks) -> Plan {
        let method = req.method();
        // The request's route, worked out once: the canonical path (or axum's matched
        // template) for the rules, the path as sent for carve-outs.
        let target = match Target::of(req.uri(), req.extensions(), self.path_matching) {
            Ok(t) => t,
            Err(e) => {
                tracing::debug!(path = req.uri().path(), "refused: {e}");
                return Plan::BadPath(e);
            }
        };
        // One view of the request for every rule (its path parameters are rewritten per
        // rule, and serve exempt routes as scratch first), and a scratch buffer for
        // `except` routes made only if a rule has some: not a fresh ~270-byte
        // `PathParams` and a copy of it per rule.
        let mut parts = RequestParts::new(req);
        let mut scratch = None;
        if self
            .exempt
            .iter()
            .any(|r| r.excludes(method, &target, &mut parts.path_params))
        {
            bump(&self.stats.exempted);
            self.stats.metrics.exempted();
            return Plan::Pass;
        }
        let mut matched = 0u64;
        for (i, rule) in self.rules.iter().enumerate() {
            if !rule.applies(method, &target, &mut parts.path_params, &mut scratch) {
                continue;
            }
            let key = match self.key_of(i, rule, &parts) {
                Ok(Some(key)) => key,
                Ok(None) => continue,
                Err(what) => return Plan::MissingKey { rule: i, what },
            };
            matched |= 1 << i;
            checks.push(Check {
                key,
                params: rule.params,
                shadow: rule.shadow,
                rule: rule.id,
            });
        }
        if matched == 0 {
            Plan::Pass
        } else {
            Plan::Check { matched }
        }
    }

    /// The key of rule `i` for `parts`: `Ok(None)` when the key is missing and the rule
    /// skips such requests, `Err(what)` when it refuses them.
    // `#[inline]` here and on `applies`: called from the generic `plan`, which is compiled
    // in the user's crate, they are inlined into it only so (as the one function they
    // were); out of line they cost about 1 % of an HTTP request.
    #[inline]
    fn key_of(
        &self,
        i: usize,
        rule: &CompiledRule,
        parts: &RequestParts<'_>,
    ) -> Result<Option<u64>, &'static str> {
        let mut key = KeyBuilder::new(rule.seed);
        let missing = match rule.key.extract(parts, &mut key) {
            Ok(()) => return Ok(Some(key.finish_or(rule.empty_key))),
            Err(missing) => missing,
        };
        bump(&self.stats.rules[i].missing_key);
        self.stats.metrics.rule(i).missing_key();
        match rule.missing_key {
            MissingKey::Shared => Ok(Some(rule.keyless)),
            MissingKey::Skip => Ok(None),
            MissingKey::Reject => {
                tracing::debug!(rule = %rule.name, "{missing}");
                Err(missing.what)
            }
        }
    }
}

/// A layer has 1 to [`MAX_CHECKS`] rules: one bit each in a request's `matched` mask.
pub(crate) fn check_count(rules: usize) -> Result<(), BuildError> {
    match rules {
        0 => Err(BuildError::NoRules),
        n if n > MAX_CHECKS => Err(BuildError::TooManyRules(n)),
        _ => Ok(()),
    }
}

/// A fresh 128-bit secret from the operating system's random number generator.
fn random_secret() -> [u8; 16] {
    let mut secret = [0; 16];
    // The standard library's `HashMap` fails the same way when the OS has no randomness.
    getrandom::fill(&mut secret).expect("the operating system's random number generator");
    secret
}

pub(crate) fn sip_keys(secret: [u8; 16]) -> (u64, u64) {
    let (k0, k1) = secret.split_at(8);
    (
        u64::from_le_bytes(k0.try_into().unwrap_or_default()),
        u64::from_le_bytes(k1.try_into().unwrap_or_default()),
    )
}

/// A rule name is 1 to 64 printable ASCII characters, unique in the layer.
fn check_name(name: &str, taken: &[String]) -> Result<(), BuildError> {
    let valid = !name.is_empty()
        && name.len() <= 64
        && name.bytes().all(|b| b.is_ascii_graphic() || b == b' ');
    if !valid {
        return Err(BuildError::BadRuleName(name.to_owned()));
    }
    if taken.iter().any(|n| n == name) {
        return Err(BuildError::DuplicateRule(name.to_owned()));
    }
    Ok(())
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
    // The rule's name and fingerprint in one of three domains: the seed of its keys
    // (0xff), the key of keyless requests (0xfe), and the rule's id for the store (0xfd).
    // With the fingerprint, a rule whose settings change gets fresh buckets, and one
    // whose settings stay keeps its buckets across a reload.
    let fingerprint = rule.fingerprint();
    let hasher = |domain: u8| {
        let mut h = SipHasher13::new_with_keys(k0, k1);
        h.write(rule.name.as_bytes());
        h.write_u64(fingerprint);
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
        fingerprint,
        seed,
    })
}
