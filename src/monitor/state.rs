//! What the monitor keeps: per-endpoint snapshots in a bounded table, and the recording
//! of one response.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, SystemTime};

use http::{HeaderMap, StatusCode};
use tokio::time::Instant;

use super::event::{is_refusal, Before, MonitorEvent, Threshold};
use super::handle::Counters;
use crate::client::Endpoint;
use crate::headers::ratelimit::{
    parse_rate_limit_at, Dialect, Dimension, RateLimitInfo, RateLimitPolicy, RateLimitState, SfMemo,
};
use crate::headers::{grpc_status, GrpcCode};
use crate::telemetry;

/// Turns a request head into an endpoint key.
pub(crate) type KeyFn = Arc<dyn Fn(&http::request::Parts) -> String + Send + Sync>;
/// Receives every [`MonitorEvent`].
pub(crate) type EventFn = Arc<dyn Fn(&MonitorEvent) + Send + Sync>;

/// A request's endpoint key, as taken before sending: built by the user's function, or
/// the parts [`default_key`](super::default_key) reads, built only when a response needs it.
pub(crate) enum PendingKey {
    Built(String),
    Default {
        uri: http::Uri,
        /// The `Host` header, kept only for a URI without authority.
        host: Option<http::HeaderValue>,
    },
}

impl PendingKey {
    fn to_key(&self) -> String {
        match self {
            PendingKey::Built(key) => key.clone(),
            PendingKey::Default { uri, host } => Endpoint::new(uri, host.as_ref()).key(),
        }
    }

    /// Writes the key into `out`, replacing what it held (no allocation once `out` is
    /// large enough).
    fn write_to(&self, out: &mut String) {
        out.clear();
        match self {
            PendingKey::Built(key) => out.push_str(key),
            PendingKey::Default { uri, host } => Endpoint::new(uri, host.as_ref()).write_to(out),
        }
    }
}

/// The latest rate-limit state the server reported for one endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EndpointSnapshot {
    /// The request quota, if the server sent one.
    pub limit: Option<u64>,
    /// Requests left in the current window, if the server said.
    pub remaining: Option<u64>,
    /// When the quota resets: from the reset field, or from `Retry-After` when the
    /// response had no reset field; at most the monitor's
    /// [`reset_cap`](super::HeaderMonitorLayerBuilder::reset_cap) away.
    pub reset_at: Option<Instant>,
    /// `true` when the server sent a reset or retry-after longer than the cap (the
    /// snapshot holds the cap instead): see [`RateLimitInfo::capped`].
    pub capped: bool,
    /// Quota policies (IETF `RateLimit-Policy`).
    pub policies: Vec<RateLimitPolicy>,
    /// Per-policy states (IETF `RateLimit`).
    pub states: Vec<RateLimitState>,
    /// The header dialect the server used.
    pub dialect: Option<Dialect>,
    /// When the response was received.
    pub last_seen: Instant,
    /// The response's status (`200` for a gRPC call's trailers-only refusal: see
    /// [`last_grpc_status`](Self::last_grpc_status)).
    pub last_status: StatusCode,
    /// The gRPC status code in the response's headers (a trailers-only response), if any.
    pub last_grpc_status: Option<GrpcCode>,
    /// Every limit dimension of the reading: see [`dimensions`](Self::dimensions).
    pub(crate) dimensions: Vec<Dimension>,
}

impl EndpointSnapshot {
    /// Every limit dimension the server reported ([`RateLimitInfo::dimensions`]: requests
    /// and tokens, say); [`limit`](Self::limit), [`remaining`](Self::remaining) and
    /// [`reset_at`](Self::reset_at) are those of the most restrictive.
    ///
    /// ```
    /// use tower_throttle::monitor::EndpointSnapshot;
    /// fn tokens_left(snapshot: &EndpointSnapshot) -> Option<u64> {
    ///     let tokens = snapshot.dimensions().iter().find(|d| d.name == "tokens")?;
    ///     tokens.remaining
    /// }
    /// ```
    pub fn dimensions(&self) -> &[Dimension] {
        &self.dimensions
    }

    /// Time left until [`reset_at`](Self::reset_at) (zero once it has passed).
    pub fn reset_after(&self) -> Option<Duration> {
        self.reset_at
            .map(|at| at.saturating_duration_since(Instant::now()))
    }
}

/// Snapshots keyed by endpoint, evicting the least recently seen beyond `max`.
pub(crate) struct Table {
    max: usize,
    /// Next recency stamp; strictly increasing, unlike instants under paused time.
    next: u64,
    entries: HashMap<Arc<str>, (u64, EndpointSnapshot)>,
    by_recency: BTreeMap<u64, Arc<str>>,
    /// Reused to look up an endpoint's key without allocating it.
    scratch: String,
}

impl Table {
    pub(crate) fn new(max: usize) -> Self {
        Table {
            max,
            next: 0,
            entries: HashMap::new(),
            by_recency: BTreeMap::new(),
            scratch: String::new(),
        }
    }

    pub(crate) fn get(&self, key: &str) -> Option<EndpointSnapshot> {
        self.entries.get(key).map(|(_, s)| s.clone())
    }

    pub(crate) fn all(&self) -> Vec<(String, EndpointSnapshot)> {
        self.entries
            .iter()
            .map(|(k, (_, s))| (k.to_string(), s.clone()))
            .collect()
    }

    /// Replaces the snapshot of `key` (the key is copied only for a new endpoint), and
    /// gives back the snapshot it replaced, if any.
    fn upsert(&mut self, key: &str, snapshot: EndpointSnapshot) -> Option<EndpointSnapshot> {
        if self.max == 0 {
            return None;
        }
        let stamp = self.next;
        if let Some((old, slot)) = self.entries.get_mut(key) {
            let replaced = std::mem::replace(slot, snapshot);
            if *old == stamp.wrapping_sub(1) {
                // Already the most recent: the recency order stays as it is.
                return Some(replaced);
            }
            self.next = self.next.wrapping_add(1);
            let k = self
                .by_recency
                .remove(old)
                .unwrap_or_else(|| Arc::from(key));
            *old = stamp;
            self.by_recency.insert(stamp, k);
            return Some(replaced);
        }
        self.next = self.next.wrapping_add(1);
        while self.entries.len() >= self.max {
            let Some((_, oldest)) = self.by_recency.pop_first() else {
                break;
            };
            self.entries.remove(&oldest);
        }
        let key: Arc<str> = Arc::from(key);
        self.by_recency.insert(stamp, Arc::clone(&key));
        self.entries.insert(key, (stamp, snapshot));
        None
    }
}

/// Configuration and state shared by the layer, its services, futures and handles.
pub(crate) struct Shared {
    pub(crate) threshold: Threshold,
    /// `None`: [`default_key`](super::default_key).
    pub(crate) key: Option<KeyFn>,
    pub(crate) on_event: Option<EventFn>,
    /// Longest reset or retry-after believed.
    pub(crate) reset_cap: Duration,
    pub(crate) counters: Counters,
    table: Mutex<Table>,
    /// The last `RateLimit-Policy` / `RateLimit` texts and their readings.
    memo: Mutex<SfMemo>,
}

impl Shared {
    pub(crate) fn new(
        threshold: Threshold,
        key: Option<KeyFn>,
        max_endpoints: usize,
        on_event: Option<EventFn>,
        reset_cap: Duration,
    ) -> Self {
        Shared {
            threshold,
            key,
            on_event,
            reset_cap,
            counters: Counters::default(),
            table: Mutex::new(Table::new(max_endpoints)),
            memo: Mutex::new(SfMemo::default()),
        }
    }

    pub(crate) fn table(&self) -> MutexGuard<'_, Table> {
        self.table.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Reads one response's rate-limit headers: counts, updates the endpoint's snapshot
    /// (only when there is rate-limit information), then reports events.
    pub(crate) fn record(&self, endpoint: PendingKey, status: StatusCode, headers: &HeaderMap) {
        Counters::add(&self.counters.responses, 1);
        let answer = Answer {
            status,
            grpc: grpc_status(headers),
        };
        // The memo stays locked (if it was free) until the replaced snapshot's vectors are
        // given back to it: one lock for the reading and the giving back.
        let Some((info, mut memo)) = self.read(answer, headers) else {
            return;
        };
        let mut key = LazyKey {
            pending: &endpoint,
            built: None,
        };
        let events = self.events(&info, answer, &mut key);
        telemetry::monitor_remaining(info.remaining, || key.get());
        let mut before = Before::default();
        if !info.is_empty() {
            let replaced = self.keep(info, answer, &key);
            if let Some(old) = &replaced {
                before = self.before(old);
            }
            // Its vectors become the storage of the next remembered reading's copy.
            if let (Some(old), Some(memo)) = (replaced, memo.as_deref_mut()) {
                memo.recycle(old.policies, old.states);
            }
        }
        drop(memo);
        // Outside the locks: a callback may read the handle.
        self.report(&events, before);
    }

    /// What an endpoint's previous snapshot says, for the level of the next log line.
    fn before(&self, old: &EndpointSnapshot) -> Before {
        Before {
            low: old
                .remaining
                .is_some_and(|r| r == 0 || self.threshold.is_low(r, old.limit)),
            refused: is_refusal(old.last_status, old.last_grpc_status),
        }
    }

    /// The response's rate-limit reading, or `None` when there is nothing to count, keep or
    /// report (then the endpoint key is never built).
    fn read<'m>(
        &'m self,
        answer: Answer,
        headers: &HeaderMap,
    ) -> Option<(RateLimitInfo, Option<MutexGuard<'m, SfMemo>>)> {
        let hit = answer.is_hit();
        let read = parse_rate_limit_at(headers, SystemTime::now, Some(&self.memo), self.reset_cap);
        let (info, memo) = match read {
            Some(read) => read,
            // No rate-limit field: a hit is still reported.
            None if hit => (RateLimitInfo::default(), None),
            None => return None,
        };
        let nothing = info.is_empty() && info.malformed == 0 && !hit;
        (!nothing).then_some((info, memo))
    }

    /// Counts the response's events and lists them: at most one `Malformed`, then at most
    /// one `Hit` or `LowRemaining`.
    fn events(
        &self,
        info: &RateLimitInfo,
        answer: Answer,
        key: &mut LazyKey<'_>,
    ) -> Vec<MonitorEvent> {
        let c = &self.counters;
        let mut events = Vec::new();
        if info.malformed > 0 {
            Counters::add(&c.malformed, u64::from(info.malformed));
            events.push(MonitorEvent::Malformed {
                endpoint: key.get(),
                count: info.malformed,
            });
        }
        if answer.is_hit() || info.remaining == Some(0) {
            Counters::add(&c.hits, 1);
            events.push(MonitorEvent::Hit {
                endpoint: key.get(),
                status: answer.status,
                grpc_status: answer.grpc,
                remaining: info.remaining,
            });
        } else if let Some(remaining) = info.remaining {
            if self.threshold.is_low(remaining, info.limit) {
                Counters::add(&c.warnings, 1);
                events.push(MonitorEvent::LowRemaining {
                    endpoint: key.get(),
                    remaining,
                    limit: info.limit,
                });
            }
        }
        events
    }

    /// Replaces the endpoint's snapshot with this reading; gives back the one replaced.
    fn keep(
        &self,
        info: RateLimitInfo,
        answer: Answer,
        key: &LazyKey<'_>,
    ) -> Option<EndpointSnapshot> {
        let now = Instant::now();
        let reset_at = info
            .reset_after
            .or(info.retry_after)
            .and_then(|d| now.checked_add(d));
        let snapshot = EndpointSnapshot {
            limit: info.limit,
            remaining: info.remaining,
            reset_at,
            capped: info.capped,
            policies: info.policies,
            states: info.states,
            dialect: info.dialect,
            dimensions: info.dimensions,
            last_seen: now,
            last_status: answer.status,
            last_grpc_status: answer.grpc,
        };
        let mut table = self.table();
        match &key.built {
            Some(built) => table.upsert(built, snapshot),
            None => {
                // The key is looked up in a reused buffer, not allocated.
                let mut buf = std::mem::take(&mut table.scratch);
                key.pending.write_to(&mut buf);
                let replaced = table.upsert(&buf, snapshot);
                table.scratch = buf;
                replaced
            }
        }
    }

    /// Sends the events to `tracing` (at a level that `before` picks) and to the callback
    /// (every event).
    fn report(&self, events: &[MonitorEvent], before: Before) {
        for event in events {
            event.trace(before);
            if let Some(f) = &self.on_event {
                f(event);
            }
        }
    }
}

/// A response's status: HTTP's, and gRPC's when its headers carry one.
#[derive(Debug, Clone, Copy)]
struct Answer {
    status: StatusCode,
    grpc: Option<GrpcCode>,
}

impl Answer {
    /// A refusal for the rate limit: `429`, or a gRPC `RESOURCE_EXHAUSTED`.
    fn is_hit(self) -> bool {
        is_refusal(self.status, self.grpc)
    }
}

/// A response's endpoint key, built as a `String` only when an event needs one.
struct LazyKey<'a> {
    pending: &'a PendingKey,
    built: Option<String>,
}

impl LazyKey<'_> {
    fn get(&mut self) -> String {
        self.built
            .get_or_insert_with(|| self.pending.to_key())
            .clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snap(remaining: u64) -> EndpointSnapshot {
        EndpointSnapshot {
            limit: Some(10),
            remaining: Some(remaining),
            reset_at: None,
            capped: false,
            policies: Vec::new(),
            states: Vec::new(),
            dialect: None,
            last_seen: Instant::now(),
            last_status: StatusCode::OK,
            last_grpc_status: None,
            dimensions: Vec::new(),
        }
    }

    #[test]
    fn table_evicts_least_recently_updated() {
        let mut t = Table::new(2);
        t.upsert("a", snap(1));
        t.upsert("b", snap(2));
        t.upsert("a", snap(3)); // a is now the most recent
        t.upsert("c", snap(4)); // evicts b
        assert_eq!(t.get("a").and_then(|s| s.remaining), Some(3));
        assert!(t.get("b").is_none());
        assert_eq!(t.get("c").and_then(|s| s.remaining), Some(4));
        assert_eq!((t.entries.len(), t.by_recency.len()), (2, 2));
    }

    #[test]
    fn repeated_updates_of_the_most_recent_keep_the_order() {
        let mut t = Table::new(2);
        for (key, remaining) in [("a", 1), ("b", 2), ("b", 3), ("b", 4), ("a", 5)] {
            t.upsert(key, snap(remaining));
        }
        t.upsert("c", snap(6)); // b is now the least recent
        assert!(t.get("b").is_none());
        assert_eq!(t.get("a").and_then(|s| s.remaining), Some(5));
        t.upsert("c", snap(7));
        t.upsert("d", snap(8)); // evicts a
        assert!(t.get("a").is_none());
        assert_eq!(t.get("c").and_then(|s| s.remaining), Some(7));
        assert_eq!((t.entries.len(), t.by_recency.len()), (2, 2));
    }

    #[test]
    fn pending_key_written_to_a_buffer_is_the_key() {
        let uri: http::Uri = "https://api.example.com/v1/users?page=2".parse().unwrap();
        let mut out = String::from("stale");
        PendingKey::Default { uri, host: None }.write_to(&mut out);
        assert_eq!(out, "api.example.com/v1/users");
        PendingKey::Built("custom".into()).write_to(&mut out);
        assert_eq!(out, "custom");
    }

    #[test]
    fn pending_default_key_is_the_default_key() {
        let heads = [
            http::Request::get("https://api.example.com/v1/users?page=2").body(()),
            http::Request::get("/v1/users?page=2")
                .header("host", "api.example.com")
                .body(()),
            http::Request::get("/v1/users").body(()),
        ];
        for req in heads {
            let (head, _) = req.unwrap().into_parts();
            let pending = PendingKey::Default {
                uri: head.uri.clone(),
                host: head.headers.get(http::header::HOST).cloned(),
            };
            assert_eq!(pending.to_key(), super::super::default_key(&head));
        }
    }

    #[test]
    fn zero_capacity_keeps_nothing() {
        let mut t = Table::new(0);
        t.upsert("a", snap(1));
        assert!(t.get("a").is_none());
    }
}
