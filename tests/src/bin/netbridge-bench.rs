//! `netbridge-bench`: netbridge side by side with the plain nmcli recipe and
//! `nmstatectl apply`, in labs (a real NetworkManager in network namespaces);
//! prints a Markdown table. Run it through `scripts/bench.sh` (as root).

#[path = "../bench/mod.rs"]
mod bench;

use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use bench::host::Nm;
use bench::table::{self, Report};
use bench::tools::{Tool, Tools};
use bench::{agent, convert, fleet, gap, icmp, machine, probe, rollback, scale, Config};
use clap::{Parser, Subcommand, ValueEnum};
use netbridge_tests::container::Suite;
use netbridge_tests::lab::{self, Lab, Uplink};

/// Benchmark netbridge against the nmcli recipe and nmstatectl in throwaway
/// labs (needs root; the machine's own network is never touched). Progress
/// goes to stderr, the Markdown report to stdout.
#[derive(Parser)]
#[command(name = "netbridge-bench")]
struct Cli {
    #[command(subcommand)]
    verb: Option<Verb>,
    /// Repetitions of each measurement, each in a fresh lab.
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u16).range(1..=100))]
    runs: u16,
    /// How many labs convert at once in the scale measurement.
    #[arg(long, value_delimiter = ',', default_value = "1,4,16", value_parser = clap::value_parser!(u16).range(1..=32))]
    scale: Vec<u16>,
    /// Seconds the agent is watched while idle.
    #[arg(long, default_value_t = 60)]
    agent_idle: u64,
    /// Longest wait, after a command exits, for the host to answer steadily again.
    #[arg(long, default_value_t = 60)]
    settle_timeout: u64,
    /// The nmstatectl binary [default: from PATH or ~/.cargo/bin].
    #[arg(long, value_name = "PATH")]
    nmstatectl: Option<PathBuf>,
    /// With `--only fleet`: how many lab hosts the rollout goes to.
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u16).range(1..=64))]
    hosts: u16,
    /// With `--only fleet`: hosts per batch (the playbook's `serial`).
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u16).range(1..=64))]
    batch: u16,
    /// Which measurements to run.
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_value = "convert,rollback,agent,scale"
    )]
    only: Vec<Part>,
    /// Which tools the conversion measurements compare.
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_value = "netbridge,nmcli,nmstate"
    )]
    tools: Vec<ToolArg>,
    /// With `--only gap`: a timeline of each run (kernel events, D-Bus calls,
    /// NetworkManager's log, lost replies; the recorders run beside every
    /// measurement); the report shows the worst run's of each operation and
    /// way.
    #[arg(long)]
    trace: bool,
    /// With `--only gap`: another netbridge binary measured beside this one
    /// (e.g. the one before a change), its column "netbridge (baseline binary)".
    #[arg(long, value_name = "PATH")]
    baseline: Option<PathBuf>,
    /// With `--only gap`: measure on another NetworkManager — each run
    /// boots a fresh Debian SUITE host (systemd-nspawn in the lab's host
    /// namespace, its own NetworkManager: trixie 1.52, sid 1.58, bookworm
    /// 1.42) and netbridge and nmcli run inside it; nmstatectl is not run
    /// there. The first use builds the suite's cached root (a few minutes).
    /// [default: the lab's NetworkManager, this machine's]
    #[arg(long, value_enum, value_name = "SUITE")]
    suite: Option<SuiteArg>,
    /// With `--only gap`: the operations measured.
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_value = "convert,revert,mtu,adopt"
    )]
    ops: Vec<gap::Op>,
    /// With `--only gap`: the ways compared (baseline needs --baseline;
    /// nmstate, nmstatectl).
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_value = "netbridge,baseline,nmstate,nmcli,kernel"
    )]
    ways: Vec<gap::Way>,
}

/// The Debian hosts a release build of this machine runs on (bullseye's
/// glibc is too old for it).
#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum SuiteArg {
    /// Debian 12, NetworkManager 1.42 (as the lab's, but a booted host).
    Bookworm,
    /// Debian 13, NetworkManager 1.52.
    Trixie,
    /// Debian unstable, NetworkManager 1.58.
    Sid,
}

impl From<SuiteArg> for Suite {
    fn from(s: SuiteArg) -> Suite {
        match s {
            SuiteArg::Bookworm => Suite::Bookworm,
            SuiteArg::Trixie => Suite::Trixie,
            SuiteArg::Sid => Suite::Sid,
        }
    }
}

#[derive(Subcommand)]
enum Verb {
    /// The prober the harness starts inside a lab namespace: ICMP echo to
    /// ADDR every 5 ms, replies printed like `ping -D`.
    #[command(hide = true)]
    Probe { target: Ipv4Addr },
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Part {
    /// Conversion and idempotent re-run, per tool.
    Convert,
    /// A netbridge conversion whose check fails after the change.
    Rollback,
    /// netbridge-agent idle.
    Agent,
    /// K labs converted at once.
    Scale,
    /// The reply gap of convert, revert and an in-place MTU change: netbridge,
    /// nmstatectl, nmcli and the kernel's own steps, side by side.
    Gap,
    /// fleet/rollout.yml to `--hosts` lab hosts over SSH, `--batch` per batch.
    Fleet,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum ToolArg {
    Netbridge,
    Nmcli,
    Nmstate,
}

impl From<ToolArg> for Tool {
    fn from(t: ToolArg) -> Tool {
        match t {
            ToolArg::Netbridge => Tool::Netbridge,
            ToolArg::Nmcli => Tool::Nmcli,
            ToolArg::Nmstate => Tool::Nmstate,
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Some(Verb::Probe { target }) = cli.verb {
        let interval = Duration::from_millis(probe::INTERVAL_MS);
        let deadline = Duration::from_secs(probe::DEADLINE_SECS);
        return match icmp::run(target, interval, deadline) {
            Ok(()) => ExitCode::SUCCESS,
            Err(message) => {
                eprintln!("netbridge-bench probe: {message}");
                ExitCode::FAILURE
            }
        };
    }
    match run(&cli) {
        Ok(report) => {
            print!("{report}");
            ExitCode::SUCCESS
        }
        Err(message) => {
            eprintln!("netbridge-bench: {message}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: &Cli) -> Result<String, String> {
    let started = Instant::now();
    if cli.suite.is_some() && cli.only != [Part::Gap] {
        return Err("--suite measures the reply gap only: add --only gap".to_owned());
    }
    lab::netbridge_bin().map_err(|e| e.to_string())?;
    let config = Config {
        runs: usize::from(cli.runs),
        scale: cli.scale.iter().map(|&k| usize::from(k)).collect(),
        agent_idle: Duration::from_secs(cli.agent_idle),
        settle_timeout: Duration::from_secs(cli.settle_timeout),
        nmstatectl: cli.nmstatectl.clone().or_else(find_nmstatectl),
    };
    if config.nmstatectl.is_none() {
        eprintln!("netbridge-bench: nmstatectl not found; its column will say so");
    }
    let mut machine = describe_machine(&config)?;
    let tools = Tools::new(config.nmstatectl.clone())?;
    let which: Vec<Tool> = cli.tools.iter().map(|&t| t.into()).collect();
    let wants = |part| cli.only.contains(&part);
    let conversions = if wants(Part::Convert) {
        convert::run_all(&config, &tools, &which)
    } else {
        Vec::new()
    };
    let rollback = wants(Part::Rollback).then(|| rollback::run_all(&config));
    let agent = wants(Part::Agent).then(|| {
        eprintln!("bench: agent");
        agent::run(config.runs, config.agent_idle)
    });
    let scale = if wants(Part::Scale) {
        scale::run_all(&config)
    } else {
        Vec::new()
    };
    let gap = if wants(Part::Gap) {
        let nm = cli.suite.map_or(Nm::Lab, |s| Nm::Booted(s.into()));
        let states = gap::States::new(config.nmstatectl.clone(), cli.baseline.clone(), nm)?;
        Some(gap::run_all(
            config.runs,
            config.settle_timeout,
            &states,
            cli.trace,
            &gap::Selection {
                ops: cli.ops.clone(),
                ways: cli.ways.clone(),
            },
        ))
    } else {
        None
    };
    let fleet = wants(Part::Fleet)
        .then(|| fleet::run(usize::from(cli.hosts), usize::from(cli.batch)))
        .as_ref()
        .map(fleet::render)
        .unwrap_or_default();
    if let Some(results) = gap.as_ref().filter(|_| cli.suite.is_some()) {
        let version = results.version.clone().unwrap_or_else(|| "?".to_owned());
        machine.push(("NetworkManager of the booted host", version));
    }
    // Other work on a shared machine shows in the numbers: say how busy it was.
    machine.push(("load average at end", machine::load_average()));
    if cli
        .only
        .iter()
        .all(|p| [Part::Gap, Part::Fleet].contains(p))
    {
        let mut out = gap.as_ref().map(gap::render).unwrap_or_default();
        out.push_str(&fleet);
        out.push_str(&bench::notes::machine(&machine));
        eprintln!("bench: done in {:.0} s", started.elapsed().as_secs_f64());
        return Ok(out);
    }
    let report = Report {
        runs: config.runs,
        machine,
        conversions,
        rollback,
        agent,
        scale,
    };
    eprintln!("bench: done in {:.0} s", started.elapsed().as_secs_f64());
    let mut out = table::render(&report);
    out.push_str(&gap.as_ref().map(gap::render).unwrap_or_default());
    out.push_str(&fleet);
    Ok(out)
}

fn describe_machine(config: &Config) -> Result<Vec<(&'static str, String)>, String> {
    let lab = Lab::start(Uplink::Static).map_err(|e| format!("the lab did not start: {e}"))?;
    Ok(machine::describe(&lab, config.nmstatectl.as_deref()))
}

/// `nmstatectl` on PATH, or where `cargo install` puts it.
fn find_nmstatectl() -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let cargo_home = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cargo")));
    std::env::split_paths(&path)
        .chain(cargo_home.map(|c| c.join("bin")))
        .map(|dir| dir.join("nmstatectl"))
        .find(|candidate| candidate.is_file())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suite_picks_the_booted_host() {
        let cli = Cli::try_parse_from(["netbridge-bench", "--only", "gap", "--suite", "trixie"])
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(matches!(cli.suite.map(Suite::from), Some(Suite::Trixie)));
        assert!(Cli::try_parse_from(["netbridge-bench", "--suite", "bullseye"]).is_err());
        let plain = Cli::try_parse_from(["netbridge-bench"]).unwrap_or_else(|e| panic!("{e}"));
        assert!(plain.suite.is_none());
    }
}
