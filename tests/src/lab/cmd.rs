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

/// Runs the shell script `setup` inside network namespace `ns` and a mount
/// namespace of its own, so its mounts are seen only by what it then execs;
/// the caller appends the script's arguments.
pub(crate) fn in_netns_with_mounts(ns: &str, setup: &str) -> Command {
    let mut cmd = in_netns(ns, [program("unshare")]);
    cmd.args([
        "--mount",
        "--propagation",
        "private",
        "/bin/sh",
        "-c",
        setup,
        "sh",
    ]);
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

/// Fails naming every program of `tools` (program, Debian package) that is
/// not installed.
pub(crate) fn require_programs(tools: &[(&str, &str)]) -> Result<(), LabError> {
    let missing: Vec<String> = tools
        .iter()
        .filter(|(program, _)| which(program).is_none())
        .map(|(program, package)| format!("{program} (package {package})"))
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    Err(LabError::Prerequisite(format!(
        "missing programs: {} (scripts/install-deps.sh installs them)",
        missing.join(", ")
    )))
}

/// Runs `command` with its output appended to `log`; on failure the error
/// carries the log's tail (where debootstrap and pip say what went wrong).
pub(crate) fn run_logged(command: &mut Command, log: &Path) -> Result<(), LabError> {
    let out = std::fs::OpenOptions::new()
        .append(true)
        .open(log)
        .map_err(|e| LabError::io("cannot open the build log", log, e))?;
    let err = out
        .try_clone()
        .map_err(|e| LabError::io("cannot duplicate the build log", log, e))?;
    command
        .stdin(std::process::Stdio::null())
        .stdout(out)
        .stderr(err);
    let status = command.status().map_err(|source| LabError::Spawn {
        command: describe(command),
        source,
    })?;
    if status.success() {
        return Ok(());
    }
    Err(LabError::Command {
        command: describe(command),
        status: status.to_string(),
        stderr: format!(
            "last lines of {}:\n{}",
            log.display(),
            super::daemon::log_tail(log, 30)
        ),
    })
}
