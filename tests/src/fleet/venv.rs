//! ansible-core from PyPI, in a Python venv cached outside the repository.
//!
//! Guarded by a `flock` on `<venv>.lock`: a controller holds it shared for
//! as long as it runs playbooks, a build holds it exclusively, so parallel
//! tests build the venv once and never run a half-installed one. A stamp
//! file inside the venv, written last, records what it was built from; a
//! venv without the current stamp is rebuilt from scratch. (Built in place
//! rather than renamed into place: a venv's scripts name its absolute path.)

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::Command;

use nix::fcntl::{Flock, FlockArg};

use crate::lab::cmd;
use crate::lab::files::{lock_file, write_file};
use crate::LabError;

/// What pip installs. Pinned to a release series so a new ansible-core
/// does not change the test under our feet; the stamp makes a change here
/// rebuild the venv.
pub const ANSIBLE_CORE: &str = "ansible-core==2.18.*";
/// Debian's interpreter (python3-venv makes `-m venv` work), not whatever
/// `python3` comes first in PATH.
const PYTHON: &str = "/usr/bin/python3";
const DEFAULT_VENV: &str = "/var/cache/netbridge-tests/ansible-venv";
const STAMP_FILE: &str = ".netbridge-tests-venv";

/// The cached venv. See the module documentation.
#[derive(Debug, Clone)]
pub struct AnsibleVenv {
    dir: PathBuf,
}

/// A venv that stays as it is while this lives (a shared lock on it).
pub struct VenvGuard {
    _lock: Flock<File>,
    dir: PathBuf,
}

impl VenvGuard {
    /// The venv's `ansible-playbook`.
    pub fn ansible_playbook(&self) -> PathBuf {
        self.dir.join("bin/ansible-playbook")
    }

    /// The venv's interpreter (the one Ansible's controller runs on).
    pub fn python(&self) -> PathBuf {
        self.dir.join("bin/python3")
    }

    /// The venv's `ansible-test` (it comes with ansible-core).
    pub fn ansible_test(&self) -> PathBuf {
        self.dir.join("bin/ansible-test")
    }
}

impl AnsibleVenv {
    /// `$NETBRIDGE_ANSIBLE_VENV`, default
    /// `/var/cache/netbridge-tests/ansible-venv`.
    pub fn from_env() -> AnsibleVenv {
        let dir = std::env::var_os("NETBRIDGE_ANSIBLE_VENV")
            .filter(|v| !v.is_empty())
            .map_or_else(|| PathBuf::from(DEFAULT_VENV), PathBuf::from);
        AnsibleVenv { dir }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Where the last build's output went.
    pub fn build_log(&self) -> PathBuf {
        self.sibling("build.log")
    }

    /// What the venv was built from.
    pub fn stamp() -> String {
        format!("python={PYTHON}\n{ANSIBLE_CORE}\n")
    }

    pub fn is_current(&self) -> bool {
        std::fs::read_to_string(self.dir.join(STAMP_FILE)).is_ok_and(|s| s == Self::stamp())
    }

    /// The venv, built first if needed, locked against rebuilds.
    pub fn open(&self) -> Result<VenvGuard, LabError> {
        // Two rounds at most: a venv that is stale under the shared lock is
        // rebuilt under the exclusive one, and then current.
        for _ in 0..2 {
            let lock = self.lock(FlockArg::LockShared)?;
            if self.is_current() {
                return Ok(VenvGuard {
                    _lock: lock,
                    dir: self.dir.clone(),
                });
            }
            drop(lock);
            self.ensure()?;
        }
        Err(LabError::Prerequisite(format!(
            "the ansible venv {} is still not current after a build",
            self.dir.display()
        )))
    }

    /// Builds the venv unless it is current.
    pub fn ensure(&self) -> Result<(), LabError> {
        let _lock = self.lock(FlockArg::LockExclusive)?;
        if self.is_current() {
            return Ok(());
        }
        self.build()
    }

    /// Called with the exclusive lock held.
    fn build(&self) -> Result<(), LabError> {
        if !Path::new(PYTHON).is_file() {
            return Err(LabError::Prerequisite(format!(
                "missing programs: {PYTHON} (package python3)"
            )));
        }
        remove_tree(&self.dir)?;
        let log = self.build_log();
        write_file(&log, "", 0o644)?;
        crate::lab::loud(&format!(
            "fleet: installing {ANSIBLE_CORE} from PyPI into {} (once; log {})",
            self.dir.display(),
            log.display()
        ));
        let mut venv = Command::new(PYTHON);
        venv.args(["-m", "venv"]).arg(&self.dir);
        cmd::run_logged(&mut venv, &log)?;
        let mut pip = Command::new(self.dir.join("bin/python3"));
        pip.args(["-m", "pip", "install", "--disable-pip-version-check", "-q"])
            .arg(ANSIBLE_CORE);
        cmd::run_logged(&mut pip, &log)?;
        write_file(&self.dir.join(STAMP_FILE), &Self::stamp(), 0o644)
    }

    /// `<venv>.<suffix>`: what lives beside the venv (its lock, its build
    /// log, ansible-test's home).
    pub(crate) fn sibling(&self, suffix: &str) -> PathBuf {
        let name = self
            .dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "ansible-venv".to_owned());
        self.dir.with_file_name(format!("{name}.{suffix}"))
    }

    fn lock(&self, how: FlockArg) -> Result<Flock<File>, LabError> {
        lock_file(&self.sibling("lock"), how)
    }
}

fn remove_tree(path: &Path) -> Result<(), LabError> {
    match std::fs::remove_dir_all(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(LabError::io("cannot remove an old venv", path, e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_stamp_names_the_requirement_and_the_interpreter() {
        let stamp = AnsibleVenv::stamp();
        assert!(stamp.contains(ANSIBLE_CORE), "{stamp}");
        assert!(stamp.contains(PYTHON), "{stamp}");
    }

    #[test]
    fn lock_and_log_are_siblings_of_the_venv() {
        let venv = AnsibleVenv {
            dir: PathBuf::from("/var/cache/x/ansible-venv"),
        };
        assert_eq!(
            venv.sibling("lock"),
            Path::new("/var/cache/x/ansible-venv.lock")
        );
        assert_eq!(
            venv.build_log(),
            Path::new("/var/cache/x/ansible-venv.build.log")
        );
    }
}
