//! netbridge under real systemd: a Debian host booted with systemd-nspawn in
//! a lab namespace, netbridge installed the documented way (`make install`),
//! `systemctl enable --now netbridge-agent` converting the host, a reboot,
//! a power cut in the middle of a change, `systemctl reload` applying
//! changed options, and the `--confirm` watcher as a transient unit.

mod common;

use std::net::Ipv4Addr;
use std::time::Duration;

use common::{signal, Running};

use netbridge_tests::container::Container;
use netbridge_tests::lab::{Uplink, STATIC_ADDRESS, UPLINK};
use nix::sys::signal::Signal;

const CONFIG: &str = r#"
[[bridge]]
name = "br0"
uplink = "default-route"
checks = ["tcp:172.25.250.254:53"]
"#;

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).trim().to_owned()
}

fn addresses(host: &Container, link: &str) -> Vec<(Ipv4Addr, u8)> {
    host.ipv4_addresses(link).unwrap_or_default()
}

fn status(host: &Container) -> serde_json::Value {
    let out = host.exec(["netbridge", "status", "--json"]);
    assert!(
        out.status.success(),
        "netbridge status: {}",
        text(&out.stderr)
    );
    common::document(&String::from_utf8_lossy(&out.stdout))
        .unwrap_or_else(|e| panic!("status JSON: {e}"))
}

/// The agent's own entries, as journald keeps them.
fn agent_entries(host: &Container) -> Vec<serde_json::Value> {
    let out = host.exec(["journalctl", "-u", "netbridge-agent", "-o", "json"]);
    assert!(out.status.success(), "journalctl: {}", text(&out.stderr));
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|line| serde_json::from_str::<serde_json::Value>(line).expect("a JSON entry"))
        .filter(|e| e["SYSLOG_IDENTIFIER"] == "netbridge-agent")
        .collect()
}

/// Through journald's native protocol: each entry with its priority and
/// its fields, a message of its own, and no terminal escape codes.
fn the_agent_logs_natively_to_the_journal(host: &Container) {
    let entries = agent_entries(host);
    assert!(!entries.is_empty(), "{}", host.journal("netbridge-agent"));
    for entry in &entries {
        // journalctl prints a field with control characters as a byte array.
        let message = entry["MESSAGE"]
            .as_str()
            .unwrap_or_else(|| panic!("{entry:#}"));
        assert!(!message.trim().is_empty(), "an empty message: {entry:#}");
        assert!(!message.contains('\x1b'), "an escape code: {entry:#}");
        assert!(entry["PRIORITY"].is_string(), "{entry:#}");
    }
    let done = entries
        .iter()
        .find(|e| e["RESULT"] == "committed")
        .unwrap_or_else(|| panic!("no RESULT=committed: {entries:#?}"));
    assert_eq!(done["BRIDGE"], "br0", "{done:#}");
    assert_eq!(done["PRIORITY"], "6", "info: {done:#}");
    assert!(
        entries
            .iter()
            .any(|e| e["PHASE"] == "checkpoint" && e["BRIDGE"] == "br0"),
        "progress carries PHASE= and BRIDGE=: {entries:#?}"
    );
    // `journalctl -p warning` leaves routine progress out.
    let warnings = host.exec([
        "journalctl",
        "-u",
        "netbridge-agent",
        "-p",
        "warning",
        "-o",
        "cat",
    ]);
    assert!(
        !text(&warnings.stdout).contains("checkpoint"),
        "{}",
        text(&warnings.stdout)
    );
}

fn status_as_nobody(host: &Container, args: &[&str]) -> std::process::Output {
    let mut argv = vec!["runuser", "-u", "nobody", "--", "netbridge", "status"];
    argv.extend_from_slice(args);
    host.exec(argv)
}

/// A read-only view for anyone NetworkManager lets read (polkit enforced,
/// as on any host); what only root may read is marked, not fatal.
fn status_works_without_root(host: &Container) {
    let out = status_as_nobody(host, &["--json"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let s: serde_json::Value = serde_json::from_slice(&out.stdout).expect("status JSON");
    // The firewall's chains only: nft and iptables-save refuse non-root.
    assert_eq!(s["needs_root"], serde_json::json!(["firewall"]), "{s:#}");
    assert_eq!(s["configured"]["br0"]["result"], "committed", "{s:#}");
    let made = &s["devices"]
        .as_array()
        .and_then(|d| d.iter().find(|d| d["interface"] == "br0").cloned())
        .expect("br0 listed")["netbridge"];
    assert_eq!(made["original_profile"]["id"], "ens32", "{s:#}");
    // A debug run says nothing alarming.
    let debug = host.exec([
        "runuser",
        "-u",
        "nobody",
        "--",
        "env",
        "NETBRIDGE_LOG=debug",
        "netbridge",
        "status",
    ]);
    assert!(debug.status.success(), "{}", text(&debug.stderr));
    let stderr = text(&debug.stderr);
    assert!(!stderr.to_lowercase().contains("error"), "{stderr}");
    // A state directory only root may read (as older versions made it).
    host.exec(["chmod", "0700", "/var/lib/netbridge"]);
    let out = status_as_nobody(host, &["--json"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let s: serde_json::Value = serde_json::from_slice(&out.stdout).expect("status JSON");
    for part in ["journal", "results"] {
        let listed = s["needs_root"]
            .as_array()
            .is_some_and(|p| p.contains(&part.into()));
        assert!(listed, "{part} marked: {s:#}");
    }
    let table = status_as_nobody(host, &[]);
    assert!(table.status.success(), "{}", text(&table.stderr));
    let stdout = text(&table.stdout);
    assert!(stdout.contains("results need root"), "{stdout}");
    assert!(
        stdout.contains("journal") && stdout.contains("needs root"),
        "{stdout}"
    );
    host.exec(["chmod", "0755", "/var/lib/netbridge"]);
}

fn installed(uplink: Uplink) -> Option<Container> {
    let host = Container::require(uplink)?;
    host.install_netbridge()
        .expect("make install into the host");
    Some(host)
}

fn eventually(cond: impl FnMut() -> bool) -> bool {
    common::eventually(Duration::from_secs(30), cond)
}

#[test]
fn systemctl_enable_now_converts_the_host_and_a_reboot_keeps_it() {
    let Some(mut host) = installed(Uplink::Static) else {
        return;
    };
    host.write_file("/etc/netbridge/netbridge.toml", CONFIG, 0o644)
        .expect("write the configuration");
    let enable = host.systemctl(["enable", "--now", "netbridge-agent"]);
    assert!(
        enable.status.success(),
        "enable --now: {}\n{}",
        text(&enable.stderr),
        host.journal("netbridge-agent")
    );
    // Type=notify: `enable --now` returned once the agent reported ready.
    let me = (STATIC_ADDRESS, 24);
    assert_eq!(
        addresses(&host, "br0"),
        vec![me],
        "{}",
        host.journal("netbridge-agent")
    );
    assert!(addresses(&host, UPLINK).is_empty());
    let s = status(&host);
    assert_eq!(s["configured"]["br0"]["result"], "committed", "{s:#}");
    let journal = host.journal("netbridge-agent");
    assert!(
        journal.contains("committed"),
        "the agent logs to the journal:\n{journal}"
    );
    // The guest-path check works inside the hardened unit (CAP_NET_RAW only).
    assert!(
        journal.contains("guest-path br0 ok"),
        "the guest path was proven:\n{journal}"
    );
    the_agent_logs_natively_to_the_journal(&host);
    status_works_without_root(&host);

    host.expect_address_on("br0");
    host.reboot().expect("reboot the host");
    assert!(
        eventually(|| addresses(&host, "br0") == vec![me]),
        "br0 is back after the reboot"
    );
    let active = || text(&host.systemctl(["is-active", "netbridge-agent"]).stdout) == "active";
    assert!(eventually(active), "{}", host.journal("netbridge-agent"));
    let restarts = host.systemctl(["show", "--property=NRestarts", "netbridge-agent"]);
    assert_eq!(
        text(&restarts.stdout),
        "NRestarts=0",
        "started cleanly at boot, waiting for NetworkManager:\n{}",
        host.journal("netbridge-agent")
    );
    assert!(eventually(
        || status(&host)["configured"]["br0"]["result"] == "unchanged"
    ));

    reload_applies_changed_options_in_place(&host);
    let stop = host.systemctl(["stop", "netbridge-agent"]);
    assert!(
        stop.status.success(),
        "a clean stop: {}",
        text(&stop.stderr)
    );
}

#[test]
fn a_power_cut_mid_change_boots_the_original_working_configuration() {
    let Some(mut host) = installed(Uplink::Static) else {
        return;
    };
    let dnsmasq = host.lab().dnsmasq_pid().expect("the LAN's dnsmasq");
    let args = [
        "netbridge",
        "convert",
        "ens32",
        "--yes",
        "--check",
        "dns:gw.lab",
    ];
    let mut convert = Running::spawn(host.command(args).expect("a command in the host"));
    // Silence DNS once the change is under way, so the change hangs in its checks.
    convert.wait_for("checkpoint", Duration::from_secs(20));
    signal(dnsmasq, Signal::SIGSTOP);
    convert.wait_for("bridge up", Duration::from_secs(20));
    // Reapply returns before the kernel has the address: under load it lags.
    assert!(
        eventually(|| addresses(&host, "br0") == vec![(STATIC_ADDRESS, 24)]),
        "mid-change"
    );

    host.power_cut().expect("cut the power");
    convert.finish();
    signal(dnsmasq, Signal::SIGCONT);
    host.boot().expect("boot again");

    assert_the_old_configuration_booted(&host);
    let s = status(&host);
    assert_eq!(s["devices"][0]["profile"]["id"], "ens32", "{s:#}");
    // The journal remembers the interrupted change; closing it changes nothing.
    assert_eq!(s["unfinished_change"]["phase"], "applying");
    let recover = host.exec(["netbridge", "recover", "--json"]);
    assert!(recover.status.success(), "{}", text(&recover.stderr));
    assert_eq!(addresses(&host, UPLINK), vec![(STATIC_ADDRESS, 24)]);
}

/// `netbridge convert ens32 --confirm SECS --json` in the host, run by
/// `runner` (empty: directly), and its document: on trial.
fn convert_on_trial(host: &Container, runner: &[&str], secs: &str) -> serde_json::Value {
    let mut argv = runner.to_vec();
    argv.push("netbridge");
    argv.extend(common::confirm_convert_args(secs));
    argv.push("--json");
    let started = host.exec(argv);
    let doc = common::document(&String::from_utf8_lossy(&started.stdout))
        .unwrap_or_else(|e| panic!("{e}\n{}", text(&started.stderr)));
    assert_eq!(doc["result"], "awaiting-confirm", "{doc:#}");
    assert_eq!(doc["exit_code"], 9, "{doc:#}");
    doc
}

/// After a power cut mid-change: the uplink as before, no bridge, and
/// nothing of the trial on disk.
fn assert_the_old_configuration_booted(host: &Container) {
    assert_eq!(
        addresses(host, UPLINK),
        vec![(STATIC_ADDRESS, 24)],
        "the old configuration booted"
    );
    assert!(addresses(host, "br0").is_empty(), "no bridge after the cut");
    assert_eq!(
        keyfiles(host),
        vec!["ens32.nmconnection"],
        "nothing of the trial reached the disk"
    );
}

fn keyfiles(host: &Container) -> Vec<String> {
    std::fs::read_dir(host.root().join("etc/NetworkManager/system-connections"))
        .expect("keyfile directory")
        .filter_map(Result::ok)
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect()
}

/// A power cut while a change awaits its confirmation boots the old
/// configuration: the trial never reached the disk. A `confirm` after the
/// boot commits nothing: it tells the trial is over and closes its record.
#[test]
fn a_power_cut_while_awaiting_confirmation_boots_the_old_configuration() {
    let Some(mut host) = installed(Uplink::Static) else {
        return;
    };
    convert_on_trial(&host, &[], "300");
    assert_eq!(addresses(&host, "br0"), vec![(STATIC_ADDRESS, 24)]);

    host.power_cut().expect("cut the power");
    host.boot().expect("boot again");
    assert_the_old_configuration_booted(&host);

    let confirmed = host.exec(["netbridge", "confirm", "--json"]);
    let doc = common::document(&String::from_utf8_lossy(&confirmed.stdout))
        .unwrap_or_else(|e| panic!("{e}\n{}", text(&confirmed.stderr)));
    assert_eq!(doc["confirmed"]["result"], "expired", "{doc:#}");
    assert_eq!(doc["exit_code"], 3, "a confirm too late: {doc:#}");
    assert_eq!(
        keyfiles(&host),
        vec!["ens32.nmconnection"],
        "the late confirm wrote nothing"
    );
    assert_eq!(addresses(&host, UPLINK), vec![(STATIC_ADDRESS, 24)]);
    assert!(
        !host.root().join("var/lib/netbridge/journal.json").exists(),
        "the trial's record is closed"
    );
    let s = status(&host);
    assert!(s["unfinished_change"].is_null(), "{s:#}");
}

#[test]
fn a_reboot_in_the_middle_of_an_apply_ends_with_the_bridge_applied() {
    let Some(mut host) = installed(Uplink::Static) else {
        return;
    };
    let config = "[[bridge]]\nname = \"br0\"\nuplink = \"ens32\"\nchecks = [\"dns:gw.lab\"]\n";
    host.write_file("/etc/netbridge/netbridge.toml", config, 0o644)
        .expect("write the configuration");
    let enable = host.systemctl(["enable", "netbridge-agent"]);
    assert!(enable.status.success(), "{}", text(&enable.stderr));
    let dnsmasq = host.lab().dnsmasq_pid().expect("the LAN's dnsmasq");
    let start = host.systemctl(["start", "--no-block", "netbridge-agent"]);
    assert!(start.status.success(), "{}", text(&start.stderr));
    let logged = |what: &str| host.journal("netbridge-agent").contains(what);
    assert!(
        eventually(|| logged("checkpoint")),
        "the change is under way"
    );
    // DNS goes silent: the agent sits in its check when the reboot comes.
    signal(dnsmasq, Signal::SIGSTOP);
    assert!(eventually(|| logged("identity")), "in the trial");
    // DNS answers again once the old boot is gone.
    let leader = host.leader_pid().expect("the host runs");
    let resume = std::thread::spawn(move || {
        let proc = std::path::PathBuf::from(format!("/proc/{leader}"));
        while proc.exists() {
            std::thread::sleep(Duration::from_millis(50));
        }
        signal(dnsmasq, Signal::SIGCONT);
    });
    // At the next boot the agent converts: the address ends up on br0.
    host.expect_address_on("br0");
    host.reboot().expect("reboot the host");
    resume.join().expect("DNS resumed");

    let me = (STATIC_ADDRESS, 24);
    assert!(
        eventually(|| addresses(&host, "br0") == vec![me]),
        "the agent applies br0 after the reboot, with no manual step:\n{}",
        host.journal("netbridge-agent")
    );
    assert!(eventually(
        || status(&host)["configured"]["br0"]["result"] == "committed"
    ));
}

fn sysfs(host: &Container, path: &str) -> String {
    text(&host.exec(["cat", path]).stdout)
}

/// `systemctl reload` after the configuration changed: the agent applies
/// the difference in place (STP, a timer, the MTU), the journal shows the
/// diff, and a LAN host pinging every 5 ms meanwhile loses no reply.
fn reload_applies_changed_options_in_place(host: &Container) {
    assert_eq!(sysfs(host, "/sys/class/net/br0/bridge/stp_state"), "0");

    let changed = format!("{CONFIG}stp = true\nforward-delay = 4\nmtu = 1400\n");
    host.write_file("/etc/netbridge/netbridge.toml", &changed, 0o644)
        .expect("change the configuration");
    // The LAN pings the host every 5 ms while the agent applies the change.
    let pinger = common::lan_pings(host.lab(), 90);
    std::thread::sleep(Duration::from_millis(300));
    let reload = host.systemctl(["reload", "netbridge-agent"]);
    assert!(
        reload.status.success(),
        "{}\n{}\n{}",
        text(&reload.stderr),
        text(&host.systemctl(["status", "netbridge-agent"]).stdout),
        host.journal("netbridge-agent")
    );
    // Committed after the diff was logged: the reload's change is done.
    let applied = eventually(|| {
        let journal = host.journal("netbridge-agent");
        journal
            .find("MTU auto → 1400")
            .is_some_and(|at| journal[at..].contains("committed"))
    });
    std::thread::sleep(Duration::from_millis(300));
    signal(pinger.id(), Signal::SIGINT);
    let pinged = pinger.wait_with_output().expect("ping ends");
    let journal = host.journal("netbridge-agent");
    assert!(applied, "the reload applied the change:\n{journal}");

    assert_eq!(sysfs(host, "/sys/class/net/br0/bridge/stp_state"), "1");
    assert_eq!(
        sysfs(host, "/sys/class/net/br0/bridge/forward_delay"),
        "400"
    );
    assert_eq!(sysfs(host, "/sys/class/net/br0/mtu"), "1400");
    assert_eq!(sysfs(host, &format!("/sys/class/net/{UPLINK}/mtu")), "1400");
    for change in ["STP off → on", "forward delay 2 s → 4 s", "MTU auto → 1400"] {
        assert!(
            journal.contains(change),
            "the journal shows the diff ({change}):\n{journal}"
        );
    }
    assert_eq!(
        status(host)["configured"]["br0"]["result"],
        "committed",
        "{journal}"
    );
    let summary = text(&pinged.stdout);
    let (lost, sent) = common::ping_loss(&summary).expect("a ping summary");
    eprintln!("5 ms pings from the LAN during the reload: {lost} of {sent} replies lost");
    assert!(sent > 100, "the pings covered the change: {summary}");
    assert_eq!(lost, 0, "an in-place change loses no 5 ms reply: {summary}");
}

/// The unit named in the awaiting-confirmation step of a `--json` document.
fn watcher_unit(doc: &serde_json::Value) -> String {
    let detail = common::awaiting_step(doc);
    detail
        .split("watcher unit ")
        .nth(1)
        .and_then(|rest| rest.split(')').next())
        .unwrap_or_else(|| panic!("no transient unit in {detail:?}"))
        .to_owned()
}

/// Under systemd the watcher is a transient unit of its own: a change
/// started from a unit whose processes are all killed when it ends (as
/// logind's KillUserProcesses=yes kills a session's) still awaits its
/// confirmation, and `netbridge confirm` commits it.
#[test]
fn the_confirm_watcher_is_a_transient_unit_that_outlives_the_starters_session() {
    let Some(host) = installed(Uplink::Static) else {
        return;
    };
    // The starter's processes form one cgroup, all killed when its main
    // process exits (KillMode=control-group): a watcher left in it would die.
    let doc = convert_on_trial(
        &host,
        &[
            "systemd-run",
            "--wait",
            "--pipe",
            "--quiet",
            "--property=KillMode=control-group",
        ],
        "120",
    );
    let unit = watcher_unit(&doc);
    let active = |unit: &str| text(&host.systemctl(["is-active", unit]).stdout) == "active";
    assert!(
        active(&unit),
        "the watcher runs on after its starter ended:\n{}",
        host.journal(&unit)
    );
    assert_eq!(
        addresses(&host, "br0"),
        vec![(STATIC_ADDRESS, 24)],
        "on trial"
    );

    let confirmed = host.exec(["netbridge", "confirm", "--json"]);
    let doc = common::document(&String::from_utf8_lossy(&confirmed.stdout))
        .unwrap_or_else(|e| panic!("{e}\n{}", text(&confirmed.stderr)));
    assert_eq!(doc["confirmed"]["result"], "committed", "{doc:#}");
    assert!(eventually(|| !active(&unit)), "{}", host.journal(&unit));
    let log = host.journal(&unit);
    assert!(
        log.contains("watched the convert of br0"),
        "the watcher logs how the change ended:\n{log}"
    );
    assert!(
        !host.root().join("var/lib/netbridge/journal.json").exists(),
        "the journal is clear"
    );
    let checkpoints = host.exec(common::CHECKPOINTS);
    assert_eq!(text(&checkpoints.stdout), "ao 0", "no checkpoint armed");
    assert!(
        host.root()
            .join("etc/NetworkManager/system-connections/br0.nmconnection")
            .exists(),
        "br0 is on disk"
    );
    assert_eq!(addresses(&host, "br0"), vec![(STATIC_ADDRESS, 24)]);
    assert!(addresses(&host, UPLINK).is_empty());
}
