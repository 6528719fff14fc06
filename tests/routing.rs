//! Which rules a request meets, with a real axum `Router`: canonical paths, case folding,
//! axum's `MatchedPath`, unreadable paths, and where the peer address comes from.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{Method, Request, Response};
use axum::Router;
use tower::{service_fn, Layer, ServiceExt};
use tower_throttle::key::{PathParam, PeerIp};
use tower_throttle::rate_limit::HttpResponder;
use tower_throttle::PathMatching;
use tower_throttle::{
    Quota, RateLimitLayer, RateLimitLayerBuilder, Rejection, RejectionReason, Route, Rule,
};

fn quota(count: u32) -> Quota {
    Quota::new(count, Duration::from_secs(10)).unwrap()
}

fn table(matching: PathMatching) -> RateLimitLayerBuilder {
    RateLimitLayer::builder()
        .path_matching(matching)
        .rule(Rule::new("sign_in", quota(2)).route(Route::post("/v1/sign_ins")))
        .rule(
            Rule::new("user", quota(2))
                .route(Route::patch("/v1/users/{user_id}"))
                .key(PathParam::new("user_id")),
        )
}

fn request(method: Method, path: &str) -> Request<Body> {
    Request::builder()
        .method(method)
        .uri(path)
        .body(Body::empty())
        .unwrap()
}

async fn send<S>(svc: &S, method: Method, path: &str) -> Response<Body>
where
    S: tower::Service<Request<Body>, Response = Response<Body>, Error = Infallible> + Clone,
{
    svc.clone().oneshot(request(method, path)).await.unwrap()
}

async fn statuses<S>(svc: &S, method: Method, paths: &[&str]) -> Vec<u16>
where
    S: tower::Service<Request<Body>, Response = Response<Body>, Error = Infallible> + Clone,
{
    let mut out = Vec::new();
    for p in paths {
        out.push(send(svc, method.clone(), p).await.status().as_u16());
    }
    out
}

/// The router's routes; its parameter is called `id`, the rule's `user_id`.
fn routes() -> Router {
    use axum::routing::{patch, post};
    Router::new()
        .route("/v1/sign_ins", post(|| async { "signed in" }))
        .route("/v1/users/{id}", patch(|| async { "updated" }))
}

#[cfg(feature = "axum")]
#[tokio::test(start_paused = true)]
async fn matched_path_rules_follow_the_router() {
    let layer = table(PathMatching::AxumMatchedPath).build().unwrap();
    let handle = layer.handle();
    let app = routes().route_layer(layer);
    let sign_in = ["/v1/sign_ins", "/v1/sign_ins", "/v1/sign_ins"];
    assert_eq!(
        statuses(&app, Method::POST, &sign_in).await,
        [200, 200, 429]
    );
    // Spellings the router does not serve are its 404, and spend nothing.
    let spelled = ["//v1/sign_ins", "/v1/sign_%69ns", "/v1/sign_ins/"];
    assert_eq!(
        statuses(&app, Method::POST, &spelled).await,
        [404, 404, 404]
    );
    // One user under three spellings, as axum's `Path` decodes them: one bucket.
    let users = ["/v1/users/u_1", "/v1/users/u%5F1", "/v1/users/%75_1"];
    assert_eq!(statuses(&app, Method::PATCH, &users).await, [200, 200, 429]);
    // `..` is a value of `{id}` for axum, so the limiter reads it so too (no 400 here).
    let dots = ["/v1/users/..", "/v1/users/%2E%2e", "/v1/users/.."];
    assert_eq!(statuses(&app, Method::PATCH, &dots).await, [200, 200, 429]);
    let user = handle.rule("user").unwrap();
    assert_eq!((user.admitted, user.limited), (4, 2));
}

#[cfg(feature = "axum")]
#[tokio::test(start_paused = true)]
async fn matched_path_under_layer_falls_back_to_canonical_paths() {
    // Applied with `layer`, the limiter runs before routing: no `MatchedPath`.
    let app = routes().layer(table(PathMatching::AxumMatchedPath).build().unwrap());
    let paths = ["//v1/sign_ins", "/v1/sign_%69ns", "/v1/sign_ins"];
    assert_eq!(statuses(&app, Method::POST, &paths).await, [404, 404, 429]);
}

#[tokio::test(start_paused = true)]
async fn canonical_matching_counts_every_spelling() {
    let app = routes().layer(table(PathMatching::Canonical).build().unwrap());
    let paths = [
        "//v1/sign_ins",
        "/v1/sign_%69ns",
        "/v1/sign_ins",
        "/V1/SIGN_INS",
    ];
    assert_eq!(
        statuses(&app, Method::POST, &paths).await,
        [404, 404, 429, 404]
    );
}

#[tokio::test(start_paused = true)]
async fn case_folding_is_opt_in() {
    let ok =
        service_fn(|_: Request<Body>| async { Ok::<_, Infallible>(Response::new(Body::empty())) });
    let folding = table(PathMatching::CanonicalIgnoreCase).build().unwrap();
    let svc = folding.unwrapped_body().layer(ok);
    let paths = ["/V1/SIGN_INS", "/v1/Sign_Ins", "/v1/sign_ins"];
    assert_eq!(statuses(&svc, Method::POST, &paths).await, [200, 200, 429]);
    // Parameter values keep their case: two users.
    let users = [
        "/V1/USERS/U_1",
        "/v1/users/U_1",
        "/v1/users/u_1",
        "/v1/users/U_1",
    ];
    assert_eq!(
        statuses(&svc, Method::PATCH, &users).await,
        [200, 200, 200, 429]
    );
}

#[tokio::test(start_paused = true)]
async fn dot_segments_are_refused_before_any_rule() {
    let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
    let reasons = Arc::clone(&seen);
    let layer = table(PathMatching::Canonical)
        .responder(move |r: &Rejection<'_>| {
            reasons.lock().unwrap().push(r.reason());
            let mut res = Response::new(bytes::Bytes::from_static(b"custom"));
            *res.status_mut() = HttpResponder::new().status(r.reason());
            res
        })
        .build()
        .unwrap();
    let handle = layer.handle();
    let app = routes().layer(layer);
    for p in ["/v1/x/../sign_ins", "/v1/%2e%2E/sign_ins", "/v1/sign_ins/."] {
        assert_eq!(send(&app, Method::POST, p).await.status(), 400, "{p}");
    }
    let reason = RejectionReason::BadPath("a dot segment ('.' or '..') in the path");
    assert_eq!(*seen.lock().unwrap(), [reason; 3]);
    assert_eq!(handle.rule("sign_in").unwrap().admitted, 0);
    // The default body is a problem document naming the cause.
    let app = routes().layer(table(PathMatching::Canonical).build().unwrap());
    let res = send(&app, Method::POST, "/v1/./sign_ins").await;
    assert_eq!(res.headers()["content-type"], "application/problem+json");
    let body = axum::body::to_bytes(res.into_body(), 4096).await.unwrap();
    let doc: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(doc["status"], 400);
    assert_eq!(
        doc["detail"],
        "unreadable path: a dot segment ('.' or '..') in the path"
    );
}

fn per_ip_app() -> Router {
    routes().layer(
        RateLimitLayer::builder()
            .rule(Rule::new("per_ip", quota(1)).key(PeerIp::new()))
            .build()
            .unwrap(),
    )
}

async fn from_peer(app: &Router, peer: Option<&str>, connect_info: bool) -> u16 {
    let mut req = request(Method::POST, "/v1/sign_ins");
    if let Some(peer) = peer {
        let addr: SocketAddr = peer.parse().unwrap();
        if connect_info {
            req.extensions_mut()
                .insert(axum::extract::ConnectInfo(addr));
        } else {
            req.extensions_mut().insert(addr);
        }
    }
    app.clone().oneshot(req).await.unwrap().status().as_u16()
}

#[tokio::test(start_paused = true)]
async fn a_socket_addr_extension_keys_peer_ip_in_every_configuration() {
    let app = per_ip_app();
    assert_eq!(from_peer(&app, Some("192.0.2.1:1"), false).await, 200);
    assert_eq!(from_peer(&app, Some("192.0.2.1:2"), false).await, 429);
    assert_eq!(from_peer(&app, Some("192.0.2.2:1"), false).await, 200);
}

#[cfg(feature = "axum")]
#[tokio::test(start_paused = true)]
async fn axum_connect_info_keys_peer_ip_with_the_axum_feature() {
    let app = per_ip_app();
    assert_eq!(from_peer(&app, Some("192.0.2.1:1"), true).await, 200);
    assert_eq!(from_peer(&app, Some("192.0.2.1:2"), true).await, 429);
    assert_eq!(from_peer(&app, Some("192.0.2.2:1"), true).await, 200);
}

/// Counts `WARN` events whose message mentions `PeerIp`.
struct WarnCounter(Arc<AtomicUsize>);

impl tracing::Subscriber for WarnCounter {
    fn enabled(&self, _: &tracing::Metadata<'_>) -> bool {
        true
    }
    fn new_span(&self, _: &tracing::span::Attributes<'_>) -> tracing::span::Id {
        tracing::span::Id::from_u64(1)
    }
    fn record(&self, _: &tracing::span::Id, _: &tracing::span::Record<'_>) {}
    fn record_follows_from(&self, _: &tracing::span::Id, _: &tracing::span::Id) {}
    fn event(&self, event: &tracing::Event<'_>) {
        struct Message(bool);
        impl tracing::field::Visit for Message {
            fn record_debug(&mut self, f: &tracing::field::Field, v: &dyn std::fmt::Debug) {
                self.0 |= f.name() == "message" && format!("{v:?}").contains("PeerIp");
            }
        }
        let mut m = Message(false);
        event.record(&mut m);
        if *event.metadata().level() == tracing::Level::WARN && m.0 {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }
    fn enter(&self, _: &tracing::span::Id) {}
    fn exit(&self, _: &tracing::span::Id) {}
}

/// Without a peer address (e.g. axum's `ConnectInfo` without the crate's `axum` feature),
/// requests share one bucket, and the rule says so once.
#[test]
fn a_missing_peer_address_is_shared_and_logged_once() {
    let warnings = Arc::new(AtomicUsize::new(0));
    let subscriber = WarnCounter(Arc::clone(&warnings));
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .unwrap();
    tracing::subscriber::with_default(subscriber, || {
        rt.block_on(async {
            let app = per_ip_app();
            assert_eq!(from_peer(&app, None, false).await, 200);
            assert_eq!(from_peer(&app, None, false).await, 429);
            assert_eq!(from_peer(&app, None, false).await, 429);
            // A second layer (another rule) warns on its own.
            let other = per_ip_app();
            assert_eq!(from_peer(&other, None, false).await, 200);
        })
    });
    assert_eq!(warnings.load(Ordering::SeqCst), 2);
}

/// A template literal that is not canonical (`%2f`, `%7E`, `%41`) is still the
/// router's route: under `AxumMatchedPath` it is compared as written, not canonicalized
/// (the rule silently never applied).
#[cfg(feature = "axum")]
#[tokio::test(start_paused = true)]
async fn matched_path_rules_with_non_canonical_literals_apply() {
    for template in ["/files/a%2fb", "/v1/a%7Eb", "/v1/%41bc"] {
        let layer = RateLimitLayer::builder()
            .path_matching(PathMatching::AxumMatchedPath)
            .rule(Rule::new("r", quota(2)).route(Route::post(template)))
            .build()
            .unwrap();
        let app = Router::new()
            .route(template, axum::routing::post(|| async { "ok" }))
            .route_layer(layer);
        let sent = [template; 5];
        assert_eq!(
            statuses(&app, Method::POST, &sent).await,
            [200, 200, 429, 429, 429],
            "{template}"
        );
    }
}

/// `HEAD` is served by a `GET` handler (axum), so a `GET` rule covers it: ten `HEAD`s got
/// 200 and ran the handler ten times past a limit of two.
#[tokio::test(start_paused = true)]
async fn head_requests_count_against_get_rules() {
    let calls = Arc::new(AtomicUsize::new(0));
    let counted = Arc::clone(&calls);
    let layer = RateLimitLayer::builder()
        .rule(Rule::new("report", quota(2)).route(Route::get("/report")))
        .exempt(Route::get("/health"))
        .build()
        .unwrap();
    let app = Router::new()
        .route(
            "/report",
            axum::routing::get(move || {
                counted.fetch_add(1, Ordering::SeqCst);
                async { "report" }
            }),
        )
        .route("/health", axum::routing::get(|| async { "ok" }))
        .layer(layer);
    let heads = ["/report"; 10];
    let mut expected = vec![200, 200];
    expected.extend([429; 8]);
    assert_eq!(statuses(&app, Method::HEAD, &heads).await, expected);
    assert_eq!(statuses(&app, Method::GET, &["/report"]).await, [429]);
    assert_eq!(calls.load(Ordering::SeqCst), 2);
    // A carve-out on GET stays exact: HEAD /health is not exempt, but nothing limits it.
    assert_eq!(statuses(&app, Method::HEAD, &["/health"]).await, [200]);
}
