//! [`RetryAfterLayer`], its builder and its policy.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::{Duration, SystemTime};

use http::StatusCode;
use tokio::time::Instant;
use tower_layer::Layer;

use super::builder::RetryAfterLayerBuilder;
use super::gate::EndpointGate;
use crate::client::grpc::{classify, gate_refusal, GrpcRetryCodes, GrpcVerdict};
use crate::client::retry::{AttemptInfo, Outcome, Policy, Verdict};
use crate::client::{Endpoint, RetryContext, RetryError, Retrying, Rng, DEFAULT_MAX_REPLAY_BYTES};
use crate::headers::parse::{retry_hint, DEFAULT_HINT_CAP};
use crate::telemetry;

/// What to do when the server asks for a wait longer than `max_wait`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LongWait {
    /// Fail at once with [`RetryError::WaitTooLong`] carrying the server's hint (default).
    #[default]
    Fail,
    /// Wait `max_wait`, then send anyway (earlier than the server asked: an explicit
    /// opt-in).
    WaitMax,
}

type EndpointFn = Arc<dyn Fn(&http::request::Parts) -> String + Send + Sync>;

/// What a [`RetryAfterLayerBuilder`] sets and a [`RetryAfterPolicy`] decides with.
pub(super) struct Settings {
    pub(super) statuses: Vec<StatusCode>,
    pub(super) grpc_retry_codes: GrpcRetryCodes,
    pub(super) max_retries: u32,
    pub(super) default_delay: Duration,
    pub(super) max_wait: Duration,
    pub(super) long_wait: LongWait,
    pub(super) endpoint: EndpointFn,
    pub(super) release_jitter: Duration,
    pub(super) spread_bare_delays: bool,
    pub(super) double_bare_delays: bool,
    pub(super) max_replay_bytes: usize,
}

impl fmt::Debug for Settings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Settings")
            .field("statuses", &self.statuses)
            .field("grpc_retry_codes", &self.grpc_retry_codes)
            .field("max_retries", &self.max_retries)
            .field("default_delay", &self.default_delay)
            .field("max_wait", &self.max_wait)
            .field("long_wait", &self.long_wait)
            .finish_non_exhaustive()
    }
}

/// The decisions of a [`RetryAfterLayer`]: see its builder.
#[derive(Debug)]
pub struct RetryAfterPolicy {
    pub(super) settings: Settings,
    pub(super) gate: Option<EndpointGate>,
    pub(super) rng: Mutex<Rng>,
    pub(super) progress: Progress,
}

/// The default key of gated endpoints: the method, a space, then the request's authority
/// (or, for a relative URI, its `Host` header) and path, without the query:
/// `"GET api.example.com/v1/users"`. A gRPC call's key is
/// `"POST host:port/pkg.Service/Method"` when the client sends absolute URIs (tonic's
/// `with_origin`), and `"POST /pkg.Service/Method"` with tonic's default relative URIs
/// (the channel adds its origin below the layers): enough for a layer used with one
/// channel, not for one shared by channels to several servers.
///
/// The endpoint part is the one every client layer uses (the monitor's
/// [`default_key`](crate::monitor::default_key)); the gate adds the method because a
/// `Retry-After` answers one operation, and APIs limit operations on one path separately.
///
/// ```
/// use tower_throttle::retry_after::default_endpoint;
///
/// let req = http::Request::post("https://api.example.com/v1/users?page=2").body(())?;
/// let (head, _) = req.into_parts();
/// assert_eq!(default_endpoint(&head), "POST api.example.com/v1/users");
/// # Ok::<(), http::Error>(())
/// ```
pub fn default_endpoint(head: &http::request::Parts) -> String {
    Endpoint::of(head).method_key(&head.method)
}

impl RetryAfterPolicy {
    fn jitter(&self) -> Duration {
        if self.settings.release_jitter.is_zero() {
            return Duration::ZERO;
        }
        self.rng
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .duration_up_to(self.settings.release_jitter)
    }

    /// Applies `max_wait` to a wait the server asked for.
    /// The wait before retry `retries + 1` after a refusal without guidance:
    /// `default_delay × 2^retries`, plus up to half of it at random (so callers refused
    /// together do not come back together), at most `max_wait`.
    fn bare_delay(&self, retries: u32) -> Duration {
        let growth = match self.settings.double_bare_delays {
            true => 1 << retries.min(16),
            false => 1,
        };
        let base = self
            .settings
            .default_delay
            .saturating_mul(growth)
            .min(self.settings.max_wait);
        if !self.settings.spread_bare_delays {
            return base;
        }
        let jitter = self
            .rng
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .duration_up_to(base / 2);
        (base + jitter).min(self.settings.max_wait)
    }

    /// Whether the layer saw an answer the server admitted within the last `elapsed` (the
    /// time since a request's first attempt).
    fn admitted_since(&self, elapsed: Duration) -> bool {
        self.progress.since(elapsed)
    }

    fn bounded(&self, wait: Duration, status: Option<StatusCode>) -> Result<Duration, RetryError> {
        if wait <= self.settings.max_wait {
            return Ok(wait);
        }
        match self.settings.long_wait {
            LongWait::Fail => Err(RetryError::WaitTooLong {
                hint: wait,
                max_wait: self.settings.max_wait,
                last_status: status,
                source: None,
            }),
            LongWait::WaitMax => Ok(self.settings.max_wait),
        }
    }
}

impl Policy for RetryAfterPolicy {
    fn admit(&self, head: &http::request::Parts) -> Result<Option<Duration>, RetryError> {
        let Some(gate) = &self.gate else {
            return Ok(None);
        };
        if !gate.may_block() {
            // No block is live: no endpoint can be blocked, so the key is not built.
            return Ok(None);
        }
        let Some(left) = gate.blocked_for(&(self.settings.endpoint)(head)) else {
            return Ok(None);
        };
        // Released requests spread out upwards: never before the server's time.
        let wait = left + self.jitter();
        match self.bounded(wait, None) {
            Ok(wait) => Ok(Some(telemetry::gate_wait(wait))),
            // A gRPC call's error carries the status its caller reads.
            Err(_) => {
                telemetry::gave_up("retry_after", "wait_too_long");
                Err(gate_refusal(head, wait, left, self.settings.max_wait))
            }
        }
    }

    fn decide(
        &self,
        head: &http::request::Parts,
        ctx: &RetryContext,
        info: AttemptInfo,
        outcome: &Outcome<'_>,
    ) -> Verdict {
        let (status, headers) = match outcome {
            Outcome::Response {
                status, headers, ..
            } => (status, *headers),
            Outcome::Error(e) => {
                // An inner retrying layer gave up on a gated status: still honor its hint
                // for new requests.
                if let (
                    Some(gate),
                    Some(RetryError::Exhausted {
                        last_status: Some(s),
                        hint: Some(h),
                        ..
                    }),
                ) = (&self.gate, e.downcast_ref::<RetryError>())
                {
                    if self.settings.statuses.contains(s) {
                        gate.block((self.settings.endpoint)(head), *h);
                    }
                }
                return Verdict::Return;
            }
        };
        // A gRPC status in the headers is read by gRPC's rules, instead of the status's.
        let hint = match classify(headers, self.settings.grpc_retry_codes) {
            Some(GrpcVerdict::Retry { hint }) => hint,
            Some(GrpcVerdict::Final) => return Verdict::Return,
            None if self.settings.statuses.contains(status) => {
                retry_hint(headers, SystemTime::now(), DEFAULT_HINT_CAP).map(|h| h.delay)
            }
            None => {
                self.progress.admitted();
                return Verdict::Return;
            }
        };
        if let (Some(gate), Some(hint)) = (&self.gate, hint) {
            gate.block((self.settings.endpoint)(head), hint);
        }
        let wait = match hint {
            Some(hint) => match self.bounded(hint, Some(*status)) {
                Ok(wait) => wait,
                Err(e) => {
                    telemetry::gave_up("retry_after", "wait_too_long");
                    return Verdict::Fail(e);
                }
            },
            None => self.bare_delay(ctx.retries()),
        };
        if !info.replayable {
            return Verdict::Return;
        }
        if !ctx.try_claim(self.settings.max_retries) {
            // A bare refusal while the server still admits others: not a reason to stop,
            // until the request has waited max_wait in all.
            let progressing = hint.is_none()
                && self.admitted_since(info.elapsed)
                && info.elapsed.saturating_add(wait) <= self.settings.max_wait;
            if !progressing {
                telemetry::gave_up("retry_after", "exhausted");
                return Verdict::GiveUp { hint };
            }
        }
        telemetry::retried("retry_after", outcome, hint, &self.settings.statuses);
        Verdict::Retry(wait)
    }

    fn max_replay_bytes(&self) -> usize {
        self.settings.max_replay_bytes
    }

    fn reads_elapsed(&self) -> bool {
        // For bare refusals: has the request waited max_wait, was anyone admitted since.
        true
    }
}

/// When the layer last saw an answer the server admitted (not a retryable status).
#[derive(Debug, Default)]
pub(super) struct Progress {
    /// The clock's origin (set at the first answer, on the runtime's clock).
    origin: OnceLock<Instant>,
    /// Nanoseconds after `origin` of the last admitted answer, plus one (0: none yet).
    last: AtomicU64,
}

impl Progress {
    fn admitted(&self) {
        let origin = *self.origin.get_or_init(Instant::now);
        let nanos = u64::try_from(origin.elapsed().as_nanos()).unwrap_or(u64::MAX - 1);
        self.last.fetch_max(nanos + 1, Ordering::Relaxed);
    }

    fn since(&self, window: Duration) -> bool {
        let (Some(origin), last) = (self.origin.get(), self.last.load(Ordering::Relaxed)) else {
            return false;
        };
        if last == 0 {
            return false;
        }
        let at = *origin + Duration::from_nanos(last - 1);
        Instant::now().saturating_duration_since(at) <= window
    }
}

/// Honors `429`/`503` with `Retry-After` (seconds or HTTP-date, `retry-after-ms`, …):
/// retries after exactly the delay the server asked for, and holds *new* requests to the
/// same endpoint until the block expires (Clerk: "all subsequent requests to that specific
/// endpoint will be blocked").
///
/// gRPC: a response whose headers carry `grpc-status` (a trailers-only refusal, HTTP 200)
/// is read by gRPC's rules instead (see
/// [`grpc_retry_codes`](RetryAfterLayerBuilder::grpc_retry_codes)): `RESOURCE_EXHAUSTED`
/// or a retry code with `grpc-retry-pushback-ms` blocks the method (the gate key is
/// method, authority and path, and a gRPC method's path is `/pkg.Service/Method`) for
/// exactly the pushback and is retried after it; a retry code without pushback waits
/// [`default_delay`](RetryAfterLayerBuilder::default_delay). When the layer gives up on a
/// gRPC call it returns the last response, so the gRPC client reads the server's status;
/// see [`RetryError`] for the one case that stays an error.
///
/// ```
/// use std::time::Duration;
/// use tower_throttle::retry_after::RetryAfterLayer;
///
/// // Clay: a 429 without Retry-After waits 60 s; never wait more than 5 minutes.
/// let layer = RetryAfterLayer::builder()
///     .max_retries(5)
///     .default_delay(Duration::from_secs(60))
///     .max_wait(Duration::from_secs(300))
///     .build()?;
/// # Ok::<(), tower_throttle::retry_after::RetryAfterConfigError>(())
/// ```
#[derive(Clone, Debug)]
pub struct RetryAfterLayer {
    pub(super) policy: Arc<RetryAfterPolicy>,
}

impl RetryAfterLayer {
    /// Starts a configuration with the defaults listed on each builder method.
    pub fn builder() -> RetryAfterLayerBuilder {
        RetryAfterLayerBuilder {
            settings: Settings {
                statuses: vec![
                    StatusCode::TOO_MANY_REQUESTS,
                    StatusCode::SERVICE_UNAVAILABLE,
                ],
                grpc_retry_codes: GrpcRetryCodes::default(),
                max_retries: 3,
                default_delay: Duration::from_secs(1),
                max_wait: Duration::from_secs(60),
                long_wait: LongWait::Fail,
                endpoint: Arc::new(default_endpoint),
                release_jitter: Duration::from_millis(100),
                spread_bare_delays: true,
                double_bare_delays: true,
                max_replay_bytes: DEFAULT_MAX_REPLAY_BYTES,
            },
            gate: true,
            seed: None,
        }
    }

    /// The endpoint gate, shared by every clone (none when disabled).
    pub fn gate(&self) -> Option<&EndpointGate> {
        self.policy.gate.as_ref()
    }
}

impl<S> Layer<S> for RetryAfterLayer {
    type Service = Retrying<S, RetryAfterPolicy>;

    fn layer(&self, inner: S) -> Self::Service {
        Retrying::new(inner, Arc::clone(&self.policy))
    }
}
