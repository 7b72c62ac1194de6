//! Bringing the host to its configuration: one transaction per bridge, the
//! same engine as `convert` and `create`. A host already as configured sees
//! no change and no outage.

use serde::Serialize;
use tracing::Instrument;

use super::convert::{self, Prepared};
use super::network::{self, NetOutcome, NetworkError};
use super::revert;
use super::CheckChoice;
use crate::config::{BridgeConfig, Config, Mode, UplinkSelector};
use crate::journal::{Lock, Store};
use crate::libvirt;
use crate::nm::{Nm, NmError};
use crate::plan::network::NetworkSpec;
use crate::plan::revert::RevertError;
use crate::plan::Request;
use crate::report::{Progress, Verdict};
use crate::retry::{ErrorKind, Retry};
use crate::state::{ResultKind, State};
use crate::transaction::{Outcome, TxError};
use netbridge_dbus::state::DeviceType;

#[derive(Debug, Clone, Default)]
pub struct ApplyOptions {
    pub dry_run: bool,
    /// Retry bridges whose last attempt rolled back or failed with this same
    /// configuration (the agent does not; `netbridge apply` does).
    pub retry_failed: bool,
    /// Once set, no further bridge is started (the agent is stopping).
    pub stop: Option<std::sync::Arc<std::sync::atomic::AtomicBool>>,
    /// `--confirm SECS`: a proven change waits this long for `netbridge
    /// confirm`, and no further bridge starts meanwhile.
    pub confirm: Option<u32>,
}

/// What the state file keeps of a bridge's result (a dry run and a skip
/// record nothing).
fn recorded(result: Verdict) -> Option<ResultKind> {
    match result {
        Verdict::Committed => Some(ResultKind::Committed),
        Verdict::Unchanged => Some(ResultKind::Unchanged),
        Verdict::RolledBack => Some(ResultKind::RolledBack),
        Verdict::Refused | Verdict::Failed | Verdict::RollbackIncomplete => {
            Some(ResultKind::Failed)
        }
        // Recorded by nothing until confirmed: a rollback then is the
        // operator's verdict, not the configuration's.
        Verdict::Skipped | Verdict::DryRun | Verdict::AwaitingConfirm => None,
    }
}

/// What happened to one configured bridge.
#[derive(Debug, Serialize)]
pub struct BridgeReport {
    pub name: String,
    pub result: Verdict,
    pub reason: Option<String>,
    pub uplink: Option<String>,
    /// For a failure: whether it is tried again by itself.
    pub retry: Option<Retry>,
    /// For a failure: its class, as `error.kind` of a whole run.
    pub error: Option<ErrorKind>,
    pub outcome: Option<Outcome>,
    /// A dry run's equivalent nmcli commands, one per line.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub nmcli: Vec<String>,
}

impl BridgeReport {
    fn new(name: &str, result: Verdict) -> Self {
        BridgeReport {
            name: name.to_owned(),
            result,
            reason: None,
            uplink: None,
            retry: None,
            error: match result {
                Verdict::Refused => Some(ErrorKind::Refused),
                Verdict::RolledBack => Some(ErrorKind::RolledBack),
                Verdict::RollbackIncomplete => Some(ErrorKind::RollbackIncomplete),
                Verdict::Failed => Some(ErrorKind::Internal),
                _ => None,
            },
            outcome: None,
            nmcli: Vec::new(),
        }
    }

    /// A failure's class, where it is known to be other than a bug.
    fn kind(mut self, kind: ErrorKind) -> Self {
        self.error = Some(kind);
        self
    }

    fn because(mut self, reason: impl Into<String>) -> Self {
        self.reason = Some(reason.into());
        self
    }

    fn retry(mut self, retry: Retry) -> Self {
        self.retry = Some(retry);
        self
    }
}

/// Applies every configured bridge in order. A rollback that did not complete
/// stops the run: the host needs a look before anything else changes.
pub async fn apply(
    nm: &Nm,
    store: &Store,
    lock: &Lock,
    config: &Config,
    options: ApplyOptions,
    progress: &Progress,
) -> Result<Vec<BridgeReport>, crate::journal::JournalError> {
    let mut state = State::load(store).await?;
    let mut reports = Vec::new();
    for bridge in &config.bridges {
        if options
            .stop
            .as_ref()
            .is_some_and(|s| s.load(std::sync::atomic::Ordering::SeqCst))
        {
            progress.step(
                "stopping",
                format!("{} and the rest not started", bridge.name),
            );
            break;
        }
        let fingerprint = bridge.fingerprint();
        if let Some(last) = state.bridges.get(&bridge.name) {
            // Transient failures are tried again; deterministic ones wait
            // for a changed configuration or an explicit `netbridge apply`.
            if !options.retry_failed && last.parked() && last.config == fingerprint {
                let why = last.reason.clone().unwrap_or_default();
                progress.step(
                    "skipped",
                    format!(
                        "{}: not retried until its configuration changes ({why})",
                        bridge.name
                    ),
                );
                reports.push(
                    BridgeReport::new(&bridge.name, Verdict::Skipped)
                        .because(format!("unchanged configuration after: {why}")),
                );
                continue;
            }
        }
        progress.step("bridge", format!("{} ({})", bridge.name, describe(bridge)));
        // Every event of this bridge's change carries BRIDGE= in the journal.
        let span = tracing::info_span!("apply", bridge = %bridge.name);
        let (report, fatal) = apply_one(nm, (store, lock), bridge, &options, progress)
            .instrument(span)
            .await;
        if !options.dry_run {
            if let Some(kind) = recorded(report.result) {
                state.record_retry(
                    &bridge.name,
                    kind,
                    report.reason.clone(),
                    fingerprint,
                    report.retry,
                );
                state.save(store, lock).await?;
            }
        }
        reports.push(report);
        if fatal {
            break;
        }
    }
    forget_unconfigured(&mut state, config, progress);
    if !options.dry_run {
        state.save(store, lock).await?;
    }
    Ok(reports)
}

/// A bridge dropped from the configuration is left as it is (undoing it could
/// cut the host off); say how to undo it, and stop reporting it.
fn forget_unconfigured(state: &mut State, config: &Config, progress: &Progress) {
    let gone: Vec<String> = state
        .bridges
        .keys()
        .filter(|name| !config.bridges.iter().any(|b| &b.name == *name))
        .cloned()
        .collect();
    for name in gone {
        progress.step(
            "unconfigured",
            format!("{name} is no longer configured and is left as it is; `netbridge revert {name}` (bridged) or `netbridge delete {name}` (nat, isolated) removes it"),
        );
        state.bridges.remove(&name);
    }
}

pub fn describe(bridge: &BridgeConfig) -> String {
    match &bridge.mode {
        Mode::Bridged { uplink } => format!("bridged, uplink {uplink}"),
        Mode::Network { kind, address, .. } => format!("{}, {address}", kind.as_str()),
    }
}

/// Returns the report and whether the run must stop.
async fn apply_one(
    nm: &Nm,
    (store, lock): (&Store, &Lock),
    bridge: &BridgeConfig,
    options: &ApplyOptions,
    progress: &Progress,
) -> (BridgeReport, bool) {
    let dry_run = options.dry_run;
    if bridge.absent {
        return absent(nm, (store, lock), bridge, options, progress).await;
    }
    match &bridge.mode {
        Mode::Bridged { uplink } => {
            bridged(nm, (store, lock), bridge, uplink, options, progress).await
        }
        Mode::Network {
            kind,
            address,
            dhcp,
            dhcp_enabled,
        } => {
            let spec = NetworkSpec {
                name: bridge.name.clone(),
                mode: *kind,
                address: *address,
                dhcp_range: *dhcp,
                dhcp: *dhcp_enabled,
                mtu: bridge.mtu,
            };
            network_report(
                &bridge.name,
                network::ensure(
                    nm,
                    (store, lock),
                    &spec,
                    (dry_run, options.confirm),
                    progress,
                )
                .await,
            )
        }
    }
}

/// `state = "absent"`: the bridge netbridge made is undone under the same
/// guard as `netbridge revert` (a network is deleted); one that is gone
/// already is unchanged, one netbridge did not make is left alone.
async fn absent(
    nm: &Nm,
    (store, lock): (&Store, &Lock),
    bridge: &BridgeConfig,
    options: &ApplyOptions,
    progress: &Progress,
) -> (BridgeReport, bool) {
    let (name, dry_run) = (&bridge.name, options.dry_run);
    if let Mode::Network { .. } = bridge.mode {
        let deleted = network::delete(
            nm,
            (store, lock),
            name,
            (dry_run, options.confirm),
            progress,
        )
        .await;
        return match deleted {
            Ok(None) => (BridgeReport::new(name, Verdict::DryRun), false),
            Ok(Some(outcome @ Outcome::Committed { .. })) => {
                let (report, stop) = outcome_report(name, None, outcome);
                (report.because("deleted (state = \"absent\")"), stop)
            }
            Ok(Some(outcome)) => outcome_report(name, None, outcome),
            Err(NetworkError::NoSuch(_)) => (BridgeReport::new(name, Verdict::Unchanged), false),
            Err(e) => network_report(name, Err(e)),
        };
    }
    let choice = CheckChoice {
        explicit: bridge.checks.clone(),
        defaults: bridge.default_checks,
        guest_path: false,
    };
    let ready = match revert::prepare(nm, name, bridge.rollback_timeout, &choice, progress).await {
        Ok(ready) => ready,
        Err(revert::PrepareError::Plan(RevertError::NoBridge { .. })) => {
            return (
                BridgeReport::new(name, Verdict::Unchanged).because("absent already"),
                false,
            )
        }
        Err(e) => return unprepared(name, e),
    };
    if dry_run {
        let undo = format!(
            "revert: {} gets profile '{}' back",
            ready.plan.uplink, ready.plan.original.id
        );
        let mut report = BridgeReport::new(name, Verdict::DryRun).because(undo);
        report.nmcli = ready.plan.nmcli_commands();
        return (report, false);
    }
    match revert::execute(nm, (store, lock), &ready, options.confirm, progress).await {
        Ok(outcome) => {
            let uplink = ready.plan.uplink.clone();
            let (report, fatal) = outcome_report(name, Some(&uplink), outcome);
            let report = match report.result {
                Verdict::Committed => report.because("reverted (state = \"absent\")"),
                _ => report,
            };
            (report, fatal)
        }
        Err(e) => tx_report(name, e),
    }
}

/// A change that could not be prepared: nothing changed. NetworkManager
/// gone is transient, and stops the run; anything else is reported.
fn unprepared<P: std::error::Error>(name: &str, e: super::PrepareError<P>) -> (BridgeReport, bool) {
    match e {
        super::PrepareError::Nm(e) => (
            BridgeReport::new(name, Verdict::Failed)
                .because(e.to_string())
                .retry(Retry::of_nm(&e))
                .kind(ErrorKind::of_nm(&e)),
            e.is_nm_gone(),
        ),
        // A plan that cannot be made or a check failing before the change:
        // refused, as `convert` refuses it.
        e => (
            BridgeReport::new(name, Verdict::Refused).because(e.to_string()),
            false,
        ),
    }
}

fn network_report(name: &str, result: Result<NetOutcome, NetworkError>) -> (BridgeReport, bool) {
    match result {
        Ok(NetOutcome::Unchanged) => (BridgeReport::new(name, Verdict::Unchanged), false),
        Ok(NetOutcome::Activated) => (
            BridgeReport::new(name, Verdict::Committed).because("activated the existing profile"),
            false,
        ),
        Ok(NetOutcome::DryRun { nmcli, .. }) => {
            let mut report = BridgeReport::new(name, Verdict::DryRun);
            report.nmcli = nmcli;
            (report, false)
        }
        Ok(NetOutcome::Created { outcome }) => outcome_report(name, None, outcome),
        Err(NetworkError::Tx(e)) => tx_report(name, e),
        Err(e) => {
            let kind = ErrorKind::of_network(&e);
            let result = kind.verdict();
            (
                BridgeReport::new(name, result)
                    .because(e.to_string())
                    .kind(kind),
                false,
            )
        }
    }
}

async fn bridged(
    nm: &Nm,
    (store, lock): (&Store, &Lock),
    bridge: &BridgeConfig,
    selector: &UplinkSelector,
    options: &ApplyOptions,
    progress: &Progress,
) -> (BridgeReport, bool) {
    let dry_run = options.dry_run;
    let uplink = match resolve_uplink(nm, &bridge.name, selector).await {
        Ok(uplink) => uplink,
        Err(reason) => {
            return (
                BridgeReport::new(&bridge.name, Verdict::Refused).because(reason),
                false,
            )
        }
    };
    let request = Request {
        uplink: uplink.clone(),
        bridge: bridge.name.clone(),
        options: bridge.options(),
        rollback_timeout: bridge.rollback_timeout,
        adopt: bridge.adopt,
    };
    let choice = CheckChoice {
        explicit: bridge.checks.clone(),
        defaults: bridge.default_checks,
        guest_path: bridge.default_checks && bridge.guest_check,
    };
    let with_uplink = |mut r: BridgeReport| {
        r.uplink = Some(uplink.clone());
        r
    };
    let prepared = match convert::prepare(nm, &request, &choice, progress).await {
        Ok(Prepared::NoOp { .. }) => {
            let report = BridgeReport::new(&bridge.name, Verdict::Unchanged);
            let report = match libvirt_steps(store, lock, bridge, dry_run, progress).await {
                Ok(()) => report,
                Err(failed) => failed,
            };
            return (with_uplink(report), false);
        }
        Ok(prepared) => prepared,
        Err(e) => {
            let (report, fatal) = unprepared(&bridge.name, e);
            return (with_uplink(report), fatal);
        }
    };
    if let Err(e) = libvirt::preflight(store, &bridge.name, &bridge.libvirt, progress).await {
        return (
            with_uplink(BridgeReport::new(&bridge.name, Verdict::Refused).because(e.to_string())),
            false,
        );
    }
    if dry_run {
        let (changes, nmcli) = match &prepared {
            Prepared::Ready(ready) => (
                format!("convert {} into {}", ready.plan.uplink, ready.plan.bridge),
                ready.plan.nmcli_commands(),
            ),
            Prepared::InPlace(ready) => (
                ready.change.changes().join(", "),
                ready.change.nmcli_commands(),
            ),
            Prepared::NoOp { .. } => (String::new(), Vec::new()),
        };
        let mut report = BridgeReport::new(&bridge.name, Verdict::DryRun).because(changes);
        report.nmcli = nmcli;
        return (with_uplink(report), false);
    }
    let executed = match &prepared {
        Prepared::Ready(ready) => {
            convert::execute(nm, (store, lock), ready, options.confirm, progress).await
        }
        Prepared::InPlace(ready) => {
            convert::execute_in_place(nm, (store, lock), ready, options.confirm, progress).await
        }
        Prepared::NoOp { .. } => {
            return (
                with_uplink(BridgeReport::new(&bridge.name, Verdict::Unchanged)),
                false,
            )
        }
    };
    let (mut report, fatal) = match executed {
        Ok(outcome) => outcome_report(&bridge.name, Some(&uplink), outcome),
        Err(e) => tx_report(&bridge.name, e),
    };
    if report.result == Verdict::Committed {
        if let Err(failed) = attach(store, lock, bridge, progress).await {
            report.result = failed.result;
            report.reason = failed.reason;
        }
    }
    (with_uplink(report), fatal)
}

/// The libvirt and QEMU steps of a bridge that is as configured already:
/// idempotent, so an unchanged bridge gets them too (and a failed one is
/// retried).
async fn libvirt_steps(
    store: &Store,
    lock: &Lock,
    bridge: &BridgeConfig,
    dry_run: bool,
    progress: &Progress,
) -> Result<(), BridgeReport> {
    if bridge.libvirt.is_empty() {
        return Ok(());
    }
    libvirt::preflight(store, &bridge.name, &bridge.libvirt, progress)
        .await
        .map_err(|e| BridgeReport::new(&bridge.name, Verdict::Refused).because(e.to_string()))?;
    if dry_run {
        return Ok(());
    }
    attach(store, lock, bridge, progress).await
}

/// After the bridge is committed: a failure is the bridge's result (failed,
/// saying that the bridge itself is committed).
async fn attach(
    store: &Store,
    lock: &Lock,
    bridge: &BridgeConfig,
    progress: &Progress,
) -> Result<(), BridgeReport> {
    if bridge.libvirt.is_empty() {
        return Ok(());
    }
    libvirt::attach(store, lock, &bridge.name, &bridge.libvirt, progress)
        .await
        .map_err(|e| {
            BridgeReport::new(&bridge.name, Verdict::Failed)
                .because(format!(
                    "{} is as configured and committed, but {e}",
                    bridge.name
                ))
                .kind(ErrorKind::AfterCommit)
        })
}

fn outcome_report(name: &str, uplink: Option<&str>, outcome: Outcome) -> (BridgeReport, bool) {
    let mut report = match &outcome {
        Outcome::Committed { .. } => BridgeReport::new(name, Verdict::Committed),
        // At most one change awaits confirmation: the run stops here.
        Outcome::AwaitingConfirm { seconds, .. } => {
            let mut report = BridgeReport::new(name, Verdict::AwaitingConfirm).because(format!(
                "passed its checks; {}",
                crate::confirm::how_it_ends(u64::from(*seconds))
            ));
            report.uplink = uplink.map(str::to_owned);
            report.outcome = Some(outcome);
            return (report, true);
        }
        Outcome::RolledBack { reason, retry, .. } => BridgeReport::new(name, Verdict::RolledBack)
            .because(reason.clone())
            .retry(*retry),
    };
    report.uplink = uplink.map(str::to_owned);
    report.outcome = Some(outcome);
    (report, false)
}

fn tx_report(name: &str, e: TxError) -> (BridgeReport, bool) {
    let fatal = matches!(e, TxError::Rollback { .. });
    let result = if fatal {
        Verdict::RollbackIncomplete
    } else {
        Verdict::Failed
    };
    let retry = Retry::of_tx(&e);
    (
        BridgeReport::new(name, result)
            .because(e.to_string())
            .retry(retry)
            .kind(ErrorKind::of_tx(&e)),
        fatal,
    )
}

/// Finds the uplink a selector means on this host. After a conversion the
/// bridge holds the default route and the uplink's MAC, so both selectors
/// look through the configured bridge to its port.
pub async fn resolve_uplink(
    nm: &Nm,
    bridge: &str,
    selector: &UplinkSelector,
) -> Result<String, String> {
    let devices = nm.devices().await.map_err(|e: NmError| e.to_string())?;
    match selector {
        UplinkSelector::Name(name) => Ok(name.clone()),
        UplinkSelector::Mac(mac) => devices
            .iter()
            .filter(|d| !matches!(d.device_type, DeviceType::Bridge | DeviceType::Loopback))
            .find(|d| d.permanent_mac.eq_ignore_ascii_case(mac) || d.mac.eq_ignore_ascii_case(mac))
            .map(|d| d.interface.clone())
            .ok_or_else(|| format!("no network device has the MAC {mac}")),
        UplinkSelector::DefaultRoute => {
            let holder = devices
                .iter()
                .find(|d| d.ipv4.gateway.is_some())
                .ok_or_else(|| "no device holds an IPv4 default route".to_owned())?;
            if holder.interface == bridge {
                holder
                    .ports(&devices)
                    .next()
                    .map(|p| p.interface.clone())
                    .ok_or_else(|| format!("{bridge} holds the default route but has no port"))
            } else {
                Ok(holder.interface.clone())
            }
        }
    }
}
