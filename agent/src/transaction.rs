//! The transaction: checkpoint, apply in memory, verify, run the checks, then
//! commit to disk or roll back. Read `Transaction::convert` top to bottom.
//!
//! Safety nets, from the inside out: a failed check rolls back at once; a
//! signal (Ctrl-C, SIGTERM) rolls back; if netbridge dies, NetworkManager's
//! checkpoint timer rolls back (netbridge keeps re-arming it while alive); if
//! NetworkManager restarts and loses the checkpoint, the journal lets the next
//! run undo the change; if the power fails, nothing was written to disk yet
//! and the old configuration boots.

use std::time::{Duration, Instant};

use netbridge_dbus::flags::{AddConnection2Flags, CheckpointCreateFlags, Update2Flags};
use netbridge_dbus::state::DeviceState;
use serde::Serialize;
use zbus::zvariant::{ObjectPath, OwnedObjectPath};

use crate::checks::{self, CheckContext, Probe, ProbeResult};
use crate::journal::{Change, JournalError, Lock, Phase, Record, Store};
use crate::nm::{ActivationGoal, Nm, NmError};
use crate::plan::Plan;
use crate::recovery;
use crate::report::Progress;

/// How a trial ended.
#[derive(Debug, Serialize)]
#[serde(tag = "result", rename_all = "kebab-case")]
pub enum Outcome {
    Committed {
        checks: Vec<ProbeResult>,
    },
    RolledBack {
        reason: String,
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
    #[error("the bridge did not come up: {0}")]
    Activation(NmError),
    #[error("the bridge came up wrong: {}", .0.join("; "))]
    Verify(Vec<String>),
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
        "{failure}; the rollback did not complete: {source} — check the host: `netbridge status`"
    )]
    Rollback {
        failure: String,
        #[source]
        source: NmError,
    },
}

pub struct Transaction<'a> {
    pub nm: &'a Nm,
    pub store: &'a Store,
    pub lock: &'a Lock,
    pub progress: &'a Progress,
}

impl Transaction<'_> {
    /// Converts the plan's uplink into its bridge, or leaves the host as it was.
    pub async fn convert(
        &self,
        plan: &Plan,
        probes: &[Probe],
        ctx: &CheckContext,
    ) -> Result<Outcome, TxError> {
        let mut record = Record::new(Change::Convert {
            bridge: plan.bridge.clone(),
            uplink: plan.uplink.clone(),
            created: vec![plan.bridge_uuid.clone(), plan.port_uuid.clone()],
            original: plan.original.clone(),
        });
        self.store.write(self.lock, &record)?;

        let checkpoint = self.checkpoint(plan, &mut record).await?;
        let keepalive = Keepalive::start(self.nm, &checkpoint, plan.timing.rollback_timeout);

        let trial = tokio::select! {
            result = self.try_out(plan, probes, ctx) => result,
            signal = interrupted() => Err(Failure::Interrupted(signal)),
        };
        let verdict = match trial {
            Ok(results) => self
                .commit(plan, &checkpoint, &mut record)
                .await
                .map(|()| results)
                .map_err(Failure::Commit),
            Err(failure) => Err(failure),
        };
        drop(keepalive);

        match verdict {
            Ok(checks) => Ok(Outcome::Committed { checks }),
            Err(failure) => self.roll_back(&record, failure, probes, ctx, plan).await,
        }
    }

    async fn checkpoint(
        &self,
        plan: &Plan,
        record: &mut Record,
    ) -> Result<OwnedObjectPath, TxError> {
        // Only the uplink: a checkpoint on every device would reconnect them all
        // on rollback. The bridge is new, so deleting its profile removes it.
        let created = self
            .nm
            .checkpoint_create(
                std::slice::from_ref(&plan.uplink_path),
                plan.timing.rollback_timeout,
                CheckpointCreateFlags::DELETE_NEW_CONNECTIONS,
            )
            .await;
        let checkpoint = match created {
            Ok(checkpoint) => checkpoint,
            Err(e) => {
                self.store.clear(self.lock)?;
                return Err(TxError::Checkpoint(e));
            }
        };
        let created_ms = self.nm.checkpoint_created(&checkpoint).await.unwrap_or(0);
        record.checkpoint = Some((checkpoint.to_string(), created_ms));
        self.store.write(self.lock, record)?;
        self.progress.step(
            "checkpoint",
            format!(
                "{} on {} — NetworkManager restores the host by itself within {} s if netbridge stops answering",
                checkpoint.as_str(),
                plan.uplink,
                plan.timing.rollback_timeout
            ),
        );
        Ok(checkpoint)
    }

    /// Applies the plan in memory only and proves it: activation, state, checks.
    async fn try_out(
        &self,
        plan: &Plan,
        probes: &[Probe],
        ctx: &CheckContext,
    ) -> Result<Vec<ProbeResult>, Failure> {
        let trial = AddConnection2Flags::IN_MEMORY | AddConnection2Flags::BLOCK_AUTOCONNECT;
        let bridge = self
            .nm
            .add_profile(&plan.bridge_profile, trial)
            .await
            .map_err(Failure::Apply)?;
        let port = self
            .nm
            .add_profile(&plan.port_profile, trial)
            .await
            .map_err(Failure::Apply)?;
        self.progress.step(
            "profiles",
            format!(
                "added {} and {} (in memory only)",
                plan.bridge, plan.port_id
            ),
        );

        self.activate(plan, &bridge, &port).await?;
        self.verify(plan).await.map_err(Failure::Verify)?;
        self.progress.step(
            "verified",
            format!(
                "{} has {} and MAC {}, {} attached",
                plan.bridge,
                list(&plan.ipv4.addresses),
                plan.mac,
                plan.uplink
            ),
        );

        let results = checks::run_all(probes, ctx, plan.timing.check).await;
        for r in &results {
            let verdict = if r.ok { "ok" } else { "FAILED" };
            self.progress
                .step("check", format!("{} {verdict}: {}", r.probe, r.detail));
        }
        if results.iter().all(|r| r.ok) {
            Ok(results)
        } else {
            Err(Failure::Checks(results))
        }
    }

    /// Brings the bridge up, then moves the uplink into it. With a static
    /// address the bridge holds it before the uplink lets go of it, so the
    /// host stays reachable; with DHCP the bridge needs its port for a lease.
    async fn activate(
        &self,
        plan: &Plan,
        bridge: &ObjectPath<'_>,
        port: &ObjectPath<'_>,
    ) -> Result<(), Failure> {
        let any_device = ObjectPath::from_static_str_unchecked(netbridge_dbus::NULL_PATH);
        let bridge_ac = self
            .nm
            .activate(bridge, &any_device)
            .await
            .map_err(Failure::Apply)?;
        if plan.ipv4.method == "manual" {
            let early = ActivationGoal {
                ip4: true,
                ip6: false,
            };
            let deadline = Duration::from_secs(3);
            if let Err(e) = self
                .nm
                .wait_activated(&bridge_ac, &plan.bridge, early, deadline)
                .await
            {
                tracing::debug!(error = %e, "bridge not ready before its port; continuing");
            }
        }
        let port_ac = self
            .nm
            .activate(port, &plan.uplink_path)
            .await
            .map_err(Failure::Apply)?;
        let deadline = plan.timing.activation;
        let none = ActivationGoal::default();
        tokio::try_join!(
            self.nm
                .wait_activated(&port_ac, &plan.port_id, none, deadline),
            self.nm
                .wait_activated(&bridge_ac, &plan.bridge, plan.goal, deadline),
        )
        .map_err(Failure::Activation)?;
        self.progress.step(
            "bridge up",
            format!("{} activated with {} as its port", plan.bridge, plan.uplink),
        );
        Ok(())
    }

    /// Checks the state NetworkManager reports against what the plan promised.
    async fn verify(&self, plan: &Plan) -> Result<(), Vec<String>> {
        let nm_err = |e: NmError| vec![format!("reading {}: {e}", plan.bridge)];
        let Some(path) = self
            .nm
            .device_by_iface(&plan.bridge)
            .await
            .map_err(nm_err)?
        else {
            return Err(vec![format!("no device {} exists", plan.bridge)]);
        };
        let br = self.nm.device_info(&path).await.map_err(nm_err)?;
        let mut problems = Vec::new();
        if br.state != DeviceState::Activated {
            problems.push(format!("{} is {}, not activated", plan.bridge, br.state));
        }
        if !br.mac.eq_ignore_ascii_case(&plan.mac) {
            problems.push(format!(
                "{} has MAC {}, expected {}",
                plan.bridge, br.mac, plan.mac
            ));
        }
        let have: Vec<_> = br.ipv4.addresses.iter().chain(&br.ipv6.addresses).collect();
        for want in plan.ipv4.addresses.iter().chain(&plan.ipv6.addresses) {
            if !have.contains(&want) {
                problems.push(format!("{} lacks the address {want}", plan.bridge));
            }
        }
        if let Some(gw) = plan.ipv4.gateway {
            if br.ipv4.gateway != Some(gw) {
                problems.push(format!(
                    "the default route via {gw} is not on {}",
                    plan.bridge
                ));
            }
        }
        if !br.port_paths.contains(&plan.uplink_path) {
            problems.push(format!("{} is not a port of {}", plan.uplink, plan.bridge));
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(problems)
        }
    }

    /// Persists the trial: profiles to disk, the original profile kept with
    /// autoconnect off, and only then the checkpoint destroyed.
    async fn commit(
        &self,
        plan: &Plan,
        checkpoint: &ObjectPath<'_>,
        record: &mut Record,
    ) -> Result<(), NmError> {
        record.phase = Phase::Committing;
        self.write(record)?;
        for uuid in [&plan.bridge_uuid, &plan.port_uuid] {
            let path = self.profile(uuid).await?;
            self.nm
                .update_profile(&path, None, Update2Flags::TO_DISK)
                .await?;
        }
        let original = self.profile(&plan.original.uuid).await?;
        self.nm
            .update_profile(&original, Some(&plan.original_after), Update2Flags::TO_DISK)
            .await?;
        record.phase = Phase::Committed;
        self.write(record)?;
        self.nm.checkpoint_destroy(checkpoint).await?;
        self.store.clear(self.lock).map_err(journal_to_nm)?;
        self.progress.step(
            "committed",
            format!(
                "{} and {} saved to disk; profile '{}' kept with autoconnect off (`netbridge revert {}` undoes)",
                plan.bridge, plan.port_id, plan.original.id, plan.bridge
            ),
        );
        Ok(())
    }

    fn write(&self, record: &Record) -> Result<(), NmError> {
        self.store.write(self.lock, record).map_err(journal_to_nm)
    }

    async fn profile(&self, uuid: &str) -> Result<OwnedObjectPath, NmError> {
        self.nm
            .profile_by_uuid(uuid)
            .await?
            .ok_or_else(|| NmError::Unexpected {
                what: format!("profile {uuid} disappeared during the change"),
            })
    }

    async fn roll_back(
        &self,
        record: &Record,
        failure: Failure,
        probes: &[Probe],
        ctx: &CheckContext,
        plan: &Plan,
    ) -> Result<Outcome, TxError> {
        let reason = failure.to_string();
        self.progress.step("rolling back", reason.clone());
        let started = Instant::now();
        recovery::undo(self.nm, record, self.progress)
            .await
            .map_err(|source| TxError::Rollback {
                failure: reason.clone(),
                source,
            })?;
        self.store.clear(self.lock)?;
        let restore_seconds = started.elapsed().as_secs_f64();
        self.progress.step(
            "rolled back",
            format!(
                "{} runs profile '{}' again, {} removed ({restore_seconds:.2} s)",
                plan.uplink, plan.original.id, plan.bridge
            ),
        );
        let rechecks = checks::run_all(probes, ctx, plan.timing.check).await;
        for r in &rechecks {
            let verdict = if r.ok { "ok" } else { "still failing" };
            self.progress
                .step("recheck", format!("{} {verdict}: {}", r.probe, r.detail));
        }
        Ok(Outcome::RolledBack {
            reason,
            restore_seconds,
            rechecks,
        })
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
struct Keepalive(tokio::task::JoinHandle<()>);

impl Keepalive {
    fn start(nm: &Nm, checkpoint: &OwnedObjectPath, timeout: u32) -> Self {
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

/// Resolves when the operator or the service manager asks netbridge to stop.
/// SIGHUP is not among them: a dropped SSH session must not cut a change short.
pub async fn interrupted() -> &'static str {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut int), Ok(mut term)) = (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
    ) else {
        return std::future::pending().await;
    };
    tokio::select! {
        _ = int.recv() => "SIGINT",
        _ = term.recv() => "SIGTERM",
    }
}
