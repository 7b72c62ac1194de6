//! `netbridge guest-forwarding`: makes the host firewall accept forwarding
//! on the bridges allowed it, and only on them. What
//! `netbridge-guest-forwarding.service` runs at boot and whenever Docker
//! starts (Docker re-creates DOCKER-USER and its jumps then).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use serde::Serialize;

use super::output::{run_verb, Exit, Fatal};
use crate::config;
use crate::guest_forwarding::{self, Applied, GuestForwarding};
use crate::journal::Store;
use crate::report::{Progress, Verdict};
use crate::retry::ErrorKind;

#[derive(Debug, clap::Args)]
#[command(after_help = "\
The bridges: those `netbridge convert --guest-forwarding allow` recorded (in the
state directory), and those the configuration marks `guest-forwarding = \"allow\"`.
Each gets `-i BRIDGE -o BRIDGE -j ACCEPT` (comment netbridge-guest-forwarding:BRIDGE)
in DOCKER-USER, or in the forward chains when Docker's are absent; a rule of
netbridge for any other bridge is removed. Running it again changes nothing.")]
pub struct GuestForwardingArgs {
    /// The configuration whose `guest-forwarding = "allow"` bridges count too.
    #[arg(long, default_value = config::DEFAULT_PATH, value_name = "PATH")]
    pub config: PathBuf,

    /// Print one JSON document with the result instead of progress.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Serialize)]
struct Report {
    bridges: BTreeSet<String>,
    applied: Vec<Applied>,
}

pub async fn run(args: GuestForwardingArgs, state_dir: &Path) -> Exit {
    let report = Report {
        bridges: BTreeSet::new(),
        applied: Vec::new(),
    };
    run_verb(
        "guest-forwarding",
        args.json,
        report,
        async |progress, report| sync(&args, state_dir, progress, report).await,
    )
    .await
}

async fn sync(
    args: &GuestForwardingArgs,
    state_dir: &Path,
    progress: &Progress,
    report: &mut Report,
) -> Result<(Verdict, Exit), Fatal> {
    let configured = config::load(&args.config)
        .await
        .map_err(|e| Fatal::refused(format!("{e}; nothing was changed")))?;
    let store = Store::new(state_dir);
    // Not while a change is in flight: it adds or removes rules itself.
    let lock = store.lock()?;
    let failed = |e: guest_forwarding::ForwardingError| {
        Fatal::new(ErrorKind::of_forwarding(&e).into(), e.to_string())
    };
    report.bridges = guest_forwarding::listed(&store).await.map_err(failed)?;
    report.bridges.extend(
        configured
            .bridges
            .iter()
            .filter(|b| b.guest_forwarding == GuestForwarding::Allow)
            .map(|b| b.name.clone()),
    );
    report.applied = guest_forwarding::sync(&report.bridges)
        .await
        .map_err(failed)?;
    drop(lock);
    for a in &report.applied {
        progress.step("firewall", a.to_string());
    }
    let names: Vec<&str> = report.bridges.iter().map(String::as_str).collect();
    let result = if report.applied.is_empty() {
        Verdict::Unchanged
    } else {
        Verdict::Committed
    };
    progress.step(
        "done",
        format!(
            "guest forwarding allowed on: {} ({} change{})",
            if names.is_empty() {
                "none".to_owned()
            } else {
                names.join(", ")
            },
            report.applied.len(),
            if report.applied.len() == 1 { "" } else { "s" }
        ),
    );
    Ok((result, Exit::Ok))
}
