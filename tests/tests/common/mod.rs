//! Helpers shared by the end-to-end tests: run the real `netbridge` binary
//! inside a lab and read its JSON.

#![allow(dead_code)] // each test file uses a different subset

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use netbridge_tests::{Guest, Lab};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use serde_json::Value;

/// A host-only network, as several tests make it.
pub const VMNET1: &[&str] = &[
    "create",
    "vmnet1",
    "--mode",
    "isolated",
    "--address",
    "192.168.108.1/24",
];

/// `busctl` reading NetworkManager's armed checkpoints (`ao 0`: none).
pub const CHECKPOINTS: [&str; 6] = [
    "busctl",
    "get-property",
    "org.freedesktop.NetworkManager",
    "/org/freedesktop/NetworkManager",
    "org.freedesktop.NetworkManager",
    "Checkpoints",
];

/// The detail of the awaiting-confirmation step of a `--json` document
/// (it names the watcher).
pub fn awaiting_step(doc: &Value) -> &str {
    doc["steps"]
        .as_array()
        .and_then(|steps| steps.iter().find(|s| s["step"] == "awaiting confirmation"))
        .and_then(|s| s["detail"].as_str())
        .unwrap_or_else(|| panic!("no awaiting-confirmation step: {doc:#}"))
}

pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    /// The `--json` document on stdout, validated against its schema
    /// ([`document`]).
    pub fn json(&self) -> Value {
        document(&self.stdout).unwrap_or_else(|e| panic!("{e}\nstderr:\n{}", self.stderr))
    }
}

/// The directory of the JSON Schema files (schema/ in the repository).
fn schema_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../schema")
}

/// Hands the schema files to the validator by their `$id`s, which end in
/// the file's name.
struct SchemaFiles;

impl jsonschema::Retrieve for SchemaFiles {
    fn retrieve(
        &self,
        uri: &jsonschema::Uri<String>,
    ) -> Result<Value, Box<dyn std::error::Error + Send + Sync>> {
        let name = uri.as_str().rsplit('/').next().unwrap_or_default();
        let text = std::fs::read_to_string(schema_dir().join(name))?;
        Ok(serde_json::from_str(&text)?)
    }
}

/// The validator of schema/`command`.json, built once per test process.
fn validator(command: &str) -> &'static jsonschema::Validator {
    static VALIDATORS: OnceLock<Mutex<HashMap<String, &'static jsonschema::Validator>>> =
        OnceLock::new();
    let mut built = VALIDATORS
        .get_or_init(Mutex::default)
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    built.entry(command.to_owned()).or_insert_with(|| {
        let path = schema_dir().join(format!("{command}.json"));
        let text = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("no schema for {command:?} ({}): {e}", path.display()));
        let schema: Value = serde_json::from_str(&text).expect("a schema is JSON");
        let validator = jsonschema::options()
            .with_retriever(SchemaFiles)
            .build(&schema)
            .unwrap_or_else(|e| panic!("{} is not a valid schema: {e}", path.display()));
        Box::leak(Box::new(validator))
    })
}

/// Parses a `--json` document and checks it against the schema of its
/// `command` (every document says which), and the rules no schema spells
/// out: no JSON inside strings. Every test that reads `--json` output
/// comes through here.
///
/// # Errors
/// The document and what is wrong with it.
pub fn document(text: &str) -> Result<Value, String> {
    let doc: Value =
        serde_json::from_str(text).map_err(|e| format!("stdout is not JSON ({e}):\n{text}"))?;
    let command = doc["command"]
        .as_str()
        .ok_or_else(|| format!("no \"command\" in the document:\n{doc:#}"))?;
    let problems: Vec<String> = validator(command)
        .iter_errors(&doc)
        .map(|e| format!("{}: {e}", e.instance_path()))
        .chain(json_in_strings(&doc, ""))
        .collect();
    if problems.is_empty() {
        Ok(doc)
    } else {
        Err(format!(
            "the {command} document breaks schema/{command}.json:\n  {}\n{doc:#}",
            problems.join("\n  ")
        ))
    }
}

/// Strings that hold JSON objects or arrays: a document nests, never embeds.
fn json_in_strings(value: &Value, at: &str) -> Vec<String> {
    match value {
        Value::String(s) => {
            let nested = serde_json::from_str::<Value>(s)
                .is_ok_and(|v| v.is_object() || v.as_array().is_some_and(|a| !a.is_empty()));
            if nested {
                vec![format!("{at}: JSON inside a string")]
            } else {
                Vec::new()
            }
        }
        Value::Array(items) => items
            .iter()
            .enumerate()
            .flat_map(|(i, v)| json_in_strings(v, &format!("{at}/{i}")))
            .collect(),
        Value::Object(fields) => fields
            .iter()
            .flat_map(|(k, v)| json_in_strings(v, &format!("{at}/{k}")))
            .collect(),
        _ => Vec::new(),
    }
}

impl From<std::process::Output> for Run {
    fn from(out: std::process::Output) -> Run {
        Run {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }
}

pub fn netbridge(lab: &Lab, args: &[&str]) -> Run {
    let out = lab
        .netbridge(args)
        .stdin(Stdio::null())
        .output()
        .expect("run netbridge");
    Run::from(out)
}

/// The nmcli commands a dry run renders (its JSON's `nmcli`).
pub fn rendered(lab: &Lab, args: &[&str]) -> Vec<String> {
    let dry = netbridge(lab, args);
    assert_eq!(dry.code, 0, "{args:?}: {}", dry.stderr);
    dry.json()["nmcli"]
        .as_array()
        .expect("nmcli commands")
        .iter()
        .filter_map(|c| c.as_str().map(str::to_owned))
        .collect()
}

/// The operator's way: each line in a shell on the host (tests may run nmcli).
pub fn run_by_hand<S: AsRef<str>>(lab: &Lab, commands: &[S]) {
    for command in commands {
        let command = command.as_ref();
        let out = lab.host(["sh", "-c", command]);
        assert!(out.status.success(), "{command}: {out:?}");
    }
}

/// The keyfile of the profile `id` as saved on disk (not only in memory).
///
/// # Panics
/// If no such profile is on disk.
pub fn saved_keyfile(lab: &Lab, id: &str) -> String {
    let snap = lab.snapshot();
    let line = format!("id={id}");
    snap.profiles
        .iter()
        .find(|(path, text)| path.starts_with("conn/") && text.lines().any(|l| l == line))
        .map(|(_, text)| text.clone())
        .unwrap_or_else(|| panic!("no profile {id} on disk: {:?}", snap.profiles.keys()))
}

/// Changes the uplink's profile (`settings`: nmcli property/value pairs)
/// and brings it up again with them, as an admin would before netbridge runs.
///
/// # Panics
/// If nmcli fails.
pub fn reconfigure_uplink(lab: &Lab, settings: &[&str]) {
    let mut modify = vec!["nmcli", "connection", "modify", "ens32"];
    modify.extend_from_slice(settings);
    for argv in [
        modify,
        vec!["nmcli", "--wait", "30", "connection", "up", "ens32"],
    ] {
        let out = lab.host(&argv);
        assert!(out.status.success(), "{argv:?}: {out:?}");
    }
}

pub fn status(lab: &Lab) -> Value {
    let run = netbridge(lab, &["status", "--json"]);
    assert_eq!(run.code, 0, "status failed: {}", run.stderr);
    run.json()
}

pub fn device<'a>(status: &'a Value, name: &str) -> Option<&'a Value> {
    status["devices"]
        .as_array()?
        .iter()
        .find(|d| d["interface"] == name)
}

pub fn ipv4(status: &Value, name: &str) -> Vec<String> {
    device(status, name)
        .and_then(|d| d["ipv4"]["addresses"].as_array().cloned())
        .unwrap_or_default()
        .iter()
        .filter_map(|a| a.as_str().map(str::to_owned))
        .collect()
}

pub fn ping_gateway(lab: &Lab) -> bool {
    lab.host(["ping", "-c", "1", "-W", "2", "172.25.250.254"])
        .status
        .success()
}

/// What a child writes to a pipe, read line by line on a thread as it
/// comes.
pub struct Lines {
    rx: Receiver<String>,
    reader: Option<std::thread::JoinHandle<()>>,
    /// Every line taken so far.
    pub seen: Vec<String>,
}

impl Lines {
    pub fn read(source: impl std::io::Read + Send + 'static) -> Lines {
        let (tx, rx) = mpsc::channel();
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(source).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Lines {
            rx,
            reader: Some(reader),
            seen: Vec::new(),
        }
    }

    /// Waits up to `timeout` for a line containing `needle`; None if none
    /// came. Every line taken meanwhile is kept in `seen`.
    pub fn wait_for(&mut self, needle: &str, timeout: Duration) -> Option<String> {
        let end = Instant::now() + timeout;
        loop {
            let left = end.saturating_duration_since(Instant::now());
            let line = self.rx.recv_timeout(left).ok()?;
            self.seen.push(line.clone());
            if line.contains(needle) {
                return Some(line);
            }
        }
    }

    /// Every line, once the writer has closed the pipe.
    pub fn finish(mut self) -> Vec<String> {
        if let Some(reader) = self.reader.take() {
            let _ = reader.join();
        }
        self.seen.extend(self.rx.try_iter());
        self.seen
    }
}

/// A netbridge process whose progress (stderr) is read line by line.
pub struct Running {
    pub child: Child,
    lines: Lines,
    /// Everything on stdout (a `--json` document), read as it comes.
    stdout: Option<std::thread::JoinHandle<String>>,
}

impl Running {
    pub fn start(lab: &Lab, args: &[&str]) -> Running {
        Running::spawn(lab.netbridge(args))
    }

    /// Starts `command` (netbridge, in a lab or a booted host) with its
    /// stderr read line by line.
    pub fn spawn(command: Command) -> Running {
        Running::spawn_with_stdin(command, Stdio::null())
    }

    /// [`Running::spawn`] with `stdin` (piped: the pipe stays open in
    /// `child` until [`Running::finish`]).
    pub fn spawn_with_stdin(mut command: Command, stdin: Stdio) -> Running {
        let mut child = command
            .stdin(stdin)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn netbridge");
        let mut stdout = child.stdout.take().expect("piped stdout");
        let stdout = Some(std::thread::spawn(move || {
            let mut text = String::new();
            let _ = std::io::Read::read_to_string(&mut stdout, &mut text);
            text
        }));
        let stderr = child.stderr.take().expect("piped stderr");
        Running {
            child,
            lines: Lines::read(stderr),
            stdout,
        }
    }

    /// Waits for a progress line containing `needle`.
    pub fn wait_for(&mut self, needle: &str, timeout: Duration) -> String {
        match self.lines.wait_for(needle, timeout) {
            Some(line) => line,
            None => panic!(
                "no line with {needle:?} within {timeout:?}; saw:\n{}",
                self.lines.seen.join("\n")
            ),
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Waits for the exit; returns the code, the `--json` document it
    /// printed (validated: [`document`]) and its stderr.
    pub fn finish_json(mut self) -> (i32, Value, String) {
        let stdout = self.stdout.take();
        let (code, log) = self.finish();
        let text = stdout
            .and_then(|reader| reader.join().ok())
            .unwrap_or_default();
        let doc = document(&text).unwrap_or_else(|e| panic!("{e}\nstderr:\n{log}"));
        (code, doc, log)
    }

    /// Waits for the exit; returns the code and everything netbridge printed.
    pub fn finish(mut self) -> (i32, String) {
        let status = self.child.wait().expect("wait for netbridge");
        (status.code().unwrap_or(-1), self.lines.finish().join("\n"))
    }
}

/// The LAN pinging the host's static address every 5 ms, for at most
/// `seconds` (SIGINT ends it earlier); its summary comes on stdout.
pub fn lan_pings(lab: &Lab, seconds: u32) -> Child {
    let deadline = seconds.to_string();
    lab.lan_command([
        "ping",
        "-n",
        "-q",
        "-i",
        "0.005",
        "-W",
        "1",
        "-w",
        &deadline,
        "172.25.250.10",
    ])
    .stdout(Stdio::piped())
    .spawn()
    .expect("ping from the LAN")
}

/// The replies lost and the pings sent, from a `ping -q` summary
/// ("N packets transmitted, M received").
pub fn ping_loss(summary: &str) -> Option<(u64, u64)> {
    let line = summary.lines().find(|l| l.contains("transmitted"))?;
    let mut numbers = line
        .split(|c: char| !c.is_ascii_digit())
        .filter(|n| !n.is_empty())
        .map(|n| n.parse::<u64>().ok());
    let sent = numbers.next()??;
    let received = numbers.next()??;
    Some((sent - received, sent))
}

pub fn signal(pid: u32, sig: Signal) {
    let pid = Pid::from_raw(i32::try_from(pid).expect("pid fits"));
    kill(pid, sig).expect("signal a process this test started");
}

/// Polls `cond` until it holds or `timeout` passes (test support only).
pub fn eventually(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + timeout;
    while Instant::now() < end {
        if cond() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    cond()
}

/// Kills netbridge (SIGKILL) in the middle of a conversion: once the change
/// is under way the LAN's DNS goes silent, so netbridge sits in its
/// `dns:gw.lab` check when it dies. `meanwhile` runs before DNS comes back
/// (e.g. a NetworkManager restart). Returns netbridge's exit code.
pub fn kill_mid_change(lab: &mut Lab, meanwhile: impl FnOnce(&mut Lab)) -> i32 {
    let dnsmasq = lab.dnsmasq_pid().expect("dnsmasq runs");
    let args = [
        "convert",
        "ens32",
        "--yes",
        "--rollback-timeout",
        "5",
        "--check",
        "dns:gw.lab",
    ];
    let mut run = Running::start(lab, &args);
    run.wait_for("checkpoint", Duration::from_secs(20));
    signal(dnsmasq, Signal::SIGSTOP);
    run.wait_for("bridge up", Duration::from_secs(20));
    signal(run.pid(), Signal::SIGKILL);
    let (code, _) = run.finish();
    meanwhile(lab);
    signal(dnsmasq, Signal::SIGCONT);
    code
}

/// udhcpc's hook: configure the lease in the guest namespace only (the
/// default script would write the machine's /etc/resolv.conf).
pub const DHCP_HOOK: &str = r#"#!/bin/sh
case "$1" in
  deconfig) ip addr flush dev "$interface"; ip link set "$interface" up ;;
  bound|renew)
    ip addr add "$ip/$mask" dev "$interface"
    [ -n "$router" ] && ip route replace default via "${router%% *}" dev "$interface"
    echo "$ip" ;;
esac
"#;

/// A guest namespace whose veth `tap` is a port of `bridge`, as libvirt
/// attaches a VM's tap.
pub fn attach(lab: &Lab, bridge: &str, tap: &str) -> Guest {
    let guest = lab.add_guest(tap);
    for args in [
        vec!["ip", "link", "set", tap, "master", bridge],
        vec!["ip", "link", "set", tap, "up"],
    ] {
        let out = lab.host(&args);
        assert!(out.status.success(), "{args:?}: {out:?}");
    }
    guest
}

/// A DHCP lease for the guest's eth0 (udhcpc), configured in its namespace.
pub fn dhcp_lease(lab: &Lab, guest: &Guest) -> String {
    let hook = lab.dir().join(format!("dhcp-hook-{}", guest.ns()));
    std::fs::write(&hook, DHCP_HOOK).expect("write the hook");
    std::process::Command::new("chmod")
        .arg("755")
        .arg(&hook)
        .status()
        .expect("chmod");
    let hook = hook.display().to_string();
    let out = guest.exec([
        "udhcpc", "-i", "eth0", "-n", "-q", "-f", "-t", "10", "-T", "1", "-s", &hook,
    ]);
    assert!(out.status.success(), "no DHCP lease: {out:?}");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .find(|l| l.parse::<std::net::Ipv4Addr>().is_ok())
        .unwrap_or_else(|| panic!("no address in udhcpc output: {out:?}"))
        .to_owned()
}

pub fn guest_pings(guest: &Guest, target: &str) -> bool {
    guest
        .exec(["ping", "-c", "1", "-W", "2", target])
        .status
        .success()
}

/// One `#[test]` per Debian suite, named after it, in a module named after
/// the scenario, each calling `scenario(Suite::…)` of the test file:
/// `on_suites!(converts: bullseye => Bullseye, sid => Sid)` makes the tests
/// `converts::bullseye` and `converts::sid`.
#[allow(unused_macros)] // each test file uses a different subset
macro_rules! on_suites {
    ($scenario:ident: $($name:ident => $suite:ident),+ $(,)?) => {
        mod $scenario {
            $(
                #[test]
                fn $name() {
                    super::$scenario(::netbridge_tests::container::Suite::$suite);
                }
            )+
        }
    };
}
#[allow(unused_imports)] // each test file uses a different subset
pub(crate) use on_suites;

/// A conversion that waits `secs` for confirmation (no guest-path check:
/// it adds nothing here and costs seconds).
pub(crate) fn confirm_convert_args(secs: &str) -> [&str; 6] {
    [
        "convert",
        "ens32",
        "--yes",
        "--no-guest-check",
        "--confirm",
        secs,
    ]
}

/// `netbridge create virbr1` as a NAT network on the lab's guest subnet.
pub(crate) const CREATE_NAT: [&str; 6] = [
    "create",
    "virbr1",
    "--mode",
    "nat",
    "--address",
    "192.168.107.1/24",
];
