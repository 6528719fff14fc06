//! Adaptive pacing (opt-in): a per-endpoint send rate that follows the server's signals.
//!
//! - **Spreads the remaining quota**: when a response says `remaining` requests are left
//!   until the quota resets in `reset` (any dialect the header module reads), the rate
//!   becomes `remaining / reset`, so the quota lasts until it refills.
//! - **AIMD on refusals**: a refusal multiplies the rate by `decrease` (default ½) and
//!   holds the endpoint until the server's delay; successes without rate-limit headers
//!   raise it by `increase_per_second` for every second since the last change, up to the
//!   maximum. A refusal is an HTTP 429, or a gRPC `RESOURCE_EXHAUSTED` in the headers of a
//!   trailers-only response (how a rate-limited gRPC call is answered, with HTTP 200). The
//!   delay of a gRPC response is its `grpc-retry-pushback-ms` (gRFC A6), and without one
//!   its `Retry-After`-style headers (as tower_governor sends); a negative or malformed
//!   pushback ("do not retry") holds nothing, the rate still drops. Of an HTTP response
//!   it is the `Retry-After`-style headers (and the pushback last, as the header module
//!   reads them). Other gRPC codes (`UNAVAILABLE` too) are no rate-limit signal, as a 503
//!   is none.
//!
//! - **Learns the server's limit at the first response.** The first request to an
//!   endpoint goes alone (a probe); the requests behind it wait for its answer. When that
//!   answer states the limit (`RateLimit-Policy` with a window, or `X-RateLimit-Limit` with
//!   `X-RateLimit-Reset`: see the `learned` module), the endpoint is paced from then on by a
//!   local copy of the server's bucket: the burst the server says is left goes at once, then
//!   one send per the server's interval, and every later answer corrects it (never
//!   upwards past what the server said). There is no ramp from a guessed start. When the
//!   answer states no limit, AIMD from the initial rate applies, as below; when the probe
//!   fails without an answer, the next request probes again.
//!
//! Without a learned limit, sends are reserved in arrival order, one every `1 / rate`.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, SystemTime};

use http::{HeaderMap, StatusCode};
use tokio::sync::Notify;
use tokio::time::Instant;

use super::learned::{Learned, Stated};
use crate::headers::ratelimit::{parse_rate_limit, RateLimitInfo};
use crate::headers::{grpc_pushback, grpc_status, GrpcCode, GrpcPushback};

/// Most endpoints tracked; the least recently used is dropped beyond it.
const MAX_ENDPOINTS: usize = 10_000;

/// AIMD settings of adaptive pacing; validated by [`Aimd::new`] and its setters.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Aimd {
    initial_per_second: f64,
    min_per_second: f64,
    max_per_second: f64,
    decrease: f64,
    increase_per_second: f64,
}

/// Why an [`Aimd`] setting was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum AdaptiveError {
    /// A rate was not finite and above zero, or the bounds do not contain the start rate.
    BadRate,
    /// The decrease factor was not in (0, 1).
    BadDecrease,
    /// The increase was not finite and non-negative.
    BadIncrease,
}

impl fmt::Display for AdaptiveError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            AdaptiveError::BadRate => "rates must be finite, above zero, min <= start <= max",
            AdaptiveError::BadDecrease => "the decrease factor must be in (0, 1)",
            AdaptiveError::BadIncrease => "the increase must be finite and not negative",
        })
    }
}

impl std::error::Error for AdaptiveError {}

fn positive(x: f64) -> bool {
    x.is_finite() && x > 0.0
}

impl Aimd {
    /// Starts at `initial_per_second` requests per second, between 0.01 and 10,000 per
    /// second, halving on a refusal (a 429 or a gRPC `RESOURCE_EXHAUSTED`) and recovering
    /// by 1 per second each second.
    pub fn new(initial_per_second: f64) -> Result<Aimd, AdaptiveError> {
        Aimd {
            initial_per_second,
            min_per_second: 0.01,
            max_per_second: 10_000.0,
            decrease: 0.5,
            increase_per_second: 1.0,
        }
        .validated()
    }

    /// The slowest and fastest rates, in requests per second.
    pub fn bounds(self, min_per_second: f64, max_per_second: f64) -> Result<Aimd, AdaptiveError> {
        Aimd {
            min_per_second,
            max_per_second,
            ..self
        }
        .validated()
    }

    /// The factor applied to the rate on a refusal (default 0.5).
    pub fn decrease(self, factor: f64) -> Result<Aimd, AdaptiveError> {
        Aimd {
            decrease: factor,
            ..self
        }
        .validated()
    }

    /// Requests per second added per second of success (default 1).
    pub fn increase_per_second(self, step: f64) -> Result<Aimd, AdaptiveError> {
        Aimd {
            increase_per_second: step,
            ..self
        }
        .validated()
    }

    fn validated(self) -> Result<Aimd, AdaptiveError> {
        let rates_ok = positive(self.initial_per_second)
            && positive(self.min_per_second)
            && positive(self.max_per_second)
            && self.min_per_second <= self.initial_per_second
            && self.initial_per_second <= self.max_per_second;
        if !rates_ok {
            return Err(AdaptiveError::BadRate);
        }
        if !(self.decrease > 0.0 && self.decrease < 1.0) {
            return Err(AdaptiveError::BadDecrease);
        }
        if !(self.increase_per_second.is_finite() && self.increase_per_second >= 0.0) {
            return Err(AdaptiveError::BadIncrease);
        }
        Ok(self)
    }

    fn clamp(&self, rate: f64) -> f64 {
        if rate.is_finite() {
            rate.clamp(self.min_per_second, self.max_per_second)
        } else {
            self.max_per_second
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct EndpointRate {
    per_second: f64,
    next_send: Instant,
    changed: Instant,
    used: Instant,
    probe: Probe,
    /// The server's limit, once a response stated it.
    learned: Option<Learned>,
}

/// Where the first request to an endpoint stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Probe {
    /// Nothing sent yet (or the probe failed without an answer): the next request probes.
    Idle,
    /// The probe is out: the others wait for its answer.
    InFlight,
    /// An answer came: pace by what it said.
    Answered,
}

/// When a request may go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Slot {
    /// At this instant.
    At(Instant),
    /// After the probe's answer: ask again then.
    AfterProbe,
}

/// Per-endpoint adaptive rates of one pacing layer.
#[derive(Debug)]
pub(crate) struct AdaptiveRates {
    config: Aimd,
    endpoints: Mutex<HashMap<String, EndpointRate>>,
    /// Wakes the requests waiting for a probe's answer.
    answered: Notify,
}

impl AdaptiveRates {
    pub(crate) fn new(config: Aimd) -> Self {
        AdaptiveRates {
            config,
            endpoints: Mutex::default(),
            answered: Notify::new(),
        }
    }

    fn with<T>(&self, endpoint: &str, f: impl FnOnce(&Aimd, &mut EndpointRate) -> T) -> T {
        let now = Instant::now();
        let mut map = self
            .endpoints
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if !map.contains_key(endpoint) && map.len() >= MAX_ENDPOINTS {
            if let Some(k) = map
                .iter()
                .min_by_key(|(_, e)| e.used)
                .map(|(k, _)| k.clone())
            {
                map.remove(&k);
            }
        }
        let state = map.entry(endpoint.to_owned()).or_insert(EndpointRate {
            per_second: self.config.initial_per_second,
            next_send: now,
            changed: now,
            used: now,
            probe: Probe::Idle,
            learned: None,
        });
        state.used = now;
        f(&self.config, state)
    }

    /// Reserves the next send slot of `endpoint`: the instant to send at, or
    /// [`Slot::AfterProbe`] while the first request's answer is awaited.
    pub(crate) fn reserve(&self, endpoint: &str) -> Slot {
        let now = Instant::now();
        self.with(endpoint, |_, s| {
            match s.probe {
                Probe::InFlight => return Slot::AfterProbe,
                Probe::Idle => s.probe = Probe::InFlight,
                Probe::Answered => {}
            }
            if let Some(learned) = &mut s.learned {
                return Slot::At(learned.reserve(now));
            }
            let slot = s.next_send.max(now);
            s.next_send = slot + Duration::from_secs_f64(1.0 / s.per_second);
            Slot::At(slot)
        })
    }

    /// Resolves when a probe is answered (or failed); `enable` it before reserving.
    pub(crate) fn answered(&self) -> tokio::sync::futures::Notified<'_> {
        self.answered.notified()
    }

    /// A sent request got no answer: if it was the probe, the next request probes.
    pub(crate) fn failed(&self, endpoint: &str) {
        let reopened = self.with(endpoint, |_, s| {
            let probing = s.probe == Probe::InFlight;
            if probing {
                s.probe = Probe::Idle;
            }
            probing
        });
        if reopened {
            self.answered.notify_waiters();
        }
    }

    /// Learns from a response.
    pub(crate) fn observe(&self, endpoint: &str, status: StatusCode, headers: &HeaderMap) {
        let info = parse_rate_limit(headers, SystemTime::now());
        let now = Instant::now();
        let refusal = refusal(status, headers, || info.retry_after);
        let stated = Stated::of(&info);
        let first = self.with(endpoint, |cfg, s| {
            let first = s.probe != Probe::Answered;
            s.probe = Probe::Answered;
            s.learned = match (s.learned.take(), stated) {
                (Some(mut learned), Some(stated)) => {
                    learned.correct(now, stated);
                    Some(learned)
                }
                (None, Some(stated)) => Some(Learned::new(now, stated)),
                (learned, None) => learned,
            };
            match &mut s.learned {
                Some(learned) => {
                    if let Some(hold) = refusal {
                        learned.refused(now, hold);
                    }
                    s.per_second = learned.per_second();
                    s.changed = now;
                }
                None => aimd(cfg, s, now, refusal, &info, endpoint),
            }
            first
        });
        if first {
            self.answered.notify_waiters();
        }
    }

    /// The current rate of `endpoint`, in requests per second.
    pub(crate) fn rate(&self, endpoint: &str) -> Option<f64> {
        let map = self
            .endpoints
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        map.get(endpoint).map(|s| s.per_second)
    }
}

/// AIMD (no limit learned): a refusal slows down and holds, rate-limit headers spread the
/// remaining quota, other successes speed up.
fn aimd(
    cfg: &Aimd,
    s: &mut EndpointRate,
    now: Instant,
    refusal: Option<Option<Duration>>,
    info: &RateLimitInfo,
    endpoint: &str,
) {
    if let Some(hold) = refusal {
        s.per_second = cfg.clamp(s.per_second * cfg.decrease);
        s.changed = now;
        if let Some(wait) = hold {
            s.next_send = s.next_send.max(now + wait);
        }
        tracing::debug!(
            endpoint,
            per_second = s.per_second,
            "adaptive pacing: refused, slowing down"
        );
        return;
    }
    match (info.remaining, info.reset_after) {
        (Some(remaining), Some(reset)) if !reset.is_zero() => {
            s.per_second = cfg.clamp(remaining as f64 / reset.as_secs_f64());
            s.changed = now;
        }
        (Some(0), _) => {}
        _ => {
            let secs = now.saturating_duration_since(s.changed).as_secs_f64();
            s.per_second = cfg.clamp(s.per_second + cfg.increase_per_second * secs);
            s.changed = now;
        }
    }
}

/// Whether a response is a rate-limit refusal (see the module docs), and if so for how
/// long the server asks to hold the endpoint (`retry_after`: its `Retry-After`-style
/// delay, read only when needed).
fn refusal(
    status: StatusCode,
    headers: &HeaderMap,
    retry_after: impl FnOnce() -> Option<Duration>,
) -> Option<Option<Duration>> {
    match grpc_status(headers) {
        Some(GrpcCode::ResourceExhausted) => Some(match grpc_pushback(headers) {
            GrpcPushback::After(wait) => Some(wait),
            GrpcPushback::DoNotRetry => None,
            GrpcPushback::Absent => retry_after(),
        }),
        _ if status == StatusCode::TOO_MANY_REQUESTS => Some(retry_after()),
        _ => None,
    }
}

#[cfg(test)]
mod tests;
