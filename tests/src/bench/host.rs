//! The host a reply-gap run changes: the lab's own NetworkManager (this
//! machine's, run in the lab's host namespace), or a whole Debian host booted
//! with systemd-nspawn in that namespace (`--suite`: another NetworkManager,
//! e.g. trixie's 1.52), or a lab without NetworkManager for the kernel's own
//! steps. The LAN and its prober are the same lab namespace in every case.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::Command;

use netbridge_tests::container::{Container, Suite};
use netbridge_tests::lab::{self, Lab, Uplink};

/// Where the netbridge under test goes inside a container, and the
/// `--baseline` binary beside it.
const NETBRIDGE_IN_ROOT: &str = "/usr/local/bin/netbridge";
const BASELINE_IN_ROOT: &str = "/usr/local/bin/netbridge-baseline";

/// Which NetworkManager the NetworkManager ways run against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Nm {
    /// The machine's own NetworkManager, started by the lab in its host
    /// namespace.
    Lab,
    /// The NetworkManager of a Debian `Suite` host, a fresh copy of its
    /// cached root booted for each run.
    Booted(Suite),
}

impl Nm {
    /// How the table's heading names the host (after its version).
    pub fn describe(self) -> String {
        match self {
            Nm::Lab => "this machine's, in a lab namespace".to_owned(),
            Nm::Booted(suite) => format!(
                "Debian {suite}, a fresh copy of its root booted with systemd-nspawn per run"
            ),
        }
    }
}

/// One run's host. Dropping it powers a container off, then removes the lab.
/// (Boxed: a lab is a large struct, moved around here.)
pub enum Host {
    Lab(Box<Lab>),
    Container(Box<Container>),
}

impl Host {
    /// A host with NetworkManager as `nm` says, its uplink up with the
    /// static address; in a container, `netbridge` (and `baseline`) installed.
    pub fn start(nm: Nm, baseline: Option<&Path>) -> Result<Host, String> {
        match nm {
            Nm::Lab => Lab::start(Uplink::Static)
                .map(|lab| Host::Lab(Box::new(lab)))
                .map_err(|e| format!("the lab did not start: {e}")),
            Nm::Booted(suite) => boot(suite, baseline).map(|c| Host::Container(Box::new(c))),
        }
    }

    /// A lab without NetworkManager (for the kernel's own steps).
    pub fn network_only() -> Result<Host, String> {
        Lab::start_network_only(Uplink::Static)
            .map(|lab| Host::Lab(Box::new(lab)))
            .map_err(|e| format!("the lab did not start: {e}"))
    }

    /// The lab around the host: its namespaces, the LAN.
    pub fn lab(&self) -> &Lab {
        match self {
            Host::Lab(lab) => lab,
            Host::Container(c) => c.lab(),
        }
    }

    /// `argv` as an operator on the host runs it: in the lab's host
    /// namespace with its bus, or inside the container.
    pub fn command<I, S>(&self, argv: I) -> Result<Command, String>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        match self {
            Host::Lab(lab) => Ok(lab.host_command(argv)),
            Host::Container(c) => c.command(argv).map_err(|e| e.to_string()),
        }
    }

    /// `sh -c SCRIPT` on the host.
    pub fn shell(&self, script: &str) -> Result<Command, String> {
        self.command(["sh", "-c", script])
    }

    /// The netbridge under test (`baseline`: the `--baseline` binary).
    pub fn netbridge(&self, baseline: Option<&Path>) -> Result<Command, String> {
        match (self, baseline) {
            (Host::Lab(lab), None) => lab::netbridge_bin()
                .map(|bin| lab.host_command([bin]))
                .map_err(|e| e.to_string()),
            (Host::Lab(lab), Some(bin)) => Ok(lab.host_command([bin])),
            (Host::Container(_), None) => self.command([NETBRIDGE_IN_ROOT]),
            (Host::Container(_), Some(_)) => self.command([BASELINE_IN_ROOT]),
        }
    }

    /// `dbus-monitor` of the method calls to NetworkManager on the host's
    /// system bus, run on the machine; None without a bus (a lab without
    /// NetworkManager). A container's bus socket is on the tmpfs nspawn
    /// mounts on its /run, so it is reached through its PID 1's root.
    pub fn bus_monitor(&self) -> Option<Command> {
        let address = match self {
            Host::Lab(lab) if lab.nm_pid().is_none() => return None,
            Host::Lab(lab) => lab.bus_address().to_owned(),
            Host::Container(c) => format!(
                "unix:path=/proc/{}/root/run/dbus/system_bus_socket",
                c.leader_pid()?
            ),
        };
        let mut command = Command::new("dbus-monitor");
        command.env("DBUS_SYSTEM_BUS_ADDRESS", address).args([
            "--system",
            "type='method_call',destination='org.freedesktop.NetworkManager'",
        ]);
        Some(command)
    }

    /// NetworkManager's log so far, each line with NetworkManager's own
    /// `[seconds]` stamp: the lab's log file, or the container's journal.
    pub fn nm_log(&self) -> String {
        match self {
            Host::Lab(lab) => std::fs::read_to_string(lab.nm_log()).unwrap_or_default(),
            Host::Container(c) => c
                .try_exec([
                    "journalctl",
                    "-u",
                    "NetworkManager.service",
                    "-o",
                    "cat",
                    "--no-pager",
                ])
                .map(|out| String::from_utf8_lossy(&out.stdout).into_owned())
                .unwrap_or_default(),
        }
    }

    /// The first line of `NetworkManager --version` on the host.
    pub fn nm_version(&self) -> Result<String, String> {
        let out = self
            .command(["NetworkManager", "--version"])?
            .output()
            .map_err(|e| format!("NetworkManager --version: {e}"))?;
        let text = String::from_utf8_lossy(&out.stdout);
        match text.lines().next() {
            Some(line) if out.status.success() => Ok(line.trim().to_owned()),
            _ => Err(format!("NetworkManager --version: {}", out.status)),
        }
    }
}

/// A fresh copy of `suite`'s root with the binaries under test copied in
/// (a release build of this machine runs on bookworm and newer), booted.
fn boot(suite: Suite, baseline: Option<&Path>) -> Result<Container, String> {
    let fail = |e: netbridge_tests::lab::LabError| format!("the Debian {suite} host: {e}");
    let mut container = Container::create_on(suite, Uplink::Static).map_err(fail)?;
    let netbridge: PathBuf = lab::netbridge_bin().map_err(fail)?;
    container
        .copy_file(&netbridge, NETBRIDGE_IN_ROOT, 0o755)
        .map_err(fail)?;
    if let Some(bin) = baseline {
        container
            .copy_file(bin, BASELINE_IN_ROOT, 0o755)
            .map_err(fail)?;
    }
    container.boot().map_err(fail)?;
    Ok(container)
}
