use super::*;
use http::HeaderValue;

const PEER: &str = "10.0.0.1";
const XFF: &str = "x-forwarded-for";
const FWD: &str = "forwarded";
const XRI: &str = "x-real-ip";

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn net(s: &str) -> IpNet {
    s.parse().unwrap()
}

fn proxies() -> TrustedProxies {
    TrustedProxies::from_cidrs(["10.0.0.0/8", "2001:db8::/32"]).unwrap()
}

/// Header values go in as raw bytes, so non-ASCII (`\u{ff}`) reaches the parser.
fn run(p: &TrustedProxies, peer: &str, pairs: &[(&'static str, &str)]) -> IpAddr {
    let mut h = HeaderMap::new();
    for (k, v) in pairs {
        h.append(*k, HeaderValue::from_bytes(v.as_bytes()).unwrap());
    }
    p.client_ip(ip(peer), &h)
}

/// `(value, expected client)` for one header sent by the trusted `PEER`.
fn check(p: &TrustedProxies, name: &'static str, cases: &[(&str, &str)]) {
    for &(value, want) in cases {
        assert_eq!(run(p, PEER, &[(name, value)]), ip(want), "{name}: {value}");
    }
}

#[test]
fn cidr_parsing() {
    for (s, want) in [
        ("10.1.2.3/8", "10.0.0.0/8"),
        ("192.0.2.7", "192.0.2.7/32"),
        (" 2001:db8::1/32 ", "2001:db8::/32"),
        ("::1", "::1/128"),
        ("::ffff:10.1.2.3/104", "10.0.0.0/8"),
        ("::ffff:1.2.3.4/80", "::/80"),
        ("0.0.0.0/0", "0.0.0.0/0"),
    ] {
        assert_eq!(net(s).to_string(), want);
    }
    let bad = "garbage 10.0.0/8 1.2.3.4/33 ::/129 1.2.3.4/ 1.2.3.4/+8 1.2.3.4/8/8 /8 ::1/0128 010.1.2.3/8";
    for bad in ["", " ", "1.2.3.4/x"].into_iter().chain(bad.split(' ')) {
        assert_eq!(bad.parse::<IpNet>().unwrap_err().input(), bad);
    }
    let err = "1.2.3.4/40".parse::<IpNet>().unwrap_err().to_string();
    assert_eq!(
        err,
        "invalid CIDR \"1.2.3.4/40\": prefix length out of range"
    );
    assert!(IpNet::new(ip("1.2.3.4"), 33).is_err());
    let n = IpNet::new(ip("1.2.3.4"), 24).unwrap();
    assert_eq!((n.addr(), n.prefix_len()), (ip("1.2.3.0"), 24));
    let e = TrustedProxies::from_cidrs(["10.0.0.0/8", "bad", "x"]).unwrap_err();
    assert_eq!(e.input(), "bad");
}

#[test]
fn contains_mapped() {
    let (v4, v6) = (net("10.0.0.0/8"), net("2001:db8::/32"));
    assert!(v4.contains(ip("10.255.0.1")) && v4.contains(ip("::ffff:10.9.9.9")));
    assert!(!v4.contains(ip("11.0.0.1")) && !v4.contains(ip("::a00:1")));
    assert!(v6.contains(ip("2001:db8:ffff::1")) && !v6.contains(ip("2001:db9::1")));
    assert!(net("::ffff:10.0.0.0/104").contains(ip("10.1.1.1")));
    assert!(net("0.0.0.0/0").contains(ip("::ffff:1.2.3.4")));
    assert!(!net("::/0").contains(ip("1.2.3.4")) && !v4.contains(ip("2001:db8::1")));
}

#[test]
fn untrusted_peer_ignores_headers() {
    let spoof = [(FWD, "for=1.1.1.1"), (XFF, "2.2.2.2"), (XRI, "3.3.3.3")];
    assert_eq!(run(&TrustedProxies::default(), PEER, &spoof), ip(PEER));
    let mapped = run(&TrustedProxies::none(), "::ffff:1.2.3.4", &spoof);
    assert_eq!(mapped, ip("1.2.3.4"));
    assert_eq!(run(&proxies(), "203.0.113.9", &spoof), ip("203.0.113.9"));
    assert_eq!(run(&proxies(), "::ffff:10.0.0.1", &spoof), ip("2.2.2.2"));
}

#[test]
fn x_forwarded_for() {
    let cases = [
        ("6.6.6.6, 198.51.100.7, 10.0.0.2", "198.51.100.7"),
        ("::ffff:5.5.5.5", "5.5.5.5"),
        ("1.2.3.4:5678, 10.0.0.2:80", "1.2.3.4"),
        ("[2001:db9::1]:8080, [2001:db8::1]", "2001:db9::1"),
        (" 2001:db9::2 ,\t2001:db8::5 ", "2001:db9::2"),
        ("10.0.0.5, 10.0.0.4, 10.0.0.3", "10.0.0.5"),
        ("6.6.6.6, garbage, 10.0.0.3, 10.0.0.2", "10.0.0.3"),
        ("6.6.6.6,,10.0.0.7", "10.0.0.7"),
        ("6.6.6.6, unknown", PEER),
        ("", PEER),
        ("1.2.3.4:99999", PEER),
        ("[::1", PEER),
        ("[::1]x", PEER),
    ];
    check(&proxies(), XFF, &cases);
    let lines = [(XFF, "6.6.6.6, 198.51.100.7"), (XFF, "10.0.0.3,10.0.0.2")];
    assert_eq!(run(&proxies(), PEER, &lines), ip("198.51.100.7"));
    let lines = [(XFF, "10.0.0.9"), (XFF, "7.7.7.7")];
    assert_eq!(run(&proxies(), PEER, &lines), ip("7.7.7.7"));
    let lines = [(XFF, "6.6.6.6"), (XFF, "1.1.1.1\u{ff}"), (XFF, "10.0.0.8")];
    assert_eq!(run(&proxies(), PEER, &lines), ip("10.0.0.8"));
}

#[test]
fn forwarded() {
    let cases = [
        ("for=192.0.2.60;proto=http;by=203.0.113.43", "192.0.2.60"),
        (r#"for="[2001:db9:cafe::17]:4711""#, "2001:db9:cafe::17"),
        (r#"for="192.0.2.43:47011", for=10.0.0.2"#, "192.0.2.43"),
        ("for=6.6.6.6, for=_hidden, for=10.0.0.2", "10.0.0.2"),
        ("for=6.6.6.6, for=unknown", PEER),
        ("proto=https;For=198.51.100.1", "198.51.100.1"),
        (r#"for=1.1.1.1;x="a,b;c", for=10.0.0.3"#, "1.1.1.1"),
        (r#"for=6.6.6.6, by="a,for=7.7.7.7""#, PEER),
        (r#"for=6.6.6.6, for="1.2.3.4"#, PEER),
        ("for=1.1.1.1;for=2.2.2.2", PEER),
        (r#"for="\1.2.3.4:_obf""#, "1.2.3.4"),
        ("for=10.0.0.9, for=10.0.0.8", "10.0.0.9"),
    ];
    let fwd = proxies().headers([ProxyHeader::Forwarded]);
    check(&fwd, FWD, &cases);
    let lines = [(FWD, "for=5.5.5.5"), (FWD, "for=10.0.0.4")];
    assert_eq!(run(&fwd, PEER, &lines), ip("5.5.5.5"));
}

#[test]
fn header_order() {
    let all = [(XFF, "2.2.2.2"), (FWD, "for=1.1.1.1"), (XRI, "3.3.3.3")];
    // By default only X-Forwarded-For is read: a Forwarded header the proxy does not
    // write would come from the client.
    assert_eq!(run(&proxies(), PEER, &all), ip("2.2.2.2"));
    assert_eq!(run(&proxies(), PEER, &all[1..]), ip(PEER));
    let p = proxies().headers([ProxyHeader::Forwarded, ProxyHeader::XForwardedFor]);
    assert_eq!(run(&p, PEER, &all), ip("1.1.1.1"));
    let p = proxies().headers([ProxyHeader::XForwardedFor, ProxyHeader::Forwarded]);
    assert_eq!(run(&p, PEER, &all), ip("2.2.2.2"));
    let p = proxies().headers([ProxyHeader::XRealIp]);
    assert_eq!(run(&p, PEER, &all), ip("3.3.3.3"));
    assert_eq!(run(&proxies().headers([]), PEER, &all), ip(PEER));
    let present = [(FWD, "for=_hidden"), (XFF, "2.2.2.2")];
    assert_eq!(run(&p, PEER, &present), ip(PEER));
    assert_eq!(run(&proxies(), PEER, &[]), ip(PEER));
}

#[test]
fn x_real_ip() {
    let p = proxies().headers([ProxyHeader::XRealIp]);
    let cases = [
        ("[2001:db9::3]:443", "2001:db9::3"),
        ("198.51.100.4:80", "198.51.100.4"),
        ("nope", PEER),
        ("1.1.1.1\u{ff}", PEER),
    ];
    check(&p, XRI, &cases);
    assert_eq!(run(&p, "8.8.8.8", &[(XRI, "1.1.1.1")]), ip("8.8.8.8"));
    let two = [(XRI, "1.1.1.1"), (XRI, "2.2.2.2")];
    assert_eq!(run(&p, PEER, &two), ip(PEER));
}

#[test]
fn grouping() {
    for (addr, v4, v6, want) in [
        ("192.0.2.77", 24, 64, "192.0.2.0"),
        ("192.0.2.77", 0, 64, "0.0.0.0"),
        ("192.0.2.77", 200, 64, "192.0.2.77"),
        ("2001:db8:1:2:3:4:5:6", 32, 64, "2001:db8:1:2::"),
        ("2001:db8::1", 32, 128, "2001:db8::1"),
        ("2001:db8::1", 32, 255, "2001:db8::1"),
        ("2001:db8::1", 32, 0, "::"),
        ("::ffff:192.0.2.77", 24, 64, "192.0.2.0"),
    ] {
        assert_eq!(group_ip(ip(addr), v4, v6), ip(want), "{addr} /{v4} /{v6}");
    }
}
