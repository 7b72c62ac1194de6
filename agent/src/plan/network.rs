//! Pure validation of NAT and host-only networks (what `virsh net-define` or
//! `docker network create` take): the bridge address and the DHCP range.

use std::net::Ipv4Addr;

use ipnetwork::Ipv4Network;
use serde::{Deserialize, Serialize};

/// How guests on a virtual network reach beyond it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum NetMode {
    /// DHCP and DNS from the host, masqueraded to the outside (libvirt's default network).
    Nat,
    /// Guests reach the host and each other, nothing beyond (VMware's host-only).
    Isolated,
}

impl NetMode {
    pub fn as_str(self) -> &'static str {
        match self {
            NetMode::Nat => "nat",
            NetMode::Isolated => "isolated",
        }
    }
}

/// An inclusive range of addresses DHCP hands out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct DhcpRange {
    pub first: Ipv4Addr,
    pub last: Ipv4Addr,
}

impl std::fmt::Display for DhcpRange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}-{}", self.first, self.last)
    }
}

/// Parses the bridge's own address with its prefix, e.g. `192.168.107.254/24`.
pub fn parse_address(text: &str) -> Result<Ipv4Network, String> {
    let net: Ipv4Network = text.parse().map_err(|_| {
        format!("{text:?} is not an IPv4 address with a prefix, like 192.168.107.254/24")
    })?;
    if !text.contains('/') {
        return Err(format!("{text:?} needs a prefix length, like {text}/24"));
    }
    if net.prefix() > 30 {
        return Err(format!(
            "/{} leaves no room for guests; use /30 or shorter",
            net.prefix()
        ));
    }
    if net.ip() == net.network() {
        return Err(format!(
            "{} is the network address of {}/{}; pick a host address such as {}",
            net.ip(),
            net.network(),
            net.prefix(),
            first_host(net)
        ));
    }
    if net.ip() == net.broadcast() {
        return Err(format!(
            "{} is the broadcast address of {}/{}",
            net.ip(),
            net.network(),
            net.prefix()
        ));
    }
    Ok(net)
}

fn first_host(net: Ipv4Network) -> Ipv4Addr {
    Ipv4Addr::from(u32::from(net.network()) + 1)
}

/// Parses `FIRST-LAST` and checks it against the network.
pub fn parse_range(text: &str, address: Ipv4Network) -> Result<DhcpRange, String> {
    let (first, last) = text
        .split_once('-')
        .ok_or_else(|| format!("{text:?} is not a range like 192.168.107.2-192.168.107.100"))?;
    let parse = |s: &str| {
        s.trim()
            .parse::<Ipv4Addr>()
            .map_err(|_| format!("{s:?} in {text:?} is not an IPv4 address"))
    };
    let range = DhcpRange {
        first: parse(first)?,
        last: parse(last)?,
    };
    if u32::from(range.first) > u32::from(range.last) {
        return Err(format!("{text:?} ends before it starts"));
    }
    let subnet =
        Ipv4Network::new(address.network(), address.prefix()).map_err(|e| e.to_string())?;
    for end in [range.first, range.last] {
        if !subnet.contains(end) || end == subnet.network() || end == subnet.broadcast() {
            return Err(format!(
                "{end} is outside the usable addresses of {}/{}",
                subnet.network(),
                subnet.prefix()
            ));
        }
    }
    let own = u32::from(address.ip());
    if (u32::from(range.first)..=u32::from(range.last)).contains(&own) {
        return Err(format!(
            "the range {text} holds the bridge's own address {}",
            address.ip()
        ));
    }
    Ok(range)
}

/// An existing address on the host that overlaps the new network.
pub fn overlap(
    address: Ipv4Network,
    existing: &[(String, ipnetwork::IpNetwork)],
) -> Option<String> {
    let subnet = Ipv4Network::new(address.network(), address.prefix()).ok()?;
    existing.iter().find_map(|(device, net)| match net {
        ipnetwork::IpNetwork::V4(v4) => {
            let other = Ipv4Network::new(v4.network(), v4.prefix()).ok()?;
            (subnet.overlaps(other)).then(|| format!("{v4} on {device}"))
        }
        ipnetwork::IpNetwork::V6(_) => None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr() -> Ipv4Network {
        parse_address("192.168.107.254/24").unwrap()
    }

    #[test]
    fn addresses_must_be_host_addresses_with_a_prefix() {
        assert!(parse_address("192.168.107.1/24").is_ok());
        assert!(parse_address("192.168.107.0/24")
            .unwrap_err()
            .contains("network address"));
        assert!(parse_address("192.168.107.255/24")
            .unwrap_err()
            .contains("broadcast"));
        assert!(parse_address("192.168.107.1")
            .unwrap_err()
            .contains("prefix"));
        assert!(parse_address("192.168.107.1/32")
            .unwrap_err()
            .contains("no room"));
        assert!(parse_address("fd00::1/64").is_err());
    }

    #[test]
    fn ranges_stay_inside_the_subnet_and_off_the_bridge() {
        let r = parse_range("192.168.107.2-192.168.107.100", addr()).unwrap();
        assert_eq!(r.to_string(), "192.168.107.2-192.168.107.100");
        assert!(parse_range("192.168.108.2-192.168.108.9", addr())
            .unwrap_err()
            .contains("outside"));
        assert!(parse_range("192.168.107.200-192.168.107.254", addr())
            .unwrap_err()
            .contains("own address"));
        assert!(parse_range("192.168.107.9-192.168.107.2", addr())
            .unwrap_err()
            .contains("ends before"));
        assert!(parse_range("192.168.107.0-192.168.107.9", addr()).is_err());
        assert!(parse_range("nonsense", addr()).is_err());
    }

    #[test]
    fn overlaps_with_host_addresses_are_found() {
        let existing = vec![("br0".to_owned(), "192.168.107.10/24".parse().unwrap())];
        assert_eq!(
            overlap(addr(), &existing).as_deref(),
            Some("192.168.107.10/24 on br0")
        );
        let elsewhere = vec![("ens32".to_owned(), "172.25.250.10/24".parse().unwrap())];
        assert_eq!(overlap(addr(), &elsewhere), None);
    }
}
