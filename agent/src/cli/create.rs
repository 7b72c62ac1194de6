//! `netbridge create NAME --mode nat|isolated --address ADDR/PREFIX`: a
//! private network for guests, owned by NetworkManager.

use std::path::Path;

use serde::Serialize;

use super::output::{run_verb, say, say_awaiting, say_nmcli, Exit, Fatal};
use crate::journal::Store;
use crate::nm::Nm;
use crate::operations::network::{self, NetOutcome, NetworkError};
use crate::plan::network::{parse_address, parse_range, NetMode, NetworkSpec};
use crate::recovery;
use crate::report::{Progress, Verdict};
use crate::retry::ErrorKind;
use crate::transaction::Outcome;

#[derive(Debug, clap::Args)]
#[command(after_help = "\
Modes:
  nat       like libvirt's default network or a Docker bridge: guests get DHCP
            leases and DNS from the host and reach the outside through
            masquerading (NetworkManager's shared mode); nothing outside can
            open connections to them
  isolated  like VMware's host-only network: guests reach the host's address
            on the bridge and each other, nothing beyond; no DHCP (give guests
            static addresses)

Attach guests as libvirt does: a VM's tap or a container's veth becomes a
port of the bridge. The network persists and survives reboots.

Examples:
  netbridge create virbr1 --mode nat --address 192.168.107.1/24
  netbridge create vmnet1 --mode isolated --address 192.168.108.1/24 --json")]
pub struct CreateArgs {
    /// The bridge's name (at most 15 bytes).
    pub name: String,

    #[arg(long, value_enum)]
    pub mode: NetMode,

    /// The host's address on the bridge, with the prefix: guests use it as gateway.
    #[arg(long, value_name = "ADDR/PREFIX")]
    pub address: String,

    /// The addresses DHCP hands out, FIRST-LAST inside the subnet (nat only;
    /// needs NetworkManager 1.46 or newer, else NetworkManager chooses).
    #[arg(long, value_name = "FIRST-LAST")]
    pub dhcp_range: Option<String>,

    /// No DHCP server (refused for nat, which always serves DHCP).
    #[arg(long)]
    pub no_dhcp: bool,

    /// MTU of the bridge.
    #[arg(long)]
    pub mtu: Option<u32>,

    /// Show what would be created; change nothing.
    #[arg(long)]
    pub dry_run: bool,

    #[command(flatten)]
    pub confirm: super::options::ConfirmArg,

    /// Print one JSON document with the result.
    #[arg(long)]
    pub json: bool,
}

/// What `--json` adds to the common envelope.
#[derive(Debug, Serialize)]
struct Report {
    name: String,
    network: Option<NetworkSpec>,
    /// The transaction, when one ran (a new network).
    outcome: Option<Outcome>,
    /// A dry run: the equivalent nmcli commands.
    nmcli: Vec<String>,
}

pub async fn run(args: CreateArgs, state_dir: &Path) -> Exit {
    let report = Report {
        name: args.name.clone(),
        network: None,
        outcome: None,
        nmcli: Vec::new(),
    };
    run_verb("create", args.json, report, async |progress, report| {
        create(&args, state_dir, progress, report).await
    })
    .await
}

fn spec(args: &CreateArgs) -> Result<NetworkSpec, Fatal> {
    let bad = |m: String| Fatal::refused(format!("{m}; nothing was changed"));
    let address = parse_address(&args.address).map_err(|m| bad(format!("--address: {m}")))?;
    let dhcp_range = match &args.dhcp_range {
        Some(r) => Some(parse_range(r, address).map_err(|m| bad(format!("--dhcp-range: {m}")))?),
        None => None,
    };
    Ok(NetworkSpec {
        name: args.name.clone(),
        mode: args.mode,
        address,
        dhcp_range,
        dhcp: match args.mode {
            NetMode::Nat => !args.no_dhcp,
            NetMode::Isolated => args.dhcp_range.is_some(),
        },
        mtu: args.mtu,
    })
}

async fn create(
    args: &CreateArgs,
    state_dir: &Path,
    progress: &Progress,
    report: &mut Report,
) -> Result<(Verdict, Exit), Fatal> {
    let spec = spec(args)?;
    report.network = Some(spec.clone());
    let nm = Nm::connect().await?;
    let store = Store::new(state_dir);
    let lock = store.lock()?;
    if !args.dry_run {
        recovery::recover(&nm, &store, &lock, progress).await?;
    }
    let outcome = network::ensure(
        &nm,
        (&store, &lock),
        &spec,
        (args.dry_run, args.confirm.seconds),
        progress,
    )
    .await
    .map_err(network_fatal)?;
    let (action, result, exit) = match outcome {
        NetOutcome::Unchanged => ("unchanged", Verdict::Unchanged, Exit::Ok),
        NetOutcome::Activated => ("activated", Verdict::Committed, Exit::Ok),
        NetOutcome::DryRun { nmcli, .. } => {
            report.nmcli = nmcli;
            ("dry-run", Verdict::DryRun, Exit::Ok)
        }
        NetOutcome::Created { outcome } => {
            let done = outcome_verdict(&outcome, "created");
            report.outcome = Some(outcome);
            done
        }
    };
    if !args.json {
        if let Some(Outcome::AwaitingConfirm { seconds, .. }) = &report.outcome {
            say_awaiting(&format!("the new network {}", spec.name), *seconds);
            return Ok((result, exit));
        }
        say!(
            "{}: {action} ({} network {})",
            spec.name,
            spec.mode.as_str(),
            spec.address
        );
        if result == Verdict::DryRun {
            say_nmcli(&report.nmcli);
        }
    }
    Ok((result, exit))
}

/// What a network's transaction ended in: the word for people, the
/// verdict and the exit status.
pub(super) fn outcome_verdict(
    outcome: &Outcome,
    done: &'static str,
) -> (&'static str, Verdict, Exit) {
    match outcome {
        Outcome::Committed { .. } => (done, Verdict::Committed, Exit::Ok),
        Outcome::AwaitingConfirm { .. } => (
            "awaiting confirmation",
            Verdict::AwaitingConfirm,
            Exit::AwaitingConfirm,
        ),
        Outcome::RolledBack { .. } => ("rolled back", Verdict::RolledBack, Exit::RolledBack),
    }
}

pub(super) fn network_fatal(e: NetworkError) -> Fatal {
    match e {
        NetworkError::Nm(nm) => nm.into(),
        NetworkError::Tx(tx) => tx.into(),
        other => Fatal::new(ErrorKind::of_network(&other).into(), other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::transaction::Failure;

    #[test]
    fn a_failed_activation_is_not_a_refusal() {
        let failed = network_fatal(NetworkError::Activate(Failure::Verify(vec![
            "virbr1 lacks the address 192.168.107.1/24".into(),
        ])));
        assert_eq!(failed.exit, Exit::RolledBack);
        let refused = network_fatal(NetworkError::NoSuch("virbr9".into()));
        assert_eq!(refused.exit, Exit::Refused);
    }
}
