//! An HTTP server enforcing Clerk's published rate limits with stub handlers.
//!
//! ```text
//! cargo run --example clerk_server -- [--addr HOST:PORT] [--instance development|production]
//! ```

#[path = "support/clerk.rs"]
mod clerk;

use clerk::Instance;

fn usage() -> ! {
    eprintln!(
        "usage: clerk_server [--addr HOST:PORT] [--instance development|production]\n\
         defaults: --addr 127.0.0.1:3000 --instance development"
    );
    std::process::exit(2)
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut addr = "127.0.0.1:3000".to_owned();
    let mut instance = Instance::Development;
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
            _ => usage(),
        }
    }
    let (app, _handle) = clerk::app(instance)?;
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    println!(
        "Clerk stub API ({instance:?} instance) on http://{}",
        listener.local_addr()?
    );
    clerk::serve(listener, app).await?;
    Ok(())
}
