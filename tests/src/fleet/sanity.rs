//! `ansible-test sanity` on the collection in `fleet/collections/`, with
//! the ansible-core the fleet tests use (the cached venv), needing no
//! network but PyPI.
//!
//! ansible-test gives each sanity test a venv of its own (pylint, yamllint,
//! voluptuous, … pinned) and bootstraps pip into it with a get-pip.py it
//! downloads from ci-files.testing.ansible.com, which a test machine may
//! not reach. Here it runs with a private HOME beside the venv
//! (`<venv>.ansible-test-home`) whose bootstrap cache holds a stand-in
//! (`get_pip.py`: the interpreter's own pip, then `pip install` from
//! PyPI). The per-test venvs are cached in that HOME too: the first run
//! takes minutes, later ones seconds.

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus};
use std::time::{Duration, Instant};

use nix::fcntl::FlockArg;

use super::controller::run_with_deadline;
use super::venv::{AnsibleVenv, VenvGuard};
use crate::lab::cmd;
use crate::lab::files::{lock_file, write_file};
use crate::LabError;

/// The stand-in for ansible-test's pip bootstrap script.
const GET_PIP: &str = include_str!("get_pip.py");

/// The collection as the repository holds it.
pub fn collection_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../fleet/collections/ansible_collections/netbridge/netbridge")
}

/// How a sanity run ended.
#[derive(Debug)]
pub struct SanityRun {
    pub status: ExitStatus,
    /// stdout and stderr, interleaved as written.
    pub output: String,
    /// Wall time, the venvs' setup included.
    pub took: Duration,
}

impl SanityRun {
    /// The sanity tests that ran (`Running sanity test "NAME"`).
    pub fn tests_run(&self) -> Vec<&str> {
        self.output
            .lines()
            .filter_map(|l| l.strip_prefix("Running sanity test \""))
            .filter_map(|rest| rest.split('"').next())
            .collect()
    }

    /// ansible-test's lines about a sanity test it skipped.
    pub fn skipped(&self) -> Vec<&str> {
        self.output
            .lines()
            .filter(|l| l.contains("Skipping sanity test"))
            .collect()
    }
}

/// What a sanity run covers.
#[derive(Debug, Default)]
pub struct Scope<'a> {
    /// Only these sanity tests (`--test NAME`); all when empty.
    pub only: &'a [&'a str],
    /// A defect written into the copy first: a run that must fail.
    pub defect: Option<Defect<'a>>,
}

/// `insert` goes in as a line of its own after the first line of `file`
/// (relative to the collection) that contains `after`.
#[derive(Debug)]
pub struct Defect<'a> {
    pub file: &'a str,
    pub after: &'a str,
    pub insert: &'a str,
}

impl Defect<'_> {
    fn write_into(&self, tree: &Path) -> Result<(), LabError> {
        let path = tree.join(self.file);
        let text =
            std::fs::read_to_string(&path).map_err(|e| LabError::io("cannot read", &path, e))?;
        let Some(at) = text
            .find(self.after)
            .and_then(|i| text[i..].find('\n').map(|n| i + n + 1))
        else {
            return Err(LabError::Prerequisite(format!(
                "{}: no line with {:?} to put the defect after",
                path.display(),
                self.after
            )));
        };
        let broken = format!("{}{}\n{}", &text[..at], self.insert, &text[at..]);
        write_file(&path, &broken, 0o644)
    }
}

/// Runs the sanity tests of `scope` on a copy of the collection
/// (ansible-test writes its results into the tree it tests), killing it
/// after `timeout`.
pub fn run(timeout: Duration, scope: &Scope<'_>) -> Result<SanityRun, LabError> {
    let venv = AnsibleVenv::from_env();
    let guard = venv.open()?;
    // One run at a time builds and uses the per-test venvs.
    let _lock = lock_file(
        &venv.sibling("ansible-test-home.lock"),
        FlockArg::LockExclusive,
    )?;
    let home = venv.sibling("ansible-test-home");
    let (python, pip) = versions(&guard)?;
    let cache = home.join(".ansible/test/cache");
    std::fs::create_dir_all(&cache)
        .map_err(|e| LabError::io("cannot create ansible-test's cache", &cache, e))?;
    let stand_in = cache.join(format!("get_pip_{}.py", pip.replace('.', "_")));
    write_file(&stand_in, GET_PIP, 0o644)?;

    // The lab's directory prefix with this pid: `netbridge-lab cleanup`
    // removes it if this process is killed.
    let work = tempfile::Builder::new()
        .prefix(&format!("nb-lab-{}-sanity-", std::process::id()))
        .tempdir()
        .map_err(|e| LabError::io("cannot create a directory", std::env::temp_dir(), e))?;
    let tree = work.path().join("ansible_collections/netbridge/netbridge");
    copy_tree(&collection_dir(), &tree)?;
    if let Some(defect) = &scope.defect {
        defect.write_into(&tree)?;
    }

    let mut command = Command::new(guard.ansible_test());
    command
        .args(["sanity", "--local", "--color", "no", "--python", &python])
        .args(scope.only.iter().flat_map(|test| ["--test", test]))
        .current_dir(&tree)
        .env("HOME", &home)
        // ansible-test refuses to run without a UTF-8 locale.
        .env("LC_ALL", "C.UTF-8")
        .env("LANG", "C.UTF-8")
        .process_group(0);
    let started = Instant::now();
    let log = work.path().join("sanity.log");
    let (status, output) = run_with_deadline(&mut command, &log, timeout, "ansible-test sanity")?;
    Ok(SanityRun {
        status,
        output,
        took: started.elapsed(),
    })
}

/// The venv's Python version (`3.11`) and the pip version ansible-test
/// bootstraps into its venvs for it (named in the bootstrap script's file
/// name). The latter from ansible-test's internals: it has no other way
/// to tell.
fn versions(venv: &VenvGuard) -> Result<(String, String), LabError> {
    let mut command = Command::new(venv.python());
    command.args([
        "-c",
        "import sys, types\n\
         from ansible_test._internal.python_requirements import get_venv_packages\n\
         v = '%d.%d' % sys.version_info[:2]\n\
         print(v, get_venv_packages(types.SimpleNamespace(version=v))['pip'])",
    ]);
    let text = cmd::stdout(&mut command)?;
    match text.split_whitespace().collect::<Vec<_>>()[..] {
        [python, pip] => Ok((python.to_owned(), pip.to_owned())),
        _ => Err(LabError::Parse {
            command: cmd::describe(&command),
            detail: text,
        }),
    }
}

/// Copies the directory `from` to `to`, leaving out `tests/output`
/// (results of an earlier run by hand).
fn copy_tree(from: &Path, to: &Path) -> Result<(), LabError> {
    std::fs::create_dir_all(to).map_err(|e| LabError::io("cannot create a directory", to, e))?;
    let entries =
        std::fs::read_dir(from).map_err(|e| LabError::io("cannot read a directory", from, e))?;
    for entry in entries {
        let entry = entry.map_err(|e| LabError::io("cannot read a directory", from, e))?;
        let (source, target) = (entry.path(), to.join(entry.file_name()));
        if source.ends_with("tests/output") {
            continue;
        }
        let kind = entry
            .file_type()
            .map_err(|e| LabError::io("cannot stat", &source, e))?;
        if kind.is_dir() {
            copy_tree(&source, &target)?;
        } else {
            std::fs::copy(&source, &target).map_err(|e| LabError::io("cannot copy", &source, e))?;
        }
    }
    Ok(())
}
