//! Attacks on the client's header readers: what our own server writes is read back exactly,
//! and oversized or malformed fields are read in bounded time.
//!
//! - Round trip with ourselves: for hundreds of generated quota shapes (burst below, equal
//!   to and above the count, sub-second to 366-day windows, block periods, shadow rules,
//!   one to three rules at once), both header dialects and several caps, our own server
//!   (`RateLimitLayer`) is driven under paused time and every response goes through the
//!   monitor (`HeaderMonitorLayer`): the snapshot must say exactly the limit, remaining and
//!   reset the server decided. The expectation comes from the server's `Quota` and the
//!   engine's own decision (`gcra::decide` on a model of the store), never from the headers.
//! - Randomized headers through every reader with a fixed seed: no panic, values within
//!   their caps and bounds, the same reading twice, the same reading whatever SP/HTAB
//!   padding surrounds each line.
//!
//! - Over real loopback HTTP: hostile heads of up to hyper's limit (8 KiB + 400 KiB) read by
//!   a hyper client behind the monitor.
//!
//! Case counts: `HOSTILE_CASES` (default 3,000 random header sets; a tenth as many quota
//! shapes).

use std::convert::Infallible;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use http::{HeaderMap, HeaderName, HeaderValue, Request, Response, StatusCode};
use tower::{Layer, ServiceExt};
use tower_throttle::clock::{Clock, Timestamp, TokioClock};
use tower_throttle::gcra::{decide, Check, Decision, GcraParams};
use tower_throttle::headers::LEGACY_RESET_MAX;
use tower_throttle::headers::{
    ceil_secs, grpc_forbids_retry, parse_rate_limit_capped, parse_reset, parse_retry_after,
    retry_hint, Dialect, HeaderDialects, HintSource, RateLimitInfo, RateLimitPolicy,
    RateLimitState, DEFAULT_RESET_CAP, MAX_ITEMS,
};
use tower_throttle::quota::MAX_PERIOD;
use tower_throttle::{HeaderMonitorLayer, Quota, RateLimitLayer, Rule};

/// A small xorshift generator (fixed seeds: every run reads the same inputs).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }

    fn pick<T: Copy>(&mut self, from: &[T]) -> T {
        from[self.below(from.len() as u64) as usize]
    }
}

/// `HOSTILE_CASES`, or `default`.
fn cases(default: usize) -> usize {
    std::env::var("HOSTILE_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

const S: fn(u64) -> Duration = Duration::from_secs;
const MS: fn(u64) -> Duration = Duration::from_millis;

/// One rule of a generated shape.
#[derive(Debug, Clone, Copy)]
struct Limit {
    quota: Quota,
    block: Duration,
    shadow: bool,
}

/// A generated server configuration and the monitor's cap.
#[derive(Debug)]
struct Shape {
    limits: Vec<Limit>,
    dialects: HeaderDialects,
    cap: Duration,
}

fn quota(rng: &mut Rng) -> Quota {
    loop {
        let count = if rng.below(8) == 0 {
            rng.pick(&[100, 1000, 100_000])
        } else {
            rng.pick(&[1, 2, 3, 5, 7, 10, 20, 40])
        };
        let periods = [MS(100), MS(250), MS(1500), S(1), S(10), S(60), S(3600)];
        let period = match rng.below(10) {
            0 => rng.pick(&[S(2 * 86_400), MAX_PERIOD]),
            _ => rng.pick(&periods),
        };
        let burst = match rng.below(7) {
            0 | 1 => (count / (2 + rng.below(3) as u32)).max(1),
            2 | 3 => count,
            // Up to 36 years of burst: resets of 10^9 s and more.
            4 => count.saturating_mul(36),
            _ => count
                .saturating_mul(2 + rng.below(2) as u32)
                .saturating_add(1),
        };
        if let Ok(q) = Quota::new(count, period).and_then(|q| q.with_burst(burst)) {
            return q;
        }
    }
}

fn shape(rng: &mut Rng) -> Shape {
    let limits = (0..1 + rng.below(3))
        .map(|_| Limit {
            quota: quota(rng),
            block: rng.pick(&[Duration::ZERO, Duration::ZERO, S(1), S(30), S(3600)]),
            shadow: rng.below(4) == 0,
        })
        .collect();
    Shape {
        limits,
        dialects: rng.pick(&[
            HeaderDialects::LEGACY,
            HeaderDialects::IETF,
            HeaderDialects::ALL,
        ]),
        cap: rng.pick(&[DEFAULT_RESET_CAP, S(30), S(3600)]),
    }
}

/// What the monitor should say after one response: status, limit, remaining, reset,
/// capped, dialect, policies, states.
type Reading = (
    StatusCode,
    Option<u64>,
    Option<u64>,
    Option<Duration>,
    bool,
    Option<Dialect>,
    Vec<RateLimitPolicy>,
    Vec<RateLimitState>,
);

/// The reading of the server's `decision`, from the rules' quotas alone.
fn expected(shape: &Shape, decision: &Decision) -> Reading {
    let head = decision.headline;
    let name = format!("r{}", head.index);
    let quota = &shape.limits[head.index].quota;
    let ietf = shape.dialects == HeaderDialects::IETF || shape.dialects == HeaderDialects::ALL;
    let mut secs = ceil_secs(head.reset_after);
    if !ietf {
        secs = secs.min(LEGACY_RESET_MAX);
    }
    let reset = S(secs).min(shape.cap);
    let status = if decision.admitted {
        StatusCode::OK
    } else {
        StatusCode::TOO_MANY_REQUESTS
    };
    // A refusal also carries Retry-After (whole seconds, at least 1), capped alike.
    let retry = (!decision.admitted).then(|| S(ceil_secs(decision.retry_after).max(1)));
    let capped = S(secs) > shape.cap || retry.is_some_and(|r| r > shape.cap);
    if !ietf {
        let limit = Some(u64::from(quota.count()));
        let dialect = Some(Dialect::XRateLimit);
        return (
            status,
            limit,
            Some(head.remaining),
            Some(reset),
            capped,
            dialect,
            vec![],
            vec![],
        );
    }
    let (q, w) = policy_window(quota);
    let policy = RateLimitPolicy {
        name: Some(name.clone()),
        quota: q,
        window: Some(S(w)),
        partition_key: None,
    };
    let state = RateLimitState {
        name: Some(name),
        remaining: head.remaining,
        reset_after: Some(reset),
        partition_key: None,
    };
    let dialect = Some(Dialect::IetfDraft11);
    (
        status,
        Some(q),
        Some(head.remaining),
        Some(reset),
        capped,
        dialect,
        vec![policy],
        vec![state],
    )
}

/// The 200 service.
type Ok200 = fn(Request<()>) -> std::future::Ready<Result<Response<()>, Infallible>>;
/// The monitor in front of our server in front of the 200 service.
type Stack = tower_throttle::monitor::HeaderMonitor<
    tower_throttle::RateLimit<tower::util::ServiceFn<Ok200>>,
>;

/// Our server in front of a 200 service, with the monitor in front of it, and a model
/// of the server's store (the keys' TATs, decided by the engine's `decide`).
struct RoundTrip {
    shape: Shape,
    checks: Vec<Check>,
    tats: Vec<u64>,
    now_ns: u64,
    layer: Stack,
    handle: tower_throttle::MonitorHandle,
    steps: usize,
    /// Whether a snapshot was capped.
    capped: bool,
}

fn ok(_: Request<()>) -> std::future::Ready<Result<Response<()>, Infallible>> {
    std::future::ready(Ok(Response::new(())))
}

impl RoundTrip {
    fn new(shape: Shape) -> RoundTrip {
        let mut builder = RateLimitLayer::builder().headers(shape.dialects);
        for (i, l) in shape.limits.iter().enumerate() {
            let rule = Rule::new(format!("r{i}"), l.quota)
                .block_for(l.block)
                .shadow(l.shadow);
            builder = builder.rule(rule);
        }
        let server = builder.build().expect("a valid layer");
        let monitor = HeaderMonitorLayer::builder()
            .reset_cap(shape.cap)
            .build()
            .unwrap();
        let handle = monitor.handle();
        let inner = tower::service_fn(ok as Ok200);
        let checks = shape
            .limits
            .iter()
            .enumerate()
            .map(|(i, l)| {
                Check::new(i as u64, GcraParams::new(&l.quota, l.block))
                    .with_shadow(l.shadow)
                    .with_rule(i as u64)
            })
            .collect();
        RoundTrip {
            tats: vec![0; shape.limits.len()],
            shape,
            checks,
            // The layer's clock (paused: it reads what this reads until time advances).
            now_ns: TokioClock::new().now().as_nanos(),
            layer: monitor.layer(server.layer(inner)),
            handle,
            steps: 0,
            capped: false,
        }
    }

    async fn advance(&mut self, by: Duration) {
        tokio::time::advance(by).await;
        self.now_ns += u64::try_from(by.as_nanos()).unwrap();
    }

    /// One request; the monitor's snapshot must be what the server decided. Returns
    /// whether it was admitted.
    async fn request(&mut self) -> bool {
        let req = Request::get("http://api.test/x").body(()).unwrap();
        let res = self.layer.clone().oneshot(req).await.unwrap();
        let (decision, _) = decide(
            Timestamp::from_nanos(self.now_ns),
            &self.checks,
            &mut self.tats,
        );
        let want = expected(&self.shape, &decision);
        let snap = self.handle.snapshot("api.test/x").expect("a snapshot");
        let got = (
            res.status(),
            snap.limit,
            snap.remaining,
            snap.reset_after(),
            snap.capped,
            snap.dialect,
            snap.policies,
            snap.states,
        );
        assert_eq!(got, want, "{:?}, step {}", self.shape, self.steps);
        self.steps += 1;
        self.capped |= want.4;
        decision.admitted
    }

    /// The longest time any rule takes to refill from empty, plus its block.
    fn full_refill(&self) -> Duration {
        let l = |l: &Limit| l.quota.emission_interval() * l.quota.burst() + l.block;
        self.shape.limits.iter().map(l).max().unwrap_or_default()
    }
}

/// Remaining above the limit, and the round trip of every quota shape: fresh, partly used, exhausted and
/// refused, after a partial refill, after sub-second steps, after a full refill.
#[tokio::test(start_paused = true)]
async fn the_monitor_reads_back_exactly_what_our_server_meant() {
    let mut rng = Rng(0x5eed_0f11_0008);
    let (mut refused, mut capped, mut above, mut long) = (0, 0, 0, 0);
    let shapes = cases(3000) / 10;
    // A rule of 20 per 10 s with burst 40 and 36 years of burst, in each dialect,
    // then generated shapes.
    let dialects = [
        HeaderDialects::LEGACY,
        HeaderDialects::IETF,
        HeaderDialects::ALL,
    ];
    let free = Quota::new(20, S(10))
        .and_then(|q| q.with_burst(40))
        .unwrap();
    let years = Quota::new(1, MAX_PERIOD)
        .and_then(|q| q.with_burst(36))
        .unwrap();
    let mut edges = dialects.into_iter().flat_map(|dialects| {
        [free, years].map(|quota| Shape {
            limits: vec![Limit {
                quota,
                block: Duration::ZERO,
                shadow: false,
            }],
            dialects,
            cap: DEFAULT_RESET_CAP,
        })
    });
    for _ in 0..shapes.max(1) + 6 {
        let shape = edges.next().unwrap_or_else(|| shape(&mut rng));
        above += usize::from(
            shape
                .limits
                .iter()
                .any(|l| l.quota.burst() > l.quota.count()),
        );
        long += usize::from(
            shape
                .limits
                .iter()
                .any(|l| l.quota.emission_interval() * l.quota.burst() >= S(LEGACY_RESET_MAX + 1)),
        );
        let mut rt = RoundTrip::new(shape);
        rt.request().await; // fresh
        for _ in 0..rng.below(8) {
            rt.request().await; // partly used
        }
        let mut refusals = 0;
        for _ in 0..150 {
            if !rt.request().await {
                refusals += 1;
                if refusals == 2 {
                    break;
                }
            }
        }
        refused += usize::from(refusals > 0);
        let interval = rt.shape.limits[0].quota.emission_interval();
        rt.advance(interval * (1 + rng.below(3) as u32) + MS(rng.below(700)))
            .await;
        rt.request().await; // partial refill
        for _ in 0..3 {
            rt.advance(Duration::from_micros(rng.below(300_000))).await;
            rt.request().await;
        }
        let full = rt.full_refill();
        rt.advance(full).await;
        rt.request().await; // full refill
        capped += usize::from(rt.capped);
    }
    // The generator reached every kind of state it was written for.
    assert!(refused > shapes / 4, "{refused} of {shapes} shapes refused");
    assert!(
        above > shapes / 4,
        "{above} of {shapes} shapes with burst > count"
    );
    assert!(capped > 0, "no capped reading");
    assert!(long > 0, "no reset of 10^9 s or more");
}

/// Field names every reader looks at (and one it ignores).
const NAMES: &[&str] = &[
    "ratelimit-policy",
    "ratelimit",
    "ratelimit-limit",
    "ratelimit-remaining",
    "ratelimit-reset",
    "x-ratelimit-limit",
    "x-ratelimit-remaining",
    "x-ratelimit-reset",
    "x-ratelimit-reset-after",
    "x-ratelimit-limit-requests",
    "x-rate-limit-reset",
    "retry-after",
    "retry-after-ms",
    "x-amz-retry-after",
    "grpc-retry-pushback-ms",
    "date",
    "content-type",
];

/// Pieces of values: valid items, numbers of every band, dates, units, SF syntax.
const PIECES: &[&str] = &[
    "\"a\";q=10;w=60",
    "\"a\";r=3;t=9",
    "\"b\";r=0;t=999999999999999",
    "tok;q=5",
    "100;w=60",
    "limit=5, remaining=9, reset=2",
    "0",
    "7",
    "64.57",
    "999999999",
    "1700000000",
    "1700000000000",
    "1700000000000000",
    "1700000000000000000",
    "18446744073709551615",
    "99999999999999999999",
    "1h2m3.5s",
    "250µs",
    "Tue, 18 Oct 2022 22:27:40 GMT",
    "2022-10-18T22:27:40Z",
    "-1",
    ", ",
    ";",
    "=",
    "\"",
    ":AQ==:",
    "(1 2)",
    " ",
    "\t",
    "\u{a0}",
    "\u{3000}",
    "1e3",
    "?1",
];

fn value(rng: &mut Rng) -> Vec<u8> {
    let mut out = Vec::new();
    match rng.below(6) {
        // A long run of one piece: lists of duplicates, long digit strings.
        0 => {
            let piece = rng.pick(PIECES);
            let sep = rng.pick(&["", ", ", " "]);
            for i in 0..rng.below(300) {
                if i > 0 {
                    out.extend_from_slice(sep.as_bytes());
                }
                out.extend_from_slice(piece.as_bytes());
            }
        }
        // Random bytes of the SF alphabet.
        1 => {
            let alphabet = b"0123456789.-+:;,=\"*?() \tTZsmhnuwqrptk";
            out = (0..rng.below(40))
                .map(|_| alphabet[rng.below(alphabet.len() as u64) as usize])
                .collect();
        }
        _ => {
            for _ in 0..1 + rng.below(4) {
                out.extend_from_slice(rng.pick(PIECES).as_bytes());
            }
        }
    }
    out
}

fn headers(rng: &mut Rng) -> Vec<(&'static str, Vec<u8>)> {
    (0..rng.below(6))
        .map(|_| (rng.pick(NAMES), value(rng)))
        .collect()
}

fn map(lines: &[(&'static str, Vec<u8>)], pad: &mut impl FnMut() -> &'static str) -> HeaderMap {
    let mut map = HeaderMap::new();
    for (name, value) in lines {
        let mut padded = pad().as_bytes().to_vec();
        padded.extend_from_slice(value);
        padded.extend_from_slice(pad().as_bytes());
        if let Ok(v) = HeaderValue::from_bytes(&padded) {
            map.append(HeaderName::from_static(name), v);
        }
    }
    map
}

/// Every bound a reading must keep.
fn check(info: &RateLimitInfo, cap: Duration, lines: &[(&'static str, Vec<u8>)]) {
    let resets = info.states.iter().map(|s| s.reset_after);
    for reset in [info.reset_after, info.retry_after]
        .into_iter()
        .chain(resets)
    {
        assert!(
            reset.is_none_or(|r| r <= cap),
            "{reset:?} > {cap:?}: {lines:?}"
        );
    }
    assert!(info.states.len() <= MAX_ITEMS, "{lines:?}");
    let named: Vec<_> = info
        .policies
        .iter()
        .filter_map(|p| p.name.as_deref())
        .collect();
    assert!(named.len() <= MAX_ITEMS, "{lines:?}");
    assert!(info.policies.len() <= 2 * MAX_ITEMS, "{lines:?}");
    let mut unique = named.clone();
    unique.sort_unstable();
    unique.dedup();
    assert_eq!(
        unique.len(),
        named.len(),
        "duplicate policy names: {lines:?}"
    );
    assert_eq!(info.is_empty(), info.dialect.is_none(), "{lines:?}");
    if info.capped {
        let at_cap = |d: Option<Duration>| d == Some(cap);
        let states = info.states.iter().any(|s| at_cap(s.reset_after));
        assert!(
            at_cap(info.reset_after) || at_cap(info.retry_after) || states,
            "capped without a value at the cap: {lines:?}"
        );
    }
}

/// Randomized headers (fixed seed) through every reader: never a panic, every value
/// within its cap, policy names unique, lists within `MAX_ITEMS`, the same reading twice,
/// and the same reading whatever SP/HTAB padding each line has.
#[test]
fn random_headers_keep_every_bound() {
    let mut rng = Rng(0x0bad_c0de_0011_0007);
    let now = UNIX_EPOCH + S(1_666_132_000);
    for _ in 0..cases(3000) {
        let lines = headers(&mut rng);
        let cap = rng.pick(&[DEFAULT_RESET_CAP, S(1), S(3600), Duration::MAX]);
        let bare = map(&lines, &mut || "");
        let info = parse_rate_limit_capped(&bare, now, cap);
        check(&info, cap, &lines);
        assert_eq!(parse_rate_limit_capped(&bare, now, cap), info, "{lines:?}");
        let pads = [" ", "\t", " \t", "  ", ""];
        let padded = map(&lines, &mut || pads[(rng.next() % 5) as usize]);
        assert_eq!(
            parse_rate_limit_capped(&padded, now, cap),
            info,
            "{lines:?}"
        );
        let forbids = grpc_forbids_retry(&bare);
        if let Some(hint) = retry_hint(&bare, now, cap) {
            assert_eq!(hint.delay, hint.requested.min(cap), "{lines:?}");
            assert_eq!(hint.capped, hint.requested > cap, "{lines:?}");
            assert_eq!(info.retry_after, Some(hint.delay), "{lines:?}");
            let grpc = hint.source == HintSource::GrpcRetryPushbackMs;
            assert!(!(forbids && grpc), "{lines:?}");
        } else {
            assert_eq!(info.retry_after, None, "{lines:?}");
        }
        for (_, value) in &lines {
            let _ = parse_retry_after(value, now);
            let text = String::from_utf8_lossy(value);
            let reset = parse_reset(&text, now);
            let trimmed = text.trim_matches([' ', '\t']);
            assert_eq!(
                parse_reset(&format!(" \t{trimmed}\t "), now),
                reset,
                "{text:?}"
            );
        }
    }
}

/// The same inputs through the monitor: no panic, snapshots within the cap.
#[tokio::test(start_paused = true)]
async fn random_headers_through_the_monitor() {
    let mut rng = Rng(0x00c0_ffee_0011_0007);
    let cap = S(3600);
    let monitor = HeaderMonitorLayer::builder()
        .reset_cap(cap)
        .build()
        .unwrap();
    let handle = monitor.handle();
    for _ in 0..cases(3000) / 3 {
        let lines = headers(&mut rng);
        let headers = map(&lines, &mut || "");
        let status = rng.pick(&[StatusCode::OK, StatusCode::TOO_MANY_REQUESTS]);
        let svc = monitor.layer(tower::service_fn(move |_: Request<()>| {
            let mut res = Response::new(());
            *res.status_mut() = status;
            *res.headers_mut() = headers.clone();
            std::future::ready(Ok::<_, Infallible>(res))
        }));
        let req = Request::get("http://api.test/fuzz").body(()).unwrap();
        svc.oneshot(req).await.unwrap();
        if let Some(snap) = handle.snapshot("api.test/fuzz") {
            assert!(snap.reset_after().is_none_or(|r| r <= cap), "{lines:?}");
            assert!(snap.states.len() <= MAX_ITEMS, "{lines:?}");
        }
    }
    let _ = SystemTime::now();
}

/// Serves one raw HTTP/1.1 response head (then closes) to the first connection on a
/// loopback port.
async fn serve_once(head: Vec<u8>) -> std::net::SocketAddr {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let (mut socket, _) = listener.accept().await.unwrap();
        let mut request = Vec::new();
        let mut buf = [0u8; 1024];
        while !request.windows(4).any(|w| w == b"\r\n\r\n") {
            let n = socket.read(&mut buf).await.unwrap();
            if n == 0 {
                return;
            }
            request.extend_from_slice(&buf[..n]);
        }
        let _ = socket.write_all(&head).await;
        let _ = socket.shutdown().await;
    });
    addr
}

/// A response head with `fields`, no body.
fn head(fields: &[(&str, &[u8])]) -> Vec<u8> {
    let mut head = b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n".to_vec();
    for (name, value) in fields {
        head.extend_from_slice(name.as_bytes());
        head.extend_from_slice(b": ");
        head.extend_from_slice(value);
        head.extend_from_slice(b"\r\n");
    }
    head.extend_from_slice(b"\r\n");
    head
}

/// `f(0), f(1), …` joined with `", "` up to `bytes` bytes.
fn list(bytes: usize, f: impl Fn(usize) -> String) -> Vec<u8> {
    let mut out = String::new();
    for i in 0.. {
        if out.len() >= bytes {
            break;
        }
        if i > 0 {
            out.push_str(", ");
        }
        out.push_str(&f(i));
    }
    out.into_bytes()
}

/// Over loopback: a 400 KB `RateLimit-Policy` + `RateLimit` pair whose names do not
/// match, the largest head hyper's client accepts by default, is read (first `MAX_ITEMS`
/// of each list, one malformed count per list cut), as are a 20-digit reset (refused) and
/// NBSP padding (refused); a head beyond hyper's limit never reaches the monitor.
#[tokio::test]
async fn hostile_heads_over_loopback() {
    use bytes::Bytes;
    use http_body_util::Empty;
    use hyper_util::client::legacy::Client;
    use hyper_util::rt::TokioExecutor;

    let policies = list(200_000, |i| format!("\"p{i}\";q=10;w=60"));
    let states = list(200_000, |i| format!("\"s{i}\";r=5;t=9"));
    let huge = head(&[("ratelimit-policy", &policies), ("ratelimit", &states)]);
    assert!(
        (400_000..408 * 1024).contains(&huge.len()),
        "{}",
        huge.len()
    );
    let legacy = head(&[
        ("x-ratelimit-limit", b"10"),
        ("x-ratelimit-remaining", "5\u{a0}".as_bytes()),
        ("x-ratelimit-reset", b"99999999999999999999"),
    ]);
    let too_big = head(&[("ratelimit", &list(600_000, |_| "\"a\";r=1".into()))]);

    let monitor = HeaderMonitorLayer::new();
    let handle = monitor.handle();
    let client = monitor.layer(Client::builder(TokioExecutor::new()).build_http::<Empty<Bytes>>());
    let send = |head: Vec<u8>| {
        let client = client.clone();
        async move {
            let addr = serve_once(head).await;
            let req = Request::get(format!("http://{addr}/x"))
                .body(Empty::new())
                .unwrap();
            let res = client.oneshot(req).await;
            (format!("{addr}/x"), res.map(|r| r.status()))
        }
    };

    let (key, status) = send(huge).await;
    assert_eq!(status.unwrap(), StatusCode::OK);
    let snap = handle.snapshot(&key).unwrap();
    assert_eq!(
        (snap.policies.len(), snap.states.len()),
        (MAX_ITEMS, MAX_ITEMS)
    );
    assert_eq!((snap.limit, snap.remaining), (None, Some(5)));
    assert_eq!(snap.states[0].reset_after, Some(S(9)));
    assert_eq!(handle.stats().malformed, 2);

    let (key, status) = send(legacy).await;
    assert_eq!(status.unwrap(), StatusCode::OK);
    let snap = handle.snapshot(&key).unwrap();
    assert_eq!(
        (snap.limit, snap.remaining, snap.reset_at),
        (Some(10), None, None)
    );
    assert_eq!(handle.stats().malformed, 4);

    let (key, status) = send(too_big).await;
    assert!(status.is_err(), "hyper refuses a head above its limit");
    assert!(handle.snapshot(&key).is_none());
    assert_eq!(handle.stats().responses, 2);
}

/// The IETF policy's quota and window as the writer documents them: the quota's count and
/// period in whole seconds, or the same rate over the period rounded up to whole seconds.
fn policy_window(quota: &Quota) -> (u64, u64) {
    let period = quota.period();
    let w = period.as_secs() + u64::from(period.subsec_nanos() > 0);
    let q = u128::from(quota.count()) * u128::from(w) * 1_000_000_000 / period.as_nanos();
    (u64::try_from(q).unwrap_or(u64::MAX), w)
}
