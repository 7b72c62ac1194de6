//! The guarded transaction: journal, checkpoint (re-armed while netbridge
//! lives), the trial raced with a stop, commit — or roll back. Each kind of
//! change is its own implementation over it, in its own file: [`convert`],
//! [`revert`], [`in_place`] (adopt, modify) and [`network`] (create, which
//! touches no existing device and needs no checkpoint). Read
//! `Transaction::convert` top to bottom. The engine itself reaches the host
//! only through [`Host`]: NetworkManager for real, an in-memory fake in its
//! unit tests (`tests.rs`).
//!
//! Safety nets, from the inside out: a failed check rolls back at once; a
//! signal (Ctrl-C, SIGTERM) rolls back; if netbridge dies, NetworkManager's
//! checkpoint timer rolls back (netbridge keeps re-arming it while alive); if
//! NetworkManager restarts and loses the checkpoint, the journal lets the next
//! run undo the change; if the power fails, nothing was written to disk yet
//! and the old configuration boots.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;
use zbus::zvariant::{ObjectPath, OwnedObjectPath};

use crate::checks::{self, CheckContext, Probe, ProbeResult};
use crate::identity::{self, Identity, Proof};
use crate::journal::{Change, JournalError, Lock, Pending, Phase, Record, Save, Store};
use crate::nm::{DeviceInfo, Nm, NmError};
use crate::plan::Timing;
use crate::recovery;
use crate::report::{CheckPhase, Progress};

mod convert;
mod host;
mod in_place;
mod network;
mod revert;
#[cfg(test)]
mod tests;

pub use host::Host;

/// How a trial ended.
#[derive(Debug, Serialize)]
#[serde(tag = "result", rename_all = "kebab-case")]
pub enum Outcome {
    /// Proven, on trial until `netbridge confirm` (`--confirm SECS`).
    AwaitingConfirm {
        checks: Vec<ProbeResult>,
        identity: Option<Proof>,
        /// Seconds since the epoch after which it rolls back by itself.
        deadline_unix: u64,
        seconds: u32,
    },
    Committed {
        checks: Vec<ProbeResult>,
        /// The host before and after, proven the same (conversions only).
        identity: Option<Proof>,
    },
    RolledBack {
        reason: String,
        /// The checks after the change that failed it (empty when it failed
        /// before they ran), like a committed outcome's.
        checks: Vec<ProbeResult>,
        /// Whether trying again by itself could succeed.
        retry: crate::retry::Retry,
        /// Seconds from the failed verdict until the original profile ran again.
        restore_seconds: f64,
        /// The checks run again after the rollback, to confirm the host is back.
        rechecks: Vec<ProbeResult>,
    },
}

/// Why a trial failed: every one of these ends in a rollback.
#[derive(Debug, thiserror::Error)]
pub enum Failure {
    #[error("NetworkManager failed while applying: {0}")]
    Apply(NmError),
    #[error("activation did not complete: {0}")]
    Activation(NmError),
    #[error("the result is not as planned: {}", .0.join("; "))]
    Verify(Vec<String>),
    /// NetworkManager did not answer the reads that prove the result: what
    /// its error means (it restarted, say) decides whether to try again.
    #[error("reading the result: {0}")]
    Read(NmError),
    #[error("the bridge did not take the uplink's exact place: {}", .0.join("; "))]
    Identity(Vec<String>),
    #[error("checks failed after the change: {}", failed_checks(.0))]
    Checks(Vec<ProbeResult>),
    #[error("interrupted by {0}")]
    Interrupted(&'static str),
    #[error("committing failed: {0}")]
    Commit(NmError),
}

fn failed_checks(results: &[ProbeResult]) -> String {
    results
        .iter()
        .filter(|r| !r.ok)
        .map(|r| format!("{} ({})", r.probe, r.detail))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The transaction could not run safely, or could not restore the host.
#[derive(Debug, thiserror::Error)]
pub enum TxError {
    #[error(transparent)]
    Journal(#[from] JournalError),
    #[error("could not create a NetworkManager checkpoint, nothing was changed: {0}")]
    Checkpoint(NmError),
    #[error(
        "could not hold {uplink}'s DHCP lease for the change, nothing else was changed: {source}"
    )]
    Hold {
        uplink: String,
        #[source]
        source: NmError,
    },
    #[error(
        "{failure}; the rollback did not complete: {source} — check the host: `netbridge status`"
    )]
    Rollback {
        failure: String,
        #[source]
        source: NmError,
    },
}

/// How long the reported state may lag behind activation before it counts as wrong.
const SETTLE: Duration = Duration::from_secs(5);

/// What a trial proved.
pub struct Proven {
    checks: Vec<ProbeResult>,
    identity: Option<Proof>,
}

impl Proven {
    /// A trial with no checks to run (a network created or deleted): its
    /// verified state is the proof.
    fn nothing() -> Self {
        Proven {
            checks: Vec::new(),
            identity: None,
        }
    }
}

/// What a guarded change protects and how it proves itself.
struct Guard<'p> {
    /// The devices the checkpoint covers.
    devices: &'p [OwnedObjectPath],
    /// The devices, for people.
    what: &'p str,
    /// The rollback timeout and the check deadline.
    timing: Timing,
    probes: &'p [Probe],
    ctx: &'p CheckContext,
}

/// What a proven change writes: the same whether it commits at once or
/// when `netbridge confirm` runs.
struct Commit {
    saves: Vec<Save>,
    /// What it did, for people.
    done: String,
}

/// A change's context: the engine runs on any [`Host`] (its unit tests use
/// a fake); the changes themselves on NetworkManager.
pub struct Transaction<'a, N = Nm> {
    nm: &'a N,
    store: &'a Store,
    lock: &'a Lock,
    progress: &'a Progress,
    /// `--confirm SECS`: a proven change waits this long for `netbridge confirm`.
    confirm: Option<u32>,
}

/// What a failed change checks again once it is rolled back.
struct Recheck<'p> {
    probes: &'p [Probe],
    ctx: &'p CheckContext,
    deadline: Duration,
}

impl<'a, N: Host> Transaction<'a, N> {
    /// A change that commits once proven.
    pub fn new(nm: &'a N, store: &'a Store, lock: &'a Lock, progress: &'a Progress) -> Self {
        Transaction {
            nm,
            store,
            lock,
            progress,
            confirm: None,
        }
    }

    /// `--confirm SECS`: once proven, the change waits `seconds` for
    /// `netbridge confirm` (none: it commits at once).
    #[must_use]
    pub fn confirming(self, seconds: Option<u32>) -> Self {
        Transaction {
            confirm: seconds,
            ..self
        }
    }
}

impl<N: Host> Transaction<'_, N> {
    /// The shape of every change to existing devices: journal, checkpoint
    /// (re-armed while netbridge lives), the trial raced against a stop
    /// signal, then commit — or roll back on any failure, commit included.
    async fn guarded(
        &self,
        mut record: Record,
        guard: Guard<'_>,
        trial: impl std::future::Future<Output = Result<Proven, Failure>>,
        commit: Commit,
    ) -> Result<Outcome, TxError> {
        // Listening from the start: a stop while the checkpoint is made
        // still cuts the trial short.
        let stop = self.nm.interrupted();
        self.store.write(self.lock, &record).await?;
        let checkpoint = self
            .checkpoint(
                guard.devices,
                guard.timing.rollback_timeout,
                &mut record,
                guard.what,
            )
            .await?;
        let keepalive = Keepalive::start(self.nm, &checkpoint, guard.timing.rollback_timeout);

        let trial = tokio::select! {
            biased;
            signal = stop => Err(Failure::Interrupted(signal)),
            result = trial => result,
        };
        let recheck = Recheck {
            probes: guard.probes,
            ctx: guard.ctx,
            deadline: guard.timing.check,
        };
        self.conclude(
            record,
            Some((&checkpoint, keepalive)),
            trial,
            commit,
            recheck,
        )
        .await
    }

    /// The shape of a change that touches no other device (a network
    /// created or deleted): journal, the trial raced against a stop signal,
    /// then commit — or roll back — with no checkpoint. Unconfirmed, it is
    /// undone at its deadline by the watcher.
    async fn unguarded(
        &self,
        record: Record,
        trial: impl std::future::Future<Output = Result<Proven, Failure>>,
        commit: Commit,
    ) -> Result<Outcome, TxError> {
        let stop = self.nm.interrupted();
        self.store.write(self.lock, &record).await?;
        let trial = tokio::select! {
            biased;
            signal = stop => Err(Failure::Interrupted(signal)),
            result = trial => result,
        };
        let ctx = CheckContext::default();
        let recheck = Recheck {
            probes: &[],
            ctx: &ctx,
            deadline: Duration::ZERO,
        };
        self.conclude(record, None, trial, commit, recheck).await
    }

    /// After the trial: a proven change awaits confirmation (`--confirm`)
    /// or commits at once; any failure, the commit's included, rolls back.
    async fn conclude(
        &self,
        mut record: Record,
        guard: Option<(&OwnedObjectPath, Keepalive)>,
        trial: Result<Proven, Failure>,
        commit: Commit,
        recheck: Recheck<'_>,
    ) -> Result<Outcome, TxError> {
        let (checkpoint, mut keepalive) = guard.unzip();
        let verdict = match (trial, self.confirm) {
            (Ok(proven), Some(seconds)) => {
                // From here NetworkManager's timer (or the watcher) alone
                // keeps the deadline.
                keepalive = None;
                match self
                    .await_confirm(&mut record, checkpoint, seconds, commit)
                    .await
                {
                    Ok(deadline_unix) => {
                        return Ok(Outcome::AwaitingConfirm {
                            checks: proven.checks,
                            identity: proven.identity,
                            deadline_unix,
                            seconds,
                        })
                    }
                    Err(failure) => Err(failure),
                }
            }
            (Ok(proven), None) => self
                .persist(&mut record, &commit.saves)
                .await
                .map(|()| (proven, commit.done))
                .map_err(Failure::Commit),
            (Err(failure), _) => Err(failure),
        };
        drop(keepalive);

        match verdict {
            Ok((Proven { checks, identity }, done)) => {
                // Committed (the journal says so): from here on nothing
                // undoes the change; what is left is housekeeping.
                self.finish(checkpoint.map(|c| &**c)).await;
                self.progress.step("committed", done);
                Ok(Outcome::Committed { checks, identity })
            }
            Err(failure) => {
                self.roll_back(
                    &record,
                    failure,
                    recheck.probes,
                    recheck.ctx,
                    recheck.deadline,
                )
                .await
            }
        }
    }

    /// Gives `to` a copy of `from`'s resolved neighbour entries (stale: used
    /// at once, confirmed by the kernel later), so the first replies through
    /// `to` need no address resolution: a resolution attempted while `to`
    /// cannot send yet would hold every reply back for a second. Entries
    /// `to` has already are never replaced. A conversion's rollback removes
    /// the copies with the bridge; after a revert's rollback they stay on
    /// the uplink as stale entries of the same neighbours, which the kernel
    /// confirms or lets expire by itself. Only a shortcut: a failure is
    /// reported and the change goes on.
    async fn keep_neighbours(&self, from: &str, to: &str) {
        let message = match crate::kernel::copy_neighbours(from, to).await {
            Ok(n) => format!("{to} starts with {n} neighbour entries of {from}"),
            Err(e) => format!("{to} resolves its neighbours anew: {e}"),
        };
        self.progress.step("neighbours", message);
    }

    /// Destroys the checkpoint of a committed change and clears the journal.
    /// A failure here never rolls back: the change passed its checks and is
    /// on disk. A checkpoint NetworkManager lost (it restarted during the
    /// trial) has nothing left to destroy; anything else stays recorded for
    /// the next netbridge run (`recover`) to finish.
    pub(crate) async fn finish(&self, checkpoint: Option<&ObjectPath<'_>>) {
        if let Some(checkpoint) = checkpoint {
            if let Err(e) = self.nm.checkpoint_destroy(checkpoint).await {
                let still_armed = match self.nm.checkpoints().await {
                    Ok(all) => all.iter().any(|c| c.as_str() == checkpoint.as_str()),
                    Err(_) => true,
                };
                if still_armed {
                    self.progress.step(
                        "warning",
                        format!("the change is committed, but its checkpoint could not be destroyed ({e}); run `netbridge recover` before NetworkManager's timer fires"),
                    );
                    return;
                }
            }
        }
        if let Err(e) = self.store.clear(self.lock).await {
            self.progress.step(
                "warning",
                format!("the change is committed; clearing the journal failed ({e}): the next netbridge run finishes it"),
            );
        }
    }

    /// Creates the checkpoint and records it. Only the devices involved: a
    /// checkpoint on every device would reconnect them all on rollback.
    async fn checkpoint(
        &self,
        devices: &[OwnedObjectPath],
        timeout: u32,
        record: &mut Record,
        what: &str,
    ) -> Result<OwnedObjectPath, TxError> {
        let created = self.nm.checkpoint_create(devices, timeout).await;
        let checkpoint = match created {
            Ok(checkpoint) => checkpoint,
            Err(e) => {
                self.store.clear(self.lock).await?;
                return Err(TxError::Checkpoint(e));
            }
        };
        // Without its creation time the record could never match the
        // checkpoint again; left unrecorded, recovery finds it by its device
        // and by being newer than the journal entry.
        match self.nm.checkpoint_created(&checkpoint).await {
            Ok(created_ms) => {
                record.checkpoint = Some((checkpoint.to_string(), created_ms));
                self.store.write(self.lock, record).await?;
            }
            Err(e) => tracing::warn!(error = %e, "cannot read the checkpoint's creation time"),
        }
        self.progress.step(
            "checkpoint",
            format!(
                "{} on {what} — NetworkManager restores the host by itself within {timeout} s if netbridge stops answering",
                checkpoint.as_str(),
            ),
        );
        Ok(checkpoint)
    }

    /// Marks the journal committing, makes the commit's writes, marks it
    /// committed.
    pub(crate) async fn persist(&self, record: &mut Record, saves: &[Save]) -> Result<(), NmError> {
        record.phase = Phase::Committing;
        self.write(record).await?;
        self.progress.step(
            "committing",
            format!(
                "writing the {} of {} to disk ({} writes)",
                record.change.operation(),
                record.change.bridge(),
                saves.len()
            ),
        );
        for save in saves {
            self.nm.save(save).await?;
        }
        record.phase = Phase::Committed;
        self.write(record).await
    }

    /// Leaves a proven change on trial for `netbridge confirm`: the
    /// checkpoint's timer (if one guards it) set to `seconds` and no longer
    /// re-armed, the commit recorded in the journal for the process that
    /// confirms, and a watcher detached from this process and its session.
    /// Returns the deadline.
    async fn await_confirm(
        &self,
        record: &mut Record,
        checkpoint: Option<&OwnedObjectPath>,
        seconds: u32,
        commit: Commit,
    ) -> Result<u64, Failure> {
        if let Some(checkpoint) = checkpoint {
            self.nm
                .checkpoint_adjust(checkpoint, seconds)
                .await
                .map_err(Failure::Commit)?;
        }
        let deadline_unix = crate::journal::now_unix() + u64::from(seconds);
        record.phase = Phase::AwaitingConfirm;
        record.pending = Some(Pending {
            deadline_unix,
            seconds,
            saves: commit.saves,
            done: commit.done,
        });
        self.write(record).await.map_err(Failure::Commit)?;
        let watcher = match crate::confirm::start_watcher(self.store.dir()).await {
            Ok(watcher) => watcher.to_string(),
            Err(e) if record.change.has_checkpoint() => {
                format!("no watcher ({e}): NetworkManager's timer alone rolls back")
            }
            Err(e) => {
                format!("no watcher ({e}): the next netbridge run after the deadline rolls back")
            }
        };
        self.progress.step(
            "awaiting confirmation",
            format!(
                "{} ({watcher})",
                crate::confirm::awaiting(record, u64::from(seconds))
            ),
        );
        Ok(deadline_unix)
    }

    async fn run_checks(
        &self,
        probes: &[Probe],
        ctx: &CheckContext,
        deadline: Duration,
    ) -> Result<Vec<ProbeResult>, Failure> {
        let results = checks::run_all(probes, ctx, deadline).await;
        for r in &results {
            self.progress.check(CheckPhase::After, r);
        }
        if results.iter().all(|r| r.ok) {
            Ok(results)
        } else {
            Err(Failure::Checks(results))
        }
    }

    async fn write(&self, record: &Record) -> Result<(), NmError> {
        self.store
            .write(self.lock, record)
            .await
            .map_err(journal_to_nm)
    }

    pub(crate) async fn roll_back(
        &self,
        record: &Record,
        failure: Failure,
        probes: &[Probe],
        ctx: &CheckContext,
        check_deadline: Duration,
    ) -> Result<Outcome, TxError> {
        let reason = failure.to_string();
        let retry = crate::retry::Retry::of_failure(&failure);
        let checks = match failure {
            Failure::Checks(results) => results,
            _ => Vec::new(),
        };
        self.progress.step("rolling back", reason.clone());
        let started = Instant::now();
        recovery::undo(self.nm, record, self.progress)
            .await
            .map_err(|source| TxError::Rollback {
                failure: reason.clone(),
                source,
            })?;
        self.store.clear(self.lock).await?;
        let restore_seconds = started.elapsed().as_secs_f64();
        if let Change::Convert {
            uplink, held: true, ..
        } = &record.change
        {
            self.nm.release_hold(uplink, self.progress).await;
        }
        self.progress.step(
            "rolled back",
            format!(
                "the {} of {} was undone: the host runs as before ({restore_seconds:.2} s)",
                record.change.operation(),
                record.change.bridge()
            ),
        );
        let probes: Vec<Probe> = probes
            .iter()
            .filter(|p| p.outlives_rollback())
            .cloned()
            .collect();
        let rechecks = checks::run_all(&probes, ctx, check_deadline).await;
        for r in &rechecks {
            self.progress.check(CheckPhase::AfterRollback, r);
        }
        Ok(Outcome::RolledBack {
            reason,
            checks,
            retry,
            restore_seconds,
            rechecks,
        })
    }
}

/// The steps of a trial on NetworkManager itself, which the changes share.
impl Transaction<'_> {
    /// The last steps of every trial on a bridge: the identity proof, then
    /// the checks.
    async fn prove(
        &self,
        before: &Identity,
        bridge: &str,
        probes: &[Probe],
        ctx: &CheckContext,
        check_deadline: Duration,
    ) -> Result<Proven, Failure> {
        let proof = self.prove_identity(before, bridge).await?;
        self.progress.step("identity", identity::summary(&proof));
        let checks = self.run_checks(probes, ctx, check_deadline).await?;
        Ok(Proven {
            checks,
            identity: Some(proof),
        })
    }

    /// Compares the host through the bridge with the host through the
    /// uplink before the change, giving NetworkManager a moment to finish
    /// routes it is still writing.
    async fn prove_identity(&self, before: &Identity, bridge: &str) -> Result<Proof, Failure> {
        let targets: Vec<_> = before.routes.iter().map(|r| r.target).collect();
        let mut kernel = crate::kernel::Changes::subscribe();
        let outcome = self
            .nm
            .settle_with(SETTLE, Some(&mut kernel), async || {
                let after = match identity::gather(self.nm, bridge, &targets).await {
                    Ok(after) => after,
                    Err(e) => return Ok(Err(vec![e.to_string()])),
                };
                let problems = identity::compare(before, &after);
                Ok(if problems.is_empty() {
                    Ok(after)
                } else {
                    Err(problems)
                })
            })
            .await;
        match outcome {
            Ok(Ok(after)) => Ok(Proof {
                before: before.clone(),
                after,
            }),
            Ok(Err(problems)) => Err(Failure::Identity(problems)),
            Err(e) => Err(Failure::Read(e)),
        }
    }

    /// Reads `iface` until `check` finds nothing wrong, for at most
    /// `deadline`: NetworkManager may report a device activated a little
    /// before its addresses show on the bus (1.52 publishes them ~100 ms later).
    async fn settled(
        &self,
        iface: &str,
        deadline: Duration,
        check: impl Fn(&DeviceInfo) -> Vec<String>,
    ) -> Result<(), Failure> {
        let outcome = self
            .nm
            .settle(deadline, async || {
                let Some(path) = self.nm.device_by_iface(iface).await? else {
                    return Ok(Err(vec![format!("no device {iface} exists")]));
                };
                let device = self.nm.device_info(&path).await?;
                Ok(as_result(check(&device)))
            })
            .await;
        outcome.map_err(Failure::Read)?.map_err(Failure::Verify)
    }

    async fn profile(&self, uuid: &str) -> Result<OwnedObjectPath, NmError> {
        self.nm
            .profile_by_uuid(uuid)
            .await?
            .ok_or_else(|| NmError::Unexpected {
                what: format!("profile {uuid} disappeared during the change"),
            })
    }
}

fn as_result(problems: Vec<String>) -> Result<(), Vec<String>> {
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems)
    }
}

fn journal_to_nm(e: JournalError) -> NmError {
    NmError::Unexpected {
        what: format!("writing the journal: {e}"),
    }
}

fn list<T: std::fmt::Display>(items: &[T]) -> String {
    if items.is_empty() {
        return "no address".to_owned();
    }
    items
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

/// Re-arms the checkpoint while netbridge is alive, so the rollback timer only
/// fires if netbridge stops (killed, frozen, host lost).
pub(crate) struct Keepalive(tokio::task::JoinHandle<()>);

impl Keepalive {
    pub(crate) fn start<N: Host>(nm: &N, checkpoint: &OwnedObjectPath, timeout: u32) -> Self {
        let (nm, checkpoint) = (nm.clone(), checkpoint.clone());
        let period = Duration::from_secs(u64::from(timeout / 3).max(1));
        Keepalive(tokio::spawn(async move {
            loop {
                tokio::time::sleep(period).await;
                if let Err(e) = nm.checkpoint_adjust(&checkpoint, timeout).await {
                    tracing::warn!(error = %e, "could not re-arm the checkpoint");
                }
            }
        }))
    }
}

impl Drop for Keepalive {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Set when a stop was asked for (SIGINT, SIGTERM), so no further bridge is
/// started; the transaction in flight handles the signal itself (it rolls
/// back). Without this, a multi-bridge run would start the next bridge after
/// the first rolled back on Ctrl-C: tokio's handlers replace the default.
pub fn watch_stop() -> Arc<AtomicBool> {
    let flag = Arc::new(AtomicBool::new(false));
    let setter = Arc::clone(&flag);
    tokio::spawn(async move {
        interrupted().await;
        setter.store(true, Ordering::SeqCst);
    });
    flag
}

/// Resolves when the operator or the service manager asks netbridge to stop.
/// SIGHUP is not among them: a dropped SSH session must not cut a change short.
/// It listens from the call on, not from its first poll: a signal that comes
/// before a waiter polls it is not lost.
pub fn interrupted() -> impl std::future::Future<Output = &'static str> + Send + 'static {
    use tokio::signal::unix::{signal, SignalKind};
    let listening = (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
    );
    async move {
        let (Ok(mut int), Ok(mut term)) = listening else {
            return std::future::pending().await;
        };
        tokio::select! {
            _ = int.recv() => "SIGINT",
            _ = term.recv() => "SIGTERM",
        }
    }
}
