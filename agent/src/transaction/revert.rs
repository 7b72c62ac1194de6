//! Undoing a conversion: the original profile back on the uplink while the
//! bridge still holds the address, proven, then the bridge deleted.

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use ipnetwork::IpNetwork;

use zbus::zvariant::OwnedObjectPath;

use super::{Commit, Failure, Guard, Outcome, Proven, Transaction, TxError, SETTLE};
use crate::checks::{CheckContext, Probe};
use crate::journal::{Change, Record, Save};
use crate::kernel::{self, Ipv4Routes};
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
    /// holds the address, its routes already at the worst metric so the
    /// uplink's win the moment they exist, and the uplink already knowing the
    /// bridge's neighbours; then the bridge goes down.
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
        // Read before the bridge's routes leave their metric.
        let stand_in = self.stand_in(plan).await;
        self.stand_aside(&plan.bridge)
            .await
            .map_err(Failure::Apply)?;
        self.keep_neighbours(&plan.bridge, &plan.uplink).await;
        let activation = async {
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
                .map_err(Failure::Activation)
        };
        match stand_in {
            Some(routes) => self.held(plan, &routes, activation).await?,
            None => activation.await?,
        }
        self.progress.step(
            "uplink up",
            format!("{} runs profile '{}' again", plan.uplink, plan.original.id),
        );
        // Before the bridge takes the address away: NetworkManager may call
        // the uplink activated while its IPv4 addresses still wait for ACD
        // (IPv6 ready first, `ipv4.may-fail`).
        self.verify_revert(plan).await?;
        self.take_down(&plan.bridge).await.map_err(Failure::Apply)?;
        let checks = self.run_checks(probes, ctx, plan.timing.check).await?;
        Ok(Proven {
            checks,
            identity: None,
        })
    }

    /// What netbridge holds on the uplink while NetworkManager takes it
    /// back ([`Transaction::held`]): the routes of the bridge's IPv4
    /// configuration, which NetworkManager made from the same settings the
    /// original profile declares (the conversion carried them over, its
    /// route metric pinned to the uplink's). Only for a static configuration
    /// (`ipv4.method manual`): what DHCP or anything else will give the
    /// uplink is not known before NetworkManager applies it, so those revert
    /// the plain way, as does a bridge whose addresses are no longer the
    /// profile's, and netbridge without CAP_NET_ADMIN.
    async fn stand_in(&self, plan: &RevertPlan) -> Option<Ipv4Routes> {
        let note = |why: String| {
            self.progress.step(
                "stand-in",
                format!(
                    "NetworkManager configures {} (replies are lost meanwhile): {why}",
                    plan.uplink
                ),
            );
        };
        if plan.ipv4.method != "manual" {
            note(format!(
                "profile '{}' has no static IPv4 configuration (ipv4.method {})",
                plan.original.id, plan.ipv4.method
            ));
            return None;
        }
        let read = async {
            kernel::may_change(&plan.uplink).await?;
            let routes = kernel::ipv4_routes(&plan.bridge).await?;
            let addresses: Vec<IpNetwork> = kernel::addresses(&plan.bridge)
                .await?
                .into_iter()
                .filter(IpNetwork::is_ipv4)
                .collect();
            Ok::<_, kernel::KernelError>((routes, addresses))
        };
        match read.await {
            Ok((routes, addresses)) if same(&addresses, &plan.ipv4.addresses) => Some(routes),
            Ok((_, addresses)) => {
                note(format!(
                    "{} holds {} but profile '{}' declares {}",
                    plan.bridge,
                    super::list(&addresses),
                    plan.original.id,
                    super::list(&plan.ipv4.addresses)
                ));
                None
            }
            Err(e) => {
                note(e.to_string());
                None
            }
        }
    }

    /// The original profile's activation, with the host answering all
    /// along: NetworkManager frees the uplink from the bridge, flushes it
    /// and gives it its addresses and routes only at IP_CONFIG (or after
    /// ACD); meanwhile netbridge puts identical routes on it
    /// ([`kernel::hold`]), through which the bridge's address, still the
    /// host's, answers, and which NetworkManager then finds in place and
    /// leaves. The watch ends with the activation, done or failed; a kernel
    /// step failing ends it early and leaves the rest to NetworkManager.
    async fn held(
        &self,
        plan: &RevertPlan,
        routes: &Ipv4Routes,
        activation: impl std::future::Future<Output = Result<(), Failure>>,
    ) -> Result<(), Failure> {
        let restored = AtomicU32::new(0);
        tokio::pin!(activation);
        let stopped = tokio::select! {
            done = &mut activation => {
                let times = restored.load(Ordering::Relaxed);
                self.progress.step("stand-in", held_note(plan, times, done.is_ok()));
                return done;
            }
            e = kernel::hold(routes, &plan.uplink, &plan.bridge, &restored) => e,
        };
        self.progress.step(
            "stand-in",
            format!(
                "NetworkManager configures {} (replies may be lost meanwhile): {stopped}",
                plan.uplink
            ),
        );
        activation.await
    }

    /// The bridge keeps its addresses, but its routes go to the worst
    /// metric (Reapply in memory: its profile stays as it is, and the
    /// checkpoint covers the bridge).
    async fn stand_aside(&self, bridge: &str) -> Result<(), NmError> {
        let Some(path) = self.nm.device_by_iface(bridge).await? else {
            return Ok(());
        };
        if self
            .nm
            .device_info(&path)
            .await?
            .active_connection
            .is_none()
        {
            return Ok(());
        }
        let (applied, version) = self.nm.applied_versioned(&path).await?;
        let staged = crate::plan::staged(&applied)?;
        self.nm.reapply_settings(&path, &staged, version).await
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

    async fn verify_revert(&self, plan: &RevertPlan) -> Result<(), Failure> {
        self.settled(&plan.uplink, SETTLE, |uplink| {
            verify::carries(uplink, &plan.ipv4, &plan.ipv6)
        })
        .await
    }
}

/// What the stand-in did, once the activation is over.
fn held_note(plan: &RevertPlan, times: u32, activated: bool) -> String {
    // The bridge's addresses, as the stand-in found them: the profile's.
    let what = format!(
        "the routes of {} (added {times} times)",
        super::list(&plan.ipv4.addresses)
    );
    if activated {
        format!(
            "{} held {what} from its release until profile '{}' was activated",
            plan.uplink, plan.original.id
        )
    } else {
        format!(
            "{} held {what} until profile '{}' failed to activate",
            plan.uplink, plan.original.id
        )
    }
}

/// The same addresses, in any order.
fn same(a: &[IpNetwork], b: &[IpNetwork]) -> bool {
    let sorted = |x: &[IpNetwork]| {
        let mut x = x.to_vec();
        x.sort();
        x
    };
    !a.is_empty() && sorted(a) == sorted(b)
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
