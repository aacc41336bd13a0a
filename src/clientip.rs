//! The true client IP (METRICS.md §2), shared by every authorization gate:
//! /metrics, /api/v1 and /ws.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use axum::http::HeaderMap;

/// A network in CIDR form.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    addr: IpAddr,
    prefix: u8,
}

impl Cidr {
    pub fn parse(s: &str) -> Option<Cidr> {
        let (ip, prefix) = match s.split_once('/') {
            Some((ip, p)) => (ip.parse::<IpAddr>().ok()?, Some(p.parse::<u8>().ok()?)),
            None => (s.parse::<IpAddr>().ok()?, None),
        };
        let max = if ip.is_ipv4() { 32 } else { 128 };
        let prefix = prefix.unwrap_or(max);
        (prefix <= max).then_some(Cidr { addr: ip, prefix })
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, canonical(ip)) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = u32::MAX.checked_shl(32 - u32::from(self.prefix)).unwrap_or(0);
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = u128::MAX.checked_shl(128 - u32::from(self.prefix)).unwrap_or(0);
                u128::from(net) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }
}

/// Loopback, always trusted, plus the configured proxies.
#[derive(Debug, Clone, Default)]
pub struct TrustedProxies {
    extra: Vec<Cidr>,
}

/// IPv4-mapped IPv6 addresses (`::ffff:127.0.0.1`, as a dual-stack socket
/// reports IPv4 peers) are judged as the IPv4 address they carry.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
        v4 => v4,
    }
}

pub fn is_loopback(ip: IpAddr) -> bool {
    canonical(ip).is_loopback()
}

impl TrustedProxies {
    /// Parses a comma-separated list; returns the entries it could not parse.
    pub fn parse(list: &str) -> (TrustedProxies, Vec<String>) {
        let mut extra = Vec::new();
        let mut ignored = Vec::new();
        for entry in list.split(',').map(str::trim).filter(|e| !e.is_empty()) {
            match Cidr::parse(entry) {
                Some(c) => extra.push(c),
                None => ignored.push(entry.to_string()),
            }
        }
        (TrustedProxies { extra }, ignored)
    }

    pub fn is_trusted(&self, ip: IpAddr) -> bool {
        is_loopback(ip) || self.extra.iter().any(|c| c.contains(ip))
    }

    /// The true client: forwarding headers count only when the TCP peer is
    /// a trusted proxy; X-Forwarded-For is walked right to left past
    /// trusted hops; X-Real-IP is the fallback.
    pub fn client_ip(&self, peer: SocketAddr, headers: &HeaderMap) -> IpAddr {
        let peer = canonical(peer.ip());
        if !self.is_trusted(peer) {
            return peer;
        }
        // Split raw bytes: one entry a client filled with odd bytes must not
        // hide the entries a proxy appended after it.
        let forwarded = headers
            .get_all("x-forwarded-for")
            .iter()
            .flat_map(|v| v.as_bytes().split(|b| *b == b','))
            .collect::<Vec<_>>();
        if let Some(ip) = forwarded.iter().rev().filter_map(|e| parse_forwarded(e)).find(|ip| !self.is_trusted(*ip)) {
            return ip;
        }
        headers
            .get("x-real-ip")
            .and_then(|v| parse_forwarded(v.as_bytes()))
            .filter(|ip| !self.is_trusted(*ip))
            .unwrap_or(peer)
    }
}

/// One forwarding entry: `ip`, `ip:port` or `[v6]:port`.
fn parse_forwarded(entry: &[u8]) -> Option<IpAddr> {
    let e = std::str::from_utf8(entry).ok()?.trim();
    if let Ok(ip) = e.parse::<IpAddr>() {
        return Some(canonical(ip));
    }
    if let Ok(sa) = e.parse::<SocketAddr>() {
        return Some(canonical(sa.ip()));
    }
    if let Some(inner) = e.strip_prefix('[').and_then(|r| r.strip_suffix(']')) {
        return inner.parse::<Ipv6Addr>().ok().map(|ip| canonical(ip.into()));
    }
    let (host, port) = e.rsplit_once(':')?;
    port.parse::<u16>().ok()?;
    host.parse::<Ipv4Addr>().ok().map(IpAddr::V4)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(axum::http::HeaderName::from_bytes(k.as_bytes()).unwrap(), v.parse().unwrap());
        }
        h
    }

    fn peer(s: &str) -> SocketAddr {
        SocketAddr::new(s.parse().unwrap(), 4000)
    }

    #[test]
    fn cidr_matching() {
        let c = Cidr::parse("10.1.0.0/16").unwrap();
        assert!(c.contains("10.1.200.3".parse().unwrap()));
        assert!(!c.contains("10.2.0.1".parse().unwrap()));
        assert!(Cidr::parse("fd00::/8").unwrap().contains("fd12::1".parse().unwrap()));
        assert!(Cidr::parse("0.0.0.0/0").unwrap().contains("8.8.8.8".parse().unwrap()));
        assert!(Cidr::parse("192.168.1.7").unwrap().contains("192.168.1.7".parse().unwrap()));
        assert!(Cidr::parse("10.0.0.0/33").is_none());
        assert!(Cidr::parse("banana").is_none());
    }

    #[test]
    fn invalid_entries_are_reported_and_ignored() {
        let (t, ignored) = TrustedProxies::parse(" 10.0.0.0/8, nope ,, 2001:db8::/32,1.2.3.4/99");
        assert_eq!(ignored, vec!["nope".to_string(), "1.2.3.4/99".to_string()]);
        assert!(t.is_trusted("10.9.9.9".parse().unwrap()));
        assert!(t.is_trusted("2001:db8::5".parse().unwrap()));
    }

    #[test]
    fn untrusted_peer_ignores_headers() {
        let t = TrustedProxies::default();
        let h = headers(&[("x-forwarded-for", "127.0.0.1"), ("x-real-ip", "127.0.0.1")]);
        assert_eq!(t.client_ip(peer("203.0.113.9"), &h), "203.0.113.9".parse::<IpAddr>().unwrap());
    }

    #[test]
    fn loopback_hop_with_public_xff() {
        let t = TrustedProxies::default();
        let h = headers(&[("x-forwarded-for", "198.51.100.7, 127.0.0.1")]);
        assert_eq!(t.client_ip(peer("127.0.0.1"), &h), "198.51.100.7".parse::<IpAddr>().unwrap());
        let h = headers(&[("x-forwarded-for", "[2001:db8::1]:443")]);
        assert_eq!(t.client_ip(peer("::1"), &h), "2001:db8::1".parse::<IpAddr>().unwrap());
        let h = headers(&[("x-forwarded-for", "198.51.100.7:8443, garbage")]);
        assert_eq!(t.client_ip(peer("127.0.0.1"), &h), "198.51.100.7".parse::<IpAddr>().unwrap());
    }

    #[test]
    fn right_to_left_through_trusted_chain() {
        let (t, _) = TrustedProxies::parse("10.0.0.0/8");
        let h = headers(&[("x-forwarded-for", "127.0.0.1, 198.51.100.7, 10.0.0.2"), ("x-forwarded-for", "10.0.0.3")]);
        // The spoofed leftmost 127.0.0.1 is never reached.
        assert_eq!(t.client_ip(peer("10.0.0.4"), &h), "198.51.100.7".parse::<IpAddr>().unwrap());
        let h = headers(&[("x-forwarded-for", "10.0.0.2, 127.0.0.1")]);
        assert_eq!(t.client_ip(peer("10.0.0.4"), &h), "10.0.0.4".parse::<IpAddr>().unwrap());
    }

    #[test]
    fn real_ip_fallback() {
        let t = TrustedProxies::default();
        let h = headers(&[("x-real-ip", "198.51.100.8")]);
        assert_eq!(t.client_ip(peer("127.0.0.1"), &h), "198.51.100.8".parse::<IpAddr>().unwrap());
        let h = headers(&[("x-forwarded-for", "127.0.0.2"), ("x-real-ip", "bad")]);
        assert_eq!(t.client_ip(peer("127.0.0.1"), &h), "127.0.0.1".parse::<IpAddr>().unwrap());
    }

    #[test]
    fn odd_bytes_skip_only_their_entry() {
        let t = TrustedProxies::default();
        let mut h = HeaderMap::new();
        h.append("x-forwarded-for", axum::http::HeaderValue::from_bytes(b"\xff, 203.0.113.7").unwrap());
        assert_eq!(t.client_ip(peer("127.0.0.1"), &h), "203.0.113.7".parse::<IpAddr>().unwrap());
        let mut h = HeaderMap::new();
        h.append("x-forwarded-for", axum::http::HeaderValue::from_bytes(b"\xfe\xff").unwrap());
        h.append("x-real-ip", axum::http::HeaderValue::from_bytes(b"198.51.100.3").unwrap());
        assert_eq!(t.client_ip(peer("127.0.0.1"), &h), "198.51.100.3".parse::<IpAddr>().unwrap());
    }

    #[test]
    fn mapped_v4_is_loopback() {
        assert!(is_loopback("::ffff:127.0.0.1".parse().unwrap()));
        assert!(!is_loopback("::ffff:8.8.8.8".parse().unwrap()));
    }
}
