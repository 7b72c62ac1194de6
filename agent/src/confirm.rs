//! `--confirm SECS`: a proven change that commits only when `netbridge
//! confirm` runs — from a new connection, so through the new path.
//!
//! The safety net needs no process: NetworkManager's checkpoint timer rolls
//! the change back at the deadline, nothing is on disk (a power cut boots the
//! old configuration), and the journal lets any later run clean up. The
//! commit is data in the journal, so the process that confirms makes it.
//! A watcher — a transient systemd unit, or without systemd a process in
//! its own session (no controlling terminal: an SSH session that ends,
//! SIGHUP, a vanished terminal do not reach it) — ends the change
//! at once when NetworkManager restarts and loses the checkpoint, and tidies
//! up after the deadline.

use std::ffi::OsStr;
use std::os::fd::{AsFd, AsRawFd, RawFd};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use futures_util::StreamExt;
use netbridge_dbus::proxy::manager::NetworkManagerProxy;
use netbridge_dbus::proxy::systemd::SystemdManagerProxy;
use netbridge_dbus::NM_BUS_NAME;
use nix::sys::inotify::{AddWatchFlags, InitFlags, Inotify};
use serde::Serialize;
use tokio::io::unix::AsyncFd;
use zbus::zvariant::Value;

use crate::checks::CheckContext;
use crate::journal::{
    now_unix, Change, JournalError, Lock, Pending, Phase, Record, Store, JOURNAL,
};
use crate::nm::{Nm, NmError};
use crate::recovery::{self, Recovered, RecoveryError, Trial};
use crate::report::Progress;
use crate::state::State;
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

/// How a change that awaits confirmation ends: the one wording of every
/// place that tells it (progress, the summary, `status`, a refusal).
pub fn how_it_ends(seconds_left: u64) -> String {
    format!(
        "`netbridge confirm` within {seconds_left} s commits it, `netbridge rollback` undoes it now, otherwise it rolls back by itself"
    )
}

/// The change `record` holds on trial, and how it ends.
pub fn awaiting(record: &Record, seconds_left: u64) -> String {
    format!(
        "the {} of {} passed its checks and is on trial, nothing written to disk: {}",
        record.change.operation(),
        record.change.bridge(),
        how_it_ends(seconds_left)
    )
}

/// The journal's record, with what it commits, if it awaits confirmation
/// or a confirmed commit of it was cut short.
async fn pending_record(store: &Store) -> Result<(Record, Pending), ConfirmError> {
    let Some(record) = store.read().await? else {
        return Err(ConfirmError::NothingPending(
            store.dir().display().to_string(),
        ));
    };
    let pending = record
        .pending_confirm()
        .or_else(|| record.interrupted_confirm())
        .cloned();
    match pending {
        Some(pending) => Ok((record, pending)),
        None => Err(ConfirmError::NotPending {
            operation: record.change.operation(),
            bridge: record.change.bridge().to_owned(),
            phase: record.phase,
        }),
    }
}

/// Commits the change that awaits confirmation, if it is still on trial;
/// undoes it otherwise. A confirmed commit that was cut short (its process
/// killed while it wrote) is made again: its writes are idempotent.
pub async fn confirm(
    nm: &Nm,
    store: &Store,
    lock: &Lock,
    progress: &Progress,
) -> Result<Confirmed, ConfirmError> {
    let (record, pending) = pending_record(store).await?;
    commit(nm, store, lock, record, pending, progress).await
}

async fn commit(
    nm: &Nm,
    store: &Store,
    lock: &Lock,
    mut record: Record,
    pending: Pending,
    progress: &Progress,
) -> Result<Confirmed, ConfirmError> {
    // Re-armed first. A checkpoint that is gone has rolled back; one that is
    // alive but cannot be re-armed is NetworkManager's error to report, the
    // change still on trial.
    let checkpoint = match recovery::on_trial(nm, &record).await? {
        Trial::Armed(checkpoint) => {
            nm.checkpoint_adjust(&checkpoint, COMMIT_TIME).await?;
            Some(checkpoint)
        }
        Trial::Unguarded => None,
        Trial::Over => {
            progress.step(
                "expired",
                format!(
                    "the {} of {} is no longer on trial (its deadline passed or NetworkManager restarted): it was rolled back",
                    record.change.operation(),
                    record.change.bridge()
                ),
            );
            let recovered = recovery::recover_record(nm, store, lock, record, progress).await?;
            return Ok(Confirmed::Expired {
                recovered: Some(recovered),
            });
        }
    };
    // From here the commit runs to its end: netbridge's own SIGINT and
    // SIGTERM handlers replace the default action that would kill it half-way,
    // and the checkpoint is re-armed while the saves run.
    let _signals = crate::transaction::interrupted();
    let keepalive = checkpoint
        .as_ref()
        .map(|checkpoint| Keepalive::start(nm, checkpoint, COMMIT_TIME));
    let tx = Transaction::new(nm, store, lock, progress);
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
    tx.finish(checkpoint.as_deref()).await;
    match &record.change {
        Change::Convert {
            bridge, held: true, ..
        } => nm.release_hold(bridge, progress).await,
        // As an unconfirmed revert does: the bridge's last result (applied,
        // unchanged) no longer holds.
        Change::Revert { bridge, .. } => {
            if let Err(e) = State::forget(store, lock, bridge).await {
                progress.step(
                    "warning",
                    format!(
                        "the revert is committed; forgetting {bridge}'s last result failed ({e})"
                    ),
                );
            }
        }
        _ => {}
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
    let (record, _) = pending_record(store).await?;
    Ok(recovery::recover_record(nm, store, lock, record, progress).await?)
}

/// Where the watcher runs.
#[derive(Debug)]
pub enum Watcher {
    /// A transient systemd unit (where systemd is on the system bus).
    Unit(String),
    /// A process in a session of its own.
    Process(u32),
}

impl std::fmt::Display for Watcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Watcher::Unit(name) => write!(f, "watcher unit {name}"),
            Watcher::Process(pid) => write!(f, "watcher pid {pid}"),
        }
    }
}

/// How long systemd gets to take the watcher's unit.
const SYSTEMD_CALL: Duration = Duration::from_secs(10);

/// Starts `netbridge await-confirm` for the state directory: as a transient
/// unit where systemd is on the system bus — outside every login session,
/// so logind's KillUserProcesses=yes cannot end it with the session that
/// started the change — otherwise (the lab, containers without systemd) as
/// a process in a session of its own.
pub async fn start_watcher(state_dir: &Path) -> std::io::Result<Watcher> {
    let exe = std::env::current_exe()?;
    let argv = [
        exe.display().to_string(),
        "--state-dir".to_owned(),
        state_dir.display().to_string(),
        "await-confirm".to_owned(),
    ];
    match tokio::time::timeout(SYSTEMD_CALL, start_unit(&argv)).await {
        Ok(Ok(unit)) => return Ok(Watcher::Unit(unit)),
        Ok(Err(e)) => {
            tracing::debug!(error = %e, "no transient unit: the watcher runs as a process of its own")
        }
        Err(_) => {
            tracing::debug!("systemd did not answer: the watcher runs as a process of its own")
        }
    }
    spawn_watcher(state_dir).map(Watcher::Process)
}

/// What `systemd-run` does, through systemd's D-Bus API.
async fn start_unit(argv: &[String]) -> zbus::Result<String> {
    let connection = zbus::Connection::system().await?;
    let systemd = SystemdManagerProxy::new(&connection).await?;
    // One a process: a unit of an earlier change may still be ending.
    let name = format!("netbridge-await-confirm-{}.service", std::process::id());
    let exec_start = vec![(argv[0].clone(), argv.to_vec(), false)];
    let properties = [
        (
            "Description",
            Value::from("netbridge: the change awaiting `netbridge confirm`"),
        ),
        ("ExecStart", Value::from(exec_start)),
        // Gone once it has ended, failed or not: nothing to clean up.
        ("CollectMode", Value::from("inactive-or-failed")),
    ];
    systemd
        .start_transient_unit(&name, "fail", &properties, &[])
        .await?;
    Ok(name)
}

/// Starts `netbridge await-confirm` for the state directory in a new
/// session, stdin and stdout on /dev/null, diagnostics appended to
/// [`WATCH_LOG`]. Returns its pid.
fn spawn_watcher(state_dir: &Path) -> std::io::Result<u32> {
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

/// How the watcher's watch ended, for its log.
#[derive(Debug)]
pub struct Watched {
    /// The change watched (none when nothing awaited confirmation).
    pub change: Option<(&'static str, String)>,
    pub result: &'static str,
}

/// The watcher: waits until the change awaiting confirmation is confirmed or
/// rolled back (by `netbridge rollback`, or NetworkManager's timer); undoes
/// it itself when NetworkManager lost the checkpoint (restarted) or the
/// deadline passed without NetworkManager's rollback; and finishes a
/// confirmed commit whose `netbridge confirm` was killed while it wrote.
pub async fn watch(state_dir: &Path) -> Watched {
    let store = Store::new(state_dir);
    // Steps as log events: the journal's, when there is one.
    let progress = Progress::new(false);
    let change = match store.read().await {
        Ok(Some(record)) => Some((record.change.operation(), record.change.bridge().to_owned())),
        _ => None,
    };
    let result = match JournalEvents::new(state_dir) {
        Ok(events) => watch_until_ended(&store, &progress, &events).await,
        Err(e) => {
            tracing::warn!(error = %e, "cannot watch the journal: NetworkManager's timer and the next netbridge run end the change");
            "gave up"
        }
    };
    Watched { change, result }
}

async fn watch_until_ended(
    store: &Store,
    progress: &Progress,
    events: &JournalEvents,
) -> &'static str {
    loop {
        match watch_once(store, progress, events).await {
            Ok(Some(ended)) => return ended,
            Ok(None) => {}
            Err(e) if past_deadline(store, GIVE_UP).await => {
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
    events: &JournalEvents,
) -> Result<Option<&'static str>, ConfirmError> {
    let Some(record) = store.read().await? else {
        return Ok(Some("ended by netbridge confirm or rollback"));
    };
    if record.interrupted_confirm().is_some() {
        return finish_cut_short(store, progress).await;
    }
    if record.pending_confirm().is_none() {
        return Ok(Some("ended by netbridge confirm or rollback"));
    }
    let nm = Nm::connect().await?;
    // After a restart: what NetworkManager brings back by itself first.
    nm.wait_startup_complete(STARTUP).await?;
    tokio::select! {
        woken = wait_for_change(&nm, &record) => woken?,
        // Confirmed, rolled back, or a confirm under way: look again.
        changed = events.changed() => {
            changed.map_err(|source| JournalError::Io { path: store.dir().to_owned(), source })?;
            return Ok(None);
        }
    }
    let lock = lock_blocking(store).await?;
    if store.read().await?.as_ref() != Some(&record) {
        // Confirmed, rolled back or recovered meanwhile: look again.
        return Ok(None);
    }
    match recovery::recover(&nm, store, &lock, progress).await {
        Ok(_) => Ok(Some("rolled back: not confirmed in time")),
        // Woken early with the change still on trial: wait again.
        Err(RecoveryError::AwaitingConfirm { .. }) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// A confirmed commit under way: `netbridge confirm` holds the lock while it
/// writes. Once the lock is free, a commit still recorded as under way was
/// cut short (the process killed), and is made again now — not left to
/// NetworkManager's timer and the next run's recovery.
async fn finish_cut_short(
    store: &Store,
    progress: &Progress,
) -> Result<Option<&'static str>, ConfirmError> {
    let lock = lock_blocking(store).await?;
    let Some(record) = store.read().await? else {
        return Ok(None);
    };
    let Some(pending) = record.interrupted_confirm().cloned() else {
        return Ok(None);
    };
    tracing::warn!(
        bridge = record.change.bridge(),
        pid = record.pid,
        "a `netbridge confirm` was cut short while it committed: finishing its commit"
    );
    let nm = Nm::connect().await?;
    Ok(Some(
        match commit(&nm, store, &lock, record, pending, progress).await? {
            Confirmed::Committed { .. } => {
                "committed (the commit of a confirm cut short, finished)"
            }
            Confirmed::Expired { .. } => "rolled back: no longer on trial",
            Confirmed::RolledBack { .. } => "rolled back: the commit failed",
        },
    ))
}

/// Waits for the lock (the confirming process or another run holding it)
/// off the async runtime's thread.
async fn lock_blocking(store: &Store) -> Result<Lock, JournalError> {
    let locker = store.clone();
    tokio::task::spawn_blocking(move || locker.lock_blocking())
        .await
        .map_err(|e| JournalError::Io {
            path: store.dir().to_owned(),
            source: std::io::Error::other(e),
        })?
}

/// Whether the recorded deadline passed more than `by` seconds ago (or
/// the journal cannot be read).
async fn past_deadline(store: &Store, by: u64) -> bool {
    match store.read().await {
        Ok(Some(record)) => record
            .pending
            .is_some_and(|pending| now_unix() > pending.deadline_unix + by),
        Ok(None) => false,
        Err(_) => true,
    }
}

/// Wakes on every replacement (a write is a rename) or removal of the
/// journal: a confirm, a rollback, a commit under way.
struct JournalEvents(AsyncFd<InotifyFd>);

struct InotifyFd(Inotify);

impl AsRawFd for InotifyFd {
    fn as_raw_fd(&self) -> RawFd {
        self.0.as_fd().as_raw_fd()
    }
}

impl JournalEvents {
    fn new(dir: &Path) -> std::io::Result<Self> {
        let inotify = Inotify::init(InitFlags::IN_NONBLOCK | InitFlags::IN_CLOEXEC)?;
        inotify.add_watch(dir, AddWatchFlags::IN_MOVED_TO | AddWatchFlags::IN_DELETE)?;
        // SAFETY: the Inotify owns its descriptor (an OwnedFd) and keeps it
        // open, the same one, for as long as the AsyncFd owns the Inotify.
        let registered = unsafe {
            AsyncFd::register_with_interest(InotifyFd(inotify), tokio::io::Interest::READABLE)
        };
        registered.map(JournalEvents).map_err(|e| e.into_parts().1)
    }

    async fn changed(&self) -> std::io::Result<()> {
        loop {
            let mut ready = self.0.readable().await?;
            let read =
                ready.try_io(|fd| fd.get_ref().0.read_events().map_err(std::io::Error::from));
            let Ok(events) = read else {
                continue;
            };
            if events?
                .iter()
                .any(|e| e.name.as_deref() == Some(OsStr::new(JOURNAL)))
            {
                return Ok(());
            }
        }
    }
}

/// Resolves when the trial is over (NetworkManager rolled back), when
/// NetworkManager restarted or its checkpoints changed, or when the
/// deadline (plus a grace) passed.
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
    if let Trial::Over = recovery::on_trial(nm, record).await? {
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
