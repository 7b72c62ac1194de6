//! Convergence: a bridge netbridge made whose declared options change (STP,
//! its timers, MTU) gets the difference in place — Update2 and Reapply under
//! the checkpoint, proven, committed or rolled back — never "unchanged"
//! while the host differs. Real NetworkManager in a lab.

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
    let pinger = lab
        .lan_command([
            "ping",
            "-n",
            "-q",
            "-i",
            "0.005",
            "-W",
            "1",
            "-w",
            "4",
            "172.25.250.10",
        ])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("ping from the LAN");
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
    let config = write_config(&lab, "mtu = 1400\nchecks = [\"dns:gw.lab\"]\n");
    let dnsmasq = lab.dnsmasq_pid().expect("dnsmasq runs");
    let mut run = Running::start(&lab, &["apply", "--config", &config]);
    run.wait_for("checkpoint", Duration::from_secs(20));
    signal(dnsmasq, Signal::SIGSTOP);
    let (code, output) = run.finish();
    signal(dnsmasq, Signal::SIGCONT);
    assert_eq!(code, 3, "rolled back:\n{output}");
    assert!(output.contains("modified"), "{output}");
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
    assert!(run.json()["error"]
        .as_str()
        .is_some_and(|e| e.contains("bridge.state")));
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
