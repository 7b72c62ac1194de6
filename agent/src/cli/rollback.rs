//! `netbridge rollback`: undo the change that `--confirm SECS` left on
//! trial, now, instead of waiting for its deadline.

use std::path::Path;

use serde::Serialize;

use super::confirm::confirm_fatal;
use super::output::{run_verb, say, Exit};
use crate::confirm;
use crate::journal::Store;
use crate::nm::Nm;
use crate::recovery::Recovered;

#[derive(Debug, clap::Args)]
#[command(after_help = "\
Exit status: 0 rolled back (the host is as it was), 2 nothing awaits
confirmation, 5 the rollback did not complete.")]
pub struct RollbackArgs {
    /// Print one JSON document with the result instead of progress.
    #[arg(long)]
    pub json: bool,
}

/// What `--json` adds to the common envelope.
#[derive(Debug, Serialize)]
struct Report {
    recovered: Option<Recovered>,
}

pub async fn run(args: RollbackArgs, state_dir: &Path) -> Exit {
    let report = Report { recovered: None };
    run_verb("rollback", args.json, report, async |progress, report| {
        let nm = Nm::connect().await?;
        let store = Store::new(state_dir);
        let lock = store.lock()?;
        let done = confirm::rollback(&nm, &store, &lock, progress)
            .await
            .map_err(confirm_fatal)?;
        if !args.json {
            say!(
                "Rolled back: the {} of {} was undone; the host runs as before.",
                done.operation,
                done.bridge
            );
        }
        report.recovered = Some(done);
        Ok(("rolled-back", Exit::Ok))
    })
    .await
}
