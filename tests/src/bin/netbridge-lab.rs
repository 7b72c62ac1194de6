//! `netbridge-lab`: try netbridge against a real NetworkManager in
//! throwaway network namespaces, without touching this machine's network.

use std::ffi::OsString;
use std::net::Ipv4Addr;
use std::process::{Child, ExitCode, ExitStatus};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use clap::{Parser, Subcommand};
use netbridge_tests::lab::{self, Lab, Uplink};
use nix::sys::signal::{kill, sigaction, SaFlags, SigAction, SigHandler, SigSet, Signal};
use nix::unistd::Pid;

/// Run a throwaway lab: a "host" network namespace whose uplink ens32 is
/// managed by a real NetworkManager (on a private D-Bus), wired to a "LAN"
/// namespace with the gateway 172.25.250.254 and dnsmasq. Needs root; the
/// machine's own network, /run/dbus and NetworkManager stay untouched.
#[derive(Parser)]
#[command(name = "netbridge-lab", version)]
struct Cli {
    #[command(subcommand)]
    command: Verb,
}

#[derive(Subcommand)]
enum Verb {
    /// Start a lab, print how to use it, and tear it down on Ctrl-C or SIGTERM.
    Up {
        /// The uplink gets its address by DHCP instead of 172.25.250.10/24.
        #[arg(long)]
        dhcp: bool,
    },
    /// Start a lab, run CMD in its host namespace (netbridge on PATH), tear
    /// the lab down and exit with CMD's status.
    ///
    /// Example: netbridge-lab run -- sh -c 'netbridge status && netbridge convert ens32 --yes && netbridge status'
    Run {
        /// The uplink gets its address by DHCP instead of 172.25.250.10/24.
        #[arg(long)]
        dhcp: bool,
        /// The command and its arguments.
        #[arg(required = true, trailing_var_arg = true, allow_hyphen_values = true)]
        cmd: Vec<OsString>,
    },
    /// Remove what labs of killed processes left behind (namespaces nb-*,
    /// directories nb-lab-* in the temp dir); report what is still in use.
    Cleanup,
    /// Print the A records of NAME from SERVER (for the lab's own tests;
    /// runs only inside a network namespace other than the machine's).
    #[command(hide = true)]
    Resolve { server: Ipv4Addr, name: String },
}

/// Set by SIGINT/SIGTERM; checked by the waiting loops, which then tear down.
static STOP: AtomicBool = AtomicBool::new(false);

extern "C" fn request_stop(_: nix::libc::c_int) {
    STOP.store(true, Ordering::SeqCst);
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Verb::Up { dhcp } => up(uplink(dhcp)),
        Verb::Run { dhcp, cmd } => run(uplink(dhcp), cmd),
        Verb::Cleanup => cleanup(),
        Verb::Resolve { server, name } => resolve(server, &name),
    };
    result.unwrap_or_else(|message| {
        eprintln!("netbridge-lab: {message}");
        ExitCode::FAILURE
    })
}

fn uplink(dhcp: bool) -> Uplink {
    if dhcp {
        Uplink::Dhcp
    } else {
        Uplink::Static
    }
}

fn catch_stop_signals() -> Result<(), String> {
    let action = SigAction::new(
        SigHandler::Handler(request_stop),
        SaFlags::empty(),
        SigSet::empty(),
    );
    for signal in [Signal::SIGINT, Signal::SIGTERM] {
        // SAFETY: the handler only stores to an atomic, which is
        // async-signal-safe; exec resets it to the default in children.
        unsafe { sigaction(signal, &action) }.map_err(|e| format!("cannot catch {signal}: {e}"))?;
    }
    Ok(())
}

fn start(uplink: Uplink) -> Result<Lab, String> {
    catch_stop_signals()?;
    eprintln!("netbridge-lab: starting a lab ({uplink:?} uplink)...");
    Lab::start(uplink).map_err(|e| format!("the lab did not start: {e}"))
}

fn up(uplink: Uplink) -> Result<ExitCode, String> {
    let lab = start(uplink)?;
    print_usage(&lab);
    while !STOP.load(Ordering::SeqCst) {
        std::thread::sleep(Duration::from_millis(200));
    }
    eprintln!("netbridge-lab: tearing the lab down");
    drop(lab);
    Ok(ExitCode::SUCCESS)
}

fn print_usage(lab: &Lab) {
    let bin_dir = lab::bin_dir()
        .map(|d| d.display().to_string())
        .unwrap_or_default();
    let addresses = lab.ipv4_addresses(lab::UPLINK).unwrap_or_default();
    let address = addresses
        .first()
        .map(|(a, l)| format!("{a}/{l}"))
        .unwrap_or_default();
    println!(
        "lab is up: ens32 {address}, gateway {gw} ({gw_name}, also DNS)\n\
         \x20 host namespace:  {h}\n\
         \x20 LAN namespace:   {l}\n\
         \x20 system bus:      {bus}\n\
         \x20 state dir:       {state}\n\
         \x20 NM log:          {log}\n\
         \n\
         Try netbridge there:\n\
         \x20 ip netns exec {h} env DBUS_SYSTEM_BUS_ADDRESS={bus} NETBRIDGE_STATE_DIR={state} \
         PATH={bin_dir}:$PATH netbridge status\n\
         or a shell:\n\
         \x20 ip netns exec {h} env DBUS_SYSTEM_BUS_ADDRESS={bus} NETBRIDGE_STATE_DIR={state} \
         PATH={bin_dir}:$PATH bash\n\
         \n\
         Press Ctrl-C to tear the lab down.",
        gw = lab::GATEWAY,
        gw_name = lab::GATEWAY_NAME,
        h = lab.host_ns(),
        l = lab.lan_ns(),
        bus = lab.bus_address(),
        state = lab.state_dir().display(),
        log = lab.nm_log().display(),
    );
}

fn run(uplink: Uplink, argv: Vec<OsString>) -> Result<ExitCode, String> {
    let lab = start(uplink)?;
    let mut command = lab.host_command(&argv);
    command.env("PATH", path_with_netbridge()?);
    let status = match command.spawn() {
        Ok(child) => wait_or_stop(child),
        Err(e) => Err(format!("cannot run {:?}: {e}", argv)),
    };
    drop(lab);
    status.map(exit_code)
}

/// PATH with the directory of the netbridge binaries in front.
fn path_with_netbridge() -> Result<OsString, String> {
    if let Err(e) = lab::netbridge_bin() {
        eprintln!("netbridge-lab: warning: {e}");
    }
    let dir = lab::bin_dir().map_err(|e| e.to_string())?;
    let rest = std::env::var_os("PATH").unwrap_or_default();
    let paths = std::iter::once(dir).chain(std::env::split_paths(&rest));
    std::env::join_paths(paths).map_err(|e| format!("cannot build PATH: {e}"))
}

/// Waits for the child; on SIGINT/SIGTERM forwards SIGTERM to it (a
/// terminal's Ctrl-C already reached it) and waits for it to exit.
fn wait_or_stop(mut child: Child) -> Result<ExitStatus, String> {
    let mut forwarded = false;
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return Ok(status),
            Ok(None) => {}
            Err(e) => return Err(format!("cannot wait for the command: {e}")),
        }
        if STOP.load(Ordering::SeqCst) && !forwarded {
            forwarded = true;
            if let Ok(pid) = i32::try_from(child.id()) {
                let _ = kill(Pid::from_raw(pid), Signal::SIGTERM);
            }
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn exit_code(status: ExitStatus) -> ExitCode {
    use std::os::unix::process::ExitStatusExt;
    let code = status
        .code()
        .or_else(|| status.signal().map(|s| 128 + s))
        .unwrap_or(1);
    ExitCode::from(u8::try_from(code).unwrap_or(1))
}

fn cleanup() -> Result<ExitCode, String> {
    let report = lab::remove_stale_labs().map_err(|e| e.to_string())?;
    for removed in &report.removed {
        println!("removed {removed}");
    }
    for (what, pids) in &report.in_use {
        println!("left {what}: still used by pids {pids:?} (stop them, then run cleanup again)");
    }
    if report.removed.is_empty() && report.in_use.is_empty() {
        println!("nothing left behind by earlier labs");
    }
    Ok(if report.in_use.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn resolve(server: Ipv4Addr, name: &str) -> Result<ExitCode, String> {
    if !in_lab_netns() {
        return Err("resolve only runs inside a lab namespace (ip netns exec ...)".to_owned());
    }
    let addrs = netbridge_tests::dns::resolve_a(server, name, Duration::from_secs(2))
        .map_err(|e| format!("resolving {name} at {server}: {e}"))?;
    for addr in &addrs {
        println!("{addr}");
    }
    Ok(if addrs.is_empty() {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

/// Whether this process runs in one of the labs' namespaces (`nb-*` in
/// /run/netns), so that a query can never leave through the machine's own
/// network.
fn in_lab_netns() -> bool {
    use std::os::unix::fs::MetadataExt;
    let id = |path: &std::path::Path| std::fs::metadata(path).map(|m| (m.dev(), m.ino())).ok();
    let Some(own) = id(std::path::Path::new("/proc/self/ns/net")) else {
        return false;
    };
    let Ok(entries) = std::fs::read_dir("/run/netns") else {
        return false;
    };
    entries
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with("nb-"))
        .any(|e| id(&e.path()) == Some(own))
}
