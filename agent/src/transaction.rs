//! The transaction: checkpoint, apply in memory, verify, run the checks, then
//! commit to disk or roll back. Read `Transaction::convert` top to bottom.
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

use ipnetwork::IpNetwork;
use netbridge_dbus::flags::{AddConnection2Flags, CheckpointCreateFlags, Update2Flags};
use netbridge_dbus::settings::names;
use netbridge_dbus::Settings;
use serde::Serialize;
use zbus::zvariant::{ObjectPath, OwnedObjectPath};

use crate::checks::{self, CheckContext, Probe, ProbeResult};
use crate::identity::{self, Identity, Proof};
use crate::journal::{Change, JournalError, Lock, Phase, Record, Store};
use crate::nm::{ActivationGoal, DeviceInfo, Family, Nm, NmError};
use crate::plan::revert::RevertPlan;
use crate::plan::{AdoptPlan, IpPlan, ModifyPlan, Plan};
use crate::recovery;
use crate::report::Progress;
use crate::verify;

/// How a trial ended.
#[derive(Debug, Serialize)]
#[serde(tag = "result", rename_all = "kebab-case")]
pub enum Outcome {
    Committed {
        checks: Vec<ProbeResult>,
        /// The host before and after, proven the same (conversions only).
        identity: Option<Proof>,
    },
    RolledBack {
        reason: String,
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

/// How long NetworkManager gets to start attaching the port by itself.
const PORT_START: Duration = Duration::from_secs(5);

/// How long the reported state may lag behind activation before it counts as wrong.
const SETTLE: Duration = Duration::from_secs(5);

/// How long the bridge's DHCP client gets to renew the uplink's lease: the
/// server answered the uplink moments before, and its address is held meanwhile.
const LEASE: Duration = Duration::from_secs(20);

/// What a reconfigured bridge must show.
struct Reconfigured<'p> {
    bridge: &'p str,
    uplink: &'p str,
    uplink_path: &'p OwnedObjectPath,
    ipv4: &'p IpPlan,
    ipv6: &'p IpPlan,
    stp: bool,
    mtu: Option<u32>,
}

/// What a trial proved.
pub struct Proven {
    checks: Vec<ProbeResult>,
    identity: Option<Proof>,
}

/// What a guarded change protects and how it proves itself.
struct Guard<'p> {
    /// The devices the checkpoint covers.
    devices: &'p [OwnedObjectPath],
    timeout: u32,
    /// The devices, for people.
    what: &'p str,
    probes: &'p [Probe],
    ctx: &'p CheckContext,
    check_deadline: Duration,
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
        before: &Identity,
    ) -> Result<Outcome, TxError> {
        let record = Record::new(Change::Convert {
            bridge: plan.bridge.clone(),
            uplink: plan.uplink.clone(),
            created: vec![plan.bridge_uuid.clone(), plan.port_uuid.clone()],
            original: plan.original.clone(),
            held: plan.lease.is_some(),
        });
        self.hold_lease(plan).await?;
        // Only the uplink: the bridge is new, and deleting its profile on
        // rollback removes it.
        let guard = Guard {
            devices: std::slice::from_ref(&plan.uplink_path),
            timeout: plan.timing.rollback_timeout,
            what: &plan.uplink,
            probes,
            ctx,
            check_deadline: plan.timing.check,
        };
        let trial = self.try_out(plan, probes, ctx, before);
        let commit = async |record: &mut Record| self.commit(plan, record).await;
        let outcome = self.guarded(record, guard, trial, commit).await?;
        if plan.lease.is_some() && matches!(outcome, Outcome::Committed { .. }) {
            self.release_hold(&plan.bridge).await;
        }
        Ok(outcome)
    }

    /// A DHCP uplink's address must outlive a DHCP server that stops
    /// answering. Its running configuration (not its profile) gets the lease
    /// as a static address beside DHCP, before the checkpoint: a rollback —
    /// netbridge's or NetworkManager's own timer — reactivates the uplink
    /// with the configuration the checkpoint saw, so the address comes back
    /// at once whether or not the server answers.
    async fn hold_lease(&self, plan: &Plan) -> Result<(), TxError> {
        let Some(lease) = &plan.lease else {
            return Ok(());
        };
        let failed = |source| TxError::Hold {
            uplink: plan.uplink.clone(),
            source,
        };
        let (applied, version) = self
            .nm
            .applied_versioned(&plan.uplink_path)
            .await
            .map_err(failed)?;
        let held = crate::plan::hold(&applied, lease).map_err(|e| failed(e.into()))?;
        self.nm
            .reapply_settings(&plan.uplink_path, &held, version)
            .await
            .map_err(failed)?;
        self.progress.step(
            "lease held",
            format!(
                "{} keeps {} beside DHCP until the change ends (in memory only): a silent DHCP server cannot take the address away",
                plan.uplink, lease.address
            ),
        );
        Ok(())
    }

    /// The shape of every change to existing devices: journal, checkpoint
    /// (re-armed while netbridge lives), the trial raced against a stop
    /// signal, then commit — or roll back on any failure, commit included.
    async fn guarded(
        &self,
        mut record: Record,
        guard: Guard<'_>,
        trial: impl std::future::Future<Output = Result<Proven, Failure>>,
        commit: impl AsyncFnOnce(&mut Record) -> Result<String, NmError>,
    ) -> Result<Outcome, TxError> {
        self.store.write(self.lock, &record).await?;
        let checkpoint = self
            .checkpoint(guard.devices, guard.timeout, &mut record, guard.what)
            .await?;
        let keepalive = Keepalive::start(self.nm, &checkpoint, guard.timeout);

        let trial = tokio::select! {
            result = trial => result,
            signal = interrupted() => Err(Failure::Interrupted(signal)),
        };
        let verdict = match trial {
            Ok(proven) => commit(&mut record)
                .await
                .map(|done| (proven, done))
                .map_err(Failure::Commit),
            Err(failure) => Err(failure),
        };
        drop(keepalive);

        match verdict {
            Ok((Proven { checks, identity }, done)) => {
                // Committed (the journal says so): from here on nothing
                // undoes the change; what is left is housekeeping.
                self.finish(&checkpoint).await;
                self.progress.step("committed", done);
                Ok(Outcome::Committed { checks, identity })
            }
            Err(failure) => {
                self.roll_back(
                    &record,
                    failure,
                    guard.probes,
                    guard.ctx,
                    guard.check_deadline,
                )
                .await
            }
        }
    }

    /// Destroys the checkpoint of a committed change and clears the journal.
    /// A failure here never rolls back: the change passed its checks and is
    /// on disk. A checkpoint NetworkManager lost (it restarted during the
    /// trial) has nothing left to destroy; anything else stays recorded for
    /// the next netbridge run (`recover`) to finish.
    async fn finish(&self, checkpoint: &ObjectPath<'_>) {
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
        let created = self
            .nm
            .checkpoint_create(
                devices,
                timeout,
                CheckpointCreateFlags::DELETE_NEW_CONNECTIONS,
            )
            .await;
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

    /// Applies the plan in memory only and proves it: activation, state, checks.
    async fn try_out(
        &self,
        plan: &Plan,
        probes: &[Probe],
        ctx: &CheckContext,
        before: &Identity,
    ) -> Result<Proven, Failure> {
        let trial = AddConnection2Flags::IN_MEMORY | AddConnection2Flags::BLOCK_AUTOCONNECT;
        let bridge = self
            .nm
            .add_profile(&plan.bridge_without_ip(), trial)
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
        if let Some(lease) = &plan.lease {
            self.renewed(plan, lease).await.map_err(Failure::Verify)?;
        }
        self.prove(before, &plan.bridge, probes, ctx, plan.timing.check)
            .await
    }

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

    /// A DHCP bridge must hold the uplink's lease from the server itself,
    /// not only the static copy the trial carries beside it.
    async fn renewed(
        &self,
        plan: &Plan,
        lease: &crate::plan::LeaseHold,
    ) -> Result<(), Vec<String>> {
        let want = lease.address.ip().to_string();
        let outcome = self
            .nm
            .settle(LEASE, async || {
                let Some(path) = self.nm.device_by_iface(&plan.bridge).await? else {
                    return Ok(Err(vec![format!("no device {} exists", plan.bridge)]));
                };
                let options = self.nm.lease_options(&path, Family::V4).await?;
                let problems = verify::leased(&plan.bridge, &plan.uplink, &want, &options);
                // Any lease is the server's answer, for another address too: final.
                Ok(if options.contains_key("ip_address") {
                    Ok(as_result(problems))
                } else {
                    Err(problems)
                })
            })
            .await;
        let leased = match outcome {
            Ok(Ok(verdict)) => verdict,
            Ok(Err(problems)) => Err(problems),
            Err(e) => Err(vec![format!("reading {}: {e}", plan.bridge)]),
        };
        if leased.is_ok() {
            self.progress.step(
                "lease",
                format!(
                    "the DHCP server renewed {want} for {} (client id and MAC kept)",
                    plan.bridge
                ),
            );
        }
        leased
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
            Err(e) => Err(Failure::Identity(vec![format!("reading {bridge}: {e}")])),
        }
    }

    /// Brings the bridge up without IP; NetworkManager attaches the port by
    /// itself (`autoconnect-slaves`, one step with the bridge: activating the
    /// port as well would detach and re-attach the uplink). Then the bridge
    /// gets its IP configuration in place (Reapply), with the uplink already
    /// forwarding.
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
        // The activation runs with the settings it started with: the profile
        // can take its IP configuration now, ready for the Reapply.
        self.nm
            .update_profile(bridge, Some(&plan.bridge_trial), Update2Flags::IN_MEMORY)
            .await
            .map_err(Failure::Apply)?;
        self.attach_port(plan, port).await?;
        let up = ActivationGoal::default();
        self.nm
            .wait_activated(&bridge_ac, &plan.bridge, up, plan.timing.activation)
            .await
            .map_err(Failure::Activation)?;
        let device = self
            .nm
            .device_by_iface(&plan.bridge)
            .await
            .map_err(Failure::Apply)?
            .ok_or_else(|| Failure::Verify(vec![format!("no device {} exists", plan.bridge)]))?;
        self.nm.reapply(&device).await.map_err(Failure::Apply)?;
        self.progress.step(
            "bridge up",
            format!(
                "{} up with {} as its port; its IP configuration applied",
                plan.bridge, plan.uplink
            ),
        );
        Ok(())
    }

    async fn attach_port(&self, plan: &Plan, port: &ObjectPath<'_>) -> Result<(), Failure> {
        let attached = self
            .nm
            .wait_device_runs(&plan.uplink_path, &plan.uplink, &plan.port_uuid, PORT_START)
            .await;
        if attached.is_ok() {
            return Ok(());
        }
        // A NetworkManager that does not pull ports in: attach it ourselves.
        let port_ac = self
            .nm
            .activate(port, &plan.uplink_path)
            .await
            .map_err(Failure::Apply)?;
        self.nm
            .wait_activated(
                &port_ac,
                &plan.port_id,
                ActivationGoal::default(),
                plan.timing.activation,
            )
            .await
            .map_err(Failure::Activation)
    }

    /// Checks the state NetworkManager reports against what the plan
    /// promised, giving it a moment to publish what the kernel already has.
    async fn verify(&self, plan: &Plan) -> Result<(), Vec<String>> {
        // A DHCP lease starts only now that the bridge has its port.
        let deadline = if plan.ipv4.method == "auto" {
            plan.timing.activation
        } else {
            SETTLE
        };
        self.settled(&plan.bridge, deadline, |bridge| {
            verify::converted(bridge, plan)
        })
        .await
    }

    /// Reads `iface` until `check` finds nothing wrong, for at most
    /// `deadline`: NetworkManager may report a device activated a little
    /// before its addresses show on the bus (1.52 publishes them ~100 ms later).
    async fn settled(
        &self,
        iface: &str,
        deadline: Duration,
        check: impl Fn(&DeviceInfo) -> Vec<String>,
    ) -> Result<(), Vec<String>> {
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
        outcome.unwrap_or_else(|e| Err(vec![format!("reading {iface}: {e}")]))
    }

    /// Persists the trial: profiles to disk, the original profile kept with
    /// autoconnect off, the journal marked committed.
    async fn commit(&self, plan: &Plan, record: &mut Record) -> Result<String, NmError> {
        record.phase = Phase::Committing;
        self.write(record).await?;
        // The bridge as planned, without the trial's lease hold.
        let bridge = self.profile(&plan.bridge_uuid).await?;
        self.nm
            .update_profile(&bridge, Some(&plan.bridge_profile), Update2Flags::TO_DISK)
            .await?;
        let port = self.profile(&plan.port_uuid).await?;
        self.nm
            .update_profile(&port, None, Update2Flags::TO_DISK)
            .await?;
        let original = self.profile(&plan.original.uuid).await?;
        self.nm
            .update_profile(&original, Some(&plan.original_after), Update2Flags::TO_DISK)
            .await?;
        record.phase = Phase::Committed;
        self.write(record).await?;
        Ok(format!(
            "{} and {} saved to disk; profile '{}' kept with autoconnect off (`netbridge revert {}` undoes)",
            plan.bridge, plan.port_id, plan.original.id, plan.bridge
        ))
    }

    /// Lets a device run its saved profile again (DHCP only, no static copy
    /// of the lease), once its DHCP server has answered it; otherwise the hold
    /// stays until the device's next activation, and says so.
    async fn release_hold(&self, iface: &str) {
        let released = async {
            let Some(path) = self.nm.device_by_iface(iface).await? else {
                return Ok(false);
            };
            let info = self.nm.device_info(&path).await?;
            let leased = !self.nm.lease_options(&path, Family::V4).await?.is_empty();
            if info.state != netbridge_dbus::state::DeviceState::Activated || !leased {
                return Ok(false);
            }
            self.nm.reapply(&path).await.map(|()| true)
        };
        let message = match released.await {
            Ok(true) => format!("{iface} runs its saved profile again: DHCP only, lease renewed"),
            Ok(false) => format!(
                "{iface} keeps its leased address statically beside DHCP until the DHCP server answers (in memory only; gone at its next activation)"
            ),
            Err(e) => format!("{iface} keeps its lease hold (in memory only): {e}"),
        };
        self.progress.step("lease", message);
    }

    /// Takes over a hand-made bridge the uplink is a port of: marked, the
    /// declared options applied in place (Reapply), a plain profile made for
    /// the uplink — proven like a conversion, or left as it was.
    pub async fn adopt(
        &self,
        plan: &AdoptPlan,
        probes: &[Probe],
        ctx: &CheckContext,
        before: &Identity,
    ) -> Result<Outcome, TxError> {
        let record = Record::new(Change::Adopt {
            bridge: plan.bridge.clone(),
            uplink: plan.uplink.clone(),
            bridge_uuid: plan.bridge_uuid.clone(),
            created: vec![plan.original.uuid.clone()],
            restore: plan.restore.clone(),
        });
        let devices = [plan.uplink_path.clone(), plan.bridge_path.clone()];
        let what = format!("{} and {}", plan.uplink, plan.bridge);
        let guard = Guard {
            devices: &devices,
            timeout: plan.timing.rollback_timeout,
            what: &what,
            probes,
            ctx,
            check_deadline: plan.timing.check,
        };
        let trial = self.try_adopt(plan, probes, ctx, before);
        let commit = async |record: &mut Record| self.commit_adopt(plan, record).await;
        self.guarded(record, guard, trial, commit).await
    }

    async fn try_adopt(
        &self,
        plan: &AdoptPlan,
        probes: &[Probe],
        ctx: &CheckContext,
        before: &Identity,
    ) -> Result<Proven, Failure> {
        let trial = AddConnection2Flags::IN_MEMORY | AddConnection2Flags::BLOCK_AUTOCONNECT;
        self.nm
            .add_profile(&plan.original_profile, trial)
            .await
            .map_err(Failure::Apply)?;
        // STP, its timers and the MTU change in place: no re-activation, no outage.
        self.reconfigure(&plan.bridge_uuid, &plan.bridge_after, &plan.bridge_path)
            .await?;
        self.progress.step(
            "adopted",
            format!(
                "{}: {} (in memory only); profile '{}' made for {} to go back to",
                plan.bridge,
                plan.changes.join(", "),
                plan.original.id,
                plan.uplink
            ),
        );
        self.verify_reconfigured(Reconfigured {
            bridge: &plan.bridge,
            uplink: &plan.uplink,
            uplink_path: &plan.uplink_path,
            ipv4: &plan.ipv4,
            ipv6: &plan.ipv6,
            stp: plan.stp,
            mtu: None,
        })
        .await
        .map_err(Failure::Verify)?;
        self.prove(before, &plan.bridge, probes, ctx, plan.timing.check)
            .await
    }

    /// The bridge still carries its addresses with the uplink as its port,
    /// and the kernel runs the declared STP setting and MTU (sysfs).
    async fn verify_reconfigured(&self, want: Reconfigured<'_>) -> Result<(), Vec<String>> {
        let bridge = want.bridge;
        self.settled(bridge, SETTLE, |device| {
            let mut problems = verify::carries(device, want.ipv4, want.ipv6);
            if !device.port_paths.contains(want.uplink_path) {
                problems.push(format!("{} is not a port of {bridge}", want.uplink));
            }
            if let Some(mtu) = want.mtu.filter(|m| *m != device.mtu) {
                problems.push(format!("{bridge} has MTU {}, declared {mtu}", device.mtu));
            }
            problems
        })
        .await?;
        let path = format!("/sys/class/net/{bridge}/bridge/stp_state");
        let state = tokio::fs::read_to_string(&path)
            .await
            .map_err(|e| vec![format!("reading {path}: {e}")])?;
        as_result(verify::stp(bridge, state.trim(), want.stp))?;
        self.progress.step(
            "verified",
            format!(
                "{bridge} keeps {} with {} as its port; STP {} in the kernel",
                list(&want.ipv4.addresses),
                want.uplink,
                if want.stp { "on" } else { "off" }
            ),
        );
        Ok(())
    }

    /// Brings netbridge's bridge to the declared options in place (Update2
    /// in memory and Reapply: no re-activation), proven like a conversion,
    /// or leaves it as it was.
    pub async fn modify(
        &self,
        plan: &ModifyPlan,
        probes: &[Probe],
        ctx: &CheckContext,
        before: &Identity,
    ) -> Result<Outcome, TxError> {
        let record = Record::new(Change::Modify {
            bridge: plan.bridge.clone(),
            uplink: plan.uplink.clone(),
            bridge_uuid: plan.bridge_uuid.clone(),
            port_uuid: plan.port_uuid.clone(),
            restore: plan.restore.clone(),
            port_restore: plan.port_restore.clone(),
        });
        let devices = [plan.uplink_path.clone(), plan.bridge_path.clone()];
        let what = format!("{} and {}", plan.uplink, plan.bridge);
        let guard = Guard {
            devices: &devices,
            timeout: plan.timing.rollback_timeout,
            what: &what,
            probes,
            ctx,
            check_deadline: plan.timing.check,
        };
        let trial = self.try_modify(plan, probes, ctx, before);
        let commit = async |record: &mut Record| {
            let mut profiles = vec![plan.bridge_uuid.as_str()];
            if plan.port_after.is_some() {
                profiles.push(plan.port_uuid.as_str());
            }
            self.persist(record, &profiles).await?;
            Ok(format!(
                "{} saved to disk: {}",
                plan.bridge,
                plan.changes.join(", ")
            ))
        };
        self.guarded(record, guard, trial, commit).await
    }

    async fn try_modify(
        &self,
        plan: &ModifyPlan,
        probes: &[Probe],
        ctx: &CheckContext,
        before: &Identity,
    ) -> Result<Proven, Failure> {
        // The port first: its MTU caps the bridge's.
        if let Some(port_after) = &plan.port_after {
            self.reconfigure(&plan.port_uuid, port_after, &plan.uplink_path)
                .await?;
        }
        self.reconfigure(&plan.bridge_uuid, &plan.bridge_after, &plan.bridge_path)
            .await?;
        self.progress.step(
            "modified",
            format!(
                "{}: {} (in memory only, applied in place)",
                plan.bridge,
                plan.changes.join(", ")
            ),
        );
        self.verify_reconfigured(Reconfigured {
            bridge: &plan.bridge,
            uplink: &plan.uplink,
            uplink_path: &plan.uplink_path,
            ipv4: &plan.ipv4,
            ipv6: &plan.ipv6,
            stp: plan.stp,
            mtu: plan.mtu,
        })
        .await
        .map_err(Failure::Verify)?;
        self.prove(before, &plan.bridge, probes, ctx, plan.timing.check)
            .await
    }

    /// A profile's new settings in memory, applied to its device in place.
    async fn reconfigure(
        &self,
        uuid: &str,
        settings: &Settings,
        device: &ObjectPath<'_>,
    ) -> Result<(), Failure> {
        let profile = self.profile(uuid).await.map_err(Failure::Apply)?;
        self.nm
            .update_profile(&profile, Some(settings), Update2Flags::IN_MEMORY)
            .await
            .map_err(Failure::Apply)?;
        self.nm.reapply(device).await.map_err(Failure::Apply)
    }

    /// Marks the journal committing, saves the profiles, marks it committed.
    async fn persist(&self, record: &mut Record, uuids: &[&str]) -> Result<(), NmError> {
        record.phase = Phase::Committing;
        self.write(record).await?;
        for uuid in uuids {
            let path = self.profile(uuid).await?;
            self.nm
                .update_profile(&path, None, Update2Flags::TO_DISK)
                .await?;
        }
        record.phase = Phase::Committed;
        self.write(record).await
    }

    async fn commit_adopt(&self, plan: &AdoptPlan, record: &mut Record) -> Result<String, NmError> {
        self.persist(record, &[&plan.original.uuid, &plan.bridge_uuid])
            .await?;
        Ok(format!(
            "{} is netbridge's now and saved to disk; profile '{}' kept for {} with autoconnect off (`netbridge revert {}` gives back a plain {})",
            plan.bridge, plan.original.id, plan.uplink, plan.bridge, plan.uplink
        ))
    }

    /// Undoes a conversion: the original profile back on the uplink, proven
    /// by the checks, then the bridge and port profiles deleted — or the host
    /// left converted as it was.
    pub async fn revert(
        &self,
        plan: &RevertPlan,
        bridge_device: Option<&OwnedObjectPath>,
        probes: &[Probe],
        ctx: &CheckContext,
    ) -> Result<Outcome, TxError> {
        let record = Record::new(Change::Revert {
            bridge: plan.bridge.clone(),
            uplink: plan.uplink.clone(),
            bridge_uuid: plan.bridge_uuid.clone(),
            port_uuid: plan.port_uuid.clone(),
            original: plan.original.clone(),
        });
        let devices: Vec<OwnedObjectPath> = std::iter::once(&plan.uplink_path)
            .chain(bridge_device)
            .cloned()
            .collect();
        let what = format!("{} and {}", plan.uplink, plan.bridge);
        let guard = Guard {
            devices: &devices,
            timeout: plan.timing.rollback_timeout,
            what: &what,
            probes,
            ctx,
            check_deadline: plan.timing.check,
        };
        let trial = self.try_revert(plan, probes, ctx);
        let commit = async |record: &mut Record| self.commit_revert(plan, record).await;
        self.guarded(record, guard, trial, commit).await
    }

    /// The original profile takes the uplink back while the bridge still
    /// holds the address (without a port, so the uplink's route wins); then
    /// the bridge goes down.
    async fn try_revert(
        &self,
        plan: &RevertPlan,
        probes: &[Probe],
        ctx: &CheckContext,
    ) -> Result<Proven, Failure> {
        let original = self
            .profile(&plan.original.uuid)
            .await
            .map_err(Failure::Apply)?;
        let active = self
            .nm
            .activate(&original, &plan.uplink_path)
            .await
            .map_err(Failure::Apply)?;
        self.nm
            .wait_activated(
                &active,
                &plan.original.id,
                plan.goal,
                plan.timing.activation,
            )
            .await
            .map_err(Failure::Activation)?;
        self.progress.step(
            "uplink up",
            format!("{} runs profile '{}' again", plan.uplink, plan.original.id),
        );
        self.take_down(&plan.bridge).await.map_err(Failure::Apply)?;
        self.verify_revert(plan).await.map_err(Failure::Verify)?;
        let checks = self.run_checks(probes, ctx, plan.timing.check).await?;
        Ok(Proven {
            checks,
            identity: None,
        })
    }

    async fn take_down(&self, bridge: &str) -> Result<(), NmError> {
        let Some(path) = self.nm.device_by_iface(bridge).await? else {
            return Ok(());
        };
        if let Some(active) = self.nm.device_info(&path).await?.active_connection {
            match self.nm.deactivate(&active).await {
                Err(e) if !e.is_gone() => return Err(e),
                _ => {}
            }
        }
        if self
            .nm
            .wait_device_gone(bridge, Duration::from_secs(10))
            .await
            .is_ok()
        {
            self.progress
                .step("bridge down", format!("{bridge} removed"));
        }
        Ok(())
    }

    async fn verify_revert(&self, plan: &RevertPlan) -> Result<(), Vec<String>> {
        self.settled(&plan.uplink, SETTLE, |uplink| {
            verify::carries(uplink, &plan.ipv4, &plan.ipv6)
        })
        .await
    }

    async fn commit_revert(
        &self,
        plan: &RevertPlan,
        record: &mut Record,
    ) -> Result<String, NmError> {
        record.phase = Phase::Committing;
        self.write(record).await?;
        let original = self.profile(&plan.original.uuid).await?;
        self.nm
            .update_profile(&original, Some(&plan.original_after), Update2Flags::TO_DISK)
            .await?;
        for uuid in [&plan.port_uuid, &plan.bridge_uuid] {
            if let Some(path) = self.nm.profile_by_uuid(uuid).await? {
                self.nm.delete_profile(&path).await?;
            }
        }
        record.phase = Phase::Committed;
        self.write(record).await?;
        Ok(format!(
            "{} and its port profile deleted; profile '{}' saved with autoconnect {}",
            plan.bridge,
            plan.original.id,
            if plan.original.autoconnect {
                "on"
            } else {
                "off"
            }
        ))
    }

    async fn run_checks(
        &self,
        probes: &[Probe],
        ctx: &CheckContext,
        deadline: Duration,
    ) -> Result<Vec<ProbeResult>, Failure> {
        let results = checks::run_all(probes, ctx, deadline).await;
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

    /// Creates a virtual network: in memory, up, its address verified, then
    /// saved. It touches no existing device, so no checkpoint guards it; the
    /// journal removes it if netbridge is cut short.
    pub async fn create_network(
        &self,
        name: &str,
        profile: &Settings,
        address: IpNetwork,
    ) -> Result<Outcome, TxError> {
        let uuid = profile
            .str(names::CONNECTION, "uuid")
            .ok()
            .flatten()
            .unwrap_or_default();
        let record = Record::new(Change::Create {
            bridge: name.to_owned(),
            uuid: uuid.to_owned(),
        });
        self.store.write(self.lock, &record).await?;
        let trial = tokio::select! {
            result = self.try_network(name, profile, address) => result,
            signal = interrupted() => Err(Failure::Interrupted(signal)),
        };
        let verdict = match trial {
            Ok(()) => self
                .commit_network(name, uuid)
                .await
                .map_err(Failure::Commit),
            Err(failure) => Err(failure),
        };
        match verdict {
            Ok(()) => Ok(Outcome::Committed {
                checks: Vec::new(),
                identity: None,
            }),
            Err(failure) => {
                self.roll_back(
                    &record,
                    failure,
                    &[],
                    &CheckContext::default(),
                    Duration::ZERO,
                )
                .await
            }
        }
    }

    async fn try_network(
        &self,
        name: &str,
        profile: &Settings,
        address: IpNetwork,
    ) -> Result<(), Failure> {
        let trial = AddConnection2Flags::IN_MEMORY | AddConnection2Flags::BLOCK_AUTOCONNECT;
        let path = self
            .nm
            .add_profile(profile, trial)
            .await
            .map_err(Failure::Apply)?;
        self.progress
            .step("profile", format!("added {name} (in memory only)"));
        self.bring_up(name, &path).await?;
        let expected = IpPlan {
            method: "manual".to_owned(),
            addresses: vec![address],
            ..IpPlan::default()
        };
        self.settled(name, SETTLE, |bridge| {
            verify::carries(bridge, &expected, &IpPlan::default())
        })
        .await
        .map_err(Failure::Verify)?;
        self.progress
            .step("verified", format!("{name} is up with {address}"));
        Ok(())
    }

    /// Activates a profile that needs no device of its own (a new bridge).
    pub async fn bring_up(&self, name: &str, profile: &ObjectPath<'_>) -> Result<(), Failure> {
        let any_device = ObjectPath::from_static_str_unchecked(netbridge_dbus::NULL_PATH);
        let active = self
            .nm
            .activate(profile, &any_device)
            .await
            .map_err(Failure::Apply)?;
        let goal = ActivationGoal {
            ip4: true,
            ip6: false,
        };
        self.nm
            .wait_activated(&active, name, goal, Duration::from_secs(30))
            .await
            .map_err(Failure::Activation)?;
        self.progress.step("up", format!("{name} activated"));
        Ok(())
    }

    async fn commit_network(&self, name: &str, uuid: &str) -> Result<(), NmError> {
        let path = self.profile(uuid).await?;
        self.nm
            .update_profile(&path, None, Update2Flags::TO_DISK)
            .await?;
        self.store.clear(self.lock).await.map_err(journal_to_nm)?;
        self.progress
            .step("committed", format!("{name} saved to disk"));
        Ok(())
    }

    async fn write(&self, record: &Record) -> Result<(), NmError> {
        self.store
            .write(self.lock, record)
            .await
            .map_err(journal_to_nm)
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
        check_deadline: Duration,
    ) -> Result<Outcome, TxError> {
        let reason = failure.to_string();
        let retry = crate::retry::Retry::of_failure(&failure);
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
            self.release_hold(uplink).await;
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
            let verdict = if r.ok { "ok" } else { "still failing" };
            self.progress
                .step("recheck", format!("{} {verdict}: {}", r.probe, r.detail));
        }
        Ok(Outcome::RolledBack {
            reason,
            retry,
            restore_seconds,
            rechecks,
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
