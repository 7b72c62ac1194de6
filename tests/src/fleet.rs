//! A fleet in the lab: several lab hosts, each with its own NetworkManager
//! and an SSH server in its host namespace, and an Ansible controller on the
//! machine that reaches each host only through that host's LAN namespace —
//! so `fleet/rollout.yml` runs as against real hosts, over the very link
//! each host converts, and no packet leaves the lab namespaces.
//!
//! ```text
//!   controller (the machine)   ssh -o ProxyCommand="ip netns exec <L> nc %h %p"
//!        |                          |
//!        +-- h1: L1 --veth-- H1: sshd, NetworkManager, netbridge
//!        +-- h2: L2 --veth-- H2: ...      (every H has 172.25.250.10)
//!        +-- h3: ...
//! ```
//!
//! ansible-core comes from PyPI into a venv cached outside the repository
//! ([`AnsibleVenv`], `$NETBRIDGE_ANSIBLE_VENV`). What cannot start is
//! reported like every lab failure: `LAB UNAVAILABLE: <reason>`, fatal
//! under `CI=true`, skippable elsewhere with `NETBRIDGE_SKIP_LAB=1`.

mod controller;
pub mod sanity;
mod sshd;
mod venv;

pub use controller::{Controller, PlaybookRun};
pub use sshd::Sshd;
pub use venv::{AnsibleVenv, VenvGuard, ANSIBLE_CORE};

use crate::lab::{cmd, unavailable, Lab, LabError, Uplink};

/// One configuration for a whole fleet of lab hosts: whichever NIC holds
/// the default route becomes br0's port, proven by pinging the gateway.
pub const FLEET_TOML: &str = r#"[[bridge]]
name = "br0"
uplink = "default-route"
checks = ["ping:172.25.250.254"]
"#;

/// The programs a fleet needs beyond the lab's, with their packages.
const TOOLS: [(&str, &str); 4] = [
    ("sshd", "openssh-server"),
    ("ssh", "openssh-client"),
    ("ssh-keygen", "openssh-client"),
    ("nc", "netcat-openbsd"),
];

/// One lab host with its SSH server. The server is declared first so it
/// is stopped before the lab deletes the namespace it runs in.
pub struct FleetHost {
    sshd: Sshd,
    lab: Lab,
    name: String,
}

impl FleetHost {
    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn lab(&self) -> &Lab {
        &self.lab
    }

    pub fn sshd(&self) -> &Sshd {
        &self.sshd
    }
}

/// Lab hosts with static uplinks (172.25.250.10/24 each, in its own lab),
/// an SSH server on each and a controller whose inventory lists them in
/// order, in the group `netbridge`.
pub struct Fleet {
    hosts: Vec<FleetHost>,
    controller: Controller,
}

impl Fleet {
    /// The controller first (building the ansible venv is the likeliest
    /// to fail), then the hosts, started concurrently.
    pub fn start(names: &[&str]) -> Result<Fleet, LabError> {
        check_tools()?;
        let controller = Controller::new()?;
        let key = controller.public_key()?;
        let hosts = start_hosts(names, &key)?;
        let listed: Vec<(&str, &Lab)> = hosts.iter().map(|h| (h.name(), h.lab())).collect();
        controller.write_inventory(&listed)?;
        Ok(Fleet { hosts, controller })
    }

    /// [`Fleet::start`] for tests: prints `LAB UNAVAILABLE: <reason>` and
    /// panics when the fleet cannot start — unless `NETBRIDGE_SKIP_LAB=1`
    /// is set (and `CI` is not `true`); then returns `None`.
    pub fn require(names: &[&str]) -> Option<Fleet> {
        match Fleet::start(names) {
            Ok(fleet) => Some(fleet),
            Err(e) => unavailable(&e.to_string(), &["NETBRIDGE_SKIP_LAB"]),
        }
    }

    pub fn controller(&self) -> &Controller {
        &self.controller
    }

    pub fn hosts(&self) -> &[FleetHost] {
        &self.hosts
    }

    /// # Panics
    /// If there is no host called `name` (a mistake in the test).
    pub fn host(&self, name: &str) -> &FleetHost {
        self.hosts
            .iter()
            .find(|h| h.name == name)
            .unwrap_or_else(|| panic!("fleet: no host {name}"))
    }
}

/// [`sanity::run`] for tests: prints `LAB UNAVAILABLE: <reason>` and panics
/// when it cannot run (the venv cannot be built, ansible-test cannot start
/// or hangs) — unless `NETBRIDGE_SKIP_LAB=1` is set (and `CI` is not
/// `true`); then returns `None`.
pub fn require_sanity(
    timeout: std::time::Duration,
    scope: &sanity::Scope<'_>,
) -> Option<sanity::SanityRun> {
    match sanity::run(timeout, scope) {
        Ok(run) => Some(run),
        Err(e) => unavailable(&e.to_string(), &["NETBRIDGE_SKIP_LAB"]),
    }
}

fn start_hosts(names: &[&str], key: &str) -> Result<Vec<FleetHost>, LabError> {
    // Each host waits mostly for its NetworkManager: start them side by side.
    let started: Vec<Result<FleetHost, LabError>> = std::thread::scope(|scope| {
        let handles: Vec<_> = names
            .iter()
            .map(|name| scope.spawn(move || start_host(name, key)))
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join().unwrap_or_else(|_| {
                    Err(LabError::Prerequisite(
                        "a thread starting a fleet host panicked".to_owned(),
                    ))
                })
            })
            .collect()
    });
    // The first error wins; hosts that did start are dropped (stopped).
    started.into_iter().collect()
}

fn start_host(name: &str, key: &str) -> Result<FleetHost, LabError> {
    let lab = Lab::start(Uplink::Static)?;
    let sshd = Sshd::start(&lab, key)?;
    Ok(FleetHost {
        sshd,
        lab,
        name: name.to_owned(),
    })
}

fn check_tools() -> Result<(), LabError> {
    cmd::require_programs(&TOOLS)
}
