//! The crate's client stack ([`ClientStack`](tower_throttle::ClientStack), in its documented
//! order) against the crate's server limit under paused time: with the limit configured,
//! and with adaptive pacing that learns it from the server's first answer.

#[path = "../examples/support/round_trip.rs"]
mod round_trip;

use std::time::Duration;

use round_trip::{adaptive_client, minimum_time, naive_client, paced_client, run};

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

/// The real-time benchmark's shape (400 requests, 20 tasks, 100 per 10 s) under paused
/// time: the documented order keeps every request within the limit and ends at the least
/// time the limit allows, to the millisecond.
#[tokio::test(start_paused = true)]
async fn the_documented_order_takes_the_least_time_with_no_429() {
    let paced = run(400, 20, paced_client).await;
    assert_eq!(paced.succeeded, 400);
    assert_eq!((paced.surfaced_429, paced.server_429), (0, 0));
    assert_eq!(minimum_time(400), Duration::from_secs(30));
    assert_eq!(paced.elapsed, Duration::from_secs(30));
}

/// Adaptive pacing with no limit configured (and a start of 1 per second): the first
/// answer states 100 per 10 s with 99 left, so the 99 go at once and the rest one per
/// 100 ms: the same 30 s as the configured limit, no ramp from the guess, no 429.
#[tokio::test(start_paused = true)]
async fn adaptive_pacing_learns_the_limit_at_the_first_answer() {
    let adaptive = run(400, 20, adaptive_client).await;
    assert_eq!(adaptive.succeeded, 400);
    assert_eq!((adaptive.surfaced_429, adaptive.server_429), (0, 0));
    assert_eq!(adaptive.elapsed, Duration::from_secs(30));
    let monitor = adaptive.monitor.unwrap();
    assert_eq!(monitor.responses, 400);
}
