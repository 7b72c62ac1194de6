//! `netbridge convert UPLINK`: the one-shot conversion from a terminal.

use std::io::{IsTerminal, Write};
use std::path::Path;

use serde::Serialize;
use tokio::io::AsyncBufReadExt;

use super::output::{print_error, print_json, Exit, Fatal};
use crate::checks::{CheckSpec, Probe};
use crate::journal::Store;
use crate::nm::Nm;
use crate::operations::convert::{self, Prepared, Ready};
use crate::operations::CheckChoice;
use crate::plan::{self, Plan, Request};
use crate::recovery::{self, Recovered};
use crate::report::{Progress, Step};
use crate::transaction::Outcome;

#[derive(Debug, clap::Args)]
#[command(after_help = "\
Checks (--check, repeatable):
  gateway         ICMP echo to each default gateway the uplink had
  dns-servers     each DNS server the host uses answers a query
  ping:ADDR       ICMP echo to ADDR
  tcp:HOST:PORT   a TCP connection opens (IPv6 in brackets: tcp:[fd00::1]:22)
  dns:NAME        NAME resolves through the host's DNS servers
Default: gateway and dns-servers, each kept only if it passes before the change.
Checks given with --check must pass before and after the change.

Examples:
  netbridge convert ens32 --dry-run
  netbridge convert ens32 --bridge br0 --check tcp:172.25.250.254:22 --yes
  netbridge convert ens32 --json --yes")]
pub struct ConvertArgs {
    /// The NIC whose IP configuration moves to the bridge (e.g. ens32).
    pub uplink: String,

    /// Name of the bridge to create.
    #[arg(long, default_value = "br0", value_name = "NAME")]
    pub bridge: String,

    /// A connectivity check that must pass after the change (see below).
    #[arg(long = "check", value_name = "SPEC")]
    pub checks: Vec<CheckSpec>,

    /// Do not add the default checks (gateway, dns-servers).
    #[arg(long)]
    pub no_default_checks: bool,

    /// Seconds without netbridge after which NetworkManager restores the host
    /// by itself [default: 30, or 90 with --stp on].
    #[arg(long, value_name = "SECS", value_parser = parse_timeout)]
    pub rollback_timeout: Option<u32>,

    /// Spanning tree on the bridge. Off by default: with a single uplink it
    /// only delays forwarding by about 30 s.
    #[arg(long, value_enum, default_value_t = OnOff::Off)]
    pub stp: OnOff,

    /// Show what would be done, and the equivalent nmcli commands; change nothing.
    #[arg(long)]
    pub dry_run: bool,

    /// Print one JSON document with the result instead of progress.
    #[arg(long)]
    pub json: bool,

    /// Do not ask for confirmation (needed when not on a terminal).
    #[arg(short = 'y', long)]
    pub yes: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum OnOff {
    On,
    Off,
}

pub(super) fn parse_timeout(text: &str) -> Result<u32, String> {
    let value: u32 = text
        .parse()
        .map_err(|_| format!("{text:?} is not a number of seconds"))?;
    plan::validate_rollback_timeout(value).map_err(|e| e.to_string())?;
    Ok(value)
}

/// The machine-readable result.
#[derive(Debug, Serialize)]
struct Report {
    command: &'static str,
    /// committed, rolled-back, no-op, dry-run, declined or error
    result: &'static str,
    exit_code: i32,
    uplink: String,
    bridge: String,
    error: Option<String>,
    recovered: Option<Recovered>,
    #[serde(flatten)]
    ready: Option<Ready>,
    nmcli: Vec<String>,
    outcome: Option<Outcome>,
    steps: Vec<Step>,
    seconds: f64,
}

pub async fn run(args: ConvertArgs, state_dir: &Path) -> Exit {
    let progress = Progress::new(!args.json);
    let mut report = Report {
        command: "convert",
        result: "error",
        exit_code: 0,
        uplink: args.uplink.clone(),
        bridge: args.bridge.clone(),
        error: None,
        recovered: None,
        ready: None,
        nmcli: Vec::new(),
        outcome: None,
        steps: Vec::new(),
        seconds: 0.0,
    };
    let exit = match convert(&args, state_dir, &progress, &mut report).await {
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

async fn convert(
    args: &ConvertArgs,
    state_dir: &Path,
    progress: &Progress,
    report: &mut Report,
) -> Result<Exit, Fatal> {
    let nm = Nm::connect().await?;
    let store = Store::new(state_dir);
    let lock = store.lock()?;
    if args.dry_run {
        if store.read()?.is_some() {
            progress.step(
                "unfinished",
                "an interrupted change is recorded in the journal: a real run undoes it first",
            );
        }
    } else {
        report.recovered = recovery::recover(&nm, &store, &lock, progress).await?;
    }

    let request = Request {
        uplink: args.uplink.clone(),
        bridge: args.bridge.clone(),
        stp: args.stp == OnOff::On,
        rollback_timeout: args.rollback_timeout,
        mtu: None,
    };
    let choice = CheckChoice {
        explicit: args.checks.clone(),
        defaults: !args.no_default_checks,
    };
    let ready = match convert::prepare(&nm, &request, &choice, progress).await? {
        Prepared::NoOp { .. } => {
            report.result = "no-op";
            return Ok(Exit::Ok);
        }
        Prepared::Ready(ready) => *ready,
    };
    report.nmcli = ready.plan.nmcli_commands();

    if args.dry_run {
        if !args.json {
            print_plan(&ready.plan, &ready.checks.probes);
        }
        report.ready = Some(ready);
        report.result = "dry-run";
        return Ok(Exit::Ok);
    }
    if !args.yes && !confirm(&ready.plan, &ready.checks.probes, args.json).await? {
        report.ready = Some(ready);
        report.result = "declined";
        return Ok(Exit::BadInput);
    }

    let outcome = convert::execute(&nm, &store, &lock, &ready, progress).await?;
    let plan = &ready.plan;
    let exit = match &outcome {
        Outcome::Committed { .. } => {
            report.result = "committed";
            if !args.json {
                println!(
                    "{} is now a port of {}, which carries {}; committed in {:.2} s.",
                    plan.uplink,
                    plan.bridge,
                    addresses(plan),
                    progress.elapsed()
                );
            }
            Exit::Ok
        }
        Outcome::RolledBack { reason, .. } => {
            report.result = "rolled-back";
            if !args.json {
                println!(
                    "Rolled back: {reason}. {} runs profile '{}' again, as before.",
                    plan.uplink, plan.original.id
                );
            }
            Exit::RolledBack
        }
    };
    report.outcome = Some(outcome);
    report.ready = Some(ready);
    Ok(exit)
}

fn addresses(plan: &Plan) -> String {
    let all: Vec<String> = plan
        .ipv4
        .addresses
        .iter()
        .chain(&plan.ipv6.addresses)
        .map(ToString::to_string)
        .collect();
    if all.is_empty() {
        format!("the {} configuration", plan.ipv4.method)
    } else {
        all.join(", ")
    }
}

fn print_plan(plan: &Plan, probes: &[Probe]) {
    let mut out = std::io::stdout().lock();
    let _ = write_plan(&mut out, plan, probes);
}

fn write_plan(out: &mut impl Write, plan: &Plan, probes: &[Probe]) -> std::io::Result<()> {
    writeln!(
        out,
        "Plan: convert {} into bridge {}",
        plan.uplink, plan.bridge
    )?;
    writeln!(
        out,
        "  bridge    {} (profile '{}'): STP {}, MAC {}{}",
        plan.bridge,
        plan.bridge,
        if plan.stp { "on" } else { "off" },
        plan.mac,
        plan.mtu.map(|m| format!(", MTU {m}")).unwrap_or_default()
    )?;
    for (family, ip) in [("ipv4", &plan.ipv4), ("ipv6", &plan.ipv6)] {
        writeln!(out, "  {family}      {}", describe_ip(ip))?;
    }
    writeln!(
        out,
        "  port      {}: {} joins {} (no IP)",
        plan.port_id, plan.uplink, plan.bridge
    )?;
    writeln!(
        out,
        "  original  profile '{}' ({}) is kept, with autoconnect off after the commit",
        plan.original.id, plan.original.uuid
    )?;
    if !plan.competing.is_empty() {
        writeln!(
            out,
            "  outranks  {} (could claim {} at boot)",
            plan.competing.join(", "),
            plan.uplink
        )?;
    }
    let checks: Vec<String> = probes.iter().map(ToString::to_string).collect();
    writeln!(
        out,
        "  checks    {} ({} s each)",
        if checks.is_empty() {
            "none".to_owned()
        } else {
            checks.join(", ")
        },
        plan.timing.check.as_secs()
    )?;
    writeln!(
        out,
        "  safety    tried in memory first; NetworkManager rolls back by itself after {} s without netbridge",
        plan.timing.rollback_timeout
    )?;
    for warning in &plan.warnings {
        writeln!(out, "  warning   {warning}")?;
    }
    writeln!(
        out,
        "Equivalent nmcli commands (for review; netbridge talks to NetworkManager over D-Bus):"
    )?;
    for cmd in plan.nmcli_commands() {
        writeln!(out, "  {cmd}")?;
    }
    Ok(())
}

fn describe_ip(ip: &plan::IpPlan) -> String {
    let mut parts = vec![ip.method.clone()];
    let join = |v: Vec<String>| v.join(", ");
    if !ip.addresses.is_empty() {
        parts.push(join(ip.addresses.iter().map(ToString::to_string).collect()));
    }
    if let Some(gw) = ip.gateway {
        parts.push(format!("gateway {gw}"));
    }
    if !ip.dns.is_empty() {
        parts.push(format!(
            "dns {}",
            join(ip.dns.iter().map(ToString::to_string).collect())
        ));
    }
    if !ip.routes.is_empty() {
        parts.push(format!("routes {}", ip.routes.join(", ")));
    }
    parts.join(", ")
}

/// Asks on a terminal; refuses without one rather than hang a script.
async fn confirm(plan: &Plan, probes: &[Probe], json: bool) -> Result<bool, Fatal> {
    if !std::io::stdin().is_terminal() {
        return Err(Fatal::new(
            Exit::BadInput,
            "not on a terminal: add --yes to change the network without confirmation (or --dry-run to review); nothing was changed",
        ));
    }
    if !json {
        print_plan(plan, probes);
    }
    eprint!("Convert {} into {} now? [y/N] ", plan.uplink, plan.bridge);
    let mut answer = String::new();
    tokio::io::BufReader::new(tokio::io::stdin())
        .read_line(&mut answer)
        .await
        .map_err(|e| Fatal::new(Exit::Internal, format!("reading the answer: {e}")))?;
    Ok(matches!(answer.trim(), "y" | "Y" | "yes" | "YES" | "Yes"))
}
