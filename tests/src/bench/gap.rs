//! The reply gap of a conversion, a revert and an in-place MTU change, side by
//! side: netbridge, `nmstatectl apply`, plain nmcli commands, and the kernel's
//! own steps in make-before-break order without NetworkManager (the physical
//! limit, as `kernel-order-reference.sh mbb` does it). Each run gets a fresh
//! lab; the LAN probes the host every 5 ms from before the command until the
//! host answers steadily again.
//!
//! The NetworkManager ways run against the lab's NetworkManager (this
//! machine's) or, with `--suite`, inside a freshly booted Debian host with
//! its own (see [`super::host`]); the kernel's steps always run in a lab
//! without NetworkManager.
//!
//! Revert and MTU change start from a converted host: for the
//! NetworkManager tools the host `netbridge convert` leaves (the same for
//! all), for the kernel the make-before-break conversion. The adoption of a
//! bridge made with the seed's nmcli recipe is netbridge's own verb, so only
//! netbridge runs it.

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use netbridge_tests::lab::{STATIC_ADDRESS, UPLINK};

use super::host::{Host, Nm};
use super::probe::{probe_argv, Prober};
use super::proc::{run_timed, Timed};
use super::record::Recorder;
use super::stats::{format_value, summarize, Unit};
use super::tools::{check_exit, Tool, NMSTATE_YAML};
use super::trace::{outage, Outage};

/// Bounds each command; all finish in seconds.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(120);

/// The MTU the in-place change sets (the lab's links start at 1500).
const MTU: u32 = 1400;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Op {
    Convert,
    Revert,
    Mtu,
    Adopt,
}

impl Op {
    pub const ALL: [Op; 4] = [Op::Convert, Op::Revert, Op::Mtu, Op::Adopt];

    pub fn title(self) -> &'static str {
        match self {
            Op::Convert => "convert",
            Op::Revert => "revert",
            Op::Mtu => "MTU change in place",
            Op::Adopt => "adoption of an nmcli-made bridge",
        }
    }

    /// Adoption is netbridge's own verb: no other tool has it.
    fn made_by(self, way: Way) -> bool {
        self != Op::Adopt || matches!(way, Way::Netbridge | Way::Baseline)
    }
}

/// A way of making the change.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Way {
    Netbridge,
    /// Another netbridge binary (`--baseline`), e.g. the one before a change.
    Baseline,
    Nmstate,
    Nmcli,
    Kernel,
}

impl Way {
    pub const ALL: [Way; 5] = [
        Way::Netbridge,
        Way::Baseline,
        Way::Nmstate,
        Way::Nmcli,
        Way::Kernel,
    ];

    /// nmstatectl is a binary of this machine: it runs only against the
    /// lab's NetworkManager, not inside a booted host.
    fn runs_on(self, nm: Nm) -> bool {
        self != Way::Nmstate || nm == Nm::Lab
    }

    pub fn title(self) -> &'static str {
        match self {
            Way::Netbridge => "netbridge",
            Way::Baseline => "netbridge (baseline binary)",
            Way::Nmstate => "nmstatectl apply",
            Way::Nmcli => "nmcli commands",
            Way::Kernel => "kernel steps, make-before-break (no NM; the limit)",
        }
    }
}

/// What the probes saw over the runs of one operation by one way.
#[derive(Debug, Default)]
pub struct Cell {
    pub outages: Vec<Outage>,
    pub errors: Vec<String>,
    /// With `--trace`: the timeline of the worst run so far, its number and
    /// what it lost.
    worst: Option<(usize, Outage, String)>,
}

impl Cell {
    /// Keeps `timeline` when run `run` lost more than the worst so far, or
    /// as much with a longer gap (the first of equals stays).
    fn keep_if_worst(&mut self, run: usize, outage: &Outage, timeline: String) {
        let worse = self
            .worst
            .as_ref()
            .is_none_or(|(_, w, _)| (outage.lost, outage.longest_gap) > (w.lost, w.longest_gap));
        if worse {
            self.worst = Some((run, *outage, timeline));
        }
    }
}

pub struct GapResults {
    pub runs: usize,
    /// The NetworkManager the ways ran against.
    pub nm: Nm,
    /// Its `NetworkManager --version`, as the first host that had it said.
    pub version: Option<String>,
    pub cells: Vec<(Op, Way, Cell)>,
    /// One annotated timeline per operation and way, when asked for: the
    /// worst run's (its heading, then the timeline).
    pub traces: Vec<(Op, Way, String, String)>,
    /// The ways measured (nmstatectl and the baseline only when given).
    pub ways: Vec<Way>,
}

/// The nmstatectl states for the revert and the MTU change (the conversion
/// uses the benchmark's [`NMSTATE_YAML`]).
const NMSTATE_REVERT: &str = "\
routes:
  config:
    - destination: 0.0.0.0/0
      next-hop-interface: br0
      next-hop-address: 172.25.250.254
      state: absent
    - destination: 0.0.0.0/0
      next-hop-interface: ens32
      next-hop-address: 172.25.250.254
interfaces:
  - name: br0
    type: linux-bridge
    state: absent
  - name: ens32
    type: ethernet
    state: up
    ipv4:
      enabled: true
      dhcp: false
      address:
        - ip: 172.25.250.10
          prefix-length: 24
    ipv6:
      enabled: false
";

const NMSTATE_MTU: &str = "\
interfaces:
  - name: br0
    type: linux-bridge
    state: up
    mtu: 1400
  - name: ens32
    type: ethernet
    state: up
    mtu: 1400
";

/// The lab's uplink by hand (no NetworkManager): what the NM lab's profile gives.
const KERNEL_BASE: &str = "set -e
ip link set lo up
ip addr add 172.25.250.10/24 dev ens32
ip link set ens32 up
ip route add default via 172.25.250.254 dev ens32
";

/// `kernel-order-reference.sh mbb`: the bridge up with the uplink's MAC and
/// the address (its prefix route losing to the uplink's meanwhile), the
/// uplink enslaved, then its own copy removed.
const KERNEL_CONVERT: &str = "set -e
ip link add br0 type bridge stp_state 0 forward_delay 0
ip link set br0 address $(cat /sys/class/net/ens32/address)
ip link set br0 up
ip addr add 172.25.250.10/24 dev br0 metric 1000
ip link set ens32 master br0
ip addr del 172.25.250.10/24 dev ens32
ip addr replace 172.25.250.10/24 dev br0
ip route replace default via 172.25.250.254 dev br0
";

/// The same order backwards: the uplink takes a copy of the bridge's
/// neighbour entries (while a port, the answers to its own address
/// resolution reach the bridge, not it) and of the address while still a
/// port (its packets leave on the wire directly), the bridge's copy goes,
/// then the port leaves and the bridge is deleted.
const KERNEL_REVERT: &str = "set -e
ip neigh show dev br0 | while read -r ip lladdr mac state; do
  if [ \"$lladdr\" = lladdr ]; then ip neigh replace \"$ip\" lladdr \"$mac\" dev ens32 nud stale; fi
done
ip addr add 172.25.250.10/24 dev ens32 metric 1000
ip route append default via 172.25.250.254 dev ens32 metric 1000
ip addr del 172.25.250.10/24 dev br0
ip link set ens32 nomaster
ip link del br0
ip addr replace 172.25.250.10/24 dev ens32
ip route replace default via 172.25.250.254 dev ens32
";

/// The recipe leaves STP on: the bridge forwards after twice its forward
/// delay (15 s).
const FORWARDING: &str =
    "timeout 60 sh -c 'until ping -c 1 -W 1 172.25.250.254 >/dev/null; do sleep 0.5; done'";

const KERNEL_MTU: &str = "set -e
ip link set ens32 mtu 1400
ip link set br0 mtu 1400
";

/// What an operator types with nmcli on netbridge's converted host.
const NMCLI_REVERT: &str = "set -e
nmcli connection up ens32
nmcli connection delete br0 br0-port-ens32
";

const NMCLI_MTU: &str = "set -e
nmcli connection modify br0-port-ens32 802-3-ethernet.mtu 1400
nmcli connection modify br0 802-3-ethernet.mtu 1400
nmcli device reapply ens32
nmcli device reapply br0
";

/// The state files for nmstatectl, in a temporary directory.
pub struct States {
    dir: tempfile::TempDir,
    nmstatectl: Option<PathBuf>,
    baseline: Option<PathBuf>,
    nm: Nm,
}

impl States {
    pub fn new(
        nmstatectl: Option<PathBuf>,
        baseline: Option<PathBuf>,
        nm: Nm,
    ) -> Result<States, String> {
        let dir = tempfile::Builder::new()
            .prefix("netbridge-bench-gap-")
            .tempdir()
            .map_err(|e| format!("cannot create a temporary directory: {e}"))?;
        for (name, text) in [
            ("convert.yml", NMSTATE_YAML),
            ("revert.yml", NMSTATE_REVERT),
            ("mtu.yml", NMSTATE_MTU),
        ] {
            let path = dir.path().join(name);
            std::fs::write(&path, text)
                .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
        }
        Ok(States {
            dir,
            nmstatectl,
            baseline,
            nm,
        })
    }

    fn file(&self, op: Op) -> Result<PathBuf, String> {
        let name = match op {
            Op::Convert => "convert.yml",
            Op::Revert => "revert.yml",
            Op::Mtu => "mtu.yml",
            Op::Adopt => return Err("nmstatectl has no adoption".to_owned()),
        };
        Ok(self.dir.path().join(name))
    }

    /// The command that makes the change `op` the way `way` does.
    fn command(&self, host: &Host, op: Op, way: Way) -> Result<Command, String> {
        match (way, op) {
            (Way::Netbridge | Way::Baseline, op) => {
                let baseline = match way {
                    Way::Baseline => Some(self.baseline.as_deref().ok_or("no baseline binary")?),
                    _ => None,
                };
                let mut command = host.netbridge(baseline)?;
                command.args(netbridge_args(op)).args(["--yes", "--json"]);
                Ok(command)
            }
            (Way::Nmstate, op) => {
                let bin = self.nmstatectl.as_ref().ok_or("nmstatectl not installed")?;
                let mut command = host.command([bin.as_os_str()])?;
                command.arg("apply").arg(self.file(op)?);
                Ok(command)
            }
            (Way::Nmcli, Op::Convert) => host.shell(super::tools::NMCLI_RECIPE),
            (Way::Nmcli, Op::Revert) => host.shell(NMCLI_REVERT),
            (Way::Nmcli, Op::Mtu) => host.shell(NMCLI_MTU),
            (Way::Kernel, Op::Convert) => host.shell(KERNEL_CONVERT),
            (Way::Kernel, Op::Revert) => host.shell(KERNEL_REVERT),
            (Way::Kernel, Op::Mtu) => host.shell(KERNEL_MTU),
            (Way::Nmcli | Way::Kernel, Op::Adopt) => {
                Err(format!("{} has no adoption", way.title()))
            }
        }
    }
}

fn netbridge_args(op: Op) -> Vec<String> {
    let args: &[&str] = match op {
        Op::Convert => &["convert", UPLINK],
        Op::Revert => &["revert", "br0"],
        Op::Mtu => &["convert", UPLINK, "--mtu"],
        Op::Adopt => &["convert", UPLINK, "--adopt"],
    };
    let mut args: Vec<String> = args.iter().map(|a| (*a).to_owned()).collect();
    if op == Op::Mtu {
        args.push(MTU.to_string());
    }
    args
}

/// Which operations and ways a run measures (`--ops`, `--ways`).
pub struct Selection {
    pub ops: Vec<Op>,
    pub ways: Vec<Way>,
}

/// Runs every operation by every way `runs` times, interleaved (run 1 of
/// each, then run 2, ...) so a slow moment of the shared machine spreads
/// over all; with `trace`, every run records a timeline (so every run bears
/// the recorders' load alike) and the worst run's of each operation and way
/// is reported.
pub fn run_all(
    runs: usize,
    settle: Duration,
    states: &States,
    trace: bool,
    selection: &Selection,
) -> GapResults {
    let ways: Vec<Way> = Way::ALL
        .into_iter()
        .filter(|w| selection.ways.contains(w))
        .filter(|&w| match w {
            Way::Nmstate => states.nmstatectl.is_some(),
            Way::Baseline => states.baseline.is_some(),
            _ => true,
        })
        .collect();
    let mut results = GapResults {
        runs,
        nm: states.nm,
        version: None,
        cells: Vec::new(),
        traces: Vec::new(),
        ways: ways.clone(),
    };
    for op in Op::ALL.into_iter().filter(|op| selection.ops.contains(op)) {
        for &way in ways
            .iter()
            .filter(|&&w| op.made_by(w) && w.runs_on(states.nm))
        {
            results.cells.push((op, way, Cell::default()));
        }
    }
    for run in 1..=runs {
        for (op, way, cell) in results.cells.iter_mut() {
            eprintln!(
                "bench: gap run {run}/{runs} — {}, {}",
                op.title(),
                way.title()
            );
            match one_run(states, *op, *way, settle, trace, &mut results.version) {
                Ok((o, timeline)) => {
                    eprintln!(
                        "bench:   longest gap {:.0} ms, {} lost",
                        o.longest_gap * 1000.0,
                        o.lost
                    );
                    if let Some(timeline) = timeline {
                        cell.keep_if_worst(run, &o, timeline);
                    }
                    cell.outages.push(o);
                }
                Err(e) => {
                    eprintln!("bench:   failed: {e}");
                    cell.errors.push(e);
                }
            }
        }
    }
    for (op, way, cell) in results.cells.iter_mut() {
        if let Some((run, o, timeline)) = cell.worst.take() {
            let heading = format!(
                "run {run} of {runs}, the worst ({} lost, longest gap {:.0} ms)",
                o.lost,
                o.longest_gap * 1000.0
            );
            results.traces.push((*op, *way, heading, timeline));
        }
    }
    results
}

/// One measurement; `version` learns the NetworkManager version from the
/// first host that runs one.
fn one_run(
    states: &States,
    op: Op,
    way: Way,
    settle: Duration,
    trace: bool,
    version: &mut Option<String>,
) -> Result<(Outage, Option<String>), String> {
    let host = start_host(states, way)?;
    if version.is_none() && way != Way::Kernel {
        *version = host.nm_version().ok();
    }
    measure(&host, states, op, way, settle, trace).map_err(|e| with_log_tail(&host, e))
}

/// A failed run's error with the end of NetworkManager's log, which says
/// why when NetworkManager itself failed (the host is gone afterwards).
fn with_log_tail(host: &Host, error: String) -> String {
    let log = host.nm_log();
    let lines: Vec<&str> = log.lines().collect();
    let tail = lines[lines.len().saturating_sub(LOG_TAIL)..].join("\n");
    format!("{error}\n--- NetworkManager's log, last {LOG_TAIL} lines:\n{tail}")
}

/// How much of NetworkManager's log a failed run reports.
const LOG_TAIL: usize = 60;

/// Prepares the host for `op`, then runs it by `way` with the LAN probing.
fn measure(
    host: &Host,
    states: &States,
    op: Op,
    way: Way,
    settle: Duration,
    trace: bool,
) -> Result<(Outage, Option<String>), String> {
    prepare(host, states, op, way)?;
    let recorder = trace.then(|| Recorder::start(host)).transpose()?;
    let lan = Prober::start(
        "LAN→host probe",
        host.lab().lan_command(probe_argv(STATIC_ADDRESS)?),
    )?;
    let mut command = states.command(host, op, way)?;
    let run = run_timed(way.title(), &mut command, COMMAND_TIMEOUT)?;
    succeeded(way, &run)?;
    lan.wait_steady(run.exited, settle);
    let end = super::now();
    let replies = lan.finish()?;
    let timeline = recorder.map(|r| r.finish(host, &run, end, &replies));
    Ok((outage(&replies, run.started, end), timeline))
}

fn start_host(states: &States, way: Way) -> Result<Host, String> {
    if way != Way::Kernel {
        return Host::start(states.nm, states.baseline.as_deref());
    }
    let host = Host::network_only()?;
    script(&host, "the uplink's address by hand", KERNEL_BASE)?;
    Ok(host)
}

/// Revert and MTU change start from a converted host, adoption from the
/// seed recipe's bridge once STP lets it forward.
fn prepare(host: &Host, states: &States, op: Op, way: Way) -> Result<(), String> {
    match op {
        Op::Convert => return Ok(()),
        Op::Adopt => {
            script(host, "the nmcli recipe", super::tools::NMCLI_RECIPE)?;
            return script(host, "STP's learning (60 s at most)", FORWARDING);
        }
        Op::Revert | Op::Mtu => {}
    }
    if way == Way::Kernel {
        return script(host, "the conversion before", KERNEL_CONVERT);
    }
    let mut command = states.command(host, Op::Convert, Way::Netbridge)?;
    let run = run_timed("netbridge convert before", &mut command, COMMAND_TIMEOUT)?;
    check_exit(Tool::Netbridge, &run, "committed")
}

fn script(host: &Host, what: &str, text: &str) -> Result<(), String> {
    let out = host
        .shell(text)?
        .output()
        .map_err(|e| format!("{what}: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{what} failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

fn succeeded(way: Way, run: &Timed) -> Result<(), String> {
    // Every verb that changed the host reports `committed`.
    if matches!(way, Way::Netbridge | Way::Baseline) {
        return check_exit(Tool::Netbridge, run, "committed");
    }
    if run.code == Some(0) {
        Ok(())
    } else {
        Err(format!("{} failed: {}", way.title(), run.describe()))
    }
}

/// The Markdown table (a column per way, two rows per operation), its
/// notes, and the timelines.
pub fn render(results: &GapResults) -> String {
    let ways = &results.ways;
    let titles: Vec<&str> = ways.iter().map(|w| w.title()).collect();
    let version = nm_version(results);
    let mut out = format!(
        "\n{}\n\n| {} | {} |\n|---|{}\n",
        host_line(&version, results.nm),
        heading(results.runs, &version),
        titles.join(" | "),
        "---|".repeat(ways.len())
    );
    // Operations left out with --ops get no rows.
    let measured = Op::ALL
        .into_iter()
        .filter(|&op| results.cells.iter().any(|(o, _, _)| *o == op));
    for op in measured {
        for (figure, unit, pick) in FIGURES {
            let cells: Vec<String> = ways
                .iter()
                .map(|&way| match cell(results, op, way) {
                    Some(c) => median_worst(c, unit, pick),
                    None => not_run(op, way, results.nm),
                })
                .collect();
            out.push_str(&format!(
                "| {}: {figure} | {} |\n",
                op.title(),
                cells.join(" | ")
            ));
        }
    }
    out.push_str(GAP_NOTES);
    if let Nm::Booted(suite) = results.nm {
        out.push_str(&booted_notes(suite));
    }
    for (op, way, heading, timeline) in &results.traces {
        out.push_str(&format!(
            "\nTimeline, {} by {}, {heading} (ms after the command started):\n\n```\n{timeline}```\n",
            op.title(),
            way.title()
        ));
    }
    out
}

/// `NetworkManager 1.52.0` as the host said, else the suite's series.
fn nm_version(results: &GapResults) -> String {
    match (&results.version, results.nm) {
        (Some(v), _) => format!("NetworkManager {v}"),
        (None, Nm::Booted(suite)) => format!("NetworkManager {}", suite.networkmanager()),
        (None, Nm::Lab) => "NetworkManager (version unknown)".to_owned(),
    }
}

/// The line above the table: which NetworkManager, on which host.
fn host_line(version: &str, nm: Nm) -> String {
    format!("Reply gap on {version} ({}):", nm.describe())
}

/// The table's first header cell.
fn heading(runs: usize, version: &str) -> String {
    format!("reply gap at 5 ms probing, {version}, median / worst of {runs} runs")
}

/// A cell without runs: the operation is not the way's, or the way does
/// not run on this host.
fn not_run(op: Op, way: Way, nm: Nm) -> String {
    match nm {
        Nm::Booted(suite) if op.made_by(way) && !way.runs_on(nm) => {
            format!("not run on {}", suite.networkmanager())
        }
        _ => "not run".to_owned(),
    }
}

/// What differs on a booted host.
fn booted_notes(suite: netbridge_tests::container::Suite) -> String {
    format!(
        "- NetworkManager {nm}: each run boots a fresh copy of the cached Debian {suite} root \
(`netbridge_tests::container`) in a new lab's host namespace, its NetworkManager.service managing \
ens32 with the same static profile; netbridge (this build, copied into the root) and the nmcli \
commands run inside it; the LAN probes it as before. nmstatectl is not in the root: not run on \
{nm}. The kernel steps run in a lab without NetworkManager, as on 1.42 (same kernel, no \
NetworkManager: the same limit).\n",
        nm = suite.networkmanager()
    )
}

type Pick = fn(&Outage) -> f64;

const FIGURES: [(&str, Unit, Pick); 2] = [
    ("longest gap", Unit::Millis, |o| o.longest_gap),
    ("replies lost", Unit::Count, |o| o.lost as f64),
];

const GAP_NOTES: &str = "\nNotes on the reply gap:\n\
- \"Longest gap\": the longest time between two replies to the LAN's 5 ms probes, from the \
command's start until the host answers steadily again (5 ms when nothing is lost); \
\"replies lost\": probes sent meanwhile whose reply never came.\n\
- Revert and MTU change start from the host `netbridge convert` leaves (the same for every \
NetworkManager tool); the kernel steps start from their own make-before-break conversion.\n\
- nmcli commands: the seed recipe for convert (STP left on, as written there); for revert \
`nmcli connection up ens32` then deleting br0's profiles; for the MTU change `nmcli \
connection modify` of both profiles then `nmcli device reapply` of both devices.\n\
- netbridge (baseline binary): another netbridge binary given with `--baseline`, run the same \
way, e.g. the one before a change to the order of steps.\n\
- nmstatectl apply: br0 with port ens32 for convert; br0 absent and ens32 with the address \
and default route for revert; mtu 1400 on both for the MTU change.\n\
- Kernel steps: plain iproute2 in a lab without NetworkManager, in make-before-break order \
(`kernel-order-reference.sh mbb`, and the same order backwards for revert).\n\
- Adoption: `netbridge convert ens32 --adopt` (the transaction `apply` runs for a bridge with \
`adopt = true`) of the bridge the seed's nmcli recipe made (STP on), once it forwards; netbridge's \
own verb, so the other columns say \"not run\".\n";

fn cell(results: &GapResults, op: Op, way: Way) -> Option<&Cell> {
    results
        .cells
        .iter()
        .find(|(o, w, _)| *o == op && *w == way)
        .map(|(_, _, c)| c)
}

fn median_worst(cell: &Cell, unit: Unit, pick: Pick) -> String {
    let values: Vec<f64> = cell.outages.iter().map(pick).collect();
    let text = summarize(&values).map_or_else(
        || "no result".to_owned(),
        |s| {
            format!(
                "{} / {}",
                format_value(s.median, unit),
                format_value(s.max, unit)
            )
        },
    );
    match cell.errors.len() {
        0 => text,
        n => format!("{text} ⚠ {n} failed"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use netbridge_tests::container::Suite;

    fn results(nm: Nm, version: Option<&str>) -> GapResults {
        GapResults {
            runs: 10,
            nm,
            version: version.map(str::to_owned),
            cells: Vec::new(),
            traces: Vec::new(),
            ways: vec![Way::Netbridge, Way::Nmstate, Way::Kernel],
        }
    }

    #[test]
    fn the_trace_kept_is_the_run_that_lost_most_then_waited_longest() {
        let outage = |lost, gap| Outage {
            lost,
            longest_gap: gap,
            ..Outage::default()
        };
        let mut cell = Cell::default();
        cell.keep_if_worst(1, &outage(0, 0.005), "first".to_owned());
        cell.keep_if_worst(2, &outage(0, 0.005), "equal".to_owned());
        assert_eq!(
            cell.worst.as_ref().map(|w| w.0),
            Some(1),
            "the first of equals"
        );
        cell.keep_if_worst(3, &outage(1, 0.010), "lost one".to_owned());
        cell.keep_if_worst(4, &outage(0, 0.030), "longer, none lost".to_owned());
        cell.keep_if_worst(5, &outage(1, 0.015), "lost one, longer".to_owned());
        let (run, _, timeline) = cell.worst.expect("a trace was kept");
        assert_eq!((run, timeline.as_str()), (5, "lost one, longer"));
    }

    #[test]
    fn the_heading_names_the_networkmanager_measured() {
        let booted = render(&results(Nm::Booted(Suite::Trixie), Some("1.52.0")));
        assert!(
            booted.contains(
                "| reply gap at 5 ms probing, NetworkManager 1.52.0, median / worst of 10 runs |"
            ),
            "{booted}"
        );
        assert!(booted.contains("Debian trixie"), "{booted}");
        assert!(booted.contains("nmstatectl is not in the root"), "{booted}");
        let lab = render(&results(Nm::Lab, Some("1.42.4")));
        assert!(lab.contains("NetworkManager 1.42.4, median"), "{lab}");
        assert!(!lab.contains("Debian"), "{lab}");
        // Before any host answered, the suite's series stands in.
        let unknown = render(&results(Nm::Booted(Suite::Sid), None));
        assert!(unknown.contains("NetworkManager 1.58, median"), "{unknown}");
    }

    #[test]
    fn nmstatectl_says_where_it_did_not_run() {
        let trixie = Nm::Booted(Suite::Trixie);
        assert!(!Way::Nmstate.runs_on(trixie));
        assert!(Way::Nmstate.runs_on(Nm::Lab));
        assert!(Way::Nmcli.runs_on(trixie) && Way::Kernel.runs_on(trixie));
        assert_eq!(
            not_run(Op::Convert, Way::Nmstate, trixie),
            "not run on 1.52"
        );
        assert_eq!(not_run(Op::Adopt, Way::Nmstate, trixie), "not run");
        assert_eq!(not_run(Op::Adopt, Way::Kernel, trixie), "not run");
        let mut ran = results(trixie, Some("1.52.0"));
        for way in [Way::Netbridge, Way::Kernel] {
            ran.cells.push((Op::Convert, way, Cell::default()));
        }
        let table = render(&ran);
        assert!(
            table.contains("| convert: longest gap | no result | not run on 1.52 | no result |"),
            "{table}"
        );
    }
}
