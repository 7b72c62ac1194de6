//! Defects that once turned a sound change into a crash or an undone
//! commit, each reproduced against a real NetworkManager in a lab.

mod common;

use std::time::Duration;

use common::{device, ipv4, netbridge, signal, status, Running};
use netbridge_tests::{Lab, Uplink};
use nix::sys::signal::Signal;

/// No journal entry left and no profile only in memory: the change either
/// happened or did not.
fn settled(lab: &Lab) {
    let journal = lab.state_dir().join("journal.json");
    assert!(!journal.exists(), "an unfinished change is recorded");
    let snap = lab.snapshot();
    let in_memory: Vec<_> = snap
        .profiles
        .keys()
        .filter(|p| p.starts_with("run/") && !p.contains("/lo."))
        .collect();
    assert!(
        in_memory.is_empty(),
        "profiles only in memory: {in_memory:?}"
    );
}

#[test]
fn a_closed_log_pipe_never_crashes_a_change() {
    let Some(lab) = Lab::require(Uplink::Static) else {
        return;
    };
    let netbridge_bin = netbridge_tests::lab::netbridge_bin().expect("netbridge built");
    let script = format!(
        "set -o pipefail; NETBRIDGE_LOG=debug {} convert ens32 --yes 2>&1 | head -3 >/dev/null",
        netbridge_bin.display()
    );
    let out = lab.host(["bash", "-c", &script]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "netbridge's own exit, through the pipe: {out:?}"
    );
    settled(&lab);
    let s = status(&lab);
    assert_eq!(ipv4(&s, "br0"), ["172.25.250.10/24"], "committed");
    assert_eq!(device(&s, "ens32").expect("ens32")["controller"], "br0");
}

#[test]
fn with_logging_on_each_step_is_printed_once_and_a_pipe_gets_no_colour() {
    let Some(lab) = Lab::require(Uplink::Static) else {
        return;
    };
    let run = lab
        .netbridge(["convert", "ens32", "--yes", "--no-guest-check"])
        .env("NETBRIDGE_LOG", "info")
        .env_remove("NO_COLOR")
        .stdin(std::process::Stdio::null())
        .output()
        .expect("run netbridge");
    assert_eq!(run.status.code(), Some(0), "{run:?}");
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(
        !stderr.contains('\x1b'),
        "no escape codes into a pipe:\n{stderr}"
    );
    // The checkpoint step's detail, in whatever form it is printed.
    let checkpoint: Vec<&str> = stderr
        .lines()
        .filter(|l| l.contains("restores the host by itself"))
        .collect();
    assert_eq!(checkpoint.len(), 1, "once:\n{stderr}");
}

#[test]
fn a_non_roots_debug_run_says_what_needs_root_without_alarm() {
    let Some(lab) = Lab::require(Uplink::Static) else {
        return;
    };
    // State where nobody may write, so the dry run gets to its checks.
    let state = lab.dir().join("nobody-state");
    std::fs::create_dir(&state).expect("a state directory");
    std::os::unix::fs::chown(&state, Some(65534), None).expect("give it to nobody");
    let netbridge_bin = netbridge_tests::lab::netbridge_bin().expect("netbridge built");
    let out = lab
        .host_command([
            "setpriv",
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
        ])
        .arg(netbridge_bin)
        .args(["convert", "ens32", "--dry-run"])
        .env("NETBRIDGE_LOG", "debug")
        .env("NETBRIDGE_STATE_DIR", &state)
        .stdin(std::process::Stdio::null())
        .output()
        .expect("run netbridge as nobody");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    // The ping library's own socket errors and how-to stay out.
    assert!(stderr.contains("needs root or CAP_NET_RAW"), "{stderr}");
    assert!(
        !stderr.contains("SOCK_DGRAM") && !stderr.contains("sudo"),
        "{stderr}"
    );
    assert!(
        stderr.contains("the firewall's chains: needs root"),
        "{stderr}"
    );
}

#[test]
fn a_full_disk_under_the_log_never_fails_a_change() {
    let Some(lab) = Lab::require(Uplink::Static) else {
        return;
    };
    let netbridge_bin = netbridge_tests::lab::netbridge_bin().expect("netbridge built");
    // Every write to stdout and stderr fails with ENOSPC.
    let script = format!(
        "NETBRIDGE_LOG=debug {} convert ens32 --yes >/dev/full 2>/dev/full",
        netbridge_bin.display()
    );
    let out = lab.host(["bash", "-c", &script]);
    assert_eq!(out.status.code(), Some(0), "committed regardless: {out:?}");
    settled(&lab);
    let s = status(&lab);
    assert_eq!(ipv4(&s, "br0"), ["172.25.250.10/24"], "committed");
    assert_eq!(device(&s, "ens32").expect("ens32")["controller"], "br0");
}

#[test]
fn a_commit_after_networkmanager_lost_the_checkpoint_is_not_undone() {
    let Some(mut lab) = Lab::require(Uplink::Static) else {
        return;
    };
    let dnsmasq = lab.dnsmasq_pid().expect("dnsmasq runs");
    let mut run = Running::start(
        &lab,
        &[
            "convert",
            "ens32",
            "--yes",
            "--no-guest-check",
            "--check",
            "dns:gw.lab",
        ],
    );
    run.wait_for("checkpoint", Duration::from_secs(20));
    signal(dnsmasq, Signal::SIGSTOP);
    run.wait_for("identity", Duration::from_secs(20));
    // NetworkManager restarts while the check waits: the checkpoint is gone,
    // the in-memory trial survives, the check then passes.
    lab.restart_nm().expect("restart NetworkManager");
    signal(dnsmasq, Signal::SIGCONT);
    let (code, output) = run.finish();
    assert_eq!(
        code, 0,
        "a change that passed its checks stays committed:\n{output}"
    );
    assert!(!output.contains("rolling back"), "{output}");
    settled(&lab);
    assert_eq!(ipv4(&status(&lab), "br0"), ["172.25.250.10/24"]);
}

#[test]
fn delete_finishes_an_interrupted_change_first_like_every_changing_verb() {
    let Some(mut lab) = Lab::require(Uplink::Static) else {
        return;
    };
    let code = common::kill_mid_change(&mut lab, |lab| {
        lab.restart_nm().expect("restart NetworkManager");
    });
    assert_eq!(code, -1, "killed");
    let journal = lab.state_dir().join("journal.json");
    assert!(journal.exists(), "the interrupted change is recorded");
    let run = netbridge(&lab, &["delete", "virbr9", "--json"]);
    assert_eq!(run.code, 2, "no such network: {}", run.stdout);
    let doc = run.json();
    let steps = doc["steps"].to_string();
    assert!(steps.contains("recovering"), "recovery ran first: {steps}");
    settled(&lab);
    assert_eq!(ipv4(&status(&lab), "ens32"), ["172.25.250.10/24"], "undone");
}

#[test]
fn ctrl_c_during_a_multi_bridge_apply_stops_before_the_next_bridge() {
    let Some(lab) = Lab::require(Uplink::Static) else {
        return;
    };
    let config = lab.dir().join("two-bridges.toml");
    std::fs::write(
        &config,
        "[[bridge]]\nname = \"br0\"\nuplink = \"ens32\"\nchecks = [\"dns:gw.lab\"]\n\n\
         [[bridge]]\nname = \"virbr1\"\nmode = \"nat\"\naddress = \"192.168.107.1/24\"\n",
    )
    .expect("write the configuration");
    let before = lab.snapshot();
    let dnsmasq = lab.dnsmasq_pid().expect("dnsmasq runs");
    let config = config.display().to_string();
    let mut run = Running::start(&lab, &["apply", "--config", &config]);
    run.wait_for("checkpoint", Duration::from_secs(20));
    // br0 sits in its DNS check when Ctrl-C arrives.
    signal(dnsmasq, Signal::SIGSTOP);
    run.wait_for("identity", Duration::from_secs(20));
    signal(run.pid(), Signal::SIGINT);
    let (code, output) = run.finish();
    signal(dnsmasq, Signal::SIGCONT);
    assert_ne!(code, 0, "{output}");
    assert!(output.contains("interrupted by SIGINT"), "{output}");
    assert!(
        !output.contains("virbr1 (") || output.contains("virbr1 and the rest not started"),
        "virbr1 is never started:\n{output}"
    );
    settled(&lab);
    assert!(
        device(&status(&lab), "virbr1").is_none(),
        "no NAT network made"
    );
    assert_eq!(lab.snapshot(), before, "the host as it was");
}

#[test]
fn a_prompt_left_open_does_not_hold_the_lock() {
    use std::io::{Read, Write};
    let Some(lab) = Lab::require(Uplink::Static) else {
        return;
    };
    let before = lab.snapshot();
    let netbridge_bin = netbridge_tests::lab::netbridge_bin().expect("netbridge built");
    // `script` gives netbridge a terminal; its stdin stays open, unanswered.
    let mut prompt = lab
        .host_command([
            "script",
            "-qfec",
            &format!("{} convert ens32", netbridge_bin.display()),
            "/dev/null",
        ])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("script");
    let mut out = prompt.stdout.take().expect("stdout");
    let mut seen = String::new();
    let mut buf = [0u8; 4096];
    while !seen.contains("[y/N]") {
        let n = out.read(&mut buf).expect("read the prompt");
        assert!(n > 0, "no prompt: {seen}");
        seen.push_str(&String::from_utf8_lossy(&buf[..n]));
    }
    // Meanwhile another changing verb (the agent, a reload) gets the lock.
    let recover = netbridge(&lab, &["recover", "--json"]);
    assert_eq!(
        recover.code, 0,
        "not busy: {}\n{}",
        recover.stdout, recover.stderr
    );

    let mut stdin = prompt.stdin.take().expect("stdin");
    stdin.write_all(b"n\n").expect("answer");
    drop(stdin);
    let status = prompt.wait().expect("script ends");
    assert!(status.code().is_some());
    settled(&lab);
    assert_eq!(lab.snapshot(), before, "declined: nothing changed");
}
