//! Pure planning: from what was found on the host and what was asked, decide
//! the profiles to create and what to expect once they run. No I/O here, so
//! every rule is unit-tested without a NetworkManager.

use std::net::IpAddr;
use std::time::Duration;

use ipnetwork::IpNetwork;
use netbridge_dbus::settings::{dict_str, dict_u32, ipv4_from_nm, ipv6_from_nm, names};
use netbridge_dbus::state::{DeviceState, DeviceType};
use netbridge_dbus::{Settings, SettingsError};
use serde::Serialize;

use crate::nm::{ActivationGoal, DefaultMetrics, DeviceInfo, LeaseOptions, NmVersion, ProfileInfo};

mod adopt;
mod carry;
mod marker;
mod modify;
pub mod network;
pub mod nmcli;
pub mod options;
pub mod revert;

pub use adopt::{AdoptPlan, ControllerFound};
pub use carry::{hold, LeaseHold};
pub use marker::Marker;
pub use modify::ModifyPlan;
pub use options::{BridgeOptions, OptionsRestore};

/// The oldest NetworkManager netbridge is tested on (Debian 11's 1.30; the
/// booted-host tests run 1.30, 1.42, 1.52 and 1.58). Older ones are
/// refused: no version range is claimed that no test ran.
pub const MIN_NM_VERSION: NmVersion = NmVersion(1, 30, 0);
/// NetworkManager's default STP forward delay, which a port waits out twice.
const STP_FORWARD_DELAY: u64 = 15;
/// Above this a rollback timer protects nothing useful: the operator is locked out for an hour.
pub const MAX_ROLLBACK_TIMEOUT: u32 = 3600;
pub const MIN_ROLLBACK_TIMEOUT: u32 = 5;

/// What the operator asked for.
#[derive(Debug, Clone)]
pub struct Request {
    pub uplink: String,
    pub bridge: String,
    /// STP and its timers, multicast snooping; `mtu` overrides the MTU
    /// carried over from the uplink.
    pub options: BridgeOptions,
    pub rollback_timeout: Option<u32>,
    /// Take over a bridge made by hand whose port the uplink already is.
    pub adopt: bool,
}

/// What was found on the host, read from NetworkManager.
#[derive(Debug, Clone)]
pub struct Found {
    pub devices: Vec<DeviceInfo>,
    pub profiles: Vec<ProfileInfo>,
    pub uplink: Option<UplinkFound>,
}

#[derive(Debug, Clone)]
pub struct UplinkFound {
    pub device: DeviceInfo,
    pub active: Option<ActiveProfile>,
    /// The interface this device is a port of, if any.
    pub controller: Option<String>,
    /// That bridge, its active profile and its ports.
    pub controller_found: Option<ControllerFound>,
    /// The options of its DHCPv4 and DHCPv6 leases (empty without one).
    pub lease4: LeaseOptions,
    pub lease6: LeaseOptions,
    /// The metrics its default routes run with.
    pub metrics: DefaultMetrics,
}

/// The profile active on the uplink.
#[derive(Debug, Clone)]
pub struct ActiveProfile {
    pub info: ProfileInfo,
    /// The settings the device runs with (what to carry over).
    pub applied: Settings,
    /// The profile as stored (what to write back with autoconnect off).
    pub saved: Settings,
}

/// Fresh identifiers for the profiles to create (given, so plans are reproducible in tests).
#[derive(Debug, Clone)]
pub struct Ids {
    pub bridge_uuid: String,
    pub port_uuid: String,
    /// For an adoption: the plain profile made for the uplink.
    pub original_uuid: String,
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum PlanError {
    #[error("NetworkManager {found} is too old: netbridge needs {need} or newer")]
    NmTooOld { found: NmVersion, need: NmVersion },
    #[error("invalid bridge name {name:?}: {reason}")]
    BridgeName { name: String, reason: &'static str },
    #[error("no network device named {name:?} (NetworkManager has: {known})")]
    UnknownUplink { name: String, known: String },
    #[error("{name} is the loopback device; the uplink must be an Ethernet-like NIC")]
    Loopback { name: String },
    #[error("{name} is not managed by NetworkManager (state {state}); let NetworkManager manage it first (e.g. check its unmanaged-devices and udev rules)")]
    Unmanaged { name: String, state: DeviceState },
    #[error("{name} is a {kind} device; netbridge converts ethernet, veth, bond and vlan uplinks")]
    UnsupportedType { name: String, kind: DeviceType },
    #[error("{uplink} is already a port of {bridge}, a bridge netbridge did not make; `netbridge convert {uplink} --bridge {bridge} --adopt` takes it over (STP off unless --stp on; `netbridge revert {bridge}` then gives back a plain {uplink})")]
    Foreign { uplink: String, bridge: String },
    #[error("--adopt: {bridge} has other ports besides the uplink ({}); netbridge adopts a bridge whose only port is the uplink", .ports.join(", "))]
    AdoptOtherPorts { bridge: String, ports: Vec<String> },
    #[error("--adopt: {bridge} or its port {uplink} has no active profile; bring both up first")]
    AdoptInactive { bridge: String, uplink: String },
    #[error("--adopt: {uplink} is not a port of {bridge}{}; there is nothing to adopt (without --adopt, convert makes a new bridge)", .actual.as_ref().map(|c| format!(" (it is a port of {c})")).unwrap_or_default())]
    NothingToAdopt {
        uplink: String,
        bridge: String,
        actual: Option<String>,
    },
    #[error("{name} is already a port of {controller}; {advice}")]
    AlreadyPort {
        name: String,
        controller: String,
        /// What to do instead, which depends on what the controller is.
        advice: String,
    },
    #[error(
        "{name} has no active profile (state {state}); bring it up with a working profile first"
    )]
    NoActiveProfile { name: String, state: DeviceState },
    #[error("the name {name:?} is already used by {by}; choose another name for the bridge")]
    NameTaken { name: String, by: String },
    #[error("--rollback-timeout {value}: {reason}")]
    RollbackTimeout { value: u32, reason: String },
    #[error("{name}'s IPv6 address{} {} would change on the bridge: stable-privacy addresses hash the interface name in, so NetworkManager cannot keep them — set ipv6.addr-gen-mode eui64 (or an ipv6.token) on profile '{profile}' first, or give the host a static IPv6 address", if addresses.len() > 1 { "es" } else { "" }, joined(addresses))]
    Ipv6Identity {
        name: String,
        profile: String,
        addresses: Vec<IpNetwork>,
    },
    #[error("the active profile of {name} has unreadable settings: {source}")]
    Settings {
        name: String,
        #[source]
        source: SettingsError,
    },
}

/// The outcome of planning.
#[derive(Debug, Clone)]
pub enum Decision {
    Convert(Box<Plan>),
    /// Take over the hand-made bridge the uplink is a port of.
    Adopt(Box<AdoptPlan>),
    /// Bring netbridge's bridge to the declared options, in place.
    Modify(Box<ModifyPlan>),
    /// The uplink is already a port of the requested bridge: nothing to do.
    AlreadyConverted {
        uplink: String,
        bridge: String,
    },
}

/// The user's original profile, kept (autoconnect off after commit) for `revert`.
#[derive(Debug, Clone, Serialize, serde::Deserialize, PartialEq)]
pub struct Original {
    pub uuid: String,
    pub id: String,
    pub autoconnect: bool,
}

/// The IP configuration as it will be carried over, for display and verification.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct IpPlan {
    pub method: String,
    pub addresses: Vec<IpNetwork>,
    pub gateway: Option<IpAddr>,
    pub dns: Vec<IpAddr>,
    pub searches: Vec<String>,
    pub routes: Vec<String>,
}

/// Deadlines sized for the bridge's STP setting.
#[derive(Debug, Clone, Copy, Serialize, PartialEq)]
pub struct Timing {
    pub rollback_timeout: u32,
    #[serde(with = "secs")]
    pub activation: Duration,
    #[serde(with = "secs")]
    pub check: Duration,
}

mod secs {
    pub fn serialize<S: serde::Serializer>(
        d: &std::time::Duration,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        s.serialize_f64(d.as_secs_f64())
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Plan {
    pub uplink: String,
    #[serde(skip)]
    pub uplink_path: zbus::zvariant::OwnedObjectPath,
    pub bridge: String,
    pub port_id: String,
    pub bridge_uuid: String,
    pub port_uuid: String,
    pub original: Original,
    pub mac: String,
    pub stp: bool,
    pub mtu: Option<u32>,
    pub ipv4: IpPlan,
    pub ipv6: IpPlan,
    pub timing: Timing,
    /// The DHCP lease held statically while the change is on trial.
    pub lease: Option<LeaseHold>,
    /// Other profiles that could claim the uplink at boot; the port outranks them.
    pub competing: Vec<String>,
    pub warnings: Vec<String>,
    #[serde(skip)]
    pub goal: ActivationGoal,
    /// The bridge profile as saved at commit.
    #[serde(skip)]
    pub bridge_profile: Settings,
    /// The bridge profile while on trial: with the lease held, if any.
    #[serde(skip)]
    pub bridge_trial: Settings,
    #[serde(skip)]
    pub port_profile: Settings,
}

/// A NetworkManager netbridge can work with. Checked before the host is
/// read: an older one lacks properties that read needs.
pub fn supported(version: NmVersion) -> Result<(), PlanError> {
    if version < MIN_NM_VERSION {
        return Err(PlanError::NmTooOld {
            found: version,
            need: MIN_NM_VERSION,
        });
    }
    Ok(())
}

pub fn plan_convert(req: &Request, found: &Found, ids: &Ids) -> Result<Decision, PlanError> {
    validate_bridge_name(&req.bridge)?;
    let uplink = check_uplink(req, found)?;
    if let Some(controller) = uplink
        .controller_found
        .as_ref()
        .filter(|c| c.device.interface == req.bridge)
    {
        return in_place(req, found, uplink, controller, ids);
    }
    if req.adopt {
        return Err(PlanError::NothingToAdopt {
            uplink: req.uplink.clone(),
            bridge: req.bridge.clone(),
            actual: uplink.controller.clone(),
        });
    }
    if let Some(controller) = &uplink.controller {
        return Err(PlanError::AlreadyPort {
            name: req.uplink.clone(),
            controller: controller.clone(),
            advice: already_port_advice(req, uplink, controller),
        });
    }
    let Some(active) = &uplink.active else {
        return Err(PlanError::NoActiveProfile {
            name: req.uplink.clone(),
            state: uplink.device.state,
        });
    };
    let port_id = format!("{}-port-{}", req.bridge, req.uplink);
    check_names_free(&req.bridge, &port_id, found)?;
    let timing = timing(req)?;
    let settings_error = |source| PlanError::Settings {
        name: req.uplink.clone(),
        source,
    };
    let plan = build(req, found, uplink, active, ids, port_id, timing).map_err(settings_error)?;
    let unkeepable =
        carry::unkeepable_ipv6(uplink, &active.applied, &plan.mac).map_err(settings_error)?;
    if !unkeepable.is_empty() {
        return Err(PlanError::Ipv6Identity {
            name: req.uplink.clone(),
            profile: active.info.id.clone(),
            addresses: unkeepable,
        });
    }
    Ok(Decision::Convert(Box::new(plan)))
}

/// The uplink is already a port of the requested bridge: netbridge's own
/// (nothing to do), one to adopt, or a foreign one to report.
fn in_place(
    req: &Request,
    found: &Found,
    uplink: &UplinkFound,
    controller: &ControllerFound,
    ids: &Ids,
) -> Result<Decision, PlanError> {
    if controller.is_netbridge() {
        return Ok(
            match modify::plan_modify(req, uplink, controller, timing(req)?)? {
                Some(plan) => Decision::Modify(Box::new(plan)),
                None => Decision::AlreadyConverted {
                    uplink: req.uplink.clone(),
                    bridge: req.bridge.clone(),
                },
            },
        );
    }
    if !req.adopt {
        return Err(PlanError::Foreign {
            uplink: req.uplink.clone(),
            bridge: req.bridge.clone(),
        });
    }
    let timing = timing(req)?;
    adopt::plan_adopt(req, found, uplink, controller, &ids.original_uuid, timing)
        .map(|plan| Decision::Adopt(Box::new(plan)))
}

/// Where to send an operator whose uplink is a port of another controller:
/// netbridge's own bridge is undone with `revert`, a hand-made one can be
/// adopted, and a bond or team is converted as a whole.
fn already_port_advice(req: &Request, uplink: &UplinkFound, controller: &str) -> String {
    let name = &req.uplink;
    match &uplink.controller_found {
        Some(c) if c.is_netbridge() => format!(
            "`netbridge revert {controller}` gives {name} back its original profile (then convert it again with --bridge {})",
            req.bridge
        ),
        Some(c) if c.device.device_type == DeviceType::Bridge => format!(
            "`netbridge convert {name} --bridge {controller} --adopt` takes that bridge over"
        ),
        Some(c) => format!(
            "convert the {} {controller} instead (`netbridge convert {controller} --bridge {}`)",
            c.device.device_type, req.bridge
        ),
        None => format!("detach {name} from {controller} first"),
    }
}

/// Interface names are at most 15 bytes; `/`, `:` and white space are not allowed by
/// the kernel or NetworkManager, and a conservative character set keeps names portable.
pub fn validate_bridge_name(name: &str) -> Result<(), PlanError> {
    let reason = if name.is_empty() {
        Some("it is empty")
    } else if name.len() > 15 {
        Some("interface names are at most 15 bytes")
    } else if name == "." || name == ".." {
        Some("'.' and '..' are not interface names")
    } else if !name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
    {
        Some("use only letters, digits, '-', '_' and '.'")
    } else {
        None
    };
    match reason {
        Some(reason) => Err(PlanError::BridgeName {
            name: name.to_owned(),
            reason,
        }),
        None => Ok(()),
    }
}

fn check_uplink<'a>(req: &Request, found: &'a Found) -> Result<&'a UplinkFound, PlanError> {
    let name = req.uplink.clone();
    let Some(uplink) = &found.uplink else {
        let known: Vec<&str> = found.devices.iter().map(|d| d.interface.as_str()).collect();
        return Err(PlanError::UnknownUplink {
            name,
            known: known.join(", "),
        });
    };
    let device = &uplink.device;
    match device.device_type {
        DeviceType::Loopback => Err(PlanError::Loopback { name }),
        DeviceType::Ethernet | DeviceType::Veth | DeviceType::Bond | DeviceType::Vlan => {
            if !device.managed || device.state == DeviceState::Unmanaged {
                Err(PlanError::Unmanaged {
                    name,
                    state: device.state,
                })
            } else {
                Ok(uplink)
            }
        }
        kind => Err(PlanError::UnsupportedType { name, kind }),
    }
}

fn check_names_free(bridge: &str, port_id: &str, found: &Found) -> Result<(), PlanError> {
    if let Some(device) = found.devices.iter().find(|d| d.interface == bridge) {
        return Err(PlanError::NameTaken {
            name: bridge.to_owned(),
            by: format!("an existing {} device", device.device_type),
        });
    }
    for name in [bridge, port_id] {
        let clash = found
            .profiles
            .iter()
            .find(|p| p.id == name || p.interface_name.as_deref() == Some(name));
        if let Some(p) = clash {
            return Err(PlanError::NameTaken {
                name: name.to_owned(),
                by: format!("profile '{}' ({})", p.id, p.uuid),
            });
        }
    }
    Ok(())
}

pub(crate) fn timing(req: &Request) -> Result<Timing, PlanError> {
    let forward_delay = req
        .options
        .forward_delay
        .map_or(STP_FORWARD_DELAY, u64::from);
    let stp_wait = if req.options.stp {
        2 * forward_delay
    } else {
        0
    };
    let activation = Duration::from_secs(30 + stp_wait);
    let check = Duration::from_secs(5 + stp_wait);
    let default_timeout = if req.options.stp { 90 } else { 30 };
    let rollback_timeout = req.rollback_timeout.unwrap_or(default_timeout);
    validate_rollback_timeout(rollback_timeout)?;
    Ok(Timing {
        rollback_timeout,
        activation,
        check,
    })
}

pub fn validate_rollback_timeout(value: u32) -> Result<(), PlanError> {
    match rollback_timeout_problem(value) {
        Some(reason) => Err(PlanError::RollbackTimeout { value, reason }),
        None => Ok(()),
    }
}

/// Why `value` is no rollback timeout, if it is not.
pub fn rollback_timeout_problem(value: u32) -> Option<String> {
    if value == 0 {
        Some("that would disable NetworkManager's automatic rollback, which is what keeps the host reachable if netbridge dies".to_owned())
    } else if value < MIN_ROLLBACK_TIMEOUT {
        Some(format!(
            "at least {MIN_ROLLBACK_TIMEOUT} seconds are needed to bring a bridge up"
        ))
    } else if value > MAX_ROLLBACK_TIMEOUT {
        Some(format!("more than {MAX_ROLLBACK_TIMEOUT} seconds would leave a broken host unreachable for too long"))
    } else {
        None
    }
}

fn build(
    req: &Request,
    found: &Found,
    uplink: &UplinkFound,
    active: &ActiveProfile,
    ids: &Ids,
    port_id: String,
    timing: Timing,
) -> Result<Plan, SettingsError> {
    let (profile, applied) = (&active.info, &active.applied);
    let mac = match &req.options.mac {
        Some(declared) => declared.clone(),
        None => bridge_mac(&uplink.device, applied)?,
    };
    let carried = applied.u32(names::ETHERNET, "mtu")?.filter(|m| *m != 0);
    let mtu = req.options.mtu.or(carried);
    let competing = competing_profiles(req, found, profile);
    let priority = competing
        .iter()
        .map(|p| p.autoconnect_priority)
        .max()
        .map_or(0, |p| (p + 1).min(999));
    let mut bridge_profile = bridge_profile(req, applied, &ids.bridge_uuid, &mac, mtu)?;
    carry::pin_runtime_identity(&mut bridge_profile, uplink)?;
    Marker {
        uplink: req.uplink.clone(),
        port_uuid: ids.port_uuid.clone(),
        original_uuid: profile.uuid.clone(),
        original_autoconnect: profile.autoconnect,
    }
    .write(&mut bridge_profile);
    let port_profile = port_profile(req, applied, ids, &port_id, priority)?;
    let ipv4 = ip_plan(&bridge_profile, names::IPV4, &uplink.device.ipv4)?;
    let ipv6 = ip_plan(&bridge_profile, names::IPV6, &uplink.device.ipv6)?;
    let lease = carry::lease_hold(uplink, &ipv4.method);
    let bridge_trial = match &lease {
        Some(lease) => hold(&bridge_profile, lease)?,
        None => bridge_profile.clone(),
    };
    let goal = goal(&ipv4, &ipv6);
    Ok(Plan {
        uplink: req.uplink.clone(),
        uplink_path: uplink.device.path.clone(),
        bridge: req.bridge.clone(),
        port_id,
        bridge_uuid: ids.bridge_uuid.clone(),
        port_uuid: ids.port_uuid.clone(),
        original: Original {
            uuid: profile.uuid.clone(),
            id: profile.id.clone(),
            autoconnect: profile.autoconnect,
        },
        warnings: warnings(req, &ipv4, lease.as_ref()),
        competing: competing.iter().map(|p| p.id.clone()).collect(),
        mac,
        stp: req.options.stp,
        mtu,
        ipv4,
        ipv6,
        timing,
        lease,
        goal,
        bridge_profile,
        bridge_trial,
        port_profile,
    })
}

pub(crate) fn needs_ready(method: &str) -> bool {
    matches!(method, "manual" | "auto" | "shared")
}

/// What activation must include before a device carrying `ipv4` and `ipv6`
/// counts as up: IPv6 only for static addresses (SLAAC may come later).
pub(crate) fn goal(ipv4: &IpPlan, ipv6: &IpPlan) -> ActivationGoal {
    ActivationGoal {
        ip4: needs_ready(&ipv4.method),
        ip6: ipv6.method == "manual" && !ipv6.addresses.is_empty(),
    }
}

/// `AA:BB:CC:DD:EE:FF` (either case) as bytes.
pub fn parse_mac(mac: &str) -> Option<[u8; 6]> {
    let bytes: Vec<u8> = mac
        .split(':')
        .map(|b| u8::from_str_radix(b, 16).ok())
        .collect::<Option<_>>()?;
    <[u8; 6]>::try_from(bytes).ok()
}

/// The MAC the network knows the host by: a MAC the profile pinned, else the
/// permanent one, else (veth) the current one.
fn bridge_mac(device: &DeviceInfo, applied: &Settings) -> Result<String, SettingsError> {
    let pinned = applied
        .str(names::ETHERNET, "assigned-mac-address")?
        .filter(|m| m.contains(':'));
    let mac = pinned
        .map(str::to_owned)
        .or_else(|| (!device.permanent_mac.is_empty()).then(|| device.permanent_mac.clone()))
        .unwrap_or_else(|| device.mac.clone());
    Ok(mac.to_ascii_uppercase())
}

/// Profiles other than the active one that NetworkManager could pick for the uplink.
fn competing_profiles<'a>(
    req: &Request,
    found: &'a Found,
    active: &ProfileInfo,
) -> Vec<&'a ProfileInfo> {
    found
        .profiles
        .iter()
        .filter(|p| p.uuid != active.uuid && p.autoconnect && p.controller.is_none())
        .filter(|p| {
            p.interface_name.as_deref() == Some(req.uplink.as_str())
                || (p.interface_name.is_none() && p.connection_type == active.connection_type)
        })
        .collect()
}

/// Read-modify-write rule: NetworkManager prefers the legacy form of a
/// property when both arrive, so drop the legacy form wherever the new one exists.
pub(crate) fn without_legacy_forms(settings: &Settings) -> Result<Settings, SettingsError> {
    let mut s = settings.clone();
    for ip in [names::IPV4, names::IPV6] {
        if s.raw(ip, "address-data").is_some() {
            s.remove(ip, "addresses");
        }
        if s.raw(ip, "route-data").is_some() {
            s.remove(ip, "routes");
        }
        if s.raw(ip, "dns-data").is_some() {
            s.remove(ip, "dns");
        }
    }
    Ok(s)
}

fn bridge_profile(
    req: &Request,
    applied: &Settings,
    uuid: &str,
    mac: &str,
    mtu: Option<u32>,
) -> Result<Settings, SettingsError> {
    let source = without_legacy_forms(applied)?;
    let mut s = Settings::new();
    s.set(names::CONNECTION, "id", req.bridge.as_str())
        .set(names::CONNECTION, "uuid", uuid)
        .set(names::CONNECTION, "type", "bridge")
        .set(names::CONNECTION, "interface-name", req.bridge.as_str())
        .set(names::CONNECTION, "autoconnect", true)
        // Legacy key on purpose: `autoconnect-ports` only exists from 1.46.
        .set(names::CONNECTION, "autoconnect-slaves", 1i32)
        .set(names::ETHERNET, "assigned-mac-address", mac);
    options::apply_to_new(&req.options, &mut s);
    if let Some(mtu) = mtu {
        s.set(names::ETHERNET, "mtu", mtu);
    }
    carry::carry_connection(applied, &mut s);
    for ip in [names::IPV4, names::IPV6, "proxy"] {
        for key in source.keys(ip).map(str::to_owned).collect::<Vec<_>>() {
            if let Some(value) = source.raw(ip, &key) {
                s.set(ip, &key, value.clone());
            }
        }
    }
    Ok(s)
}

fn port_profile(
    req: &Request,
    applied: &Settings,
    ids: &Ids,
    port_id: &str,
    priority: i32,
) -> Result<Settings, SettingsError> {
    let mut s = applied.clone();
    // A port carries no IP configuration: the bridge does.
    for setting in [names::CONNECTION, names::IPV4, names::IPV6, "proxy"] {
        s.remove_setting(setting);
    }
    let kind = applied
        .str(names::CONNECTION, "type")?
        .unwrap_or("802-3-ethernet");
    s.set(names::CONNECTION, "id", port_id)
        .set(names::CONNECTION, "uuid", ids.port_uuid.as_str())
        .set(names::CONNECTION, "type", kind)
        .set(names::CONNECTION, "interface-name", req.uplink.as_str())
        // Legacy keys on purpose: `controller`/`port-type` only exist from 1.46.
        .set(names::CONNECTION, "master", ids.bridge_uuid.as_str())
        .set(names::CONNECTION, "slave-type", "bridge")
        .set(names::CONNECTION, "autoconnect", true)
        .set(names::CONNECTION, "autoconnect-priority", priority)
        .ensure_setting(names::BRIDGE_PORT);
    if let Some(mtu) = req.options.mtu {
        // A port's MTU caps the bridge's.
        s.set(names::ETHERNET, "mtu", mtu);
    }
    Ok(s)
}

pub(crate) fn ip_plan(
    profile: &Settings,
    ip: &str,
    runtime: &crate::nm::IpRuntime,
) -> Result<IpPlan, SettingsError> {
    let method = profile.str(ip, "method")?.unwrap_or("auto").to_owned();
    let configured = profile
        .dict_list(ip, "address-data")?
        .iter()
        .filter_map(|d| {
            let addr: IpAddr = dict_str(d, "address")?.parse().ok()?;
            IpNetwork::new(addr, u8::try_from(dict_u32(d, "prefix")?).ok()?).ok()
        })
        .collect::<Vec<_>>();
    let addresses = if method == "manual" {
        configured
    } else {
        runtime
            .addresses
            .iter()
            .filter(|n| !is_link_local(n.ip()))
            .copied()
            .collect()
    };
    let gateway = profile
        .str(ip, "gateway")?
        .and_then(|g| g.parse().ok())
        .or(runtime.gateway);
    let mut dns = profile_dns(profile, ip)?;
    for server in &runtime.dns {
        if !dns.contains(server) {
            dns.push(*server);
        }
    }
    let routes = profile
        .dict_list(ip, "route-data")?
        .iter()
        .filter_map(|d| {
            let dest = dict_str(d, "dest")?;
            let prefix = dict_u32(d, "prefix")?;
            Some(match dict_str(d, "next-hop") {
                Some(via) => format!("{dest}/{prefix} via {via}"),
                None => format!("{dest}/{prefix}"),
            })
        })
        .collect();
    Ok(IpPlan {
        method,
        addresses,
        gateway,
        dns,
        searches: profile.strings(ip, "dns-search")?,
        routes,
    })
}

fn profile_dns(profile: &Settings, ip: &str) -> Result<Vec<IpAddr>, SettingsError> {
    let from_data: Vec<IpAddr> = profile
        .strings(ip, "dns-data")?
        .iter()
        .filter_map(|s| s.parse().ok())
        .collect();
    if !from_data.is_empty() {
        return Ok(from_data);
    }
    Ok(if ip == names::IPV4 {
        profile
            .u32s(ip, "dns")?
            .into_iter()
            .map(|n| IpAddr::V4(ipv4_from_nm(n)))
            .collect()
    } else {
        profile
            .byte_arrays(ip, "dns")?
            .iter()
            .filter_map(|b| ipv6_from_nm(b).map(IpAddr::V6))
            .collect()
    })
}

fn is_link_local(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4.is_link_local(),
        IpAddr::V6(v6) => (v6.segments()[0] & 0xffc0) == 0xfe80,
    }
}

fn joined<T: std::fmt::Display>(items: &[T]) -> String {
    items
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

fn warnings(req: &Request, ipv4: &IpPlan, lease: Option<&LeaseHold>) -> Vec<String> {
    if ipv4.method == "auto" && lease.is_none() {
        vec![format!(
            "{} gets its address by DHCP but NetworkManager reports no lease: nothing holds the address if the DHCP server stops answering during the change",
            req.uplink
        )]
    } else {
        Vec::new()
    }
}

impl Plan {
    /// The bridge profile as first activated, with no ports pulled in:
    /// netbridge attaches the uplink once the bridge is ready for it.
    /// A static bridge comes with all of its IP configuration, at a route
    /// metric that loses to every other route, so replies keep leaving
    /// through the uplink until the uplink is its port. A DHCP bridge comes
    /// without IP, as its DHCP client would start only with the port anyway,
    /// and a bridge waiting for its server would never finish activating
    /// when the server is silent; it gets its IP configuration once the port
    /// is attached.
    pub fn bridge_staged(&self) -> Settings {
        let mut staged = self.bridge_trial.clone();
        staged.set(names::CONNECTION, "autoconnect-slaves", 0i32);
        if self.ipv4.method == "auto" {
            for ip in [names::IPV4, names::IPV6] {
                staged.remove_setting(ip);
            }
            staged
                .set(names::IPV4, "method", "disabled")
                .set(names::IPV6, "method", "ignore");
        } else {
            staged_metric(&mut staged);
            // NetworkManager 1.46 and newer probe an address for conflicts
            // first (200 ms by default) and only with a carrier, which a
            // bridge without port lacks: the address would come only after
            // the hand-over, and meanwhile a /32 route to the gateway on
            // the bridge (nm-l3cfg's dependent on-link routes) pulls the
            // replies into it. The uplink holds the address already; the
            // planned value comes back with the Reapply, when the address
            // is on the link and NetworkManager skips the probe.
            staged.set(names::IPV4, "dad-timeout", 0i32);
        }
        staged
    }

    /// What the bridge runs once its port is attached: its planned
    /// configuration, but `autoconnect-slaves` as it was activated
    /// ([`Plan::bridge_staged`]). Reapply refuses to change that key before
    /// NetworkManager 1.42 (1.30 answers IncompatibleConnection), and it
    /// only matters at the next activation, which reads the profile: the
    /// profile has the planned value, saved at the commit.
    pub fn bridge_reapplied(&self) -> Settings {
        let mut running = self.bridge_trial.clone();
        running.set(names::CONNECTION, "autoconnect-slaves", 0i32);
        running
    }
}

/// The route metric of a bridge that holds the address while another
/// device still carries the traffic: the worst there is, so its routes lose
/// to every other route and take over only once the others are gone.
pub const STAGED_METRIC: i64 = u32::MAX as i64;

fn staged_metric(bridge: &mut Settings) {
    for ip in [names::IPV4, names::IPV6] {
        bridge.set(ip, "route-metric", STAGED_METRIC);
    }
}

/// What a bridge runs with (`applied`), at [`STAGED_METRIC`]: for a Reapply
/// that lets another device's routes win while the bridge keeps its addresses.
pub fn staged(applied: &Settings) -> Result<Settings, SettingsError> {
    let mut s = without_legacy_forms(applied)?;
    staged_metric(&mut s);
    Ok(s)
}

#[cfg(test)]
mod tests;
