//! What the header monitor writes to the logs: WARN for news (quota running low, used up,
//! a first refusal), DEBUG for more of the same, so a client paced at the edge of its
//! quota does not log a warning per response.

#[path = "support/log_capture.rs"]
mod log_capture;

use std::collections::VecDeque;
use std::convert::Infallible;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use tower::{Layer, Service, ServiceExt};
use tower_throttle::monitor::HeaderMonitorLayer;
use tracing::Level;

type Res = Response<Full<Bytes>>;

/// A response with limit 10 and `remaining`, with `status`.
fn answer(status: u16, remaining: u64) -> Res {
    let mut res = Response::new(Full::new(Bytes::new()));
    *res.status_mut() = StatusCode::from_u16(status).unwrap();
    let h = res.headers_mut();
    h.insert("x-ratelimit-limit", "10".parse().unwrap());
    h.insert("x-ratelimit-remaining", remaining.into());
    res
}

/// Sends one request per scripted answer through a monitor (default threshold: 10 %);
/// returns the monitor's WARN and DEBUG lines.
async fn run(answers: Vec<Res>) -> (Vec<String>, usize, u64) {
    let (captured, _guard) = log_capture::capture();
    let n = answers.len();
    let queue = Arc::new(Mutex::new(VecDeque::from(answers)));
    let inner = tower::service_fn(move |_req: Request<Full<Bytes>>| {
        let next = queue.lock().unwrap().pop_front().unwrap();
        async move { Ok::<_, Infallible>(next) }
    });
    let monitor = HeaderMonitorLayer::new();
    let handle = monitor.handle();
    let mut svc = monitor.layer(inner);
    for _ in 0..n {
        let req = Request::get("http://api.test/v1/users")
            .body(Full::new(Bytes::new()))
            .unwrap();
        svc.ready().await.unwrap().call(req).await.unwrap();
    }
    let warns = captured
        .at(Level::WARN, "tower_throttle::monitor")
        .into_iter()
        .map(|l| l.message)
        .collect();
    let debugs = captured.at(Level::DEBUG, "tower_throttle::monitor").len();
    (warns, debugs, handle.stats().hits)
}

/// 12 requests paced exactly at the limit of 10: remaining 9, 8, …, 0, then 0 while the
/// client waits for each new token. Before: one WARN per response at remaining 0 (3 here;
/// about one per response for a long paced run). Now: one WARN when the quota is used up.
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_paced_client_gets_one_warning() {
    let answers = (0..12)
        .map(|i| answer(200, 9u64.saturating_sub(i)))
        .collect();
    let (warns, debugs, hits) = run(answers).await;
    assert_eq!(warns, ["rate-limit quota used up"]);
    assert_eq!(debugs, 2, "the two later answers at 0 are DEBUG");
    assert_eq!(hits, 3, "every answer at 0 still counts as a hit");
}

/// A burst into the limit: used up, then refused twice. The first refusal is news; the
/// second, right after it, is not.
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_burst_warns_at_exhaustion_and_at_the_first_refusal() {
    let mut answers: Vec<Res> = (0..10).map(|i| answer(200, 9 - i)).collect();
    answers.push(answer(429, 0));
    answers.push(answer(429, 0));
    let (warns, debugs, hits) = run(answers).await;
    assert_eq!(
        warns,
        [
            "rate-limit quota used up",
            "rate limit hit: request refused"
        ]
    );
    assert_eq!(debugs, 1);
    assert_eq!(hits, 3);
}

/// Low with a threshold of 10 % of 100: WARN when remaining falls under 10, DEBUG while
/// it stays under, WARN again after the window reset lifted it and it falls again.
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn low_remaining_warns_once_per_crossing() {
    let with_limit_100 = |remaining: u64| {
        let mut res = answer(200, remaining);
        res.headers_mut()
            .insert("x-ratelimit-limit", "100".parse().unwrap());
        res
    };
    let answers = [11, 10, 9, 8, 7, 100, 50, 9, 8]
        .into_iter()
        .map(with_limit_100)
        .collect();
    let (warns, debugs, _) = run(answers).await;
    assert_eq!(
        warns,
        [
            "rate-limit quota is running low",
            "rate-limit quota is running low"
        ]
    );
    assert_eq!(debugs, 3, "8 and 7 after 9, then 8 after 9");
}
