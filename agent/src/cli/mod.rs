//! The `netbridge` command line: one file per verb.

mod apply;
mod convert;
mod create;
mod delete;
mod guest_forwarding;
mod options;
mod output;
mod recover;
mod revert;
mod status;

use std::path::PathBuf;

use clap::{Parser, Subcommand};

pub use output::Exit;

const AFTER_HELP: &str = "\
Exit status:
  0  success (also: nothing to do, dry run)
  1  internal error
  2  bad input or refused before anything changed
  3  the change failed its checks and was rolled back: the host is as it was
  4  NetworkManager is not running, not reachable or refused permission
  5  a rollback did not complete: check the host (`netbridge status`)
  6  another netbridge process is changing this host
  7  the change is committed, but a step after it failed (the libvirt network or
     /etc/qemu/bridge.conf of --libvirt-network, --qemu-bridge-helper): the
     bridge is in place; run the same command again to retry that step

Environment:
  DBUS_SYSTEM_BUS_ADDRESS  the system bus to find NetworkManager on
  NETBRIDGE_STATE_DIR      journal, lock and guest-forwarding record (default /var/lib/netbridge)
  NETBRIDGE_LOG            log filter for diagnostics on stderr (e.g. debug)";

/// Turn a host's uplink NIC into a Linux bridge through NetworkManager, safely:
/// every change is tried in memory under a NetworkManager checkpoint, proven
/// with connectivity checks, and committed to disk only if they pass —
/// otherwise the host is rolled back, also if netbridge or NetworkManager dies.
#[derive(Debug, Parser)]
#[command(name = "netbridge", version, after_help = AFTER_HELP)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,

    /// Directory for the journal of unfinished changes, the lock and the
    /// record of bridges allowed guest forwarding.
    #[arg(
        long,
        global = true,
        env = "NETBRIDGE_STATE_DIR",
        default_value = "/var/lib/netbridge",
        value_name = "DIR"
    )]
    pub state_dir: PathBuf,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Show devices, bridges and their ports, addresses, gateways and DNS (read-only).
    Status(status::StatusArgs),
    /// Move an uplink's IP configuration onto a new bridge, prove it, roll back on failure.
    Convert(convert::ConvertArgs),
    /// Bring the host to its configuration (/etc/netbridge): what the agent does.
    Apply(apply::ApplyArgs),
    /// Create a NAT or host-only network for guests (like virsh net-define / docker network create).
    Create(create::CreateArgs),
    /// Delete a network made by `netbridge create`.
    Delete(delete::DeleteArgs),
    /// Undo a conversion: the original profile back on the uplink, the bridge removed.
    Revert(revert::RevertArgs),
    /// Make the host firewall accept forwarding on the bridges allowed it
    /// (what netbridge-guest-forwarding.service runs at boot and Docker's start).
    GuestForwarding(guest_forwarding::GuestForwardingArgs),
    /// Finish or undo a change that an interrupted run left behind (every
    /// changing command does this first; this does it now).
    Recover(recover::RecoverArgs),
}

/// Runs the command line and returns the process exit status.
pub async fn run(cli: Cli) -> Exit {
    match cli.command {
        Command::Status(args) => status::run(args, &cli.state_dir).await,
        Command::Convert(args) => convert::run(args, &cli.state_dir).await,
        Command::Apply(args) => apply::run(args, &cli.state_dir).await,
        Command::Create(args) => create::run(args, &cli.state_dir).await,
        Command::Delete(args) => delete::run(args, &cli.state_dir).await,
        Command::Revert(args) => revert::run(args, &cli.state_dir).await,
        Command::Recover(args) => recover::run(args, &cli.state_dir).await,
        Command::GuestForwarding(args) => guest_forwarding::run(args, &cli.state_dir).await,
    }
}
