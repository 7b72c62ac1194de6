//! Virtual networks (NAT and host-only bridges): create, keep, delete.

use crate::journal::{Lock, Store};
use crate::nm::{Nm, NmError, ProfileInfo};
use crate::plan::network::{
    plan_network, read_marker, FirewallPrograms, NetDecision, NetError, NetFound, NetworkSpec,
};
use crate::plan::{nmcli, Marker};
use crate::report::Progress;
use crate::transaction::{Failure, Outcome, Transaction, TxError};

#[derive(Debug, thiserror::Error)]
pub enum NetworkError {
    #[error(transparent)]
    Nm(#[from] NmError),
    #[error("{0}; nothing was changed")]
    Plan(#[from] NetError),
    #[error(transparent)]
    Tx(#[from] TxError),
    #[error("{0}")]
    Activate(#[from] Failure),
    #[error("no network named {0:?} exists")]
    NoSuch(String),
    #[error(
        "{name} carries the host's uplink ({uplink}); undo that with `netbridge revert {name}`"
    )]
    Converted { name: String, uplink: String },
    #[error("{0} was not created by netbridge; delete it with the tool that made it")]
    Foreign(String),
}

/// What `ensure` did.
#[derive(Debug)]
pub enum NetOutcome {
    Unchanged,
    Activated,
    Created {
        outcome: Outcome,
    },
    /// `--dry-run`: what would be created (or brought up), and the
    /// equivalent nmcli commands.
    DryRun {
        spec: NetworkSpec,
        nmcli: Vec<String>,
    },
}

/// Makes the network exist as specified; a network already as specified is
/// left alone. With `confirm`, a new network awaits `netbridge confirm`.
pub async fn ensure(
    nm: &Nm,
    (store, lock): (&Store, &Lock),
    spec: &NetworkSpec,
    (dry_run, confirm): (bool, Option<u32>),
    progress: &Progress,
) -> Result<NetOutcome, NetworkError> {
    let found = find(nm, &spec.name).await?;
    let uuid = uuid::Uuid::new_v4().to_string();
    let decision = plan_network(spec, &found, &uuid)?;
    if dry_run {
        let nmcli = match &decision {
            NetDecision::Unchanged => return Ok(NetOutcome::Unchanged),
            NetDecision::Activate => nmcli::up_commands(&spec.name),
            NetDecision::Create(profile) => nmcli::network_commands(&spec.name, profile),
        };
        return Ok(NetOutcome::DryRun {
            spec: spec.clone(),
            nmcli,
        });
    }
    let tx = Transaction::new(nm, store, lock, progress).confirming(confirm);
    match decision {
        NetDecision::Unchanged => {
            progress.step("no-op", format!("{} exists as configured", spec.name));
            Ok(NetOutcome::Unchanged)
        }
        NetDecision::Activate => {
            let (info, _) = found
                .existing
                .ok_or_else(|| NetworkError::NoSuch(spec.name.clone()))?;
            tx.bring_up(&spec.name, &info.path).await?;
            Ok(NetOutcome::Activated)
        }
        NetDecision::Create(profile) => {
            let outcome = tx
                .create_network(&spec.name, &profile, spec.address.into())
                .await?;
            Ok(NetOutcome::Created { outcome })
        }
    }
}

async fn find(nm: &Nm, name: &str) -> Result<NetFound, NmError> {
    let devices = nm.devices().await?;
    let active = devices
        .iter()
        .any(|d| d.interface == name && d.state == netbridge_dbus::state::DeviceState::Activated);
    let existing = match profile_named(nm, name).await? {
        Some(info) => {
            let settings = nm.profile_settings(&info.path).await?;
            Some((info, settings))
        }
        None => None,
    };
    Ok(NetFound {
        nm_version: nm.version(),
        devices: devices
            .into_iter()
            .map(|d| (d.interface, d.ipv4.addresses))
            .collect(),
        existing,
        active,
        firewall: FirewallPrograms {
            nft: is_installed("nft").await,
            iptables: is_installed("iptables").await,
        },
    })
}

/// Whether `program` is executable where NetworkManager runs it: /usr/sbin
/// on the distributions it is built for (or /sbin, without the merged /usr).
async fn is_installed(program: &str) -> bool {
    use std::os::unix::fs::PermissionsExt;
    for dir in ["/usr/sbin", "/sbin"] {
        // Follows the alternatives symlink, as NetworkManager's test does.
        if let Ok(meta) = tokio::fs::metadata(format!("{dir}/{program}")).await {
            if meta.is_file() && meta.permissions().mode() & 0o111 != 0 {
                return true;
            }
        }
    }
    false
}

async fn profile_named(nm: &Nm, name: &str) -> Result<Option<ProfileInfo>, NmError> {
    Ok(nm
        .profiles()
        .await?
        .into_iter()
        .find(|p| p.id == name || p.interface_name.as_deref() == Some(name)))
}

/// Deletes a network netbridge created (its bridge, then its profile);
/// `None` for a dry run. With `confirm`, the deletion awaits `netbridge confirm`.
pub async fn delete(
    nm: &Nm,
    (store, lock): (&Store, &Lock),
    name: &str,
    (dry_run, confirm): (bool, Option<u32>),
    progress: &Progress,
) -> Result<Option<Outcome>, NetworkError> {
    let Some(info) = profile_named(nm, name).await? else {
        return Err(NetworkError::NoSuch(name.to_owned()));
    };
    let settings = nm.profile_settings(&info.path).await?;
    if let Some(marker) = Marker::read(&settings).map_err(NmError::from)? {
        return Err(NetworkError::Converted {
            name: name.to_owned(),
            uplink: marker.uplink,
        });
    }
    if read_marker(&settings).map_err(NmError::from)?.is_none() {
        return Err(NetworkError::Foreign(name.to_owned()));
    }
    if dry_run {
        progress.step(
            "dry-run",
            format!(
                "would delete profile '{}' and device {name} (nmcli: {})",
                info.id,
                nmcli::delete_commands(&info.uuid).join("\n")
            ),
        );
        return Ok(None);
    }
    let tx = Transaction::new(nm, store, lock, progress).confirming(confirm);
    Ok(Some(tx.delete_network(name, &info).await?))
}
