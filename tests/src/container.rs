//! A whole Debian host with systemd, booted with `systemd-nspawn` in a lab's
//! host namespace: its own NetworkManager.service manages `ens32`, so tests
//! can install netbridge the documented way, enable its unit, reboot the
//! host and cut its power.
//!
//! ```text
//!   namespace H (the lab's host)                namespace L (the LAN)
//!   systemd-nspawn -b <lab dir>/container/root
//!     systemd, dbus, NetworkManager.service
//!     ens32 172.25.250.10/24 or DHCP  <-veth->   lan0 172.25.250.254/24, dnsmasq
//! ```
//!
//! The root is a copy of a Debian root made once by `debootstrap` and
//! cached outside the repository ([`RootfsCache`]); each container gets its
//! own copy in its lab directory, configured as the lab's host, which survives
//! reboots and power cuts as a disk would. Containers run Debian 12
//! (bookworm, NetworkManager 1.42) unless made with a [`Suite`]
//! ([`Container::create_on`], [`Container::start_on`],
//! [`Container::require_on`]): Debian 11 (bullseye) brings NetworkManager
//! 1.30, Debian 13 (trixie) 1.52, sid 1.58.
//!
//! The lab runs no bus and no NetworkManager of its own here
//! ([`Lab::start_network_only`]). Dropping a [`Container`] powers the
//! container off (SIGTERM to nspawn, SIGKILL after 30 s) before its lab
//! goes. If the test process dies without dropping it, the container is
//! powered off too: nspawn gets SIGTERM when the *thread* that booted it
//! exits, so boot a container in the thread that uses it (a test's own).
//! `netbridge-lab cleanup` then removes the namespaces and directory.
//!
//! Environment:
//! - `NETBRIDGE_ROOTFS_CACHE`: where bookworm's cached root lives (default
//!   `/var/cache/netbridge-tests/rootfs-bookworm`),
//!   `NETBRIDGE_ROOTFS_CACHE_TRIXIE` trixie's (default `.../rootfs-trixie`),
//!   `_BULLSEYE` and `_SID` those of Debian 11 and unstable,
//!   `NETBRIDGE_ROOTFS_CACHE_LIBVIRT` bookworm's with libvirt's daemon
//!   (default `.../rootfs-bookworm-libvirt`, for the libvirt tests only);
//!   `NETBRIDGE_DEBIAN_MIRROR` the mirror they are made from.
//! - `NETBRIDGE_SKIP_CONTAINER=1` (or `NETBRIDGE_SKIP_LAB=1`):
//!   [`Container::require`] and [`Container::require_on`] skip instead of
//!   failing when the container cannot be built or booted; ignored when
//!   `CI=true`.

mod cgroup;
mod image;
mod machine;
mod rootfs;

use std::ffi::OsStr;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

pub use image::HOSTNAME;
pub use rootfs::{RootfsCache, Suite, PACKAGES, SUITE};

use crate::lab::cmd;
use crate::lab::daemon::log_tail;
use crate::lab::files::append_file;
use crate::lab::{unavailable, Lab, LabError, Uplink, UPLINK};
use machine::{BootSpec, Machine, REBOOT_STATUS};

/// Bounds a boot: until systemd reports the system up and NetworkManager
/// has activated `ens32` with its address. A boot takes a few seconds; the
/// margin is for a loaded 2-core machine.
const BOOT_TIMEOUT: Duration = Duration::from_secs(120);
/// Bounds a clean poweroff or reboot before the container is killed.
const STOP_TIMEOUT: Duration = Duration::from_secs(30);
const POLL_INTERVAL: Duration = Duration::from_millis(200);

/// The programs a container needs on the machine, with their packages.
const TOOLS: [(&str, &str); 7] = [
    ("debootstrap", "debootstrap"),
    ("systemd-nspawn", "systemd-container"),
    ("nsenter", "util-linux"),
    ("setpriv", "util-linux"),
    ("unshare", "util-linux"),
    ("chroot", "coreutils"),
    ("cp", "coreutils"),
];

/// A lab host that is a booted Debian system. See the module documentation.
pub struct Container {
    lab: Lab,
    suite: Suite,
    root: PathBuf,
    /// None while powered off.
    machine: Option<Machine>,
    boots: u32,
    /// The link that carries the host's address once booted: `ens32`, or
    /// the bridge after netbridge converted the host.
    carrier: String,
}

impl Container {
    /// A bookworm host: [`Container::create_on`] with [`Suite::Bookworm`].
    pub fn create(uplink: Uplink) -> Result<Container, LabError> {
        Container::create_on(Suite::Bookworm, uplink)
    }

    /// A lab (network only) and a configured copy of `suite`'s cached root,
    /// building the cache first if needed; not booted yet, so files can be
    /// put into [`Container::root`] before the first boot.
    pub fn create_on(suite: Suite, uplink: Uplink) -> Result<Container, LabError> {
        check_prerequisites()?;
        let lab = Lab::start_network_only(uplink)?;
        let dir = lab.dir().join("container");
        std::fs::create_dir(&dir)
            .map_err(|e| LabError::io("cannot create the container directory", &dir, e))?;
        let root = dir.join("root");
        RootfsCache::for_suite(suite).copy_to(&root)?;
        image::configure(&root, uplink)?;
        Ok(Container {
            lab,
            suite,
            root,
            machine: None,
            boots: 0,
            carrier: UPLINK.to_owned(),
        })
    }

    /// A bookworm host: [`Container::start_on`] with [`Suite::Bookworm`].
    pub fn start(uplink: Uplink) -> Result<Container, LabError> {
        Container::start_on(Suite::Bookworm, uplink)
    }

    /// [`Container::create_on`] and [`Container::boot`].
    pub fn start_on(suite: Suite, uplink: Uplink) -> Result<Container, LabError> {
        let mut container = Container::create_on(suite, uplink)?;
        container.boot()?;
        Ok(container)
    }

    /// A bookworm host for tests: [`Container::require_on`] with
    /// [`Suite::Bookworm`].
    ///
    /// ```no_run
    /// # use netbridge_tests::{container::Container, lab::Uplink};
    /// let Some(host) = Container::require(Uplink::Static) else { return };
    /// ```
    pub fn require(uplink: Uplink) -> Option<Container> {
        Container::require_on(Suite::Bookworm, uplink)
    }

    /// [`Container::start_on`] for tests: a container test that cannot run
    /// must never pass silently. When the container cannot be built or
    /// booted, prints `LAB UNAVAILABLE: <reason>` and panics — unless
    /// `NETBRIDGE_SKIP_CONTAINER=1` or `NETBRIDGE_SKIP_LAB=1` is set and
    /// `CI` is not `true`; then it returns `None` and the test should
    /// return early:
    ///
    /// ```no_run
    /// # use netbridge_tests::{container::{Container, Suite}, lab::Uplink};
    /// let Some(host) = Container::require_on(Suite::Trixie, Uplink::Static) else { return };
    /// ```
    pub fn require_on(suite: Suite, uplink: Uplink) -> Option<Container> {
        match Container::start_on(suite, uplink) {
            Ok(container) => Some(container),
            Err(e) => unavailable(
                &format!("Debian {suite} container: {e}"),
                &["NETBRIDGE_SKIP_CONTAINER", "NETBRIDGE_SKIP_LAB"],
            ),
        }
    }

    /// The Debian release the container runs.
    pub fn suite(&self) -> Suite {
        self.suite
    }

    /// The lab around the container: its namespaces (`ip -n`), the LAN.
    pub fn lab(&self) -> &Lab {
        &self.lab
    }

    /// The container's root directory, as seen from the machine. Writes
    /// there are the container's disk (also while it runs).
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Everything the container printed on its console, all boots
    /// (separated by marker lines).
    pub fn console_log(&self) -> PathBuf {
        self.lab.dir().join("container/console.log")
    }

    /// How many times the container has been booted.
    pub fn boots(&self) -> u32 {
        self.boots
    }

    /// The container's PID 1 as seen from the machine, None while off.
    pub fn leader_pid(&self) -> Option<u32> {
        self.machine.as_ref().and_then(Machine::leader)
    }

    /// Whether nspawn is still running the container.
    pub fn is_running(&mut self) -> bool {
        self.machine
            .as_mut()
            .is_some_and(|m| m.check_running().is_ok())
    }

    /// From the next boot on, wait for the host's address on `link` (e.g.
    /// `br0` once the host is converted) instead of on `ens32`.
    pub fn expect_address_on(&mut self, link: &str) {
        self.carrier = link.to_owned();
    }

    /// Boots the container and waits (at most 120 s) until its systemd
    /// reports `running` or `degraded` and NetworkManager has activated
    /// `ens32` (see [`Container::expect_address_on`]) with the address the
    /// lab's [`Uplink`] calls for.
    pub fn boot(&mut self) -> Result<(), LabError> {
        if self.is_running() {
            return Err(LabError::Prerequisite(
                "the container is already running".to_owned(),
            ));
        }
        self.boots += 1;
        let console = self.console_log();
        append_file(
            &console,
            &format!("\n=== container: boot #{} ===\n", self.boots),
        )?;
        let started = Instant::now();
        // The last boot's machine (already exited) goes first: its cgroup
        // has the same name as the new one's and is removed when dropped.
        self.machine = None;
        self.machine = Some(Machine::spawn(&BootSpec {
            root: &self.root,
            name: self.lab.host_ns(),
            netns: self.lab.host_ns(),
            console: &console,
            unified_cgroups: self.suite.needs_unified_cgroups(),
        })?);
        self.wait_until_up()?;
        eprintln!(
            "container: boot #{} up in {:.1} s",
            self.boots,
            started.elapsed().as_secs_f64()
        );
        Ok(())
    }

    /// `systemctl reboot` inside; waits for nspawn to report the reboot
    /// (exit status 133), drops what a reboot loses in the host namespace
    /// (every link but `lo` and `ens32`; `ens32` is reset), and boots again
    /// from the same root.
    pub fn reboot(&mut self) -> Result<(), LabError> {
        // Its status does not matter: systemd may stop it as it goes down.
        self.try_exec(["systemctl", "reboot"])?;
        let machine = self.running_machine()?;
        let status = machine.wait_exit(STOP_TIMEOUT);
        if status.is_none() {
            machine.kill();
        }
        self.machine = None;
        self.lab.reset_host_links()?;
        match status.and_then(|s| s.code()) {
            Some(REBOOT_STATUS) => self.boot(),
            other => Err(LabError::Prerequisite(format!(
                "systemd-nspawn ended with {other:?} instead of {REBOOT_STATUS} (reboot) \
                 within {STOP_TIMEOUT:?}; console:\n{}",
                log_tail(&self.console_log(), 30)
            ))),
        }
    }

    /// A power loss: every process of the container is killed at once, the
    /// host namespace loses its extra links and `ens32` its addresses. The
    /// root stays as written (the page cache is the machine's, as a disk's
    /// contents survive a power cut). [`Container::boot`] starts it again.
    pub fn power_cut(&mut self) -> Result<(), LabError> {
        if let Some(mut machine) = self.machine.take() {
            machine.kill();
        }
        self.lab.reset_host_links()
    }

    /// A clean poweroff (as `systemctl poweroff`), bounded by 30 s before
    /// the container is killed; the host namespace is reset as by
    /// [`Container::power_cut`].
    pub fn shutdown(&mut self) -> Result<(), LabError> {
        if let Some(mut machine) = self.machine.take() {
            machine.terminate(STOP_TIMEOUT);
        }
        self.lab.reset_host_links()
    }

    /// A command that runs `argv` inside the running container (all its
    /// namespaces, its root, PATH and a clean environment), as root.
    pub fn command<I, S>(&self, argv: I) -> Result<Command, LabError>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        match &self.machine {
            Some(machine) => machine.nsenter(argv),
            None => Err(LabError::Prerequisite(
                "the container is not running".to_owned(),
            )),
        }
    }

    /// Runs `argv` inside the container to completion, whatever its status.
    pub fn try_exec<I, S>(&self, argv: I) -> Result<Output, LabError>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        cmd::output(&mut self.command(argv)?)
    }

    /// [`Container::try_exec`] for tests.
    ///
    /// # Panics
    /// If the container is not running or `nsenter` cannot be started.
    pub fn exec<I, S>(&self, argv: I) -> Output
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        self.try_exec(argv)
            .unwrap_or_else(|e| panic!("container: {e}"))
    }

    /// `systemctl ARGS...` inside the container.
    ///
    /// # Panics
    /// As [`Container::exec`].
    pub fn systemctl<I, S>(&self, args: I) -> Output
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let mut argv = vec![OsStr::new("systemctl").to_owned()];
        argv.extend(args.into_iter().map(|a| a.as_ref().to_owned()));
        self.exec(argv)
    }

    /// The journal of `unit`, all boots (`journalctl -u UNIT --no-pager`);
    /// journalctl's error instead if it fails.
    ///
    /// # Panics
    /// As [`Container::exec`].
    pub fn journal(&self, unit: &str) -> String {
        let out = self.exec(["journalctl", "-u", unit, "--no-pager"]);
        let text = if out.status.success() {
            &out.stdout
        } else {
            &out.stderr
        };
        String::from_utf8_lossy(text).into_owned()
    }

    /// What `systemctl is-system-running` says (`running`, `degraded`,
    /// `starting`, ...).
    pub fn system_state(&self) -> Result<String, LabError> {
        let out = self.try_exec(["systemctl", "is-system-running"])?;
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
    }

    /// The IPv4 addresses on `link` in the host namespace, as the machine
    /// sees them (`ip -n H`).
    pub fn ipv4_addresses(&self, link: &str) -> Result<Vec<(Ipv4Addr, u8)>, LabError> {
        self.lab.ipv4_addresses(link)
    }

    /// Writes a file into the container's root (`path` as seen inside,
    /// e.g. `/etc/netbridge/netbridge.toml`), creating its directories.
    /// Refuses to write through symlinks.
    pub fn write_file(&self, path: &str, text: &str, mode: u32) -> Result<(), LabError> {
        image::write_in_root(&self.root, path.trim_start_matches('/'), text, mode)
    }

    /// Copies the machine's file `source` into the container's root as
    /// `path` (as seen inside, e.g. `/usr/local/bin/netbridge`), like
    /// [`Container::write_file`]: e.g. a release build to measure there.
    pub fn copy_file(&self, source: &Path, path: &str, mode: u32) -> Result<(), LabError> {
        image::copy_into_root(&self.root, path.trim_start_matches('/'), source, mode)
    }

    /// Installs netbridge into the container the documented way:
    /// `make -C <repository> install DESTDIR=<root>` (with `GLIBC=2.28`
    /// where [`Suite::needs_portable_build`]); if the container
    /// runs, `systemctl daemon-reload` makes systemd see the new unit.
    pub fn install_netbridge(&self) -> Result<(), LabError> {
        let repo = repository_dir();
        if !repo.join("Makefile").is_file() {
            return Err(LabError::Prerequisite(format!(
                "no Makefile in {}: netbridge has no `make install` yet",
                repo.display()
            )));
        }
        let mut make = Command::new(cmd::program("make"));
        make.arg("-C")
            .arg(&repo)
            .arg("install")
            // The debug build the test run already has; `make install` alone builds a release.
            .arg("PROFILE=dev")
            .arg(if self.suite.needs_portable_build() {
                "GLIBC=2.28"
            } else {
                "GLIBC="
            })
            .arg(format!("DESTDIR={}", self.root.display()));
        cmd::run(&mut make)?;
        if self.machine.is_some() {
            cmd::run(&mut self.command(["systemctl", "daemon-reload"])?)?;
        }
        Ok(())
    }

    fn running_machine(&mut self) -> Result<&mut Machine, LabError> {
        self.machine
            .as_mut()
            .ok_or_else(|| LabError::Prerequisite("the container is not running".to_owned()))
    }

    /// Polls [`Container::boot_waiting`] until it reports the host up.
    fn wait_until_up(&mut self) -> Result<(), LabError> {
        let deadline = Instant::now() + BOOT_TIMEOUT;
        loop {
            let Some(detail) = self.boot_waiting()? else {
                return Ok(());
            };
            if Instant::now() >= deadline {
                return Err(LabError::Timeout {
                    what: format!("the container to boot with {} up", self.carrier),
                    seconds: BOOT_TIMEOUT.as_secs(),
                    detail: format!(
                        "{detail}\nlast lines of the console:\n{}",
                        log_tail(&self.console_log(), 30)
                    ),
                });
            }
            std::thread::sleep(POLL_INTERVAL);
        }
    }

    /// None once the host is up; otherwise what it is still waiting for.
    /// Fails only if nspawn has exited.
    fn boot_waiting(&mut self) -> Result<Option<String>, LabError> {
        let machine = self.running_machine()?;
        machine.check_running()?;
        if machine.find_leader().is_none() {
            return Ok(Some("the container's PID 1 is not there yet".to_owned()));
        }
        // Errors here mean "not yet": nsenter can race the container's own
        // setup, and systemctl the start of systemd.
        let state = self.system_state().unwrap_or_else(|e| e.to_string());
        if state != "running" && state != "degraded" {
            return Ok(Some(format!("systemctl is-system-running: {state}")));
        }
        let link = &self.carrier;
        let addresses = self.lab.ipv4_addresses(link).unwrap_or_default();
        let uplink = self.lab.uplink();
        if !addresses.iter().any(|&(a, len)| uplink.accepts(a, len)) {
            return Ok(Some(format!("{link} has {addresses:?}")));
        }
        let device = self.nm_device_state(link);
        if !device.starts_with("100") {
            return Ok(Some(format!("NetworkManager's state of {link}: {device}")));
        }
        Ok(None)
    }

    /// `nmcli`'s GENERAL.STATE of `iface`, e.g. `100 (connected)`.
    fn nm_device_state(&self, iface: &str) -> String {
        match self.try_exec(["nmcli", "-g", "GENERAL.STATE", "device", "show", iface]) {
            Ok(out) => String::from_utf8_lossy(&out.stdout).trim().to_owned(),
            Err(e) => e.to_string(),
        }
    }
}

impl Drop for Container {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "---- container {}: last lines of the console ----\n{}",
                self.lab.host_ns(),
                log_tail(&self.console_log(), 60)
            );
        }
        // Before the lab (a field, dropped after this) deletes the
        // namespace the container's network lives in.
        if let Some(mut machine) = self.machine.take() {
            machine.terminate(STOP_TIMEOUT);
        }
    }
}

fn check_prerequisites() -> Result<(), LabError> {
    cmd::require_programs(&TOOLS)
}

/// The workspace root: the parent of this crate's directory.
fn repository_dir() -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest.parent().unwrap_or(manifest).to_owned()
}
