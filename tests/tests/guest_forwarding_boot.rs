//! `--guest-forwarding allow` across a reboot, on a whole booted host: a
//! Debian 13 (trixie, which ships nftables) host under systemd-nspawn whose
//! firewall is loaded at boot by `nftables.service` from /etc/nftables.conf
//! — Docker-like (forward policy drop, a DOCKER-USER chain), and starting
//! with `flush ruleset`, so a boot gives a ruleset without netbridge's rule.
//! `netbridge-guest-forwarding.service`, installed by `make install` and
//! enabled, must put it back, so a guest on br0 still reaches the gateway.

mod common;

use std::time::Duration;

use common::eventually;
use netbridge_tests::container::{Container, Suite};
use netbridge_tests::lab::Uplink;

const NFTABLES_CONF: &str = "#!/usr/sbin/nft -f
flush ruleset

table ip filter {
\tchain DOCKER-USER {
\t\treturn
\t}

\tchain forward {
\t\ttype filter hook forward priority filter; policy drop;
\t\tjump DOCKER-USER
\t}
}
";

const RULE: &str =
    "iifname \"br0\" oifname \"br0\" accept comment \"netbridge-guest-forwarding:br0\"";

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).trim().to_owned()
}

fn ruleset(host: &Container) -> String {
    let out = host.exec(["nft", "--stateless", "list", "ruleset"]);
    assert!(out.status.success(), "nft: {}", text(&out.stderr));
    text(&out.stdout)
}

/// A VM stand-in on br0, new after each boot (a reboot drops the links):
/// whether it pings the gateway within `within`.
fn guest_pings(host: &Container, tap: &str, within: Duration) -> bool {
    let lab = host.lab();
    let guest = lab.add_guest(tap);
    for args in [
        vec!["ip", "link", "set", tap, "master", "br0"],
        vec!["ip", "link", "set", tap, "up"],
    ] {
        assert!(lab.host(&args).status.success(), "{args:?}");
    }
    let addr = guest.exec(["ip", "addr", "add", "172.25.250.50/24", "dev", "eth0"]);
    assert!(addr.status.success(), "{addr:?}");
    eventually(within, || {
        guest
            .exec(["ping", "-c", "1", "-W", "1", "172.25.250.254"])
            .status
            .success()
    })
}

#[test]
fn the_rule_comes_back_after_a_reboot_through_the_unit() {
    let Some(mut host) = Container::require_on(Suite::Trixie, Uplink::Static) else {
        return;
    };
    host.install_netbridge()
        .expect("make install into the trixie host");
    host.write_file("/etc/nftables.conf", NFTABLES_CONF, 0o755)
        .expect("write nftables.conf");
    for args in [
        vec!["enable", "--now", "nftables"],
        vec!["enable", "netbridge-guest-forwarding"],
    ] {
        let out = host.systemctl(&args);
        assert!(
            out.status.success(),
            "systemctl {args:?}: {}",
            text(&out.stderr)
        );
    }
    let before = ruleset(&host);
    assert!(!before.contains("netbridge"), "{before}");

    let run = host.exec([
        "netbridge",
        "convert",
        "ens32",
        "--yes",
        "--guest-forwarding",
        "allow",
    ]);
    assert!(
        run.status.success(),
        "{}\n{}",
        text(&run.stdout),
        text(&run.stderr)
    );
    let log = text(&run.stderr);
    assert!(log.contains("guest-path br0 ok"), "{log}");
    assert_eq!(ruleset(&host).matches(RULE).count(), 1);
    assert!(guest_pings(&host, "vm0", Duration::from_secs(10)));

    host.expect_address_on("br0");
    host.reboot().expect("reboot the host");
    let unit = "netbridge-guest-forwarding";
    let active = || text(&host.systemctl(["is-active", unit]).stdout) == "active";
    assert!(
        eventually(Duration::from_secs(30), active),
        "{}",
        host.journal(unit)
    );
    // Not a leftover of the first boot: nftables.service flushed the
    // ruleset, and the unit (enabled, not run before) added the rule again.
    let nftables = text(&host.systemctl(["is-active", "nftables"]).stdout);
    assert_eq!(nftables, "active", "{}", host.journal("nftables"));
    let journal = host.journal(unit);
    assert!(
        journal.contains("forwarding between br0's ports accepted in ip filter forward (nftables)"),
        "{journal}"
    );
    let after = ruleset(&host);
    assert_eq!(
        after.matches(RULE).count(),
        1,
        "nftables.service flushed and reloaded, the unit added the rule once:\n{after}\n{}",
        host.journal(unit)
    );
    assert!(
        guest_pings(&host, "vm1", Duration::from_secs(10)),
        "a guest reaches the gateway after the reboot"
    );

    // revert takes the rule back; the unit then keeps it away.
    let run = host.exec(["netbridge", "revert", "br0", "--yes"]);
    assert!(run.status.success(), "{}", text(&run.stderr));
    assert_eq!(
        ruleset(&host),
        before,
        "the ruleset as nftables.conf made it"
    );
    let restart = host.systemctl(["restart", unit]);
    assert!(restart.status.success(), "{}", host.journal(unit));
    assert_eq!(ruleset(&host), before);
}

#[test]
fn the_agent_converts_at_boot_through_the_rule_its_configuration_allows() {
    let Some(mut host) = Container::require_on(Suite::Trixie, Uplink::Static) else {
        return;
    };
    host.install_netbridge()
        .expect("make install into the trixie host");
    host.write_file("/etc/nftables.conf", NFTABLES_CONF, 0o755)
        .expect("write nftables.conf");
    host.write_file(
        "/etc/netbridge/netbridge.toml",
        "[[bridge]]\nname = \"br0\"\nuplink = \"ens32\"\nguest-forwarding = \"allow\"\n",
        0o644,
    )
    .expect("write the configuration");
    let enable = host.systemctl([
        "enable",
        "nftables",
        "netbridge-guest-forwarding",
        "netbridge-agent",
    ]);
    assert!(enable.status.success(), "{}", text(&enable.stderr));

    // At boot: the ruleset, then the rule (before the agent), then the
    // agent's conversion, whose guest-path check crosses the firewall.
    host.expect_address_on("br0");
    host.reboot().expect("reboot the host");
    let agent = host.journal("netbridge-agent");
    assert!(agent.contains("guest-path br0 ok"), "{agent}");
    assert!(agent.contains("committed"), "{agent}");
    assert_eq!(ruleset(&host).matches(RULE).count(), 1);
    assert!(guest_pings(&host, "vm0", Duration::from_secs(10)));
}

/// A stand-in for docker.service: at each start it deletes and re-creates
/// its chains, as dockerd does, without netbridge's rule.
const DOCKER_UNIT: &str = "[Unit]
Description=Docker stand-in: re-creates its chains at start, as dockerd does

[Service]
Type=oneshot
RemainAfterExit=yes
ExecStart=/usr/sbin/nft -f /etc/docker-like.nft

[Install]
WantedBy=multi-user.target
";

const DOCKER_CHAINS: &str = "table ip filter
delete table ip filter
table ip filter {
\tchain DOCKER-USER {
\t\treturn
\t}

\tchain forward {
\t\ttype filter hook forward priority filter; policy drop;
\t\tjump DOCKER-USER
\t}
}
";

#[test]
fn docker_starting_again_brings_the_unit_and_the_rule_back() {
    let Some(host) = Container::require_on(Suite::Trixie, Uplink::Static) else {
        return;
    };
    host.install_netbridge()
        .expect("make install into the trixie host");
    host.write_file("/etc/systemd/system/docker.service", DOCKER_UNIT, 0o644)
        .expect("write docker.service");
    host.write_file("/etc/docker-like.nft", DOCKER_CHAINS, 0o644)
        .expect("write docker's chains");
    let unit = "netbridge-guest-forwarding";
    for args in [
        vec!["daemon-reload"],
        vec!["enable", "--now", "docker"],
        vec!["enable", "--now", unit],
    ] {
        let out = host.systemctl(&args);
        assert!(
            out.status.success(),
            "systemctl {args:?}: {}",
            text(&out.stderr)
        );
    }
    let run = host.exec([
        "netbridge",
        "convert",
        "ens32",
        "--yes",
        "--guest-forwarding",
        "allow",
    ]);
    assert!(run.status.success(), "{}", text(&run.stderr));
    assert_eq!(ruleset(&host).matches(RULE).count(), 1);
    assert!(guest_pings(&host, "vm0", Duration::from_secs(10)));

    // `systemctl restart docker`: PartOf= restarts the unit after it.
    // `stop` then `start`: WantedBy=docker.service starts it again.
    for actions in [vec!["restart"], vec!["stop", "start"]] {
        for action in &actions {
            let out = host.systemctl([*action, "docker"]);
            assert!(out.status.success(), "{action}: {}", text(&out.stderr));
        }
        // systemctl returns with Docker's job done; the unit's follows.
        let back = || ruleset(&host).matches(RULE).count() == 1;
        assert!(
            eventually(Duration::from_secs(10), back),
            "after {actions:?}:\n{}\n{}",
            ruleset(&host),
            host.journal(unit)
        );
        let active = text(&host.systemctl(["is-active", unit]).stdout);
        assert_eq!(active, "active", "{}", host.journal(unit));
    }
    let journal = host.journal(unit);
    assert_eq!(
        journal
            .matches("forwarding between br0's ports accepted in ip filter forward (nftables)")
            .count(),
        2,
        "the unit put the rule back after each start of Docker:\n{journal}"
    );
    assert!(guest_pings(&host, "vm1", Duration::from_secs(10)));
}
