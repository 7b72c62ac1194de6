//! Building a lab, step by step.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Mutex;
use std::time::Instant;

use super::daemon::{log_tail, Daemon};
use super::files::{self, append_file, write_file};
use super::{
    bus, cmd, netns, stale, Lab, LabError, Uplink, DHCP_RANGE, GATEWAY, GATEWAY_NAME, LAB_COUNTER,
    LAN_LINK, POLL_INTERVAL, PREFIX_LEN, START_TIMEOUT, UPLINK,
};

/// dnsmasq's file of fixed leases (`MAC,address` lines), empty at start.
pub(super) const DHCP_HOSTS: &str = "dhcp-hosts";

/// The lab directory's subdirectories: NM's /run, /run/NetworkManager and
/// /var/lib/NetworkManager, its keyfiles, its (empty) configuration
/// directories, and netbridge's state directory.
const LAB_DIRS: [&str; 7] = [
    "host-run",
    "run",
    "lib",
    "conn",
    "conf.d",
    "system-conf.d",
    "netbridge",
];

impl Lab {
    pub(super) fn empty(uplink: Uplink) -> Result<Lab, LabError> {
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
        for sub in LAB_DIRS {
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
    pub(super) fn name_prefix(&self) -> &str {
        self.host_ns.trim_end_matches("-h")
    }

    pub(super) fn add_namespace(&self, name: &str) -> Result<(), LabError> {
        netns::add(name)?;
        self.namespaces
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .push(name.to_owned());
        Ok(())
    }

    pub(super) fn create_network(&mut self) -> Result<(), LabError> {
        let (h, l) = (self.host_ns.clone(), self.lan_ns.clone());
        self.add_namespace(&h)?;
        self.add_namespace(&l)?;
        netns::add_veth((&h, UPLINK), (&l, LAN_LINK))?;
        let gateway = format!("{GATEWAY}/{PREFIX_LEN}");
        netns::ip_in(&l, &["addr", "add", &gateway, "dev", LAN_LINK])?;
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
                // Fixed leases a test may add (then SIGHUP): a server that
                // answers a client with another address than before.
                format!("--dhcp-hostsfile={}", dir.join(DHCP_HOSTS).display()),
                // The lab's LAN has nobody else on it: skip the 3 s
                // "is this address in use?" ping before each offer.
                "--no-ping".to_owned(),
                "--dhcp-authoritative".to_owned(),
                "--log-dhcp".to_owned(),
            ]);
        }
        args
    }

    pub(super) fn start_dnsmasq(&mut self) -> Result<(), LabError> {
        write_file(&self.dir.join(DHCP_HOSTS), "", 0o644)?;
        let mut argv = vec![cmd::program("dnsmasq").into_os_string()];
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

    pub(super) fn start_bus(&mut self) -> Result<(), LabError> {
        let config = self.dir.join("dbus.conf");
        let socket = self.dir.join("bus.sock");
        write_file(&config, &files::dbus_config(&socket), 0o644)?;
        let log = self.dir.join("dbus.log");
        let stderr = std::fs::File::create(&log)
            .map_err(|e| LabError::io("cannot create the log file", &log, e))?;
        let mut command = Command::new(cmd::program("dbus-daemon"));
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

    pub(super) fn write_nm_files(&self) -> Result<(), LabError> {
        write_file(
            &self.dir.join("nm.conf"),
            &files::nm_config(&self.dir.join("conn")),
            0o644,
        )?;
        // What NM's own dnsmasq (shared mode) forwards guests' queries to:
        // the lab's DNS, never the machine's resolvers.
        write_file(
            &self.dir.join("resolv.conf"),
            &format!("nameserver {GATEWAY}\n"),
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
            mount --bind \"$4\" /etc/resolv.conf
            shift 4
            exec \"$@\"";
        let dir = &self.dir;
        let mut command = cmd::in_netns_with_mounts(&self.host_ns, SETUP);
        command
            .arg(dir.join("host-run"))
            .arg(dir.join("run"))
            .arg(dir.join("lib"))
            .arg(dir.join("resolv.conf"))
            .arg(cmd::program("NetworkManager"))
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

    pub(super) fn spawn_nm(&mut self) -> Result<(), LabError> {
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

    pub(super) fn nm_waiting(&mut self) -> Result<Option<String>, LabError> {
        self.check_nm_running()?;
        let bus = self.bus();
        Ok(match (bus.nm_present(), bus.nm_started()) {
            (Ok(true), Ok(true)) => None,
            (Ok(false), _) => Some("NetworkManager does not own its bus name yet".to_owned()),
            (Ok(true), Ok(false)) => Some("NetworkManager is still starting up".to_owned()),
            (Err(e), _) | (_, Err(e)) => Some(e.to_string()),
        })
    }

    pub(super) fn wait_for_uplink(&mut self) -> Result<(), LabError> {
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
    pub(super) fn wait(
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

/// What [`Lab::start_network_only`] runs itself.
const NETWORK_TOOLS: [(&str, &str); 2] = [("ip", "iproute2"), ("dnsmasq", "dnsmasq-base")];

pub(super) fn check_prerequisites() -> Result<(), LabError> {
    check_tools(&TOOLS)
}

pub(super) fn check_network_prerequisites() -> Result<(), LabError> {
    check_tools(&NETWORK_TOOLS)
}

fn check_tools(tools: &[(&str, &str)]) -> Result<(), LabError> {
    if effective_uid() != Some(0) {
        return Err(LabError::Prerequisite(
            "the lab needs root (network namespaces, mounts)".to_owned(),
        ));
    }
    cmd::require_programs(tools)
}

/// The effective uid, from /proc (the second `Uid:` field).
fn effective_uid() -> Option<u32> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("Uid:"))?;
    line.split_whitespace().nth(2)?.parse().ok()
}

fn path_flag(flag: &str, path: &Path) -> String {
    format!("{flag}={}", path.display())
}

fn read_first_line(daemon: &mut Daemon) -> String {
    let mut line = String::new();
    if let Some(stdout) = daemon.child_mut().stdout.take() {
        let _ = BufReader::new(stdout).read_line(&mut line);
    }
    line.trim().to_owned()
}
