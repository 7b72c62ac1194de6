//! `fleet/rollout.yml` (the module netbridge.netbridge.netbridge, changes
//! confirmed over a new SSH connection) against three lab hosts over SSH,
//! one host per batch: h1 converts and is confirmed, h2's check fails after
//! the change so netbridge rolls it back, and the rollout stops there — h3
//! is never contacted. Once h2's network is fixed, the same rollout leaves h1
//! alone and converts h2 and h3; a third reports no change anywhere. Check
//! mode changes nothing and reports what would change; a host whose inbound
//! SSH is cut by the change is not confirmed and rolls back by itself.

mod common;

use std::time::Duration;

use common::{device, eventually, ipv4, saved_keyfile, status};
use netbridge_tests::fleet::{rollout_playbook, Fleet, FleetHost, PlaybookRun};
use serde_json::{json, Value};

/// One configuration for the whole fleet: whichever NIC holds the default
/// route becomes br0's port, proven by pinging the gateway.
const FLEET_TOML: &str = r#"[[bridge]]
name = "br0"
uplink = "default-route"
checks = ["ping:172.25.250.254"]
"#;

/// Three hosts' worth of SSH round trips plus one rollback, with room for
/// a slow, shared machine.
const ROLLOUT_TIMEOUT: Duration = Duration::from_secs(600);

/// How long a proven change waits for its confirmation in these tests.
const CONFIRM_SECS: u64 = 30;

#[test]
fn the_rollout_stops_at_the_first_host_that_rolled_back_and_resumes_once_fixed() {
    let Some(fleet) = Fleet::require(&["h1", "h2", "h3"]) else {
        return;
    };
    let (h1, h2, h3) = (fleet.host("h1"), fleet.host("h2"), fleet.host("h3"));
    ship_config(&fleet);
    // A leftover that would make h1's apply fail (invalid TOML): the
    // rollout must remove drop-ins it does not ship.
    let stale = h1.sshd().etc_netbridge().join("conf.d/90-stale.toml");
    std::fs::create_dir_all(stale.parent().expect("conf.d")).expect("create h1's conf.d");
    std::fs::write(&stale, "not = [valid").expect("write a stale drop-in");
    make_checks_fail_after_the_change(h2);
    let (h2_before, h3_before) = (h2.lab().snapshot(), h3.lab().snapshot());

    let run = rollout(&fleet, false);
    assert!(
        !run.status.success(),
        "the rollout reports the failure: {}\n{}",
        run.status,
        run.output
    );
    assert_h1_converted(&fleet, h1, &run.output);
    assert!(!stale.exists(), "the stale drop-in was removed");
    assert_h2_rolled_back(&fleet, h2, &h2_before, &run.output);
    assert_h3_untouched(&fleet, h3, &h3_before, &run.output);

    let out = h2.lab().lan(["iptables", "-F", "INPUT"]);
    assert!(out.status.success(), "flush h2's LAN rules");
    assert_rollout_resumes(&fleet);

    let again = rollout(&fleet, false);
    assert!(again.status.success(), "{}", again.output);
    for host in ["h1", "h2", "h3"] {
        assert_eq!(recap_changed(&again.output, host), 0, "{}", again.output);
    }
    let dry = rollout(&fleet, true);
    assert!(dry.status.success(), "{}", dry.output);
    assert_eq!(
        recap_changed(&dry.output, "h1"),
        0,
        "converted: nothing would change\n{}",
        dry.output
    );
}

#[test]
fn check_mode_changes_nothing_and_a_host_unreachable_after_the_change_is_not_confirmed() {
    let Some(fleet) = Fleet::require(&["h1", "h2", "h3"]) else {
        return;
    };
    let (h1, h2, h3) = (fleet.host("h1"), fleet.host("h2"), fleet.host("h3"));
    ship_config(&fleet);
    let before: Vec<_> = fleet.hosts().iter().map(|h| h.lab().snapshot()).collect();

    let dry = rollout(&fleet, true);
    assert!(dry.status.success(), "{}", dry.output);
    for (host, snap) in fleet.hosts().iter().zip(&before) {
        assert_eq!(host.lab().snapshot(), *snap, "{} unchanged", host.name());
        assert!(
            !host.sshd().etc_netbridge().join("netbridge.toml").exists(),
            "no configuration installed on {}",
            host.name()
        );
        assert!(
            recap_changed(&dry.output, host.name()) > 0,
            "{}",
            dry.output
        );
        let doc = result(&fleet, host.name()).expect("a dry run's result");
        assert_eq!(doc["bridges"][0]["result"], "dry-run", "{doc:#}");
    }
    assert!(
        dry.output.contains("nmcli connection add type bridge"),
        "--diff shows what would change:\n{}",
        dry.output
    );

    // The real rollout's results only, and h3's contacts from here on.
    for host in ["h1", "h2", "h3"] {
        let file = fleet
            .controller()
            .results_dir()
            .join(format!("{host}.json"));
        std::fs::remove_file(&file).expect("remove a dry run's result");
    }
    let h3_contacts = h3.sshd().connections();

    // On h2, the change itself cuts inbound SSH: new connections arriving
    // through the bridge are dropped, while the session that runs the apply
    // and every outbound check keep working.
    let out = h2.lab().host([
        "iptables", "-A", "INPUT", "-i", "br0", "-p", "tcp", "--dport", "22", "--syn", "-j", "DROP",
    ]);
    assert!(
        out.status.success(),
        "iptables in h2's host namespace: {out:?}"
    );
    let run = rollout(&fleet, false);
    let finished = std::time::Instant::now();
    assert!(!run.status.success(), "{}", run.output);

    let doc = result(&fleet, "h1").expect("h1's result");
    assert_eq!(doc["bridges"][0]["result"], "awaiting-confirm", "{doc:#}");
    assert_eq!(doc["confirm"]["result"], "committed", "{doc:#}");
    assert!(saved_keyfile(h1.lab(), "br0").contains("type=bridge"));

    let doc = result(&fleet, "h2").expect("h2's result");
    assert_eq!(doc["bridges"][0]["result"], "awaiting-confirm", "{doc:#}");
    assert_eq!(doc["confirm"]["result"], "unreachable", "{doc:#}");
    assert!(
        run.output
            .contains("h2: not confirmed over a new connection"),
        "{}",
        run.output
    );
    assert!(
        eventually(Duration::from_secs(CONFIRM_SECS + 15), || h2
            .lab()
            .snapshot()
            == before[1]),
        "h2 rolled back by itself:\n{:#?}",
        h2.lab().snapshot()
    );
    assert!(
        finished.elapsed() < Duration::from_secs(CONFIRM_SECS + 15),
        "within its seconds"
    );
    assert!(
        result(&fleet, "h3").is_none(),
        "h3 has no result\n{}",
        run.output
    );
    assert_eq!(
        h3.sshd().connections(),
        h3_contacts,
        "nobody connected to h3"
    );
    assert_eq!(h3.lab().snapshot(), before[2], "h3 is unchanged");
    assert!(!h3.sshd().etc_netbridge().join("netbridge.toml").exists());
}

/// The PLAY RECAP's `changed=` count for `host`.
fn recap_changed(output: &str, host: &str) -> u32 {
    let recap = output
        .split("PLAY RECAP")
        .last()
        .unwrap_or_else(|| panic!("no PLAY RECAP:\n{output}"));
    recap
        .lines()
        .find(|l| l.split_whitespace().next() == Some(host))
        .and_then(|l| l.split("changed=").nth(1))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no recap for {host}:\n{output}"))
}

/// The cause fixed, the same rollout again: h1 is left alone (no change, no
/// outage), h2 and h3 convert.
fn assert_rollout_resumes(fleet: &Fleet) {
    let run = rollout(fleet, false);
    assert!(run.status.success(), "{}\n{}", run.status, run.output);
    let h1 = result(fleet, "h1").expect("h1's second result");
    assert_eq!(h1["bridges"][0]["result"], "unchanged", "{h1:#}");
    for host in [fleet.host("h2"), fleet.host("h3")] {
        let doc = result(fleet, host.name()).expect("a result");
        assert_eq!(doc["bridges"][0]["result"], "awaiting-confirm", "{doc:#}");
        assert_eq!(doc["confirm"]["result"], "committed", "{doc:#}");
        let s = status(host.lab());
        assert_eq!(ipv4(&s, "br0"), vec!["172.25.250.10/24"], "{s:#}");
    }
}

/// Runs fleet/rollout.yml over the whole fleet, one host per batch, with
/// the controller's configuration and results directories; `check`: with
/// `--check --diff`.
fn rollout(fleet: &Fleet, check: bool) -> PlaybookRun {
    let controller = fleet.controller();
    let flags: &[&str] = if check { &["--check", "--diff"] } else { &[] };
    let run = controller
        .run_playbook(
            &rollout_playbook(),
            flags,
            &json!({
                "netbridge_batch": 1,
                "netbridge_config": controller.config_dir().join("netbridge.toml"),
                "netbridge_dropins": controller.config_dir().join("conf.d"),
                "netbridge_results_dir": controller.results_dir(),
                "netbridge_confirm_timeout": CONFIRM_SECS,
            }),
            ROLLOUT_TIMEOUT,
        )
        .unwrap_or_else(|e| panic!("the playbook did not finish: {e}"));
    // Shown with --nocapture, and with the failure of a test that panics.
    eprintln!("{}", run.output);
    run
}

fn ship_config(fleet: &Fleet) {
    let dir = fleet.controller().config_dir();
    std::fs::write(dir.join("netbridge.toml"), FLEET_TOML).expect("write the fleet config");
}

/// On h2's LAN only: the gateway answers the first echo request and drops
/// every later one. netbridge's check before the change sends the first
/// (and is answered), so the change is tried; every probe after it is
/// dropped, so netbridge rolls back. The limit never refills within the
/// test (one per hour), which makes this deterministic.
fn make_checks_fail_after_the_change(h2: &FleetHost) {
    let echo = ["-p", "icmp", "--icmp-type", "echo-request"];
    let first_only = [
        "-m",
        "limit",
        "--limit",
        "1/hour",
        "--limit-burst",
        "1",
        "-j",
        "ACCEPT",
    ];
    for rule in [&first_only[..], &["-j", "DROP"][..]] {
        let mut argv = vec!["iptables", "-A", "INPUT"];
        argv.extend(echo);
        argv.extend(rule);
        let out = h2.lab().lan(&argv);
        assert!(
            out.status.success(),
            "iptables in h2's LAN namespace: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

fn result(fleet: &Fleet, host: &str) -> Option<Value> {
    fleet
        .controller()
        .result(host)
        .unwrap_or_else(|e| panic!("{host}'s result: {e}"))
}

fn assert_h1_converted(fleet: &Fleet, h1: &FleetHost, output: &str) {
    let doc = result(fleet, "h1").unwrap_or_else(|| panic!("h1 has a result\n{output}"));
    assert_eq!(doc["result"], "awaiting-confirm", "{doc:#}");
    assert_eq!(doc["exit_code"], 9, "{doc:#}");
    assert_eq!(doc["bridges"][0]["result"], "awaiting-confirm", "{doc:#}");
    assert_eq!(doc["confirm"]["result"], "committed", "{doc:#}");
    assert!(saved_keyfile(h1.lab(), "br0").contains("type=bridge"));
    // The result came back over the SSH session that ran the apply, across
    // the conversion of the link it travels on.
    let s = status(h1.lab());
    assert_eq!(ipv4(&s, "br0"), vec!["172.25.250.10/24"], "{s:#}");
    assert_eq!(device(&s, "ens32").expect("ens32")["controller"], "br0");
    let shipped = std::fs::read_to_string(h1.sshd().etc_netbridge().join("netbridge.toml"))
        .expect("h1's /etc/netbridge/netbridge.toml");
    assert_eq!(shipped, FLEET_TOML);
    assert!(h1.sshd().connections() > 0, "h1's sshd logs connections");
}

fn assert_h2_rolled_back(
    fleet: &Fleet,
    h2: &FleetHost,
    before: &netbridge_tests::HostSnapshot,
    output: &str,
) {
    let doc = result(fleet, "h2").unwrap_or_else(|| panic!("h2 has a result\n{output}"));
    assert_eq!(doc["result"], "rolled-back", "{doc:#}");
    assert_eq!(doc["exit_code"], 3, "{doc:#}");
    let bridge = &doc["bridges"][0];
    assert_eq!(bridge["result"], "rolled-back", "{doc:#}");
    let reason = bridge["reason"].as_str().unwrap_or_default();
    assert!(
        reason.contains("checks failed after the change: ping 172.25.250.254"),
        "{reason}"
    );
    assert!(
        output.contains("h2: netbridge apply rolled-back (exit 3): br0 rolled-back: checks failed"),
        "the playbook says why it stopped:\n{output}"
    );
    assert!(
        eventually(Duration::from_secs(10), || h2.lab().snapshot() == *before),
        "h2 is as before the rollout"
    );
    assert_eq!(
        status(h2.lab())["configured"]["br0"]["result"],
        "rolled-back"
    );
}

fn assert_h3_untouched(
    fleet: &Fleet,
    h3: &FleetHost,
    before: &netbridge_tests::HostSnapshot,
    output: &str,
) {
    assert!(result(fleet, "h3").is_none(), "h3 has no result\n{output}");
    assert_eq!(h3.sshd().connections(), 0, "nobody connected to h3's sshd");
    assert_eq!(h3.lab().snapshot(), *before, "h3 is unchanged");
    assert!(
        !h3.sshd().etc_netbridge().join("netbridge.toml").exists(),
        "no configuration reached h3"
    );
}
