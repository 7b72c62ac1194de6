//! `netbridge apply`: bring the host to its configuration (what the agent
//! does at boot and on reload), with a machine-readable report per bridge.

use std::path::{Path, PathBuf};

use serde::Serialize;

use super::output::{print_error, print_json, Exit, Fatal};
use crate::config;
use crate::journal::Store;
use crate::nm::Nm;
use crate::operations::apply::{self, ApplyOptions, BridgeReport};
use crate::recovery::{self, Recovered};
use crate::report::{Progress, Step};

#[derive(Debug, clap::Args)]
#[command(after_help = "\
Reads the configuration file and conf.d/*.toml beside it (see configs/ for
commented examples). Each bridge is one transaction, like `netbridge convert`
(bridged) or `netbridge create` (nat, isolated); bridges already as configured
are left alone, without an outage. Results are recorded for `netbridge status`.

Exit status: 0 all applied or unchanged, 2 invalid configuration (nothing
changed), 3 a bridge rolled back, 1 a bridge failed, 5 a rollback did not complete.")]
pub struct ApplyArgs {
    /// The configuration file (or a directory with netbridge.toml and conf.d/).
    #[arg(long, value_name = "PATH", default_value = config::DEFAULT_PATH)]
    pub config: PathBuf,

    /// Show what would change; change nothing.
    #[arg(long)]
    pub dry_run: bool,

    /// Print one JSON document with the result instead of progress.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Serialize)]
struct Report {
    command: &'static str,
    /// applied (all committed or unchanged), rolled-back, failed, invalid-config, dry-run or error
    result: &'static str,
    exit_code: i32,
    config_files: Vec<PathBuf>,
    error: Option<String>,
    recovered: Option<Recovered>,
    bridges: Vec<BridgeReport>,
    steps: Vec<Step>,
    seconds: f64,
}

pub async fn run(args: ApplyArgs, state_dir: &Path) -> Exit {
    let progress = Progress::new(!args.json);
    let mut report = Report {
        command: "apply",
        result: "error",
        exit_code: 0,
        config_files: Vec::new(),
        error: None,
        recovered: None,
        bridges: Vec::new(),
        steps: Vec::new(),
        seconds: 0.0,
    };
    let exit = match apply(&args, state_dir, &progress, &mut report).await {
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
    } else {
        for b in &report.bridges {
            let why = b
                .reason
                .as_deref()
                .map(|r| format!(": {r}"))
                .unwrap_or_default();
            println!("{:<16} {}{why}", b.name, b.result);
        }
    }
    exit
}

async fn apply(
    args: &ApplyArgs,
    state_dir: &Path,
    progress: &Progress,
    report: &mut Report,
) -> Result<Exit, Fatal> {
    let config = config::load(&args.config).map_err(|e| {
        report.result = "invalid-config";
        Fatal::new(Exit::BadInput, format!("{e}; nothing was changed"))
    })?;
    report.config_files = config.files.clone();
    if config.files.is_empty() {
        return Err(Fatal::new(
            Exit::BadInput,
            format!(
                "no configuration at {} (nor conf.d/*.toml beside it)",
                args.config.display()
            ),
        ));
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
        stop: None,
    };
    report.bridges = apply::apply(&nm, &store, &lock, &config, options, progress).await?;
    let (result, exit) = summarize(&report.bridges, args.dry_run);
    report.result = result;
    Ok(exit)
}

/// The worst result decides the exit status.
pub fn summarize(bridges: &[BridgeReport], dry_run: bool) -> (&'static str, Exit) {
    let any = |r: &str| bridges.iter().any(|b| b.result == r);
    let rollback_failed = bridges.iter().any(|b| {
        b.result == "failed"
            && b.reason
                .as_deref()
                .is_some_and(|r| r.contains("rollback did not complete"))
    });
    if rollback_failed {
        ("failed", Exit::RollbackFailed)
    } else if any("failed") {
        ("failed", Exit::Internal)
    } else if any("rolled-back") {
        ("rolled-back", Exit::RolledBack)
    } else if dry_run {
        ("dry-run", Exit::Ok)
    } else {
        ("applied", Exit::Ok)
    }
}
