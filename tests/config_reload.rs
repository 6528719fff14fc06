//! Reloading a running layer's rules (`RateLimitHandle::reload`, `reload_config`): under
//! paused time, with exact assertions.

use std::convert::Infallible;
use std::time::Duration;

use http::{Request, Response, StatusCode};
use tower::{service_fn, Layer, ServiceExt};
use tower_throttle::key::PathParam;
use tower_throttle::{
    BuildError, Quota, RateLimitHandle, RateLimitLayer, RateLimitLayerBuilder, Route, Rule,
};

fn rule(name: &str, count: u32, route: &str) -> Rule {
    Rule::new(name, Quota::new(count, Duration::from_secs(10)).unwrap()).route(Route::get(route))
}

fn two_rules(a: u32, b: u32) -> RateLimitLayerBuilder {
    RateLimitLayer::builder()
        .rule(rule("a", a, "/a"))
        .rule(rule("b", b, "/b"))
}

type Svc = tower::util::BoxCloneSyncService<Request<String>, Response<String>, Infallible>;

fn service(layer: &RateLimitLayer) -> Svc {
    let inner = service_fn(|_: Request<String>| async {
        Ok::<_, Infallible>(Response::new(String::new()))
    });
    let svc = layer.layer(inner).map_response(|r: Response<_>| {
        let (parts, _) = r.into_parts();
        Response::from_parts(parts, String::new())
    });
    tower::util::BoxCloneSyncService::new(svc)
}

async fn get(svc: &Svc, path: &str) -> Response<String> {
    let req = Request::get(path).body(String::new()).unwrap();
    svc.clone().oneshot(req).await.unwrap()
}

/// How many of `n` requests to `path` are admitted.
async fn admitted(svc: &Svc, path: &str, n: usize) -> usize {
    let mut ok = 0;
    for _ in 0..n {
        if get(svc, path).await.status() == StatusCode::OK {
            ok += 1;
        }
    }
    ok
}

fn counts(handle: &RateLimitHandle, rule: &str) -> Option<(u64, u64)> {
    handle.rule(rule).map(|s| (s.admitted, s.limited))
}

#[tokio::test(start_paused = true)]
async fn unchanged_rules_keep_their_state_changed_ones_start_afresh() {
    let layer = two_rules(2, 2).build().unwrap();
    let handle = layer.handle();
    let svc = service(&layer);
    assert_eq!(admitted(&svc, "/a", 3).await, 2);
    assert_eq!(admitted(&svc, "/b", 3).await, 2);

    let report = handle.reload(two_rules(2, 3)).unwrap();
    assert_eq!(report.kept, ["a"]);
    assert_eq!(report.changed, ["b"]);
    assert!(report.added.is_empty() && report.removed.is_empty());
    assert_eq!(
        report.to_string(),
        "kept 1, changed 1 (b), added 0, removed 0"
    );

    // `a` is still exhausted, and its counters go on; `b` has its new quota, fresh.
    assert_eq!(counts(&handle, "a"), Some((2, 1)));
    assert_eq!(counts(&handle, "b"), Some((0, 0)));
    assert_eq!(admitted(&svc, "/a", 1).await, 0);
    assert_eq!(admitted(&svc, "/b", 4).await, 3);
    assert_eq!(counts(&handle, "a"), Some((2, 2)));
    assert_eq!(counts(&handle, "b"), Some((3, 1)));
    let res = get(&svc, "/b").await;
    assert_eq!(res.headers()["x-ratelimit-limit"], "3");

    // Time refills the kept bucket exactly as before the reload: 5 s per request.
    tokio::time::advance(Duration::from_nanos(4_999_999_999)).await;
    assert_eq!(admitted(&svc, "/a", 1).await, 0);
    tokio::time::advance(Duration::from_nanos(1)).await;
    assert_eq!(admitted(&svc, "/a", 2).await, 1);
}

#[tokio::test(start_paused = true)]
async fn a_removed_rule_stops_limiting_and_an_added_one_starts() {
    let layer = two_rules(1, 1).build().unwrap();
    let handle = layer.handle();
    let svc = service(&layer);
    assert_eq!(admitted(&svc, "/a", 2).await, 1);
    let next = RateLimitLayer::builder()
        .rule(rule("b", 1, "/b"))
        .rule(rule("c", 2, "/a"));
    let report = handle.reload(next).unwrap();
    assert_eq!(
        (report.kept.as_slice(), report.added.as_slice()),
        (&["b".to_owned()][..], &["c".to_owned()][..])
    );
    assert_eq!(report.removed, ["a"]);
    assert_eq!(handle.rule("a"), None);
    // `/a` is now under `c` alone: 2 fresh requests, then refused by `c`.
    assert_eq!(admitted(&svc, "/a", 3).await, 2);
    assert_eq!(counts(&handle, "c"), Some((2, 1)));
    assert_eq!(handle.rules().len(), 2);
}

#[tokio::test(start_paused = true)]
async fn a_bad_set_is_refused_and_the_old_rules_stay() {
    let layer = two_rules(1, 1).build().unwrap();
    let handle = layer.handle();
    let svc = service(&layer);
    assert_eq!(admitted(&svc, "/a", 2).await, 1);
    let bad = two_rules(5, 5).rule(rule("c", 1, "/c").key(PathParam::new("id")));
    assert_eq!(
        handle.reload(bad).unwrap_err(),
        BuildError::UnknownPathParam {
            rule: "c".into(),
            param: "id".into()
        }
    );
    assert_eq!(
        handle.reload(RateLimitLayer::builder()).unwrap_err(),
        BuildError::NoRules
    );
    // Still the old quota of 1, still exhausted, counters untouched.
    assert_eq!(counts(&handle, "a"), Some((1, 1)));
    assert_eq!(admitted(&svc, "/a", 1).await, 0);
    assert_eq!(admitted(&svc, "/b", 2).await, 1);
    assert_eq!(handle.rules().len(), 2);
}

#[tokio::test(start_paused = true)]
async fn layer_counters_survive_and_clones_switch_together() {
    let layer = RateLimitLayer::builder()
        .rule(rule("a", 1, "/a"))
        .exempt(Route::get("/health"))
        .build()
        .unwrap();
    let handle = layer.handle();
    let svc = service(&layer);
    let other = service(&layer.clone());
    assert_eq!(admitted(&svc, "/health", 3).await, 3);
    handle
        .reload(
            RateLimitLayer::builder()
                .rule(rule("a", 2, "/a"))
                .exempt(Route::get("/health")),
        )
        .unwrap();
    assert_eq!(handle.exempted(), 3);
    assert_eq!(admitted(&other, "/a", 3).await, 2);
    assert_eq!(admitted(&svc, "/a", 1).await, 0);
    assert_eq!(layer.handle().rule("a").map(|s| s.limited), Some(2));
}

/// Requests in flight while the rules are swapped back and forth: every response is
/// entirely the old set's or entirely the new one's (its policy, limit and counters).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_requests_see_one_set_or_the_other_never_a_mix() {
    let set = |name: &str, count: u32| {
        RateLimitLayer::builder().rule(
            Rule::new(name, Quota::new(count, Duration::from_secs(3600)).unwrap())
                .route(Route::get("/x")),
        )
    };
    let layer = set("old", 1_000_000).build().unwrap();
    let handle = layer.handle();
    let svc = service(&layer);
    let tasks: Vec<_> = (0..4)
        .map(|_| {
            let svc = svc.clone();
            tokio::spawn(async move {
                let (mut old, mut new) = (0u64, 0u64);
                for _ in 0..2_000 {
                    let res = get(&svc, "/x").await;
                    assert_eq!(res.status(), StatusCode::OK);
                    let policy = res.headers()["ratelimit-policy"]
                        .to_str()
                        .unwrap()
                        .to_owned();
                    let limit = res.headers()["x-ratelimit-limit"]
                        .to_str()
                        .unwrap()
                        .to_owned();
                    match (policy.as_str(), limit.as_str()) {
                        ("\"old\";q=1000000;w=3600", "1000000") => old += 1,
                        ("\"new\";q=2000000;w=3600", "2000000") => new += 1,
                        other => panic!("a mix of rule sets: {other:?}"),
                    }
                }
                (old, new)
            })
        })
        .collect();
    for i in 0..200 {
        let report = if i % 2 == 0 {
            handle.reload(set("new", 2_000_000)).unwrap()
        } else {
            handle.reload(set("old", 1_000_000)).unwrap()
        };
        assert_eq!(report.kept.len() + report.added.len(), 1);
        tokio::task::yield_now().await;
    }
    let (mut old, mut new) = (0, 0);
    for t in tasks {
        let (o, n) = t.await.unwrap();
        old += o;
        new += n;
    }
    assert_eq!(old + new, 8_000);
}

#[cfg(feature = "serde")]
mod from_files {
    use super::*;
    use tower_throttle::config::Config;

    fn config(b_quota: &str) -> Config {
        Config::from_toml_str(&format!(
            "[[rule]]\nname = \"a\"\nquota = \"1/10s\"\nroutes = [\"GET /a\"]\n\
             [[rule]]\nname = \"b\"\nquota = \"{b_quota}\"\nroutes = [\"GET /b\"]\n"
        ))
        .unwrap()
    }

    #[tokio::test(start_paused = true)]
    async fn reload_config_keeps_unchanged_rules_and_refuses_a_bad_file() {
        let first = config("1/10s");
        let layer = first.builder().unwrap().build().unwrap();
        let handle = layer.handle();
        let svc = service(&layer);
        assert_eq!(admitted(&svc, "/a", 2).await, 1);
        assert_eq!(admitted(&svc, "/b", 2).await, 1);
        // The same file again: nothing changes, nothing is forgotten.
        let report = handle.reload_config(&first).unwrap();
        assert_eq!(report.kept, ["a", "b"]);
        assert!(!report.rules_changed());
        assert_eq!(admitted(&svc, "/a", 1).await, 0);
        // A changed quota takes effect at once.
        handle.reload_config(&config("3/10s burst 5")).unwrap();
        assert_eq!(admitted(&svc, "/b", 6).await, 5);
        assert_eq!(admitted(&svc, "/a", 1).await, 0);
        // A file that does not read is refused before any reload; one that reads but
        // does not build is refused by the reload; the rules in force stay either way.
        assert!(Config::from_toml_str("[[rule]]\nname = \"a\"\nquota = \"1/10\"\n").is_err());
        let mut needs_secret = config("9/10s");
        needs_secret.key_secret_env = Some("TT_RELOAD_TEST_UNSET".into());
        let e = handle.reload_config(&needs_secret).unwrap_err();
        assert_eq!(e.field_name(), Some("key_secret_env"));
        assert_eq!(admitted(&svc, "/b", 1).await, 0);
        assert_eq!(counts(&handle, "b"), Some((5, 2)));
    }
}
