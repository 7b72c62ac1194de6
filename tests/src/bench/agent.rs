//! The resident agent (`netbridge-agent`): start-up time to ready, and
//! memory, CPU time and wake-ups while idle. It runs in a lab's host
//! namespace like netbridge; ready is its sd_notify `READY=1` on a
//! `NOTIFY_SOCKET` the harness listens on, as systemd would.
//!
//! Two starts, each in a fresh lab: with an empty configuration (start-up
//! alone), and with one that bridges ens32 (ready once applied), after which
//! the agent is watched idle — the state it spends its life in.

use std::ffi::OsStr;
use std::os::unix::net::UnixDatagram;
use std::process::Stdio;
use std::time::{Duration, Instant};

use netbridge_tests::lab::{netbridge_agent_bin, Lab, Uplink};
use nix::sys::signal::Signal;

use super::proc::{Guard, Lines};

const READY_TIMEOUT: Duration = Duration::from_secs(30);
/// Linux reports utime/stime in USER_HZ, which is 100 on every architecture.
const USER_HZ: f64 = 100.0;

#[derive(Debug, Clone)]
pub enum AgentResult {
    /// The agent cannot run as a foreground daemon yet.
    Unavailable(String),
    Failed(String),
    Measured(AgentStats),
}

/// A configuration with nothing to do.
const EMPTY_CONFIG: &str = "";
/// The agent's counterpart of `netbridge convert ens32`.
const CONVERT_CONFIG: &str = "[[bridge]]\nname = \"br0\"\nuplink = \"ens32\"\n";

#[derive(Debug, Clone)]
pub struct AgentStats {
    /// From spawn until `READY=1`, with an empty configuration, per run.
    pub startup: Vec<f64>,
    /// From spawn until `READY=1`, bridging ens32 on the way, per run.
    pub startup_converting: Vec<f64>,
    /// Watched once, after the last run's start (a minute each is too long
    /// to repeat).
    pub idle: IdleStats,
}

/// How the agent sat idle after applying its configuration.
#[derive(Debug, Clone, Copy, Default)]
pub struct IdleStats {
    pub secs: f64,
    /// VmRSS at the end of the idle period, and VmHWM (peak).
    pub rss_kib: u64,
    pub peak_kib: u64,
    /// utime + stime spent while idle.
    pub cpu_secs: f64,
    /// Context switches of all its threads while idle: each is a wake-up.
    pub wakeups: u64,
}

pub fn run(runs: usize, idle: Duration) -> AgentResult {
    if let Err(e) = netbridge_agent_bin() {
        return AgentResult::Unavailable(e.to_string());
    }
    let lab = match Lab::start(Uplink::Static) {
        Ok(lab) => lab,
        Err(e) => return AgentResult::Failed(format!("the lab did not start: {e}")),
    };
    if let Err(why) = available(&lab) {
        return AgentResult::Unavailable(why);
    }
    drop(lab);
    match measure_runs(runs, idle) {
        Ok(stats) => AgentResult::Measured(stats),
        Err(e) => AgentResult::Failed(e),
    }
}

/// `runs` starts of each kind, each in a fresh lab; the last converting
/// start is watched idle.
fn measure_runs(runs: usize, idle: Duration) -> Result<AgentStats, String> {
    let fresh = || Lab::start(Uplink::Static).map_err(|e| format!("the lab did not start: {e}"));
    let mut stats = AgentStats {
        startup: Vec::new(),
        startup_converting: Vec::new(),
        idle: IdleStats::default(),
    };
    for run in 1..=runs {
        eprintln!("bench: agent run {run}/{runs}");
        stats
            .startup
            .push(measure(&fresh()?, EMPTY_CONFIG, None)?.0);
        let watch = (run == runs).then_some(idle);
        let (startup, watched) = measure(&fresh()?, CONVERT_CONFIG, watch)?;
        stats.startup_converting.push(startup);
        if let Some(watched) = watched {
            stats.idle = watched;
        }
    }
    Ok(stats)
}

/// A foreground daemon has a `--help` that explains it; today's placeholder
/// binary prints nothing.
fn available(lab: &Lab) -> Result<(), String> {
    let out = lab
        .netbridge_agent(["--help"])
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run netbridge-agent --help: {e}"))?;
    let help = String::from_utf8_lossy(&out.stdout);
    if out.status.success() && help.contains("Usage") {
        Ok(())
    } else {
        Err("`netbridge-agent --help` shows no usage: the agent is not written yet".into())
    }
}

/// Starts the agent with `config`, waits for ready, watches it idle (if
/// asked), stops it (by pid). Returns the start-up time and the idle stats.
pub fn measure(
    lab: &Lab,
    config: &str,
    idle: Option<Duration>,
) -> Result<(f64, Option<IdleStats>), String> {
    let dir = tempfile::Builder::new()
        .prefix("netbridge-bench-agent-")
        .tempdir()
        .map_err(|e| format!("cannot create a temporary directory: {e}"))?;
    let socket_path = dir.path().join("notify.sock");
    let socket = UnixDatagram::bind(&socket_path)
        .map_err(|e| format!("cannot bind {}: {e}", socket_path.display()))?;
    let config_file = dir.path().join("netbridge.toml");
    std::fs::write(&config_file, config)
        .map_err(|e| format!("cannot write {}: {e}", config_file.display()))?;
    let mut command = lab.netbridge_agent([OsStr::new("--config"), config_file.as_os_str()]);
    command
        .env("NOTIFY_SOCKET", &socket_path)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let spawned = Instant::now();
    let mut agent = Guard::spawn("netbridge-agent", &mut command)?;
    let stderr = agent
        .child_mut()
        .and_then(|c| c.stderr.take())
        .map(Lines::read);
    let ready = wait_ready(&socket, &mut agent, spawned);
    let result = ready.and_then(|startup| match idle {
        Some(idle) => Ok((startup, Some(watch_idle(agent.pid(), idle)?))),
        None => Ok((startup, None)),
    });
    agent.stop(Signal::SIGTERM, Duration::from_secs(5));
    let log = stderr.map(Lines::finish).unwrap_or_default();
    result.map_err(|e| format!("{e}; agent's stderr: {log}"))
}

/// Seconds from `start` (the spawn) until the agent says `READY=1`.
fn wait_ready(socket: &UnixDatagram, agent: &mut Guard, start: Instant) -> Result<f64, String> {
    socket
        .set_read_timeout(Some(Duration::from_millis(50)))
        .map_err(|e| format!("notify socket: {e}"))?;
    let mut buf = [0u8; 4096];
    while start.elapsed() < READY_TIMEOUT {
        if let Ok(n) = socket.recv(&mut buf) {
            let message = String::from_utf8_lossy(&buf[..n]);
            if message.lines().any(|l| l == "READY=1") {
                return Ok(start.elapsed().as_secs_f64());
            }
        }
        if let Some(Ok(Some(status))) = agent.child_mut().map(|c| c.try_wait()) {
            return Err(format!(
                "netbridge-agent exited before it was ready: {status}"
            ));
        }
    }
    Err(format!(
        "no READY=1 on NOTIFY_SOCKET within {READY_TIMEOUT:?}"
    ))
}

fn watch_idle(pid: u32, idle: Duration) -> Result<IdleStats, String> {
    let before = ProcSample::read(pid)?;
    std::thread::sleep(idle);
    let after = ProcSample::read(pid)?;
    Ok(IdleStats {
        secs: idle.as_secs_f64(),
        rss_kib: after.rss_kib,
        peak_kib: after.peak_kib,
        cpu_secs: after.ticks.saturating_sub(before.ticks) as f64 / USER_HZ,
        wakeups: after.switches.saturating_sub(before.switches),
    })
}

/// What /proc says about a process at one moment.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ProcSample {
    pub rss_kib: u64,
    pub peak_kib: u64,
    /// utime + stime, in USER_HZ ticks.
    pub ticks: u64,
    /// voluntary + involuntary context switches, all threads.
    pub switches: u64,
}

impl ProcSample {
    pub fn read(pid: u32) -> Result<ProcSample, String> {
        let read = |path: String| {
            std::fs::read_to_string(&path).map_err(|e| format!("cannot read {path}: {e}"))
        };
        let status = read(format!("/proc/{pid}/status"))?;
        let stat = read(format!("/proc/{pid}/stat"))?;
        let field = |name: &str| {
            status_field(&status, name).ok_or_else(|| format!("no {name} in /proc/{pid}/status"))
        };
        Ok(ProcSample {
            rss_kib: field("VmRSS")?,
            peak_kib: field("VmHWM")?,
            ticks: stat_ticks(&stat).ok_or_else(|| format!("cannot parse /proc/{pid}/stat"))?,
            switches: thread_switches(pid)?,
        })
    }
}

fn thread_switches(pid: u32) -> Result<u64, String> {
    let dir = format!("/proc/{pid}/task");
    let tasks = std::fs::read_dir(&dir).map_err(|e| format!("cannot list {dir}: {e}"))?;
    let mut total = 0;
    for task in tasks.flatten() {
        // A thread that exits meanwhile has nothing more to count.
        let Ok(status) = std::fs::read_to_string(task.path().join("status")) else {
            continue;
        };
        total += status_field(&status, "voluntary_ctxt_switches").unwrap_or(0);
        total += status_field(&status, "nonvoluntary_ctxt_switches").unwrap_or(0);
    }
    Ok(total)
}

/// The number in a `/proc/PID/status` line `NAME:  1234 kB`.
pub fn status_field(status: &str, name: &str) -> Option<u64> {
    status.lines().find_map(|line| {
        let (key, value) = line.split_once(':')?;
        (key == name).then(|| value.split_whitespace().next()?.parse().ok())?
    })
}

/// utime + stime from `/proc/PID/stat` (fields 14 and 15; the command name
/// in field 2 may contain spaces and parentheses, so count from the last ')').
pub fn stat_ticks(stat: &str) -> Option<u64> {
    let (_, rest) = stat.rsplit_once(')')?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(utime + stime)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_status_fields() {
        let status = "Name:\tnetbridge-agent\nVmHWM:\t    6012 kB\nVmRSS:\t    5880 kB\n\
                      voluntary_ctxt_switches:\t12\nnonvoluntary_ctxt_switches:\t3\n";
        assert_eq!(status_field(status, "VmRSS"), Some(5880));
        assert_eq!(status_field(status, "VmHWM"), Some(6012));
        assert_eq!(status_field(status, "voluntary_ctxt_switches"), Some(12));
        assert_eq!(status_field(status, "VmSwap"), None);
    }

    #[test]
    fn reads_cpu_ticks_past_odd_command_names() {
        let stat = "4242 (net (bridge) x) S 1 4242 4242 0 -1 4194560 100 0 0 0 7 5 0 0 20 0 1 0";
        assert_eq!(stat_ticks(stat), Some(12));
        assert_eq!(stat_ticks("garbage"), None);
    }

    #[test]
    fn samples_this_process() {
        let sample = ProcSample::read(std::process::id());
        assert!(sample.is_ok_and(|s| s.rss_kib > 0 && s.switches > 0));
    }
}
