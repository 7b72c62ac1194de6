//! What makes the bridge the uplink's exact stand-in, beyond its addresses:
//! route priority, DHCP and IPv6 identity, the connection settings that
//! change boot and resolver behaviour — taken from what the uplink *runs*
//! with, not from the defaults a new bridge profile would get. And the lease
//! hold that keeps a DHCP host's address while a change is on trial.

use std::net::IpAddr;

use ipnetwork::{IpNetwork, Ipv4Network};
use netbridge_dbus::settings::{dict, dict_str, names};
use netbridge_dbus::{Settings, SettingsError};
use serde::Serialize;
use zbus::zvariant::Value;

use super::UplinkFound;

/// Connection settings that follow the host rather than the device: carried
/// when the uplink's profile sets them (NetworkManager knows every key it
/// returned, so none is rejected on this version).
const CONNECTION_KEYS: [&str; 10] = [
    "zone",
    "stable-id",
    "mdns",
    "llmnr",
    "dns-over-tls",
    "mptcp-flags",
    "lldp",
    "metered",
    "autoconnect-retries",
    "wait-device-timeout",
];

/// `ipv4.dhcp-timeout` "infinity": DHCP keeps trying and never fails the
/// address configuration, so a static copy of the lease beside it stays.
const DHCP_FOREVER: i32 = i32::MAX;

/// The leased IPv4 address held statically while a change is on trial.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct LeaseHold {
    pub address: Ipv4Network,
    pub gateway: Option<std::net::Ipv4Addr>,
    /// The server that granted the lease, which the pre-check asks.
    pub server: Option<std::net::Ipv4Addr>,
}

/// Copies the connection keys in [`CONNECTION_KEYS`] the uplink runs with.
pub(super) fn carry_connection(applied: &Settings, bridge: &mut Settings) {
    for key in CONNECTION_KEYS {
        if let Some(value) = applied.raw(names::CONNECTION, key) {
            bridge.set(names::CONNECTION, key, value.clone());
        }
    }
}

/// Pins what NetworkManager would otherwise choose anew for a bridge: the
/// route metric of each family (100 for ethernet, 425 for a bridge: another
/// NIC's default route would win), the DHCPv4 client id, the DHCPv6 IAID
/// and DUID (both derive from the interface name or the profile by default).
pub(super) fn pin_runtime_identity(
    bridge: &mut Settings,
    uplink: &UplinkFound,
) -> Result<(), SettingsError> {
    for (ip, metric) in [
        (names::IPV4, uplink.metrics.ipv4),
        (names::IPV6, uplink.metrics.ipv6),
    ] {
        let unset = bridge.i64(ip, "route-metric")?.is_none_or(|m| m < 0);
        if let (true, Some(metric)) = (unset, metric) {
            bridge.set(ip, "route-metric", i64::from(metric));
        }
    }
    if bridge.str(names::IPV4, "method")? == Some("auto") {
        let client_id = uplink
            .lease4
            .get("dhcp_client_identifier")
            .map(String::as_str)
            // The internal client's own choice when the lease does not say.
            .unwrap_or("mac");
        set_if_unset(bridge, names::IPV4, "dhcp-client-id", client_id)?;
    }
    if matches!(bridge.str(names::IPV6, "method")?, Some("auto" | "dhcp")) {
        if let Some(iaid) = uplink.lease6.get("iaid") {
            set_if_unset(bridge, names::IPV6, "dhcp-iaid", iaid)?;
        }
        if let Some(duid) = uplink.lease6.get("dhcp6_client_id") {
            set_if_unset(bridge, names::IPV6, "dhcp-duid", duid)?;
        }
    }
    Ok(())
}

fn set_if_unset(s: &mut Settings, ip: &str, key: &str, value: &str) -> Result<(), SettingsError> {
    if s.str(ip, key)?.is_none_or(str::is_empty) {
        s.set(ip, key, value);
    }
    Ok(())
}

/// The lease to hold, for an uplink that got its IPv4 address by DHCP.
pub(super) fn lease_hold(uplink: &UplinkFound, method: &str) -> Option<LeaseHold> {
    if method != "auto" {
        return None;
    }
    let leased: IpAddr = uplink.lease4.get("ip_address")?.parse().ok()?;
    let address = uplink.device.ipv4.addresses.iter().find_map(|n| match n {
        IpNetwork::V4(v4) if IpAddr::V4(v4.ip()) == leased => Some(*v4),
        _ => None,
    })?;
    let gateway = match uplink.device.ipv4.gateway {
        Some(IpAddr::V4(gw)) => Some(gw),
        _ => None,
    };
    let server = uplink
        .lease4
        .get("dhcp_server_identifier")
        .and_then(|s| s.parse().ok());
    Some(LeaseHold {
        address,
        gateway,
        server,
    })
}

/// `settings` with the leased address beside DHCP, and DHCP that never gives
/// up: the host keeps its address whether or not the DHCP server answers.
/// Only ever applied in memory (a trial profile, a Reapply); never saved.
pub fn hold(settings: &Settings, lease: &LeaseHold) -> Result<Settings, SettingsError> {
    let mut s = super::without_legacy_forms(settings)?;
    // The legacy forms win over the new ones when both arrive.
    s.remove(names::IPV4, "addresses");
    let mut addresses = s.dict_list(names::IPV4, "address-data")?;
    let ip = lease.address.ip().to_string();
    if !addresses
        .iter()
        .any(|d| dict_str(d, "address") == Some(&ip))
    {
        addresses.push(dict([
            ("address", Value::from(ip.as_str())),
            ("prefix", Value::from(u32::from(lease.address.prefix()))),
        ]));
    }
    s.set_dict_list(names::IPV4, "address-data", addresses);
    if let (None, Some(gw)) = (s.str(names::IPV4, "gateway")?, lease.gateway) {
        s.set(names::IPV4, "gateway", gw.to_string());
    }
    s.set(names::IPV4, "dhcp-timeout", DHCP_FOREVER);
    Ok(s)
}

/// The interface identifier SLAAC derives from a MAC (modified EUI-64).
fn eui64(mac: &str) -> Option<[u8; 8]> {
    let [a, b, c, d, e, f] = super::parse_mac(mac)?;
    Some([a ^ 0x02, b, c, 0xff, 0xfe, d, e, f])
}

/// Global IPv6 addresses the bridge would not get again: SLAAC addresses
/// whose interface identifier is neither the MAC's EUI-64 (which the bridge,
/// with the same MAC, derives the same way) nor the profile's token — that
/// is, stable-privacy addresses, which hash the interface name in.
pub(super) fn unkeepable_ipv6(
    uplink: &UplinkFound,
    applied: &Settings,
    mac: &str,
) -> Result<Vec<IpNetwork>, SettingsError> {
    if !matches!(applied.str(names::IPV6, "method")?, Some("auto")) {
        return Ok(Vec::new());
    }
    let manual: Vec<String> = applied
        .dict_list(names::IPV6, "address-data")?
        .iter()
        .filter_map(|d| dict_str(d, "address").map(str::to_owned))
        .collect();
    let dhcp = uplink.lease6.get("ip6_address");
    let token: Option<std::net::Ipv6Addr> = applied
        .str(names::IPV6, "token")?
        .and_then(|t| t.parse().ok());
    let eui = eui64(mac);
    Ok(uplink
        .device
        .ipv6
        .addresses
        .iter()
        .filter(|n| match n.ip() {
            IpAddr::V6(v6) => {
                let text = v6.to_string();
                let iid: [u8; 8] = v6.octets()[8..].try_into().unwrap_or_default();
                let by_token = token.is_some_and(|t| t.octets()[8..] == iid);
                (v6.segments()[0] & 0xffc0) != 0xfe80
                    && !manual.contains(&text)
                    && dhcp != Some(&text)
                    && eui != Some(iid)
                    && !by_token
            }
            IpAddr::V4(_) => false,
        })
        .copied()
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn eui64_flips_the_universal_bit_and_inserts_fffe() {
        assert_eq!(
            eui64("52:54:00:12:34:56"),
            Some([0x50, 0x54, 0x00, 0xff, 0xfe, 0x12, 0x34, 0x56])
        );
        assert_eq!(eui64("not a mac"), None);
    }

    #[test]
    fn the_hold_adds_the_lease_statically_and_dhcp_never_gives_up() {
        let mut s = Settings::new();
        s.set(names::IPV4, "method", "auto")
            .set(names::IPV4, "addresses", Vec::<Vec<u32>>::new());
        let lease = LeaseHold {
            address: "172.25.250.108/24".parse().unwrap(),
            gateway: Some("172.25.250.254".parse().unwrap()),
            server: None,
        };
        let held = hold(&s, &lease).unwrap();
        assert_eq!(held.str(names::IPV4, "method"), Ok(Some("auto")));
        assert!(held.raw(names::IPV4, "addresses").is_none());
        let data = held.dict_list(names::IPV4, "address-data").unwrap();
        assert_eq!(data.len(), 1);
        assert_eq!(dict_str(&data[0], "address"), Some("172.25.250.108"));
        assert_eq!(held.str(names::IPV4, "gateway"), Ok(Some("172.25.250.254")));
        assert_eq!(held.i32(names::IPV4, "dhcp-timeout"), Ok(Some(i32::MAX)));
        // Holding twice adds nothing.
        let again = hold(&held, &lease).unwrap();
        assert_eq!(
            again.dict_list(names::IPV4, "address-data").unwrap().len(),
            1
        );
    }
}
