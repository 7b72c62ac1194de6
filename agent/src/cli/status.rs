//! `netbridge status`: what `brctl show` shows, plus what matters for a
//! bridge conversion (profiles, addresses, gateway, DNS).

use std::path::Path;

use netbridge_dbus::state::DeviceType;
use serde::Serialize;

use super::output::{print_error, print_json, say, Envelope, Exit, Fatal};
use crate::report::{Progress, Verdict};
use std::collections::BTreeMap;

use crate::firewall::{self, Diagnosis};
use crate::journal::{Record, Store};
use crate::libvirt;
use crate::nm::{ActiveInfo, DeviceInfo, IpRuntime, Nm, NmError};
use crate::plan::network::read_marker;
use crate::plan::Marker;
use crate::state::{BridgeResult, State};
use zbus::zvariant::ObjectPath;

#[derive(Debug, clap::Args)]
pub struct StatusArgs {
    /// Print one JSON document instead of a table.
    #[arg(long)]
    pub json: bool,
    /// Include the loopback device.
    #[arg(long)]
    pub all: bool,
    /// The agent's configuration, to show configured bridges not applied yet.
    #[arg(long, value_name = "PATH", default_value = crate::config::DEFAULT_PATH)]
    pub config: std::path::PathBuf,
}

#[derive(Debug, Serialize)]
struct Status {
    networkmanager: NmInfo,
    devices: Vec<DeviceStatus>,
    /// A change an earlier run left unfinished (undone by the next convert).
    unfinished_change: Option<Record>,
    /// The last result per configured bridge (`netbridge apply` and the agent).
    #[serde(serialize_with = "without_fingerprint")]
    configured: BTreeMap<String, BridgeResult>,
    /// What in the host firewall stands between guests on a bridge and the
    /// LAN, host-wide (also before any bridge exists).
    guest_path: Diagnosis,
}

/// The results without the configuration fingerprint they were recorded
/// for: an internal encoding, not part of the document.
fn without_fingerprint<S: serde::Serializer>(
    configured: &BTreeMap<String, BridgeResult>,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    use serde::ser::{Error, SerializeMap};
    let mut map = serializer.serialize_map(Some(configured.len()))?;
    for (name, result) in configured {
        let mut entry = serde_json::to_value(result).map_err(S::Error::custom)?;
        if let Some(fields) = entry.as_object_mut() {
            fields.remove("config");
        }
        map.serialize_entry(name, &entry)?;
    }
    map.end()
}

#[derive(Debug, Serialize)]
struct NmInfo {
    version: String,
}

#[derive(Debug, Serialize)]
struct ProfileRef {
    id: String,
    uuid: String,
}

#[derive(Debug, Serialize)]
struct DeviceStatus {
    #[serde(flatten)]
    device: DeviceInfo,
    profile: Option<ProfileRef>,
    /// The bridge this device is a port of.
    controller: Option<String>,
    bridge: Option<BridgeStatus>,
    /// What netbridge made this bridge as, if it did.
    netbridge: Option<Made>,
    /// What `--libvirt-network` / `--qemu-bridge-helper` did for this bridge.
    #[serde(skip_serializing_if = "Option::is_none")]
    libvirt: Option<LibvirtStatus>,
}

#[derive(Debug, Serialize)]
struct LibvirtStatus {
    /// The libvirt network netbridge defined on the bridge.
    network: Option<LibvirtNetwork>,
    /// netbridge's `allow BRIDGE` line in /etc/qemu/bridge.conf.
    qemu_bridge_helper: bool,
}

#[derive(Debug, Serialize)]
struct LibvirtNetwork {
    name: String,
    uuid: String,
    /// libvirt's view now: active, inactive, absent or unknown (why).
    state: String,
}

#[derive(Debug, Serialize)]
#[serde(tag = "made_by", rename_all = "kebab-case")]
enum Made {
    /// `netbridge convert`: the host's uplink is its port.
    Convert {
        uplink: String,
        original_profile: String,
    },
    /// `netbridge create`: a virtual network for guests.
    Create {
        mode: String,
        address: String,
        /// `null`: chosen by NetworkManager (NAT) or none (isolated).
        dhcp_range: Option<String>,
    },
}

#[derive(Debug, Serialize)]
struct BridgeStatus {
    stp: bool,
    ports: Vec<PortStatus>,
}

#[derive(Debug, Serialize)]
struct PortStatus {
    name: String,
    /// The kernel's STP port state: disabled, listening, learning, forwarding, blocking.
    state: String,
}

pub async fn run(args: StatusArgs, state_dir: &Path) -> Exit {
    // Read-only: no progress to show, but the same envelope as every verb.
    let progress = Progress::new(false);
    match collect(&args, state_dir).await {
        Ok(status) => {
            if args.json {
                let done = Ok((Verdict::Unchanged, Exit::Ok));
                print_json(&Envelope::new("status", done, &status, &progress));
            } else {
                print_table(&status);
            }
            Exit::Ok
        }
        Err(fatal) => {
            let exit = fatal.exit;
            if args.json {
                let none: Option<Status> = None;
                print_json(&Envelope::new("status", Err(fatal), &none, &progress));
            } else {
                print_error(&fatal);
            }
            exit
        }
    }
}

async fn collect(args: &StatusArgs, state_dir: &Path) -> Result<Status, Fatal> {
    let nm = Nm::connect().await?;
    let store = Store::new(state_dir);
    // The tools run while NetworkManager is read.
    let guest_path = tokio::spawn(firewall::diagnose());
    let devices = nm.devices().await?;
    let mut out = Vec::new();
    for device in devices
        .iter()
        .filter(|d| args.all || d.device_type != DeviceType::Loopback)
    {
        let active = active_of(&nm, device).await?;
        let netbridge = match &active {
            Some(info) if device.device_type == DeviceType::Bridge => {
                made_by(&nm, &info.profile).await?
            }
            _ => None,
        };
        let libvirt = match device.device_type {
            DeviceType::Bridge => libvirt_of(&store, &device.interface).await?,
            _ => None,
        };
        out.push(DeviceStatus {
            libvirt,
            profile: active.map(|info| ProfileRef {
                id: info.id,
                uuid: info.uuid,
            }),
            controller: device.controller(&devices).map(|d| d.interface.clone()),
            bridge: bridge_of(device, &devices).await,
            netbridge,
            device: device.clone(),
        });
    }
    Ok(Status {
        networkmanager: NmInfo {
            version: nm.version().to_string(),
        },
        devices: out,
        unfinished_change: store.read().await?,
        configured: configured(&store, &args.config).await?,
        guest_path: guest_path.await.unwrap_or_else(|e| Diagnosis {
            unknown: vec![format!("the diagnosis stopped: {e}")],
            ..Diagnosis::default()
        }),
    })
}

/// What netbridge did for libvirt and QEMU on a bridge, with libvirt's
/// current view of its network.
async fn libvirt_of(store: &Store, bridge: &str) -> Result<Option<LibvirtStatus>, Fatal> {
    let Some(done) = libvirt::recorded(store, bridge).await? else {
        return Ok(None);
    };
    let network = match done.network {
        Some(n) => Some(LibvirtNetwork {
            state: libvirt::network_state(&n.name).await,
            name: n.name.to_string(),
            uuid: n.uuid,
        }),
        None => None,
    };
    Ok(Some(LibvirtStatus {
        network,
        qemu_bridge_helper: done.bridge_conf_line,
    }))
}

/// Last results, with bridges the configuration adds (or changed) as pending.
/// An unreadable configuration shows the recorded results only: `status`
/// must work when the configuration is being edited.
async fn configured(
    store: &Store,
    config: &std::path::Path,
) -> Result<BTreeMap<String, BridgeResult>, Fatal> {
    let state = State::load(store).await?;
    Ok(match crate::config::load(config).await {
        Ok(config) => state.against(&config).bridges,
        Err(e) => {
            tracing::warn!("{e}");
            state.bridges
        }
    })
}

/// The connection active on a device; none once it has gone.
async fn active_of(nm: &Nm, device: &DeviceInfo) -> Result<Option<ActiveInfo>, Fatal> {
    let Some(active) = &device.active_connection else {
        return Ok(None);
    };
    match nm.active_info(active).await {
        Ok(info) => Ok(Some(info)),
        Err(e) if e.is_gone() => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// What netbridge made a bridge as, from its active profile's markers.
async fn made_by(nm: &Nm, profile: &ObjectPath<'_>) -> Result<Option<Made>, Fatal> {
    let settings = nm.profile_settings(profile).await?;
    let unreadable = |e: netbridge_dbus::SettingsError| Fatal::from(NmError::from(e));
    if let Some(marker) = Marker::read(&settings).map_err(unreadable)? {
        return Ok(Some(Made::Convert {
            uplink: marker.uplink,
            original_profile: marker.original_uuid,
        }));
    }
    Ok(read_marker(&settings)
        .map_err(unreadable)?
        .map(|(mode, address, dhcp_range)| Made::Create {
            mode,
            address,
            dhcp_range,
        }))
}

async fn bridge_of(device: &DeviceInfo, devices: &[DeviceInfo]) -> Option<BridgeStatus> {
    if device.device_type != DeviceType::Bridge {
        return None;
    }
    let base = format!("/sys/class/net/{}", device.interface);
    let stp = read_sys(&format!("{base}/bridge/stp_state"))
        .await
        .as_deref()
        != Some("0");
    let mut ports = Vec::new();
    for port in device.ports(devices) {
        let state = read_sys(&format!("{base}/brif/{}/state", port.interface)).await;
        ports.push(PortStatus {
            name: port.interface.clone(),
            state: port_state(state.as_deref()).to_owned(),
        });
    }
    Some(BridgeStatus { stp, ports })
}

async fn read_sys(path: &str) -> Option<String> {
    tokio::fs::read_to_string(path)
        .await
        .ok()
        .map(|s| s.trim().to_owned())
}

fn port_state(raw: Option<&str>) -> &'static str {
    match raw {
        Some("0") => "disabled",
        Some("1") => "listening",
        Some("2") => "learning",
        Some("3") => "forwarding",
        Some("4") => "blocking",
        _ => "unknown",
    }
}

fn print_table(status: &Status) {
    say!("NetworkManager {}", status.networkmanager.version);
    say!(
        "{:<12} {:<9} {:<12} {:<20} {:<18} {:<20} {:<16} DNS",
        "DEVICE",
        "TYPE",
        "STATE",
        "PROFILE",
        "MAC",
        "IPV4",
        "GATEWAY"
    );
    for d in &status.devices {
        print_device(d);
    }
    if !status.configured.is_empty() {
        say!("\nCONFIGURED       LAST RESULT");
        for (name, last) in &status.configured {
            let why = last
                .reason
                .as_deref()
                .map(|r| format!(": {r}"))
                .unwrap_or_default();
            say!("{name:<16} {}{}{why}", last.result, retry_note(last));
        }
    }
    print_guest_path(&status.guest_path);
    if let Some(change) = &status.unfinished_change {
        say!(
            "\nAn unfinished change (pid {}, phase {:?}) is recorded; the next `netbridge convert` undoes it.",
            change.pid, change.phase
        );
    }
}

fn print_guest_path(d: &Diagnosis) {
    say!("\nGUEST PATH       {}", d.meaning());
    let nf = |v: Option<bool>| match v {
        Some(true) => "on",
        Some(false) => "off",
        None => "unknown",
    };
    say!(
        "  bridge netfilter  {} (iptables), {} (ip6tables)",
        nf(d.bridge_nf_call_iptables),
        nf(d.bridge_nf_call_ip6tables)
    );
    if d.forward.is_empty() {
        say!("  forward           no forward chains");
    }
    for c in &d.forward {
        say!(
            "  forward           {} {} {} ({}): policy {}, {} rules",
            c.family,
            c.table,
            c.name,
            c.source,
            c.policy.as_deref().unwrap_or("accept"),
            c.rules
        );
    }
    if !d.docker_chains.is_empty() {
        say!("  docker            {}", d.docker_chains.join(", "));
    }
    for c in &d.bridge_filters {
        say!(
            "  bridge filter     {} {} {} ({}): hook {}, policy {}, {} rules",
            c.family,
            c.table,
            c.name,
            c.source,
            c.hook.as_deref().unwrap_or("?"),
            c.policy.as_deref().unwrap_or("accept"),
            c.rules
        );
    }
    for u in &d.unknown {
        say!("  unknown           {u}");
    }
    if let Some(cause) = d.blocking_cause() {
        say!(
            "  warning           {cause}; accept a bridge's own traffic, e.g. `{}`",
            d.way_out("br0")
        );
    }
}

/// For a failure: tried again by itself (and when), or parked.
fn retry_note(last: &crate::state::BridgeResult) -> String {
    if !last.result.is_failure() {
        return String::new();
    }
    match (last.retry, last.next_try_unix) {
        (Some(crate::retry::Retry::Transient), Some(due)) => {
            let now = crate::journal::now_unix();
            format!(
                " (transient, attempt {}; the agent tries again in {} s)",
                last.attempts,
                due.saturating_sub(now)
            )
        }
        _ => " (deterministic: parked until its configuration changes or `netbridge apply`)"
            .to_owned(),
    }
}

fn print_device(d: &DeviceStatus) {
    let dev = &d.device;
    let profile = d.profile.as_ref().map_or("--", |p| p.id.as_str());
    say!(
        "{:<12} {:<9} {:<12} {:<20} {:<18} {:<20} {:<16} {}",
        dev.interface,
        dev.device_type.as_str(),
        dev.state.as_str(),
        profile,
        dev.mac,
        join(&dev.ipv4.addresses),
        dev.ipv4.gateway.map_or("--".to_owned(), |g| g.to_string()),
        join(&dev.ipv4.dns),
    );
    if let Some(ipv6) = ipv6_line(&dev.ipv6) {
        say!("{:<12} ipv6 {ipv6}", "");
    }
    if let Some(controller) = &d.controller {
        say!("{:<12} port of {controller}", "");
    }
    match &d.netbridge {
        Some(Made::Convert { uplink, .. }) => {
            say!("{:<12} converted from {uplink} by netbridge", "")
        }
        Some(Made::Create {
            mode,
            address,
            dhcp_range,
        }) => say!(
            "{:<12} {mode} network {address}, dhcp {}",
            "",
            dhcp_range.as_deref().unwrap_or(if mode == "nat" {
                "range chosen by NetworkManager"
            } else {
                "none"
            })
        ),
        None => {}
    }
    if let Some(libvirt) = &d.libvirt {
        if let Some(n) = &libvirt.network {
            println!("{:<12} libvirt network {} ({})", "", n.name, n.state);
        }
        if libvirt.qemu_bridge_helper {
            println!(
                "{:<12} allowed in {} for qemu-bridge-helper",
                "",
                libvirt::BRIDGE_CONF
            );
        }
    }
    if let Some(bridge) = &d.bridge {
        let ports: Vec<String> = bridge
            .ports
            .iter()
            .map(|p| format!("{} ({})", p.name, p.state))
            .collect();
        say!(
            "{:<12} stp {}, ports: {}",
            "",
            if bridge.stp { "on" } else { "off" },
            if ports.is_empty() {
                "none".to_owned()
            } else {
                ports.join(", ")
            }
        );
    }
}

fn ipv6_line(ip: &IpRuntime) -> Option<String> {
    if ip.addresses.is_empty() {
        return None;
    }
    let gateway = ip.gateway.map(|g| format!(" via {g}")).unwrap_or_default();
    Some(format!("{}{gateway}", join(&ip.addresses)))
}

fn join<T: ToString>(items: &[T]) -> String {
    if items.is_empty() {
        return "--".to_owned();
    }
    items
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(",")
}
