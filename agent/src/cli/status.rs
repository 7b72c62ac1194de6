//! `netbridge status`: what `brctl show` shows, plus what matters for a
//! bridge conversion (profiles, addresses, gateway, DNS).

use std::path::Path;

use netbridge_dbus::state::DeviceType;
use serde::Serialize;

use super::output::{print_error, print_json, say, Envelope, Exit, Fatal};
use crate::report::{Progress, Verdict};
use std::collections::BTreeMap;

use crate::firewall::{self, Diagnosis};
use crate::journal::{JournalError, Phase, Record, Store};
use crate::libvirt;
use crate::nm::{ActiveInfo, DeviceInfo, IpRuntime, Nm, NmError};
use crate::plan::network::read_marker;
use crate::plan::Marker;
use crate::state::{BridgeResult, ResultKind, State};
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
    /// A change recorded in the journal: in progress, or interrupted.
    unfinished_change: Option<Unfinished>,
    /// The process that holds the lock (is changing the host), if any.
    lock_holder: Option<u32>,
    /// The last result per bridge of the configuration (`netbridge apply`
    /// and the agent); bridges no longer configured are left out.
    #[serde(serialize_with = "without_fingerprint")]
    configured: BTreeMap<String, BridgeResult>,
    /// What only root may read, left out: `journal` (unfinished_change),
    /// `results` (configured), `records` (libvirt), `firewall` (guest_path's
    /// chains).
    needs_root: Vec<&'static str>,
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
struct Unfinished {
    /// `in-progress` while a netbridge process holds the lock,
    /// `awaiting-confirm` while a `--confirm` change waits for `netbridge
    /// confirm`, else `interrupted`: `netbridge recover` finishes or undoes it.
    state: ChangeState,
    #[serde(flatten)]
    record: Record,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "kebab-case")]
enum ChangeState {
    InProgress,
    AwaitingConfirm,
    Interrupted,
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
        /// The uplink's profile from before, kept for `netbridge revert`.
        original_profile: OriginalProfile,
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
struct OriginalProfile {
    uuid: String,
    /// `null`: the profile is gone, and `revert` has nothing to go back to.
    id: Option<String>,
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
    let mut needs_root = Vec::new();
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
            DeviceType::Bridge => readable(
                libvirt_of(&store, &device.interface).await,
                "records",
                &mut needs_root,
            )?
            .flatten(),
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
    let lock_holder = store.holder();
    let unfinished_change = readable(store.read().await, "journal", &mut needs_root)?
        .flatten()
        .map(|record| Unfinished {
            state: match (lock_holder, record.phase) {
                (Some(_), _) => ChangeState::InProgress,
                (None, Phase::AwaitingConfirm) => ChangeState::AwaitingConfirm,
                (None, _) => ChangeState::Interrupted,
            },
            record,
        });
    let configured = configured(&store, &args.config, &devices, &mut needs_root).await?;
    let guest_path = guest_path.await.unwrap_or_else(|e| Diagnosis {
        unknown: vec![format!("the diagnosis stopped: {e}")],
        ..Diagnosis::default()
    });
    if guest_path
        .unknown
        .iter()
        .any(|u| u == firewall::CHAINS_NEED_ROOT)
    {
        needs_root.push("firewall");
    }
    needs_root.dedup();
    Ok(Status {
        networkmanager: NmInfo {
            version: nm.version().to_string(),
        },
        devices: out,
        unfinished_change,
        lock_holder,
        configured,
        needs_root,
        guest_path,
    })
}

/// A part of the state directory; `None`, and `part` noted, if only root
/// may read it: the rest of `status` works for anyone NetworkManager lets read.
fn readable<T>(
    read: Result<T, JournalError>,
    part: &'static str,
    needs_root: &mut Vec<&'static str>,
) -> Result<Option<T>, Fatal> {
    match read {
        Ok(value) => Ok(Some(value)),
        Err(e) if e.needs_root() => {
            needs_root.push(part);
            Ok(None)
        }
        Err(e) => Err(e.into()),
    }
}

/// What netbridge did for libvirt and QEMU on a bridge, with libvirt's
/// current view of its network.
async fn libvirt_of(store: &Store, bridge: &str) -> Result<Option<LibvirtStatus>, JournalError> {
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

/// The last results. With the configuration at `config`: its bridges only
/// (results of bridges it no longer has, or another file's, are left out),
/// those it adds or changed as pending, and those recorded as done but not
/// on the host now as pending too. Without it (missing, or being edited),
/// the recorded results as they are: `status` still works.
async fn configured(
    store: &Store,
    config: &Path,
    devices: &[DeviceInfo],
    needs_root: &mut Vec<&'static str>,
) -> Result<BTreeMap<String, BridgeResult>, Fatal> {
    let Some(state) = readable(State::load(store).await, "results", needs_root)? else {
        return Ok(BTreeMap::new());
    };
    let path = config.to_path_buf();
    let no_files = tokio::task::spawn_blocking(move || crate::config::files(&path))
        .await
        .is_ok_and(|files| files.is_ok_and(|f| f.is_empty()));
    if no_files {
        return Ok(state.bridges);
    }
    let config = match crate::config::load(config).await {
        Ok(config) => config,
        Err(e) => {
            tracing::warn!("{e}; showing the recorded results");
            return Ok(state.bridges);
        }
    };
    let on_host = |name: &str| devices.iter().any(|d| d.interface == name);
    Ok(still_holding(state, &config, on_host))
}

/// The results as they stand for `config` and the host (pure; see
/// [`configured`]).
fn still_holding(
    state: State,
    config: &crate::config::Config,
    on_host: impl Fn(&str) -> bool,
) -> BTreeMap<String, BridgeResult> {
    let mut bridges = state.against(config).bridges;
    bridges.retain(|name, _| config.bridges.iter().any(|b| &b.name == name));
    for bridge in config.bridges.iter().filter(|b| !b.absent) {
        if let Some(last) = bridges.get_mut(&bridge.name) {
            let done = matches!(last.result, ResultKind::Committed | ResultKind::Unchanged);
            if done && !on_host(&bridge.name) {
                *last = gone_since(&bridge.name, last);
            }
        }
    }
    bridges
}

/// A bridge recorded as applied that is not on the host now: reverted or
/// deleted by hand since, so no longer as configured.
fn gone_since(name: &str, last: &BridgeResult) -> BridgeResult {
    BridgeResult {
        result: ResultKind::Pending,
        reason: Some(format!(
            "recorded {} but {name} is not on the host now (reverted or deleted since); `netbridge apply` makes it again",
            last.result
        )),
        ..last.clone()
    }
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
        let id = match nm.profile_by_uuid(&marker.original_uuid).await? {
            Some(path) => Some(nm.profile_info(&path).await?.id),
            None => None,
        };
        return Ok(Some(Made::Convert {
            uplink: marker.uplink,
            original_profile: OriginalProfile {
                uuid: marker.original_uuid,
                id,
            },
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
    if status.needs_root.contains(&"results") {
        say!("\nCONFIGURED       results need root");
    } else if !status.configured.is_empty() {
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
    print_change(status);
    if !status.needs_root.is_empty() {
        say!(
            "\nNOT SHOWN        {}: needs root",
            status.needs_root.join(", ")
        );
    }
}

/// A change in progress (who, where, since when), or one cut short that
/// waits for `netbridge recover`.
fn print_change(status: &Status) {
    let Some(change) = &status.unfinished_change else {
        if let Some(pid) = status.lock_holder {
            say!("\nCHANGE           netbridge pid {pid} holds the lock (preparing or asking; nothing changed yet)");
        }
        return;
    };
    let record = &change.record;
    if let (Some(pending), None) = (record.pending_confirm(), status.lock_holder) {
        let left = pending
            .deadline_unix
            .saturating_sub(crate::journal::now_unix());
        if left == 0 {
            say!(
                "\nCHANGE           expired: the {} of {} was not confirmed in time and is rolled back; `netbridge recover` clears the record",
                record.change.operation(),
                record.change.bridge()
            );
            return;
        }
        say!(
            "\nAWAITING CONFIRMATION  the {} of {} (deadline {} s since the epoch): {}.",
            record.change.operation(),
            record.change.bridge(),
            pending.deadline_unix,
            crate::confirm::how_it_ends(left)
        );
        return;
    }
    let what = format!(
        "{} {} (phase {}, started {} s ago)",
        record.change.operation(),
        record.change.bridge(),
        record.phase.as_str(),
        crate::journal::now_unix().saturating_sub(record.started_unix)
    );
    match status.lock_holder {
        Some(pid) => say!("\nCHANGE           in progress: {what}, pid {pid}"),
        None => say!(
            "\nCHANGE           interrupted: {what}, pid {} is gone; run `netbridge recover` to finish or undo it",
            record.pid
        ),
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
        dev.device_type.nmcli_word(),
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
        Some(Made::Convert {
            uplink,
            original_profile,
        }) => {
            say!("{:<12} converted from {uplink} by netbridge", "");
            match &original_profile.id {
                Some(id) => say!(
                    "{:<12} original profile {id} ({}), kept for `netbridge revert`",
                    "",
                    original_profile.uuid
                ),
                None => say!(
                    "{:<12} original profile {} is gone: `netbridge revert` cannot go back",
                    "",
                    original_profile.uuid
                ),
            }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn config(text: &str) -> crate::config::Config {
        crate::config::parse(&[("netbridge.toml".into(), text.to_owned())]).unwrap()
    }

    const BR0: &str = "[[bridge]]\nname = \"br0\"\nuplink = \"ens32\"\n";

    fn applied(config: &crate::config::Config) -> State {
        let mut state = State::default();
        for b in &config.bridges {
            state.record(&b.name, ResultKind::Committed, None, b.fingerprint());
        }
        state.record("old0", ResultKind::Committed, None, "elsewhere".into());
        state
    }

    #[test]
    fn only_the_configurations_bridges_and_results_that_still_hold() {
        let br0 = config(BR0);
        let shown = still_holding(applied(&br0), &br0, |_| true);
        assert_eq!(
            shown.keys().collect::<Vec<_>>(),
            ["br0"],
            "old0 is not configured"
        );
        assert_eq!(shown["br0"].result, ResultKind::Committed);

        let gone = still_holding(applied(&br0), &br0, |_| false);
        assert_eq!(gone["br0"].result, ResultKind::Pending, "reverted by hand");
        assert!(gone["br0"]
            .reason
            .as_deref()
            .unwrap()
            .contains("not on the host"));

        let other = config(
            "[[bridge]]\nname = \"virbr9\"\nmode = \"isolated\"\naddress = \"192.168.107.1/24\"\n",
        );
        let shown = still_holding(applied(&br0), &other, |_| true);
        assert_eq!(
            shown.keys().collect::<Vec<_>>(),
            ["virbr9"],
            "another file's"
        );
        assert_eq!(shown["virbr9"].result, ResultKind::Pending);
    }

    #[test]
    fn a_bridge_configured_absent_is_done_when_it_is_gone() {
        let absent = config(&format!("{BR0}state = \"absent\"\n"));
        let shown = still_holding(applied(&absent), &absent, |_| false);
        assert_eq!(shown["br0"].result, ResultKind::Committed);
    }
}
