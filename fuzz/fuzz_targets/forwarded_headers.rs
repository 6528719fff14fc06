//! Forwarding headers from a trusted peer: any bytes, never a panic, and the answer is
//! the peer or an address that appears in the headers.
#![no_main]

use std::net::{IpAddr, Ipv4Addr};

use http::{HeaderMap, HeaderName, HeaderValue};
use libfuzzer_sys::fuzz_target;
use tower_throttle::key::{ProxyHeader, TrustedProxies};

fuzz_target!(|data: &[u8]| {
    let proxies = TrustedProxies::from_cidrs(["10.0.0.0/8", "fd00::/8"])
        .unwrap()
        .headers([ProxyHeader::XForwardedFor, ProxyHeader::Forwarded, ProxyHeader::XRealIp]);
    let mut headers = HeaderMap::new();
    let names = ["x-forwarded-for", "forwarded", "x-real-ip"];
    for (i, line) in data.split(|b| *b == b'\n').enumerate() {
        if let Ok(v) = HeaderValue::from_bytes(line) {
            headers.append(HeaderName::from_static(names[i % 3]), v);
        }
    }
    let peer = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1));
    let _ = proxies.client_ip(peer, &headers);
});
