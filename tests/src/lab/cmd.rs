//! Running the lab's helper programs with errors that say what failed.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use super::LabError;

/// `cmd` as a shell-like line, for error messages.
pub(crate) fn describe(cmd: &Command) -> String {
    let mut parts = vec![cmd.get_program().to_string_lossy().into_owned()];
    parts.extend(cmd.get_args().map(|a| a.to_string_lossy().into_owned()));
    parts.join(" ")
}

/// Runs `cmd` to completion and returns its output, whatever its status.
pub(crate) fn output(cmd: &mut Command) -> Result<Output, LabError> {
    cmd.output().map_err(|source| LabError::Spawn {
        command: describe(cmd),
        source,
    })
}

/// Runs `cmd` and fails unless it exits with status 0.
pub(crate) fn run(cmd: &mut Command) -> Result<Output, LabError> {
    let out = output(cmd)?;
    if out.status.success() {
        Ok(out)
    } else {
        Err(LabError::Command {
            command: describe(cmd),
            status: out.status.to_string(),
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
        })
    }
}

/// Runs `cmd` and returns its stdout as text, failing unless it exits with 0.
pub(crate) fn stdout(cmd: &mut Command) -> Result<String, LabError> {
    let out = run(cmd)?;
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// `ip ARGS...`.
pub(crate) fn ip<I, S>(args: I) -> Command
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    let mut cmd = Command::new(program("ip"));
    cmd.args(args);
    cmd
}

/// `ip netns exec NS ARGV...`: ARGV runs in the namespace `ns` (and in a
/// private mount namespace with that namespace's /sys, as `ip` arranges).
pub(crate) fn in_netns<I, S>(ns: &str, argv: I) -> Command
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    let mut cmd = Command::new(program("ip"));
    cmd.args(["netns", "exec", ns]).args(argv);
    cmd
}

/// `program`'s full path if [`which`] finds it, else its bare name (the
/// lab's prerequisite check has reported it missing by then).
pub(crate) fn program(name: &str) -> PathBuf {
    which(name).unwrap_or_else(|| PathBuf::from(name))
}

/// The full path of `program`, searched in PATH and then the sbin
/// directories (which a non-login root shell may lack in PATH).
pub(crate) fn which(program: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/sbin", "/usr/bin", "/bin"].map(PathBuf::from))
        .map(|dir| dir.join(program))
        .find(|candidate| is_executable(candidate))
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    path.metadata()
        .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}
