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
//! With `--config FILE` (feature `serde`), the rules come from a config file instead of the
//! built-in table (`examples/clerk.toml` is the same table), on the store the file names;
//! `kill -HUP <pid>` reloads the file without a restart: unchanged rules keep their state,
//! a bad file is refused with its error and the rules in force stay.
//!
//! ```text
//! cargo run --example clerk_server --features serde -- --config examples/clerk.toml
//! ```
//!
//! Log lines (Redis lost, Redis back, reloads, …) go to stderr; `RUST_LOG` filters them.

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
         [--redis URL [--key-secret HEX]] [--config FILE] [--metrics-addr HOST:PORT]\n\
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
    let mut config: Option<String> = None;
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
            ("--config", Some(v)) => config = Some(v),
            // Before the layers are built: they resolve their metric handles then.
            ("--metrics-addr", Some(v)) => metrics::serve(&v),
            _ => usage(),
        }
    }
    if let Some(path) = config {
        if redis.is_some() {
            eprintln!("--config and --redis exclusive: name the store in the file ([store.redis])");
            usage()
        }
        return serve_config(&addr, path).await;
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

/// Serves the rules of the config file at `path`, reloading it on SIGHUP.
#[cfg(feature = "serde")]
async fn serve_config(addr: &str, path: String) -> Result<(), Box<dyn std::error::Error>> {
    use tower_throttle::config::Config;
    let config = Config::from_path(&path)?;
    let (app, handle) = clerk::app_from_config(&config)?;
    let (file, store) = (path.clone(), config.store.clone());
    #[cfg(not(unix))]
    let _ = (handle, file, store);
    #[cfg(unix)]
    tokio::spawn(async move {
        let path = file;
        use tokio::signal::unix::{signal, SignalKind};
        let Ok(mut hangups) = signal(SignalKind::hangup()) else {
            tracing::warn!("cannot listen for SIGHUP: the config file will not be reloaded");
            return;
        };
        while hangups.recv().await.is_some() {
            let reloaded = Config::from_path(&path).and_then(|c| {
                if c.store != store {
                    tracing::warn!(file = %path, "the [store] section changed: restart to apply it");
                }
                handle.reload_config(&c)
            });
            match reloaded {
                Ok(report) => tracing::info!(file = %path, %report, "config reloaded"),
                Err(error) => tracing::warn!(
                    file = %path,
                    %error,
                    "config not reloaded: the rules in force stay"
                ),
            }
        }
    });
    let listener = tokio::net::TcpListener::bind(addr).await?;
    println!(
        "Clerk stub API ({path}, {} rules) on http://{}",
        config.rules.len(),
        listener.local_addr()?
    );
    clerk::serve(listener, app).await?;
    Ok(())
}

#[cfg(not(feature = "serde"))]
async fn serve_config(_: &str, _: String) -> Result<(), Box<dyn std::error::Error>> {
    eprintln!(
        "--config needs the serde feature: cargo run --example clerk_server --features serde \
         -- --config examples/clerk.toml"
    );
    std::process::exit(2)
}
