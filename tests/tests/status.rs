//! `netbridge status` against a real NetworkManager in a lab.

mod common;

use common::{device, ipv4, netbridge, status};
use netbridge_tests::{Lab, Uplink};

#[test]
fn status_reports_a_static_uplink() {
    let Some(lab) = Lab::require(Uplink::Static) else {
        return;
    };
    let s = status(&lab);
    let ens32 = device(&s, "ens32").expect("ens32 listed");
    assert_eq!(ens32["state"], "activated");
    assert_eq!(ens32["type"], "veth");
    assert_eq!(ens32["profile"]["id"], "ens32");
    assert_eq!(ipv4(&s, "ens32"), vec!["172.25.250.10/24"]);
    assert_eq!(ens32["ipv4"]["gateway"], "172.25.250.254");
    assert_eq!(ens32["ipv4"]["dns"], serde_json::json!(["172.25.250.254"]));
    assert!(device(&s, "lo").is_none(), "loopback only with --all");
    assert_eq!(s["networkmanager"]["version"], "1.42.4");

    let table = netbridge(&lab, &["status"]);
    assert_eq!(table.code, 0);
    assert!(table.stdout.contains("ens32") && table.stdout.contains("172.25.250.10/24"));
}

#[test]
fn status_reports_a_dhcp_uplink() {
    let Some(lab) = Lab::require(Uplink::Dhcp) else {
        return;
    };
    let s = status(&lab);
    let addrs = ipv4(&s, "ens32");
    assert_eq!(addrs.len(), 1, "one DHCP address: {addrs:?}");
    let (addr, len) = addrs[0].split_once('/').expect("address/len");
    let addr: std::net::Ipv4Addr = addr.parse().expect("an IPv4 address");
    assert!(
        Uplink::Dhcp.accepts(addr, len.parse().expect("prefix")),
        "{addr} in the dnsmasq range"
    );
    let ens32 = device(&s, "ens32").expect("ens32 listed");
    assert_eq!(ens32["ipv4"]["gateway"], "172.25.250.254");
    assert_eq!(ens32["ipv4"]["dns"], serde_json::json!(["172.25.250.254"]));
    assert_eq!(ens32["dhcp4"], true);
}

#[test]
fn status_says_clearly_when_networkmanager_is_not_running() {
    let Some(mut lab) = Lab::require(Uplink::Static) else {
        return;
    };
    lab.stop_nm().expect("stop NetworkManager");
    let run = netbridge(&lab, &["status"]);
    assert_eq!(
        run.code, 4,
        "exit 4 = NetworkManager unavailable: {}",
        run.stderr
    );
    assert!(
        run.stderr.contains("NetworkManager is not running"),
        "{}",
        run.stderr
    );
    let json = netbridge(&lab, &["status", "--json"]);
    assert_eq!(json.code, 4);
    assert!(json.json()["error"]["message"]
        .as_str()
        .unwrap_or("")
        .contains("not running"));
}

#[test]
fn status_says_clearly_when_the_bus_is_unreachable() {
    let Some(lab) = Lab::require(Uplink::Static) else {
        return;
    };
    let missing = lab.dir().join("no-such-bus.sock");
    let out = lab
        .host_command([
            "env".to_owned(),
            format!("DBUS_SYSTEM_BUS_ADDRESS=unix:path={}", missing.display()),
            netbridge_tests::lab::netbridge_bin()
                .expect("netbridge built")
                .display()
                .to_string(),
            "status".to_owned(),
        ])
        .output()
        .expect("run netbridge");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(4), "{stderr}");
    assert!(
        stderr.contains("cannot reach the D-Bus system bus"),
        "{stderr}"
    );
    assert!(stderr.contains("no-such-bus.sock"), "{stderr}");
}
