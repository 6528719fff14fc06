//! [`RetryContext`]: the attempt count shared by stacked retrying layers.

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, OnceLock};

use http::HeaderValue;

/// The attempt counter shared by stacked retrying layers, carried in request extensions.
///
/// The outermost retrying layer adds it to each request; every inner layer and the inner
/// service see the same one, so the service can tell a retry from a first attempt:
///
/// ```
/// use std::convert::Infallible;
/// use tower::{Layer, ServiceExt};
/// use tower_throttle::{BackoffLayer, ReplayBody, RetryContext};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
/// let svc = BackoffLayer::builder().build()?.layer(tower::service_fn(
///     |req: http::Request<ReplayBody>| async move {
///         let retries = req.extensions().get::<RetryContext>().map(RetryContext::retries);
///         assert_eq!(retries, Some(0), "the first attempt");
///         Ok::<_, Infallible>(http::Response::new(String::new()))
///     },
/// ));
/// svc.oneshot(http::Request::get("http://api.test/").body(String::new())?).await?;
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct RetryContext {
    inner: Arc<ContextInner>,
}

#[derive(Debug)]
struct ContextInner {
    retries: AtomicU32,
    deposited: AtomicBool,
    /// A layer gave up: no layer retries again.
    stopped: AtomicBool,
    idempotency_key: OnceLock<HeaderValue>,
}

impl RetryContext {
    pub(crate) fn new() -> Self {
        RetryContext {
            inner: Arc::new(ContextInner {
                retries: AtomicU32::new(0),
                deposited: AtomicBool::new(false),
                stopped: AtomicBool::new(false),
                idempotency_key: OnceLock::new(),
            }),
        }
    }

    /// Retries made so far by every layer sharing this context.
    pub fn retries(&self) -> u32 {
        self.inner.retries.load(Ordering::Acquire)
    }

    /// True exactly once per original request, however many layers and attempts see it
    /// (a retry budget deposits once per request).
    pub(crate) fn first_deposit(&self) -> bool {
        !self.inner.deposited.swap(true, Ordering::AcqRel)
    }

    /// The request's idempotency key: made once by `make`, then the same for every attempt
    /// of every stacked layer.
    pub(crate) fn idempotency_key(&self, make: impl FnOnce() -> HeaderValue) -> HeaderValue {
        self.inner.idempotency_key.get_or_init(make).clone()
    }

    /// Ends the retries of every layer: a layer gave up. An inner layer that gives up
    /// on a gRPC call hands its last response up instead of an error; the outer layers
    /// then see a response they would retry, and this keeps them from retrying it (as
    /// they never retry another layer's [`RetryError`](crate::RetryError)).
    pub(crate) fn stop(&self) {
        self.inner.stopped.store(true, Ordering::Release);
    }

    /// Claims one retry if fewer than `own_max` retries were made by all layers together
    /// and no layer gave up.
    pub(crate) fn try_claim(&self, own_max: u32) -> bool {
        if self.inner.stopped.load(Ordering::Acquire) {
            return false;
        }
        let max = own_max;
        self.inner
            .retries
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < max).then_some(n + 1)
            })
            .is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn context_is_shared_by_clones() {
        let ctx = RetryContext::new();
        let other = ctx.clone();
        assert!(ctx.first_deposit());
        assert!(!other.first_deposit());
        let key = ctx.idempotency_key(|| HeaderValue::from_static("k1"));
        assert_eq!(
            other.idempotency_key(|| HeaderValue::from_static("k2")),
            key
        );
        // Each layer retries while the shared total is below its own maximum.
        assert!(ctx.try_claim(2) && other.try_claim(5));
        assert!(
            !ctx.try_claim(2),
            "2 retries made: the layer allowing 2 stops"
        );
        assert!(other.try_claim(5) && other.try_claim(5) && other.try_claim(5));
        assert!(!other.try_claim(5));
        assert_eq!(ctx.retries(), 5);
    }

    #[test]
    fn a_stopped_context_claims_no_retry() {
        let ctx = RetryContext::new();
        assert!(ctx.try_claim(3));
        ctx.clone().stop();
        assert!(!ctx.try_claim(3), "a layer gave up: no layer retries");
        assert_eq!(ctx.retries(), 1);
    }
}
