//! Reverting a conversion: prepare (read, plan, select checks), then run the
//! transaction.

use serde::Serialize;

use super::{context, select_checks, CheckChoice, Selected};
use crate::checks::CheckContext;
use crate::journal::{Lock, Store};
use crate::nm::{Nm, NmError};
use crate::plan::revert::{plan_revert, RevertError, RevertFound, RevertPlan};
use crate::plan::Marker;
use crate::report::Progress;
use crate::state::State;
use crate::transaction::{Outcome, Transaction, TxError};

pub type PrepareError = super::PrepareError<RevertError>;

#[derive(Debug, Serialize)]
pub struct Ready {
    pub plan: RevertPlan,
    #[serde(flatten)]
    pub checks: Selected,
    #[serde(skip)]
    pub after: CheckContext,
    #[serde(skip)]
    bridge_device: Option<zbus::zvariant::OwnedObjectPath>,
}

/// Reads the host and plans; changes nothing.
pub async fn prepare(
    nm: &Nm,
    bridge: &str,
    rollback_timeout: Option<u32>,
    choice: &CheckChoice,
    progress: &Progress,
) -> Result<Ready, PrepareError> {
    let found = find(nm, bridge).await?;
    let plan = plan_revert(&found, rollback_timeout).map_err(PrepareError::Plan)?;
    progress.step(
        "found",
        format!(
            "{} carries {}'s configuration; profile '{}' comes back on {}",
            plan.bridge, plan.uplink, plan.original.id, plan.uplink
        ),
    );
    let runtime = found.bridge_device.as_ref();
    let gateways = [
        runtime.and_then(|d| d.ipv4.gateway),
        runtime.and_then(|d| d.ipv6.gateway),
    ];
    let dns: Vec<_> = runtime
        .map(|d| d.ipv4.dns.iter().chain(&d.ipv6.dns).copied().collect())
        .unwrap_or_default();
    let before = context(&gateways, &dns, &plan.bridge);
    let checks = select_checks(choice, &before, plan.timing.check, progress).await?;
    Ok(Ready {
        after: context(&gateways, &dns, &plan.uplink),
        bridge_device: found.bridge_device.map(|d| d.path),
        plan,
        checks,
    })
}

async fn find(nm: &Nm, bridge: &str) -> Result<RevertFound, NmError> {
    let mut found = RevertFound {
        bridge: bridge.to_owned(),
        bridge_profile: None,
        bridge_device: None,
        uplink_device: None,
        original: None,
        port_of: None,
    };
    let profile = nm.profiles().await?.into_iter().find(|p| {
        p.connection_type == "bridge"
            && (p.id == bridge || p.interface_name.as_deref() == Some(bridge))
    });
    let Some(profile) = profile else {
        let devices = nm.devices().await?;
        found.port_of = devices
            .iter()
            .find(|d| d.interface == bridge)
            .and_then(|d| d.controller(&devices))
            .map(|c| c.interface.clone());
        return Ok(found);
    };
    let settings = nm.profile_settings(&profile.path).await?;
    let marker = Marker::read(&settings)?;
    found.bridge_profile = Some((profile, settings));
    if let Some(path) = nm.device_by_iface(bridge).await? {
        found.bridge_device = Some(nm.device_info(&path).await?);
    }
    let Some(marker) = marker else {
        return Ok(found);
    };
    if let Some(path) = nm.device_by_iface(&marker.uplink).await? {
        found.uplink_device = Some(nm.device_info(&path).await?);
    }
    if let Some(path) = nm.profile_by_uuid(&marker.original_uuid).await? {
        found.original = Some((
            nm.profile_info(&path).await?,
            nm.profile_settings(&path).await?,
        ));
    }
    Ok(found)
}

pub async fn execute(
    nm: &Nm,
    (store, lock): (&Store, &Lock),
    ready: &Ready,
    confirm: Option<u32>,
    progress: &Progress,
) -> Result<Outcome, TxError> {
    let tx = Transaction::new(nm, store, lock, progress).confirming(confirm);
    let outcome = tx
        .revert(
            &ready.plan,
            ready.bridge_device.as_ref(),
            &ready.checks.probes,
            &ready.after,
        )
        .await?;
    if matches!(outcome, Outcome::Committed { .. }) {
        // The bridge's last result (applied, unchanged) no longer holds.
        State::forget(store, lock, &ready.plan.bridge).await?;
    }
    Ok(outcome)
}
