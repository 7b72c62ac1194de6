//! `netbridge create NAME --mode nat|isolated --address ADDR/PREFIX`: a
//! private network for guests, owned by NetworkManager.

use std::path::Path;

use serde::Serialize;

use super::output::{run_verb, say, say_nmcli, Exit, Fatal};
use crate::journal::Store;
use crate::nm::Nm;
use crate::operations::network::{self, NetOutcome, NetworkError};
use crate::plan::network::{parse_address, parse_range, NetMode, NetworkSpec};
use crate::recovery;
use crate::report::Progress;
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

    /// Print one JSON document with the result.
    #[arg(long)]
    pub json: bool,
}

/// What `--json` adds to the common envelope.
#[derive(Debug, Serialize)]
struct Report {
    name: String,
    network: Option<NetworkSpec>,
    outcome: Option<NetOutcome>,
}

pub async fn run(args: CreateArgs, state_dir: &Path) -> Exit {
    let report = Report {
        name: args.name.clone(),
        network: None,
        outcome: None,
    };
    run_verb("create", args.json, report, async |progress, report| {
        create(&args, state_dir, progress, report).await
    })
    .await
}

fn spec(args: &CreateArgs) -> Result<NetworkSpec, Fatal> {
    let bad = |m: String| Fatal::new(Exit::BadInput, format!("{m}; nothing was changed"));
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
) -> Result<(&'static str, Exit), Fatal> {
    let spec = spec(args)?;
    report.network = Some(spec.clone());
    let nm = Nm::connect().await?;
    let store = Store::new(state_dir);
    let lock = store.lock()?;
    if !args.dry_run {
        recovery::recover(&nm, &store, &lock, progress).await?;
    }
    let outcome = network::ensure(&nm, &store, &lock, &spec, args.dry_run, progress)
        .await
        .map_err(network_fatal)?;
    let (result, exit) = match &outcome {
        NetOutcome::Unchanged => ("unchanged", Exit::Ok),
        NetOutcome::Activated => ("activated", Exit::Ok),
        NetOutcome::DryRun { .. } => ("dry-run", Exit::Ok),
        // A new network never awaits confirmation: it touches no existing device.
        NetOutcome::Created {
            outcome: Outcome::Committed { .. } | Outcome::AwaitingConfirm { .. },
        } => ("created", Exit::Ok),
        NetOutcome::Created {
            outcome: Outcome::RolledBack { .. },
        } => ("rolled-back", Exit::RolledBack),
    };
    if !args.json {
        say!(
            "{}: {result} ({} network {})",
            spec.name,
            spec.mode.as_str(),
            spec.address
        );
        if let NetOutcome::DryRun { nmcli, .. } = &outcome {
            say_nmcli(nmcli);
        }
    }
    report.outcome = Some(outcome);
    Ok((result, exit))
}

pub(super) fn network_fatal(e: NetworkError) -> Fatal {
    match e {
        NetworkError::Nm(nm) => nm.into(),
        NetworkError::Tx(tx) => tx.into(),
        // NetworkManager tried and the network did not come up: not a refusal.
        NetworkError::Activate(f) => Fatal::new(Exit::RolledBack, f.to_string()),
        other => Fatal::new(Exit::BadInput, other.to_string()),
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
        assert_eq!(refused.exit, Exit::BadInput);
    }
}
