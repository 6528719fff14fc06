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
    !p.is_empty() && p.len() <= 5 && p.bytes().all(|b| b.is_ascii_digit())
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
