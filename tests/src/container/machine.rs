//! One boot of the container: the `systemd-nspawn` process, the container's
//! PID 1 (its child), and how to stop both.

use std::ffi::OsStr;
use std::fs::OpenOptions;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use super::cgroup::BootCgroup;
use crate::lab::cmd;
use crate::lab::daemon::{is_alive, log_tail};
use crate::LabError;

/// The PATH commands run with inside the container (Debian's default for root).
pub(crate) const CONTAINER_PATH: &str =
    "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// `systemd-nspawn`'s exit status when the container asked for a reboot.
pub(crate) const REBOOT_STATUS: i32 = 133;

pub(crate) struct Machine {
    child: Child,
    /// The container's PID 1 as seen from here, once it exists.
    leader: Option<u32>,
    console: PathBuf,
    /// Dropped after [`Machine::kill`] in `drop`, when nothing runs in it.
    _cgroup: BootCgroup,
}

/// What [`Machine::spawn`] needs.
pub(crate) struct BootSpec<'a> {
    pub(crate) root: &'a Path,
    pub(crate) name: &'a str,
    pub(crate) netns: &'a str,
    pub(crate) console: &'a Path,
    /// `SYSTEMD_NSPAWN_UNIFIED_HIERARCHY=1`: a cgroup v2 tree for systemds that
    /// refuse v1 (`crate::container::Suite::needs_unified_cgroups`).
    pub(crate) unified_cgroups: bool,
}

impl Machine {
    /// Starts `systemd-nspawn -b` on the root, in the network namespace,
    /// with its console appended to the console log.
    pub(crate) fn spawn(spec: &BootSpec<'_>) -> Result<Machine, LabError> {
        let out = OpenOptions::new()
            .create(true)
            .append(true)
            .open(spec.console)
            .map_err(|e| LabError::io("cannot open the console log", spec.console, e))?;
        let err = out
            .try_clone()
            .map_err(|e| LabError::io("cannot duplicate the console log", spec.console, e))?;
        let cgroup = BootCgroup::create(spec.name)?;
        let mut command = nspawn_command(spec);
        command.env("NB_CGROUP_PROCS", cgroup.procs_files());
        command.stdin(Stdio::null()).stdout(out).stderr(err);
        let child = command.spawn().map_err(|source| LabError::Spawn {
            command: cmd::describe(&command),
            source,
        })?;
        Ok(Machine {
            child,
            leader: None,
            console: spec.console.to_owned(),
            _cgroup: cgroup,
        })
    }

    pub(crate) fn leader(&self) -> Option<u32> {
        self.leader
    }

    /// Fails with the console's tail if nspawn has exited.
    pub(crate) fn check_running(&mut self) -> Result<(), LabError> {
        match self.child.try_wait() {
            Ok(None) => Ok(()),
            Ok(Some(status)) => Err(self.exited(status.to_string())),
            Err(e) => Err(self.exited(format!("cannot wait for it: {e}"))),
        }
    }

    fn exited(&self, status: String) -> LabError {
        LabError::DaemonExited {
            daemon: "systemd-nspawn",
            status,
            log_tail: log_tail(&self.console, 40),
        }
    }

    /// Looks for the container's PID 1 and remembers it: the child of
    /// nspawn that is PID 1 in its own PID namespace (while the container
    /// starts, nspawn briefly has a helper child as well).
    pub(crate) fn find_leader(&mut self) -> Option<u32> {
        if self.leader.is_none() {
            self.leader = children(self.child.id())
                .into_iter()
                .find(|&pid| is_namespace_init(pid));
        }
        self.leader
    }

    /// `nsenter` into all of the container's namespaces, running `argv`
    /// with a clean environment, as a root shell in the container would.
    pub(crate) fn nsenter<I, S>(&self, argv: I) -> Result<Command, LabError>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let Some(leader) = self.leader else {
            return Err(LabError::Prerequisite(
                "the container has not finished starting".to_owned(),
            ));
        };
        let mut command = Command::new(cmd::program("nsenter"));
        command
            .arg(format!("--target={leader}"))
            .args(["--mount", "--uts", "--ipc", "--net", "--pid", "--cgroup"])
            .args(["--root", "--wd", "--"])
            .args(argv)
            .env_clear()
            .env("PATH", CONTAINER_PATH)
            .env("LANG", "C.UTF-8")
            .env("HOME", "/root")
            .env("TERM", "dumb")
            .env("SYSTEMD_PAGER", "")
            .env("SYSTEMD_COLORS", "0");
        Ok(command)
    }

    /// Waits up to `limit` for nspawn to exit by itself.
    pub(crate) fn wait_exit(&mut self, limit: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + limit;
        loop {
            match self.child.try_wait() {
                Ok(Some(status)) => return Some(status),
                Err(_) => return None,
                Ok(None) if Instant::now() >= deadline => return None,
                Ok(None) => std::thread::sleep(Duration::from_millis(50)),
            }
        }
    }

    /// A clean poweroff: SIGTERM makes nspawn ask the container's systemd
    /// to shut down; after `grace`, [`Machine::kill`].
    pub(crate) fn terminate(&mut self, grace: Duration) -> Option<ExitStatus> {
        if let Ok(Some(status)) = self.child.try_wait() {
            return Some(status);
        }
        signal(self.child.id(), Signal::SIGTERM);
        if let Some(status) = self.wait_exit(grace) {
            return Some(status);
        }
        eprintln!(
            "container: systemd-nspawn (pid {}) did not power off within {grace:?}; killing it",
            self.child.id()
        );
        self.kill();
        None
    }

    /// A power cut: SIGKILL to the container's PID 1, which takes every
    /// process of its PID namespace with it at once, then to nspawn
    /// (killing only nspawn would leave the container running).
    pub(crate) fn kill(&mut self) {
        if let Ok(Some(_)) = self.child.try_wait() {
            return;
        }
        // Only while it is still nspawn's child: then the pid cannot have
        // been reused by an unrelated process.
        let leader = self
            .leader
            .filter(|leader| children(self.child.id()).contains(leader));
        if let Some(leader) = leader {
            signal(leader, Signal::SIGKILL);
        }
        signal(self.child.id(), Signal::SIGKILL);
        let _ = self.child.wait();
        if let Some(leader) = leader {
            wait_gone(leader);
        }
    }
}

impl Drop for Machine {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The command line that boots the container.
///
/// - `setpriv --pdeathsig TERM`: if the test process dies without dropping
///   the container, nspawn gets SIGTERM and powers the container off
///   (killing only nspawn would leave it running). The signal comes when
///   the *thread* that spawned nspawn exits, so a container must be booted
///   by the thread that keeps it (a test's own thread).
/// - the shell moves itself (and so nspawn, which it becomes) into the
///   boot's own cgroup (`super::cgroup`).
/// - `unshare --mount` with a tmpfs over /run/systemd: nspawn keeps its
///   locks and mount-propagation directories in /run/systemd/nspawn; this
///   keeps them out of the machine's own /run.
/// - `--network-namespace-path`: the container's network is the lab's host
///   namespace, never the machine's.
/// - CAP_NET_ADMIN and CAP_NET_RAW, which nspawn drops by default when the
///   network is not private to it: NetworkManager and ping need them.
/// - `--register=no --keep-unit`: this machine's PID 1 is not systemd, so
///   there is no machined and no unit to create.
/// - `--link-journal=no --resolv-conf=off --timezone=off`: nothing of the
///   machine's own journal, resolver or time zone goes into the container.
/// - `SYSTEMD_NSPAWN_API_VFS_WRITABLE=network`: /proc/sys/net writable (the
///   rest of /proc/sys and /sys stay read-only), as nspawn does by itself
///   for a private network but not for `--network-namespace-path`. It is
///   the lab's namespace's own: NetworkManager needs it for IPv4 forwarding
///   of shared (NAT) networks and per-link IPv6 settings.
/// - TERM=dumb: systemd's console output without colour codes.
fn nspawn_command(spec: &BootSpec<'_>) -> Command {
    const PRIVATE_RUN: &str = "set -e
        for procs in $NB_CGROUP_PROCS; do echo $$ > \"$procs\"; done
        mkdir -p /run/systemd
        mount -t tmpfs -o mode=0755 tmpfs /run/systemd
        exec \"$@\"";
    let mut command = Command::new(cmd::program("setpriv"));
    command
        .args(["--pdeathsig", "TERM", "--"])
        .arg(cmd::program("unshare"))
        .args(["--mount", "--propagation", "private", "--"])
        .args(["/bin/sh", "-c", PRIVATE_RUN, "sh"])
        .arg(cmd::program("systemd-nspawn"))
        .arg(format!("--directory={}", spec.root.display()))
        .arg(format!("--machine={}", spec.name))
        .args(["--boot", "--register=no", "--keep-unit"])
        .arg(format!(
            "--network-namespace-path=/run/netns/{}",
            spec.netns
        ))
        .arg("--capability=CAP_NET_ADMIN,CAP_NET_RAW")
        .args(["--link-journal=no", "--resolv-conf=off", "--timezone=off"])
        .arg("--console=read-only")
        .env("SYSTEMD_NSPAWN_API_VFS_WRITABLE", "network")
        .env("TERM", "dumb");
    if spec.unified_cgroups {
        command.env("SYSTEMD_NSPAWN_UNIFIED_HIERARCHY", "1");
    }
    command
}

/// The children of every thread of `pid`.
fn children(pid: u32) -> Vec<u32> {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return Vec::new();
    };
    tasks
        .flatten()
        .filter_map(|task| std::fs::read_to_string(task.path().join("children")).ok())
        .flat_map(|text| {
            text.split_whitespace()
                .filter_map(|p| p.parse().ok())
                .collect::<Vec<u32>>()
        })
        .collect()
}

/// Waits (at most 10 s) until the container's PID 1 is dead or a zombie.
/// The kernel lets a PID namespace's init die only after every other
/// process in it is gone, so afterwards nothing of the container runs —
/// no NetworkManager that could still re-add an address.
fn wait_gone(leader: u32) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while is_alive(leader) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Whether `pid` is PID 1 of a PID namespace below ours: the last number
/// of its `NSpid:` line (its pid in each namespace, outermost first) is 1.
fn is_namespace_init(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/status")).is_ok_and(|status| {
        status
            .lines()
            .find_map(|line| line.strip_prefix("NSpid:"))
            .is_some_and(|pids| {
                let pids: Vec<&str> = pids.split_whitespace().collect();
                pids.len() > 1 && pids.last() == Some(&"1")
            })
    })
}

fn signal(pid: u32, signal: Signal) {
    if let Ok(raw) = i32::try_from(pid) {
        // ESRCH (already gone) is what the callers want anyway.
        let _ = kill(Pid::from_raw(raw), signal);
    }
}
