//! Leftovers of labs whose process died without dropping them (SIGKILL,
//! a crash): namespaces `nb-<pid>-...` and directories `nb-lab-<pid>-...`
//! whose `<pid>` no longer exists.

use std::path::{Path, PathBuf};

use super::{daemon, netns, LabError};

/// What [`remove_stale_labs`] removed, and what it left because processes
/// still use it (their pids; the lab never kills what it cannot prove it
/// started).
#[derive(Debug, Default)]
pub struct StaleReport {
    pub removed: Vec<String>,
    pub in_use: Vec<(String, Vec<u32>)>,
}

/// Removes the namespaces and temporary directories of labs whose owning
/// process is gone, unless some process still uses them.
pub fn remove_stale_labs() -> Result<StaleReport, LabError> {
    let mut report = StaleReport::default();
    for ns in names_in(Path::new("/run/netns")) {
        if owner_gone(&ns, NS_PREFIX) {
            remove_namespace(ns, &mut report)?;
        }
    }
    for name in names_in(&std::env::temp_dir()) {
        if owner_gone(&name, DIR_PREFIX) {
            remove_dir(std::env::temp_dir().join(name), &mut report)?;
        }
    }
    Ok(report)
}

pub(crate) const NS_PREFIX: &str = "nb-";
pub(crate) const DIR_PREFIX: &str = "nb-lab-";

fn remove_namespace(ns: String, report: &mut StaleReport) -> Result<(), LabError> {
    let pids = netns::pids(&ns)?;
    if pids.is_empty() {
        netns::delete(&ns)?;
        report.removed.push(format!("namespace {ns}"));
    } else {
        report.in_use.push((format!("namespace {ns}"), pids));
    }
    Ok(())
}

fn remove_dir(dir: PathBuf, report: &mut StaleReport) -> Result<(), LabError> {
    let users = processes_mentioning(&dir);
    let label = format!("directory {}", dir.display());
    if users.is_empty() {
        std::fs::remove_dir_all(&dir)
            .map_err(|e| LabError::io("cannot remove a stale lab directory", &dir, e))?;
        report.removed.push(label);
    } else {
        report.in_use.push((label, users));
    }
    Ok(())
}

fn names_in(dir: &Path) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    entries
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect()
}

/// Whether `name` is `<prefix><pid>-...` and process `<pid>` is gone (a
/// zombie counts as gone: it no longer drops anything).
fn owner_gone(name: &str, prefix: &str) -> bool {
    owner_pid(name, prefix).is_some_and(|pid| !daemon::is_alive(pid))
}

fn owner_pid(name: &str, prefix: &str) -> Option<u32> {
    let rest = name.strip_prefix(prefix)?;
    rest.split('-').next()?.parse().ok()
}

/// Processes whose command line mentions `dir` (a lab's daemons all name
/// their lab directory in their arguments).
fn processes_mentioning(dir: &Path) -> Vec<u32> {
    let needle = dir.to_string_lossy().into_owned();
    names_in(Path::new("/proc"))
        .iter()
        .filter_map(|name| name.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline"))
                .map(|raw| String::from_utf8_lossy(&raw).contains(&needle))
                .unwrap_or(false)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn owner_pids_come_from_the_name() {
        assert_eq!(owner_pid("nb-1234-0-h", NS_PREFIX), Some(1234));
        assert_eq!(owner_pid("nb-lab-99-3-Ab1", DIR_PREFIX), Some(99));
        assert_eq!(owner_pid("nb-lab-99-3-Ab1", NS_PREFIX), None);
        assert_eq!(owner_pid("other", NS_PREFIX), None);
    }
}
