//! Convergence: a bridge netbridge made whose declared options change (STP,
//! its timers, MTU) gets the difference in place — Update2 and Reapply under
//! the checkpoint, a MAC by re-activation — proven, committed or rolled
//! back, never "unchanged" while the host differs. Real NetworkManager in a
//! lab.

mod common;

use std::time::Duration;

use common::{netbridge, signal, Running};
use netbridge_tests::{Lab, Uplink};
use nix::sys::signal::Signal;

fn sysfs(lab: &Lab, path: &str) -> String {
    let out = lab.host(["cat", path]);
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

fn write_config(lab: &Lab, extra: &str) -> String {
    let path = lab.dir().join("netbridge.toml");
    let text = format!("[[bridge]]\nname = \"br0\"\nuplink = \"ens32\"\n{extra}");
    std::fs::write(&path, text).expect("write the configuration");
    path.display().to_string()
}

fn converted(lab: &Lab) {
    let run = netbridge(lab, &["convert", "ens32", "--yes"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
}

/// Applies `options` with a DNS check, and silences DNS once the checkpoint
/// is armed: the modification must fail its check and roll back (exit 3).
fn rolled_back_by_silent_dns(lab: &Lab, options: &str) {
    let config = write_config(lab, &format!("{options}checks = [\"dns:gw.lab\"]\n"));
    let dnsmasq = lab.dnsmasq_pid().expect("dnsmasq runs");
    let mut run = Running::start(lab, &["apply", "--config", &config]);
    run.wait_for("checkpoint", Duration::from_secs(20));
    signal(dnsmasq, Signal::SIGSTOP);
    let (code, output) = run.finish();
    signal(dnsmasq, Signal::SIGCONT);
    assert_eq!(code, 3, "rolled back:\n{output}");
    assert!(output.contains("modified"), "{output}");
}

#[test]
fn a_changed_configuration_is_applied_in_place_with_its_diff_and_loses_no_reply() {
    let Some(lab) = Lab::require(Uplink::Static) else {
        return;
    };
    converted(&lab);
    assert_eq!(sysfs(&lab, "/sys/class/net/br0/bridge/stp_state"), "0");
    let config = write_config(
        &lab,
        "stp = true\nforward-delay = 4\nhello-time = 1\nmtu = 1400\n",
    );

    // The LAN pings the host every 5 ms while the change is applied.
    let pinger = common::lan_pings(&lab, 4);
    std::thread::sleep(Duration::from_millis(300));
    let run = netbridge(&lab, &["apply", "--config", &config, "--json"]);
    let pinged = pinger.wait_with_output().expect("ping ends");
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
    let doc = run.json();
    let br0 = &doc["bridges"][0];
    assert_eq!(br0["result"], "committed", "never 'unchanged': {doc:#}");
    let diff = br0["outcome"].to_string() + &doc["steps"].to_string();
    for change in [
        "STP off → on",
        "forward delay 2 s → 4 s",
        "hello time 2 s → 1 s",
        "MTU auto → 1400",
    ] {
        assert!(diff.contains(change), "the diff names {change}: {diff}");
    }
    assert_eq!(sysfs(&lab, "/sys/class/net/br0/bridge/stp_state"), "1");
    assert_eq!(
        sysfs(&lab, "/sys/class/net/br0/bridge/forward_delay"),
        "400"
    );
    assert_eq!(sysfs(&lab, "/sys/class/net/br0/mtu"), "1400");
    assert_eq!(sysfs(&lab, "/sys/class/net/ens32/mtu"), "1400");
    let summary = String::from_utf8_lossy(&pinged.stdout);
    assert!(
        summary.contains(" 0% packet loss"),
        "an in-place change loses no 5 ms reply:\n{summary}"
    );

    let again = netbridge(&lab, &["apply", "--config", &config, "--json"]);
    assert_eq!(again.code, 0);
    assert_eq!(again.json()["bridges"][0]["result"], "unchanged");
    let br0 = common::saved_keyfile(&lab, "br0");
    // STP on is NetworkManager's default: a keyfile leaves it out.
    assert!(
        !br0.contains("stp=false") && br0.contains("forward-delay=4"),
        "{br0}"
    );
}

#[test]
fn a_modification_that_fails_its_check_leaves_the_bridge_as_it_was() {
    let Some(lab) = Lab::require(Uplink::Static) else {
        return;
    };
    converted(&lab);
    let before = lab.snapshot();
    rolled_back_by_silent_dns(&lab, "mtu = 1400\n");
    assert!(
        common::eventually(Duration::from_secs(10), || lab.snapshot() == before),
        "br0 and ens32 exactly as before:\nbefore {before:#?}\nafter {:#?}",
        lab.snapshot()
    );
}

#[test]
fn state_absent_reverts_a_bridge_netbridge_made_and_then_has_nothing_to_do() {
    let Some(lab) = Lab::require(Uplink::Static) else {
        return;
    };
    let config = write_config(&lab, "");
    let run = netbridge(&lab, &["apply", "--config", &config, "--json"]);
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
    assert_eq!(run.json()["bridges"][0]["result"], "committed");

    let config = write_config(&lab, "state = \"absent\"\n");
    let run = netbridge(&lab, &["apply", "--config", &config, "--json"]);
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
    let doc = run.json();
    assert_eq!(doc["bridges"][0]["result"], "committed", "{doc:#}");
    assert!(doc["bridges"][0]["reason"]
        .as_str()
        .is_some_and(|r| r.contains("reverted")));
    let s = common::status(&lab);
    assert!(common::device(&s, "br0").is_none(), "br0 is gone");
    assert_eq!(common::ipv4(&s, "ens32"), ["172.25.250.10/24"]);

    let again = netbridge(&lab, &["apply", "--config", &config, "--json"]);
    assert_eq!(again.code, 0);
    assert_eq!(again.json()["bridges"][0]["result"], "unchanged");
    let bad = write_config(&lab, "state = \"gone\"\n");
    let run = netbridge(&lab, &["apply", "--config", &bad, "--json"]);
    assert_eq!(run.code, 2, "{}", run.stdout);
    assert!(run.json()["error"]["message"]
        .as_str()
        .is_some_and(|e| e.contains("bridge.state")));
}

/// NetworkManager applies a MAC only when it activates the bridge (Reapply
/// refuses it): a declared MAC re-activates br0 under the checkpoint, and a
/// check failing afterwards brings the old MAC back.
#[test]
fn a_declared_mac_is_applied_by_re_activation_and_a_failed_check_takes_it_back() {
    let Some(lab) = Lab::require(Uplink::Static) else {
        return;
    };
    converted(&lab);
    let mac_before = sysfs(&lab, "/sys/class/net/br0/address");
    let before = lab.snapshot();
    let declared = "02:00:5e:10:00:01";

    rolled_back_by_silent_dns(&lab, &format!("mac = \"{declared}\"\n"));
    assert!(
        common::eventually(Duration::from_secs(10), || {
            lab.snapshot() == before && sysfs(&lab, "/sys/class/net/br0/address") == mac_before
        }),
        "br0 back with MAC {mac_before}, exactly as before:\nbefore {before:#?}\nafter {:#?}",
        lab.snapshot()
    );

    let config = write_config(&lab, &format!("mac = \"{declared}\"\n"));
    // The dry run's nmcli equivalent re-activates too: Reapply refuses a MAC.
    let dry = netbridge(&lab, &["apply", "--config", &config, "--dry-run"]);
    assert_eq!(dry.code, 0, "{}", dry.stderr);
    let mac_word = format!(
        "802-3-ethernet.cloned-mac-address {}",
        declared.to_ascii_uppercase()
    );
    assert!(
        dry.stdout.contains(&mac_word) && dry.stdout.contains("    nmcli connection up "),
        "{}",
        dry.stdout
    );
    assert!(!dry.stdout.contains("device reapply br0"), "{}", dry.stdout);
    // Re-activation is an outage: measured, not asserted.
    let pinger = common::lan_pings(&lab, 60);
    std::thread::sleep(Duration::from_millis(300));
    let run = netbridge(&lab, &["apply", "--config", &config, "--json"]);
    std::thread::sleep(Duration::from_millis(300));
    signal(pinger.id(), Signal::SIGINT);
    let pinged = pinger.wait_with_output().expect("ping ends");
    let summary = String::from_utf8_lossy(&pinged.stdout);
    if let Some((lost, sent)) = common::ping_loss(&summary) {
        eprintln!("5 ms pings from the LAN during the MAC change: {lost} of {sent} replies lost");
    }
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
    let doc = run.json();
    assert_eq!(doc["bridges"][0]["result"], "committed", "{doc:#}");
    let change = format!(
        "MAC {} → {}",
        mac_before.to_ascii_uppercase(),
        declared.to_ascii_uppercase()
    );
    assert!(
        doc.to_string().contains(&change),
        "the diff names {change}: {doc:#}"
    );
    assert_eq!(sysfs(&lab, "/sys/class/net/br0/address"), declared);
    let master = lab.host(["readlink", "/sys/class/net/ens32/master"]);
    assert!(
        String::from_utf8_lossy(&master.stdout)
            .trim()
            .ends_with("/br0"),
        "ens32 is br0's port again"
    );
    let again = netbridge(&lab, &["apply", "--config", &config, "--json"]);
    assert_eq!(again.code, 0);
    assert_eq!(again.json()["bridges"][0]["result"], "unchanged");
    let keyfile = common::saved_keyfile(&lab, "br0");
    assert!(
        keyfile.contains(&format!(
            "cloned-mac-address={}",
            declared.to_ascii_uppercase()
        )),
        "{keyfile}"
    );
}

/// The MAC's undo without the checkpoint (NetworkManager restarted and lost
/// it): Reapply refuses the old MAC, so recovery re-activates the bridge.
#[test]
fn a_mac_change_cut_short_by_a_networkmanager_restart_is_undone_by_recover() {
    let Some(mut lab) = Lab::require(Uplink::Static) else {
        return;
    };
    converted(&lab);
    let mac_before = sysfs(&lab, "/sys/class/net/br0/address");
    let before = lab.snapshot();
    let declared = "02:00:5e:10:00:03";
    let config = write_config(
        &lab,
        &format!("mac = \"{declared}\"\nrollback-timeout = 5\nchecks = [\"dns:gw.lab\"]\n"),
    );
    let dnsmasq = lab.dnsmasq_pid().expect("dnsmasq runs");
    let mut run = Running::start(&lab, &["apply", "--config", &config]);
    run.wait_for("checkpoint", Duration::from_secs(20));
    // DNS goes silent: netbridge sits in its check when it dies.
    signal(dnsmasq, Signal::SIGSTOP);
    run.wait_for("modified", Duration::from_secs(30));
    signal(run.pid(), Signal::SIGKILL);
    let _ = run.finish();
    // The restart loses the checkpoint; the in-memory change survives it.
    lab.restart_nm().expect("restart NetworkManager");
    signal(dnsmasq, Signal::SIGCONT);
    assert_eq!(
        sysfs(&lab, "/sys/class/net/br0/address"),
        declared,
        "the trial's MAC outlived netbridge"
    );

    let recover = netbridge(&lab, &["recover", "--json"]);
    assert_eq!(recover.code, 0, "{}\n{}", recover.stdout, recover.stderr);
    assert_eq!(recover.json()["recovered"]["action"], "undone");
    assert!(
        common::eventually(Duration::from_secs(10), || {
            lab.snapshot() == before && sysfs(&lab, "/sys/class/net/br0/address") == mac_before
        }),
        "br0 back with MAC {mac_before}:\nbefore {before:#?}\nafter {:#?}",
        lab.snapshot()
    );
}

/// `apply --dry-run` shows, per bridge, the nmcli commands of what it would
/// do, one a line: a conversion, a change in place, a revert.
#[test]
fn apply_dry_runs_list_the_nmcli_equivalent_one_command_a_line() {
    let Some(lab) = Lab::require(Uplink::Static) else {
        return;
    };
    let nmcli_lines = |extra: &str| {
        let config = write_config(&lab, extra);
        let before = lab.snapshot();
        let run = netbridge(&lab, &["apply", "--config", &config, "--dry-run"]);
        assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
        assert_eq!(lab.snapshot(), before, "a dry run changes nothing");
        let lines: Vec<String> = run
            .stdout
            .lines()
            .filter_map(|l| l.strip_prefix("    nmcli "))
            .map(str::to_owned)
            .collect();
        assert!(
            lines.iter().all(|l| !l.contains(';')),
            "one command a line:\n{}",
            run.stdout
        );
        lines
    };
    let convert = nmcli_lines("");
    assert_eq!(convert.len(), 5, "{convert:#?}");
    assert!(convert[0].starts_with("connection add type bridge con-name br0"));
    assert!(convert.contains(&"connection up br0".to_owned()));
    assert!(!convert.iter().any(|l| l.contains("up br0-port")));

    converted(&lab);
    let modify = nmcli_lines("stp = true\n");
    assert!(
        modify[0].starts_with("connection modify ") && modify[0].contains("bridge.stp yes"),
        "{modify:#?}"
    );
    assert_eq!(
        modify.last().map(String::as_str),
        Some("device reapply br0")
    );
    // Run by hand, they leave the bridge as declared: netbridge then has nothing to do.
    let by_hand: Vec<String> = modify.iter().map(|l| format!("nmcli {l}")).collect();
    common::run_by_hand(&lab, &by_hand);
    assert_eq!(sysfs(&lab, "/sys/class/net/br0/bridge/stp_state"), "1");
    let config = write_config(&lab, "stp = true\n");
    let again = netbridge(&lab, &["apply", "--config", &config, "--json"]);
    assert_eq!(again.code, 0, "{}", again.stderr);
    assert_eq!(again.json()["bridges"][0]["result"], "unchanged");

    let revert = nmcli_lines("state = \"absent\"\n");
    assert!(
        revert[0].starts_with("connection up ") && revert[0].ends_with("ifname ens32"),
        "{revert:#?}"
    );
    assert!(revert
        .last()
        .is_some_and(|l| l.starts_with("connection delete ")));
}
