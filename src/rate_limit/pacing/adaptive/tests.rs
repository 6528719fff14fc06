//! Tests of adaptive pacing: settings, AIMD, and learning the limit at the first answer.

use super::*;

#[test]
fn settings_are_validated() {
    assert_eq!(Aimd::new(0.0), Err(AdaptiveError::BadRate));
    assert_eq!(Aimd::new(f64::NAN), Err(AdaptiveError::BadRate));
    assert_eq!(
        Aimd::new(5.0).unwrap().bounds(10.0, 20.0),
        Err(AdaptiveError::BadRate)
    );
    assert_eq!(
        Aimd::new(5.0).unwrap().decrease(1.0),
        Err(AdaptiveError::BadDecrease)
    );
    assert_eq!(
        Aimd::new(5.0).unwrap().increase_per_second(-1.0),
        Err(AdaptiveError::BadIncrease)
    );
}

#[tokio::test(start_paused = true)]
async fn aimd_and_spreading() {
    let rates = AdaptiveRates::new(Aimd::new(10.0).unwrap());
    let t0 = Instant::now();
    assert_eq!(rates.reserve("e"), Slot::At(t0));
    // The first request probes; the others wait for its answer.
    assert_eq!(rates.reserve("e"), Slot::AfterProbe);
    // A 429 with Retry-After: half the rate, hold until the server's time.
    let mut h = HeaderMap::new();
    h.insert("retry-after", "3".parse().unwrap());
    rates.observe("e", StatusCode::TOO_MANY_REQUESTS, &h);
    assert_eq!(rates.rate("e"), Some(5.0));
    assert_eq!(rates.reserve("e"), Slot::At(t0 + Duration::from_secs(3)));
    assert_eq!(
        rates.reserve("e"),
        Slot::At(t0 + Duration::from_millis(3200))
    );
    // 2 s of success: +1/s per second.
    tokio::time::advance(Duration::from_secs(2)).await;
    rates.observe("e", StatusCode::OK, &HeaderMap::new());
    assert_eq!(rates.rate("e"), Some(7.0));
    // The server says 4 left for 10 s: spread them.
    let mut h = HeaderMap::new();
    h.insert("x-ratelimit-remaining", "4".parse().unwrap());
    h.insert("x-ratelimit-reset", "10".parse().unwrap());
    rates.observe("e", StatusCode::OK, &h);
    assert_eq!(rates.rate("e"), Some(0.4));
}

fn headers(fields: &[(&'static str, &'static str)]) -> HeaderMap {
    let mut h = HeaderMap::new();
    for (k, v) in fields {
        h.append(*k, http::HeaderValue::from_static(v));
    }
    h
}

#[test]
fn what_is_a_refusal() {
    let ms = Duration::from_millis;
    let read = |status: u16, fields: &[(&'static str, &'static str)]| {
        let h = headers(fields);
        let retry_after = parse_rate_limit(&h, SystemTime::now()).retry_after;
        refusal(StatusCode::from_u16(status).unwrap(), &h, || retry_after)
    };
    assert_eq!(read(200, &[]), None);
    assert_eq!(read(429, &[]), Some(None));
    assert_eq!(read(429, &[("retry-after", "2")]), Some(Some(ms(2000))));
    // Trailers-only RESOURCE_EXHAUSTED (HTTP 200): the pushback first.
    let exhausted = [
        ("grpc-status", "8"),
        ("retry-after", "9"),
        ("grpc-retry-pushback-ms", "1500"),
    ];
    assert_eq!(read(200, &exhausted), Some(Some(ms(1500))));
    assert_eq!(read(200, &[("grpc-status", "8")]), Some(None));
    let governor = [("grpc-status", "8"), ("retry-after", "3")];
    assert_eq!(read(200, &governor), Some(Some(ms(3000))), "no pushback");
    // "Do not retry": a refusal, nothing to hold.
    let veto = [
        ("grpc-status", "8"),
        ("grpc-retry-pushback-ms", "-1"),
        ("retry-after", "3"),
    ];
    assert_eq!(read(200, &veto), Some(None));
    // Other codes are no rate-limit signal, pushback or not; a 429 stays one.
    let unavailable = [("grpc-status", "14"), ("grpc-retry-pushback-ms", "500")];
    assert_eq!(read(200, &unavailable), None);
    assert_eq!(read(200, &[("grpc-status", "0")]), None);
    assert_eq!(read(429, &[("grpc-status", "14")]), Some(None));
}

#[tokio::test(start_paused = true)]
async fn the_limit_is_learned_at_the_first_answer() {
    let ms = Duration::from_millis;
    let rates = AdaptiveRates::new(Aimd::new(1.0).unwrap());
    let t0 = Instant::now();
    assert_eq!(rates.reserve("e"), Slot::At(t0));
    assert_eq!(rates.reserve("e"), Slot::AfterProbe);
    // A failed probe: the next request probes again (one interval of the guess later).
    rates.failed("e");
    assert_eq!(rates.reserve("e"), Slot::At(t0 + Duration::from_secs(1)));
    tokio::time::advance(ms(5)).await;
    let t1 = Instant::now();
    let answer = headers(&[
        ("ratelimit-policy", "\"api\";q=100;w=10"),
        ("ratelimit", "\"api\";r=2;t=10"),
    ]);
    rates.observe("e", StatusCode::OK, &answer);
    // 10 per second at once (not 1, the guess), the 2 left now, then one per 100 ms.
    assert_eq!(rates.rate("e"), Some(10.0));
    let slots: Vec<_> = (0..4)
        .map(|_| match rates.reserve("e") {
            Slot::At(at) => at - t1,
            Slot::AfterProbe => panic!("answered"),
        })
        .collect();
    assert_eq!(slots, [ms(0), ms(0), ms(100), ms(200)]);
    // A later failure does not reopen a probe.
    rates.failed("e");
    assert_eq!(rates.reserve("e"), Slot::At(t1 + ms(300)));
}

#[tokio::test(start_paused = true)]
async fn a_grpc_refusal_slows_down_and_holds_for_the_pushback() {
    let rates = AdaptiveRates::new(Aimd::new(4.0).unwrap());
    let t0 = Instant::now();
    assert_eq!(rates.reserve("e"), Slot::At(t0));
    let refused = headers(&[
        ("grpc-status", "8"),
        ("grpc-retry-pushback-ms", "3334"),
        ("retry-after", "9"),
    ]);
    rates.observe("e", StatusCode::OK, &refused);
    assert_eq!(rates.rate("e"), Some(2.0));
    assert_eq!(
        rates.reserve("e"),
        Slot::At(t0 + Duration::from_millis(3334))
    );
    assert_eq!(
        rates.reserve("e"),
        Slot::At(t0 + Duration::from_millis(3834))
    );
    // A trailers-only UNAVAILABLE is not a rate-limit refusal: the rate recovers.
    tokio::time::advance(Duration::from_secs(1)).await;
    let unavailable = headers(&[("grpc-status", "14"), ("grpc-retry-pushback-ms", "500")]);
    rates.observe("e", StatusCode::OK, &unavailable);
    assert_eq!(rates.rate("e"), Some(3.0));
}
