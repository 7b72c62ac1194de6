//! The `netbridge` command line: one file per verb.

mod apply;
mod completions;
mod confirm;
mod convert;
mod create;
mod delete;
mod guest_forwarding;
mod options;
mod output;
mod recover;
mod revert;
mod rollback;
mod status;

use std::ffi::OsString;
use std::path::PathBuf;

use clap::{CommandFactory, Parser, Subcommand};

pub use output::Exit;

/// The environment variables netbridge reads, with what each does: `--help`
/// and the manual list them from here.
pub const ENVIRONMENT: [(&str, &str); 4] = [
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
        "log filter for diagnostics on stderr, or journald when stderr is the journal (e.g. debug)",
    ),
    (
        "NO_COLOR",
        "no colour in diagnostics (there is none off a terminal)",
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

    /// Print only errors and the result: no progress steps.
    #[arg(short, long, global = true, conflicts_with = "verbose")]
    pub quiet: bool,

    /// More detail on stderr: -v netbridge's own diagnostics, -vv also
    /// those of the libraries (D-Bus). NETBRIDGE_LOG, if set, wins.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
}

impl Cli {
    /// The `--confirm` watcher, which runs detached: its own log.
    pub fn detached(&self) -> bool {
        matches!(self.command, Command::AwaitConfirm)
    }

    /// The diagnostics filter `-v` asks for, when NETBRIDGE_LOG does not say.
    /// Progress steps stay out: they are on stderr already, once.
    pub fn log_filter(&self) -> &'static str {
        match self.verbose {
            0 => "warn",
            1 => "warn,netbridge=debug,netbridge::report=warn",
            _ => "debug,netbridge::report=warn",
        }
    }
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
    /// Commit the change that `--confirm SECS` left on trial (run it from a new connection).
    Confirm(confirm::ConfirmArgs),
    /// Undo the change that `--confirm SECS` left on trial, now.
    Rollback(rollback::RollbackArgs),
    /// The watcher of a change awaiting confirmation (started by `--confirm`).
    #[command(hide = true)]
    AwaitConfirm,
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
    output::set_quiet(cli.quiet);
    match cli.command {
        Command::Status(args) => status::run(args, &cli.state_dir).await,
        Command::Convert(args) => convert::run(args, &cli.state_dir).await,
        Command::Apply(args) => apply::run(args, &cli.state_dir).await,
        Command::Create(args) => create::run(args, &cli.state_dir).await,
        Command::Delete(args) => delete::run(args, &cli.state_dir).await,
        Command::Revert(args) => revert::run(args, &cli.state_dir).await,
        Command::Recover(args) => recover::run(args, &cli.state_dir).await,
        Command::Confirm(args) => confirm::run(args, &cli.state_dir).await,
        Command::Rollback(args) => rollback::run(args, &cli.state_dir).await,
        Command::AwaitConfirm => {
            let watched = crate::confirm::watch(&cli.state_dir).await;
            let (operation, bridge) = watched.change.unwrap_or(("nothing", String::new()));
            tracing::info!(
                operation,
                bridge,
                result = watched.result,
                "watched the {operation} of {bridge} awaiting confirmation: {}",
                watched.result
            );
            Exit::Ok
        }
        Command::GuestForwarding(args) => guest_forwarding::run(args, &cli.state_dir).await,
        Command::Completions(args) => completions::run(&args),
    }
}

#[cfg(test)]
mod tests {
    use clap::{CommandFactory, Parser};

    use super::*;
    use crate::config::keys::{Table, KEYS};
    use crate::config::UplinkSelector;

    fn convert(args: &[&str]) -> Result<convert::ConvertArgs, clap::Error> {
        let cli = Cli::try_parse_from(["netbridge", "convert"].iter().chain(args))?;
        match cli.command {
            Command::Convert(args) => Ok(args),
            other => panic!("parsed as {other:?}"),
        }
    }

    #[test]
    fn convert_takes_the_uplink_selectors_of_the_configuration() {
        let by_mac = convert(&["mac:52:54:00:ab:cd:ef"]).unwrap();
        assert_eq!(
            by_mac.uplink,
            UplinkSelector::Mac("52:54:00:AB:CD:EF".into())
        );
        let by_route = convert(&["default-route"]).unwrap();
        assert_eq!(by_route.uplink, UplinkSelector::DefaultRoute);
        assert_eq!(
            convert(&["ens32"]).unwrap().uplink,
            UplinkSelector::Name("ens32".into())
        );
        let bad = convert(&["mac:52:54"]).unwrap_err().to_string();
        assert!(bad.contains("is not a MAC address"), "{bad}");
    }

    #[test]
    fn switches_take_every_spelling_of_on_and_off() {
        for (word, on) in [
            ("yes", true),
            ("on", true),
            ("true", true),
            ("no", false),
            ("off", false),
            ("false", false),
        ] {
            let args = convert(&["ens32", "--stp", word, "--multicast-snooping", word]).unwrap();
            let options = args.options.options().unwrap();
            assert_eq!(
                (options.stp, options.multicast_snooping),
                (on, Some(on)),
                "{word}"
            );
        }
        assert!(convert(&["ens32", "--stp", "maybe"]).is_err());
    }

    #[test]
    fn a_zero_rollback_timeout_is_explained_once() {
        let message = convert(&["ens32", "--rollback-timeout", "0"])
            .unwrap_err()
            .to_string();
        assert_eq!(
            message.matches("--rollback-timeout").count(),
            1,
            "{message}"
        );
        assert!(message.contains("that would disable NetworkManager's automatic rollback"));
    }

    #[test]
    fn quiet_and_verbose_are_global_and_exclusive() {
        let cli = Cli::try_parse_from(["netbridge", "status", "-q"]).unwrap();
        assert!(cli.quiet);
        let cli = Cli::try_parse_from(["netbridge", "-vv", "status"]).unwrap();
        assert_eq!(cli.log_filter(), "debug,netbridge::report=warn");
        let cli = Cli::try_parse_from(["netbridge", "-v", "status"]).unwrap();
        assert_eq!(
            cli.log_filter(),
            "warn,netbridge=debug,netbridge::report=warn"
        );
        assert!(Cli::try_parse_from(["netbridge", "-q", "-v", "status"]).is_err());
    }

    #[test]
    fn check_config_takes_an_optional_path() {
        for (args, want) in [
            (vec!["--check-config"], Some(None)),
            (
                vec!["--check-config", "/tmp/x.toml"],
                Some(Some("/tmp/x.toml".into())),
            ),
            (vec![], None),
        ] {
            let cli = Cli::try_parse_from(["netbridge", "apply"].into_iter().chain(args)).unwrap();
            let Command::Apply(apply) = cli.command else {
                panic!("not apply");
            };
            assert_eq!(apply.check_config, want);
        }
    }

    /// One definition: every key of a bridged `[[bridge]]` has its option on
    /// `convert`, under the same name where the meaning is the same.
    #[test]
    fn convert_has_an_option_for_every_key_of_a_bridged_bridge() {
        let command = Cli::command();
        let convert = command.find_subcommand("convert").expect("convert");
        let longs: Vec<&str> = convert
            .get_arguments()
            .filter_map(|a| a.get_long())
            .collect();
        let spelled = |key: &'static str| match key {
            // Named differently on purpose: the flag turns the default off.
            "checks" => Some("check"),
            "default-checks" => Some("no-default-checks"),
            "guest-check" => Some("no-guest-check"),
            "name" => Some("bridge"),
            // The positional UPLINK; `mode` is what the verb is (create makes
            // nat and isolated networks, with their address keys), `state =
            // "absent"` is `netbridge revert`.
            "uplink" | "mode" | "state" | "address" | "dhcp-range" | "dhcp" => None,
            other => Some(other),
        };
        for key in KEYS.iter().filter(|k| k.table == Table::Bridge) {
            if let Some(flag) = spelled(key.name) {
                assert!(
                    longs.contains(&flag),
                    "convert lacks --{flag} (key {})",
                    key.name
                );
            }
        }
    }
}
