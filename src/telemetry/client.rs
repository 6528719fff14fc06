//! The client layers' hooks. Their events are rare (a retry, a give-up, a gate block) or
//! per request in layers that already wait (pacing), so they resolve their handle through
//! the recorder per event.

use std::time::Duration;

use http::StatusCode;

#[cfg(feature = "metrics")]
use super::{
    CLIENT_GIVE_UPS_TOTAL, CLIENT_RETRIES_TOTAL, GATE_WAITS_TOTAL, GATE_WAIT_SECONDS,
    MONITOR_REMAINING, USAGE_USED,
};
use crate::client::retry::Outcome;

/// A retry scheduled by `layer` for `outcome` (`hint`: the server's wait, if any;
/// `listed`: the statuses the layer retries, so any other was retried by a predicate:
/// `retry_if` or `retry_if_body`).
#[inline]
pub(crate) fn retried(
    _layer: &'static str,
    _outcome: &Outcome<'_>,
    _hint: Option<Duration>,
    _listed: &[StatusCode],
) {
    #[cfg(feature = "metrics")]
    {
        let reason = match _outcome {
            Outcome::Error(_) => "connection",
            Outcome::Response { headers, .. }
                if _hint.is_some() && headers.contains_key("grpc-status") =>
            {
                "pushback"
            }
            Outcome::Response { headers, .. } if headers.contains_key("grpc-status") => "status",
            Outcome::Response { status, .. } if _listed.contains(status) => "status",
            Outcome::Response { .. } => "predicate",
        };
        metrics::counter!(CLIENT_RETRIES_TOTAL, "layer" => _layer, "reason" => reason).increment(1);
    }
}

/// `layer` gave up retrying: `reason` is `exhausted`, `budget` or `wait_too_long`.
#[inline]
pub(crate) fn gave_up(_layer: &'static str, _reason: &'static str) {
    #[cfg(feature = "metrics")]
    metrics::counter!(CLIENT_GIVE_UPS_TOTAL, "layer" => _layer, "reason" => _reason).increment(1);
}

/// The Retry-After gate holds a request for `wait`; returns `wait`.
#[inline]
pub(crate) fn gate_wait(wait: Duration) -> Duration {
    #[cfg(feature = "metrics")]
    {
        metrics::counter!(GATE_WAITS_TOTAL).increment(1);
        metrics::histogram!(GATE_WAIT_SECONDS).record(wait);
    }
    wait
}

/// Usage quota `quota` has `used` units used.
#[inline]
pub(crate) fn usage_used(_quota: &str, _used: u64) {
    #[cfg(feature = "metrics")]
    metrics::gauge!(USAGE_USED, "quota" => _quota.to_owned()).set(_used as f64);
}

/// The monitor read `remaining` for the endpoint `endpoint()` names (built only when
/// there is a value to report and the feature is on).
#[inline]
pub(crate) fn monitor_remaining(_remaining: Option<u64>, _endpoint: impl FnOnce() -> String) {
    #[cfg(feature = "metrics")]
    if let Some(remaining) = _remaining {
        metrics::gauge!(MONITOR_REMAINING, "endpoint" => _endpoint()).set(remaining as f64);
    }
}
