//! A cgroup of its own for each boot of a container.
//!
//! `systemd-nspawn --keep-unit` runs the container in nspawn's own cgroup.
//! On a machine whose PID 1 is not systemd, that is the root cgroup for every
//! container the tests boot, so two containers booting at once shared one
//! tree: one's systemd removed `/system.slice/systemd-sysusers.service` when
//! its unit ended while the other's was attaching to the same path, which
//! then failed ("Failed to attach to cgroup …: No such file or directory")
//! and left that host degraded. Each boot now starts in a child cgroup of
//! its own, named after the machine, in the two hierarchies nspawn uses: the
//! named `systemd` one (cgroup v1) and the unified one (cgroup v2).

use std::path::{Path, PathBuf};

use crate::LabError;

/// The boot's cgroup directories; removed (bottom-up) when dropped, after
/// the container is gone.
pub(crate) struct BootCgroup {
    dirs: Vec<PathBuf>,
}

impl BootCgroup {
    /// Creates `<our cgroup>/<name>` in each hierarchy nspawn uses.
    pub(crate) fn create(name: &str) -> Result<BootCgroup, LabError> {
        let own = std::fs::read_to_string("/proc/self/cgroup")
            .map_err(|e| LabError::io("cannot read", Path::new("/proc/self/cgroup"), e))?;
        let mounts = std::fs::read_to_string("/proc/self/mountinfo")
            .map_err(|e| LabError::io("cannot read", Path::new("/proc/self/mountinfo"), e))?;
        let mut dirs = Vec::new();
        for (hierarchy, path) in own.lines().filter_map(parse_cgroup_line) {
            let Some(mount) = mount_point(&mounts, hierarchy) else {
                continue;
            };
            let dir = mount.join(path.trim_start_matches('/')).join(name);
            std::fs::create_dir_all(&dir)
                .map_err(|e| LabError::io("cannot create the container's cgroup", &dir, e))?;
            dirs.push(dir);
        }
        Ok(BootCgroup { dirs })
    }

    /// The `cgroup.procs` files a process writes its pid to, to move itself
    /// into this cgroup (space-separated; these paths have no spaces).
    pub(crate) fn procs_files(&self) -> String {
        let files: Vec<String> = self
            .dirs
            .iter()
            .map(|dir| dir.join("cgroup.procs").display().to_string())
            .collect();
        files.join(" ")
    }
}

impl Drop for BootCgroup {
    fn drop(&mut self) {
        for dir in &self.dirs {
            if let Err(e) = remove_tree(dir) {
                eprintln!("container: cannot remove cgroup {}: {e}", dir.display());
            }
        }
    }
}

/// The hierarchies nspawn works in, from a `/proc/self/cgroup` line.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Hierarchy {
    /// cgroup v1's `name=systemd`.
    NamedSystemd,
    /// cgroup v2.
    Unified,
}

fn parse_cgroup_line(line: &str) -> Option<(Hierarchy, &str)> {
    let mut fields = line.splitn(3, ':');
    let (id, controllers, path) = (fields.next()?, fields.next()?, fields.next()?);
    match (id, controllers) {
        ("0", "") => Some((Hierarchy::Unified, path)),
        (_, "name=systemd") => Some((Hierarchy::NamedSystemd, path)),
        _ => None,
    }
}

/// Where the hierarchy's root is mounted, from `/proc/self/mountinfo`:
/// `id parent major:minor root mountpoint options… - fstype source super`.
fn mount_point(mountinfo: &str, hierarchy: Hierarchy) -> Option<PathBuf> {
    mountinfo.lines().find_map(|line| {
        let (left, right) = line.split_once(" - ")?;
        let left: Vec<&str> = left.split_whitespace().collect();
        let right: Vec<&str> = right.split_whitespace().collect();
        let (root, mount_point) = (*left.get(3)?, *left.get(4)?);
        let (fstype, super_options) = (*right.first()?, right.get(2).copied().unwrap_or(""));
        let wanted = match hierarchy {
            Hierarchy::Unified => fstype == "cgroup2",
            Hierarchy::NamedSystemd => {
                fstype == "cgroup" && super_options.split(',').any(|o| o == "name=systemd")
            }
        };
        (wanted && root == "/").then(|| PathBuf::from(mount_point))
    })
}

/// Removes a cgroup directory and the ones the container's systemd left
/// below it (after a power cut it removes none), deepest first; a cgroup
/// directory holds only its control files, which go with it.
fn remove_tree(dir: &Path) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        if entry.file_type()?.is_dir() {
            remove_tree(&entry.path())?;
        }
    }
    match std::fs::remove_dir(dir) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_two_hierarchies_nspawn_uses_and_ignores_the_others() {
        assert_eq!(
            parse_cgroup_line("9:name=systemd:/"),
            Some((Hierarchy::NamedSystemd, "/"))
        );
        assert_eq!(
            parse_cgroup_line("0::/user.slice/a:b"),
            Some((Hierarchy::Unified, "/user.slice/a:b"))
        );
        assert_eq!(parse_cgroup_line("4:memory:/"), None);
    }

    #[test]
    fn finds_each_hierarchy_mounted_at_its_root() {
        let mountinfo = "\
30 25 0:26 / /sys/fs/cgroup/unified rw,nosuid - cgroup2 cgroup2 rw,nsdelegate
31 25 0:27 / /sys/fs/cgroup/systemd rw,nosuid - cgroup cgroup rw,xattr,name=systemd
32 25 0:28 / /sys/fs/cgroup/memory rw,nosuid - cgroup cgroup rw,memory
40 38 0:27 /sub /elsewhere rw - cgroup cgroup rw,name=systemd";
        assert_eq!(
            mount_point(mountinfo, Hierarchy::Unified),
            Some(PathBuf::from("/sys/fs/cgroup/unified"))
        );
        assert_eq!(
            mount_point(mountinfo, Hierarchy::NamedSystemd),
            Some(PathBuf::from("/sys/fs/cgroup/systemd"))
        );
        assert_eq!(mount_point("", Hierarchy::Unified), None);
    }
}
