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

/// A virtual network to create.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct NetworkSpec {
    pub name: String,
    pub mode: NetMode,
    pub address: Ipv4Network,
    pub dhcp_range: Option<DhcpRange>,
    pub dhcp: bool,
    pub mtu: Option<u32>,
}

/// What was found on the host for a network to create.
#[derive(Debug, Clone)]
pub struct NetFound {
    pub nm_version: crate::nm::NmVersion,
    /// Every device with its IPv4 addresses.
    pub devices: Vec<(String, Vec<ipnetwork::IpNetwork>)>,
    /// A profile already named like the network (id or interface), with its settings.
    pub existing: Option<(crate::nm::ProfileInfo, netbridge_dbus::Settings)>,
    /// The network's device is activated.
    pub active: bool,
    /// The firewall programs NetworkManager could masquerade with.
    pub firewall: FirewallPrograms,
}

/// Which of the programs NetworkManager runs for a NAT network's
/// masquerading are installed (executable at the path NetworkManager is
/// built with). NetworkManager only logs a warning when the one it runs is
/// missing and brings the network up without masquerading, so netbridge
/// asks first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FirewallPrograms {
    pub nft: bool,
    pub iptables: bool,
}

/// NetworkManager 1.30 masquerades with the iptables program only; from
/// 1.32 it takes nft, or iptables when nft is missing (nm-firewall-utils.c
/// `_firewall_backend_detect`).
const NFTABLES_BACKEND: crate::nm::NmVersion = crate::nm::NmVersion(1, 32, 0);

impl FirewallPrograms {
    /// What NetworkManager `version` needs and this host lacks, if anything:
    /// (what it runs, the Debian package that has it).
    fn missing(self, version: crate::nm::NmVersion) -> Option<(&'static str, &'static str)> {
        if version < NFTABLES_BACKEND {
            (!self.iptables).then_some(("the iptables program", "iptables"))
        } else {
            (!self.nft && !self.iptables).then_some(("nft or iptables", "nftables"))
        }
    }
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum NetError {
    #[error(transparent)]
    Name(#[from] super::PlanError),
    #[error("{subnet} overlaps {existing}, already on this host; pick another subnet")]
    Overlap { subnet: String, existing: String },
    #[error("NetworkManager {found} cannot set a DHCP range (ipv4.shared-dhcp-range needs 1.46 or newer); leave the range out to let NetworkManager choose it")]
    RangeUnsupported { found: crate::nm::NmVersion },
    #[error("NetworkManager {found} masquerades a NAT network with {needs}, which this host lacks (NetworkManager would bring the network up without masquerading): install it (Debian: apt install {package}), or use mode isolated")]
    NoMasquerade {
        found: crate::nm::NmVersion,
        needs: &'static str,
        package: &'static str,
    },
    #[error("a NAT network always serves DHCP (NetworkManager's shared mode); use mode isolated for a network without it")]
    NatWithoutDhcp,
    #[error("NetworkManager serves DHCP only together with NAT (shared mode); give guests static addresses on an isolated network, or use mode nat")]
    IsolatedWithDhcp,
    #[error("network {name} exists with other settings ({existing}); delete it first with `netbridge delete {name}`")]
    Differs { name: String, existing: String },
}

/// What creating a network means on this host.
#[derive(Debug, Clone)]
pub enum NetDecision {
    /// The network exists as asked and runs.
    Unchanged,
    /// The profile exists as asked but is down: activate it.
    Activate,
    Create(Box<netbridge_dbus::Settings>),
}

const NET_MODE: &str = "netbridge.mode";
const NET_ADDRESS: &str = "netbridge.address";
const NET_RANGE: &str = "netbridge.dhcp-range";

impl NetworkSpec {
    fn marker(&self) -> std::collections::HashMap<String, String> {
        let mut data = std::collections::HashMap::from([
            (NET_MODE.to_owned(), self.mode.as_str().to_owned()),
            (NET_ADDRESS.to_owned(), self.address.to_string()),
        ]);
        if let Some(range) = self.dhcp_range {
            data.insert(NET_RANGE.to_owned(), range.to_string());
        }
        data
    }
}

/// The network a profile describes, if netbridge made it: (mode, address, range).
pub fn read_marker(
    settings: &netbridge_dbus::Settings,
) -> Result<Option<(String, String, Option<String>)>, netbridge_dbus::SettingsError> {
    let data = settings.string_map(netbridge_dbus::settings::names::USER, "data")?;
    Ok(match (data.get(NET_MODE), data.get(NET_ADDRESS)) {
        (Some(mode), Some(address)) => {
            Some((mode.clone(), address.clone(), data.get(NET_RANGE).cloned()))
        }
        _ => None,
    })
}

pub fn plan_network(
    spec: &NetworkSpec,
    found: &NetFound,
    uuid: &str,
) -> Result<NetDecision, NetError> {
    super::validate_bridge_name(&spec.name)?;
    match (spec.mode, spec.dhcp) {
        (NetMode::Nat, false) => return Err(NetError::NatWithoutDhcp),
        (NetMode::Isolated, true) => return Err(NetError::IsolatedWithDhcp),
        _ => {}
    }
    if let Some((info, settings)) = &found.existing {
        return existing_decision(spec, info, settings, found.active);
    }
    if let Some((device, _)) = found.devices.iter().find(|(d, _)| *d == spec.name) {
        return Err(NetError::Name(super::PlanError::NameTaken {
            name: spec.name.clone(),
            by: format!("the existing device {device}"),
        }));
    }
    let existing: Vec<(String, ipnetwork::IpNetwork)> = found
        .devices
        .iter()
        .flat_map(|(d, nets)| nets.iter().map(move |n| (d.clone(), *n)))
        .collect();
    if let Some(clash) = overlap(spec.address, &existing) {
        return Err(NetError::Overlap {
            subnet: format!("{}/{}", spec.address.network(), spec.address.prefix()),
            existing: clash,
        });
    }
    if spec.dhcp_range.is_some() && found.nm_version < crate::nm::NmVersion(1, 46, 0) {
        return Err(NetError::RangeUnsupported {
            found: found.nm_version,
        });
    }
    if let Some((needs, package)) = (spec.mode == NetMode::Nat)
        .then(|| found.firewall.missing(found.nm_version))
        .flatten()
    {
        return Err(NetError::NoMasquerade {
            found: found.nm_version,
            needs,
            package,
        });
    }
    Ok(NetDecision::Create(Box::new(network_profile(spec, uuid))))
}

fn existing_decision(
    spec: &NetworkSpec,
    info: &crate::nm::ProfileInfo,
    settings: &netbridge_dbus::Settings,
    active: bool,
) -> Result<NetDecision, NetError> {
    let taken = || {
        NetError::Name(super::PlanError::NameTaken {
            name: spec.name.clone(),
            by: format!("profile '{}' ({})", info.id, info.uuid),
        })
    };
    let Ok(Some((mode, address, range))) = read_marker(settings) else {
        return Err(taken());
    };
    let wanted = (
        spec.mode.as_str(),
        spec.address.to_string(),
        spec.dhcp_range.map(|r| r.to_string()),
    );
    if (mode.as_str(), address.clone(), range.clone()) != wanted {
        return Err(NetError::Differs {
            name: spec.name.clone(),
            existing: format!(
                "{mode} {address}{}",
                range.map(|r| format!(" dhcp {r}")).unwrap_or_default()
            ),
        });
    }
    Ok(if active {
        NetDecision::Unchanged
    } else {
        NetDecision::Activate
    })
}

fn network_profile(spec: &NetworkSpec, uuid: &str) -> netbridge_dbus::Settings {
    use netbridge_dbus::settings::{dict, names};
    use zbus::zvariant::Value;
    let mut s = netbridge_dbus::Settings::new();
    s.set(names::CONNECTION, "id", spec.name.as_str())
        .set(names::CONNECTION, "uuid", uuid)
        .set(names::CONNECTION, "type", "bridge")
        .set(names::CONNECTION, "interface-name", spec.name.as_str())
        .set(names::CONNECTION, "autoconnect", true)
        .set(names::BRIDGE, "stp", false)
        .set(names::BRIDGE, "forward-delay", 2u32)
        .set_dict_list(
            names::IPV4,
            "address-data",
            vec![dict([
                ("address", Value::from(spec.address.ip().to_string())),
                ("prefix", Value::from(u32::from(spec.address.prefix()))),
            ])],
        )
        // A guest network must never take the host's default route.
        .set(names::IPV4, "never-default", true)
        .set(names::IPV6, "method", "ignore")
        .set(names::USER, "data", spec.marker());
    match spec.mode {
        NetMode::Nat => s.set(names::IPV4, "method", "shared"),
        NetMode::Isolated => s.set(names::IPV4, "method", "manual"),
    };
    if let Some(range) = spec.dhcp_range {
        s.set(
            names::IPV4,
            "shared-dhcp-range",
            format!("{},{}", range.first, range.last),
        );
    }
    if let Some(mtu) = spec.mtu {
        s.set(names::ETHERNET, "mtu", mtu);
    }
    s
}

#[cfg(test)]
mod plan_tests {
    use super::*;
    use crate::nm::NmVersion;
    use netbridge_dbus::settings::names;

    fn spec(mode: NetMode) -> NetworkSpec {
        NetworkSpec {
            name: "virbr1".into(),
            mode,
            address: parse_address("192.168.107.1/24").unwrap(),
            dhcp_range: None,
            dhcp: mode == NetMode::Nat,
            mtu: None,
        }
    }

    fn found() -> NetFound {
        NetFound {
            nm_version: NmVersion(1, 42, 4),
            devices: vec![("ens32".into(), vec!["172.25.250.10/24".parse().unwrap()])],
            existing: None,
            active: false,
            firewall: FirewallPrograms {
                nft: true,
                iptables: false,
            },
        }
    }

    fn created(spec: &NetworkSpec, found: &NetFound) -> netbridge_dbus::Settings {
        match plan_network(spec, found, "u1") {
            Ok(NetDecision::Create(s)) => *s,
            other => panic!("expected a profile, got {other:?}"),
        }
    }

    #[test]
    fn nat_is_shared_mode_and_isolated_is_manual() {
        let nat = created(&spec(NetMode::Nat), &found());
        assert_eq!(nat.str(names::IPV4, "method"), Ok(Some("shared")));
        assert_eq!(nat.bool(names::IPV4, "never-default"), Ok(Some(true)));
        let iso = created(&spec(NetMode::Isolated), &found());
        assert_eq!(iso.str(names::IPV4, "method"), Ok(Some("manual")));
        assert_eq!(
            read_marker(&iso),
            Ok(Some(("isolated".into(), "192.168.107.1/24".into(), None)))
        );
    }

    #[test]
    fn the_nmcli_equivalent_adds_the_network_and_brings_it_up() {
        let mut nat = spec(NetMode::Nat);
        nat.dhcp_range = Some(parse_range("192.168.107.10-192.168.107.99", nat.address).unwrap());
        let mut found = found();
        found.nm_version = NmVersion(1, 46, 0);
        let commands = crate::plan::nmcli::network_commands("virbr1", &created(&nat, &found));
        assert_eq!(
            commands,
            vec![
                "nmcli connection add type bridge con-name virbr1 ifname virbr1 autoconnect yes \
                 bridge.stp no bridge.forward-delay 2 ipv4.method shared ipv4.addresses 192.168.107.1/24 \
                 ipv4.never-default yes ipv4.shared-dhcp-range '192.168.107.10,192.168.107.99' ipv6.method ignore",
                "nmcli connection up virbr1",
            ]
        );
    }

    #[test]
    fn a_nat_network_needs_the_program_networkmanager_masquerades_with() {
        let programs = |nft, iptables| FirewallPrograms { nft, iptables };
        let refused = |version: NmVersion, firewall: FirewallPrograms| {
            let mut f = found();
            f.nm_version = version;
            f.firewall = firewall;
            plan_network(&spec(NetMode::Nat), &f, "u").err()
        };
        // 1.30 runs iptables even where nft is installed.
        assert_eq!(
            refused(NmVersion(1, 30, 6), programs(true, false)),
            Some(NetError::NoMasquerade {
                found: NmVersion(1, 30, 6),
                needs: "the iptables program",
                package: "iptables",
            })
        );
        assert_eq!(refused(NmVersion(1, 30, 6), programs(false, true)), None);
        // From 1.32 either will do.
        assert_eq!(refused(NmVersion(1, 42, 4), programs(false, true)), None);
        assert_eq!(refused(NmVersion(1, 42, 4), programs(true, false)), None);
        let none = refused(NmVersion(1, 52, 0), programs(false, false));
        assert!(
            matches!(
                none,
                Some(NetError::NoMasquerade {
                    needs: "nft or iptables",
                    ..
                })
            ),
            "{none:?}"
        );
        let message = none.map(|e| e.to_string()).unwrap_or_default();
        assert!(message.contains("apt install nftables"), "{message}");
        // A host-only network masquerades nothing.
        let mut f = found();
        f.firewall = programs(false, false);
        assert!(plan_network(&spec(NetMode::Isolated), &f, "u").is_ok());
    }

    #[test]
    fn conflicts_and_unsupported_requests_are_refused() {
        let mut f = found();
        f.devices
            .push(("br0".into(), vec!["192.168.107.50/24".parse().unwrap()]));
        assert!(matches!(
            plan_network(&spec(NetMode::Nat), &f, "u"),
            Err(NetError::Overlap { .. })
        ));

        let mut with_range = spec(NetMode::Nat);
        with_range.dhcp_range =
            Some(parse_range("192.168.107.2-192.168.107.9", with_range.address).unwrap());
        assert!(matches!(
            plan_network(&with_range, &found(), "u"),
            Err(NetError::RangeUnsupported { .. })
        ));
        let mut newer = found();
        newer.nm_version = NmVersion(1, 52, 0);
        let s = created(&with_range, &newer);
        assert_eq!(
            s.str(names::IPV4, "shared-dhcp-range"),
            Ok(Some("192.168.107.2,192.168.107.9"))
        );

        let mut no_dhcp = spec(NetMode::Nat);
        no_dhcp.dhcp = false;
        assert_eq!(
            plan_network(&no_dhcp, &found(), "u").unwrap_err(),
            NetError::NatWithoutDhcp
        );
        let mut iso_dhcp = spec(NetMode::Isolated);
        iso_dhcp.dhcp = true;
        assert_eq!(
            plan_network(&iso_dhcp, &found(), "u").unwrap_err(),
            NetError::IsolatedWithDhcp
        );

        let mut taken = found();
        taken.devices.push(("virbr1".into(), vec![]));
        assert!(matches!(
            plan_network(&spec(NetMode::Nat), &taken, "u"),
            Err(NetError::Name(_))
        ));
    }

    #[test]
    fn an_existing_network_as_asked_is_unchanged() {
        let profile = created(&spec(NetMode::Nat), &found());
        let info = crate::nm::ProfileInfo {
            path: zbus::zvariant::OwnedObjectPath::try_from("/x").unwrap(),
            uuid: "u1".into(),
            id: "virbr1".into(),
            connection_type: "bridge".into(),
            interface_name: Some("virbr1".into()),
            autoconnect: true,
            autoconnect_priority: 0,
            controller: None,
            in_memory_only: false,
            filename: String::new(),
        };
        let mut f = found();
        f.existing = Some((info, profile));
        f.active = true;
        assert!(matches!(
            plan_network(&spec(NetMode::Nat), &f, "u"),
            Ok(NetDecision::Unchanged)
        ));
        assert!(matches!(
            plan_network(&spec(NetMode::Isolated), &f, "u"),
            Err(NetError::Differs { .. })
        ));
    }
}
