//! The Debian root file systems that container hosts boot: made once per
//! [`Suite`] with `debootstrap`, cached outside the repository, and copied
//! per test.
//!
//! The cache is guarded by a `flock` on `<cache>.lock`: a reader copies
//! under a shared lock, a builder holds it exclusively, so parallel tests
//! (threads or processes) build it once and never copy a half-made or
//! half-replaced tree. A build happens in `<cache>.tmp-<pid>` and is renamed
//! into place only when complete; a stamp file inside it records what it
//! was made from, so a changed package list rebuilds it.
//!
//! Every suite is built by this machine's `debootstrap` and checked against
//! its `debian-archive-keyring` (bookworm's debootstrap knows trixie, and
//! bookworm's keyring carries trixie's archive keys since 2023.3+deb12u2).

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use nix::fcntl::{Flock, FlockArg};

use crate::lab::cmd;
use crate::lab::files::{lock_file, write_file};
use crate::LabError;

/// A Debian release a container can run: one NetworkManager version each.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Suite {
    /// Debian 12, NetworkManager 1.42: what most tests run.
    #[default]
    Bookworm,
    /// Debian 11, NetworkManager 1.30 and glibc 2.31: the oldest supported,
    /// without `Device.Ports` (ports are read from `Slaves`).
    Bullseye,
    /// Debian 13, NetworkManager 1.52: the newer D-Bus API and key names.
    Trixie,
    /// Debian unstable, NetworkManager 1.58: the newest. Its systemd boots
    /// only on the unified cgroup hierarchy ([`Suite::needs_unified_cgroups`]).
    Sid,
    /// Debian 12 with libvirt's daemon and virsh, for the libvirt tests
    /// only: a root of its own (about 110 MB more), so the other tests keep
    /// copying the small one.
    BookwormLibvirt,
}

impl Suite {
    /// The codename debootstrap and the mirror know it by.
    pub const fn codename(self) -> &'static str {
        match self {
            Suite::Bookworm | Suite::BookwormLibvirt => "bookworm",
            Suite::Bullseye => "bullseye",
            Suite::Trixie => "trixie",
            Suite::Sid => "sid",
        }
    }

    /// The NetworkManager series the suite ships, as `major.minor`.
    pub fn networkmanager(self) -> &'static str {
        match self {
            Suite::Bookworm | Suite::BookwormLibvirt => "1.42",
            Suite::Bullseye => "1.30",
            Suite::Trixie => "1.52",
            Suite::Sid => "1.58",
        }
    }

    /// Every suite, oldest first.
    pub const ALL: [Suite; 5] = [
        Suite::Bullseye,
        Suite::Bookworm,
        Suite::BookwormLibvirt,
        Suite::Trixie,
        Suite::Sid,
    ];

    /// Whether netbridge must be built linked against an older glibc
    /// (`make install GLIBC=2.28`, as the packages are) to run there:
    /// bullseye's glibc 2.31 is older than the 2.34 a build on Debian 12 needs.
    pub fn needs_portable_build(self) -> bool {
        self == Suite::Bullseye
    }

    /// Whether systemd-nspawn must give the container the unified cgroup
    /// hierarchy (`SYSTEMD_NSPAWN_UNIFIED_HIERARCHY=1`): sid's systemd
    /// refuses to boot on cgroup v1, which a host on v1 would pass on.
    pub fn needs_unified_cgroups(self) -> bool {
        self == Suite::Sid
    }

    /// What `debootstrap --include` adds to the minimal base: [`PACKAGES`]
    /// (the same names exist in every suite), and on the others what a real
    /// host has beside NetworkManager and a NAT network needs:
    /// `dnsmasq-base` (a Recommends of network-manager; NetworkManager runs
    /// it for shared mode) and `nftables` (priority important, so in every
    /// standard installation; NetworkManager's default firewall backend for
    /// shared mode from 1.32). Bullseye's adds `iptables`, another Recommends
    /// of its network-manager: NetworkManager 1.30 sets up a shared (NAT)
    /// network's masquerading with the iptables program only (nftables
    /// from 1.32). Bookworm's list stays as it was, so its existing cache
    /// stays current. The libvirt root adds `libvirt-daemon-system` and
    /// `libvirt-clients` (debootstrap installs Depends only, so this is
    /// `--no-install-recommends`: no QEMU, no dnsmasq).
    pub fn packages(self) -> &'static [&'static str] {
        match self {
            Suite::Bookworm => &PACKAGES,
            Suite::Trixie | Suite::Sid => &STANDARD_PACKAGES,
            Suite::Bullseye => &BULLSEYE_PACKAGES,
            Suite::BookwormLibvirt => &LIBVIRT_PACKAGES,
        }
    }

    /// The variable that overrides where this suite's cached root lives.
    /// Bookworm keeps the original name, so existing setups go on working.
    fn cache_variable(self) -> &'static str {
        match self {
            Suite::Bookworm => "NETBRIDGE_ROOTFS_CACHE",
            Suite::Bullseye => "NETBRIDGE_ROOTFS_CACHE_BULLSEYE",
            Suite::Trixie => "NETBRIDGE_ROOTFS_CACHE_TRIXIE",
            Suite::Sid => "NETBRIDGE_ROOTFS_CACHE_SID",
            Suite::BookwormLibvirt => "NETBRIDGE_ROOTFS_CACHE_LIBVIRT",
        }
    }

    fn default_cache(self) -> PathBuf {
        let name = match self {
            Suite::BookwormLibvirt => "bookworm-libvirt",
            other => other.codename(),
        };
        Path::new(CACHE_PARENT).join(format!("rootfs-{name}"))
    }
}

impl std::fmt::Display for Suite {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.codename())
    }
}

/// The Debian release containers run unless a test picks another
/// ([`Suite::Bookworm`], NetworkManager 1.42).
pub const SUITE: &str = Suite::Bookworm.codename();
/// What `debootstrap --include` adds to the minimal base.
pub const PACKAGES: [&str; 7] = [
    "systemd",
    "systemd-sysv",
    "dbus",
    "network-manager",
    "libpam-systemd",
    "iproute2",
    "iputils-ping",
];
const STANDARD_PACKAGES: [&str; 9] = [
    PACKAGES[0],
    PACKAGES[1],
    PACKAGES[2],
    PACKAGES[3],
    PACKAGES[4],
    PACKAGES[5],
    PACKAGES[6],
    "dnsmasq-base",
    "nftables",
];
const BULLSEYE_PACKAGES: [&str; 10] = [
    STANDARD_PACKAGES[0],
    STANDARD_PACKAGES[1],
    STANDARD_PACKAGES[2],
    STANDARD_PACKAGES[3],
    STANDARD_PACKAGES[4],
    STANDARD_PACKAGES[5],
    STANDARD_PACKAGES[6],
    STANDARD_PACKAGES[7],
    STANDARD_PACKAGES[8],
    "iptables",
];
const LIBVIRT_PACKAGES: [&str; 9] = [
    PACKAGES[0],
    PACKAGES[1],
    PACKAGES[2],
    PACKAGES[3],
    PACKAGES[4],
    PACKAGES[5],
    PACKAGES[6],
    "libvirt-daemon-system",
    "libvirt-clients",
];
const CACHE_PARENT: &str = "/var/cache/netbridge-tests";
const DEFAULT_MIRROR: &str = "http://deb.debian.org/debian";
/// Bumped when [`RootfsCache::build`] changes what it makes, to rebuild.
const RECIPE: u32 = 2;
/// Inside the cached root; its content is [`RootfsCache::stamp`].
const STAMP_FILE: &str = ".netbridge-tests-rootfs";

/// The cached root file system. See the module documentation.
#[derive(Debug, Clone)]
pub struct RootfsCache {
    suite: Suite,
    dir: PathBuf,
    mirror: String,
}

impl RootfsCache {
    /// Bookworm's cache: [`RootfsCache::for_suite`] of [`Suite::Bookworm`].
    pub fn from_env() -> RootfsCache {
        RootfsCache::for_suite(Suite::Bookworm)
    }

    /// The cache of `suite`: `/var/cache/netbridge-tests/rootfs-<suite>`
    /// unless `$NETBRIDGE_ROOTFS_CACHE` (bookworm) or
    /// `$NETBRIDGE_ROOTFS_CACHE_<SUITE>` (e.g. `_TRIXIE`) says otherwise, filled from
    /// `$NETBRIDGE_DEBIAN_MIRROR` (default `http://deb.debian.org/debian`).
    pub fn for_suite(suite: Suite) -> RootfsCache {
        let dir = std::env::var_os(suite.cache_variable())
            .filter(|v| !v.is_empty())
            .map_or_else(|| suite.default_cache(), PathBuf::from);
        let mirror = std::env::var("NETBRIDGE_DEBIAN_MIRROR")
            .ok()
            .filter(|v| !v.is_empty())
            .unwrap_or_else(|| DEFAULT_MIRROR.to_owned());
        RootfsCache { suite, dir, mirror }
    }

    pub fn suite(&self) -> Suite {
        self.suite
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Where the last build's output went.
    pub fn build_log(&self) -> PathBuf {
        self.sibling("build.log")
    }

    /// What the cached tree was built from. The mirror is left out: any
    /// Debian mirror gives the same release. (Bookworm's reads as it did
    /// before suites were selectable, so its existing cache stays current.)
    pub fn stamp(&self) -> String {
        format!(
            "debootstrap --variant=minbase {}\npackages={}\nrecipe={RECIPE}\n",
            self.suite,
            self.suite.packages().join(",")
        )
    }

    /// Whether the cache holds a complete tree built from [`Self::stamp`].
    pub fn is_current(&self) -> bool {
        std::fs::read_to_string(self.dir.join(STAMP_FILE)).is_ok_and(|s| s == self.stamp())
    }

    /// Builds the cached tree unless it is current.
    pub fn ensure(&self) -> Result<(), LabError> {
        let _lock = self.lock(FlockArg::LockExclusive)?;
        if self.is_current() {
            return Ok(());
        }
        self.build()
    }

    /// Copies the cached tree (built first if needed) to `dest`, which must
    /// not exist. Reflinks where the file system can, a plain copy elsewhere.
    pub fn copy_to(&self, dest: &Path) -> Result<(), LabError> {
        // Two rounds at most: a tree that is stale under the shared lock is
        // rebuilt under the exclusive one, and then current.
        for _ in 0..2 {
            let lock = self.lock(FlockArg::LockShared)?;
            if self.is_current() {
                let mut cp = Command::new("cp");
                cp.args(["-a", "--reflink=auto"]).arg(&self.dir).arg(dest);
                return cmd::run(&mut cp).map(drop);
            }
            drop(lock);
            self.ensure()?;
        }
        Err(LabError::Prerequisite(format!(
            "the container root {} is still not current after a build",
            self.dir.display()
        )))
    }

    fn sibling(&self, suffix: &str) -> PathBuf {
        let name = self
            .dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "rootfs".to_owned());
        self.dir.with_file_name(format!("{name}.{suffix}"))
    }

    fn lock(&self, how: FlockArg) -> Result<Flock<File>, LabError> {
        lock_file(&self.sibling("lock"), how)
    }

    /// Called with the exclusive lock held.
    fn build(&self) -> Result<(), LabError> {
        self.remove_leftovers()?;
        let tmp = self.sibling(&format!("tmp-{}", std::process::id()));
        let log = self.build_log();
        write_file(&log, "", 0o644)?;
        crate::lab::loud(&format!(
            "container: building the Debian {} root in {} (a few minutes, once; log {})",
            self.suite,
            self.dir.display(),
            log.display()
        ));
        let started = Instant::now();
        if let Err(e) = self.debootstrap(&tmp, &log) {
            // Not worth keeping (the next build starts over), and large.
            let _ = remove_tree(&tmp);
            return Err(e);
        }
        write_file(&tmp.join(STAMP_FILE), &self.stamp(), 0o644)?;
        self.replace_with(&tmp)?;
        crate::lab::loud(&format!(
            "container: {} root built in {:.0} s",
            self.suite,
            started.elapsed().as_secs_f64()
        ));
        Ok(())
    }

    /// Two stages, so that no package script ever runs in the machine's
    /// own network namespace: the first (download and unpack) needs the
    /// mirror; the second (configure: the maintainer scripts, which might
    /// start dbus or NetworkManager) runs in an empty network namespace and
    /// a PID namespace that takes anything it started down with it.
    /// (debootstrap also puts a `policy-rc.d` that forbids starting services
    /// into the target while it configures, and removes it afterwards.)
    fn debootstrap(&self, tmp: &Path, log: &Path) -> Result<(), LabError> {
        let mut first = Command::new(cmd::program("debootstrap"));
        first
            .args(["--foreign", "--variant=minbase"])
            .arg(format!("--include={}", self.suite.packages().join(",")))
            .arg(self.suite.codename())
            .arg(tmp)
            .arg(&self.mirror);
        cmd::run_logged(&mut first, log)?;
        let mut second = Command::new(cmd::program("unshare"));
        second
            .args([
                "--net",
                "--pid",
                "--fork",
                "--mount",
                "--propagation",
                "private",
            ])
            .arg(cmd::program("chroot"))
            .arg(tmp)
            .args(["/debootstrap/debootstrap", "--second-stage"])
            .env_clear()
            .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
            .env("LANG", "C.UTF-8")
            .env("DEBIAN_FRONTEND", "noninteractive");
        cmd::run_logged(&mut second, log)?;
        remove_downloaded_packages(tmp)
    }

    /// Swaps the finished tree in. Not a single atomic step (a directory
    /// cannot replace a non-empty one by rename), but readers hold the
    /// shared lock, so none sees the gap.
    fn replace_with(&self, tmp: &Path) -> Result<(), LabError> {
        let old = self.sibling(&format!("old-{}", std::process::id()));
        if self.dir.exists() {
            std::fs::rename(&self.dir, &old)
                .map_err(|e| LabError::io("cannot move the old rootfs aside", &self.dir, e))?;
        }
        std::fs::rename(tmp, &self.dir)
            .map_err(|e| LabError::io("cannot move the new rootfs into place", tmp, e))?;
        remove_tree(&old)
    }

    /// What builds of killed processes left (`<cache>.tmp-*`, `<cache>.old-*`).
    /// Safe with the exclusive lock held: no other build is running.
    fn remove_leftovers(&self) -> Result<(), LabError> {
        let (Some(parent), Some(name)) = (self.dir.parent(), self.dir.file_name()) else {
            return Ok(());
        };
        let name = name.to_string_lossy();
        let Ok(entries) = std::fs::read_dir(parent) else {
            return Ok(());
        };
        for entry in entries.flatten() {
            let entry_name = entry.file_name().to_string_lossy().into_owned();
            let leftover = ["tmp-", "old-"]
                .iter()
                .any(|kind| entry_name.starts_with(&format!("{name}.{kind}")));
            if leftover {
                remove_tree(&entry.path())?;
            }
        }
        Ok(())
    }
}

/// The .deb files debootstrap leaves in apt's cache: a sixth of the tree,
/// copied for every test otherwise.
fn remove_downloaded_packages(root: &Path) -> Result<(), LabError> {
    let archives = root.join("var/cache/apt/archives");
    let entries = std::fs::read_dir(&archives)
        .map_err(|e| LabError::io("cannot list apt's package cache", &archives, e))?;
    for entry in entries.flatten() {
        let path = entry.path();
        if path.extension().is_some_and(|ext| ext == "deb") {
            std::fs::remove_file(&path)
                .map_err(|e| LabError::io("cannot remove a downloaded package", &path, e))?;
        }
    }
    Ok(())
}

fn remove_tree(path: &Path) -> Result<(), LabError> {
    match std::fs::remove_dir_all(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(LabError::io("cannot remove a rootfs tree", path, e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_stamp_names_the_suite_and_every_package() {
        for suite in Suite::ALL {
            let stamp = RootfsCache::for_suite(suite).stamp();
            for package in suite.packages() {
                assert!(stamp.contains(package), "{stamp}");
            }
            assert!(stamp.contains(&format!("minbase {suite}\n")), "{stamp}");
        }
    }

    #[test]
    fn trixie_has_every_package_bookworm_has() {
        for package in PACKAGES {
            assert!(Suite::Trixie.packages().contains(&package), "{package}");
        }
    }

    #[test]
    fn bookworms_stamp_is_unchanged_so_its_cache_stays_current() {
        assert_eq!(
            RootfsCache::for_suite(Suite::Bookworm).stamp(),
            "debootstrap --variant=minbase bookworm\n\
             packages=systemd,systemd-sysv,dbus,network-manager,libpam-systemd,iproute2,iputils-ping\n\
             recipe=2\n"
        );
    }

    #[test]
    fn each_suite_has_its_own_cache() {
        for (suite, dir) in [
            (Suite::Bullseye, "rootfs-bullseye"),
            (Suite::Bookworm, "rootfs-bookworm"),
            (Suite::BookwormLibvirt, "rootfs-bookworm-libvirt"),
            (Suite::Trixie, "rootfs-trixie"),
            (Suite::Sid, "rootfs-sid"),
        ] {
            // Unless the environment moves it; this test does not set it.
            if std::env::var_os(suite.cache_variable()).is_some() {
                continue;
            }
            assert_eq!(
                RootfsCache::for_suite(suite).dir(),
                Path::new(CACHE_PARENT).join(dir)
            );
        }
    }

    #[test]
    fn lock_log_and_temporary_trees_are_siblings_of_the_cache() {
        let cache = RootfsCache {
            suite: Suite::Bookworm,
            dir: PathBuf::from("/var/cache/x/rootfs-bookworm"),
            mirror: DEFAULT_MIRROR.to_owned(),
        };
        assert_eq!(
            cache.sibling("lock"),
            Path::new("/var/cache/x/rootfs-bookworm.lock")
        );
        assert_eq!(
            cache.build_log(),
            Path::new("/var/cache/x/rootfs-bookworm.build.log")
        );
    }
}
