//! RFC 9651 Lists read with `sfv`'s visitors: each item's name (or other bare item) and
//! the wanted parameters, without building the generic `List` (no map or string per
//! parameter, no copy of parameters nobody reads).

use std::convert::Infallible;
use std::time::Duration;

use sfv::visitor::{
    EntryVisitor, Ignored, InnerListVisitor, ItemVisitor, ListVisitor, ParameterVisitor,
};
use sfv::{BareItem, BareItemFromInput, KeyRef, Parser};

/// One list member as read. An inner list (never a valid member here) comes as an empty
/// item: no name, no bare item, no parameters.
#[derive(Debug, Default)]
pub(super) struct SfItem {
    /// The bare item when it is a String or a Token (a draft-11 policy name).
    pub(super) name: Option<String>,
    /// Any other bare item.
    pub(super) bare: Option<BareItem>,
    /// The last value of each wanted parameter, in the order of the keys asked for (a
    /// later duplicate parameter wins, as RFC 9651 §4.2.3.2 says).
    pub(super) params: [Option<BareItem>; 3],
}

/// Parses `input` as a List, handing every member to `each` as it is read; `false` when
/// it is not a valid List (members already handed over must then be dropped: validity is
/// known only at the end).
pub(super) fn parse_list(input: &[u8], keys: [&str; 3], mut each: impl FnMut(SfItem)) -> bool {
    let visitor = Members {
        keys: &keys,
        each: &mut each,
    };
    Parser::new(input).parse_list_with_visitor(visitor).is_ok()
}

struct Members<'v, F> {
    keys: &'v [&'v str; 3],
    each: &'v mut F,
}

impl<'de, F: FnMut(SfItem)> ListVisitor<'de> for Members<'_, F> {
    type Out = ();
    type Error = Infallible;

    fn entry(&mut self) -> Result<impl EntryVisitor<'de>, Infallible> {
        Ok(Members {
            keys: self.keys,
            each: &mut *self.each,
        })
    }

    fn finish(self) -> Result<(), Infallible> {
        Ok(())
    }
}

impl<'de, F: FnMut(SfItem)> EntryVisitor<'de> for Members<'_, F> {
    type Error = Infallible;

    fn item(self) -> Result<impl ItemVisitor<'de>, Infallible> {
        Ok(self)
    }

    fn inner_list(self) -> Result<impl InnerListVisitor<'de>, Infallible> {
        (self.each)(SfItem::default());
        Ok(Ignored)
    }
}

impl<'de, F: FnMut(SfItem)> ItemVisitor<'de> for Members<'_, F> {
    type Out = ();
    type Error = Infallible;

    fn bare_item(
        self,
        bare: BareItemFromInput<'de>,
    ) -> Result<impl ParameterVisitor<'de, Out = ()>, Infallible> {
        let name = match &bare {
            BareItemFromInput::String(s) => Some(s.as_str().to_owned()),
            BareItemFromInput::Token(t) => Some(t.as_str().to_owned()),
            _ => None,
        };
        let bare = name.is_none().then(|| BareItem::from(bare));
        let item = SfItem {
            name,
            bare,
            ..SfItem::default()
        };
        Ok(Params { member: self, item })
    }
}

struct Params<'v, F> {
    member: Members<'v, F>,
    item: SfItem,
}

impl<'de, F: FnMut(SfItem)> ParameterVisitor<'de> for Params<'_, F> {
    type Out = ();
    type Error = Infallible;

    fn parameter(
        &mut self,
        key: &'de KeyRef,
        value: BareItemFromInput<'de>,
    ) -> Result<(), Infallible> {
        let wanted = self.member.keys.iter().position(|k| *k == key.as_str());
        if let Some(slot) = wanted.and_then(|i| self.item.params.get_mut(i)) {
            *slot = Some(BareItem::from(value));
        }
        Ok(())
    }

    fn finish(self) -> Result<(), Infallible> {
        (self.member.each)(self.item);
        Ok(())
    }
}

/// A non-negative SF Integer.
pub(super) fn sf_u64(item: &BareItem) -> Option<u64> {
    u64::try_from(item.as_integer()?).ok()
}

/// Non-negative SF Integer (or Decimal) seconds.
pub(super) fn sf_secs(item: &BareItem) -> Option<Duration> {
    match item {
        BareItem::Decimal(d) => u64::try_from(d.as_integer_scaled_1000())
            .ok()
            .map(Duration::from_millis),
        _ => sf_u64(item).map(Duration::from_secs),
    }
}

/// An SF Byte Sequence (`pk`).
pub(super) fn sf_bytes(item: &BareItem) -> Option<Vec<u8>> {
    item.as_byte_sequence().map(<[u8]>::to_vec)
}

/// An optional value read by `f`; one more in `bad` when present but not understood.
pub(super) fn opt<T>(
    bad: &mut u32,
    value: Option<&BareItem>,
    f: fn(&BareItem) -> Option<T>,
) -> Option<T> {
    let parsed = f(value?);
    if parsed.is_none() {
        *bad += 1;
    }
    parsed
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(input: &str) -> Option<Vec<SfItem>> {
        let mut items = Vec::new();
        parse_list(input.as_bytes(), ["q", "w", "pk"], |i| items.push(i)).then_some(items)
    }

    #[test]
    fn members_names_and_last_duplicate_parameters() {
        let items = read(r#""a";q=1;w=2;q=3;x=9, tok;pk=:AQ==:, 7;w=1.5, (1 2);q=4"#).unwrap();
        assert_eq!(items.len(), 4);
        assert_eq!(items[0].name.as_deref(), Some("a"));
        assert_eq!(items[0].params[0], Some(BareItem::Integer(3.into())));
        assert_eq!(items[0].params[1], Some(BareItem::Integer(2.into())));
        assert_eq!(items[1].name.as_deref(), Some("tok"));
        assert_eq!(items[1].params[2], Some(BareItem::ByteSequence(vec![1])));
        assert_eq!(items[2].bare, Some(BareItem::Integer(7.into())));
        assert!(items[2].params[1]
            .as_ref()
            .is_some_and(|w| w.as_decimal().is_some()));
        let inner = &items[3];
        assert!(inner.name.is_none() && inner.bare.is_none());
        assert!(inner.params.iter().all(Option::is_none));
        assert!(read("a;q=1,").is_none() && read("\"unterminated").is_none());
        assert!(read("").is_some_and(|items| items.is_empty()));
    }

    /// Through `parse_rate_limit`: duplicates, several lines of one field.
    #[test]
    fn readings_with_duplicates_and_several_lines() {
        use super::super::{parse_rate_limit, Dialect, RateLimitPolicy, RateLimitState};
        use std::time::{Duration, UNIX_EPOCH};
        let read = |pairs: &[(&'static str, &'static str)]| {
            let mut headers = http::HeaderMap::new();
            for &(name, value) in pairs {
                headers.append(name, http::HeaderValue::from_static(value));
            }
            parse_rate_limit(&headers, UNIX_EPOCH + Duration::from_secs(1_666_132_000))
        };
        let policy = |name: &str, quota, window: Option<u64>| RateLimitPolicy {
            name: Some(name.to_owned()),
            quota,
            window: window.map(Duration::from_secs),
            partition_key: None,
        };
        let state = |name: &str, remaining, reset: Option<u64>| RateLimitState {
            name: Some(name.to_owned()),
            remaining,
            reset_after: reset.map(Duration::from_secs),
            partition_key: None,
        };
        let got = read(&[
            ("ratelimit-policy", r#""a";q=1;q=10;w=5;w=60"#),
            ("ratelimit", r#""a";r=1;r=7;t=3"#),
        ]);
        assert_eq!(got.policies, [policy("a", 10, Some(60))]);
        assert_eq!(got.states, [state("a", 7, Some(3))]);
        assert_eq!((got.limit, got.remaining), (Some(10), Some(7)));
        let got = read(&[
            ("ratelimit-policy", r#""a";q=10"#),
            ("ratelimit", r#""b";r=2"#),
            ("ratelimit-policy", r#""b";q=20"#),
            ("ratelimit", r#""a";r=5"#),
        ]);
        assert_eq!(got.policies, [policy("a", 10, None), policy("b", 20, None)]);
        assert_eq!(got.states, [state("b", 2, None), state("a", 5, None)]);
        assert_eq!(
            (got.limit, got.remaining, got.malformed),
            (Some(20), Some(2), 0)
        );
        // The first parsable line of a plain field; a line split inside an SF list fails.
        let got = read(&[
            ("x-ratelimit-remaining", "x"),
            ("x-ratelimit-limit", "10"),
            ("x-ratelimit-remaining", "4"),
            ("ratelimit-policy", r#""a";q=10;"#),
            ("ratelimit-policy", r#"w=1"#),
        ]);
        assert_eq!(got.dialect, Some(Dialect::XRateLimit));
        assert_eq!(
            (got.limit, got.remaining, got.malformed),
            (Some(10), Some(4), 1)
        );
    }
}
