//! `convert --adopt`: a bridge made by hand with the plain nmcli recipe
//! (STP on) becomes netbridge's under the same guard, and `revert` gives back
//! a plain uplink. Without --adopt such a bridge is foreign, never "nothing
//! to do". Real NetworkManager in a lab.

mod common;

use std::time::Duration;

use common::{device, eventually, ipv4, netbridge, ping_gateway, status};
use netbridge_tests::{Lab, Uplink};

/// The seed's recipe: a bridge with the uplink's address and a bridge-slave
/// profile for the uplink, both brought up (STP on, NetworkManager's default).
fn nmcli_recipe(lab: &Lab) {
    for argv in [
        &[
            "nmcli",
            "connection",
            "add",
            "type",
            "bridge",
            "autoconnect",
            "yes",
            "ifname",
            "br0",
            "con-name",
            "br0",
            "ipv4.method",
            "manual",
            "ipv4.addresses",
            "172.25.250.10/24",
            "ipv4.gateway",
            "172.25.250.254",
            "ipv4.dns",
            "172.25.250.254",
            "ipv6.method",
            "ignore",
        ][..],
        &[
            "nmcli",
            "connection",
            "add",
            "type",
            "bridge-slave",
            "autoconnect",
            "yes",
            "ifname",
            "ens32",
            "con-name",
            "ens107",
            "master",
            "br0",
        ],
        &["nmcli", "--wait", "30", "connection", "up", "br0"],
        &["nmcli", "--wait", "30", "connection", "up", "ens107"],
    ] {
        let out = lab.host(argv);
        assert!(out.status.success(), "{argv:?}: {out:?}");
    }
    assert!(
        eventually(Duration::from_secs(20), || ipv4(&status(lab), "br0")
            == ["172.25.250.10/24"]),
        "the hand-made br0 carries the address"
    );
}

fn stp_state(lab: &Lab) -> String {
    let out = lab.host(["cat", "/sys/class/net/br0/bridge/stp_state"]);
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

#[test]
fn the_nmcli_recipe_bridge_is_foreign_then_adopted_with_stp_off_and_reverts_to_a_plain_uplink() {
    let Some(lab) = Lab::require(Uplink::Static) else {
        return;
    };
    nmcli_recipe(&lab);
    assert_eq!(stp_state(&lab), "1", "the recipe leaves STP on");

    let before = lab.snapshot();
    let run = netbridge(&lab, &["convert", "ens32", "--yes", "--json"]);
    assert_eq!(run.code, 2, "foreign, not 'nothing to do': {}", run.stdout);
    let error = run.json()["error"].as_str().unwrap_or_default().to_owned();
    assert!(
        error.contains("did not make") && error.contains("--adopt"),
        "{error}"
    );
    assert_eq!(lab.snapshot(), before, "nothing changed");
    let commands = common::rendered(
        &lab,
        &["convert", "ens32", "--adopt", "--dry-run", "--json"],
    );
    assert!(
        commands.len() == 3
            && commands[0].contains("autoconnect no")
            && commands[1].contains("bridge.stp no")
            && commands[2] == "nmcli device reapply br0",
        "a plain profile for revert, then the options in place: {commands:#?}"
    );
    assert_eq!(lab.snapshot(), before, "a dry run changes nothing");

    let run = netbridge(&lab, &["convert", "ens32", "--adopt", "--yes", "--json"]);
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
    let doc = run.json();
    assert_eq!(doc["result"], "committed");
    let changes = doc["adoption"]["changes"].to_string();
    assert!(changes.contains("STP on → off"), "{changes}");
    assert_eq!(
        doc["outcome"]["identity"]["after"]["addresses"],
        serde_json::json!(["172.25.250.10/24"])
    );
    assert_eq!(stp_state(&lab), "0", "STP off in the kernel");
    let s = status(&lab);
    let br0 = device(&s, "br0").expect("br0");
    assert_eq!(br0["bridge"]["stp"], false);
    assert_eq!(
        br0["netbridge"]["made_by"], "convert",
        "status shows br0 as netbridge's"
    );
    assert_eq!(br0["netbridge"]["uplink"], "ens32");
    assert_eq!(ipv4(&s, "br0"), ["172.25.250.10/24"]);
    let br0 = common::saved_keyfile(&lab, "br0");
    assert!(br0.contains("stp=false"), "saved with STP off:\n{br0}");
    assert!(br0.contains("netbridge.uplink=ens32"), "marked:\n{br0}");

    // A second adoption, or a plain convert, has nothing to do now.
    let again = netbridge(&lab, &["convert", "ens32", "--yes", "--json"]);
    assert_eq!(again.code, 0, "{}", again.stdout);
    assert_eq!(again.json()["result"], "no-op");

    // A link flap no longer costs the forwarding delay of STP.
    for updown in ["down", "up"] {
        let out = lab.host(["ip", "link", "set", "ens32", updown]);
        assert!(out.status.success(), "{out:?}");
    }
    assert!(
        eventually(Duration::from_secs(5), || ping_gateway(&lab)),
        "the gateway answers within seconds of a link flap, not after STP's 30 s"
    );

    let run = netbridge(&lab, &["revert", "br0", "--yes", "--json"]);
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
    let s = status(&lab);
    assert!(device(&s, "br0").is_none(), "br0 is gone");
    assert_eq!(ipv4(&s, "ens32"), ["172.25.250.10/24"], "a plain ens32");
    assert!(ping_gateway(&lab));
    let snap = lab.snapshot();
    assert!(
        !snap
            .profiles
            .values()
            .any(|t| t.contains("id=br0\n") || t.contains("id=ens107\n")),
        "the hand-made profiles went with the bridge: {:?}",
        snap.profiles.keys()
    );
}

#[test]
fn a_failed_adoption_leaves_the_hand_made_bridge_exactly_as_it_was() {
    let Some(lab) = Lab::require(Uplink::Static) else {
        return;
    };
    nmcli_recipe(&lab);
    // Wait out STP's learning, so the bridge forwards and checks pass before.
    assert!(eventually(Duration::from_secs(40), || ping_gateway(&lab)));
    let before = lab.snapshot();
    let extra = "172.25.250.253";
    let out = lab.lan(["ip", "addr", "add", &format!("{extra}/24"), "dev", "lan0"]);
    assert!(out.status.success(), "{out:?}");
    let check = format!("ping:{extra}");
    let mut run = common::Running::start(
        &lab,
        &["convert", "ens32", "--adopt", "--yes", "--check", &check],
    );
    run.wait_for("checkpoint", Duration::from_secs(20));
    let out = lab.lan(["ip", "addr", "del", &format!("{extra}/24"), "dev", "lan0"]);
    assert!(out.status.success(), "{out:?}");
    let (code, output) = run.finish();
    assert_eq!(code, 3, "{output}");
    assert!(
        eventually(Duration::from_secs(10), || lab.snapshot() == before),
        "the bridge, its profiles and STP as before:\nbefore {before:#?}\nafter {:#?}",
        lab.snapshot()
    );
    assert_eq!(stp_state(&lab), "1", "STP back on, as the owner had it");
}

#[test]
fn adoption_is_refused_for_a_bridge_with_other_ports_or_another_uplink() {
    let Some(lab) = Lab::require(Uplink::Static) else {
        return;
    };
    nmcli_recipe(&lab);
    let guest = lab.add_guest("vnet0");
    let out = lab.host([
        "ip",
        "link",
        "set",
        guest.host_link(),
        "master",
        "br0",
        "up",
    ]);
    assert!(out.status.success(), "{out:?}");
    let before = lab.snapshot();
    let run = netbridge(&lab, &["convert", "ens32", "--adopt", "--yes", "--json"]);
    assert_eq!(run.code, 2, "{}", run.stdout);
    let error = run.json()["error"].as_str().unwrap_or_default().to_owned();
    assert!(
        error.contains("other ports") && error.contains("vnet0"),
        "{error}"
    );

    lab.add_second_nic(101).expect("second NIC");
    let run = netbridge(&lab, &["convert", "ens33", "--adopt", "--yes", "--json"]);
    assert_eq!(run.code, 2, "{}", run.stdout);
    let error = run.json()["error"].as_str().unwrap_or_default().to_owned();
    assert!(error.contains("ens33 is not a port of br0"), "{error}");
    let after = lab.snapshot();
    for (path, text) in &before.profiles {
        assert_eq!(after.profiles.get(path), Some(text), "{path} unchanged");
    }
}

#[test]
fn an_adoption_cut_short_by_a_networkmanager_restart_is_undone_by_recover() {
    let Some(mut lab) = Lab::require(Uplink::Static) else {
        return;
    };
    nmcli_recipe(&lab);
    assert!(eventually(Duration::from_secs(40), || ping_gateway(&lab)));
    let before = lab.snapshot();
    let dnsmasq = lab.dnsmasq_pid().expect("dnsmasq runs");
    let mut run = common::Running::start(
        &lab,
        &[
            "convert",
            "ens32",
            "--adopt",
            "--yes",
            "--rollback-timeout",
            "5",
            "--check",
            "dns:gw.lab",
        ],
    );
    run.wait_for("checkpoint", Duration::from_secs(20));
    // DNS goes silent: netbridge sits in its check when it dies.
    common::signal(dnsmasq, nix::sys::signal::Signal::SIGSTOP);
    run.wait_for("adopted", Duration::from_secs(20));
    common::signal(run.pid(), nix::sys::signal::Signal::SIGKILL);
    let _ = run.finish();
    // The restart loses the checkpoint; the in-memory changes survive it.
    lab.restart_nm().expect("restart NetworkManager");
    common::signal(dnsmasq, nix::sys::signal::Signal::SIGCONT);
    assert_eq!(
        stp_state(&lab),
        "0",
        "the trial's STP off outlived netbridge"
    );

    let recover = netbridge(&lab, &["recover", "--json"]);
    assert_eq!(recover.code, 0, "{}\n{}", recover.stdout, recover.stderr);
    assert!(
        eventually(Duration::from_secs(10), || lab.snapshot() == before),
        "the hand-made bridge as before:\nbefore {before:#?}\nafter {:#?}",
        lab.snapshot()
    );
    assert_eq!(stp_state(&lab), "1", "STP back on, as the owner had it");
}
