//! Adversarial tests: attacks on the limiter replayed from outside, over real loopback
//! HTTP against the Clerk server (`examples/support/clerk.rs`), plus property tests and
//! randomized parser inputs with a fixed seed.
//!
//! Each module owns one family of attacks; `harness` holds what they share (a Clerk server
//! on a free loopback port and a raw HTTP/1.1 client that sends paths as is, like
//! `curl --path-as-is`).
//!
//! Longer randomized runs: `HOSTILE_CASES=1000000 cargo test --test hostile --release`.

#[path = "../examples/support/clerk.rs"]
mod clerk;
#[path = "hostile/harness.rs"]
mod harness;

#[path = "hostile/paths.rs"]
mod paths;

#[path = "hostile/flood.rs"]
mod flood;

#[path = "hostile/headers.rs"]
mod headers;

#[path = "hostile/model.rs"]
mod model;

#[path = "hostile/keys.rs"]
mod keys;

#[cfg(feature = "redis")]
#[path = "hostile/redis.rs"]
mod redis;
#[cfg(feature = "redis")]
#[path = "support/redis_server.rs"]
mod redis_server;
