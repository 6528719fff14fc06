//! The crate's client stack against the crate's server limit: 10,000 requests under paused
//! time, at >= 99 % of the allowed throughput with no 429 reaching the caller.

#[path = "../examples/support/round_trip.rs"]
mod round_trip;

use round_trip::{minimum_time, naive_client, paced_client, run};

#[tokio::test(start_paused = true)]
async fn paced_client_reaches_the_limit_without_429s() {
    let paced = run(10_000, 20, paced_client).await;
    assert_eq!(paced.succeeded, 10_000);
    assert_eq!(paced.surfaced_429, 0);
    assert_eq!(
        paced.server_429, 0,
        "pacing kept every request within the limit"
    );
    assert_eq!(minimum_time(10_000).as_secs(), 990);
    assert!(paced.efficiency >= 0.99, "{paced:?}");
    // The monitor saw every response and no 429; it warned as the quota ran low.
    let monitor = paced.monitor.unwrap();
    assert_eq!(monitor.responses, 10_000);
    assert_eq!(monitor.malformed, 0);
    assert!(monitor.warnings > 0);
}

#[tokio::test(start_paused = true)]
async fn a_naive_client_is_measured_beside_it() {
    let naive = run(10_000, 20, naive_client).await;
    assert_eq!(naive.succeeded + naive.surfaced_429, 10_000);
    // Retrying on 429 alone gets there, but only after the server refused many requests.
    assert!(naive.server_429 > 0, "{naive:?}");
}
