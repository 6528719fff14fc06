//! [`Rng`]: the small seeded random source behind every jitter (backoff schedules, gate
//! release spreading).

use std::time::Duration;

const NANOS_PER_SEC: u128 = 1_000_000_000;

/// Converts a nanosecond count to a [`Duration`], saturating at [`Duration::MAX`].
pub(crate) fn duration_from_nanos(nanos: u128) -> Duration {
    let secs = nanos / NANOS_PER_SEC;
    // `nanos % NANOS_PER_SEC` is below one billion, so it always fits a `u32`.
    let sub = u32::try_from(nanos % NANOS_PER_SEC).unwrap_or(0);
    u64::try_from(secs).map_or(Duration::MAX, |secs| Duration::new(secs, sub))
}

/// A small, fast, seeded pseudo-random generator (SplitMix64).
///
/// Not cryptographically secure; meant only for spreading retries apart. The same seed
/// always yields the same sequence.
#[derive(Debug, Clone)]
pub(crate) struct Rng {
    state: u64,
}

impl Rng {
    /// A generator whose sequence is fully determined by `seed`.
    pub(crate) fn seeded(seed: u64) -> Rng {
        Rng { state: seed }
    }

    /// A generator seeded from the process's hash randomness, the wall clock and a
    /// per-process counter, so two generators created at once still differ.
    pub(crate) fn from_entropy() -> Rng {
        use std::collections::hash_map::RandomState;
        use std::hash::{BuildHasher, Hasher};
        use std::sync::atomic::{AtomicU64, Ordering};
        use std::time::{SystemTime, UNIX_EPOCH};

        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let mut hasher = RandomState::new().build_hasher();
        let wall = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        hasher.write_u128(wall);
        hasher.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
        Rng::seeded(hasher.finish())
    }

    /// The next 64 random bits.
    pub(crate) fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A uniform integer in `[0, n]` (mask-and-reject, so there is no modulo bias).
    fn up_to(&mut self, n: u128) -> u128 {
        if n == 0 {
            return 0;
        }
        let mask = u128::MAX >> n.leading_zeros();
        loop {
            let bits = if n <= u128::from(u64::MAX) {
                u128::from(self.next_u64())
            } else {
                (u128::from(self.next_u64()) << 64) | u128::from(self.next_u64())
            };
            // Each draw is accepted with probability above 1/2.
            let candidate = bits & mask;
            if candidate <= n {
                return candidate;
            }
        }
    }

    /// A duration drawn uniformly from `[0, max]` (both ends included), in whole
    /// nanoseconds.
    pub(crate) fn duration_up_to(&mut self, max: Duration) -> Duration {
        duration_from_nanos(self.up_to(max.as_nanos()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(n: u64) -> Duration {
        Duration::from_secs(n)
    }

    #[test]
    fn splitmix64_reference_vector() {
        let mut rng = Rng::seeded(1_234_567);
        assert_eq!(rng.next_u64(), 6_457_827_717_110_365_317);
        assert_eq!(rng.next_u64(), 3_203_168_211_198_807_973);
        assert_eq!(rng.next_u64(), 9_817_491_932_198_370_423);
        assert_eq!(rng.next_u64(), 4_593_380_528_125_082_431);
        assert_eq!(rng.next_u64(), 16_408_922_859_458_223_821);
    }

    #[test]
    fn duration_up_to_is_inclusive_and_bounded() {
        let mut rng = Rng::seeded(7);
        assert_eq!(rng.duration_up_to(Duration::ZERO), Duration::ZERO);
        let mut seen = [false; 4];
        for _ in 0..1000 {
            let d = rng.duration_up_to(Duration::from_nanos(3));
            let slot = usize::try_from(d.as_nanos()).unwrap();
            seen[slot] = true;
        }
        assert_eq!(seen, [true; 4]);
        for _ in 0..1000 {
            assert!(rng.duration_up_to(secs(5)) <= secs(5));
            let _ = rng.duration_up_to(Duration::MAX);
        }
    }

    #[test]
    fn from_entropy_generators_differ() {
        let mut a = Rng::from_entropy();
        let mut b = Rng::from_entropy();
        assert_ne!((a.next_u64(), a.next_u64()), (b.next_u64(), b.next_u64()));
    }
}
