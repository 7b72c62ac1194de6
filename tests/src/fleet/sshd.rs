//! An SSH server for one lab host: `sshd` inside the host namespace, in a
//! private mount namespace that gives SSH sessions the lab's
//! NetworkManager on the standard bus path, the lab's own /etc/netbridge and
//! /var/lib/netbridge, and `netbridge` on PATH — as on a real host.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::lab::cmd;
use crate::lab::daemon::{parent_pid, Daemon};
use crate::lab::files::write_file;
use crate::lab::{netbridge_bin, Lab, LabError, STATIC_ADDRESS};

/// Prepares the mount namespace and `exec`s sshd (so the spawned process is
/// sshd and its pid is the one to stop).
///
/// - /run becomes a tmpfs: sshd needs /run/sshd, and the bus socket goes to
///   /run/dbus/system_bus_socket there — nothing is created in the
///   machine's own /run.
/// - /etc, /var/lib, /var/log, /usr/local and /root become overlays whose
///   writes land in the lab directory: the mount points /etc/netbridge,
///   /var/lib/netbridge and /usr/local/bin/netbridge can be made without
///   touching the machine, and whatever a session writes (Ansible's
///   ~/.ansible/tmp, sshd's wtmp records) stays in the lab.
const SETUP: &str = r#"set -e
fleet=$1 bus=$2 bin=$3 state=$4
shift 4
overlay() {
    mkdir -p "$fleet/overlay/$2/upper" "$fleet/overlay/$2/work"
    mount -t overlay overlay \
        -o "lowerdir=$1,upperdir=$fleet/overlay/$2/upper,workdir=$fleet/overlay/$2/work" "$1"
}
mount -t tmpfs -o mode=0755 tmpfs /run
mkdir /run/dbus /run/sshd
touch /run/dbus/system_bus_socket
mount --bind "$bus" /run/dbus/system_bus_socket
overlay /etc etc
mkdir -p /etc/netbridge
mount --bind "$fleet/etc-netbridge" /etc/netbridge
overlay /var/lib var-lib
mkdir -p /var/lib/netbridge
mount --bind "$state" /var/lib/netbridge
overlay /var/log var-log
overlay /usr/local usr-local
touch /usr/local/bin/netbridge
mount --bind "$bin" /usr/local/bin/netbridge
overlay /root root
exec "$@""#;

/// sshd in a lab's host namespace, stopped (by pid) on drop.
pub struct Sshd {
    daemon: Daemon,
    dir: PathBuf,
}

impl Sshd {
    /// Starts sshd on 172.25.250.10:22 in `lab`'s host namespace, letting in
    /// root with `authorized_key` (an OpenSSH public key line), and waits
    /// until it listens.
    pub fn start(lab: &Lab, authorized_key: &str) -> Result<Sshd, LabError> {
        let dir = lab.dir().join("fleet");
        create_dir(&dir.join("etc-netbridge"))?;
        create_dir(&dir.join("overlay"))?;
        keygen(&dir.join("ssh_host_ed25519_key"), "netbridge-lab-host")?;
        write_file(&dir.join("authorized_keys"), authorized_key, 0o600)?;
        write_file(&dir.join("sshd_config"), &sshd_config(&dir), 0o600)?;
        let mut command = start_command(lab, &dir)?;
        let daemon = Daemon::spawn("sshd", &mut command, &dir.join("sshd.log"))?;
        let mut sshd = Sshd { daemon, dir };
        sshd.wait_listening()?;
        Ok(sshd)
    }

    /// sshd's pid.
    pub fn pid(&self) -> u32 {
        self.daemon.pid()
    }

    /// The sshd processes serving the connection that `pid` is one of
    /// (e.g. the parent of the session's shell): `pid` and its ancestors
    /// below this server's listener, `pid` first. `None` if `pid` is not a
    /// process of this server's connections.
    pub fn connection_processes(&self, pid: u32) -> Option<Vec<u32>> {
        let mut chain = Vec::new();
        let mut current = pid;
        while current != self.pid() {
            // sshd forks two levels per connection (monitor, session);
            // a longer chain is not this server's.
            if current <= 1 || chain.len() > 4 {
                return None;
            }
            chain.push(current);
            current = parent_pid(current)?;
        }
        (!chain.is_empty()).then_some(chain)
    }

    /// What the host sees as /etc/netbridge.
    pub fn etc_netbridge(&self) -> PathBuf {
        self.dir.join("etc-netbridge")
    }

    /// sshd's log (`-e`: everything it would send to syslog).
    pub fn log(&self) -> PathBuf {
        self.dir.join("sshd.log")
    }

    /// How many TCP connections sshd has seen so far ("Connection from"
    /// lines): zero means the host was never contacted.
    pub fn connections(&self) -> usize {
        std::fs::read_to_string(self.log())
            .map(|log| log.matches("Connection from ").count())
            .unwrap_or(0)
    }

    /// sshd writes its pid file once its socket listens.
    fn wait_listening(&mut self) -> Result<(), LabError> {
        let pid_file = self.dir.join("sshd.pid");
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        loop {
            self.daemon.check_running()?;
            let written = std::fs::read_to_string(&pid_file).unwrap_or_default();
            if written.trim() == self.pid().to_string() {
                return Ok(());
            }
            if std::time::Instant::now() >= deadline {
                return Err(LabError::Timeout {
                    what: "sshd to listen".to_owned(),
                    seconds: 30,
                    detail: format!("{} holds {written:?}", pid_file.display()),
                });
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
    }
}

/// Throwaway keys and paths in the lab directory. `StrictModes no`: the
/// authorized key lives under the world-writable /tmp, which strict mode
/// refuses (the lab directory itself is 0700). `UsePAM no`: no PAM session
/// (nor systemd-logind) for a lab login. `LogLevel VERBOSE`: sshd logs each
/// TCP connection only from that level on ([`Sshd::connections`]).
fn sshd_config(dir: &Path) -> String {
    format!(
        "ListenAddress {STATIC_ADDRESS}:22\n\
         HostKey {dir}/ssh_host_ed25519_key\n\
         PidFile {dir}/sshd.pid\n\
         AuthorizedKeysFile {dir}/authorized_keys\n\
         UsePAM no\n\
         PermitRootLogin prohibit-password\n\
         PasswordAuthentication no\n\
         KbdInteractiveAuthentication no\n\
         StrictModes no\n\
         PrintMotd no\n\
         PrintLastLog no\n\
         LogLevel VERBOSE\n\
         Subsystem sftp internal-sftp\n",
        dir = dir.display()
    )
}

fn start_command(lab: &Lab, dir: &Path) -> Result<Command, LabError> {
    let bus = lab
        .bus_address()
        .strip_prefix("unix:path=")
        .ok_or_else(|| LabError::Parse {
            command: "the lab's bus address".to_owned(),
            detail: format!("{} is not unix:path=...", lab.bus_address()),
        })?;
    let mut command = cmd::in_netns_with_mounts(lab.host_ns(), SETUP);
    command
        .arg(dir)
        .arg(bus)
        .arg(netbridge_bin()?)
        .arg(lab.state_dir())
        // -D: stay in the foreground (the lab tracks its pid); -e: log to
        // stderr, i.e. sshd.log. sshd insists on an absolute path.
        .arg(cmd::program("sshd"))
        .args(["-D", "-e", "-f"])
        .arg(dir.join("sshd_config"));
    Ok(command)
}

/// `ssh-keygen` of a new ed25519 key pair without a passphrase at `path`
/// (and `path`.pub).
pub(crate) fn keygen(path: &Path, comment: &str) -> Result<(), LabError> {
    let mut command = Command::new(cmd::program("ssh-keygen"));
    command
        .args(["-q", "-t", "ed25519", "-N", "", "-C", comment, "-f"])
        .arg(path);
    cmd::run(&mut command).map(drop)
}

fn create_dir(path: &Path) -> Result<(), LabError> {
    std::fs::create_dir_all(path).map_err(|e| LabError::io("cannot create a directory", path, e))
}
