//! `netbridge delete NAME`: remove a network that `netbridge create` made.

use std::path::Path;

use super::create::network_fatal;
use super::output::{run_verb, say, Exit, Fatal};
use crate::journal::Store;
use crate::nm::Nm;
use crate::operations::network;
use crate::recovery;
use crate::report::{Progress, Verdict};

#[derive(Debug, clap::Args)]
#[command(after_help = "\
Deletes the network's profile and its bridge; everything else stays as it
was. Bridges made by `netbridge convert` carry the host's uplink and are
refused: use `netbridge revert` for those.")]
pub struct DeleteArgs {
    /// The network to delete.
    pub name: String,

    /// Show what would be deleted; change nothing.
    #[arg(long)]
    pub dry_run: bool,

    /// Print one JSON document with the result.
    #[arg(long)]
    pub json: bool,
}

/// What `--json` adds to the common envelope.
#[derive(Debug, serde::Serialize)]
struct Report {
    name: String,
}

pub async fn run(args: DeleteArgs, state_dir: &Path) -> Exit {
    let report = Report {
        name: args.name.clone(),
    };
    run_verb("delete", args.json, report, async |progress, _| {
        delete(&args, state_dir, progress).await?;
        if args.dry_run {
            return Ok((Verdict::DryRun, Exit::Ok));
        }
        if !args.json {
            say!("{} deleted.", args.name);
        }
        Ok((Verdict::Committed, Exit::Ok))
    })
    .await
}

async fn delete(args: &DeleteArgs, state_dir: &Path, progress: &Progress) -> Result<(), Fatal> {
    let nm = Nm::connect().await?;
    let store = Store::new(state_dir);
    let lock = store.lock()?;
    // Like every changing verb: an interrupted change is finished or undone first.
    if !args.dry_run {
        recovery::recover(&nm, &store, &lock, progress).await?;
    }
    network::delete(&nm, &args.name, args.dry_run, progress)
        .await
        .map_err(network_fatal)
}
