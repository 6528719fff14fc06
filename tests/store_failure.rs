//! A store that fails and recovers: the layer follows its `StoreFailure` policy, counts
//! every failure, and logs each transition once (failing, recovered), never once per
//! request. One test per binary: the tracing capture is a global subscriber.

use std::convert::Infallible;
use std::future::{ready, Ready};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use tower::{Service, ServiceExt};
use tower_throttle::clock::Timestamp;
use tower_throttle::gcra::{Check, Decision};
use tower_throttle::store::{StoreError, Usage, UsageLimits};
use tower_throttle::{MemoryStore, Quota, RateLimitLayer, Rule, Store, StoreFailure};

/// The in-memory store, or an error while `down` is set.
#[derive(Clone)]
struct FlakyStore {
    memory: MemoryStore,
    down: Arc<AtomicBool>,
}

impl Store for FlakyStore {
    type CheckFuture = Ready<Result<Decision, StoreError>>;
    type UsageFuture = Ready<Result<Usage, StoreError>>;

    fn check(&self, now: Timestamp, checks: &[Check]) -> Self::CheckFuture {
        if self.down.load(Ordering::SeqCst) {
            return ready(Err(StoreError::new("connection refused")));
        }
        ready(Ok(self.memory.check_at(now, checks)))
    }

    fn consume_usage(
        &self,
        _now: Timestamp,
        _key: u64,
        _amount: u64,
        _limits: UsageLimits,
    ) -> Self::UsageFuture {
        ready(Err(StoreError::new("not used")))
    }
}

static EVENTS: Mutex<Vec<(tracing::Level, String)>> = Mutex::new(Vec::new());

/// Records the `transition` field of every event.
struct Capture;

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for Capture {
    fn on_event(&self, event: &tracing::Event<'_>, _: tracing_subscriber::layer::Context<'_, S>) {
        struct Transition(Option<String>);
        impl tracing::field::Visit for Transition {
            fn record_str(&mut self, field: &tracing::field::Field, value: &str) {
                if field.name() == "transition" {
                    self.0 = Some(value.to_owned());
                }
            }
            fn record_debug(&mut self, _: &tracing::field::Field, _: &dyn std::fmt::Debug) {}
        }
        let mut t = Transition(None);
        event.record(&mut t);
        if let Some(t) = t.0 {
            EVENTS.lock().unwrap().push((*event.metadata().level(), t));
        }
    }
}

#[tokio::test(start_paused = true)]
async fn store_failures_follow_the_policy_and_are_logged_once_per_transition() {
    use tracing_subscriber::layer::SubscriberExt;
    tracing::subscriber::set_global_default(tracing_subscriber::registry().with(Capture)).unwrap();

    let down = Arc::new(AtomicBool::new(false));
    let store = FlakyStore {
        memory: MemoryStore::new(),
        down: Arc::clone(&down),
    };
    let layer = RateLimitLayer::builder()
        .rule(Rule::new("global", Quota::per_hour(100).unwrap()))
        .on_store_failure(StoreFailure::Reject)
        .store(store)
        .build()
        .unwrap();
    let handle = layer.handle();
    let mut svc =
        tower::ServiceBuilder::new()
            .layer(layer)
            .service_fn(|_req: Request<Full<Bytes>>| async {
                Ok::<_, Infallible>(Response::new(Full::new(Bytes::new())))
            });
    let mut send = async || {
        let req = Request::get("/x").body(Full::new(Bytes::new())).unwrap();
        svc.ready().await.unwrap().call(req).await.unwrap().status()
    };

    assert_eq!(send().await, StatusCode::OK);
    down.store(true, Ordering::SeqCst);
    for _ in 0..10 {
        assert_eq!(send().await, StatusCode::SERVICE_UNAVAILABLE);
    }
    down.store(false, Ordering::SeqCst);
    for _ in 0..5 {
        assert_eq!(send().await, StatusCode::OK);
    }
    down.store(true, Ordering::SeqCst);
    assert_eq!(send().await, StatusCode::SERVICE_UNAVAILABLE);

    assert_eq!(handle.store_errors(), 11);
    let events = EVENTS.lock().unwrap().clone();
    assert_eq!(
        events,
        [
            (tracing::Level::WARN, "failing".to_owned()),
            (tracing::Level::INFO, "recovered".to_owned()),
            (tracing::Level::WARN, "failing".to_owned()),
        ]
    );
}
