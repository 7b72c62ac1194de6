//! `netbridge delete NAME`: remove a network that `netbridge create` made.

use std::path::Path;

use super::create::{network_fatal, outcome_verdict};
use super::output::{run_verb, say, say_awaiting, Exit, Fatal};
use crate::journal::Store;
use crate::nm::Nm;
use crate::operations::network;
use crate::recovery;
use crate::report::{Progress, Verdict};
use crate::transaction::Outcome;

#[derive(Debug, clap::Args)]
#[command(after_help = "\
Takes the network's bridge down, then deletes its profile; everything else
stays as it was. Bridges made by `netbridge convert` carry the host's uplink
and are refused: use `netbridge revert` for those. With --confirm SECS the
bridge stays down and its profile on disk until `netbridge confirm`; without
it, the network comes back by itself after SECS.")]
pub struct DeleteArgs {
    /// The network to delete.
    pub name: String,

    /// Show what would be deleted; change nothing.
    #[arg(long)]
    pub dry_run: bool,

    /// Print one JSON document with the result.
    #[arg(long)]
    pub json: bool,

    #[command(flatten)]
    pub confirm: super::options::ConfirmArg,
}

/// What `--json` adds to the common envelope.
#[derive(Debug, serde::Serialize)]
struct Report {
    name: String,
    /// The transaction, when one ran (not a dry run).
    outcome: Option<Outcome>,
}

pub async fn run(args: DeleteArgs, state_dir: &Path) -> Exit {
    let report = Report {
        name: args.name.clone(),
        outcome: None,
    };
    run_verb("delete", args.json, report, async |progress, report| {
        let Some(outcome) = delete(&args, state_dir, progress).await? else {
            return Ok((Verdict::DryRun, Exit::Ok));
        };
        let (action, result, exit) = outcome_verdict(&outcome, "deleted");
        if !args.json {
            match &outcome {
                Outcome::AwaitingConfirm { seconds, .. } => {
                    say_awaiting(&format!("the deletion of {}", args.name), *seconds);
                }
                _ => say!("{}: {action}.", args.name),
            }
        }
        report.outcome = Some(outcome);
        Ok((result, exit))
    })
    .await
}

async fn delete(
    args: &DeleteArgs,
    state_dir: &Path,
    progress: &Progress,
) -> Result<Option<Outcome>, Fatal> {
    let nm = Nm::connect().await?;
    let store = Store::new(state_dir);
    let lock = store.lock()?;
    // Like every changing verb: an interrupted change is finished or undone first.
    if !args.dry_run {
        recovery::recover(&nm, &store, &lock, progress).await?;
    }
    network::delete(
        &nm,
        (&store, &lock),
        &args.name,
        (args.dry_run, args.confirm.seconds),
        progress,
    )
    .await
    .map_err(network_fatal)
}
