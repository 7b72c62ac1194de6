//! `netbridge delete NAME`: remove a network that `netbridge create` made.

use std::path::Path;

use super::create::network_fatal;
use super::output::{print_error, print_json, Exit, Fatal};
use crate::journal::Store;
use crate::nm::Nm;
use crate::operations::network;
use crate::report::Progress;

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

pub async fn run(args: DeleteArgs, state_dir: &Path) -> Exit {
    let progress = Progress::new(!args.json);
    let result = delete(&args, state_dir, &progress).await;
    let (exit, error) = match &result {
        Ok(()) => (Exit::Ok, None),
        Err(fatal) => (fatal.exit, Some(fatal.message.clone())),
    };
    if args.json {
        let outcome = match (&result, args.dry_run) {
            (Err(_), _) => "error",
            (Ok(()), true) => "dry-run",
            (Ok(()), false) => "deleted",
        };
        print_json(&serde_json::json!({
            "command": "delete",
            "name": args.name,
            "result": outcome,
            "exit_code": exit.code(),
            "error": error,
            "steps": progress.steps(),
        }));
    } else if let Err(fatal) = &result {
        print_error(fatal);
    } else if !args.dry_run {
        println!("{} deleted.", args.name);
    }
    exit
}

async fn delete(args: &DeleteArgs, state_dir: &Path, progress: &Progress) -> Result<(), Fatal> {
    let nm = Nm::connect().await?;
    let store = Store::new(state_dir);
    let _lock = store.lock()?;
    network::delete(&nm, &args.name, args.dry_run, progress)
        .await
        .map_err(network_fatal)
}
