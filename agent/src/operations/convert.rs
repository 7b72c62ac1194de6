//! Converting an uplink into a bridge: prepare (read, plan, select checks),
//! then run the transaction.

use serde::Serialize;

use std::net::IpAddr;

use super::{context, select_checks, CheckChoice, CheckSelectionError, Selected};
use crate::checks::dhcp::{self, DhcpAnswer};
use crate::checks::{self, CheckContext, CheckSpec, Host, Probe};
use crate::firewall::{self, Diagnosis, Verdict};
use crate::identity::{self, Identity};
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
    /// The DHCP server's answer before the change (DHCP uplinks).
    pub dhcp_before: Option<DhcpAnswer>,
    /// The host as the bridge must reproduce it.
    pub identity_before: Identity,
    /// What in the host firewall stands between guests and the LAN.
    pub guest_path: Diagnosis,
    #[serde(skip)]
    pub after: CheckContext,
}

/// How long the DHCP server gets to answer the pre-check.
const DHCP_DEADLINE: std::time::Duration = std::time::Duration::from_secs(3);

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
    let dhcp_before = if choice.defaults {
        dhcp_precheck(&plan, progress).await?
    } else {
        None
    };
    let targets = identity::targets(&probe_targets(&checks.probes, &gateways, &dns));
    let identity_before = identity::gather(nm, &plan.uplink, &targets).await?;
    Ok(Prepared::Ready(Box::new(Ready {
        after,
        plan,
        checks,
        dhcp_before,
        identity_before,
        guest_path,
    })))
}

/// For a DHCP uplink: the server that leased its address answers now, or
/// nothing is changed.
async fn dhcp_precheck(
    plan: &Plan,
    progress: &Progress,
) -> Result<Option<DhcpAnswer>, CheckSelectionError> {
    let Some(lease) = &plan.lease else {
        return Ok(None);
    };
    let (Some(server), Some(mac)) = (lease.server, dhcp::mac_bytes(&plan.mac)) else {
        return Ok(None);
    };
    let answer = dhcp::inform(server, lease.address.ip(), &mac, DHCP_DEADLINE).await;
    let verdict = if answer.ok { "ok" } else { "fails" };
    progress.step(
        "before",
        format!("dhcp-server {server} {verdict}: {}", answer.detail),
    );
    if !answer.ok {
        return Err(CheckSelectionError::DhcpSilent {
            uplink: plan.uplink.clone(),
            server,
            detail: answer.detail,
        });
    }
    Ok(Some(answer))
}

/// The addresses the checks reach, gateways and DNS servers included: the
/// identity proof compares the route to each.
fn probe_targets(probes: &[Probe], gateways: &[Option<IpAddr>], dns: &[IpAddr]) -> Vec<IpAddr> {
    let mut targets: Vec<IpAddr> = gateways.iter().flatten().chain(dns).copied().collect();
    targets.extend(probes.iter().filter_map(|p| match p {
        Probe::Ping(ip) | Probe::DnsServer(ip) => Some(*ip),
        Probe::Tcp {
            host: Host::Ip(ip), ..
        } => Some(*ip),
        _ => None,
    }));
    targets
}

/// The firewall diagnosis as a progress step; a warning when it drops guests.
fn report_guest_path(diagnosis: &Diagnosis, bridge: &str, progress: &Progress) {
    match diagnosis.blocking_cause() {
        Some(cause) => progress.step(
            "warning",
            format!(
                "guests on {bridge} would be dropped by the host firewall: {cause} (`--guest-forwarding allow` accepts them; by hand: `{}`)",
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
    tx.convert(
        &ready.plan,
        &ready.checks.probes,
        &ready.after,
        &ready.identity_before,
    )
    .await
}
