//! Conversion and idempotent re-run, per tool. Each run gets two fresh labs:
//!
//! - a quiet host: only the LAN probes the host during the change; the host
//!   starts probing the gateway when the command exits (when does the
//!   gateway answer through br0?); then the same command again on the
//!   converted host (the re-run);
//! - a busy host: the host also probes the gateway every 5 ms during the
//!   change, as the replies of an operator's SSH session would flow.

use std::process::Command;
use std::time::Duration;

use netbridge_tests::lab::{Lab, Uplink, GATEWAY, STATIC_ADDRESS};

use super::probe::{probe_argv, Prober};
use super::proc::run_timed;
use super::tools::{check_exit, verify_bridge, Tool, Tools};
use super::trace::{outage, Outage};
use super::{now, Config};

/// Bounds each tool's command; the slowest (nmcli) returns in well under 1 s.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(120);

/// One timed command and what the probes saw while it ran and until the
/// host answered steadily again.
#[derive(Debug, Clone, Copy)]
pub struct Sample {
    /// From just before the command started until it exited.
    pub wall: f64,
    /// ICMP echo from the LAN to the host's address.
    pub lan: Outage,
    /// Quiet host: seconds from the start until the gateway first answered
    /// the host's probes (started at the command's exit).
    pub gateway_answer: Option<f64>,
    /// Busy host: what the host's probes of the gateway saw.
    pub gateway: Option<Outage>,
}

/// Everything measured for one tool.
#[derive(Debug, Default)]
pub struct ToolResults {
    pub convert: Vec<Sample>,
    pub busy: Vec<Sample>,
    pub rerun: Vec<Sample>,
    /// Failures, each starting with the measurement's name.
    pub errors: Vec<String>,
    pub unavailable: Option<&'static str>,
}

impl ToolResults {
    pub fn failed(&self, measurement: &str) -> usize {
        self.errors
            .iter()
            .filter(|e| e.starts_with(measurement))
            .count()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Host {
    Quiet,
    Busy,
}

/// Runs every tool `config.runs` times, interleaved (run 1 of each tool,
/// then run 2, ...) so a slow moment of the shared machine spreads over all.
pub fn run_all(config: &Config, tools: &Tools, which: &[Tool]) -> Vec<(Tool, ToolResults)> {
    let mut results: Vec<(Tool, ToolResults)> = which
        .iter()
        .map(|&tool| {
            let unavailable = tools.unavailable(tool);
            let results = ToolResults {
                unavailable,
                ..ToolResults::default()
            };
            (tool, results)
        })
        .collect();
    for run in 1..=config.runs {
        for (tool, result) in results.iter_mut().filter(|(_, r)| r.unavailable.is_none()) {
            eprintln!(
                "bench: conversion run {run}/{} — {}",
                config.runs,
                tool.title()
            );
            quiet_run(tools, *tool, config.settle_timeout, result);
            busy_run(tools, *tool, config.settle_timeout, result);
        }
    }
    results
}

fn quiet_run(tools: &Tools, tool: Tool, settle: Duration, into: &mut ToolResults) {
    let lab = match Lab::start(Uplink::Static) {
        Ok(lab) => lab,
        Err(e) => {
            return into
                .errors
                .push(format!("convert: the lab did not start: {e}"))
        }
    };
    match measure(&lab, tools, tool, "committed", Host::Quiet, settle) {
        Ok(sample) => {
            report("convert", &sample);
            into.convert.push(sample);
        }
        Err(e) => return into.errors.push(format!("convert: {e}")),
    }
    match measure(&lab, tools, tool, "unchanged", Host::Quiet, settle) {
        Ok(sample) => {
            report("re-run", &sample);
            into.rerun.push(sample);
        }
        Err(e) => into.errors.push(format!("re-run: {e}")),
    }
}

fn busy_run(tools: &Tools, tool: Tool, settle: Duration, into: &mut ToolResults) {
    let sample = Lab::start(Uplink::Static)
        .map_err(|e| format!("the lab did not start: {e}"))
        .and_then(|lab| measure(&lab, tools, tool, "committed", Host::Busy, settle));
    match sample {
        Ok(sample) => {
            report("convert, busy host", &sample);
            into.busy.push(sample);
        }
        Err(e) => into.errors.push(format!("busy: {e}")),
    }
}

fn report(what: &str, s: &Sample) {
    let back = s
        .lan
        .back_at
        .map(|b| format!(", answering again {b:.3} s after the start"))
        .unwrap_or_default();
    eprintln!(
        "bench:   {what}: {:.3} s; LAN→host longest gap {:.0} ms, {} lost{back}",
        s.wall,
        s.lan.longest_gap * 1000.0,
        s.lan.lost,
    );
}

/// Times the tool's command with the probes running, then waits until the
/// host answers steadily (bounded by `settle`) and checks the end state.
fn measure(
    lab: &Lab,
    tools: &Tools,
    tool: Tool,
    expected: &str,
    host: Host,
    settle: Duration,
) -> Result<Sample, String> {
    let lan = Prober::start(
        "LAN→host probe",
        lab.lan_command(probe_argv(STATIC_ADDRESS)?),
    )?;
    let gateway_probe =
        || -> Result<Command, String> { Ok(lab.host_command(probe_argv(GATEWAY)?)) };
    let early = match host {
        Host::Busy => Some(Prober::start("host→gateway probe", gateway_probe()?)?),
        Host::Quiet => None,
    };
    let mut command = tools.command(tool, lab)?;
    let run = run_timed(tool.title(), &mut command, COMMAND_TIMEOUT)?;
    let gateway = match early {
        Some(prober) => prober,
        None => Prober::spawn("host→gateway probe", gateway_probe()?)?,
    };
    check_exit(tool, &run, expected)?;
    // Sequential waits: the second mostly returns at once.
    lan.wait_steady(run.exited, settle);
    gateway.wait_steady(run.exited, settle);
    let end = now();
    let lan = lan.finish()?;
    let gateway = gateway.finish()?;
    verify_bridge(lab)?;
    Ok(Sample {
        wall: run.wall(),
        lan: outage(&lan, run.started, end),
        gateway_answer: (host == Host::Quiet)
            .then(|| gateway.first().map(|r| r.at - run.started))
            .flatten(),
        gateway: (host == Host::Busy).then(|| outage(&gateway, run.started, end)),
    })
}
