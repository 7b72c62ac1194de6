//! `netbridge revert` end to end in a lab: back to the original profile, or
//! (when its checks fail) left converted exactly as it was.

mod common;

use std::time::Duration;

use common::{device, ipv4, netbridge, ping_gateway, signal, status, Lines, Running};
use netbridge_tests::{Lab, Uplink};
use nix::sys::signal::Signal;

fn convert(lab: &Lab) {
    let run = netbridge(lab, &["convert", "ens32", "--yes"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
}

/// The host as before the conversion: ens32 runs its original profile
/// again (autoconnect back on), br0 is gone, links, addresses and routes
/// are exactly as they were.
fn assert_reverted(lab: &Lab, before: &netbridge_tests::HostSnapshot) {
    let s = status(lab);
    assert_eq!(ipv4(&s, "ens32"), vec!["172.25.250.10/24"]);
    assert_eq!(
        device(&s, "ens32").expect("ens32")["profile"]["id"],
        "ens32"
    );
    assert!(device(&s, "br0").is_none(), "br0 is gone");
    assert!(ping_gateway(lab));
    // NetworkManager rewrites a keyfile it saved (uuid, empty sections): compare
    // what the profile says, and everything else exactly.
    let after = lab.snapshot();
    assert_eq!(
        (&after.links, &after.addresses, &after.routes),
        (&before.links, &before.addresses, &before.routes)
    );
    assert_eq!(
        after.profiles.keys().collect::<Vec<_>>(),
        before.profiles.keys().collect::<Vec<_>>()
    );
    let original = &after.profiles["conn/ens32.nmconnection"];
    assert!(
        !original.contains("autoconnect=false"),
        "autoconnect back on:\n{original}"
    );
    for line in [
        "address1=172.25.250.10/24,172.25.250.254",
        "method=manual",
        "dns=172.25.250.254;",
    ] {
        assert!(
            original.lines().any(|l| l == line),
            "{line} kept:\n{original}"
        );
    }
}

#[test]
fn the_rendered_nmcli_commands_revert_the_host_as_netbridge_does() {
    let Some(lab) = Lab::require(Uplink::Static) else {
        return;
    };
    let before = lab.snapshot();
    convert(&lab);
    let commands = common::rendered(&lab, &["revert", "br0", "--dry-run", "--json"]);
    assert_eq!(commands.len(), 4, "{commands:#?}");
    common::run_by_hand(&lab, &commands);
    assert_reverted(&lab, &before);
}

#[test]
fn revert_brings_the_original_profile_back_and_removes_the_bridge() {
    let Some(lab) = Lab::require(Uplink::Static) else {
        return;
    };
    let before = lab.snapshot();
    convert(&lab);

    let dry = netbridge(&lab, &["revert", "br0", "--dry-run", "--json"]);
    assert_eq!(dry.code, 0, "{}", dry.stderr);
    assert_eq!(dry.json()["result"], "dry-run");

    let monitor = AddressMonitor::start(&lab);
    let run = netbridge(&lab, &["revert", "br0", "--yes", "--json"]);
    let added = monitor.added_to("ens32", "172.25.250.10/24");
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
    assert_eq!(run.json()["result"], "committed");
    // NetworkManager adds ens32's address once; netbridge never does: an
    // address appearing during NetworkManager's own commit can abort it
    // (ACD, nm-l3cfg.c:491 on 1.58).
    assert_eq!(added, 1, "added once, by NetworkManager");
    assert_held(&run.json()["steps"].to_string());
    assert_reverted(&lab, &before);
}

/// `ip monitor address` in the lab's host namespace, subscribed before
/// [`AddressMonitor::start`] returns.
struct AddressMonitor {
    child: std::process::Child,
    /// None once [`AddressMonitor::added_to`] has read them all.
    lines: Option<Lines>,
}

impl Drop for AddressMonitor {
    fn drop(&mut self) {
        // Also when a test fails before reading it: no monitor outlives it.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// An address only the monitor's proof of subscription uses.
const MARKER: &str = "192.0.2.1/32";

impl AddressMonitor {
    fn start(lab: &Lab) -> Self {
        let mut child = lab
            .host_command(["ip", "-o", "monitor", "address"])
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("start ip monitor");
        let stdout = child.stdout.take().expect("piped stdout");
        let mut monitor = AddressMonitor {
            child,
            lines: Some(Lines::read(stdout)),
        };
        // Until the monitor reports the marker it may not be listening yet.
        for _ in 0..50 {
            lab.host(["ip", "address", "add", MARKER, "dev", "lo"]);
            let seen = monitor
                .lines
                .as_mut()
                .and_then(|l| l.wait_for(MARKER, Duration::from_millis(200)));
            lab.host(["ip", "address", "del", MARKER, "dev", "lo"]);
            if seen.is_some() {
                return monitor;
            }
        }
        panic!("ip monitor never reported the marker address");
    }

    /// Stops the monitor; how many times `address` was added to `link`.
    fn added_to(mut self, link: &str, address: &str) -> usize {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let lines = self.lines.take().map(Lines::finish).unwrap_or_default();
        let (link, address) = (format!(": {link} "), format!(" inet {address} "));
        lines
            .iter()
            .filter(|l| !l.starts_with("Deleted") && l.contains(&link) && l.contains(&address))
            .count()
    }
}

/// The revert held ens32's routes from its release until its profile was
/// activated (the stand-in), so a host identical to a plain revert's is
/// netbridge's doing as much as NetworkManager's.
fn assert_held(steps: &str) {
    let held = "ens32 held the routes of 172.25.250.10/24 (added";
    let until = "from its release until profile 'ens32' was activated";
    assert!(
        steps.contains(held) && steps.contains(until),
        "the uplink was held while NetworkManager took it back: {steps}"
    );
}

#[test]
fn a_revert_whose_check_fails_leaves_the_bridge_as_it_was() {
    let Some(lab) = Lab::require(Uplink::Static) else {
        return;
    };
    convert(&lab);
    let converted = lab.snapshot();
    let mut run = Running::start(
        &lab,
        &["revert", "br0", "--yes", "--check", "ping:172.25.250.254"],
    );
    run.wait_for("checkpoint", Duration::from_secs(20));
    assert!(lab
        .lan(["sysctl", "-qw", "net.ipv4.icmp_echo_ignore_all=1"])
        .status
        .success());
    let (code, log) = run.finish();
    lab.lan(["sysctl", "-qw", "net.ipv4.icmp_echo_ignore_all=0"]);
    assert_eq!(code, 3, "rolled back:\n{log}");
    assert_held(&log);
    assert!(
        common::eventually(Duration::from_secs(10), || lab.snapshot() == converted),
        "still converted, as before: {:#?}\nvs {:#?}",
        lab.snapshot(),
        converted
    );
    assert_eq!(ipv4(&status(&lab), "br0"), vec!["172.25.250.10/24"]);
    assert!(ping_gateway(&lab));
}

/// Converts, then kills a revert (SIGKILL) the moment it asks
/// NetworkManager for the original profile — when the stand-in may be
/// putting ens32's routes back on it. The LAN's DNS is silent meanwhile,
/// so a run that outlived the signal could not commit. Returns the host as
/// converted.
fn kill_while_holding(lab: &Lab) -> netbridge_tests::HostSnapshot {
    convert(lab);
    let converted = lab.snapshot();
    let dnsmasq = lab.dnsmasq_pid().expect("dnsmasq runs");
    let mut run = Running::start(lab, &["revert", "br0", "--yes", "--check", "dns:gw.lab"]);
    run.wait_for("checkpoint", Duration::from_secs(20));
    signal(dnsmasq, Signal::SIGSTOP);
    run.wait_for("neighbours", Duration::from_secs(20));
    signal(run.pid(), Signal::SIGKILL);
    let (code, _) = run.finish();
    signal(dnsmasq, Signal::SIGCONT);
    assert_eq!(code, -1, "killed");
    converted
}

/// `recover` leaves the host exactly as converted, with nothing the
/// stand-in held left on ens32.
fn recover_to(lab: &Lab, converted: &netbridge_tests::HostSnapshot) {
    let recover = netbridge(lab, &["recover", "--json"]);
    assert_eq!(recover.code, 0, "{}\n{}", recover.stdout, recover.stderr);
    assert_eq!(recover.json()["recovered"]["action"], "undone");
    assert!(
        common::eventually(Duration::from_secs(10), || lab.snapshot() == *converted),
        "converted, as before: {:#?}\nvs {:#?}",
        lab.snapshot(),
        converted
    );
    assert!(
        ipv4(&status(lab), "ens32").is_empty(),
        "ens32 holds nothing"
    );
    assert!(ping_gateway(lab));
}

#[test]
fn netbridge_killed_while_holding_the_uplink_is_undone_by_recover() {
    let Some(lab) = Lab::require(Uplink::Static) else {
        return;
    };
    let converted = kill_while_holding(&lab);
    recover_to(&lab, &converted);
}

/// As above, but NetworkManager restarts before `recover` and takes the
/// checkpoint with it: the bridge's routes, moved to the worst metric for
/// the revert, must come back without it.
#[test]
fn a_revert_killed_then_networkmanager_restarted_is_undone_by_recover() {
    let Some(mut lab) = Lab::require(Uplink::Static) else {
        return;
    };
    let converted = kill_while_holding(&lab);
    lab.restart_nm().expect("restart NetworkManager");
    recover_to(&lab, &converted);
}

#[test]
fn revert_refuses_bridges_it_did_not_make() {
    let Some(lab) = Lab::require(Uplink::Static) else {
        return;
    };
    let before = lab.snapshot();
    let run = netbridge(&lab, &["revert", "br0", "--yes"]);
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(
        run.stderr.contains("no bridge profile named \"br0\""),
        "{}",
        run.stderr
    );
    let bad = netbridge(&lab, &["revert", "br/0", "--yes"]);
    assert_eq!(bad.code, 2);
    assert_eq!(lab.snapshot(), before);
}
