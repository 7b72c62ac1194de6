//! `netbridge revert BRIDGE`: undo a conversion, with the same protection.

use std::path::Path;

use serde::Serialize;

use super::output::{
    confirm, describe_checks, require_terminal, run_verb, say, say_nmcli, Exit, Fatal,
};
use crate::checks::CheckSpec;
use crate::guest_forwarding;
use crate::journal::{Lock, Store};
use crate::libvirt;
use crate::nm::Nm;
use crate::operations::revert::{self, PrepareError, Ready};
use crate::operations::CheckChoice;
use crate::plan;
use crate::plan::revert::RevertError;
use crate::recovery::{self, Recovered};
use crate::report::{Progress, Verdict};
use crate::transaction::Outcome;

#[derive(Debug, clap::Args)]
#[command(after_help = "\
The original profile that `netbridge convert` kept (autoconnect off) takes the
uplink back, its address and gateway are verified and the checks run; only
then are the bridge and port profiles deleted. A failure rolls back to the
bridge, as it was. Checks: as for `netbridge convert` (see its --help).
After the commit, what --libvirt-network and --qemu-bridge-helper did is undone:
the libvirt network netbridge defined (if it is still netbridge's, on this
bridge) and its own `allow` line in /etc/qemu/bridge.conf; a failure there
exits 8 (the revert stays committed; run it again to retry).

Examples:
  netbridge revert br0 --dry-run
  netbridge revert br0 --yes --json")]
pub struct RevertArgs {
    /// The bridge that `netbridge convert` made.
    pub bridge: String,

    /// A connectivity check that must pass after the revert.
    #[arg(long = "check", value_name = "SPEC")]
    pub checks: Vec<CheckSpec>,

    /// Do not add the default checks (gateway, dns-servers).
    #[arg(long)]
    pub no_default_checks: bool,

    /// Seconds without netbridge after which NetworkManager restores the bridge by itself.
    #[arg(long, value_name = "SECS", value_parser = super::convert::parse_timeout)]
    pub rollback_timeout: Option<u32>,

    /// Show what would be done; change nothing.
    #[arg(long)]
    pub dry_run: bool,

    /// Print one JSON document with the result instead of progress.
    #[arg(long)]
    pub json: bool,

    /// Do not ask for confirmation (needed when not on a terminal).
    #[arg(short = 'y', long)]
    pub yes: bool,

    #[command(flatten)]
    pub confirm: super::options::ConfirmArg,
}

/// What `--json` adds to the common envelope.
#[derive(Debug, Serialize)]
struct Report {
    bridge: String,
    recovered: Option<Recovered>,
    #[serde(flatten)]
    ready: Option<Ready>,
    /// A dry run's equivalent nmcli commands, one per line.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    nmcli: Vec<String>,
    outcome: Option<Outcome>,
}

pub async fn run(args: RevertArgs, state_dir: &Path) -> Exit {
    let report = Report {
        bridge: args.bridge.clone(),
        recovered: None,
        ready: None,
        nmcli: Vec::new(),
        outcome: None,
    };
    run_verb("revert", args.json, report, async |progress, report| {
        revert(&args, state_dir, progress, report).await
    })
    .await
}

async fn revert(
    args: &RevertArgs,
    state_dir: &Path,
    progress: &Progress,
    report: &mut Report,
) -> Result<(Verdict, Exit), Fatal> {
    plan::validate_bridge_name(&args.bridge).map_err(|e| Fatal::refused(e.to_string()))?;
    super::convert::warn_unproven(args.no_default_checks, &args.checks, progress);
    let nm = Nm::connect().await?;
    let choice = CheckChoice {
        explicit: args.checks.clone(),
        defaults: !args.no_default_checks,
        guest_path: false,
    };
    // Asked before the lock is taken: a prompt left open must block neither
    // the agent nor another netbridge. The plan is made again under the lock.
    if !args.yes && !args.dry_run && !ask(args, &nm, &choice).await? {
        return Err(Fatal::refused(
            "declined at the prompt: nothing was changed",
        ));
    }
    let store = Store::new(state_dir);
    let lock = store.lock()?;
    if !args.dry_run {
        report.recovered = recovery::recover(&nm, &store, &lock, progress).await?;
    }
    let ready =
        match revert::prepare(&nm, &args.bridge, args.rollback_timeout, &choice, progress).await {
            Ok(ready) => ready,
            // The bridge is gone but netbridge's libvirt steps are still
            // recorded: a revert that exited 7 is being retried.
            Err(PrepareError::Plan(RevertError::NoBridge { .. }))
                if !args.dry_run && libvirt::recorded(&store, &args.bridge).await?.is_some() =>
            {
                detach(&store, &lock, &args.bridge, progress).await?;
                return Ok((Verdict::Committed, Exit::Ok));
            }
            Err(e) => return Err(e.into()),
        };
    if args.dry_run {
        if !args.json {
            describe(&ready);
            if let Some(done) = libvirt::recorded(&store, &args.bridge).await? {
                describe_libvirt(&done, &args.bridge);
            }
        }
        report.nmcli = ready.plan.nmcli_commands();
        report.ready = Some(ready);
        return Ok((Verdict::DryRun, Exit::Ok));
    }
    if args.confirm.seconds.is_some() {
        refuse_confirm_with_steps(&store, &args.bridge).await?;
    }
    let outcome =
        revert::execute(&nm, (&store, &lock), &ready, args.confirm.seconds, progress).await?;
    let committed = matches!(outcome, Outcome::Committed { .. });
    let done = match &outcome {
        Outcome::Committed { .. } => {
            // The bridge is gone: so is the guest forwarding `convert` allowed
            // for it (nothing at all changes if it allowed none).
            let bridge = &ready.plan.bridge;
            if guest_forwarding::listed(&store)
                .await
                .map_err(|e| super::convert::forwarding_failed(&e, bridge))?
                .contains(bridge)
            {
                guest_forwarding::forget(&store, &lock, bridge, progress)
                    .await
                    .map_err(|e| super::convert::forwarding_failed(&e, bridge))?;
            }
            if !args.json {
                say!(
                    "{} runs profile '{}' again and {} is gone.",
                    ready.plan.uplink,
                    ready.plan.original.id,
                    ready.plan.bridge
                );
            }
            (Verdict::Committed, Exit::Ok)
        }
        Outcome::AwaitingConfirm { seconds, .. } => {
            if !args.json {
                super::output::say_awaiting(
                    &format!("The revert of {}", ready.plan.bridge),
                    *seconds,
                );
            }
            (Verdict::AwaitingConfirm, Exit::AwaitingConfirm)
        }
        Outcome::RolledBack { reason, .. } => {
            if !args.json {
                say!(
                    "Rolled back: {reason}. {} is in place as before.",
                    ready.plan.bridge
                );
            }
            (Verdict::RolledBack, Exit::RolledBack)
        }
    };
    report.outcome = Some(outcome);
    report.ready = Some(ready);
    if committed {
        detach(&store, &lock, &args.bridge, progress).await?;
    }
    Ok(done)
}

/// Undoes netbridge's libvirt and QEMU steps once the bridge is gone; a
/// failure leaves the revert committed (exit 8) and the record for a retry.
async fn detach(
    store: &Store,
    lock: &Lock,
    bridge: &str,
    progress: &Progress,
) -> Result<(), Fatal> {
    libvirt::detach(store, lock, bridge, progress)
        .await
        .map_err(|e| {
            Fatal::new(
                Exit::AfterCommit,
                format!(
                    "{bridge} is reverted, but {e}; run `netbridge revert {bridge}` again to retry"
                ),
            )
        })
}

fn describe(ready: &Ready) {
    let plan = &ready.plan;
    say!("Plan: revert {} to {}", plan.bridge, plan.uplink);
    say!(
        "  uplink    {} runs profile '{}' ({}) again, autoconnect {}",
        plan.uplink,
        plan.original.id,
        plan.original.uuid,
        if plan.original.autoconnect {
            "on"
        } else {
            "off"
        }
    );
    let addrs: Vec<String> = plan
        .ipv4
        .addresses
        .iter()
        .map(ToString::to_string)
        .collect();
    say!("  ipv4      {} {}", plan.ipv4.method, addrs.join(", "));
    say!(
        "  deleted   profiles of {} and its port, after the checks pass",
        plan.bridge
    );
    say!("  checks    {}", describe_checks(&ready.checks.probes));
    say_nmcli(&plan.nmcli_commands());
}

fn describe_libvirt(done: &libvirt::Done, bridge: &str) {
    if let Some(network) = &done.network {
        println!(
            "  libvirt   network {} stopped and undefined if it is still netbridge's (UUID {}) on {bridge}",
            network.name, network.uuid
        );
    }
    if done.bridge_conf_line {
        println!(
            "  qemu      netbridge's `allow {bridge}` line removed from {}",
            libvirt::BRIDGE_CONF
        );
    }
}

/// Shows the plan and asks, without the lock: refuses at once without a
/// terminal (before any check runs). A plan that cannot be made is left for
/// the run under the lock to report.
async fn ask(args: &RevertArgs, nm: &Nm, choice: &CheckChoice) -> Result<bool, Fatal> {
    require_terminal()?;
    let quiet = Progress::new(false);
    match revert::prepare(nm, &args.bridge, args.rollback_timeout, choice, &quiet).await {
        Ok(ready) => {
            let question = format!("Revert {} now?", ready.plan.bridge);
            confirm(&question, args.json, || describe(&ready)).await
        }
        Err(_) => Ok(true),
    }
}

/// The steps after a revert's commit (the libvirt network, bridge.conf, the
/// guest forwarding) are not made by `netbridge confirm` yet: a revert that
/// needs them is refused with `--confirm`, before any change.
async fn refuse_confirm_with_steps(store: &Store, bridge: &str) -> Result<(), Fatal> {
    let forwarding = guest_forwarding::listed(store)
        .await
        .map_err(|e| super::convert::forwarding_failed(&e, bridge))?
        .iter()
        .any(|b| b == bridge);
    if forwarding || libvirt::recorded(store, bridge).await?.is_some() {
        return Err(Fatal::new(
            Exit::Refused,
            format!("--confirm does not yet undo what was done for {bridge} after its conversion (libvirt network, /etc/qemu/bridge.conf, guest forwarding): revert without --confirm; nothing was changed"),
        ));
    }
    Ok(())
}
