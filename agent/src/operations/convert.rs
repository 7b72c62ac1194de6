//! Converting an uplink into a bridge: prepare (read, plan, select checks),
//! then run the transaction.

use serde::Serialize;

use super::{context, select_checks, CheckChoice, Selected};
use crate::checks::{self, CheckContext, CheckSpec};
use crate::firewall::{self, Diagnosis, Verdict};
use crate::inventory;
use crate::journal::{Lock, Store};
use crate::nm::Nm;
use crate::plan::{self, Decision, Ids, Plan, PlanError, Request};
use crate::report::Progress;
use crate::transaction::{Outcome, Transaction, TxError};

pub type PrepareError = super::PrepareError<PlanError>;

/// A conversion ready to run: the plan and the checks that prove it.
#[derive(Debug, Serialize)]
pub struct Ready {
    pub plan: Plan,
    #[serde(flatten)]
    pub checks: Selected,
    /// What in the host firewall stands between guests and the LAN.
    pub guest_path: Diagnosis,
    #[serde(skip)]
    pub after: CheckContext,
}

#[derive(Debug)]
pub enum Prepared {
    /// The uplink is already a port of the bridge.
    NoOp {
        uplink: String,
        bridge: String,
    },
    Ready(Box<Ready>),
}

/// Reads the host and plans; changes nothing.
pub async fn prepare(
    nm: &Nm,
    request: &Request,
    choice: &CheckChoice,
    progress: &Progress,
) -> Result<Prepared, PrepareError> {
    let found = inventory::find(nm, &request.uplink).await?;
    let ids = Ids {
        bridge_uuid: uuid::Uuid::new_v4().to_string(),
        port_uuid: uuid::Uuid::new_v4().to_string(),
    };
    let plan = match plan::plan_convert(request, &found, &ids).map_err(PrepareError::Plan)? {
        Decision::Convert(plan) => *plan,
        Decision::AlreadyConverted { uplink, bridge } => {
            progress.step(
                "no-op",
                format!("{uplink} is already a port of {bridge}: nothing to do"),
            );
            return Ok(Prepared::NoOp { uplink, bridge });
        }
    };
    let kind = found
        .uplink
        .as_ref()
        .map_or("?", |u| u.device.device_type.as_str());
    progress.step(
        "found",
        format!(
            "{} ({kind}) runs profile '{}', MAC {}, NetworkManager {}",
            plan.uplink,
            plan.original.id,
            plan.mac,
            nm.version()
        ),
    );
    let gateways = [plan.ipv4.gateway, plan.ipv6.gateway];
    let dns: Vec<_> = plan
        .ipv4
        .dns
        .iter()
        .chain(&plan.ipv6.dns)
        .copied()
        .collect();
    let before = context(&gateways, &dns, &plan.uplink);
    let guest_path = firewall::diagnose().await;
    report_guest_path(&guest_path, &plan.bridge, progress);
    let mut checks = select_checks(
        &choice.before_and_after(),
        &before,
        plan.timing.check,
        progress,
    )
    .await?;
    let after = CheckContext {
        nm: Some(nm.clone()),
        ..context(&gateways, &dns, &plan.bridge)
    };
    if choice.runs_guest_path() {
        checks
            .probes
            .extend(checks::expand(&CheckSpec::GuestPath, &after));
        progress.step(
            "before",
            format!(
                "guest-path {}: runs after the change, once {} exists",
                plan.bridge, plan.bridge
            ),
        );
    }
    Ok(Prepared::Ready(Box::new(Ready {
        after,
        plan,
        checks,
        guest_path,
    })))
}

/// The firewall diagnosis as a progress step; a warning when it drops guests.
fn report_guest_path(diagnosis: &Diagnosis, bridge: &str, progress: &Progress) {
    match diagnosis.blocking_cause() {
        Some(cause) => progress.step(
            "warning",
            format!(
                "guests on {bridge} would be dropped by the host firewall: {cause} (`{}` accepts them)",
                diagnosis.way_out(bridge)
            ),
        ),
        None if diagnosis.verdict == Verdict::Unknown => progress.step(
            "guest path",
            format!("{}: {}", diagnosis.meaning(), diagnosis.summary()),
        ),
        None => progress.step(
            "guest path",
            format!("{} ({})", diagnosis.meaning(), diagnosis.summary()),
        ),
    }
}

/// Runs the conversion as one transaction.
pub async fn execute(
    nm: &Nm,
    store: &Store,
    lock: &Lock,
    ready: &Ready,
    progress: &Progress,
) -> Result<Outcome, TxError> {
    let tx = Transaction {
        nm,
        store,
        lock,
        progress,
    };
    tx.convert(&ready.plan, &ready.checks.probes, &ready.after)
        .await
}
