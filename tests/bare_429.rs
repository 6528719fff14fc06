//! A server that refuses with bare 429s (nginx `limit_req`: 5 r/s, burst 5, no
//! `Retry-After`), simulated by a leaky bucket under paused time, against the documented
//! client stack with its default retry settings (seeded jitter): no caller gives up while
//! the server still admits traffic, and callers refused together come back apart.

use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http::{Request, Response, StatusCode};
use tokio::time::Instant;
use tower::{ServiceBuilder, ServiceExt};
use tower_throttle::retry_after::RetryAfterLayer;
use tower_throttle::{ClientStack, Quota, RateLimitLayer, ReplayBody, Rule};

/// nginx `limit_req zone=... rate=5r/s burst=5 nodelay`: one request every 200 ms, 5 more
/// at once; a refusal is a bare 429. Records when each request arrived and its status.
#[derive(Clone, Default)]
struct Nginx {
    state: Arc<Mutex<NginxState>>,
}

#[derive(Default)]
struct NginxState {
    tat: Option<Instant>,
    log: Vec<(Duration, u16)>,
}

const INTERVAL: Duration = Duration::from_millis(200);
const TOLERANCE: Duration = Duration::from_millis(800);

impl Nginx {
    fn admit(&self, origin: Instant) -> StatusCode {
        let now = Instant::now();
        let mut s = self.state.lock().unwrap();
        let tat = s.tat.unwrap_or(now).max(now);
        let status = if tat <= now + TOLERANCE {
            s.tat = Some(tat + INTERVAL);
            StatusCode::OK
        } else {
            StatusCode::TOO_MANY_REQUESTS
        };
        s.log.push((now - origin, status.as_u16()));
        status
    }

    fn log(&self) -> Vec<(Duration, u16)> {
        self.state.lock().unwrap().log.clone()
    }
}

/// The documented stack, retry settings at their defaults (seeded), pacing out of the way
/// (a rule far above the server's) so that the retry layers alone meet the refusals.
fn client(
    nginx: &Nginx,
    origin: Instant,
) -> impl tower::Service<
    Request<String>,
    Response = Response<String>,
    Error = tower_throttle::Error,
    Future: Send,
> + Clone
       + Send
       + 'static {
    let pacing = RateLimitLayer::builder()
        .rule(Rule::new(
            "none",
            Quota::new(1_000_000, Duration::from_secs(1)).unwrap(),
        ))
        .build()
        .unwrap()
        .pacing()
        .build()
        .unwrap();
    let stack = ClientStack::builder(pacing)
        .retry_after(RetryAfterLayer::builder().seed(7).build().unwrap())
        .build();
    let nginx = nginx.clone();
    ServiceBuilder::new()
        .layer(stack)
        .service(tower::service_fn(move |_req: Request<ReplayBody>| {
            let status = nginx.admit(origin);
            async move {
                let mut res = Response::new(String::new());
                *res.status_mut() = status;
                Ok::<_, Infallible>(res)
            }
        }))
}

fn get() -> Request<String> {
    Request::get("http://nginx.test/api")
        .body(String::new())
        .unwrap()
}

#[tokio::test(start_paused = true)]
async fn no_caller_gives_up_while_the_server_admits_traffic() {
    let nginx = Nginx::default();
    let origin = Instant::now();
    let svc = client(&nginx, origin);
    let tasks: Vec<_> = (0..10)
        .map(|_| {
            let svc = svc.clone();
            tokio::spawn(async move {
                let mut outcomes = Vec::new();
                for _ in 0..10 {
                    outcomes.push(svc.clone().oneshot(get()).await.map(|r| r.status()));
                }
                outcomes
            })
        })
        .collect();
    let mut ok = 0;
    for t in tasks {
        for outcome in t.await.unwrap() {
            match outcome {
                Ok(StatusCode::OK) => ok += 1,
                other => panic!("a caller got {other:?}"),
            }
        }
    }
    assert_eq!(ok, 100, "0 Exhausted, 0 surfaced 429s");
    let log = nginx.log();
    let refused = log.iter().filter(|(_, s)| *s == 429).count();
    let last = log.iter().map(|(t, _)| *t).max().unwrap();
    // nginx's least time for 100 requests: 5 at once, then one per 200 ms: 19 s.
    assert!(last >= Duration::from_secs(19), "{last:?}");
    // The seeded run, exactly: 79 bare 429s absorbed, done 2.16 s after nginx's least.
    assert_eq!((refused, last), (79, Duration::from_millis(21_158)));
}

#[tokio::test(start_paused = true)]
async fn bare_429_retries_are_spread_apart() {
    let nginx = Nginx::default();
    let origin = Instant::now();
    let svc = client(&nginx, origin);
    let tasks: Vec<_> = (0..10)
        .map(|_| tokio::spawn(svc.clone().oneshot(get())))
        .collect();
    for t in tasks {
        assert_eq!(t.await.unwrap().unwrap().status(), StatusCode::OK);
    }
    let log = nginx.log();
    let at_once = log.iter().filter(|(t, _)| t.is_zero()).count();
    assert_eq!(at_once, 10);
    let retries: Vec<u128> = log
        .iter()
        .filter(|(t, _)| !t.is_zero())
        .map(|(t, _)| t.as_millis())
        .collect();
    // The 5 refused at once retried 1 s later plus up to 0.5 s of jitter, each at its own
    // time (a fixed delay sent all of them back together), and were admitted.
    assert_eq!(retries, [1122, 1170, 1340, 1423, 1448]);
    assert!(retries.iter().all(|ms| (1000..=1500).contains(ms)));
    assert!(log[10..].iter().all(|(_, status)| *status == 200));
}
