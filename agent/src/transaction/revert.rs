//! Undoing a conversion: the original profile back on the uplink while the
//! bridge still holds the address, proven, then the bridge deleted.

use std::time::Duration;

use zbus::zvariant::OwnedObjectPath;

use super::{Commit, Failure, Guard, Outcome, Proven, Transaction, TxError, SETTLE};
use crate::checks::{CheckContext, Probe};
use crate::journal::{Change, Record, Save};
use crate::nm::NmError;
use crate::plan::revert::RevertPlan;
use crate::verify;

impl Transaction<'_> {
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
            timing: plan.timing,
            what: &what,
            probes,
            ctx,
        };
        let trial = self.try_revert(plan, probes, ctx);
        self.guarded(record, guard, trial, commit_revert(plan))
            .await
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
}

/// The original profile saved with its autoconnect as before the
/// conversion; the bridge and port profiles deleted.
fn commit_revert(plan: &RevertPlan) -> Commit {
    let delete = |uuid: &String| Save::Delete { uuid: uuid.clone() };
    Commit {
        saves: vec![
            Save::Autoconnect {
                uuid: plan.original.uuid.clone(),
                id: plan.original.id.clone(),
                value: plan.original.autoconnect,
            },
            delete(&plan.port_uuid),
            delete(&plan.bridge_uuid),
        ],
        done: format!(
            "{} and its port profile deleted; profile '{}' saved with autoconnect {}",
            plan.bridge,
            plan.original.id,
            if plan.original.autoconnect {
                "on"
            } else {
                "off"
            }
        ),
    }
}
