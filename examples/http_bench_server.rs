//! A minimal axum server for the HTTP end-to-end benchmark (`benches/http.sh`).
//!
//! ```text
//! cargo run --release --example http_bench_server -- --variant NAME [--addr 127.0.0.1:PORT]
//! ```
//!
//! One `GET /` route answering a short static body, behind one of these variants:
//!
//! - `bare`: nothing in front of the route.
//! - `throttle`: tower-throttle's `RateLimitLayer`, a per-IP rule (`PeerIp`) plus a global
//!   rule (`Global`).
//! - `governor`: `tower_governor`'s `GovernorLayer` keyed by peer IP (`PeerIpKeyExtractor`).
//! - `throttle-keys`: `RateLimitLayer`, a rule keyed by the `x-api-key` header (`Header`)
//!   plus the global rule.
//! - `governor-keys`: `GovernorLayer` with a custom key extractor reading `x-api-key`.
//!
//! `throttle-like-governor` is the configuration tower_governor's defaults match: one
//! per-IP rule, no rate-limit headers, and the unwrapped body (axum's own body type).
//!
//! Diagnostic variants (not in the default benchmark run): `throttle-noheaders` is
//! `throttle` writing no rate-limit headers (`HeaderDialects::NONE`), `throttle-legacy`
//! and `throttle-ietf` write only the legacy `X-RateLimit-*` or only the IETF dialect,
//! `throttle-unwrapped` and `throttle-unwrapped-keys` are `throttle` and `throttle-keys`
//! with `unwrapped_body()` (responses keep axum's body type, so axum does not box them
//! again), and
//! `governor-headers` is `governor` with `use_headers()` (`x-ratelimit-*` on every
//! response), to separate the cost of the headers from the cost of the decision.
//!
//! Every quota is so large (10^9 per second, burst 10^9) that every request is admitted:
//! the benchmark measures the cost of deciding, not of refusing. Port 0 picks a free port;
//! the server prints `listening on ADDR` once it accepts connections. It serves with
//! `into_make_service_with_connect_info::<SocketAddr>()` so both limiters see the peer IP,
//! on tokio's multi-thread runtime.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::routing::get;
use axum::Router;
use http::{HeaderName, Request};
use tower_governor::errors::GovernorError;
use tower_governor::governor::GovernorConfigBuilder;
use tower_governor::key_extractor::{KeyExtractor as GovernorKeyExtractor, PeerIpKeyExtractor};
use tower_governor::GovernorLayer;
use tower_throttle::headers::HeaderDialects;
use tower_throttle::key::{Global, Header, PeerIp};
use tower_throttle::{Quota, RateLimitLayer, Rule};

/// The header carrying the API key in the many-keys variants.
const API_KEY: HeaderName = HeaderName::from_static("x-api-key");

/// Requests per second and burst of every quota: no run comes near it.
const HUGE: u32 = 1_000_000_000;

const VARIANTS: &str = "bare, throttle, governor, throttle-keys, governor-keys, \
                        throttle-noheaders, throttle-legacy, throttle-ietf, throttle-unwrapped, throttle-unwrapped-keys, \
                        governor-headers, throttle-like-governor";

fn usage() -> ! {
    eprintln!(
        "usage: http_bench_server --variant NAME [--addr HOST:PORT]\n\
         variants: {VARIANTS}; default --addr 127.0.0.1:0 (a free port)"
    );
    std::process::exit(2)
}

/// tower_governor key extractor: the `x-api-key` header, owned as a `String` (the usual
/// way to write one; governor's keyed store needs an owned key).
#[derive(Debug, Clone, Copy)]
struct ApiKeyExtractor;

impl GovernorKeyExtractor for ApiKeyExtractor {
    type Key = String;

    fn extract<T>(&self, req: &Request<T>) -> Result<Self::Key, GovernorError> {
        req.headers()
            .get(&API_KEY)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
            .ok_or(GovernorError::UnableToExtractKey)
    }
}

/// A quota no benchmark run exhausts: 10^9 per second, burst 10^9.
fn huge_quota() -> Quota {
    Quota::new(HUGE, Duration::from_secs(1)).expect("valid quota")
}

/// The per-IP rule of the `throttle` variants.
fn per_ip() -> Rule {
    Rule::new("per_ip", huge_quota()).key(PeerIp::new())
}

/// The `x-api-key` rule of the `throttle-keys` variants.
fn per_api_key() -> Rule {
    Rule::new("per_api_key", huge_quota()).key(Header::new(API_KEY))
}

/// A `RateLimitLayer` with `rule` and the global rule.
fn throttle(rule: Rule, dialects: HeaderDialects) -> RateLimitLayer {
    RateLimitLayer::builder()
        .rule(rule)
        .rule(Rule::new("global", huge_quota()).key(Global))
        .headers(dialects)
        .build()
        .expect("valid layer")
}

fn app(variant: &str) -> Router {
    let app = Router::new().route("/", get(|| async { "Hello, World!" }));
    match variant {
        "bare" => app,
        "throttle" => app.layer(throttle(per_ip(), HeaderDialects::ALL)),
        "throttle-noheaders" => app.layer(throttle(per_ip(), HeaderDialects::NONE)),
        "throttle-legacy" => app.layer(throttle(per_ip(), HeaderDialects::LEGACY)),
        "throttle-ietf" => app.layer(throttle(per_ip(), HeaderDialects::IETF)),
        "throttle-keys" => app.layer(throttle(per_api_key(), HeaderDialects::ALL)),
        "throttle-unwrapped" => app.layer(throttle(per_ip(), HeaderDialects::ALL).unwrapped_body()),
        "throttle-unwrapped-keys" => {
            app.layer(throttle(per_api_key(), HeaderDialects::ALL).unwrapped_body())
        }
        "throttle-like-governor" => app.layer(
            RateLimitLayer::builder()
                .rule(per_ip())
                .headers(HeaderDialects::NONE)
                .build()
                .expect("valid layer")
                .unwrapped_body(),
        ),
        "governor" => {
            let config = GovernorConfigBuilder::default()
                .per_nanosecond(1)
                .burst_size(HUGE)
                .key_extractor(PeerIpKeyExtractor)
                .finish()
                .expect("valid governor config");
            app.layer(GovernorLayer::new(Arc::new(config)))
        }
        "governor-headers" => {
            let config = GovernorConfigBuilder::default()
                .per_nanosecond(1)
                .burst_size(HUGE)
                .key_extractor(PeerIpKeyExtractor)
                .use_headers()
                .finish()
                .expect("valid governor config");
            app.layer(GovernorLayer::new(Arc::new(config)))
        }
        "governor-keys" => {
            let config = GovernorConfigBuilder::default()
                .per_nanosecond(1)
                .burst_size(HUGE)
                .key_extractor(ApiKeyExtractor)
                .finish()
                .expect("valid governor config");
            app.layer(GovernorLayer::new(Arc::new(config)))
        }
        other => {
            eprintln!("unknown variant {other:?}");
            usage()
        }
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut addr = "127.0.0.1:0".to_owned();
    let mut variant: Option<String> = None;
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        match (flag.as_str(), args.next()) {
            ("--addr", Some(v)) => addr = v,
            ("--variant", Some(v)) => variant = Some(v),
            _ => usage(),
        }
    }
    let Some(variant) = variant else { usage() };
    let app = app(&variant);
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    let local = listener.local_addr()?;
    println!("listening on {local} variant {variant}");
    axum::serve(
        listener,
        app.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .await?;
    Ok(())
}
