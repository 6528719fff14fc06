//! Config files (feature `serde`): every rule and layer setting in TOML, YAML or JSON,
//! loaded with one call, and [reloaded](crate::RateLimitHandle::reload_config) without a
//! restart.
//!
//! ```
//! use tower_throttle::config::Config;
//!
//! let config = Config::from_toml_str(r#"
//!     exempt = ["GET /v1/jwks"]
//!
//!     [[rule]]
//!     name = "sign_in"
//!     quota = "5/10s"
//!     key = "peer_ip"
//!     routes = ["POST /v1/sign_ins"]
//!
//!     [[rule]]
//!     name = "instance"
//!     quota = "100/10s"
//!     key = "bearer_token"
//!     missing_key = "reject"
//!     routes = ["* /v1/{*rest}"]
//!     except = ["POST /v1/sign_ins"]
//! "#)?;
//! let layer = config.layer()?;
//! let handle = layer.handle();
//! assert_eq!(handle.rules().len(), 2);
//!
//! // Errors name the rule, the field, and the line and column.
//! let bad = Config::from_toml_str("[[rule]]\nname = \"sign_in\"\nquota = \"5/10\"\n").unwrap_err();
//! assert_eq!(bad.rule_name(), Some("sign_in"));
//! assert_eq!(bad.field_name(), Some("quota"));
//! assert_eq!((bad.line(), bad.column()), (Some(3), Some(9)));
//! # Ok::<(), tower_throttle::config::ConfigError>(())
//! ```
//!
//! # The file
//!
//! | setting | written | default |
//! | --- | --- | --- |
//! | `rule` | the rules: `[[rule]]` tables in TOML, a list under `rule:` (or `rules:`) in YAML and JSON | (required) |
//! | `exempt` | routes no rule applies to: `["GET /v1/jwks", "grpc grpc.health.v1.Health"]` | none |
//! | `path_matching` | `"canonical"`, `"canonical_ignore_case"`, `"axum_matched_path"` (feature `axum`) | `"canonical"` |
//! | `headers` | rate-limit header dialects: `["legacy", "ietf"]`, `[]` for none | both |
//! | `store_failure` | `"admit"` or `"reject"` ([`StoreFailure`]) | `"admit"` |
//! | `key_secret_env` | the environment variable holding the key secret (32 hex digits); never the secret itself | a random secret |
//! | `[store.memory]` | `max_keys`, `shards`, `max_usage_keys` ([`MemoryConfig`]) | the in-memory store's defaults |
//! | `[store.redis]` | `url`, `prefix`, `timeout`, `fallback` (`"memory"`, `"error"`), `blocked_cache_capacity`, `probe_interval`, `recovery_window` (feature `redis`) | |
//!
//! A rule ([`RuleConfig`]): `name` and `quota` (the short form, `"5/10s"`, `"25/h"`,
//! `"20/10s burst 40"`; see [`Quota`]'s `FromStr`) are required; `burst` (if not in the
//! quota), `key` ([`KeyConfig`]), `routes` and `except` ([`Route`]'s `FromStr`),
//! `shadow`, `block` (`"1m"`), `concurrency`, `missing_key` (`"shared"`, `"skip"`,
//! `"reject"`) are optional. Durations are strings with their unit: `"250ms"`, `"30s"`,
//! `"1h"`. Unknown fields are refused.
//!
//! # Errors
//!
//! A [`ConfigError`] names the rule and the field, and, where the format tells (syntax
//! and value errors in all three formats), the line and the column. A file that parses
//! but makes no valid layer (two rules of one name, a key reading a path parameter a
//! route lacks, …) is refused at load time too, naming the rule and field.

mod de;
mod error;
mod spec;
mod store;

use std::path::Path;
use std::sync::Arc;

use serde::Deserialize;

pub use error::{ConfigError, Format};
pub use spec::{KeyConfig, MemoryConfig, PeerIpConfig, RuleConfig, StoreConfig};
#[cfg(feature = "redis")]
pub use spec::{RedisConfig, RedisFallbackConfig};
pub use store::{ConfiguredStore, StoreFuture};

use crate::headers::HeaderDialects;
use crate::rate_limit::ReloadReport;
use crate::rules::key::{
    BearerToken, Composite, Global, Header, KeyExtractor, PathParam, PeerIp, TrustedProxies,
};
use crate::{
    BuildError, PathMatching, Quota, RateLimitHandle, RateLimitLayer, RateLimitLayerBuilder, Route,
    Rule, StoreFailure,
};

/// A whole config file: the rules and the layer's settings, validated.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct Config {
    /// The rules, in order.
    pub rules: Vec<RuleConfig>,
    /// Routes no rule applies to.
    pub exempt: Vec<Route>,
    /// How requests are matched to routes.
    pub path_matching: PathMatching,
    /// Which rate-limit headers are written.
    pub headers: HeaderDialects,
    /// What the layer does when its store fails.
    pub store_failure: StoreFailure,
    /// The environment variable holding the key secret (32 hex digits), read when the
    /// layer is built or reloaded.
    pub key_secret_env: Option<String>,
    /// The store.
    pub store: StoreConfig,
}

impl Config {
    /// Reads the file at `path`, in the format its extension names (`.toml`, `.yaml` or
    /// `.yml`, `.json`). Errors carry the path.
    pub fn from_path(path: impl AsRef<Path>) -> Result<Config, ConfigError> {
        let path = path.as_ref();
        let located = |e: ConfigError| e.in_file(path.to_owned());
        let format = Format::of_path(path).ok_or_else(|| {
            located(ConfigError::new(
                "unknown config format: the file name must end in .toml, .yaml, .yml or .json",
            ))
        })?;
        let text = std::fs::read_to_string(path)
            .map_err(|e| located(ConfigError::new(format!("cannot read: {e}"))))?;
        Config::parse(&text, format).map_err(located)
    }

    /// Reads a TOML config.
    pub fn from_toml_str(text: &str) -> Result<Config, ConfigError> {
        Config::parse(text, Format::Toml)
    }

    /// Reads a YAML config.
    pub fn from_yaml_str(text: &str) -> Result<Config, ConfigError> {
        Config::parse(text, Format::Yaml)
    }

    /// Reads a JSON config.
    pub fn from_json_str(text: &str) -> Result<Config, ConfigError> {
        Config::parse(text, Format::Json)
    }

    /// Reads a config in `format`.
    pub fn parse(text: &str, format: Format) -> Result<Config, ConfigError> {
        let file = read(text, format)?;
        let config = Config {
            rules: file.rules,
            exempt: file.exempt,
            path_matching: file.path_matching,
            headers: file.headers,
            store_failure: file.store_failure,
            key_secret_env: file.key_secret_env,
            store: file.store,
        };
        config.validate()?;
        Ok(config)
    }

    /// Refuses what would not build, naming the rule and field.
    fn validate(&self) -> Result<(), ConfigError> {
        if let Some(var) = &self.key_secret_env {
            if var.is_empty() || var.contains(['=', '\0']) {
                return Err(ConfigError::new("not a valid environment variable name")
                    .field("key_secret_env"));
            }
        }
        store::memory(&self.store)?;
        let rules = self.rules()?;
        crate::rate_limit::validate(rules, &self.exempt, self.path_matching).map_err(build_error)
    }

    /// The rules, as the layer's builder takes them.
    pub fn rules(&self) -> Result<Vec<Rule>, ConfigError> {
        self.rules.iter().map(RuleConfig::rule).collect()
    }

    /// A builder with every setting of the file on an in-memory store (with the
    /// `[store.memory]` settings; the default one when the file names another store:
    /// [`layer`](Self::layer) builds that one). Reads the key secret from
    /// `key_secret_env`.
    pub fn builder(&self) -> Result<RateLimitLayerBuilder, ConfigError> {
        let mut builder = RateLimitLayer::builder()
            .path_matching(self.path_matching)
            .headers(self.headers)
            .on_store_failure(self.store_failure)
            .store(store::memory(&self.store)?);
        for rule in self.rules()? {
            builder = builder.rule(rule);
        }
        for route in &self.exempt {
            builder = builder.exempt(route.clone());
        }
        if let Some(var) = &self.key_secret_env {
            builder = builder.key_secret(key_secret(var)?);
        }
        Ok(builder)
    }

    /// The layer the file describes, on the store it names. A Redis store must be built
    /// inside a Tokio runtime.
    pub fn layer(&self) -> Result<RateLimitLayer<ConfiguredStore>, ConfigError> {
        let store = store::build(&self.store)?;
        self.builder()?.store(store).build().map_err(build_error)
    }
}

impl RuleConfig {
    /// The rule this config describes.
    pub fn rule(&self) -> Result<Rule, ConfigError> {
        let err =
            |field: &str, message: String| ConfigError::new(message).rule(&self.name).field(field);
        let mut quota: Quota = self.quota;
        if let Some(burst) = self.burst {
            if quota.burst() != quota.count() {
                return Err(err(
                    "burst",
                    "the burst is given twice: in quota and in burst".into(),
                ));
            }
            quota = quota
                .with_burst(burst)
                .map_err(|e| err("burst", e.to_string()))?;
        }
        let key = key(&self.key).map_err(|(field, message)| err(&field, message))?;
        let mut rule = Rule::new(self.name.clone(), quota)
            .key_arc(key)
            .shadow(self.shadow)
            .on_missing_key(self.missing_key);
        for route in &self.routes {
            rule = rule.route(route.clone());
        }
        for route in &self.except {
            rule = rule.except(route.clone());
        }
        if let Some(block) = self.block {
            rule = rule.block_for(block);
        }
        if let Some(n) = self.concurrency {
            rule = rule.concurrency(n);
        }
        Ok(rule)
    }
}

/// The extractor of `key`, or the field (under `key`) and what is wrong.
fn key(config: &KeyConfig) -> Result<Arc<dyn KeyExtractor>, (String, String)> {
    Ok(match config {
        KeyConfig::Global => Arc::new(Global),
        KeyConfig::BearerToken => Arc::new(BearerToken),
        KeyConfig::Header(name) => Arc::new(Header::new(name.clone())),
        KeyConfig::PathParam(name) => Arc::new(PathParam::new(name.as_str())),
        KeyConfig::PeerIp(p) => {
            let field = |f: &str| format!("key.peer_ip.{f}");
            if p.ipv4_prefix > 32 {
                return Err((field("ipv4_prefix"), "at most 32".into()));
            }
            if p.ipv6_prefix > 128 {
                return Err((field("ipv6_prefix"), "at most 128".into()));
            }
            if p.proxy_headers.is_some() && p.trusted_proxies.is_empty() {
                return Err((
                    field("proxy_headers"),
                    "forwarding headers are read only from trusted_proxies, and none is listed"
                        .into(),
                ));
            }
            let mut proxies = match p.trusted_proxies.is_empty() {
                true => TrustedProxies::none(),
                false => TrustedProxies::new(p.trusted_proxies.iter().copied()),
            };
            if let Some(headers) = &p.proxy_headers {
                proxies = proxies.headers(headers.iter().copied());
            }
            Arc::new(
                PeerIp::new()
                    .trusted_proxies(proxies)
                    .ipv4_prefix(p.ipv4_prefix)
                    .ipv6_prefix(p.ipv6_prefix),
            )
        }
        KeyConfig::Composite(parts) => {
            let mut composite = Composite::new();
            for (i, part) in parts.iter().enumerate() {
                let part = key(part).map_err(|(f, m)| {
                    let f = f.strip_prefix("key").unwrap_or(&f).to_owned();
                    (format!("key.composite[{i}]{f}"), m)
                })?;
                composite = composite.with_arc(part);
            }
            Arc::new(composite)
        }
    })
}

/// The 16-byte secret held by environment variable `var` as 32 hex digits.
fn key_secret(var: &str) -> Result<[u8; 16], ConfigError> {
    let err = |m: String| ConfigError::new(m).field("key_secret_env");
    let value = std::env::var(var).map_err(|_| {
        err(format!(
            "environment variable {var} is not set (or not UTF-8)"
        ))
    })?;
    let hex = value.trim().as_bytes();
    if hex.len() != 32 || !hex.iter().all(u8::is_ascii_hexdigit) {
        return Err(err(format!(
            "environment variable {var} must hold 32 hexadecimal digits (16 bytes, e.g. from \
             `openssl rand -hex 16`), not {} characters",
            hex.len()
        )));
    }
    let digit = |b: u8| (b as char).to_digit(16).unwrap_or(0) as u8;
    let mut secret = [0u8; 16];
    for (i, byte) in secret.iter_mut().enumerate() {
        *byte = digit(hex[2 * i]) << 4 | digit(hex[2 * i + 1]);
    }
    Ok(secret)
}

/// A [`BuildError`] as a config error naming the rule and the field.
fn build_error(e: BuildError) -> ConfigError {
    let message = e.to_string();
    let base = ConfigError::new(message);
    match e {
        BuildError::NoRules | BuildError::TooManyRules(_) => base.field("rule"),
        BuildError::DuplicateRule(rule) | BuildError::BadRuleName(rule) => {
            base.rule(&rule).field("name")
        }
        BuildError::BadTemplate { rule, .. } if rule == "exempt" => base.field("exempt"),
        BuildError::BadTemplate { rule, .. } => base.rule(&rule).field("routes"),
        BuildError::ZeroConcurrency(rule) => base.rule(&rule).field("concurrency"),
        BuildError::UnknownPathParam { rule, .. } => base.rule(&rule).field("key"),
        BuildError::SharedStoreWithoutKeySecret => base.field("key_secret_env"),
        _ => base,
    }
}

impl RateLimitHandle {
    /// [Reloads](Self::reload) the layer with the rules and settings of `config` (not
    /// its store: the layer keeps its own). Rules whose settings did not change keep
    /// their state; a config that does not build is refused and the rules in force stay.
    ///
    /// ```
    /// use tower_throttle::config::Config;
    ///
    /// let v1 = Config::from_toml_str("[[rule]]\nname = \"global\"\nquota = \"100/s\"\n")?;
    /// let layer = v1.layer()?;
    /// let v2 = Config::from_toml_str("[[rule]]\nname = \"global\"\nquota = \"200/s\"\n")?;
    /// let report = layer.handle().reload_config(&v2)?;
    /// assert_eq!(report.changed, ["global"]);
    /// # Ok::<(), tower_throttle::config::ConfigError>(())
    /// ```
    #[cfg_attr(docsrs, doc(cfg(feature = "serde")))]
    pub fn reload_config(&self, config: &Config) -> Result<ReloadReport, ConfigError> {
        self.reload(config.builder()?).map_err(build_error)
    }
}

/// Reads `text` strictly; on an error, names its rule (read leniently) and field.
fn read(text: &str, format: Format) -> Result<spec::File, ConfigError> {
    let mut track = serde_path_to_error::Track::new();
    let result = deserialize::<spec::File>(text, format, Some(&mut track));
    result.map_err(|(message, at)| {
        let mut e = ConfigError::new(message);
        if let Some((line, column)) = at {
            e = e.at(line, column);
        }
        let path = track.path();
        let mut segments = path.iter().peekable();
        use serde_path_to_error::Segment;
        if let (Some(Segment::Map { key }), Some(Segment::Seq { index })) = (
            segments.next(),
            segments.peek().map(|s| (*s).clone()).as_ref(),
        ) {
            let index = *index;
            if key == "rule" || key == "rules" {
                segments.next();
                let names = deserialize::<spec::Names>(text, format, None).ok();
                let name = names
                    .and_then(|n| n.rules.into_iter().nth(index))
                    .and_then(|r| r.name)
                    .unwrap_or_else(|| format!("rule #{}", index + 1));
                e = e.rule(&name);
            } else {
                return with_field(e, &path);
            }
            let rest = join(segments);
            if !rest.is_empty() {
                e = e.field(rest);
            }
            return e;
        }
        with_field(e, &path)
    })
}

fn with_field(e: ConfigError, path: &serde_path_to_error::Path) -> ConfigError {
    let field = join(path.iter());
    if field.is_empty() {
        e
    } else {
        e.field(field)
    }
}

/// Segments as `a.b[2].c`.
fn join<'a>(segments: impl Iterator<Item = &'a serde_path_to_error::Segment>) -> String {
    use serde_path_to_error::Segment;
    let mut out = String::new();
    for s in segments {
        match s {
            Segment::Seq { index } => out.push_str(&format!("[{index}]")),
            Segment::Map { key } | Segment::Enum { variant: key } => {
                if !out.is_empty() {
                    out.push('.');
                }
                out.push_str(key);
            }
            Segment::Unknown => {}
        }
    }
    out
}

/// A message and, where the format gives it, the line and column.
type Located = (String, Option<(usize, usize)>);

fn deserialize<T: for<'de> Deserialize<'de>>(
    text: &str,
    format: Format,
    track: Option<&mut serde_path_to_error::Track>,
) -> Result<T, Located> {
    macro_rules! run {
        ($de:expr) => {
            match track {
                Some(track) => T::deserialize(serde_path_to_error::Deserializer::new($de, track)),
                None => T::deserialize($de),
            }
        };
    }
    match format {
        Format::Toml => {
            let toml_err = |e: toml::de::Error| {
                let at = e.span().map(|s| error::line_column(text, s.start));
                (e.message().to_owned(), at)
            };
            let de = toml::de::Deserializer::parse(text).map_err(toml_err)?;
            run!(de).map_err(toml_err)
        }
        Format::Json => {
            let json_err = |e: serde_json::Error| {
                let message = e.to_string();
                let suffix = format!(" at line {} column {}", e.line(), e.column());
                let message = message.strip_suffix(&suffix).unwrap_or(&message).to_owned();
                (message, (e.line() > 0).then(|| (e.line(), e.column())))
            };
            let mut de = serde_json::Deserializer::from_str(text);
            let value = run!(&mut de).map_err(json_err)?;
            de.end().map_err(json_err)?;
            Ok(value)
        }
        Format::Yaml => {
            let options = serde_saphyr::options! { with_snippet: false };
            serde_saphyr::with_deserializer_from_str_with_options(text, options, |de| run!(de))
                .map_err(|e| {
                    let at = e
                        .location()
                        .map(|l| (l.line() as usize, l.column() as usize));
                    (yaml_message(&e), at)
                })
        }
    }
}

/// A YAML error's message without the location the crate appends.
fn yaml_message(e: &serde_saphyr::Error) -> String {
    let text = e.to_string();
    match text.rfind(" at line ") {
        Some(i) => text[..i].to_owned(),
        None => text,
    }
}
