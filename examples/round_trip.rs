//! The round trip, printed: 10,000 requests from the crate's client stack (`ClientStack`:
//! Retry-After, backoff, pacing, header monitoring), with configured and with adaptive pacing, to a server enforcing 100 requests per 10 s with the crate's own
//! `RateLimitLayer`, beside a naive client that only retries 429s. Runs in-process on
//! tokio's paused clock, so the 990+ simulated seconds take well under a second.
//!
//! ```text
//! cargo run --release --example round_trip
//! ```

#[path = "support/logging.rs"]
mod logging;
#[path = "support/round_trip.rs"]
mod round_trip;

use round_trip::{adaptive_client, minimum_time, naive_client, paced_client, run, Outcome};

fn row(name: &str, o: &Outcome) {
    println!(
        "| {name:<28} | {:>9} | {:>12} | {:>10} | {:>12.1} | {:>9.2} % |",
        o.succeeded,
        o.surfaced_429,
        o.server_429,
        o.elapsed.as_secs_f64(),
        o.efficiency * 100.0
    );
}

fn main() {
    logging::init();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .expect("a runtime");
    let (n, workers) = (10_000, 20);
    let (paced, adaptive, naive) = runtime.block_on(async {
        (
            run(n, workers, paced_client).await,
            run(n, workers, adaptive_client).await,
            run(n, workers, naive_client).await,
        )
    });
    println!(
        "{n} requests, {workers} concurrent callers, server limit 100 per 10 s \
         (least possible time {} s)\n",
        minimum_time(n).as_secs()
    );
    println!("| client                       | succeeded | 429 surfaced | 429 served | time (sim s) | of allowed  |");
    println!("|------------------------------|-----------|--------------|------------|--------------|-------------|");
    row("ClientStack, rule pacing", &paced);
    row("ClientStack, adaptive pacing", &adaptive);
    row("naive (retry on 429 only)", &naive);
    if let Some(m) = paced.monitor {
        println!(
            "\npaced client's HeaderMonitorLayer: {} responses, {} low-remaining warnings, \
             {} hits (remaining 0 or 429), {} malformed fields",
            m.responses, m.warnings, m.hits, m.malformed
        );
    }
}
