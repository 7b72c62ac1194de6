//! Exit statuses and the shape of errors, for people and for `--json`.

use std::io::Write;

use serde::Serialize;

use crate::journal::JournalError;
use crate::nm::NmError;
use crate::operations::PrepareError;
use crate::recovery::RecoveryError;
use crate::report::{Progress, Step};
use crate::transaction::TxError;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Exit {
    Ok = 0,
    Internal = 1,
    BadInput = 2,
    RolledBack = 3,
    NmUnavailable = 4,
    RollbackFailed = 5,
    Busy = 6,
    /// The change is committed, but a step after it (libvirt, QEMU's
    /// bridge.conf) failed: the bridge is in place, that step is not.
    AfterCommit = 8,
    /// `--confirm SECS`: the change passed its checks and awaits
    /// `netbridge confirm`.
    AwaitingConfirm = 9,
}

impl Exit {
    /// Every status, in order: `--help` and the manual list them from here.
    pub const ALL: [Exit; 9] = [
        Exit::Ok,
        Exit::Internal,
        Exit::BadInput,
        Exit::RolledBack,
        Exit::NmUnavailable,
        Exit::RollbackFailed,
        Exit::Busy,
        Exit::AfterCommit,
        Exit::AwaitingConfirm,
    ];

    pub fn code(self) -> i32 {
        self as i32
    }

    /// What the status tells the caller, for `--help` and the manual.
    pub fn meaning(self) -> &'static str {
        match self {
            Exit::Ok => "success (also: nothing to do, dry run)",
            Exit::Internal => "internal error",
            Exit::BadInput => "bad input or refused before anything changed",
            Exit::RolledBack => {
                "the change failed its checks and was rolled back: the host is as it was"
            }
            Exit::NmUnavailable => {
                "NetworkManager is not running, not reachable or refused permission"
            }
            Exit::RollbackFailed => {
                "a rollback did not complete: check the host (`netbridge status`)"
            }
            Exit::Busy => "another netbridge process is changing this host",
            Exit::AfterCommit => {
                "the change is committed, but a step after it failed (the libvirt network or /etc/qemu/bridge.conf): the bridge is in place; run the same command again to retry that step"
            }
            Exit::AwaitingConfirm => {
                "--confirm: the change passed its checks and runs in memory only; `netbridge confirm` (from a new connection) commits it before the deadline, otherwise it rolls back by itself"
            }
        }
    }
}

/// An error that ends a verb, with the exit status it means.
#[derive(Debug)]
pub struct Fatal {
    pub exit: Exit,
    pub message: String,
}

impl Fatal {
    pub fn new(exit: Exit, message: impl Into<String>) -> Self {
        Fatal {
            exit,
            message: message.into(),
        }
    }
}

impl From<NmError> for Fatal {
    fn from(e: NmError) -> Self {
        let exit = match e {
            NmError::NoBus { .. }
            | NmError::NotRunning { .. }
            | NmError::PermissionDenied { .. } => Exit::NmUnavailable,
            ref other if other.is_nm_gone() => Exit::NmUnavailable,
            _ => Exit::Internal,
        };
        Fatal::new(exit, e.to_string())
    }
}

impl From<JournalError> for Fatal {
    fn from(e: JournalError) -> Self {
        let exit = match e {
            JournalError::Busy { .. } => Exit::Busy,
            _ => Exit::Internal,
        };
        Fatal::new(exit, e.to_string())
    }
}

impl From<RecoveryError> for Fatal {
    fn from(e: RecoveryError) -> Self {
        match e {
            RecoveryError::Journal(j) => j.into(),
            undo @ RecoveryError::Undo(_) => Fatal::new(Exit::RollbackFailed, undo.to_string()),
            waiting @ RecoveryError::AwaitingConfirm { .. } => {
                Fatal::new(Exit::Busy, waiting.to_string())
            }
        }
    }
}

impl<P: std::error::Error + 'static> From<PrepareError<P>> for Fatal {
    fn from(e: PrepareError<P>) -> Self {
        match e {
            PrepareError::Nm(nm) => nm.into(),
            PrepareError::Identity(e) => Fatal::new(Exit::Internal, e.to_string()),
            other => Fatal::new(Exit::BadInput, other.to_string()),
        }
    }
}

impl From<TxError> for Fatal {
    fn from(e: TxError) -> Self {
        let exit = match e {
            TxError::Journal(JournalError::Busy { .. }) => Exit::Busy,
            TxError::Rollback { .. } => Exit::RollbackFailed,
            TxError::Journal(_) | TxError::Checkpoint(_) | TxError::Hold { .. } => Exit::Internal,
        };
        Fatal::new(exit, e.to_string())
    }
}

/// `println!` that never panics: a closed stdout (a pipe into `head`, an SSH
/// session gone) must not crash a change or hide its exit code.
macro_rules! say {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout(), $($arg)*);
    }};
}
pub(crate) use say;

/// The machine-readable result every changing verb prints with `--json`:
/// the same envelope around each verb's own fields.
#[derive(Debug, Serialize)]
struct Envelope<'b, B> {
    command: &'static str,
    result: &'static str,
    exit_code: i32,
    error: Option<String>,
    #[serde(flatten)]
    body: &'b B,
    steps: Vec<Step>,
    seconds: f64,
}

/// `-q`: no progress steps, only errors and the result.
static QUIET: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

pub fn set_quiet(quiet: bool) {
    QUIET.store(quiet, std::sync::atomic::Ordering::Relaxed);
}

/// Runs a verb: progress on stderr (or silent with `--json` or `-q`), errors printed
/// once, and with `--json` one document on stdout whatever happened. The verb
/// fills `body` and returns its result word (committed, no-op, ...) and exit.
pub async fn run_verb<B: Serialize>(
    command: &'static str,
    json: bool,
    mut body: B,
    verb: impl AsyncFnOnce(&Progress, &mut B) -> Result<(&'static str, Exit), Fatal>,
) -> Exit {
    let progress = Progress::new(!json && !QUIET.load(std::sync::atomic::Ordering::Relaxed));
    let (result, exit, error) = match verb(&progress, &mut body).await {
        Ok((result, exit)) => (result, exit, None),
        Err(fatal) => {
            if !json {
                print_error(&fatal);
            }
            ("error", fatal.exit, Some(fatal.message))
        }
    };
    if json {
        print_json(&Envelope {
            command,
            result,
            exit_code: exit.code(),
            error,
            body: &body,
            steps: progress.steps(),
            seconds: progress.elapsed(),
        });
    }
    exit
}

/// Prints a JSON document on stdout. Write errors are ignored: the change is
/// already decided, and a vanished terminal must not turn it into a crash.
pub fn print_json<T: Serialize>(doc: &T) {
    let mut out = std::io::stdout().lock();
    let _ = serde_json::to_writer_pretty(&mut out, doc);
    let _ = writeln!(out);
}

pub fn print_error(fatal: &Fatal) {
    let _ = writeln!(std::io::stderr(), "netbridge: error: {}", fatal.message);
}

/// What a person reads when a change awaits `netbridge confirm`.
pub fn say_awaiting(what: &str, seconds: u32) {
    say!(
        "{what} passed its checks and runs in memory only. From a NEW connection, within {seconds} s: `netbridge confirm` commits it, `netbridge rollback` undoes it now; without either, NetworkManager rolls it back by itself (`netbridge status` shows the deadline)."
    );
}

/// The checks a plan runs, for the plan shown before a change.
pub fn describe_checks(probes: &[crate::checks::Probe]) -> String {
    if probes.is_empty() {
        return "none: nothing but NetworkManager's activation proves the change".to_owned();
    }
    probes
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

/// A plan's nmcli equivalent, one command a line.
pub fn say_nmcli(commands: &[String]) {
    say!("Equivalent nmcli commands (for review; netbridge talks to NetworkManager over D-Bus):");
    for command in commands {
        say!("  {command}");
    }
}

/// Refuses at once without a terminal: a script must not hang on a
/// question, nor wait for checks that run only to be asked about.
pub fn require_terminal() -> Result<(), Fatal> {
    use std::io::IsTerminal;
    if std::io::stdin().is_terminal() {
        return Ok(());
    }
    Err(Fatal::new(
        Exit::BadInput,
        "not on a terminal: add --yes to change the network without confirmation (or --dry-run to review); nothing was changed",
    ))
}

/// Asks on a terminal before a change; refuses without one rather than hang
/// a script. `show` prints what is about to happen.
pub async fn confirm(question: &str, json: bool, show: impl FnOnce()) -> Result<bool, Fatal> {
    use tokio::io::AsyncBufReadExt;
    require_terminal()?;
    if !json {
        show();
    }
    let _ = write!(std::io::stderr(), "{question} [y/N] ");
    let mut answer = String::new();
    tokio::io::BufReader::new(tokio::io::stdin())
        .read_line(&mut answer)
        .await
        .map_err(|e| Fatal::new(Exit::Internal, format!("reading the answer: {e}")))?;
    Ok(matches!(answer.trim(), "y" | "Y" | "yes" | "YES" | "Yes"))
}
