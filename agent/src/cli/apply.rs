//! `netbridge apply`: bring the host to its configuration (what the agent
//! does at boot and on reload), with a machine-readable report per bridge.

use std::path::{Path, PathBuf};

use serde::Serialize;

use super::output::{run_verb, say, Exit, Fatal};
use crate::config;
use crate::journal::Store;
use crate::nm::Nm;
use crate::operations::apply::{self, Applied, ApplyOptions, BridgeReport};
use crate::recovery::{self, Recovered};
use crate::report::Progress;

#[derive(Debug, clap::Args)]
#[command(after_help = "\
Reads the configuration file and conf.d/*.toml beside it (see configs/ for
commented examples). Each bridge is one transaction, like `netbridge convert`
(bridged) or `netbridge create` (nat, isolated); bridges already as configured
are left alone, without an outage. Results are recorded for `netbridge status`.

With --confirm SECS, the first bridge that changes stops after its checks, on
trial (nothing on disk) until `netbridge confirm` commits it; without it, it
rolls back by itself after SECS. Later bridges are not started: run apply
again after the confirm. A new network (nat, isolated) touches no existing
device and commits at once.

`--check-config` only validates the files, offline (for CI, a pre-commit hook
or Ansible's `validate`): `netbridge apply --check-config /tmp/netbridge.toml`.

Exit status: 0 all applied or unchanged (or valid), 2 invalid configuration
(nothing changed), 3 a bridge rolled back, 1 a bridge failed, 5 a rollback did
not complete, 9 a bridge awaits `netbridge confirm`.")]
pub struct ApplyArgs {
    /// The configuration file (or a directory with netbridge.toml and conf.d/).
    #[arg(long, value_name = "PATH", default_value = config::DEFAULT_PATH)]
    pub config: PathBuf,

    /// Only validate the configuration at PATH (default: --config), offline:
    /// no NetworkManager, no lock, no change. Exit 0 valid, 2 invalid
    /// (the error names file, line and key).
    #[arg(long, value_name = "PATH", num_args = 0..=1, conflicts_with = "dry_run")]
    pub check_config: Option<Option<PathBuf>>,

    /// Show what would change; change nothing.
    #[arg(long)]
    pub dry_run: bool,

    /// Print one JSON document with the result instead of progress.
    #[arg(long)]
    pub json: bool,

    /// Keep a proven change on trial for SECS seconds: `netbridge confirm`
    /// (from a new connection) commits it, otherwise it rolls back by itself.
    #[arg(long, value_name = "SECS", value_parser = super::convert::parse_timeout)]
    pub confirm: Option<u32>,
}

/// What `--json` adds to the common envelope.
#[derive(Debug, Serialize)]
struct Report {
    config_files: Vec<PathBuf>,
    recovered: Option<Recovered>,
    bridges: Vec<BridgeReport>,
}

pub async fn run(args: ApplyArgs, state_dir: &Path) -> Exit {
    let report = Report {
        config_files: Vec::new(),
        recovered: None,
        bridges: Vec::new(),
    };
    run_verb("apply", args.json, report, async |progress, report| {
        let done = apply(&args, state_dir, progress, report).await;
        if !args.json {
            for b in &report.bridges {
                let why = b
                    .reason
                    .as_deref()
                    .map(|r| format!(": {r}"))
                    .unwrap_or_default();
                say!("{:<16} {}{why}", b.name, b.result);
                for command in &b.nmcli {
                    say!("    {command}");
                }
            }
        }
        done
    })
    .await
}

async fn apply(
    args: &ApplyArgs,
    state_dir: &Path,
    progress: &Progress,
    report: &mut Report,
) -> Result<(&'static str, Exit), Fatal> {
    let path = match &args.check_config {
        Some(Some(path)) => path,
        _ => &args.config,
    };
    let config = config::load(path)
        .await
        .map_err(|e| Fatal::new(Exit::BadInput, format!("{e}; nothing was changed")))?;
    report.config_files = config.files.clone();
    if config.files.is_empty() {
        return Err(Fatal::new(
            Exit::BadInput,
            format!(
                "no configuration at {} (nor conf.d/*.toml beside it)",
                path.display()
            ),
        ));
    }
    if args.check_config.is_some() {
        if !args.json {
            print_valid(&config);
        }
        return Ok(("valid", Exit::Ok));
    }
    let nm = Nm::connect().await?;
    let store = Store::new(state_dir);
    let lock = store.lock()?;
    if !args.dry_run {
        report.recovered = recovery::recover(&nm, &store, &lock, progress).await?;
    }
    let options = ApplyOptions {
        dry_run: args.dry_run,
        retry_failed: true,
        // Ctrl-C or SIGTERM: the bridge in flight rolls back, no next one starts.
        stop: Some(crate::transaction::watch_stop()),
        confirm: args.confirm,
    };
    report.bridges = apply::apply(&nm, &store, &lock, &config, options, progress).await?;
    Ok(summarize(&report.bridges, args.dry_run))
}

/// What a valid configuration declares, one bridge a line.
fn print_valid(config: &config::Config) {
    let files: Vec<String> = config
        .files
        .iter()
        .map(|f| f.display().to_string())
        .collect();
    say!(
        "The configuration is valid ({}): {} bridge(s).",
        files.join(", "),
        config.bridges.len()
    );
    for bridge in &config.bridges {
        let absent = if bridge.absent { " (state absent)" } else { "" };
        say!("  {:<16} {}{absent}", bridge.name, apply::describe(bridge));
    }
}

/// The worst result decides the exit status.
pub fn summarize(bridges: &[BridgeReport], dry_run: bool) -> (&'static str, Exit) {
    let any = |r: Applied| bridges.iter().any(|b| b.result == r);
    if any(Applied::RollbackFailed) {
        ("failed", Exit::RollbackFailed)
    } else if any(Applied::Failed) {
        ("failed", Exit::Internal)
    } else if any(Applied::RolledBack) {
        ("rolled-back", Exit::RolledBack)
    } else if any(Applied::AwaitingConfirm) {
        ("awaiting-confirm", Exit::AwaitingConfirm)
    } else if dry_run {
        ("dry-run", Exit::Ok)
    } else {
        ("applied", Exit::Ok)
    }
}
