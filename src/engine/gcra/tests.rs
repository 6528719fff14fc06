use super::*;

/// [`super::decide`] at a timestamp in nanoseconds.
fn decide(now: u64, checks: &[Check], tats: &mut [u64]) -> (Decision, u64) {
    super::decide(Timestamp::from_nanos(now), checks, tats)
}

const S: u64 = 1_000_000_000;

fn check(key: u64, count: u32, secs: u64, burst: u32, block_secs: u64) -> Check {
    let q = Quota::new(count, Duration::from_secs(secs))
        .unwrap()
        .with_burst(burst)
        .unwrap();
    Check {
        key,
        params: GcraParams::new(&q, Duration::from_secs(block_secs)),
        shadow: false,
        rule: 0,
    }
}

#[test]
fn five_per_ten_seconds() {
    let c = [check(1, 5, 10, 5, 0)];
    let mut tat = [0u64];
    for i in 0..5 {
        let (d, changed) = decide(0, &c, &mut tat);
        assert!(d.admitted, "request {i}");
        assert_eq!(changed, 1);
        assert_eq!(d.headline.remaining, 4 - i);
    }
    let (d, changed) = decide(0, &c, &mut tat);
    assert!(!d.admitted);
    assert_eq!(changed, 0);
    assert_eq!(d.denied_mask, 1);
    assert_eq!(d.retry_after, Duration::from_secs(2));
    assert_eq!(d.headline.reset_after, Duration::from_secs(10));
    assert_eq!(tat[0], 10 * S);
    assert!(is_idle(tat[0], 10 * S) && !is_idle(tat[0], 10 * S - 1));
    // One nanosecond early is still refused; exactly on time is admitted.
    assert!(!decide(2 * S - 1, &c, &mut tat).0.admitted);
    assert!(decide(2 * S, &c, &mut tat).0.admitted);
}

#[test]
fn refused_request_consumes_nothing_anywhere() {
    // Instance limit 100/10 s, plus an hourly endpoint limit of 1.
    let c = [check(1, 100, 10, 100, 0), check(2, 1, 3600, 1, 0)];
    let mut tats = [0u64, 0];
    assert!(decide(0, &c, &mut tats).0.admitted);
    let before = tats;
    let (d, changed) = decide(0, &c, &mut tats);
    assert!(!d.admitted);
    assert_eq!(d.denied_mask, 0b10);
    assert_eq!(changed, 0);
    assert_eq!(tats, before);
    assert_eq!(d.retry_after, Duration::from_secs(3600));
    assert_eq!(d.headline.index, 1);
}

#[test]
fn block_period_extends_refusal() {
    let c = [check(1, 1, 1, 1, 60)];
    let mut tat = [0u64];
    assert!(decide(0, &c, &mut tat).0.admitted);
    let (d, changed) = decide(0, &c, &mut tat);
    assert!(!d.admitted);
    assert_eq!(changed, 1);
    assert_eq!(d.retry_after, Duration::from_secs(60));
    let (d, changed) = decide(60 * S - 1, &c, &mut tat);
    assert!(!d.admitted);
    assert_eq!(changed, 0, "a refusal during the block does not extend it");
    assert_eq!(d.retry_after, Duration::from_nanos(1));
    assert!(decide(60 * S, &c, &mut tat).0.admitted);
    assert_eq!(tat[0] & BLOCKED, 0, "admission clears the block");
    // The next refusal starts a new block.
    let (d, _) = decide(60 * S, &c, &mut tat);
    assert_eq!(d.retry_after, Duration::from_secs(60));
    assert!(!is_idle(tat[0], 120 * S - 1));
    assert!(is_idle(tat[0], 120 * S));
}

#[test]
fn shadow_refusal_admits_and_is_reported() {
    let mut c = [check(1, 10, 10, 10, 0), check(2, 1, 10, 1, 0)];
    c[1].shadow = true;
    let mut tats = [0u64, 0];
    assert!(decide(0, &c, &mut tats).0.admitted);
    let (d, changed) = decide(0, &c, &mut tats);
    assert!(d.admitted);
    assert_eq!(d.denied_mask, 0b10);
    assert_eq!(changed, 0b01);
    assert_eq!(d.headline.index, 1);
    assert_eq!(d.headline.remaining, 0);
}

#[test]
fn admitted_headline_is_most_restrictive() {
    let c = [check(1, 100, 10, 100, 0), check(2, 10, 10, 10, 0)];
    let mut tats = [0u64, 0];
    let (d, _) = decide(0, &c, &mut tats);
    assert_eq!(d.headline.index, 1);
    assert_eq!(d.headline.remaining, 9);
    assert_eq!(d.headline.reset_after, Duration::from_secs(1));
}

#[test]
fn extreme_parameters_do_not_overflow() {
    let q = Quota::new(1, Duration::from_secs(86_400)).unwrap();
    let c = [Check {
        key: 1,
        params: GcraParams::new(&q, Duration::MAX),
        shadow: false,
        rule: 0,
    }];
    assert_eq!(
        c[0].params.block_ns,
        crate::engine::quota::MAX_PERIOD.as_nanos() as u64
    );
    let now = 1 << 61;
    let mut tat = [0u64];
    assert!(decide(now, &c, &mut tat).0.admitted);
    let (d, _) = decide(now, &c, &mut tat);
    assert!(!d.admitted);
    assert_eq!(d.retry_after, crate::engine::quota::MAX_PERIOD);
    assert!(tat_of(tat[0]) < 1 << 62 && tat[0] & BLOCKED != 0);
}

#[test]
fn single_check_step_matches_decide() {
    // SplitMix64 over parameters, states, clocks and flags, plus the edges.
    let mut x = 0x1234_5678_9ABC_DEF0u64;
    let mut next = move || {
        x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = x;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    };
    for case in 0..200_000u64 {
        let interval_ns = 1 + next() % 1_000;
        let burst = 1 + next() % 8;
        let block_ns = if case % 3 == 0 { next() % 5_000 } else { 0 };
        let params = GcraParams {
            interval_ns,
            limit_ns: interval_ns * burst,
            block_ns,
        };
        let check = Check {
            key: 1,
            params,
            shadow: case % 5 == 0,
            rule: 0,
        };
        let now = next() % 10_000;
        let tat = next() % 20_000;
        let stored = if case % 4 == 0 { tat | BLOCKED } else { tat };
        let mut tats = [stored];
        let (want, changed) = decide(now, &[check], &mut tats);
        let step = Step::of(now, &check, stored);
        assert_eq!(step.new_state.is_some(), changed == 1, "case {case}");
        let after = step.new_state.unwrap_or(stored);
        assert_eq!(after, tats[0], "case {case}");
        assert_eq!(step.decision(now, &check, after), want, "case {case}");
    }
}

/// The headline rule as first written (iterators over full states), for reference.
fn reference_headline(now: u64, checks: &[Check], tats: &[u64], d: &Decision) -> LimitState {
    let states = checks
        .iter()
        .enumerate()
        .map(|(i, c)| (c, state(now, i, &c.params, tat_of(tats[i]))));
    let best = if d.admitted {
        states
            .map(|(_, s)| s)
            .min_by_key(|s| (s.remaining, std::cmp::Reverse(s.reset_after)))
    } else {
        states
            .filter(|(c, s)| !c.shadow && d.denied_mask & (1 << s.index) != 0)
            .map(|(_, s)| s)
            .max_by_key(|s| s.retry_after)
    };
    best.unwrap_or_default()
}

#[test]
fn headline_matches_the_reference_rule() {
    // Small ranges so that ties in remaining, reset and wait are frequent.
    let mut x = 0x0DDB_1A5E_5BAD_5EEDu64;
    let mut next = move |n: u64| {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x % n
    };
    for case in 0..100_000u64 {
        let n = 1 + next(5) as usize;
        let checks: Vec<Check> = (0..n)
            .map(|_| {
                let interval_ns = 1 + next(3);
                Check {
                    key: 1,
                    params: GcraParams {
                        interval_ns,
                        limit_ns: interval_ns * (1 + next(4)),
                        block_ns: 0,
                    },
                    shadow: next(4) == 0,
                    rule: 0,
                }
            })
            .collect();
        let tats: Vec<u64> = (0..n).map(|_| next(24) | (next(2) << 63)).collect();
        let now = next(12);
        let d = Decision {
            admitted: next(2) == 0,
            denied_mask: next(1 << n),
            ..Decision::default()
        };
        assert_eq!(
            headline(now, &checks, &tats, &d),
            reference_headline(now, &checks, &tats, &d),
            "case {case}: {checks:?} {tats:?} now {now} {d:?}"
        );
    }
}

#[test]
fn burst_larger_than_count() {
    let c = [check(1, 20, 10, 40, 0)];
    let mut tat = [0u64];
    for _ in 0..40 {
        assert!(decide(0, &c, &mut tat).0.admitted);
    }
    let (d, _) = decide(0, &c, &mut tat);
    assert!(!d.admitted);
    assert_eq!(d.retry_after, Duration::from_millis(500));
}
