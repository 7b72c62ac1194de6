//! netbridge's own record of a change in progress, on disk, so a change cut
//! short (netbridge killed, NetworkManager restarted and its checkpoint lost)
//! is found and undone by the next run. Also the lock that keeps two netbridge
//! processes from changing the host at once.

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Seek, Write};

use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use tokio::io::AsyncWriteExt;

use nix::fcntl::{Flock, FlockArg};
use serde::{Deserialize, Serialize};

use crate::plan::Original;

/// The journal's file in the state directory.
pub const JOURNAL: &str = "journal.json";
const LOCK: &str = "lock";

#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    #[error("cannot use the state directory {}: {source}", path.display())]
    Dir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{} is not a netbridge state file ({source}); move it away after checking the host by hand", path.display())]
    Corrupt {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error("another netbridge process{} is changing this host's network; wait for it to finish", holder.map(|p| format!(" (pid {p})")).unwrap_or_default())]
    Busy { holder: Option<u32> },
}

/// Where a change stands: decides what undoing it means.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Phase {
    /// On trial under a checkpoint; nothing is on disk yet.
    Applying,
    /// Checks passed; profiles are being written to disk.
    Committing,
    /// Everything is on disk; only the checkpoint remains to be destroyed.
    Committed,
    /// Checks passed (`--confirm`); nothing is on disk, the checkpoint is
    /// armed until the deadline: `netbridge confirm` commits, anything else
    /// (the deadline, `netbridge rollback`, a NetworkManager restart) undoes.
    AwaitingConfirm,
}

/// One write of a commit, as data: run at once, or recorded for
/// `netbridge confirm`, which runs in another process.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "action", rename_all = "kebab-case")]
pub enum Save {
    /// The profile as it runs (in memory) saved to disk.
    ToDisk { uuid: String },
    /// The profile's autoconnect set on disk.
    Autoconnect {
        uuid: String,
        id: String,
        value: bool,
    },
    /// The profile deleted.
    Delete { uuid: String },
}

/// What a change that awaits confirmation commits, and until when.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Pending {
    /// Seconds since the epoch after which it rolls back by itself.
    pub deadline_unix: u64,
    pub seconds: u32,
    pub saves: Vec<Save>,
    /// What the commit did, for people.
    pub done: String,
}

impl Phase {
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Applying => "applying",
            Phase::Committing => "committing",
            Phase::Committed => "committed",
            Phase::AwaitingConfirm => "awaiting-confirm",
        }
    }
}

/// What an unfinished change did, and so how to undo it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "operation", rename_all = "kebab-case")]
pub enum Change {
    /// `convert`: new bridge and port profiles; the original profile to bring back.
    Convert {
        bridge: String,
        uplink: String,
        created: Vec<String>,
        original: Original,
        /// The uplink's DHCP lease was held statically for the change (in
        /// memory only): after a rollback it may run activating, address in
        /// place, until its DHCP server answers.
        #[serde(default)]
        held: bool,
    },
    /// `create`: a new network bridge, to delete if the change is cut short.
    Create { bridge: String, uuid: String },
    /// `delete`: a network's bridge taken down, its profile still on disk;
    /// brought up again (if it was up) when the change is undone.
    Delete {
        bridge: String,
        uuid: String,
        was_up: bool,
    },
    /// `convert --adopt`: a hand-made bridge marked and its options changed
    /// in memory; a plain profile made for the uplink.
    Adopt {
        bridge: String,
        uplink: String,
        bridge_uuid: String,
        created: Vec<String>,
        restore: crate::plan::OptionsRestore,
    },
    /// A modification in place: netbridge's bridge (and its port, for the
    /// MTU) given the declared options in memory.
    Modify {
        bridge: String,
        uplink: String,
        bridge_uuid: String,
        port_uuid: String,
        restore: crate::plan::OptionsRestore,
        port_restore: Option<crate::plan::OptionsRestore>,
    },
    /// `revert`: the original profile back on the uplink; bridge and port profiles to delete.
    Revert {
        bridge: String,
        uplink: String,
        bridge_uuid: String,
        port_uuid: String,
        original: Original,
    },
}

impl Change {
    pub fn operation(&self) -> &'static str {
        match self {
            Change::Convert { .. } => "convert",
            Change::Adopt { .. } => "adopt",
            Change::Modify { .. } => "modify",
            Change::Revert { .. } => "revert",
            Change::Create { .. } => "create",
            Change::Delete { .. } => "delete",
        }
    }

    /// The uplink the change touches, if any.
    pub fn uplink(&self) -> Option<&str> {
        match self {
            Change::Convert { uplink, .. }
            | Change::Adopt { uplink, .. }
            | Change::Modify { uplink, .. }
            | Change::Revert { uplink, .. } => Some(uplink),
            Change::Create { .. } | Change::Delete { .. } => None,
        }
    }

    /// Whether a NetworkManager checkpoint guards the change. A network
    /// created or deleted touches no other device, and a checkpoint covers
    /// only devices that exist: its trial ends at its deadline by the
    /// watcher's hand (or the next run's), not by NetworkManager's timer.
    pub fn has_checkpoint(&self) -> bool {
        self.uplink().is_some()
    }

    pub fn bridge(&self) -> &str {
        match self {
            Change::Convert { bridge, .. }
            | Change::Adopt { bridge, .. }
            | Change::Modify { bridge, .. }
            | Change::Revert { bridge, .. }
            | Change::Create { bridge, .. }
            | Change::Delete { bridge, .. } => bridge,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Record {
    pub pid: u32,
    pub started_unix: u64,
    pub phase: Phase,
    /// The NetworkManager checkpoint guarding the change, with its creation
    /// time: NetworkManager reuses paths after a restart. Written as an
    /// object (`{"path", "created_ms"}`); older journals hold a pair.
    #[serde(
        serialize_with = "checkpoint_object",
        deserialize_with = "checkpoint_either"
    )]
    pub checkpoint: Option<(String, i64)>,
    /// CLOCK_BOOTTIME (ms) when the record was written, before the checkpoint
    /// was asked for: a checkpoint created later on the same devices, while the
    /// journal names none, is this change's (netbridge died in between).
    #[serde(default)]
    pub boottime_ms: Option<i64>,
    pub change: Change,
    /// Set while the change awaits `netbridge confirm`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pending: Option<Pending>,
}

#[derive(Serialize, Deserialize)]
struct CheckpointRef {
    path: String,
    /// NetworkManager's `Created` (CLOCK_BOOTTIME, ms).
    created_ms: i64,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum CheckpointForm {
    Object(CheckpointRef),
    Pair(String, i64),
}

fn checkpoint_object<S: serde::Serializer>(
    checkpoint: &Option<(String, i64)>,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    checkpoint
        .as_ref()
        .map(|(path, created_ms)| CheckpointRef {
            path: path.clone(),
            created_ms: *created_ms,
        })
        .serialize(serializer)
}

fn checkpoint_either<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<(String, i64)>, D::Error> {
    Ok(
        Option::<CheckpointForm>::deserialize(deserializer)?.map(|form| match form {
            CheckpointForm::Object(c) => (c.path, c.created_ms),
            CheckpointForm::Pair(path, created_ms) => (path, created_ms),
        }),
    )
}

impl Record {
    /// What the change commits once confirmed, while it awaits confirmation.
    pub fn pending_confirm(&self) -> Option<&Pending> {
        self.pending
            .as_ref()
            .filter(|_| self.phase == Phase::AwaitingConfirm)
    }

    /// What a confirmed commit cut short (the confirming process killed
    /// while it wrote) still has to write.
    pub fn interrupted_confirm(&self) -> Option<&Pending> {
        self.pending
            .as_ref()
            .filter(|_| self.phase == Phase::Committing)
    }

    pub fn new(change: Change) -> Self {
        Record {
            pid: std::process::id(),
            started_unix: now_unix(),
            phase: Phase::Applying,
            checkpoint: None,
            boottime_ms: boottime_ms(),
            change,
            pending: None,
        }
    }
}

/// Seconds since the epoch, for the records people read and for the
/// agent's retry schedule.
pub fn now_unix() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn boottime_ms() -> Option<i64> {
    let now = nix::time::clock_gettime(nix::time::ClockId::CLOCK_BOOTTIME).ok()?;
    Some(now.tv_sec() * 1000 + now.tv_nsec() / 1_000_000)
}

/// The state directory (default `/var/lib/netbridge`).
#[derive(Debug, Clone)]
pub struct Store {
    dir: PathBuf,
}

/// Held while a process may change the host; released on drop.
#[derive(Debug)]
pub struct Lock {
    _file: Flock<File>,
}

impl Store {
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Store { dir: dir.into() }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn ensure_dir(&self) -> Result<(), JournalError> {
        let dir_err = |source| JournalError::Dir {
            path: self.dir.clone(),
            source,
        };
        fs::create_dir_all(&self.dir).map_err(dir_err)?;
        // Readable by all, like /var/lib/NetworkManager: `netbridge status`
        // works without root, and nothing here is secret (profile names and
        // UUIDs, bridge options, results; never a profile's secrets).
        fs::set_permissions(&self.dir, fs::Permissions::from_mode(0o755)).map_err(dir_err)
    }

    /// Takes the host-wide lock without waiting: a second process refuses at once.
    pub fn lock(&self) -> Result<Lock, JournalError> {
        self.take_lock(FlockArg::LockExclusiveNonblock)
    }

    /// Waits for the lock (blocking: call from a blocking thread). The agent
    /// waits for a `netbridge` run by hand to finish rather than skip its work.
    pub fn lock_blocking(&self) -> Result<Lock, JournalError> {
        self.take_lock(FlockArg::LockExclusive)
    }

    fn take_lock(&self, how: FlockArg) -> Result<Lock, JournalError> {
        self.ensure_dir()?;
        let path = self.dir.join(LOCK);
        let io = |source| JournalError::Io {
            path: path.clone(),
            source,
        };
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(&path)
            .map_err(io)?;
        let mut locked = match Flock::lock(file, how) {
            Ok(locked) => locked,
            Err((mut file, nix::errno::Errno::EWOULDBLOCK)) => {
                let mut text = String::new();
                let holder = file
                    .read_to_string(&mut text)
                    .ok()
                    .and_then(|_| text.trim().parse().ok());
                return Err(JournalError::Busy { holder });
            }
            Err((_, errno)) => return Err(io(std::io::Error::from(errno))),
        };
        locked.set_len(0).map_err(io)?;
        locked.rewind().map_err(io)?;
        write!(locked, "{}", std::process::id()).map_err(io)?;
        Ok(Lock { _file: locked })
    }

    /// The pid of the process holding the lock now, if any — found without
    /// taking the lock, so that looking never makes a change refuse as busy.
    /// Matched by inode alone: /proc/locks names the filesystem's device,
    /// which on btrfs or overlayfs is not the one stat() reports.
    pub fn holder(&self) -> Option<u32> {
        use std::os::unix::fs::MetadataExt;
        let inode = fs::metadata(self.dir.join(LOCK)).ok()?.ino();
        let locks = fs::read_to_string("/proc/locks").ok()?;
        flock_holder(&locks, inode)
    }

    pub async fn read(&self) -> Result<Option<Record>, JournalError> {
        self.read_json(JOURNAL).await
    }

    /// Replaces the journal atomically and durably: a power cut leaves the old
    /// record or the new one, never half of one.
    pub async fn write(&self, lock: &Lock, record: &Record) -> Result<(), JournalError> {
        self.write_json(lock, JOURNAL, record).await
    }

    pub async fn clear(&self, _lock: &Lock) -> Result<(), JournalError> {
        let path = self.dir.join(JOURNAL);
        match tokio::fs::remove_file(&path).await {
            Ok(()) => self.sync_dir().await,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(source) => Err(JournalError::Io { path, source }),
        }
    }

    /// Reads a JSON file of the state directory; `None` if it does not exist.
    pub async fn read_json<T: serde::de::DeserializeOwned>(
        &self,
        name: &str,
    ) -> Result<Option<T>, JournalError> {
        let path = self.dir.join(name);
        match tokio::fs::read(&path).await {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map(Some)
                .map_err(|source| JournalError::Corrupt { path, source }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(source) => Err(JournalError::Io { path, source }),
        }
    }

    /// Writes a JSON file of the state directory atomically (temp file, fsync,
    /// rename, fsync of the directory), off the async runtime's thread.
    pub async fn write_json<T: Serialize>(
        &self,
        _lock: &Lock,
        name: &str,
        value: &T,
    ) -> Result<(), JournalError> {
        self.ensure_dir()?;
        let path = self.dir.join(name);
        let tmp = self.dir.join(format!("{name}.tmp"));
        let io = |source| JournalError::Io {
            path: path.clone(),
            source,
        };
        let bytes = serde_json::to_vec_pretty(value).map_err(|e| io(e.into()))?;
        let mut file = tokio::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o644)
            .open(&tmp)
            .await
            .map_err(io)?;
        // Whatever the umask (the agent's unit has 0077): see `ensure_dir`.
        file.set_permissions(fs::Permissions::from_mode(0o644))
            .await
            .map_err(io)?;
        file.write_all(&bytes).await.map_err(io)?;
        file.sync_all().await.map_err(io)?;
        tokio::fs::rename(&tmp, &path).await.map_err(io)?;
        self.sync_dir().await
    }

    async fn sync_dir(&self) -> Result<(), JournalError> {
        let dir = self.dir.clone();
        let synced =
            tokio::task::spawn_blocking(move || File::open(&dir).and_then(|d| d.sync_all()))
                .await
                .unwrap_or_else(|e| Err(std::io::Error::other(e)));
        synced.map_err(|source| JournalError::Io {
            path: self.dir.clone(),
            source,
        })
    }
}

/// The holder of a flock on `inode` in /proc/locks, whose lines read
/// `1: FLOCK  ADVISORY  WRITE 1234 fd:01:5678 0 EOF` (waiters have `->`
/// after the number and hold nothing).
fn flock_holder(locks: &str, inode: u64) -> Option<u32> {
    locks.lines().find_map(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let [_, "FLOCK", _, _, pid, file, ..] = fields.as_slice() else {
            return None;
        };
        let ino = file.rsplit(':').next()?.parse::<u64>().ok()?;
        (ino == inode).then(|| pid.parse().ok()).flatten()
    })
}

impl JournalError {
    /// Refused for want of permission: the state directory is root's.
    pub fn needs_root(&self) -> bool {
        match self {
            JournalError::Dir { source, .. } | JournalError::Io { source, .. } => {
                source.kind() == std::io::ErrorKind::PermissionDenied
            }
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record() -> Record {
        Record::new(Change::Convert {
            bridge: "br0".into(),
            uplink: "ens32".into(),
            created: vec!["u1".into(), "u2".into()],
            original: Original {
                uuid: "u0".into(),
                id: "ens32".into(),
                autoconnect: true,
            },
            held: false,
        })
    }

    #[test]
    fn a_checkpoint_is_written_as_an_object_and_read_in_both_forms() {
        let mut rec = record();
        rec.checkpoint = Some(("/org/freedesktop/NetworkManager/Checkpoint/3".into(), 7));
        let mut doc = serde_json::to_value(&rec).unwrap();
        assert_eq!(
            doc["checkpoint"],
            serde_json::json!({"path": "/org/freedesktop/NetworkManager/Checkpoint/3", "created_ms": 7})
        );
        assert_eq!(serde_json::from_value::<Record>(doc.clone()).unwrap(), rec);
        // A journal an older netbridge left behind holds a pair.
        doc["checkpoint"] = serde_json::json!(["/org/freedesktop/NetworkManager/Checkpoint/3", 7]);
        assert_eq!(serde_json::from_value::<Record>(doc).unwrap(), rec);
    }

    #[test]
    fn a_pending_commit_is_awaiting_confirmation_or_cut_short_by_phase() {
        let mut rec = record();
        assert!(rec.pending_confirm().is_none() && rec.interrupted_confirm().is_none());
        rec.pending = Some(Pending {
            deadline_unix: 1,
            seconds: 1,
            saves: Vec::new(),
            done: String::new(),
        });
        for (phase, awaiting, cut_short) in [
            (Phase::Applying, false, false),
            (Phase::AwaitingConfirm, true, false),
            (Phase::Committing, false, true),
            (Phase::Committed, false, false),
        ] {
            rec.phase = phase;
            assert_eq!(rec.pending_confirm().is_some(), awaiting, "{phase:?}");
            assert_eq!(rec.interrupted_confirm().is_some(), cut_short, "{phase:?}");
        }
        let network = Change::Create {
            bridge: "virbr1".into(),
            uuid: "u".into(),
        };
        assert!(rec.change.has_checkpoint() && !network.has_checkpoint());
    }

    #[tokio::test]
    async fn a_record_survives_a_round_trip_and_clears() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::new(dir.path().join("state"));
        let lock = store.lock().unwrap();
        assert_eq!(store.read().await.unwrap(), None);
        let mut rec = record();
        rec.checkpoint = Some(("/org/freedesktop/NetworkManager/Checkpoint/1".into(), 42));
        store.write(&lock, &rec).await.unwrap();
        assert_eq!(store.read().await.unwrap(), Some(rec));
        store.clear(&lock).await.unwrap();
        assert_eq!(store.read().await.unwrap(), None);
    }

    #[test]
    fn a_second_lock_is_refused_and_names_the_holder() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::new(dir.path());
        let _held = store.lock().unwrap();
        match Store::new(dir.path()).lock() {
            Err(JournalError::Busy { holder }) => assert_eq!(holder, Some(std::process::id())),
            other => panic!("expected Busy, got {other:?}"),
        }
    }

    #[test]
    fn the_lock_holder_is_found_without_taking_the_lock() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::new(dir.path());
        assert_eq!(store.holder(), None, "no lock file yet");
        let held = store.lock().unwrap();
        assert_eq!(store.holder(), Some(std::process::id()));
        drop(held);
        assert_eq!(store.holder(), None, "released");
    }

    #[test]
    fn proc_locks_lines_are_read_for_holders_only() {
        let locks = "1: POSIX  ADVISORY  WRITE 10 fd:01:77 0 EOF\n\
                     2: FLOCK  ADVISORY  WRITE 4321 00:2a:77 0 EOF\n\
                     2: -> FLOCK  ADVISORY  WRITE 999 00:2a:77 0 EOF\n";
        assert_eq!(flock_holder(locks, 77), Some(4321));
        assert_eq!(flock_holder(locks, 78), None);
        assert_eq!(flock_holder("", 77), None);
    }

    #[tokio::test]
    async fn written_state_is_readable_by_all_but_writable_by_its_owner() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::new(dir.path().join("state"));
        let lock = store.lock().unwrap();
        store.write(&lock, &record()).await.unwrap();
        let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(store.dir()), 0o755);
        assert_eq!(mode(&store.dir().join(JOURNAL)), 0o644);
    }

    #[tokio::test]
    async fn a_garbled_journal_is_reported_not_guessed() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join(JOURNAL), b"{not json").unwrap();
        let err = Store::new(dir.path()).read().await.unwrap_err();
        assert!(err.to_string().contains("journal.json"));
    }
}
