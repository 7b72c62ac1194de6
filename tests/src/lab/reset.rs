//! Stopping NetworkManager's children, resetting the host for a "reboot",
//! and tearing down.

use std::path::Path;
use std::time::{Duration, Instant};

use super::daemon::{self, log_tail};
use super::{netns, Lab, LabError, UPLINK};

impl Lab {
    /// Stops processes NM spawned (e.g. the dnsmasq of a `shared` profile),
    /// which NM names in pid files in its runtime directory. Only pids that
    /// are inside the host namespace are signalled, so a stale pid file can
    /// never hit an unrelated process.
    pub(super) fn stop_nm_children(&self) -> Result<(), LabError> {
        if !netns::exists(&self.host_ns) {
            return Ok(());
        }
        let in_host = netns::pids(&self.host_ns)?;
        let dirs = [self.dir.join("host-run"), self.dir.join("run")];
        for pid in dirs.iter().flat_map(|d| pid_files(d)) {
            if in_host.contains(&pid) {
                terminate_foreign(pid);
            }
        }
        Ok(())
    }

    pub(super) fn delete_host_links(&self) -> Result<(), LabError> {
        // One at a time, re-listing: deleting a veth end also removes its
        // peer, which may be another link in the list.
        loop {
            let links = netns::link_names(&self.host_ns)?;
            let Some(extra) = links.iter().find(|l| *l != "lo" && *l != UPLINK) else {
                return Ok(());
            };
            netns::ip_in(&self.host_ns, &["link", "del", extra])?;
        }
    }

    pub(super) fn reset_uplink(&self) -> Result<(), LabError> {
        let h = &self.host_ns;
        netns::ip_in(h, &["link", "set", UPLINK, "down", "nomaster"])?;
        netns::ip_in(h, &["addr", "flush", "dev", UPLINK])?;
        if let Some((mac, mtu)) = &self.uplink_identity {
            let mtu = mtu.to_string();
            netns::ip_in(h, &["link", "set", UPLINK, "address", mac, "mtu", &mtu])?;
        }
        netns::ip_in(h, &["link", "set", UPLINK, "up"])
    }

    pub(super) fn delete_namespaces(&self) {
        let mut namespaces = self
            .namespaces
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        while let Some(ns) = namespaces.pop() {
            if let Err(e) = netns::delete(&ns) {
                eprintln!("lab: cannot delete namespace {ns}: {e}");
            }
        }
    }

    pub(super) fn dump_logs(&self) {
        for log in ["nm.log", "dnsmasq.log", "dbus.log"] {
            let path = self.dir.join(log);
            // A network-only lab has no NM or bus, hence no log of theirs.
            if !path.exists() {
                continue;
            }
            eprintln!(
                "---- lab {}: last lines of {log} ----\n{}",
                self.host_ns,
                log_tail(&path, 60)
            );
        }
    }
}

/// Pids named in `*.pid` files directly under `dir`.
fn pid_files(dir: &Path) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    entries
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|ext| ext == "pid"))
        .filter_map(|p| std::fs::read_to_string(p).ok()?.trim().parse().ok())
        .collect()
}

/// Stops a process that is not the lab's child (so it cannot be waited
/// for): SIGTERM, watch /proc for up to 5 s, then SIGKILL.
fn terminate_foreign(pid: u32) {
    use nix::sys::signal::{kill, Signal};
    use nix::unistd::Pid;
    let Ok(raw) = i32::try_from(pid) else { return };
    let _ = kill(Pid::from_raw(raw), Signal::SIGTERM);
    let deadline = Instant::now() + Duration::from_secs(5);
    while daemon::is_alive(pid) {
        if Instant::now() >= deadline {
            let _ = kill(Pid::from_raw(raw), Signal::SIGKILL);
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}
