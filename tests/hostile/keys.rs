//! Key extraction under hostile input: forged forwarding headers, garbage in every
//! header a key is read from, repeated key headers. Random inputs with a fixed seed
//! (`HOSTILE_CASES` cases, default 512; `PROPTEST_RNG_SEED` to vary).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::Duration;

use http::{HeaderMap, HeaderName, HeaderValue};
use proptest::prelude::*;
use tower_throttle::key::{Header, ProxyHeader, TrustedProxies};
use tower_throttle::{MissingKey, Quota, RateLimitLayer, Route, Rule};

use crate::harness::{Raw, Server};

fn config() -> ProptestConfig {
    ProptestConfig {
        cases: std::env::var("HOSTILE_CASES")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(512),
        rng_seed: proptest::test_runner::RngSeed::Fixed(
            std::env::var("PROPTEST_RNG_SEED")
                .ok()
                .and_then(|v| v.parse().ok())
                .unwrap_or(11),
        ),
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

/// The proxies of these tests: 10.0.0.0/8 and fd00::/8, reading every header kind.
fn proxies() -> TrustedProxies {
    TrustedProxies::from_cidrs(["10.0.0.0/8", "fd00::/8"])
        .unwrap()
        .headers([
            ProxyHeader::XForwardedFor,
            ProxyHeader::Forwarded,
            ProxyHeader::XRealIp,
        ])
}

fn untrusted_ip() -> impl Strategy<Value = IpAddr> {
    prop_oneof![
        (11u8..=223, any::<[u8; 3]>())
            .prop_map(|(a, [b, c, d])| IpAddr::V4(Ipv4Addr::new(a, b, c, d))),
        any::<[u16; 7]>().prop_map(|s| {
            IpAddr::V6(Ipv6Addr::new(
                0x2001, s[0], s[1], s[2], s[3], s[4], s[5], s[6],
            ))
        }),
    ]
}

fn trusted_ip() -> impl Strategy<Value = IpAddr> {
    prop_oneof![
        any::<[u8; 3]>().prop_map(|[b, c, d]| IpAddr::V4(Ipv4Addr::new(10, b, c, d))),
        any::<[u16; 7]>().prop_map(|s| {
            IpAddr::V6(Ipv6Addr::new(
                0xfd00, s[0], s[1], s[2], s[3], s[4], s[5], s[6],
            ))
        }),
    ]
}

/// How a hop is written in `X-Forwarded-For`.
fn xff_entry(ip: IpAddr, style: u8) -> String {
    match (ip, style % 3) {
        (IpAddr::V6(v6), 1) => format!("[{v6}]"),
        (IpAddr::V6(v6), 2) => format!("[{v6}]:443"),
        (IpAddr::V4(v4), 1) => format!("{v4}:8080"),
        (ip, _) => ip.to_string(),
    }
}

/// Anything a client may put in a header value: separators, quotes, escapes, addresses
/// (trusted-looking ones included), `unknown`, obfuscated names, long runs.
fn garbage() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        Just(",".to_owned()),
        Just(";".to_owned()),
        Just("\"".to_owned()),
        Just("\\".to_owned()),
        Just(" ".to_owned()),
        Just("\t".to_owned()),
        Just("for=".to_owned()),
        Just("unknown".to_owned()),
        Just("_hidden".to_owned()),
        Just("[".to_owned()),
        Just("]".to_owned()),
        Just(":".to_owned()),
        Just("10.1.2.3".to_owned()),
        Just("fd00::1".to_owned()),
        Just("127.0.0.1".to_owned()),
        "[a-zA-Z0-9.:_-]{0,12}",
        untrusted_ip().prop_map(|ip| ip.to_string()),
    ];
    prop::collection::vec(piece, 0..24).prop_map(|p| p.concat())
}

fn value(s: &str) -> Option<HeaderValue> {
    HeaderValue::from_str(s).ok()
}

proptest! {
    #![proptest_config(config())]

    /// An untrusted peer is the client, whatever forwarding headers it sends.
    #[test]
    fn an_untrusted_peer_cannot_move_its_address(
        peer in untrusted_ip(),
        xff in garbage(), fwd in garbage(), real in garbage(),
    ) {
        let mut headers = HeaderMap::new();
        for (name, v) in [("x-forwarded-for", &xff), ("forwarded", &fwd), ("x-real-ip", &real)] {
            if let Some(v) = value(v) {
                headers.append(HeaderName::from_static(name), v);
            }
        }
        prop_assert_eq!(proxies().client_ip(peer, &headers), peer.to_canonical());
    }

    /// Behind trusted proxies that append what they saw, the client is the address the
    /// first proxy appended, whatever the client wrote to the left of it (on the same
    /// line, as nginx's `$proxy_add_x_forwarded_for` does, or on lines of its own).
    #[test]
    fn a_forged_prefix_never_becomes_the_client(
        client in untrusted_ip(),
        hops in prop::collection::vec(trusted_ip(), 0..4),
        peer in trusted_ip(),
        forged in prop::collection::vec(garbage(), 0..3),
        style in any::<u8>(),
        same_line in any::<bool>(),
    ) {
        let mut appended = vec![xff_entry(client, style)];
        appended.extend(hops.iter().map(|h| xff_entry(*h, style / 3)));
        let appended = appended.join(", ");
        let mut headers = HeaderMap::new();
        let xff = HeaderName::from_static("x-forwarded-for");
        let forged: Vec<String> = forged.into_iter().filter(|f| value(f).is_some()).collect();
        match (same_line, forged.split_last()) {
            (true, Some((last, earlier))) => {
                for f in earlier {
                    headers.append(xff.clone(), value(f).unwrap());
                }
                if let Some(v) = value(&format!("{last}, {appended}")) {
                    headers.append(xff.clone(), v);
                }
            }
            _ => {
                for f in &forged {
                    headers.append(xff.clone(), value(f).unwrap());
                }
                headers.append(xff.clone(), value(&appended).unwrap());
            }
        }
        prop_assert_eq!(proxies().client_ip(peer, &headers), client.to_canonical());
    }
}

/// A key header sent twice is no key: the client neither gets a fresh bucket per extra
/// value nor escapes a rule that requires the key (over real loopback HTTP).
#[tokio::test]
async fn a_repeated_key_header_gets_no_fresh_bucket() {
    let api_key = HeaderName::from_static("x-api-key");
    let layer = RateLimitLayer::builder()
        .rule(
            Rule::new("per_key", Quota::new(2, Duration::from_secs(3600)).unwrap())
                .route(Route::get("/v1/things"))
                .key(Header::new(api_key))
                .on_missing_key(MissingKey::Reject),
        )
        .build()
        .unwrap();
    let handle = layer.handle();
    let app = axum::Router::new()
        .route("/v1/things", axum::routing::get(|| async { "ok" }))
        .layer(layer);
    let server = Server::start(app, handle).await;
    let one = Raw::new("GET", "/v1/things").headers(&[("x-api-key", "k1")]);
    assert_eq!(server.count(3, "127.0.0.2", &one, 200).await, 2);
    for (n, junk) in ["a", "b", "c", "k1"].into_iter().enumerate() {
        let twice = [("x-api-key", "k1"), ("x-api-key", junk)];
        let answer = server
            .send("127.0.0.2", &Raw::new("GET", "/v1/things").headers(&twice))
            .await;
        assert_eq!(answer.status, 401, "repeat {n}");
    }
}
