//! The engine's failure paths on an in-memory NetworkManager: every phase
//! crossed with every failure, the commit that must not be undone, the
//! rollback that fails, and recovery finding its own checkpoint. The same
//! paths run against a real NetworkManager in the lab tests
//! (tests/tests/robustness.rs); these reach the ones a lab cannot provoke
//! on cue, in milliseconds.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use netbridge_dbus::errors;
use netbridge_dbus::state::RollbackResult;
use tokio::sync::{broadcast, Notify};
use zbus::zvariant::{ObjectPath, OwnedObjectPath};

use super::{Commit, Failure, Guard, Host, Outcome, Proven, Transaction, TxError};
use crate::checks::CheckContext;
use crate::journal::{Change, Lock, Phase, Record, Save, Store};
use crate::nm::NmError;
use crate::plan::Timing;
use crate::recovery;
use crate::report::Progress;
use crate::retry::Retry;

/// The phases of a guarded change, in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    Checkpoint,
    Apply,
    Verify,
    Checks,
    Commit,
}

const STEPS: [Step; 5] = [
    Step::Checkpoint,
    Step::Apply,
    Step::Verify,
    Step::Checks,
    Step::Commit,
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fault {
    /// Ctrl-C or SIGTERM arrives while the step runs.
    Stop,
    /// NetworkManager restarts: the step's call fails as the bus reports a
    /// vanished service, and the checkpoints it held are gone.
    NmGone,
    /// The step fails for good: NetworkManager refuses the call, the result
    /// is not as planned, a check fails.
    Fails,
}

const FAULTS: [Fault; 3] = [Fault::Stop, Fault::NmGone, Fault::Fails];

struct Armed {
    path: OwnedObjectPath,
    created: i64,
    devices: Vec<OwnedObjectPath>,
}

#[derive(Default)]
struct State {
    armed: Vec<Armed>,
    made: u32,
    fault: Option<(Step, Fault)>,
    /// Reading a checkpoint's creation time fails (once).
    created_fails: bool,
    /// NetworkManager restarts quietly at this step: its checkpoints are gone.
    lose_at: Option<Step>,
    /// netbridge freezes at this step (a test then drops the run: it died).
    hang_at: Option<Step>,
    destroy_fails: bool,
    rollback_fails: bool,
    /// What the engine did to the host, in order.
    log: Vec<String>,
}

/// NetworkManager in memory: checkpoints, the faults a test arms, and the
/// stop signal. Signal-like, the stop reaches only who listens already.
#[derive(Clone)]
struct FakeNm {
    state: Arc<Mutex<State>>,
    stop: broadcast::Sender<&'static str>,
    /// Notified when the trial reaches its apply step.
    applying: Arc<Notify>,
}

const UPLINK: &str = "ens32";
const UPLINK_PATH: &str = "/org/freedesktop/NetworkManager/Devices/2";
const BRIDGE_PATH: &str = "/org/freedesktop/NetworkManager/Devices/3";

fn path(text: &str) -> OwnedObjectPath {
    OwnedObjectPath::try_from(text).expect("a valid object path")
}

fn boottime_ms() -> i64 {
    let now = nix::time::clock_gettime(nix::time::ClockId::CLOCK_BOOTTIME).expect("boottime");
    now.tv_sec() * 1000 + now.tv_nsec() / 1_000_000
}

fn gone(call: &str) -> NmError {
    NmError::Method {
        call: call.to_owned(),
        name: errors::SERVICE_UNKNOWN.to_owned(),
        message: "The name org.freedesktop.NetworkManager was not provided by any .service files"
            .to_owned(),
    }
}

fn refused(call: &str) -> NmError {
    NmError::Method {
        call: call.to_owned(),
        name: "org.freedesktop.NetworkManager.Settings.Connection.Failed".to_owned(),
        message: "refused".to_owned(),
    }
}

fn unknown_object(call: &str) -> NmError {
    NmError::Method {
        call: call.to_owned(),
        name: errors::UNKNOWN_OBJECT.to_owned(),
        message: "no such object".to_owned(),
    }
}

impl FakeNm {
    fn new() -> Self {
        FakeNm {
            state: Arc::new(Mutex::new(State::default())),
            stop: broadcast::channel(1).0,
            applying: Arc::new(Notify::new()),
        }
    }

    fn with(self, arm: impl FnOnce(&mut State)) -> Self {
        arm(&mut self.state());
        self
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().expect("fake state")
    }

    fn log(&self) -> Vec<String> {
        self.state().log.clone()
    }

    fn note(&self, what: String) {
        self.state().log.push(what);
    }

    fn armed(&self) -> Vec<OwnedObjectPath> {
        self.state().armed.iter().map(|c| c.path.clone()).collect()
    }

    /// Runs one step of the change: fires the fault armed for it.
    async fn reach(&self, step: Step) -> Result<(), NmError> {
        self.note(format!("{step:?}"));
        if step == Step::Apply {
            self.applying.notify_one();
        }
        let (fault, hang) = {
            let mut state = self.state();
            if state.lose_at == Some(step) {
                state.armed.clear();
            }
            let fault = state.fault.filter(|(at, _)| *at == step);
            (fault, state.hang_at == Some(step))
        };
        if hang {
            std::future::pending::<()>().await;
        }
        match fault.map(|(_, fault)| fault) {
            None => Ok(()),
            Some(Fault::Stop) => {
                let _ = self.stop.send("SIGTERM");
                // The signal is handled at the next await, as in a real run.
                tokio::task::yield_now().await;
                Ok(())
            }
            Some(Fault::NmGone) => {
                // A restarted NetworkManager has no checkpoints.
                self.state().armed.clear();
                Err(gone(&format!("{step:?}")))
            }
            Some(Fault::Fails) => Err(refused(&format!("{step:?}"))),
        }
    }

    /// Destroying or rolling back a checkpoint: it is gone afterwards,
    /// unless the test made the call fail (`fails`).
    fn disarm(
        &self,
        checkpoint: &ObjectPath<'_>,
        call: &str,
        fails: fn(&State) -> bool,
        done: &str,
    ) -> Result<(), NmError> {
        let index = self.find(checkpoint, call)?;
        let mut state = self.state();
        if fails(&state) {
            return Err(refused(call));
        }
        state.armed.remove(index);
        state.log.push(done.to_owned());
        Ok(())
    }

    fn find(&self, checkpoint: &ObjectPath<'_>, call: &str) -> Result<usize, NmError> {
        self.state()
            .armed
            .iter()
            .position(|c| c.path.as_str() == checkpoint.as_str())
            .ok_or_else(|| unknown_object(call))
    }
}

impl Host for FakeNm {
    async fn checkpoint_create(
        &self,
        devices: &[OwnedObjectPath],
        _timeout: u32,
    ) -> Result<OwnedObjectPath, NmError> {
        self.reach(Step::Checkpoint).await?;
        let mut state = self.state();
        state.made += 1;
        let path = path(&format!(
            "/org/freedesktop/NetworkManager/Checkpoint/{}",
            state.made
        ));
        state.armed.push(Armed {
            path: path.clone(),
            created: boottime_ms(),
            devices: devices.to_vec(),
        });
        Ok(path)
    }

    async fn checkpoint_created(&self, checkpoint: &ObjectPath<'_>) -> Result<i64, NmError> {
        let index = self.find(checkpoint, "reading Checkpoint.Created")?;
        let mut state = self.state();
        if std::mem::take(&mut state.created_fails) {
            return Err(gone("reading Checkpoint.Created"));
        }
        Ok(state.armed[index].created)
    }

    async fn checkpoint_devices(
        &self,
        checkpoint: &ObjectPath<'_>,
    ) -> Result<Vec<OwnedObjectPath>, NmError> {
        let index = self.find(checkpoint, "reading Checkpoint.Devices")?;
        Ok(self.state().armed[index].devices.clone())
    }

    async fn checkpoint_adjust(
        &self,
        checkpoint: &ObjectPath<'_>,
        _seconds: u32,
    ) -> Result<(), NmError> {
        self.find(checkpoint, "CheckpointAdjustRollbackTimeout")
            .map(drop)
    }

    async fn checkpoint_destroy(&self, checkpoint: &ObjectPath<'_>) -> Result<(), NmError> {
        self.disarm(
            checkpoint,
            "CheckpointDestroy",
            |s| s.destroy_fails,
            "destroy",
        )
    }

    async fn checkpoint_rollback(
        &self,
        checkpoint: &ObjectPath<'_>,
    ) -> Result<Vec<(String, RollbackResult)>, NmError> {
        self.disarm(
            checkpoint,
            "CheckpointRollback",
            |s| s.rollback_fails,
            "rollback",
        )?;
        Ok(Vec::new())
    }

    async fn checkpoints(&self) -> Result<Vec<OwnedObjectPath>, NmError> {
        Ok(self.armed())
    }

    async fn device_by_iface(&self, iface: &str) -> Result<Option<OwnedObjectPath>, NmError> {
        Ok((iface == UPLINK).then(|| path(UPLINK_PATH)))
    }

    async fn clear_leftovers(&self, _record: &Record, _progress: &Progress) -> Result<(), NmError> {
        Ok(())
    }

    async fn restore(
        &self,
        _record: &Record,
        rolled_back: bool,
        _progress: &Progress,
    ) -> Result<(), NmError> {
        self.note(format!("restore (checkpoint rolled back: {rolled_back})"));
        Ok(())
    }

    async fn save(&self, _save: &Save) -> Result<(), NmError> {
        self.reach(Step::Commit).await
    }

    async fn release_hold(&self, _iface: &str, _progress: &Progress) {}

    fn interrupted(&self) -> impl std::future::Future<Output = &'static str> + Send + 'static {
        let mut listening = self.stop.subscribe();
        async move {
            match listening.recv().await {
                Ok(signal) => signal,
                Err(_) => std::future::pending().await,
            }
        }
    }
}

/// A state directory, its lock, and a quiet progress.
struct StateDir {
    _dir: tempfile::TempDir,
    store: Store,
    lock: Lock,
    progress: Progress,
}

fn state_dir() -> StateDir {
    let dir = tempfile::tempdir().expect("a temporary state directory");
    let store = Store::new(dir.path());
    let lock = store.lock().expect("the lock");
    StateDir {
        _dir: dir,
        store,
        lock,
        progress: Progress::new(false),
    }
}

fn modify_record() -> Record {
    Record::new(Change::Modify {
        bridge: "br0".into(),
        uplink: UPLINK.into(),
        bridge_uuid: "b".into(),
        port_uuid: "p".into(),
        restore: Default::default(),
        port_restore: None,
    })
}

/// Runs a guarded change whose trial and commit are the fake's steps, in
/// the order and with the failures each maps to in the real changes.
async fn run(nm: &FakeNm, h: &StateDir) -> Result<Outcome, TxError> {
    let tx = Transaction::new(nm, &h.store, &h.lock, &h.progress);
    let devices = [path(UPLINK_PATH), path(BRIDGE_PATH)];
    let ctx = CheckContext::default();
    let guard = Guard {
        devices: &devices,
        what: "ens32 and br0",
        timing: Timing {
            rollback_timeout: 30,
            activation: Duration::from_secs(1),
            check: Duration::from_millis(10),
        },
        probes: &[],
        ctx: &ctx,
    };
    let trial = async {
        nm.reach(Step::Apply).await.map_err(Failure::Apply)?;
        // Verifying reads NetworkManager: a read that fails is an NM error,
        // anything else a mismatch.
        nm.reach(Step::Verify)
            .await
            .map_err(|e| match e.is_nm_gone() {
                true => Failure::Read(e),
                false => Failure::Verify(vec![e.to_string()]),
            })?;
        // The checks ask the network, not NetworkManager: they pass while it
        // restarts.
        match nm.reach(Step::Checks).await {
            Err(e) if !e.is_nm_gone() => return Err(Failure::Checks(Vec::new())),
            _ => {}
        }
        Ok(Proven::nothing())
    };
    let commit = Commit {
        saves: vec![Save::ToDisk {
            uuid: "br0-uuid".to_owned(),
        }],
        done: "saved".to_owned(),
    };
    tx.guarded(modify_record(), guard, trial, commit).await
}

/// What a run must end in, for one step and one fault.
#[derive(Debug, PartialEq)]
enum Expect {
    /// Refused before anything changed: no checkpoint, no journal.
    Refused(Retry),
    /// Rolled back with this retry kind; the checkpoint rolled back (or,
    /// lost with NetworkManager, the change restored without it).
    RolledBack(Retry),
    Committed,
}

fn expected(step: Step, fault: Fault) -> Expect {
    use Expect::*;
    match (step, fault) {
        (Step::Checkpoint, Fault::NmGone) => Refused(Retry::Transient),
        (Step::Checkpoint, Fault::Fails) => Refused(Retry::Deterministic),
        // The commit is not cut short: the stop is honoured after it.
        (Step::Commit, Fault::Stop) => Committed,
        // A restart during the checks loses the checkpoint, not the change.
        (Step::Checks, Fault::NmGone) => Committed,
        (_, Fault::Stop | Fault::NmGone) => RolledBack(Retry::Transient),
        (_, Fault::Fails) => RolledBack(Retry::Deterministic),
    }
}

/// Nothing was undone: no checkpoint rolled back, no change restored.
fn nothing_undone(nm: &FakeNm) -> bool {
    !nm.log()
        .iter()
        .any(|l| l == "rollback" || l.starts_with("restore"))
}

/// The steps a run took, up to where it stopped.
fn steps_taken(log: &[String]) -> Vec<String> {
    log.iter()
        .filter(|l| STEPS.iter().any(|s| format!("{s:?}") == **l))
        .cloned()
        .collect()
}

#[tokio::test]
async fn every_phase_crossed_with_every_failure_ends_committed_or_restored() {
    for step in STEPS {
        for fault in FAULTS {
            let case = format!("{fault:?} at {step:?}");
            let nm = FakeNm::new().with(|s| s.fault = Some((step, fault)));
            let h = state_dir();
            let outcome = run(&nm, &h).await;
            let log = nm.log();
            let got = match &outcome {
                Err(TxError::Checkpoint(e)) => Expect::Refused(Retry::of_nm(e)),
                Ok(Outcome::RolledBack { retry, .. }) => Expect::RolledBack(*retry),
                Ok(Outcome::Committed { .. }) => Expect::Committed,
                Ok(Outcome::AwaitingConfirm { .. }) => panic!("{case}: no --confirm asked"),
                Err(e) => panic!("{case}: {e}"),
            };
            assert_eq!(got, expected(step, fault), "{case}: {log:?}");

            // Nothing is left armed, and the journal is clear either way.
            assert!(nm.armed().is_empty(), "{case}: a checkpoint left armed");
            assert!(h.store.read().await.unwrap().is_none(), "{case}: journal");
            match got {
                Expect::Refused(_) => {
                    assert_eq!(log, ["Checkpoint"], "{case}: nothing ran");
                }
                Expect::RolledBack(_) => {
                    // The checkpoint restores the host unless NetworkManager
                    // lost it; the change's own restore runs either way.
                    let rolled_back = fault != Fault::NmGone;
                    assert_eq!(
                        log.contains(&"rollback".to_owned()),
                        rolled_back,
                        "{case}: {log:?}"
                    );
                    let restore = format!("restore (checkpoint rolled back: {rolled_back})");
                    assert_eq!(log.last(), Some(&restore), "{case}: {log:?}");
                    // A stop or failure cuts the trial short: no later step runs.
                    let at = STEPS.iter().position(|s| *s == step).unwrap();
                    let wanted: Vec<String> =
                        STEPS[..=at].iter().map(|s| format!("{s:?}")).collect();
                    let taken = steps_taken(&log);
                    assert_eq!(taken, wanted, "{case}: steps");
                }
                Expect::Committed => {
                    assert_eq!(steps_taken(&log), STEPS.map(|s| format!("{s:?}")), "{case}");
                    assert!(nothing_undone(&nm), "{case}: {log:?}");
                }
            }
        }
    }
}

#[tokio::test]
async fn without_faults_the_change_commits_and_destroys_its_checkpoint() {
    let nm = FakeNm::new();
    let h = state_dir();
    let outcome = run(&nm, &h).await.unwrap();
    assert!(matches!(outcome, Outcome::Committed { .. }));
    assert_eq!(
        nm.log(),
        [
            "Checkpoint",
            "Apply",
            "Verify",
            "Checks",
            "Commit",
            "destroy"
        ]
    );
    assert!(nm.armed().is_empty());
    assert!(h.store.read().await.unwrap().is_none());
}

/// The old defect: after the journal said committed, a failing
/// CheckpointDestroy rolled back a change that had passed its checks and
/// was on disk. Now it stays committed, and recovery finishes it.
#[tokio::test]
async fn a_failed_destroy_after_the_commit_never_rolls_back_and_recovery_finishes_it() {
    let nm = FakeNm::new().with(|s| s.destroy_fails = true);
    let h = state_dir();
    let outcome = run(&nm, &h).await.unwrap();
    assert!(matches!(outcome, Outcome::Committed { .. }), "{outcome:?}");
    assert!(nothing_undone(&nm), "{:?}", nm.log());
    let record = h.store.read().await.unwrap().expect("the journal is kept");
    assert_eq!(record.phase, Phase::Committed);
    assert_eq!(nm.armed().len(), 1, "the checkpoint is still armed");
    assert!(h
        .progress
        .steps()
        .iter()
        .any(|s| s.step == "warning" && s.detail.contains("netbridge recover")));

    nm.state().destroy_fails = false;
    let recovered = recovery::recover(&nm, &h.store, &h.lock, &h.progress)
        .await
        .unwrap()
        .expect("an unfinished change");
    assert_eq!(recovered.action, "finished");
    assert!(nm.armed().is_empty());
    assert_eq!(nm.log().last().map(String::as_str), Some("destroy"));
    assert!(nothing_undone(&nm), "{:?}", nm.log());
    assert!(h.store.read().await.unwrap().is_none());
}

/// NetworkManager restarted during the trial and lost the checkpoint: there
/// is nothing left to destroy, and the commit stands with the journal clear.
#[tokio::test]
async fn a_checkpoint_lost_with_networkmanager_leaves_the_commit_standing() {
    let nm = FakeNm::new().with(|s| s.lose_at = Some(Step::Verify));
    let h = state_dir();
    let outcome = run(&nm, &h).await.unwrap();
    assert!(matches!(outcome, Outcome::Committed { .. }), "{outcome:?}");
    assert!(nothing_undone(&nm), "{:?}", nm.log());
    assert!(h.store.read().await.unwrap().is_none());
}

/// A rollback that fails is reported as such ("the rollback did not
/// complete"), and the journal stays for recovery to undo the change.
#[tokio::test]
async fn a_failed_rollback_is_reported_incomplete_and_left_to_recovery() {
    for step in [Step::Apply, Step::Verify, Step::Checks, Step::Commit] {
        let nm = FakeNm::new().with(|s| {
            s.fault = Some((step, Fault::Fails));
            s.rollback_fails = true;
        });
        let h = state_dir();
        let error = run(&nm, &h).await.unwrap_err();
        assert!(
            matches!(error, TxError::Rollback { .. }),
            "{step:?}: {error}"
        );
        assert!(error.to_string().contains("the rollback did not complete"));
        assert_eq!(Retry::of_tx(&error), Retry::Deterministic);
        let record = h.store.read().await.unwrap().expect("the journal is kept");
        assert_ne!(record.phase, Phase::Committed);

        nm.state().rollback_fails = false;
        let recovered = recovery::recover(&nm, &h.store, &h.lock, &h.progress)
            .await
            .unwrap()
            .expect("an unfinished change");
        assert_eq!(recovered.action, "undone", "{step:?}");
        assert!(nm.armed().is_empty(), "{step:?}");
        assert!(nm.log().contains(&"rollback".to_owned()), "{step:?}");
        assert!(h.store.read().await.unwrap().is_none());
    }
}

/// The old defect: `checkpoint_created(..).unwrap_or(0)` recorded a
/// creation time of 0 when it could not be read, which no checkpoint ever
/// matches — recovery then missed the change's own armed checkpoint. Now
/// the checkpoint is left unrecorded, and recovery finds it by its device
/// and by being newer than the journal entry.
#[tokio::test]
async fn recovery_finds_its_checkpoint_when_its_creation_time_could_not_be_read() {
    let nm = FakeNm::new().with(|s| {
        s.created_fails = true;
        s.hang_at = Some(Step::Apply);
    });
    let h = state_dir();
    // netbridge dies in the middle of its trial: the run is dropped once it
    // applies (the keep-alive stops with it), the checkpoint stays armed.
    tokio::select! {
        outcome = run(&nm, &h) => panic!("the run should not finish: {outcome:?}"),
        () = nm.applying.notified() => {}
    }
    let record = h.store.read().await.unwrap().expect("the journal");
    assert_eq!(nm.armed().len(), 1);

    let recovered = recovery::recover(&nm, &h.store, &h.lock, &h.progress)
        .await
        .unwrap()
        .expect("an unfinished change");
    assert_eq!(recovered.action, "undone");
    assert!(nm.armed().is_empty(), "recovery rolled its checkpoint back");
    assert!(nm.log().contains(&"rollback".to_owned()));
    assert_eq!(
        nm.log().last().map(String::as_str),
        Some("restore (checkpoint rolled back: true)")
    );
    assert_eq!(record.checkpoint, None, "no made-up creation time");
}

/// NetworkManager numbers checkpoints afresh after a restart: a checkpoint
/// at the recorded path but created at another time is someone else's and
/// is left alone.
#[tokio::test]
async fn recovery_leaves_alone_a_checkpoint_that_only_shares_the_path() {
    let nm = FakeNm::new().with(|s| s.hang_at = Some(Step::Apply));
    let h = state_dir();
    tokio::select! {
        outcome = run(&nm, &h) => panic!("the run should not finish: {outcome:?}"),
        () = nm.applying.notified() => {}
    }
    let record = h.store.read().await.unwrap().expect("the journal");
    assert!(record.checkpoint.is_some());
    // NetworkManager restarts; someone else's checkpoint gets the same path.
    nm.state().armed[0].created += 1;

    let recovered = recovery::recover(&nm, &h.store, &h.lock, &h.progress)
        .await
        .unwrap()
        .expect("an unfinished change");
    assert_eq!(recovered.action, "undone");
    assert_eq!(nm.armed().len(), 1, "someone else's checkpoint stays");
    assert_eq!(
        nm.log().last().map(String::as_str),
        Some("restore (checkpoint rolled back: false)")
    );
}
