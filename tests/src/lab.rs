//! The lab: a real NetworkManager managing a veth "uplink", in throwaway
//! network namespaces, so netbridge runs end to end without touching the
//! machine's own network.
//!
//! ```text
//!   namespace H ("the host")                 namespace L ("the LAN")
//!   NetworkManager (private mount ns)        dnsmasq: DNS gw.lab, DHCP
//!   ens32 172.25.250.10/24 or DHCP  <-veth->  lan0 172.25.250.254/24
//!   guest taps (add_guest)
//!            \__ private dbus-daemon, socket <lab dir>/bus.sock __/
//! ```
//!
//! NM's state directories are the lab's own (`<dir>/host-run` over /run,
//! `<dir>/run` over /run/NetworkManager, `<dir>/lib` over
//! /var/lib/NetworkManager, profiles in `<dir>/conn`), so a restart of NM
//! keeps the runtime directories and a "reboot" empties them, as on a real
//! host.
//!
//! Everything the lab starts is tracked by pid and stopped on drop, also
//! when the test panicked; both namespaces and the directory go with it.
//! A process killed outright (SIGKILL) cannot clean up: `netbridge-lab
//! cleanup` ([`remove_stale_labs`]) removes what it left.
//!
//! Environment:
//! - `NETBRIDGE_SKIP_LAB=1`: [`Lab::require`] skips (returns `None`) instead
//!   of failing when the lab cannot start; ignored when `CI=true`.
//! - `NETBRIDGE_BIN`, `NETBRIDGE_AGENT_BIN`: the product binaries to run
//!   (default: `netbridge` and `netbridge-agent` in this build's
//!   `target/<profile>`).
//! - `NETBRIDGE_LAB_KEEP_DIR=1`: keep the lab directory (logs, keyfiles)
//!   after the lab is dropped; its path is printed.

mod binaries;
mod bus;
pub(crate) mod cmd;
pub(crate) mod daemon;
mod error;
pub(crate) mod files;
mod fixed_lease;
mod guest;
mod ipv6;
pub(crate) mod netns;
mod reset;
mod second_nic;
mod setup;
mod snapshot;
mod stale;

use std::ffi::OsStr;
use std::io::Write;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use tempfile::TempDir;

pub use binaries::{bin_dir, netbridge_agent_bin, netbridge_bin};
pub use error::LabError;
pub use guest::Guest;
pub use ipv6::{RouterAdvertisements, IPV6_PREFIX, IPV6_ROUTER};
pub use second_nic::{SECOND_ADDRESS, SECOND_GATEWAY, SECOND_NIC};
pub use snapshot::{HostSnapshot, LinkSnapshot, RouteSnapshot};
pub use stale::{remove_stale_labs, StaleReport};

use daemon::Daemon;
use files::empty_dir;
use setup::{check_network_prerequisites, check_prerequisites};

/// The uplink's name in the host namespace.
pub const UPLINK: &str = "ens32";
/// The LAN side of the uplink's veth, in the LAN namespace.
pub const LAN_LINK: &str = "lan0";
/// The LAN's gateway, DNS and DHCP server (on `lan0`).
pub const GATEWAY: Ipv4Addr = Ipv4Addr::new(172, 25, 250, 254);
/// The host's address with [`Uplink::Static`].
pub const STATIC_ADDRESS: Ipv4Addr = Ipv4Addr::new(172, 25, 250, 10);
/// The prefix length of the lab's LAN.
pub const PREFIX_LEN: u8 = 24;
/// The first and last address dnsmasq leases with [`Uplink::Dhcp`].
pub const DHCP_RANGE: (Ipv4Addr, Ipv4Addr) = (
    Ipv4Addr::new(172, 25, 250, 100),
    Ipv4Addr::new(172, 25, 250, 150),
);
/// A name the LAN's DNS server answers, with [`GATEWAY`].
pub const GATEWAY_NAME: &str = "gw.lab";

/// Bounds every wait for NetworkManager (start, activation of the uplink).
const START_TIMEOUT: Duration = Duration::from_secs(30);
const POLL_INTERVAL: Duration = Duration::from_millis(100);

/// How the host's uplink profile gets its IPv4 address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Uplink {
    /// `ipv4.method=manual`, 172.25.250.10/24, gateway and DNS 172.25.250.254.
    Static,
    /// `ipv4.method=auto`; dnsmasq leases from [`DHCP_RANGE`].
    Dhcp,
}

impl Uplink {
    /// Whether `addr/len` is what this uplink is expected to end up with.
    pub fn accepts(self, addr: Ipv4Addr, len: u8) -> bool {
        len == PREFIX_LEN
            && match self {
                Uplink::Static => addr == STATIC_ADDRESS,
                Uplink::Dhcp => (DHCP_RANGE.0..=DHCP_RANGE.1).contains(&addr),
            }
    }
}

/// Makes lab names unique within a process; the pid makes them unique
/// between processes (parallel test binaries).
static LAB_COUNTER: AtomicU32 = AtomicU32::new(0);

/// A running lab. See the module documentation.
pub struct Lab {
    uplink: Uplink,
    host_ns: String,
    lan_ns: String,
    dir: PathBuf,
    tempdir: Option<TempDir>,
    bus_address: String,
    nm: Option<Daemon>,
    dnsmasq: Option<Daemon>,
    dbus: Option<Daemon>,
    /// Namespaces created so far, deleted (in reverse) on drop.
    namespaces: Mutex<Vec<String>>,
    guest_counter: AtomicU32,
    nm_starts: u32,
    /// ens32's MAC and MTU before NM touched it, restored by `reboot`.
    uplink_identity: Option<(String, u64)>,
}

impl Lab {
    /// Builds a lab and waits (at most 30 s per step) until NetworkManager
    /// owns its bus name and has activated `ens32` with the address
    /// `uplink` calls for.
    pub fn start(uplink: Uplink) -> Result<Lab, LabError> {
        check_prerequisites()?;
        let mut lab = Lab::empty(uplink)?;
        lab.create_network()?;
        lab.start_dnsmasq()?;
        lab.start_bus()?;
        lab.write_nm_files()?;
        lab.start_nm()?;
        lab.wait_for_uplink()?;
        Ok(lab)
    }

    /// Builds only the lab's network: both namespaces, the veth between
    /// them and the LAN's dnsmasq — no bus and no NetworkManager. For a host
    /// that brings its own (a booted container, see
    /// [`crate::container::Container`]); everything that talks to the
    /// lab's NM ([`Lab::restart_nm`], [`Lab::reboot`], [`Lab::netbridge`],
    /// snapshots of profiles) has nothing to talk to in such a lab.
    pub fn start_network_only(uplink: Uplink) -> Result<Lab, LabError> {
        check_network_prerequisites()?;
        let mut lab = Lab::empty(uplink)?;
        lab.create_network()?;
        lab.start_dnsmasq()?;
        Ok(lab)
    }

    /// [`Lab::start`] for tests: a lab test that cannot run must never pass
    /// silently.
    ///
    /// When the lab cannot start, prints `LAB UNAVAILABLE: <reason>` to
    /// stderr and panics — unless `NETBRIDGE_SKIP_LAB=1` is set (and `CI` is
    /// not `true`), in which case it returns `None` and the test should
    /// return early:
    ///
    /// ```no_run
    /// # use netbridge_tests::lab::{Lab, Uplink};
    /// let Some(lab) = Lab::require(Uplink::Static) else { return };
    /// ```
    pub fn require(uplink: Uplink) -> Option<Lab> {
        match Lab::start(uplink) {
            Ok(lab) => Some(lab),
            Err(e) => unavailable(&e.to_string(), &["NETBRIDGE_SKIP_LAB"]),
        }
    }

    pub fn uplink(&self) -> Uplink {
        self.uplink
    }

    /// The "host" network namespace, with `ens32` and NetworkManager.
    pub fn host_ns(&self) -> &str {
        &self.host_ns
    }

    /// The "LAN" network namespace, with `lan0`, the gateway and dnsmasq.
    pub fn lan_ns(&self) -> &str {
        &self.lan_ns
    }

    /// The lab's system bus, as `unix:path=...` (for `DBUS_SYSTEM_BUS_ADDRESS`).
    pub fn bus_address(&self) -> &str {
        &self.bus_address
    }

    /// The lab's temporary directory (logs, NM's state, profiles).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The directory to give netbridge as `NETBRIDGE_STATE_DIR`.
    pub fn state_dir(&self) -> PathBuf {
        self.dir.join("netbridge")
    }

    /// NetworkManager's log (all starts, separated by marker lines).
    pub fn nm_log(&self) -> PathBuf {
        self.dir.join("nm.log")
    }

    /// NetworkManager's pid, None while it is stopped.
    pub fn nm_pid(&self) -> Option<u32> {
        self.nm.as_ref().map(Daemon::pid)
    }

    /// The LAN's dnsmasq's pid.
    pub fn dnsmasq_pid(&self) -> Option<u32> {
        self.dnsmasq.as_ref().map(Daemon::pid)
    }

    /// The private dbus-daemon's pid.
    pub fn dbus_pid(&self) -> Option<u32> {
        self.dbus.as_ref().map(Daemon::pid)
    }

    /// `netbridge ARGS...` in the host namespace, with the lab's bus and
    /// state directory in its environment.
    ///
    /// # Panics
    /// If the binary is missing ("build it first: cargo build --workspace").
    pub fn netbridge<I, S>(&self, args: I) -> Command
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        self.product(netbridge_bin(), args)
    }

    /// Like [`Lab::netbridge`], for `netbridge-agent`.
    pub fn netbridge_agent<I, S>(&self, args: I) -> Command
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        self.product(netbridge_agent_bin(), args)
    }

    fn product<I, S>(&self, bin: Result<PathBuf, LabError>, args: I) -> Command
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let bin = bin.unwrap_or_else(|e| panic!("{e}"));
        let mut command = self.host_command([bin]);
        command.args(args);
        command
    }

    /// A command that runs `argv` in the host namespace with
    /// `DBUS_SYSTEM_BUS_ADDRESS` (so `nmcli` there talks to the lab's NM,
    /// never the machine's) and `NETBRIDGE_STATE_DIR` set.
    pub fn host_command<I, S>(&self, argv: I) -> Command
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let mut command = cmd::in_netns(&self.host_ns, argv);
        command
            .env("DBUS_SYSTEM_BUS_ADDRESS", &self.bus_address)
            .env("NETBRIDGE_STATE_DIR", self.state_dir());
        command
    }

    /// A command that runs `argv` in the LAN namespace.
    pub fn lan_command<I, S>(&self, argv: I) -> Command
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let mut command = cmd::in_netns(&self.lan_ns, argv);
        command.env("DBUS_SYSTEM_BUS_ADDRESS", &self.bus_address);
        command
    }

    /// Runs `argv` in the host namespace (see [`Lab::host_command`]).
    ///
    /// # Panics
    /// If the command cannot be started at all (`ip` missing).
    pub fn host<I, S>(&self, argv: I) -> Output
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        output_or_panic(self.host_command(argv))
    }

    /// Runs `argv` in the LAN namespace.
    ///
    /// # Panics
    /// If the command cannot be started at all (`ip` missing).
    pub fn lan<I, S>(&self, argv: I) -> Output
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        output_or_panic(self.lan_command(argv))
    }

    /// The host's profiles, links, addresses and routes.
    ///
    /// # Panics
    /// If `ip` fails or a profile cannot be read; see [`Lab::try_snapshot`].
    pub fn snapshot(&self) -> HostSnapshot {
        self.try_snapshot()
            .unwrap_or_else(|e| panic!("lab snapshot failed: {e}"))
    }

    pub fn try_snapshot(&self) -> Result<HostSnapshot, LabError> {
        HostSnapshot::take(&self.host_ns, &self.dir)
    }

    /// The IPv4 addresses on `link` in the host namespace.
    pub fn ipv4_addresses(&self, link: &str) -> Result<Vec<(Ipv4Addr, u8)>, LabError> {
        netns::ipv4_addresses(&self.host_ns, link)
    }

    /// Adds a guest whose "tap" `host_link` appears in the host namespace
    /// (up, not attached to anything) and whose `eth0` is up without
    /// addresses. `host_link` must be a valid interface name (≤ 15 bytes).
    ///
    /// # Panics
    /// If the guest cannot be created; see [`Lab::try_add_guest`].
    pub fn add_guest(&self, host_link: &str) -> Guest {
        self.try_add_guest(host_link)
            .unwrap_or_else(|e| panic!("lab: cannot add guest {host_link}: {e}"))
    }

    pub fn try_add_guest(&self, host_link: &str) -> Result<Guest, LabError> {
        let index = self.guest_counter.fetch_add(1, Ordering::Relaxed);
        let ns = format!("{}-g{index}", self.name_prefix());
        self.add_namespace(&ns)?;
        netns::add_veth((&ns, "eth0"), (&self.host_ns, host_link))?;
        Ok(Guest {
            ns,
            host_link: host_link.to_owned(),
            bus_address: self.bus_address.clone(),
        })
    }

    /// Stops NetworkManager and starts it again with the runtime directories
    /// kept, as `systemctl restart NetworkManager` does: in-memory profiles
    /// survive, checkpoints do not.
    pub fn restart_nm(&mut self) -> Result<(), LabError> {
        self.stop_nm()?;
        self.start_nm()
    }

    /// Stops NetworkManager (SIGTERM; it leaves the links configured) and
    /// whatever it spawned that the lab can identify by pid file.
    pub fn stop_nm(&mut self) -> Result<(), LabError> {
        if let Some(mut nm) = self.nm.take() {
            nm.stop();
        }
        self.stop_nm_children()
    }

    /// Starts NetworkManager if it is not running, and waits until it owns
    /// its bus name and has finished its startup activations.
    pub fn start_nm(&mut self) -> Result<(), LabError> {
        if self.nm.is_none() {
            self.spawn_nm()?;
        }
        self.wait("NetworkManager to start", Lab::nm_waiting)
    }

    /// What a power loss or a reboot does to the host namespace's links:
    /// every link but `lo` and `ens32` is deleted (bridges, guest taps) and
    /// `ens32` is reset (down, no addresses, original MAC and MTU, up).
    pub fn reset_host_links(&self) -> Result<(), LabError> {
        self.delete_host_links()?;
        self.reset_uplink()
    }

    /// Models a reboot of the host: NM stops, the runtime directories
    /// (/run, with the in-memory profiles) are emptied, every link in the
    /// host namespace but `lo` and `ens32` is deleted (bridges, and guest
    /// taps: re-add guests afterwards), `ens32` is reset (down, no
    /// addresses, original MAC and MTU, up), and NM starts again from the
    /// profiles on disk.
    pub fn reboot(&mut self) -> Result<(), LabError> {
        self.stop_nm()?;
        empty_dir(&self.dir.join("host-run"))?;
        empty_dir(&self.dir.join("run"))?;
        self.delete_host_links()?;
        self.reset_uplink()?;
        self.start_nm()
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.dump_logs();
        }
        if let Err(e) = self.stop_nm() {
            eprintln!("lab: stopping NetworkManager: {e}");
        }
        // Stopped explicitly so the order is fixed: NM first (it must not
        // see the LAN vanish), the bus last (NM talks on it while exiting).
        for daemon in [self.dnsmasq.take(), self.dbus.take()].iter_mut().flatten() {
            daemon.stop();
        }
        self.delete_namespaces();
        if std::env::var_os("NETBRIDGE_LAB_KEEP_DIR").is_some_and(|v| v == "1") {
            if let Some(dir) = self.tempdir.take() {
                eprintln!("lab: kept {}", dir.keep().display());
            }
        }
    }
}

/// What a test does when the lab it needs cannot start: say so loudly, fail
/// under `CI=true`, and skip only when one of `skips` is set to 1 — a lab
/// test must never pass silently.
pub(crate) fn unavailable<T>(reason: &str, skips: &[&str]) -> Option<T> {
    loud(&format!("LAB UNAVAILABLE: {reason}"));
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("LAB UNAVAILABLE (CI=true, lab tests must run): {reason}");
    }
    for skip in skips {
        if std::env::var(skip).is_ok_and(|v| v == "1") {
            loud(&format!("LAB UNAVAILABLE: test skipped because {skip}=1"));
            return None;
        }
    }
    panic!(
        "LAB UNAVAILABLE: {reason}\n(set {} to skip these tests on a machine that cannot run them)",
        skips
            .iter()
            .map(|s| format!("{s}=1"))
            .collect::<Vec<_>>()
            .join(" or ")
    );
}

/// Writes to the real stderr: the test harness captures `eprintln!` of
/// passing tests, and a skipped lab test passes.
pub(crate) fn loud(line: &str) {
    let _ = writeln!(std::io::stderr(), "{line}");
}

fn output_or_panic(mut command: Command) -> Output {
    cmd::output(&mut command).unwrap_or_else(|e| panic!("lab: {e}"))
}
