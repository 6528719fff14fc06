//! An HTTP server enforcing Clerk's published rate limits with stub handlers.
//!
//! ```text
//! cargo run --example clerk_server -- [--addr HOST:PORT] [--instance development|production]
//! cargo run --example clerk_server --features redis -- --redis redis://127.0.0.1:6379/
//! ```
//!
//! With `--redis URL` (feature `redis`), limits live in Redis: two processes started with the
//! same URL enforce Clerk's table together.

#[path = "support/clerk.rs"]
mod clerk;

use clerk::Instance;

fn usage() -> ! {
    eprintln!(
        "usage: clerk_server [--addr HOST:PORT] [--instance development|production] [--redis URL]\n\
         defaults: --addr 127.0.0.1:3000 --instance development, in-memory store"
    );
    std::process::exit(2)
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut addr = "127.0.0.1:3000".to_owned();
    let mut instance = Instance::Development;
    let mut redis: Option<String> = None;
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
            _ => usage(),
        }
    }
    let (app, _handle) = match redis {
        None => clerk::app(instance)?,
        #[cfg(feature = "redis")]
        Some(url) => clerk::app_on_redis(instance, &url)?,
        #[cfg(not(feature = "redis"))]
        Some(_) => {
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
