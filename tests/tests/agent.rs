//! netbridge-agent in a lab: applies its configuration, tells "systemd" (a
//! notify socket the test holds) when it is ready, reloads on SIGHUP,
//! records rollbacks without retrying them, undoes interrupted changes at
//! start, stops on SIGTERM.

mod common;

use std::io::{BufRead, BufReader};
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::time::Duration;

use common::{device, ipv4, kill_mid_change, netbridge, signal, status};
use netbridge_tests::{Lab, Uplink};
use nix::sys::signal::Signal;

/// A running agent with the notify socket systemd would hold.
struct Agent {
    child: Child,
    notify: UnixDatagram,
    log: Receiver<String>,
    seen: Vec<String>,
}

impl Agent {
    fn start(lab: &Lab, config: &Path) -> Agent {
        let socket = lab.dir().join("notify.sock");
        let _ = std::fs::remove_file(&socket);
        let notify = UnixDatagram::bind(&socket).expect("bind the notify socket");
        notify
            .set_read_timeout(Some(Duration::from_secs(60)))
            .expect("socket timeout");
        let mut child = lab
            .netbridge_agent(["--config".to_owned(), config.display().to_string()])
            .env("NOTIFY_SOCKET", &socket)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start netbridge-agent");
        let stderr = child.stderr.take().expect("piped stderr");
        let (tx, log) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Agent {
            child,
            notify,
            log,
            seen: Vec::new(),
        }
    }

    /// Waits for a notify message containing `what` (e.g. READY=1); returns it.
    fn expect_notify(&mut self, what: &str) -> String {
        let mut buf = [0u8; 4096];
        loop {
            let n = self.notify.recv(&mut buf).unwrap_or_else(|e| {
                self.seen.extend(self.log.try_iter());
                panic!(
                    "no {what} from the agent ({e}); its log:\n{}",
                    self.seen.join("\n")
                )
            });
            let msg = String::from_utf8_lossy(&buf[..n]).into_owned();
            if msg.contains(what) {
                return msg;
            }
        }
    }

    fn wait_log(&mut self, needle: &str) {
        loop {
            match self.log.recv_timeout(Duration::from_secs(30)) {
                Ok(line) => {
                    let hit = line.contains(needle);
                    self.seen.push(line);
                    if hit {
                        return;
                    }
                }
                Err(_) => panic!(
                    "no log line with {needle:?}; saw:\n{}",
                    self.seen.join("\n")
                ),
            }
        }
    }

    fn signal(&self, sig: Signal) {
        signal(self.child.id(), sig);
    }

    fn stop(mut self) -> i32 {
        self.signal(Signal::SIGTERM);
        self.expect_notify("STOPPING=1");
        let status = self.child.wait().expect("agent exits");
        status.code().unwrap_or(-1)
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn write_config(lab: &Lab, text: &str) -> PathBuf {
    let dir = lab.dir().join("etc-netbridge");
    std::fs::create_dir_all(dir.join("conf.d")).expect("config dir");
    std::fs::write(dir.join("netbridge.toml"), text).expect("write config");
    dir
}

const BR0: &str = r#"
[[bridge]]
name = "br0"
uplink = "default-route"
checks = ["tcp:172.25.250.254:53"]
"#;

#[test]
fn the_agent_converts_at_start_applies_a_reload_and_stops_cleanly() {
    let Some(lab) = Lab::require(Uplink::Static) else {
        return;
    };
    let config = write_config(&lab, BR0);
    let mut agent = Agent::start(&lab, &config);
    let ready = agent.expect_notify("READY=1");
    assert!(ready.contains("STATUS=br0: committed"), "{ready}");
    assert_eq!(ipv4(&status(&lab), "br0"), vec!["172.25.250.10/24"]);
    assert_eq!(status(&lab)["configured"]["br0"]["result"], "applied");

    // A drop-in adds a NAT network; br0 is left alone (no outage, "unchanged").
    std::fs::write(
        config.join("conf.d/10-nat.toml"),
        "[[bridge]]\nname = \"virbr1\"\nmode = \"nat\"\naddress = \"192.168.107.1/24\"\n",
    )
    .expect("write drop-in");
    let config_arg = config.display().to_string();
    let pending = netbridge(&lab, &["status", "--json", "--config", &config_arg]).json();
    assert_eq!(
        pending["configured"]["virbr1"]["result"], "pending",
        "{pending:#}"
    );
    assert_eq!(pending["configured"]["br0"]["result"], "applied");
    agent.signal(Signal::SIGHUP);
    agent.expect_notify("RELOADING=1");
    let ready = agent.expect_notify("READY=1");
    assert!(
        ready.contains("br0: unchanged") && ready.contains("virbr1: committed"),
        "{ready}"
    );
    let s = status(&lab);
    assert_eq!(ipv4(&s, "virbr1"), vec!["192.168.107.1/24"]);
    assert_eq!(s["configured"]["br0"]["result"], "unchanged");

    assert_eq!(agent.stop(), 0, "a clean stop");
}

#[test]
fn a_rollback_is_recorded_with_its_reason_and_not_retried_until_the_config_changes() {
    let Some(lab) = Lab::require(Uplink::Static) else {
        return;
    };
    let before = lab.snapshot();
    let config = write_config(
        &lab,
        "[[bridge]]\nname = \"br0\"\nuplink = \"ens32\"\nchecks = [\"ping:172.25.250.254\"]\n",
    );
    let mut agent = Agent::start(&lab, &config);
    agent.wait_log("checkpoint");
    assert!(lab
        .lan(["sysctl", "-qw", "net.ipv4.icmp_echo_ignore_all=1"])
        .status
        .success());
    let ready = agent.expect_notify("READY=1");
    lab.lan(["sysctl", "-qw", "net.ipv4.icmp_echo_ignore_all=0"]);
    assert!(ready.contains("br0: rolled-back"), "{ready}");
    let s = status(&lab);
    assert_eq!(s["configured"]["br0"]["result"], "rolled-back");
    let reason = s["configured"]["br0"]["reason"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(reason.contains("ping 172.25.250.254"), "{reason}");
    assert!(
        common::eventually(Duration::from_secs(10), || lab.snapshot() == before),
        "the host is as before"
    );

    // A reload with the same configuration does not try again ...
    agent.signal(Signal::SIGHUP);
    let ready = agent.expect_notify("READY=1");
    assert!(ready.contains("br0: skipped"), "{ready}");
    assert_eq!(lab.snapshot(), before);
    // ... an explicit apply does.
    let run = netbridge(
        &lab,
        &["apply", "--config", &config.display().to_string(), "--json"],
    );
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
    assert_eq!(run.json()["bridges"][0]["result"], "committed");
    assert_eq!(agent.stop(), 0);
}

#[test]
fn the_agent_undoes_an_interrupted_change_before_anything_else() {
    let Some(mut lab) = Lab::require(Uplink::Static) else {
        return;
    };
    let before = lab.snapshot();
    kill_mid_change(&mut lab, |lab| {
        lab.restart_nm().expect("restart NetworkManager")
    });
    assert!(
        device(&status(&lab), "br0").is_some(),
        "the interrupted trial is still there"
    );

    let config = write_config(&lab, "# no bridges configured\n");
    let mut agent = Agent::start(&lab, &config);
    let ready = agent.expect_notify("READY=1");
    assert!(ready.contains("no bridges configured"), "{ready}");
    assert_eq!(
        lab.snapshot(),
        before,
        "the agent undid the interrupted change"
    );
    assert!(status(&lab)["unfinished_change"].is_null());
    assert_eq!(agent.stop(), 0);
}

#[test]
fn an_invalid_configuration_changes_nothing_and_says_where() {
    let Some(lab) = Lab::require(Uplink::Static) else {
        return;
    };
    let before = lab.snapshot();
    let config = write_config(
        &lab,
        "[[bridge]]\nname = \"br0\"\nuplink = \"ens32\"\nstp = \"maybe\"\n",
    );
    let mut agent = Agent::start(&lab, &config);
    let ready = agent.expect_notify("READY=1");
    assert!(ready.contains("configuration invalid"), "{ready}");
    assert!(
        ready.contains("netbridge.toml:4: bridge.stp: invalid type"),
        "names file, line and key: {ready}"
    );
    assert_eq!(lab.snapshot(), before);

    let run = netbridge(&lab, &["apply", "--config", &config.display().to_string()]);
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(run.stderr.contains("netbridge.toml:4"), "{}", run.stderr);
    assert_eq!(lab.snapshot(), before);
    assert_eq!(agent.stop(), 0);
}

#[test]
fn a_bridge_interrupted_by_sigterm_is_applied_at_the_next_start() {
    let Some(lab) = Lab::require(Uplink::Static) else {
        return;
    };
    let config = write_config(
        &lab,
        "[[bridge]]\nname = \"br0\"\nuplink = \"ens32\"\nchecks = [\"dns:gw.lab\"]\n",
    );
    let dnsmasq = lab.dnsmasq_pid().expect("dnsmasq runs");
    let mut agent = Agent::start(&lab, &config);
    agent.wait_log("checkpoint");
    // The DNS check hangs: the agent is mid-change when the shutdown comes.
    signal(dnsmasq, Signal::SIGSTOP);
    agent.wait_log("identity");
    assert_eq!(agent.stop(), 0);
    signal(dnsmasq, Signal::SIGCONT);
    let s = status(&lab);
    assert!(device(&s, "br0").is_none(), "rolled back at the shutdown");
    assert_eq!(s["configured"]["br0"]["result"], "rolled-back");
    assert_eq!(s["configured"]["br0"]["retry"], "transient", "{s:#}");

    // The next start (after the reboot, say) applies it with no manual step.
    let mut agent = Agent::start(&lab, &config);
    let ready = agent.expect_notify("READY=1");
    assert!(ready.contains("br0: committed"), "{ready}");
    assert_eq!(ipv4(&status(&lab), "br0"), ["172.25.250.10/24"]);
    assert_eq!(agent.stop(), 0);
}

#[test]
fn the_agent_waits_for_a_late_networkmanager_and_keeps_systemd_informed() {
    let Some(mut lab) = Lab::require(Uplink::Static) else {
        return;
    };
    lab.stop_nm().expect("stop NetworkManager");
    let config = write_config(&lab, BR0);
    let mut agent = Agent::start(&lab, &config);
    let waiting = agent.expect_notify("EXTEND_TIMEOUT_USEC=");
    assert!(
        waiting.contains("STATUS=waiting for NetworkManager"),
        "{waiting}"
    );
    lab.start_nm().expect("start NetworkManager again");
    let extended = agent.expect_notify("STATUS=applying the configuration");
    assert!(extended.contains("EXTEND_TIMEOUT_USEC="), "{extended}");
    let ready = agent.expect_notify("READY=1");
    assert!(ready.contains("br0: committed"), "{ready}");
    assert_eq!(agent.stop(), 0);
}

#[test]
fn a_stop_does_not_wait_for_another_netbridge_holding_the_lock() {
    let Some(lab) = Lab::require(Uplink::Static) else {
        return;
    };
    let dnsmasq = lab.dnsmasq_pid().expect("dnsmasq runs");
    // A conversion holds the lock, stuck in its DNS check.
    let mut convert = common::Running::start(
        &lab,
        &["convert", "ens32", "--yes", "--check", "dns:gw.lab"],
    );
    convert.wait_for("checkpoint", Duration::from_secs(20));
    signal(dnsmasq, Signal::SIGSTOP);
    convert.wait_for("identity", Duration::from_secs(20));

    let config = write_config(&lab, BR0);
    let mut agent = Agent::start(&lab, &config);
    agent.wait_log("waiting for another netbridge");
    // The conversion holds the lock until its check gives up: a stop that
    // waited for the lock would end after it.
    assert_eq!(agent.stop(), 0);
    // Still running (not a zombie): state R, S or D in /proc/PID/stat.
    let stat = std::fs::read_to_string(format!("/proc/{}/stat", convert.pid())).unwrap_or_default();
    let state = stat
        .rsplit(')')
        .next()
        .and_then(|r| r.split_whitespace().next());
    assert!(
        matches!(state, Some("R" | "S" | "D")),
        "the agent stopped while the lock was still held: {stat}"
    );
    signal(dnsmasq, Signal::SIGCONT);
    let (code, output) = convert.finish();
    assert!(
        matches!(code, 0 | 3),
        "the conversion ends on its own: {output}"
    );
}
