//! Processes the harness starts: always stopped by their own pid, also when a
//! measurement fails half-way (deleting a lab's namespaces would not stop
//! them).

use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use super::now;

/// A child process that is killed (by pid) and reaped when dropped.
pub struct Guard {
    child: Option<Child>,
    what: String,
}

impl Guard {
    pub fn spawn(what: &str, command: &mut Command) -> Result<Guard, String> {
        let child = command
            .spawn()
            .map_err(|e| format!("cannot start {what}: {e}"))?;
        Ok(Guard {
            child: Some(child),
            what: what.to_owned(),
        })
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    pub fn child_mut(&mut self) -> Option<&mut Child> {
        self.child.as_mut()
    }

    /// Waits up to `timeout` for the process to exit by itself. Blocks in
    /// `wait` (exact exit times, no polling) while a watchdog thread kills the
    /// process once `timeout` passes; then returns None (killed and reaped).
    pub fn wait_timeout(&mut self, timeout: Duration) -> Result<Option<ExitStatus>, String> {
        let pid = self.pid();
        let Some(child) = self.child.as_mut() else {
            return Err(format!("{} was already reaped", self.what));
        };
        let (done, watch) = mpsc::channel::<()>();
        let watchdog = std::thread::spawn(move || {
            let fired = watch.recv_timeout(timeout) == Err(RecvTimeoutError::Timeout);
            if fired {
                send(pid, Signal::SIGKILL);
            }
            fired
        });
        let status = child.wait();
        let _ = done.send(());
        let fired = watchdog.join().unwrap_or(false);
        let status = status.map_err(|e| format!("cannot wait for {}: {e}", self.what))?;
        self.child = None;
        Ok((!fired).then_some(status))
    }

    /// Sends `signal`, waits up to `grace`, then kills; returns the status
    /// if the process exited by itself or on `signal`.
    pub fn stop(&mut self, signal: Signal, grace: Duration) -> Option<ExitStatus> {
        let pid = self.pid();
        let child = self.child.as_mut()?;
        if let Ok(Some(status)) = child.try_wait() {
            self.child = None;
            return Some(status);
        }
        send(pid, signal);
        self.wait_timeout(grace).ok().flatten()
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        if self.child.is_some() {
            self.stop(Signal::SIGKILL, Duration::from_secs(2));
        }
    }
}

fn send(pid: u32, signal: Signal) {
    // Never 0 or negative: kill() would signal a whole process group.
    if let Ok(raw @ 1..) = i32::try_from(pid) {
        // ESRCH (already gone) is fine: the caller reaps it next.
        let _ = kill(Pid::from_raw(raw), signal);
    }
}

/// Lines of a child's output as they arrive, each stamped with [`now`] when
/// read (pipes add well under a millisecond here).
pub struct Lines {
    rx: Receiver<(f64, String)>,
    pub seen: Vec<(f64, String)>,
    reader: Option<JoinHandle<()>>,
}

impl Lines {
    pub fn read(source: impl Read + Send + 'static) -> Lines {
        let (tx, rx) = mpsc::channel();
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(source).lines().map_while(Result::ok) {
                if tx.send((now(), line)).is_err() {
                    break;
                }
            }
        });
        Lines {
            rx,
            seen: Vec::new(),
            reader: Some(reader),
        }
    }

    /// Waits for a line containing `needle`; returns when it was read.
    pub fn wait_for(&mut self, needle: &str, timeout: Duration) -> Result<(f64, String), String> {
        let end = Instant::now() + timeout;
        loop {
            let left = end.saturating_duration_since(Instant::now());
            match self.rx.recv_timeout(left) {
                Ok((at, line)) => {
                    self.seen.push((at, line.clone()));
                    if line.contains(needle) {
                        return Ok((at, line));
                    }
                }
                Err(_) => {
                    return Err(format!(
                        "no line with {needle:?} within {timeout:?}; saw:\n{}",
                        self.text()
                    ))
                }
            }
        }
    }

    /// Everything, once the writer has exited (the pipe is closed).
    pub fn finish(self) -> String {
        let lines: Vec<String> = self.finish_stamped().into_iter().map(|(_, l)| l).collect();
        lines.join("\n")
    }

    /// Every line with when it was read, once the writer has exited.
    pub fn finish_stamped(mut self) -> Vec<(f64, String)> {
        if let Some(reader) = self.reader.take() {
            let _ = reader.join();
        }
        self.seen.extend(self.rx.try_iter());
        self.seen
    }

    fn text(&self) -> String {
        let lines: Vec<&str> = self.seen.iter().map(|(_, l)| l.as_str()).collect();
        lines.join("\n")
    }
}

/// A command run to completion, timed from just before spawn to its exit.
pub struct Timed {
    pub started: f64,
    pub exited: f64,
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl Timed {
    pub fn wall(&self) -> f64 {
        self.exited - self.started
    }

    /// A one-line summary for error messages.
    pub fn describe(&self) -> String {
        let code = self
            .code
            .map_or_else(|| "killed by a signal".to_owned(), |c| format!("exit {c}"));
        let tail: Vec<&str> = self.stderr.lines().rev().take(3).collect();
        let tail: Vec<&str> = tail.into_iter().rev().collect();
        format!("{code}; stderr: {}", tail.join(" | "))
    }
}

/// Runs `command` (stdin closed, output captured), killing it after `timeout`.
pub fn run_timed(what: &str, command: &mut Command, timeout: Duration) -> Result<Timed, String> {
    command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let started = now();
    let mut guard = Guard::spawn(what, command)?;
    let (stdout, stderr) = match guard.child_mut() {
        Some(child) => (child.stdout.take(), child.stderr.take()),
        None => (None, None),
    };
    let out = stdout.map(Lines::read);
    let err = stderr.map(Lines::read);
    let status = guard.wait_timeout(timeout)?;
    let exited = now();
    let Some(status) = status else {
        guard.stop(Signal::SIGTERM, Duration::from_secs(5));
        return Err(format!(
            "{what} did not finish within {timeout:?}; stopped it"
        ));
    };
    Ok(Timed {
        started,
        exited,
        code: status.code(),
        stdout: out.map(Lines::finish).unwrap_or_default(),
        stderr: err.map(Lines::finish).unwrap_or_default(),
    })
}
