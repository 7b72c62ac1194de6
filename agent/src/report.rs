//! Progress of an operation: printed for people as it happens (stderr), and
//! kept for the machine-readable result.

use std::io::Write;
use std::sync::Mutex;
use std::time::Instant;

use serde::Serialize;

use crate::checks::ProbeResult;

#[derive(Debug, Clone, Serialize)]
pub struct Step {
    /// Seconds since the operation started.
    pub at: f64,
    pub step: &'static str,
    pub detail: String,
}

pub struct Progress {
    start: Instant,
    human: bool,
    steps: Mutex<Vec<Step>>,
    checks: Mutex<CheckResults>,
}

impl Progress {
    /// `human`: print each step to stderr as it happens, instead of logging it.
    pub fn new(human: bool) -> Self {
        Progress {
            start: Instant::now(),
            human,
            steps: Mutex::new(Vec::new()),
            checks: Mutex::new(CheckResults::default()),
        }
    }

    pub fn step(&self, step: &'static str, detail: impl Into<String>) {
        let detail = detail.into();
        let at = self.start.elapsed().as_secs_f64();
        // Once: as a line for people, or as a log event (the agent, --json)
        // with the step as its PHASE.
        if self.human {
            // A closed terminal (SSH gone) must not stop a change half-way: ignore write errors.
            let _ = writeln!(std::io::stderr(), "{at:7.3}s  {step:<12} {detail}");
        } else {
            tracing::info!(phase = step, "{step}: {detail}");
        }
        if let Ok(mut steps) = self.steps.lock() {
            steps.push(Step { at, step, detail });
        }
    }

    /// A check's result: a step for people, kept structured for `--json`.
    pub fn check(&self, phase: CheckPhase, result: &ProbeResult) {
        let (step, verdict) = match (phase, result.ok) {
            (CheckPhase::Before, true) => ("before", "ok"),
            (CheckPhase::Before, false) => ("before", "fails"),
            (CheckPhase::After, true) => ("check", "ok"),
            (CheckPhase::After, false) => ("check", "FAILED"),
            (CheckPhase::AfterRollback, true) => ("recheck", "ok"),
            (CheckPhase::AfterRollback, false) => ("recheck", "still failing"),
        };
        self.step(
            step,
            format!("{} {verdict}: {}", result.probe, result.detail),
        );
        if let Ok(mut checks) = self.checks.lock() {
            let list = match phase {
                CheckPhase::Before => &mut checks.before,
                CheckPhase::After => &mut checks.after,
                CheckPhase::AfterRollback => &mut checks.after_rollback,
            };
            list.push(result.clone());
        }
    }

    pub fn checks(&self) -> CheckResults {
        self.checks.lock().map(|c| c.clone()).unwrap_or_default()
    }

    pub fn steps(&self) -> Vec<Step> {
        self.steps.lock().map(|s| s.clone()).unwrap_or_default()
    }

    pub fn elapsed(&self) -> f64 {
        self.start.elapsed().as_secs_f64()
    }
}

/// The one result vocabulary of every `--json` document (the envelope's
/// `result`), of each bridge `apply` reports, and of the results `status`
/// shows: what a verb did, whatever the verb.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Verdict {
    /// Changed, proven and kept.
    Committed,
    /// Changed and proven, on trial until `netbridge confirm` (`--confirm`).
    AwaitingConfirm,
    /// Already as asked: nothing to do (also every read-only verb).
    Unchanged,
    /// Shown, not done.
    DryRun,
    /// Refused before any change: the host is as it was.
    Refused,
    /// Tried, failed its checks, undone: the host is as it was.
    RolledBack,
    /// Undoing a failed change did not complete: check the host.
    RollbackIncomplete,
    /// Failed otherwise (the error's kind says how).
    Failed,
    /// Not tried again: it failed with this same configuration (`apply`).
    Skipped,
}

impl Verdict {
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Committed => "committed",
            Verdict::AwaitingConfirm => "awaiting-confirm",
            Verdict::Unchanged => "unchanged",
            Verdict::DryRun => "dry-run",
            Verdict::Refused => "refused",
            Verdict::RolledBack => "rolled-back",
            Verdict::RollbackIncomplete => "rollback-incomplete",
            Verdict::Failed => "failed",
            Verdict::Skipped => "skipped",
        }
    }
}

impl std::fmt::Display for Verdict {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// When a check ran, relative to the change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CheckPhase {
    /// Before the change: selects the checks (a failing explicit one refuses).
    Before,
    /// On trial, after the change: decides commit or rollback.
    After,
    /// After a rollback: confirms the host is back.
    AfterRollback,
}

/// Every check result of a run, by phase: each document carries all three
/// lists, empty when no check ran then.
#[derive(Debug, Clone, Default, Serialize)]
pub struct CheckResults {
    pub before: Vec<ProbeResult>,
    pub after: Vec<ProbeResult>,
    pub after_rollback: Vec<ProbeResult>,
}
