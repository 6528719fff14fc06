//! [`RetryAfterLayerBuilder`]: every setting of a [`RetryAfterLayer`], validated by
//! [`build`](RetryAfterLayerBuilder::build).

use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http::StatusCode;

use super::gate::EndpointGate;
use super::layer::{LongWait, Progress, RetryAfterLayer, RetryAfterPolicy, Settings};
use crate::client::grpc::GrpcRetryCodes;
use crate::client::Rng;
use crate::headers::GrpcCode;

/// Why a [`RetryAfterLayer`] could not be built.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum RetryAfterConfigError {
    /// With [`LongWait::Fail`], a `default_delay` longer than `max_wait` would fail every
    /// retryable response that carries no guidance.
    DefaultDelayOverMaxWait {
        /// The configured default delay.
        default_delay: Duration,
        /// The configured maximum wait.
        max_wait: Duration,
    },
    /// [`grpc_retry_codes`](RetryAfterLayerBuilder::grpc_retry_codes) listed `OK` or a
    /// code of [`NEVER_RETRIED_GRPC_CODES`](crate::NEVER_RETRIED_GRPC_CODES).
    UnretryableGrpcCode(GrpcCode),
}

impl fmt::Display for RetryAfterConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RetryAfterConfigError::DefaultDelayOverMaxWait {
                default_delay,
                max_wait,
            } => write!(
                f,
                "default_delay {default_delay:?} is longer than max_wait {max_wait:?}"
            ),
            RetryAfterConfigError::UnretryableGrpcCode(code) => {
                write!(f, "gRPC code {code} is never retried")
            }
        }
    }
}

impl std::error::Error for RetryAfterConfigError {}

/// Configures a [`RetryAfterLayer`]; [`build`](Self::build) validates the configuration.
#[derive(Debug)]
pub struct RetryAfterLayerBuilder {
    pub(super) settings: Settings,
    pub(super) gate: bool,
    pub(super) seed: Option<u64>,
}

impl RetryAfterLayerBuilder {
    /// Statuses that carry guidance and are retried (default 429 and 503). Not read for
    /// a response whose headers carry `grpc-status`: see
    /// [`grpc_retry_codes`](Self::grpc_retry_codes).
    pub fn statuses(mut self, statuses: impl IntoIterator<Item = StatusCode>) -> Self {
        self.settings.statuses = statuses.into_iter().collect();
        self
    }

    /// gRPC status codes retried when a response's headers carry them (a trailers-only
    /// response, HTTP 200), after the server's `grpc-retry-pushback-ms` when it sends one
    /// (which also blocks the method's endpoint in the gate), else after
    /// [`default_delay`](Self::default_delay). Default
    /// [`DEFAULT_GRPC_RETRY_CODES`](crate::DEFAULT_GRPC_RETRY_CODES) (`UNAVAILABLE`).
    ///
    /// Whatever the list, `RESOURCE_EXHAUSTED` with a valid pushback is retried after it,
    /// a negative or malformed pushback is never retried, nor is any code of
    /// [`NEVER_RETRIED_GRPC_CODES`](crate::NEVER_RETRIED_GRPC_CODES): listing one of
    /// those (or `OK`) fails [`build`](Self::build) with
    /// [`RetryAfterConfigError::UnretryableGrpcCode`]. An empty list retries only the
    /// `RESOURCE_EXHAUSTED` that carry a pushback.
    ///
    /// ```
    /// use tower_throttle::headers::GrpcCode;
    /// use tower_throttle::retry_after::{RetryAfterConfigError, RetryAfterLayer};
    ///
    /// let layer = RetryAfterLayer::builder()
    ///     .grpc_retry_codes([GrpcCode::Unavailable, GrpcCode::ResourceExhausted])
    ///     .build();
    /// assert!(layer.is_ok());
    /// let err = RetryAfterLayer::builder()
    ///     .grpc_retry_codes([GrpcCode::InvalidArgument])
    ///     .build()
    ///     .unwrap_err();
    /// assert_eq!(err, RetryAfterConfigError::UnretryableGrpcCode(GrpcCode::InvalidArgument));
    /// ```
    pub fn grpc_retry_codes(mut self, codes: impl IntoIterator<Item = GrpcCode>) -> Self {
        self.settings.grpc_retry_codes = GrpcRetryCodes::new(codes);
        self
    }

    /// Most retries per request (default 3). Stacked retrying layers share one count:
    /// each retries only while the total is below its own maximum.
    pub fn max_retries(mut self, retries: u32) -> Self {
        self.settings.max_retries = retries;
        self
    }

    /// The first wait after a retryable status without guidance (a bare 429, as nginx's
    /// `limit_req` sends; default 1 s; Clay: 60 s). Retry `n` of a request waits
    /// `default_delay × 2^(n-1)` plus a random part of up to half of it, so callers refused
    /// together are spread apart (default: 1–1.5 s, 2–3 s, 4–6 s, …), never more than
    /// [`max_wait`](Self::max_wait). `n` counts the request's retries by every stacked
    /// retrying layer. Turn off [`double_bare_delays`](Self::double_bare_delays) and
    /// [`spread_bare_delays`](Self::spread_bare_delays) to wait exactly `default_delay`.
    ///
    /// **Bare refusals do not exhaust a request while the server admits others:** when the
    /// retries are used up ([`max_retries`](Self::max_retries)) but this layer saw a response
    /// the server admitted since the request's first attempt, the request keeps retrying,
    /// until it has waited `max_wait` in all. A refusal *with* a delay (Retry-After, gRPC
    /// pushback) counts against `max_retries` as always.
    pub fn default_delay(mut self, delay: Duration) -> Self {
        self.settings.default_delay = delay;
        self
    }

    /// The longest wait the layer accepts from a server (default 60 s), and what happens
    /// beyond it (default [`LongWait::Fail`]).
    pub fn max_wait(mut self, max_wait: Duration) -> Self {
        self.settings.max_wait = max_wait;
        self
    }

    /// What happens when the server asks for more than `max_wait`.
    pub fn on_long_wait(mut self, long_wait: LongWait) -> Self {
        self.settings.long_wait = long_wait;
        self
    }

    /// Whether new requests wait while their endpoint is blocked (default on).
    pub fn gate(mut self, on: bool) -> Self {
        self.gate = on;
        self
    }

    /// How requests map to gated endpoints (default [`default_endpoint`](super::default_endpoint): method,
    /// authority or `Host`, and path).
    pub fn endpoint_key<F>(mut self, f: F) -> Self
    where
        F: Fn(&http::request::Parts) -> String + Send + Sync + 'static,
    {
        self.settings.endpoint = Arc::new(f);
        self
    }

    /// Upper bound of the random delay added to requests released from a gate, so they
    /// do not all arrive at the same instant (default 100 ms; zero disables).
    pub fn release_jitter(mut self, jitter: Duration) -> Self {
        self.settings.release_jitter = jitter;
        self
    }

    /// Whether the delays of bare refusals get their random part (default true; see
    /// [`default_delay`](Self::default_delay)). Off, retry `n` waits exactly
    /// `default_delay × 2^(n-1)` (at most `max_wait`).
    pub fn spread_bare_delays(mut self, on: bool) -> Self {
        self.settings.spread_bare_delays = on;
        self
    }

    /// Whether the delays of bare refusals double with each retry (default true; see
    /// [`default_delay`](Self::default_delay)). Off, with
    /// [`spread_bare_delays`](Self::spread_bare_delays) off too, every refusal without
    /// guidance waits exactly `default_delay`, as Clari's guide does (`Retry-After`, 5 s
    /// when absent). The retry count is the request's, over every stacked retrying layer.
    pub fn double_bare_delays(mut self, on: bool) -> Self {
        self.settings.double_bare_delays = on;
        self
    }

    /// Seeds the jitter's random source (for reproducible tests).
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = Some(seed);
        self
    }

    /// Most request-body bytes kept for a retry (default 64 KiB); a larger body is sent
    /// once and not retried.
    pub fn max_replay_bytes(mut self, bytes: usize) -> Self {
        self.settings.max_replay_bytes = bytes;
        self
    }

    /// Validates the configuration and builds the layer: with [`LongWait::Fail`], the
    /// default delay must not exceed `max_wait`; the gRPC retry codes must all be
    /// retryable.
    pub fn build(self) -> Result<RetryAfterLayer, RetryAfterConfigError> {
        if let Some(code) = self.settings.grpc_retry_codes.unretryable() {
            return Err(RetryAfterConfigError::UnretryableGrpcCode(code));
        }
        if self.settings.long_wait == LongWait::Fail
            && self.settings.default_delay > self.settings.max_wait
        {
            return Err(RetryAfterConfigError::DefaultDelayOverMaxWait {
                default_delay: self.settings.default_delay,
                max_wait: self.settings.max_wait,
            });
        }
        Ok(RetryAfterLayer {
            policy: Arc::new(RetryAfterPolicy {
                gate: self.gate.then(EndpointGate::default),
                rng: Mutex::new(self.seed.map_or_else(Rng::from_entropy, Rng::seeded)),
                progress: Progress::default(),
                settings: self.settings,
            }),
        })
    }
}
