//! A per-step timeline of one change (`netbridge-bench --only gap --trace`):
//! the kernel's link, address, route and neighbour events (`ip monitor` in
//! the host's namespace), the D-Bus calls clients make to NetworkManager
//! (`dbus-monitor` on the host's bus: the lab's, or a booted host's through
//! its socket), NetworkManager's own log (the lab's file or the booted
//! host's journal; device state changes, ports attached), and the LAN
//! probe's missing replies — merged in time order, in milliseconds after the
//! command started. Every source stamps its own lines with the machine's
//! clock, which a container shares.

use std::process::{Command, Stdio};
use std::time::Duration;

use nix::sys::signal::Signal;

use super::host::Host;
use super::probe::INTERVAL_MS;
use super::proc::{Guard, Lines, Timed};
use super::trace::Reply;

/// D-Bus calls that only read state: left out of the timeline.
const READS: [&str; 7] = [
    "Get",
    "GetAll",
    "Introspect",
    "GetSettings",
    "GetDevices",
    "ListConnections",
    "GetAppliedConnection",
];

/// A monitor process and its stamped output.
struct Monitor {
    guard: Guard,
    lines: Lines,
}

impl Monitor {
    fn start(what: &str, mut command: Command) -> Result<Monitor, String> {
        command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null());
        let mut guard = Guard::spawn(what, &mut command)?;
        let stdout = guard
            .child_mut()
            .and_then(|c| c.stdout.take())
            .ok_or_else(|| format!("{what}: no stdout pipe"))?;
        Ok(Monitor {
            guard,
            lines: Lines::read(stdout),
        })
    }

    fn finish(mut self) -> Vec<(f64, String)> {
        self.guard.stop(Signal::SIGTERM, Duration::from_secs(2));
        let mut seen = self.lines.finish_stamped();
        seen.retain(|(_, l)| !l.trim().is_empty());
        seen
    }
}

pub struct Recorder {
    kernel: Monitor,
    bus: Option<Monitor>,
}

impl Recorder {
    /// Starts the monitors (the bus one only where NetworkManager runs) and
    /// gives them a moment to subscribe.
    pub fn start(host: &Host) -> Result<Recorder, String> {
        // `-ts`: each event stamped by ip as it arrives (its output to a
        // pipe is buffered, so the time a line is read says little).
        let mut ip = host.lab().host_command([
            "ip", "-ts", "-o", "monitor", "link", "address", "route", "neigh",
        ]);
        ip.env("TZ", "UTC");
        let kernel = Monitor::start("ip monitor", ip)?;
        let bus = host
            .bus_monitor()
            .map(|command| Monitor::start("dbus-monitor", command))
            .transpose()?;
        std::thread::sleep(Duration::from_millis(300));
        Ok(Recorder { kernel, bus })
    }

    /// The merged timeline from the command's start to `end`.
    pub fn finish(self, host: &Host, run: &Timed, end: f64, replies: &[Reply]) -> String {
        let mut events: Vec<(f64, &'static str, String)> = Vec::new();
        events.push((run.started, "command", "started".to_owned()));
        events.push((run.exited, "command", "exited".to_owned()));
        events.extend(
            self.kernel
                .finish()
                .iter()
                .filter_map(|(_, l)| kernel_event(l)),
        );
        if let Some(bus) = self.bus {
            events.extend(bus_calls(&bus.finish()));
        }
        events.extend(nm_log(&host.nm_log()));
        events.extend(missing_replies(replies, run.started, end));
        events.retain(|(at, _, _)| *at >= run.started - 0.001 && *at <= end);
        events.sort_by(|a, b| a.0.total_cmp(&b.0));
        events
            .iter()
            .map(|(at, source, text)| {
                format!(
                    "{:+8.1} ms  {source:<7} {}\n",
                    (at - run.started) * 1000.0,
                    text.trim()
                )
            })
            .collect()
    }
}

/// `[2026-11-29T19:20:49.328709] 1: lo: <LOOPBACK,UP> ...` (UTC) as an event.
fn kernel_event(line: &str) -> Option<(f64, &'static str, String)> {
    let rest = line.strip_prefix('[')?;
    let (stamp, text) = rest.split_once(']')?;
    Some((utc_seconds(stamp)?, "kernel", text.to_owned()))
}

/// `2026-11-29T19:20:49.328709` (UTC) in seconds since the Unix epoch.
fn utc_seconds(stamp: &str) -> Option<f64> {
    let (date, time) = stamp.split_once('T')?;
    let mut d = date.splitn(3, '-').map(|p| p.parse::<i64>().ok());
    let (y, m, day) = (d.next()??, d.next()??, d.next()??);
    let mut t = time.splitn(3, ':');
    let (h, min) = (
        t.next()?.parse::<i64>().ok()?,
        t.next()?.parse::<i64>().ok()?,
    );
    let sec: f64 = t.next()?.parse().ok()?;
    // Days from the civil date (proleptic Gregorian), after Howard Hinnant.
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (m + if m > 2 { -3 } else { 9 }) + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some((days * 86_400 + h * 3_600 + min * 60) as f64 + sec)
}

/// The method calls dbus-monitor saw (one header line each, stamped by the
/// bus: `method call time=1764443169.123456 sender=... member=Reapply`).
fn bus_calls(lines: &[(f64, String)]) -> Vec<(f64, &'static str, String)> {
    lines
        .iter()
        .filter(|(_, l)| l.starts_with("method call"))
        .filter_map(|(_, l)| {
            let at: f64 = field(l, "time=")?.parse().ok()?;
            let member = field(l, "member=")?;
            if READS.contains(&member) {
                return None;
            }
            let path = field(l, "path=")?.trim_end_matches(';');
            Some((at, "D-Bus", format!("{member} {path}")))
        })
        .collect()
}

fn field<'a>(line: &'a str, key: &str) -> Option<&'a str> {
    line.split_whitespace().find_map(|w| w.strip_prefix(key))
}

/// NetworkManager's log lines, stamped by NetworkManager itself:
/// `<info>  [1764443169.1234] device (ens32): state change: ...`.
fn nm_log(log: &str) -> Vec<(f64, &'static str, String)> {
    log.lines()
        .filter_map(|line| {
            let open = line.find('[')?;
            let close = open + line[open..].find(']')?;
            let at: f64 = line[open + 1..close].parse().ok()?;
            Some((at, "NM", line[close + 1..].to_owned()))
        })
        .collect()
}

/// Each run of missing replies, placed where it began.
fn missing_replies(replies: &[Reply], from: f64, to: f64) -> Vec<(f64, &'static str, String)> {
    let interval = INTERVAL_MS as f64 / 1000.0;
    replies
        .windows(2)
        .filter(|pair| pair[1].at >= from && pair[0].at <= to)
        .filter(|pair| pair[1].seq > pair[0].seq + 1 || pair[1].at - pair[0].at > 2.0 * interval)
        .map(|pair| {
            let lost = pair[1].seq - pair[0].seq - 1;
            (
                pair[0].at,
                "probe",
                format!(
                    "last reply before a gap of {:.1} ms ({lost} lost); next reply at {:+.1} ms",
                    (pair[1].at - pair[0].at) * 1000.0,
                    (pair[1].at - from) * 1000.0
                ),
            )
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bus_calls_keep_changes_and_drop_reads() {
        let lines = vec![
            (0.0, "method call time=1764443169.500000 sender=:1.5 -> destination=org.freedesktop.NetworkManager serial=7 path=/org/freedesktop/NetworkManager; interface=org.freedesktop.NetworkManager; member=ActivateConnection".to_owned()),
            (0.0, "method call time=1764443169.600000 sender=:1.5 -> destination=org.freedesktop.NetworkManager serial=8 path=/org/freedesktop/NetworkManager/Devices/3; interface=org.freedesktop.DBus.Properties; member=Get".to_owned()),
            (0.0, "   string \"x\"".to_owned()),
        ];
        let calls = bus_calls(&lines);
        assert_eq!(calls.len(), 1, "{calls:?}");
        assert_eq!(calls[0].0, 1764443169.5);
        assert_eq!(
            calls[0].2,
            "ActivateConnection /org/freedesktop/NetworkManager"
        );
    }

    #[test]
    fn kernel_events_carry_ips_own_utc_stamp() {
        let event = kernel_event("[2026-11-29T19:20:49.328709] 1: lo: <LOOPBACK,UP>");
        let (at, _, text) = event.unwrap_or_else(|| panic!("a stamped line"));
        assert!((at - 1_795_980_049.328_709).abs() < 1e-6, "{at}");
        assert_eq!(text, " 1: lo: <LOOPBACK,UP>");
        assert_eq!(utc_seconds("1970-01-01T00:00:00.5"), Some(0.5));
        assert_eq!(utc_seconds("2000-03-01T00:00:00"), Some(951_868_800.0));
        assert!(kernel_event("no stamp").is_none());
    }

    #[test]
    fn nm_log_lines_carry_their_own_stamp() {
        let log = "<info>  [1764443169.1234] device (ens32): state change: activated -> deactivating\nno stamp here\n";
        let events = nm_log(log);
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].0, 1764443169.1234);
        assert!(events[0].2.contains("state change"));
    }

    #[test]
    fn missing_replies_are_counted_where_the_gap_begins() {
        let replies = [
            Reply { seq: 1, at: 10.000 },
            Reply { seq: 2, at: 10.005 },
            Reply { seq: 6, at: 10.030 },
        ];
        let gaps = missing_replies(&replies, 9.0, 11.0);
        assert_eq!(gaps.len(), 1);
        assert_eq!(gaps[0].0, 10.005);
        assert!(gaps[0].2.contains("(3 lost)"), "{}", gaps[0].2);
    }
}
