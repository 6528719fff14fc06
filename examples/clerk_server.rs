//! An HTTP server enforcing Clerk's published rate limits with stub handlers.
//!
//! ```text
//! cargo run --example clerk_server -- [--addr HOST:PORT] [--instance development|production]
//! TOWER_THROTTLE_KEY_SECRET=$(openssl rand -hex 16) \
//!   cargo run --example clerk_server --features redis -- --redis redis://127.0.0.1:6379/
//! ```
//!
//! With `--redis URL` (feature `redis`), limits live in Redis: processes started with the
//! same URL and the same key secret enforce Clerk's table together. The secret (32 hex
//! digits) keys the hash of client keys; every instance must have the same one, so it comes
//! from the environment (`TOWER_THROTTLE_KEY_SECRET`, preferred: a flag shows in `ps`) or
//! `--key-secret HEX`, never from source code. Without one, `--redis` refuses to start.
//!
//! Log lines (Redis lost, Redis back, …) go to stderr; `RUST_LOG` filters them.

#[path = "support/clerk.rs"]
mod clerk;
#[path = "support/logging.rs"]
mod logging;
#[path = "support/metrics.rs"]
mod metrics;

use clerk::Instance;

/// Where the key secret is read from when `--key-secret` is not given.
const SECRET_VAR: &str = "TOWER_THROTTLE_KEY_SECRET";

fn usage() -> ! {
    eprintln!(
        "usage: clerk_server [--addr HOST:PORT] [--instance development|production] \
         [--redis URL [--key-secret HEX]] [--metrics-addr HOST:PORT]\n\
         defaults: --addr 127.0.0.1:3000 --instance development, in-memory store\n\
         with --redis, the key secret (32 hex digits, the same on every instance) comes from \
         --key-secret or ${SECRET_VAR}"
    );
    std::process::exit(2)
}

/// A 128-bit key secret from 32 hexadecimal digits.
fn parse_secret(hex: &str) -> Result<[u8; 16], String> {
    let hex = hex.trim();
    if hex.len() != 32 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(format!(
            "the key secret must be 32 hexadecimal digits (16 bytes, e.g. from \
             `openssl rand -hex 16`), got {} characters",
            hex.len()
        ));
    }
    let mut secret = [0u8; 16];
    for (i, byte) in secret.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).map_err(|e| e.to_string())?;
    }
    Ok(secret)
}

/// The key secret of `--key-secret`, else of the environment; exits with a clear message
/// when there is none or it is malformed.
#[cfg_attr(not(feature = "redis"), allow(dead_code))]
fn key_secret(flag: Option<String>) -> [u8; 16] {
    let (source, value) = match flag {
        Some(v) => ("--key-secret", v),
        None => match std::env::var(SECRET_VAR) {
            Ok(v) => (SECRET_VAR, v),
            Err(_) => {
                eprintln!(
                    "--redis needs a key secret shared by every instance on that Redis \
                     (otherwise each instance hashes client keys differently and enforces its \
                     own limit): set {SECRET_VAR} or pass --key-secret, 32 hex digits, e.g. \
                     `export {SECRET_VAR}=$(openssl rand -hex 16)`"
                );
                std::process::exit(2)
            }
        },
    };
    parse_secret(&value).unwrap_or_else(|e| {
        eprintln!("{source}: {e}");
        std::process::exit(2)
    })
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    logging::init();
    let mut addr = "127.0.0.1:3000".to_owned();
    let mut instance = Instance::Development;
    let mut redis: Option<String> = None;
    let mut secret: Option<String> = None;
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        match (flag.as_str(), args.next()) {
            ("--addr", Some(v)) => addr = v,
            ("--instance", Some(v)) => {
                instance = v.parse().unwrap_or_else(|e| {
                    eprintln!("{e}");
                    usage()
                })
            }
            ("--redis", Some(v)) => redis = Some(v),
            ("--key-secret", Some(v)) => secret = Some(v),
            // Before the layers are built: they resolve their metric handles then.
            ("--metrics-addr", Some(v)) => metrics::serve(&v),
            _ => usage(),
        }
    }
    let (app, _handle) = match redis {
        None => clerk::app(instance)?,
        #[cfg(feature = "redis")]
        Some(url) => {
            let secret = key_secret(secret);
            let store = tower_throttle::store::RedisStore::builder(url)
                .prefix("clerk-example")
                .build()?;
            clerk::app_on_redis(instance, store, secret)?
        }
        #[cfg(not(feature = "redis"))]
        Some(_) => {
            let _ = secret;
            eprintln!("--redis needs the redis feature: cargo run --example clerk_server --features redis -- --redis URL");
            std::process::exit(2)
        }
    };
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    println!(
        "Clerk stub API ({instance:?} instance) on http://{}",
        listener.local_addr()?
    );
    clerk::serve(listener, app).await?;
    Ok(())
}
