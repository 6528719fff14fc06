//! Stacking the retrying layers, and the stack over a real hyper-util client on loopback.

#[path = "support/mock.rs"]
mod mock;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Full};
use mock::{secs, status, with, Mock};
use tower::{ServiceBuilder, ServiceExt};
use tower_throttle::backoff::{Backoff, BackoffLayer, Jitter};
use tower_throttle::retry_after::RetryAfterLayer;
use tower_throttle::ReplayBody;
use tower_throttle::RetryError;

fn get(path: &str) -> Request<Full<Bytes>> {
    Request::builder()
        .uri(format!("http://api.test{path}"))
        .body(Full::new(Bytes::new()))
        .unwrap()
}

fn backoff(max_retries: u32) -> BackoffLayer {
    BackoffLayer::builder()
        .backoff(
            Backoff::exponential(secs(1.0), 2.0)
                .unwrap()
                .jitter(Jitter::None),
        )
        .max_retries(max_retries)
        .budget(None)
        .build()
        .unwrap()
}

fn retry_after(max_retries: u32) -> RetryAfterLayer {
    RetryAfterLayer::builder()
        .max_retries(max_retries)
        .release_jitter(std::time::Duration::ZERO)
        .build()
        .unwrap()
}

#[tokio::test(start_paused = true)]
async fn stacking_never_multiplies_attempts() {
    // Retry-After outside, Backoff inside, both allowing 3 retries.
    let mock = Mock::with_fallback(vec![], with(503, &[("retry-after", "1")]));
    let layer = retry_after(3);
    let svc = ServiceBuilder::new()
        .layer(layer.clone())
        .layer(backoff(3))
        .service(mock.service());
    let err = *svc
        .oneshot(get("/x"))
        .await
        .unwrap_err()
        .into_inner()
        .downcast::<RetryError>()
        .unwrap();
    assert_eq!(
        mock.times().len(),
        4,
        "1 attempt + 3 retries in total, not 16"
    );
    assert_eq!(err.attempts(), 4, "counts the attempts of every layer");
    // The inner layer gave up on a 503 with guidance: the outer gate still blocks the
    // endpoint for new requests.
    assert_eq!(
        layer.gate().unwrap().blocked_for("GET api.test/x"),
        Some(secs(1.0))
    );

    // Each layer retries while the shared total is below its own maximum: the larger
    // maximum (5) bounds the total, never 3 × 5.
    let mock = Mock::with_fallback(vec![], with(429, &[("retry-after", "1")]));
    let svc = ServiceBuilder::new()
        .layer(backoff(3))
        .layer(retry_after(5))
        .service(mock.service());
    let err = *svc
        .oneshot(get("/x"))
        .await
        .unwrap_err()
        .into_inner()
        .downcast::<RetryError>()
        .unwrap();
    assert_eq!(mock.times().len(), 6);
    assert_eq!(err.attempts(), 6);
}

#[tokio::test(start_paused = true)]
async fn the_schedule_continues_across_layers() {
    // Backoff inside retries only 503; Retry-After outside retries the 429s.
    let inner = BackoffLayer::builder()
        .backoff(
            Backoff::exponential(secs(1.0), 2.0)
                .unwrap()
                .jitter(Jitter::None),
        )
        .statuses([StatusCode::SERVICE_UNAVAILABLE])
        .budget(None)
        .max_retries(5)
        .build()
        .unwrap();
    let mock = Mock::new(vec![
        status(503),
        with(429, &[("retry-after", "3")]),
        status(503),
    ]);
    let svc = ServiceBuilder::new()
        .layer(retry_after(5))
        .layer(inner)
        .service(mock.service());
    assert_eq!(
        svc.oneshot(get("/x")).await.unwrap().status(),
        StatusCode::OK
    );
    // 1 s (retry 0), 3 s as asked, then 4 s: the third retry of the request, not a
    // restart at 1 s.
    assert_eq!(mock.times(), [secs(0.0), secs(1.0), secs(4.0), secs(8.0)]);
}

#[tokio::test(start_paused = true)]
async fn a_recovering_request_honors_retry_after_then_backs_off() {
    let mock = Mock::new(vec![with(429, &[("retry-after", "2")]), status(500)]);
    let svc = ServiceBuilder::new()
        .layer(retry_after(3))
        .layer(backoff(3))
        .service(mock.service());
    assert_eq!(
        svc.oneshot(get("/x")).await.unwrap().status(),
        StatusCode::OK
    );
    // 2 s as asked, then the backoff's second step (2 s).
    assert_eq!(mock.times(), [secs(0.0), secs(2.0), secs(4.0)]);
}

#[tokio::test]
async fn hyper_util_client_against_a_real_loopback_server() {
    // A server that answers 429 with Retry-After: 1 to the first request only.
    let count = Arc::new(AtomicUsize::new(0));
    let app = {
        let count = Arc::clone(&count);
        axum::Router::new().route(
            "/v1/users",
            axum::routing::post(move |body: Bytes| {
                let n = count.fetch_add(1, Ordering::SeqCst);
                async move {
                    if n == 0 {
                        (
                            StatusCode::TOO_MANY_REQUESTS,
                            [("retry-after", "1")],
                            Bytes::new(),
                        )
                    } else {
                        (StatusCode::OK, [("x-echo", "1")], body)
                    }
                }
            }),
        )
    };
    let listener = tokio::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0)))
        .await
        .unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(async move { axum::serve(listener, app).await });

    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<ReplayBody>();
    let svc = ServiceBuilder::new()
        .layer(RetryAfterLayer::builder().build().unwrap())
        .layer(
            BackoffLayer::builder()
                .generate_idempotency_key(true)
                .build()
                .unwrap(),
        )
        .service(client);
    let req = Request::post(format!("http://{addr}/v1/users"))
        .body(Full::new(Bytes::from_static(
            b"{\"email\":\"a@example.com\"}",
        )))
        .unwrap();
    let res = svc.oneshot(req).await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let body = res.into_body().collect().await.unwrap().to_bytes();
    // The replayed POST body reached the server intact on the retry.
    assert_eq!(&body[..], b"{\"email\":\"a@example.com\"}");
    assert_eq!(count.load(Ordering::SeqCst), 2);
    server.abort();
}

#[tokio::test(start_paused = true)]
async fn an_inner_backoff_keeps_one_idempotency_key_across_outer_retries() {
    // RetryAfter outside retries the 429s, Backoff inside the 503 and makes the key: every
    // outer attempt re-enters the inner layer, which must reuse the key.
    let mock = Mock::new(vec![
        with(429, &[("retry-after", "1")]),
        status(503),
        with(429, &[("retry-after", "1")]),
    ]);
    let svc = ServiceBuilder::new()
        .layer(retry_after(5))
        .layer(
            BackoffLayer::builder()
                .backoff(
                    Backoff::exponential(secs(1.0), 2.0)
                        .unwrap()
                        .jitter(Jitter::None),
                )
                .max_retries(5)
                .statuses([StatusCode::SERVICE_UNAVAILABLE])
                .generate_idempotency_key(true)
                .build()
                .unwrap(),
        )
        .service(mock.service());
    let req = Request::post("http://api.test/v1/invitations")
        .body(Full::new(Bytes::from_static(b"{}")))
        .unwrap();
    assert_eq!(svc.oneshot(req).await.unwrap().status(), StatusCode::OK);
    let keys: Vec<String> = mock
        .hits()
        .into_iter()
        .map(|h| h.idempotency_key.unwrap())
        .collect();
    assert_eq!(keys.len(), 4);
    assert!(keys.iter().all(|k| *k == keys[0]), "{keys:?}");
}

#[tokio::test(start_paused = true)]
async fn a_full_stack_can_be_spawned_from_an_async_block() {
    // The layers' concrete error type keeps stacked futures `Send` inside async blocks
    // (as axum handlers and tokio::spawn need).
    let pacing = tower_throttle::RateLimitLayer::builder()
        .rule(tower_throttle::Rule::new(
            "api",
            tower_throttle::Quota::per_second(10).unwrap(),
        ))
        .build()
        .unwrap()
        .pacing()
        .build()
        .unwrap();
    let mock = Mock::new(vec![with(429, &[("retry-after", "1")])]);
    let svc = ServiceBuilder::new()
        .layer(pacing)
        .layer(retry_after(3))
        .layer(backoff(3))
        .service(mock.service());
    let task = tokio::spawn(async move {
        let first = svc.clone().oneshot(get("/a")).await?;
        let second = svc.oneshot(get("/b")).await?;
        Ok::<_, tower_throttle::Error>((first.status(), second.status()))
    });
    assert_eq!(
        task.await.unwrap().unwrap(),
        (StatusCode::OK, StatusCode::OK)
    );
    assert_eq!(mock.times(), [secs(0.0), secs(1.0), secs(1.0)]);
}

/// An inner layer that gives up on a gRPC call hands the response up (so the caller reads
/// the server's status); the outer layer does not retry it again, but its gate learns the
/// pushback.
#[tokio::test(start_paused = true)]
async fn an_inner_grpc_give_up_is_final() {
    let refusal = with(
        200,
        &[("grpc-status", "14"), ("grpc-retry-pushback-ms", "1000")],
    );
    let mock = Mock::with_fallback(vec![], refusal);
    let layer = retry_after(5);
    let svc = ServiceBuilder::new()
        .layer(layer.clone())
        .layer(backoff(1))
        .service(mock.service());
    let req = Request::post("http://api.test/pkg.Svc/Get")
        .header("content-type", "application/grpc")
        .body(Full::new(Bytes::new()))
        .unwrap();
    let res = svc.oneshot(req).await.unwrap();
    assert_eq!(res.headers()["grpc-status"], "14");
    assert_eq!(mock.times(), [secs(0.0), secs(1.0)], "2 attempts, not 6");
    assert_eq!(
        layer
            .gate()
            .unwrap()
            .blocked_for("POST api.test/pkg.Svc/Get"),
        Some(secs(1.0))
    );
}
