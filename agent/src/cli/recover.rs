//! `netbridge recover`: finish or undo what an interrupted run left behind.

use std::path::Path;

use serde::Serialize;

use super::output::{print_error, print_json, Exit, Fatal};
use crate::journal::Store;
use crate::nm::Nm;
use crate::recovery::{self, Recovered};
use crate::report::Progress;

#[derive(Debug, clap::Args)]
pub struct RecoverArgs {
    /// Print one JSON document with the result instead of progress.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Serialize)]
struct Report {
    command: &'static str,
    /// nothing, undone, finished or error
    result: &'static str,
    exit_code: i32,
    recovered: Option<Recovered>,
    error: Option<String>,
}

pub async fn run(args: RecoverArgs, state_dir: &Path) -> Exit {
    let progress = Progress::new(!args.json);
    let (result, exit, recovered, error) = match recover(state_dir, &progress).await {
        Ok(Some(done)) => (done.action, Exit::Ok, Some(done), None),
        Ok(None) => {
            if !args.json {
                println!("Nothing to recover: no interrupted change is recorded.");
            }
            ("nothing", Exit::Ok, None, None)
        }
        Err(fatal) => {
            if !args.json {
                print_error(&fatal);
            }
            ("error", fatal.exit, None, Some(fatal.message))
        }
    };
    if args.json {
        print_json(&Report {
            command: "recover",
            result,
            exit_code: exit.code(),
            recovered,
            error,
        });
    }
    exit
}

async fn recover(state_dir: &Path, progress: &Progress) -> Result<Option<Recovered>, Fatal> {
    let nm = Nm::connect().await?;
    let store = Store::new(state_dir);
    let lock = store.lock()?;
    Ok(recovery::recover(&nm, &store, &lock, progress).await?)
}
