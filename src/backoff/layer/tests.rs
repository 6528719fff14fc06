use std::convert::Infallible;
use std::sync::Mutex as StdMutex;

use http::{HeaderValue, Request, Response};
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

type Reply = Response<Empty<bytes::Bytes>>;
type Scripted = tower::util::BoxCloneService<Request<ReplayBody>, Reply, std::io::Error>;
type Sent = Arc<StdMutex<Vec<Instant>>>;

/// A service answering `answers` in order (then the last one forever), recording when
/// each attempt came.
fn scripted(answers: Vec<Result<Reply, std::io::ErrorKind>>) -> (Scripted, Sent) {
    let sent = Arc::new(StdMutex::new(Vec::new()));
    let log = Arc::clone(&sent);
    let answers = Arc::new(answers);
    let svc = tower::service_fn(move |_req: Request<ReplayBody>| {
        let mut log = log.lock().unwrap();
        log.push(Instant::now());
        let n = (log.len() - 1).min(answers.len() - 1);
        let answer = match &answers[n] {
            Ok(res) => {
                let mut copy = Response::new(Empty::new());
                *copy.status_mut() = res.status();
                *copy.headers_mut() = res.headers().clone();
                Ok(copy)
            }
            Err(kind) => Err(std::io::Error::from(*kind)),
        };
        async move { answer }
    });
    (Scripted::new(svc), sent)
}

fn answer(status: u16, headers: &[(&'static str, &'static str)]) -> Response<Empty<bytes::Bytes>> {
    let mut res = Response::new(Empty::new());
    *res.status_mut() = StatusCode::from_u16(status).unwrap();
    for (k, v) in headers {
        res.headers_mut().insert(*k, HeaderValue::from_static(v));
    }
    res
}

fn grpc(code: &'static str, pushback: Option<&'static str>) -> Response<Empty<bytes::Bytes>> {
    let mut res = answer(
        200,
        &[("content-type", "application/grpc"), ("grpc-status", code)],
    );
    if let Some(ms) = pushback {
        res.headers_mut()
            .insert("grpc-retry-pushback-ms", HeaderValue::from_static(ms));
    }
    res
}

fn grpc_call() -> Request<Empty<bytes::Bytes>> {
    Request::post("http://api.test/pkg.Svc/Method")
        .header("content-type", "application/grpc")
        .body(Empty::new())
        .unwrap()
}

fn gaps(sent: &StdMutex<Vec<Instant>>) -> Vec<Duration> {
    let sent = sent.lock().unwrap();
    sent.windows(2).map(|w| w[1] - w[0]).collect()
}

/// Sends a gRPC call through `layer` to a service answering `answers`.
async fn run(
    layer: BackoffLayerBuilder,
    answers: Vec<Result<Reply, std::io::ErrorKind>>,
) -> (Result<Reply, crate::Error>, Sent) {
    let (svc, sent) = scripted(answers);
    let layer = layer.build().unwrap();
    (layer.layer(svc).oneshot(grpc_call()).await, sent)
}

fn plain() -> BackoffLayerBuilder {
    let schedule = Backoff::exponential(Duration::from_secs(1), 2.0).unwrap();
    BackoffLayer::builder()
        .backoff(schedule.jitter(Jitter::None))
        .budget(None)
}

/// gRPC calls are POSTs: their responses follow the gRPC retry codes, not the method.
#[tokio::test(start_paused = true)]
async fn grpc_codes_are_retried_whatever_the_method() {
    let script = vec![
        Ok(grpc("14", None)),
        Ok(grpc("8", Some("1500"))),
        Ok(grpc("0", None)),
    ];
    let (res, sent) = run(plain(), script).await;
    assert_eq!(res.unwrap().headers()["grpc-status"], "0");
    // The schedule's first delay, then exactly the pushback.
    let ms = Duration::from_millis;
    assert_eq!(gaps(&sent), [ms(1000), ms(1500)]);

    // The HTTP rules still hold without grpc-status: a proxy's 503 on a POST is not
    // retried with `idempotent_only`.
    let (res, sent) = run(plain(), vec![Ok(answer(503, &[]))]).await;
    assert_eq!(res.unwrap().status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(sent.lock().unwrap().len(), 1);
}

#[tokio::test(start_paused = true)]
async fn hint_modes_apply_to_the_pushback() {
    let ms = Duration::from_millis;
    for (mode, want) in [
        (HintMode::Exact, ms(300)),
        (HintMode::AtLeastBackoff, ms(1000)),
        (HintMode::Ignore, ms(1000)),
    ] {
        let script = vec![Ok(grpc("8", Some("300"))), Ok(grpc("0", None))];
        let (res, sent) = run(plain().hint_mode(mode), script).await;
        assert!(res.is_ok());
        // RESOURCE_EXHAUSTED with pushback is retried even when hints are ignored.
        assert_eq!(gaps(&sent), [want], "{mode:?}");
    }
}

/// A give-up on a gRPC call hands the caller the last response, so that its client reads
/// the server's status; an HTTP give-up stays a `RetryError`.
#[tokio::test(start_paused = true)]
async fn a_grpc_give_up_returns_the_last_response() {
    let empty = RetryBudget::new(Duration::from_secs(10), 0, 0.0).unwrap();
    for (layer, reply, attempts) in [
        (plain().max_retries(2), grpc("14", Some("10")), 3),
        // A proxy's 503 on a gRPC call: retried by the HTTP rules, and the give-up still
        // returns the response (tonic reads a 503 without grpc-status as UNAVAILABLE).
        (
            plain().max_retries(1).idempotent_only(false),
            answer(503, &[]),
            2,
        ),
        // An empty budget.
        (plain().budget(Some(empty)), grpc("14", None), 1),
    ] {
        let want = (reply.status(), reply.headers().get("grpc-status").cloned());
        let (res, sent) = run(layer, vec![Ok(reply)]).await;
        let res = res.unwrap();
        assert_eq!(
            (res.status(), res.headers().get("grpc-status").cloned()),
            want
        );
        assert_eq!(sent.lock().unwrap().len(), attempts);
    }

    // HTTP: as before.
    let (svc, _) = scripted(vec![Ok(answer(503, &[]))]);
    let layer = plain().max_retries(1).build().unwrap();
    let req = Request::get("http://api.test/x").body(Empty::<bytes::Bytes>::new());
    let err = layer.layer(svc).oneshot(req.unwrap()).await.unwrap_err();
    assert!(matches!(
        err.downcast_ref::<RetryError>(),
        Some(RetryError::Exhausted {
            attempts: 2,
            last_status: Some(StatusCode::SERVICE_UNAVAILABLE),
            ..
        })
    ));
}

/// A budget that stops retries of a failing call keeps the failure as the source (so a
/// transport error still reads as what it is, e.g. UNAVAILABLE for tonic).
#[tokio::test(start_paused = true)]
async fn a_budget_give_up_keeps_the_last_error() {
    let empty = RetryBudget::new(Duration::from_secs(10), 0, 0.0).unwrap();
    let refused = vec![Err(std::io::ErrorKind::ConnectionRefused)];
    let (res, sent) = run(plain().budget(Some(empty)), refused).await;
    let err = res.unwrap_err();
    let retry = err.downcast_ref::<RetryError>().unwrap();
    assert!(matches!(
        retry,
        RetryError::BudgetExhausted {
            last_status: None,
            ..
        }
    ));
    let source = std::error::Error::source(retry).unwrap();
    let kind = source.downcast_ref::<std::io::Error>().unwrap().kind();
    assert_eq!(kind, std::io::ErrorKind::ConnectionRefused);
    assert_eq!(sent.lock().unwrap().len(), 1);
}

#[test]
fn never_retried_grpc_codes_are_refused() {
    use crate::headers::GrpcCode;
    for code in crate::NEVER_RETRIED_GRPC_CODES
        .into_iter()
        .chain([GrpcCode::Ok])
    {
        let err = BackoffLayer::builder()
            .grpc_retry_codes([GrpcCode::Unavailable, code])
            .build()
            .unwrap_err();
        assert_eq!(err, BackoffError::UnretryableGrpcCode(code));
        assert!(err.to_string().contains(code.name()), "{err}");
    }
    let every_other = [
        GrpcCode::Cancelled,
        GrpcCode::Unknown,
        GrpcCode::DeadlineExceeded,
        GrpcCode::ResourceExhausted,
        GrpcCode::Aborted,
        GrpcCode::Internal,
        GrpcCode::Unavailable,
    ];
    assert!(BackoffLayer::builder()
        .grpc_retry_codes(every_other)
        .build()
        .is_ok());
}
