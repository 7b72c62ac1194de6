//! Conversion and idempotent re-run, per tool: each run gets a fresh lab,
//! converts it while probing, then runs the same command again on the
//! converted host while probing.

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
    /// ICMP echo from the host to the gateway.
    pub gateway: Outage,
}

/// Everything measured for one tool.
#[derive(Debug, Default)]
pub struct ToolResults {
    pub convert: Vec<Sample>,
    pub rerun: Vec<Sample>,
    pub errors: Vec<String>,
    pub unavailable: Option<&'static str>,
}

/// Runs every tool `config.runs` times, interleaved (run 1 of each tool,
/// then run 2, ...) so a slow moment of the shared machine spreads over all.
pub fn run_all(config: &Config, tools: &Tools, which: &[Tool]) -> Vec<(Tool, ToolResults)> {
    let mut results: Vec<(Tool, ToolResults)> = which
        .iter()
        .map(|&tool| {
            let unavailable = tools.unavailable(tool);
            (
                tool,
                ToolResults {
                    unavailable,
                    ..ToolResults::default()
                },
            )
        })
        .collect();
    for run in 1..=config.runs {
        for (tool, result) in results.iter_mut().filter(|(_, r)| r.unavailable.is_none()) {
            eprintln!(
                "bench: conversion run {run}/{} — {}",
                config.runs,
                tool.title()
            );
            run_once(tools, *tool, config.settle_timeout, result);
        }
    }
    results
}

fn run_once(tools: &Tools, tool: Tool, settle: Duration, into: &mut ToolResults) {
    let lab = match Lab::start(Uplink::Static) {
        Ok(lab) => lab,
        Err(e) => return into.errors.push(format!("the lab did not start: {e}")),
    };
    match measure(&lab, tools, tool, "committed", settle) {
        Ok(sample) => {
            report("convert", &sample);
            into.convert.push(sample);
        }
        Err(e) => return into.errors.push(format!("convert: {e}")),
    }
    match measure(&lab, tools, tool, "no-op", settle) {
        Ok(sample) => {
            report("re-run", &sample);
            into.rerun.push(sample);
        }
        Err(e) => into.errors.push(format!("re-run: {e}")),
    }
}

fn report(what: &str, s: &Sample) {
    eprintln!(
        "bench:   {what}: {:.3} s; LAN→host longest gap {:.0} ms, {} lost{}",
        s.wall,
        s.lan.longest_gap * 1000.0,
        s.lan.lost,
        s.lan
            .back_at
            .map(|b| format!(", answering again {b:.3} s after the start"))
            .unwrap_or_default()
    );
}

/// Times the tool's command with both probes running, then waits until the
/// host answers steadily (bounded by `settle`) and checks the end state.
fn measure(
    lab: &Lab,
    tools: &Tools,
    tool: Tool,
    expected: &str,
    settle: Duration,
) -> Result<Sample, String> {
    let lan = Prober::start(
        "LAN→host ping",
        lab.lan_command(probe_argv(STATIC_ADDRESS)?),
    )?;
    let gateway = Prober::start("host→gateway ping", lab.host_command(probe_argv(GATEWAY)?))?;
    let mut command = tools.command(tool, lab)?;
    let run = run_timed(tool.title(), &mut command, COMMAND_TIMEOUT)?;
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
        gateway: outage(&gateway, run.started, end),
    })
}
