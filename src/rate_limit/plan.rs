//! Which rules apply to a request, and with which keys: shared by the server and client
//! modes of the rate limiter.

use http::{Request, StatusCode};

use super::handle::bump;
use super::layer::Shared;
use crate::engine::gcra::Check;
use crate::rules::key::{KeyBuilder, PathParams, RequestParts};
use crate::rules::path::PathError;
use crate::rules::{MissingKey, Target};

/// What a request needs, decided before the store is asked. The checks themselves go into
/// a [`Checks`] the caller keeps on its stack: returned by value, their inline array
/// (hundreds of bytes) was copied several times per request.
pub(crate) enum Plan {
    /// No rule applies (or the route is exempt).
    Pass,
    /// The path has no canonical form (a dot segment): refused before any rule.
    BadPath(PathError),
    /// Rule `rule` has `MissingKey::Reject(status)` and found no key.
    MissingKey {
        rule: usize,
        status: StatusCode,
        what: &'static str,
    },
    /// Decide the checks written into the caller's [`Checks`]; bit `i` of `matched` is set
    /// for each rule `i` they come from.
    Check { matched: u64 },
}

/// Up to 8 checks inline (the common case), more on the heap.
pub(crate) struct Checks {
    inline: [Check; 8],
    len: usize,
    heap: Vec<Check>,
}

const NO_CHECK: Check = Check {
    key: 0,
    params: crate::engine::gcra::GcraParams {
        interval_ns: 1,
        limit_ns: 1,
        block_ns: 0,
    },
    shadow: false,
    rule: 0,
};

impl Checks {
    pub(crate) fn new() -> Self {
        Checks {
            inline: [NO_CHECK; 8],
            len: 0,
            heap: Vec::new(),
        }
    }
    #[inline]
    fn push(&mut self, c: Check) {
        if self.len < self.inline.len() {
            self.inline[self.len] = c;
        } else {
            if self.heap.is_empty() {
                self.heap.extend_from_slice(&self.inline);
            }
            self.heap.push(c);
        }
        self.len += 1;
    }
    #[inline]
    pub(crate) fn as_slice(&self) -> &[Check] {
        if self.len <= self.inline.len() {
            &self.inline[..self.len]
        } else {
            &self.heap
        }
    }
}

impl Shared {
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
            return Plan::Pass;
        }
        let mut matched = 0u64;
        for (i, rule) in self.rules.iter().enumerate() {
            let applies = if rule.routes.is_empty() {
                parts.path_params.clear();
                true
            } else {
                rule.routes
                    .iter()
                    .any(|r| r.includes(method, &target, &mut parts.path_params))
            };
            if !applies
                || rule.except.iter().any(|r| {
                    r.excludes(
                        method,
                        &target,
                        scratch.get_or_insert_with(PathParams::default),
                    )
                })
            {
                continue;
            }
            let mut key = KeyBuilder::new(rule.seed);
            let key = match rule.key.extract(&parts, &mut key) {
                Ok(()) => key.finish_or(rule.empty_key),
                Err(missing) => {
                    bump(&self.stats.rules[i].missing_key);
                    match rule.missing_key {
                        MissingKey::Shared => rule.keyless,
                        MissingKey::Skip => continue,
                        MissingKey::Reject(status) => {
                            tracing::debug!(rule = %rule.name, %status, "{missing}");
                            return Plan::MissingKey {
                                rule: i,
                                status,
                                what: missing.what,
                            };
                        }
                    }
                }
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
}
