//! `netbridge convert` end to end against a real NetworkManager in a lab,
//! including the failures: a check that fails, netbridge killed mid-change,
//! NetworkManager restarted mid-change, a reboot, bad input.

mod common;

use std::time::Duration;

use common::{
    device, eventually, ipv4, kill_mid_change, netbridge, ping_gateway, rendered, run_by_hand,
    signal, status, Running,
};
use netbridge_tests::{Lab, Uplink};
use nix::sys::signal::Signal;

const YES: &[&str] = &["convert", "ens32", "--yes"];

fn convert_json(lab: &Lab, extra: &[&str]) -> common::Run {
    let mut args = vec!["convert", "ens32", "--yes", "--json"];
    args.extend_from_slice(extra);
    netbridge(lab, &args)
}

fn assert_converted(lab: &Lab, address: &str) {
    let s = status(lab);
    assert_eq!(
        ipv4(&s, "br0"),
        vec![address.to_owned()],
        "br0 carries the address"
    );
    assert!(ipv4(&s, "ens32").is_empty(), "ens32 has no address left");
    let br0 = device(&s, "br0").expect("br0 exists");
    assert_eq!(br0["state"], "activated");
    assert_eq!(
        br0["ipv4"]["gateway"], "172.25.250.254",
        "default route via br0"
    );
    assert_eq!(br0["ipv4"]["dns"], serde_json::json!(["172.25.250.254"]));
    assert_eq!(br0["bridge"]["stp"], false);
    assert_eq!(br0["bridge"]["ports"][0]["name"], "ens32");
    let ens32 = device(&s, "ens32").expect("ens32");
    assert_eq!(ens32["controller"], "br0");
    assert_eq!(ens32["managed"], true, "NetworkManager manages the port");
    assert_eq!(ens32["state"], "activated");
    assert!(ping_gateway(lab), "the gateway answers through br0");
}

fn keyfile<'a>(
    snap: &'a netbridge_tests::HostSnapshot,
    id: &str,
) -> Option<(&'a String, &'a String)> {
    snap.profiles
        .iter()
        .find(|(_, text)| text.lines().any(|l| l == format!("id={id}")))
}

/// The bridge and port profiles are on disk, not only in memory, and the
/// original profile is kept with autoconnect off.
fn assert_saved_with_the_original_kept(lab: &Lab) {
    let snap = lab.snapshot();
    for id in ["br0", "br0-port-ens32"] {
        let (path, _) = keyfile(&snap, id).unwrap_or_else(|| panic!("profile {id} exists"));
        assert!(
            path.starts_with("conn/"),
            "{id} is on disk, not only in memory: {path}"
        );
    }
    let (_, original) = keyfile(&snap, "ens32").expect("the original profile is kept");
    assert!(
        original.contains("autoconnect=false"),
        "original autoconnect off:\n{original}"
    );
}

fn assert_converted_after_a_reboot(lab: &mut Lab) {
    lab.reboot().expect("reboot the lab host");
    assert!(
        eventually(Duration::from_secs(30), || ipv4(&status(lab), "br0")
            == ["172.25.250.10/24"]),
        "after a reboot br0 comes back: {:#}",
        status(lab)
    );
    assert_converted(lab, "172.25.250.10/24");
}

#[test]
fn a_static_uplink_converts_commits_to_disk_and_survives_restart_and_reboot() {
    let Some(mut lab) = Lab::require(Uplink::Static) else {
        return;
    };
    let run = convert_json(&lab, &[]);
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
    let doc = run.json();
    assert_eq!(doc["result"], "committed");
    assert_eq!(doc["outcome"]["result"], "committed");
    // gateway, dns-servers and guest-path.
    assert!(doc["outcome"]["checks"]
        .as_array()
        .is_some_and(|c| c.len() == 3));
    assert_converted(&lab, "172.25.250.10/24");
    assert_saved_with_the_original_kept(&lab);

    lab.restart_nm().expect("restart NetworkManager");
    assert!(eventually(Duration::from_secs(20), || ipv4(
        &status(&lab),
        "br0"
    ) == [
        "172.25.250.10/24"
    ]));
    assert_converted(&lab, "172.25.250.10/24");

    assert_converted_after_a_reboot(&mut lab);
}

/// The nmcli equivalent a dry run prints is no sketch: run by hand, line by
/// line, it brings the host to the state netbridge's own conversion does —
/// bridge with the address, uplink its port, profiles on disk, the original
/// kept with autoconnect off — and the host comes back so after a reboot.
#[test]
fn the_rendered_nmcli_commands_convert_the_host_as_netbridge_does() {
    let Some(mut lab) = Lab::require(Uplink::Static) else {
        return;
    };
    let commands = rendered(&lab, &["convert", "ens32", "--dry-run", "--json"]);
    assert_eq!(commands.len(), 5, "{commands:#?}");
    run_by_hand(&lab, &commands);
    assert!(
        eventually(Duration::from_secs(30), || ipv4(&status(&lab), "br0")
            == ["172.25.250.10/24"]),
        "br0 takes the address: {:#}",
        status(&lab)
    );
    assert_converted(&lab, "172.25.250.10/24");
    assert_saved_with_the_original_kept(&lab);

    assert_converted_after_a_reboot(&mut lab);
}

#[test]
fn a_dhcp_uplink_keeps_its_address_and_mac() {
    dhcp_uplink_kept(|lab| {
        let run = convert_json(lab, &[]);
        assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
    });
}

/// The same by hand with the rendered nmcli commands: the bridge keeps the
/// uplink's MAC and DHCP client id, so the server leases it the same address.
#[test]
fn the_rendered_nmcli_commands_keep_a_dhcp_uplinks_address_and_mac() {
    dhcp_uplink_kept(|lab| {
        let commands = rendered(lab, &["convert", "ens32", "--dry-run", "--json"]);
        run_by_hand(lab, &commands);
    });
}

/// After `convert`, br0 leases the address ens32 had, with its MAC.
fn dhcp_uplink_kept(convert: impl FnOnce(&Lab)) {
    let Some(lab) = Lab::require(Uplink::Dhcp) else {
        return;
    };
    let before = status(&lab);
    let address = ipv4(&before, "ens32").pop().expect("a DHCP address");
    let mac = device(&before, "ens32").expect("ens32")["mac"].clone();
    convert(&lab);
    assert!(
        eventually(Duration::from_secs(30), || ipv4(&status(&lab), "br0")
            == [address.clone()]),
        "br0 leases {address}: {:#}",
        status(&lab)
    );
    assert_converted(&lab, &address);
    assert_eq!(device(&status(&lab), "br0").expect("br0")["mac"], mac);
    assert_eq!(device(&status(&lab), "br0").expect("br0")["dhcp4"], true);
}

#[test]
fn a_declared_mac_is_the_bridges_from_the_start() {
    let Some(lab) = Lab::require(Uplink::Static) else {
        return;
    };
    let run = convert_json(&lab, &["--mac", "02:00:5e:10:00:02"]);
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
    assert_converted(&lab, "172.25.250.10/24");
    assert_eq!(
        device(&status(&lab), "br0").expect("br0")["mac"],
        "02:00:5E:10:00:02"
    );
}

#[test]
fn a_check_that_fails_after_the_change_rolls_back_to_exactly_the_old_state() {
    let Some(lab) = Lab::require(Uplink::Static) else {
        return;
    };
    let before = lab.snapshot();
    let mut run = Running::start(
        &lab,
        &[
            "convert",
            "ens32",
            "--yes",
            "--check",
            "ping:172.25.250.254",
        ],
    );
    run.wait_for("checkpoint", Duration::from_secs(20));
    // The gateway stops answering ping once the change is under way.
    let out = lab.lan(["sysctl", "-qw", "net.ipv4.icmp_echo_ignore_all=1"]);
    assert!(out.status.success());
    let (code, log) = run.finish();
    lab.lan(["sysctl", "-qw", "net.ipv4.icmp_echo_ignore_all=0"]);
    assert_eq!(code, 3, "exit 3 = rolled back:\n{log}");
    assert!(log.contains("rolled back"), "{log}");
    assert!(
        log.contains("ens32 attached to br0 while it still held 172.25.250.10/24"),
        "the change went through the kernel's hand-over:\n{log}"
    );
    assert_eq!(
        lab.snapshot(),
        before,
        "profiles, links, addresses and routes as before"
    );
    assert!(ping_gateway(&lab), "the gateway answers again");
    assert_uplink_runs_its_profile(&lab);
    assert!(device(&status(&lab), "br0").is_none());
}

/// ens32 is managed by NetworkManager again and runs its own profile,
/// activated (not stalled in a stage).
fn assert_uplink_runs_its_profile(lab: &Lab) {
    let s = status(lab);
    let ens32 = device(&s, "ens32").expect("ens32");
    assert_eq!(ens32["managed"], true, "{ens32:#}");
    assert_eq!(ens32["state"], "activated", "{ens32:#}");
    assert_eq!(ens32["profile"]["id"], "ens32", "{ens32:#}");
}

/// Kills netbridge (SIGKILL) as soon as it reports that NetworkManager
/// leaves the uplink alone, and makes sure the host is in the state of that
/// instant whatever netbridge did before dying: ens32 unmanaged, attached to
/// br0, without its address (the steps by hand are no-ops where netbridge
/// took them already). The LAN's DNS is silent, so a run that outlived the
/// signal could not commit.
fn kill_while_unmanaged(lab: &Lab) {
    let dnsmasq = lab.dnsmasq_pid().expect("dnsmasq runs");
    let mut run = Running::start(
        lab,
        &[
            "convert",
            "ens32",
            "--yes",
            "--rollback-timeout",
            "8",
            "--check",
            "dns:gw.lab",
        ],
    );
    run.wait_for("checkpoint", Duration::from_secs(20));
    signal(dnsmasq, Signal::SIGSTOP);
    run.wait_for("unmanaged", Duration::from_secs(20));
    signal(run.pid(), Signal::SIGKILL);
    let (code, _) = run.finish();
    assert_eq!(code, -1, "killed");
    run_by_hand(
        lab,
        &[
            "nmcli device set ens32 managed no",
            "ip link set ens32 master br0",
            "ip -4 addr flush dev ens32 scope global",
        ],
    );
    signal(dnsmasq, Signal::SIGCONT);
}

/// `recover` undoes the change: the host exactly as `before`, the uplink
/// on its own profile.
fn recover_undoes(lab: &Lab, before: &netbridge_tests::HostSnapshot) {
    let recover = netbridge(lab, &["recover", "--json"]);
    assert_eq!(recover.code, 0, "{}\n{}", recover.stdout, recover.stderr);
    assert_eq!(recover.json()["recovered"]["action"], "undone");
    assert_eq!(lab.snapshot(), *before, "the host is exactly as before");
    assert_uplink_runs_its_profile(lab);
}

#[test]
fn netbridge_killed_while_the_uplink_is_unmanaged_is_undone_by_recover() {
    let Some(lab) = Lab::require(Uplink::Static) else {
        return;
    };
    let before = lab.snapshot();
    kill_while_unmanaged(&lab);
    // Before NetworkManager's timer: recover rolls the checkpoint back.
    recover_undoes(&lab, &before);
    assert!(ping_gateway(&lab));
}

#[test]
fn netbridge_killed_while_the_uplink_is_unmanaged_is_rolled_back_by_networkmanager() {
    let Some(lab) = Lab::require(Uplink::Static) else {
        return;
    };
    let before = lab.snapshot();
    kill_while_unmanaged(&lab);
    // NetworkManager's timer rolls back by itself; the uplink has its
    // address again, managed.
    assert!(
        eventually(Duration::from_secs(30), || lab
            .ipv4_addresses("ens32")
            .is_ok_and(|a| !a.is_empty())),
        "NetworkManager restored ens32's address"
    );
    assert_eq!(
        device(&status(&lab), "ens32").expect("ens32")["managed"],
        true
    );
    assert!(ping_gateway(&lab));
    // The next run finishes the undo: nothing of the change is left.
    recover_undoes(&lab, &before);
}

#[test]
fn a_networkmanager_restart_while_the_uplink_is_unmanaged_is_undone_by_the_next_run() {
    let Some(mut lab) = Lab::require(Uplink::Static) else {
        return;
    };
    let before = lab.snapshot();
    kill_while_unmanaged(&lab);
    // The restart loses the checkpoint; NetworkManager's run state keeps
    // ens32 unmanaged.
    lab.restart_nm().expect("restart NetworkManager");
    assert_eq!(
        device(&status(&lab), "ens32").expect("ens32")["managed"],
        false
    );
    recover_undoes(&lab, &before);
    assert!(ping_gateway(&lab));
}

#[test]
fn netbridge_killed_mid_change_is_rolled_back_by_networkmanager() {
    let Some(mut lab) = Lab::require(Uplink::Static) else {
        return;
    };
    let before = lab.snapshot();
    let code = kill_mid_change(&mut lab, |_| {});
    assert_eq!(code, -1, "killed");
    assert!(
        eventually(Duration::from_secs(20), || lab.snapshot() == before),
        "NetworkManager restored the host by itself: {:#?}\nvs before {:#?}",
        lab.snapshot(),
        before
    );
    assert!(ping_gateway(&lab));
    // The journal still records the change; the next run closes it without touching the host.
    assert!(!status(&lab)["unfinished_change"].is_null());
    let recover = netbridge(&lab, &["recover", "--json"]);
    assert_eq!(recover.code, 0, "{}", recover.stderr);
    assert_eq!(recover.json()["result"], "committed");
    assert_eq!(recover.json()["recovered"]["action"], "undone");
    assert_eq!(lab.snapshot(), before);
}

#[test]
fn a_networkmanager_restart_mid_change_is_undone_by_the_next_run() {
    let Some(mut lab) = Lab::require(Uplink::Static) else {
        return;
    };
    let before = lab.snapshot();
    // The restart loses the checkpoint, so NetworkManager's timer cannot help.
    kill_mid_change(&mut lab, |lab| {
        lab.restart_nm().expect("restart NetworkManager")
    });
    std::thread::sleep(Duration::from_secs(7));
    assert!(
        device(&status(&lab), "br0").is_some(),
        "the trial outlived the lost checkpoint"
    );

    let s = status(&lab);
    assert_eq!(
        s["unfinished_change"]["phase"], "applying",
        "status reports it"
    );
    let recover = netbridge(&lab, &["recover", "--json"]);
    assert_eq!(recover.code, 0, "{}\n{}", recover.stdout, recover.stderr);
    assert_eq!(recover.json()["recovered"]["action"], "undone");
    assert_eq!(lab.snapshot(), before, "the host is exactly as before");
    assert!(ping_gateway(&lab));
}

#[test]
fn the_next_convert_undoes_an_unfinished_change_first() {
    let Some(mut lab) = Lab::require(Uplink::Static) else {
        return;
    };
    kill_mid_change(&mut lab, |lab| {
        lab.restart_nm().expect("restart NetworkManager")
    });

    let run = convert_json(&lab, &[]);
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
    let doc = run.json();
    assert_eq!(doc["recovered"]["action"], "undone", "reported: {doc:#}");
    assert_eq!(doc["result"], "committed");
    assert_converted(&lab, "172.25.250.10/24");
}

#[test]
fn a_second_run_is_a_no_op_and_a_dry_run_changes_nothing() {
    let Some(lab) = Lab::require(Uplink::Static) else {
        return;
    };
    let before = lab.snapshot();
    let dry = convert_json(&lab, &["--dry-run"]);
    assert_eq!(dry.code, 0, "{}", dry.stderr);
    let doc = dry.json();
    assert_eq!(doc["result"], "dry-run");
    assert_eq!(doc["plan"]["bridge"], "br0");
    assert!(doc["nmcli"][0]
        .as_str()
        .unwrap_or("")
        .contains("nmcli connection add type bridge"));
    assert_eq!(lab.snapshot(), before, "a dry run changes nothing");

    let human = netbridge(&lab, &["convert", "ens32", "--dry-run"]);
    assert!(
        human.stdout.contains("Equivalent nmcli commands"),
        "{}",
        human.stdout
    );
    assert!(
        human.stdout.contains("\n  nmcli connection up br0\n")
            && !human.stdout.contains("up br0-port-ens32"),
        "{}",
        human.stdout
    );
    // The selectors of the configuration name the same uplink.
    let mac = device(&status(&lab), "ens32").expect("ens32")["mac"]
        .as_str()
        .expect("ens32's MAC")
        .to_owned();
    for selector in ["default-route".to_owned(), format!("mac:{mac}")] {
        let by = netbridge(&lab, &["convert", &selector, "--dry-run", "--json"]);
        assert_eq!(by.code, 0, "{selector}: {}", by.stderr);
        assert_eq!(by.json()["uplink"], "ens32", "{selector}");
    }
    let unproven = netbridge(
        &lab,
        &["convert", "ens32", "--dry-run", "--no-default-checks"],
    );
    assert!(
        unproven.stderr.contains("no check will prove"),
        "{}",
        unproven.stderr
    );
    let verbose = netbridge(&lab, &["-v", "convert", "ens32", "--dry-run"]);
    assert!(
        verbose.stderr.contains("probe finished")
            && verbose.stderr.matches("found        ens32").count() == 1,
        "-v adds diagnostics, each progress step still once:\n{}",
        verbose.stderr
    );
    let quiet = netbridge(&lab, &["-q", "convert", "ens32", "--dry-run"]);
    assert!(
        quiet.stderr.is_empty(),
        "-q prints no progress: {}",
        quiet.stderr
    );
    assert!(
        quiet.stdout.contains("Plan: convert ens32"),
        "{}",
        quiet.stdout
    );

    assert_eq!(netbridge(&lab, YES).code, 0);
    let converted = lab.snapshot();
    let again = convert_json(&lab, &[]);
    assert_eq!(again.code, 0);
    assert_eq!(again.json()["result"], "unchanged");
    assert_eq!(lab.snapshot(), converted, "the second run changed nothing");
}

#[test]
fn a_second_netbridge_refuses_while_one_is_changing_the_host() {
    let Some(lab) = Lab::require(Uplink::Static) else {
        return;
    };
    let dnsmasq = lab.dnsmasq_pid().expect("dnsmasq runs");
    let mut first = Running::start(
        &lab,
        &["convert", "ens32", "--yes", "--check", "dns:gw.lab"],
    );
    first.wait_for("checkpoint", Duration::from_secs(20));
    signal(dnsmasq, Signal::SIGSTOP);
    let second = netbridge(&lab, YES);
    signal(dnsmasq, Signal::SIGCONT);
    assert_eq!(second.code, 6, "exit 6 = busy: {}", second.stderr);
    assert!(
        second.stderr.contains(&format!("pid {}", first.pid())),
        "{}",
        second.stderr
    );
    let (code, log) = first.finish();
    assert_eq!(code, 0, "the first run still commits:\n{log}");
}

#[test]
fn bad_input_is_refused_clearly_and_changes_nothing() {
    let Some(mut lab) = Lab::require(Uplink::Static) else {
        return;
    };
    // A managed NIC without an active profile, and one NetworkManager may not touch.
    for (name, peer) in [("ens33", "ens33p"), ("nbu0", "nbu0p")] {
        assert!(lab
            .host(["ip", "link", "add", name, "type", "veth", "peer", "name", peer])
            .status
            .success());
    }
    lab.host(["ip", "link", "set", "ens33", "up"]);
    // Test fixture only (the product never runs nmcli): mark nbu0 unmanaged.
    let unmanage = lab.host(["nmcli", "device", "set", "nbu0", "managed", "no"]);
    assert!(unmanage.status.success(), "{unmanage:?}");
    let before = lab.snapshot();
    let cases: &[(&[&str], i32, &str)] = &[
        (
            &["convert", "ens99", "--yes"],
            2,
            "no network device named \"ens99\"",
        ),
        (&["convert", "lo", "--yes"], 2, "loopback"),
        (
            &["convert", "ens32", "--yes", "--bridge", "ens33"],
            2,
            "already used by",
        ),
        (
            &[
                "convert",
                "ens32",
                "--yes",
                "--bridge",
                "bridge-name-too-long",
            ],
            2,
            "at most 15 bytes",
        ),
        (
            &["convert", "ens32", "--yes", "--bridge", "br/0"],
            2,
            "invalid bridge name",
        ),
        (&["convert", "ens33", "--yes"], 2, "has no active profile"),
        (
            &["convert", "ens32", "--yes", "--check", "tcp:host"],
            2,
            "expected tcp:HOST:PORT",
        ),
        (
            &["convert", "ens32", "--yes", "--check", "bogus"],
            2,
            "invalid check",
        ),
        (
            &["convert", "ens32", "--yes", "--rollback-timeout", "0"],
            2,
            "'--rollback-timeout <SECS>': that would disable NetworkManager's automatic rollback",
        ),
        (
            &["convert", "ens32", "--yes", "--rollback-timeout", "999999"],
            2,
            "too long",
        ),
        (
            &[
                "convert",
                "ens32",
                "--yes",
                "--check",
                "tcp:172.25.250.254:9",
            ],
            2,
            "already fails before any change",
        ),
        (&["convert", "ens32"], 2, "not on a terminal"),
    ];
    for (args, code, message) in cases {
        let run = netbridge(&lab, args);
        assert_eq!(run.code, *code, "{args:?}: {}", run.stderr);
        assert!(
            run.stderr.contains(message),
            "{args:?} says {message:?}: {}",
            run.stderr
        );
        assert_eq!(lab.snapshot(), before, "{args:?} changed nothing");
    }
    let unmanaged = netbridge(&lab, &["convert", "nbu0", "--yes"]);
    assert_eq!(unmanaged.code, 2, "{}", unmanaged.stderr);
    assert!(
        unmanaged.stderr.contains("not managed by NetworkManager"),
        "{}",
        unmanaged.stderr
    );

    assert_eq!(netbridge(&lab, YES).code, 0);
    let port = netbridge(&lab, &["convert", "ens32", "--yes", "--bridge", "br1"]);
    assert_eq!(port.code, 2);
    assert!(
        port.stderr.contains("already a port of br0")
            && port.stderr.contains("`netbridge revert br0`"),
        "{}",
        port.stderr
    );
    let uplink = netbridge(&lab, &["revert", "ens32", "--yes"]);
    assert_eq!(uplink.code, 2, "{}", uplink.stderr);
    assert!(
        uplink
            .stderr
            .contains("ens32 is not a bridge but a port of br0")
            && uplink.stderr.contains("`netbridge revert br0`"),
        "{}",
        uplink.stderr
    );

    lab.stop_nm().expect("stop NetworkManager");
    let down = netbridge(&lab, YES);
    assert_eq!(down.code, 4, "{}", down.stderr);
    assert!(
        down.stderr.contains("NetworkManager is not running"),
        "{}",
        down.stderr
    );
}
