//! A long-running lab process that the lab started and therefore may stop.

use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use super::cmd::describe;
use super::LabError;

/// How long a daemon gets to exit after SIGTERM before it gets SIGKILL.
const STOP_GRACE: Duration = Duration::from_secs(10);

pub(crate) struct Daemon {
    name: &'static str,
    child: Child,
    log: PathBuf,
}

impl Daemon {
    /// Starts `cmd` with stdout and stderr appended to `log`.
    ///
    /// The commands the lab builds `exec` their way to the daemon (`ip netns
    /// exec`, `unshare` and `sh -c 'exec ...'` all replace themselves), so the
    /// child's pid is the daemon's pid.
    pub(crate) fn spawn(
        name: &'static str,
        cmd: &mut Command,
        log: &Path,
    ) -> Result<Self, LabError> {
        let out = open_log(log)?;
        let err = out
            .try_clone()
            .map_err(|e| LabError::io("cannot duplicate the log file", log, e))?;
        cmd.stdin(Stdio::null()).stdout(out).stderr(err);
        Self::spawn_configured(name, cmd, log)
    }

    /// Starts `cmd` whose stdio the caller has set up; `log` is where the
    /// daemon writes, for error messages.
    pub(crate) fn spawn_configured(
        name: &'static str,
        cmd: &mut Command,
        log: &Path,
    ) -> Result<Self, LabError> {
        let child = cmd.spawn().map_err(|source| LabError::Spawn {
            command: describe(cmd),
            source,
        })?;
        Ok(Daemon {
            name,
            child,
            log: log.to_owned(),
        })
    }

    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    pub(crate) fn child_mut(&mut self) -> &mut Child {
        &mut self.child
    }

    /// Fails with the log's tail if the daemon has exited.
    pub(crate) fn check_running(&mut self) -> Result<(), LabError> {
        match self.child.try_wait() {
            Ok(None) => Ok(()),
            Ok(Some(status)) => Err(self.exited(status.to_string())),
            Err(e) => Err(self.exited(format!("cannot wait for it: {e}"))),
        }
    }

    fn exited(&self, status: String) -> LabError {
        LabError::DaemonExited {
            daemon: self.name,
            status,
            log_tail: log_tail(&self.log, 40),
        }
    }

    /// SIGTERM, then SIGKILL if it has not exited within the grace period.
    /// Idempotent: a reaped child is not signalled again, so a recycled pid is
    /// never hit.
    pub(crate) fn stop(&mut self) {
        if self.reaped_within(Duration::ZERO) {
            return;
        }
        self.signal(Signal::SIGTERM);
        if self.reaped_within(STOP_GRACE) {
            return;
        }
        eprintln!(
            "lab: {} (pid {}) ignored SIGTERM for {:?}; sending SIGKILL",
            self.name,
            self.pid(),
            STOP_GRACE
        );
        self.signal(Signal::SIGKILL);
        let _ = self.child.wait();
    }

    fn signal(&self, signal: Signal) {
        if let Ok(raw) = i32::try_from(self.child.id()) {
            // ESRCH cannot happen for an unreaped child; other errors leave
            // the bounded wait to report the daemon as still running.
            let _ = kill(Pid::from_raw(raw), signal);
        }
    }

    fn reaped_within(&mut self, limit: Duration) -> bool {
        let deadline = Instant::now() + limit;
        loop {
            match self.child.try_wait() {
                Ok(Some(_)) | Err(_) => return true,
                Ok(None) if Instant::now() >= deadline => return false,
                Ok(None) => std::thread::sleep(Duration::from_millis(20)),
            }
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.stop();
    }
}

fn open_log(path: &Path) -> Result<File, LabError> {
    OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(|e| LabError::io("cannot open the log file", path, e))
}

/// The last `lines` lines of a log file, or a note why there are none.
pub(crate) fn log_tail(path: &Path, lines: usize) -> String {
    match std::fs::read(path) {
        Ok(bytes) => {
            let text = String::from_utf8_lossy(&bytes);
            let all: Vec<&str> = text.lines().collect();
            all[all.len().saturating_sub(lines)..].join("\n")
        }
        Err(e) => format!("(cannot read {}: {e})", path.display()),
    }
}

/// Running, as opposed to gone or a zombie waiting for its reaper.
pub(crate) fn is_alive(pid: u32) -> bool {
    let state = stat_fields(pid).and_then(|fields| fields.into_iter().next());
    !matches!(state.as_deref(), Some("Z") | Some("X") | None)
}

/// The parent of `pid`, `None` if `pid` is gone.
pub(crate) fn parent_pid(pid: u32) -> Option<u32> {
    stat_fields(pid)?.get(1)?.parse().ok()
}

/// The fields of /proc/PID/stat after the parenthesised command name
/// (which may contain spaces or parentheses itself): state, ppid, ...
fn stat_fields(pid: u32) -> Option<Vec<String>> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let (_, rest) = stat.rsplit_once(')')?;
    Some(rest.split_whitespace().map(str::to_owned).collect())
}
