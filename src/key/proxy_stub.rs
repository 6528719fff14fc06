//! temporary stub
#![allow(missing_docs, dead_code)]
use http::HeaderMap;
use std::net::IpAddr;
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IpNet;
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalidCidr;
impl std::fmt::Display for InvalidCidr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("x")
    }
}
impl std::error::Error for InvalidCidr {}
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProxyHeader {
    Forwarded,
}
#[derive(Debug, Clone, Default)]
pub struct TrustedProxies;
impl TrustedProxies {
    pub fn none() -> Self {
        TrustedProxies
    }
    pub fn from_cidrs<I, S>(_c: I) -> Result<Self, InvalidCidr>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        Ok(TrustedProxies)
    }
    pub fn client_ip(&self, peer: IpAddr, _h: &HeaderMap) -> IpAddr {
        peer
    }
}
pub fn group_ip(ip: IpAddr, _a: u8, b: u8) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => {
            let m = u128::MAX.checked_shl(128 - b as u32).unwrap_or(0);
            IpAddr::V6((u128::from(v6) & m).into())
        }
        v => v,
    }
}
