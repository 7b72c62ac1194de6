use std::path::PathBuf;

/// Why a lab could not be built, changed or inspected.
///
/// Every variant names the step that failed and carries what is needed to
/// diagnose it without rerunning (the command line, its stderr, a log tail).
#[derive(Debug, thiserror::Error)]
pub enum LabError {
    /// The machine cannot host a lab (not root, a program missing, ...).
    #[error("{0}")]
    Prerequisite(String),

    /// A program could not be started at all.
    #[error("cannot run `{command}`: {source}")]
    Spawn {
        command: String,
        #[source]
        source: std::io::Error,
    },

    /// A command ran and reported failure.
    #[error("`{command}` failed ({status}): {stderr}")]
    Command {
        command: String,
        status: String,
        stderr: String,
    },

    /// A file or directory of the lab could not be read or written.
    #[error("{what} ({path}): {source}", path = path.display())]
    Io {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    /// A daemon of the lab exited while it was expected to run.
    #[error("{daemon} exited ({status}); last log lines:\n{log_tail}")]
    DaemonExited {
        daemon: &'static str,
        status: String,
        log_tail: String,
    },

    /// A bounded wait ran out.
    #[error("timed out after {seconds} s waiting for {what}; last state: {detail}")]
    Timeout {
        what: String,
        seconds: u64,
        detail: String,
    },

    /// A tool printed something the lab does not understand.
    #[error("cannot parse the output of `{command}`: {detail}")]
    Parse { command: String, detail: String },

    /// The netbridge binaries are not where the lab looks for them.
    #[error(
        "{name} not found at {path}: build it first: cargo build --workspace \
         (or point NETBRIDGE_BIN at the netbridge binary)",
        path = path.display()
    )]
    BinaryMissing { name: String, path: PathBuf },
}

impl LabError {
    pub(crate) fn io(what: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        LabError::Io {
            what,
            path: path.into(),
            source,
        }
    }
}
