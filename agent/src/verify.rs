//! Pure verification of the state NetworkManager reports after a change
//! against what the plan promised. Each problem is one sentence naming the
//! device; none means the state is as intended.

use crate::nm::DeviceInfo;
use crate::plan::{IpPlan, Plan};
use netbridge_dbus::state::DeviceState;

/// The device is up and carries the planned addresses and default route.
pub fn carries(device: &DeviceInfo, ipv4: &IpPlan, ipv6: &IpPlan) -> Vec<String> {
    let name = &device.interface;
    let mut problems = Vec::new();
    if device.state != DeviceState::Activated {
        problems.push(format!("{name} is {}, not activated", device.state));
    }
    let have: Vec<_> = device
        .ipv4
        .addresses
        .iter()
        .chain(&device.ipv6.addresses)
        .collect();
    for want in ipv4.addresses.iter().chain(&ipv6.addresses) {
        if !have.contains(&want) {
            problems.push(format!("{name} lacks the address {want}"));
        }
    }
    if let Some(gw) = ipv4.gateway {
        if device.ipv4.gateway != Some(gw) {
            problems.push(format!("the default route via {gw} is not on {name}"));
        }
    }
    problems
}

/// After a conversion: the bridge carries the uplink's configuration, has
/// the uplink's MAC and the uplink as its port.
pub fn converted(bridge: &DeviceInfo, plan: &Plan) -> Vec<String> {
    let mut problems = carries(bridge, &plan.ipv4, &plan.ipv6);
    if !bridge.mac.eq_ignore_ascii_case(&plan.mac) {
        problems.push(format!(
            "{} has MAC {}, expected {}",
            plan.bridge, bridge.mac, plan.mac
        ));
    }
    if !bridge.port_paths.contains(&plan.uplink_path) {
        problems.push(format!("{} is not a port of {}", plan.uplink, plan.bridge));
    }
    problems
}

/// The kernel runs the spanning tree setting declared (`stp_state` from
/// sysfs: 0 off, 1 kernel STP, 2 user-space STP).
pub fn stp(bridge: &str, stp_state: &str, want: bool) -> Vec<String> {
    let on = stp_state != "0";
    if on == want {
        Vec::new()
    } else {
        vec![format!(
            "{bridge} runs STP {} (stp_state {stp_state}), declared {}",
            if on { "on" } else { "off" },
            if want { "on" } else { "off" }
        )]
    }
}

/// The bridge holds a DHCP lease from the server for the address the uplink
/// had (`options`: the bridge's DHCPv4 lease options).
pub fn leased(
    bridge: &str,
    uplink: &str,
    address: &str,
    options: &crate::nm::LeaseOptions,
) -> Vec<String> {
    match options.get("ip_address") {
        None => vec![format!(
            "the DHCP server did not answer {bridge} (it answered {uplink} before the change)"
        )],
        Some(got) if got == address => Vec::new(),
        Some(got) => vec![format!(
            "the DHCP server leased {got} to {bridge}, not {uplink}'s {address}"
        )],
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nm::IpRuntime;
    use netbridge_dbus::state::DeviceType;
    use zbus::zvariant::OwnedObjectPath;

    fn device(addresses: &[&str], gateway: Option<&str>) -> DeviceInfo {
        DeviceInfo {
            path: OwnedObjectPath::try_from("/d/1").unwrap(),
            interface: "br0".into(),
            device_type: DeviceType::Bridge,
            state: DeviceState::Activated,
            managed: true,
            mac: "AA:BB:CC:DD:EE:FF".into(),
            permanent_mac: String::new(),
            mtu: 1500,
            active_connection: None,
            port_paths: vec![],
            ipv4: IpRuntime {
                addresses: addresses.iter().map(|a| a.parse().unwrap()).collect(),
                gateway: gateway.map(|g| g.parse().unwrap()),
                dns: vec![],
                searches: vec![],
            },
            ipv6: IpRuntime::default(),
            dhcp4: false,
        }
    }

    fn plan_ip() -> IpPlan {
        IpPlan {
            method: "manual".into(),
            addresses: vec!["172.25.250.10/24".parse().unwrap()],
            gateway: Some("172.25.250.254".parse().unwrap()),
            ..IpPlan::default()
        }
    }

    #[test]
    fn a_device_as_planned_has_no_problems() {
        let dev = device(&["172.25.250.10/24"], Some("172.25.250.254"));
        assert!(carries(&dev, &plan_ip(), &IpPlan::default()).is_empty());
    }

    #[test]
    fn the_kernels_stp_state_must_match_the_declaration() {
        assert!(stp("br0", "0", false).is_empty());
        assert!(stp("br0", "1", true).is_empty());
        assert_eq!(
            stp("br0", "1", false),
            vec!["br0 runs STP on (stp_state 1), declared off"]
        );
    }

    #[test]
    fn the_bridge_must_renew_the_uplinks_lease() {
        let mut options = crate::nm::LeaseOptions::new();
        assert_eq!(
            leased("br0", "ens32", "172.25.250.108", &options),
            vec!["the DHCP server did not answer br0 (it answered ens32 before the change)"]
        );
        options.insert("ip_address".into(), "172.25.250.120".into());
        assert_eq!(
            leased("br0", "ens32", "172.25.250.108", &options),
            vec!["the DHCP server leased 172.25.250.120 to br0, not ens32's 172.25.250.108"]
        );
        options.insert("ip_address".into(), "172.25.250.108".into());
        assert!(leased("br0", "ens32", "172.25.250.108", &options).is_empty());
    }

    #[test]
    fn each_difference_is_named() {
        let mut dev = device(&["172.25.250.99/24"], None);
        dev.state = DeviceState::IpConfig;
        let problems = carries(&dev, &plan_ip(), &IpPlan::default());
        assert_eq!(
            problems,
            vec![
                "br0 is ip-config, not activated".to_owned(),
                "br0 lacks the address 172.25.250.10/24".to_owned(),
                "the default route via 172.25.250.254 is not on br0".to_owned(),
            ]
        );
    }
}
