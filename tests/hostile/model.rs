//! Property tests: the layer, driven with random rules, keys, paths and arrival times under
//! paused time, decides every request exactly as a plain reference model of GCRA written
//! here from the documented semantics (never more admitted, never fewer, the same
//! `Retry-After`, never a panic).
//!
//! The model is deliberately naive: one `HashMap` per rule, no sharding, no atomics, no
//! eviction, every number in `u128`. Cases: `HOSTILE_CASES` (default 256), each up to 120
//! requests; proptest shrinks a failing case to a minimal sequence.

use std::collections::HashMap;
use std::convert::Infallible;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderName, Method, Request, Response, StatusCode};
use http_body_util::Full;
use proptest::prelude::*;
use tower::{Service, ServiceExt};
use tower_throttle::key::{Header, PathParam};
use tower_throttle::{Quota, RateLimitLayer, Route, Rule};

/// One rule of a generated layer.
#[derive(Debug, Clone)]
struct RuleSpec {
    count: u32,
    period_ms: u64,
    burst: u32,
    block_ms: u64,
    shadow: bool,
    /// 0: every request, one global bucket; 1: per `x-key` header, every request;
    /// 2: `POST /items/{id}` per path parameter; 3: `GET /items/{id}` per `x-key`.
    scope: u8,
}

/// One request: after `advance_ns`, `method path` with `x-key: k{key}` (or no key).
#[derive(Debug, Clone)]
struct Step {
    advance_ns: u64,
    post: bool,
    /// Not `post`: `HEAD` instead of `GET` (a `GET` rule covers both).
    head: bool,
    item: u8,
    key: Option<u8>,
    other_path: bool,
    /// How the path is spelled on the wire (see [`path`]): spellings 0-3 are one path
    /// and one bucket; 4 has a dot segment, refused with 400 before any rule.
    spelling: u8,
}

fn rule_spec() -> impl Strategy<Value = RuleSpec> {
    (
        1u32..6,
        prop_oneof![1u64..50, 100u64..2_000, Just(3_600_000u64)],
        1u32..8,
        prop_oneof![3 => Just(0u64), 1 => 1u64..5_000],
        prop::bool::weighted(0.2),
        0u8..4,
    )
        .prop_map(
            |(count, period_ms, burst, block_ms, shadow, scope)| RuleSpec {
                count,
                period_ms,
                burst,
                block_ms,
                shadow,
                scope,
            },
        )
}

fn step() -> impl Strategy<Value = Step> {
    (
        prop_oneof![
            4 => Just(0u64),
            2 => 0u64..2_000_000,
            2 => 0u64..2_000_000_000,
            // Whole milliseconds, and one nanosecond short of them: the exact boundaries
            // where an off-by-one in the tolerance or the block would show.
            2 => (1u64..3_000).prop_map(|ms| ms * 1_000_000),
            2 => (1u64..20).prop_map(|ms| ms * 1_000_000),
            2 => (1u64..20).prop_map(|ms| ms * 1_000_000 - 1),
            1 => Just(3_600_000_000_000u64),
        ],
        (any::<bool>(), prop::bool::weighted(0.2)),
        0u8..3,
        prop::option::weighted(0.9, 0u8..3),
        prop::bool::weighted(0.1),
        prop_oneof![4 => Just(0u8), 4 => 1u8..4, 1 => Just(4u8)],
    )
        .prop_map(
            |(advance_ns, (post, head), item, key, other_path, spelling)| Step {
                advance_ns,
                post,
                head,
                item,
                key,
                other_path,
                spelling,
            },
        )
}

/// The reference model: per (rule, bucket) a TAT and a blocked flag, in nanoseconds.
struct Model {
    rules: Vec<RuleSpec>,
    state: Vec<HashMap<String, (u128, bool)>>,
}

struct Verdict {
    status: StatusCode,
    /// The wait until admission, in ns, when refused.
    wait_ns: u128,
}

impl Model {
    fn new(rules: Vec<RuleSpec>) -> Self {
        let state = rules.iter().map(|_| HashMap::new()).collect();
        Model { rules, state }
    }

    /// The bucket of rule `r` for a request, or `None` when the rule does not apply.
    fn bucket(spec: &RuleSpec, s: &Step) -> Option<String> {
        let key = match s.key {
            Some(k) => format!("k{k}"),
            // Missing keys share one bucket of the rule (MissingKey::Shared, the default).
            None => "<missing>".to_owned(),
        };
        match spec.scope {
            0 => Some("global".to_owned()),
            1 => Some(key),
            2 if s.post && !s.other_path => Some(format!("item{}", s.item)),
            3 if !s.post && !s.other_path => Some(key),
            _ => None,
        }
    }

    fn decide(&mut self, now: u128, s: &Step) -> Verdict {
        if s.spelling == 4 {
            return Verdict {
                status: StatusCode::BAD_REQUEST,
                wait_ns: 0,
            };
        }
        let mut picks = Vec::new();
        for (i, spec) in self.rules.iter().enumerate() {
            if let Some(bucket) = Self::bucket(spec, s) {
                let interval = u128::from(spec.period_ms) * 1_000_000 / u128::from(spec.count);
                let tolerance = interval * u128::from(spec.burst - 1);
                let (tat, blocked) = self.state[i].get(&bucket).copied().unwrap_or((0, false));
                let t = tat.max(now);
                let admits = t - now <= tolerance;
                picks.push((i, bucket, interval, tolerance, tat, t, blocked, admits));
            }
        }
        let admitted = picks.iter().all(|p| p.7 || self.rules[p.0].shadow);
        let mut wait_ns = 0;
        for (i, bucket, interval, tolerance, tat, t, blocked, admits) in picks {
            let spec = &self.rules[i];
            if admitted {
                if admits {
                    self.state[i].insert(bucket, (t + interval, false));
                }
            } else if !admits && !spec.shadow {
                wait_ns = wait_ns.max(t - now - tolerance);
                let block = u128::from(spec.block_ms) * 1_000_000;
                if block > 0 && !blocked {
                    let blocked_tat = now + block + tolerance;
                    if blocked_tat > tat {
                        self.state[i].insert(bucket, (blocked_tat, true));
                        wait_ns = wait_ns.max(block);
                    }
                }
            }
        }
        let status = if admitted {
            StatusCode::OK
        } else {
            StatusCode::TOO_MANY_REQUESTS
        };
        Verdict { status, wait_ns }
    }
}

fn layer(rules: &[RuleSpec]) -> RateLimitLayer {
    let mut builder = RateLimitLayer::builder();
    for (i, spec) in rules.iter().enumerate() {
        let quota = Quota::new(spec.count, Duration::from_millis(spec.period_ms))
            .and_then(|q| q.with_burst(spec.burst))
            .expect("generated quotas are valid");
        let rule = Rule::new(format!("r{i}"), quota)
            .block_for(Duration::from_millis(spec.block_ms))
            .shadow(spec.shadow);
        let key = Header::new(HeaderName::from_static("x-key"));
        let rule = match spec.scope {
            0 => rule,
            1 => rule.key(key),
            2 => rule
                .route(Route::post("/items/{id}"))
                .key(PathParam::new("id")),
            _ => rule.route(Route::get("/items/{id}")).key(key),
        };
        builder = builder.rule(rule);
    }
    builder.build().expect("generated layers build")
}

/// The wire spelling of the request's path: merged slashes, an encoded unreserved
/// character in a literal segment or in the parameter (`%3N` is the digit N), or a dot
/// segment.
fn path(s: &Step) -> String {
    let (base, item) = if s.other_path {
        ("elsewhere", String::new())
    } else {
        ("items", format!("/{}", s.item))
    };
    match s.spelling {
        0 => format!("/{base}{item}"),
        1 => format!("//{base}/{item}"),
        2 => format!("/%{:02X}{}{item}", base.as_bytes()[0], &base[1..]),
        3 if !s.other_path => format!("/{base}/%3{}", s.item),
        3 => format!("/{base}/"),
        _ => format!("/{base}/.{item}"),
    }
}

fn request(s: &Step) -> Request<Full<Bytes>> {
    let path = path(s);
    let method = match (s.post, s.head) {
        (true, _) => Method::POST,
        (false, true) => Method::HEAD,
        (false, false) => Method::GET,
    };
    let mut req = Request::builder().method(method).uri(path);
    if let Some(k) = s.key {
        req = req.header("x-key", format!("k{k}"));
    }
    req.body(Full::new(Bytes::new())).unwrap()
}

/// `Retry-After` as the layer promises it: whole seconds rounded up, at least 1.
fn retry_after_secs(wait_ns: u128) -> u128 {
    wait_ns.div_ceil(1_000_000_000).max(1)
}

fn run_case(rules: Vec<RuleSpec>, steps: Vec<Step>) -> Result<(), TestCaseError> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .unwrap();
    rt.block_on(async move {
        let mut svc = tower::ServiceBuilder::new()
            .layer(layer(&rules))
            .service_fn(|_req: Request<Full<Bytes>>| async {
                Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(b"ok"))))
            });
        let mut model = Model::new(rules);
        let mut now: u128 = 0;
        for (n, s) in steps.iter().enumerate() {
            tokio::time::advance(Duration::from_nanos(s.advance_ns)).await;
            now += u128::from(s.advance_ns);
            let res = svc.ready().await.unwrap().call(request(s)).await.unwrap();
            let expected = model.decide(now, s);
            let status = res.status();
            prop_assert_eq!(
                status,
                expected.status,
                "request {} ({:?}, {}) answered {}",
                n,
                s,
                path(s),
                status
            );
            if status == StatusCode::TOO_MANY_REQUESTS {
                let retry_after = res
                    .headers()
                    .get("retry-after")
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.parse::<u128>().ok());
                prop_assert_eq!(retry_after, Some(retry_after_secs(expected.wait_ns)));
            }
        }
        Ok(())
    })
}

fn cases() -> u32 {
    std::env::var("HOSTILE_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(256)
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: cases(),
        // A fixed seed: CI runs the same cases every time (set PROPTEST_RNG_SEED to vary).
        rng_seed: proptest::test_runner::RngSeed::Fixed(
            std::env::var("PROPTEST_RNG_SEED").ok().and_then(|v| v.parse().ok()).unwrap_or(11)
        ),
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    /// Random rules (1-3: global, per header, per path parameter, per route; bursts below,
    /// equal to and above the count; windows from 1 ms to 1 h; blocks; shadow rules) and
    /// random traffic (paths spelled several ways): every decision and every `Retry-After`
    /// equals the model's.
    #[test]
    fn layer_decides_exactly_as_the_reference_model(
        rules in prop::collection::vec(rule_spec(), 1..4),
        steps in prop::collection::vec(step(), 1..120),
    ) {
        run_case(rules, steps)?;
    }
}
