//! Undoing a change: after a failed trial, and for a change an earlier run
//! left unfinished (found in the journal).

use std::time::Duration;

use netbridge_dbus::errors;
use netbridge_dbus::flags::Update2Flags;
use netbridge_dbus::settings::names;
use serde::Serialize;
use zbus::zvariant::{ObjectPath, OwnedObjectPath};

use crate::journal::{Change, JournalError, Lock, Phase, Record, Store};
use crate::nm::{Nm, NmError};
use crate::report::Progress;
use crate::transaction::Host;

/// How long NetworkManager gets to bring a profile back by itself after a
/// checkpoint rollback before netbridge activates it explicitly.
const SETTLE: Duration = Duration::from_secs(10);
const RESTORE: Duration = Duration::from_secs(30);

#[derive(Debug, thiserror::Error)]
pub enum RecoveryError {
    #[error(transparent)]
    Journal(#[from] JournalError),
    #[error("could not undo the unfinished change recorded in the journal: {0}")]
    Undo(#[source] NmError),
    #[error("the {operation} of {bridge} awaits confirmation: {}; nothing else changes the host until then", crate::confirm::how_it_ends(*seconds_left))]
    AwaitingConfirm {
        operation: &'static str,
        bridge: String,
        seconds_left: u64,
    },
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
pub async fn recover<N: Host>(
    nm: &N,
    store: &Store,
    lock: &Lock,
    progress: &Progress,
) -> Result<Option<Recovered>, RecoveryError> {
    let Some(record) = store.read().await? else {
        return Ok(None);
    };
    if let Some(seconds_left) = awaits_confirm(nm, &record)
        .await
        .map_err(RecoveryError::Undo)?
    {
        return Err(RecoveryError::AwaitingConfirm {
            operation: record.change.operation(),
            bridge: record.change.bridge().to_owned(),
            seconds_left,
        });
    }
    recover_record(nm, store, lock, record, progress)
        .await
        .map(Some)
}

/// The seconds left for a change that awaits confirmation and is still on
/// trial; `None` when there is none, or its trial is over (it rolled back,
/// or must be undone).
async fn awaits_confirm<N: Host>(nm: &N, record: &Record) -> Result<Option<u64>, NmError> {
    let Some(pending) = record.pending_confirm() else {
        return Ok(None);
    };
    let left = pending
        .deadline_unix
        .saturating_sub(crate::journal::now_unix());
    if left == 0 {
        return Ok(None);
    }
    Ok(match on_trial(nm, record).await? {
        Trial::Over => None,
        Trial::Armed(_) | Trial::Unguarded => Some(left),
    })
}

/// Whether a change that awaits confirmation (or whose confirmed commit
/// was cut short) is still on trial.
pub(crate) enum Trial {
    /// Its checkpoint is armed.
    Armed(OwnedObjectPath),
    /// No checkpoint guards it (a network created or deleted): on trial
    /// until its deadline — and, once its commit started, until committed.
    Unguarded,
    /// The deadline passed, or NetworkManager rolled back or lost the
    /// checkpoint: nothing may commit it any more.
    Over,
}

pub(crate) async fn on_trial<N: Host>(nm: &N, record: &Record) -> Result<Trial, NmError> {
    let Some(pending) = record.pending.as_ref() else {
        return Ok(Trial::Over);
    };
    if record.change.has_checkpoint() {
        return Ok(match alive_checkpoint(nm, record).await? {
            Some(checkpoint) => Trial::Armed(checkpoint),
            None => Trial::Over,
        });
    }
    let before_deadline = pending.deadline_unix > crate::journal::now_unix();
    Ok(if before_deadline || record.phase == Phase::Committing {
        Trial::Unguarded
    } else {
        Trial::Over
    })
}

/// Finishes or undoes `record`, the journal's, whatever its phase.
pub async fn recover_record<N: Host>(
    nm: &N,
    store: &Store,
    lock: &Lock,
    record: Record,
    progress: &Progress,
) -> Result<Recovered, RecoveryError> {
    let (operation, bridge) = (record.change.operation(), record.change.bridge());
    progress.step(
        "recovering",
        format!(
            "found an unfinished {operation} of {bridge} (pid {}, phase {:?}) in {}",
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
    store.clear(lock).await?;
    progress.step(
        "recovered",
        format!("the unfinished {operation} was {action}"),
    );
    Ok(Recovered {
        operation: operation.to_owned(),
        bridge: bridge.to_owned(),
        started_by_pid: record.pid,
        phase: record.phase,
        action,
    })
}

/// Everything was on disk: only the checkpoint may still be armed.
async fn finish_commit<N: Host>(nm: &N, record: &Record) -> Result<(), NmError> {
    if let Some(checkpoint) = alive_checkpoint(nm, record).await? {
        nm.checkpoint_destroy(&checkpoint).await?;
    }
    Ok(())
}

/// Brings the host back to how it was before the recorded change: roll back
/// the checkpoint if it still exists, then make sure the devices run the
/// profiles they ran before and nothing netbridge created is left.
pub async fn undo<N: Host>(nm: &N, record: &Record, progress: &Progress) -> Result<(), NmError> {
    nm.clear_leftovers(record, progress).await?;
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
    nm.restore(record, rolled_back, progress).await
}

/// What must go before the checkpoint is rolled back: the guest-path
/// check's throwaway ports. While they exist, NetworkManager would give the
/// uplink it restores a higher route metric (it reserves one per
/// Ethernet-like device).
///
/// And an uplink a conversion stopped while handing it over (NetworkManager
/// leaving it alone, attached to the bridge in the kernel): freed from the
/// bridge, so the profile brought back configures it at once.
/// NetworkManager 1.42 would otherwise detach it during that activation and
/// stall it in IP_CONFIG (`nm_device_slave_notify_release` cancels the
/// activation's pending stage). Activating a profile on an unmanaged
/// device manages it again, whether NetworkManager still has the
/// checkpoint (which restores the uplink managed) or lost it by
/// restarting (its run-state file keeps the uplink unmanaged).
pub async fn clear_leftovers(nm: &Nm, record: &Record, progress: &Progress) -> Result<(), NmError> {
    if let Change::Convert { uplink, .. } = &record.change {
        for port in crate::checks::remove_guest_leftovers(nm).await? {
            progress.step(
                "cleaned",
                format!("{port}, a throwaway port of an interrupted guest-path check, removed"),
            );
        }
        free_handed_over(nm, uplink, progress).await?;
    }
    Ok(())
}

async fn free_handed_over(nm: &Nm, uplink: &str, progress: &Progress) -> Result<(), NmError> {
    let Some(device) = nm.device_by_iface(uplink).await? else {
        return Ok(());
    };
    if nm.device_info(&device).await?.state != netbridge_dbus::state::DeviceState::Unmanaged {
        return Ok(());
    }
    let freed = match crate::kernel::controller(uplink).await {
        Ok(None) => return Ok(()),
        Ok(Some(_)) => crate::kernel::detach(uplink).await,
        Err(e) => Err(e),
    };
    progress.step(
        "cleaned",
        match freed {
            Ok(()) => format!(
                "{uplink}, left alone by NetworkManager mid-hand-over, freed from its bridge"
            ),
            Err(e) => format!("{uplink} stays attached until its profile is brought back: {e}"),
        },
    );
    Ok(())
}

/// The change-specific half of an undo: the devices run the profiles they
/// ran before, with their options as they were, and nothing netbridge
/// created is left — after the checkpoint was rolled back (`rolled_back`)
/// or without it (NetworkManager lost it).
pub async fn restore(
    nm: &Nm,
    record: &Record,
    rolled_back: bool,
    progress: &Progress,
) -> Result<(), NmError> {
    match &record.change {
        Change::Convert {
            bridge,
            uplink,
            created,
            original,
            held,
        } => {
            remove_profiles(nm, created, progress).await?;
            remove_bridge(nm, bridge, progress).await?;
            set_autoconnect(nm, &original.uuid, &original.id, original.autoconnect).await?;
            // A held lease is back at once; DHCP may still be waiting for
            // its server, which a rollback must never depend on.
            let back = if *held && rolled_back {
                Back::Configuring
            } else {
                Back::Activated
            };
            bring_back(nm, uplink, &original.uuid, rolled_back, back).await
        }
        Change::Adopt {
            bridge,
            bridge_uuid,
            created,
            restore,
            ..
        } => {
            remove_profiles(nm, created, progress).await?;
            if rolled_back {
                // The checkpoint restores the profile's settings but leaves
                // them as an unsaved copy shadowing the file: save them back.
                persist_if_unsaved(nm, bridge_uuid).await
            } else {
                // Without the checkpoint the in-memory changes must be
                // written back by hand: the options as they were, no mark.
                restore_options(nm, bridge, bridge_uuid, restore).await?;
                progress.step(
                    "cleanup",
                    format!("{bridge}'s profile has its options back and is no longer netbridge's"),
                );
                Ok(())
            }
        }
        Change::Modify {
            bridge,
            uplink,
            bridge_uuid,
            port_uuid,
            restore,
            port_restore,
        } => {
            if rolled_back {
                persist_if_unsaved(nm, bridge_uuid).await?;
                persist_if_unsaved(nm, port_uuid).await?;
            } else {
                if let Some(port_restore) = port_restore {
                    restore_options(nm, uplink, port_uuid, port_restore).await?;
                }
                restore_options(nm, bridge, bridge_uuid, restore).await?;
            }
            // The port first: a bridge's MTU cannot exceed its port's.
            let links = [(uplink, port_restore.as_ref()), (bridge, Some(restore))];
            for (iface, restore) in links {
                if let Some(mtu) = restore.and_then(|r| r.link_mtu) {
                    set_link_mtu(nm, iface, mtu).await?;
                }
            }
            progress.step(
                "cleanup",
                format!("{bridge}'s options are back as they were"),
            );
            Ok(())
        }
        Change::Create { bridge, uuid } => {
            remove_profiles(nm, std::slice::from_ref(uuid), progress).await?;
            remove_bridge(nm, bridge, progress).await
        }
        Change::Delete {
            bridge,
            uuid,
            was_up,
        } => match nm.profile_by_uuid(uuid).await? {
            Some(profile) if *was_up => bring_up_network(nm, bridge, uuid, &profile).await,
            Some(_) => Ok(()),
            // The commit had deleted the profile: finish it instead.
            None => remove_bridge(nm, bridge, progress).await,
        },
        Change::Revert {
            bridge,
            uplink,
            bridge_uuid,
            port_uuid,
            original,
        } => {
            let bridge_kept = nm.profile_by_uuid(bridge_uuid).await?.is_some()
                && nm.profile_by_uuid(port_uuid).await?.is_some();
            if bridge_kept {
                set_autoconnect(nm, &original.uuid, &original.id, false).await?;
                bring_back(nm, uplink, port_uuid, rolled_back, Back::Activated).await?;
                if rolled_back {
                    return Ok(());
                }
                // The revert had moved the bridge's routes to the worst
                // metric in memory, which only the checkpoint took back.
                reapply_profile(nm, bridge).await?;
                progress.step(
                    "cleanup",
                    format!("{bridge} runs its saved profile again (its route metric back)"),
                );
                Ok(())
            } else {
                // The commit had already deleted the bridge: finish it instead.
                set_autoconnect(nm, &original.uuid, &original.id, original.autoconnect).await?;
                bring_back(nm, uplink, &original.uuid, rolled_back, Back::Activated).await
            }
        }
    }
}

/// The device `iface` runs its profile's settings again (Reapply), if it
/// runs one.
async fn reapply_profile(nm: &Nm, iface: &str) -> Result<(), NmError> {
    let Some(device) = nm.device_by_iface(iface).await? else {
        return Ok(());
    };
    match nm.reapply(&device).await {
        Err(e) if !e.is_gone() => Err(e),
        _ => Ok(()),
    }
}

async fn persist_if_unsaved(nm: &Nm, uuid: &str) -> Result<(), NmError> {
    let Some(path) = nm.profile_by_uuid(uuid).await? else {
        return Ok(());
    };
    if nm.profile_info(&path).await?.in_memory_only {
        nm.update_profile(&path, None, Update2Flags::TO_DISK)
            .await?;
    }
    Ok(())
}

/// Sets a link's MTU in place through what its device runs with (not its
/// profile): the value it had before a change that NetworkManager, with
/// the profile's MTU back at "auto", would otherwise leave.
async fn set_link_mtu(nm: &Nm, iface: &str, mtu: u32) -> Result<(), NmError> {
    let Some(device) = nm.device_by_iface(iface).await? else {
        return Ok(());
    };
    let (applied, version) = match nm.applied_versioned(&device).await {
        Ok(applied) => applied,
        // Not running a profile: nothing to put back in place.
        Err(e) if e.is_gone() => return Ok(()),
        Err(e) => return Err(e),
    };
    let mut applied = crate::plan::without_legacy_forms(&applied)?;
    applied.set(names::ETHERNET, "mtu", mtu);
    nm.reapply_settings(&device, &applied, version).await
}

/// Writes the recorded options back to a profile on disk and applies them
/// to its device in place.
async fn restore_options(
    nm: &Nm,
    iface: &str,
    uuid: &str,
    restore: &crate::plan::OptionsRestore,
) -> Result<(), NmError> {
    let Some(path) = nm.profile_by_uuid(uuid).await? else {
        return Ok(());
    };
    let settings = restore.apply(&nm.profile_settings(&path).await?)?;
    nm.update_profile(&path, Some(&settings), Update2Flags::TO_DISK)
        .await?;
    if let Some(device) = nm.device_by_iface(iface).await? {
        match nm.reapply(&device).await {
            Ok(()) => {}
            // Not running the profile: nothing to put back in place.
            Err(e) if e.is_gone() => {}
            // A MAC goes back only with an activation.
            Err(e) if e.dbus_name() == Some(errors::DEVICE_INCOMPATIBLE_CONNECTION) => {
                let active = nm.activate(&path, &device).await?;
                let up = crate::nm::ActivationGoal::default();
                nm.wait_activated(&active, iface, up, RESTORE).await?;
            }
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

pub(crate) async fn alive_checkpoint<N: Host>(
    nm: &N,
    record: &Record,
) -> Result<Option<OwnedObjectPath>, NmError> {
    match &record.checkpoint {
        Some((path, created)) => recorded_checkpoint(nm, path, *created).await,
        None => unrecorded_checkpoint(nm, record).await,
    }
}

async fn recorded_checkpoint<N: Host>(
    nm: &N,
    path: &str,
    created: i64,
) -> Result<Option<OwnedObjectPath>, NmError> {
    for checkpoint in nm.checkpoints().await? {
        // NetworkManager numbers checkpoints afresh after a restart: the path
        // alone could name someone else's checkpoint.
        if checkpoint.as_str() == path && nm.checkpoint_created(&checkpoint).await? == created {
            return Ok(Some(checkpoint));
        }
    }
    Ok(None)
}

/// netbridge died between asking for the checkpoint and recording it: the
/// one created after the record, on the record's uplink, is ours. Anyone
/// else's checkpoint fails one of the two tests and is left alone.
async fn unrecorded_checkpoint<N: Host>(
    nm: &N,
    record: &Record,
) -> Result<Option<OwnedObjectPath>, NmError> {
    let (Some(since), Some(uplink)) = (record.boottime_ms, record.change.uplink()) else {
        return Ok(None);
    };
    let Some(device) = nm.device_by_iface(uplink).await? else {
        return Ok(None);
    };
    for checkpoint in nm.checkpoints().await? {
        if nm.checkpoint_created(&checkpoint).await? >= since
            && nm.checkpoint_devices(&checkpoint).await?.contains(&device)
        {
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

/// Removes the bridge device once its profile is gone.
pub async fn remove_bridge(nm: &Nm, bridge: &str, progress: &Progress) -> Result<(), NmError> {
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

/// Sets a profile's autoconnect on disk, if it differs.
pub async fn set_autoconnect(nm: &Nm, uuid: &str, id: &str, value: bool) -> Result<(), NmError> {
    let Some(path) = nm.profile_by_uuid(uuid).await? else {
        return Err(NmError::Unexpected {
            what: format!("the profile '{id}' ({uuid}) no longer exists"),
        });
    };
    let mut settings = nm.profile_settings(&path).await?;
    if settings
        .bool(names::CONNECTION, "autoconnect")?
        .unwrap_or(true)
        == value
    {
        return Ok(());
    }
    settings.set(names::CONNECTION, "autoconnect", value);
    let settings = crate::plan::without_legacy_forms(&settings)?;
    nm.update_profile(&path, Some(&settings), Update2Flags::TO_DISK)
        .await
}

/// How far a device must be back before the host counts as restored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Back {
    Activated,
    /// Configuring IP or further: its addresses are in place.
    Configuring,
}

/// Makes sure the uplink runs the profile `uuid` (again).
async fn bring_back(
    nm: &Nm,
    uplink: &str,
    uuid: &str,
    rolled_back: bool,
    back: Back,
) -> Result<(), NmError> {
    let Some(device) = nm.device_by_iface(uplink).await? else {
        return Err(NmError::Unexpected {
            what: format!("the uplink {uplink} has disappeared"),
        });
    };
    // After a checkpoint rollback NetworkManager re-activates the profile by
    // itself; activating it again would only bounce the link.
    if back == Back::Configuring {
        return nm
            .wait_device_configures(&device, uplink, uuid, SETTLE)
            .await;
    }
    if rolled_back
        && nm
            .wait_device_runs(&device, uplink, uuid, SETTLE)
            .await
            .is_ok()
    {
        return Ok(());
    }
    if runs(nm, &device, uuid).await? {
        return Ok(());
    }
    let Some(profile) = nm.profile_by_uuid(uuid).await? else {
        return Err(NmError::Unexpected {
            what: format!("the profile {uuid} for {uplink} no longer exists"),
        });
    };
    nm.activate(&profile, &device).await?;
    nm.wait_device_runs(&device, uplink, uuid, RESTORE).await
}

/// Activates a network's profile again, unless it runs already
/// (NetworkManager restarted and brought it up by itself).
async fn bring_up_network(
    nm: &Nm,
    bridge: &str,
    uuid: &str,
    profile: &ObjectPath<'_>,
) -> Result<(), NmError> {
    if let Some(device) = nm.device_by_iface(bridge).await? {
        if runs(nm, &device, uuid).await? {
            return Ok(());
        }
    }
    let any_device = ObjectPath::from_static_str_unchecked(netbridge_dbus::NULL_PATH);
    let active = nm.activate(profile, &any_device).await?;
    nm.wait_activated(&active, bridge, crate::nm::NETWORK_UP, RESTORE)
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
