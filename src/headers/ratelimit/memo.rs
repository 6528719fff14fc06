//! [`SfMemo`]: the last text of each Structured Field list a reader saw
//! (`RateLimit-Policy`, `RateLimit`) and its reading, so that a text repeated by later
//! responses is not parsed again.
//!
//! A field's reading ([`Ctx::policy_field`], [`Ctx::ratelimit_field`]) depends on its text
//! alone: no clock, no other field, nothing written but the malformed count. So the same
//! bytes give the same reading and the same count, and a remembered one can stand for a
//! parse (tested against fresh readings of generated sequences).
//!
//! A remembered reading is copied into vectors the memo was given back (a replaced
//! snapshot's, see [`SfMemo::recycle`]): when they already hold the same items, as they do
//! while a server repeats itself, they are used as they are, so the copy allocates
//! nothing; otherwise they are overwritten. Either way the copy is the reading (tested).

use super::{Ctx, Field, RateLimitInfo, RateLimitPolicy, RateLimitState};

/// What a `RateLimit-Policy` text reads as: named (draft-11) and Integer policies.
pub(super) type PolicyReading = (Vec<RateLimitPolicy>, Vec<RateLimitPolicy>);
/// What a `RateLimit` text reads as: draft-11 states, or a draft-07 reading.
pub(super) type StateReading = (Vec<RateLimitState>, RateLimitInfo);

/// Longest text remembered: a longer one is read without the memo (the memo keeps no
/// more than this much of a server's bytes).
const MAX_TEXT: usize = 1024;

/// One field's last text, and its reading with the malformed count it added, once the
/// text was seen twice in a row: a text that changes with every response (a `RateLimit`
/// counting down) costs a byte copy, never a copy of its reading.
pub(super) struct Slot<T> {
    text: Vec<u8>,
    reading: Option<(T, u32)>,
}

impl<T> Default for Slot<T> {
    fn default() -> Self {
        Slot {
            text: Vec::new(),
            reading: None,
        }
    }
}

/// The remembered `RateLimit-Policy` and `RateLimit` texts of one reader (e.g. a header
/// monitor), whatever endpoint they came from: a reading depends on the text only.
#[derive(Default)]
pub(crate) struct SfMemo {
    policy: Slot<PolicyReading>,
    ratelimit: Slot<StateReading>,
    spare: Spare,
}

/// Vectors given back for the next copies of remembered readings.
#[derive(Default)]
pub(super) struct Spare {
    policies: Vec<RateLimitPolicy>,
    states: Vec<RateLimitState>,
}

impl SfMemo {
    pub(super) fn policy(&mut self) -> (&mut Slot<PolicyReading>, &mut Spare) {
        (&mut self.policy, &mut self.spare)
    }

    pub(super) fn ratelimit(&mut self) -> (&mut Slot<StateReading>, &mut Spare) {
        (&mut self.ratelimit, &mut self.spare)
    }

    /// Keeps `policies` and `states` (e.g. of a replaced snapshot) as the storage of the
    /// next copies of remembered readings; their contents do not matter.
    #[inline]
    pub(crate) fn recycle(&mut self, policies: Vec<RateLimitPolicy>, states: Vec<RateLimitState>) {
        self.spare = Spare { policies, states };
    }
}

/// A reading that can be copied into spare storage.
pub(super) trait Reading: Clone {
    /// `self.clone()`, built in the spare vectors where there are some.
    fn copy_into(&self, spare: &mut Spare) -> Self;
}

impl Reading for PolicyReading {
    fn copy_into(&self, spare: &mut Spare) -> Self {
        (copy(&self.0, &mut spare.policies), self.1.clone())
    }
}

impl Reading for StateReading {
    fn copy_into(&self, spare: &mut Spare) -> Self {
        (copy(&self.0, &mut spare.states), self.1.clone())
    }
}

/// `items.to_vec()`, in `spare`'s storage (taken; usually equal already: then kept as it
/// is, comparing being cheaper than copying).
fn copy<T: Clone + PartialEq>(items: &[T], spare: &mut Vec<T>) -> Vec<T> {
    let mut out = std::mem::take(spare);
    if out != items {
        items.clone_into(&mut out);
    }
    out
}

impl Ctx<'_> {
    /// The reading of SF `field` by `read` (`None` when the field is absent), taken from
    /// `slot` when it remembers the same text.
    pub(super) fn sf_field<T: Reading>(
        &mut self,
        field: Field,
        memo: Option<(&mut Slot<T>, &mut Spare)>,
        read: fn(&mut Self, &[u8]) -> T,
    ) -> Option<T> {
        let text = self.sf_input(field)?;
        let Some((slot, spare)) = memo.filter(|_| text.len() <= MAX_TEXT) else {
            return Some(read(self, &text));
        };
        if slot.text != *text {
            slot.text.clear();
            slot.text.extend_from_slice(&text);
            slot.reading = None;
            return Some(read(self, &text));
        }
        if let Some((reading, bad)) = &slot.reading {
            self.malformed = self.malformed.saturating_add(*bad);
            return Some(reading.copy_into(spare));
        }
        // Counted apart, then added: the same total as counting in place (saturating).
        let before = std::mem::take(&mut self.malformed);
        let reading = read(self, &text);
        let bad = self.malformed;
        self.malformed = before.saturating_add(bad);
        slot.reading = Some((reading.clone(), bad));
        Some(reading)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;
    use std::time::{Duration, SystemTime, UNIX_EPOCH};

    use http::{HeaderMap, HeaderValue};

    use super::super::{parse_rate_limit, parse_rate_limit_at, DEFAULT_RESET_CAP};
    use super::*;

    /// Texts of every kind: draft-11 lists (valid, contradictory, missing members,
    /// duplicates, byte sequences, decimals), Integer policies, draft-07 dictionaries,
    /// inner lists, broken lists, empty.
    const TEXTS: &[&str] = &[
        r#""default";q=100;w=60"#,
        r#""default";r=57;t=23"#,
        r#""default";r=0;t=23"#,
        r#""default";r=101"#,
        r#""a";q=10, "b";q=20;w=1.5;pk=:AQ==:"#,
        r#""a";r=1;r=7;t=3, "b";r=2"#,
        r#"tok;q=5;q=6, 7;w=1"#,
        "100, 100;w=60",
        "100;w=60",
        "limit=100, remaining=57, reset=23",
        "limit=10, remaining=11",
        "remaining=(1 2)",
        "(1 2);q=4, \"a\";q=1",
        r#""a";q=-1;w=x;pk=1"#,
        r#""a";t=5"#,
        "a;q=1,",
        "\"unterminated",
        "",
        "   ",
        "?1",
        "@1",
    ];

    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }

        fn below(&mut self, n: usize) -> usize {
            (self.next() % n as u64) as usize
        }
    }

    /// A text from the table, a random string over SF characters (mostly malformed), or
    /// one too long to remember.
    fn text(rng: &mut Rng) -> Vec<u8> {
        const ALPHABET: &[u8] = b"abqrtwpk=;,() 0123456789:*?.-\"";
        match rng.below(10) {
            0..=6 => TEXTS[rng.below(TEXTS.len())].as_bytes().to_vec(),
            7 | 8 => (0..rng.below(24))
                .map(|_| ALPHABET[rng.below(ALPHABET.len())])
                .collect(),
            _ => {
                let item = r#""p";q=1;w=1"#;
                let mut long = vec![item; MAX_TEXT / item.len() + 1].join(", ");
                long.push_str(if rng.below(2) == 0 { "" } else { "," });
                long.into_bytes()
            }
        }
    }

    /// One response: each SF field absent, one line or two lines; sometimes other
    /// rate-limit fields beside them.
    fn response(rng: &mut Rng, pool: &[Vec<u8>]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for name in ["ratelimit-policy", "ratelimit"] {
            for _ in 0..rng.below(4).saturating_sub(1) {
                let bytes = &pool[rng.below(pool.len())];
                if let Ok(value) = HeaderValue::from_bytes(bytes) {
                    headers.append(name, value);
                }
            }
        }
        if rng.below(3) == 0 {
            headers.insert("x-ratelimit-limit", HeaderValue::from_static("100"));
            headers.insert("x-ratelimit-remaining", HeaderValue::from_static("5"));
        }
        if rng.below(4) == 0 {
            headers.insert("ratelimit-remaining", HeaderValue::from_static("3"));
        }
        headers
    }

    /// Readings with a memo equal fresh readings, response after response, whatever came
    /// before (small pools make repeats, so remembered readings are used).
    #[test]
    fn remembered_readings_equal_fresh_ones() {
        let now = UNIX_EPOCH + Duration::from_secs(1_666_132_000);
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        let mut used = 0;
        for _ in 0..300 {
            let pool: Vec<Vec<u8>> = (0..1 + rng.below(3)).map(|_| text(&mut rng)).collect();
            let memo = Mutex::new(SfMemo::default());
            for _ in 0..20 {
                let headers = response(&mut rng, &pool);
                let fresh = parse_rate_limit(&headers, now);
                let remembered =
                    parse_rate_limit_at(&headers, || now, Some(&memo), DEFAULT_RESET_CAP);
                let remembered = remembered.map(|(info, _)| info).unwrap_or_default();
                assert_eq!(remembered, fresh, "{headers:?}");
                // As the monitor does with a replaced snapshot (any reading's vectors).
                if rng.below(4) != 0 {
                    let old = parse_rate_limit(&response(&mut rng, &pool), now);
                    let old = if rng.below(2) == 0 { old } else { remembered };
                    memo.lock().unwrap().recycle(old.policies, old.states);
                }
                // `is_empty` (field by field) is the comparison with the default reading.
                let default = RateLimitInfo {
                    malformed: fresh.malformed,
                    ..RateLimitInfo::default()
                };
                assert_eq!(fresh.is_empty(), fresh == default, "{headers:?}");
                let memo = memo.lock().unwrap();
                used += usize::from(memo.policy.reading.is_some());
                used += usize::from(memo.ratelimit.reading.is_some());
            }
        }
        assert!(used > 1_000, "remembered readings were used {used} times");
    }

    /// A copy into spare storage of any shape (empty, shorter, longer, equal, different
    /// names) is the items, and takes the storage.
    #[test]
    fn a_copy_into_spare_storage_is_the_items() {
        let name = |n: usize| (n > 0).then(|| "x".repeat(n * 3));
        let policies: Vec<RateLimitPolicy> = (0..4)
            .map(|n| RateLimitPolicy {
                name: name(n),
                quota: n as u64,
                window: (n > 1).then(|| Duration::from_secs(n as u64)),
                partition_key: (n % 2 == 1).then(|| vec![7; n]),
            })
            .collect();
        for (a, b) in (0..=4).flat_map(|a| (0..=4).map(move |b| (a, b))) {
            for reversed in [false, true] {
                let mut spare = policies[..a].to_vec();
                if reversed {
                    spare.reverse();
                }
                assert_eq!(copy(&policies[..b], &mut spare), policies[..b]);
                assert!(spare.is_empty() && spare.capacity() == 0);
            }
        }
    }

    #[test]
    fn a_text_is_remembered_when_seen_twice_in_a_row() {
        let mut headers = HeaderMap::new();
        headers.insert("ratelimit", HeaderValue::from_static(r#""a";r=1"#));
        let memo = Mutex::new(SfMemo::default());
        let read = |h: &HeaderMap| {
            parse_rate_limit_at(h, SystemTime::now, Some(&memo), DEFAULT_RESET_CAP)
                .map(|(info, _)| info)
        };
        read(&headers);
        read(&headers);
        read(&headers);
        {
            let memo = memo.lock().unwrap();
            assert!(memo.ratelimit.reading.is_some() && memo.policy.reading.is_none());
        }
        headers.insert("ratelimit", HeaderValue::from_static(r#""a";r=0"#));
        assert_eq!(read(&headers).and_then(|info| info.remaining), Some(0));
        let memo = memo.lock().unwrap();
        assert!(memo.ratelimit.reading.is_none());
        assert_eq!(memo.ratelimit.text, br#""a";r=0"#);
    }
}
