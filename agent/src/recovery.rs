//! Undoing a change: after a failed trial, and for a change an earlier run
//! left unfinished (found in the journal).

use std::time::Duration;

use netbridge_dbus::flags::Update2Flags;
use netbridge_dbus::settings::names;
use serde::Serialize;
use zbus::zvariant::{ObjectPath, OwnedObjectPath};

use crate::journal::{Change, JournalError, Lock, Phase, Record, Store};
use crate::nm::{Nm, NmError};
use crate::plan::Original;
use crate::report::Progress;

/// How long NetworkManager gets to bring the original profile back by itself
/// after a checkpoint rollback before netbridge activates it explicitly.
const SETTLE: Duration = Duration::from_secs(10);
const RESTORE: Duration = Duration::from_secs(30);

#[derive(Debug, thiserror::Error)]
pub enum RecoveryError {
    #[error(transparent)]
    Journal(#[from] JournalError),
    #[error("could not undo the unfinished change recorded in the journal: {0}")]
    Undo(#[source] NmError),
}

/// What was done about an unfinished change.
#[derive(Debug, Clone, Serialize)]
pub struct Recovered {
    pub operation: String,
    pub bridge: String,
    pub started_by_pid: u32,
    pub phase: Phase,
    /// `undone` (the host is back as it was) or `finished` (the commit was completed).
    pub action: &'static str,
}

/// Finishes or undoes a change recorded in the journal. Call with the lock held,
/// before changing anything else.
pub async fn recover(
    nm: &Nm,
    store: &Store,
    lock: &Lock,
    progress: &Progress,
) -> Result<Option<Recovered>, RecoveryError> {
    let Some(record) = store.read()? else {
        return Ok(None);
    };
    let Change::Convert { bridge, .. } = &record.change;
    progress.step(
        "recovering",
        format!(
            "found an unfinished conversion to {bridge} (pid {}, phase {:?}) in {}",
            record.pid,
            record.phase,
            store.dir().display()
        ),
    );
    let action = if record.phase == Phase::Committed {
        finish_commit(nm, &record)
            .await
            .map_err(RecoveryError::Undo)?;
        "finished"
    } else {
        undo(nm, &record, progress)
            .await
            .map_err(RecoveryError::Undo)?;
        "undone"
    };
    store.clear(lock)?;
    progress.step("recovered", format!("the unfinished change was {action}"));
    Ok(Some(Recovered {
        operation: "convert".to_owned(),
        bridge: bridge.clone(),
        started_by_pid: record.pid,
        phase: record.phase,
        action,
    }))
}

/// Everything was on disk: only the checkpoint may still be armed.
async fn finish_commit(nm: &Nm, record: &Record) -> Result<(), NmError> {
    if let Some(checkpoint) = alive_checkpoint(nm, record).await? {
        nm.checkpoint_destroy(&checkpoint).await?;
    }
    Ok(())
}

/// Brings the host back to how it was before the recorded change: roll back
/// the checkpoint if it still exists, then make sure nothing netbridge
/// created is left and the original profile runs on the uplink.
pub async fn undo(nm: &Nm, record: &Record, progress: &Progress) -> Result<(), NmError> {
    let Change::Convert {
        bridge,
        uplink,
        created,
        original,
    } = &record.change;
    let rolled_back = match alive_checkpoint(nm, record).await? {
        Some(checkpoint) => {
            for (device, result) in nm.checkpoint_rollback(&checkpoint).await? {
                progress.step("rollback", format!("{device}: {result}"));
            }
            progress.step(
                "rollback",
                format!("checkpoint {} rolled back", checkpoint.as_str()),
            );
            true
        }
        None => false,
    };
    remove_profiles(nm, created, progress).await?;
    remove_bridge(nm, bridge, progress).await?;
    restore_autoconnect(nm, original).await?;
    bring_back(nm, uplink, original, rolled_back).await
}

async fn alive_checkpoint(nm: &Nm, record: &Record) -> Result<Option<OwnedObjectPath>, NmError> {
    let Some((path, created)) = &record.checkpoint else {
        return Ok(None);
    };
    for checkpoint in nm.checkpoints().await? {
        // NetworkManager numbers checkpoints afresh after a restart: the path
        // alone could name someone else's checkpoint.
        if checkpoint.as_str() == path && nm.checkpoint_created(&checkpoint).await? == *created {
            return Ok(Some(checkpoint));
        }
    }
    Ok(None)
}

async fn remove_profiles(nm: &Nm, uuids: &[String], progress: &Progress) -> Result<(), NmError> {
    for uuid in uuids {
        if let Some(path) = nm.profile_by_uuid(uuid).await? {
            match nm.delete_profile(&path).await {
                Ok(()) => progress.step("cleanup", format!("deleted profile {uuid}")),
                Err(e) if e.is_gone() => {}
                Err(e) => return Err(e),
            }
        }
    }
    Ok(())
}

async fn remove_bridge(nm: &Nm, bridge: &str, progress: &Progress) -> Result<(), NmError> {
    // NetworkManager removes a bridge it created once its profile is gone.
    if nm
        .wait_device_gone(bridge, Duration::from_secs(5))
        .await
        .is_ok()
    {
        return Ok(());
    }
    if let Some(path) = nm.device_by_iface(bridge).await? {
        nm.delete_device(&path).await?;
        progress.step("cleanup", format!("deleted leftover device {bridge}"));
        nm.wait_device_gone(bridge, Duration::from_secs(5)).await?;
    }
    Ok(())
}

/// A commit cut short may already have turned the original's autoconnect off.
async fn restore_autoconnect(nm: &Nm, original: &Original) -> Result<(), NmError> {
    let Some(path) = nm.profile_by_uuid(&original.uuid).await? else {
        return Err(NmError::Unexpected {
            what: format!(
                "the original profile '{}' ({}) no longer exists",
                original.id, original.uuid
            ),
        });
    };
    let mut settings = nm.profile_settings(&path).await?;
    let autoconnect = settings
        .bool(names::CONNECTION, "autoconnect")?
        .unwrap_or(true);
    if autoconnect != original.autoconnect {
        settings.set(names::CONNECTION, "autoconnect", original.autoconnect);
        strip_legacy(&mut settings);
        nm.update_profile(&path, Some(&settings), Update2Flags::TO_DISK)
            .await?;
    }
    Ok(())
}

fn strip_legacy(settings: &mut netbridge_dbus::Settings) {
    for ip in [names::IPV4, names::IPV6] {
        for (new, old) in [
            ("address-data", "addresses"),
            ("route-data", "routes"),
            ("dns-data", "dns"),
        ] {
            if settings.raw(ip, new).is_some() {
                settings.remove(ip, old);
            }
        }
    }
}

/// Makes sure the uplink runs the original profile again.
async fn bring_back(
    nm: &Nm,
    uplink: &str,
    original: &Original,
    rolled_back: bool,
) -> Result<(), NmError> {
    let Some(device) = nm.device_by_iface(uplink).await? else {
        return Err(NmError::Unexpected {
            what: format!("the uplink {uplink} has disappeared"),
        });
    };
    // After a checkpoint rollback NetworkManager re-activates the original by
    // itself; activating it again would only bounce the link.
    if rolled_back
        && nm
            .wait_device_runs(&device, uplink, &original.uuid, SETTLE)
            .await
            .is_ok()
    {
        return Ok(());
    }
    if runs(nm, &device, &original.uuid).await? {
        return Ok(());
    }
    let Some(profile) = nm.profile_by_uuid(&original.uuid).await? else {
        return Err(NmError::Unexpected {
            what: format!("the original profile '{}' no longer exists", original.id),
        });
    };
    nm.activate(&profile, &device).await?;
    nm.wait_device_runs(&device, uplink, &original.uuid, RESTORE)
        .await
}

async fn runs(nm: &Nm, device: &ObjectPath<'_>, uuid: &str) -> Result<bool, NmError> {
    let info = nm.device_info(device).await?;
    let Some(active) = info.active_connection else {
        return Ok(false);
    };
    match nm.active_info(&active).await {
        Ok(ac) => {
            Ok(ac.uuid == uuid
                && ac.state == netbridge_dbus::state::ActiveConnectionState::Activated)
        }
        Err(e) if e.is_gone() => Ok(false),
        Err(e) => Err(e),
    }
}
