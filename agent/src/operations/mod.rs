//! Operations shared by the CLI verbs and the agent: each prepares (reads the
//! host, plans, selects checks: nothing changes) and then runs one transaction.

pub mod apply;
pub mod convert;
pub mod network;
pub mod revert;

use std::net::IpAddr;

use crate::checks::{self, CheckContext, CheckSpec, Probe, ProbeResult};
use crate::nm::NmError;
use crate::report::{CheckPhase, Progress};

/// How long a default check gets before the change to show it works at all.
const PRECHECK_DEADLINE: std::time::Duration = std::time::Duration::from_secs(3);

/// Why an operation could not be prepared; nothing was changed.
#[derive(Debug, thiserror::Error)]
pub enum PrepareError<P: std::error::Error + 'static> {
    #[error(transparent)]
    Nm(#[from] NmError),
    #[error("{0}; nothing was changed")]
    Plan(P),
    #[error("reading the host's identity before the change, nothing was changed: {0}")]
    Identity(#[from] crate::identity::IdentityError),
    #[error(transparent)]
    Checks(#[from] CheckSelectionError),
}

/// Which checks prove a change.
#[derive(Debug, Clone, Default)]
pub struct CheckChoice {
    /// Must pass before and after the change.
    pub explicit: Vec<CheckSpec>,
    /// Add `gateway` and `dns-servers`, kept only if they pass before the change.
    pub defaults: bool,
    /// Add `guest-path` after a conversion (there is no bridge before it).
    pub guest_path: bool,
}

impl CheckChoice {
    /// Whether a conversion runs `guest-path`: by default, or asked for.
    #[must_use]
    pub fn runs_guest_path(&self) -> bool {
        self.guest_path || self.explicit.contains(&CheckSpec::GuestPath)
    }

    /// The checks that run before the change as well: all but `guest-path`.
    #[must_use]
    pub fn before_and_after(&self) -> CheckChoice {
        CheckChoice {
            explicit: self
                .explicit
                .iter()
                .filter(|s| **s != CheckSpec::GuestPath)
                .cloned()
                .collect(),
            defaults: self.defaults,
            guest_path: false,
        }
    }
}

/// The checks selected before a change, and how they went then.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Selected {
    #[serde(skip)]
    pub probes: Vec<Probe>,
    pub checks_before: Vec<ProbeResult>,
    /// Default checks left out because they failed before the change.
    pub dropped_checks: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum CheckSelectionError {
    #[error("--check {spec}: {device} has none; nothing was changed")]
    NoTarget { spec: CheckSpec, device: String },
    #[error("the check '{probe}' already fails before any change ({detail}); fix it or leave it out — nothing was changed")]
    FailsBefore { probe: Probe, detail: String },
    #[error("{uplink} gets its address by DHCP, and its DHCP server {server} does not answer now ({detail}): converting could leave the host waiting for a lease — retry once the server answers, or leave the pre-check out with --no-default-checks (the address is held during the change either way); nothing was changed")]
    DhcpSilent {
        uplink: String,
        server: std::net::Ipv4Addr,
        detail: String,
    },
    #[error("--check guest-path tests a bridge a conversion makes; only convert and apply run it — nothing was changed")]
    NoNewBridge,
}

/// A check context from the gateways and DNS servers a device has.
pub fn context(gateways: &[Option<IpAddr>], dns: &[IpAddr], interface: &str) -> CheckContext {
    CheckContext {
        interface: Some(interface.to_owned()),
        ..CheckContext::new(gateways.iter().flatten().copied().collect(), dns.to_vec())
    }
}

/// Runs the checks once before the change. Default checks that fail now are
/// dropped (a gateway that never answers ping must not cause a rollback);
/// explicit checks must pass, or nothing is changed.
pub async fn select_checks(
    choice: &CheckChoice,
    ctx: &CheckContext,
    deadline: std::time::Duration,
    progress: &Progress,
) -> Result<Selected, CheckSelectionError> {
    // Callers that make a bridge take guest-path out first (`before_and_after`).
    if choice.runs_guest_path() {
        return Err(CheckSelectionError::NoNewBridge);
    }
    let device = ctx.interface.clone().unwrap_or_default();
    let mut explicit = Vec::new();
    for spec in &choice.explicit {
        let probes = checks::expand(spec, ctx);
        if probes.is_empty() {
            return Err(CheckSelectionError::NoTarget {
                spec: spec.clone(),
                device,
            });
        }
        explicit.extend(probes);
    }
    let defaults: Vec<Probe> = if choice.defaults {
        [CheckSpec::Gateway, CheckSpec::DnsServers]
            .iter()
            .flat_map(|spec| checks::expand(spec, ctx))
            .filter(|p| !explicit.contains(p))
            .collect()
    } else {
        Vec::new()
    };
    let (explicit_results, default_results) = tokio::join!(
        checks::run_all(&explicit, ctx, deadline),
        checks::run_all(&defaults, ctx, PRECHECK_DEADLINE)
    );
    for r in explicit_results.iter().chain(&default_results) {
        progress.check(CheckPhase::Before, r);
    }
    if let Some(bad) = explicit_results.iter().find(|r| !r.ok) {
        return Err(CheckSelectionError::FailsBefore {
            probe: bad.probe.clone(),
            detail: bad.detail.clone(),
        });
    }
    let mut probes = explicit;
    probes.extend(
        default_results
            .iter()
            .filter(|r| r.ok)
            .map(|r| r.probe.clone()),
    );
    if probes.is_empty() {
        progress.step(
            "warning",
            "no check passes before the change: only the resulting state will be verified",
        );
    }
    Ok(Selected {
        probes,
        dropped_checks: default_results
            .iter()
            .filter(|r| !r.ok)
            .map(|r| r.probe.to_string())
            .collect(),
        checks_before: explicit_results
            .into_iter()
            .chain(default_results)
            .collect(),
    })
}
