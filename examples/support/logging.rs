//! The examples' `tracing` subscriber: log lines on stderr, filtered by `RUST_LOG`
//! (default `warn,tower_throttle=info`, so a Redis store's "lost" and "back" transitions
//! show), e.g. `RUST_LOG=tower_throttle=debug cargo run --example clerk_server`.

/// Installs the subscriber (once; later calls do nothing).
pub fn init() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn,tower_throttle=info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr)
        .try_init();
}
