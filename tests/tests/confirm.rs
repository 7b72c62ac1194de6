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

/// A conversion that waits `secs` for confirmation (no guest-path check:
/// it adds nothing here and costs seconds).
fn convert_args(secs: &str) -> [&str; 6] {
    [
        "convert",
        "ens32",
        "--yes",
        "--no-guest-check",
        "--confirm",
        secs,
    ]
}

/// Starts a conversion that waits `secs` for confirmation, in its own
/// process group (as a login session would run it), and waits until it
/// awaits confirmation. Returns the run and the watcher's pid.
fn start_awaiting(lab: &Lab, secs: &str) -> (Running, Pid) {
    let mut command = lab.netbridge(convert_args(secs));
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
    let run = netbridge(&lab, &convert_args("60"));
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
