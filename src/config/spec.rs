//! The settings a config file holds, as typed values: [`Config`](super::Config)'s parts.

use std::fmt;
use std::time::Duration;

use serde::de::{self, value::MapAccessDeserializer, Deserializer, MapAccess, Visitor};
use serde::Deserialize;

use super::de as via;
use crate::headers::HeaderDialects;
use crate::rules::key::{IpNet, ProxyHeader};
use crate::{MissingKey, PathMatching, Quota, Route, StoreFailure};

/// One rule of a config file (a `[[rule]]` table in TOML, an item of `rule:` in YAML,
/// of `"rule"` in JSON). Only `name` and `quota` are required.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct RuleConfig {
    /// The rule's name (headers, logs, counters).
    pub name: String,
    /// The quota in the short form: `"5/10s"`, `"25/h"`, `"20/10s burst 40"`.
    pub quota: Quota,
    /// The burst, if not written in `quota` (`burst = 40`).
    #[serde(default)]
    pub burst: Option<u32>,
    /// What the rule's buckets are keyed by (default `"global"`: one bucket).
    #[serde(default)]
    pub key: KeyConfig,
    /// The routes the rule covers (`"POST /v1/sign_ins"`); none: every request.
    #[serde(default)]
    pub routes: Vec<Route>,
    /// Routes carved out of the rule.
    #[serde(default)]
    pub except: Vec<Route>,
    /// Decide, count and report, never refuse.
    #[serde(default)]
    pub shadow: bool,
    /// Once refused, a key stays refused this long (`"1m"`; default none).
    #[serde(default, deserialize_with = "via::opt_duration")]
    pub block: Option<Duration>,
    /// Client mode: requests of one key in flight at once.
    #[serde(default)]
    pub concurrency: Option<u32>,
    /// `"shared"` (default), `"skip"` or `"reject"`.
    #[serde(default)]
    pub missing_key: MissingKey,
}

/// What a rule's buckets are keyed by.
///
/// Written as a string for the kinds without settings, `"global"`, `"peer_ip"` and
/// `"bearer_token"`, or as a table of one entry for the others:
///
/// | written (TOML) | key |
/// | --- | --- |
/// | `key = "peer_ip"` | [`PeerIp::new()`](crate::key::PeerIp::new) |
/// | `key = { peer_ip = { trusted_proxies = ["10.0.0.0/8"], ipv6_prefix = 56 } }` | `PeerIp` behind proxies, IPv6 by /56 |
/// | `key = "bearer_token"` | [`BearerToken`](crate::key::BearerToken) |
/// | `key = { header = "x-api-key" }` | [`Header`](crate::key::Header) |
/// | `key = { path_param = "user_id" }` | [`PathParam`](crate::key::PathParam) |
/// | `key = { composite = ["bearer_token", { path_param = "org" }] }` | [`Composite`](crate::key::Composite) |
/// | `key = "global"` (the default) | [`Global`](crate::key::Global) |
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum KeyConfig {
    /// One bucket for every request.
    #[default]
    Global,
    /// The client's address.
    PeerIp(PeerIpConfig),
    /// The bearer token of `Authorization`.
    BearerToken,
    /// A request header.
    Header(http::HeaderName),
    /// A path parameter of the rule's routes.
    PathParam(String),
    /// Several keys together.
    Composite(Vec<KeyConfig>),
}

/// The settings of a [`KeyConfig::PeerIp`] key.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct PeerIpConfig {
    /// Proxies whose forwarding headers are trusted (CIDRs).
    #[serde(default, deserialize_with = "via::nets")]
    pub trusted_proxies: Vec<IpNet>,
    /// The headers read from them: `"x-forwarded-for"` (default), `"forwarded"`,
    /// `"x-real-ip"`.
    #[serde(default, deserialize_with = "via::proxy_headers")]
    pub proxy_headers: Option<Vec<ProxyHeader>>,
    /// IPv4 clients are grouped by this prefix (default 32, at most 32).
    #[serde(default = "v4")]
    pub ipv4_prefix: u8,
    /// IPv6 clients are grouped by this prefix (default 64, at most 128).
    #[serde(default = "v6")]
    pub ipv6_prefix: u8,
}

fn v4() -> u8 {
    32
}

fn v6() -> u8 {
    64
}

impl Default for PeerIpConfig {
    fn default() -> Self {
        PeerIpConfig {
            trusted_proxies: Vec::new(),
            proxy_headers: None,
            ipv4_prefix: v4(),
            ipv6_prefix: v6(),
        }
    }
}

/// The table form of a key: exactly one entry.
#[derive(Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
enum KeyTable {
    PeerIp(PeerIpConfig),
    Header(#[serde(deserialize_with = "via::header_name")] http::HeaderName),
    PathParam(String),
    Composite(Vec<KeyConfig>),
}

impl<'de> Deserialize<'de> for KeyConfig {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = KeyConfig;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(
                    "\"global\", \"peer_ip\", \"bearer_token\", or a table of one of \
                     peer_ip, header, path_param, composite",
                )
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<KeyConfig, E> {
                match s {
                    "global" => Ok(KeyConfig::Global),
                    "peer_ip" => Ok(KeyConfig::PeerIp(PeerIpConfig::default())),
                    "bearer_token" => Ok(KeyConfig::BearerToken),
                    "header" | "path_param" | "composite" => Err(E::custom(format!(
                        "a {s} key needs its setting: {{ {s} = ... }}"
                    ))),
                    other => Err(E::unknown_variant(
                        other,
                        &[
                            "global",
                            "peer_ip",
                            "bearer_token",
                            "header",
                            "path_param",
                            "composite",
                        ],
                    )),
                }
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<KeyConfig, A::Error> {
                Ok(
                    match KeyTable::deserialize(MapAccessDeserializer::new(map))? {
                        KeyTable::PeerIp(p) => KeyConfig::PeerIp(p),
                        KeyTable::Header(h) => KeyConfig::Header(h),
                        KeyTable::PathParam(p) => KeyConfig::PathParam(p),
                        KeyTable::Composite(parts) => KeyConfig::Composite(parts),
                    },
                )
            }
        }
        d.deserialize_any(V)
    }
}

/// Where the limits live: `[store.memory]` (the default) or `[store.redis]` (feature
/// `redis`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
#[non_exhaustive]
pub enum StoreConfig {
    /// The in-memory store of this process.
    Memory(MemoryConfig),
    /// A Redis shared by several instances.
    #[cfg(feature = "redis")]
    #[cfg_attr(docsrs, doc(cfg(feature = "redis")))]
    Redis(RedisConfig),
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig::Memory(MemoryConfig::default())
    }
}

/// The settings of a [`MemoryStore`](crate::MemoryStore); each defaults to the
/// builder's.
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct MemoryConfig {
    /// [`MemoryStoreBuilder::max_keys`](crate::store::MemoryStoreBuilder::max_keys).
    pub max_keys: Option<usize>,
    /// [`MemoryStoreBuilder::shards`](crate::store::MemoryStoreBuilder::shards).
    pub shards: Option<usize>,
    /// [`MemoryStoreBuilder::max_usage_keys`](crate::store::MemoryStoreBuilder::max_usage_keys).
    pub max_usage_keys: Option<usize>,
}

/// The settings of a `RedisStore`; each but `url` defaults to the builder's.
#[cfg(feature = "redis")]
#[cfg_attr(docsrs, doc(cfg(feature = "redis")))]
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct RedisConfig {
    /// `redis://host:port/db`.
    pub url: String,
    /// The key prefix.
    pub prefix: Option<String>,
    /// The most one request waits on Redis (`"50ms"`).
    #[serde(default, deserialize_with = "via::opt_duration")]
    pub timeout: Option<Duration>,
    /// `"memory"` (decide locally while Redis is down, the default) or `"error"` (the
    /// layer's `store_failure` policy decides).
    #[serde(default)]
    pub fallback: Option<RedisFallbackConfig>,
    /// Entries of the blocked-key cache (0: off).
    pub blocked_cache_capacity: Option<usize>,
    /// During an outage, how often Redis is tried again (`"250ms"`).
    #[serde(default, deserialize_with = "via::opt_duration")]
    pub probe_interval: Option<Duration>,
    /// How long Redis must answer before it is declared back (`"10s"`).
    #[serde(default, deserialize_with = "via::opt_duration")]
    pub recovery_window: Option<Duration>,
}

/// [`RedisFallback`](crate::store::RedisFallback) as written.
#[cfg(feature = "redis")]
#[cfg_attr(docsrs, doc(cfg(feature = "redis")))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RedisFallbackConfig {
    /// [`RedisFallback::Memory`](crate::store::RedisFallback::Memory).
    Memory,
    /// [`RedisFallback::Error`](crate::store::RedisFallback::Error).
    Error,
}

/// The whole file, as read.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct File {
    #[serde(rename = "rule", alias = "rules")]
    pub(super) rules: Vec<RuleConfig>,
    #[serde(default)]
    pub(super) exempt: Vec<Route>,
    #[serde(default, deserialize_with = "path_matching")]
    pub(super) path_matching: PathMatching,
    #[serde(default = "all_dialects", deserialize_with = "via::dialects")]
    pub(super) headers: HeaderDialects,
    #[serde(default, deserialize_with = "store_failure")]
    pub(super) store_failure: StoreFailure,
    #[serde(default)]
    pub(super) key_secret_env: Option<String>,
    #[serde(default)]
    pub(super) store: StoreConfig,
}

fn all_dialects() -> HeaderDialects {
    HeaderDialects::ALL
}

fn path_matching<'de, D: Deserializer<'de>>(d: D) -> Result<PathMatching, D::Error> {
    via::path_matching(d)
}

fn store_failure<'de, D: Deserializer<'de>>(d: D) -> Result<StoreFailure, D::Error> {
    via::store_failure(d)
}

/// The rule names of a file, read leniently (any other field ignored), to name the rule
/// of an error found by the strict read.
#[derive(Deserialize)]
pub(super) struct Names {
    #[serde(default, rename = "rule", alias = "rules")]
    pub(super) rules: Vec<NameOnly>,
}

#[derive(Deserialize)]
pub(super) struct NameOnly {
    #[serde(default)]
    pub(super) name: Option<String>,
}
