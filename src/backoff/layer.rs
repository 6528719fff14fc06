//! [`BackoffLayer`], its builder and its policy.

use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime};

use http::{HeaderMap, HeaderValue, StatusCode};
use tower_layer::Layer;

use super::budget::RetryBudget;
use super::classify::{
    is_idempotent, is_retry_error, is_timeout, never_sent, DEFAULT_RETRY_STATUSES, IDEMPOTENCY_KEY,
};
use super::replay::DEFAULT_MAX_REPLAY_BYTES;
use super::schedule::{Backoff, Jitter, Rng};
use crate::headers::parse::{grpc_forbids_retry, retry_hint, DEFAULT_HINT_CAP};
use crate::retry::{AttemptInfo, Outcome, Policy, RetryContext, RetryError, Retrying, Step};

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

/// The decisions of a [`BackoffLayer`]: see its builder.
pub struct BackoffPolicy {
    backoff: Backoff,
    max_retries: u32,
    max_elapsed: Option<Duration>,
    statuses: Vec<StatusCode>,
    retry_if: Option<ResponsePredicate>,
    retry_timeouts: bool,
    retry_never_sent: bool,
    idempotent_only: bool,
    generate_idempotency_key: bool,
    hint_mode: HintMode,
    budget: Option<RetryBudget>,
    rng: Mutex<Rng>,
    max_replay_bytes: usize,
}

impl fmt::Debug for BackoffPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BackoffPolicy")
            .field("backoff", &self.backoff)
            .field("max_retries", &self.max_retries)
            .field("max_elapsed", &self.max_elapsed)
            .field("statuses", &self.statuses)
            .field("hint_mode", &self.hint_mode)
            .field("budget", &self.budget.is_some())
            .finish_non_exhaustive()
    }
}

impl BackoffPolicy {
    fn rng(&self) -> std::sync::MutexGuard<'_, Rng> {
        self.rng.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Policy for BackoffPolicy {
    fn prepare(&self, head: &mut http::request::Parts, ctx: &RetryContext) {
        if let Some(budget) = &self.budget {
            if ctx.first_deposit() {
                budget.deposit();
            }
        }
        if self.generate_idempotency_key && !is_idempotent(&head.method, &head.headers) {
            // One key for every attempt of this request, across stacked layers too.
            let key = ctx.idempotency_key(|| {
                let mut rng = self.rng();
                let (a, b) = (rng.next_u64(), rng.next_u64());
                HeaderValue::try_from(format!("{a:016x}{b:016x}"))
                    .unwrap_or(HeaderValue::from_static("0"))
            });
            head.headers.insert(IDEMPOTENCY_KEY, key);
        }
    }

    fn decide(
        &self,
        head: &http::request::Parts,
        ctx: &RetryContext,
        info: AttemptInfo,
        outcome: &Outcome<'_>,
    ) -> Step {
        let repeatable = !self.idempotent_only || is_idempotent(&head.method, &head.headers);
        let hint = match outcome {
            Outcome::Response { status, headers } => {
                let asked = self.statuses.contains(status)
                    || self.retry_if.as_ref().is_some_and(|p| p(*status, headers));
                if !asked || !repeatable || grpc_forbids_retry(headers) {
                    return Step::Return;
                }
                match self.hint_mode {
                    HintMode::Ignore => None,
                    _ => retry_hint(headers, SystemTime::now(), DEFAULT_HINT_CAP).map(|h| h.delay),
                }
            }
            Outcome::Error(e) => {
                let retryable = !is_retry_error(e)
                    && ((self.retry_never_sent && never_sent(e))
                        || (self.retry_timeouts && repeatable && is_timeout(e)));
                if !retryable {
                    return Step::Return;
                }
                None
            }
        };
        if !info.replayable {
            return Step::Return;
        }
        // Retries made by every stacked layer: the schedule continues where they left it.
        let retry_number = ctx.retries();
        let backoff = self
            .backoff
            .delay(retry_number, info.prev_delay, &mut self.rng());
        let delay = match (self.hint_mode, hint) {
            (HintMode::Exact, Some(h)) => h,
            (HintMode::AtLeastBackoff, Some(h)) => h.max(backoff),
            _ => backoff,
        };
        if self
            .max_elapsed
            .is_some_and(|max| info.elapsed.saturating_add(delay) > max)
        {
            return Step::GiveUp { hint };
        }
        if !ctx.try_claim(self.max_retries) {
            return Step::GiveUp { hint };
        }
        if let Some(budget) = &self.budget {
            if !budget.withdraw() {
                return Step::Fail(RetryError::BudgetExhausted {
                    attempts: ctx.retries(),
                    last_status: outcome.status(),
                });
            }
        }
        Step::Retry(delay)
    }

    fn max_replay_bytes(&self) -> usize {
        self.max_replay_bytes
    }

    fn reads_elapsed(&self) -> bool {
        self.max_elapsed.is_some()
    }
}

/// Retries failed requests with exponential backoff and jitter.
///
/// By default: 3 retries, 1 s × 2ⁿ capped at 60 s with equal jitter; statuses 429, 500,
/// 502, 503 and 504 and connection errors where the request was never sent; only
/// idempotent requests (or ones with an `Idempotency-Key`); `Retry-After` honored exactly;
/// a retry budget of 20 % of requests plus 10 retries per second, shared by every clone.
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
///     .build();
/// # Ok::<(), tower_throttle::backoff::BackoffError>(())
/// ```
#[derive(Clone, Debug)]
pub struct BackoffLayer {
    policy: Arc<BackoffPolicy>,
}

impl BackoffLayer {
    /// Starts a configuration with the defaults above.
    pub fn builder() -> BackoffLayerBuilder {
        let backoff = Backoff::exponential(Duration::from_secs(1), 2.0)
            .and_then(|b| b.max_delay(Duration::from_secs(60)))
            .map(|b| b.jitter(Jitter::Equal))
            .unwrap_or_else(|_| unreachable!("the default schedule is valid"));
        BackoffLayerBuilder {
            policy: BackoffPolicy {
                backoff,
                max_retries: 3,
                max_elapsed: None,
                statuses: DEFAULT_RETRY_STATUSES.to_vec(),
                retry_if: None,
                retry_timeouts: false,
                retry_never_sent: true,
                idempotent_only: true,
                generate_idempotency_key: false,
                hint_mode: HintMode::Exact,
                budget: Some(RetryBudget::default()),
                rng: Mutex::new(Rng::from_entropy()),
                max_replay_bytes: DEFAULT_MAX_REPLAY_BYTES,
            },
        }
    }

    /// The retry budget shared by every clone, if enabled.
    pub fn budget(&self) -> Option<&RetryBudget> {
        self.policy.budget.as_ref()
    }
}

impl<S> Layer<S> for BackoffLayer {
    type Service = Retrying<S, BackoffPolicy>;

    fn layer(&self, inner: S) -> Self::Service {
        Retrying::new(inner, Arc::clone(&self.policy))
    }
}

/// Configures a [`BackoffLayer`]. Its parts are validated where they are made
/// ([`Backoff`], [`RetryBudget`]), so building cannot fail.
#[derive(Debug)]
pub struct BackoffLayerBuilder {
    policy: BackoffPolicy,
}

impl BackoffLayerBuilder {
    /// The delay schedule (default 1 s × 2ⁿ, max 60 s, equal jitter).
    pub fn backoff(mut self, backoff: Backoff) -> Self {
        self.policy.backoff = backoff;
        self
    }

    /// Most retries per request (default 3); attempts = retries + 1. Stacked retrying
    /// layers share one count: each retries only while the total is below its own
    /// maximum, and the schedule continues from the total.
    pub fn max_retries(mut self, retries: u32) -> Self {
        self.policy.max_retries = retries;
        self
    }

    /// Gives up rather than wait past this much time since the first attempt.
    pub fn max_elapsed(mut self, max: Duration) -> Self {
        self.policy.max_elapsed = Some(max);
        self
    }

    /// Statuses to retry (default [`DEFAULT_RETRY_STATUSES`]).
    pub fn statuses(mut self, statuses: impl IntoIterator<Item = StatusCode>) -> Self {
        self.policy.statuses = statuses.into_iter().collect();
        self
    }

    /// Also retries responses for which `predicate(status, headers)` is true (e.g. polling
    /// a job until it is done).
    pub fn retry_if<F>(mut self, predicate: F) -> Self
    where
        F: Fn(StatusCode, &HeaderMap) -> bool + Send + Sync + 'static,
    {
        self.policy.retry_if = Some(Arc::new(predicate));
        self
    }

    /// Retries timeouts of idempotent requests (default off).
    pub fn retry_timeouts(mut self, on: bool) -> Self {
        self.policy.retry_timeouts = on;
        self
    }

    /// Retries errors where the request never reached the server (connection refused,
    /// unreachable), for every method (default on).
    pub fn retry_never_sent(mut self, on: bool) -> Self {
        self.policy.retry_never_sent = on;
        self
    }

    /// Whether only idempotent requests are retried (default true). Errors where the
    /// request was never sent are retried for every method.
    pub fn idempotent_only(mut self, on: bool) -> Self {
        self.policy.idempotent_only = on;
        self
    }

    /// Adds an `Idempotency-Key` (the same on every attempt) to non-idempotent requests
    /// that have none, making them retryable (default off).
    pub fn generate_idempotency_key(mut self, on: bool) -> Self {
        self.policy.generate_idempotency_key = on;
        self
    }

    /// How `Retry-After` combines with the schedule (default [`HintMode::Exact`]).
    pub fn hint_mode(mut self, mode: HintMode) -> Self {
        self.policy.hint_mode = mode;
        self
    }

    /// The retry budget (default [`RetryBudget::default`]); `None` disables it.
    pub fn budget(mut self, budget: Option<RetryBudget>) -> Self {
        self.policy.budget = budget;
        self
    }

    /// Seeds the jitter's random source (reproducible schedules in tests).
    pub fn seed(mut self, seed: u64) -> Self {
        self.policy.rng = Mutex::new(Rng::seeded(seed));
        self
    }

    /// Most request-body bytes kept for a retry (default 64 KiB); a larger body is sent
    /// once and not retried.
    pub fn max_replay_bytes(mut self, bytes: usize) -> Self {
        self.policy.max_replay_bytes = bytes;
        self
    }

    /// Builds the layer.
    pub fn build(self) -> BackoffLayer {
        BackoffLayer {
            policy: Arc::new(self.policy),
        }
    }
}
