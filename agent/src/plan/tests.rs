use std::net::Ipv4Addr;

use netbridge_dbus::settings::{dict, ipv4_to_nm, names};
use netbridge_dbus::state::{DeviceState, DeviceType};
use netbridge_dbus::Settings;
use zbus::zvariant::{OwnedObjectPath, Value};

use super::*;
use crate::nm::{DeviceInfo, IpRuntime, NmVersion, ProfileInfo};

fn path(p: &str) -> OwnedObjectPath {
    OwnedObjectPath::try_from(p).expect("valid test path")
}

fn device(name: &str, kind: DeviceType) -> DeviceInfo {
    DeviceInfo {
        path: path("/org/freedesktop/NetworkManager/Devices/2"),
        interface: name.to_owned(),
        device_type: kind,
        state: DeviceState::Activated,
        managed: true,
        mac: "ae:fb:62:db:26:90".to_owned(),
        permanent_mac: String::new(),
        mtu: 1500,
        active_connection: None,
        port_paths: vec![],
        ipv4: IpRuntime {
            addresses: vec!["172.25.250.10/24".parse().unwrap()],
            gateway: Some("172.25.250.254".parse().unwrap()),
            dns: vec!["172.25.250.254".parse().unwrap()],
            searches: vec![],
        },
        ipv6: IpRuntime::default(),
        dhcp4: false,
    }
}

fn profile(id: &str, iface: Option<&str>) -> ProfileInfo {
    ProfileInfo {
        path: path("/org/freedesktop/NetworkManager/Settings/1"),
        uuid: format!("uuid-{id}"),
        id: id.to_owned(),
        connection_type: "802-3-ethernet".to_owned(),
        interface_name: iface.map(str::to_owned),
        autoconnect: true,
        autoconnect_priority: 0,
        controller: None,
        in_memory_only: false,
        filename: String::new(),
    }
}

fn static_settings() -> Settings {
    let mut s = Settings::new();
    s.set(names::CONNECTION, "id", "ens32")
        .set(names::CONNECTION, "uuid", "uuid-ens32")
        .set(names::CONNECTION, "type", "802-3-ethernet")
        .set(names::CONNECTION, "interface-name", "ens32")
        .set(names::IPV4, "method", "manual")
        .set_dict_list(
            names::IPV4,
            "address-data",
            vec![dict([
                ("address", Value::from("172.25.250.10")),
                ("prefix", Value::from(24u32)),
            ])],
        )
        .set(names::IPV4, "addresses", vec![vec![1u32, 24, 0]])
        .set(names::IPV4, "gateway", "172.25.250.254")
        .set(
            names::IPV4,
            "dns",
            vec![ipv4_to_nm(Ipv4Addr::new(172, 25, 250, 254))],
        )
        .set(names::IPV4, "dns-search", vec!["lab".to_owned()])
        .set(names::IPV6, "method", "ignore")
        .ensure_setting(names::ETHERNET);
    s
}

fn found_with(settings: Settings) -> Found {
    let uplink = device("ens32", DeviceType::Veth);
    Found {
        nm_version: NmVersion(1, 42, 4),
        devices: vec![uplink.clone(), device("lo", DeviceType::Loopback)],
        profiles: vec![profile("ens32", Some("ens32"))],
        uplink: Some(UplinkFound {
            device: uplink,
            active: Some(ActiveProfile {
                info: profile("ens32", Some("ens32")),
                applied: settings.clone(),
                saved: settings,
            }),
            controller: None,
            lease4: LeaseOptions::new(),
            lease6: LeaseOptions::new(),
            metrics: DefaultMetrics::default(),
        }),
    }
}

fn request() -> Request {
    Request {
        uplink: "ens32".to_owned(),
        bridge: "br0".to_owned(),
        stp: false,
        rollback_timeout: None,
        mtu: None,
    }
}

fn ids() -> Ids {
    Ids {
        bridge_uuid: "11111111-1111-4111-8111-111111111111".to_owned(),
        port_uuid: "22222222-2222-4222-8222-222222222222".to_owned(),
    }
}

fn plan(found: &Found, req: &Request) -> Plan {
    match plan_convert(req, found, &ids()) {
        Ok(Decision::Convert(plan)) => *plan,
        other => panic!("expected a conversion plan, got {other:?}"),
    }
}

fn refused(found: &Found, req: &Request) -> PlanError {
    match plan_convert(req, found, &ids()) {
        Err(e) => e,
        Ok(d) => panic!("expected a refusal, got {d:?}"),
    }
}

#[test]
fn static_uplink_moves_every_ip_setting_to_the_bridge() {
    let p = plan(&found_with(static_settings()), &request());
    let b = &p.bridge_profile;
    assert_eq!(b.str(names::CONNECTION, "type"), Ok(Some("bridge")));
    assert_eq!(b.str(names::CONNECTION, "interface-name"), Ok(Some("br0")));
    assert_eq!(b.i32(names::CONNECTION, "autoconnect-slaves"), Ok(Some(1)));
    assert_eq!(b.str(names::IPV4, "method"), Ok(Some("manual")));
    assert_eq!(b.str(names::IPV4, "gateway"), Ok(Some("172.25.250.254")));
    assert_eq!(
        b.strings(names::IPV4, "dns-search"),
        Ok(vec!["lab".to_owned()])
    );
    assert_eq!(b.u32s(names::IPV4, "dns").unwrap().len(), 1);
    // The legacy `addresses` would win over `address-data` inside NetworkManager.
    assert!(b.raw(names::IPV4, "addresses").is_none());
    assert_eq!(b.dict_list(names::IPV4, "address-data").unwrap().len(), 1);
    assert_eq!(p.ipv4.addresses, vec!["172.25.250.10/24".parse().unwrap()]);
    assert_eq!(p.ipv4.gateway, Some("172.25.250.254".parse().unwrap()));
    assert!(p.goal.ip4 && !p.goal.ip6);
}

#[test]
fn the_bridge_first_comes_up_without_ip_then_gets_all_of_it() {
    let p = plan(&found_with(static_settings()), &request());
    let first = p.bridge_without_ip();
    assert_eq!(first.str(names::IPV4, "method"), Ok(Some("disabled")));
    assert!(first.raw(names::IPV4, "address-data").is_none());
    assert_eq!(
        first.str(names::ETHERNET, "assigned-mac-address"),
        Ok(Some(p.mac.as_str()))
    );
    assert_eq!(
        first.i32(names::CONNECTION, "autoconnect-slaves"),
        Ok(Some(1))
    );
    assert_eq!(
        p.bridge_profile.str(names::IPV4, "method"),
        Ok(Some("manual"))
    );
}

#[test]
fn stp_is_off_by_default_and_deadlines_grow_with_it() {
    let p = plan(&found_with(static_settings()), &request());
    assert_eq!(p.bridge_profile.bool(names::BRIDGE, "stp"), Ok(Some(false)));
    assert_eq!(
        p.bridge_profile.u32(names::BRIDGE, "forward-delay"),
        Ok(Some(2))
    );
    let mut req = request();
    req.stp = true;
    let with_stp = plan(&found_with(static_settings()), &req);
    assert_eq!(
        with_stp.bridge_profile.bool(names::BRIDGE, "stp"),
        Ok(Some(true))
    );
    assert!(with_stp
        .bridge_profile
        .raw(names::BRIDGE, "forward-delay")
        .is_none());
    assert!(with_stp.timing.check >= p.timing.check + Duration::from_secs(30));
    assert!(with_stp.timing.rollback_timeout > p.timing.rollback_timeout);
}

#[test]
fn the_port_carries_no_ip_and_points_at_the_bridge() {
    let p = plan(&found_with(static_settings()), &request());
    let port = &p.port_profile;
    assert!(!port.has_setting(names::IPV4) && !port.has_setting(names::IPV6));
    assert!(port.has_setting(names::BRIDGE_PORT));
    assert_eq!(
        port.str(names::CONNECTION, "master"),
        Ok(Some(p.bridge_uuid.as_str()))
    );
    assert_eq!(
        port.str(names::CONNECTION, "slave-type"),
        Ok(Some("bridge"))
    );
    assert_eq!(
        port.str(names::CONNECTION, "interface-name"),
        Ok(Some("ens32"))
    );
    assert_eq!(
        port.str(names::CONNECTION, "id"),
        Ok(Some("br0-port-ens32"))
    );
    assert_eq!(port.bool(names::CONNECTION, "autoconnect"), Ok(Some(true)));
}

#[test]
fn the_original_profile_is_kept_with_autoconnect_off() {
    let p = plan(&found_with(static_settings()), &request());
    assert_eq!(p.original.uuid, "uuid-ens32");
    let after = &p.original_after;
    assert_eq!(
        after.bool(names::CONNECTION, "autoconnect"),
        Ok(Some(false))
    );
    assert_eq!(after.str(names::IPV4, "method"), Ok(Some("manual")));
    assert!(after.raw(names::IPV4, "addresses").is_none());
}

#[test]
fn dhcp_uplinks_keep_their_mac_and_client_identity() {
    let mut s = static_settings();
    s.set(names::IPV4, "method", "auto")
        .remove(names::IPV4, "address-data")
        .remove(names::IPV4, "gateway");
    let mut found = found_with(s);
    if let Some(u) = found.uplink.as_mut() {
        u.device.permanent_mac = "52:54:00:12:34:56".to_owned();
    }
    let p = plan(&found, &request());
    assert_eq!(p.mac, "52:54:00:12:34:56");
    let b = &p.bridge_profile;
    assert_eq!(
        b.str(names::ETHERNET, "assigned-mac-address"),
        Ok(Some("52:54:00:12:34:56"))
    );
    assert_eq!(b.str(names::IPV4, "dhcp-client-id"), Ok(Some("mac")));
    // Verification expects the address the lease gave before.
    assert_eq!(p.ipv4.addresses, vec!["172.25.250.10/24".parse().unwrap()]);
}

#[test]
fn veth_without_permanent_mac_falls_back_to_the_current_one() {
    let p = plan(&found_with(static_settings()), &request());
    assert_eq!(p.mac, "AE:FB:62:DB:26:90");
}

#[test]
fn a_host_already_converted_is_a_no_op() {
    let mut found = found_with(static_settings());
    if let Some(u) = found.uplink.as_mut() {
        u.controller = Some("br0".to_owned());
    }
    assert!(matches!(
        plan_convert(&request(), &found, &ids()),
        Ok(Decision::AlreadyConverted { .. })
    ));
}

#[test]
fn bad_input_is_refused_with_a_reason() {
    let mut unknown = found_with(static_settings());
    unknown.uplink = None;
    let mut req = request();
    req.uplink = "ens99".to_owned();
    assert!(refused(&unknown, &req).to_string().contains("ens32, lo"));

    let found = found_with(static_settings());

    let mut req = request();
    req.bridge = "a-very-long-bridge".to_owned();
    assert!(matches!(
        refused(&found, &req),
        PlanError::BridgeName { .. }
    ));
    req.bridge = "br/0".to_owned();
    assert!(matches!(
        refused(&found, &req),
        PlanError::BridgeName { .. }
    ));
    req.bridge = "ens32".to_owned();
    assert!(matches!(refused(&found, &req), PlanError::NameTaken { .. }));

    let mut req = request();
    req.rollback_timeout = Some(0);
    assert!(matches!(
        refused(&found, &req),
        PlanError::RollbackTimeout { .. }
    ));
    req.rollback_timeout = Some(86_400);
    assert!(matches!(
        refused(&found, &req),
        PlanError::RollbackTimeout { .. }
    ));
}

#[test]
fn unsuitable_uplinks_are_refused() {
    let mut found = found_with(static_settings());
    let mut req = request();
    req.uplink = "lo".to_owned();
    if let Some(u) = found.uplink.as_mut() {
        u.device.device_type = DeviceType::Loopback;
    }
    assert!(matches!(refused(&found, &req), PlanError::Loopback { .. }));

    let mut found = found_with(static_settings());
    if let Some(u) = found.uplink.as_mut() {
        u.device.managed = false;
        u.device.state = DeviceState::Unmanaged;
    }
    assert!(matches!(
        refused(&found, &request()),
        PlanError::Unmanaged { .. }
    ));

    let mut found = found_with(static_settings());
    if let Some(u) = found.uplink.as_mut() {
        u.controller = Some("br9".to_owned());
    }
    assert!(matches!(
        refused(&found, &request()),
        PlanError::AlreadyPort { .. }
    ));

    let mut found = found_with(static_settings());
    if let Some(u) = found.uplink.as_mut() {
        u.active = None;
    }
    assert!(matches!(
        refused(&found, &request()),
        PlanError::NoActiveProfile { .. }
    ));

    let mut found = found_with(static_settings());
    found.nm_version = NmVersion(1, 18, 0);
    assert!(matches!(
        refused(&found, &request()),
        PlanError::NmTooOld { .. }
    ));
}

#[test]
fn profiles_that_could_grab_the_uplink_are_outranked() {
    let mut found = found_with(static_settings());
    let mut other = profile("Wired connection 1", None);
    other.autoconnect_priority = 5;
    found.profiles.push(other);
    let p = plan(&found, &request());
    assert_eq!(p.competing, vec!["Wired connection 1".to_owned()]);
    assert_eq!(
        p.port_profile
            .i32(names::CONNECTION, "autoconnect-priority"),
        Ok(Some(6))
    );
}

#[test]
fn nmcli_equivalent_names_the_key_settings() {
    let p = plan(&found_with(static_settings()), &request());
    let cmds = p.nmcli_commands().join("\n");
    assert!(cmds.contains("ipv4.addresses 172.25.250.10/24"));
    assert!(cmds.contains("ipv4.gateway 172.25.250.254"));
    assert!(cmds.contains("bridge.stp no"));
    assert!(cmds.contains("master br0 slave-type bridge"));
}
