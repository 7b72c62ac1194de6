//! Changes to a bridge that exists: adopting one made by hand, and bringing
//! netbridge's own to its declared options — in memory and in place
//! (Update2, Reapply), verified, proven, committed.

use netbridge_dbus::flags::{AddConnection2Flags, Update2Flags};
use netbridge_dbus::Settings;
use zbus::zvariant::{ObjectPath, OwnedObjectPath};

use super::{
    as_result, list, Commit, Failure, Guard, Outcome, Proven, Transaction, TxError, SETTLE,
};
use crate::checks::{CheckContext, Probe};
use crate::identity::Identity;
use crate::journal::{Change, Record, Save};
use crate::plan::{AdoptPlan, IpPlan, ModifyPlan};
use crate::verify;

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

impl Transaction<'_> {
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
            timing: plan.timing,
            what: &what,
            probes,
            ctx,
        };
        let trial = self.try_adopt(plan, probes, ctx, before);
        self.guarded(record, guard, trial, commit_adopt(plan)).await
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
            timing: plan.timing,
            what: &what,
            probes,
            ctx,
        };
        let trial = self.try_modify(plan, probes, ctx, before);
        let mut profiles = vec![&plan.bridge_uuid];
        if plan.port_after.is_some() {
            profiles.push(&plan.port_uuid);
        }
        let commit = Commit {
            saves: to_disk(&profiles),
            done: format!("{} saved to disk: {}", plan.bridge, plan.changes.join(", ")),
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
}

fn commit_adopt(plan: &AdoptPlan) -> Commit {
    Commit {
        saves: to_disk(&[&plan.original.uuid, &plan.bridge_uuid]),
        done: format!(
            "{} is netbridge's now and saved to disk; profile '{}' kept for {} with autoconnect off (`netbridge revert {}` gives back a plain {})",
            plan.bridge, plan.original.id, plan.uplink, plan.bridge, plan.uplink
        ),
    }
}

fn to_disk(uuids: &[&String]) -> Vec<Save> {
    uuids
        .iter()
        .map(|uuid| Save::ToDisk {
            uuid: (*uuid).clone(),
        })
        .collect()
}
