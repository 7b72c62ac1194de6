//! The path guests use: after a conversion a guest on br0 reaches the
//! gateway; the `guest-path` check proves it before the commit, rolls back
//! when the host firewall drops bridged traffic (Docker's `FORWARD DROP`
//! with bridge netfilter on, made with iptables-nft and with native
//! nftables, in the lab host's own namespace), and leaves nothing behind;
//! `status` diagnoses the firewall before any bridge exists.

mod common;

use std::process::{Child, Stdio};
use std::time::Duration;

use common::{eventually, netbridge, signal, status, Running};
use netbridge_tests::{Lab, Uplink};
use nix::sys::signal::Signal;
use serde_json::Value;

/// Counts frames on the LAN side that the check must never send there: its
/// TEST-NET addresses (192.0.2.x) or its payload. Prints the count at the end.
const LAN_WATCH: &str = r#"
import socket, sys, time
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(3))
s.bind(("lan0", 0))
s.settimeout(0.05)
print("watching", flush=True)
end = time.time() + float(sys.argv[1])
seen = 0
while time.time() < end:
    try:
        frame = s.recv(4096)
    except socket.timeout:
        continue
    if b"netbridge guest-path" in frame or (frame[12:14] == b"\x08\x00" and b"\xc0\x00\x02" in (frame[26:29], frame[30:33])):
        seen += 1
print("leaked", seen, flush=True)
"#;

/// What the check could leave behind beyond the host snapshot: the lab's
/// namespaces (and any throwaway one), the neighbour table, the ruleset.
#[derive(Debug, PartialEq, Eq)]
struct Traces {
    namespaces: Vec<String>,
    neighbours: Vec<String>,
    nft: String,
    iptables: String,
}

fn text(out: &std::process::Output) -> String {
    assert!(out.status.success(), "{out:?}");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn traces(lab: &Lab) -> Traces {
    let prefix = lab.host_ns().trim_end_matches("-h").to_owned();
    let listed = std::process::Command::new("ip")
        .args(["netns", "list"])
        .output()
        .expect("ip netns list");
    let mut namespaces: Vec<String> = text(&listed)
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|n| n.starts_with(&prefix) || n.contains("nbg"))
        .map(str::to_owned)
        .collect();
    namespaces.sort();
    // Entries without their state (REACHABLE, STALE, … change on their own).
    let mut neighbours: Vec<String> = text(&lab.host(["ip", "neigh", "show"]))
        .lines()
        .map(|l| {
            l.split_whitespace()
                .filter(|w| !w.chars().all(|c| c.is_ascii_uppercase()))
                .collect::<Vec<_>>()
                .join(" ")
        })
        .collect();
    neighbours.sort();
    let iptables = text(&lab.host(["iptables-save"]))
        .lines()
        .filter(|l| !l.starts_with('#'))
        .map(|l| l.split(" [").next().unwrap_or(l))
        .collect::<Vec<_>>()
        .join("\n");
    Traces {
        namespaces,
        neighbours,
        // Stateless: the counters count the check's frames, as they count any.
        nft: text(&lab.host(["nft", "--stateless", "list", "ruleset"])),
        iptables,
    }
}

/// Nothing of the check is left: no throwaway link, namespace or neighbour.
fn assert_no_throwaway(lab: &Lab, t: &Traces) {
    let links = lab.snapshot().links;
    assert!(
        links.keys().all(|l| !l.starts_with("nbg-")),
        "throwaway links left: {links:?}"
    );
    assert!(t.namespaces.iter().all(|n| !n.contains("nbg")), "{t:?}");
    assert!(
        t.neighbours
            .iter()
            .all(|n| !n.contains("192.0.2.") && !n.contains("nbg-")),
        "{t:?}"
    );
}

fn watch_lan(lab: &Lab, seconds: u32) -> Child {
    let mut child = lab
        .lan_command(["python3", "-c", LAN_WATCH, &seconds.to_string()])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start the LAN watcher");
    let mut first = [0u8; 9];
    let out = child.stdout.as_mut().expect("piped stdout");
    std::io::Read::read_exact(out, &mut first).expect("the watcher starts");
    child
}

fn leaked(child: Child) -> String {
    let out = child.wait_with_output().expect("the LAN watcher ends");
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

fn guest_path_result(doc: &Value) -> Value {
    doc["outcome"]["checks"]
        .as_array()
        .and_then(|c| c.iter().find(|r| r["kind"] == "guest-path"))
        .cloned()
        .unwrap_or(Value::Null)
}

/// Docker's FORWARD policy and chains, made as Docker makes them (iptables,
/// which is iptables-nft on Debian 12).
fn docker_like_iptables(lab: &Lab) {
    for args in [
        vec!["iptables", "-N", "DOCKER-USER"],
        vec!["iptables", "-N", "DOCKER-FORWARD"],
        vec!["iptables", "-A", "DOCKER-USER", "-j", "RETURN"],
        vec!["iptables", "-P", "FORWARD", "DROP"],
        vec!["iptables", "-A", "FORWARD", "-j", "DOCKER-USER"],
        vec!["iptables", "-A", "FORWARD", "-j", "DOCKER-FORWARD"],
    ] {
        let out = lab.host(&args);
        assert!(out.status.success(), "{args:?}: {out:?}");
    }
}

/// Docker's chains for IPv4 and IPv6 (Docker with IPv6 enabled), both
/// iptables-nft.
fn docker_like_dual_stack(lab: &Lab) {
    docker_like_iptables(lab);
    for args in [
        vec!["ip6tables", "-N", "DOCKER-USER"],
        vec!["ip6tables", "-A", "DOCKER-USER", "-j", "RETURN"],
        vec!["ip6tables", "-P", "FORWARD", "DROP"],
        vec!["ip6tables", "-A", "FORWARD", "-j", "DOCKER-USER"],
    ] {
        let out = lab.host(&args);
        assert!(out.status.success(), "{args:?}: {out:?}");
    }
}

/// The same with native nftables.
fn docker_like_nftables(lab: &Lab) {
    let ruleset = "add table ip filter\n\
        add chain ip filter DOCKER-USER\n\
        add rule ip filter DOCKER-USER return\n\
        add chain ip filter forward { type filter hook forward priority 0; policy drop; }\n\
        add rule ip filter forward jump DOCKER-USER\n";
    let path = lab.dir().join("docker-like.nft");
    std::fs::write(&path, ruleset).expect("write the ruleset");
    let out = lab.host(["nft", "-f", &path.display().to_string()]);
    assert!(out.status.success(), "{out:?}");
}

#[test]
fn after_a_conversion_a_guest_reaches_the_gateway_and_the_check_left_nothing() {
    let Some(lab) = Lab::require(Uplink::Static) else {
        return;
    };
    let before = traces(&lab);
    let watcher = watch_lan(&lab, 4);
    let run = netbridge(&lab, &["convert", "ens32", "--yes", "--json"]);
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
    let doc = run.json();
    let check = guest_path_result(&doc);
    assert_eq!(check["target"], "br0", "{doc:#}");
    assert_eq!(check["ok"], true, "{check}");
    eprintln!("guest-path check: {} ms ({})", check["ms"], check["detail"]);
    assert_eq!(doc["guest_path"]["verdict"], "open", "{doc:#}");
    assert_eq!(
        leaked(watcher),
        "leaked 0",
        "nothing of the check reached the LAN"
    );

    let after = traces(&lab);
    assert_no_throwaway(&lab, &after);
    assert_eq!(after.namespaces, before.namespaces);
    assert_eq!(after.nft, before.nft, "ruleset untouched");
    assert_eq!(after.iptables, before.iptables);

    // A VM stand-in on br0.
    let guest = lab.add_guest("vm0");
    for args in [
        vec!["ip", "link", "set", "vm0", "master", "br0"],
        vec!["ip", "link", "set", "vm0", "up"],
    ] {
        assert!(lab.host(&args).status.success(), "{args:?}");
    }
    let addr = guest.exec(["ip", "addr", "add", "172.25.250.50/24", "dev", "eth0"]);
    assert!(addr.status.success(), "{addr:?}");
    assert!(
        eventually(Duration::from_secs(10), || guest
            .exec(["ping", "-c", "1", "-W", "1", "172.25.250.254"])
            .status
            .success()),
        "the guest pings the gateway through br0"
    );

    // Only a conversion makes a bridge for the check to test.
    let revert = netbridge(&lab, &["revert", "br0", "--yes", "--check", "guest-path"]);
    assert_eq!(revert.code, 2, "{}", revert.stderr);
    assert!(
        revert.stderr.contains("only convert and apply run it"),
        "{}",
        revert.stderr
    );
}

fn rolls_back_naming_the_firewall(lab: &Lab, names: &[&str]) {
    // The gateway's neighbour entry exists before, as it does on a live host.
    assert!(common::ping_gateway(lab));
    let before = lab.snapshot();
    let traces_before = traces(lab);
    let watcher = watch_lan(lab, 8);
    let run = netbridge(lab, &["convert", "ens32", "--yes"]);
    assert_eq!(run.code, 3, "exit 3 = rolled back:\n{}", run.stderr);
    for needle in [
        "warning      guests on br0 would be dropped by the host firewall",
        "guests on br0 are dropped by the host firewall: FORWARD policy drop with bridge netfilter on (Docker's chains present)",
        "--no-guest-check",
        "rolled back",
    ]
    .iter()
    .chain(names)
    {
        assert!(run.stderr.contains(needle), "says {needle:?}:\n{}", run.stderr);
    }
    assert_eq!(
        leaked(watcher),
        "leaked 0",
        "nothing of the check reached the LAN"
    );
    assert_eq!(lab.snapshot(), before, "the host is exactly as before");
    let after = traces(lab);
    assert_no_throwaway(lab, &after);
    assert_eq!(
        after, traces_before,
        "namespaces, neighbours and ruleset as before"
    );
    assert!(common::ping_gateway(lab));
}

#[test]
fn a_docker_like_iptables_firewall_rolls_back_naming_it() {
    let Some(lab) = Lab::require(Uplink::Static) else {
        return;
    };
    docker_like_iptables(&lab);
    rolls_back_naming_the_firewall(
        &lab,
        &[
            "ip filter FORWARD (iptables-nft)",
            "`iptables -I DOCKER-USER -i br0 -o br0 -j ACCEPT`",
        ],
    );
    // Leaving the check out converts anyway (the guests stay cut off), and
    // without --guest-forwarding allow the firewall is left as it is.
    let rules = traces(&lab);
    let run = netbridge(&lab, &["convert", "ens32", "--yes", "--no-guest-check"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(
        !run.stderr.contains("check        guest-path"),
        "{}",
        run.stderr
    );
    assert!(!run.stderr.contains("  firewall     "), "{}", run.stderr);
    let after = traces(&lab);
    assert_eq!((after.nft, after.iptables), (rules.nft, rules.iptables));
}

#[test]
fn a_docker_like_nftables_firewall_rolls_back_naming_it() {
    let Some(lab) = Lab::require(Uplink::Static) else {
        return;
    };
    docker_like_nftables(&lab);
    rolls_back_naming_the_firewall(
        &lab,
        &[
            "ip filter forward (nftables)",
            "`nft insert rule ip filter forward iifname \"br0\" oifname \"br0\" accept`",
        ],
    );
    // The way out the message names works.
    let accept = lab.host([
        "nft", "insert", "rule", "ip", "filter", "forward", "iifname", "br0", "oifname", "br0",
        "accept",
    ]);
    assert!(accept.status.success(), "{accept:?}");
    let run = netbridge(&lab, &["convert", "ens32", "--yes"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(
        run.stderr.contains("check        guest-path br0 ok"),
        "{}",
        run.stderr
    );
}

#[test]
fn netbridge_killed_during_the_check_leaves_no_throwaway_port() {
    let Some(lab) = Lab::require(Uplink::Static) else {
        return;
    };
    docker_like_iptables(&lab);
    let before = lab.snapshot();
    let mut run = Running::start(
        &lab,
        &["convert", "ens32", "--yes", "--rollback-timeout", "5"],
    );
    // The frame never crosses, so the check waits out its deadline.
    run.wait_for("verified", Duration::from_secs(20));
    assert!(
        eventually(Duration::from_secs(5), || lab
            .snapshot()
            .links
            .contains_key(&format!("nbg-{}-bp", run.pid()))),
        "the throwaway ports exist"
    );
    signal(run.pid(), Signal::SIGKILL);
    let (code, _) = run.finish();
    assert_eq!(code, -1, "killed");
    // NetworkManager's checkpoint deletes what was created after it, the
    // throwaway profiles included; the next run closes the journal. When the
    // timer restores the uplink before it has removed the throwaway ports,
    // NetworkManager gives the uplink's routes a higher metric (one reserved
    // per Ethernet-like device): everything else is exactly as before.
    let without_metrics = |mut snap: netbridge_tests::HostSnapshot| {
        for route in &mut snap.routes {
            route.metric = None;
        }
        snap
    };
    let expected = without_metrics(before.clone());
    assert!(
        eventually(Duration::from_secs(20), || without_metrics(lab.snapshot())
            == expected),
        "restored: {:#?}\nvs {before:#?}",
        lab.snapshot()
    );
    let recover = netbridge(&lab, &["recover", "--json"]);
    assert_eq!(recover.code, 0, "{}", recover.stderr);
    assert_eq!(without_metrics(lab.snapshot()), expected);
    assert_no_throwaway(&lab, &traces(&lab));
}

#[test]
fn status_diagnoses_the_firewall_before_any_bridge_exists() {
    let Some(lab) = Lab::require(Uplink::Static) else {
        return;
    };
    let open = status(&lab)["guest_path"].clone();
    assert_eq!(open["verdict"], "open", "{open:#}");
    assert_eq!(open["bridge_nf_call_iptables"], true, "{open:#}");
    assert_eq!(open["forward"], serde_json::json!([]));
    assert_eq!(open["unknown"], serde_json::json!([]));

    docker_like_iptables(&lab);
    let drops = status(&lab)["guest_path"].clone();
    assert_eq!(drops["verdict"], "drops", "{drops:#}");
    assert_eq!(
        drops["docker_chains"],
        serde_json::json!(["DOCKER-USER", "DOCKER-FORWARD"])
    );
    assert_eq!(drops["forward"][0]["policy"], "drop");
    assert_eq!(drops["forward"][0]["source"], "iptables-nft");
    let human = netbridge(&lab, &["status"]);
    assert!(
        human
            .stdout
            .contains("guests on a bridge are dropped unless a rule accepts them"),
        "{}",
        human.stdout
    );

    // Bridge netfilter off: the drop policy no longer sees bridged frames.
    let off = lab.host(["sysctl", "-qw", "net.bridge.bridge-nf-call-iptables=0"]);
    assert!(off.status.success(), "{off:?}");
    let passes = status(&lab)["guest_path"].clone();
    assert_eq!(passes["bridge_nf_call_iptables"], false);
    assert_ne!(passes["verdict"], "drops", "{passes:#}");
}

#[test]
fn netbridge_stopped_during_the_check_rolls_back_exactly() {
    let Some(lab) = Lab::require(Uplink::Static) else {
        return;
    };
    docker_like_iptables(&lab);
    assert!(common::ping_gateway(&lab));
    let (before, traces_before) = (lab.snapshot(), traces(&lab));
    let mut run = Running::start(&lab, &["convert", "ens32", "--yes"]);
    run.wait_for("verified", Duration::from_secs(20));
    let port = format!("nbg-{}-bp", run.pid());
    assert!(
        eventually(Duration::from_secs(5), || lab
            .snapshot()
            .links
            .contains_key(&port)),
        "the throwaway ports exist"
    );
    signal(run.pid(), Signal::SIGTERM);
    let (code, log) = run.finish();
    assert_eq!(code, 3, "rolled back:\n{log}");
    assert!(log.contains("interrupted by SIGTERM"), "{log}");
    assert!(
        log.contains("throwaway port of an interrupted guest-path check, removed"),
        "{log}"
    );
    assert_eq!(lab.snapshot(), before, "the host is exactly as before");
    let after = traces(&lab);
    assert_no_throwaway(&lab, &after);
    assert_eq!(after, traces_before);
}

#[test]
fn apply_runs_the_check_by_default_and_guest_check_false_leaves_it_out() {
    let Some(lab) = Lab::require(Uplink::Static) else {
        return;
    };
    docker_like_iptables(&lab);
    assert!(common::ping_gateway(&lab));
    let before = lab.snapshot();
    let dir = lab.dir().join("etc-netbridge");
    std::fs::create_dir_all(&dir).expect("config dir");
    let config = dir.join("netbridge.toml");
    let write = |text: &str| std::fs::write(&config, text).expect("write config");
    let config_arg = config.display().to_string();

    write("[[bridge]]\nname = \"br0\"\nuplink = \"ens32\"\n");
    let run = netbridge(&lab, &["apply", "--config", &config_arg, "--json"]);
    assert_eq!(run.code, 3, "{}\n{}", run.stdout, run.stderr);
    let doc = run.json();
    let reason = doc["bridges"][0]["reason"].as_str().unwrap_or_default();
    assert!(
        reason.contains("guests on br0 are dropped by the host firewall"),
        "{doc:#}"
    );
    assert_eq!(lab.snapshot(), before, "rolled back exactly");

    write("[[bridge]]\nname = \"br0\"\nuplink = \"ens32\"\nguest-check = false\n");
    let run = netbridge(&lab, &["apply", "--config", &config_arg, "--json"]);
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
    assert!(!run.stdout.contains("guest-path br0"), "{}", run.stdout);
}

/// A VM stand-in on br0 (its tap `tap`, 172.25.250.`host`/24): whether it
/// pings the gateway within `within`.
fn guest_reaches_gateway(
    lab: &Lab,
    guest: &netbridge_tests::Guest,
    host: u8,
    within: Duration,
) -> bool {
    let tap = guest.host_link();
    for args in [
        vec!["ip", "link", "set", tap, "master", "br0"],
        vec!["ip", "link", "set", tap, "up"],
    ] {
        assert!(lab.host(&args).status.success(), "{args:?}");
    }
    let address = format!("172.25.250.{host}/24");
    // Already there on a second call.
    let _ = guest.exec(["ip", "addr", "add", &address, "dev", "eth0"]);
    eventually(within, || {
        guest
            .exec(["ping", "-c", "1", "-W", "1", "172.25.250.254"])
            .status
            .success()
    })
}

/// The persistence hook, run as the system runs it (no configuration here:
/// the lab's own, empty).
fn sync_hook(lab: &Lab) -> Value {
    let config = lab.dir().join("no-config.toml").display().to_string();
    let run = netbridge(lab, &["guest-forwarding", "--config", &config, "--json"]);
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
    run.json()
}

/// `convert --guest-forwarding allow` commits past the Docker-like firewall
/// and the guest works; the hook is idempotent and puts the rule back after
/// the chains are re-created; `revert` leaves the ruleset exactly as before.
fn allow_survives_and_revert_restores(
    lab: &Lab,
    firewall: fn(&Lab),
    recreate: &[&[&str]],
    accepted_in: &str,
    rule: &str,
) {
    firewall(lab);
    let before = traces(lab);
    let dry = netbridge(
        lab,
        &[
            "convert",
            "ens32",
            "--dry-run",
            "--guest-forwarding",
            "allow",
        ],
    );
    assert_eq!(dry.code, 0, "{}", dry.stderr);
    let would = format!(
        "--guest-forwarding allow would accept forwarding between br0's ports in {accepted_in}"
    );
    assert!(dry.stderr.contains(&would), "{}", dry.stderr);
    let dried = traces(lab);
    assert_eq!(
        (dried.nft, dried.iptables),
        (before.nft.clone(), before.iptables.clone()),
        "a dry run changes nothing"
    );
    let run = netbridge(
        lab,
        &["convert", "ens32", "--yes", "--guest-forwarding", "allow"],
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
    for needle in [
        format!("firewall     forwarding between br0's ports accepted in {accepted_in}"),
        "check        guest-path br0 ok".to_owned(),
    ] {
        assert!(
            run.stderr.contains(&needle),
            "says {needle:?}:\n{}",
            run.stderr
        );
    }
    let with_rule = traces(lab);
    let ruleset = format!("{}\n{}", with_rule.nft, with_rule.iptables);
    assert_eq!(
        ruleset.matches(rule).count(),
        1,
        "{rule:?} once in:\n{ruleset}"
    );
    // IPv6 bridged traffic crosses ip6tables' chains (the iptables case
    // has them): the rule is there too.
    if rule.starts_with("-A ") {
        let v6 = String::from_utf8_lossy(&lab.host(["ip6tables-save"]).stdout).into_owned();
        assert!(
            run.stderr
                .contains("accepted in ip6 filter DOCKER-USER (iptables-nft)"),
            "{}",
            run.stderr
        );
        assert_eq!(v6.matches(rule).count(), 1, "{v6}");
    }
    let guest = lab.add_guest("vm0");
    assert!(
        guest_reaches_gateway(lab, &guest, 50, Duration::from_secs(10)),
        "the guest pings the gateway through br0 and the firewall"
    );

    // Converting again is a no-op, for the firewall too.
    let again = netbridge(
        lab,
        &["convert", "ens32", "--yes", "--guest-forwarding", "allow"],
    );
    assert_eq!(again.code, 0, "{}", again.stderr);
    assert!(
        again
            .stderr
            .contains("nothing to change for br0's guest forwarding"),
        "{}",
        again.stderr
    );
    // Idempotent: the hook again adds nothing.
    let again = sync_hook(lab);
    assert_eq!(again["result"], "unchanged", "{again:#}");
    assert_eq!(again["bridges"], serde_json::json!(["br0"]));
    assert_eq!(traces(lab).iptables, with_rule.iptables);
    assert_eq!(traces(lab).nft, with_rule.nft);

    // Docker's start: its chains deleted and made again, without the rule.
    for args in recreate {
        let out = lab.host(*args);
        assert!(out.status.success(), "{args:?}: {out:?}");
    }
    firewall(lab);
    let recreated = traces(lab);
    assert!(
        !guest_reaches_gateway(lab, &guest, 50, Duration::from_secs(2)),
        "re-created chains drop the guest until the hook runs"
    );
    let synced = sync_hook(lab);
    assert_eq!(synced["result"], "committed", "{synced:#}");
    let after_sync = traces(lab);
    // Re-created chains may be listed in another order: the same lines.
    let lines = |text: &str| {
        let mut lines: Vec<String> = text.lines().map(str::to_owned).collect();
        lines.sort();
        lines
    };
    assert_eq!(
        after_sync.iptables, with_rule.iptables,
        "the same rule, in the same place"
    );
    assert_eq!(lines(&after_sync.nft), lines(&with_rule.nft));
    assert!(
        guest_reaches_gateway(lab, &guest, 50, Duration::from_secs(10)),
        "the guest works again after the hook"
    );

    // The VM leaves before the bridge goes.
    let detach = lab.host(["ip", "link", "set", guest.host_link(), "nomaster"]);
    assert!(detach.status.success(), "{detach:?}");
    let revert = netbridge(lab, &["revert", "br0", "--yes"]);
    assert_eq!(revert.code, 0, "{}", revert.stderr);
    assert!(
        revert
            .stderr
            .contains("netbridge's rule for br0 removed from"),
        "{}",
        revert.stderr
    );
    // Exactly as Docker's start left it, and the same rules as at first.
    let after = traces(lab);
    assert_eq!(after.nft, recreated.nft, "nft ruleset exactly as before");
    assert_eq!(
        after.iptables, recreated.iptables,
        "iptables-save exactly as before"
    );
    assert_eq!(after.iptables, before.iptables);
    assert_eq!(lines(&after.nft), lines(&before.nft));
    let forgotten = sync_hook(lab);
    assert_eq!(forgotten["bridges"], serde_json::json!([]), "{forgotten:#}");
    assert_eq!(forgotten["result"], "unchanged", "{forgotten:#}");
}

#[test]
fn guest_forwarding_allow_with_a_docker_like_iptables_firewall() {
    let Some(lab) = Lab::require(Uplink::Static) else {
        return;
    };
    allow_survives_and_revert_restores(
        &lab,
        docker_like_dual_stack,
        &[
            &["iptables", "-F", "FORWARD"],
            &["iptables", "-F", "DOCKER-USER"],
            &["iptables", "-X", "DOCKER-USER"],
            &["iptables", "-X", "DOCKER-FORWARD"],
            &["ip6tables", "-F", "FORWARD"],
            &["ip6tables", "-F", "DOCKER-USER"],
            &["ip6tables", "-X", "DOCKER-USER"],
        ],
        "ip filter DOCKER-USER (iptables-nft)",
        "-A DOCKER-USER -i br0 -o br0 -m comment --comment \"netbridge-guest-forwarding:br0\" -j ACCEPT",
    );
}

#[test]
fn guest_forwarding_allow_with_a_docker_like_nftables_firewall() {
    let Some(lab) = Lab::require(Uplink::Static) else {
        return;
    };
    allow_survives_and_revert_restores(
        &lab,
        docker_like_nftables,
        &[&["nft", "delete", "table", "ip", "filter"]],
        "ip filter forward (nftables)",
        "iifname \"br0\" oifname \"br0\" accept comment \"netbridge-guest-forwarding:br0\"",
    );
}

#[test]
fn guest_forwarding_is_taken_back_by_a_rollback() {
    let Some(lab) = Lab::require(Uplink::Static) else {
        return;
    };
    docker_like_iptables(&lab);
    assert!(common::ping_gateway(&lab));
    let (before, traces_before) = (lab.snapshot(), traces(&lab));
    let dnsmasq = lab.dnsmasq_pid().expect("dnsmasq runs");
    let mut run = Running::start(
        &lab,
        &[
            "convert",
            "ens32",
            "--yes",
            "--guest-forwarding",
            "allow",
            "--check",
            "dns:gw.lab",
        ],
    );
    run.wait_for("accepted in ip filter DOCKER-USER", Duration::from_secs(20));
    // The LAN's DNS goes silent: the check fails after the change.
    run.wait_for("checkpoint", Duration::from_secs(20));
    signal(dnsmasq, Signal::SIGSTOP);
    let (code, log) = run.finish();
    signal(dnsmasq, Signal::SIGCONT);
    assert_eq!(code, 3, "rolled back:\n{log}");
    assert!(
        log.contains("netbridge's rule for br0 removed from ip filter DOCKER-USER"),
        "{log}"
    );
    assert_eq!(lab.snapshot(), before, "the host is exactly as before");
    assert_eq!(traces(&lab), traces_before, "the ruleset exactly as before");
    assert_eq!(sync_hook(&lab)["bridges"], serde_json::json!([]));
}

#[test]
fn a_bad_guest_forwarding_value_is_refused_and_changes_nothing() {
    let Some(lab) = Lab::require(Uplink::Static) else {
        return;
    };
    docker_like_iptables(&lab);
    let (before, traces_before) = (lab.snapshot(), traces(&lab));
    let run = netbridge(
        &lab,
        &["convert", "ens32", "--yes", "--guest-forwarding", "yes"],
    );
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(
        run.stderr
            .contains("invalid value 'yes' for '--guest-forwarding <allow|deny>'"),
        "{}",
        run.stderr
    );
    let config = lab.dir().join("netbridge.toml");
    std::fs::write(
        &config,
        "[[bridge]]\nname = \"br0\"\nuplink = \"ens32\"\nguest-forwarding = \"on\"\n",
    )
    .expect("write config");
    let config = config.display().to_string();
    for args in [
        vec!["apply", "--config", &config],
        vec!["guest-forwarding", "--config", &config],
    ] {
        let run = netbridge(&lab, &args);
        assert_eq!(run.code, 2, "{args:?}: {}", run.stderr);
        assert!(
            run.stderr.contains(
                "netbridge.toml:4: bridge.guest-forwarding: \"on\" is not a value: use \"allow\" or \"deny\""
            ),
            "{args:?}: {}",
            run.stderr
        );
    }
    assert_eq!(lab.snapshot(), before, "nothing changed");
    assert_eq!(traces(&lab), traces_before, "the ruleset untouched");
}

#[test]
fn a_rule_left_by_a_killed_conversion_is_removed_by_the_hook() {
    let Some(lab) = Lab::require(Uplink::Static) else {
        return;
    };
    docker_like_iptables(&lab);
    let before = traces(&lab);
    let dnsmasq = lab.dnsmasq_pid().expect("dnsmasq runs");
    let mut run = Running::start(
        &lab,
        &[
            "convert",
            "ens32",
            "--yes",
            "--rollback-timeout",
            "5",
            "--guest-forwarding",
            "allow",
            "--check",
            "dns:gw.lab",
        ],
    );
    run.wait_for("checkpoint", Duration::from_secs(20));
    // The DNS check hangs, and netbridge dies before any verdict.
    signal(dnsmasq, Signal::SIGSTOP);
    run.wait_for("bridge up", Duration::from_secs(20));
    signal(run.pid(), Signal::SIGKILL);
    let (code, _) = run.finish();
    signal(dnsmasq, Signal::SIGCONT);
    assert_eq!(code, -1, "killed");
    assert!(
        traces(&lab)
            .iptables
            .contains("netbridge-guest-forwarding:br0"),
        "the rule outlived the kill"
    );
    // Never recorded (the change did not commit): the hook removes it.
    let synced = sync_hook(&lab);
    assert_eq!(synced["bridges"], serde_json::json!([]), "{synced:#}");
    assert_eq!(synced["result"], "committed", "{synced:#}");
    let after = traces(&lab);
    assert_eq!((after.nft, after.iptables), (before.nft, before.iptables));
    let recover = netbridge(&lab, &["recover"]);
    assert_eq!(recover.code, 0, "{}", recover.stderr);
}

#[test]
fn guest_forwarding_allow_with_a_docker_like_iptables_legacy_firewall() {
    let Some(lab) = Lab::require(Uplink::Static) else {
        return;
    };
    for args in [
        vec!["iptables-legacy", "-N", "DOCKER-USER"],
        vec!["iptables-legacy", "-A", "DOCKER-USER", "-j", "RETURN"],
        vec!["iptables-legacy", "-P", "FORWARD", "DROP"],
        vec!["iptables-legacy", "-A", "FORWARD", "-j", "DOCKER-USER"],
    ] {
        let out = lab.host(&args);
        assert!(out.status.success(), "{args:?}: {out:?}");
    }
    let legacy = || {
        text(&lab.host(["iptables-legacy-save"]))
            .lines()
            .filter(|l| !l.starts_with('#'))
            .map(|l| l.split(" [").next().unwrap_or(l).to_owned())
            .collect::<Vec<_>>()
    };
    let before = legacy();
    let run = netbridge(
        &lab,
        &["convert", "ens32", "--yes", "--guest-forwarding", "allow"],
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(
        run.stderr.contains(
            "forwarding between br0's ports accepted in ip filter DOCKER-USER (iptables-legacy)"
        ),
        "{}",
        run.stderr
    );
    assert!(run.stderr.contains("guest-path br0 ok"), "{}", run.stderr);
    let rule = "-A DOCKER-USER -i br0 -o br0 -m comment --comment \"netbridge-guest-forwarding:br0\" -j ACCEPT";
    assert_eq!(
        legacy().iter().filter(|l| *l == rule).count(),
        1,
        "{:#?}",
        legacy()
    );
    assert_eq!(sync_hook(&lab)["result"], "unchanged");
    let revert = netbridge(&lab, &["revert", "br0", "--yes"]);
    assert_eq!(revert.code, 0, "{}", revert.stderr);
    assert_eq!(legacy(), before, "iptables-legacy-save exactly as before");
}
