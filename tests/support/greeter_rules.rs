//! The example server's per-API-key rule (examples/tonic_server.rs), shared by the tonic
//! tests: 3 calls per 10 s on `helloworld.Greeter/SayHello`, keyed by `x-api-key`,
//! calls without one refused.

use std::time::Duration;

use tower_throttle::key::Header;
use tower_throttle::{MissingKey, Quota, Route, Rule};

/// The rule, for a server and for a pacing client alike.
pub fn per_api_key() -> Rule {
    Rule::new(
        "per_api_key",
        Quota::new(3, Duration::from_secs(10)).unwrap(),
    )
    .route(Route::grpc_method("helloworld.Greeter", "SayHello"))
    .key(Header::new("x-api-key".parse().unwrap()))
    .on_missing_key(MissingKey::Reject)
}
