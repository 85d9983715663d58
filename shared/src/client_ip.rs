//! Which address a request comes from, for per-IP limits. A forwarding
//! header is only believed when the hop that added it is trusted: anyone
//! can send `X-Forwarded-For: 1.2.3.4`, so taking its first entry (as the
//! edge and the region used to) lets a client pick its own rate-limit
//! bucket. The rule, the same at the edge and in the region core: start
//! at the connection's peer and walk `X-Forwarded-For` from the right, one
//! hop per trusted proxy; the first untrusted address is the client.

use core::net::IpAddr;

/// A network like `10.0.0.0/8` or `::1/128` (a bare address is a /32 or
/// /128).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    net: IpAddr,
    prefix: u8,
}

impl Cidr {
    /// Parses `addr` or `addr/prefix`.
    pub fn parse(s: &str) -> Result<Self, String> {
        let s = s.trim();
        let (addr, prefix) = match s.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s, None),
        };
        let net: IpAddr = addr
            .parse()
            .map_err(|_| format!("{s:?} is not an IP address or CIDR"))?;
        let max = if net.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            Some(p) => p
                .parse::<u8>()
                .ok()
                .filter(|p| *p <= max)
                .ok_or_else(|| format!("{s:?} has a bad prefix length"))?,
            None => max,
        };
        Ok(Self { net, prefix })
    }

    /// Whether `ip` is inside this network.
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.net, ip) {
            (IpAddr::V4(n), IpAddr::V4(a)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                u32::from(n) & mask == u32::from(a) & mask
            }
            (IpAddr::V6(n), IpAddr::V6(a)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(n) & mask == u128::from(a) & mask
            }
            _ => false,
        }
    }
}

/// Parses a comma-separated list of networks (empty means none).
pub fn parse_list(s: &str) -> Result<Vec<Cidr>, String> {
    s.split(',')
        .filter(|p| !p.trim().is_empty())
        .map(Cidr::parse)
        .collect()
}

fn trusted(ip: IpAddr, proxies: &[Cidr]) -> bool {
    proxies.iter().any(|c| c.contains(ip))
}

/// The client's address: `peer` unless it is a trusted proxy, in which
/// case the hop it forwarded for (the rightmost `X-Forwarded-For` entry),
/// and so on while the hops are trusted. An entry that is not an address
/// stops the walk at the last good hop.
pub fn resolve(peer: IpAddr, forwarded_for: Option<&str>, proxies: &[Cidr]) -> IpAddr {
    let mut client = peer;
    let mut hops = forwarded_for.unwrap_or("").rsplit(',');
    while trusted(client, proxies) {
        match hops.next().map(str::trim).and_then(|h| h.parse().ok()) {
            Some(hop) => client = hop,
            None => break,
        }
    }
    client
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn networks_match_by_prefix() {
        let c = Cidr::parse("10.1.0.0/16").unwrap();
        assert!(c.contains(ip("10.1.200.3")));
        assert!(!c.contains(ip("10.2.0.1")));
        assert!(!c.contains(ip("::1")));
        assert!(Cidr::parse("0.0.0.0/0").unwrap().contains(ip("8.8.8.8")));
        assert!(Cidr::parse("::1").unwrap().contains(ip("::1")));
        assert!(Cidr::parse("2001:db8::/32")
            .unwrap()
            .contains(ip("2001:db8::5")));
        for bad in ["", "10.0.0.0/33", "x", "10.0.0.0/a", "::/129"] {
            assert!(Cidr::parse(bad).is_err(), "{bad:?}");
        }
        assert_eq!(parse_list(" 127.0.0.1 , ::1").unwrap().len(), 2);
        assert!(parse_list("").unwrap().is_empty());
    }

    #[test]
    fn a_forwarding_header_is_believed_only_from_a_trusted_hop() {
        let proxies = parse_list("127.0.0.1,10.0.0.0/8").unwrap();
        // An untrusted peer's header is ignored: it could say anything.
        assert_eq!(
            resolve(ip("203.0.113.9"), Some("1.2.3.4"), &proxies),
            ip("203.0.113.9")
        );
        // A trusted proxy forwarded for the client.
        assert_eq!(
            resolve(ip("127.0.0.1"), Some("198.51.100.7"), &proxies),
            ip("198.51.100.7")
        );
        // A client that prepends a fake hop does not choose its bucket: the
        // walk stops at the first untrusted address from the right.
        assert_eq!(
            resolve(
                ip("127.0.0.1"),
                Some("1.2.3.4, 198.51.100.7, 10.0.0.2"),
                &proxies
            ),
            ip("198.51.100.7")
        );
        // No header, or garbage: the last good hop.
        assert_eq!(resolve(ip("127.0.0.1"), None, &proxies), ip("127.0.0.1"));
        assert_eq!(
            resolve(ip("127.0.0.1"), Some("nonsense"), &proxies),
            ip("127.0.0.1")
        );
        // Nothing trusted: the peer, always.
        assert_eq!(
            resolve(ip("127.0.0.1"), Some("1.2.3.4"), &[]),
            ip("127.0.0.1")
        );
    }
}
