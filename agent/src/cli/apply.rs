//! `netbridge apply`: bring the host to its configuration (what the agent
//! does at boot and on reload), with a machine-readable report per bridge.

use std::path::{Path, PathBuf};

use serde::Serialize;

use super::output::{run_verb, say, Exit, Fatal};
use crate::config;
use crate::journal::Store;
use crate::nm::Nm;
use crate::operations::apply::{self, ApplyOptions, BridgeReport};
use crate::recovery::{self, Recovered};
use crate::report::{Progress, Verdict};

#[derive(Debug, clap::Args)]
#[command(after_help = "\
Reads the configuration file and conf.d/*.toml beside it (see configs/ for
commented examples). Each bridge is one transaction, like `netbridge convert`
(bridged) or `netbridge create` (nat, isolated); bridges already as configured
are left alone, without an outage. Results are recorded for `netbridge status`.

With --confirm SECS, the first bridge that changes stops after its checks, on
trial (nothing on disk) until `netbridge confirm` commits it; without it, it
rolls back by itself after SECS. Later bridges are not started: run apply
again after the confirm. A network (nat, isolated) created or deleted waits
for its confirmation the same way.

`--check-config` only validates the files, offline (for CI, a pre-commit hook
or Ansible's `validate`): `netbridge apply --check-config /tmp/netbridge.toml`.

Exit status (the worst bridge decides; see `netbridge --help`): 0 all
committed or unchanged (or valid), 2 invalid configuration or a bridge refused
before any change, 3 a bridge rolled back, 5 a rollback did not complete, 4, 6,
7 or 8 as for every verb, 9 a bridge awaits `netbridge confirm`, 1 a bug.")]
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

    #[command(flatten)]
    pub confirm: super::options::ConfirmArg,
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
) -> Result<(Verdict, Exit), Fatal> {
    let path = match &args.check_config {
        Some(Some(path)) => path,
        _ => &args.config,
    };
    let config = config::load(path)
        .await
        .map_err(|e| Fatal::refused(format!("{e}; nothing was changed")))?;
    report.config_files = config.files.clone();
    if config.files.is_empty() {
        return Err(Fatal::new(
            Exit::Refused,
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
        return Ok((Verdict::Unchanged, Exit::Ok));
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
        confirm: args.confirm.seconds,
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

/// The worst result decides the exit status (and the result of the run).
pub fn summarize(bridges: &[BridgeReport], dry_run: bool) -> (Verdict, Exit) {
    let worst = bridges
        .iter()
        .filter_map(|b| b.error)
        .max_by_key(|kind| kind.severity());
    match worst {
        Some(kind) => (kind.verdict(), kind.into()),
        None if dry_run => (Verdict::DryRun, Exit::Ok),
        None if bridges.iter().any(|b| b.result == Verdict::AwaitingConfirm) => {
            (Verdict::AwaitingConfirm, Exit::AwaitingConfirm)
        }
        None if bridges.iter().any(|b| b.result == Verdict::Committed) => {
            (Verdict::Committed, Exit::Ok)
        }
        None => (Verdict::Unchanged, Exit::Ok),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::retry::ErrorKind;

    fn bridge(result: Verdict, error: Option<ErrorKind>) -> BridgeReport {
        BridgeReport {
            name: "br0".into(),
            result,
            reason: None,
            uplink: None,
            retry: None,
            error,
            outcome: None,
            nmcli: Vec::new(),
        }
    }

    #[test]
    fn the_worst_bridge_decides_and_a_bug_is_only_a_bug() {
        let refused = (Verdict::Refused, Some(ErrorKind::Refused));
        let rolled_back = (Verdict::RolledBack, Some(ErrorKind::RolledBack));
        let nm_gone = (Verdict::Failed, Some(ErrorKind::NmUnavailable));
        let libvirt = (Verdict::Failed, Some(ErrorKind::AfterCommit));
        let committed = (Verdict::Committed, None);
        let unchanged = (Verdict::Unchanged, None);
        let cases = [
            (vec![refused], false, (Verdict::Refused, Exit::Refused)),
            (vec![refused], true, (Verdict::Refused, Exit::Refused)),
            (
                vec![refused, rolled_back],
                false,
                (Verdict::RolledBack, Exit::RolledBack),
            ),
            (
                vec![committed, nm_gone],
                false,
                (Verdict::Failed, Exit::NmUnavailable),
            ),
            (
                vec![committed, libvirt],
                false,
                (Verdict::Failed, Exit::AfterCommit),
            ),
            (
                vec![unchanged, committed],
                false,
                (Verdict::Committed, Exit::Ok),
            ),
            (vec![unchanged], false, (Verdict::Unchanged, Exit::Ok)),
            (vec![unchanged], true, (Verdict::DryRun, Exit::Ok)),
        ];
        for (results, dry_run, expected) in cases {
            let bridges: Vec<BridgeReport> =
                results.into_iter().map(|(r, e)| bridge(r, e)).collect();
            assert_eq!(summarize(&bridges, dry_run), expected, "{bridges:?}");
        }
    }
}
