//! NAT and host-only networks (`netbridge create`/`delete`) in a lab, with a
//! "guest": a namespace whose veth is a port of the bridge, as libvirt
//! attaches a VM's tap.

mod common;

use std::process::Stdio;
use std::time::Duration;

use common::{attach, device, dhcp_lease, guest_pings, ipv4, netbridge, status, VMNET1};
use netbridge_tests::{Lab, Uplink};

fn create(lab: &Lab, args: &[&str]) {
    let run = netbridge(lab, args);
    assert_eq!(run.code, 0, "{args:?}: {}\n{}", run.stdout, run.stderr);
}

#[test]
fn a_nat_network_serves_dhcp_and_dns_and_masquerades_guests() {
    let Some(lab) = Lab::require(Uplink::Static) else {
        return;
    };
    create(&lab, &common::CREATE_NAT);
    let guest = attach(&lab, "virbr1", "vnet0");
    let lease = dhcp_lease(&lab, &guest);
    let addr: std::net::Ipv4Addr = lease.parse().expect("an IPv4 lease");
    assert!(
        addr.octets()[..3] == [192, 168, 107] && addr.octets()[3] > 1,
        "lease {addr} in the subnet, not the bridge's"
    );

    // DNS through the host (NetworkManager's dnsmasq forwards to the LAN's).
    let bin = netbridge_tests::lab::bin_dir()
        .expect("binaries built")
        .join("netbridge-lab");
    let out = guest.exec([
        bin.display().to_string(),
        "resolve".into(),
        "192.168.107.1".into(),
        "gw.lab".into(),
    ]);
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("172.25.250.254"),
        "gw.lab resolves: {out:?}"
    );

    // The LAN sees the host's address, not the guest's.
    let listener = lab
        .lan_command([
            "python3",
            "-c",
            "import socket;s=socket.socket();s.bind(('172.25.250.254',8080));s.listen(1);s.settimeout(20);c,a=s.accept();print(a[0])",
        ])
        .stdout(Stdio::piped())
        .spawn()
        .expect("LAN listener");
    std::thread::sleep(Duration::from_millis(300));
    let connect = guest.exec([
        "python3",
        "-c",
        "import socket;socket.create_connection(('172.25.250.254',8080),timeout=5).close()",
    ]);
    assert!(
        connect.status.success(),
        "the guest reaches the LAN: {connect:?}"
    );
    let seen = listener.wait_with_output().expect("listener output");
    assert_eq!(
        String::from_utf8_lossy(&seen.stdout).trim(),
        "172.25.250.10",
        "masqueraded"
    );

    // Nothing outside opens a connection to the guest, even with a route to it.
    assert!(lab
        .lan([
            "ip",
            "route",
            "add",
            "192.168.107.0/24",
            "via",
            "172.25.250.10"
        ])
        .status
        .success());
    assert!(
        !lab.lan(["ping", "-c", "1", "-W", "2", &lease])
            .status
            .success(),
        "the LAN cannot reach the guest"
    );
    let s = status(&lab);
    let virbr1 = device(&s, "virbr1").expect("virbr1 listed");
    assert_eq!(virbr1["netbridge"]["mode"], "nat");
    assert_eq!(virbr1["bridge"]["ports"][0]["name"], "vnet0");
}

#[test]
fn an_isolated_network_reaches_the_host_and_nothing_beyond() {
    let Some(lab) = Lab::require(Uplink::Static) else {
        return;
    };
    create(&lab, VMNET1);
    let guest = attach(&lab, "vmnet1", "vnet1");
    for args in [
        vec!["ip", "addr", "add", "192.168.108.2/24", "dev", "eth0"],
        vec!["ip", "route", "add", "default", "via", "192.168.108.1"],
    ] {
        assert!(guest.exec(&args).status.success(), "{args:?}");
    }
    assert!(
        guest_pings(&guest, "192.168.108.1"),
        "the guest reaches the host"
    );
    assert!(!guest_pings(&guest, "172.25.250.254"), "but not the LAN");
    assert_eq!(
        device(&status(&lab), "vmnet1").expect("vmnet1")["netbridge"]["mode"],
        "isolated"
    );
}

#[test]
fn networks_survive_restart_and_reboot_and_delete_leaves_the_rest_as_it_was() {
    let Some(mut lab) = Lab::require(Uplink::Static) else {
        return;
    };
    let before = lab.snapshot();
    create(&lab, &common::CREATE_NAT);
    create(&lab, VMNET1);
    let up = |lab: &Lab| {
        let s = status(lab);
        ipv4(&s, "virbr1") == ["192.168.107.1/24"] && ipv4(&s, "vmnet1") == ["192.168.108.1/24"]
    };
    lab.restart_nm().expect("restart NetworkManager");
    assert!(
        common::eventually(Duration::from_secs(20), || up(&lab)),
        "after a restart"
    );
    lab.reboot().expect("reboot");
    assert!(
        common::eventually(Duration::from_secs(30), || up(&lab)),
        "after a reboot: {:#}",
        status(&lab)
    );

    let again = netbridge(&lab, &[&common::CREATE_NAT[..], &["--json"]].concat());
    assert_eq!(again.json()["result"], "unchanged");
    for name in ["virbr1", "vmnet1"] {
        let run = netbridge(&lab, &["delete", name]);
        assert_eq!(run.code, 0, "{}", run.stderr);
    }
    assert_eq!(lab.snapshot(), before, "only the networks went");
}

#[test]
fn bad_network_requests_are_refused_and_change_nothing() {
    let Some(lab) = Lab::require(Uplink::Static) else {
        return;
    };
    let before = lab.snapshot();
    let cases: &[(&[&str], &str)] = &[
        (
            &[
                "create",
                "n1",
                "--mode",
                "nat",
                "--address",
                "172.25.250.1/24",
            ],
            "overlaps 172.25.250.10/24 on ens32",
        ),
        (
            &[
                "create",
                "n1",
                "--mode",
                "nat",
                "--address",
                "192.168.107.0/24",
            ],
            "network address",
        ),
        (
            &[
                "create",
                "n1",
                "--mode",
                "nat",
                "--address",
                "192.168.107.255/24",
            ],
            "broadcast address",
        ),
        (
            &[
                "create",
                "n1",
                "--mode",
                "nat",
                "--address",
                "192.168.107.1/24",
                "--dhcp-range",
                "192.168.108.2-192.168.108.9",
            ],
            "outside",
        ),
        (
            &[
                "create",
                "n1",
                "--mode",
                "nat",
                "--address",
                "192.168.107.1/24",
                "--dhcp-range",
                "192.168.107.1-192.168.107.9",
            ],
            "own address",
        ),
        (
            &[
                "create",
                "ens32",
                "--mode",
                "nat",
                "--address",
                "192.168.107.1/24",
            ],
            // create takes the name as its argument: no --bridge to point to.
            "choose another name for the bridge",
        ),
        (
            &[
                "create",
                "a-very-long-name-x",
                "--mode",
                "nat",
                "--address",
                "192.168.107.1/24",
            ],
            "at most 15 bytes",
        ),
        (
            &[
                "create",
                "n1",
                "--mode",
                "isolated",
                "--address",
                "192.168.107.1/24",
                "--dhcp-range",
                "192.168.107.2-192.168.107.9",
            ],
            "only together with NAT",
        ),
        (&["delete", "ens32"], "was not created by netbridge"),
        (&["delete", "nothing"], "no network named"),
    ];
    for (args, message) in cases {
        let run = netbridge(&lab, args);
        assert_eq!(run.code, 2, "{args:?}: {}", run.stderr);
        assert!(
            run.stderr.contains(message),
            "{args:?} says {message:?}: {}",
            run.stderr
        );
        assert_eq!(lab.snapshot(), before, "{args:?} changed nothing");
    }
}

/// `create --dry-run` and `delete --dry-run` show the nmcli commands and
/// change nothing; run by hand, create's commands bring up the same network.
#[test]
fn dry_runs_of_create_and_delete_show_their_nmcli_commands() {
    let Some(lab) = Lab::require(Uplink::Static) else {
        return;
    };
    let before = lab.snapshot();
    let dry = netbridge(&lab, &[&common::CREATE_NAT[..], &["--dry-run"]].concat());
    assert_eq!(dry.code, 0, "{}", dry.stderr);
    assert_eq!(lab.snapshot(), before, "a dry run changes nothing");
    let commands: Vec<&str> = dry
        .stdout
        .lines()
        .filter_map(|l| l.strip_prefix("  "))
        .filter(|l| l.starts_with("nmcli "))
        .collect();
    assert!(
        commands.len() == 2
            && commands[0]
                .starts_with("nmcli connection add type bridge con-name virbr1 ifname virbr1")
            && commands[0].contains("ipv4.method shared")
            && commands[1] == "nmcli connection up virbr1",
        "{}",
        dry.stdout
    );
    common::run_by_hand(&lab, &commands);
    assert_eq!(ipv4(&status(&lab), "virbr1"), ["192.168.107.1/24"]);

    create(&lab, VMNET1);
    let made = lab.snapshot();
    let delete = netbridge(&lab, &["delete", "vmnet1", "--dry-run"]);
    assert_eq!(delete.code, 0, "{}", delete.stderr);
    assert!(
        delete.stderr.contains("nmcli connection delete "),
        "{}",
        delete.stderr
    );
    assert_eq!(lab.snapshot(), made, "a dry run deletes nothing");
}
