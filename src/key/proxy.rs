//! Client address resolution behind trusted reverse proxies, and address grouping.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

use http::header::{HeaderName, FORWARDED};
use http::HeaderMap;

const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
const X_REAL_IP: HeaderName = HeaderName::from_static("x-real-ip");

/// An IP network in CIDR notation (e.g. `10.0.0.0/8`, `2001:db8::/32`, or a bare address
/// meaning /32 or /128). An IPv4-mapped IPv6 network (`::ffff:a.b.c.d/n`, `n >= 96`) is
/// stored as the equivalent IPv4 network.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IpNet {
    addr: IpAddr,
    prefix_len: u8,
}

impl IpNet {
    /// Creates a network; host bits of `addr` are masked off. Fails if `prefix_len`
    /// exceeds 32 (IPv4) or 128 (IPv6).
    pub fn new(addr: IpAddr, prefix_len: u8) -> Result<IpNet, InvalidCidr> {
        let max = if addr.is_ipv4() { 32 } else { 128 };
        if prefix_len > max {
            return Err(InvalidCidr {
                input: format!("{addr}/{prefix_len}"),
                reason: "prefix length out of range",
            });
        }
        let (addr, prefix_len) = match addr {
            IpAddr::V6(a) if prefix_len >= 96 && a.to_ipv4_mapped().is_some() => {
                (addr.to_canonical(), prefix_len - 96)
            }
            _ => (addr, prefix_len),
        };
        let addr = mask(addr, prefix_len);
        Ok(IpNet { addr, prefix_len })
    }

    /// The network address (host bits cleared).
    pub fn addr(&self) -> IpAddr {
        self.addr
    }

    /// The prefix length in bits.
    pub fn prefix_len(&self) -> u8 {
        self.prefix_len
    }

    /// Whether `ip` lies in this network. IPv4-mapped IPv6 addresses are treated as IPv4;
    /// an IPv4 address is never inside an IPv6 network and vice versa.
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        ip.is_ipv4() == self.addr.is_ipv4() && mask(ip, self.prefix_len) == self.addr
    }
}

impl FromStr for IpNet {
    type Err = InvalidCidr;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = |reason| InvalidCidr {
            input: s.to_owned(),
            reason,
        };
        let (addr, prefix) = match s.trim().split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s.trim(), None),
        };
        let addr: IpAddr = addr.parse().map_err(|_| err("invalid address"))?;
        let prefix_len = match prefix {
            None if addr.is_ipv4() => 32,
            None => 128,
            Some(p) if p.len() <= 3 && p.bytes().all(|b| b.is_ascii_digit()) => {
                p.parse().map_err(|_| err("invalid prefix length"))?
            }
            Some(_) => return Err(err("invalid prefix length")),
        };
        IpNet::new(addr, prefix_len).map_err(|e| err(e.reason))
    }
}

impl fmt::Display for IpNet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix_len)
    }
}

/// Error for a malformed CIDR string; carries the offending input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalidCidr {
    input: String,
    reason: &'static str,
}

impl InvalidCidr {
    /// The input that was rejected.
    pub fn input(&self) -> &str {
        &self.input
    }
}

impl fmt::Display for InvalidCidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid CIDR {:?}: {}", self.input, self.reason)
    }
}

impl std::error::Error for InvalidCidr {}

/// Which forwarding header to consult.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProxyHeader {
    /// RFC 7239 `Forwarded` (only the `for=` parameter is used).
    Forwarded,
    /// `X-Forwarded-For`: comma-separated addresses, client first.
    XForwardedFor,
    /// `X-Real-IP`: a single client address.
    XRealIp,
}

/// Trusted proxy configuration: which peers may report the client address via headers.
#[derive(Debug, Clone, Default)]
pub struct TrustedProxies {
    nets: Vec<IpNet>,
    headers: Vec<ProxyHeader>,
}

impl TrustedProxies {
    /// No proxy trusted: headers are ignored, the peer address is the client (this is
    /// `Default`).
    pub fn none() -> Self {
        Self::default()
    }

    /// Trust the given networks; consult headers in the default order
    /// `[Forwarded, XForwardedFor, XRealIp]`.
    pub fn new(nets: impl IntoIterator<Item = IpNet>) -> Self {
        let headers = vec![
            ProxyHeader::Forwarded,
            ProxyHeader::XForwardedFor,
            ProxyHeader::XRealIp,
        ];
        let nets = nets.into_iter().collect();
        TrustedProxies { nets, headers }
    }

    /// Parse a list of CIDR strings; the first bad one is returned as the error.
    pub fn from_cidrs<I, S>(cidrs: I) -> Result<Self, InvalidCidr>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let nets = cidrs.into_iter().map(|s| s.as_ref().parse());
        Ok(Self::new(nets.collect::<Result<Vec<IpNet>, _>>()?))
    }

    /// Replace the header order: only these headers are consulted, in this order, and the
    /// first header present in the request wins.
    pub fn headers(mut self, headers: impl IntoIterator<Item = ProxyHeader>) -> Self {
        self.headers = headers.into_iter().collect();
        self
    }

    /// Whether `ip` belongs to a trusted proxy network.
    pub fn is_trusted(&self, ip: IpAddr) -> bool {
        self.nets.iter().any(|net| net.contains(ip))
    }

    /// The client address for a request that arrived from `peer`. Forwarding headers are
    /// honoured only when `peer` itself is trusted.
    pub fn client_ip(&self, peer: IpAddr, headers: &HeaderMap) -> IpAddr {
        // Security model:
        // * Forwarding headers are attacker-controlled unless the hop that wrote them is a
        //   proxy we trust, so if the TCP peer is untrusted every header is ignored.
        // * Each trusted proxy appends the address it saw on the right of X-Forwarded-For /
        //   Forwarded. Walking right-to-left, every trusted entry vouches for the entry to
        //   its left; the first untrusted entry is the client (anything further left may
        //   be forged by it). If every entry is trusted, the leftmost is the best we know.
        // * An unparsable entry (garbage, empty, `unknown`, obfuscated, non-ASCII) breaks
        //   the chain: return the last trusted hop verified so far (or the peer), never a
        //   value to the left of it.
        // * Only the first configured header kind that is present is used, so a client
        //   cannot pick a more favourable header than the one our proxy writes.
        let peer = peer.to_canonical();
        if !self.is_trusted(peer) {
            return peer;
        }
        for kind in &self.headers {
            let found = match kind {
                ProxyHeader::XForwardedFor => self.chain(peer, headers, X_FORWARDED_FOR, xff),
                ProxyHeader::Forwarded => self.chain(peer, headers, FORWARDED, forwarded),
                ProxyHeader::XRealIp => real_ip(peer, headers),
            };
            if let Some(ip) = found {
                return ip.to_canonical();
            }
        }
        peer
    }

    /// Rightmost-untrusted walk over all lines of a list header; `None` if absent.
    fn chain(
        &self,
        peer: IpAddr,
        headers: &HeaderMap,
        name: HeaderName,
        parse: fn(&str, &mut Vec<Option<IpAddr>>),
    ) -> Option<IpAddr> {
        if !headers.contains_key(&name) {
            return None;
        }
        let mut hops = Vec::new();
        for value in headers.get_all(name) {
            match value.to_str() {
                Ok(s) => parse(s, &mut hops),
                Err(_) => hops.push(None),
            }
        }
        let mut last_trusted = peer;
        for hop in hops.into_iter().rev() {
            match hop {
                Some(ip) if self.is_trusted(ip) => last_trusted = ip,
                Some(ip) => return Some(ip),
                None => break,
            }
        }
        Some(last_trusted)
    }
}

fn xff(line: &str, hops: &mut Vec<Option<IpAddr>>) {
    hops.extend(line.split(',').map(parse_node));
}

fn forwarded(line: &str, hops: &mut Vec<Option<IpAddr>>) {
    hops.extend(split_unquoted(line, ',').into_iter().map(forwarded_for));
}

/// `X-Real-IP`: `None` if absent; the peer if malformed or repeated.
fn real_ip(peer: IpAddr, headers: &HeaderMap) -> Option<IpAddr> {
    let mut values = headers.get_all(X_REAL_IP).iter();
    let first = values.next()?;
    if values.next().is_some() {
        return Some(peer);
    }
    Some(first.to_str().ok().and_then(parse_node).unwrap_or(peer))
}

/// The address in one `Forwarded` element's `for=` parameter, if usable.
fn forwarded_for(element: &str) -> Option<IpAddr> {
    let mut found = None;
    for pair in split_unquoted(element, ';') {
        if pair.trim().is_empty() {
            continue;
        }
        let (name, value) = pair.split_once('=')?;
        if name.trim().eq_ignore_ascii_case("for") {
            if found.is_some() {
                return None; // a repeated parameter is malformed
            }
            found = Some(value.trim());
        }
    }
    parse_node(&unquote(found?)?)
}

/// Splits on `sep` outside of double-quoted strings (honouring backslash escapes).
fn split_unquoted(s: &str, sep: char) -> Vec<&str> {
    let mut parts = Vec::new();
    let (mut start, mut in_quotes, mut escaped) = (0, false, false);
    for (i, c) in s.char_indices() {
        if escaped {
            escaped = false;
        } else if in_quotes {
            escaped = c == '\\';
            in_quotes = c != '"';
        } else if c == '"' {
            in_quotes = true;
        } else if c == sep {
            parts.push(s.get(start..i).unwrap_or_default());
            start = i + c.len_utf8();
        }
    }
    parts.push(s.get(start..).unwrap_or_default());
    parts
}

/// Decodes a token or a quoted-string; `None` if malformed.
fn unquote(v: &str) -> Option<String> {
    let Some(inner) = v.strip_prefix('"') else {
        return (!v.contains(['"', '\\'])).then(|| v.to_owned());
    };
    let (mut out, mut chars) = (String::new(), inner.chars());
    while let Some(c) = chars.next() {
        match c {
            '\\' => out.push(chars.next()?),
            '"' => return chars.next().is_none().then_some(out),
            c => out.push(c),
        }
    }
    None // no closing quote
}

/// Parses `1.2.3.4`, `1.2.3.4:80`, `::1`, `[::1]` or `[::1]:80` (surrounding whitespace
/// allowed). `unknown`, obfuscated identifiers and anything else yield `None`.
fn parse_node(s: &str) -> Option<IpAddr> {
    let s = s.trim();
    if let Some((host, after)) = s.strip_prefix('[').and_then(|r| r.split_once(']')) {
        let ip: Ipv6Addr = host.parse().ok()?;
        let port_ok = after.is_empty() || after.strip_prefix(':').is_some_and(valid_port);
        return port_ok.then_some(IpAddr::V6(ip));
    }
    if let Ok(ip) = s.parse::<IpAddr>() {
        return Some(ip);
    }
    let (host, port) = s.split_once(':')?;
    let ip: Ipv4Addr = host.parse().ok()?;
    valid_port(port).then_some(IpAddr::V4(ip))
}

/// A decimal port, or an RFC 7239 obfuscated port (`_` then ALPHA / DIGIT / `._-`).
fn valid_port(p: &str) -> bool {
    match p.strip_prefix('_') {
        Some(obf) => {
            let ok = |b: u8| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-');
            !obf.is_empty() && obf.bytes().all(ok)
        }
        None => p.bytes().all(|b| b.is_ascii_digit()) && p.parse::<u16>().is_ok(),
    }
}

/// Mask an address to its group: IPv4 to `v4_prefix` bits, IPv6 to `v6_prefix` bits (so
/// all of one /64 share a key). IPv4-mapped IPv6 is first converted to IPv4. Prefixes
/// above 32/128 are clamped.
pub fn group_ip(ip: IpAddr, v4_prefix: u8, v6_prefix: u8) -> IpAddr {
    let ip = ip.to_canonical();
    mask(ip, if ip.is_ipv4() { v4_prefix } else { v6_prefix })
}

/// Clears all but the first `prefix` bits (clamped to the address width).
fn mask(ip: IpAddr, prefix: u8) -> IpAddr {
    match ip {
        IpAddr::V4(a) => {
            let mask = u32::MAX.checked_shl(32 - u32::from(prefix.min(32)));
            IpAddr::V4(Ipv4Addr::from(u32::from(a) & mask.unwrap_or(0)))
        }
        IpAddr::V6(a) => {
            let mask = u128::MAX.checked_shl(128 - u32::from(prefix.min(128)));
            IpAddr::V6(Ipv6Addr::from(u128::from(a) & mask.unwrap_or(0)))
        }
    }
}

#[cfg(test)]
mod tests {
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

    fn run(p: &TrustedProxies, peer: &str, pairs: &[(&'static str, &[u8])]) -> IpAddr {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, HeaderValue::from_bytes(v).unwrap());
        }
        p.client_ip(ip(peer), &h)
    }

    /// `(peer, header, value, expected client)`
    fn check(p: &TrustedProxies, cases: &[(&str, &'static str, &str, &str)]) {
        for &(peer, name, value, want) in cases {
            let got = run(p, peer, &[(name, value.as_bytes())]);
            assert_eq!(got, ip(want), "peer {peer}, {name}: {value}");
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
        for bad in [
            "",
            " ",
            "garbage",
            "10.0.0/8",
            "1.2.3.4/33",
            "::/129",
            "1.2.3.4/",
            "1.2.3.4/+8",
            "1.2.3.4/8/8",
            "/8",
            "1.2.3.4/0008",
            "1.2.3.4/x",
        ] {
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
        let spoof: [(&str, &[u8]); 3] =
            [(FWD, b"for=1.1.1.1"), (XFF, b"2.2.2.2"), (XRI, b"3.3.3.3")];
        assert_eq!(run(&TrustedProxies::default(), PEER, &spoof), ip(PEER));
        assert_eq!(
            run(&TrustedProxies::none(), "::ffff:1.2.3.4", &spoof),
            ip("1.2.3.4")
        );
        assert_eq!(run(&proxies(), "203.0.113.9", &spoof), ip("203.0.113.9"));
        assert_eq!(run(&proxies(), "::ffff:10.0.0.1", &spoof), ip("1.1.1.1"));
    }

    #[test]
    fn x_forwarded_for() {
        check(
            &proxies(),
            &[
                (PEER, XFF, "6.6.6.6, 198.51.100.7, 10.0.0.2", "198.51.100.7"),
                (PEER, XFF, "::ffff:5.5.5.5", "5.5.5.5"),
                (PEER, XFF, "1.2.3.4:5678, 10.0.0.2:80", "1.2.3.4"),
                (
                    PEER,
                    XFF,
                    "[2001:db9::1]:8080, [2001:db8::1]",
                    "2001:db9::1",
                ),
                (PEER, XFF, " 2001:db9::2 ,\t2001:db8::5 ", "2001:db9::2"),
                (PEER, XFF, "10.0.0.5, 10.0.0.4, 10.0.0.3", "10.0.0.5"),
                (
                    PEER,
                    XFF,
                    "6.6.6.6, garbage, 10.0.0.3, 10.0.0.2",
                    "10.0.0.3",
                ),
                (PEER, XFF, "6.6.6.6,,10.0.0.7", "10.0.0.7"),
                (PEER, XFF, "6.6.6.6, unknown", PEER),
                (PEER, XFF, "", PEER),
                (PEER, XFF, "1.2.3.4:99999", PEER),
                (PEER, XFF, "[::1", PEER),
                (PEER, XFF, "[::1]x", PEER),
            ],
        );
        let lines: [(&str, &[u8]); 2] =
            [(XFF, b"6.6.6.6, 198.51.100.7"), (XFF, b"10.0.0.3,10.0.0.2")];
        assert_eq!(run(&proxies(), PEER, &lines), ip("198.51.100.7"));
        let lines: [(&str, &[u8]); 2] = [(XFF, b"10.0.0.9"), (XFF, b"7.7.7.7")];
        assert_eq!(run(&proxies(), PEER, &lines), ip("7.7.7.7"));
        let lines: [(&str, &[u8]); 3] =
            [(XFF, b"6.6.6.6"), (XFF, b"1.1.1.1\xff"), (XFF, b"10.0.0.8")];
        assert_eq!(run(&proxies(), PEER, &lines), ip("10.0.0.8"));
    }

    #[test]
    fn forwarded() {
        check(
            &proxies(),
            &[
                (
                    PEER,
                    FWD,
                    "for=192.0.2.60;proto=http;by=203.0.113.43",
                    "192.0.2.60",
                ),
                (
                    PEER,
                    FWD,
                    r#"for="[2001:db9:cafe::17]:4711""#,
                    "2001:db9:cafe::17",
                ),
                (
                    PEER,
                    FWD,
                    r#"for="192.0.2.43:47011", for=10.0.0.2"#,
                    "192.0.2.43",
                ),
                (
                    PEER,
                    FWD,
                    "for=6.6.6.6, for=_hidden, for=10.0.0.2",
                    "10.0.0.2",
                ),
                (PEER, FWD, "for=6.6.6.6, for=unknown", PEER),
                (PEER, FWD, "proto=https;For=198.51.100.1", "198.51.100.1"),
                (PEER, FWD, "FOR=198.51.100.2", "198.51.100.2"),
                (
                    PEER,
                    FWD,
                    r#"for=1.1.1.1;x="a,b;c", for=10.0.0.3"#,
                    "1.1.1.1",
                ),
                (PEER, FWD, r#"for=6.6.6.6, by="a,for=7.7.7.7""#, PEER),
                (PEER, FWD, r#"for=6.6.6.6, for="1.2.3.4"#, PEER),
                (PEER, FWD, "for=1.1.1.1;for=2.2.2.2", PEER),
                (PEER, FWD, r#"for="\1.2.3.4:_obf""#, "1.2.3.4"),
                (PEER, FWD, "for=10.0.0.9, for=10.0.0.8", "10.0.0.9"),
            ],
        );
        let lines: [(&str, &[u8]); 2] = [(FWD, b"for=5.5.5.5"), (FWD, b"for=10.0.0.4")];
        assert_eq!(run(&proxies(), PEER, &lines), ip("5.5.5.5"));
    }

    #[test]
    fn header_order() {
        let all: [(&str, &[u8]); 3] = [(XFF, b"2.2.2.2"), (FWD, b"for=1.1.1.1"), (XRI, b"3.3.3.3")];
        assert_eq!(run(&proxies(), PEER, &all), ip("1.1.1.1"));
        let p = proxies().headers([ProxyHeader::XForwardedFor, ProxyHeader::Forwarded]);
        assert_eq!(run(&p, PEER, &all), ip("2.2.2.2"));
        let p = proxies().headers([ProxyHeader::XRealIp]);
        assert_eq!(run(&p, PEER, &all), ip("3.3.3.3"));
        assert_eq!(run(&proxies().headers([]), PEER, &all), ip(PEER));
        let present: [(&str, &[u8]); 2] = [(FWD, b"for=_hidden"), (XFF, b"2.2.2.2")];
        assert_eq!(run(&proxies(), PEER, &present), ip(PEER));
        assert_eq!(run(&proxies(), PEER, &[]), ip(PEER));
    }

    #[test]
    fn x_real_ip() {
        let p = proxies().headers([ProxyHeader::XRealIp]);
        check(
            &p,
            &[
                (PEER, XRI, "[2001:db9::3]:443", "2001:db9::3"),
                (PEER, XRI, "198.51.100.4:80", "198.51.100.4"),
                ("8.8.8.8", XRI, "1.1.1.1", "8.8.8.8"),
                (PEER, XRI, "nope", PEER),
            ],
        );
        let two: [(&str, &[u8]); 2] = [(XRI, b"1.1.1.1"), (XRI, b"2.2.2.2")];
        assert_eq!(run(&p, PEER, &two), ip(PEER));
        assert_eq!(run(&p, PEER, &[(XRI, b"1.1.1.1\x80")]), ip(PEER));
    }

    #[test]
    fn grouping() {
        for (addr, v4, v6, want) in [
            ("192.0.2.77", 24, 64, "192.0.2.0"),
            ("192.0.2.77", 32, 64, "192.0.2.77"),
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
}
