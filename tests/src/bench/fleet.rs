//! A rollout of `fleet/rollout.yml` to many lab hosts in batches, as the
//! fleet test runs it (each host a NetworkManager and an sshd in network
//! namespaces of its own, reached over SSH through its LAN; each change
//! confirmed over a new SSH connection): how long the whole rollout takes,
//! per host and per batch.

use std::time::{Duration, Instant};

use netbridge_tests::fleet::{Fleet, FLEET_TOML};

use super::machine::meminfo_kib;
use super::stats::{format_summary, format_value, summarize, Summary, Unit};
use super::tools::verify_bridge;

/// A generous bound for the whole rollout on a slow, shared machine.
const ROLLOUT_TIMEOUT: Duration = Duration::from_secs(3600);
/// How long each change may wait for its confirmation: far longer than a
/// batch takes, so that only a real failure rolls back.
const CONFIRM_SECS: u64 = 600;

#[derive(Debug)]
pub struct FleetRun {
    pub hosts: usize,
    pub batch: usize,
    /// Starting the lab hosts (not part of the rollout).
    pub start: Duration,
    /// Memory the running fleet took (MemAvailable before and after it
    /// started), in KiB.
    pub memory_kib: Option<u64>,
    /// ansible-playbook from start to exit.
    pub total: Duration,
    /// `netbridge apply`'s own time on each host (its JSON's `seconds`).
    pub on_host: Option<Summary>,
}

/// Starts `hosts` lab hosts, rolls the fleet configuration out to them,
/// `batch` per batch, and checks that every host committed and runs on br0.
pub fn run(hosts: usize, batch: usize) -> Result<FleetRun, String> {
    eprintln!("bench: fleet — starting {hosts} lab hosts");
    let names: Vec<String> = (1..=hosts).map(|i| format!("h{i}")).collect();
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    let available = meminfo_kib("MemAvailable");
    let started = Instant::now();
    let fleet = Fleet::start(&names).map_err(|e| format!("the fleet did not start: {e}"))?;
    let start = started.elapsed();
    let memory_kib = available
        .zip(meminfo_kib("MemAvailable"))
        .map(|(before, after)| before.saturating_sub(after));
    let controller = fleet.controller();
    controller
        .ship_config(FLEET_TOML)
        .map_err(|e| e.to_string())?;
    eprintln!(
        "bench: fleet up in {:.0} s; rolling out, {batch} hosts per batch",
        start.as_secs_f64()
    );
    let began = Instant::now();
    let run = controller
        .rollout(batch, CONFIRM_SECS, &[], ROLLOUT_TIMEOUT)
        .map_err(|e| e.to_string())?;
    let total = began.elapsed();
    if !run.status.success() {
        let tail: Vec<&str> = run.output.lines().rev().take(30).collect();
        let tail: Vec<&str> = tail.into_iter().rev().collect();
        return Err(format!(
            "the rollout failed ({}):\n{}",
            run.status,
            tail.join("\n")
        ));
    }
    let mut seconds = Vec::new();
    for host in fleet.hosts() {
        let name = host.name();
        let doc = controller
            .result(name)
            .map_err(|e| e.to_string())?
            .ok_or_else(|| format!("{name} has no result"))?;
        if doc["confirm"]["result"] != "committed" {
            return Err(format!("{name} was not committed: {doc}"));
        }
        verify_bridge(host.lab()).map_err(|e| format!("{name}: {e}"))?;
        seconds.extend(doc["seconds"].as_f64());
    }
    eprintln!(
        "bench: fleet rollout of {hosts} hosts took {:.1} s",
        total.as_secs_f64()
    );
    Ok(FleetRun {
        hosts,
        batch,
        start,
        memory_kib,
        total,
        on_host: summarize(&seconds),
    })
}

/// The result as a Markdown table, or why there is none.
pub fn render(result: &Result<FleetRun, String>) -> String {
    let r = match result {
        Ok(r) => r,
        Err(e) => return format!("\n### Fleet rollout\n\nFailed: {e}\n"),
    };
    let total = r.total.as_secs_f64();
    let batches = r.hosts.div_ceil(r.batch.max(1));
    let rows = [
        (
            "hosts, batch size (`serial`)".to_owned(),
            format!("{}, {} ({batches} batches)", r.hosts, r.batch),
        ),
        (
            "whole rollout (ansible-playbook)".to_owned(),
            format_value(total, Unit::Span),
        ),
        (
            "per host (whole / hosts)".to_owned(),
            format_value(total / r.hosts as f64, Unit::Span),
        ),
        (
            "per batch (whole / batches)".to_owned(),
            format_value(total / batches as f64, Unit::Span),
        ),
        (
            "`netbridge apply` on each host (its `seconds`)".to_owned(),
            r.on_host
                .map_or_else(|| "-".to_owned(), |s| format_summary(&s, Unit::Span)),
        ),
        (
            "starting the lab hosts (not in the rollout)".to_owned(),
            format_value(r.start.as_secs_f64(), Unit::Span),
        ),
        (
            "memory the running lab hosts took".to_owned(),
            r.memory_kib.map_or_else(
                || "-".to_owned(),
                |kib| format_value(kib as f64, Unit::KibAsMib),
            ),
        ),
    ];
    let mut out = String::from("\n### Fleet rollout\n\n| | |\n|---|---|\n");
    for (label, value) in rows {
        out.push_str(&format!("| {label} | {value} |\n"));
    }
    out
}
