//! `--confirm SECS` end to end against a real NetworkManager in a lab: a
//! proven change waits in memory for `netbridge confirm`, from another
//! process; unconfirmed, it rolls back by itself; it outlives the process
//! (and the session) that started it; `netbridge rollback` and a
//! NetworkManager restart end it in the old configuration.

mod common;

use std::os::unix::process::CommandExt;
use std::time::{Duration, Instant};

use common::{eventually, netbridge, ping_gateway, saved_keyfile, Running};
use netbridge_tests::{HostSnapshot, Lab, Uplink};
use nix::sys::signal::{kill, killpg, Signal};
use nix::unistd::{getsid, Pid};

/// Starts a conversion that waits `secs` for confirmation, in its own
/// process group (as a login session would run it), and waits until it
/// awaits confirmation. Returns the run and the watcher's pid.
fn start_awaiting(lab: &Lab, secs: &str) -> (Running, Pid) {
    let mut command = lab.netbridge(common::confirm_convert_args(secs));
    command.process_group(0);
    let mut run = Running::spawn(command);
    let line = run.wait_for("awaiting confirmation", Duration::from_secs(60));
    (run, watcher_pid(&line))
}

/// The watcher's pid, from the progress line "... (watcher pid N)".
fn watcher_pid(line: &str) -> Pid {
    let pid = line
        .split("watcher pid ")
        .nth(1)
        .and_then(|rest| rest.split(|c: char| !c.is_ascii_digit()).next())
        .and_then(|digits| digits.parse().ok())
        .unwrap_or_else(|| panic!("no watcher pid in {line:?}"));
    Pid::from_raw(pid)
}

fn alive(pid: Pid) -> bool {
    kill(pid, None).is_ok()
}

fn journal_exists(lab: &Lab) -> bool {
    lab.state_dir().join("journal.json").exists()
}

/// The trial as `--confirm` leaves it: the bridge carries the host, its
/// profiles only in memory, the journal awaiting confirmation.
fn assert_on_trial(lab: &Lab) {
    let snap = lab.snapshot();
    let br0 = snap
        .profiles
        .iter()
        .find(|(_, text)| text.lines().any(|l| l == "id=br0"))
        .map(|(path, _)| path.clone());
    assert!(
        br0.as_deref().is_some_and(|p| p.starts_with("run/")),
        "br0's profile in memory only: {br0:?}"
    );
    assert_eq!(
        snap.addresses.get("br0"),
        Some(&vec!["172.25.250.10/24".to_owned()])
    );
    let journal = std::fs::read_to_string(lab.state_dir().join("journal.json"))
        .expect("the journal records the change");
    assert!(journal.contains("awaiting-confirm"), "{journal}");
}

/// The host is back exactly as before, nothing recorded, the watcher gone.
fn assert_restored(lab: &Lab, before: &HostSnapshot, watcher: Pid) {
    assert!(
        eventually(Duration::from_secs(15), || !journal_exists(lab)
            && !alive(watcher)),
        "the journal is cleared and the watcher ({watcher}) exited"
    );
    assert!(
        eventually(Duration::from_secs(10), || lab.snapshot() == *before),
        "the host as before:\nbefore {before:#?}\nafter {:#?}",
        lab.snapshot()
    );
    assert!(ping_gateway(lab));
}

#[test]
fn a_confirmed_change_commits_from_another_process() {
    let Some(lab) = Lab::require(Uplink::Static) else {
        return;
    };
    let run = netbridge(&lab, &common::confirm_convert_args("60"));
    assert_eq!(run.code, 9, "exit 9 while it waits:\n{}", run.stderr);
    assert!(run.stdout.contains("netbridge confirm"), "{}", run.stdout);
    let watcher = watcher_pid(&run.stderr);
    assert_on_trial(&lab);
    assert!(ping_gateway(&lab), "the host works through br0 on trial");

    let status = netbridge(&lab, &["status"]);
    assert!(
        status
            .stdout
            .contains("AWAITING CONFIRMATION  the convert of br0"),
        "{}",
        status.stdout
    );
    // Nothing else changes the host meanwhile.
    let other = netbridge(&lab, &["convert", "ens32", "--yes"]);
    assert_eq!(
        other.code, 6,
        "refused while a change awaits: {}",
        other.stderr
    );
    assert!(
        other.stderr.contains("awaits confirmation"),
        "{}",
        other.stderr
    );

    let confirmed = netbridge(&lab, &["confirm", "--json"]);
    assert_eq!(confirmed.code, 0, "{}", confirmed.stdout);
    assert_eq!(confirmed.json()["confirmed"]["result"], "committed");
    assert!(saved_keyfile(&lab, "br0").contains("type=bridge"));
    assert!(saved_keyfile(&lab, "ens32").contains("autoconnect=false"));
    assert!(
        eventually(Duration::from_secs(10), || !alive(watcher)),
        "the watcher exits once confirmed"
    );
    assert!(!journal_exists(&lab));
    assert!(ping_gateway(&lab));
    let again = netbridge(&lab, &["confirm"]);
    assert_eq!(again.code, 2, "nothing left to confirm: {}", again.stderr);
}

#[test]
fn an_unconfirmed_change_rolls_back_by_itself_within_its_seconds() {
    let Some(lab) = Lab::require(Uplink::Static) else {
        return;
    };
    let before = lab.snapshot();
    let (run, watcher) = start_awaiting(&lab, "10");
    let waiting = Instant::now();
    let (code, output) = run.finish();
    assert_eq!(code, 9, "{output}");
    assert!(
        eventually(Duration::from_secs(15), || lab.snapshot() == before),
        "rolled back by itself:\nbefore {before:#?}\nafter {:#?}",
        lab.snapshot()
    );
    let took = waiting.elapsed();
    assert!(
        took >= Duration::from_secs(8),
        "not before its deadline: {took:?}"
    );
    assert_restored(&lab, &before, watcher);
}

#[test]
fn the_change_outlives_its_session_hung_up_and_killed_and_is_still_confirmable() {
    let Some(lab) = Lab::require(Uplink::Static) else {
        return;
    };
    let (run, watcher) = start_awaiting(&lab, "60");
    let group = Pid::from_raw(i32::try_from(run.pid()).expect("pid fits"));
    // The session ends: hangup, then kill, for everything in its group.
    for sig in [Signal::SIGHUP, Signal::SIGKILL] {
        // The starter may have exited already: that is no failure.
        let _ = killpg(group, sig);
    }
    let _ = run.finish();
    assert!(alive(watcher), "the watcher outlives the session");
    assert_eq!(
        getsid(Some(watcher)).expect("the watcher's session"),
        watcher,
        "the watcher leads a session of its own (no controlling terminal)"
    );
    assert_on_trial(&lab);
    let confirmed = netbridge(&lab, &["confirm"]);
    assert_eq!(
        confirmed.code, 0,
        "{}{}",
        confirmed.stdout, confirmed.stderr
    );
    assert!(saved_keyfile(&lab, "br0").contains("type=bridge"));
    assert!(eventually(Duration::from_secs(10), || !alive(watcher)));
    assert!(!journal_exists(&lab));
}

#[test]
fn rollback_ends_the_trial_early() {
    let Some(lab) = Lab::require(Uplink::Static) else {
        return;
    };
    let before = lab.snapshot();
    let (run, watcher) = start_awaiting(&lab, "120");
    let _ = run.finish();
    let started = Instant::now();
    let undone = netbridge(&lab, &["rollback"]);
    assert_eq!(undone.code, 0, "{}{}", undone.stdout, undone.stderr);
    assert_restored(&lab, &before, watcher);
    assert!(
        started.elapsed() < Duration::from_secs(60),
        "long before the deadline"
    );
    let late = netbridge(&lab, &["confirm"]);
    assert_eq!(late.code, 2, "nothing to confirm after a rollback");
}

#[test]
fn a_networkmanager_restart_while_waiting_ends_in_the_old_configuration() {
    let Some(mut lab) = Lab::require(Uplink::Static) else {
        return;
    };
    let before = lab.snapshot();
    let (run, watcher) = start_awaiting(&lab, "120");
    let _ = run.finish();
    let restarted = Instant::now();
    // The checkpoint is lost; the in-memory trial survives the restart.
    lab.restart_nm().expect("restart NetworkManager");
    assert!(
        eventually(Duration::from_secs(60), || !journal_exists(&lab)),
        "the watcher undoes the change once NetworkManager is back"
    );
    assert_restored(&lab, &before, watcher);
    assert!(
        restarted.elapsed() < Duration::from_secs(100),
        "undone at once, not at the deadline"
    );
}

#[test]
fn a_revert_waits_for_its_confirmation_too() {
    let Some(lab) = Lab::require(Uplink::Static) else {
        return;
    };
    let converted = netbridge(&lab, &["convert", "ens32", "--yes", "--no-guest-check"]);
    assert_eq!(converted.code, 0, "{}", converted.stderr);
    let run = netbridge(&lab, &["revert", "br0", "--yes", "--confirm", "60"]);
    assert_eq!(run.code, 9, "exit 9 while it waits:\n{}", run.stderr);
    let watcher = watcher_pid(&run.stderr);
    assert!(
        saved_keyfile(&lab, "br0").contains("type=bridge"),
        "nothing deleted on disk before the confirm"
    );
    assert_eq!(
        lab.snapshot().addresses.get("ens32"),
        Some(&vec!["172.25.250.10/24".to_owned()]),
        "ens32 carries the host on trial"
    );
    let confirmed = netbridge(&lab, &["confirm"]);
    assert_eq!(
        confirmed.code, 0,
        "{}{}",
        confirmed.stdout, confirmed.stderr
    );
    let snap = lab.snapshot();
    assert!(
        !snap
            .profiles
            .values()
            .any(|t| t.lines().any(|l| l == "id=br0")),
        "br0's profile is gone"
    );
    assert!(!saved_keyfile(&lab, "ens32").contains("autoconnect=false"));
    assert!(eventually(Duration::from_secs(10), || !alive(watcher)));
    assert!(!journal_exists(&lab));
    assert!(ping_gateway(&lab));
}

/// NetworkManager's checkpoints, as its bus lists them.
fn checkpoints(lab: &Lab) -> String {
    let out = lab.host(common::CHECKPOINTS);
    assert!(out.status.success(), "busctl: {out:?}");
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// Nothing left of a trial: the journal cleared, the watcher gone, no
/// checkpoint armed.
fn assert_ended(lab: &Lab, watcher: Pid) {
    assert!(
        eventually(Duration::from_secs(15), || !journal_exists(lab)
            && !alive(watcher)),
        "the journal is cleared and the watcher ({watcher}) exited"
    );
    assert_eq!(checkpoints(lab), "ao 0", "no checkpoint armed");
}

/// A host-only network made with `extra` arguments.
fn create_vmnet1<'a>(extra: &[&'a str]) -> Vec<&'a str> {
    common::VMNET1.iter().chain(extra).copied().collect()
}

/// A `--confirm` run as a script sees it: exit 9, result awaiting-confirm;
/// returns the watcher's pid.
fn awaits(run: &common::Run) -> Pid {
    assert_eq!(run.code, 9, "exit 9 while it waits:\n{}", run.stderr);
    let doc = run.json();
    assert_eq!(doc["result"], "awaiting-confirm", "{doc:#}");
    assert_eq!(doc["outcome"]["result"], "awaiting-confirm", "{doc:#}");
    assert!(doc["error"].is_null(), "{doc:#}");
    watcher_pid(common::awaiting_step(&doc))
}

fn on_disk(lab: &Lab, id: &str) -> bool {
    let line = format!("id={id}");
    lab.snapshot()
        .profiles
        .iter()
        .any(|(path, text)| path.starts_with("conn/") && text.lines().any(|l| l == line))
}

#[test]
fn a_created_network_unconfirmed_is_gone_after_its_seconds() {
    let Some(lab) = Lab::require(Uplink::Static) else {
        return;
    };
    let before = lab.snapshot();
    let waiting = Instant::now();
    let run = netbridge(&lab, &create_vmnet1(&["--confirm", "8", "--json"]));
    let watcher = awaits(&run);
    let snap = lab.snapshot();
    assert_eq!(
        snap.addresses.get("vmnet1"),
        Some(&vec!["192.168.108.1/24".to_owned()]),
        "the network runs on trial"
    );
    assert!(
        !on_disk(&lab, "vmnet1"),
        "nothing on disk before the confirm"
    );
    let status = netbridge(&lab, &["status"]);
    assert!(
        status
            .stdout
            .contains("AWAITING CONFIRMATION  the create of vmnet1"),
        "{}",
        status.stdout
    );
    assert!(
        eventually(Duration::from_secs(30), || lab.snapshot() == before),
        "gone by itself:\nbefore {before:#?}\nafter {:#?}",
        lab.snapshot()
    );
    let took = waiting.elapsed();
    assert!(
        took >= Duration::from_secs(7),
        "not before its deadline: {took:?}"
    );
    assert_ended(&lab, watcher);
    assert_eq!(lab.snapshot(), before);
}

#[test]
fn a_confirmed_network_persists() {
    let Some(lab) = Lab::require(Uplink::Static) else {
        return;
    };
    let run = netbridge(&lab, &create_vmnet1(&["--confirm", "60", "--json"]));
    let watcher = awaits(&run);
    let confirmed = netbridge(&lab, &["confirm", "--json"]);
    assert_eq!(confirmed.code, 0, "{}", confirmed.stderr);
    let doc = confirmed.json();
    assert_eq!(doc["confirmed"]["result"], "committed", "{doc:#}");
    assert_eq!(doc["confirmed"]["operation"], "create", "{doc:#}");
    assert!(saved_keyfile(&lab, "vmnet1").contains("type=bridge"));
    assert_ended(&lab, watcher);
    assert_eq!(
        lab.snapshot().addresses.get("vmnet1"),
        Some(&vec!["192.168.108.1/24".to_owned()])
    );
}

#[test]
fn a_deletion_unconfirmed_comes_back_and_confirmed_is_gone() {
    let Some(lab) = Lab::require(Uplink::Static) else {
        return;
    };
    let created = netbridge(&lab, &create_vmnet1(&[]));
    assert_eq!(created.code, 0, "{}", created.stderr);
    // A bridge without ports gets a new random MAC each time it is made:
    // the one thing that differs once the network is back.
    let snapshot = || {
        let mut snap = lab.snapshot();
        if let Some(link) = snap.links.get_mut("vmnet1") {
            link.mac = None;
        }
        snap
    };
    let before = snapshot();

    let run = netbridge(&lab, &["delete", "vmnet1", "--confirm", "8", "--json"]);
    let watcher = awaits(&run);
    assert!(
        !lab.snapshot().links.contains_key("vmnet1"),
        "the bridge is down on trial"
    );
    assert!(
        on_disk(&lab, "vmnet1"),
        "its profile stays on disk on trial"
    );
    assert!(
        eventually(Duration::from_secs(30), || snapshot() == before),
        "back by itself:\nbefore {before:#?}\nafter {:#?}",
        snapshot()
    );
    assert_ended(&lab, watcher);

    let run = netbridge(&lab, &["delete", "vmnet1", "--confirm", "60", "--json"]);
    let watcher = awaits(&run);
    let confirmed = netbridge(&lab, &["confirm"]);
    assert_eq!(confirmed.code, 0, "{}", confirmed.stderr);
    assert_ended(&lab, watcher);
    assert!(!on_disk(&lab, "vmnet1"), "the profile is deleted");
    assert!(!lab.snapshot().links.contains_key("vmnet1"));
}

#[test]
fn a_confirmed_revert_forgets_the_bridges_result() {
    let Some(lab) = Lab::require(Uplink::Static) else {
        return;
    };
    let dir = lab.dir().join("etc-netbridge");
    std::fs::create_dir_all(&dir).expect("config dir");
    std::fs::write(
        dir.join("netbridge.toml"),
        "[[bridge]]\nname = \"br0\"\nuplink = \"ens32\"\nguest-check = false\n",
    )
    .expect("write config");
    let config = dir.display().to_string();
    let applied = netbridge(&lab, &["apply", "--config", &config]);
    assert_eq!(applied.code, 0, "{}", applied.stderr);
    // Without the configuration, status shows the results as recorded.
    let results = || {
        let run = netbridge(&lab, &["status", "--json", "--config", "/nonexistent"]);
        assert_eq!(run.code, 0, "{}", run.stderr);
        run.json()["configured"].clone()
    };
    assert_eq!(results()["br0"]["result"], "committed");

    let run = netbridge(&lab, &["revert", "br0", "--yes", "--confirm", "60"]);
    assert_eq!(run.code, 9, "{}", run.stderr);
    let watcher = watcher_pid(&run.stderr);
    assert_eq!(
        results()["br0"]["result"],
        "committed",
        "kept while the revert is on trial"
    );
    let confirmed = netbridge(&lab, &["confirm"]);
    assert_eq!(confirmed.code, 0, "{}", confirmed.stderr);
    assert_ended(&lab, watcher);
    let after = results();
    assert!(
        after.get("br0").is_none(),
        "br0's result forgotten: {after:#}"
    );
}

/// Who finishes a confirmed commit whose `netbridge confirm` was killed
/// while it wrote.
#[derive(Clone, Copy, PartialEq)]
enum Finisher {
    /// The watcher, as soon as the killed confirm's lock is free.
    Watcher,
    /// `netbridge confirm` run again, the watcher being gone too.
    ConfirmAgain,
}

#[test]
fn a_confirm_killed_while_it_commits_is_finished_by_the_watcher() {
    confirm_killed_while_it_commits(Finisher::Watcher);
}

#[test]
fn a_confirm_killed_while_it_commits_is_finished_by_confirm_run_again() {
    confirm_killed_while_it_commits(Finisher::ConfirmAgain);
}

fn sigkill(pid: Pid) {
    let _ = kill(pid, Signal::SIGKILL);
}

fn confirm_killed_while_it_commits(finisher: Finisher) {
    let Some(lab) = Lab::require(Uplink::Static) else {
        return;
    };
    let (run, watcher) = start_awaiting(&lab, "60");
    let _ = run.finish();
    if finisher == Finisher::ConfirmAgain {
        sigkill(watcher);
        assert!(eventually(Duration::from_secs(5), || !alive(watcher)));
    }
    let mut confirm = common::Running::start(&lab, &["confirm"]);
    confirm.wait_for("committing", Duration::from_secs(30));
    sigkill(Pid::from_raw(
        i32::try_from(confirm.pid()).expect("pid fits"),
    ));
    let (code, output) = confirm.finish();
    assert_eq!(code, -1, "killed: {output}");
    // Killed between the journal's "committing" and its end (the writes
    // are under way): what the finisher must finish.
    let journal = std::fs::read_to_string(lab.state_dir().join("journal.json"));
    assert!(
        journal
            .as_deref()
            .is_ok_and(|j| j.contains("\"committing\"")),
        "the commit cut short is recorded: {journal:?}\n{output}"
    );
    if finisher == Finisher::ConfirmAgain {
        let again = netbridge(&lab, &["confirm", "--json"]);
        assert_eq!(again.code, 0, "the commit finished: {}", again.stderr);
        assert_eq!(again.json()["result"], "committed", "{}", again.stdout);
    }
    assert_ended(&lab, watcher);
    assert!(saved_keyfile(&lab, "br0").contains("type=bridge"));
    assert!(saved_keyfile(&lab, "ens32").contains("autoconnect=false"));
    assert_eq!(
        lab.snapshot().addresses.get("br0"),
        Some(&vec!["172.25.250.10/24".to_owned()]),
        "committed, not rolled back"
    );
    assert!(ping_gateway(&lab));
    let again = netbridge(&lab, &["confirm"]);
    assert_eq!(again.code, 2, "nothing left to confirm: {}", again.stderr);
}
