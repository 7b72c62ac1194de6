//! `netbridge convert UPLINK`: the one-shot conversion from a terminal.

use std::io::Write;
use std::path::Path;

use serde::Serialize;

use super::options::BridgeOptionArgs;
use super::output::{
    confirm, describe_checks, require_terminal, run_verb, say, say_awaiting, say_nmcli, Exit, Fatal,
};
use crate::checks::{CheckSpec, Probe};
use crate::config::UplinkSelector;
use crate::guest_forwarding::{self, GuestForwarding, Trial};
use crate::journal::{Lock, Store};
use crate::libvirt::{self, LibvirtError, LibvirtOptions};
use crate::nm::Nm;
use crate::operations::apply::resolve_uplink;
use crate::operations::convert::{self, InPlace, InPlaceReady, Prepared, Ready};
use crate::operations::CheckChoice;
use crate::plan::{self, Plan, Request};
use crate::recovery::{self, Recovered};
use crate::report::{Progress, Verdict};
use crate::retry::ErrorKind;
use crate::transaction::Outcome;

#[derive(Debug, clap::Args)]
#[command(after_help = "\
Checks (--check, repeatable):
  gateway         ICMP echo to each default gateway the uplink had
  dns-servers     each DNS server the host uses answers a query
  ping:ADDR       ICMP echo to ADDR
  tcp:HOST:PORT   a TCP connection opens (IPv6 in brackets: tcp:[fd00::1]:22)
  dns:NAME        NAME resolves through the host's DNS servers
  guest-path      the new bridge forwards a frame between two throwaway ports
                  through the host firewall, as it must for VMs and containers
Default: gateway and dns-servers, each kept only if it passes before the change,
and guest-path, which runs after the change only (the bridge is new).
Checks given with --check must pass before and after the change (guest-path:
after it).

A bridge made by hand (e.g. the nmcli recipe) whose only port is the uplink
is reported as foreign; --adopt takes it over under the same guard: marked as
netbridge's, STP off unless --stp on, its addresses proven unchanged, and a
plain profile kept for the uplink, so `netbridge revert BRIDGE` works on it.

libvirt and QEMU (after the commit; refused before any change when libvirt is
not installed or the network name is taken or invalid):
  --libvirt-network NAME  defines, autostarts and starts the libvirt network
                  NAME (<forward mode='bridge'/> on the bridge) for
                  `virt-install --network network=NAME`
  --qemu-bridge-helper  adds `allow BRIDGE` to /etc/qemu/bridge.conf
A failure there leaves the conversion committed and exits 8; the same command
again retries it. `netbridge revert` undoes both.

--dry-run shows the plan and the nmcli commands that do the same by hand,
one a line, in netbridge's order (the port is never brought up on its own:
NetworkManager attaches it with the bridge), without netbridge's guard.

Examples:
  netbridge convert ens32 --dry-run
  netbridge convert default-route --stp yes --mtu 9000 --dry-run
  netbridge convert ens32 --bridge br0 --check tcp:172.25.250.254:22 --yes
  netbridge convert ens32 --json --yes
  netbridge convert ens32 --bridge br0 --adopt --yes")]
pub struct ConvertArgs {
    /// The NIC whose IP configuration moves to the bridge: its name (ens32),
    /// `mac:52:54:00:12:34:56` (the NIC with that MAC) or `default-route`
    /// (the NIC holding the IPv4 default route), as `uplink` in the configuration.
    pub uplink: UplinkSelector,

    /// Name of the bridge to create.
    #[arg(long, default_value = "br0", value_name = "NAME")]
    pub bridge: String,

    /// A connectivity check that must pass after the change (see below).
    #[arg(long = "check", value_name = "SPEC")]
    pub checks: Vec<CheckSpec>,

    /// Do not add the default checks (gateway, dns-servers, guest-path).
    #[arg(long)]
    pub no_default_checks: bool,

    /// Do not run the default guest-path check (two throwaway ports on the
    /// new bridge exchanging a frame through the host firewall).
    #[arg(long)]
    pub no_guest_check: bool,

    /// allow: the host firewall accepts forwarding between the bridge's own
    /// ports (e.g. `-i br0 -o br0 -j ACCEPT` in DOCKER-USER), from before the
    /// checks, removed by a rollback or `revert`; kept across reboots and
    /// Docker restarts by netbridge-guest-forwarding.service (enable it).
    /// deny: netbridge never changes the firewall.
    #[arg(long, value_enum, default_value_t = GuestForwarding::Deny, value_name = "allow|deny")]
    pub guest_forwarding: GuestForwarding,

    /// Seconds without netbridge after which NetworkManager restores the host
    /// by itself [default: 30, or 90 with --stp on].
    #[arg(long, value_name = "SECS", value_parser = parse_timeout)]
    pub rollback_timeout: Option<u32>,

    #[command(flatten)]
    pub options: BridgeOptionArgs,

    #[command(flatten)]
    pub libvirt: LibvirtOptions,

    /// Show what would be done, and the equivalent nmcli commands; change nothing.
    #[arg(long)]
    pub dry_run: bool,

    /// Print one JSON document with the result instead of progress.
    #[arg(long)]
    pub json: bool,

    /// Take over the bridge the uplink is already a port of (made by hand,
    /// e.g. with nmcli): mark it as netbridge's and apply the declared options.
    #[arg(long)]
    pub adopt: bool,

    /// Do not ask for confirmation (needed when not on a terminal).
    #[arg(short = 'y', long)]
    pub yes: bool,

    #[command(flatten)]
    pub confirm: super::options::ConfirmArg,
}

/// clap names the option and the value itself, so the error says only why.
/// Warns when nothing but NetworkManager's own activation will judge a change.
pub(super) fn warn_unproven(no_default_checks: bool, checks: &[CheckSpec], progress: &Progress) {
    if no_default_checks && checks.is_empty() {
        progress.step(
            "warning",
            "--no-default-checks without --check: no check will prove that the host is still \
             reachable after the change; only NetworkManager's activation is awaited",
        );
    }
}

pub(super) fn parse_timeout(text: &str) -> Result<u32, String> {
    let value: u32 = text
        .parse()
        .map_err(|_| "not a whole number of seconds".to_owned())?;
    match plan::rollback_timeout_problem(value) {
        Some(reason) => Err(reason),
        None => Ok(value),
    }
}

/// What `--json` adds to the common envelope.
#[derive(Debug, Serialize)]
struct Report {
    uplink: String,
    bridge: String,
    recovered: Option<Recovered>,
    #[serde(flatten)]
    ready: Option<Ready>,
    #[serde(flatten)]
    in_place: Option<InPlaceReady>,
    nmcli: Vec<String>,
    outcome: Option<Outcome>,
    /// What netbridge did for libvirt and QEMU on the bridge (recorded).
    #[serde(skip_serializing_if = "Option::is_none")]
    libvirt: Option<libvirt::Done>,
}

pub async fn run(args: ConvertArgs, state_dir: &Path) -> Exit {
    let report = Report {
        uplink: args.uplink.to_string(),
        bridge: args.bridge.clone(),
        recovered: None,
        ready: None,
        in_place: None,
        nmcli: Vec::new(),
        outcome: None,
        libvirt: None,
    };
    run_verb("convert", args.json, report, async |progress, report| {
        convert(&args, state_dir, progress, report).await
    })
    .await
}

async fn convert(
    args: &ConvertArgs,
    state_dir: &Path,
    progress: &Progress,
    report: &mut Report,
) -> Result<(Verdict, Exit), Fatal> {
    let options = args.options.options()?;
    let choice = CheckChoice {
        explicit: args.checks.clone(),
        defaults: !args.no_default_checks,
        guest_path: !args.no_default_checks && !args.no_guest_check,
    };
    if args.confirm.seconds.is_some()
        && (!args.libvirt.is_empty() || args.guest_forwarding == GuestForwarding::Allow)
    {
        return Err(Fatal::new(
            Exit::Refused,
            "--confirm does not combine with --libvirt-network, --qemu-bridge-helper or --guest-forwarding allow yet: convert with --confirm, confirm, then run the same command again with those; nothing was changed",
        ));
    }
    warn_unproven(args.no_default_checks, &args.checks, progress);
    let nm = Nm::connect().await?;
    let uplink = resolve_uplink(&nm, &args.bridge, &args.uplink)
        .await
        .map_err(|e| Fatal::refused(format!("uplink {}: {e}", args.uplink)))?;
    report.uplink.clone_from(&uplink);
    let request = Request {
        uplink,
        bridge: args.bridge.clone(),
        options,
        rollback_timeout: args.rollback_timeout,
        adopt: args.adopt,
    };
    // Asked before the lock is taken: a prompt left open must block neither
    // the agent nor another netbridge. The plan is made again under the lock.
    if !args.yes && !args.dry_run && !ask(args, &nm, &request, &choice).await? {
        return Err(Fatal::refused(
            "declined at the prompt: nothing was changed",
        ));
    }
    let store = Store::new(state_dir);
    let lock = store.lock()?;
    if args.dry_run {
        if store.read().await?.is_some() {
            progress.step(
                "unfinished",
                "an interrupted change is recorded in the journal: a real run undoes it first",
            );
        }
    } else {
        report.recovered = recovery::recover(&nm, &store, &lock, progress).await?;
    }

    let ready = match convert::prepare(&nm, &request, &choice, progress).await? {
        Prepared::NoOp { bridge, .. } => {
            // Converted already: the libvirt steps are idempotent, so a
            // re-run finishes one that failed after an earlier commit.
            if !args.libvirt.is_empty() {
                libvirt::preflight(&store, &bridge, &args.libvirt, progress)
                    .await
                    .map_err(bad_input)?;
                if !args.dry_run {
                    after_commit(&store, &lock, &bridge, &args.libvirt, progress).await?;
                    report.libvirt = libvirt::recorded(&store, &bridge).await?;
                }
            }
            // The network is as asked; the firewall may not be yet.
            if args.guest_forwarding == GuestForwarding::Allow && !args.dry_run {
                let failed = |e| forwarding_failed(&e, &bridge);
                Trial::begin(&store, &bridge, progress)
                    .await
                    .map_err(failed)?
                    .end(&store, &lock, true, progress)
                    .await
                    .map_err(failed)?;
            }
            return Ok((Verdict::Unchanged, Exit::Ok));
        }
        Prepared::Ready(ready) => *ready,
        Prepared::InPlace(ready) => {
            return in_place(args, &nm, (&store, &lock), *ready, progress, report).await
        }
    };
    libvirt::preflight(&store, &ready.plan.bridge, &args.libvirt, progress)
        .await
        .map_err(bad_input)?;
    report.nmcli = ready.plan.nmcli_commands();

    if args.dry_run {
        if args.guest_forwarding == GuestForwarding::Allow {
            preview_forwarding(&ready.plan.bridge, progress).await;
        }
        if !args.json {
            print_plan(&ready.plan, &ready.proof.checks.probes);
        }
        report.ready = Some(ready);
        return Ok((Verdict::DryRun, Exit::Ok));
    }

    let bridge = &ready.plan.bridge;
    let failed = |e| forwarding_failed(&e, bridge);
    // Before the transaction, so the guest-path check sees the rule.
    let trial = match args.guest_forwarding {
        GuestForwarding::Allow => Some(
            Trial::begin(&store, bridge, progress)
                .await
                .map_err(failed)?,
        ),
        GuestForwarding::Deny => None,
    };
    let outcome =
        convert::execute(&nm, (&store, &lock), &ready, args.confirm.seconds, progress).await;
    if let Some(trial) = trial {
        let committed = matches!(outcome, Ok(Outcome::Committed { .. }));
        trial
            .end(&store, &lock, committed, progress)
            .await
            .map_err(failed)?;
    }
    let outcome = outcome?;
    let plan = &ready.plan;
    let done = match &outcome {
        Outcome::Committed { .. } => {
            if !args.json {
                say!(
                    "{} is now a port of {}, which carries {}; committed in {:.2} s.",
                    plan.uplink,
                    plan.bridge,
                    addresses(plan),
                    progress.elapsed()
                );
            }
            (Verdict::Committed, Exit::Ok)
        }
        Outcome::AwaitingConfirm { seconds, .. } => {
            if !args.json {
                say_awaiting(&format!("{} on {}", plan.bridge, plan.uplink), *seconds);
            }
            (Verdict::AwaitingConfirm, Exit::AwaitingConfirm)
        }
        Outcome::RolledBack { reason, .. } => {
            if !args.json {
                say!(
                    "Rolled back: {reason}. {} runs profile '{}' again, as before.",
                    plan.uplink,
                    plan.original.id
                );
            }
            (Verdict::RolledBack, Exit::RolledBack)
        }
    };
    let committed = matches!(outcome, Outcome::Committed { .. });
    report.outcome = Some(outcome);
    let bridge = ready.plan.bridge.clone();
    report.ready = Some(ready);
    if committed {
        let attached = after_commit(&store, &lock, &bridge, &args.libvirt, progress).await;
        report.libvirt = libvirt::recorded(&store, &bridge).await?;
        attached?;
    }
    Ok(done)
}

/// An adoption's or a modification's own confirmation, run and report.
async fn in_place(
    args: &ConvertArgs,
    nm: &Nm,
    (store, lock): (&Store, &crate::journal::Lock),
    ready: InPlaceReady,
    progress: &Progress,
    report: &mut Report,
) -> Result<(Verdict, Exit), Fatal> {
    let change = &ready.change;
    let show = || print_in_place(change, &ready.proof.checks.probes);
    if args.dry_run {
        if !args.json {
            show();
        }
        report.nmcli = ready.change.nmcli_commands();
        report.in_place = Some(ready);
        return Ok((Verdict::DryRun, Exit::Ok));
    }
    let outcome =
        convert::execute_in_place(nm, (store, lock), &ready, args.confirm.seconds, progress)
            .await?;
    let done = match &outcome {
        Outcome::Committed { .. } => {
            if !args.json {
                say!(
                    "{} is as declared now ({}); committed in {:.2} s.",
                    ready.change.bridge(),
                    ready.change.changes().join(", "),
                    progress.elapsed()
                );
            }
            (Verdict::Committed, Exit::Ok)
        }
        Outcome::AwaitingConfirm { seconds, .. } => {
            if !args.json {
                say_awaiting(ready.change.bridge(), *seconds);
            }
            (Verdict::AwaitingConfirm, Exit::AwaitingConfirm)
        }
        Outcome::RolledBack { reason, .. } => {
            if !args.json {
                say!(
                    "Rolled back: {reason}. {} runs as before.",
                    ready.change.bridge()
                );
            }
            (Verdict::RolledBack, Exit::RolledBack)
        }
    };
    report.outcome = Some(outcome);
    report.in_place = Some(ready);
    Ok(done)
}

/// Shows the plan and asks, without the lock: refuses at once without a
/// terminal (before any check runs). Nothing to do: nothing to ask.
async fn ask(
    args: &ConvertArgs,
    nm: &Nm,
    request: &Request,
    choice: &CheckChoice,
) -> Result<bool, Fatal> {
    require_terminal()?;
    // Quietly: the run under the lock prints its own progress, and reports
    // a plan that cannot be made (after finishing an interrupted change).
    let quiet = Progress::new(false);
    match convert::prepare(nm, request, choice, &quiet).await {
        Err(_) | Ok(Prepared::NoOp { .. }) => Ok(true),
        Ok(Prepared::Ready(ready)) => {
            let question = format!(
                "Convert {} into {} now?",
                ready.plan.uplink, ready.plan.bridge
            );
            let show = || print_plan(&ready.plan, &ready.proof.checks.probes);
            confirm(&question, args.json, show).await
        }
        Ok(Prepared::InPlace(ready)) => {
            let change = &ready.change;
            let verb = match change {
                InPlace::Adopt(_) => "Adopt",
                InPlace::Modify(_) => "Change",
            };
            let question = format!(
                "{verb} {} ({}) now?",
                change.bridge(),
                change.changes().join(", ")
            );
            let show = || print_in_place(change, &ready.proof.checks.probes);
            confirm(&question, args.json, show).await
        }
    }
}

fn print_in_place(change: &InPlace, probes: &[Probe]) {
    let checks = describe_checks(probes);
    match change {
        InPlace::Adopt(plan) => say!(
            "Plan: adopt {} (profile '{}', port {} with profile '{}')\n  changes   {}\n  revert    profile '{}' made for {} (autoconnect off), which `netbridge revert {}` brings back\n  checks    {checks}",
            plan.bridge,
            plan.bridge_id,
            plan.uplink,
            plan.port_id,
            plan.changes.join(", "),
            plan.original.id,
            plan.uplink,
            plan.bridge
        ),
        InPlace::Modify(plan) => say!(
            "Plan: change {} in place (Reapply, no re-activation)\n  changes   {}\n  checks    {checks}",
            plan.bridge,
            plan.changes.join(", ")
        ),
    }
    say_nmcli(&change.nmcli_commands());
}

/// Read-only libvirt checks that fail are bad input: nothing changed.
fn bad_input(e: LibvirtError) -> Fatal {
    let exit = match &e {
        LibvirtError::Journal(j) => ErrorKind::of_journal(j).into(),
        _ => Exit::Refused,
    };
    Fatal::new(exit, format!("{e}; nothing was changed"))
}

/// The libvirt and QEMU steps once the bridge is committed. Their failure
/// does not undo a conversion that passed its checks (the host is reachable
/// on the bridge; undoing it would cost a second outage for a step that can
/// be retried): exit 8 says the bridge is in place and that step is not.
async fn after_commit(
    store: &Store,
    lock: &Lock,
    bridge: &str,
    options: &LibvirtOptions,
    progress: &Progress,
) -> Result<(), Fatal> {
    if options.is_empty() {
        return Ok(());
    }
    libvirt::attach(store, lock, bridge, options, progress)
        .await
        .map_err(|e| {
            Fatal::new(
                Exit::AfterCommit,
                format!("{bridge} is converted and committed, but {e}; run the same command again to retry"),
            )
        })
}

/// What `--guest-forwarding allow` would add, as a progress step.
async fn preview_forwarding(bridge: &str, progress: &Progress) {
    let detail = match guest_forwarding::preview(bridge).await {
        Ok(places) if places.is_empty() => {
            format!("--guest-forwarding allow: no forward chain lacks a rule for {bridge}")
        }
        Ok(places) => format!(
            "--guest-forwarding allow would accept forwarding between {bridge}'s ports in {}",
            places
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        ),
        Err(e) => format!("--guest-forwarding allow: {e}"),
    };
    progress.step("firewall", detail);
}

/// The firewall could not be changed (or changed back) for `bridge`.
pub(super) fn forwarding_failed(e: &guest_forwarding::ForwardingError, bridge: &str) -> Fatal {
    Fatal::new(
        ErrorKind::of_forwarding(e).into(),
        format!("guest forwarding on {bridge}: {e} (`netbridge guest-forwarding` makes the firewall match what is recorded)"),
    )
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
    let _ = write_plan(&mut std::io::stdout().lock(), plan, probes);
    say_nmcli(&plan.nmcli_commands());
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
    writeln!(
        out,
        "  checks    {} ({} s each)",
        describe_checks(probes),
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
