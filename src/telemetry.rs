//! Metrics (feature `metrics`): what the layers report through the
//! [`metrics`](https://docs.rs/metrics) facade, to whichever recorder the application
//! installs (Prometheus with `metrics-exporter-prometheus`, OpenTelemetry, StatsD...).
//!
//! Without the feature nothing here is compiled into the layers: every hook is an empty
//! `#[inline]` function and the handles are zero-sized.
//!
//! **Install the recorder before building the layers.** A
//! [`RateLimitLayer`](crate::RateLimitLayer) resolves its per-rule counters once, when it
//! is built (so a request costs an atomic add per metric, not a registry lookup); before a
//! recorder is installed the facade hands out no-op handles, and a layer built then reports
//! nothing for its lifetime. (The client layers' metrics are resolved per event and reach
//! a recorder installed at any time.)
//!
//! # Metrics
//!
//! Names follow Prometheus conventions (`_total` counters, `_seconds` histograms); labels
//! are low-cardinality: rule names (at most 64 per layer), fixed outcome, layer and reason
//! values, usage quota names, and the monitor's endpoints.
//!
//! | name | type | labels | meaning |
//! | --- | --- | --- | --- |
//! | `tower_throttle_requests_total` | counter | `rule`, `outcome` = `admitted` \| `limited` \| `shadow_limited` \| `missing_key` | server mode: per matched rule, requests admitted, refused by it, that its shadow limit would have refused, and in which its key was missing (counted whatever the rule then did: shared bucket, skip or refusal) |
//! | `tower_throttle_exempted_total` | counter | | server mode: requests that matched an exempt route |
//! | `tower_throttle_bad_paths_total` | counter | | server mode: requests refused with `400` because their path has no canonical form |
//! | `tower_throttle_store_errors_total` | counter | | server mode: failed store calls |
//! | `tower_throttle_store_duration_seconds` | histogram | | server mode: time of one store decision (answered or failed) |
//! | `tower_throttle_store_failing` | gauge | | server mode: 1 while the store fails (the layer follows its `StoreFailure` policy), 0 once it answers again |
//! | `tower_throttle_redis_fallback` | gauge | | Redis store: 1 while Redis is lost and requests are decided without it, 0 once it is back |
//! | `tower_throttle_client_retries_total` | counter | `layer` = `retry_after` \| `backoff`, `reason` = `status` \| `pushback` \| `connection` \| `predicate` | retries scheduled: for a listed status (HTTP or gRPC code), a gRPC pushback, a request never sent or timed out, a `retry_if` or `retry_if_body` predicate |
//! | `tower_throttle_client_give_ups_total` | counter | `layer`, `reason` = `exhausted` \| `budget` \| `wait_too_long` | retries abandoned: attempts (or `max_elapsed`) used up, retry budget empty, server's wait over `max_wait` |
//! | `tower_throttle_gate_waits_total` | counter | | requests the Retry-After gate held back before sending |
//! | `tower_throttle_gate_wait_seconds` | histogram | | how long the gate held each of them |
//! | `tower_throttle_pacing_wait_seconds` | histogram | | pacing: time from a request entering the layer until it is sent (permits, limits, usage, adaptive slot) |
//! | `tower_throttle_usage_used` | gauge | `quota` | pacing: units used of a usage quota (lifetime) |
//! | `tower_throttle_monitor_remaining` | gauge | `endpoint` | header monitor: `remaining` of the endpoint's last response that carried one |
//!
//! The names are the constants of this module.

/// Counter `tower_throttle_requests_total{rule, outcome}`.
pub const REQUESTS_TOTAL: &str = "tower_throttle_requests_total";
/// Counter `tower_throttle_exempted_total`.
pub const EXEMPTED_TOTAL: &str = "tower_throttle_exempted_total";
/// Counter `tower_throttle_bad_paths_total`.
pub const BAD_PATHS_TOTAL: &str = "tower_throttle_bad_paths_total";
/// Counter `tower_throttle_store_errors_total`.
pub const STORE_ERRORS_TOTAL: &str = "tower_throttle_store_errors_total";
/// Histogram `tower_throttle_store_duration_seconds`.
pub const STORE_DURATION_SECONDS: &str = "tower_throttle_store_duration_seconds";
/// Gauge `tower_throttle_store_failing` (0 or 1).
pub const STORE_FAILING: &str = "tower_throttle_store_failing";
/// Gauge `tower_throttle_redis_fallback` (0 or 1).
pub const REDIS_FALLBACK: &str = "tower_throttle_redis_fallback";
/// Counter `tower_throttle_client_retries_total{layer, reason}`.
pub const CLIENT_RETRIES_TOTAL: &str = "tower_throttle_client_retries_total";
/// Counter `tower_throttle_client_give_ups_total{layer, reason}`.
pub const CLIENT_GIVE_UPS_TOTAL: &str = "tower_throttle_client_give_ups_total";
/// Counter `tower_throttle_gate_waits_total`.
pub const GATE_WAITS_TOTAL: &str = "tower_throttle_gate_waits_total";
/// Histogram `tower_throttle_gate_wait_seconds`.
pub const GATE_WAIT_SECONDS: &str = "tower_throttle_gate_wait_seconds";
/// Histogram `tower_throttle_pacing_wait_seconds`.
pub const PACING_WAIT_SECONDS: &str = "tower_throttle_pacing_wait_seconds";
/// Gauge `tower_throttle_usage_used{quota}`.
pub const USAGE_USED: &str = "tower_throttle_usage_used";
/// Gauge `tower_throttle_monitor_remaining{endpoint}`.
pub const MONITOR_REMAINING: &str = "tower_throttle_monitor_remaining";

mod client;
mod server;

pub(crate) use client::{gate_wait, gave_up, monitor_remaining, retried, usage_used};
#[cfg(feature = "redis")]
pub(crate) use server::redis_fallback;
pub(crate) use server::ServerMetrics;

/// Starts timing when the feature is on (tokio's clock, so paused time reads exactly);
/// zero-sized otherwise.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Timer {
    #[cfg(feature = "metrics")]
    start: tokio::time::Instant,
}

impl Timer {
    #[inline]
    pub(crate) fn start() -> Timer {
        Timer {
            #[cfg(feature = "metrics")]
            start: tokio::time::Instant::now(),
        }
    }

    /// Records the time since [`Timer::start`] as a pacing wait.
    #[inline]
    pub(crate) fn pacing_wait(self) {
        #[cfg(feature = "metrics")]
        metrics::histogram!(PACING_WAIT_SECONDS).record(self.start.elapsed());
    }
}
