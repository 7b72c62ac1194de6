//! The bridge takes the uplink's exact place (issue: route priority, DHCP
//! identity, DNS), proven before commit — and a DHCP server that goes silent
//! never strands the host. Real NetworkManager in a lab.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::{eventually, ipv4, netbridge, ping_gateway, status, Running};
use netbridge_tests::lab::{SECOND_NIC, UPLINK};
use netbridge_tests::{Lab, Uplink};

const EGRESS_PROBE: &str = "192.0.2.1";

fn convert_json(lab: &Lab, extra: &[&str]) -> common::Run {
    let mut args = vec!["convert", "ens32", "--yes", "--json"];
    args.extend_from_slice(extra);
    netbridge(lab, &args)
}

fn egress(lab: &Lab) -> String {
    lab.egress(EGRESS_PROBE).expect("ip route get")
}

fn silence_dhcp(lab: &Lab) {
    let out = lab.lan([
        "iptables", "-I", "INPUT", "-p", "udp", "--dport", "67", "-j", "DROP",
    ]);
    assert!(
        out.status.success(),
        "block DHCP in the LAN namespace: {out:?}"
    );
}

fn restore_dhcp(lab: &Lab) {
    let out = lab.lan([
        "iptables", "-D", "INPUT", "-p", "udp", "--dport", "67", "-j", "DROP",
    ]);
    assert!(out.status.success(), "unblock DHCP: {out:?}");
}

#[test]
fn a_second_nic_with_a_worse_default_route_does_not_take_the_egress() {
    let Some(lab) = Lab::require(Uplink::Static) else {
        return;
    };
    lab.add_second_nic(101).expect("second NIC");
    assert_eq!(
        egress(&lab),
        UPLINK,
        "before: traffic leaves through ens32 (metric 100)"
    );

    let run = convert_json(&lab, &[]);
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
    assert_eq!(
        egress(&lab),
        "br0",
        "after: traffic leaves through br0, not ens33"
    );
    let doc = run.json();
    let routes = &doc["outcome"]["identity"]["after"]["routes"];
    assert_eq!(routes[0]["target"], EGRESS_PROBE);
    assert_eq!(routes[0]["dev"], "br0", "{routes}");
    assert_eq!(routes[0]["via"], "172.25.250.254");
    let before = &doc["identity_before"]["routes"][0];
    assert_eq!(before["dev"], UPLINK);
    // The metric is on disk, for the next boot.
    let br0 = common::saved_keyfile(&lab, "br0");
    assert!(br0.contains("route-metric=100"), "{br0}");
}

#[test]
fn egress_that_left_through_another_nic_stays_there() {
    let Some(lab) = Lab::require(Uplink::Static) else {
        return;
    };
    lab.add_second_nic(99).expect("second NIC");
    assert_eq!(egress(&lab), SECOND_NIC, "before: ens33's metric 99 wins");

    let run = convert_json(&lab, &[]);
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
    assert_eq!(egress(&lab), SECOND_NIC, "after: still ens33");
    let doc = run.json();
    assert_eq!(
        doc["outcome"]["identity"]["after"]["routes"][0]["dev"],
        SECOND_NIC
    );
    assert!(
        ping_gateway(&lab),
        "the LAN's gateway still answers through br0"
    );
}

#[test]
fn a_silent_dhcp_server_is_refused_before_any_change() {
    let Some(lab) = Lab::require(Uplink::Dhcp) else {
        return;
    };
    let before = lab.snapshot();
    silence_dhcp(&lab);
    let run = convert_json(&lab, &[]);
    assert_eq!(run.code, 2, "refused: {}\n{}", run.stdout, run.stderr);
    let doc = run.json();
    let error = doc["error"]["message"].as_str().unwrap_or_default();
    assert!(
        error.contains("DHCP server 172.25.250.254 does not answer"),
        "the message names the server: {error}"
    );
    assert_eq!(lab.snapshot(), before, "nothing changed");
}

/// Samples the host's addresses every 20 ms while `during` runs: the
/// address may be on no device only for the moment it moves (a conversion
/// or a rollback), never for the seconds a DHCP exchange would take.
fn address_kept_throughout<T>(lab: &Lab, address: &str, during: impl FnOnce() -> T) -> T {
    let stop = Arc::new(AtomicBool::new(false));
    let ns = lab.host_ns().to_owned();
    let sampler = {
        let (stop, address) = (stop.clone(), address.to_owned());
        std::thread::spawn(move || {
            let (mut streak, mut longest, mut samples) = (0u32, 0u32, 0u32);
            while !stop.load(Ordering::Relaxed) {
                let out = std::process::Command::new("ip")
                    .args(["-n", &ns, "-4", "-o", "addr", "show"])
                    .output()
                    .expect("ip addr");
                let text = String::from_utf8_lossy(&out.stdout);
                samples += 1;
                if text.contains(&format!(" {address} ")) {
                    streak = 0;
                } else {
                    streak += 1;
                    longest = longest.max(streak);
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            (longest, samples)
        })
    };
    let result = during();
    stop.store(true, Ordering::Relaxed);
    let (longest, samples) = sampler.join().expect("sampler");
    assert!(samples > 10, "only {samples} samples");
    assert!(
        longest <= 10,
        "{address} was on no device for {longest} samples in a row (of {samples})"
    );
    result
}

#[test]
fn a_dhcp_server_that_goes_silent_mid_change_rolls_back_and_the_host_keeps_its_address() {
    let Some(lab) = Lab::require(Uplink::Dhcp) else {
        return;
    };
    let s = status(&lab);
    let address = ipv4(&s, UPLINK).pop().expect("ens32 has a lease");
    let (code, output) = address_kept_throughout(&lab, &address, || {
        let mut run = Running::start(&lab, &["convert", "ens32", "--yes"]);
        // The pre-check passed; the server goes silent for the trial.
        run.wait_for("checkpoint", Duration::from_secs(20));
        silence_dhcp(&lab);
        run.finish()
    });
    assert_eq!(code, 3, "rolled back, not stranded (never 5):\n{output}");
    assert!(
        output.contains("the DHCP server did not answer br0"),
        "the reason names the silent server:\n{output}"
    );
    assert!(output.contains("lease held"), "{output}");
    let s = status(&lab);
    assert_eq!(
        ipv4(&s, UPLINK),
        vec![address.clone()],
        "ens32 holds its address"
    );
    assert!(ping_gateway(&lab), "the host still reaches its gateway");

    restore_dhcp(&lab);
    assert!(
        eventually(Duration::from_secs(60), || {
            common::device(&status(&lab), UPLINK).is_some_and(|d| d["state"] == "activated")
        }),
        "ens32 completes DHCP once the server answers again"
    );
    assert_eq!(
        ipv4(&status(&lab), UPLINK),
        vec![address],
        "with the same lease"
    );
}

#[test]
fn a_dhcp_rollback_with_the_server_alive_leaves_the_host_exactly_as_it_was() {
    let Some(lab) = Lab::require(Uplink::Dhcp) else {
        return;
    };
    let extra = "172.25.250.253";
    let out = lab.lan(["ip", "addr", "add", &format!("{extra}/24"), "dev", "lan0"]);
    assert!(out.status.success(), "{out:?}");
    let before = lab.snapshot();
    let check = format!("ping:{extra}");
    let mut run = Running::start(&lab, &["convert", "ens32", "--yes", "--check", &check]);
    run.wait_for("checkpoint", Duration::from_secs(20));
    // The check target disappears: the change must roll back.
    let out = lab.lan(["ip", "addr", "del", &format!("{extra}/24"), "dev", "lan0"]);
    assert!(out.status.success(), "{out:?}");
    let (code, output) = run.finish();
    assert_eq!(code, 3, "{output}");
    assert!(
        output.contains("runs its saved profile again"),
        "the lease hold is released once DHCP answers:\n{output}"
    );
    assert!(
        eventually(Duration::from_secs(20), || lab.snapshot() == before),
        "the host is exactly as before:\nbefore {before:#?}\nafter {:#?}",
        lab.snapshot()
    );
}

#[test]
fn a_dhcp_conversion_proves_the_lease_and_the_identity() {
    let Some(lab) = Lab::require(Uplink::Dhcp) else {
        return;
    };
    let address = ipv4(&status(&lab), UPLINK).pop().expect("lease");
    let run = convert_json(&lab, &[]);
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
    let doc = run.json();
    assert_eq!(doc["dhcp_before"]["ok"], true, "{doc}");
    let identity = &doc["outcome"]["identity"];
    assert_eq!(
        identity["before"]["addresses"],
        serde_json::json!([address])
    );
    assert_eq!(identity["after"]["addresses"], serde_json::json!([address]));
    assert_eq!(identity["after"]["device"], "br0");
    for key in ["nameservers", "domains", "priority"] {
        assert_eq!(
            identity["after"]["dns"][0][key], identity["before"]["dns"][0][key],
            "{key}"
        );
    }
    assert_eq!(identity["after"]["dns"][0]["interface"], "br0");
    // The saved bridge is plain DHCP: the trial's static copy is never committed.
    let br0 = common::saved_keyfile(&lab, "br0");
    assert!(br0.contains("method=auto"), "{br0}");
    assert!(!br0.contains("address1="), "no static copy on disk:\n{br0}");
    assert!(!br0.contains("dhcp-timeout"), "{br0}");
    assert!(
        br0.contains("dhcp-client-id=01:"),
        "the running client id is pinned:\n{br0}"
    );
}

#[test]
fn dns_search_options_and_priority_survive_and_so_does_the_resolvers_view() {
    let Some(mut lab) = Lab::require(Uplink::Static) else {
        return;
    };
    // NetworkManager writes the resolver's view to its own resolv.conf (in
    // the lab's run directory; rc-manager=unmanaged leaves /etc alone).
    let conf = lab.dir().join("conf.d").join("dns.conf");
    std::fs::write(&conf, "[main]\ndns=default\n").expect("write NM drop-in");
    lab.restart_nm().expect("restart NM with dns=default");
    common::reconfigure_uplink(
        &lab,
        &[
            "ipv4.dns-search",
            "lab.example",
            "ipv4.dns-options",
            "rotate,timeout:2",
            "ipv4.dns-priority",
            "50",
        ],
    );
    let resolv = lab.dir().join("run").join("resolv.conf");
    let read = || std::fs::read_to_string(&resolv).unwrap_or_default();
    assert!(
        eventually(Duration::from_secs(10), || read().contains("lab.example")),
        "NetworkManager writes the search domain: {}",
        read()
    );
    let before = read();
    assert!(before.contains("options rotate timeout:2"), "{before}");

    let run = convert_json(&lab, &[]);
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
    let doc = run.json();
    let dns = &doc["outcome"]["identity"]["after"]["dns"][0];
    assert_eq!(dns["domains"], serde_json::json!(["lab.example"]), "{dns}");
    assert_eq!(dns["priority"], 50);
    assert!(
        eventually(Duration::from_secs(5), || read() == before),
        "the resolver sees the same configuration:\nbefore\n{before}\nafter\n{}",
        read()
    );
    let br0 = common::saved_keyfile(&lab, "br0");
    for line in [
        "dns-search=lab.example;",
        "dns-options=rotate;timeout:2;",
        "dns-priority=50",
    ] {
        assert!(br0.contains(line), "{line} in\n{br0}");
    }
}

#[test]
fn a_bridge_that_comes_up_with_another_address_rolls_back_and_names_it() {
    let Some(lab) = Lab::require(Uplink::Dhcp) else {
        return;
    };
    let s = status(&lab);
    let mac = common::device(&s, UPLINK).expect("ens32")["mac"]
        .as_str()
        .expect("a MAC")
        .to_owned();
    let address = ipv4(&s, UPLINK).pop().expect("a lease");
    let other = std::net::Ipv4Addr::new(172, 25, 250, 149);
    assert_ne!(
        address,
        format!("{other}/24"),
        "the lab leased the test's other address"
    );
    let mut run = Running::start(&lab, &["convert", "ens32", "--yes"]);
    run.wait_for("checkpoint", Duration::from_secs(20));
    lab.fix_lease(&mac, other).expect("fixed lease");
    let (code, output) = run.finish();
    assert_eq!(code, 3, "{output}");
    assert!(
        output.contains(&format!("leased {other} to br0, not ens32's")),
        "the difference is named:\n{output}"
    );
}

/// ens32 with IPv6 by SLAAC (`mode`: the profile's ipv6.addr-gen-mode), up
/// again with its global address in place.
fn slaac_uplink(lab: &Lab, mode: &str) -> Vec<String> {
    common::reconfigure_uplink(lab, &["ipv6.method", "auto", "ipv6.addr-gen-mode", mode]);
    let mut found = Vec::new();
    assert!(
        eventually(Duration::from_secs(20), || {
            found = global_ipv6(lab, UPLINK);
            !found.is_empty()
        }),
        "ens32 gets a SLAAC address from the LAN's router advertisements"
    );
    found
}

/// The global, non-temporary IPv6 addresses on `dev`, sorted.
fn global_ipv6(lab: &Lab, dev: &str) -> Vec<String> {
    let out = lab.host([
        "ip", "-6", "-o", "addr", "show", "dev", dev, "scope", "global",
    ]);
    let text = String::from_utf8_lossy(&out.stdout);
    let mut found: Vec<String> = text
        .lines()
        .filter(|l| !l.contains("temporary") && !l.contains("tentative"))
        .filter_map(|l| l.split_whitespace().nth(3).map(str::to_owned))
        .collect();
    found.sort();
    found
}

#[test]
fn an_eui64_slaac_address_is_the_same_on_the_bridge() {
    let Some(lab) = Lab::require(Uplink::Static) else {
        return;
    };
    let _ra = lab.advertise_ipv6().expect("router advertisements");
    let before = slaac_uplink(&lab, "eui64");
    assert!(before[0].starts_with("fd00:250::"), "{before:?}");

    let run = convert_json(&lab, &[]);
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
    assert_eq!(
        global_ipv6(&lab, "br0"),
        before,
        "the same IPv6 address on br0"
    );
    let proven = &run.json()["outcome"]["identity"]["after"]["addresses"];
    assert!(
        proven
            .as_array()
            .is_some_and(|a| a.iter().any(|x| *x == before[0].as_str())),
        "the proof covers the IPv6 address: {proven}"
    );
}

#[test]
fn a_stable_privacy_slaac_address_is_refused_with_the_reason() {
    let Some(lab) = Lab::require(Uplink::Static) else {
        return;
    };
    let _ra = lab.advertise_ipv6().expect("router advertisements");
    let before_addresses = slaac_uplink(&lab, "stable-privacy");
    let before = lab.snapshot();
    let run = convert_json(&lab, &[]);
    assert_eq!(run.code, 2, "{}\n{}", run.stdout, run.stderr);
    let error = run.json()["error"]["message"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(
        error.contains("stable-privacy") && error.contains(&before_addresses[0]),
        "the reason and the address: {error}"
    );
    assert!(
        error.contains("ipv6.addr-gen-mode eui64"),
        "the way out: {error}"
    );
    assert_eq!(lab.snapshot(), before, "nothing changed");
}

#[test]
fn a_static_ipv6_address_moves_with_the_ipv4_one() {
    let Some(lab) = Lab::require(Uplink::Static) else {
        return;
    };
    common::reconfigure_uplink(
        &lab,
        &["ipv6.method", "manual", "ipv6.addresses", "fd00:250::10/64"],
    );
    assert!(eventually(Duration::from_secs(10), || global_ipv6(
        &lab, UPLINK
    ) == [
        "fd00:250::10/64"
    ]));

    let run = convert_json(&lab, &[]);
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
    assert!(
        eventually(Duration::from_secs(10), || global_ipv6(&lab, "br0")
            == ["fd00:250::10/64"]),
        "br0 carries the static IPv6 address: {:?}",
        global_ipv6(&lab, "br0")
    );
    assert!(global_ipv6(&lab, UPLINK).is_empty());
}
