//! A bridge exists for its guests: after a conversion, a VM stand-in on br0
//! gets a lease from the LAN's DHCP server and reaches the gateway — for a
//! DHCP uplink and for a static one. Real NetworkManager in a lab whose LAN
//! serves DHCP.

mod common;

use common::{attach, dhcp_lease, guest_pings, ipv4, netbridge, status};
use netbridge_tests::lab::{DHCP_RANGE, GATEWAY};
use netbridge_tests::{Lab, Uplink};

fn convert_then_a_guest_leases_and_reaches_the_gateway(lab: &Lab) {
    let run = netbridge(lab, &["convert", "ens32", "--yes", "--json"]);
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
    let guest = attach(lab, "br0", "vnet0");
    let lease: std::net::Ipv4Addr = dhcp_lease(lab, &guest).parse().expect("an address");
    assert!(
        (DHCP_RANGE.0..=DHCP_RANGE.1).contains(&lease),
        "{lease} from the LAN's DHCP server"
    );
    assert!(
        guest_pings(&guest, &GATEWAY.to_string()),
        "the guest reaches the gateway through br0"
    );
}

#[test]
fn a_guest_on_the_bridge_of_a_dhcp_uplink_gets_a_lease_and_reaches_the_gateway() {
    let Some(lab) = Lab::require(Uplink::Dhcp) else {
        return;
    };
    convert_then_a_guest_leases_and_reaches_the_gateway(&lab);
}

#[test]
fn a_guest_on_the_bridge_of_a_static_uplink_gets_a_lease_and_reaches_the_gateway() {
    let Some(lab) = Lab::require(Uplink::Dhcp) else {
        return;
    };
    // The host itself is static, outside the LAN's DHCP range.
    common::reconfigure_uplink(
        &lab,
        &[
            "ipv4.method",
            "manual",
            "ipv4.addresses",
            "172.25.250.10/24",
            "ipv4.gateway",
            "172.25.250.254",
            "ipv4.dns",
            "172.25.250.254",
        ],
    );
    assert_eq!(ipv4(&status(&lab), "ens32"), ["172.25.250.10/24"]);
    convert_then_a_guest_leases_and_reaches_the_gateway(&lab);
}
