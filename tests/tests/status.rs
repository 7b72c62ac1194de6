//! `netbridge status` against a real NetworkManager in a lab.

mod common;

use std::time::Duration;

use common::{device, ipv4, netbridge, signal, status, Running};
use netbridge_tests::{Lab, Uplink};
use nix::sys::signal::Signal;

#[test]
fn status_reports_a_static_uplink() {
    let Some(lab) = Lab::require(Uplink::Static) else {
        return;
    };
    let s = status(&lab);
    let ens32 = device(&s, "ens32").expect("ens32 listed");
    assert_eq!(ens32["state"], "activated");
    // nmcli's word: NetworkManager drives the lab's veth as ethernet.
    assert_eq!(ens32["type"], "ethernet");
    assert_eq!(ens32["profile"]["id"], "ens32");
    assert_eq!(ipv4(&s, "ens32"), vec!["172.25.250.10/24"]);
    assert_eq!(ens32["ipv4"]["gateway"], "172.25.250.254");
    assert_eq!(ens32["ipv4"]["dns"], serde_json::json!(["172.25.250.254"]));
    assert!(device(&s, "lo").is_none(), "loopback only with --all");
    assert_eq!(s["networkmanager"]["version"], "1.42.4");

    let table = netbridge(&lab, &["status"]);
    assert_eq!(table.code, 0);
    assert!(table.stdout.contains("ens32") && table.stdout.contains("172.25.250.10/24"));
    let nmcli = lab.host(["nmcli", "-g", "DEVICE,TYPE", "device"]);
    let nmcli = String::from_utf8_lossy(&nmcli.stdout);
    assert!(nmcli.lines().any(|l| l == "ens32:ethernet"), "{nmcli}");
    let row = table.stdout.lines().find(|l| l.starts_with("ens32 "));
    let columns: Vec<&str> = row.expect("an ens32 row").split_whitespace().collect();
    assert_eq!(columns[1], "ethernet", "TYPE as nmcli says it");
}

/// The table's line about a recorded change, if any.
fn change_line(lab: &Lab) -> String {
    let table = netbridge(lab, &["status"]);
    assert_eq!(table.code, 0, "{}", table.stderr);
    table
        .stdout
        .lines()
        .find(|l| l.starts_with("CHANGE"))
        .unwrap_or_default()
        .to_owned()
}

#[test]
fn status_tells_a_change_in_progress_from_an_interrupted_one() {
    let Some(lab) = Lab::require(Uplink::Static) else {
        return;
    };
    let dnsmasq = lab.dnsmasq_pid().expect("dnsmasq runs");
    let args = [
        "convert",
        "ens32",
        "--yes",
        "--no-guest-check",
        "--check",
        "dns:gw.lab",
    ];
    let mut run = Running::start(&lab, &args);
    run.wait_for("checkpoint", Duration::from_secs(20));
    // DNS goes silent: the change waits in its check while status looks.
    signal(dnsmasq, Signal::SIGSTOP);
    run.wait_for("identity", Duration::from_secs(20));
    let s = status(&lab);
    let change = &s["unfinished_change"];
    assert_eq!(change["state"], "in-progress", "{s:#}");
    assert_eq!(change["pid"], run.pid());
    assert_eq!(change["phase"], "applying");
    assert_eq!(s["lock_holder"], run.pid());
    let line = change_line(&lab);
    assert!(
        line.contains("in progress: convert br0 (phase applying")
            && line.contains(&format!("pid {}", run.pid())),
        "{line}"
    );

    signal(run.pid(), Signal::SIGKILL);
    let pid = run.pid();
    run.finish();
    let s = status(&lab);
    assert_eq!(s["unfinished_change"]["state"], "interrupted", "{s:#}");
    assert!(s["lock_holder"].is_null());
    let line = change_line(&lab);
    assert!(
        line.contains("interrupted: convert br0")
            && line.contains(&format!("pid {pid} is gone"))
            && line.contains("run `netbridge recover`"),
        "{line}"
    );

    signal(dnsmasq, Signal::SIGCONT);
    let recover = netbridge(&lab, &["recover"]);
    assert_eq!(recover.code, 0, "{}", recover.stderr);
    let s = status(&lab);
    assert!(s["unfinished_change"].is_null(), "{s:#}");
    assert_eq!(change_line(&lab), "");
    assert_eq!(ipv4(&s, "ens32"), ["172.25.250.10/24"], "as it was");
    assert!(device(&s, "br0").is_none());
}

fn write_config(lab: &Lab, name: &str, text: &str) -> String {
    let path = lab.dir().join(name);
    std::fs::write(&path, text).expect("write a configuration");
    path.display().to_string()
}

#[test]
fn status_shows_the_kept_original_profile_and_only_results_that_still_hold() {
    let Some(lab) = Lab::require(Uplink::Static) else {
        return;
    };
    let config = write_config(
        &lab,
        "netbridge.toml",
        "[[bridge]]\nname = \"br0\"\nuplink = \"ens32\"\nchecks = [\"tcp:172.25.250.254:53\"]\n",
    );
    let apply = netbridge(&lab, &["apply", "--config", &config]);
    assert_eq!(apply.code, 0, "{}", apply.stderr);
    let original = lab.host([
        "nmcli",
        "-g",
        "connection.uuid",
        "connection",
        "show",
        "ens32",
    ]);
    let original = String::from_utf8_lossy(&original.stdout).trim().to_owned();

    let s = netbridge(&lab, &["status", "--json", "--config", &config]).json();
    assert_eq!(s["configured"]["br0"]["result"], "applied", "{s:#}");
    let made = &device(&s, "br0").expect("br0 listed")["netbridge"];
    assert_eq!(made["original_profile"]["id"], "ens32", "{made:#}");
    assert_eq!(made["original_profile"]["uuid"], original.as_str());
    let table = netbridge(&lab, &["status", "--config", &config]);
    assert!(
        table.stdout.contains(&format!(
            "original profile ens32 ({original}), kept for `netbridge revert`"
        )),
        "{}",
        table.stdout
    );

    // Another configuration: br0's result is not its own.
    let other = write_config(
        &lab,
        "other.toml",
        "[[bridge]]\nname = \"virbr9\"\nmode = \"isolated\"\naddress = \"192.168.107.1/24\"\n",
    );
    let s = netbridge(&lab, &["status", "--json", "--config", &other]).json();
    assert_eq!(s["configured"]["virbr9"]["result"], "pending", "{s:#}");
    assert!(s["configured"]["br0"].is_null(), "{s:#}");
    let table = netbridge(&lab, &["status", "--config", &other]).stdout;
    assert!(
        !table
            .lines()
            .any(|l| l.starts_with("br0 ") && l.contains("applied")),
        "{table}"
    );

    let revert = netbridge(&lab, &["revert", "br0", "--yes"]);
    assert_eq!(revert.code, 0, "{}", revert.stderr);
    let s = netbridge(&lab, &["status", "--json", "--config", &config]).json();
    let br0 = &s["configured"]["br0"];
    assert_eq!(
        br0["result"], "pending",
        "reverted, still configured: {s:#}"
    );
    assert!(
        status(&lab)["configured"]["br0"].is_null(),
        "the result is gone"
    );
    let table = netbridge(&lab, &["status", "--config", &config]).stdout;
    let row = table
        .lines()
        .find(|l| l.starts_with("br0 "))
        .unwrap_or_default();
    assert!(row.contains("pending"), "not unchanged: {table}");
}

#[test]
fn status_reports_a_dhcp_uplink() {
    let Some(lab) = Lab::require(Uplink::Dhcp) else {
        return;
    };
    let s = status(&lab);
    let addrs = ipv4(&s, "ens32");
    assert_eq!(addrs.len(), 1, "one DHCP address: {addrs:?}");
    let (addr, len) = addrs[0].split_once('/').expect("address/len");
    let addr: std::net::Ipv4Addr = addr.parse().expect("an IPv4 address");
    assert!(
        Uplink::Dhcp.accepts(addr, len.parse().expect("prefix")),
        "{addr} in the dnsmasq range"
    );
    let ens32 = device(&s, "ens32").expect("ens32 listed");
    assert_eq!(ens32["ipv4"]["gateway"], "172.25.250.254");
    assert_eq!(ens32["ipv4"]["dns"], serde_json::json!(["172.25.250.254"]));
    assert_eq!(ens32["dhcp4"], true);
}

#[test]
fn status_says_clearly_when_networkmanager_is_not_running() {
    let Some(mut lab) = Lab::require(Uplink::Static) else {
        return;
    };
    lab.stop_nm().expect("stop NetworkManager");
    let run = netbridge(&lab, &["status"]);
    assert_eq!(
        run.code, 4,
        "exit 4 = NetworkManager unavailable: {}",
        run.stderr
    );
    assert!(
        run.stderr.contains("NetworkManager is not running"),
        "{}",
        run.stderr
    );
    let json = netbridge(&lab, &["status", "--json"]);
    assert_eq!(json.code, 4);
    assert!(json.json()["error"]
        .as_str()
        .unwrap_or("")
        .contains("not running"));
}

#[test]
fn status_says_clearly_when_the_bus_is_unreachable() {
    let Some(lab) = Lab::require(Uplink::Static) else {
        return;
    };
    let missing = lab.dir().join("no-such-bus.sock");
    let out = lab
        .host_command([
            "env".to_owned(),
            format!("DBUS_SYSTEM_BUS_ADDRESS=unix:path={}", missing.display()),
            netbridge_tests::lab::netbridge_bin()
                .expect("netbridge built")
                .display()
                .to_string(),
            "status".to_owned(),
        ])
        .output()
        .expect("run netbridge");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(4), "{stderr}");
    assert!(
        stderr.contains("cannot reach the D-Bus system bus"),
        "{stderr}"
    );
    assert!(stderr.contains("no-such-bus.sock"), "{stderr}");
}
