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
use crate::plan::{self, AdoptPlan, Decision, Ids, IpPlan, ModifyPlan, Plan, PlanError, Request};
use crate::report::Progress;
use crate::transaction::{Outcome, Transaction, TxError};

pub type PrepareError = super::PrepareError<PlanError>;

/// A conversion ready to run: the plan and the checks that prove it.
#[derive(Debug, Serialize)]
pub struct Ready {
    pub plan: Plan,
    #[serde(flatten)]
    pub proof: Proof,
    /// The DHCP server's answer before the change (DHCP uplinks).
    pub dhcp_before: Option<DhcpAnswer>,
}

/// A change to a bridge that exists (the uplink is its port already),
/// ready to run.
#[derive(Debug, Serialize)]
pub struct InPlaceReady {
    #[serde(flatten)]
    pub change: InPlace,
    #[serde(flatten)]
    pub proof: Proof,
}

#[derive(Debug, Serialize)]
pub enum InPlace {
    /// A bridge made by hand becomes netbridge's.
    #[serde(rename = "adoption")]
    Adopt(AdoptPlan),
    /// netbridge's bridge gets the declared options.
    #[serde(rename = "modification")]
    Modify(ModifyPlan),
}

impl InPlace {
    pub fn bridge(&self) -> &str {
        match self {
            InPlace::Adopt(p) => &p.bridge,
            InPlace::Modify(p) => &p.bridge,
        }
    }

    /// One line per difference.
    pub fn changes(&self) -> &[String] {
        match self {
            InPlace::Adopt(p) => &p.changes,
            InPlace::Modify(p) => &p.changes,
        }
    }

    /// The equivalent nmcli commands, one per line.
    pub fn nmcli_commands(&self) -> Vec<String> {
        match self {
            InPlace::Adopt(p) => p.nmcli_commands(),
            InPlace::Modify(p) => p.nmcli_commands(),
        }
    }

    fn addresses(&self) -> (&IpPlan, &IpPlan) {
        match self {
            InPlace::Adopt(p) => (&p.ipv4, &p.ipv6),
            InPlace::Modify(p) => (&p.ipv4, &p.ipv6),
        }
    }

    fn check_deadline(&self) -> std::time::Duration {
        match self {
            InPlace::Adopt(p) => p.timing.check,
            InPlace::Modify(p) => p.timing.check,
        }
    }
}

/// What proves a change, selected and measured before it.
#[derive(Debug, Serialize)]
pub struct Proof {
    #[serde(flatten)]
    pub checks: Selected,
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
    InPlace(Box<InPlaceReady>),
}

/// Reads the host and plans; changes nothing.
pub async fn prepare(
    nm: &Nm,
    request: &Request,
    choice: &CheckChoice,
    progress: &Progress,
) -> Result<Prepared, PrepareError> {
    plan::supported(nm.version()).map_err(PrepareError::Plan)?;
    let found = inventory::find(nm, &request.uplink).await?;
    let ids = Ids {
        bridge_uuid: uuid::Uuid::new_v4().to_string(),
        port_uuid: uuid::Uuid::new_v4().to_string(),
        original_uuid: uuid::Uuid::new_v4().to_string(),
    };
    let plan = match plan::plan_convert(request, &found, &ids).map_err(PrepareError::Plan)? {
        Decision::Convert(plan) => *plan,
        Decision::Adopt(adoption) => {
            return prepare_in_place(nm, InPlace::Adopt(*adoption), choice, progress).await
        }
        Decision::Modify(modification) => {
            return prepare_in_place(nm, InPlace::Modify(*modification), choice, progress).await
        }
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
    let devices = (plan.uplink.as_str(), plan.bridge.as_str());
    let proof = prove(
        nm,
        choice,
        progress,
        (&plan.ipv4, &plan.ipv6),
        devices,
        plan.timing.check,
    )
    .await?;
    let dhcp_before = if choice.defaults {
        dhcp_precheck(&plan, progress).await?
    } else {
        None
    };
    Ok(Prepared::Ready(Box::new(Ready {
        plan,
        proof,
        dhcp_before,
    })))
}

async fn prepare_in_place(
    nm: &Nm,
    change: InPlace,
    choice: &CheckChoice,
    progress: &Progress,
) -> Result<Prepared, PrepareError> {
    let found = match &change {
        InPlace::Adopt(p) => format!(
            "{} is a port of {} (profiles '{}' and '{}'), a bridge netbridge did not make: adopting it",
            p.uplink, p.bridge, p.port_id, p.bridge_id
        ),
        InPlace::Modify(p) => format!(
            "{} is netbridge's bridge on {} and differs from what is declared",
            p.bridge, p.uplink
        ),
    };
    progress.step(
        "found",
        format!("{found} ({})", change.changes().join(", ")),
    );
    let bridge = change.bridge().to_owned();
    let devices = (bridge.as_str(), bridge.as_str());
    let proof = prove(
        nm,
        choice,
        progress,
        change.addresses(),
        devices,
        change.check_deadline(),
    )
    .await?;
    Ok(Prepared::InPlace(Box::new(InPlaceReady { change, proof })))
}

/// Selects the checks (run once before the change), diagnoses the guest
/// path and records the host's identity through `devices.0`, the device
/// that carries the host now; `devices.1` carries it after the change.
async fn prove(
    nm: &Nm,
    choice: &CheckChoice,
    progress: &Progress,
    (ipv4, ipv6): (&IpPlan, &IpPlan),
    (now, then): (&str, &str),
    check_deadline: std::time::Duration,
) -> Result<Proof, PrepareError> {
    let gateways = [ipv4.gateway, ipv6.gateway];
    let dns: Vec<_> = ipv4.dns.iter().chain(&ipv6.dns).copied().collect();
    let before = context(&gateways, &dns, now);
    let guest_path = firewall::diagnose().await;
    report_guest_path(&guest_path, then, progress);
    let mut checks = select_checks(
        &choice.before_and_after(),
        &before,
        check_deadline,
        progress,
    )
    .await?;
    let after = CheckContext {
        nm: Some(nm.clone()),
        ..context(&gateways, &dns, then)
    };
    if choice.runs_guest_path() {
        checks
            .probes
            .extend(checks::expand(&CheckSpec::GuestPath, &after));
        progress.step(
            "before",
            format!("guest-path {then}: runs after the change, on {then}"),
        );
    }
    let targets = identity::targets(&probe_targets(&checks.probes, &gateways, &dns));
    let identity_before = identity::gather(nm, now, &targets).await?;
    Ok(Proof {
        checks,
        identity_before,
        guest_path,
        after,
    })
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
    let (Some(server), Some(mac)) = (lease.server, plan::parse_mac(&plan.mac)) else {
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
    (store, lock): (&Store, &Lock),
    ready: &Ready,
    confirm: Option<u32>,
    progress: &Progress,
) -> Result<Outcome, TxError> {
    let tx = Transaction::new(nm, store, lock, progress).confirming(confirm);
    let proof = &ready.proof;
    tx.convert(
        &ready.plan,
        &proof.checks.probes,
        &proof.after,
        &proof.identity_before,
    )
    .await
}

/// Runs an adoption or a modification as one transaction.
pub async fn execute_in_place(
    nm: &Nm,
    (store, lock): (&Store, &Lock),
    ready: &InPlaceReady,
    confirm: Option<u32>,
    progress: &Progress,
) -> Result<Outcome, TxError> {
    let tx = Transaction::new(nm, store, lock, progress).confirming(confirm);
    let proof = &ready.proof;
    let (probes, after, before) = (&proof.checks.probes, &proof.after, &proof.identity_before);
    match &ready.change {
        InPlace::Adopt(plan) => tx.adopt(plan, probes, after, before).await,
        InPlace::Modify(plan) => tx.modify(plan, probes, after, before).await,
    }
}
