//! Every row of Clerk's published table, under paused time, with exact assertions.

#[path = "../examples/support/clerk.rs"]
mod clerk;

use std::net::SocketAddr;
use std::time::Duration;

use axum::body::Body;
use axum::http::{Method, Request, Response, StatusCode};
use axum::Router;
use clerk::Instance;
use tower::ServiceExt;
use tower_throttle::RateLimitHandle;

const IP_A: &str = "203.0.113.10:50000";
const IP_B: &str = "198.51.100.20:50000";
const DEV_KEY: &str = "sk_test_instance_a";

struct Api {
    app: Router,
    handle: RateLimitHandle,
}

/// Where the table comes from: the built-in one, or `examples/clerk.toml`.
#[derive(Debug, Clone, Copy)]
enum Table {
    Builtin,
    #[cfg(feature = "serde")]
    File,
}

impl Api {
    fn new(table: Table, instance: Instance) -> Self {
        let (app, handle) = match table {
            Table::Builtin => clerk::app(instance).unwrap(),
            #[cfg(feature = "serde")]
            Table::File => clerk::app_from_config(&clerk::config(instance).unwrap()).unwrap(),
        };
        Api { app, handle }
    }

    async fn send(
        &self,
        method: Method,
        path: &str,
        ip: &str,
        key: Option<&str>,
    ) -> Response<Body> {
        let mut req = Request::builder().method(method).uri(path);
        if let Some(key) = key {
            req = req.header("authorization", format!("Bearer {key}"));
        }
        let mut req = req.body(Body::empty()).unwrap();
        // A plain `SocketAddr`: read with and without the crate's `axum` feature (axum's
        // `ConnectInfo` is read only with it; tests/rate_limit.rs covers that).
        req.extensions_mut()
            .insert(ip.parse::<SocketAddr>().unwrap());
        self.app.clone().oneshot(req).await.unwrap()
    }

    async fn status(&self, method: Method, path: &str, ip: &str, key: Option<&str>) -> StatusCode {
        self.send(method, path, ip, key).await.status()
    }

    /// Sends `n` requests, returns how many were admitted (200).
    async fn admitted(
        &self,
        n: usize,
        method: Method,
        path: &str,
        ip: &str,
        key: Option<&str>,
    ) -> usize {
        let mut ok = 0;
        for _ in 0..n {
            if self.status(method.clone(), path, ip, key).await == StatusCode::OK {
                ok += 1;
            }
        }
        ok
    }
}

fn header<'a>(res: &'a Response<Body>, name: &str) -> &'a str {
    res.headers()
        .get(name)
        .unwrap_or_else(|| panic!("missing {name}"))
        .to_str()
        .unwrap()
}

async fn body_json(res: Response<Body>) -> serde_json::Value {
    let bytes = axum::body::to_bytes(res.into_body(), 1 << 16)
        .await
        .unwrap();
    serde_json::from_slice(&bytes).unwrap()
}

async fn sign_in_five_per_ten_seconds_per_ip(table: Table) {
    let api = Api::new(table, Instance::Development);
    for i in 0..5 {
        let res = api.send(Method::POST, "/v1/sign_ins", IP_A, None).await;
        assert_eq!(res.status(), StatusCode::OK, "request {}", i + 1);
        assert_eq!(header(&res, "x-ratelimit-remaining"), (4 - i).to_string());
    }
    let sixth = api.send(Method::POST, "/v1/sign_ins", IP_A, None).await;
    assert_eq!(sixth.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(header(&sixth, "retry-after"), "2");
    assert_eq!(header(&sixth, "x-ratelimit-limit"), "5");
    assert_eq!(header(&sixth, "x-ratelimit-remaining"), "0");
    assert_eq!(header(&sixth, "x-ratelimit-reset"), "10");
    assert_eq!(header(&sixth, "ratelimit-policy"), r#""sign_in";q=5;w=10"#);
    assert_eq!(header(&sixth, "ratelimit"), r#""sign_in";r=0;t=10"#);
    assert_eq!(header(&sixth, "content-type"), "application/problem+json");
    let problem = body_json(sixth).await;
    assert_eq!(problem["status"], 429);
    assert_eq!(problem["rule"], "sign_in");
    assert_eq!(problem["retry_after"], 2);

    // Another IP is independent.
    assert_eq!(
        api.admitted(5, Method::POST, "/v1/sign_ins", IP_B, None)
            .await,
        5
    );

    // Retry-After is exact: one nanosecond early is still refused.
    tokio::time::advance(Duration::from_nanos(1_999_999_999)).await;
    assert_eq!(
        api.status(Method::POST, "/v1/sign_ins", IP_A, None).await,
        StatusCode::TOO_MANY_REQUESTS
    );
    tokio::time::advance(Duration::from_nanos(1)).await;
    assert_eq!(
        api.status(Method::POST, "/v1/sign_ins", IP_A, None).await,
        StatusCode::OK
    );
    assert_eq!(
        api.status(Method::POST, "/v1/sign_ins", IP_A, None).await,
        StatusCode::TOO_MANY_REQUESTS
    );

    let stats = api.handle.rule("sign_in").unwrap();
    assert_eq!((stats.admitted, stats.limited), (11, 3));
}

async fn sign_up_five_per_ten_seconds_per_ip(table: Table) {
    let api = Api::new(table, Instance::Development);
    assert_eq!(
        api.admitted(5, Method::POST, "/v1/sign_ups", IP_A, None)
            .await,
        5
    );
    let res = api.send(Method::POST, "/v1/sign_ups", IP_A, None).await;
    assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(header(&res, "retry-after"), "2");
    // Sign-ups and sign-ins are separate buckets.
    assert_eq!(
        api.admitted(5, Method::POST, "/v1/sign_ins", IP_A, None)
            .await,
        5
    );
    assert_eq!(
        api.admitted(1, Method::POST, "/v1/sign_ups", IP_B, None)
            .await,
        1
    );
}

async fn sign_in_attempts_share_three_per_ten_seconds(table: Table) {
    let api = Api::new(table, Instance::Development);
    let first = "/v1/sign_ins/sia_1/attempt_first_factor";
    let second = "/v1/sign_ins/sia_2/attempt_second_factor";
    assert_eq!(api.admitted(2, Method::POST, first, IP_A, None).await, 2);
    assert_eq!(api.admitted(1, Method::POST, second, IP_A, None).await, 1);
    for path in [first, second] {
        let res = api.send(Method::POST, path, IP_A, None).await;
        assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS);
        // 10 s / 3 = 3.333… s, rounded up.
        assert_eq!(header(&res, "retry-after"), "4");
    }
    assert_eq!(api.admitted(3, Method::POST, second, IP_B, None).await, 3);
    tokio::time::advance(Duration::from_nanos(3_333_333_332)).await;
    assert_eq!(
        api.status(Method::POST, first, IP_A, None).await,
        StatusCode::TOO_MANY_REQUESTS
    );
    tokio::time::advance(Duration::from_nanos(1)).await;
    assert_eq!(
        api.status(Method::POST, first, IP_A, None).await,
        StatusCode::OK
    );
}

async fn sign_up_attempts_three_per_ten_seconds(table: Table) {
    let api = Api::new(table, Instance::Development);
    let path = "/v1/sign_ups/sua_1/attempt_verification";
    assert_eq!(api.admitted(3, Method::POST, path, IP_A, None).await, 3);
    let res = api.send(Method::POST, path, IP_A, None).await;
    assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(header(&res, "retry-after"), "4");
    assert_eq!(header(&res, "ratelimit"), r#""sign_up_attempt";r=0;t=10"#);
}

async fn development_backend_limit_is_100_per_ten_seconds_per_key(table: Table) {
    let api = Api::new(table, Instance::Development);
    assert_eq!(
        api.admitted(100, Method::GET, "/v1/users", IP_A, Some(DEV_KEY))
            .await,
        100
    );
    let res = api
        .send(Method::GET, "/v1/users/user_1", IP_A, Some(DEV_KEY))
        .await;
    assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS);
    // One request's worth returns every 100 ms; Retry-After is never 0.
    assert_eq!(header(&res, "retry-after"), "1");
    assert_eq!(header(&res, "ratelimit-policy"), r#""instance";q=100;w=10"#);
    // Another secret key is another instance, from the same IP.
    assert_eq!(
        api.admitted(100, Method::GET, "/v1/users", IP_A, Some("sk_test_other"))
            .await,
        100
    );
    // Frontend routes do not count against the instance limit.
    assert_eq!(
        api.admitted(5, Method::POST, "/v1/sign_ins", IP_A, Some(DEV_KEY))
            .await,
        5
    );
    tokio::time::advance(Duration::from_millis(100)).await;
    assert_eq!(
        api.admitted(2, Method::GET, "/v1/users", IP_A, Some(DEV_KEY))
            .await,
        1
    );
}

async fn production_backend_limit_is_1000_per_ten_seconds(table: Table) {
    let api = Api::new(table, Instance::Production);
    assert_eq!(
        api.admitted(1001, Method::GET, "/v1/clients", IP_A, Some("sk_live_1"))
            .await,
        1000
    );
    let stats = api.handle.rule("instance").unwrap();
    assert_eq!((stats.admitted, stats.limited), (1000, 1));
}

async fn jwks_is_never_limited(table: Table) {
    let api = Api::new(table, Instance::Development);
    assert_eq!(
        api.admitted(100, Method::GET, "/v1/users", IP_A, Some(DEV_KEY))
            .await,
        100
    );
    // Not even by the exhausted instance limit, and without a key.
    for key in [Some(DEV_KEY), None] {
        for _ in 0..200 {
            let res = api.send(Method::GET, "/v1/jwks", IP_A, key).await;
            assert_eq!(res.status(), StatusCode::OK);
            assert!(res.headers().get("x-ratelimit-limit").is_none());
        }
    }
    assert_eq!(api.handle.exempted(), 400);
    // Other methods on the path are ordinary backend requests.
    assert_eq!(
        api.status(Method::POST, "/v1/jwks", IP_A, Some(DEV_KEY))
            .await,
        StatusCode::TOO_MANY_REQUESTS
    );
}

async fn hourly_invitation_refusals_leave_the_instance_quota_untouched(table: Table) {
    let api = Api::new(table, Instance::Development);
    let bulk = "/v1/invitations/bulk";
    assert_eq!(
        api.admitted(25, Method::POST, bulk, IP_A, Some(DEV_KEY))
            .await,
        25
    );
    for _ in 0..10 {
        let res = api.send(Method::POST, bulk, IP_A, Some(DEV_KEY)).await;
        assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS);
        // 3600 s / 25 = 144 s.
        assert_eq!(header(&res, "retry-after"), "144");
        assert_eq!(
            header(&res, "ratelimit-policy"),
            r#""invitations_bulk";q=25;w=3600"#
        );
    }
    // 25 of the instance's 100 were spent; the 10 refusals spent nothing.
    assert_eq!(
        api.admitted(80, Method::GET, "/v1/users", IP_A, Some(DEV_KEY))
            .await,
        75
    );
    let instance = api.handle.rule("instance").unwrap();
    assert_eq!((instance.admitted, instance.limited), (100, 5));
    let bulk_stats = api.handle.rule("invitations_bulk").unwrap();
    assert_eq!((bulk_stats.admitted, bulk_stats.limited), (25, 10));
}

async fn hourly_invitation_limits(table: Table) {
    // Production, so the 1000 / 10 s instance limit does not interfere.
    let api = Api::new(table, Instance::Production);
    let key = Some("sk_live_1");
    let cases = [
        ("/v1/invitations", 100, "36"),
        ("/v1/organizations/org_1/invitations", 250, "15"),
        ("/v1/organizations/org_1/invitations/bulk", 50, "72"),
    ];
    for (path, limit, retry_after) in cases {
        assert_eq!(
            api.admitted(limit, Method::POST, path, IP_A, key).await,
            limit,
            "{path}"
        );
        let res = api.send(Method::POST, path, IP_A, key).await;
        assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS, "{path}");
        assert_eq!(header(&res, "retry-after"), retry_after, "{path}");
        tokio::time::advance(Duration::from_secs(10)).await;
    }
    // The organization limit is per instance, not per organization.
    let res = api
        .send(
            Method::POST,
            "/v1/organizations/org_2/invitations/bulk",
            IP_A,
            key,
        )
        .await;
    assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS);
}

async fn user_updates_share_one_bucket_per_user(table: Table) {
    let api = Api::new(table, Instance::Development);
    assert_eq!(
        api.admitted(5, Method::PATCH, "/v1/users/user_1", IP_A, Some(DEV_KEY))
            .await,
        5
    );
    assert_eq!(
        api.admitted(
            5,
            Method::PATCH,
            "/v1/users/user_1/metadata",
            IP_A,
            Some(DEV_KEY)
        )
        .await,
        5
    );
    for path in ["/v1/users/user_1", "/v1/users/user_1/metadata"] {
        let res = api.send(Method::PATCH, path, IP_A, Some(DEV_KEY)).await;
        assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(header(&res, "retry-after"), "1");
        assert_eq!(header(&res, "ratelimit"), r#""user_update";r=0;t=10"#);
    }
    // Another user is independent; reads of the user are not PATCHes.
    assert_eq!(
        api.admitted(10, Method::PATCH, "/v1/users/user_2", IP_A, Some(DEV_KEY))
            .await,
        10
    );
    assert_eq!(
        api.status(Method::GET, "/v1/users/user_1", IP_A, Some(DEV_KEY))
            .await,
        StatusCode::OK
    );
    // The admitted response reports the most restrictive rule.
    let res = api
        .send(Method::PATCH, "/v1/users/user_3", IP_A, Some(DEV_KEY))
        .await;
    assert_eq!(header(&res, "ratelimit"), r#""user_update";r=9;t=1"#);
}

async fn backend_request_without_bearer_key_gets_401(table: Table) {
    let api = Api::new(table, Instance::Development);
    let res = api.send(Method::GET, "/v1/users", IP_A, None).await;
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    assert!(res.headers().get("retry-after").is_none());
    let problem = body_json(res).await;
    assert_eq!(problem["status"], 401);
    let res = api
        .send(Method::POST, "/v1/invitations", IP_A, Some(""))
        .await;
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(api.handle.rule("instance").unwrap().missing_key, 2);
    // Frontend routes need no key.
    assert_eq!(
        api.status(Method::POST, "/v1/sign_ins", IP_A, None).await,
        StatusCode::OK
    );
}

/// Each test above against the built-in table and against `examples/clerk.toml`: they
/// must agree.
macro_rules! both_tables {
    ($($name:ident),* $(,)?) => {
        mod builtin {
            $(
                #[tokio::test(start_paused = true)]
                async fn $name() {
                    super::$name(super::Table::Builtin).await
                }
            )*
        }
        #[cfg(feature = "serde")]
        mod file {
            $(
                #[tokio::test(start_paused = true)]
                async fn $name() {
                    super::$name(super::Table::File).await
                }
            )*
        }
    };
}

both_tables!(
    sign_in_five_per_ten_seconds_per_ip,
    sign_up_five_per_ten_seconds_per_ip,
    sign_in_attempts_share_three_per_ten_seconds,
    sign_up_attempts_three_per_ten_seconds,
    development_backend_limit_is_100_per_ten_seconds_per_key,
    production_backend_limit_is_1000_per_ten_seconds,
    jwks_is_never_limited,
    hourly_invitation_refusals_leave_the_instance_quota_untouched,
    hourly_invitation_limits,
    user_updates_share_one_bucket_per_user,
    backend_request_without_bearer_key_gets_401,
);

/// The file and the built-in table are the same rules, rule by rule, and the same exempt
/// routes.
#[cfg(feature = "serde")]
#[test]
fn the_file_is_the_built_in_table() {
    for instance in [Instance::Development, Instance::Production] {
        let file = clerk::config(instance).unwrap();
        let from_file = file.rules().unwrap();
        let builtin = clerk::rules(instance).unwrap();
        assert_eq!(from_file.len(), builtin.len());
        for (f, b) in from_file.iter().zip(&builtin) {
            assert_eq!(f, b, "rule {}", b.name());
        }
        assert_eq!(file.exempt, [tower_throttle::Route::get("/v1/jwks")]);
    }
}
