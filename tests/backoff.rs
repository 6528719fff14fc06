//! BackoffLayer under paused time: the guides' exact schedules, classification,
//! idempotency, the budget and body replay.

#[path = "support/mock.rs"]
mod mock;

use std::io;
use std::time::Duration;

use bytes::Bytes;
use futures_util::stream;
use http::{Method, Request, StatusCode};
use http_body::Frame;
use http_body_util::{Full, StreamBody};
use mock::{cumulative, secs, status, with, Mock, Reply};
use tower::{Layer, ServiceExt};
use tower_throttle::backoff::{
    Backoff, BackoffLayer, BackoffLayerBuilder, HintMode, Jitter, RetryBudget,
};
use tower_throttle::RetryError;

fn req(method: Method, path: &str) -> Request<Full<Bytes>> {
    Request::builder()
        .method(method)
        .uri(format!("http://api.test{path}"))
        .body(Full::new(Bytes::from_static(b"{\"n\":1}")))
        .unwrap()
}

fn get(path: &str) -> Request<Full<Bytes>> {
    req(Method::GET, path)
}

/// Exact exponential schedule, no jitter, no budget.
fn plain(base: f64, factor: f64) -> BackoffLayerBuilder {
    BackoffLayer::builder()
        .backoff(
            Backoff::exponential(secs(base), factor)
                .unwrap()
                .jitter(Jitter::None),
        )
        .budget(None)
}

fn retry_error(e: tower_throttle::Error) -> RetryError {
    *e.into_inner()
        .downcast::<RetryError>()
        .expect("a RetryError")
}

#[tokio::test(start_paused = true)]
async fn clerk_schedule_one_two_four_then_give_up() {
    let mock = Mock::with_fallback(vec![], status(429));
    let svc = plain(1.0, 2.0)
        .max_retries(3)
        .build()
        .unwrap()
        .layer(mock.service());
    let err = retry_error(svc.oneshot(get("/v1/users")).await.unwrap_err());
    assert!(
        matches!(err, RetryError::Exhausted { attempts: 4, .. }),
        "{err:?}"
    );
    assert_eq!(err.last_status(), Some(StatusCode::TOO_MANY_REQUESTS));
    assert_eq!(mock.times(), cumulative(&[secs(1.0), secs(2.0), secs(4.0)]));
}

#[tokio::test(start_paused = true)]
async fn retry_after_replaces_the_schedule_exactly_or_as_a_floor() {
    let mock = Mock::new(vec![with(429, &[("retry-after", "5")]), status(503)]);
    let svc = plain(1.0, 2.0).build().unwrap().layer(mock.service());
    assert_eq!(
        svc.oneshot(get("/x")).await.unwrap().status(),
        StatusCode::OK
    );
    // 5 s as asked, then the schedule's second step (2 s).
    assert_eq!(mock.times(), cumulative(&[secs(5.0), secs(2.0)]));

    let mock = Mock::new(vec![with(503, &[("retry-after", "1")])]);
    let svc = plain(3.0, 2.0)
        .hint_mode(HintMode::AtLeastBackoff)
        .build()
        .unwrap()
        .layer(mock.service());
    assert_eq!(
        svc.oneshot(get("/x")).await.unwrap().status(),
        StatusCode::OK
    );
    assert_eq!(mock.times(), [secs(0.0), secs(3.0)]);

    let mock = Mock::new(vec![with(503, &[("retry-after", "100")])]);
    let svc = plain(1.0, 2.0)
        .hint_mode(HintMode::Ignore)
        .build()
        .unwrap()
        .layer(mock.service());
    assert_eq!(
        svc.oneshot(get("/x")).await.unwrap().status(),
        StatusCode::OK
    );
    assert_eq!(mock.times(), [secs(0.0), secs(1.0)]);
}

#[tokio::test(start_paused = true)]
async fn clay_schedule_with_bounded_additive_jitter() {
    let schedule = Backoff::exponential(secs(1.0), 2.0)
        .unwrap()
        .max_delay(secs(60.0))
        .unwrap()
        .jitter(Jitter::Additive(Duration::from_millis(500)));
    let run = |seed| {
        let mock = Mock::with_fallback(vec![], status(503));
        let svc = BackoffLayer::builder()
            .backoff(schedule.clone())
            .max_retries(5)
            .seed(seed)
            .budget(None)
            .build()
            .unwrap()
            .layer(mock.service());
        async move {
            let err = retry_error(svc.oneshot(get("/x")).await.unwrap_err());
            assert_eq!(err.attempts(), 6);
            mock.times()
        }
    };
    let times = run(42).await;
    // Each delay is 2^n s plus at most 500 ms (whole milliseconds on tokio's timer).
    for (n, pair) in times.windows(2).enumerate() {
        let (d, nominal) = (pair[1] - pair[0], secs(2f64.powi(n as i32)));
        assert!(
            d >= nominal && d <= nominal + Duration::from_millis(500),
            "{d:?}"
        );
    }
    // The same seed reproduces the same delays (the exact draws are checked against the
    // seeded schedule by the crate's unit test `a_seeded_layer_draws_the_seeded_schedule`).
    assert_eq!(run(42).await, times);
    assert_ne!(run(43).await, times);
}

#[tokio::test(start_paused = true)]
async fn polling_on_a_header_schedule_and_sixty_attempt_limit() {
    let pending = with(200, &[("x-job-status", "pending")]);
    let done = with(200, &[("x-job-status", "done")]);
    let clari = || {
        BackoffLayer::builder()
            .backoff(
                Backoff::exponential(secs(5.0), 1.5)
                    .unwrap()
                    .max_delay(secs(60.0))
                    .unwrap()
                    .jitter(Jitter::None),
            )
            .max_retries(59)
            .budget(None)
            .retry_if(|status, headers| {
                status == StatusCode::OK
                    && headers.get("x-job-status").is_some_and(|v| v == "pending")
            })
    };
    let mock = Mock::new(vec![
        pending.clone(),
        pending.clone(),
        pending.clone(),
        done,
    ]);
    let res = clari()
        .build()
        .unwrap()
        .layer(mock.service())
        .oneshot(get("/jobs/1"))
        .await
        .unwrap();
    assert_eq!(res.headers()["x-job-status"], "done");
    assert_eq!(
        mock.times(),
        cumulative(&[secs(5.0), secs(7.5), secs(11.25)])
    );

    let mock = Mock::with_fallback(vec![], pending);
    let layer = clari().build().unwrap();
    let err = retry_error(
        layer
            .layer(mock.service())
            .oneshot(get("/jobs/2"))
            .await
            .unwrap_err(),
    );
    assert!(
        matches!(err, RetryError::Exhausted { attempts: 60, .. }),
        "{err:?}"
    );
    let schedule = Backoff::exponential(secs(5.0), 1.5)
        .unwrap()
        .max_delay(secs(60.0))
        .unwrap();
    let delays: Vec<Duration> = (0..59).map(|n| schedule.nominal(n)).collect();
    assert_eq!(delays[7], secs(60.0));
    assert_eq!(mock.times(), cumulative(&delays));
}

#[tokio::test(start_paused = true)]
async fn never_retried_statuses() {
    for code in [400, 401, 404, 409, 422, 501] {
        let mock = Mock::new(vec![status(code)]);
        let svc = plain(1.0, 2.0).build().unwrap().layer(mock.service());
        assert_eq!(
            svc.oneshot(get("/x")).await.unwrap().status().as_u16(),
            code
        );
        assert_eq!(mock.times().len(), 1, "{code}");
    }
    for code in [429, 500, 502, 503, 504] {
        let mock = Mock::new(vec![status(code)]);
        let svc = plain(1.0, 2.0).build().unwrap().layer(mock.service());
        assert_eq!(
            svc.oneshot(get("/x")).await.unwrap().status(),
            StatusCode::OK
        );
        assert_eq!(mock.times().len(), 2, "{code}");
    }
}

#[tokio::test(start_paused = true)]
async fn idempotency_rules() {
    // POST is not retried by default: the caller gets the 503.
    let mock = Mock::new(vec![status(503)]);
    let svc = plain(1.0, 2.0).build().unwrap().layer(mock.service());
    assert_eq!(
        svc.oneshot(req(Method::POST, "/x"))
            .await
            .unwrap()
            .status()
            .as_u16(),
        503
    );
    assert_eq!(mock.times().len(), 1);

    // A POST carrying an Idempotency-Key is.
    let mock = Mock::new(vec![status(503)]);
    let svc = plain(1.0, 2.0).build().unwrap().layer(mock.service());
    let mut keyed = req(Method::POST, "/x");
    keyed
        .headers_mut()
        .insert("idempotency-key", "abc".parse().unwrap());
    assert_eq!(svc.oneshot(keyed).await.unwrap().status(), StatusCode::OK);
    assert_eq!(mock.times().len(), 2);

    // Generated keys: one per request, the same on every attempt.
    let mock = Mock::new(vec![status(503), status(502), status(200), status(503)]);
    let svc = plain(1.0, 2.0)
        .generate_idempotency_key(true)
        .build()
        .unwrap()
        .layer(mock.service());
    svc.clone().oneshot(req(Method::POST, "/x")).await.unwrap();
    svc.oneshot(req(Method::POST, "/x")).await.unwrap();
    let keys: Vec<String> = mock
        .hits()
        .into_iter()
        .map(|h| h.idempotency_key.unwrap())
        .collect();
    assert_eq!(keys.len(), 5);
    // A v4 UUID in its canonical (hyphenated, lower-case) form.
    let uuid = |k: &str| {
        k.len() == 36 && k.chars().filter(|&c| c == '-').count() == 4 && k.as_bytes()[14] == b'4'
    };
    assert!(uuid(&keys[0]) && keys[0] == keys[1] && keys[1] == keys[2]);
    assert!(keys[3] == keys[4] && keys[3] != keys[0]);
    // GETs get no key.
    let mock = Mock::new(vec![]);
    let svc = plain(1.0, 2.0)
        .generate_idempotency_key(true)
        .build()
        .unwrap()
        .layer(mock.service());
    svc.oneshot(get("/x")).await.unwrap();
    assert_eq!(mock.hits()[0].idempotency_key, None);
}

#[tokio::test(start_paused = true)]
async fn errors_where_the_request_was_never_sent_are_retried() {
    let mock = Mock::new(vec![Reply::Fail(io::ErrorKind::ConnectionRefused)]);
    let svc = plain(1.0, 2.0).build().unwrap().layer(mock.service());
    // Even a POST: the server never saw it.
    assert_eq!(
        svc.oneshot(req(Method::POST, "/x")).await.unwrap().status(),
        StatusCode::OK
    );
    assert_eq!(mock.times(), [secs(0.0), secs(1.0)]);

    let mock = Mock::new(vec![Reply::Fail(io::ErrorKind::ConnectionReset)]);
    let svc = plain(1.0, 2.0).build().unwrap().layer(mock.service());
    let err = svc.oneshot(get("/x")).await.unwrap_err();
    assert_eq!(
        err.downcast_ref::<io::Error>().unwrap().kind(),
        io::ErrorKind::ConnectionReset
    );
    assert_eq!(mock.times().len(), 1);

    // Timeouts only when asked, and only for idempotent requests.
    for (on, method, attempts) in [
        (false, Method::GET, 1),
        (true, Method::GET, 2),
        (true, Method::POST, 1),
    ] {
        let mock = Mock::new(vec![Reply::Message("request timed out")]);
        let svc = plain(1.0, 2.0)
            .retry_timeouts(on)
            .build()
            .unwrap()
            .layer(mock.service());
        let _ = svc.oneshot(req(method, "/x")).await;
        assert_eq!(mock.times().len(), attempts);
    }

    // Exhausted on errors: the last error is the source.
    let mock = Mock::with_fallback(vec![], Reply::Fail(io::ErrorKind::ConnectionRefused));
    let svc = plain(1.0, 2.0)
        .max_retries(2)
        .build()
        .unwrap()
        .layer(mock.service());
    let err = retry_error(svc.oneshot(get("/x")).await.unwrap_err());
    assert!(matches!(
        &err,
        RetryError::Exhausted {
            attempts: 3,
            last_status: None,
            ..
        }
    ));
    let source = std::error::Error::source(&err).unwrap();
    assert_eq!(
        source.downcast_ref::<io::Error>().unwrap().kind(),
        io::ErrorKind::ConnectionRefused
    );
}

#[tokio::test(start_paused = true)]
async fn max_elapsed_stops_before_waiting_past_it() {
    let mock = Mock::with_fallback(vec![], status(503));
    let svc = plain(1.0, 2.0)
        .max_retries(10)
        .max_elapsed(secs(10.0))
        .build()
        .unwrap()
        .layer(mock.service());
    let err = retry_error(svc.oneshot(get("/x")).await.unwrap_err());
    // 1 + 2 + 4 = 7 s; the next 8 s would end at 15 s > 10 s.
    assert_eq!(err.attempts(), 4);
    assert_eq!(mock.times(), cumulative(&[secs(1.0), secs(2.0), secs(4.0)]));
}

#[tokio::test(start_paused = true)]
async fn the_budget_is_shared_across_clones() {
    let budget = RetryBudget::new(secs(10.0), 0, 0.2).unwrap();
    let mock = Mock::new(vec![status(200); 10]);
    let layer = plain(0.001, 2.0).budget(Some(budget)).build().unwrap();
    let svc = layer.layer(mock.service());
    for i in 0..10 {
        let svc = if i % 2 == 0 {
            svc.clone()
        } else {
            layer.layer(mock.service())
        };
        assert_eq!(
            svc.oneshot(get("/x")).await.unwrap().status(),
            StatusCode::OK
        );
    }
    // 10 requests deposited: 20 % of them, 2 retries (and 1 more once 15 are in).
    let mut outcomes = Vec::new();
    for _ in 0..5 {
        let mock = Mock::new(vec![status(503)]);
        let svc = layer.layer(mock.service());
        outcomes.push(match svc.oneshot(get("/x")).await {
            Ok(res) => res.status().as_u16().to_string(),
            Err(e) => match retry_error(e) {
                RetryError::BudgetExhausted {
                    attempts: 1,
                    last_status,
                    ..
                } => {
                    format!("budget {}", last_status.unwrap().as_u16())
                }
                other => panic!("{other:?}"),
            },
        });
    }
    assert_eq!(outcomes, ["200", "200", "budget 503", "budget 503", "200"]);
}

type Chunks = stream::Iter<std::vec::IntoIter<Result<Frame<Bytes>, io::Error>>>;

fn streaming(chunks: &[&'static str]) -> StreamBody<Chunks> {
    let frames: Vec<_> = chunks
        .iter()
        .map(|c| Ok(Frame::data(Bytes::from_static(c.as_bytes()))))
        .collect();
    StreamBody::new(stream::iter(frames))
}

#[tokio::test(start_paused = true)]
async fn streaming_bodies_are_replayed_byte_identical() {
    let mock = Mock::new(vec![status(503), status(503)]);
    let svc = plain(1.0, 2.0).build().unwrap().layer(mock.service());
    let body = streaming(&["{\"name\":", "\"a\",", "\"n\":1}"]);
    let req = Request::put("http://api.test/x").body(body).unwrap();
    assert_eq!(svc.oneshot(req).await.unwrap().status(), StatusCode::OK);
    let bodies: Vec<Bytes> = mock.hits().into_iter().map(|h| h.body).collect();
    assert_eq!(
        bodies,
        vec![Bytes::from_static(b"{\"name\":\"a\",\"n\":1}"); 3]
    );
}

#[tokio::test(start_paused = true)]
async fn bodies_over_the_replay_limit_are_sent_once_and_not_retried() {
    let mock = Mock::new(vec![status(503)]);
    let svc = plain(1.0, 2.0)
        .max_replay_bytes(8)
        .build()
        .unwrap()
        .layer(mock.service());
    let req = Request::put("http://api.test/x")
        .body(streaming(&["0123", "4567", "89ab"]))
        .unwrap();
    // The first attempt is sent whole; the 503 comes back as is.
    assert_eq!(svc.oneshot(req).await.unwrap().status().as_u16(), 503);
    let hits = mock.hits();
    assert_eq!(hits.len(), 1);
    assert_eq!(hits[0].body, Bytes::from_static(b"0123456789ab"));
}

/// A caller's extension, to check it reaches every attempt.
#[derive(Clone, Debug, PartialEq)]
struct Tenant(&'static str);

#[tokio::test(start_paused = true)]
async fn stacked_layers_send_extensions_context_and_body_on_every_attempt() {
    use std::sync::{Arc, Mutex};
    use tower_throttle::retry_after::RetryAfterLayer;
    use tower_throttle::RetryContext;

    for tenant in [None, Some(Tenant("t1"))] {
        // 429 (retried by the outer layer), then 503 (by the inner one), then 200.
        let seen = Arc::new(Mutex::new(Vec::new()));
        let script = Arc::new(Mutex::new(vec![503, 429]));
        let (log, replies) = (Arc::clone(&seen), Arc::clone(&script));
        let inner = tower::service_fn(move |req: Request<_>| {
            let (log, replies) = (Arc::clone(&log), Arc::clone(&replies));
            async move {
                let (parts, body) = req.into_parts();
                let body = http_body_util::BodyExt::collect(body).await?.to_bytes();
                let retries = parts.extensions.get::<RetryContext>().map(|c| c.retries());
                let tenant = parts.extensions.get::<Tenant>().cloned();
                log.lock().unwrap().push((retries, tenant, body));
                let code = replies.lock().unwrap().pop().unwrap_or(200);
                let mut res = http::Response::new(Full::new(Bytes::new()));
                *res.status_mut() = StatusCode::from_u16(code).unwrap();
                res.headers_mut()
                    .insert("retry-after", http::HeaderValue::from_static("1"));
                Ok::<_, tower_throttle::BoxError>(res)
            }
        });
        let svc = tower::ServiceBuilder::new()
            .layer(
                RetryAfterLayer::builder()
                    .release_jitter(secs(0.0))
                    .build()
                    .unwrap(),
            )
            .layer(
                plain(1.0, 2.0)
                    .statuses([StatusCode::SERVICE_UNAVAILABLE])
                    .build()
                    .unwrap(),
            )
            .service(inner);
        let mut request = get("/x");
        if let Some(t) = tenant.clone() {
            request.extensions_mut().insert(t);
        }
        assert_eq!(svc.oneshot(request).await.unwrap().status(), StatusCode::OK);
        let body = Bytes::from_static(b"{\"n\":1}");
        let expected: Vec<_> = (0..3)
            .map(|n| (Some(n), tenant.clone(), body.clone()))
            .collect();
        assert_eq!(*seen.lock().unwrap(), expected, "tenant {tenant:?}");
    }
}
