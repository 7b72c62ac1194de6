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

mod binaries;
mod bus;
mod cmd;
mod daemon;
mod error;
mod files;
mod guest;
mod netns;
mod snapshot;
mod stale;

use std::ffi::OsStr;
use std::io::{BufRead, BufReader, Write};
use std::net::Ipv4Addr;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use tempfile::TempDir;

pub use binaries::{bin_dir, netbridge_agent_bin, netbridge_bin};
pub use error::LabError;
pub use guest::Guest;
pub use snapshot::{HostSnapshot, LinkSnapshot, RouteSnapshot};
pub use stale::{remove_stale_labs, StaleReport};

use daemon::{log_tail, Daemon};

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
            Err(e) => unavailable(&e.to_string()),
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
        netns::ip_in(
            &ns,
            &[
                "link",
                "add",
                "eth0",
                "type",
                "veth",
                "peer",
                "name",
                host_link,
                "netns",
                &self.host_ns,
            ],
        )?;
        netns::ip_in(&ns, &["link", "set", "lo", "up"])?;
        netns::ip_in(&ns, &["link", "set", "eth0", "up"])?;
        netns::ip_in(&self.host_ns, &["link", "set", host_link, "up"])?;
        Ok(Guest {
            ns,
            host_link: host_link.to_owned(),
            bus_address: self.bus_address.clone(),
        })
    }

    /// Stops NetworkManager and starts it again with `<dir>/run` kept, as
    /// `systemctl restart NetworkManager` does: in-memory profiles survive,
    /// checkpoints do not.
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

    /// Models a reboot of the host: NM stops, the runtime directories (/run,
    /// with the in-memory profiles) are emptied, every link in the host namespace but
    /// `lo` and `ens32` is deleted (bridges, guest taps), `ens32` is reset
    /// (down, no addresses, original MAC and MTU, up), and NM starts again
    /// from the profiles on disk.
    pub fn reboot(&mut self) -> Result<(), LabError> {
        self.stop_nm()?;
        empty_dir(&self.dir.join("host-run"))?;
        empty_dir(&self.dir.join("run"))?;
        self.delete_host_links()?;
        self.reset_uplink()?;
        self.start_nm()
    }
}

/// Building the lab, step by step.
impl Lab {
    fn empty(uplink: Uplink) -> Result<Lab, LabError> {
        let counter = LAB_COUNTER.fetch_add(1, Ordering::Relaxed);
        // The pid in both names lets `remove_stale_labs` find what a killed
        // process left behind.
        let prefix = format!("{}{}-{counter}", stale::NS_PREFIX, std::process::id());
        let dir_prefix = format!("{}{}-{counter}-", stale::DIR_PREFIX, std::process::id());
        let tempdir = tempfile::Builder::new()
            .prefix(&dir_prefix)
            .tempdir()
            .map_err(|e| {
                LabError::io("cannot create the lab directory", std::env::temp_dir(), e)
            })?;
        let dir = tempdir.path().to_owned();
        for sub in [
            "host-run",
            "run",
            "lib",
            "conn",
            "conf.d",
            "system-conf.d",
            "netbridge",
        ] {
            let path = dir.join(sub);
            std::fs::create_dir(&path)
                .map_err(|e| LabError::io("cannot create a lab directory", path, e))?;
        }
        Ok(Lab {
            uplink,
            host_ns: format!("{prefix}-h"),
            lan_ns: format!("{prefix}-l"),
            bus_address: format!("unix:path={}", dir.join("bus.sock").display()),
            dir,
            tempdir: Some(tempdir),
            nm: None,
            dnsmasq: None,
            dbus: None,
            namespaces: Mutex::new(Vec::new()),
            guest_counter: AtomicU32::new(0),
            nm_starts: 0,
            uplink_identity: None,
        })
    }

    /// `nb-<pid>-<counter>`, the start of all this lab's namespace names.
    fn name_prefix(&self) -> &str {
        self.host_ns.trim_end_matches("-h")
    }

    fn add_namespace(&self, name: &str) -> Result<(), LabError> {
        netns::add(name)?;
        self.namespaces
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .push(name.to_owned());
        Ok(())
    }

    fn create_network(&mut self) -> Result<(), LabError> {
        let (h, l) = (self.host_ns.clone(), self.lan_ns.clone());
        self.add_namespace(&h)?;
        self.add_namespace(&l)?;
        // Created in place: nothing ever exists in the machine's namespace.
        netns::ip_in(
            &h,
            &[
                "link", "add", UPLINK, "type", "veth", "peer", "name", LAN_LINK, "netns", &l,
            ],
        )?;
        netns::ip_in(&h, &["link", "set", "lo", "up"])?;
        netns::ip_in(&l, &["link", "set", "lo", "up"])?;
        let gateway = format!("{GATEWAY}/{PREFIX_LEN}");
        netns::ip_in(&l, &["addr", "add", &gateway, "dev", LAN_LINK])?;
        netns::ip_in(&l, &["link", "set", LAN_LINK, "up"])?;
        netns::ip_in(&h, &["link", "set", UPLINK, "up"])?;
        self.uplink_identity = Some(netns::link_identity(&h, UPLINK)?);
        Ok(())
    }

    fn dnsmasq_args(&self) -> Vec<String> {
        let dir = &self.dir;
        let mut args = vec![
            "--conf-file=/dev/null".to_owned(),
            "--no-hosts".to_owned(),
            "--no-resolv".to_owned(),
            "--bind-interfaces".to_owned(),
            format!("--interface={LAN_LINK}"),
            "--except-interface=lo".to_owned(),
            "--keep-in-foreground".to_owned(),
            "--log-facility=-".to_owned(),
            "--log-queries".to_owned(),
            format!("--pid-file={}", dir.join("dnsmasq.pid").display()),
            format!("--host-record={GATEWAY_NAME},{GATEWAY}"),
        ];
        if self.uplink == Uplink::Dhcp {
            let (first, last) = DHCP_RANGE;
            args.extend([
                format!("--dhcp-range={first},{last},12h"),
                format!("--dhcp-option=option:router,{GATEWAY}"),
                format!("--dhcp-option=option:dns-server,{GATEWAY}"),
                format!("--dhcp-leasefile={}", dir.join("dnsmasq.leases").display()),
                // The lab's LAN has nobody else on it: skip the 3 s
                // "is this address in use?" ping before each offer.
                "--no-ping".to_owned(),
                "--dhcp-authoritative".to_owned(),
                "--log-dhcp".to_owned(),
            ]);
        }
        args
    }

    fn start_dnsmasq(&mut self) -> Result<(), LabError> {
        let mut argv = vec![tool("dnsmasq").into_os_string()];
        argv.extend(self.dnsmasq_args().into_iter().map(Into::into));
        let mut command = cmd::in_netns(&self.lan_ns, argv);
        self.dnsmasq = Some(Daemon::spawn(
            "dnsmasq",
            &mut command,
            &self.dir.join("dnsmasq.log"),
        )?);
        self.wait("dnsmasq to listen", Lab::dnsmasq_waiting)
    }

    /// dnsmasq writes its pid file once its sockets are bound.
    fn dnsmasq_waiting(&mut self) -> Result<Option<String>, LabError> {
        let Some(dnsmasq) = self.dnsmasq.as_mut() else {
            return Ok(Some("dnsmasq is not started".to_owned()));
        };
        dnsmasq.check_running()?;
        let pid_file = self.dir.join("dnsmasq.pid");
        let written = std::fs::read_to_string(&pid_file).unwrap_or_default();
        if written.trim() == dnsmasq.pid().to_string() {
            Ok(None)
        } else {
            Ok(Some(format!("{} holds {written:?}", pid_file.display())))
        }
    }

    fn start_bus(&mut self) -> Result<(), LabError> {
        let config = self.dir.join("dbus.conf");
        let socket = self.dir.join("bus.sock");
        write_file(&config, &files::dbus_config(&socket), 0o644)?;
        let log = self.dir.join("dbus.log");
        let stderr = std::fs::File::create(&log)
            .map_err(|e| LabError::io("cannot create the log file", &log, e))?;
        let mut command = Command::new(tool("dbus-daemon"));
        command
            .arg(format!("--config-file={}", config.display()))
            .args(["--nofork", "--print-address"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(stderr);
        let mut daemon = Daemon::spawn_configured("dbus-daemon", &mut command, &log)?;
        // The address is printed once the socket listens: no polling.
        let printed = read_first_line(&mut daemon);
        self.dbus = Some(daemon);
        if printed.is_empty() {
            self.check_bus_running()?;
            return Err(LabError::Parse {
                command: cmd::describe(&command),
                detail: "printed no address".to_owned(),
            });
        }
        Ok(())
    }

    fn check_bus_running(&mut self) -> Result<(), LabError> {
        match self.dbus.as_mut() {
            Some(dbus) => dbus.check_running(),
            None => Ok(()),
        }
    }

    fn write_nm_files(&self) -> Result<(), LabError> {
        write_file(
            &self.dir.join("nm.conf"),
            &files::nm_config(&self.dir.join("conn")),
            0o644,
        )?;
        // NM ignores keyfiles that are not root-owned with mode 0600.
        let profile = self.dir.join("conn").join(format!("{UPLINK}.nmconnection"));
        write_file(&profile, &files::uplink_keyfile(self.uplink), 0o600)
    }

    fn nm_command(&self) -> Command {
        // NM must not see the machine's /run (its system bus, its
        // /run/NetworkManager) nor write /var/lib/NetworkManager: a private
        // mount namespace gets the lab's directories instead. /run is a lab
        // directory rather than a tmpfs because NM puts the pid files of
        // what it spawns there (/run/nm-dnsmasq-<iface>.pid), and the lab
        // needs them to stop those processes.
        // A read-only /sys makes NM run without udev; otherwise it waits for
        // udev to announce devices, and they stay unmanaged.
        const SETUP: &str = "set -e
            mount --bind \"$1\" /run
            mkdir -p /run/NetworkManager
            mount --bind \"$2\" /run/NetworkManager
            mount --bind \"$3\" /var/lib/NetworkManager
            mount -o remount,bind,ro /sys
            shift 3
            exec \"$@\"";
        let dir = &self.dir;
        let mut command = cmd::in_netns(&self.host_ns, [tool("unshare")]);
        command
            .args([
                "--mount",
                "--propagation",
                "private",
                "/bin/sh",
                "-c",
                SETUP,
                "sh",
            ])
            .arg(dir.join("host-run"))
            .arg(dir.join("run"))
            .arg(dir.join("lib"))
            .arg(tool("NetworkManager"))
            .args(["--no-daemon", "--debug"])
            .arg(path_flag("--config", &dir.join("nm.conf")))
            .arg(path_flag("--config-dir", &dir.join("conf.d")))
            .arg(path_flag("--system-config-dir", &dir.join("system-conf.d")))
            .arg(path_flag(
                "--state-file",
                &dir.join("lib/NetworkManager.state"),
            ))
            .arg(path_flag("--intern-config", &dir.join("lib/intern.conf")))
            .env("DBUS_SYSTEM_BUS_ADDRESS", &self.bus_address);
        command
    }

    fn spawn_nm(&mut self) -> Result<(), LabError> {
        self.nm_starts += 1;
        let log = self.nm_log();
        let marker = format!("=== lab: NetworkManager start #{} ===\n", self.nm_starts);
        append_file(&log, &marker)?;
        let mut command = self.nm_command();
        self.nm = Some(Daemon::spawn("NetworkManager", &mut command, &log)?);
        Ok(())
    }

    fn check_nm_running(&mut self) -> Result<(), LabError> {
        match self.nm.as_mut() {
            Some(nm) => nm.check_running(),
            None => Err(LabError::Prerequisite(
                "NetworkManager is stopped".to_owned(),
            )),
        }
    }

    fn bus(&self) -> bus::Bus<'_> {
        bus::Bus {
            address: &self.bus_address,
        }
    }

    fn nm_waiting(&mut self) -> Result<Option<String>, LabError> {
        self.check_nm_running()?;
        let bus = self.bus();
        Ok(match (bus.nm_present(), bus.nm_started()) {
            (Ok(true), Ok(true)) => None,
            (Ok(false), _) => Some("NetworkManager does not own its bus name yet".to_owned()),
            (Ok(true), Ok(false)) => Some("NetworkManager is still starting up".to_owned()),
            (Err(e), _) | (_, Err(e)) => Some(e.to_string()),
        })
    }

    fn wait_for_uplink(&mut self) -> Result<(), LabError> {
        self.wait(
            "ens32 to be activated with its address",
            Lab::uplink_waiting,
        )
    }

    fn uplink_waiting(&mut self) -> Result<Option<String>, LabError> {
        self.check_nm_running()?;
        match self.bus().device_state(UPLINK) {
            Ok(Some(bus::DEVICE_ACTIVATED)) => {}
            Ok(state) => return Ok(Some(format!("NM device state of {UPLINK}: {state:?}"))),
            Err(e) => return Ok(Some(e.to_string())),
        }
        let addresses = self.ipv4_addresses(UPLINK)?;
        if addresses
            .iter()
            .any(|&(a, len)| self.uplink.accepts(a, len))
        {
            Ok(None)
        } else {
            Ok(Some(format!("{UPLINK} has {addresses:?}")))
        }
    }

    /// Polls `probe` until it reports ready (`Ok(None)`), fails, or
    /// [`START_TIMEOUT`] passes. Polling is fine here: this is test support
    /// and the probes are cheap.
    fn wait(
        &mut self,
        what: &str,
        mut probe: impl FnMut(&mut Self) -> Result<Option<String>, LabError>,
    ) -> Result<(), LabError> {
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            let Some(detail) = probe(self)? else {
                return Ok(());
            };
            if Instant::now() >= deadline {
                return Err(LabError::Timeout {
                    what: what.to_owned(),
                    seconds: START_TIMEOUT.as_secs(),
                    detail: format!(
                        "{detail}\nlast lines of nm.log:\n{}",
                        log_tail(&self.nm_log(), 30)
                    ),
                });
            }
            std::thread::sleep(POLL_INTERVAL);
        }
    }
}

/// Stopping and resetting.
impl Lab {
    /// Stops processes NM spawned (e.g. the dnsmasq of a `shared` profile),
    /// which NM names in pid files in its runtime directory. Only pids that
    /// are inside the host namespace are signalled, so a stale pid file can
    /// never hit an unrelated process.
    fn stop_nm_children(&self) -> Result<(), LabError> {
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

    fn delete_host_links(&self) -> Result<(), LabError> {
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

    fn reset_uplink(&self) -> Result<(), LabError> {
        let h = &self.host_ns;
        netns::ip_in(h, &["link", "set", UPLINK, "down", "nomaster"])?;
        netns::ip_in(h, &["addr", "flush", "dev", UPLINK])?;
        if let Some((mac, mtu)) = &self.uplink_identity {
            let mtu = mtu.to_string();
            netns::ip_in(h, &["link", "set", UPLINK, "address", mac, "mtu", &mtu])?;
        }
        netns::ip_in(h, &["link", "set", UPLINK, "up"])
    }

    fn delete_namespaces(&self) {
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

    fn dump_logs(&self) {
        for log in ["nm.log", "dnsmasq.log", "dbus.log"] {
            let path = self.dir.join(log);
            eprintln!(
                "---- lab {}: last lines of {log} ----\n{}",
                self.host_ns,
                log_tail(&path, 60)
            );
        }
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

fn unavailable(reason: &str) -> Option<Lab> {
    loud(&format!("LAB UNAVAILABLE: {reason}"));
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("LAB UNAVAILABLE (CI=true, lab tests must run): {reason}");
    }
    if std::env::var("NETBRIDGE_SKIP_LAB").is_ok_and(|v| v == "1") {
        loud("LAB UNAVAILABLE: test skipped because NETBRIDGE_SKIP_LAB=1");
        return None;
    }
    panic!(
        "LAB UNAVAILABLE: {reason}\n(set NETBRIDGE_SKIP_LAB=1 to skip lab tests on a machine \
         that cannot run them)"
    );
}

/// Writes to the real stderr: the test harness captures `eprintln!` of
/// passing tests, and a skipped lab test passes.
fn loud(line: &str) {
    let _ = writeln!(std::io::stderr(), "{line}");
}

/// The programs a lab runs, with the Debian packages that ship them.
const TOOLS: [(&str, &str); 7] = [
    ("ip", "iproute2"),
    ("NetworkManager", "network-manager"),
    ("dnsmasq", "dnsmasq-base"),
    ("dbus-daemon", "dbus-daemon"),
    ("dbus-send", "dbus-bin"),
    ("unshare", "util-linux"),
    ("mount", "mount"),
];

fn check_prerequisites() -> Result<(), LabError> {
    if effective_uid() != Some(0) {
        return Err(LabError::Prerequisite(
            "the lab needs root (network namespaces, mounts)".to_owned(),
        ));
    }
    let missing: Vec<String> = TOOLS
        .iter()
        .filter(|(program, _)| cmd::which(program).is_none())
        .map(|(program, package)| format!("{program} (package {package})"))
        .collect();
    if missing.is_empty() {
        Ok(())
    } else {
        Err(LabError::Prerequisite(format!(
            "missing programs: {}",
            missing.join(", ")
        )))
    }
}

/// The effective uid, from /proc (the second `Uid:` field).
fn effective_uid() -> Option<u32> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("Uid:"))?;
    line.split_whitespace().nth(2)?.parse().ok()
}

/// The full path of a program the prerequisite check found.
fn tool(program: &str) -> PathBuf {
    cmd::which(program).unwrap_or_else(|| PathBuf::from(program))
}

fn path_flag(flag: &str, path: &Path) -> String {
    format!("{flag}={}", path.display())
}

fn output_or_panic(mut command: Command) -> Output {
    cmd::output(&mut command).unwrap_or_else(|e| panic!("lab: {e}"))
}

fn read_first_line(daemon: &mut Daemon) -> String {
    let mut line = String::new();
    if let Some(stdout) = daemon.child_mut().stdout.take() {
        let _ = BufReader::new(stdout).read_line(&mut line);
    }
    line.trim().to_owned()
}

fn write_file(path: &Path, text: &str, mode: u32) -> Result<(), LabError> {
    std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(path)
        .and_then(|mut f| f.write_all(text.as_bytes()))
        .map_err(|e| LabError::io("cannot write a lab file", path, e))
}

fn append_file(path: &Path, text: &str) -> Result<(), LabError> {
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .and_then(|mut f| f.write_all(text.as_bytes()))
        .map_err(|e| LabError::io("cannot append to a lab file", path, e))
}

fn empty_dir(dir: &Path) -> Result<(), LabError> {
    std::fs::remove_dir_all(dir)
        .and_then(|()| std::fs::create_dir(dir))
        .map_err(|e| LabError::io("cannot empty a lab directory", dir, e))
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
    while is_alive(pid) {
        if Instant::now() >= deadline {
            let _ = kill(Pid::from_raw(raw), Signal::SIGKILL);
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Running, as opposed to gone or a zombie waiting for its reaper.
fn is_alive(pid: u32) -> bool {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return false;
    };
    // The state follows the parenthesised command name, which may contain
    // spaces or parentheses itself.
    let state = stat
        .rsplit_once(')')
        .and_then(|(_, rest)| rest.split_whitespace().next());
    !matches!(state, Some("Z") | Some("X") | None)
}
