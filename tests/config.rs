//! Config files (feature `serde`): every setting in TOML, YAML and JSON, and errors that
//! name the rule, the field, the line and the column.
#![cfg(feature = "serde")]

use std::time::Duration;

use tower_throttle::config::{Config, ConfigError, KeyConfig, StoreConfig};
use tower_throttle::headers::HeaderDialects;
use tower_throttle::{MissingKey, PathMatching, Quota, Route, StoreFailure};

const TOML: &str = r#"
exempt = ["GET /v1/jwks", "grpc grpc.health.v1.Health"]
path_matching = "canonical_ignore_case"
headers = ["ietf"]
store_failure = "reject"

[store.memory]
max_keys = 4096
shards = 16

[[rule]]
name = "per_ip"
quota = "20/10s burst 40"
routes = ["POST /v1/sign_ins", "* /v1/{*rest}"]
except = ["GET /v1/health"]
shadow = true
block = "1m"
missing_key = "skip"
key = { peer_ip = { trusted_proxies = ["10.0.0.0/8", "2001:db8::/32"], proxy_headers = ["x-real-ip"], ipv4_prefix = 24, ipv6_prefix = 56 } }

[[rule]]
name = "per_key"
quota = "25/h"
burst = 50
concurrency = 2
key = { composite = ["bearer_token", { header = "x-tenant" }, { path_param = "user_id" }] }
routes = ["PATCH /v1/users/{user_id}"]

[[rule]]
name = "grpc"
quota = "10/500ms"
routes = ["grpc helloworld.Greeter/SayHello"]
"#;

const YAML: &str = r#"
exempt: ["GET /v1/jwks", "grpc grpc.health.v1.Health"]
path_matching: canonical_ignore_case
headers: [ietf]
store_failure: reject
store:
  memory:
    max_keys: 4096
    shards: 16
rule:
  - name: per_ip
    quota: 20/10s burst 40
    routes: ["POST /v1/sign_ins", "* /v1/{*rest}"]
    except: ["GET /v1/health"]
    shadow: true
    block: 1m
    missing_key: skip
    key:
      peer_ip:
        trusted_proxies: ["10.0.0.0/8", "2001:db8::/32"]
        proxy_headers: [x-real-ip]
        ipv4_prefix: 24
        ipv6_prefix: 56
  - name: per_key
    quota: 25/h
    burst: 50
    concurrency: 2
    key:
      composite: [bearer_token, { header: x-tenant }, { path_param: user_id }]
    routes: ["PATCH /v1/users/{user_id}"]
  - name: grpc
    quota: 10/500ms
    routes: ["grpc helloworld.Greeter/SayHello"]
"#;

const JSON: &str = r#"{
  "exempt": ["GET /v1/jwks", "grpc grpc.health.v1.Health"],
  "path_matching": "canonical_ignore_case",
  "headers": ["ietf"],
  "store_failure": "reject",
  "store": { "memory": { "max_keys": 4096, "shards": 16 } },
  "rule": [
    { "name": "per_ip", "quota": "20/10s burst 40",
      "routes": ["POST /v1/sign_ins", "* /v1/{*rest}"], "except": ["GET /v1/health"],
      "shadow": true, "block": "1m", "missing_key": "skip",
      "key": { "peer_ip": { "trusted_proxies": ["10.0.0.0/8", "2001:db8::/32"],
               "proxy_headers": ["x-real-ip"], "ipv4_prefix": 24, "ipv6_prefix": 56 } } },
    { "name": "per_key", "quota": "25/h", "burst": 50, "concurrency": 2,
      "key": { "composite": ["bearer_token", { "header": "x-tenant" }, { "path_param": "user_id" }] },
      "routes": ["PATCH /v1/users/{user_id}"] },
    { "name": "grpc", "quota": "10/500ms", "routes": ["grpc helloworld.Greeter/SayHello"] }
  ]
}"#;

#[test]
fn every_setting_in_three_formats() {
    let toml = Config::from_toml_str(TOML).unwrap();
    assert_eq!(Config::from_yaml_str(YAML).unwrap(), toml);
    assert_eq!(Config::from_json_str(JSON).unwrap(), toml);

    assert_eq!(toml.path_matching, PathMatching::CanonicalIgnoreCase);
    assert_eq!(toml.headers, HeaderDialects::IETF);
    assert_eq!(toml.store_failure, StoreFailure::Reject);
    assert_eq!(
        toml.exempt,
        [
            Route::get("/v1/jwks"),
            Route::grpc_service("grpc.health.v1.Health")
        ]
    );
    let StoreConfig::Memory(memory) = &toml.store else {
        panic!("memory store expected")
    };
    assert_eq!((memory.max_keys, memory.shards), (Some(4096), Some(16)));
    let ip = &toml.rules[0];
    let s10 = Duration::from_secs(10);
    assert_eq!(
        ip.quota,
        Quota::new(20, s10).unwrap().with_burst(40).unwrap()
    );
    assert!(ip.shadow);
    assert_eq!(ip.block, Some(Duration::from_secs(60)));
    assert_eq!(ip.missing_key, MissingKey::Skip);
    let KeyConfig::PeerIp(peer) = &ip.key else {
        panic!("peer_ip expected")
    };
    assert_eq!((peer.ipv4_prefix, peer.ipv6_prefix), (24, 56));
    assert_eq!(peer.trusted_proxies.len(), 2);
    let key = &toml.rules[1];
    assert_eq!(key.concurrency, Some(2));
    let rules = toml.rules().unwrap();
    assert_eq!(
        rules[1].quota(),
        &Quota::per_hour(25).unwrap().with_burst(50).unwrap()
    );
    assert_eq!(
        toml.rules[2].quota,
        Quota::new(10, Duration::from_millis(500)).unwrap()
    );
    // The whole thing builds a layer.
    let layer = toml.layer().unwrap();
    assert_eq!(layer.handle().rules().len(), 3);
}

#[test]
fn rules_compare_by_every_setting() {
    let one = |key: &str| {
        Config::from_toml_str(&format!(
            "[[rule]]\nname = \"r\"\nquota = \"1/s\"\nkey = {key}\n"
        ))
        .unwrap()
        .rules()
        .unwrap()
        .remove(0)
    };
    assert_eq!(one("\"peer_ip\""), one("\"peer_ip\""));
    assert_ne!(one("\"peer_ip\""), one("\"bearer_token\""));
    assert_ne!(one("{ header = \"a\" }"), one("{ header = \"b\" }"));
    assert_ne!(
        one("\"peer_ip\""),
        one("{ peer_ip = { ipv6_prefix = 56 } }")
    );
}

/// The error of a file whose rule `sign_in` (after a first rule) has a bad `field`.
fn expect(e: ConfigError, rule: Option<&str>, field: Option<&str>, at: Option<(usize, usize)>) {
    assert_eq!(e.rule_name(), rule, "{e}");
    assert_eq!(e.field_name(), field, "{e}");
    assert_eq!(e.line().zip(e.column()), at, "{e}");
}

#[test]
fn a_bad_quota_is_located_in_every_format() {
    let toml = "[[rule]]\nname = \"a\"\nquota = \"1/s\"\n\n[[rule]]\nname = \"sign_in\"\nquota = \"5/10\"\n";
    let e = Config::from_toml_str(toml).unwrap_err();
    expect(e.clone(), Some("sign_in"), Some("quota"), Some((7, 9)));
    assert!(e.message().contains("needs a unit"), "{e}");
    assert_eq!(
        e.to_string(),
        "7:9: rule \"sign_in\", field quota: quota period: a duration needs a unit (ns, us, \
         ms, s, m, h, d), as in \"10s\""
    );

    let yaml = "rule:\n  - name: a\n    quota: 1/s\n  - name: sign_in\n    quota: 5/10\n";
    let e = Config::from_yaml_str(yaml).unwrap_err();
    expect(e.clone(), Some("sign_in"), Some("quota"), Some((5, 12)));
    assert!(e.message().contains("needs a unit"), "{e}");

    let json = "{\"rule\": [\n {\"name\": \"a\", \"quota\": \"1/s\"},\n {\"name\": \"sign_in\",\n  \"quota\": \"5/10\"}]}";
    let e = Config::from_json_str(json).unwrap_err();
    expect(e.clone(), Some("sign_in"), Some("quota"), Some((4, 17)));
    assert!(e.message().contains("needs a unit"), "{e}");
}

#[test]
fn unknown_fields_are_refused() {
    let e =
        Config::from_toml_str("[[rule]]\nname = \"x\"\nquota = \"1/s\"\nqouta = 1\n").unwrap_err();
    expect(e.clone(), Some("x"), Some("qouta"), Some((4, 1)));
    assert!(e.message().contains("unknown field `qouta`"), "{e}");
    let e =
        Config::from_yaml_str("rule:\n  - name: x\n    quota: 1/s\n    shdow: true\n").unwrap_err();
    assert_eq!(e.rule_name(), Some("x"), "{e}");
    assert_eq!(e.line(), Some(4), "{e}");
    assert!(e.message().contains("shdow"), "{e}");
    let e = Config::from_json_str(r#"{"rule": [{"name": "x", "quota": "1/s"}], "extra": 1}"#)
        .unwrap_err();
    assert!(e.message().contains("unknown field `extra`"), "{e}");
    assert_eq!(e.line(), Some(1), "{e}");
    // Inside a key's settings too.
    let e = Config::from_toml_str(
        "[[rule]]\nname = \"x\"\nquota = \"1/s\"\nkey = { peer_ip = { ipv7_prefix = 1 } }\n",
    )
    .unwrap_err();
    assert_eq!(e.rule_name(), Some("x"), "{e}");
    assert!(e.field_name().unwrap().starts_with("key.peer_ip"), "{e}");
    assert_eq!(e.line(), Some(4), "{e}");
}

#[test]
fn settings_that_do_not_build_name_the_rule_and_field() {
    let rule = |body: &str| format!("[[rule]]\nname = \"r\"\nquota = \"1/s\"\n{body}\n");
    let cases = [
        ("burst = 0", "burst"),
        ("quota = \"1/s burst 2\"", ""),
        (
            "key = { path_param = \"id\" }\nroutes = [\"GET /x\"]",
            "key",
        ),
        ("concurrency = 0", "concurrency"),
        (
            "key = { peer_ip = { ipv4_prefix = 33 } }",
            "key.peer_ip.ipv4_prefix",
        ),
        (
            "key = { peer_ip = { proxy_headers = [\"forwarded\"] } }",
            "key.peer_ip.proxy_headers",
        ),
        (
            "key = { composite = [{ peer_ip = { ipv6_prefix = 200 } }] }",
            "key.composite[0].peer_ip.ipv6_prefix",
        ),
        ("routes = [\"GET x\"]", "routes[0]"),
        ("block = \"1.5s\"", "block"),
        ("missing_key = \"maybe\"", "missing_key"),
        ("key = \"header\"", "key"),
        ("key = \"ip\"", "key"),
    ];
    for (body, field) in cases {
        let text = rule(body);
        let e = Config::from_toml_str(&text).unwrap_err();
        if field.is_empty() {
            // A duplicate key in TOML: a syntax error, located.
            assert!(e.line().is_some(), "{body}: {e}");
            continue;
        }
        assert_eq!(e.rule_name(), Some("r"), "{body}: {e}");
        assert_eq!(e.field_name(), Some(field), "{body}: {e}");
    }
    // A burst given twice.
    let e = Config::from_toml_str("[[rule]]\nname = \"r\"\nquota = \"1/s burst 2\"\nburst = 3\n")
        .unwrap_err();
    assert_eq!(
        (e.rule_name(), e.field_name()),
        (Some("r"), Some("burst")),
        "{e}"
    );
    // Two rules of one name.
    let e = Config::from_toml_str(&(rule("") + &rule(""))).unwrap_err();
    assert_eq!(
        (e.rule_name(), e.field_name()),
        (Some("r"), Some("name")),
        "{e}"
    );
    // No rule at all.
    let e = Config::from_toml_str("rule = []\n").unwrap_err();
    assert_eq!(e.field_name(), Some("rule"), "{e}");
    // Layer settings name their field.
    let e = Config::from_toml_str(&(rule("") + "[store.memory]\nshards = 3\n")).unwrap_err();
    assert_eq!(e.field_name(), Some("store.memory"), "{e}");
    let e = Config::from_toml_str(&format!("headers = [\"lgacy\"]\n{}", rule(""))).unwrap_err();
    assert_eq!(
        (e.field_name(), e.line()),
        (Some("headers[0]"), Some(1)),
        "{e}"
    );
}

#[test]
fn the_key_secret_comes_from_the_environment() {
    let text =
        "key_secret_env = \"TT_CONFIG_TEST_SECRET\"\n[[rule]]\nname = \"r\"\nquota = \"1/s\"\n";
    let config = Config::from_toml_str(text).unwrap();
    // Not set: refused when built, naming the variable.
    let e = config.layer().unwrap_err();
    assert_eq!(e.field_name(), Some("key_secret_env"));
    assert!(
        e.message().contains("TT_CONFIG_TEST_SECRET is not set"),
        "{e}"
    );
    std::env::set_var("TT_CONFIG_TEST_SECRET", "not hex");
    assert!(config
        .layer()
        .unwrap_err()
        .message()
        .contains("32 hexadecimal digits"));
    std::env::set_var("TT_CONFIG_TEST_SECRET", "00112233445566778899aabbccddeeff");
    assert!(config.layer().is_ok());
    // The secret itself cannot be written in the file.
    let inline = "key_secret = \"00112233445566778899aabbccddeeff\"\n[[rule]]\nname = \"r\"\nquota = \"1/s\"\n";
    assert!(Config::from_toml_str(inline).is_err());
}

#[test]
fn from_path_picks_the_format_by_extension() {
    let dir = std::env::temp_dir().join(format!("tt-config-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    for (name, text) in [
        ("c.toml", TOML),
        ("c.yaml", YAML),
        ("c.yml", YAML),
        ("c.json", JSON),
    ] {
        let path = dir.join(name);
        std::fs::write(&path, text).unwrap();
        assert_eq!(Config::from_path(&path).unwrap().rules.len(), 3, "{name}");
    }
    let e = Config::from_path(dir.join("c.ini")).unwrap_err();
    assert!(e.to_string().contains("c.ini"), "{e}");
    let bad = dir.join("bad.toml");
    std::fs::write(&bad, "[[rule]]\nname = \"r\"\nquota = \"x\"\n").unwrap();
    let e = Config::from_path(&bad).unwrap_err();
    assert!(
        e.to_string()
            .starts_with(&format!("{}:3:9: rule \"r\", field quota", bad.display())),
        "{e}"
    );
    assert!(Config::from_path(dir.join("missing.toml")).is_err());
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn garbage_never_panics() {
    for text in [
        "",
        "\0",
        "[[rule]",
        "rule = 5",
        "{",
        "[",
        "- - -",
        "&a [*a, *a]",
        "rule: &a [*a]",
        "\u{feff}",
        "rule:\n  - name: [1]\n",
        "{\"rule\": [{\"name\": 1}]}",
        "[[rule]]\nname = \"r\"\nquota = \"4294967296/s\"\n",
        "[[rule]]\nname = \"r\"\nquota = \"1/99999999999999999999999d\"\n",
    ] {
        for format in [
            tower_throttle::config::Format::Toml,
            tower_throttle::config::Format::Yaml,
            tower_throttle::config::Format::Json,
        ] {
            assert!(Config::parse(text, format).is_err(), "{text:?} as {format}");
        }
    }
}
