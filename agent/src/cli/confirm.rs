//! `netbridge confirm`: commit the change that `--confirm SECS` left on
//! trial. Run it from a new connection: reaching the host is the proof.

use std::path::Path;

use serde::Serialize;

use super::output::{run_verb, say, Exit, Fatal};
use crate::confirm::{self, ConfirmError, Confirmed};
use crate::journal::Store;
use crate::nm::Nm;

#[derive(Debug, clap::Args)]
#[command(after_help = "\
Exit status: 0 committed, 3 too late or the commit failed: rolled back (the
host is as it was), 2 nothing awaits confirmation, 5 a rollback did not complete.")]
pub struct ConfirmArgs {
    /// Print one JSON document with the result instead of progress.
    #[arg(long)]
    pub json: bool,
}

/// What `--json` adds to the common envelope.
#[derive(Debug, Serialize)]
struct Report {
    confirmed: Option<Confirmed>,
}

pub async fn run(args: ConfirmArgs, state_dir: &Path) -> Exit {
    let report = Report { confirmed: None };
    run_verb("confirm", args.json, report, async |progress, report| {
        let nm = Nm::connect().await?;
        let store = Store::new(state_dir);
        let lock = store.lock()?;
        let confirmed = confirm::confirm(&nm, &store, &lock, progress)
            .await
            .map_err(confirm_fatal)?;
        let done = match &confirmed {
            Confirmed::Committed { bridge, done, .. } => {
                if !args.json {
                    say!("Confirmed: {bridge} is committed ({done}).");
                }
                ("committed", Exit::Ok)
            }
            Confirmed::Expired { .. } => {
                if !args.json {
                    say!("Too late: the change was no longer on trial and is rolled back; the host runs as before.");
                }
                ("rolled-back", Exit::RolledBack)
            }
            Confirmed::RolledBack { reason } => {
                if !args.json {
                    say!("Rolled back: {reason}; the host runs as before.");
                }
                ("rolled-back", Exit::RolledBack)
            }
        };
        report.confirmed = Some(confirmed);
        Ok(done)
    })
    .await
}

/// The exit status each failure of `confirm` and `rollback` means.
pub(super) fn confirm_fatal(e: ConfirmError) -> Fatal {
    match e {
        ConfirmError::Journal(e) => e.into(),
        ConfirmError::Recovery(e) => e.into(),
        ConfirmError::Tx(e) => e.into(),
        ConfirmError::Nm(e) => e.into(),
        e @ (ConfirmError::NothingPending(_) | ConfirmError::NotPending { .. }) => {
            Fatal::new(Exit::BadInput, e.to_string())
        }
    }
}
