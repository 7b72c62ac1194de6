//! Converting an uplink into a bridge: the lease hold for DHCP uplinks, the
//! bridge up without IP, the port attached once, the IP configuration
//! reapplied, verified, the lease renewed, proven, committed.

use std::time::Duration;

use netbridge_dbus::flags::{AddConnection2Flags, Update2Flags};
use zbus::zvariant::ObjectPath;

use super::{
    as_result, list, Commit, Failure, Guard, Outcome, Proven, Transaction, TxError, SETTLE,
};
use crate::checks::{CheckContext, Probe};
use crate::identity::Identity;
use crate::journal::{Change, Record, Save};
use crate::nm::{ActivationGoal, Family, Nm};
use crate::plan::Plan;
use crate::report::Progress;
use crate::verify;

/// How long the bridge's DHCP client gets to renew the uplink's lease: the
/// server answered the uplink moments before, and its address is held meanwhile.
const LEASE: Duration = Duration::from_secs(20);

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
            timing: plan.timing,
            what: &plan.uplink,
            probes,
            ctx,
        };
        let trial = self.try_out(plan, probes, ctx, before);
        let outcome = self.guarded(record, guard, trial, commit(plan)).await;
        if plan.lease.is_some() {
            match &outcome {
                Ok(Outcome::Committed { .. }) => {
                    release_hold(self.nm, &plan.bridge, self.progress).await
                }
                // Refused before the trial (journal, checkpoint): the uplink
                // must not keep the hold either.
                Err(TxError::Journal(_) | TxError::Checkpoint(_)) => {
                    release_hold(self.nm, &plan.uplink, self.progress).await
                }
                // A rollback released it already, as far as DHCP allowed;
                // `netbridge confirm` releases it after its commit.
                Ok(Outcome::RolledBack { .. } | Outcome::AwaitingConfirm { .. }) | Err(_) => {}
            }
        }
        outcome
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
            .add_profile(&plan.bridge_staged(), trial)
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
        self.verify(plan).await?;
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
            self.renewed(plan, lease).await?;
        }
        let proven = self
            .prove(before, &plan.bridge, probes, ctx, plan.timing.check)
            .await?;
        // What the commit saves: the bridge as planned, without the trial's
        // lease hold (the device runs with it until the hold is released).
        let bridge = self
            .profile(&plan.bridge_uuid)
            .await
            .map_err(Failure::Commit)?;
        self.nm
            .update_profile(&bridge, Some(&plan.bridge_profile), Update2Flags::IN_MEMORY)
            .await
            .map_err(Failure::Commit)?;
        Ok(proven)
    }

    /// A DHCP bridge must hold the uplink's lease from the server itself,
    /// not only the static copy the trial carries beside it.
    async fn renewed(&self, plan: &Plan, lease: &crate::plan::LeaseHold) -> Result<(), Failure> {
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
        let leased = match outcome.map_err(Failure::Read)? {
            Ok(verdict) => verdict.map_err(Failure::Verify),
            Err(problems) => Err(Failure::Verify(problems)),
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

    /// Make before break: the bridge comes up first with the uplink's MAC
    /// and (static) IP configuration, its routes at the worst metric so
    /// replies still leave through the uplink ([`Plan::bridge_staged`]); it
    /// gets a copy of the uplink's neighbour entries; the uplink is handed
    /// over to it in the kernel ([`Transaction::hand_over`]), then its port
    /// profile activated, which finds it attached. Then the bridge gets its
    /// planned configuration in place (Reapply).
    async fn activate(
        &self,
        plan: &Plan,
        bridge: &ObjectPath<'_>,
        port: &ObjectPath<'_>,
    ) -> Result<(), Failure> {
        let any_device = ObjectPath::from_static_str_unchecked(netbridge_dbus::NULL_PATH);
        self.nm
            .activate(bridge, &any_device)
            .await
            .map_err(Failure::Apply)?;
        let device = self
            .nm
            .device_by_iface(&plan.bridge)
            .await
            .map_err(Failure::Apply)?
            .ok_or_else(|| Failure::Verify(vec![format!("no device {} exists", plan.bridge)]))?;
        self.nm
            .wait_device_configures(
                &device,
                &plan.bridge,
                &plan.bridge_uuid,
                plan.timing.activation,
            )
            .await
            .map_err(Failure::Activation)?;
        self.keep_neighbours(&plan.uplink, &plan.bridge).await;
        if plan.ipv4.method != "auto" {
            self.hand_over(plan).await;
        }
        let port_ac = self
            .nm
            .activate(port, &plan.uplink_path)
            .await
            .map_err(Failure::Apply)?;
        let up = ActivationGoal::default();
        self.nm
            .wait_activated(&port_ac, &plan.port_id, up, plan.timing.activation)
            .await
            .map_err(Failure::Activation)?;
        // The activation runs with the settings it started with: the
        // planned metric (and ports pulled in at the next boot) in place,
        // without waiting for the bridge to finish activating (a DHCP bridge
        // waits for its server; `verify` gives it its deadline).
        self.nm
            .update_profile(bridge, Some(&plan.bridge_trial), Update2Flags::IN_MEMORY)
            .await
            .map_err(Failure::Apply)?;
        self.nm
            .reapply_settings(&device, &plan.bridge_reapplied(), 0)
            .await
            .map_err(Failure::Apply)?;
        self.progress.step(
            "bridge up",
            format!(
                "{} up with {} as its port; its IP configuration applied",
                plan.bridge, plan.uplink
            ),
        );
        Ok(())
    }

    /// The kernel's make-before-break order, which no NetworkManager call
    /// offers: attach the uplink to the bridge while it still holds its
    /// addresses, then remove its copy. NetworkManager would instead
    /// deactivate the uplink's profile, deconfigure it, and attach it only
    /// at its port activation's IP_CONFIG stage, with the address on a
    /// bridge without port in between (tens of milliseconds of lost
    /// replies). So NetworkManager leaves the uplink alone for that instant
    /// (unmanaged, runtime only; it keeps its configuration). The port
    /// profile's activation right after makes NetworkManager manage it
    /// again (`unmanaged_to_disconnected` in nm-manager.c) and finds it
    /// attached already. The checkpoint restores the uplink managed; a
    /// recovery after NetworkManager lost it frees the uplink first
    /// ([`crate::recovery::clear_leftovers`]). Only a shortcut: without
    /// CAP_NET_ADMIN nothing is touched, and a step failing midway leaves
    /// the rest to the port's activation, verification and checks.
    async fn hand_over(&self, plan: &Plan) {
        let note = |message: String| self.progress.step("hand-over", message);
        let ready = async {
            crate::kernel::may_change(&plan.bridge).await?;
            let addresses = crate::kernel::addresses(&plan.uplink).await?;
            self.nm.set_managed(&plan.uplink_path, false).await?;
            Ok::<_, HandOverError>(addresses)
        };
        let addresses = match ready.await {
            Ok(addresses) => addresses,
            Err(e) => {
                return note(format!(
                    "NetworkManager attaches {} (replies are lost meanwhile): {e}",
                    plan.uplink
                ))
            }
        };
        self.progress.step(
            "unmanaged",
            format!(
                "NetworkManager leaves {} alone while it is attached to {} (until its port profile activates)",
                plan.uplink, plan.bridge
            ),
        );
        let moved = async {
            crate::kernel::attach(&plan.uplink, &plan.bridge).await?;
            crate::kernel::remove_addresses(&plan.uplink, &addresses).await
        };
        note(match moved.await {
            Ok(()) => format!(
                "{} attached to {} while it still held {}, then its copy removed",
                plan.uplink,
                plan.bridge,
                list(&addresses)
            ),
            Err(e) => format!(
                "{} is left to its port profile's activation: {e}",
                plan.uplink
            ),
        });
    }

    /// Checks the state NetworkManager reports against what the plan
    /// promised, giving it a moment to publish what the kernel already has.
    async fn verify(&self, plan: &Plan) -> Result<(), Failure> {
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
}

/// Lets a device run its saved profile again (DHCP only, no static copy
/// of the lease), once its DHCP server has answered it; otherwise the hold
/// stays until the device's next activation, and says so.
pub(super) async fn release_hold(nm: &Nm, iface: &str, progress: &Progress) {
    let released = async {
        let Some(path) = nm.device_by_iface(iface).await? else {
            return Ok(false);
        };
        let info = nm.device_info(&path).await?;
        let leased = !nm.lease_options(&path, Family::V4).await?.is_empty();
        if info.state != netbridge_dbus::state::DeviceState::Activated || !leased {
            return Ok(false);
        }
        nm.reapply(&path).await.map(|()| true)
    };
    let message = match released.await {
        Ok(true) => format!("{iface} runs its saved profile again: DHCP only, lease renewed"),
        Ok(false) => format!(
            "{iface} keeps its leased address statically beside DHCP until the DHCP server answers (in memory only; gone at its next activation)"
        ),
        Err(e) => format!("{iface} keeps its lease hold (in memory only): {e}"),
    };
    progress.step("lease", message);
}

/// Why the hand-over did not start: the change goes on the way
/// NetworkManager attaches a port.
#[derive(Debug, thiserror::Error)]
enum HandOverError {
    #[error(transparent)]
    Kernel(#[from] crate::kernel::KernelError),
    #[error(transparent)]
    Nm(#[from] crate::nm::NmError),
}

/// Persists the trial: profiles to disk, the original profile kept with
/// autoconnect off.
fn commit(plan: &Plan) -> Commit {
    Commit {
        saves: vec![
            Save::ToDisk {
                uuid: plan.bridge_uuid.clone(),
            },
            Save::ToDisk {
                uuid: plan.port_uuid.clone(),
            },
            Save::Autoconnect {
                uuid: plan.original.uuid.clone(),
                id: plan.original.id.clone(),
                value: false,
            },
        ],
        done: format!(
            "{} and {} saved to disk; profile '{}' kept with autoconnect off (`netbridge revert {}` undoes)",
            plan.bridge, plan.port_id, plan.original.id, plan.bridge
        ),
    }
}
