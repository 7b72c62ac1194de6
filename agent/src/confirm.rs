//! `--confirm SECS`: a proven change that commits only when `netbridge
//! confirm` runs — from a new connection, so through the new path.
//!
//! The safety net needs no process: NetworkManager's checkpoint timer rolls
//! the change back at the deadline, nothing is on disk (a power cut boots the
//! old configuration), and the journal lets any later run clean up. The
//! commit is data in the journal, so the process that confirms makes it.
//! A watcher in its own session (no controlling terminal: an SSH session
//! that ends, SIGHUP, a vanished terminal do not reach it) ends the change
//! at once when NetworkManager restarts and loses the checkpoint, and tidies
//! up after the deadline.

use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use futures_util::StreamExt;
use netbridge_dbus::proxy::manager::NetworkManagerProxy;
use netbridge_dbus::NM_BUS_NAME;
use serde::Serialize;

use crate::checks::CheckContext;
use crate::journal::{now_unix, Change, JournalError, Lock, Phase, Record, Store};
use crate::nm::{Nm, NmError};
use crate::recovery::{self, Recovered, RecoveryError};
use crate::report::Progress;
use crate::transaction::{Failure, Host, Keepalive, Outcome, Transaction, TxError};

/// The watcher's diagnostics, in the state directory.
pub const WATCH_LOG: &str = "confirm-watch.log";

/// How long the commit gets once `netbridge confirm` has started it: the
/// checkpoint's timer is re-armed for this, so the deadline cannot pass
/// half-way through the writes.
const COMMIT_TIME: u32 = 30;

/// How long after the deadline the watcher undoes a change that
/// NetworkManager's timer did not roll back.
const GRACE: u64 = 2;

/// How long the watcher waits before trying again after a failure
/// (NetworkManager still starting).
const BACKOFF: Duration = Duration::from_secs(2);

/// How long after the deadline the watcher stops trying (NetworkManager
/// gone for good): the next netbridge run finishes the change instead.
const GIVE_UP: u64 = 300;

/// How long a restarted NetworkManager gets to finish starting.
const STARTUP: Duration = Duration::from_secs(60);

#[derive(Debug, thiserror::Error)]
pub enum ConfirmError {
    #[error("no change awaits confirmation (nothing is recorded in {0})")]
    NothingPending(String),
    #[error("the {operation} of {bridge} recorded in the journal does not await confirmation (phase {phase:?}); `netbridge recover` finishes or undoes it")]
    NotPending {
        operation: &'static str,
        bridge: String,
        phase: Phase,
    },
    #[error(transparent)]
    Journal(#[from] JournalError),
    #[error(transparent)]
    Recovery(#[from] RecoveryError),
    #[error(transparent)]
    Tx(#[from] TxError),
    #[error(transparent)]
    Nm(#[from] NmError),
}

/// What `netbridge confirm` did.
#[derive(Debug, Serialize)]
#[serde(tag = "result", rename_all = "kebab-case")]
pub enum Confirmed {
    /// Saved to disk, the checkpoint destroyed.
    Committed {
        operation: &'static str,
        bridge: String,
        done: String,
    },
    /// Too late: the deadline had passed or NetworkManager had lost the
    /// checkpoint; the change is undone.
    Expired { recovered: Option<Recovered> },
    /// The commit failed and was rolled back.
    RolledBack { reason: String },
}

/// The journal's record if it awaits confirmation.
async fn pending_record(store: &Store) -> Result<Record, ConfirmError> {
    let Some(record) = store.read().await? else {
        return Err(ConfirmError::NothingPending(
            store.dir().display().to_string(),
        ));
    };
    if record.phase != Phase::AwaitingConfirm || record.pending.is_none() {
        return Err(ConfirmError::NotPending {
            operation: record.change.operation(),
            bridge: record.change.bridge().to_owned(),
            phase: record.phase,
        });
    }
    Ok(record)
}

/// Commits the change that awaits confirmation, if its checkpoint is still
/// armed; undoes it otherwise.
pub async fn confirm(
    nm: &Nm,
    store: &Store,
    lock: &Lock,
    progress: &Progress,
) -> Result<Confirmed, ConfirmError> {
    let mut record = pending_record(store).await?;
    let Some(pending) = record.pending.clone() else {
        return Err(ConfirmError::NothingPending(
            store.dir().display().to_string(),
        ));
    };
    // Re-armed first. A checkpoint that is gone has rolled back; one that is
    // alive but cannot be re-armed is NetworkManager's error to report, the
    // change still on trial.
    let armed = match recovery::alive_checkpoint(nm, &record).await? {
        Some(checkpoint) => {
            nm.checkpoint_adjust(&checkpoint, COMMIT_TIME).await?;
            Some(checkpoint)
        }
        None => None,
    };
    let Some(checkpoint) = armed else {
        progress.step(
            "expired",
            format!(
                "the {} of {} is no longer on trial (its deadline passed or NetworkManager restarted): it was rolled back",
                record.change.operation(),
                record.change.bridge()
            ),
        );
        let recovered = recovery::recover(nm, store, lock, progress).await?;
        return Ok(Confirmed::Expired { recovered });
    };
    // From here the commit runs to its end: netbridge's own SIGINT and
    // SIGTERM handlers replace the default action that would kill it half-way,
    // and the checkpoint is re-armed while the saves run.
    let _signals = crate::transaction::interrupted();
    let keepalive = Keepalive::start(nm, &checkpoint, COMMIT_TIME);
    let tx = Transaction {
        nm,
        store,
        lock,
        progress,
        confirm: None,
    };
    if let Err(e) = tx.persist(&mut record, &pending.saves).await {
        drop(keepalive);
        let outcome = tx
            .roll_back(
                &record,
                Failure::Commit(e),
                &[],
                &CheckContext::default(),
                Duration::ZERO,
            )
            .await?;
        let reason = match outcome {
            Outcome::RolledBack { reason, .. } => reason,
            _ => "the commit failed".to_owned(),
        };
        return Ok(Confirmed::RolledBack { reason });
    }
    drop(keepalive);
    tx.finish(&checkpoint).await;
    if let Change::Convert {
        bridge, held: true, ..
    } = &record.change
    {
        tx.nm.release_hold(bridge, tx.progress).await;
    }
    progress.step("committed", pending.done.clone());
    Ok(Confirmed::Committed {
        operation: record.change.operation(),
        bridge: record.change.bridge().to_owned(),
        done: pending.done,
    })
}

/// Undoes the change that awaits confirmation now.
pub async fn rollback(
    nm: &Nm,
    store: &Store,
    lock: &Lock,
    progress: &Progress,
) -> Result<Recovered, ConfirmError> {
    let record = pending_record(store).await?;
    Ok(recovery::recover_record(nm, store, lock, record, progress).await?)
}

/// Starts `netbridge await-confirm` for the state directory in a new
/// session, stdin and stdout on /dev/null, diagnostics appended to
/// [`WATCH_LOG`]. Returns its pid.
pub fn spawn_watcher(state_dir: &Path) -> std::io::Result<u32> {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(state_dir.join(WATCH_LOG))?;
    let mut command = Command::new(std::env::current_exe()?);
    command
        .arg("--state-dir")
        .arg(state_dir)
        .arg("await-confirm")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log);
    // A new session before the watcher runs a single instruction: no
    // controlling terminal, and nothing sent to the starter's session or
    // process group (hangup, kill) reaches it — not even in its first
    // milliseconds.
    // SAFETY: setsid(2) is async-signal-safe and the closure allocates
    // nothing, as code between fork and exec must.
    unsafe {
        command.pre_exec(|| {
            nix::unistd::setsid()
                .map(drop)
                .map_err(std::io::Error::from)
        });
    }
    Ok(command.spawn()?.id())
}

/// The watcher: waits until the change awaiting confirmation is confirmed or
/// rolled back (by `netbridge rollback`, or NetworkManager's timer), and
/// undoes it itself when NetworkManager lost the checkpoint (restarted) or
/// the deadline passed without NetworkManager's rollback. Returns what ended it.
pub async fn watch(state_dir: &Path) -> &'static str {
    let store = Store::new(state_dir);
    let progress = Progress::new(true);
    loop {
        match watch_once(&store, &progress).await {
            Ok(Some(ended)) => return ended,
            Ok(None) => {}
            Err(e) if past_deadline(&store, GIVE_UP).await => {
                tracing::warn!(error = %e, "giving up: the next netbridge run finishes the change");
                return "gave up";
            }
            Err(e) => {
                tracing::warn!(error = %e, "the change awaiting confirmation: trying again");
                tokio::time::sleep(BACKOFF).await;
            }
        }
    }
}

/// One round of the watcher: `Some` once there is nothing left to watch.
async fn watch_once(
    store: &Store,
    progress: &Progress,
) -> Result<Option<&'static str>, ConfirmError> {
    let Some(record) = awaiting(store).await? else {
        return Ok(Some("ended"));
    };
    let nm = Nm::connect().await?;
    // After a restart: what NetworkManager brings back by itself first.
    nm.wait_startup_complete(STARTUP).await?;
    wait_for_change(&nm, &record).await?;
    let locker = store.clone();
    let lock = tokio::task::spawn_blocking(move || locker.lock_blocking())
        .await
        .map_err(|e| JournalError::Io {
            path: store.dir().to_owned(),
            source: std::io::Error::other(e),
        })??;
    if store.read().await?.as_ref() != Some(&record) {
        // Confirmed, rolled back or recovered meanwhile: look again.
        return Ok(None);
    }
    match recovery::recover(&nm, store, &lock, progress).await {
        Ok(_) => {
            tracing::warn!(
                bridge = record.change.bridge(),
                "the change was not confirmed: undone"
            );
            Ok(Some("rolled back"))
        }
        // Woken early with the checkpoint still armed: wait again.
        Err(RecoveryError::AwaitingConfirm { .. }) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// Whether the recorded deadline passed more than `by` seconds ago (or
/// the journal cannot be read).
async fn past_deadline(store: &Store, by: u64) -> bool {
    match store.read().await {
        Ok(Some(Record {
            pending: Some(pending),
            ..
        })) => now_unix() > pending.deadline_unix + by,
        Ok(_) => false,
        Err(_) => true,
    }
}

async fn awaiting(store: &Store) -> Result<Option<Record>, JournalError> {
    Ok(store
        .read()
        .await?
        .filter(|r| r.phase == Phase::AwaitingConfirm))
}

/// Resolves when the checkpoint is gone (NetworkManager rolled back or
/// restarted), the journal may have changed hands, or the deadline (plus a
/// grace) passed.
async fn wait_for_change(nm: &Nm, record: &Record) -> Result<(), ConfirmError> {
    let deadline = record
        .pending
        .as_ref()
        .map_or(0, |p| p.deadline_unix + GRACE);
    let conn = nm.connection();
    let dbus = zbus::fdo::DBusProxy::new(conn)
        .await
        .map_err(|e| NmError::from_call("DBus proxy", e))?;
    let mut owners = dbus
        .receive_name_owner_changed_with_args(&[(0, NM_BUS_NAME)])
        .await
        .map_err(|e| NmError::from_call("NameOwnerChanged", e))?;
    let manager = NetworkManagerProxy::new(conn)
        .await
        .map_err(|e| NmError::from_call("NetworkManager proxy", e))?;
    let mut checkpoints = manager.receive_checkpoints_changed().await;
    // A property stream starts with the value as it is: not a change.
    let _ = checkpoints.next().await;
    // Subscribed first, then looked: a change in between is not missed.
    if recovery::alive_checkpoint(nm, record).await?.is_none() {
        return Ok(());
    }
    let left = Duration::from_secs(deadline.saturating_sub(now_unix()));
    tokio::select! {
        () = tokio::time::sleep(left) => {}
        _ = owners.next() => {}
        _ = checkpoints.next() => {}
    }
    Ok(())
}
