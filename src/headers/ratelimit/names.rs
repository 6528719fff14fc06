//! The header fields the rate-limit reading looks at, and [`Fields`]: one pass over a
//! response's headers that finds them all (no lookup per name; a response without any of
//! them skips the reading).

use http::header::{HeaderName, HeaderValue};
use http::HeaderMap;

use crate::headers::parse::{GRPC_RETRY_PUSHBACK_MS, RETRY_AFTER_MS, X_AMZ_RETRY_AFTER};

/// A field the reading looks at: its index in [`NAMES`].
pub(super) type Field = usize;

/// IETF `RateLimit-Policy`.
pub(super) const RATELIMIT_POLICY: Field = 0;
/// IETF `RateLimit`.
pub(super) const RATELIMIT: Field = 1;
/// IETF drafts up to 06: `RateLimit-Limit`.
pub(super) const RATELIMIT_LIMIT: Field = 2;
/// IETF drafts up to 06: `RateLimit-Remaining`.
pub(super) const RATELIMIT_REMAINING: Field = 3;
/// IETF drafts up to 06: `RateLimit-Reset`.
pub(super) const RATELIMIT_RESET: Field = 4;
/// `Retry-After` and its relatives, read by `retry_hint` (only looked at when present).
pub(super) const RETRY_FIELDS: [Field; 4] = [19, 20, 21, 22];
/// `Date`: the reference for absolute reset values.
pub(super) const DATE: Field = 23;

/// The fields of one `X-RateLimit-*` family.
pub(super) struct Family {
    pub(super) limit: Field,
    pub(super) limit_requests: Field,
    pub(super) remaining: Field,
    pub(super) remaining_requests: Field,
    pub(super) reset_after: Field,
    pub(super) reset: Field,
    pub(super) reset_requests: Field,
}

impl Family {
    /// Every field of the family.
    pub(super) fn all(&self) -> [Field; 7] {
        [
            self.limit,
            self.limit_requests,
            self.remaining,
            self.remaining_requests,
            self.reset_after,
            self.reset,
            self.reset_requests,
        ]
    }

    const fn at(first: Field) -> Family {
        Family {
            limit: first,
            limit_requests: first + 1,
            remaining: first + 2,
            remaining_requests: first + 3,
            reset_after: first + 4,
            reset: first + 5,
            reset_requests: first + 6,
        }
    }
}

/// `X-RateLimit-*` (GitHub, Discord, OpenAI).
pub(super) const X_RATELIMIT: Family = Family::at(5);
/// `X-Rate-Limit-*` (Twitter/X).
pub(super) const X_RATE_LIMIT: Family = Family::at(12);

/// Every field's name, by index.
pub(super) static NAMES: [HeaderName; 24] = [
    HeaderName::from_static("ratelimit-policy"),
    HeaderName::from_static("ratelimit"),
    HeaderName::from_static("ratelimit-limit"),
    HeaderName::from_static("ratelimit-remaining"),
    HeaderName::from_static("ratelimit-reset"),
    HeaderName::from_static("x-ratelimit-limit"),
    HeaderName::from_static("x-ratelimit-limit-requests"),
    HeaderName::from_static("x-ratelimit-remaining"),
    HeaderName::from_static("x-ratelimit-remaining-requests"),
    HeaderName::from_static("x-ratelimit-reset-after"),
    HeaderName::from_static("x-ratelimit-reset"),
    HeaderName::from_static("x-ratelimit-reset-requests"),
    HeaderName::from_static("x-rate-limit-limit"),
    HeaderName::from_static("x-rate-limit-limit-requests"),
    HeaderName::from_static("x-rate-limit-remaining"),
    HeaderName::from_static("x-rate-limit-remaining-requests"),
    HeaderName::from_static("x-rate-limit-reset-after"),
    HeaderName::from_static("x-rate-limit-reset"),
    HeaderName::from_static("x-rate-limit-reset-requests"),
    http::header::RETRY_AFTER,
    RETRY_AFTER_MS,
    X_AMZ_RETRY_AFTER,
    GRPC_RETRY_PUSHBACK_MS,
    http::header::DATE,
];

/// The field named `name`, if the reading looks at it: [`NAMES`] inverted (tested), as a
/// `match` that dispatches on the length before comparing bytes, instead of a scan
/// comparing the name with each of `NAMES` in turn.
fn classify(name: &str) -> Option<Field> {
    let (x, dx) = (&X_RATELIMIT, &X_RATE_LIMIT);
    Some(match name {
        "ratelimit-policy" => RATELIMIT_POLICY,
        "ratelimit" => RATELIMIT,
        "ratelimit-limit" => RATELIMIT_LIMIT,
        "ratelimit-remaining" => RATELIMIT_REMAINING,
        "ratelimit-reset" => RATELIMIT_RESET,
        "x-ratelimit-limit" => x.limit,
        "x-ratelimit-limit-requests" => x.limit_requests,
        "x-ratelimit-remaining" => x.remaining,
        "x-ratelimit-remaining-requests" => x.remaining_requests,
        "x-ratelimit-reset-after" => x.reset_after,
        "x-ratelimit-reset" => x.reset,
        "x-ratelimit-reset-requests" => x.reset_requests,
        "x-rate-limit-limit" => dx.limit,
        "x-rate-limit-limit-requests" => dx.limit_requests,
        "x-rate-limit-remaining" => dx.remaining,
        "x-rate-limit-remaining-requests" => dx.remaining_requests,
        "x-rate-limit-reset-after" => dx.reset_after,
        "x-rate-limit-reset" => dx.reset,
        "x-rate-limit-reset-requests" => dx.reset_requests,
        "retry-after" => RETRY_FIELDS[0],
        "retry-after-ms" => RETRY_FIELDS[1],
        "x-amz-retry-after" => RETRY_FIELDS[2],
        "grpc-retry-pushback-ms" => RETRY_FIELDS[3],
        "date" => DATE,
        _ => return None,
    })
}

/// The fields of one response the reading looks at, found in one pass: each field's
/// first line, and which fields have more than one line (read through the map then).
pub(super) struct Fields<'a> {
    headers: &'a HeaderMap,
    first: [Option<&'a HeaderValue>; NAMES.len()],
    /// Bit `i`: field `i` is present.
    present: u32,
    /// Bit `i`: field `i` has more than one line.
    multi: u32,
}

/// The lines of one field: its only line without going through the map, else the map's.
pub(super) enum Lines<'a> {
    One(Option<&'a HeaderValue>),
    Many(http::header::ValueIter<'a, HeaderValue>),
}

impl<'a> Iterator for Lines<'a> {
    type Item = &'a HeaderValue;

    fn next(&mut self) -> Option<&'a HeaderValue> {
        match self {
            Lines::One(line) => line.take(),
            Lines::Many(lines) => lines.next(),
        }
    }
}

impl<'a> Fields<'a> {
    pub(super) fn read(headers: &'a HeaderMap) -> Fields<'a> {
        let mut fields = Fields {
            headers,
            first: [None; NAMES.len()],
            present: 0,
            multi: 0,
        };
        for (name, value) in headers {
            let Some(i) = classify(name.as_str()) else {
                continue;
            };
            match fields.first[i] {
                None => fields.first[i] = Some(value),
                Some(_) => fields.multi |= 1 << i,
            }
            fields.present |= 1 << i;
        }
        fields
    }

    /// Whether the response has any field but `Date`: without one, every dialect reads as
    /// empty and nothing is malformed.
    pub(super) fn is_empty(&self) -> bool {
        self.present & !(1 << DATE) == 0
    }

    pub(super) fn has(&self, field: Field) -> bool {
        self.present & (1 << field) != 0
    }

    /// Every line of `field`, in order.
    pub(super) fn lines(&self, field: Field) -> Lines<'a> {
        if self.multi & (1 << field) != 0 {
            Lines::Many(self.headers.get_all(&NAMES[field]).iter())
        } else {
            Lines::One(self.first[field])
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_field_is_found_by_its_name_only() {
        assert!(NAMES.len() <= 32, "the multi-line mask has 32 bits");
        let fields = [
            RATELIMIT_POLICY,
            RATELIMIT,
            RATELIMIT_LIMIT,
            RATELIMIT_REMAINING,
        ];
        assert_eq!(fields, [0, 1, 2, 3]);
        assert_eq!(NAMES[RATELIMIT_RESET], "ratelimit-reset");
        assert_eq!(
            NAMES[X_RATELIMIT.reset_requests],
            "x-ratelimit-reset-requests"
        );
        assert_eq!(NAMES[X_RATE_LIMIT.limit], "x-rate-limit-limit");
        assert_eq!(
            NAMES[X_RATE_LIMIT.reset_requests],
            "x-rate-limit-reset-requests"
        );
        let retry = RETRY_FIELDS.map(|f| NAMES[f].as_str());
        assert_eq!(
            retry,
            [
                "retry-after",
                "retry-after-ms",
                "x-amz-retry-after",
                "grpc-retry-pushback-ms"
            ]
        );
        assert_eq!(NAMES[DATE], "date");
        for (i, name) in NAMES.iter().enumerate() {
            assert_eq!(classify(name.as_str()), Some(i), "{name}");
        }
        for other in [
            "x-ratelimit",
            "ratelimit-policies",
            "content-type",
            "",
            "Date",
        ] {
            assert_eq!(classify(other), None, "{other}");
        }
        for (i, name) in NAMES.iter().enumerate() {
            let mut headers = HeaderMap::new();
            headers.insert(http::header::CONTENT_TYPE, HeaderValue::from_static("x"));
            headers.insert("x-ratelimit", HeaderValue::from_static("x"));
            assert!(Fields::read(&headers).is_empty());
            headers.insert(name.clone(), HeaderValue::from_static("1"));
            headers.append(name.clone(), HeaderValue::from_static("2"));
            let fields = Fields::read(&headers);
            assert_eq!(fields.is_empty(), i == DATE, "{name}");
            let lines: Vec<_> = fields.lines(i).collect();
            assert_eq!(lines, ["1", "2"], "{name}");
            assert!((0..NAMES.len()).all(|f| fields.has(f) == (f == i)));
        }
    }
}
