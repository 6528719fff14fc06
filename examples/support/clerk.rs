//! Clerk's published rate limits (shared/reference/clerk-api-rate-limits.md) as one
//! `RateLimitLayer`, plus a stub Clerk API. Shared by `clerk_server`, `demo` and the tests.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::time::Duration;

use axum::http::{Method, StatusCode, Uri};
use axum::Router;
use tower_throttle::key::{BearerToken, PathParam, PeerIp};
use tower_throttle::{
    MissingKey, Quota, RateLimitHandle, RateLimitLayer, RateLimitLayerBuilder, Route, Rule,
};

/// Which kind of Clerk instance: the backend limit differs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Instance {
    /// 100 backend requests per 10 seconds.
    Development,
    /// 1000 backend requests per 10 seconds.
    Production,
}

impl std::str::FromStr for Instance {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "development" => Ok(Instance::Development),
            "production" => Ok(Instance::Production),
            other => Err(format!(
                "unknown instance {other:?}: expected development or production"
            )),
        }
    }
}

const TEN_SECONDS: Duration = Duration::from_secs(10);

/// The frontend routes, keyed by client IP.
pub fn frontend_routes() -> Vec<Route> {
    vec![
        Route::post("/v1/sign_ins"),
        Route::post("/v1/sign_ups"),
        Route::post("/v1/sign_ins/{id}/attempt_first_factor"),
        Route::post("/v1/sign_ins/{id}/attempt_second_factor"),
        Route::post("/v1/sign_ups/{id}/attempt_verification"),
    ]
}

fn per_ip(name: &str, count: u32, routes: &[&str]) -> Result<Rule, Box<dyn std::error::Error>> {
    let mut rule = Rule::new(name, Quota::new(count, TEN_SECONDS)?).key(PeerIp::new());
    for r in routes {
        rule = rule.route(Route::post(*r));
    }
    Ok(rule)
}

fn hourly(name: &str, count: u32, route: &str) -> Result<Rule, Box<dyn std::error::Error>> {
    Ok(Rule::new(name, Quota::per_hour(count)?)
        .route(Route::post(route))
        .key(BearerToken)
        .on_missing_key(MissingKey::Reject))
}

/// Every row of Clerk's table.
pub fn rules(instance: Instance) -> Result<Vec<Rule>, Box<dyn std::error::Error>> {
    let backend = match instance {
        Instance::Development => 100,
        Instance::Production => 1000,
    };
    let mut instance_rule = Rule::new("instance", Quota::new(backend, TEN_SECONDS)?)
        .route(Route::any("/v1/{*rest}"))
        .key(BearerToken)
        .on_missing_key(MissingKey::Reject);
    for r in frontend_routes() {
        instance_rule = instance_rule.except(r);
    }
    Ok(vec![
        per_ip("sign_in", 5, &["/v1/sign_ins"])?,
        per_ip("sign_up", 5, &["/v1/sign_ups"])?,
        per_ip(
            "sign_in_attempt",
            3,
            &[
                "/v1/sign_ins/{id}/attempt_first_factor",
                "/v1/sign_ins/{id}/attempt_second_factor",
            ],
        )?,
        per_ip(
            "sign_up_attempt",
            3,
            &["/v1/sign_ups/{id}/attempt_verification"],
        )?,
        instance_rule,
        hourly("invitations", 100, "/v1/invitations")?,
        hourly("invitations_bulk", 25, "/v1/invitations/bulk")?,
        hourly(
            "org_invitations",
            250,
            "/v1/organizations/{organization_id}/invitations",
        )?,
        hourly(
            "org_invitations_bulk",
            50,
            "/v1/organizations/{organization_id}/invitations/bulk",
        )?,
        Rule::new("user_update", Quota::new(10, TEN_SECONDS)?)
            .route(Route::patch("/v1/users/{user_id}"))
            .route(Route::patch("/v1/users/{user_id}/metadata"))
            .key(PathParam::new("user_id")),
    ])
}

/// The whole table, ready to build.
pub fn builder(instance: Instance) -> Result<RateLimitLayerBuilder, Box<dyn std::error::Error>> {
    let mut builder = RateLimitLayer::builder().exempt(Route::get("/v1/jwks"));
    for rule in rules(instance)? {
        builder = builder.rule(rule);
    }
    Ok(builder)
}

/// The whole table as one layer on the in-memory store.
pub fn layer(instance: Instance) -> Result<RateLimitLayer, Box<dyn std::error::Error>> {
    Ok(builder(instance)?.build()?)
}

async fn stub(method: Method, uri: Uri) -> axum::Json<serde_json::Value> {
    axum::Json(
        serde_json::json!({ "object": "stub", "method": method.as_str(), "path": uri.path() }),
    )
}

async fn not_found(uri: Uri) -> (StatusCode, axum::Json<serde_json::Value>) {
    (
        StatusCode::NOT_FOUND,
        axum::Json(serde_json::json!({
            "errors": [{ "code": "resource_not_found", "message": "not found" }],
            "path": uri.path(),
        })),
    )
}

/// The stub Clerk API without limits: every route of the table, `GET /v1/jwks` and the
/// backend routes the tests and the demo call; anything else is 404, like the real API
/// (no catch-all 200), so every path it serves is one the table names.
pub fn api() -> Router {
    use axum::routing::{get, patch, post};
    let mut router = Router::new();
    for r in [
        "/v1/sign_ins",
        "/v1/sign_ups",
        "/v1/sign_ins/{id}/attempt_first_factor",
        "/v1/sign_ins/{id}/attempt_second_factor",
        "/v1/sign_ups/{id}/attempt_verification",
        "/v1/invitations",
        "/v1/invitations/bulk",
        "/v1/organizations/{organization_id}/invitations",
        "/v1/organizations/{organization_id}/invitations/bulk",
    ] {
        router = router.route(r, post(stub));
    }
    router
        .route("/v1/jwks", get(stub))
        .route("/v1/clients", get(stub))
        .route("/v1/users", get(stub))
        .route("/v1/users/{user_id}", get(stub).patch(stub))
        .route("/v1/users/{user_id}/metadata", patch(stub))
        .fallback(not_found)
}

/// The stub API behind Clerk's limits, and the layer's counters.
pub fn app(instance: Instance) -> Result<(Router, RateLimitHandle), Box<dyn std::error::Error>> {
    let layer = layer(instance)?;
    let handle = layer.handle();
    Ok((api().layer(layer), handle))
}

/// The stub API on a shared Redis store: processes using the same Redis (URL and prefix)
/// and the same `key_secret` enforce the table together. The secret comes from the
/// caller's configuration (`clerk_server` reads `--key-secret` or
/// `TOWER_THROTTLE_KEY_SECRET`), never from source code; without one the layer does not
/// build, since instances would then hash keys differently.
#[cfg(feature = "redis")]
pub fn app_on_redis(
    instance: Instance,
    store: tower_throttle::store::RedisStore,
    key_secret: [u8; 16],
) -> Result<(Router, RateLimitHandle), Box<dyn std::error::Error>> {
    let layer = builder(instance)?
        .key_secret(key_secret)
        .store(store)
        .build()?;
    let handle = layer.handle();
    Ok((api().layer(layer), handle))
}

/// `examples/clerk.toml`: the same table as a config file (feature `serde`).
#[cfg(feature = "serde")]
pub const CONFIG_FILE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/clerk.toml");

/// `examples/clerk.toml` for `instance`: the file is the development table; a production
/// instance's backend limit is 1000 per 10 s.
#[cfg(feature = "serde")]
pub fn config(
    instance: Instance,
) -> Result<tower_throttle::config::Config, Box<dyn std::error::Error>> {
    let mut config = tower_throttle::config::Config::from_path(CONFIG_FILE)?;
    if instance == Instance::Production {
        for rule in config.rules.iter_mut().filter(|r| r.name == "instance") {
            rule.quota = "1000/10s".parse()?;
        }
    }
    Ok(config)
}

/// The stub API behind the rules of a config file, and the layer's counters.
#[cfg(feature = "serde")]
pub fn app_from_config(
    config: &tower_throttle::config::Config,
) -> Result<(Router, RateLimitHandle), Box<dyn std::error::Error>> {
    let layer = config.layer()?;
    let handle = layer.handle();
    Ok((api().layer(layer), handle))
}

/// Serves `app` on `listener` with peer addresses available to the per-IP rules: as
/// axum's `ConnectInfo<SocketAddr>` and as a plain `SocketAddr` extension, which is what
/// the crate reads when it is built without its `axum` feature.
pub async fn serve(listener: tokio::net::TcpListener, app: Router) -> std::io::Result<()> {
    let app = app.layer(tower::util::MapRequestLayer::new(
        |mut req: axum::extract::Request| {
            let peer = req
                .extensions()
                .get::<axum::extract::ConnectInfo<SocketAddr>>()
                .map(|ci| ci.0);
            if let Some(peer) = peer {
                req.extensions_mut().insert(peer);
            }
            req
        },
    ));
    axum::serve(
        listener,
        app.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .await
}

/// The stub API with the table on `store` (for example a `MemoryStore` with a small
/// `max_keys`, to flood it in tests).
pub fn app_on_store<S: tower_throttle::Store + Clone>(
    instance: Instance,
    store: S,
) -> Result<(Router, RateLimitHandle), Box<dyn std::error::Error>> {
    let layer = builder(instance)?.store(store).build()?;
    let handle = layer.handle();
    Ok((api().layer(layer), handle))
}
