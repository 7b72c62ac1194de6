//! `fleet/rollout.yml` (the module netbridge.netbridge.netbridge, changes
//! confirmed over a new SSH connection) against three lab hosts over SSH,
//! one host per batch: h1 converts and is confirmed, h2's check fails after
//! the change so netbridge rolls it back, and the rollout stops there — h3
//! is never contacted. Once h2's network is fixed, the same rollout leaves h1
//! alone and converts h2 and h3; a third reports no change anywhere. Check
//! mode changes nothing and reports what would change; a host whose inbound
//! SSH is cut by the change is not confirmed and rolls back by itself. An
//! SSH session killed on both ends while its `--confirm` waits leaves a
//! change that a new connection still confirms, or that rolls back by
//! itself — never one half done.

mod common;

use std::process::Stdio;
use std::time::{Duration, Instant};

use common::{device, eventually, ipv4, saved_keyfile, status, Running};
use netbridge_tests::fleet::{Fleet, FleetHost, PlaybookRun, FLEET_TOML};
use netbridge_tests::Lab;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use serde_json::Value;

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

#[test]
fn a_change_outlives_its_killed_ssh_session_and_commits_only_if_confirmed() {
    let Some(fleet) = Fleet::require(&["h1", "h2"]) else {
        return;
    };
    let (h1, h2) = (fleet.host("h1"), fleet.host("h2"));
    let h2_before = h2.lab().snapshot();

    // Confirmed afterwards, over a new connection: committed.
    let watcher = convert_then_kill_the_session(&fleet, h1, 120);
    assert!(alive(watcher), "the watcher outlives the session");
    assert_on_trial(h1.lab());
    let contacts = h1.sshd().connections();
    let confirm = fleet
        .controller()
        .ssh(h1.lab(), "netbridge confirm --json")
        .output()
        .expect("run ssh");
    let doc: Value = serde_json::from_slice(&confirm.stdout).unwrap_or_else(|e| {
        panic!(
            "confirm's JSON: {e}\n{}",
            String::from_utf8_lossy(&confirm.stderr)
        )
    });
    assert_eq!(confirm.status.code(), Some(0), "{doc:#}");
    assert_eq!(doc["confirmed"]["result"], "committed", "{doc:#}");
    assert_eq!(h1.sshd().connections(), contacts + 1, "a new connection");
    assert!(saved_keyfile(h1.lab(), "br0").contains("type=bridge"));
    let s = status(h1.lab());
    assert_eq!(ipv4(&s, "br0"), vec!["172.25.250.10/24"], "{s:#}");
    assert_settled(h1.lab(), watcher);

    // Not confirmed: rolled back by itself within its seconds.
    let secs = 15;
    let watcher = convert_then_kill_the_session(&fleet, h2, secs);
    let waiting = Instant::now();
    assert_on_trial(h2.lab());
    assert!(
        eventually(Duration::from_secs(secs + 15), || h2.lab().snapshot()
            == h2_before),
        "h2 rolled back by itself:\nbefore {h2_before:#?}\nafter {:#?}",
        h2.lab().snapshot()
    );
    let took = waiting.elapsed();
    assert!(
        took >= Duration::from_secs(secs - 3),
        "not before its deadline: {took:?}"
    );
    assert_settled(h2.lab(), watcher);
    assert_eq!(h2.lab().snapshot(), h2_before, "h2 exactly as before");
}

/// What the SSH session runs: it names its shell and that shell's parent
/// (sshd's process for this session), converts with `--confirm SECS`, says
/// how netbridge exited, and then reads its stdin: it lasts as long as the
/// session.
fn remote_convert(secs: u64) -> String {
    format!(
        "echo \"session shell $$ sshd $PPID\" >&2; \
         netbridge convert ens32 --yes --no-guest-check --confirm {secs}; \
         echo \"netbridge exited $?\" >&2; read -r _"
    )
}

/// Over SSH to `host`: a conversion with `--confirm secs`. Once it awaits
/// confirmation, that session is killed for real, on both ends: sshd's
/// processes for the connection (SIGHUP, then SIGKILL) and the client
/// (SIGKILL). Returns the watcher's pid.
fn convert_then_kill_the_session(fleet: &Fleet, host: &FleetHost, secs: u64) -> Pid {
    let ssh = fleet.controller().ssh(host.lab(), &remote_convert(secs));
    let mut run = Running::spawn_with_stdin(ssh, Stdio::piped());
    let line = run.wait_for("session shell ", Duration::from_secs(60));
    let numbers: Vec<u32> = line
        .split_whitespace()
        .filter_map(|w| w.parse().ok())
        .collect();
    let [shell, parent] = numbers[..] else {
        panic!("no shell and sshd pid in {line:?}");
    };
    let awaiting = run.wait_for("awaiting confirmation", Duration::from_secs(120));
    let watcher = watcher_pid(&awaiting);
    let exited = run.wait_for("netbridge exited", Duration::from_secs(30));
    assert!(exited.ends_with("exited 9"), "{exited}");
    assert!(alive(pid(shell)), "the session still runs");

    let session = host
        .sshd()
        .connection_processes(parent)
        .unwrap_or_else(|| panic!("{parent} is not a process of {}'s sshd", host.name()));
    for sig in [Signal::SIGHUP, Signal::SIGKILL] {
        for p in &session {
            // Gone after the hangup already: no failure.
            let _ = kill(pid(*p), sig);
        }
    }
    let _ = kill(pid(run.pid()), Signal::SIGKILL);
    let (_, output) = run.finish();
    assert!(
        eventually(Duration::from_secs(10), || !alive(pid(shell))
            && session.iter().all(|p| !alive(pid(*p)))),
        "the session ({session:?}, shell {shell}) is gone:\n{output}"
    );
    watcher
}

fn pid(raw: u32) -> Pid {
    Pid::from_raw(i32::try_from(raw).expect("a pid fits in i32"))
}

fn alive(pid: Pid) -> bool {
    kill(pid, None).is_ok()
}

/// The watcher's pid, from the progress line "... (watcher pid N)".
fn watcher_pid(line: &str) -> Pid {
    line.split("watcher pid ")
        .nth(1)
        .and_then(|rest| rest.split(|c: char| !c.is_ascii_digit()).next())
        .and_then(|digits| digits.parse().ok())
        .map(pid)
        .unwrap_or_else(|| panic!("no watcher pid in {line:?}"))
}

fn journal(lab: &Lab) -> Option<String> {
    std::fs::read_to_string(lab.state_dir().join("journal.json")).ok()
}

/// NetworkManager's checkpoints (their D-Bus paths).
fn checkpoints(lab: &Lab) -> Vec<String> {
    let out = lab.host([
        "dbus-send",
        "--system",
        "--print-reply",
        "--dest=org.freedesktop.NetworkManager",
        "/org/freedesktop/NetworkManager",
        "org.freedesktop.DBus.Properties.Get",
        "string:org.freedesktop.NetworkManager",
        "string:Checkpoints",
    ]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "NetworkManager's Checkpoints: {out:?}"
    );
    text.lines()
        .filter_map(|l| l.trim().strip_prefix("object path "))
        .map(|p| p.trim_matches('"').to_owned())
        .collect()
}

/// The change on trial: br0 carries the host from memory only, one
/// checkpoint armed, the journal awaiting the confirmation.
fn assert_on_trial(lab: &Lab) {
    let snap = lab.snapshot();
    let br0 = snap
        .profiles
        .keys()
        .find(|path| snap.profiles[*path].lines().any(|l| l == "id=br0"));
    assert!(
        br0.is_some_and(|p| p.starts_with("run/")),
        "br0's profile in memory only: {br0:?}"
    );
    assert_eq!(checkpoints(lab).len(), 1, "the checkpoint is armed");
    let journal = journal(lab).expect("the journal records the change");
    assert!(journal.contains("awaiting-confirm"), "{journal}");
}

/// Never half done: the journal cleared, no checkpoint left armed, the
/// watcher gone.
fn assert_settled(lab: &Lab, watcher: Pid) {
    assert!(
        eventually(Duration::from_secs(15), || journal(lab).is_none()
            && !alive(watcher)),
        "the journal is cleared ({:?}) and the watcher ({watcher}) exited",
        journal(lab)
    );
    assert_eq!(checkpoints(lab), Vec::<String>::new(), "no checkpoint left");
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

/// Runs fleet/rollout.yml over the whole fleet, one host per batch;
/// `check`: with `--check --diff`.
fn rollout(fleet: &Fleet, check: bool) -> PlaybookRun {
    let flags: &[&str] = if check { &["--check", "--diff"] } else { &[] };
    let run = fleet
        .controller()
        .rollout(1, CONFIRM_SECS, flags, ROLLOUT_TIMEOUT)
        .unwrap_or_else(|e| panic!("the playbook did not finish: {e}"));
    // Shown with --nocapture, and with the failure of a test that panics.
    eprintln!("{}", run.output);
    run
}

fn ship_config(fleet: &Fleet) {
    fleet
        .controller()
        .ship_config(FLEET_TOML)
        .expect("write the fleet config");
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
