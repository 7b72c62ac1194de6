//! `netbridge revert BRIDGE`: undo a conversion, with the same protection.

use std::io::IsTerminal;
use std::path::Path;

use serde::Serialize;
use tokio::io::AsyncBufReadExt;

use super::output::{print_error, print_json, Exit, Fatal};
use crate::checks::CheckSpec;
use crate::journal::Store;
use crate::nm::Nm;
use crate::operations::revert::{self, Ready};
use crate::operations::CheckChoice;
use crate::plan;
use crate::recovery::{self, Recovered};
use crate::report::{Progress, Step};
use crate::transaction::Outcome;

#[derive(Debug, clap::Args)]
#[command(after_help = "\
The original profile that `netbridge convert` kept (autoconnect off) takes the
uplink back, its address and gateway are verified and the checks run; only
then are the bridge and port profiles deleted. A failure rolls back to the
bridge, as it was. Checks: as for `netbridge convert` (see its --help).

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
}

#[derive(Debug, Serialize)]
struct Report {
    command: &'static str,
    /// reverted, rolled-back, dry-run, declined or error
    result: &'static str,
    exit_code: i32,
    bridge: String,
    error: Option<String>,
    recovered: Option<Recovered>,
    #[serde(flatten)]
    ready: Option<Ready>,
    outcome: Option<Outcome>,
    steps: Vec<Step>,
    seconds: f64,
}

pub async fn run(args: RevertArgs, state_dir: &Path) -> Exit {
    let progress = Progress::new(!args.json);
    let mut report = Report {
        command: "revert",
        result: "error",
        exit_code: 0,
        bridge: args.bridge.clone(),
        error: None,
        recovered: None,
        ready: None,
        outcome: None,
        steps: Vec::new(),
        seconds: 0.0,
    };
    let exit = match revert(&args, state_dir, &progress, &mut report).await {
        Ok(exit) => exit,
        Err(fatal) => {
            report.error = Some(fatal.message.clone());
            if !args.json {
                print_error(&fatal);
            }
            fatal.exit
        }
    };
    report.exit_code = exit.code();
    report.steps = progress.steps();
    report.seconds = progress.elapsed();
    if args.json {
        print_json(&report);
    }
    exit
}

async fn revert(
    args: &RevertArgs,
    state_dir: &Path,
    progress: &Progress,
    report: &mut Report,
) -> Result<Exit, Fatal> {
    plan::validate_bridge_name(&args.bridge)
        .map_err(|e| Fatal::new(Exit::BadInput, e.to_string()))?;
    let nm = Nm::connect().await?;
    let store = Store::new(state_dir);
    let lock = store.lock()?;
    if !args.dry_run {
        report.recovered = recovery::recover(&nm, &store, &lock, progress).await?;
    }
    let choice = CheckChoice {
        explicit: args.checks.clone(),
        defaults: !args.no_default_checks,
    };
    let ready =
        revert::prepare(&nm, &args.bridge, args.rollback_timeout, &choice, progress).await?;
    if args.dry_run {
        if !args.json {
            describe(&ready);
        }
        report.ready = Some(ready);
        report.result = "dry-run";
        return Ok(Exit::Ok);
    }
    if !args.yes && !confirm(&ready).await? {
        report.ready = Some(ready);
        report.result = "declined";
        return Ok(Exit::BadInput);
    }
    let outcome = revert::execute(&nm, &store, &lock, &ready, progress).await?;
    let exit = match &outcome {
        Outcome::Committed { .. } => {
            report.result = "reverted";
            if !args.json {
                println!(
                    "{} runs profile '{}' again and {} is gone.",
                    ready.plan.uplink, ready.plan.original.id, ready.plan.bridge
                );
            }
            Exit::Ok
        }
        Outcome::RolledBack { reason, .. } => {
            report.result = "rolled-back";
            if !args.json {
                println!(
                    "Rolled back: {reason}. {} is in place as before.",
                    ready.plan.bridge
                );
            }
            Exit::RolledBack
        }
    };
    report.outcome = Some(outcome);
    report.ready = Some(ready);
    Ok(exit)
}

fn describe(ready: &Ready) {
    let plan = &ready.plan;
    println!("Plan: revert {} to {}", plan.bridge, plan.uplink);
    println!(
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
    println!("  ipv4      {} {}", plan.ipv4.method, addrs.join(", "));
    println!(
        "  deleted   profiles of {} and its port, after the checks pass",
        plan.bridge
    );
    let checks: Vec<String> = ready
        .checks
        .probes
        .iter()
        .map(ToString::to_string)
        .collect();
    println!(
        "  checks    {}",
        if checks.is_empty() {
            "none".to_owned()
        } else {
            checks.join(", ")
        }
    );
}

async fn confirm(ready: &Ready) -> Result<bool, Fatal> {
    if !std::io::stdin().is_terminal() {
        return Err(Fatal::new(
            Exit::BadInput,
            "not on a terminal: add --yes to change the network without confirmation (or --dry-run to review); nothing was changed",
        ));
    }
    describe(ready);
    eprint!("Revert {} now? [y/N] ", ready.plan.bridge);
    let mut answer = String::new();
    tokio::io::BufReader::new(tokio::io::stdin())
        .read_line(&mut answer)
        .await
        .map_err(|e| Fatal::new(Exit::Internal, format!("reading the answer: {e}")))?;
    Ok(matches!(answer.trim(), "y" | "Y" | "yes" | "YES" | "Yes"))
}
