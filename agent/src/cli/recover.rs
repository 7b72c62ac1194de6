//! `netbridge recover`: finish or undo what an interrupted run left behind.

use std::path::Path;

use serde::Serialize;

use super::output::{run_verb, say, Exit, Fatal};
use crate::journal::Store;
use crate::nm::Nm;
use crate::recovery::{self, Recovered};
use crate::report::{Progress, Verdict};

#[derive(Debug, clap::Args)]
pub struct RecoverArgs {
    /// Print one JSON document with the result instead of progress.
    #[arg(long)]
    pub json: bool,
}

/// What `--json` adds to the common envelope.
#[derive(Debug, Serialize)]
struct Report {
    recovered: Option<Recovered>,
}

pub async fn run(args: RecoverArgs, state_dir: &Path) -> Exit {
    let report = Report { recovered: None };
    run_verb("recover", args.json, report, async |progress, report| {
        report.recovered = recover(state_dir, progress).await?;
        match &report.recovered {
            Some(_) => Ok((Verdict::Committed, Exit::Ok)),
            None => {
                if !args.json {
                    say!("Nothing to recover: no interrupted change is recorded.");
                }
                Ok((Verdict::Unchanged, Exit::Ok))
            }
        }
    })
    .await
}

async fn recover(state_dir: &Path, progress: &Progress) -> Result<Option<Recovered>, Fatal> {
    let nm = Nm::connect().await?;
    let store = Store::new(state_dir);
    let lock = store.lock()?;
    Ok(recovery::recover(&nm, &store, &lock, progress).await?)
}
