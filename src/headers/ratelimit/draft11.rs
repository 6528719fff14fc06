//! The `RateLimit-Policy` and `RateLimit` fields: IETF draft-11 lists (and the Integer
//! policies of drafts 05–10, and the draft-07 dictionary that shares the `RateLimit`
//! name), read in one pass each.
//!
//! Hostile lists cost linear time: at most [`MAX_ITEMS`] members of a list are kept (the
//! list is still parsed whole, since its validity is known only at its end), one per name
//! (the first: see [`parse_rate_limit`](super::parse_rate_limit)), and only the headline
//! state looks its policy up (in at most [`MAX_ITEMS`] policies). Up to [`SMALL`] names are compared in place (the common case: one
//! to three policies, no hashing); more are indexed in a `HashSet` (SipHash with random
//! keys: a server cannot make its names collide).

use std::cmp::Reverse;
use std::collections::HashSet;

use sfv::{BareItem, Dictionary, ListEntry, Parser};

use super::memo::{PolicyReading, StateReading};
use super::sf::{opt, parse_list, sf_bytes, sf_secs, sf_u64, SfItem};
use super::{Ctx, RateLimitInfo, RateLimitPolicy, RateLimitState};

/// The most policies (named, and Integer ones apart) and states kept from one
/// `RateLimit-Policy` or `RateLimit` field, and Integer policies from one limit field
/// (`X-RateLimit-Limit: 100, 100;w=60`); further members are dropped, and counted once in
/// [`RateLimitInfo::malformed`]. Real servers send one to a handful.
pub const MAX_ITEMS: usize = 64;

/// Names compared in place before they are indexed.
const SMALL: usize = 8;

/// What has a policy name.
trait Named {
    fn name(&self) -> Option<&str>;
}

impl Named for RateLimitPolicy {
    fn name(&self) -> Option<&str> {
        self.name.as_deref()
    }
}

impl Named for RateLimitState {
    fn name(&self) -> Option<&str> {
        self.name.as_deref()
    }
}

#[cfg(test)]
thread_local! {
    /// Names compared or looked up on this thread (a deterministic work count for tests).
    pub(super) static PROBES: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
}

/// Counts one name comparison or lookup (tests only).
fn probe() {
    #[cfg(test)]
    PROBES.with(|p| p.set(p.get() + 1));
}

/// Up to [`MAX_ITEMS`] items, the first of each name; `bad` counts the repeats dropped.
struct Kept<T> {
    items: Vec<T>,
    /// Every kept name, once more than [`SMALL`] items are kept.
    index: Option<HashSet<String>>,
    bad: u32,
    full: bool,
}

impl<T: Named> Kept<T> {
    fn new() -> Self {
        Kept {
            items: Vec::new(),
            index: None,
            bad: 0,
            full: false,
        }
    }

    fn push(&mut self, item: T) {
        if let Some(name) = item.name() {
            let seen = match &self.index {
                Some(index) => {
                    probe();
                    index.contains(name)
                }
                None => self.items.iter().any(|kept| {
                    probe();
                    kept.name() == Some(name)
                }),
            };
            if seen {
                self.bad = self.bad.saturating_add(1);
                return;
            }
        }
        if self.items.len() == MAX_ITEMS {
            self.full = true;
            return;
        }
        if let Some(name) = item.name() {
            if self.index.is_none() && self.items.len() == SMALL {
                let names = self
                    .items
                    .iter()
                    .filter_map(|k| k.name().map(str::to_owned));
                self.index = Some(names.collect());
            }
            if let Some(index) = &mut self.index {
                index.insert(name.to_owned());
            }
        }
        self.items.push(item);
    }

    /// The items, and the malformed count: the repeats, plus one if the list was cut.
    fn finish(self) -> (Vec<T>, u32) {
        (self.items, self.bad.saturating_add(u32::from(self.full)))
    }
}

impl Ctx<'_> {
    /// `RateLimit-Policy`: named draft-11 policies and Integer (drafts 05–10) policies.
    pub(super) fn policy_field(&mut self, input: &[u8]) -> PolicyReading {
        let (mut named, mut numbered, mut bad) = (Kept::new(), Kept::new(), 0);
        let valid = parse_list(input, ["q", "w", "pk"], |item| {
            let SfItem {
                name, bare, params, ..
            } = item;
            let [q, w, pk] = params;
            let quota = match (&name, bare) {
                (Some(_), _) => q.as_ref().and_then(sf_u64),
                (None, bare) => bare.as_ref().and_then(sf_u64),
            };
            let Some(quota) = quota else {
                bad += 1;
                return;
            };
            let policy = RateLimitPolicy {
                name,
                quota,
                window: opt(&mut bad, w.as_ref(), sf_secs),
                partition_key: opt(&mut bad, pk.as_ref(), sf_bytes),
            };
            if policy.name.is_some() {
                &mut named
            } else {
                &mut numbered
            }
            .push(policy);
        });
        if !valid {
            self.bad();
            return (Vec::new(), Vec::new());
        }
        let ((named, repeats), (numbered, cut)) = (named.finish(), numbered.finish());
        self.count(bad.saturating_add(repeats).saturating_add(cut));
        (named, numbered)
    }

    /// `RateLimit`: draft-11 states when it is an SF List, else a draft-07 dictionary.
    pub(super) fn ratelimit_field(&mut self, input: &[u8]) -> StateReading {
        let (mut states, mut info, mut bad) = (Kept::new(), RateLimitInfo::default(), 0);
        let valid = parse_list(input, ["r", "t", "pk"], |item| {
            let [r, t, pk] = item.params;
            let (Some(name), Some(remaining)) = (item.name, r.as_ref().and_then(sf_u64)) else {
                bad += 1;
                return;
            };
            states.push(RateLimitState {
                name: Some(name),
                remaining,
                reset_after: opt(&mut bad, t.as_ref(), sf_secs),
                partition_key: opt(&mut bad, pk.as_ref(), sf_bytes),
            });
        });
        if valid {
            let (states, dropped) = states.finish();
            self.count(bad.saturating_add(dropped));
            return (states, info);
        }
        let dict = Parser::new(input).parse::<Dictionary>().ok();
        let keys = ["limit", "remaining", "reset"];
        let Some(dict) = dict.filter(|d| keys.iter().any(|k| d.contains_key(*k))) else {
            self.bad();
            return (Vec::new(), info);
        };
        // An inner list is never a valid member: read it as a Boolean, which fails.
        let member = |key: &str| {
            dict.get(key).map(|entry| match entry {
                ListEntry::Item(item) => item.bare_item.clone(),
                ListEntry::InnerList(_) => BareItem::Boolean(false),
            })
        };
        info.limit = self.opt(member("limit").as_ref(), sf_u64);
        info.remaining = self.opt(member("remaining").as_ref(), sf_u64);
        info.reset_after = self.opt(member("reset").as_ref(), sf_secs);
        (Vec::new(), info)
    }

    /// The draft-11 reading: the state with the lowest remaining (ties: longest reset),
    /// with the quota of its policy. A remaining above the quota is read as sent (a burst
    /// larger than the quota: our own server writes `q=20` and `r=39` for 20 per 10 s with
    /// a burst of 40).
    pub(super) fn draft11(
        policies: Vec<RateLimitPolicy>,
        states: Vec<RateLimitState>,
    ) -> RateLimitInfo {
        let mut info = RateLimitInfo::default();
        let head = states
            .iter()
            .min_by_key(|s| (s.remaining, Reverse(s.reset_after)));
        match head {
            Some(head) => {
                info.limit = quota_of(&policies, head.name());
                info.remaining = Some(head.remaining);
                info.reset_after = head.reset_after;
            }
            None if policies.len() == 1 => info.limit = policies.first().map(|p| p.quota),
            None => {}
        }
        info.policies = policies;
        info.states = states;
        info
    }
}

/// The quota of the policy called `name` (names are unique: see [`Kept`]): one scan of at
/// most [`MAX_ITEMS`] policies, made once per reading (for the headline state only).
fn quota_of(policies: &[RateLimitPolicy], name: Option<&str>) -> Option<u64> {
    let name = name?;
    policies.iter().find_map(|p| {
        probe();
        (p.name() == Some(name)).then_some(p.quota)
    })
}
