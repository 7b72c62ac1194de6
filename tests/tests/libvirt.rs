//! libvirt on the converted bridge, with libvirt's real daemon: a Debian 12
//! host with libvirt-daemon-system (no QEMU, no KVM) booted with
//! systemd-nspawn in a lab namespace. `convert --libvirt-network` defines a
//! bridge-mode network that `virsh net-list` shows active, also after a
//! reboot; `revert` removes it and netbridge's bridge.conf line; bad input
//! is refused before anything changes.
//!
//! The host boots from its own cached root (`rootfs-bookworm-libvirt`), so
//! only these tests pay for the bigger root. Where libvirt is not installed
//! (the plain lab: this machine has neither virsh nor libvirt's sockets) the
//! option is refused.

mod common;

use netbridge_tests::container::{Container, Suite};
use netbridge_tests::lab::{Uplink, STATIC_ADDRESS, UPLINK};
use netbridge_tests::Lab;

/// Another line an administrator keeps in bridge.conf: netbridge must not
/// disturb it.
const BRIDGE_CONF_BEFORE: &str = "# kept by the administrator\nallow virbr0\n";

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).trim().to_owned()
}

fn libvirt_host() -> Option<Container> {
    let host = Container::require_on(Suite::BookwormLibvirt, Uplink::Static)?;
    host.install_netbridge()
        .expect("make install into the host");
    Some(host)
}

fn virsh(host: &Container, args: &[&str]) -> String {
    let mut argv = vec!["virsh", "--quiet", "--connect", "qemu:///system"];
    argv.extend_from_slice(args);
    let out = host.exec(argv);
    assert!(
        out.status.success(),
        "virsh {}: {}",
        args.join(" "),
        text(&out.stderr)
    );
    text(&out.stdout)
}

fn names(list: &str) -> Vec<String> {
    list.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(str::to_owned)
        .collect()
}

fn active_networks(host: &Container) -> Vec<String> {
    names(&virsh(host, &["net-list", "--name"]))
}

fn all_networks(host: &Container) -> Vec<String> {
    names(&virsh(host, &["net-list", "--all", "--name"]))
}

fn netbridge(host: &Container, args: &[&str]) -> (i32, String, String) {
    let mut argv = vec!["netbridge"];
    argv.extend_from_slice(args);
    let out = host.exec(argv);
    (
        out.status.code().unwrap_or(-1),
        text(&out.stdout),
        text(&out.stderr),
    )
}

fn bridge_conf(host: &Container) -> String {
    text(&host.exec(["cat", "/etc/qemu/bridge.conf"]).stdout)
}

#[test]
fn a_libvirt_network_on_the_bridge_is_active_after_a_reboot_and_revert_removes_it() {
    let Some(mut host) = libvirt_host() else {
        return;
    };
    host.write_file("/etc/qemu/bridge.conf", BRIDGE_CONF_BEFORE, 0o644)
        .expect("bridge.conf");
    let networks_before = all_networks(&host);

    let (code, out, err) = netbridge(
        &host,
        &[
            "convert",
            UPLINK,
            "--libvirt-network",
            "host-bridge",
            "--qemu-bridge-helper",
            "--yes",
        ],
    );
    assert_eq!(code, 0, "convert: {out}\n{err}");
    assert!(err.contains("network host-bridge defined on br0"), "{err}");
    assert!(active_networks(&host).contains(&"host-bridge".to_owned()));
    let xml = virsh(&host, &["net-dumpxml", "host-bridge"]);
    assert!(xml.contains("<forward mode='bridge'/>"), "{xml}");
    assert!(xml.contains("<bridge name='br0'/>"), "{xml}");
    let autostart = virsh(&host, &["net-info", "host-bridge"]);
    assert!(
        autostart
            .lines()
            .any(|l| l.starts_with("Autostart:") && l.ends_with("yes")),
        "{autostart}"
    );
    assert_eq!(
        bridge_conf(&host),
        format!("{}\nallow br0", BRIDGE_CONF_BEFORE.trim_end())
    );
    let (code, status, err) = netbridge(&host, &["status", "--json"]);
    assert_eq!(code, 0, "{err}");
    let status = common::document(&status).unwrap_or_else(|e| panic!("status JSON: {e}"));
    let br0 = status["devices"]
        .as_array()
        .and_then(|d| d.iter().find(|d| d["interface"] == "br0"))
        .cloned()
        .unwrap_or_default();
    assert_eq!(br0["libvirt"]["network"]["name"], "host-bridge", "{br0:#}");
    assert_eq!(br0["libvirt"]["network"]["state"], "active", "{br0:#}");
    assert_eq!(br0["libvirt"]["qemu_bridge_helper"], true, "{br0:#}");

    // Idempotent: the same command again changes nothing and succeeds.
    let (code, out, err) = netbridge(
        &host,
        &[
            "convert",
            UPLINK,
            "--libvirt-network",
            "host-bridge",
            "--qemu-bridge-helper",
            "--yes",
        ],
    );
    assert_eq!(code, 0, "re-run: {out}\n{err}");
    assert!(
        bridge_conf(&host).matches("allow br0").count() == 1,
        "{}",
        bridge_conf(&host)
    );

    host.expect_address_on("br0");
    host.reboot().expect("reboot");
    assert_eq!(
        host.ipv4_addresses("br0").unwrap_or_default(),
        vec![(STATIC_ADDRESS, 24)],
        "br0 is back after the reboot"
    );
    assert!(
        active_networks(&host).contains(&"host-bridge".to_owned()),
        "autostarted after the reboot: {:?}\n{}",
        all_networks(&host),
        host.journal("libvirtd")
    );
    let (code, human, err) = netbridge(&host, &["status"]);
    assert_eq!(code, 0, "{err}");
    assert!(
        human.contains("libvirt network host-bridge (active)"),
        "{human}"
    );

    let (code, out, err) = netbridge(&host, &["revert", "br0", "--yes"]);
    assert_eq!(code, 0, "revert: {out}\n{err}");
    assert_eq!(all_networks(&host), networks_before);
    assert_eq!(bridge_conf(&host), BRIDGE_CONF_BEFORE.trim_end());
    assert!(
        err.contains("network host-bridge stopped and undefined"),
        "{err}"
    );
}

#[test]
fn bad_libvirt_input_is_refused_and_changes_nothing() {
    let Some(host) = libvirt_host() else {
        return;
    };
    // A network of that name that a person defined.
    host.write_file(
        "/root/taken.xml",
        "<network><name>taken</name><bridge name='virbr9'/></network>\n",
        0o644,
    )
    .expect("taken.xml");
    virsh(&host, &["net-define", "/root/taken.xml"]);
    let networks_before = all_networks(&host);
    let links_before = text(&host.exec(["ip", "-o", "link", "show"]).stdout);

    let (code, out, err) = netbridge(
        &host,
        &["convert", UPLINK, "--libvirt-network", "taken", "--yes"],
    );
    assert_eq!(code, 2, "{out}\n{err}");
    assert!(
        err.contains("libvirt network taken: the name is already in use"),
        "{err}"
    );
    assert!(err.contains("nothing was changed"), "{err}");

    let (code, out, err) = netbridge(
        &host,
        &["convert", UPLINK, "--libvirt-network", "no/slash", "--yes"],
    );
    assert_eq!(code, 2, "{out}\n{err}");
    assert!(err.contains("is not a libvirt network name"), "{err}");

    assert_eq!(all_networks(&host), networks_before);
    assert_eq!(
        text(&host.exec(["ip", "-o", "link", "show"]).stdout),
        links_before,
        "no bridge was made"
    );
    assert_eq!(
        host.ipv4_addresses(UPLINK).unwrap_or_default(),
        vec![(STATIC_ADDRESS, 24)]
    );
}

#[test]
fn without_libvirt_the_option_is_refused_and_nothing_changes() {
    let Some(lab) = Lab::require(Uplink::Static) else {
        return;
    };
    let before = lab.snapshot();
    for args in [
        &[
            "convert",
            UPLINK,
            "--libvirt-network",
            "host-bridge",
            "--yes",
        ][..],
        &[
            "convert",
            UPLINK,
            "--libvirt-network",
            "host-bridge",
            "--dry-run",
        ][..],
    ] {
        let run = common::netbridge(&lab, args);
        assert_eq!(run.code, 2, "{args:?}: {}", run.stderr);
        assert!(
            run.stderr.contains(
                "libvirt network host-bridge: libvirt is not installed here (no virsh on the PATH)"
            ),
            "{args:?}: {}",
            run.stderr
        );
        assert!(run.stderr.contains("nothing was changed"), "{}", run.stderr);
        assert_eq!(lab.snapshot(), before, "{args:?} changed nothing");
    }
    let run = common::netbridge(&lab, &["convert", UPLINK, "--libvirt-network=-x", "--yes"]);
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(
        run.stderr.contains("is not a libvirt network name"),
        "{}",
        run.stderr
    );
    assert_eq!(lab.snapshot(), before);
}

/// Makes a directory of the container's disk immutable (from the machine:
/// the container has no CAP_LINUX_IMMUTABLE to undo it), and mutable again
/// when dropped, so the lab directory can be removed whatever happens.
struct Immutable(std::path::PathBuf);

impl Immutable {
    fn set(path: std::path::PathBuf) -> Immutable {
        let out = std::process::Command::new("chattr")
            .arg("+i")
            .arg(&path)
            .output()
            .expect("chattr");
        assert!(out.status.success(), "chattr +i: {}", text(&out.stderr));
        Immutable(path)
    }
}

impl Drop for Immutable {
    fn drop(&mut self) {
        let _ = std::process::Command::new("chattr")
            .arg("-i")
            .arg(&self.0)
            .status();
    }
}

#[test]
fn a_failure_after_the_commit_exits_8_keeps_the_bridge_and_a_re_run_finishes_it() {
    let Some(host) = libvirt_host() else {
        return;
    };
    host.write_file("/etc/qemu/.keep", "", 0o644)
        .expect("/etc/qemu");
    let convert = [
        "convert",
        UPLINK,
        "--libvirt-network",
        "lan",
        "--qemu-bridge-helper",
        "--yes",
    ];
    let locked = Immutable::set(host.root().join("etc/qemu"));
    let (code, out, err) = netbridge(&host, &convert);
    assert_eq!(code, 8, "{out}\n{err}");
    assert!(
        err.contains("br0 is converted and committed, but /etc/qemu/bridge.conf: cannot write it"),
        "{err}"
    );
    assert!(err.contains("run the same command again to retry"), "{err}");
    assert_eq!(
        host.ipv4_addresses("br0").unwrap_or_default(),
        vec![(STATIC_ADDRESS, 24)],
        "the conversion stays committed"
    );
    assert!(active_networks(&host).contains(&"lan".to_owned()));

    drop(locked);
    let (code, out, err) = netbridge(&host, &convert);
    assert_eq!(code, 0, "retry: {out}\n{err}");
    assert!(err.contains("already a port of br0"), "{err}");
    assert_eq!(bridge_conf(&host), "allow br0");

    // netbridge's network undefined by hand: the same command defines it again.
    virsh(&host, &["net-destroy", "lan"]);
    virsh(&host, &["net-undefine", "lan"]);
    let (code, out, err) = netbridge(&host, &convert);
    assert_eq!(code, 0, "after net-undefine: {out}\n{err}");
    assert!(err.contains("network lan defined on br0"), "{err}");
    assert!(active_networks(&host).contains(&"lan".to_owned()));

    let (code, out, err) = netbridge(&host, &["revert", "br0", "--yes"]);
    assert_eq!(code, 0, "revert: {out}\n{err}");
    assert!(!all_networks(&host).contains(&"lan".to_owned()));
    assert_eq!(bridge_conf(&host), "");
}

#[test]
fn the_configuration_keys_do_the_same_through_apply() {
    let Some(host) = libvirt_host() else {
        return;
    };
    host.write_file(
        "/etc/netbridge/netbridge.toml",
        "[[bridge]]\nname = \"br0\"\nuplink = \"ens32\"\nlibvirt-network = \"from-config\"\nqemu-bridge-helper = true\n",
        0o644,
    )
    .expect("netbridge.toml");
    let (code, out, err) = netbridge(&host, &["apply", "--json"]);
    assert_eq!(code, 0, "apply: {out}\n{err}");
    let doc = common::document(&out).unwrap_or_else(|e| panic!("apply JSON: {e}"));
    assert_eq!(doc["bridges"][0]["result"], "committed", "{doc:#}");
    assert!(active_networks(&host).contains(&"from-config".to_owned()));
    assert_eq!(bridge_conf(&host), "allow br0");

    // Unchanged the second time, and the network stays as it is.
    let (code, out, err) = netbridge(&host, &["apply", "--json"]);
    assert_eq!(code, 0, "apply again: {out}\n{err}");
    let doc = common::document(&out).unwrap_or_else(|e| panic!("apply JSON: {e}"));
    assert_eq!(doc["bridges"][0]["result"], "unchanged", "{doc:#}");
    assert_eq!(bridge_conf(&host), "allow br0");

    let (code, out, err) = netbridge(&host, &["revert", "br0", "--yes"]);
    assert_eq!(code, 0, "revert: {out}\n{err}");
    assert!(!all_networks(&host).contains(&"from-config".to_owned()));
    assert_eq!(bridge_conf(&host), "");
}

#[test]
fn the_agent_under_its_hardened_unit_defines_the_network_and_allows_the_bridge() {
    let Some(mut host) = libvirt_host() else {
        return;
    };
    // QEMU's package would have made it; the unit may write only there.
    host.write_file("/etc/qemu/bridge.conf", BRIDGE_CONF_BEFORE, 0o644)
        .expect("bridge.conf");
    host.write_file(
        "/etc/netbridge/netbridge.toml",
        "[[bridge]]\nname = \"br0\"\nuplink = \"default-route\"\nlibvirt-network = \"agent-net\"\nqemu-bridge-helper = true\n",
        0o644,
    )
    .expect("netbridge.toml");
    let enable = host.systemctl(["enable", "--now", "netbridge-agent"]);
    assert!(
        enable.status.success(),
        "enable --now: {}\n{}",
        text(&enable.stderr),
        host.journal("netbridge-agent")
    );
    let (code, status, err) = netbridge(&host, &["status", "--json"]);
    assert_eq!(code, 0, "{err}");
    let status = common::document(&status).unwrap_or_else(|e| panic!("status JSON: {e}"));
    assert_eq!(
        status["configured"]["br0"]["result"],
        "committed",
        "{:#}\n{}",
        status["configured"],
        host.journal("netbridge-agent")
    );
    assert!(active_networks(&host).contains(&"agent-net".to_owned()));
    assert_eq!(
        bridge_conf(&host),
        format!("{}\nallow br0", BRIDGE_CONF_BEFORE.trim_end())
    );

    host.expect_address_on("br0");
    host.reboot().expect("reboot");
    assert!(
        active_networks(&host).contains(&"agent-net".to_owned()),
        "{}",
        host.journal("netbridge-agent")
    );
    let (code, status, err) = netbridge(&host, &["status", "--json"]);
    assert_eq!(code, 0, "{err}");
    let status = common::document(&status).unwrap_or_else(|e| panic!("status JSON: {e}"));
    assert_eq!(
        status["configured"]["br0"]["result"],
        "unchanged",
        "{:#}\n{}",
        status["configured"],
        host.journal("netbridge-agent")
    );
}

#[test]
fn revert_leaves_a_network_that_is_no_longer_netbridges() {
    let Some(host) = libvirt_host() else {
        return;
    };
    let (code, out, err) = netbridge(
        &host,
        &[
            "convert",
            UPLINK,
            "--libvirt-network",
            "mine",
            "--yes",
            "--json",
        ],
    );
    assert_eq!(code, 0, "{out}\n{err}");
    let doc = common::document(&out).unwrap_or_else(|e| panic!("convert JSON: {e}"));
    assert_eq!(doc["libvirt"]["network"]["name"], "mine", "{doc:#}");
    let uuid = doc["libvirt"]["network"]["uuid"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert_eq!(virsh(&host, &["net-uuid", "mine"]), uuid);

    // A person replaces it with a network of their own under the same name.
    virsh(&host, &["net-destroy", "mine"]);
    virsh(&host, &["net-undefine", "mine"]);
    host.write_file(
        "/root/mine.xml",
        "<network><name>mine</name><forward mode='bridge'/><bridge name='br0'/></network>\n",
        0o644,
    )
    .expect("mine.xml");
    virsh(&host, &["net-define", "/root/mine.xml"]);
    let theirs = virsh(&host, &["net-uuid", "mine"]);
    assert_ne!(theirs, uuid);

    let (code, plan, err) = netbridge(&host, &["revert", "br0", "--dry-run"]);
    assert_eq!(code, 0, "{err}");
    assert!(plan.contains("libvirt   network mine"), "{plan}");
    let (code, out, err) = netbridge(&host, &["revert", "br0", "--yes"]);
    assert_eq!(code, 0, "revert: {out}\n{err}");
    assert!(err.contains("network mine was redefined since"), "{err}");
    assert_eq!(
        virsh(&host, &["net-uuid", "mine"]),
        theirs,
        "their network stays"
    );
}
