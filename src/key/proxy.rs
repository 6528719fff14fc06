//! Client address resolution behind trusted reverse proxies.
//!
//! [`TrustedProxies`] decides which peer addresses may vouch for a client through
//! `Forwarded`, `X-Forwarded-For` or `X-Real-IP`, and [`group_ip`] masks addresses so that,
//! for example, a whole IPv6 /64 shares one rate-limit key.

use std::borrow::Cow;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

use http::header::{HeaderName, FORWARDED};
use http::HeaderMap;

const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
const X_REAL_IP: HeaderName = HeaderName::from_static("x-real-ip");

/// An IP network in CIDR notation (e.g. `10.0.0.0/8`, `2001:db8::/32`, or a bare address
/// meaning /32 or /128).
///
/// An IPv4-mapped IPv6 network (`::ffff:a.b.c.d/n` with `n >= 96`) is stored as the
/// equivalent IPv4 network.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IpNet {
    addr: IpAddr,
    prefix_len: u8,
}

impl IpNet {
    /// Creates a network; host bits of `addr` are masked off.
    ///
    /// Fails if `prefix_len` exceeds 32 (IPv4) or 128 (IPv6).
    pub fn new(addr: IpAddr, prefix_len: u8) -> Result<IpNet, InvalidCidr> {
        if prefix_len > max_prefix(addr) {
            return Err(InvalidCidr {
                input: format!("{addr}/{prefix_len}"),
                reason: "prefix length out of range",
            });
        }
        Ok(Self::from_parts(addr, prefix_len))
    }

    fn from_parts(addr: IpAddr, prefix_len: u8) -> IpNet {
        match addr {
            IpAddr::V4(a) => IpNet {
                addr: IpAddr::V4(mask_v4(a, prefix_len)),
                prefix_len,
            },
            IpAddr::V6(a) => match a.to_ipv4_mapped() {
                Some(v4) if prefix_len >= 96 => IpNet {
                    addr: IpAddr::V4(mask_v4(v4, prefix_len - 96)),
                    prefix_len: prefix_len - 96,
                },
                _ => IpNet {
                    addr: IpAddr::V6(mask_v6(a, prefix_len)),
                    prefix_len,
                },
            },
        }
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
        match (self.addr, ip.to_canonical()) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => mask_v4(ip, self.prefix_len) == net,
            (IpAddr::V6(net), IpAddr::V6(ip)) => mask_v6(ip, self.prefix_len) == net,
            _ => false,
        }
    }
}

impl FromStr for IpNet {
    type Err = InvalidCidr;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = |reason| InvalidCidr {
            input: s.to_owned(),
            reason,
        };
        let t = s.trim();
        if t.is_empty() {
            return Err(err("empty input"));
        }
        let (addr, prefix) = match t.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (t, None),
        };
        let addr: IpAddr = addr.parse().map_err(|_| err("invalid address"))?;
        let max = max_prefix(addr);
        let prefix_len = match prefix {
            None => max,
            Some(p) if !p.is_empty() && p.len() <= 3 && p.bytes().all(|b| b.is_ascii_digit()) => {
                p.parse().map_err(|_| err("invalid prefix length"))?
            }
            Some(_) => return Err(err("invalid prefix length")),
        };
        if prefix_len > max {
            return Err(err("prefix length out of range"));
        }
        Ok(Self::from_parts(addr, prefix_len))
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
    /// The input that failed to parse.
    pub fn input(&self) -> &str {
        &self.input
    }

    /// Why it was rejected.
    pub fn reason(&self) -> &'static str {
        self.reason
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
        TrustedProxies {
            nets: nets.into_iter().collect(),
            headers: vec![
                ProxyHeader::Forwarded,
                ProxyHeader::XForwardedFor,
                ProxyHeader::XRealIp,
            ],
        }
    }

    /// Parse a list of CIDR strings; the first bad one is returned as the error.
    pub fn from_cidrs<I, S>(cidrs: I) -> Result<Self, InvalidCidr>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let nets = cidrs
            .into_iter()
            .map(|s| s.as_ref().parse())
            .collect::<Result<Vec<IpNet>, _>>()?;
        Ok(Self::new(nets))
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

    /// The client address for a request that arrived from `peer`.
    ///
    /// Forwarding headers are only honoured when `peer` itself is trusted; see the
    /// module source for the exact algorithm.
    pub fn client_ip(&self, peer: IpAddr, headers: &HeaderMap) -> IpAddr {
        // Security model:
        // * Every forwarding header is attacker-controlled unless the hop that appended it
        //   is a proxy we trust. So if the TCP peer is untrusted, all headers are ignored.
        // * A trusted peer appends the address it saw to the right of X-Forwarded-For /
        //   Forwarded. Walking right-to-left, each trusted entry vouches for the entry to
        //   its left; the first untrusted entry is the client (everything further left
        //   could have been forged by it). If every entry is trusted, the leftmost one is
        //   the best we know.
        // * An unparsable entry (garbage, `unknown`, obfuscated, non-ASCII) breaks the
        //   chain: we return the last trusted hop verified so far (or the peer), never a
        //   value to the left of it.
        // * Only the first configured header kind present is used, so an attacker cannot
        //   pick a more favourable header once a proxy sets one.
        let peer = peer.to_canonical();
        if !self.is_trusted(peer) {
            return peer;
        }
        for kind in &self.headers {
            let ip = match kind {
                ProxyHeader::XForwardedFor => self.xff(peer, headers),
                ProxyHeader::Forwarded => self.forwarded(peer, headers),
                ProxyHeader::XRealIp => real_ip(peer, headers),
            };
            if let Some(ip) = ip {
                return ip.to_canonical();
            }
        }
        peer
    }

    /// Walks hops listed left-to-right, from the right. `None` marks an unparsable hop.
    fn walk(&self, peer: IpAddr, hops: &[Option<IpAddr>]) -> IpAddr {
        let mut last_trusted = peer;
        for hop in hops.iter().rev() {
            match hop {
                None => return last_trusted,
                Some(ip) if self.is_trusted(*ip) => last_trusted = *ip,
                Some(ip) => return *ip,
            }
        }
        last_trusted
    }

    fn xff(&self, peer: IpAddr, headers: &HeaderMap) -> Option<IpAddr> {
        if !headers.contains_key(X_FORWARDED_FOR) {
            return None;
        }
        let mut hops = Vec::new();
        for value in headers.get_all(X_FORWARDED_FOR) {
            match value.to_str() {
                Ok(s) => hops.extend(s.split(',').map(parse_node)),
                Err(_) => hops.push(None),
            }
        }
        Some(self.walk(peer, &hops))
    }

    fn forwarded(&self, peer: IpAddr, headers: &HeaderMap) -> Option<IpAddr> {
        if !headers.contains_key(FORWARDED) {
            return None;
        }
        let mut hops = Vec::new();
        for value in headers.get_all(FORWARDED) {
            match value.to_str() {
                Ok(s) => hops.extend(split_unquoted(s, ',').into_iter().map(forwarded_for)),
                Err(_) => hops.push(None),
            }
        }
        Some(self.walk(peer, &hops))
    }
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
        let pair = pair.trim();
        if pair.is_empty() {
            continue;
        }
        let (name, value) = pair.split_once('=')?;
        if name.trim().eq_ignore_ascii_case("for") {
            if found.is_some() {
                return None; // duplicate parameter: malformed
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
            match c {
                '\\' => escaped = true,
                '"' => in_quotes = false,
                _ => {}
            }
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

/// Decodes a token or an RFC 7230 quoted-string; `None` if malformed.
fn unquote(v: &str) -> Option<Cow<'_, str>> {
    let Some(inner) = v.strip_prefix('"') else {
        return (!v.contains(['"', '\\'])).then_some(Cow::Borrowed(v));
    };
    let mut out = String::with_capacity(inner.len());
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => out.push(chars.next()?),
            '"' => return chars.next().is_none().then_some(Cow::Owned(out)),
            c => out.push(c),
        }
    }
    None // no closing quote
}

/// Parses `1.2.3.4`, `1.2.3.4:80`, `::1`, `[::1]` or `[::1]:80` (surrounding whitespace
/// allowed). `unknown`, obfuscated identifiers and anything else yield `None`.
fn parse_node(s: &str) -> Option<IpAddr> {
    let s = s.trim();
    if let Some(rest) = s.strip_prefix('[') {
        let (host, after) = rest.split_once(']')?;
        let ip: Ipv6Addr = host.parse().ok()?;
        return (after.is_empty() || after.strip_prefix(':').is_some_and(valid_port))
            .then_some(IpAddr::V6(ip));
    }
    if let Ok(ip) = s.parse::<IpAddr>() {
        return Some(ip);
    }
    let (host, port) = s.split_once(':')?;
    let ip: Ipv4Addr = host.parse().ok()?;
    valid_port(port).then_some(IpAddr::V4(ip))
}

/// A decimal port, or an RFC 7239 obfuscated port (`_` followed by ALPHA / DIGIT / `._-`).
fn valid_port(p: &str) -> bool {
    if let Some(obf) = p.strip_prefix('_') {
        return !obf.is_empty()
            && obf
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    }
    !p.is_empty()
        && p.len() <= 5
        && p.bytes().all(|b| b.is_ascii_digit())
        && p.parse::<u16>().is_ok()
}

fn max_prefix(addr: IpAddr) -> u8 {
    if addr.is_ipv4() {
        32
    } else {
        128
    }
}

fn mask_v4(a: Ipv4Addr, prefix: u8) -> Ipv4Addr {
    let mask = u32::MAX
        .checked_shl(32 - u32::from(prefix.min(32)))
        .unwrap_or(0);
    Ipv4Addr::from(u32::from(a) & mask)
}

fn mask_v6(a: Ipv6Addr, prefix: u8) -> Ipv6Addr {
    let mask = u128::MAX
        .checked_shl(128 - u32::from(prefix.min(128)))
        .unwrap_or(0);
    Ipv6Addr::from(u128::from(a) & mask)
}

/// Mask an address to its group: IPv4 to `v4_prefix` bits, IPv6 to `v6_prefix` bits (so
/// all of one /64 share a key). IPv4-mapped IPv6 is first converted to IPv4. Prefixes
/// above 32/128 are clamped.
pub fn group_ip(ip: IpAddr, v4_prefix: u8, v6_prefix: u8) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V4(a) => IpAddr::V4(mask_v4(a, v4_prefix)),
        IpAddr::V6(a) => IpAddr::V6(mask_v6(a, v6_prefix)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn net(s: &str) -> IpNet {
        s.parse().unwrap()
    }

    fn hdrs(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    fn proxies() -> TrustedProxies {
        TrustedProxies::from_cidrs(["10.0.0.0/8", "2001:db8::/32"]).unwrap()
    }

    const PEER: &str = "10.0.0.1";

    fn client(p: &TrustedProxies, pairs: &[(&'static str, &str)]) -> IpAddr {
        p.client_ip(ip(PEER), &hdrs(pairs))
    }

    #[test]
    fn cidr_parsing() {
        let n = net("10.1.2.3/8");
        assert_eq!((n.addr(), n.prefix_len()), (ip("10.0.0.0"), 8));
        assert_eq!(n.to_string(), "10.0.0.0/8");
        assert_eq!(net("192.0.2.7").to_string(), "192.0.2.7/32");
        assert_eq!(net("2001:db8::1/32").to_string(), "2001:db8::/32");
        assert_eq!(net("::1").to_string(), "::1/128");
        assert_eq!(net("::ffff:10.1.2.3/104").to_string(), "10.0.0.0/8");
        assert_eq!(net("0.0.0.0/0").prefix_len(), 0);
        for bad in [
            "10.0.0.0/33",
            "::/129",
            "10.0.0.0/",
            "10.0.0.0/+8",
            "10.0.0.0/8/8",
        ] {
            assert_eq!(bad.parse::<IpNet>().unwrap_err().input(), bad);
        }
        for bad in [
            "",
            "  ",
            "garbage",
            "10.0.0/8",
            "10.0.0.0/x",
            "/8",
            "10.0.0.0/0008",
        ] {
            assert!(bad.parse::<IpNet>().is_err(), "{bad}");
        }
        let e = "1.2.3.4/40".parse::<IpNet>().unwrap_err();
        assert_eq!(e.reason(), "prefix length out of range");
        assert_eq!(
            e.to_string(),
            "invalid CIDR \"1.2.3.4/40\": prefix length out of range"
        );
        assert!(IpNet::new(ip("1.2.3.4"), 33).is_err());
        assert_eq!(IpNet::new(ip("1.2.3.4"), 24).unwrap(), net("1.2.3.0/24"));
        assert_eq!(
            TrustedProxies::from_cidrs(["10.0.0.0/8", "bad", "x"])
                .unwrap_err()
                .input(),
            "bad"
        );
    }

    #[test]
    fn contains_with_mapped() {
        let n = net("10.0.0.0/8");
        assert!(n.contains(ip("10.255.0.1")));
        assert!(n.contains(ip("::ffff:10.9.9.9")));
        assert!(!n.contains(ip("11.0.0.1")));
        assert!(!n.contains(ip("::a00:1")));
        assert!(net("::ffff:10.0.0.0/104").contains(ip("10.1.1.1")));
        assert!(net("2001:db8::/32").contains(ip("2001:db8:ffff::1")));
        assert!(!net("2001:db8::/32").contains(ip("2001:db9::1")));
        assert!(net("0.0.0.0/0").contains(ip("::ffff:1.2.3.4")));
        assert!(!net("::/0").contains(ip("1.2.3.4")));
        assert!(net("::/0").contains(ip("::1")));
    }

    #[test]
    fn default_ignores_all_headers() {
        let h = [
            ("forwarded", "for=1.1.1.1"),
            ("x-forwarded-for", "2.2.2.2"),
            ("x-real-ip", "3.3.3.3"),
        ];
        assert_eq!(client(&TrustedProxies::default(), &h), ip(PEER));
        assert_eq!(client(&TrustedProxies::none(), &h), ip(PEER));
        let mapped = TrustedProxies::none().client_ip(ip("::ffff:1.2.3.4"), &hdrs(&h));
        assert_eq!(mapped, ip("1.2.3.4"));
    }

    #[test]
    fn untrusted_peer_is_client() {
        let h = hdrs(&[("x-forwarded-for", "1.1.1.1"), ("x-real-ip", "3.3.3.3")]);
        assert_eq!(
            proxies().client_ip(ip("203.0.113.9"), &h),
            ip("203.0.113.9")
        );
        assert_eq!(proxies().client_ip(ip(PEER), &h), ip("1.1.1.1"));
        assert_eq!(
            proxies().client_ip(ip("::ffff:10.0.0.1"), &h),
            ip("1.1.1.1")
        );
    }

    #[test]
    fn xff_rightmost_untrusted() {
        let p = proxies();
        let h = [("x-forwarded-for", "6.6.6.6, 198.51.100.7, 10.0.0.2")];
        assert_eq!(client(&p, &h), ip("198.51.100.7"));
        let lines = [
            ("x-forwarded-for", "6.6.6.6, 198.51.100.7"),
            ("x-forwarded-for", "10.0.0.3,10.0.0.2"),
        ];
        assert_eq!(client(&p, &lines), ip("198.51.100.7"));
        let lines = [
            ("x-forwarded-for", "10.0.0.9"),
            ("x-forwarded-for", "7.7.7.7"),
        ];
        assert_eq!(client(&p, &lines), ip("7.7.7.7"));
        assert_eq!(
            client(&p, &[("x-forwarded-for", "::ffff:5.5.5.5")]),
            ip("5.5.5.5")
        );
    }

    #[test]
    fn xff_ports_and_brackets() {
        let p = proxies();
        let x = |v: &str| client(&p, &[("x-forwarded-for", v)]);
        assert_eq!(x("1.2.3.4:5678, 10.0.0.2:80"), ip("1.2.3.4"));
        assert_eq!(x("[2001:db9::1]:8080, [2001:db8::1]"), ip("2001:db9::1"));
        assert_eq!(x(" 2001:db9::2 ,\t2001:db8::5 "), ip("2001:db9::2"));
        assert_eq!(x("1.2.3.4:99999"), ip(PEER));
        assert_eq!(x("[::1"), ip(PEER));
        assert_eq!(x("[::1]x"), ip(PEER));
    }

    #[test]
    fn xff_all_trusted_and_garbage() {
        let p = proxies();
        let x = |v: &str| client(&p, &[("x-forwarded-for", v)]);
        assert_eq!(x("10.0.0.5, 10.0.0.4, 10.0.0.3"), ip("10.0.0.5"));
        assert_eq!(x("6.6.6.6, garbage, 10.0.0.3, 10.0.0.2"), ip("10.0.0.3"));
        assert_eq!(x("6.6.6.6, unknown"), ip(PEER));
        assert_eq!(x("6.6.6.6,,10.0.0.7"), ip("10.0.0.7"));
        assert_eq!(x(""), ip(PEER));
        let mut h = hdrs(&[("x-forwarded-for", "6.6.6.6")]);
        h.append(
            "x-forwarded-for",
            HeaderValue::from_bytes(b"1.1.1.1\xff").unwrap(),
        );
        h.append("x-forwarded-for", HeaderValue::from_static("10.0.0.8"));
        assert_eq!(p.client_ip(ip(PEER), &h), ip("10.0.0.8"));
    }

    #[test]
    fn forwarded_header() {
        let p = proxies();
        let f = |v: &str| client(&p, &[("forwarded", v)]);
        assert_eq!(
            f("for=192.0.2.60;proto=http;by=203.0.113.43"),
            ip("192.0.2.60")
        );
        assert_eq!(
            f(r#"for="[2001:db9:cafe::17]:4711""#),
            ip("2001:db9:cafe::17")
        );
        assert_eq!(
            f(r#"for="192.0.2.43:47011", for=10.0.0.2"#),
            ip("192.0.2.43")
        );
        assert_eq!(f("for=6.6.6.6, for=_hidden, for=10.0.0.2"), ip("10.0.0.2"));
        assert_eq!(f("for=6.6.6.6, for=unknown"), ip(PEER));
        assert_eq!(f("proto=https;For=198.51.100.1"), ip("198.51.100.1"));
        assert_eq!(f("FOR=198.51.100.2"), ip("198.51.100.2"));
        assert_eq!(f(r#"for=1.1.1.1;x="a,b;c", for=10.0.0.3"#), ip("1.1.1.1"));
        assert_eq!(f(r#"for=6.6.6.6, by="a,for=7.7.7.7""#), ip(PEER));
        assert_eq!(f(r#"for=6.6.6.6, for="1.2.3.4"#), ip(PEER));
        assert_eq!(f("for=1.1.1.1;for=2.2.2.2"), ip(PEER));
        assert_eq!(f(r#"for="\1.2.3.4:_obf""#), ip("1.2.3.4"));
        assert_eq!(f("for=10.0.0.9, for=10.0.0.8"), ip("10.0.0.9"));
        let lines = [("forwarded", "for=5.5.5.5"), ("forwarded", "for=10.0.0.4")];
        assert_eq!(client(&p, &lines), ip("5.5.5.5"));
    }

    #[test]
    fn header_order() {
        let h = [
            ("x-forwarded-for", "2.2.2.2"),
            ("forwarded", "for=1.1.1.1"),
            ("x-real-ip", "3.3.3.3"),
        ];
        assert_eq!(client(&proxies(), &h), ip("1.1.1.1"));
        let xff_first = proxies().headers([ProxyHeader::XForwardedFor, ProxyHeader::Forwarded]);
        assert_eq!(client(&xff_first, &h), ip("2.2.2.2"));
        let real = proxies().headers([ProxyHeader::XRealIp]);
        assert_eq!(client(&real, &h), ip("3.3.3.3"));
        let h2 = [("forwarded", "for=_hidden"), ("x-forwarded-for", "2.2.2.2")];
        assert_eq!(client(&proxies(), &h2), ip(PEER));
        assert_eq!(
            client(&proxies(), &[("x-real-ip", "3.3.3.3")]),
            ip("3.3.3.3")
        );
        assert_eq!(client(&proxies().headers([]), &h), ip(PEER));
        assert_eq!(client(&proxies(), &[]), ip(PEER));
    }

    #[test]
    fn x_real_ip() {
        let p = proxies().headers([ProxyHeader::XRealIp]);
        let h = hdrs(&[("x-real-ip", "[2001:db9::3]:443")]);
        assert_eq!(p.client_ip(ip(PEER), &h), ip("2001:db9::3"));
        assert_eq!(p.client_ip(ip("8.8.8.8"), &h), ip("8.8.8.8"));
        assert_eq!(client(&p, &[("x-real-ip", "nope")]), ip(PEER));
        let two = [("x-real-ip", "1.1.1.1"), ("x-real-ip", "2.2.2.2")];
        assert_eq!(client(&p, &two), ip(PEER));
        let mut h = HeaderMap::new();
        h.insert(
            "x-real-ip",
            HeaderValue::from_bytes(b"1.1.1.1\x80").unwrap(),
        );
        assert_eq!(p.client_ip(ip(PEER), &h), ip(PEER));
    }

    #[test]
    fn grouping() {
        assert_eq!(group_ip(ip("192.0.2.77"), 24, 64), ip("192.0.2.0"));
        assert_eq!(group_ip(ip("192.0.2.77"), 32, 64), ip("192.0.2.77"));
        assert_eq!(group_ip(ip("192.0.2.77"), 0, 64), ip("0.0.0.0"));
        assert_eq!(group_ip(ip("192.0.2.77"), 200, 64), ip("192.0.2.77"));
        assert_eq!(
            group_ip(ip("2001:db8:1:2:3:4:5:6"), 32, 64),
            ip("2001:db8:1:2::")
        );
        assert_eq!(group_ip(ip("2001:db8::1"), 32, 128), ip("2001:db8::1"));
        assert_eq!(group_ip(ip("2001:db8::1"), 32, 255), ip("2001:db8::1"));
        assert_eq!(group_ip(ip("2001:db8::1"), 32, 0), ip("::"));
        assert_eq!(group_ip(ip("::ffff:192.0.2.77"), 24, 64), ip("192.0.2.0"));
    }
}
