use std::convert::Infallible;
use std::sync::Mutex as StdMutex;

use http::{Request, Response};
use http_body_util::Empty;
use tokio::time::Instant;
use tower::ServiceExt;

use super::*;
use crate::client::ReplayBody;

/// A layer seeded with `seed` waits exactly the delays the seeded schedule draws.
#[tokio::test(start_paused = true)]
async fn a_seeded_layer_draws_the_seeded_schedule() {
    let ms = Duration::from_millis;
    let schedule = Backoff::exponential(Duration::from_secs(1), 2.0)
        .and_then(|b| b.max_delay(Duration::from_secs(60)))
        .unwrap()
        .jitter(Jitter::Additive(ms(500)));
    let sent = Arc::new(StdMutex::new(Vec::new()));
    let log = Arc::clone(&sent);
    let svc = BackoffLayer::builder()
        .backoff(schedule.clone())
        .max_retries(5)
        .seed(42)
        .budget(None)
        .build()
        .unwrap()
        .layer(tower::service_fn(move |_req: Request<ReplayBody>| {
            log.lock().unwrap().push(Instant::now());
            let mut res = Response::new(Empty::<bytes::Bytes>::new());
            *res.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
            async move { Ok::<_, Infallible>(res) }
        }));
    let req = Request::get("http://api.test/x").body(Empty::<bytes::Bytes>::new());
    let err = svc.oneshot(req.unwrap()).await.unwrap_err();
    assert_eq!(
        err.downcast_ref::<RetryError>().map(RetryError::attempts),
        Some(6)
    );

    let mut rng = Rng::seeded(42);
    let mut prev = None;
    let mut expected = Vec::new();
    for n in 0..5 {
        let d = schedule.delay(n, prev, &mut rng);
        // tokio's timer ends a wait on the next whole millisecond.
        expected.push(ms(d.as_nanos().div_ceil(1_000_000) as u64));
        prev = Some(d);
    }
    let sent = sent.lock().unwrap();
    let gaps: Vec<_> = sent.windows(2).map(|w| w[1] - w[0]).collect();
    assert_eq!(gaps, expected);
}

#[test]
fn idempotency_keys_are_v4_uuids() {
    let key = BackoffPolicy::new_idempotency_key();
    let parsed = uuid::Uuid::parse_str(key.to_str().unwrap()).unwrap();
    assert_eq!(parsed.get_version(), Some(uuid::Version::Random));
    assert_eq!(key.len(), 36);
    assert_ne!(BackoffPolicy::new_idempotency_key(), key);
}

#[test]
fn a_zero_max_elapsed_is_refused() {
    let err = BackoffLayer::builder()
        .max_elapsed(Duration::ZERO)
        .build()
        .unwrap_err();
    assert_eq!(err, BackoffError::ZeroMaxElapsed);
    assert!(BackoffLayer::builder()
        .max_elapsed(Duration::from_nanos(1))
        .build()
        .is_ok());
}
