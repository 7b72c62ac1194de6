//! The container host itself: a Debian system with systemd boots in a lab
//! namespace, its NetworkManager.service brings ens32 up, and it comes back
//! the same after a reboot and after a power cut.
//!
//! These tests need the cached Debian root (built by the first one to run,
//! about two minutes) and `systemd-nspawn`; see `netbridge_tests::container`.

mod common;

use std::net::Ipv4Addr;

use netbridge_tests::container::{Container, HOSTNAME};
use netbridge_tests::lab::{Uplink, GATEWAY, PREFIX_LEN, STATIC_ADDRESS, UPLINK};

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).trim().to_owned()
}

/// What every test expects of a booted host.
fn assert_host_up(host: &Container, when: &str) {
    let state = host.system_state().expect("systemctl is-system-running");
    assert_eq!(
        state,
        "running",
        "{when}: the system is {state}; failed units:\n{}",
        text(&host.systemctl(["--failed", "--no-legend"]).stdout)
    );
    let nm = host.systemctl(["is-active", "NetworkManager.service"]);
    assert_eq!(text(&nm.stdout), "active", "{when}: NetworkManager.service");
    let gateway = GATEWAY.to_string();
    let ping = host.exec(["ping", "-c", "1", "-W", "5", &gateway]);
    assert!(
        ping.status.success(),
        "{when}: ping {gateway} from inside failed:\n{}{}",
        text(&ping.stdout),
        text(&ping.stderr)
    );
}

fn uplink_addresses(host: &Container) -> Vec<(Ipv4Addr, u8)> {
    host.ipv4_addresses(UPLINK).expect("ens32's addresses")
}

/// The boots the container's (persistent) journal knows: lines of
/// `journalctl --list-boots` that start with a boot offset (systemd 252
/// prints a header line first, and has no --no-legend here).
fn boots_in_journal(host: &Container) -> usize {
    let out = host.exec(["journalctl", "--list-boots", "--no-pager"]);
    assert!(out.status.success(), "journalctl: {}", text(&out.stderr));
    text(&out.stdout)
        .lines()
        .filter(|l| {
            l.split_whitespace()
                .next()
                .is_some_and(|w| w.parse::<i32>().is_ok())
        })
        .count()
}

#[test]
fn a_static_host_comes_back_after_a_reboot_and_a_power_cut() {
    let Some(mut host) = Container::require(Uplink::Static) else {
        return;
    };
    let address = (STATIC_ADDRESS, PREFIX_LEN);
    assert_host_up(&host, "first boot");
    assert_eq!(uplink_addresses(&host), vec![address]);
    assert_eq!(text(&host.exec(["hostname"]).stdout), HOSTNAME);
    let profile = host.exec([
        "nmcli",
        "-g",
        "GENERAL.CONNECTION",
        "device",
        "show",
        UPLINK,
    ]);
    assert_eq!(
        text(&profile.stdout),
        UPLINK,
        "the keyfile profile runs ens32"
    );

    // Written without sync: the disk is the machine's page cache.
    let marker = host.exec(["sh", "-c", "echo before > /var/lib/marker"]);
    assert!(marker.status.success(), "{}", text(&marker.stderr));
    host.reboot().expect("reboot");
    assert_host_up(&host, "after the reboot");
    assert_eq!(uplink_addresses(&host), vec![address]);

    host.power_cut().expect("power cut");
    assert!(!host.is_running());
    assert!(
        uplink_addresses(&host).is_empty(),
        "a power cut leaves ens32 without addresses"
    );
    host.boot().expect("boot after the power cut");
    assert_host_up(&host, "after the power cut");
    assert_eq!(uplink_addresses(&host), vec![address]);
    let marker = host.exec(["cat", "/var/lib/marker"]);
    assert_eq!(text(&marker.stdout), "before", "the root is the same disk");
    assert_eq!(boots_in_journal(&host), 3, "one journal across three boots");
    assert_eq!(host.boots(), 3);
}

#[test]
fn a_dhcp_host_gets_a_lease_from_the_lan() {
    let Some(host) = Container::require(Uplink::Dhcp) else {
        return;
    };
    assert_host_up(&host, "first boot");
    let addresses = uplink_addresses(&host);
    assert!(
        addresses
            .iter()
            .any(|&(a, len)| Uplink::Dhcp.accepts(a, len)),
        "{addresses:?}"
    );
    let journal = host.journal("NetworkManager.service");
    assert!(
        journal.contains("dhcp4 (ens32): state changed new lease"),
        "{journal}"
    );
}

#[test]
fn stopping_the_container_frees_its_namespace() {
    let Some(mut host) = Container::require(Uplink::Static) else {
        return;
    };
    let leader = host.leader_pid().expect("a running container has a PID 1");
    host.shutdown().expect("shutdown");
    assert!(!host.is_running());
    assert!(
        !std::path::Path::new(&format!("/proc/{leader}")).exists(),
        "the container's PID 1 is gone"
    );
    let pids = std::process::Command::new("ip")
        .args(["netns", "pids", host.lab().host_ns()])
        .output()
        .expect("ip netns pids");
    assert_eq!(text(&pids.stdout), "", "nothing runs in the host namespace");
}

#[test]
fn netbridge_installs_the_documented_way_and_talks_to_the_hosts_networkmanager() {
    let Some(host) = Container::require(Uplink::Static) else {
        return;
    };
    host.install_netbridge()
        .expect("make install DESTDIR=<root>");
    for binary in [
        "/usr/local/bin/netbridge",
        "/usr/local/sbin/netbridge-agent",
    ] {
        let version = host.exec([binary, "--version"]);
        assert!(
            version.status.success(),
            "{binary}: {}",
            text(&version.stderr)
        );
    }
    let unit = host.systemctl(["cat", "netbridge-agent.service"]);
    assert!(
        unit.status.success(),
        "the unit is installed: {}",
        text(&unit.stderr)
    );
    let enabled = host.systemctl(["is-enabled", "netbridge-agent.service"]);
    assert_eq!(
        text(&enabled.stdout),
        "disabled",
        "installing enables nothing"
    );
    // On the container's own system bus, as on a real host.
    let status = host.exec(["netbridge", "status", "--json"]);
    assert!(status.status.success(), "{}", text(&status.stderr));
    let doc = common::document(&text(&status.stdout)).unwrap_or_else(|e| panic!("{e}"));
    assert!(
        common::device(&doc, "ens32").is_some(),
        "{}",
        text(&status.stdout)
    );
}
