//! The three ways to convert the lab's uplink into br0 that the benchmark
//! compares, and the check that each really ended with the host on br0.

use std::path::PathBuf;
use std::process::Command;

use netbridge_tests::lab::{Lab, GATEWAY, PREFIX_LEN, STATIC_ADDRESS, UPLINK};
use serde_json::Value;

use super::proc::Timed;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tool {
    Netbridge,
    Nmcli,
    Nmstate,
}

impl Tool {
    pub const ALL: [Tool; 3] = [Tool::Netbridge, Tool::Nmcli, Tool::Nmstate];

    pub fn title(self) -> &'static str {
        match self {
            Tool::Netbridge => "netbridge convert",
            Tool::Nmcli => "nmcli recipe",
            Tool::Nmstate => "nmstatectl apply",
        }
    }
}

/// The recipe of design.md, adapted to the lab: bridge br0, port ens32, the
/// host's address, gateway and DNS on br0. Run as one shell script, as an
/// operator pastes it; "done" when the last command returns.
pub const NMCLI_RECIPE: &str = "set -e
nmcli connection add type bridge autoconnect yes ifname br0 con-name br0
nmcli connection add type bridge-slave autoconnect yes ifname ens32 con-name ens32-port master br0
nmcli connection modify br0 ipv4.method manual ipv4.addresses 172.25.250.10/24 ipv4.gateway 172.25.250.254 ipv4.dns 172.25.250.254
nmcli connection up br0
nmcli connection up ens32-port
";

/// nmstate's desired state equivalent to what netbridge creates (STP off as
/// netbridge's default; IPv6 off as the lab's uplink has it).
pub const NMSTATE_YAML: &str = "\
dns-resolver:
  config:
    server:
      - 172.25.250.254
routes:
  config:
    - destination: 0.0.0.0/0
      next-hop-interface: br0
      next-hop-address: 172.25.250.254
interfaces:
  - name: br0
    type: linux-bridge
    state: up
    ipv4:
      enabled: true
      dhcp: false
      address:
        - ip: 172.25.250.10
          prefix-length: 24
    ipv6:
      enabled: false
    bridge:
      options:
        stp:
          enabled: false
      port:
        - name: ens32
";

/// How to run each tool; owns the nmstate state file.
pub struct Tools {
    nmstatectl: Option<PathBuf>,
    state_file: PathBuf,
    _dir: tempfile::TempDir,
}

impl Tools {
    pub fn new(nmstatectl: Option<PathBuf>) -> Result<Tools, String> {
        let dir = tempfile::Builder::new()
            .prefix("netbridge-bench-")
            .tempdir()
            .map_err(|e| format!("cannot create a temporary directory: {e}"))?;
        let state_file = dir.path().join("br0.yml");
        std::fs::write(&state_file, NMSTATE_YAML)
            .map_err(|e| format!("cannot write {}: {e}", state_file.display()))?;
        Ok(Tools {
            nmstatectl,
            state_file,
            _dir: dir,
        })
    }

    /// Why `tool` cannot be measured, if it cannot.
    pub fn unavailable(&self, tool: Tool) -> Option<&'static str> {
        (tool == Tool::Nmstate && self.nmstatectl.is_none()).then_some("nmstatectl not installed")
    }

    /// The conversion command, in the lab's host namespace with its bus.
    pub fn command(&self, tool: Tool, lab: &Lab) -> Result<Command, String> {
        match tool {
            Tool::Netbridge => Ok(lab.netbridge(["convert", UPLINK, "--yes", "--json"])),
            Tool::Nmcli => Ok(lab.host_command(["sh", "-c", NMCLI_RECIPE])),
            Tool::Nmstate => {
                let bin = self.nmstatectl.as_ref().ok_or("nmstatectl not installed")?;
                let mut command = lab.host_command([bin.as_os_str()]);
                command.arg("apply").arg(&self.state_file);
                Ok(command)
            }
        }
    }
}

/// Whether the command says it succeeded; netbridge must also report
/// `expected` ("committed", or "unchanged" on a converted host) in its JSON.
pub fn check_exit(tool: Tool, run: &Timed, expected: &str) -> Result<(), String> {
    if run.code != Some(0) {
        return Err(format!("{} failed: {}", tool.title(), run.describe()));
    }
    if tool != Tool::Netbridge {
        return Ok(());
    }
    let json: Value = serde_json::from_str(&run.stdout)
        .map_err(|e| format!("netbridge printed no JSON ({e}): {}", run.stdout.trim()))?;
    match json.get("result").and_then(Value::as_str) {
        Some(result) if result == expected => Ok(()),
        other => Err(format!(
            "netbridge reported {other:?}, expected {expected:?}: {}",
            json.get("error").unwrap_or(&Value::Null)
        )),
    }
}

/// The end state every tool must reach (checked after timing): ens32 a port
/// of br0, br0 with the host's address and the default route.
pub fn verify_bridge(lab: &Lab) -> Result<(), String> {
    let master = ip_json(lab, &["link", "show", UPLINK])?;
    let master = master
        .get(0)
        .and_then(|l| l.get("master"))
        .and_then(Value::as_str);
    if master != Some("br0") {
        return Err(format!("{UPLINK} is not a port of br0 (master {master:?})"));
    }
    let addresses = lab
        .ipv4_addresses("br0")
        .map_err(|e| format!("reading br0's addresses: {e}"))?;
    if !addresses.contains(&(STATIC_ADDRESS, PREFIX_LEN)) {
        return Err(format!(
            "br0 lacks {STATIC_ADDRESS}/{PREFIX_LEN}: {addresses:?}"
        ));
    }
    let routes = ip_json(lab, &["-4", "route", "show", "default"])?;
    let via_br0 = routes.as_array().into_iter().flatten().any(|r| {
        r.get("dev").and_then(Value::as_str) == Some("br0")
            && r.get("gateway").and_then(Value::as_str) == Some(&GATEWAY.to_string())
    });
    if via_br0 {
        Ok(())
    } else {
        Err(format!("no default route via {GATEWAY} on br0: {routes}"))
    }
}

fn ip_json(lab: &Lab, args: &[&str]) -> Result<Value, String> {
    let mut argv = vec!["ip", "-j"];
    argv.extend_from_slice(args);
    let out = lab.host(&argv);
    if !out.status.success() {
        return Err(format!(
            "ip {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    serde_json::from_slice(&out.stdout)
        .map_err(|e| format!("ip {} printed no JSON: {e}", args.join(" ")))
}
