//! The Ansible controller: runs on the machine, reaches each lab host only
//! through that host's own LAN namespace (an `ip netns exec <L> nc`
//! ProxyCommand), so every packet stays inside the lab.

use std::fs::File;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;
use serde_json::Value;
use tempfile::TempDir;

use super::sshd::keygen;
use super::venv::{AnsibleVenv, VenvGuard};
use crate::lab::cmd;
use crate::lab::daemon::log_tail;
use crate::lab::files::write_file;
use crate::lab::{Lab, LabError, STATIC_ADDRESS};

/// The repository's playbook, the one the README documents.
fn rollout_playbook() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../fleet/rollout.yml")
}

/// How a playbook run ended.
#[derive(Debug)]
pub struct PlaybookRun {
    pub status: ExitStatus,
    /// stdout and stderr, interleaved as written.
    pub output: String,
}

/// A controller workspace (keys, inventory, ansible.cfg, the configuration
/// to roll out, results) in a temporary directory, and the venv it runs.
pub struct Controller {
    venv: VenvGuard,
    dir: TempDir,
}

impl Controller {
    /// Opens (building if needed) the ansible venv and sets up a workspace
    /// with a fresh client key.
    pub fn new() -> Result<Controller, LabError> {
        let venv = AnsibleVenv::from_env().open()?;
        // The lab's directory prefix with this pid: `netbridge-lab cleanup`
        // removes it if this process is killed.
        let dir = tempfile::Builder::new()
            .prefix(&format!("nb-lab-{}-fleet-", std::process::id()))
            .tempdir()
            .map_err(|e| {
                LabError::io(
                    "cannot create the controller directory",
                    std::env::temp_dir(),
                    e,
                )
            })?;
        let controller = Controller { venv, dir };
        for sub in ["config/conf.d", "results", "ansible-home", "ansible-tmp"] {
            let path = controller.dir().join(sub);
            std::fs::create_dir_all(&path)
                .map_err(|e| LabError::io("cannot create a controller directory", path, e))?;
        }
        keygen(&controller.key(), "netbridge-lab-controller")?;
        write_file(
            &controller.dir().join("ansible.cfg"),
            &controller.ansible_cfg(),
            0o644,
        )?;
        Ok(controller)
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// What the rollout ships: `netbridge.toml` and `conf.d/*.toml`.
    pub fn config_dir(&self) -> PathBuf {
        self.dir().join("config")
    }

    /// Where the playbook writes `<host>.json`.
    pub fn results_dir(&self) -> PathBuf {
        self.dir().join("results")
    }

    pub fn inventory(&self) -> PathBuf {
        self.dir().join("inventory.ini")
    }

    fn key(&self) -> PathBuf {
        self.dir().join("id_ed25519")
    }

    /// The client key's public half, for the hosts' authorized_keys.
    pub fn public_key(&self) -> Result<String, LabError> {
        let path = self.key().with_extension("pub");
        std::fs::read_to_string(&path)
            .map_err(|e| LabError::io("cannot read the controller's public key", path, e))
    }

    /// The JSON result the playbook recorded for `host`, `None` if it
    /// recorded none.
    pub fn result(&self, host: &str) -> Result<Option<Value>, LabError> {
        let path = self.results_dir().join(format!("{host}.json"));
        let text = match std::fs::read_to_string(&path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(LabError::io("cannot read a result", path, e)),
        };
        serde_json::from_str(&text)
            .map(Some)
            .map_err(|e| LabError::Parse {
                command: path.display().to_string(),
                detail: format!("{e}: {text}"),
            })
    }

    /// Writes the inventory: group `netbridge` with one line per host, each
    /// reached through its own lab's LAN namespace.
    pub fn write_inventory(&self, hosts: &[(&str, &Lab)]) -> Result<PathBuf, LabError> {
        let mut text = String::from("[netbridge]\n");
        for (name, lab) in hosts {
            text.push_str(&inventory_line(name, lab.lan_ns()));
        }
        text.push_str(&format!(
            "\n[netbridge:vars]\nansible_user=root\nansible_ssh_private_key_file={}\n\
             ansible_python_interpreter=/usr/bin/python3\n",
            self.key().display()
        ));
        // Listed only to keep the controller's own module files (tasks
        // delegated to localhost) in the workspace instead of ~/.ansible.
        text.push_str(&format!(
            "\n[controller]\nlocalhost ansible_connection=local \
             ansible_python_interpreter={} ansible_remote_tmp={}/ansible-tmp\n",
            self.venv.python().display(),
            self.dir().display()
        ));
        let path = self.inventory();
        write_file(&path, &text, 0o644)?;
        Ok(path)
    }

    /// Writes `text` as the `netbridge.toml` the rollout ships.
    pub fn ship_config(&self, text: &str) -> Result<(), LabError> {
        write_file(&self.config_dir().join("netbridge.toml"), text, 0o644)
    }

    /// Runs `fleet/rollout.yml` over the inventory with this workspace's
    /// configuration and results directories, `batch` hosts per batch,
    /// `confirm_secs` for each confirmation, and more `ansible-playbook`
    /// `options` (e.g. `--check --diff`).
    pub fn rollout(
        &self,
        batch: usize,
        confirm_secs: u64,
        options: &[&str],
        timeout: Duration,
    ) -> Result<PlaybookRun, LabError> {
        let vars = serde_json::json!({
            "netbridge_batch": batch,
            "netbridge_config": self.config_dir().join("netbridge.toml"),
            "netbridge_dropins": self.config_dir().join("conf.d"),
            "netbridge_results_dir": self.results_dir(),
            "netbridge_confirm_timeout": confirm_secs,
        });
        self.run_playbook(&rollout_playbook(), options, &vars, timeout)
    }

    /// Runs `playbook` against the inventory with more `ansible-playbook`
    /// `options` (e.g. `--check --diff`) and `extra_vars` (a JSON
    /// object), killing it (its whole process group, which it started in)
    /// if it has not finished within `timeout`.
    pub fn run_playbook(
        &self,
        playbook: &Path,
        options: &[&str],
        extra_vars: &Value,
        timeout: Duration,
    ) -> Result<PlaybookRun, LabError> {
        let log = self.dir().join(format!(
            "playbook-{}.log",
            playbook
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default()
        ));
        let mut command = self.playbook_command(playbook, extra_vars);
        command.args(options);
        let what = format!("ansible-playbook {}", playbook.display());
        let (status, output) = run_with_deadline(&mut command, &log, timeout, &what)?;
        Ok(PlaybookRun { status, output })
    }

    fn playbook_command(&self, playbook: &Path, extra_vars: &Value) -> Command {
        let mut command = Command::new(self.venv.ansible_playbook());
        command
            .arg("-i")
            .arg(self.inventory())
            .arg("-e")
            .arg(extra_vars.to_string())
            .arg(playbook)
            .current_dir(self.dir())
            .env("ANSIBLE_CONFIG", self.dir().join("ansible.cfg"))
            .env("ANSIBLE_NOCOLOR", "1")
            // ansible-core refuses to run without a UTF-8 locale.
            .env("LC_ALL", "C.UTF-8")
            .env("LANG", "C.UTF-8")
            // Its own process group, so a timeout stops its workers and
            // ssh processes too.
            .process_group(0);
        command
    }

    /// `ssh` to the host of `lab` as the playbook reaches it (root, the
    /// controller's key, through the host's LAN namespace), running
    /// `remote` there. `BatchMode`: it fails rather than asks.
    pub fn ssh(&self, lab: &Lab, remote: &str) -> Command {
        let mut command = Command::new(cmd::program("ssh"));
        command
            .args(ssh_options(lab.lan_ns()))
            .arg("-i")
            .arg(self.key())
            .args(["-o", "BatchMode=yes", "-l", "root"])
            .arg(STATIC_ADDRESS.to_string())
            .arg(remote);
        command
    }

    /// Everything Ansible writes on the controller stays in the workspace.
    /// ControlMaster is off: every lab host is root@172.25.250.10:22, so
    /// all of them would map to one control socket (`%C` hashes exactly
    /// those), and h2's tasks would run on h1 through h1's master
    /// connection.
    fn ansible_cfg(&self) -> String {
        let dir = self.dir().display();
        format!(
            "[defaults]\n\
             home = {dir}/ansible-home\n\
             local_tmp = {dir}/ansible-tmp\n\
             retry_files_enabled = False\n\
             \n\
             [ssh_connection]\n\
             ssh_args = -o ControlMaster=no\n"
        )
    }
}

/// How the controller reaches a lab host: `-F /dev/null` (no ssh_config
/// of the machine: a `Host *` ProxyJump there would take the traffic out of
/// the lab), through the host's own LAN namespace, any host key (each lab
/// makes a new one).
fn ssh_options(lan_ns: &str) -> [String; 8] {
    [
        "-F".to_owned(),
        "/dev/null".to_owned(),
        "-o".to_owned(),
        format!(
            "ProxyCommand={ip} netns exec {lan_ns} {nc} %h %p",
            ip = cmd::program("ip").display(),
            nc = cmd::program("nc").display(),
        ),
        "-o".to_owned(),
        "StrictHostKeyChecking=no".to_owned(),
        "-o".to_owned(),
        "UserKnownHostsFile=/dev/null".to_owned(),
    ]
}

/// One inventory line: [`ssh_options`], each one quoted that holds spaces.
fn inventory_line(name: &str, lan_ns: &str) -> String {
    let options: Vec<String> = ssh_options(lan_ns)
        .into_iter()
        .map(|o| {
            if o.contains(' ') {
                format!("\"{o}\"")
            } else {
                o
            }
        })
        .collect();
    format!(
        "{name} ansible_host={STATIC_ADDRESS} ansible_ssh_common_args='{}'\n",
        options.join(" ")
    )
}

/// Runs `command` (in a process group of its own: `process_group(0)`)
/// with its stdout and stderr into `log`; kills the group if it has not
/// finished within `timeout`. Returns how it ended and what it wrote.
pub(crate) fn run_with_deadline(
    command: &mut Command,
    log: &Path,
    timeout: Duration,
    what: &str,
) -> Result<(ExitStatus, String), LabError> {
    let mut child = spawn_logged(command, log)?;
    let deadline = Instant::now() + timeout;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(200));
            }
            Ok(None) | Err(_) => {
                stop_group(&mut child);
                return Err(LabError::Timeout {
                    what: what.to_owned(),
                    seconds: timeout.as_secs(),
                    detail: log_tail(log, 40),
                });
            }
        }
    };
    let output =
        std::fs::read_to_string(log).map_err(|e| LabError::io("cannot read the output", log, e))?;
    Ok((status, output))
}

fn spawn_logged(command: &mut Command, log: &Path) -> Result<std::process::Child, LabError> {
    let out = File::create(log).map_err(|e| LabError::io("cannot create the log", log, e))?;
    let err = out
        .try_clone()
        .map_err(|e| LabError::io("cannot duplicate the log", log, e))?;
    command.stdin(Stdio::null()).stdout(out).stderr(err);
    command.spawn().map_err(|source| LabError::Spawn {
        command: cmd::describe(command),
        source,
    })
}

/// SIGKILL to the process group the child leads (it was spawned with
/// `process_group(0)`, so the group's id is its pid), then reap it.
fn stop_group(child: &mut std::process::Child) {
    if let Ok(raw) = i32::try_from(child.id()) {
        let _ = killpg(Pid::from_raw(raw), Signal::SIGKILL);
    }
    let _ = child.wait();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_inventory_line_goes_through_the_lan_namespace() {
        let line = inventory_line("h1", "nb-1-0-l");
        assert!(line.starts_with("h1 ansible_host=172.25.250.10 "), "{line}");
        assert!(line.contains(" netns exec nb-1-0-l "), "{line}");
        assert!(line.contains(" -o \"ProxyCommand="), "{line}");
        assert!(line.contains("nc %h %p\""), "{line}");
        assert!(line.contains("-F /dev/null"), "{line}");
        assert!(line.ends_with("UserKnownHostsFile=/dev/null'\n"), "{line}");
    }

    #[test]
    fn the_playbook_is_in_the_repository() {
        assert!(
            rollout_playbook().is_file(),
            "{}",
            rollout_playbook().display()
        );
    }
}
