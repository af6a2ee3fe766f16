//! Where HTTP notifications may go. A webhook URL is chosen by whoever
//! holds an admin key; without this policy a channel could make the
//! server post to its own loopback services, the private network or a
//! cloud metadata endpoint, and the delivery result would tell what
//! answered there.
//!
//! Loopback, private (RFC 1918, `fc00::/7`), link-local, shared (CGNAT
//! `100.64.0.0/10`), multicast, broadcast, unspecified and reserved
//! addresses, the same in IPv4-mapped and NAT64 IPv6 forms, and known
//! cloud metadata addresses are refused unless a network in
//! `alerts.allowed_networks` contains them. The check runs on every
//! connection: [`GuardedResolver`] drops forbidden addresses from each
//! DNS answer, and IP-literal hosts (which are never resolved) are
//! checked by [`Destinations::check_url`] before a request is made.
//!
//! Not here: SMTP, whose relay is normally on loopback or the private
//! network (docs/alert-channels.md says why it is left alone).

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::str::FromStr;
use std::sync::Arc;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// An IP network in CIDR form (`127.0.0.0/8`, `fd00::/8`); a bare address
/// is the network of that address alone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Network {
    addr: IpAddr,
    prefix: u8,
}

impl Network {
    /// Whether `ip` is in this network (an IPv4 network also contains the
    /// IPv4-mapped IPv6 form of its addresses).
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

impl FromStr for Network {
    type Err = String;

    fn from_str(text: &str) -> Result<Network, String> {
        let (addr, prefix) = match text.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (text, None),
        };
        let addr: IpAddr = addr.parse().map_err(|_| {
            format!("{text:?} is not a network: write an address and a prefix length, e.g. 10.1.0.0/16")
        })?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => max,
            Some(p) => p
                .parse::<u8>()
                .ok()
                .filter(|p| *p <= max)
                .ok_or_else(|| format!("{text:?}: the prefix length must be 0 to {max}"))?,
        };
        Ok(Network { addr, prefix })
    }
}

impl fmt::Display for Network {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

impl Serialize for Network {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Network {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Network, D::Error> {
        let text = String::deserialize(d)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// The IPv4 address inside an IPv4-mapped (`::ffff:a.b.c.d`) or NAT64
/// (`64:ff9b::a.b.c.d`) IPv6 address, which reach that IPv4 host.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return IpAddr::V4(v4);
            }
            let s = v6.segments();
            if s[..6] == [0x64, 0xff9b, 0, 0, 0, 0] {
                let [a, b, c, d] = [s[6] >> 8, s[6] & 0xff, s[7] >> 8, s[7] & 0xff].map(|x| x as u8);
                return IpAddr::V4(Ipv4Addr::new(a, b, c, d));
            }
            ip
        }
        v4 => v4,
    }
}

/// Addresses of cloud metadata services that are not in a forbidden
/// range already (169.254.169.254 is link-local, fd00:ec2::254 unique
/// local, 100.100.100.200 shared).
const METADATA: &[Ipv4Addr] = &[Ipv4Addr::new(168, 63, 129, 16)];

/// Why `ip` is no place for a notification, if it is not.
pub fn forbidden(ip: IpAddr) -> Option<&'static str> {
    match canonical(ip) {
        IpAddr::V4(v4) => forbidden_v4(v4),
        IpAddr::V6(v6) => forbidden_v6(v6),
    }
}

fn forbidden_v4(ip: Ipv4Addr) -> Option<&'static str> {
    let [a, b, c, _] = ip.octets();
    Some(if ip.is_unspecified() || a == 0 {
        "unspecified"
    } else if ip.is_loopback() {
        "loopback"
    } else if ip.is_private() {
        "private network"
    } else if ip.is_link_local() {
        "link-local (cloud metadata)"
    } else if a == 100 && (64..128).contains(&b) {
        "shared address space (CGNAT)"
    } else if ip.is_broadcast() {
        "broadcast"
    } else if ip.is_multicast() {
        "multicast"
    } else if a >= 240 || (a == 192 && b == 0 && c == 0) || (a == 198 && (18..20).contains(&b)) {
        "reserved"
    } else if METADATA.contains(&ip) {
        "cloud metadata"
    } else {
        return None;
    })
}

fn forbidden_v6(ip: Ipv6Addr) -> Option<&'static str> {
    let first = ip.segments()[0];
    Some(if ip.is_unspecified() {
        "unspecified"
    } else if ip.is_loopback() {
        "loopback"
    } else if first & 0xfe00 == 0xfc00 {
        "private network (unique local)"
    } else if first & 0xffc0 == 0xfe80 || first & 0xffc0 == 0xfec0 {
        "link-local"
    } else if ip.is_multicast() {
        "multicast"
    } else if ip.segments()[..6] == [0; 6] {
        // ::a.b.c.d, the deprecated IPv4-compatible form.
        "reserved"
    } else {
        return None;
    })
}

/// A destination refused by the policy.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{host} is {reason} ({ip}); alerts.allowed_networks can allow it")]
pub struct Refused {
    pub host: String,
    pub ip: IpAddr,
    pub reason: &'static str,
}

/// The policy: every address but the forbidden ones, plus the networks
/// the operator allowed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Destinations {
    allowed: Vec<Network>,
}

impl Destinations {
    pub fn new(allowed: Vec<Network>) -> Destinations {
        Destinations { allowed }
    }

    /// Whether `host`, at `ip`, may be reached.
    pub fn check(&self, host: &str, ip: IpAddr) -> Result<(), Refused> {
        let Some(reason) = forbidden(ip) else {
            return Ok(());
        };
        if self.allowed.iter().any(|n| n.contains(ip)) {
            return Ok(());
        }
        Err(Refused {
            host: host.to_string(),
            ip,
            reason,
        })
    }

    /// Check the host of `url` when it is an IP address (in any form the
    /// URL standard reads: `2130706433` and `0x7f.1` are 127.0.0.1). A
    /// name passes here; its addresses are checked when it is resolved.
    /// Errors say why, without the URL (which may hold a token).
    pub fn check_url(&self, url: &str) -> Result<(), String> {
        let parsed = reqwest::Url::parse(url).map_err(|e| format!("not a valid URL: {e}"))?;
        let ip = match parsed.host() {
            Some(url::Host::Ipv4(v4)) => IpAddr::V4(v4),
            Some(url::Host::Ipv6(v6)) => IpAddr::V6(v6),
            Some(url::Host::Domain(_)) => return Ok(()),
            None => return Err("has no host".into()),
        };
        self.check(&ip.to_string(), ip).map_err(|r| r.to_string())
    }
}

/// A DNS resolver that keeps only the addresses [`Destinations`] allows,
/// so a name that resolves to a forbidden address is never connected to,
/// whatever DNS says at the time of the request.
#[derive(Debug, Clone)]
pub struct GuardedResolver {
    destinations: Arc<Destinations>,
}

impl GuardedResolver {
    pub fn new(destinations: Arc<Destinations>) -> GuardedResolver {
        GuardedResolver { destinations }
    }
}

impl reqwest::dns::Resolve for GuardedResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let destinations = self.destinations.clone();
        Box::pin(async move {
            let host = name.as_str().to_string();
            let found: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let mut refused = None;
            let kept: Vec<SocketAddr> = found
                .into_iter()
                .filter(|a| match destinations.check(&host, a.ip()) {
                    Ok(()) => true,
                    Err(r) => {
                        refused.get_or_insert(r);
                        false
                    }
                })
                .collect();
            match (kept.is_empty(), refused) {
                (true, Some(r)) => Err(Box::new(r) as Box<dyn std::error::Error + Send + Sync>),
                _ => Ok(Box::new(kept.into_iter()) as reqwest::dns::Addrs),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn check(ip: &str, expected: Option<&str>) {
        assert_eq!(forbidden(ip.parse().unwrap()), expected, "{ip}");
    }

    #[test]
    fn every_forbidden_class_is_named() {
        for (ip, reason) in [
            ("127.0.0.1", Some("loopback")),
            ("127.255.0.9", Some("loopback")),
            ("::1", Some("loopback")),
            ("0.0.0.0", Some("unspecified")),
            ("::", Some("unspecified")),
            ("10.1.2.3", Some("private network")),
            ("172.16.0.1", Some("private network")),
            ("172.31.255.255", Some("private network")),
            ("192.168.1.1", Some("private network")),
            ("fc00::1", Some("private network (unique local)")),
            ("fd00:ec2::254", Some("private network (unique local)")),
            ("169.254.169.254", Some("link-local (cloud metadata)")),
            ("fe80::1", Some("link-local")),
            ("100.64.0.1", Some("shared address space (CGNAT)")),
            ("100.100.100.200", Some("shared address space (CGNAT)")),
            ("100.127.255.255", Some("shared address space (CGNAT)")),
            ("224.0.0.1", Some("multicast")),
            ("ff02::1", Some("multicast")),
            ("255.255.255.255", Some("broadcast")),
            ("240.0.0.1", Some("reserved")),
            ("168.63.129.16", Some("cloud metadata")),
            ("::ffff:127.0.0.1", Some("loopback")),
            ("::ffff:169.254.169.254", Some("link-local (cloud metadata)")),
            ("64:ff9b::a00:1", Some("private network")),
            ("::127.0.0.1", Some("reserved")),
            // Public neighbours of the forbidden ranges.
            ("100.63.255.255", None),
            ("100.128.0.0", None),
            ("172.32.0.1", None),
            ("93.184.215.14", None),
            ("2606:4700::1", None),
            ("::ffff:93.184.215.14", None),
        ] {
            check(ip, reason);
        }
    }

    #[test]
    fn ip_literal_hosts_are_checked_in_every_form() {
        let d = Destinations::default();
        for url in [
            "http://127.0.0.1:6379/",
            "http://2130706433/",
            "http://0x7f.1/",
            "http://127.1/",
            "http://[::1]/",
            "http://[::ffff:7f00:1]/",
            "http://169.254.169.254/latest/meta-data/",
            "http://10.0.0.8/",
            "http://0.0.0.0:8080/",
        ] {
            let e = d.check_url(url).unwrap_err();
            assert!(e.contains("alerts.allowed_networks"), "{url}: {e}");
        }
        assert!(d
            .check_url("http://2130706433/")
            .unwrap_err()
            .starts_with("127.0.0.1 is loopback"));
        d.check_url("https://hooks.slack.com/services/x").unwrap();
        d.check_url("http://localhost:9/").unwrap();
        d.check_url("http://93.184.215.14/").unwrap();
    }

    #[test]
    fn allowed_networks_let_forbidden_addresses_through() {
        let d = Destinations::new(vec!["127.0.0.0/8".parse().unwrap(), "fd00::/8".parse().unwrap()]);
        d.check_url("http://127.0.0.1:9/").unwrap();
        d.check_url("http://[::ffff:127.0.0.2]/").unwrap();
        d.check_url("http://[fd12::1]/").unwrap();
        d.check_url("http://[::1]/").unwrap_err();
        d.check_url("http://10.0.0.1/").unwrap_err();
        let one: Network = "10.0.0.1".parse().unwrap();
        assert_eq!(one.to_string(), "10.0.0.1/32");
        assert!(one.contains("10.0.0.1".parse().unwrap()));
        assert!(!one.contains("10.0.0.2".parse().unwrap()));
        let all: Network = "0.0.0.0/0".parse().unwrap();
        assert!(all.contains("127.0.0.1".parse().unwrap()));
        assert!("10.0.0.0/33".parse::<Network>().unwrap_err().contains("0 to 32"));
        assert!("ten".parse::<Network>().is_err());
    }

    #[tokio::test]
    async fn names_resolving_only_to_forbidden_addresses_are_refused() {
        use reqwest::dns::Resolve;
        let resolver = GuardedResolver::new(Arc::new(Destinations::default()));
        let err = match resolver.resolve("localhost".parse().unwrap()).await {
            Ok(_) => panic!("localhost resolved"),
            Err(e) => e.to_string(),
        };
        assert!(err.starts_with("localhost is loopback"), "{err}");
        let allowing = GuardedResolver::new(Arc::new(Destinations::new(vec![
            "127.0.0.0/8".parse().unwrap(),
            "::1/128".parse().unwrap(),
        ])));
        let Ok(addrs) = allowing.resolve("localhost".parse().unwrap()).await else {
            panic!("localhost refused")
        };
        assert!(addrs.map(|a| a.ip()).all(|ip| ip.is_loopback()));
    }
}
