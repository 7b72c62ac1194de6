use std::net::Ipv4Addr;

use netbridge_dbus::settings::{dict, ipv4_to_nm, names};
use netbridge_dbus::state::{DeviceState, DeviceType};
use netbridge_dbus::Settings;
use zbus::zvariant::{OwnedObjectPath, Value};

use super::*;
use crate::nm::{DefaultMetrics, DeviceInfo, IpRuntime, LeaseOptions, NmVersion, ProfileInfo};

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
            controller_found: None,
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
        options: BridgeOptions::default(),
        rollback_timeout: None,
        adopt: false,
    }
}

fn ids() -> Ids {
    Ids {
        bridge_uuid: "11111111-1111-4111-8111-111111111111".to_owned(),
        port_uuid: "22222222-2222-4222-8222-222222222222".to_owned(),
        original_uuid: "33333333-3333-4333-8333-333333333333".to_owned(),
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
fn the_bridge_first_comes_up_with_its_ip_at_the_worst_metric_and_no_port() {
    let p = plan(&found_with(static_settings()), &request());
    let first = p.bridge_staged();
    assert_eq!(first.str(names::IPV4, "method"), Ok(Some("manual")));
    assert_eq!(
        first
            .dict_list(names::IPV4, "address-data")
            .map(|l| l.len()),
        Ok(1)
    );
    for ip in [names::IPV4, names::IPV6] {
        assert_eq!(first.i64(ip, "route-metric"), Ok(Some(STAGED_METRIC)));
        assert_ne!(
            p.bridge_trial.i64(ip, "route-metric"),
            Ok(Some(STAGED_METRIC))
        );
    }
    assert_eq!(
        first.str(names::ETHERNET, "assigned-mac-address"),
        Ok(Some(p.mac.as_str()))
    );
    assert_eq!(
        first.i32(names::CONNECTION, "autoconnect-slaves"),
        Ok(Some(0))
    );
    assert_eq!(
        p.bridge_trial.i32(names::CONNECTION, "autoconnect-slaves"),
        Ok(Some(1))
    );
    // Once the port is attached the bridge gets its planned configuration
    // by Reapply, which must not touch autoconnect-slaves (NM 1.30 refuses).
    let reapplied = p.bridge_reapplied();
    assert_eq!(
        reapplied.i32(names::CONNECTION, "autoconnect-slaves"),
        first.i32(names::CONNECTION, "autoconnect-slaves")
    );
    for ip in [names::IPV4, names::IPV6] {
        assert_eq!(
            reapplied.i64(ip, "route-metric"),
            p.bridge_trial.i64(ip, "route-metric")
        );
    }
    // No conflict probe while it has no port; the profile's own setting
    // once it has.
    assert_eq!(first.i32(names::IPV4, "dad-timeout"), Ok(Some(0)));
    for planned in [&reapplied, &p.bridge_trial, &p.bridge_profile] {
        assert_ne!(planned.i32(names::IPV4, "dad-timeout"), Ok(Some(0)));
    }
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
    req.options.stp = true;
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
fn the_original_profile_is_named_for_the_commit() {
    let p = plan(&found_with(static_settings()), &request());
    assert_eq!(p.original.uuid, "uuid-ens32");
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

    assert!(matches!(
        supported(NmVersion(1, 28, 0)),
        Err(PlanError::NmTooOld { .. })
    ));
    assert_eq!(supported(NmVersion(1, 30, 6)), Ok(()));
    assert_eq!(supported(NmVersion(1, 42, 4)), Ok(()));
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
fn nmcli_equivalent_of_an_ethernet_uplink_is_one_command_a_line_without_the_ports_up() {
    let p = plan(&found_with(static_settings()), &request());
    assert_eq!(
        p.nmcli_commands(),
        vec![
            "nmcli connection add type bridge con-name br0 ifname br0 autoconnect no \
             connection.autoconnect-slaves 1 bridge.stp no bridge.forward-delay 2 \
             802-3-ethernet.cloned-mac-address AE:FB:62:DB:26:90 ipv4.method manual \
             ipv4.addresses 172.25.250.10/24 ipv4.gateway 172.25.250.254 ipv4.dns 172.25.250.254 \
             ipv4.dns-search lab ipv6.method ignore",
            "nmcli connection add type ethernet con-name br0-port-ens32 ifname ens32 master br0 \
             slave-type bridge autoconnect yes connection.autoconnect-priority 0",
            "nmcli connection up br0",
            "nmcli connection modify br0 connection.autoconnect yes",
            "nmcli connection modify uuid-ens32 connection.autoconnect no",
        ]
    );
}

#[test]
fn nmcli_equivalent_pins_the_uplinks_route_metric_and_dhcp_identity() {
    let mut found = dhcp_found();
    uplink_mut(&mut found).metrics = DefaultMetrics {
        ipv4: Some(100),
        ipv6: None,
    };
    let bridge = plan(&found, &request()).nmcli_commands()[0].clone();
    assert!(
        bridge.contains("ipv4.method auto")
            && bridge.contains("ipv4.route-metric 100")
            && bridge.contains("ipv4.dhcp-client-id mac"),
        "{bridge}"
    );
}

#[test]
fn nmcli_equivalent_of_a_bond_or_vlan_uplink_keeps_its_type_and_link() {
    let mut bond = static_settings();
    bond.set(names::CONNECTION, "type", "bond").set(
        "bond",
        "options",
        std::collections::HashMap::from([
            ("mode".to_owned(), "active-backup".to_owned()),
            ("miimon".to_owned(), "100".to_owned()),
        ]),
    );
    let mut found = found_with(bond);
    uplink_mut(&mut found).device.device_type = DeviceType::Bond;
    let port = plan(&found, &request()).nmcli_commands()[1].clone();
    assert!(
        port.starts_with("nmcli connection add type bond con-name br0-port-ens32 ifname ens32 master br0 slave-type bridge")
            && port.contains("bond.options 'miimon=100,mode=active-backup'"),
        "{port}"
    );

    let mut vlan = static_settings();
    vlan.set(names::CONNECTION, "type", "vlan")
        .set("vlan", "parent", "ens3")
        .set("vlan", "id", 10u32)
        // Deprecated: NetworkManager may send it, nmcli takes no such key.
        .set("vlan", "interface-name", "ens32");
    let mut found = found_with(vlan);
    uplink_mut(&mut found).device.device_type = DeviceType::Vlan;
    let port = plan(&found, &request()).nmcli_commands()[1].clone();
    assert!(
        port.starts_with("nmcli connection add type vlan ")
            && port.contains("vlan.id 10")
            && port.contains("vlan.parent ens3")
            && !port.contains("vlan.interface-name")
            && !port.contains("ethernet"),
        "{port}"
    );
}

#[test]
fn nmcli_equivalent_quotes_names_for_the_shell_and_sets_declared_options() {
    let mut found = found_with(static_settings());
    let active = uplink_mut(&mut found).active.as_mut().expect("active");
    active.info.id = "Wired connection 1".into();
    active.info.uuid = "uuid-wired".into();
    let mut req = request();
    req.options.stp = true;
    req.options.priority = Some(4096);
    req.options.mtu = Some(1400);
    let commands = plan(&found, &req).nmcli_commands();
    assert!(
        commands[0].contains("bridge.stp yes bridge.priority 4096"),
        "{}",
        commands[0]
    );
    assert!(
        commands[0].contains("802-3-ethernet.mtu 1400"),
        "{}",
        commands[0]
    );
    assert!(
        commands[1].ends_with("802-3-ethernet.mtu 1400"),
        "{}",
        commands[1]
    );
    assert!(!commands.iter().any(|c| c.contains("up br0-port")));
}

#[test]
fn nmcli_equivalent_of_a_modification_and_an_adoption_applies_in_place() {
    let ours = port_of_hand_made_bridge(&["ens32"], true);
    let mut req = request();
    req.options.stp = true;
    req.options.mtu = Some(1400);
    let Ok(Decision::Modify(modify)) = plan_convert(&req, &ours, &ids()) else {
        panic!("expected a modification");
    };
    assert_eq!(
        modify.nmcli_commands(),
        vec![
            "nmcli connection modify uuid-ens32 802-3-ethernet.mtu 1400",
            "nmcli device reapply ens32",
            "nmcli connection modify uuid-br0 bridge.stp yes bridge.forward-delay 2 802-3-ethernet.mtu 1400",
            "nmcli device reapply br0",
        ]
    );

    let found = port_of_hand_made_bridge(&["ens32"], false);
    let Ok(Decision::Adopt(adopt)) = plan_convert(&adopting(), &found, &ids()) else {
        panic!("expected an adoption");
    };
    let commands = adopt.nmcli_commands();
    assert!(
        commands[0].starts_with("nmcli connection add type ethernet con-name ens32-plain ifname ens32 autoconnect no ipv4.method manual ipv4.addresses 172.25.250.10/24"),
        "{}",
        commands[0]
    );
    assert_eq!(
        commands[1..],
        [
            "nmcli connection modify uuid-br0 bridge.stp no bridge.forward-delay 2",
            "nmcli device reapply br0"
        ]
    );
}

fn dhcp_found() -> Found {
    let mut s = static_settings();
    s.set(names::IPV4, "method", "auto")
        .remove(names::IPV4, "address-data")
        .remove(names::IPV4, "addresses")
        .remove(names::IPV4, "gateway");
    found_with(s)
}

fn uplink_mut(found: &mut Found) -> &mut UplinkFound {
    found.uplink.as_mut().expect("the test uplink")
}

#[test]
fn the_uplinks_running_route_metrics_are_pinned_unless_the_profile_sets_them() {
    let mut found = found_with(static_settings());
    uplink_mut(&mut found).metrics = DefaultMetrics {
        ipv4: Some(100),
        ipv6: Some(1024),
    };
    let p = plan(&found, &request());
    assert_eq!(
        p.bridge_profile.i64(names::IPV4, "route-metric"),
        Ok(Some(100))
    );
    assert_eq!(
        p.bridge_profile.i64(names::IPV6, "route-metric"),
        Ok(Some(1024))
    );

    let mut s = static_settings();
    s.set(names::IPV4, "route-metric", 50i64);
    let mut found = found_with(s);
    uplink_mut(&mut found).metrics.ipv4 = Some(50);
    uplink_mut(&mut found).metrics.ipv6 = None;
    let p = plan(&found, &request());
    assert_eq!(
        p.bridge_profile.i64(names::IPV4, "route-metric"),
        Ok(Some(50))
    );
    assert_eq!(p.bridge_profile.i64(names::IPV6, "route-metric"), Ok(None));
}

#[test]
fn dhcp_identity_comes_from_the_running_leases() {
    let mut found = dhcp_found();
    {
        let u = uplink_mut(&mut found);
        u.lease4.insert(
            "dhcp_client_identifier".into(),
            "01:52:54:00:12:34:56".into(),
        );
        u.lease6.insert("iaid".into(), "0a:0b:0c:0d".into());
        u.lease6
            .insert("dhcp6_client_id".into(), "00:04:aa:bb".into());
    }
    let mut s = found
        .uplink
        .as_ref()
        .unwrap()
        .active
        .as_ref()
        .unwrap()
        .applied
        .clone();
    s.set(names::IPV6, "method", "auto");
    if let Some(a) = uplink_mut(&mut found).active.as_mut() {
        a.applied = s;
    }
    let p = plan(&found, &request());
    let b = &p.bridge_profile;
    assert_eq!(
        b.str(names::IPV4, "dhcp-client-id"),
        Ok(Some("01:52:54:00:12:34:56"))
    );
    assert_eq!(b.str(names::IPV6, "dhcp-iaid"), Ok(Some("0a:0b:0c:0d")));
    assert_eq!(b.str(names::IPV6, "dhcp-duid"), Ok(Some("00:04:aa:bb")));
}

#[test]
fn host_level_connection_keys_follow_the_host() {
    let mut s = static_settings();
    s.set(names::CONNECTION, "stable-id", "host-7")
        .set(names::CONNECTION, "mdns", 2i32)
        .set(names::CONNECTION, "zone", "trusted");
    let p = plan(&found_with(s), &request());
    let b = &p.bridge_profile;
    assert_eq!(b.str(names::CONNECTION, "stable-id"), Ok(Some("host-7")));
    assert_eq!(b.i32(names::CONNECTION, "mdns"), Ok(Some(2)));
    assert_eq!(b.str(names::CONNECTION, "zone"), Ok(Some("trusted")));
    // The bridge keeps its own name and identity.
    assert_eq!(b.str(names::CONNECTION, "id"), Ok(Some("br0")));
}

#[test]
fn a_dhcp_lease_is_held_on_trial_and_never_committed() {
    let mut found = dhcp_found();
    uplink_mut(&mut found)
        .lease4
        .insert("ip_address".into(), "172.25.250.10".into());
    uplink_mut(&mut found)
        .lease4
        .insert("dhcp_server_identifier".into(), "172.25.250.254".into());
    let p = plan(&found, &request());
    let lease = p.lease.expect("a lease to hold");
    assert_eq!(lease.address.to_string(), "172.25.250.10/24");
    assert_eq!(lease.server, Some("172.25.250.254".parse().unwrap()));
    assert_eq!(
        p.bridge_trial.i32(names::IPV4, "dhcp-timeout"),
        Ok(Some(i32::MAX))
    );
    assert_eq!(
        p.bridge_trial
            .dict_list(names::IPV4, "address-data")
            .map(|l| l.len()),
        Ok(1)
    );
    assert_eq!(p.bridge_profile.i32(names::IPV4, "dhcp-timeout"), Ok(None));
    assert_eq!(
        p.bridge_profile
            .dict_list(names::IPV4, "address-data")
            .map(|l| l.len()),
        Ok(0)
    );
    // A DHCP bridge first comes up without IP, even on trial.
    let first = p.bridge_staged();
    assert_eq!(first.str(names::IPV4, "method"), Ok(Some("disabled")));
    assert_eq!(
        first.i32(names::CONNECTION, "autoconnect-slaves"),
        Ok(Some(0))
    );
    // Without lease options nothing can be held, and the plan says so.
    let p = plan(&dhcp_found(), &request());
    assert!(p.lease.is_none());
    assert_eq!(p.warnings.len(), 1, "{:?}", p.warnings);
}

#[test]
fn slaac_addresses_the_bridge_would_not_get_again_are_refused() {
    let with_ipv6 = |address: &str| {
        let mut s = static_settings();
        s.set(names::IPV6, "method", "auto");
        let mut found = found_with(s);
        let u = uplink_mut(&mut found);
        u.device.permanent_mac = "52:54:00:12:34:56".into();
        u.device.ipv6.addresses = vec![
            "fe80::5054:ff:fe12:3456/64".parse().unwrap(),
            address.parse().unwrap(),
        ];
        found
    };
    // EUI-64 from the MAC the bridge keeps: the same address again.
    let p = plan(&with_ipv6("fd00:250::5054:ff:fe12:3456/64"), &request());
    assert_eq!(p.ipv6.method, "auto");
    // Stable-privacy: hashed with the interface name, so lost.
    match refused(&with_ipv6("fd00:250::1c2f:9a41:77e0:d3b5/64"), &request()) {
        PlanError::Ipv6Identity {
            addresses, profile, ..
        } => {
            assert_eq!(profile, "ens32");
            assert_eq!(addresses.len(), 1);
        }
        other => panic!("expected an IPv6 identity refusal, got {other:?}"),
    }
}

/// ens32 as the only port of a hand-made br0 (STP on, no marker).
fn port_of_hand_made_bridge(ports: &[&str], marked: bool) -> Found {
    let mut found = found_with(static_settings());
    let mut bridge = device("br0", DeviceType::Bridge);
    bridge.path = path("/org/freedesktop/NetworkManager/Devices/9");
    let mut bridge_settings = static_settings();
    bridge_settings
        .set(names::CONNECTION, "id", "br0")
        .set(names::CONNECTION, "uuid", "uuid-br0")
        .set(names::CONNECTION, "type", "bridge")
        .set(names::CONNECTION, "interface-name", "br0");
    if marked {
        // As netbridge makes them: STP off, forward delay 2.
        bridge_settings
            .set(names::BRIDGE, "stp", false)
            .set(names::BRIDGE, "forward-delay", 2u32);
        Marker {
            uplink: "ens32".into(),
            port_uuid: "p".into(),
            original_uuid: "o".into(),
            original_autoconnect: true,
        }
        .write(&mut bridge_settings);
    }
    let u = uplink_mut(&mut found);
    u.controller = Some("br0".into());
    u.controller_found = Some(ControllerFound {
        device: bridge,
        active: Some(ActiveProfile {
            info: profile("br0", Some("br0")),
            applied: bridge_settings.clone(),
            saved: bridge_settings,
        }),
        ports: ports.iter().map(|p| (*p).to_owned()).collect(),
    });
    found
}

fn adopting() -> Request {
    Request {
        adopt: true,
        ..request()
    }
}

#[test]
fn a_hand_made_bridge_is_foreign_without_adopt_and_ours_is_nothing_to_do() {
    let found = port_of_hand_made_bridge(&["ens32"], false);
    assert!(matches!(
        refused(&found, &request()),
        PlanError::Foreign { ref bridge, .. } if bridge == "br0"
    ));
    let ours = port_of_hand_made_bridge(&["ens32"], true);
    assert!(matches!(
        plan_convert(&request(), &ours, &ids()),
        Ok(Decision::AlreadyConverted { .. })
    ));
}

#[test]
fn netbridges_bridge_that_differs_from_the_declaration_is_modified_in_place() {
    let ours = port_of_hand_made_bridge(&["ens32"], true);
    let mut req = request();
    req.options.stp = true;
    req.options.mtu = Some(1400);
    let Ok(Decision::Modify(plan)) = plan_convert(&req, &ours, &ids()) else {
        panic!("expected a modification");
    };
    assert_eq!(plan.changes, vec!["STP off → on", "MTU auto → 1400"]);
    assert_eq!(plan.bridge_after.bool(names::BRIDGE, "stp"), Ok(Some(true)));
    // The port's MTU caps the bridge's: it changes too.
    let port = plan.port_after.as_ref().expect("the port changes");
    assert_eq!(port.u32(names::ETHERNET, "mtu"), Ok(Some(1400)));
    assert!(plan.port_restore.is_some());
    // The mark stays through a restore: it was there before.
    let back = plan.restore.apply(&plan.bridge_after).unwrap();
    assert!(Marker::read(&back).unwrap().is_some());
    assert_eq!(back.bool(names::BRIDGE, "stp"), Ok(Some(false)));
}

#[test]
fn adoption_marks_the_bridge_turns_stp_off_and_makes_a_plain_profile_to_go_back_to() {
    let found = port_of_hand_made_bridge(&["ens32"], false);
    let Ok(Decision::Adopt(plan)) = plan_convert(&adopting(), &found, &ids()) else {
        panic!("expected an adoption");
    };
    assert_eq!(
        plan.changes,
        vec![
            "STP on → off",
            "forward delay 15 s → 2 s",
            "marked as netbridge's"
        ]
    );
    assert_eq!(
        plan.bridge_after.bool(names::BRIDGE, "stp"),
        Ok(Some(false))
    );
    let marker = Marker::read(&plan.bridge_after).unwrap().expect("marked");
    assert_eq!(marker.original_uuid, ids().original_uuid);
    // A profile named ens32 exists already: the plain one gets its own id.
    assert_eq!(plan.original.id, "ens32-plain");
    let plain = &plan.original_profile;
    assert_eq!(
        plain.bool(names::CONNECTION, "autoconnect"),
        Ok(Some(false))
    );
    assert_eq!(
        plain.str(names::CONNECTION, "interface-name"),
        Ok(Some("ens32"))
    );
    assert_eq!(plain.str(names::IPV4, "method"), Ok(Some("manual")));
    // Undone without a checkpoint, the options go back to absent and the mark goes.
    let restored = plan.restore.apply(&plan.bridge_after).unwrap();
    assert_eq!(restored.bool(names::BRIDGE, "stp"), Ok(None));
    assert_eq!(Marker::read(&restored), Ok(None));
}

#[test]
fn a_port_of_another_bridge_is_sent_to_revert_adopt_or_its_controller() {
    let mut req = request();
    req.bridge = "br1".into();
    let ours = port_of_hand_made_bridge(&["ens32"], true);
    assert_eq!(
        refused(&ours, &req).to_string(),
        "ens32 is already a port of br0; `netbridge revert br0` gives ens32 back its original profile (then convert it again with --bridge br1)"
    );
    let hand_made = port_of_hand_made_bridge(&["ens32"], false);
    assert!(refused(&hand_made, &req)
        .to_string()
        .ends_with("`netbridge convert ens32 --bridge br0 --adopt` takes that bridge over"));
    let mut bonded = port_of_hand_made_bridge(&["ens32"], false);
    let controller = uplink_mut(&mut bonded)
        .controller_found
        .as_mut()
        .expect("controller");
    controller.device.device_type = DeviceType::Bond;
    assert!(refused(&bonded, &req)
        .to_string()
        .ends_with("convert the bond br0 instead (`netbridge convert br0 --bridge br1`)"));
}

#[test]
fn a_taken_name_asks_for_another_name_without_naming_an_option() {
    let mut req = request();
    req.bridge = "ens32".to_owned();
    let message = refused(&found_with(static_settings()), &req).to_string();
    assert!(
        message.ends_with("choose another name for the bridge"),
        "{message}"
    );
    assert!(!message.contains("--bridge"), "{message}");
}

#[test]
fn adoption_is_refused_with_other_ports_or_without_the_uplink_as_a_port() {
    let found = port_of_hand_made_bridge(&["ens32", "vnet0"], false);
    assert!(matches!(
        refused(&found, &adopting()),
        PlanError::AdoptOtherPorts { ref ports, .. } if ports == &["vnet0".to_owned()]
    ));
    assert!(matches!(
        refused(&found_with(static_settings()), &adopting()),
        PlanError::NothingToAdopt { actual: None, .. }
    ));
}

#[test]
fn macs_parse_or_are_refused() {
    assert_eq!(
        parse_mac("aa:BB:00:01:02:03"),
        Some([0xaa, 0xbb, 0, 1, 2, 3])
    );
    assert_eq!(parse_mac("zz:00"), None);
    assert_eq!(parse_mac("aa:bb:cc:dd:ee"), None);
}
