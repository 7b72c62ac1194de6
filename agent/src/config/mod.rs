//! The agent's configuration: `/etc/netbridge/netbridge.toml` plus drop-ins
//! in `conf.d/*.toml` (read in name order; later files override). Every
//! error names the file, the line and the key; an invalid configuration is
//! rejected as a whole, so nothing is applied from it.

pub mod keys;
mod raw;
#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use ipnetwork::Ipv4Network;
use serde::Serialize;
use toml::Spanned;

use crate::checks::CheckSpec;
use crate::guest_forwarding::GuestForwarding;
use crate::libvirt::{LibvirtOptions, NetworkName};
use crate::plan::network::{self, DhcpRange, NetMode};
use crate::plan::{rollback_timeout_problem, validate_bridge_name};
use raw::{RawBridge, RawDefaults, RawFile};

pub const DEFAULT_PATH: &str = "/etc/netbridge/netbridge.toml";

#[derive(Debug, thiserror::Error, PartialEq)]
#[error("{}{}: {key}{}{message}", file.display(), line.map(|l| format!(":{l}")).unwrap_or_default(), if key.is_empty() { "" } else { ": " })]
pub struct ConfigError {
    pub file: PathBuf,
    pub line: Option<usize>,
    /// The key at fault, e.g. `bridge.uplink`; empty for syntax errors.
    pub key: String,
    pub message: String,
}

/// Where the uplink of a bridged network is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum UplinkSelector {
    /// An interface name, e.g. `ens32`.
    Name(String),
    /// The NIC with this MAC (`mac:52:54:00:12:34:56`), whatever its name.
    Mac(String),
    /// The interface holding the IPv4 default route (`default-route`).
    DefaultRoute,
}

impl std::fmt::Display for UplinkSelector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            UplinkSelector::Name(n) => f.write_str(n),
            UplinkSelector::Mac(m) => write!(f, "mac:{m}"),
            UplinkSelector::DefaultRoute => f.write_str("default-route"),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "mode", rename_all = "kebab-case")]
pub enum Mode {
    /// The uplink becomes a port; the host's IP configuration moves to the bridge.
    Bridged { uplink: UplinkSelector },
    /// A private network for guests (NAT or host-only).
    Network {
        kind: NetMode,
        address: Ipv4Network,
        dhcp: Option<DhcpRange>,
        dhcp_enabled: bool,
    },
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BridgeConfig {
    pub name: String,
    #[serde(flatten)]
    pub mode: Mode,
    pub stp: bool,
    pub mtu: Option<u32>,
    /// STP timers and multicast snooping, as declared (absent: left as they are).
    #[serde(flatten)]
    pub timers: Timers,
    pub checks: Vec<CheckSpec>,
    pub default_checks: bool,
    /// The default `guest-path` check (with the other defaults). Left out of
    /// the fingerprint while on, so configurations written before it existed
    /// keep theirs.
    #[serde(skip_serializing_if = "is_on")]
    pub guest_check: bool,
    /// Take over a hand-made bridge whose port the uplink is. Left out of
    /// the fingerprint while off, for the same reason.
    #[serde(skip_serializing_if = "is_off")]
    pub adopt: bool,
    /// `state = "absent"`: netbridge undoes this bridge (revert, or delete
    /// for a network). Left out of the fingerprint while present.
    #[serde(skip_serializing_if = "is_off")]
    pub absent: bool,
    /// `allow`: the host firewall accepts forwarding between the bridge's
    /// ports (`netbridge guest-forwarding` applies it). Left out of the
    /// fingerprint while `deny`, for the same reason as `guest_check`.
    #[serde(skip_serializing_if = "GuestForwarding::is_deny")]
    pub guest_forwarding: GuestForwarding,
    pub rollback_timeout: Option<u32>,
    /// `libvirt-network`, `qemu-bridge-helper` (bridged mode only).
    #[serde(flatten)]
    pub libvirt: LibvirtOptions,
    #[serde(skip)]
    pub origin: PathBuf,
}

/// The bridge options beyond STP and MTU; each left out of the fingerprint
/// while absent, so configurations written before they existed keep theirs.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Timers {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub forward_delay: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hello_time: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_age: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stp_priority: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub multicast_snooping: Option<bool>,
}

impl BridgeConfig {
    /// The declared bridge options, as the planner takes them.
    pub fn options(&self) -> crate::plan::BridgeOptions {
        crate::plan::BridgeOptions {
            stp: self.stp,
            forward_delay: self.timers.forward_delay,
            hello_time: self.timers.hello_time,
            max_age: self.timers.max_age,
            priority: self.timers.stp_priority,
            multicast_snooping: self.timers.multicast_snooping,
            mtu: self.mtu,
        }
    }
}

fn is_on(value: &bool) -> bool {
    *value
}

fn is_off(value: &bool) -> bool {
    !*value
}

impl BridgeConfig {
    /// A stable rendering of what was asked, to tell a changed entry from an unchanged one.
    pub fn fingerprint(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct Config {
    /// The files read, in order.
    pub files: Vec<PathBuf>,
    pub bridges: Vec<BridgeConfig>,
}

/// The files that make up a configuration at `path`: the main file (if it
/// exists) and `conf.d/*.toml` beside it, in name order. `path` may also be
/// a directory holding `netbridge.toml` and `conf.d/`.
pub fn files(path: &Path) -> Result<Vec<PathBuf>, ConfigError> {
    let (main, dir) = if path.is_dir() {
        (path.join("netbridge.toml"), path.to_path_buf())
    } else {
        let dir = path
            .parent()
            .map_or_else(|| PathBuf::from("."), Path::to_path_buf);
        (path.to_path_buf(), dir)
    };
    let mut out = Vec::new();
    if main.exists() {
        out.push(main);
    }
    let conf_d = dir.join("conf.d");
    match std::fs::read_dir(&conf_d) {
        Ok(entries) => {
            let mut dropins: Vec<PathBuf> = entries
                .filter_map(Result::ok)
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|e| e == "toml"))
                .collect();
            dropins.sort();
            out.extend(dropins);
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(io_error(&conf_d, &e)),
    }
    Ok(out)
}

fn io_error(path: &Path, e: &std::io::Error) -> ConfigError {
    ConfigError {
        file: path.to_path_buf(),
        line: None,
        key: String::new(),
        message: e.to_string(),
    }
}

/// Reads and validates the configuration at `path` (see [`files`]), off the
/// async runtime's thread.
pub async fn load(path: &Path) -> Result<Config, ConfigError> {
    let owned = path.to_path_buf();
    tokio::task::spawn_blocking(move || read(&owned))
        .await
        .unwrap_or_else(|e| Err(io_error(path, &std::io::Error::other(e))))
}

fn read(path: &Path) -> Result<Config, ConfigError> {
    let files = files(path)?;
    let mut sources = Vec::new();
    for file in &files {
        let text = std::fs::read_to_string(file).map_err(|e| io_error(file, &e))?;
        sources.push((file.clone(), text));
    }
    parse(&sources)
}

/// Parses already-read files: `(path, text)` in order.
pub fn parse(sources: &[(PathBuf, String)]) -> Result<Config, ConfigError> {
    let mut defaults: Vec<(usize, RawDefaults)> = Vec::new();
    let mut bridges: BTreeMap<String, (usize, Spanned<RawBridge>)> = BTreeMap::new();
    let mut order: Vec<String> = Vec::new();
    for (index, (file, text)) in sources.iter().enumerate() {
        let raw: RawFile = toml::from_str(text).map_err(|e| ConfigError {
            file: file.clone(),
            line: e.span().map(|s| line_of(text, s.start)),
            key: e
                .span()
                .and_then(|s| key_at(text, s.start))
                .unwrap_or_default(),
            message: e.message().trim().to_owned(),
        })?;
        if let Some(d) = raw.defaults {
            defaults.push((index, d));
        }
        let mut seen_here = BTreeMap::new();
        for bridge in raw.bridge {
            let name = bridge.get_ref().name.get_ref().clone();
            let line = line_of(text, bridge.get_ref().name.span().start);
            if let Some(first) = seen_here.insert(name.clone(), line) {
                return Err(ConfigError {
                    file: file.clone(),
                    line: Some(line),
                    key: "bridge.name".into(),
                    message: format!(
                        "bridge {name:?} is defined twice in this file (first on line {first})"
                    ),
                });
            }
            if !order.contains(&name) {
                order.push(name.clone());
            }
            bridges.insert(name, (index, bridge));
        }
    }
    let merged = merge_defaults(&defaults, sources)?;
    let mut out = Vec::new();
    for name in order {
        if let Some((index, bridge)) = bridges.remove(&name) {
            let (file, text) = &sources[index];
            out.push(resolve(bridge.get_ref(), &merged, file, text)?);
        }
    }
    check_uplinks_unique(&out, sources)?;
    Ok(Config {
        files: sources.iter().map(|(f, _)| f.clone()).collect(),
        bridges: out,
    })
}

/// The dotted key (`bridge.stp`) whose name or value holds byte `offset`,
/// so an error of the wrong type names the key as every other error does.
/// Array indices are left out: the line tells which entry.
fn key_at(text: &str, offset: usize) -> Option<String> {
    let document = toml::de::DeTable::parse(text).ok()?;
    let mut path = Vec::new();
    key_in(document.get_ref(), offset, &mut path).then(|| path.join("."))
}

/// Tables (and arrays of tables) span only their header, so the search
/// descends into every one; a key or a plain value must hold `offset`.
fn key_in(table: &toml::de::DeTable<'_>, offset: usize, path: &mut Vec<String>) -> bool {
    for (key, value) in table {
        path.push(key.get_ref().to_string());
        if key.span().contains(&offset) || value_in(value, offset, path) {
            return true;
        }
        path.pop();
    }
    false
}

fn value_in(value: &Spanned<toml::de::DeValue<'_>>, offset: usize, path: &mut Vec<String>) -> bool {
    match value.get_ref() {
        toml::de::DeValue::Table(table) => key_in(table, offset, path),
        toml::de::DeValue::Array(items) => items.iter().any(|i| value_in(i, offset, path)),
        _ => value.span().contains(&offset),
    }
}

fn line_of(text: &str, offset: usize) -> usize {
    text.get(..offset)
        .map_or(1, |t| t.matches('\n').count() + 1)
}

/// Defaults after every file, each key from the last file that sets it.
struct Defaults {
    stp: bool,
    checks: Vec<CheckSpec>,
    default_checks: bool,
    guest_check: bool,
    guest_forwarding: GuestForwarding,
    rollback_timeout: Option<u32>,
}

fn merge_defaults(
    defaults: &[(usize, RawDefaults)],
    sources: &[(PathBuf, String)],
) -> Result<Defaults, ConfigError> {
    let mut out = Defaults {
        stp: false,
        checks: Vec::new(),
        default_checks: true,
        guest_check: true,
        guest_forwarding: GuestForwarding::Deny,
        rollback_timeout: None,
    };
    for (index, d) in defaults {
        let (file, text) = &sources[*index];
        let at = |key: &str, span: std::ops::Range<usize>, message: String| ConfigError {
            file: file.clone(),
            line: Some(line_of(text, span.start)),
            key: key.to_owned(),
            message,
        };
        if let Some(stp) = d.stp {
            out.stp = stp;
        }
        if let Some(dc) = d.default_checks {
            out.default_checks = dc;
        }
        if let Some(gc) = d.guest_check {
            out.guest_check = gc;
        }
        if let Some(checks) = &d.checks {
            out.checks = parse_checks(checks, "defaults.checks", &at)?;
        }
        if let Some(value) = &d.guest_forwarding {
            out.guest_forwarding = value
                .get_ref()
                .parse()
                .map_err(|e| at("defaults.guest-forwarding", value.span(), e))?;
        }
        if let Some(timeout) = &d.rollback_timeout {
            if let Some(reason) = rollback_timeout_problem(*timeout.get_ref()) {
                return Err(at("defaults.rollback-timeout", timeout.span(), reason));
            }
            out.rollback_timeout = Some(*timeout.get_ref());
        }
    }
    Ok(out)
}

fn parse_checks(
    checks: &[Spanned<String>],
    key: &str,
    at: &impl Fn(&str, std::ops::Range<usize>, String) -> ConfigError,
) -> Result<Vec<CheckSpec>, ConfigError> {
    checks
        .iter()
        .map(|c| {
            c.get_ref()
                .parse::<CheckSpec>()
                .map_err(|e| at(key, c.span(), e.to_string()))
        })
        .collect()
}

fn resolve(
    b: &RawBridge,
    defaults: &Defaults,
    file: &Path,
    text: &str,
) -> Result<BridgeConfig, ConfigError> {
    let at = |key: &str, span: std::ops::Range<usize>, message: String| ConfigError {
        file: file.to_path_buf(),
        line: Some(line_of(text, span.start)),
        key: key.to_owned(),
        message,
    };
    let name = b.name.get_ref().clone();
    validate_bridge_name(&name).map_err(|e| at("bridge.name", b.name.span(), e.to_string()))?;
    let mode = resolve_mode(b, &at)?;
    let checks = match &b.checks {
        Some(checks) => parse_checks(checks, "bridge.checks", &at)?,
        None => defaults.checks.clone(),
    };
    let rollback_timeout = match &b.rollback_timeout {
        Some(t) => {
            if let Some(reason) = rollback_timeout_problem(*t.get_ref()) {
                return Err(at("bridge.rollback-timeout", t.span(), reason));
            }
            Some(*t.get_ref())
        }
        None => defaults.rollback_timeout,
    };
    let guest_forwarding = match &b.guest_forwarding {
        Some(value) => value
            .get_ref()
            .parse()
            .map_err(|e| at("bridge.guest-forwarding", value.span(), e))?,
        None => defaults.guest_forwarding,
    };
    let mtu = match &b.mtu {
        Some(m) if !(68..=65535).contains(m.get_ref()) => {
            return Err(at(
                "bridge.mtu",
                m.span(),
                format!("{} is not an MTU (68 to 65535)", m.get_ref()),
            ))
        }
        Some(m) => Some(*m.get_ref()),
        None => None,
    };
    let ranged =
        |key: &str, value: &Option<Spanned<u32>>, range: std::ops::RangeInclusive<u32>| match value
        {
            Some(v) if !range.contains(v.get_ref()) => Err(at(
                key,
                v.span(),
                format!(
                    "{} is out of range ({}–{})",
                    v.get_ref(),
                    range.start(),
                    range.end()
                ),
            )),
            Some(v) => Ok(Some(*v.get_ref())),
            None => Ok(None),
        };
    let timers = Timers {
        forward_delay: ranged("bridge.forward-delay", &b.forward_delay, 2..=30)?,
        hello_time: ranged("bridge.hello-time", &b.hello_time, 1..=10)?,
        max_age: ranged("bridge.max-age", &b.max_age, 6..=40)?,
        stp_priority: ranged("bridge.stp-priority", &b.stp_priority, 0..=65535)?,
        multicast_snooping: b.multicast_snooping,
    };
    Ok(BridgeConfig {
        name,
        mode,
        stp: b.stp.unwrap_or(defaults.stp),
        mtu,
        timers,
        checks,
        default_checks: b.default_checks.unwrap_or(defaults.default_checks),
        guest_check: b.guest_check.unwrap_or(defaults.guest_check),
        adopt: b.adopt.unwrap_or(false),
        absent: match &b.state {
            None => false,
            Some(s) => match s.get_ref().as_str() {
                "present" => false,
                "absent" => true,
                other => {
                    return Err(at(
                        "bridge.state",
                        s.span(),
                        format!("{other:?} is not a state: use \"present\" or \"absent\""),
                    ))
                }
            },
        },
        guest_forwarding,
        rollback_timeout,
        libvirt: resolve_libvirt(b, &at)?,
        origin: file.to_path_buf(),
    })
}

/// The libvirt keys: for a bridge that takes the host's uplink, where guests
/// reach the LAN (`netbridge create`'s networks are NetworkManager's own).
fn resolve_libvirt(
    b: &RawBridge,
    at: &impl Fn(&str, std::ops::Range<usize>, String) -> ConfigError,
) -> Result<LibvirtOptions, ConfigError> {
    let bridged = b.mode.as_ref().is_none_or(|m| m.get_ref() == "bridged");
    let network = match &b.libvirt_network {
        Some(n) if !bridged => {
            return Err(at(
                "bridge.libvirt-network",
                n.span(),
                "only for mode = \"bridged\"".into(),
            ))
        }
        Some(n) => Some(
            n.get_ref()
                .parse::<NetworkName>()
                .map_err(|e| at("bridge.libvirt-network", n.span(), e.to_string()))?,
        ),
        None => None,
    };
    let qemu_bridge_helper = b.qemu_bridge_helper.unwrap_or(false);
    if qemu_bridge_helper && !bridged {
        return Err(at(
            "bridge.qemu-bridge-helper",
            b.name.span(),
            "only for mode = \"bridged\"".into(),
        ));
    }
    Ok(LibvirtOptions {
        network,
        qemu_bridge_helper,
    })
}

fn resolve_mode(
    b: &RawBridge,
    at: &impl Fn(&str, std::ops::Range<usize>, String) -> ConfigError,
) -> Result<Mode, ConfigError> {
    let mode = b.mode.as_ref().map_or("bridged", |m| m.get_ref().as_str());
    let mode_span = b.mode.as_ref().map_or(b.name.span(), |m| m.span());
    let not_for = |key: &str, span: std::ops::Range<usize>| {
        at(key, span, format!("not used with mode = \"{mode}\""))
    };
    match mode {
        "bridged" => {
            for (key, field) in [
                ("bridge.address", &b.address),
                ("bridge.dhcp-range", &b.dhcp_range),
            ] {
                if let Some(f) = field {
                    return Err(not_for(key, f.span()));
                }
            }
            let Some(uplink) = &b.uplink else {
                return Err(at("bridge.uplink", b.name.span(), "missing: a bridged network needs its uplink (a name, \"default-route\" or \"mac:…\")".into()));
            };
            let selector = uplink
                .get_ref()
                .parse::<UplinkSelector>()
                .map_err(|m| at("bridge.uplink", uplink.span(), m))?;
            Ok(Mode::Bridged { uplink: selector })
        }
        "nat" | "isolated" => {
            if let Some(u) = &b.uplink {
                return Err(not_for("bridge.uplink", u.span()));
            }
            let Some(address) = &b.address else {
                return Err(at("bridge.address", b.name.span(), format!("missing: a {mode} network needs the bridge's address, like 192.168.107.254/24")));
            };
            let net = network::parse_address(address.get_ref())
                .map_err(|m| at("bridge.address", address.span(), m))?;
            let dhcp = match &b.dhcp_range {
                Some(r) => Some(
                    network::parse_range(r.get_ref(), net)
                        .map_err(|m| at("bridge.dhcp-range", r.span(), m))?,
                ),
                None => None,
            };
            let kind = if mode == "nat" {
                NetMode::Nat
            } else {
                NetMode::Isolated
            };
            Ok(Mode::Network {
                kind,
                address: net,
                dhcp,
                dhcp_enabled: b.dhcp.unwrap_or(kind == NetMode::Nat),
            })
        }
        other => Err(at(
            "bridge.mode",
            mode_span,
            format!("{other:?} is not a mode: use \"bridged\", \"nat\" or \"isolated\""),
        )),
    }
}

/// The same three forms on the command line (`netbridge convert`) and in
/// the configuration (`uplink = …`).
impl std::str::FromStr for UplinkSelector {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        if text == "default-route" {
            return Ok(UplinkSelector::DefaultRoute);
        }
        if let Some(mac) = text.strip_prefix("mac:") {
            let ok = mac.split(':').count() == 6
                && mac
                    .split(':')
                    .all(|b| b.len() == 2 && b.chars().all(|c| c.is_ascii_hexdigit()));
            return if ok {
                Ok(UplinkSelector::Mac(mac.to_ascii_uppercase()))
            } else {
                Err(format!(
                    "{mac:?} is not a MAC address like 52:54:00:12:34:56"
                ))
            };
        }
        validate_bridge_name(text).map_err(|_| {
            format!("{text:?} is not an interface name, \"default-route\" or \"mac:…\"")
        })?;
        Ok(UplinkSelector::Name(text.to_owned()))
    }
}

fn check_uplinks_unique(
    bridges: &[BridgeConfig],
    sources: &[(PathBuf, String)],
) -> Result<(), ConfigError> {
    let mut claimed: BTreeMap<String, &BridgeConfig> = BTreeMap::new();
    for b in bridges {
        let Mode::Bridged { uplink } = &b.mode else {
            continue;
        };
        if let Some(first) = claimed.insert(uplink.to_string(), b) {
            let text = sources
                .iter()
                .find(|(f, _)| *f == b.origin)
                .map_or("", |(_, t)| t.as_str());
            let needle = format!("\"{}\"", b.name);
            let line = text.find(&needle).map(|o| line_of(text, o));
            return Err(ConfigError {
                file: b.origin.clone(),
                line,
                key: "bridge.uplink".into(),
                message: format!(
                    "bridges {:?} and {:?} (in {}) both claim the uplink {uplink}",
                    first.name,
                    b.name,
                    first.origin.display()
                ),
            });
        }
    }
    Ok(())
}
