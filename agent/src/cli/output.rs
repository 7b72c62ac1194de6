//! Exit statuses and the shape of errors, for people and for `--json`.

use std::io::Write;

use serde::Serialize;

use crate::journal::JournalError;
use crate::nm::NmError;
use crate::operations::PrepareError;
use crate::recovery::RecoveryError;
use crate::report::{CheckResults, Progress, Step, Verdict};
use crate::retry::ErrorKind;
use crate::transaction::TxError;

/// The exit statuses, one class of outcome each; `--json` names the class of
/// an error with [`Exit::kind`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    Ok = 0,
    /// A bug in netbridge, and nothing else.
    Internal = 1,
    Refused = 2,
    RolledBack = 3,
    NmUnavailable = 4,
    RollbackIncomplete = 5,
    Busy = 6,
    Permission = 7,
    /// The change is committed, but a step after it (libvirt, QEMU's
    /// bridge.conf) failed: the bridge is in place, that step is not.
    AfterCommit = 8,
    /// `--confirm SECS`: the change passed its checks and awaits
    /// `netbridge confirm`.
    AwaitingConfirm = 9,
}

impl Exit {
    /// Every status, in order: `--help`, the manual and the README list them from here.
    pub const ALL: [Exit; 10] = [
        Exit::Ok,
        Exit::Internal,
        Exit::Refused,
        Exit::RolledBack,
        Exit::NmUnavailable,
        Exit::RollbackIncomplete,
        Exit::Busy,
        Exit::Permission,
        Exit::AfterCommit,
        Exit::AwaitingConfirm,
    ];

    pub fn code(self) -> i32 {
        self as i32
    }

    /// What the status tells the caller, for `--help` and the manual.
    pub fn meaning(self) -> &'static str {
        match self {
            Exit::Ok => "done, or nothing to do (also a dry run)",
            Exit::Internal => "a bug in netbridge (please report it)",
            Exit::Refused => {
                "refused before any change: bad input, a failing pre-check, a declined prompt"
            }
            Exit::RolledBack => {
                "the change failed its checks and was rolled back: the host is as it was"
            }
            Exit::NmUnavailable => "NetworkManager or the system bus is unavailable",
            Exit::RollbackIncomplete => {
                "a rollback did not complete: check the host (`netbridge status`)"
            }
            Exit::Busy => "another netbridge process is changing this host",
            Exit::Permission => {
                "permission denied: run as root (or as a user polkit allows to change the network)"
            }
            Exit::AfterCommit => {
                "the change is committed, but a step after it failed (the libvirt network or /etc/qemu/bridge.conf): the bridge is in place; run the same command again to retry that step"
            }
            Exit::AwaitingConfirm => {
                "--confirm: the change passed its checks and is on trial, nothing written to disk; `netbridge confirm` (from a new connection) commits it before the deadline, otherwise it rolls back by itself"
            }
        }
    }

    /// The class of an error that ends with this status (`error.kind`);
    /// none for the statuses that are no error.
    pub fn kind(self) -> Option<ErrorKind> {
        Some(match self {
            Exit::Ok | Exit::AwaitingConfirm => return None,
            Exit::Refused => ErrorKind::Refused,
            Exit::RolledBack => ErrorKind::RolledBack,
            Exit::NmUnavailable => ErrorKind::NmUnavailable,
            Exit::RollbackIncomplete => ErrorKind::RollbackIncomplete,
            Exit::Busy => ErrorKind::Busy,
            Exit::Permission => ErrorKind::Permission,
            Exit::AfterCommit => ErrorKind::AfterCommit,
            Exit::Internal => ErrorKind::Internal,
        })
    }

    /// The result a run that ends with this status reports.
    pub fn verdict(self) -> Verdict {
        match (self, self.kind()) {
            (Exit::AwaitingConfirm, _) => Verdict::AwaitingConfirm,
            (_, Some(kind)) => kind.verdict(),
            (_, None) => Verdict::Committed,
        }
    }
}

impl From<ErrorKind> for Exit {
    fn from(kind: ErrorKind) -> Exit {
        match kind {
            ErrorKind::Refused => Exit::Refused,
            ErrorKind::RolledBack => Exit::RolledBack,
            ErrorKind::NmUnavailable => Exit::NmUnavailable,
            ErrorKind::RollbackIncomplete => Exit::RollbackIncomplete,
            ErrorKind::Busy => Exit::Busy,
            ErrorKind::Permission => Exit::Permission,
            ErrorKind::AfterCommit => Exit::AfterCommit,
            ErrorKind::Internal => Exit::Internal,
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

    /// An error of class `kind`; permission denied on netbridge's own
    /// files says how to get it: only root changes the network.
    fn classified(kind: ErrorKind, e: &impl std::fmt::Display) -> Self {
        match kind {
            ErrorKind::Permission => {
                Fatal::new(Exit::Permission, format!("{e}; run netbridge as root"))
            }
            kind => Fatal::new(kind.into(), e.to_string()),
        }
    }

    /// Refused before any change, with what the operator did or must do.
    pub fn refused(message: impl Into<String>) -> Self {
        Fatal::new(Exit::Refused, message)
    }
}

/// Every error a verb can end with gets its exit status from its class,
/// decided in one place (`retry::ErrorKind`).
impl From<NmError> for Fatal {
    fn from(e: NmError) -> Self {
        Fatal::new(ErrorKind::of_nm(&e).into(), e.to_string())
    }
}

impl From<JournalError> for Fatal {
    fn from(e: JournalError) -> Self {
        Fatal::classified(ErrorKind::of_journal(&e), &e)
    }
}

impl From<RecoveryError> for Fatal {
    fn from(e: RecoveryError) -> Self {
        match e {
            RecoveryError::Journal(j) => j.into(),
            undo @ RecoveryError::Undo(_) => Fatal::new(Exit::RollbackIncomplete, undo.to_string()),
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
            other => Fatal::new(Exit::Refused, other.to_string()),
        }
    }
}

impl From<TxError> for Fatal {
    fn from(e: TxError) -> Self {
        Fatal::classified(ErrorKind::of_tx(&e), &e)
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

/// The version of the `--json` documents (schema/*.json): raised when a
/// field changes meaning or goes away, not when one is added.
pub const SCHEMA_VERSION: u32 = 1;

/// The envelope of every `--json` document, around each verb's own fields.
#[derive(Debug, Serialize)]
pub struct Envelope<'b, B> {
    pub schema_version: u32,
    pub command: &'b str,
    pub result: Verdict,
    pub exit_code: i32,
    pub error: Option<ErrorDoc>,
    #[serde(flatten)]
    pub body: &'b B,
    pub checks: CheckResults,
    pub steps: Vec<Step>,
    pub seconds: f64,
}

/// An error, for machines (`kind`, one per exit status) and for people.
#[derive(Debug, Serialize)]
pub struct ErrorDoc {
    pub kind: ErrorKind,
    pub message: String,
}

impl<'b, B> Envelope<'b, B> {
    /// The document of a run that ended with `ended` after `progress`.
    pub fn new(
        command: &'b str,
        ended: Result<(Verdict, Exit), Fatal>,
        body: &'b B,
        progress: &Progress,
    ) -> Self {
        let (result, exit, error) = match ended {
            // Ended as reported in the verb's own fields (an outcome's
            // reason, each bridge's): the error, if any, names the class.
            Ok((result, exit)) => (
                result,
                exit,
                exit.kind().map(|kind| ErrorDoc {
                    kind,
                    message: exit.meaning().to_owned(),
                }),
            ),
            Err(fatal) => (
                fatal.exit.verdict(),
                fatal.exit,
                Some(ErrorDoc {
                    kind: fatal.exit.kind().unwrap_or(ErrorKind::Internal),
                    message: fatal.message,
                }),
            ),
        };
        Envelope {
            schema_version: SCHEMA_VERSION,
            command,
            result,
            exit_code: exit.code(),
            error,
            body,
            checks: progress.checks(),
            steps: progress.steps(),
            seconds: progress.elapsed(),
        }
    }
}

/// `-q`: no progress steps, only errors and the result.
static QUIET: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

pub fn set_quiet(quiet: bool) {
    QUIET.store(quiet, std::sync::atomic::Ordering::Relaxed);
}

/// Runs a verb: progress on stderr (or silent with `--json` or `-q`), errors
/// printed once, and with `--json` one document on stdout whatever happened.
/// The verb fills `body` and returns its result and exit status.
pub async fn run_verb<B: Serialize>(
    command: &'static str,
    json: bool,
    mut body: B,
    verb: impl AsyncFnOnce(&Progress, &mut B) -> Result<(Verdict, Exit), Fatal>,
) -> Exit {
    let progress = Progress::new(!json && !QUIET.load(std::sync::atomic::Ordering::Relaxed));
    let ended = verb(&progress, &mut body).await;
    let exit = match &ended {
        Ok((_, exit)) => *exit,
        Err(fatal) => {
            if !json {
                print_error(fatal);
            }
            fatal.exit
        }
    };
    if json {
        print_json(&Envelope::new(command, ended, &body, &progress));
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
        "{what} passed its checks and is on trial, nothing written to disk. From a NEW connection: {} (`netbridge status` shows the deadline).",
        crate::confirm::how_it_ends(u64::from(seconds))
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
    Err(Fatal::refused(
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
