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
/// stored as the equivalent IPv4 network, and host bits are cleared, so a network compares
/// and prints as the set of addresses it covers.
///
/// Parsing is strict where a lenient reading would widen trust: addresses as the standard
/// library reads them (no leading zeros, which other parsers take as octal), prefix lengths
/// of at most three decimal digits, surrounding whitespace only.
///
/// ```
/// use tower_throttle::key::IpNet;
///
/// let net: IpNet = "10.1.2.3/8".parse()?;
/// assert_eq!(net.to_string(), "10.0.0.0/8");
/// assert!(net.contains("::ffff:10.9.9.9".parse().unwrap()));
/// assert!("010.0.0.0/8".parse::<IpNet>().is_err());
/// // From another network type, such as the `ipnet` crate's:
/// let same = IpNet::new("10.0.0.0".parse().unwrap(), 8)?;
/// assert_eq!(net, same);
/// # Ok::<(), tower_throttle::key::InvalidCidr>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
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
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
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

    /// Trust the given networks and read `X-Forwarded-For` from them (what nginx, HAProxy,
    /// cloud load balancers and most proxies write).
    ///
    /// Only one header is consulted by default on purpose: a proxy passes through headers
    /// it does not write itself, so consulting a second kind would let a client forge it.
    /// If your proxy writes `Forwarded` or `X-Real-IP` instead, say so with
    /// [`headers`](Self::headers).
    pub fn new(nets: impl IntoIterator<Item = IpNet>) -> Self {
        let headers = vec![ProxyHeader::XForwardedFor];
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

    /// Replace the headers consulted: only these, in this order, and the first one present
    /// in the request wins. List only headers your trusted proxies always write (or
    /// overwrite): any other one arrives from the client untouched.
    pub fn headers(mut self, headers: impl IntoIterator<Item = ProxyHeader>) -> Self {
        self.headers = headers.into_iter().collect();
        self
    }

    /// Writes the networks and headers (see [`KeyExtractor::fingerprint`](super::KeyExtractor::fingerprint)).
    pub(crate) fn fingerprint(&self, mut state: &mut dyn std::hash::Hasher) {
        use std::hash::Hash;
        // Without a trusted network no header is read: the headers make no difference.
        self.nets.hash(&mut state);
        if !self.nets.is_empty() {
            self.headers.hash(&mut state);
        }
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
    fn chain(&self, peer: IpAddr, hdrs: &HeaderMap, name: HeaderName, f: Parse) -> Option<IpAddr> {
        if !hdrs.contains_key(&name) {
            return None;
        }
        let mut hops = Vec::new();
        for value in hdrs.get_all(name) {
            match value.to_str() {
                Ok(s) => f(s, &mut hops),
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

/// Appends one header line's hops (`None` = unparsable) to the list.
type Parse = fn(&str, &mut Vec<Option<IpAddr>>);

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
pub(crate) fn group_ip(ip: IpAddr, v4_prefix: u8, v6_prefix: u8) -> IpAddr {
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
mod tests;
