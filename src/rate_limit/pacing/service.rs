//! The [`Pacing`] service: wait for the turn, then send.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::{Request, Response};
use tokio::time::{sleep_until, timeout_at, Instant};
use tower_service::Service;

use super::error::PacingError;
use super::layer::PacingShared;
use super::quota::QuotaStatus;
use crate::client::{BoxError, Endpoint, Error};
use crate::engine::clock::Clock;
use crate::engine::gcra::checks_key;
use crate::engine::store::{MemoryStore, Store};
use crate::rate_limit::handle::bump;
use crate::rate_limit::plan::{Checks, Plan};

/// The response future of [`Pacing`]: boxed, since it waits in several stages (turn,
/// limits, quotas) before the inner call; one allocation per request on the client side.
pub type PacingFuture<T> = Pin<Box<dyn Future<Output = Result<T, Error>> + Send>>;

/// Sends each request once its rules admit it, waiting in FIFO order per key.
pub struct Pacing<S, St = MemoryStore> {
    pub(crate) inner: S,
    pub(crate) shared: Arc<PacingShared>,
    pub(crate) store: St,
}

impl<S: Clone, St: Clone> Clone for Pacing<S, St> {
    fn clone(&self) -> Self {
        Pacing {
            inner: self.inner.clone(),
            shared: Arc::clone(&self.shared),
            store: self.store.clone(),
        }
    }
}

impl<S: std::fmt::Debug, St> std::fmt::Debug for Pacing<S, St> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pacing")
            .field("inner", &self.inner)
            .finish_non_exhaustive()
    }
}

impl<S, St, ReqB, ResB> Service<Request<ReqB>> for Pacing<S, St>
where
    S: Service<Request<ReqB>, Response = Response<ResB>> + Clone + Send + 'static,
    S::Future: Send,
    S::Error: Into<BoxError>,
    St: Store + Clone,
    ReqB: Send + 'static,
    ResB: Send + 'static,
{
    type Response = Response<ResB>;
    type Error = Error;
    type Future = PacingFuture<Response<ResB>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        self.inner.poll_ready(cx).map_err(Error::new)
    }

    fn call(&mut self, req: Request<ReqB>) -> Self::Future {
        // The ready service goes with the request; this one keeps a fresh clone.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let shared = Arc::clone(&self.shared);
        let store = self.store.clone();
        Box::pin(async move {
            let deadline = Instant::now() + shared.max_queue_wait;
            let rules = &shared.rules;
            let mut planned = Checks::new();
            let (matched, checks) = match rules.plan(&req, &mut planned) {
                Plan::Pass => (0, Vec::new()),
                Plan::BadPath(e) => return Err(Error::from(PacingError::BadPath(e))),
                Plan::MissingKey { rule, what, .. } => {
                    return Err(Error::from(PacingError::MissingKey {
                        rule: rules.rules[rule].name.clone(),
                        what,
                    }))
                }
                Plan::Check { matched } => (matched, planned.as_slice().to_vec()),
            };
            let indices: Vec<usize> = (0..64).filter(|i| matched & (1 << i) != 0).collect();
            let timed_out = || {
                Error::from(PacingError::QueueTimeout {
                    waited: shared.max_queue_wait,
                })
            };

            // Concurrency slots first, in rule order (a fixed order cannot deadlock).
            let mut permits = Vec::new();
            for (check, &i) in checks.iter().zip(&indices) {
                if let Some(n) = rules.rules[i].concurrency {
                    let permit = timeout_at(deadline, shared.permits.acquire(check.key, n))
                        .await
                        .map_err(|_| timed_out())?;
                    permits.push(permit);
                }
            }

            // Then the turn: one request of a key set decides at a time, in arrival order.
            if !checks.is_empty() {
                let _turn = timeout_at(deadline, shared.turns.acquire(checks_key(&checks), 1))
                    .await
                    .map_err(|_| timed_out())?;
                let mut waited = false;
                loop {
                    let decision = store
                        .check(rules.clock.now(), &checks)
                        .await
                        .map_err(|e| Error::from(PacingError::Store(e)))?;
                    if decision.admitted {
                        break;
                    }
                    let wake = Instant::now() + decision.retry_after;
                    if wake > deadline {
                        let rule = indices
                            .get(decision.headline.index)
                            .map_or_else(String::new, |&i| rules.rules[i].name.clone());
                        return Err(Error::from(PacingError::WaitTooLong {
                            rule,
                            wait: decision.retry_after,
                        }));
                    }
                    if !waited {
                        waited = true;
                        for &i in &indices {
                            bump(&rules.stats.rules[i].limited);
                        }
                    }
                    sleep_until(wake).await;
                }
                for &i in &indices {
                    bump(&rules.stats.rules[i].admitted);
                }
            }

            // Usage quotas: counted once the limits admit the request, just before sending.
            let mut statuses = Vec::new();
            // Worked out again only when there are quotas to match (`plan` above refused
            // any path without a canonical form, so the fallback is never taken).
            let raw = req.uri().path();
            let path = if shared.quotas.is_empty() {
                std::borrow::Cow::Borrowed(raw)
            } else {
                crate::rules::path::canonicalize(raw).unwrap_or(std::borrow::Cow::Borrowed(raw))
            };
            for q in shared.quotas.iter() {
                let key = match q.key_of(&req, &path) {
                    None => continue,
                    Some(Ok(key)) => key,
                    Some(Err(what)) => {
                        return Err(Error::from(PacingError::MissingKey {
                            rule: q.name.clone(),
                            what,
                        }))
                    }
                };
                let usage = store
                    .consume_usage(rules.clock.now(), key, 1, q.limits)
                    .await
                    .map_err(|e| Error::from(PacingError::Store(e)))?;
                if !usage.admitted {
                    tracing::error!(quota = %q.name, used = usage.lifetime_used, "usage quota exhausted");
                    return Err(Error::from(PacingError::QuotaExhausted {
                        quota: q.name.clone(),
                        lifetime_used: usage.lifetime_used,
                        window_remaining: usage.window_remaining(&q.limits),
                        window_resets_after: usage.window_resets_after,
                    }));
                }
                let warned = q
                    .warn_at
                    .is_some_and(|w| usage.lifetime_used >= w && usage.lifetime_used - 1 < w);
                if warned {
                    q.warnings.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(
                        quota = %q.name,
                        used = usage.lifetime_used,
                        limit = q.limits.lifetime,
                        "usage quota reached its warning threshold"
                    );
                }
                statuses.push(QuotaStatus {
                    quota: q.name.clone(),
                    lifetime_used: usage.lifetime_used,
                    lifetime_remaining: usage.lifetime_remaining(&q.limits),
                    window_remaining: usage.window_remaining(&q.limits),
                    warned,
                });
            }

            // Adaptive pacing: this endpoint's next send slot, in arrival order.
            let endpoint = shared
                .adaptive
                .as_ref()
                .map(|_| Endpoint::new(req.uri(), req.headers().get(http::header::HOST)).key());
            if let (Some(adaptive), Some(endpoint)) = (&shared.adaptive, &endpoint) {
                let slot = adaptive.reserve(endpoint);
                if slot > deadline {
                    return Err(Error::from(PacingError::WaitTooLong {
                        rule: "adaptive".to_owned(),
                        wait: slot - Instant::now(),
                    }));
                }
                sleep_until(slot).await;
            }

            let mut res = inner.call(req).await.map_err(Error::new)?;
            if let (Some(adaptive), Some(endpoint)) = (&shared.adaptive, &endpoint) {
                adaptive.observe(endpoint, res.status(), res.headers());
            }
            drop(permits);
            if !statuses.is_empty() {
                res.extensions_mut().insert(statuses);
            }
            Ok(res)
        })
    }
}
