//! Progress of an operation: printed for people as it happens (stderr), and
//! kept for the machine-readable result.

use std::io::Write;
use std::sync::Mutex;
use std::time::Instant;

use serde::Serialize;

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
}

impl Progress {
    /// `human`: print each step to stderr as it happens, instead of logging it.
    pub fn new(human: bool) -> Self {
        Progress {
            start: Instant::now(),
            human,
            steps: Mutex::new(Vec::new()),
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

    pub fn steps(&self) -> Vec<Step> {
        self.steps.lock().map(|s| s.clone()).unwrap_or_default()
    }

    pub fn elapsed(&self) -> f64 {
        self.start.elapsed().as_secs_f64()
    }
}
