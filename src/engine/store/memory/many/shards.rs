//! The slow path of [`super::many`]: a request with a key missing from its shard's
//! table, or moved, or no cached table, is decided under the mutexes of its shards.
//! Its stages keep one lock order (shard mutexes ascending, then key slots in key order,
//! then overflow buckets in rule order) and hold every key lock from the first state
//! read to the last state stored, so the request is decided all-or-nothing. New keys are
//! inserted after the key locks are released: nobody else can see them meanwhile (they
//! are missing from every table, so any other request on them waits for the mutex).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, MutexGuard};

use super::super::table::Table;
use super::super::{lock, room, Inner, Writer};
use super::{decide_keys, lock_key, sort_dedup};
use crate::engine::gcra::{Check, Decision};

impl Inner {
    /// The slow path: decide under the mutexes of the shards, inserting new keys where
    /// their shard has room and deciding the others on their rules' overflow buckets.
    /// Out of line, so that the known-keys path stays small. A new key of a rule the
    /// full overflow table has no entry for first frees the entries of rules gone idle
    /// (see [`Inner::reclaim`]), then the request starts again.
    #[inline(never)]
    pub(super) fn check_locked<const N: usize>(
        &self,
        checks: &[Check],
        keys: &[(usize, u64)],
        key_of: &[usize],
        now: u64,
    ) -> Decision {
        self.with_reclaim(now, |may_reclaim| {
            self.check_in_shards::<N>(checks, keys, key_of, now, may_reclaim)
        })
    }

    /// [`Inner::check_locked`] once; `None` (no state written) when `may_reclaim` and a
    /// reclaim pass is due for a new key's rule without an overflow entry. The stages
    /// run in the lock order of the module docs.
    fn check_in_shards<const N: usize>(
        &self,
        checks: &[Check],
        keys: &[(usize, u64)],
        key_of: &[usize],
        now: u64,
        may_reclaim: bool,
    ) -> Option<Decision> {
        let rule_of = |k: usize| rule_of_key(checks, key_of, k);
        let mut shards = self.lock_shards::<N>(keys);
        let new = self.place_new_keys(&mut shards, keys, rule_of, now, may_reclaim)?;
        let plan = Plan::<N>::new(keys.len(), new.overflowing, rule_of);
        let (mut held, mut states) = self.lock_held_keys(&shards, keys, new.overflowing, rule_of);
        self.lock_buckets(&plan, checks, key_of, now, &mut held, &mut states);
        let decided_on = plan.decided_on(key_of);
        let decided_on = &decided_on[..checks.len()];
        let (decision, changed) = decide_keys::<N>(now, checks, decided_on, &mut states);
        self.count_overflowed(decided_on, new.overflowing);
        let missing = store_back(&held, &states);
        let insert = missing & !new.overflowing & changed;
        self.insert_new_keys(&mut shards, keys, insert, &states, &new.tags, now);
        self.unlock_shards(shards);
        Some(decision.finish(checks))
    }

    /// Takes the mutexes of the shards of `keys` in ascending order, the order every
    /// slow path follows, so that two of them never deadlock.
    fn lock_shards<const N: usize>(&self, keys: &[(usize, u64)]) -> Shards<'_, N> {
        let mut ids = [0usize; N];
        for (s, k) in ids.iter_mut().zip(keys) {
            *s = k.0;
        }
        let len = sort_dedup(&mut ids[..keys.len()]);
        // `from_fn` fills in index order: the mutexes are taken ascending.
        let guards = std::array::from_fn(|i| ids[..len].get(i).map(|&s| lock(&self.shards[s])));
        Shards { ids, len, guards }
    }

    /// Grants slots to the keys missing from their shards, shard by shard, lowest key
    /// first; the keys refused a slot overflow. `None` when a reclaim pass is due first.
    fn place_new_keys<const N: usize>(
        &self,
        shards: &mut Shards<'_, N>,
        keys: &[(usize, u64)],
        rule_of: impl Fn(usize) -> u64,
        now: u64,
        may_reclaim: bool,
    ) -> Option<NewKeys<N>> {
        let mut new = NewKeys {
            tags: [0u8; N],
            overflowing: 0,
        };
        let tags = &mut new.tags;
        for (g, &shard) in shards.guards.iter_mut().zip(&shards.ids[..shards.len]) {
            let Some(g) = g.as_mut() else { continue };
            let wanted = missing_in(g, keys, shard).count_ones() as usize;
            if wanted == 0 {
                continue;
            }
            // Making room may drop idle keys, ours included: count them again after it.
            self.make_room(g, now, wanted);
            let (mut missing, mut granted) = (missing_in(g, keys, shard), 0u64);
            while missing != 0 {
                let k = missing.trailing_zeros() as usize;
                missing &= missing - 1;
                tags[k] = self.overflow.tag(rule_of(k));
                if tags[k] == room::NO_TAG && may_reclaim && self.overflow.reclaim_due(now) {
                    return None;
                }
                let same = (0..k)
                    .filter(|&j| granted & (1 << j) != 0 && tags[j] == tags[k])
                    .count();
                if self.grants(g, tags[k], granted.count_ones() as usize, same) {
                    granted |= 1 << k;
                } else {
                    new.overflowing |= 1 << k;
                }
            }
        }
        Some(new)
    }

    /// Locks the slots the tables hold, in key order; a new key granted a slot starts
    /// from its rule's overflow-bucket state (read before any bucket is locked). Returns
    /// the slots held (`None` for new keys) and the states read.
    fn lock_held_keys<'s, const N: usize>(
        &'s self,
        shards: &'s Shards<'_, N>,
        keys: &[(usize, u64)],
        overflowing: u64,
        rule_of: impl Fn(usize) -> u64,
    ) -> ([Option<&'s AtomicU64>; N], [u64; N]) {
        let mut held: [Option<&AtomicU64>; N] = [None; N];
        let mut states = [0u64; N];
        for (k, (slot, state)) in held
            .iter_mut()
            .zip(&mut states)
            .enumerate()
            .take(keys.len())
        {
            let (shard, key) = keys[k];
            *slot = shards.writer(shard).and_then(|g| g.table.find(key));
            match slot {
                Some(s) => *state = lock_key(s).unwrap_or(0),
                None if overflowing & (1 << k) == 0 => {
                    *state = self.overflow.start_state(rule_of(k));
                }
                None => {}
            }
        }
        (held, states)
    }

    /// Locks the overflow buckets after every key slot, in rule order (a global order);
    /// a rule the overflow table has no entry for is decided on a state exhausted for
    /// every check on it, so its new keys are refused.
    fn lock_buckets<'s, const N: usize>(
        &'s self,
        plan: &Plan<N>,
        checks: &[Check],
        key_of: &[usize],
        now: u64,
        held: &mut [Option<&'s AtomicU64>; N],
        states: &mut [u64; N],
    ) {
        for &(rule, k) in plan.buckets() {
            held[k] = self.overflow.slot(rule);
            states[k] = match held[k] {
                Some(s) => lock_key(s).unwrap_or(0),
                None => checks
                    .iter()
                    .zip(key_of)
                    .filter(|(_, &o)| plan.state_of[o] == k)
                    .map(|(c, _)| room::exhausted(now, c))
                    .max()
                    .unwrap_or(now),
            };
        }
    }

    /// Counts the checks decided on overflow buckets, for [`EvictionStats::overflowed`].
    ///
    /// [`EvictionStats::overflowed`]: super::EvictionStats::overflowed
    fn count_overflowed(&self, decided_on: &[usize], overflowing: u64) {
        let overflowed = decided_on
            .iter()
            .filter(|&&k| overflowing & (1 << k) != 0)
            .count();
        if overflowed > 0 {
            self.overflowed
                .fetch_add(overflowed as u64, Ordering::Relaxed);
        }
    }

    /// Inserts the keys in the mask `insert` (new, granted a slot, state changed). Called
    /// with no key lock held: inserting may rebuild a shard, which waits for key locks.
    fn insert_new_keys<const N: usize>(
        &self,
        shards: &mut Shards<'_, N>,
        keys: &[(usize, u64)],
        insert: u64,
        states: &[u64; N],
        tags: &[u8; N],
        now: u64,
    ) {
        for (k, &(shard, key)) in keys.iter().enumerate() {
            if insert & (1 << k) != 0 {
                if let Some(g) = shards.writer_mut(shard) {
                    self.insert_new(g, key, states[k], tags[k], now);
                }
            }
        }
    }

    /// Releases the shard mutexes, then points this thread's view at each shard's current
    /// table, so that the next request on these keys takes the known-keys path.
    fn unlock_shards<const N: usize>(&self, shards: Shards<'_, N>) {
        let tables: [Option<Arc<Table>>; N] =
            std::array::from_fn(|i| shards.guards[i].as_ref().map(|g| Arc::clone(&g.table)));
        let Shards { ids, len, guards } = shards;
        drop(guards);
        for (&shard, table) in ids[..len].iter().zip(tables) {
            if let Some(table) = table {
                self.refresh_view(shard, table);
            }
        }
    }
}

/// The shard mutexes a slow-path request holds: its distinct shards, ascending (the
/// lock order), each with its guard at the same index.
struct Shards<'a, const N: usize> {
    ids: [usize; N],
    len: usize,
    guards: [Option<MutexGuard<'a, Writer>>; N],
}

impl<const N: usize> Shards<'_, N> {
    /// Where the guard of `shard` (one of the request's shards) is.
    fn index(&self, shard: usize) -> usize {
        self.ids[..self.len].binary_search(&shard).unwrap_or(0)
    }

    /// The locked writer of `shard`.
    fn writer(&self, shard: usize) -> Option<&Writer> {
        self.guards[self.index(shard)].as_deref()
    }

    /// The locked writer of `shard`, to insert into.
    fn writer_mut(&mut self, shard: usize) -> Option<&mut Writer> {
        let i = self.index(shard);
        self.guards[i].as_deref_mut()
    }
}

/// The new keys of a slow-path request (missing from their shard's table).
struct NewKeys<const N: usize> {
    /// The overflow-table tag of each new key's rule (kept with the key on insert).
    tags: [u8; N],
    /// The new keys refused a slot: decided on their rule's overflow bucket.
    overflowing: u64,
}

/// Which state each distinct key is decided on: its own or, overflowing, the overflow
/// bucket of its rule, shared by the overflowing keys of that rule.
struct Plan<const N: usize> {
    /// The distinct key whose state slot each distinct key is decided on.
    state_of: [usize; N],
    /// (rule, first overflowing key of it), sorted: the buckets' lock order.
    buckets: [(u64, usize); N],
    n_buckets: usize,
}

impl<const N: usize> Plan<N> {
    /// The plan for `n_keys` distinct keys of which the mask `overflowing` overflow; each
    /// rule's bucket is read and stored in the slot of its first overflowing key.
    fn new(n_keys: usize, overflowing: u64, rule_of: impl Fn(usize) -> u64) -> Plan<N> {
        let mut state_of: [usize; N] = std::array::from_fn(|k| k);
        let mut buckets: [(u64, usize); N] = [(0, 0); N];
        let mut n_buckets = 0;
        for k in (0..n_keys).filter(|&k| overflowing & (1 << k) != 0) {
            let rule = rule_of(k);
            match buckets[..n_buckets].iter().find(|b| b.0 == rule) {
                Some(&(_, first)) => state_of[k] = first,
                None => {
                    buckets[n_buckets] = (rule, k);
                    n_buckets += 1;
                }
            }
        }
        buckets[..n_buckets].sort_unstable();
        Plan {
            state_of,
            buckets,
            n_buckets,
        }
    }

    /// The overflow buckets, in lock order.
    fn buckets(&self) -> &[(u64, usize)] {
        &self.buckets[..self.n_buckets]
    }

    /// The state slot each check is decided on (check `i` reads `key_of[i]`'s plan).
    fn decided_on(&self, key_of: &[usize]) -> [usize; N] {
        let mut decided_on = [0usize; N];
        for (d, &k) in decided_on.iter_mut().zip(key_of) {
            *d = self.state_of[k];
        }
        decided_on
    }
}

/// The mask of `keys` in `shard` that its table lacks.
fn missing_in(w: &Writer, keys: &[(usize, u64)], shard: usize) -> u64 {
    let mut mask = 0u64;
    for (k, &(s, key)) in keys.iter().enumerate() {
        if s == shard && w.table.find(key).is_none() {
            mask |= 1 << k;
        }
    }
    mask
}

/// The rule of distinct key `k`: that of the first check reading it.
fn rule_of_key(checks: &[Check], key_of: &[usize], k: usize) -> u64 {
    checks[key_of.iter().position(|&o| o == k).unwrap_or(0)].rule
}

/// Stores every held state back, clearing its lock bit (releasing the key); returns the
/// mask of the states with no slot held (new keys, buckets without an entry).
fn store_back(held: &[Option<&AtomicU64>], states: &[u64]) -> u64 {
    let mut missing = 0u64;
    for (k, (slot, &state)) in held.iter().zip(states).enumerate() {
        match slot {
            Some(s) => s.store(state, Ordering::Release),
            None => missing |= 1 << k,
        }
    }
    missing
}
