//! netbridge against each NetworkManager the package claims beyond the
//! 1.42 the other tests run (Debian 12): Debian 11's 1.30 (bullseye), 13's
//! 1.52 (trixie) and sid's 1.58, each a host booted with systemd-nspawn in a
//! lab namespace, netbridge installed with `make install` (on bullseye the
//! build linked against glibc 2.28: see `Suite::needs_portable_build`) and
//! the job done there — convert, a reboot, revert, a rollback on a failing
//! check, and a NAT network whose guest gets a lease and reaches the LAN
//! masqueraded, with a DHCP range where NetworkManager has them (1.46) and
//! the range refused where not. The legacy keys
//! (`connection.master`, `slave-type`, `ipv4.dns` as `au`), checkpoint and
//! AddConnection2/Update2 flags and `user.data` markers netbridge writes
//! must work on all of them; 1.30 lists ports in `Slaves`, not `Ports`.
//!
//! Each scenario is one function of the [`Suite`], run per suite by
//! `common::on_suites!`: `cargo test --test nm_versions -- ::sid` runs sid's.
//! The first run builds a suite's root (`/var/cache/netbridge-tests/rootfs-<suite>`,
//! a few minutes); see `netbridge_tests::container`.

mod common;

use std::net::Ipv4Addr;
use std::time::Duration;

use common::{eventually, Run, Running};

use netbridge_tests::container::{Container, Suite};
use netbridge_tests::lab::{Lab, Uplink, PREFIX_LEN, STATIC_ADDRESS, UPLINK};
use serde_json::Value;

const ME: (Ipv4Addr, u8) = (STATIC_ADDRESS, PREFIX_LEN);

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).trim().to_owned()
}

/// A host of `suite` with a static uplink, netbridge installed.
fn host_on(suite: Suite) -> Option<Container> {
    let host = Container::require_on(suite, Uplink::Static)?;
    host.install_netbridge()
        .unwrap_or_else(|e| panic!("make install into the {suite} host: {e}"));
    Some(host)
}

fn netbridge(host: &Container, args: &[&str]) -> Run {
    let mut argv = vec!["netbridge"];
    argv.extend_from_slice(args);
    Run::from(host.exec(argv))
}

/// Asserts that netbridge exited `code`; otherwise fails with its output
/// and NetworkManager's journal, which names a rejected key or flag.
fn expect_code(host: &Container, run: &Run, code: i32, what: &str) {
    assert_eq!(
        run.code,
        code,
        "{what}\n--- stdout:\n{}\n--- stderr:\n{}\n--- journalctl -u NetworkManager (last lines):\n{}",
        run.stdout,
        run.stderr,
        nm_journal_tail(host, 60)
    );
}

fn nm_journal_tail(host: &Container, lines: usize) -> String {
    let journal = host.journal("NetworkManager.service");
    let all: Vec<&str> = journal.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

fn status(host: &Container) -> Value {
    let run = netbridge(host, &["status", "--json"]);
    expect_code(host, &run, 0, "netbridge status --json");
    run.json()
}

fn device<'a>(status: &'a Value, name: &str) -> Option<&'a Value> {
    status["devices"]
        .as_array()?
        .iter()
        .find(|d| d["interface"] == name)
}

fn addresses(host: &Container, link: &str) -> Vec<(Ipv4Addr, u8)> {
    host.ipv4_addresses(link).unwrap_or_default()
}

/// ens32's IPv4 addresses and every IPv4 route, as `ip` prints them.
fn ipv4_config(host: &Container) -> String {
    let ip = |args: &[&str]| text(&host.lab().host(args).stdout);
    ip(&["ip", "-4", "addr", "show", "dev", UPLINK])
        + &ip(&["ip", "-4", "route", "show", "table", "all"])
}

fn link_exists(host: &Container, link: &str) -> bool {
    host.lab()
        .host(["ip", "link", "show", "dev", link])
        .status
        .success()
}

/// `nmcli -g FIELD connection show ID` inside the host.
fn profile_field(host: &Container, id: &str, field: &str) -> String {
    text(
        &host
            .exec(["nmcli", "-g", field, "connection", "show", id])
            .stdout,
    )
}

/// The names of the host's profiles, but `lo`: NetworkManager 1.52 shows
/// the loopback device's in-memory profile too (1.42 does not).
fn profile_names(host: &Container) -> Vec<String> {
    text(
        &host
            .exec(["nmcli", "-g", "NAME", "connection", "show"])
            .stdout,
    )
    .lines()
    .filter(|name| *name != "lo")
    .map(str::to_owned)
    .collect()
}

/// The host as converted: br0 carries the address and the default route,
/// ens32 is its port, the gateway answers through it.
fn assert_converted(host: &Container, when: &str) {
    assert_eq!(addresses(host, "br0"), vec![ME], "{when}: br0's address");
    assert!(addresses(host, UPLINK).is_empty(), "{when}: ens32 has none");
    // After a boot, NetworkManager's D-Bus view of br0 may trail the kernel
    // by a moment; what netbridge itself requires is its own business.
    eventually(Duration::from_secs(5), || {
        device(&status(host), "br0").is_some_and(|d| d["ipv4"]["gateway"] == "172.25.250.254")
    });
    let s = status(host);
    let br0 = device(&s, "br0").unwrap_or_else(|| panic!("{when}: no br0 in {s:#}"));
    assert_eq!(br0["state"], "activated", "{when}: {s:#}");
    assert_eq!(br0["ipv4"]["gateway"], "172.25.250.254", "{when}: {s:#}");
    assert_eq!(br0["bridge"]["ports"][0]["name"], UPLINK, "{when}: {s:#}");
    let ens32 = device(&s, UPLINK).expect("ens32");
    assert_eq!(ens32["controller"], "br0", "{when}: {s:#}");
    let ping = host.exec(["ping", "-c", "1", "-W", "5", "172.25.250.254"]);
    assert!(ping.status.success(), "{when}: the gateway answers");
}

/// The host as before: ens32 runs its own profile with its address, no br0.
fn assert_original(host: &Container, when: &str) {
    assert_eq!(addresses(host, UPLINK), vec![ME], "{when}: ens32's address");
    assert!(!link_exists(host, "br0"), "{when}: br0 is gone");
    let s = status(host);
    let ens32 = device(&s, UPLINK).unwrap_or_else(|| panic!("{when}: no ens32 in {s:#}"));
    assert_eq!(ens32["profile"]["id"], UPLINK, "{when}: {s:#}");
    assert!(device(&s, "br0").is_none(), "{when}: {s:#}");
}

common::on_suites!(convert_survives_a_reboot_and_revert_restores_the_uplink:
    bullseye => Bullseye, trixie => Trixie, sid => Sid);

fn convert_survives_a_reboot_and_revert_restores_the_uplink(suite: Suite) {
    let Some(mut host) = host_on(suite) else {
        return;
    };
    let s = status(&host);
    let version = s["networkmanager"]["version"].as_str().unwrap_or_default();
    let series = format!("{}.", suite.networkmanager());
    assert!(
        version.starts_with(&series),
        "NetworkManager {series}x: {s:#}"
    );

    let original = ipv4_config(&host);
    let run = netbridge(&host, &["convert", UPLINK, "--yes", "--json"]);
    expect_code(&host, &run, 0, "netbridge convert ens32 --yes --json");
    assert_eq!(run.json()["result"], "committed", "{}", run.stdout);
    // The guest-path check's throwaway veth profiles work on every version.
    let guest_path_ok = run.json()["outcome"]["checks"].as_array().is_some_and(|c| {
        c.iter()
            .any(|r| r["kind"] == "guest-path" && r["target"] == "br0" && r["ok"] == true)
    });
    assert!(guest_path_ok, "{}", run.stdout);
    assert_converted(&host, "after convert");
    // Written as the legacy `connection.master`, which 1.46+ reads as `controller`.
    assert_eq!(
        profile_field(&host, "br0-port-ens32", "connection.master"),
        profile_field(&host, "br0", "connection.uuid"),
        "the port profile names its bridge"
    );
    // The trial's bridge skipped the conflict probe (1.46+); the saved
    // profile probes as the uplink's did.
    assert_eq!(
        profile_field(&host, "br0", "ipv4.dad-timeout"),
        profile_field(&host, UPLINK, "ipv4.dad-timeout"),
        "br0 keeps ens32's ipv4.dad-timeout"
    );

    host.expect_address_on("br0");
    host.reboot()
        .unwrap_or_else(|e| panic!("reboot the {suite} host: {e}"));
    assert_converted(&host, "after the reboot");

    let run = netbridge(&host, &["revert", "br0", "--yes", "--json"]);
    expect_code(&host, &run, 0, "netbridge revert br0 --yes --json");
    assert_eq!(run.json()["result"], "committed", "{}", run.stdout);
    assert_original(&host, "after revert");
    // The stand-in held ens32's routes until NetworkManager configured it,
    // and NetworkManager's own replaced them exactly.
    let steps = run.json()["steps"].to_string();
    assert!(
        steps.contains("ens32 held the routes of 172.25.250.10/24 (added"),
        "{steps}"
    );
    assert_eq!(ipv4_config(&host), original, "ens32 configured as before");
    assert_eq!(
        profile_field(&host, UPLINK, "connection.autoconnect"),
        "yes",
        "the original profile autoconnects again"
    );
}

/// The command lines of the host's processes named `name` (no procps in
/// the minimal root: read /proc).
fn command_lines(host: &Container, name: &str) -> Vec<String> {
    let script = format!(
        "for p in /proc/[0-9]*; do \
           [ \"$(cat $p/comm 2>/dev/null)\" = {name} ] && tr '\\0' ' ' < $p/cmdline && echo; \
         done; true"
    );
    text(&host.exec(["sh", "-c", &script]).stdout)
        .lines()
        .map(str::to_owned)
        .collect()
}

/// [`common::CREATE_NAT`] with a DHCP range of its own (NetworkManager
/// 1.46 or newer).
const DHCP_RANGE: [&str; 2] = ["--dhcp-range", "192.168.107.2-192.168.107.9"];
/// The addresses a guest of a network with [`DHCP_RANGE`] may lease, and the ones
/// NetworkManager hands out from itself (`.10` – `.254` of the subnet).
const RANGE: (Ipv4Addr, Ipv4Addr) = (
    Ipv4Addr::new(192, 168, 107, 2),
    Ipv4Addr::new(192, 168, 107, 9),
);
const DEFAULT_RANGE: (Ipv4Addr, Ipv4Addr) = (
    Ipv4Addr::new(192, 168, 107, 10),
    Ipv4Addr::new(192, 168, 107, 254),
);

/// Whether the host's NetworkManager is `major.minor` or newer, as
/// `netbridge status` reads it.
fn networkmanager_at_least(host: &Container, major: u32, minor: u32) -> bool {
    let s = status(host);
    let version = s["networkmanager"]["version"].as_str().unwrap_or_default();
    let mut parts = version.split('.').map(|p| p.parse::<u32>().unwrap_or(0));
    (parts.next().unwrap_or(0), parts.next().unwrap_or(0)) >= (major, minor)
}

common::on_suites!(a_nat_network_leases_its_guest_an_address_and_masquerades_it:
    bullseye => Bullseye, trixie => Trixie, sid => Sid);

/// A NAT network on every NetworkManager: with a DHCP range of its own where
/// NetworkManager has them (1.46, see the refusal below where not), a guest
/// on it gets a lease from NetworkManager's dnsmasq and reaches the LAN's
/// gateway, which has no route back to the guest's subnet, so only through
/// the host's masquerading; `delete` leaves the host as it was.
fn a_nat_network_leases_its_guest_an_address_and_masquerades_it(suite: Suite) {
    let Some(host) = host_on(suite) else {
        return;
    };
    let (own_range, range) = if networkmanager_at_least(&host, 1, 46) {
        (&DHCP_RANGE[..], RANGE)
    } else {
        (&[][..], DEFAULT_RANGE)
    };
    let args = [&common::CREATE_NAT[..], own_range, &["--json"]].concat();
    let run = netbridge(&host, &args);
    let what = format!("netbridge {}", args.join(" "));
    expect_code(&host, &run, 0, &what);
    assert_eq!(run.json()["result"], "committed", "{}", run.stdout);
    assert!(
        eventually(Duration::from_secs(20), || addresses(&host, "virbr1")
            == vec![(Ipv4Addr::new(192, 168, 107, 1), 24)]),
        "virbr1 carries its address: {:?}",
        addresses(&host, "virbr1")
    );
    if range == RANGE {
        // NetworkManager took the property as netbridge wrote it
        // ("first,last") and hands it to the dnsmasq it runs.
        assert_eq!(
            profile_field(&host, "virbr1", "ipv4.shared-dhcp-range"),
            "192.168.107.2,192.168.107.9"
        );
        let dnsmasq = command_lines(&host, "dnsmasq");
        assert!(
            dnsmasq
                .iter()
                .any(|c| c.contains("--dhcp-range=192.168.107.2,192.168.107.9")),
            "NetworkManager's dnsmasq serves the range: {dnsmasq:?}\n{}",
            nm_journal_tail(&host, 40)
        );
    }

    let guest = common::attach(host.lab(), "virbr1", "vnet0");
    let lease: Ipv4Addr = common::dhcp_lease(host.lab(), &guest)
        .parse()
        .expect("an IPv4 lease");
    assert!(
        (range.0..=range.1).contains(&lease),
        "{lease} in {range:?}\n{}",
        nm_journal_tail(&host, 40)
    );
    let no_route_back = host.lab().lan(["ip", "route", "get", &lease.to_string()]);
    assert!(
        !no_route_back.status.success(),
        "the LAN has no route to the guest: {no_route_back:?}"
    );
    assert!(
        common::guest_pings(&guest, "172.25.250.254"),
        "the guest reaches the gateway, masqueraded by the host\n{}",
        nm_journal_tail(&host, 40)
    );
    // The guest's tap goes, as when its VM stops.
    let tap_gone = host.lab().host(["ip", "link", "del", "vnet0"]);
    assert!(tap_gone.status.success(), "{tap_gone:?}");

    let run = netbridge(&host, &["delete", "virbr1", "--json"]);
    expect_code(&host, &run, 0, "netbridge delete virbr1 --json");
    assert_eq!(run.json()["result"], "committed", "{}", run.stdout);
    assert!(
        eventually(Duration::from_secs(10), || !link_exists(&host, "virbr1")),
        "virbr1 is gone"
    );
    assert_eq!(
        profile_names(&host),
        [UPLINK],
        "only the uplink's profile is left"
    );
    assert_eq!(addresses(&host, UPLINK), vec![ME]);
}

common::on_suites!(a_nat_network_networkmanager_cannot_make_is_refused_before_any_change:
    bullseye => Bullseye);

/// NetworkManager 1.30 has no `ipv4.shared-dhcp-range` (1.46), and it
/// masquerades with the iptables program only (nft from 1.32): without it,
/// it would bring the network up unmasqueraded, logging a warning. netbridge
/// says so and changes nothing, rather than creating a network that ignores
/// the range or cannot reach out.
fn a_nat_network_networkmanager_cannot_make_is_refused_before_any_change(suite: Suite) {
    let Some(host) = host_on(suite) else {
        return;
    };
    let refused = |args: &[&str], says: &str| {
        let run = netbridge(&host, args);
        expect_code(&host, &run, 2, &format!("netbridge {}", args.join(" ")));
        let said = format!("{}{}", run.stdout, run.stderr);
        assert!(said.contains(says), "{said}");
        assert!(!link_exists(&host, "virbr1"), "no virbr1");
        assert_eq!(profile_names(&host), [UPLINK], "no profile was added");
        assert_eq!(addresses(&host, UPLINK), vec![ME]);
    };
    let with_range = [&common::CREATE_NAT[..], &DHCP_RANGE, &["--json"]].concat();
    refused(&with_range, "ipv4.shared-dhcp-range needs 1.46 or newer");

    // nft stays: NetworkManager 1.30 would not use it.
    let hide = host.exec(["mv", "/usr/sbin/iptables", "/usr/sbin/iptables.hidden"]);
    assert!(hide.status.success(), "{}", text(&hide.stderr));
    let nft = host.exec(["test", "-x", "/usr/sbin/nft"]);
    assert!(
        nft.status.success(),
        "nft is installed in the Debian 11 root"
    );
    refused(
        &[&common::CREATE_NAT[..], &["--json"]].concat(),
        "masquerades a NAT network with the iptables program, which this host lacks",
    );
}

/// The LAN stops answering ping while it lives; answers again when dropped
/// (also when the test fails).
struct SilentLan<'a>(&'a Lab);

impl<'a> SilentLan<'a> {
    fn start(lab: &'a Lab) -> SilentLan<'a> {
        let out = lab.lan(["sysctl", "-qw", "net.ipv4.icmp_echo_ignore_all=1"]);
        assert!(out.status.success(), "sysctl in the LAN: {out:?}");
        SilentLan(lab)
    }
}

impl Drop for SilentLan<'_> {
    fn drop(&mut self) {
        self.0
            .lan(["sysctl", "-qw", "net.ipv4.icmp_echo_ignore_all=0"]);
    }
}

common::on_suites!(a_check_that_fails_after_the_change_rolls_back:
    bullseye => Bullseye, trixie => Trixie, sid => Sid);

fn a_check_that_fails_after_the_change_rolls_back(suite: Suite) {
    let Some(host) = host_on(suite) else {
        return;
    };
    let args = [
        "netbridge",
        "convert",
        UPLINK,
        "--yes",
        "--check",
        "ping:172.25.250.254",
    ];
    let mut run = Running::spawn(host.command(args).expect("a command in the host"));
    run.wait_for("checkpoint", Duration::from_secs(30));
    // The gateway stops answering ping once the change is under way.
    let silent = SilentLan::start(host.lab());
    let (code, log) = run.finish();
    drop(silent);
    assert_eq!(
        code,
        3,
        "exit 3 = rolled back:\n{log}\n--- NetworkManager:\n{}",
        nm_journal_tail(&host, 60)
    );
    // Rolled back because of the check, not for another reason.
    assert!(log.contains("ping 172.25.250.254 FAILED"), "{log}");
    assert!(log.contains("rolled back"), "{log}");
    assert_original(&host, "after the rollback");
    assert_eq!(
        profile_names(&host),
        [UPLINK],
        "nothing of the trial is left"
    );
    let ping = host.exec(["ping", "-c", "1", "-W", "5", "172.25.250.254"]);
    assert!(ping.status.success(), "the gateway answers again");
}
