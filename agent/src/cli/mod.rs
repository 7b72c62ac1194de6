//! The `netbridge` command line: one file per verb.

mod apply;
mod completions;
mod convert;
mod create;
mod delete;
mod guest_forwarding;
mod options;
mod output;
mod recover;
mod revert;
mod status;

use std::ffi::OsString;
use std::path::PathBuf;

use clap::{CommandFactory, Parser, Subcommand};

pub use output::Exit;

/// The environment variables netbridge reads, with what each does: `--help`
/// and the manual list them from here.
pub const ENVIRONMENT: [(&str, &str); 3] = [
    (
        "DBUS_SYSTEM_BUS_ADDRESS",
        "the system bus to find NetworkManager on",
    ),
    (
        "NETBRIDGE_STATE_DIR",
        "journal, lock, results and records (default /var/lib/netbridge)",
    ),
    (
        "NETBRIDGE_LOG",
        "log filter for diagnostics on stderr (e.g. debug)",
    ),
];

/// The exit statuses and the environment, after `netbridge --help`.
fn after_help() -> String {
    let mut text = String::from("Exit status:");
    for exit in Exit::ALL {
        text.push_str(&format!("\n  {}  {}", exit.code(), exit.meaning()));
    }
    text.push_str("\n\nEnvironment:");
    for (name, meaning) in ENVIRONMENT {
        text.push_str(&format!("\n  {name:<24} {meaning}"));
    }
    text
}

/// Turn a host's uplink NIC into a Linux bridge through NetworkManager, safely.
///
/// Every change is tried in memory under a NetworkManager checkpoint, proven
/// with connectivity checks, and committed to disk only if they pass —
/// otherwise the host is rolled back, also if netbridge or NetworkManager dies.
#[derive(Debug, Parser)]
#[command(name = "netbridge", version, after_help = after_help())]
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
    /// Print the shell completion script for SHELL (bash, zsh or fish) on stdout.
    Completions(completions::CompletionsArgs),
}

/// Parses the command line. Under `--json` an argument error is a JSON
/// document too (exit 2), so that a script always gets one; `--help` and
/// `--version` print as usual.
pub fn parse() -> Result<Cli, Exit> {
    let args: Vec<OsString> = std::env::args_os().collect();
    let error = match Cli::try_parse_from(&args) {
        Ok(cli) => return Ok(cli),
        Err(error) => error,
    };
    if !error.use_stderr() || !args.iter().any(|a| a == "--json") {
        error.exit();
    }
    let command = Cli::command();
    let verb = args
        .iter()
        .skip(1)
        .filter_map(|a| a.to_str())
        .find(|a| command.find_subcommand(a).is_some())
        .unwrap_or("netbridge");
    // clap's message, without its usage and help hints (after a blank line).
    let rendered = error.render().to_string();
    let message: Vec<&str> = rendered
        .lines()
        .take_while(|l| !l.trim().is_empty())
        .map(str::trim)
        .collect();
    let message = message.join(" ");
    let message = message.strip_prefix("error: ").unwrap_or(&message);
    let fatal = output::Fatal::refused(format!("{message}; nothing was changed"));
    let nothing = crate::report::Progress::new(false);
    let no_fields = serde_json::Map::new();
    output::print_json(&output::Envelope::new(
        verb,
        Err(fatal),
        &no_fields,
        &nothing,
    ));
    Err(Exit::Refused)
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
        Command::Completions(args) => completions::run(&args),
    }
}
