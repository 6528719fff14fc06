//! `Deserialize` (and, for the short forms, `Serialize`) of the values a config file
//! writes as strings: quotas, routes, missing-key policies, durations, header names, CIDRs
//! and the layer's enumerations.

use std::fmt;
use std::marker::PhantomData;
use std::str::FromStr;
use std::time::Duration;

use serde::de::{self, Deserializer, Visitor};
use serde::{Deserialize, Serialize, Serializer};

use crate::engine::quota::parse_duration;
use crate::headers::HeaderDialects;
use crate::rules::key::{IpNet, ProxyHeader};
use crate::{MissingKey, PathMatching, Quota, Route, StoreFailure};

/// Deserializes a string through `FromStr`, its error as the message.
struct ViaStr<T>(&'static str, PhantomData<T>);

impl<T> Visitor<'_> for ViaStr<T>
where
    T: FromStr,
    T::Err: fmt::Display,
{
    type Value = T;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0)
    }
    fn visit_str<E: de::Error>(self, s: &str) -> Result<T, E> {
        s.parse().map_err(E::custom)
    }
}

fn via_str<'de, D, T>(d: D, expecting: &'static str) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: FromStr,
    T::Err: fmt::Display,
{
    d.deserialize_str(ViaStr(expecting, PhantomData))
}

macro_rules! short_form {
    ($ty:ty, $expecting:literal) => {
        #[cfg_attr(docsrs, doc(cfg(feature = "serde")))]
        impl<'de> Deserialize<'de> for $ty {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                via_str(d, $expecting)
            }
        }

        #[cfg_attr(docsrs, doc(cfg(feature = "serde")))]
        impl Serialize for $ty {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.collect_str(self)
            }
        }
    };
}

short_form!(
    Quota,
    "a quota such as \"5/10s\", \"25/h\" or \"20/10s burst 40\""
);
short_form!(
    Route,
    "a route such as \"POST /v1/sign_ins\" or \"* /v1/{*rest}\""
);
short_form!(MissingKey, "one of \"shared\", \"skip\", \"reject\"");

/// A duration written with its unit: `"250ms"`, `"30s"`, `"1h"`.
pub(crate) fn duration<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    struct V;
    impl Visitor<'_> for V {
        type Value = Duration;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a duration with its unit, such as \"250ms\", \"30s\", \"1h\"")
        }
        fn visit_str<E: de::Error>(self, s: &str) -> Result<Duration, E> {
            parse_duration(s).map_err(|why| E::custom(format!("duration {s:?}: {why}")))
        }
    }
    d.deserialize_str(V)
}

/// An optional duration written with its unit.
pub(crate) fn opt_duration<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
    duration(d).map(Some)
}

/// A request header name, such as `x-api-key`.
pub(crate) fn header_name<'de, D: Deserializer<'de>>(d: D) -> Result<http::HeaderName, D::Error> {
    via_str(d, "a header name such as \"x-api-key\"")
}

/// A list of CIDR networks, such as `["10.0.0.0/8", "2001:db8::/32"]`.
pub(crate) fn nets<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<IpNet>, D::Error> {
    struct Net(IpNet);
    impl<'de> Deserialize<'de> for Net {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            via_str(d, "a network such as \"10.0.0.0/8\"").map(Net)
        }
    }
    Ok(Vec::<Net>::deserialize(d)?
        .into_iter()
        .map(|n| n.0)
        .collect())
}

/// Forwarding headers: `"x-forwarded-for"`, `"forwarded"`, `"x-real-ip"`.
pub(crate) fn proxy_headers<'de, D: Deserializer<'de>>(
    d: D,
) -> Result<Option<Vec<ProxyHeader>>, D::Error> {
    #[derive(Deserialize)]
    #[serde(rename_all = "kebab-case")]
    enum H {
        XForwardedFor,
        Forwarded,
        XRealIp,
    }
    let list = Vec::<H>::deserialize(d)?;
    Ok(Some(
        list.into_iter()
            .map(|h| match h {
                H::XForwardedFor => ProxyHeader::XForwardedFor,
                H::Forwarded => ProxyHeader::Forwarded,
                H::XRealIp => ProxyHeader::XRealIp,
            })
            .collect(),
    ))
}

/// Header dialects: a list of `"legacy"` and `"ietf"` (empty: no rate-limit headers).
pub(crate) fn dialects<'de, D: Deserializer<'de>>(d: D) -> Result<HeaderDialects, D::Error> {
    #[derive(Deserialize, PartialEq)]
    #[serde(rename_all = "snake_case")]
    enum Dialect {
        Legacy,
        Ietf,
    }
    let list = Vec::<Dialect>::deserialize(d)?;
    Ok(HeaderDialects::NONE
        .legacy(list.contains(&Dialect::Legacy))
        .ietf(list.contains(&Dialect::Ietf)))
}

/// `"canonical"`, `"canonical_ignore_case"` or (feature `axum`) `"axum_matched_path"`.
pub(crate) fn path_matching<'de, D: Deserializer<'de>>(d: D) -> Result<PathMatching, D::Error> {
    #[derive(Deserialize)]
    #[serde(rename_all = "snake_case")]
    enum M {
        Canonical,
        CanonicalIgnoreCase,
        AxumMatchedPath,
    }
    match M::deserialize(d)? {
        M::Canonical => Ok(PathMatching::Canonical),
        M::CanonicalIgnoreCase => Ok(PathMatching::CanonicalIgnoreCase),
        #[cfg(feature = "axum")]
        M::AxumMatchedPath => Ok(PathMatching::AxumMatchedPath),
        #[cfg(not(feature = "axum"))]
        M::AxumMatchedPath => Err(de::Error::custom(
            "axum_matched_path needs tower-throttle's `axum` feature",
        )),
    }
}

/// `"admit"` or `"reject"`.
pub(crate) fn store_failure<'de, D: Deserializer<'de>>(d: D) -> Result<StoreFailure, D::Error> {
    #[derive(Deserialize)]
    #[serde(rename_all = "snake_case")]
    enum F {
        Admit,
        Reject,
    }
    Ok(match F::deserialize(d)? {
        F::Admit => StoreFailure::Admit,
        F::Reject => StoreFailure::Reject,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_forms_serialize_as_written() {
        let q: Quota = "20/10s burst 40".parse().unwrap();
        assert_eq!(serde_json::to_string(&q).unwrap(), r#""20/10s burst 40""#);
        let r = Route::post("/v1/sign_ins");
        assert_eq!(serde_json::to_string(&r).unwrap(), r#""POST /v1/sign_ins""#);
        assert_eq!(
            serde_json::from_str::<Route>(r#""POST /v1/sign_ins""#).unwrap(),
            r
        );
        assert_eq!(
            serde_json::from_str::<Quota>(r#""20/10s burst 40""#).unwrap(),
            q
        );
        assert_eq!(
            serde_json::to_string(&MissingKey::Skip).unwrap(),
            r#""skip""#
        );
        let bad = serde_json::from_str::<Quota>(r#""5/10""#).unwrap_err();
        assert!(
            bad.to_string()
                .starts_with("quota period: a duration needs a unit"),
            "{bad}"
        );
    }
}
