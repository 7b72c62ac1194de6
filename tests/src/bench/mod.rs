//! The benchmark harness behind `netbridge-bench` (run by `scripts/bench.sh`):
//! netbridge side by side with the plain nmcli recipe and `nmstatectl apply`,
//! each run in a fresh lab (a real NetworkManager in network namespaces).
//!
//! Numbers compare tools in one run on one machine; they are never timed
//! assertions in the test suite.

pub mod agent;
pub mod convert;
pub mod fleet;
pub mod gap;
pub mod host;
pub mod icmp;
pub mod machine;
pub mod notes;
pub mod probe;
pub mod proc;
pub mod record;
pub mod rollback;
pub mod scale;
pub mod stats;
pub mod table;
pub mod tools;
pub mod trace;

use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// What one benchmark run does; filled from the command line.
#[derive(Debug, Clone)]
pub struct Config {
    /// Repetitions of each measurement (a fresh lab each).
    pub runs: usize,
    /// How many labs convert at once in the scale measurement.
    pub scale: Vec<usize>,
    /// How long the agent is watched while idle.
    pub agent_idle: Duration,
    /// The longest wait for the host to answer steadily again after a
    /// command exits (the nmcli recipe's STP outage lasts about 30 s).
    pub settle_timeout: Duration,
    /// `nmstatectl`, or None when it is not installed (its column then says so).
    pub nmstatectl: Option<PathBuf>,
}

/// Seconds since the Unix epoch: the clock `ping -D` stamps replies with, so
/// command start and exit times line up with the probes' replies.
pub fn now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}
