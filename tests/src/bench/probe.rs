//! A prober: ICMP echo every 5 ms from inside a lab namespace, its replies
//! parsed as they arrive so the harness can wait for the host to answer steadily.

use std::ffi::OsString;
use std::io::{BufRead, BufReader};
use std::net::Ipv4Addr;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;

use super::now;
use super::proc::{Guard, Lines};
use super::trace::{self, parse_reply, Reply, SeqUnwrapper};

/// One echo request every 5 ms.
pub const INTERVAL_MS: u64 = 5;
/// Gaps up to this long still count as "answering steadily".
const STEADY_GAP: f64 = 0.05;
/// How long the replies must be steady before a measurement ends.
const STEADY_WINDOW: f64 = 0.3;
/// The prober stops by itself after this many seconds, whatever happens to
/// the harness: the probing stays bounded.
pub const DEADLINE_SECS: u64 = 300;

/// The prober command for `target` (only ever a lab address): this very
/// binary's hidden `probe` verb (see [`super::icmp`]), to be run inside a
/// lab namespace.
pub fn probe_argv(target: Ipv4Addr) -> Result<Vec<OsString>, String> {
    let exe = std::env::current_exe()
        .map_err(|e| format!("cannot find netbridge-bench's own binary: {e}"))?;
    Ok(vec![
        exe.into_os_string(),
        "probe".into(),
        target.to_string().into(),
    ])
}

pub struct Prober {
    what: String,
    guard: Guard,
    replies: Arc<Mutex<Vec<Reply>>>,
    reader: Option<JoinHandle<()>>,
    errors: Option<Lines>,
}

impl Prober {
    /// Starts `command` (a [`probe_argv`] in a lab namespace) and waits for
    /// its first reply, so that a measurement starts with a live prober.
    pub fn start(what: &str, command: Command) -> Result<Prober, String> {
        let prober = Prober::spawn(what, command)?;
        prober.wait_first_reply(Duration::from_secs(5))?;
        Ok(prober)
    }

    /// Starts `command` without waiting for a reply (the target may be
    /// unreachable for a while).
    pub fn spawn(what: &str, mut command: Command) -> Result<Prober, String> {
        command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut guard = Guard::spawn(what, &mut command)?;
        let (stdout, stderr) = match guard.child_mut() {
            Some(child) => (child.stdout.take(), child.stderr.take()),
            None => (None, None),
        };
        let stdout = stdout.ok_or_else(|| format!("{what}: no stdout pipe"))?;
        let replies = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&replies);
        let reader = std::thread::spawn(move || collect(stdout, &sink));
        Ok(Prober {
            what: what.to_owned(),
            guard,
            replies,
            reader: Some(reader),
            errors: stderr.map(Lines::read),
        })
    }

    fn wait_first_reply(&self, timeout: Duration) -> Result<(), String> {
        let end = Instant::now() + timeout;
        while Instant::now() < end {
            if !self.snapshot().is_empty() {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        Err(format!("{}: no echo reply within {timeout:?}", self.what))
    }

    /// The replies so far.
    pub fn snapshot(&self) -> Vec<Reply> {
        self.replies
            .lock()
            .map(|r| r.clone())
            .unwrap_or_else(|poisoned| poisoned.into_inner().clone())
    }

    /// Whether a reply arrived after `instant` (seconds since the epoch).
    pub fn reply_after(&self, instant: f64) -> bool {
        self.snapshot().last().is_some_and(|r| r.at > instant)
    }

    /// Waits until the host has answered steadily for a moment, no earlier
    /// than `STEADY_WINDOW` after `after`; false if `timeout` passed first.
    pub fn wait_steady(&self, after: f64, timeout: Duration) -> bool {
        let end = Instant::now() + timeout;
        loop {
            let t = now();
            if t >= after + STEADY_WINDOW
                && trace::steady(&self.snapshot(), t, STEADY_WINDOW, STEADY_GAP)
            {
                return true;
            }
            if Instant::now() >= end {
                return false;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Stops ping (SIGINT, by pid) and returns every reply it saw.
    pub fn finish(mut self) -> Result<Vec<Reply>, String> {
        self.guard.stop(Signal::SIGINT, Duration::from_secs(2));
        if let Some(reader) = self.reader.take() {
            let _ = reader.join();
        }
        let replies = self.snapshot();
        let errors = self.errors.take().map(Lines::finish).unwrap_or_default();
        if replies.is_empty() {
            return Err(format!(
                "{}: no replies at all; ping said: {errors}",
                self.what
            ));
        }
        Ok(replies)
    }
}

fn collect(stdout: impl std::io::Read, sink: &Mutex<Vec<Reply>>) {
    let mut seqs = SeqUnwrapper::default();
    for line in BufReader::new(stdout).lines().map_while(Result::ok) {
        let Some((seq, at)) = parse_reply(&line) else {
            continue;
        };
        let reply = Reply {
            seq: seqs.unwrap(seq),
            at,
        };
        if let Ok(mut replies) = sink.lock() {
            replies.push(reply);
        }
    }
}
