//! libvirt and QEMU on a converted bridge: a libvirt network in bridge mode
//! (`<forward mode='bridge'/>`), so `virt-install --network network=NAME`
//! finds the bridge, and an `allow BRIDGE` line in `/etc/qemu/bridge.conf`
//! for qemu-bridge-helper.
//!
//! libvirt is reached through `virsh`, its documented command line, with the
//! `qemu:///system` URI: linking libvirt's C library would make netbridge
//! require libvirt on every host, and speaking libvirt's RPC protocol
//! ourselves would mean keeping up with a private wire format. `virsh` is
//! run off the async runtime (tokio's process support) with a time limit.
//!
//! What netbridge did is recorded in `<state dir>/libvirt.json` (per bridge:
//! the network's name and the UUID netbridge gave it, and whether netbridge
//! added the bridge.conf line), written *before* the change, so `revert`
//! removes exactly that and nothing a person made or changed since: a
//! network of that name with another UUID or on another bridge is left
//! alone, and so is an `allow` line that was there before.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::journal::{JournalError, Lock, Store};
use crate::report::Progress;

const RECORD: &str = "libvirt.json";
/// libvirt's system instance, where `virt-install` and virt-manager define
/// guests by default when run as root.
const URI: &str = "qemu:///system";
/// Sockets of the monolithic libvirtd and of the modular daemons that serve
/// `qemu:///system` networks; one is there (socket-activated) wherever
/// libvirt's daemon is installed and enabled.
const SOCKETS: [&str; 3] = [
    "/run/libvirt/libvirt-sock",
    "/run/libvirt/virtqemud-sock",
    "/run/libvirt/virtnetworkd-sock",
];
/// Where Debian's and Fedora's qemu-bridge-helper read their ACL.
pub const BRIDGE_CONF: &str = "/etc/qemu/bridge.conf";
/// A socket-activated libvirtd starts on the first call: give it time.
const VIRSH_DEADLINE: Duration = Duration::from_secs(30);
/// `status` must stay quick even when libvirt hangs.
const STATUS_DEADLINE: Duration = Duration::from_secs(3);
/// libvirt allows longer names; this keeps them portable file names and
/// plain XML text (no escaping needed).
const NAME_MAX: usize = 50;

/// A libvirt network name netbridge defines: letters, digits, `-`, `_` and
/// `.`, starting with a letter or digit, at most 50 characters.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct NetworkName(String);

impl NetworkName {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for NetworkName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::str::FromStr for NetworkName {
    type Err = LibvirtError;

    fn from_str(name: &str) -> Result<Self, LibvirtError> {
        let invalid = |reason| LibvirtError::InvalidName {
            name: name.to_owned(),
            reason,
        };
        if name.is_empty() || name.len() > NAME_MAX {
            return Err(invalid("it must have 1 to 50 characters"));
        }
        if !name.starts_with(|c: char| c.is_ascii_alphanumeric()) {
            return Err(invalid("it must start with a letter or a digit"));
        }
        if !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        {
            return Err(invalid("use only letters, digits, '-', '_' and '.'"));
        }
        Ok(NetworkName(name.to_owned()))
    }
}

/// What a bridge asks of libvirt and QEMU: the same options on the command
/// line (`convert`) and in the configuration (`libvirt-network`,
/// `qemu-bridge-helper`). Left out of a configuration's fingerprint while
/// unset, so configurations written before they existed keep theirs.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, clap::Args)]
#[serde(rename_all = "kebab-case")]
pub struct LibvirtOptions {
    /// Define and autostart the libvirt network NAME in bridge mode on the
    /// bridge (`virt-install --network network=NAME`), after the commit.
    #[arg(long = "libvirt-network", value_name = "NAME")]
    #[serde(rename = "libvirt-network", skip_serializing_if = "Option::is_none")]
    pub network: Option<NetworkName>,

    /// Allow the bridge in /etc/qemu/bridge.conf for qemu-bridge-helper
    /// (`allow BRIDGE`), after the commit.
    #[arg(long)]
    #[serde(skip_serializing_if = "is_false")]
    pub qemu_bridge_helper: bool,
}

fn is_false(value: &bool) -> bool {
    !*value
}

impl LibvirtOptions {
    pub fn is_empty(&self) -> bool {
        self.network.is_none() && !self.qemu_bridge_helper
    }
}

#[derive(Debug, thiserror::Error)]
pub enum LibvirtError {
    #[error("{name:?} is not a libvirt network name netbridge defines: {reason}")]
    InvalidName { name: String, reason: &'static str },
    #[error("libvirt network {network}: libvirt is not installed here ({missing}); install libvirt-daemon-system and libvirt-clients, or leave --libvirt-network out")]
    NotInstalled {
        network: NetworkName,
        missing: String,
    },
    #[error(
        "libvirt network {network}: the name is already in use ({detail}); choose another name"
    )]
    NameInUse {
        network: NetworkName,
        detail: String,
    },
    #[error("libvirt network {network}: {bridge} already has the libvirt network {recorded} that netbridge defined; `netbridge revert {bridge}` first to change it")]
    OtherRecorded {
        network: NetworkName,
        bridge: String,
        recorded: NetworkName,
    },
    #[error("libvirt network {network}: `virsh {command}` failed: {detail}")]
    Virsh {
        network: NetworkName,
        command: String,
        detail: String,
    },
    #[error("{}: {action}: {source}", path.display())]
    BridgeConf {
        path: PathBuf,
        action: &'static str,
        source: std::io::Error,
    },
    #[error(transparent)]
    Journal(#[from] JournalError),
}

/// What netbridge did for one bridge.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Done {
    /// The libvirt network netbridge defined on the bridge.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub network: Option<DefinedNetwork>,
    /// netbridge added `allow BRIDGE` to bridge.conf (a line that was there
    /// before is not netbridge's, and stays on revert).
    #[serde(default, skip_serializing_if = "is_false")]
    pub bridge_conf_line: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DefinedNetwork {
    pub name: NetworkName,
    /// The UUID netbridge put in the definition: tells its network from a
    /// later one of the same name.
    pub uuid: String,
}

type Records = BTreeMap<String, Done>;

/// What netbridge did for `bridge`, if anything.
pub async fn recorded(store: &Store, bridge: &str) -> Result<Option<Done>, JournalError> {
    let mut all: Records = store.read_json(RECORD).await?.unwrap_or_default();
    Ok(all.remove(bridge).filter(|d| *d != Done::default()))
}

async fn save(store: &Store, lock: &Lock, bridge: &str, done: &Done) -> Result<(), JournalError> {
    let mut all: Records = store.read_json(RECORD).await?.unwrap_or_default();
    if *done == Done::default() {
        all.remove(bridge);
    } else {
        all.insert(bridge.to_owned(), done.clone());
    }
    store.write_json(lock, RECORD, &all).await
}

/// The read-only checks before any change, so bad input changes nothing:
/// libvirt is installed and answers, the name is free (or already
/// netbridge's network on this bridge, for a re-run), and bridge.conf is
/// readable.
pub async fn preflight(
    store: &Store,
    bridge: &str,
    options: &LibvirtOptions,
    progress: &Progress,
) -> Result<(), LibvirtError> {
    if let Some(network) = &options.network {
        let mine = recorded(store, bridge).await?.and_then(|d| d.network);
        if let Some(mine) = &mine {
            if mine.name != *network {
                return Err(LibvirtError::OtherRecorded {
                    network: network.clone(),
                    bridge: bridge.to_owned(),
                    recorded: mine.name.clone(),
                });
            }
        }
        installed(network).await?;
        match network_uuid(network).await? {
            Some(uuid) if mine.as_ref().is_some_and(|m| m.uuid == uuid) => progress.step(
                "libvirt",
                format!("network {network} on {bridge} is netbridge's already"),
            ),
            Some(uuid) => {
                return Err(LibvirtError::NameInUse {
                    network: network.clone(),
                    detail: format!("defined with UUID {uuid}"),
                })
            }
            None => progress.step(
                "libvirt",
                format!("network {network} will be defined on {bridge} after the commit"),
            ),
        }
    }
    if options.qemu_bridge_helper {
        read_bridge_conf(Path::new(BRIDGE_CONF)).await?;
    }
    Ok(())
}

/// libvirt is there: `virsh` on the PATH and a daemon's socket.
async fn installed(network: &NetworkName) -> Result<(), LibvirtError> {
    let not_installed = |missing: &str| LibvirtError::NotInstalled {
        network: network.clone(),
        missing: missing.to_owned(),
    };
    if find_program("virsh").is_none() {
        return Err(not_installed("no virsh on the PATH"));
    }
    for socket in SOCKETS {
        if tokio::fs::try_exists(socket).await.unwrap_or(false) {
            return Ok(());
        }
    }
    Err(not_installed(&format!(
        "no libvirt daemon socket: {}",
        SOCKETS.join(", ")
    )))
}

fn find_program(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file())
}

/// Runs `virsh` against the system instance; stdout on success.
async fn virsh(network: &NetworkName, args: &[&str]) -> Result<String, LibvirtError> {
    let command = args.join(" ");
    let failed = |detail: String| LibvirtError::Virsh {
        network: network.clone(),
        command: command.clone(),
        detail,
    };
    let child = tokio::process::Command::new("virsh")
        .args(["--quiet", "--connect", URI])
        .args(args)
        .env("LC_ALL", "C")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| failed(e.to_string()))?;
    let output = tokio::time::timeout(VIRSH_DEADLINE, child.wait_with_output())
        .await
        .map_err(|_| failed(format!("no answer within {} s", VIRSH_DEADLINE.as_secs())))?
        .map_err(|e| failed(e.to_string()))?;
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        let detail = stderr.trim();
        return Err(failed(if detail.is_empty() {
            output.status.to_string()
        } else {
            detail.to_owned()
        }));
    }
    Ok(String::from_utf8_lossy(&output.stdout).trim().to_owned())
}

/// The UUID of the network `name`, `None` when libvirt has none of that
/// name. The list is read rather than `net-uuid` tried, so that "not
/// found" is not told from other errors by parsing messages.
async fn network_uuid(network: &NetworkName) -> Result<Option<String>, LibvirtError> {
    let names = virsh(network, &["net-list", "--all", "--name"]).await?;
    if !names.lines().any(|l| l.trim() == network.as_str()) {
        return Ok(None);
    }
    virsh(network, &["net-uuid", network.as_str()])
        .await
        .map(Some)
}

/// The network definition netbridge writes. Names are restricted to
/// characters that need no XML escaping (see [`NetworkName`]), bridge names
/// too (`plan::validate_bridge_name`).
pub fn network_xml(network: &NetworkName, uuid: &str, bridge: &str) -> String {
    format!(
        "<network>\n  <name>{network}</name>\n  <uuid>{uuid}</uuid>\n  <forward mode='bridge'/>\n  <bridge name='{bridge}'/>\n</network>\n"
    )
}

/// After the commit: defines, autostarts and starts the network, and allows
/// the bridge in bridge.conf, as asked. Idempotent: what is there already
/// (netbridge's network, an `allow` line) is kept. A network step that fails
/// undefines what it defined, so it is all or nothing; the conversion itself
/// stays committed either way.
pub async fn attach(
    store: &Store,
    lock: &Lock,
    bridge: &str,
    options: &LibvirtOptions,
    progress: &Progress,
) -> Result<(), LibvirtError> {
    let mut done = recorded(store, bridge).await?.unwrap_or_default();
    if let Some(network) = &options.network {
        let mine = done.network.as_ref().filter(|m| m.name == *network);
        match (mine, network_uuid(network).await?) {
            (Some(mine), Some(uuid)) if mine.uuid == uuid => {
                ensure_active(network, bridge, progress).await?;
            }
            (_, Some(uuid)) => {
                return Err(LibvirtError::NameInUse {
                    network: network.clone(),
                    detail: format!("defined with UUID {uuid}"),
                })
            }
            // New, or netbridge's network was undefined since: defined again.
            (_, None) => {
                let uuid = uuid::Uuid::new_v4().to_string();
                // Recorded first: a netbridge killed in between leaves a
                // record `revert` can act on, never an untracked network.
                done.network = Some(DefinedNetwork {
                    name: network.clone(),
                    uuid: uuid.clone(),
                });
                save(store, lock, bridge, &done).await?;
                if let Err(e) = define(store, network, &uuid, bridge).await {
                    // Undefined if netbridge's definition got in (by its
                    // UUID: never another's); the error names the first cause.
                    let defined = network_uuid(network).await.ok().flatten();
                    if defined.as_deref() == Some(uuid.as_str()) {
                        let _ = virsh(network, &["net-undefine", network.as_str()]).await;
                    }
                    done.network = None;
                    save(store, lock, bridge, &done).await?;
                    return Err(e);
                }
                progress.step(
                    "libvirt",
                    format!("network {network} defined on {bridge}, autostarted and started (`virt-install --network network={network}`)"),
                );
            }
        }
    }
    if options.qemu_bridge_helper && !done.bridge_conf_line {
        let path = Path::new(BRIDGE_CONF);
        let text = read_bridge_conf(path).await?.unwrap_or_default();
        match allow(&text, bridge) {
            None => progress.step(
                "qemu",
                format!(
                    "{BRIDGE_CONF} allows {bridge} already (not netbridge's line: kept on revert)"
                ),
            ),
            Some(new) => {
                done.bridge_conf_line = true;
                save(store, lock, bridge, &done).await?;
                if let Err(e) = write_bridge_conf(path, new).await {
                    // Not written: not netbridge's line, so a re-run adds it.
                    done.bridge_conf_line = false;
                    save(store, lock, bridge, &done).await?;
                    return Err(e);
                }
                progress.step(
                    "qemu",
                    format!("{BRIDGE_CONF}: added `allow {bridge}` for qemu-bridge-helper"),
                );
            }
        }
    }
    Ok(())
}

async fn define(
    store: &Store,
    network: &NetworkName,
    uuid: &str,
    bridge: &str,
) -> Result<(), LibvirtError> {
    // virsh reads a definition from a file; the state directory is private
    // (0700) and already netbridge's.
    let file = store.dir().join(format!("libvirt-{network}.xml"));
    tokio::fs::write(&file, network_xml(network, uuid, bridge))
        .await
        .map_err(|source| {
            LibvirtError::Journal(JournalError::Io {
                path: file.clone(),
                source,
            })
        })?;
    let file_arg = file.to_string_lossy().into_owned();
    let defined = virsh(network, &["net-define", &file_arg]).await;
    let _ = tokio::fs::remove_file(&file).await;
    defined?;
    virsh(network, &["net-autostart", network.as_str()]).await?;
    virsh(network, &["net-start", network.as_str()]).await?;
    Ok(())
}

/// netbridge's network on a re-run: started if it is not running.
async fn ensure_active(
    network: &NetworkName,
    bridge: &str,
    progress: &Progress,
) -> Result<(), LibvirtError> {
    let active = virsh(network, &["net-list", "--name"]).await?;
    if active.lines().any(|l| l.trim() == network.as_str()) {
        progress.step(
            "libvirt",
            format!("network {network} on {bridge}: active, nothing to do"),
        );
        return Ok(());
    }
    virsh(network, &["net-start", network.as_str()]).await?;
    progress.step("libvirt", format!("network {network} on {bridge} started"));
    Ok(())
}

/// After a committed revert: undoes what the record says netbridge did,
/// and only that. Problems are reported as steps and returned, and the
/// record keeps what could not be undone, so a re-run can finish it.
pub async fn detach(
    store: &Store,
    lock: &Lock,
    bridge: &str,
    progress: &Progress,
) -> Result<(), LibvirtError> {
    let Some(mut done) = recorded(store, bridge).await? else {
        return Ok(());
    };
    if let Some(mine) = done.network.clone() {
        remove_network(&mine, bridge, progress).await?;
        done.network = None;
        save(store, lock, bridge, &done).await?;
    }
    if done.bridge_conf_line {
        let path = Path::new(BRIDGE_CONF);
        if let Some(text) = read_bridge_conf(path).await? {
            if let Some(new) = disallow(&text, bridge) {
                write_bridge_conf(path, new).await?;
                progress.step("qemu", format!("{BRIDGE_CONF}: removed `allow {bridge}`"));
            }
        }
        done.bridge_conf_line = false;
        save(store, lock, bridge, &done).await?;
    }
    Ok(())
}

async fn remove_network(
    mine: &DefinedNetwork,
    bridge: &str,
    progress: &Progress,
) -> Result<(), LibvirtError> {
    let network = &mine.name;
    if find_program("virsh").is_none() {
        progress.step(
            "libvirt",
            format!("network {network}: virsh is gone, nothing to undefine"),
        );
        return Ok(());
    }
    match network_uuid(network).await? {
        None => progress.step("libvirt", format!("network {network} is gone already")),
        Some(uuid) if uuid != mine.uuid => progress.step(
            "libvirt",
            format!("network {network} was redefined since (UUID {uuid}, not netbridge's {}): left as it is", mine.uuid),
        ),
        Some(_) => {
            let xml = virsh(network, &["net-dumpxml", network.as_str()]).await?;
            if !xml.contains(&format!("<bridge name='{bridge}'")) {
                progress.step(
                    "libvirt",
                    format!("network {network} is no longer on {bridge}: left as it is"),
                );
                return Ok(());
            }
            let active = virsh(network, &["net-list", "--name"]).await?;
            if active.lines().any(|l| l.trim() == network.as_str()) {
                virsh(network, &["net-destroy", network.as_str()]).await?;
            }
            virsh(network, &["net-undefine", network.as_str()]).await?;
            progress.step(
                "libvirt",
                format!("network {network} stopped and undefined"),
            );
        }
    }
    Ok(())
}

/// The libvirt state of netbridge's network on a bridge, for `status`:
/// `active`, `inactive`, `absent` or why it could not be read. Never an
/// error: status stays read-only and fast without libvirt.
pub async fn network_state(network: &NetworkName) -> String {
    if find_program("virsh").is_none() {
        return "unknown (no virsh)".to_owned();
    }
    // virsh is killed when the timeout drops it (kill_on_drop).
    tokio::time::timeout(STATUS_DEADLINE, read_state(network))
        .await
        .unwrap_or_else(|_| {
            format!(
                "unknown (libvirt did not answer within {} s)",
                STATUS_DEADLINE.as_secs()
            )
        })
}

async fn read_state(network: &NetworkName) -> String {
    let all = match virsh(network, &["net-list", "--all", "--name"]).await {
        Ok(all) => all,
        Err(LibvirtError::Virsh { detail, .. }) => return format!("unknown ({detail})"),
        Err(e) => return format!("unknown ({e})"),
    };
    if !all.lines().any(|l| l.trim() == network.as_str()) {
        return "absent".to_owned();
    }
    match virsh(network, &["net-list", "--name"]).await {
        Ok(active) if active.lines().any(|l| l.trim() == network.as_str()) => "active".into(),
        Ok(_) => "inactive".into(),
        Err(e) => format!("unknown ({e})"),
    }
}

async fn read_bridge_conf(path: &Path) -> Result<Option<String>, LibvirtError> {
    match tokio::fs::read_to_string(path).await {
        Ok(text) => Ok(Some(text)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(LibvirtError::BridgeConf {
            path: path.to_owned(),
            action: "cannot read it",
            source,
        }),
    }
}

/// Replaces bridge.conf atomically (a temporary file beside it, renamed
/// over it), readable by all as qemu-bridge-helper needs; its directory is
/// created when QEMU is not installed yet.
async fn write_bridge_conf(path: &Path, text: String) -> Result<(), LibvirtError> {
    let path = path.to_owned();
    tokio::task::spawn_blocking(move || {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        let fail = |action, source| LibvirtError::BridgeConf {
            path: path.clone(),
            action,
            source,
        };
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| fail("cannot create its directory", e))?;
        }
        let tmp = path.with_extension("conf.netbridge-tmp");
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o644)
            .open(&tmp)
            .map_err(|e| fail("cannot write it", e))?;
        file.write_all(text.as_bytes())
            .and_then(|()| file.sync_all())
            .map_err(|e| fail("cannot write it", e))?;
        std::fs::rename(&tmp, &path).map_err(|e| fail("cannot replace it", e))
    })
    .await
    .map_err(|e| LibvirtError::BridgeConf {
        path: PathBuf::from(BRIDGE_CONF),
        action: "the writer stopped",
        source: std::io::Error::other(e.to_string()),
    })?
}

fn allows(line: &str, bridge: &str) -> bool {
    let mut words = line.split_whitespace();
    words.next() == Some("allow") && words.next() == Some(bridge) && words.next().is_none()
}

/// bridge.conf with `allow BRIDGE` appended, or `None` when a line already
/// allows it. Other lines stay exactly as they are.
pub fn allow(text: &str, bridge: &str) -> Option<String> {
    if text.lines().any(|l| allows(l, bridge)) {
        return None;
    }
    let mut out = text.to_owned();
    if !out.is_empty() && !out.ends_with('\n') {
        out.push('\n');
    }
    out.push_str(&format!("allow {bridge}\n"));
    Some(out)
}

/// bridge.conf without netbridge's `allow BRIDGE` line (the last one, which
/// is where `allow` put it), or `None` when there is none.
pub fn disallow(text: &str, bridge: &str) -> Option<String> {
    let lines: Vec<&str> = text.split_inclusive('\n').collect();
    let at = lines.iter().rposition(|l| allows(l, bridge))?;
    Some(
        lines
            .iter()
            .enumerate()
            .filter(|(i, _)| *i != at)
            .map(|(_, l)| *l)
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_checked() {
        for good in ["br0-net", "lan", "host_bridge.1", "0net"] {
            assert!(good.parse::<NetworkName>().is_ok(), "{good}");
        }
        for bad in ["", "-x", ".x", "a/b", "a b", "a'b", "<x>", &"n".repeat(51)] {
            let err = bad.parse::<NetworkName>().unwrap_err();
            assert!(
                err.to_string().contains("is not a libvirt network name"),
                "{err}"
            );
        }
    }

    #[test]
    fn the_definition_is_a_bridge_mode_network_on_the_bridge() {
        let name: NetworkName = "host-bridge".parse().unwrap();
        let xml = network_xml(&name, "7f3c0c0e-0000-4000-8000-000000000001", "br0");
        assert_eq!(
            xml,
            "<network>\n  <name>host-bridge</name>\n  <uuid>7f3c0c0e-0000-4000-8000-000000000001</uuid>\n  <forward mode='bridge'/>\n  <bridge name='br0'/>\n</network>\n"
        );
    }

    #[test]
    fn allow_appends_once_and_keeps_other_lines() {
        assert_eq!(allow("", "br0").as_deref(), Some("allow br0\n"));
        assert_eq!(
            allow("# ACL\nallow virbr0", "br0").as_deref(),
            Some("# ACL\nallow virbr0\nallow br0\n")
        );
        assert_eq!(allow("allow virbr0\n  allow   br0  \n", "br0"), None);
        assert_eq!(
            allow("allow br0x\n", "br0").as_deref(),
            Some("allow br0x\nallow br0\n")
        );
    }

    #[test]
    fn disallow_removes_only_its_line() {
        let before = "# ACL\nallow virbr0\n";
        let added = allow(before, "br0").unwrap();
        assert_eq!(disallow(&added, "br0").as_deref(), Some(before));
        assert_eq!(disallow(before, "br0"), None);
        assert_eq!(
            disallow("allow br0\n# keep\nallow br0", "br0").as_deref(),
            Some("allow br0\n# keep\n")
        );
    }

    #[test]
    fn options_stay_out_of_a_fingerprint_until_used() {
        let none = LibvirtOptions::default();
        assert_eq!(serde_json::to_string(&none).unwrap(), "{}");
        let some = LibvirtOptions {
            network: Some("lan".parse().unwrap()),
            qemu_bridge_helper: true,
        };
        assert_eq!(
            serde_json::to_string(&some).unwrap(),
            r#"{"libvirt-network":"lan","qemu-bridge-helper":true}"#
        );
    }

    #[test]
    fn a_record_round_trips() {
        let done = Done {
            network: Some(DefinedNetwork {
                name: "lan".parse().unwrap(),
                uuid: "u".into(),
            }),
            bridge_conf_line: true,
        };
        let text = serde_json::to_string(&done).unwrap();
        assert_eq!(serde_json::from_str::<Done>(&text).unwrap(), done);
        assert_eq!(serde_json::from_str::<Done>("{}").unwrap(), Done::default());
    }
}
