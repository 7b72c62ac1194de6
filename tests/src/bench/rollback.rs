//! Rollback: a netbridge conversion whose check fails after the change.
//!
//! A check given with `--check` must pass before the change, so the gateway
//! is made to stop answering pings only once the change has started (at the
//! `checkpoint` progress line): `icmp_echo_ignore_all=1` in the LAN
//! namespace. That only stops replies *from* the LAN; its probes of the host
//! keep working (checked on every run). Measured: from the failed verdict
//! (the `rolling back` line) until the host answers the LAN again.

use std::io::Write;
use std::process::{ChildStdin, Stdio};
use std::time::Duration;

use netbridge_tests::lab::{Lab, Uplink, GATEWAY, PREFIX_LEN, STATIC_ADDRESS, UPLINK};
use nix::sys::signal::Signal;

use super::probe::{probe_argv, Prober};
use super::proc::{Guard, Lines};
use super::trace::{outage, Outage};
use super::{now, Config};

/// netbridge's exit code for "rolled back, host as it was".
const EXIT_ROLLED_BACK: i32 = 3;
const STEP_TIMEOUT: Duration = Duration::from_secs(60);

#[derive(Debug, Clone, Copy)]
pub struct RollbackSample {
    /// What the LAN saw from the failed verdict on: its `back_at` is when
    /// the host answered again after its last gap of at least
    /// `trace::DOWN_GAP`, counted from the verdict (None: no such gap).
    pub after_verdict: Outage,
    /// netbridge's own account: from the verdict until the original
    /// profile ran again (its `rolling back` and `rolled back` lines).
    pub restore: f64,
    /// What the LAN saw over the whole run, from start to steady again.
    pub lan: Outage,
    /// From the start until netbridge exited (checks' deadline included).
    pub total: f64,
}

#[derive(Debug, Default)]
pub struct RollbackResults {
    pub samples: Vec<RollbackSample>,
    pub errors: Vec<String>,
}

pub fn run_all(config: &Config) -> RollbackResults {
    let mut results = RollbackResults::default();
    for run in 1..=config.runs {
        eprintln!("bench: rollback run {run}/{}", config.runs);
        match run_once(config.settle_timeout) {
            Ok(s) => {
                eprintln!(
                    "bench:   rolled back: restore {:.3} s; after the verdict LAN longest gap {:.0} ms; whole run LAN longest gap {:.0} ms, {} lost",
                    s.restore, s.after_verdict.longest_gap * 1000.0, s.lan.longest_gap * 1000.0, s.lan.lost
                );
                results.samples.push(s);
            }
            Err(e) => {
                eprintln!("bench:   failed: {e}");
                results.errors.push(e);
            }
        }
    }
    results
}

fn run_once(settle: Duration) -> Result<RollbackSample, String> {
    let lab = Lab::start(Uplink::Static).map_err(|e| format!("the lab did not start: {e}"))?;
    let mut switch = IcmpSwitch::start(&lab)?;
    let lan = Prober::start(
        "LAN→host ping",
        lab.lan_command(probe_argv(STATIC_ADDRESS)?),
    )?;
    let check = format!("ping:{GATEWAY}");
    let mut command = lab.netbridge(["convert", UPLINK, "--yes", "--check", &check]);
    command
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let started = now();
    let mut netbridge = Guard::spawn("netbridge convert", &mut command)?;
    let stderr = netbridge.child_mut().and_then(|c| c.stderr.take());
    let mut progress = Lines::read(stderr.ok_or("netbridge: no stderr pipe")?);

    progress.wait_for("checkpoint", STEP_TIMEOUT)?;
    let silenced = switch.set(true)?;
    confirm_lan_probe_unaffected(&lan, silenced)?;
    let (verdict, _) = progress.wait_for("rolling back", STEP_TIMEOUT)?;
    switch.set(false)?;

    let status = netbridge
        .wait_timeout(STEP_TIMEOUT)?
        .ok_or("netbridge did not finish rolling back within 60 s")?;
    let exited = now();
    let text = progress.finish();
    if status.code() != Some(EXIT_ROLLED_BACK) {
        return Err(format!(
            "expected exit {EXIT_ROLLED_BACK} (rolled back), got {status}:\n{text}"
        ));
    }
    let restore = restore_seconds(&text)?;
    lan.wait_steady(exited, settle);
    let end = now();
    let replies = lan.finish()?;
    verify_restored(&lab)?;
    Ok(RollbackSample {
        after_verdict: outage(&replies, verdict, end),
        restore,
        lan: outage(&replies, started, end),
        total: exited - started,
    })
}

/// icmp_echo_ignore_all must stop only the LAN's own replies, or the LAN's
/// outage numbers would be the switch's, not netbridge's.
fn confirm_lan_probe_unaffected(lan: &Prober, since: f64) -> Result<(), String> {
    let end = std::time::Instant::now() + Duration::from_secs(1);
    while std::time::Instant::now() < end {
        if lan.reply_after(since) {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    Err("with icmp_echo_ignore_all=1 in the LAN, the LAN got no reply from the host for 1 s".into())
}

fn verify_restored(lab: &Lab) -> Result<(), String> {
    let addresses = lab
        .ipv4_addresses(UPLINK)
        .map_err(|e| format!("reading {UPLINK}'s addresses: {e}"))?;
    if addresses.contains(&(STATIC_ADDRESS, PREFIX_LEN)) {
        Ok(())
    } else {
        Err(format!("after the rollback {UPLINK} has {addresses:?}"))
    }
}

/// The time between netbridge's `rolling back` and `rolled back` progress
/// lines (`  5.123s  rolling back  ...`).
pub fn restore_seconds(progress: &str) -> Result<f64, String> {
    let at = |step: &str| {
        progress
            .lines()
            .find_map(|line| {
                let (stamp, rest) = line.trim_start().split_once("s ")?;
                rest.trim_start()
                    .starts_with(step)
                    .then(|| stamp.parse::<f64>().ok())?
            })
            .ok_or_else(|| format!("no timed {step:?} line in netbridge's progress:\n{progress}"))
    };
    Ok(at("rolled back")? - at("rolling back")?)
}

/// A shell in the LAN namespace that sets its `icmp_echo_ignore_all` on
/// request: started ahead, so switching takes a pipe write, not a process
/// start, and lands before netbridge's checks begin (tens of ms later).
struct IcmpSwitch {
    stdin: ChildStdin,
    acks: Lines,
    guard: Guard,
}

const SWITCH_SCRIPT: &str =
    "while read v; do echo \"$v\" > /proc/sys/net/ipv4/icmp_echo_ignore_all && echo ok; done";

impl IcmpSwitch {
    fn start(lab: &Lab) -> Result<IcmpSwitch, String> {
        let mut command = lab.lan_command(["sh", "-c", SWITCH_SCRIPT]);
        command
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null());
        let mut guard = Guard::spawn("the LAN's ICMP switch", &mut command)?;
        let child = guard.child_mut().ok_or("the ICMP switch did not start")?;
        let stdin = child.stdin.take().ok_or("the ICMP switch has no stdin")?;
        let stdout = child.stdout.take().ok_or("the ICMP switch has no stdout")?;
        Ok(IcmpSwitch {
            stdin,
            acks: Lines::read(stdout),
            guard,
        })
    }

    /// Returns when the sysctl was written.
    fn set(&mut self, ignore: bool) -> Result<f64, String> {
        writeln!(self.stdin, "{}", u8::from(ignore))
            .and_then(|()| self.stdin.flush())
            .map_err(|e| format!("the ICMP switch is gone: {e}"))?;
        self.acks
            .wait_for("ok", Duration::from_secs(2))
            .map(|(at, _)| at)
    }
}

impl Drop for IcmpSwitch {
    fn drop(&mut self) {
        self.guard.stop(Signal::SIGTERM, Duration::from_secs(1));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn restore_time_comes_from_the_progress_lines() {
        let progress = "  0.033s  checkpoint   /org/x on ens32\n  \
                        5.100s  rolling back checks failed after the change\n  \
                        5.350s  rolled back  ens32 runs profile 'ens32' again (0.25 s)\n";
        let restore = restore_seconds(progress).unwrap_or(f64::NAN);
        assert!((restore - 0.25).abs() < 1e-9, "{restore}");
        assert!(restore_seconds("nothing").is_err());
    }
}
