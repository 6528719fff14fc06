//! [`BackoffLayer`], its builder and its policy.

use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime};

use http::{HeaderMap, HeaderValue, StatusCode};
use tower_layer::Layer;

use super::body::{BodyDecision, BodyMode, HeadOnly};
use super::budget::RetryBudget;
use super::classify::{
    is_idempotent, is_retry_error, is_timeout, never_sent, DEFAULT_RETRY_STATUSES, IDEMPOTENCY_KEY,
};
use super::schedule::{Backoff, BackoffError, Jitter};
use crate::client::grpc::{classify, GrpcRetryCodes, GrpcVerdict};
use crate::client::retry::{AttemptInfo, Outcome, Policy, Verdict};
use crate::client::{RetryContext, RetryError, Retrying, Rng, DEFAULT_MAX_REPLAY_BYTES};
use crate::headers::parse::{grpc_forbids_retry, retry_hint, DEFAULT_HINT_CAP};
use crate::headers::GrpcCode;
use crate::telemetry;

/// How a response's `Retry-After` (or equivalent) combines with the backoff schedule.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum HintMode {
    /// Wait exactly what the server asked for (default; Clerk's and Clari's guides).
    #[default]
    Exact,
    /// Wait the larger of the hint and the backoff delay.
    AtLeastBackoff,
    /// Ignore hints (leave them to a `RetryAfterLayer`).
    Ignore,
}

type ResponsePredicate = Arc<dyn Fn(StatusCode, &HeaderMap) -> bool + Send + Sync>;

/// A decision on a response's body: see [`BackoffLayerBuilder::retry_if_body`].
pub(super) type BodyPredicate =
    Arc<dyn Fn(StatusCode, &HeaderMap, &[u8]) -> BodyDecision + Send + Sync>;

/// What a [`BackoffLayerBuilder`] sets and a [`BackoffPolicy`] decides with.
pub(super) struct Settings {
    backoff: Backoff,
    max_retries: u32,
    max_elapsed: Option<Duration>,
    statuses: Vec<StatusCode>,
    grpc_retry_codes: GrpcRetryCodes,
    retry_if: Option<ResponsePredicate>,
    pub(super) retry_if_body: Option<BodyPredicate>,
    retry_timeouts: bool,
    retry_never_sent: bool,
    idempotent_only: bool,
    generate_idempotency_key: bool,
    hint_mode: HintMode,
    budget: Option<RetryBudget>,
    max_replay_bytes: usize,
}

impl fmt::Debug for Settings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Settings")
            .field("backoff", &self.backoff)
            .field("max_retries", &self.max_retries)
            .field("max_elapsed", &self.max_elapsed)
            .field("statuses", &self.statuses)
            .field("grpc_retry_codes", &self.grpc_retry_codes)
            .field("hint_mode", &self.hint_mode)
            .field("budget", &self.budget.is_some())
            .finish_non_exhaustive()
    }
}

/// The decisions of a [`BackoffLayer`]: see its builder.
#[derive(Debug)]
pub struct BackoffPolicy {
    settings: Settings,
    rng: Mutex<Rng>,
}

impl BackoffPolicy {
    fn rng(&self) -> std::sync::MutexGuard<'_, Rng> {
        self.rng.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Whether the outcome is one to retry: `None` when it is not, else the server's hint
    /// (none when hints are ignored or absent).
    fn retryable(
        &self,
        head: &http::request::Parts,
        outcome: &Outcome<'_>,
    ) -> Option<Option<Duration>> {
        let repeatable =
            !self.settings.idempotent_only || is_idempotent(&head.method, &head.headers);
        let ignore_hints = self.settings.hint_mode == HintMode::Ignore;
        match outcome {
            Outcome::Response {
                status,
                headers,
                body,
            } => {
                // A gRPC status in the headers is read by gRPC's rules (its retry codes,
                // whatever the method: every gRPC call is a POST), instead of the HTTP
                // status, the predicates and idempotency.
                if let Some(grpc) = classify(headers, self.settings.grpc_retry_codes) {
                    return match grpc {
                        GrpcVerdict::Retry { hint } => Some(hint.filter(|_| !ignore_hints)),
                        GrpcVerdict::Final => None,
                    };
                }
                // A response that may not be sent again is never retried: the predicates
                // (a body predicate may parse JSON) are not asked about it.
                if !repeatable || grpc_forbids_retry(headers) {
                    return None;
                }
                // The body is asked about only when it was read whole.
                let on_body = match (&self.settings.retry_if_body, body) {
                    (Some(decide), Some(body)) => decide(*status, headers, body),
                    _ => BodyDecision::Return,
                };
                let asked = self.settings.statuses.contains(status)
                    || self
                        .settings
                        .retry_if
                        .as_ref()
                        .is_some_and(|p| p(*status, headers))
                    || on_body != BodyDecision::Return;
                if !asked {
                    return None;
                }
                Some(match (ignore_hints, on_body) {
                    (true, _) => None,
                    // The body's delay stands in for a header hint, capped alike.
                    (false, BodyDecision::RetryAfter(delay)) => Some(delay.min(DEFAULT_HINT_CAP)),
                    (false, _) => {
                        retry_hint(headers, SystemTime::now(), DEFAULT_HINT_CAP).map(|h| h.delay)
                    }
                })
            }
            Outcome::Error(e) => {
                let retryable = !is_retry_error(e)
                    && ((self.settings.retry_never_sent && never_sent(e))
                        || (self.settings.retry_timeouts && repeatable && is_timeout(e)));
                retryable.then_some(None)
            }
        }
    }

    /// The wait before the next retry: the schedule's delay, combined with the hint as the
    /// hint mode says.
    fn delay(&self, ctx: &RetryContext, info: AttemptInfo, hint: Option<Duration>) -> Duration {
        // Retries made by every stacked layer: the schedule continues where they left it.
        let backoff = self
            .settings
            .backoff
            .delay(ctx.retries(), info.prev_delay, &mut self.rng());
        match (self.settings.hint_mode, hint) {
            (HintMode::Exact, Some(h)) => h,
            (HintMode::AtLeastBackoff, Some(h)) => h.max(backoff),
            _ => backoff,
        }
    }

    /// A fresh `Idempotency-Key` value: a random (v4) UUID.
    fn new_idempotency_key() -> HeaderValue {
        let mut buf = uuid::Uuid::encode_buffer();
        let text = uuid::Uuid::new_v4().hyphenated().encode_lower(&mut buf);
        HeaderValue::from_str(text).unwrap_or_else(|_| unreachable!("a UUID is visible ASCII"))
    }
}

impl Policy for BackoffPolicy {
    fn prepare(&self, head: &mut http::request::Parts, ctx: &RetryContext) {
        if let Some(budget) = &self.settings.budget {
            if ctx.first_deposit() {
                budget.deposit();
            }
        }
        if self.settings.generate_idempotency_key && !is_idempotent(&head.method, &head.headers) {
            // One key for every attempt of this request, across stacked layers too.
            let key = ctx.idempotency_key(Self::new_idempotency_key);
            head.headers.insert(IDEMPOTENCY_KEY, key);
        }
    }

    fn decide(
        &self,
        head: &http::request::Parts,
        ctx: &RetryContext,
        info: AttemptInfo,
        outcome: &Outcome<'_>,
    ) -> Verdict {
        let Some(hint) = self.retryable(head, outcome) else {
            return Verdict::Return;
        };
        if !info.replayable {
            return Verdict::Return;
        }
        let delay = self.delay(ctx, info, hint);
        if self
            .settings
            .max_elapsed
            .is_some_and(|max| info.elapsed.saturating_add(delay) > max)
        {
            telemetry::gave_up("backoff", "exhausted");
            return Verdict::GiveUp { hint };
        }
        if !ctx.try_claim(self.settings.max_retries) {
            telemetry::gave_up("backoff", "exhausted");
            return Verdict::GiveUp { hint };
        }
        if let Some(budget) = &self.settings.budget {
            if !budget.withdraw() {
                telemetry::gave_up("backoff", "budget");
                return Verdict::Fail(RetryError::BudgetExhausted {
                    attempts: ctx.retries(),
                    last_status: outcome.status(),
                    source: None,
                });
            }
        }
        telemetry::retried("backoff", outcome, hint, &self.settings.statuses);
        Verdict::Retry(delay)
    }

    fn max_replay_bytes(&self) -> usize {
        self.settings.max_replay_bytes
    }

    fn reads_elapsed(&self) -> bool {
        self.settings.max_elapsed.is_some()
    }
}

/// Retries failed requests with exponential backoff and jitter.
///
/// By default: 3 retries, 1 s × 2ⁿ capped at 60 s with equal jitter; statuses 429, 500,
/// 502, 503 and 504 and connection errors where the request was never sent; only
/// idempotent requests (or ones with an `Idempotency-Key`); `Retry-After` honored exactly;
/// a retry budget of 20 % of requests plus 10 retries per second, shared by every clone.
///
/// gRPC: a response whose headers carry `grpc-status` follows gRPC's retry codes instead
/// (default `UNAVAILABLE`, and `RESOURCE_EXHAUSTED` with a pushback), whatever the method:
/// see [`grpc_retry_codes`](BackoffLayerBuilder::grpc_retry_codes). When the layer gives
/// up on a gRPC call (attempts, budget or `max_elapsed`), the caller receives the last
/// response, so the gRPC client reads the server's status, message and metadata.
///
/// ```
/// use std::time::Duration;
/// use tower_throttle::backoff::{Backoff, BackoffLayer, Jitter};
///
/// // Clay: 1, 2, 4, 8, 16 s + up to 500 ms, capped at 60 s, 5 retries.
/// let layer = BackoffLayer::builder()
///     .backoff(
///         Backoff::exponential(Duration::from_secs(1), 2.0)?
///             .max_delay(Duration::from_secs(60))?
///             .jitter(Jitter::Additive(Duration::from_millis(500))),
///     )
///     .max_retries(5)
///     .build()?;
/// # Ok::<(), tower_throttle::backoff::BackoffError>(())
/// ```
#[derive(Clone, Debug)]
pub struct BackoffLayer<R = HeadOnly> {
    pub(super) policy: Arc<BackoffPolicy>,
    pub(super) mode: R,
}

impl BackoffLayer<HeadOnly> {
    /// Starts a configuration with the defaults above.
    pub fn builder() -> BackoffLayerBuilder {
        let backoff = Backoff::exponential(Duration::from_secs(1), 2.0)
            .and_then(|b| b.max_delay(Duration::from_secs(60)))
            .map(|b| b.jitter(Jitter::Equal))
            .unwrap_or_else(|_| unreachable!("the default schedule is valid"));
        BackoffLayerBuilder {
            settings: Settings {
                backoff,
                max_retries: 3,
                max_elapsed: None,
                statuses: DEFAULT_RETRY_STATUSES.to_vec(),
                grpc_retry_codes: GrpcRetryCodes::default(),
                retry_if: None,
                retry_if_body: None,
                retry_timeouts: false,
                retry_never_sent: true,
                idempotent_only: true,
                generate_idempotency_key: false,
                hint_mode: HintMode::Exact,
                budget: Some(RetryBudget::default()),
                max_replay_bytes: DEFAULT_MAX_REPLAY_BYTES,
            },
            seed: None,
            mode: HeadOnly,
        }
    }
}

impl<R> BackoffLayer<R> {
    /// The retry budget shared by every clone, if enabled.
    pub fn budget(&self) -> Option<&RetryBudget> {
        self.policy.settings.budget.as_ref()
    }
}

impl<S> Layer<S> for BackoffLayer<HeadOnly> {
    type Service = Retrying<S, BackoffPolicy>;

    fn layer(&self, inner: S) -> Self::Service {
        Retrying::new(inner, Arc::clone(&self.policy))
    }
}

/// Configures a [`BackoffLayer`]; [`build`](Self::build) validates the configuration.
#[derive(Debug)]
pub struct BackoffLayerBuilder<R = HeadOnly> {
    pub(super) settings: Settings,
    pub(super) seed: Option<u64>,
    pub(super) mode: R,
}

impl<R: BodyMode> BackoffLayerBuilder<R> {
    /// The delay schedule (default 1 s × 2ⁿ, max 60 s, equal jitter).
    pub fn backoff(mut self, backoff: Backoff) -> Self {
        self.settings.backoff = backoff;
        self
    }

    /// Most retries per request (default 3); attempts = retries + 1. Stacked retrying
    /// layers share one count: each retries only while the total is below its own
    /// maximum, and the schedule continues from the total.
    pub fn max_retries(mut self, retries: u32) -> Self {
        self.settings.max_retries = retries;
        self
    }

    /// Gives up rather than wait past this much time since the first attempt (must be
    /// longer than zero; default unbounded).
    pub fn max_elapsed(mut self, max: Duration) -> Self {
        self.settings.max_elapsed = Some(max);
        self
    }

    /// Statuses to retry (default [`DEFAULT_RETRY_STATUSES`]). Not read for a response
    /// whose headers carry `grpc-status`: see [`grpc_retry_codes`](Self::grpc_retry_codes).
    pub fn statuses(mut self, statuses: impl IntoIterator<Item = StatusCode>) -> Self {
        self.settings.statuses = statuses.into_iter().collect();
        self
    }

    /// gRPC status codes retried when a response's headers carry them (a trailers-only
    /// response, HTTP 200). Default
    /// [`DEFAULT_GRPC_RETRY_CODES`](crate::DEFAULT_GRPC_RETRY_CODES) (`UNAVAILABLE`).
    ///
    /// Such a response follows gRPC's retry rules only, as gRPC's own retry policy does:
    /// whatever the HTTP method (every gRPC call is a `POST`, so
    /// [`idempotent_only`](Self::idempotent_only) cannot tell a gRPC call's retry safety
    /// and is not read), [`statuses`](Self::statuses) and [`retry_if`](Self::retry_if)
    /// are not read either. The wait is the schedule's, or the server's
    /// `grpc-retry-pushback-ms` as the [`hint_mode`](Self::hint_mode) says; the attempt
    /// limits and the budget apply as for HTTP. Whatever the list, `RESOURCE_EXHAUSTED`
    /// with a valid pushback is retried, a negative or malformed pushback is not, nor is
    /// any code of [`NEVER_RETRIED_GRPC_CODES`](crate::NEVER_RETRIED_GRPC_CODES): listing
    /// one of those (or `OK`) fails [`build`](Self::build) with
    /// [`BackoffError::UnretryableGrpcCode`]. A gRPC call that fails without a response
    /// (a transport error) follows the HTTP rules for errors.
    ///
    /// ```
    /// use tower_throttle::backoff::{BackoffError, BackoffLayer};
    /// use tower_throttle::headers::GrpcCode;
    ///
    /// let layer = BackoffLayer::builder()
    ///     .grpc_retry_codes([GrpcCode::Unavailable, GrpcCode::Aborted])
    ///     .build();
    /// assert!(layer.is_ok());
    /// let err = BackoffLayer::builder()
    ///     .grpc_retry_codes([GrpcCode::Unauthenticated])
    ///     .build()
    ///     .unwrap_err();
    /// assert_eq!(err, BackoffError::UnretryableGrpcCode(GrpcCode::Unauthenticated));
    /// ```
    pub fn grpc_retry_codes(mut self, codes: impl IntoIterator<Item = GrpcCode>) -> Self {
        self.settings.grpc_retry_codes = GrpcRetryCodes::new(codes);
        self
    }

    /// Also retries responses for which `predicate(status, headers)` is true (e.g. polling
    /// a job until it is done). Not asked about a response whose headers carry
    /// `grpc-status` (see [`grpc_retry_codes`](Self::grpc_retry_codes)).
    pub fn retry_if<F>(mut self, predicate: F) -> Self
    where
        F: Fn(StatusCode, &HeaderMap) -> bool + Send + Sync + 'static,
    {
        self.settings.retry_if = Some(Arc::new(predicate));
        self
    }

    /// Retries timeouts of idempotent requests (default off).
    pub fn retry_timeouts(mut self, on: bool) -> Self {
        self.settings.retry_timeouts = on;
        self
    }

    /// Retries errors where the request never reached the server (connection refused,
    /// unreachable), for every method (default on).
    pub fn retry_never_sent(mut self, on: bool) -> Self {
        self.settings.retry_never_sent = on;
        self
    }

    /// Whether only idempotent requests are retried (default true). Errors where the
    /// request was never sent are retried for every method.
    pub fn idempotent_only(mut self, on: bool) -> Self {
        self.settings.idempotent_only = on;
        self
    }

    /// Adds an `Idempotency-Key` (a random v4 UUID, the same on every attempt) to
    /// non-idempotent requests that have none, making them retryable (default off).
    pub fn generate_idempotency_key(mut self, on: bool) -> Self {
        self.settings.generate_idempotency_key = on;
        self
    }

    /// How `Retry-After` combines with the schedule (default [`HintMode::Exact`]).
    pub fn hint_mode(mut self, mode: HintMode) -> Self {
        self.settings.hint_mode = mode;
        self
    }

    /// The retry budget (default [`RetryBudget::default`]); `None` disables it.
    pub fn budget(mut self, budget: Option<RetryBudget>) -> Self {
        self.settings.budget = budget;
        self
    }

    /// Seeds the jitter's random source (reproducible schedules in tests).
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

    /// Validates the configuration and builds the layer. The schedule and the budget
    /// are validated where they are made ([`Backoff`], [`RetryBudget`]); this refuses a
    /// zero [`max_elapsed`](Self::max_elapsed), which would never retry, and gRPC retry
    /// codes that are never retried.
    pub fn build(self) -> Result<BackoffLayer<R>, BackoffError> {
        self.mode.check()?;
        if let Some(code) = self.settings.grpc_retry_codes.unretryable() {
            return Err(BackoffError::UnretryableGrpcCode(code));
        }
        if self.settings.max_elapsed.is_some_and(|max| max.is_zero()) {
            return Err(BackoffError::ZeroMaxElapsed);
        }
        Ok(BackoffLayer {
            policy: Arc::new(BackoffPolicy {
                rng: Mutex::new(self.seed.map_or_else(Rng::from_entropy, Rng::seeded)),
                settings: self.settings,
            }),
            mode: self.mode,
        })
    }
}

#[cfg(test)]
mod tests;
