//! A short description of the machine the numbers come from.

use std::path::Path;
use std::process::Command;

use netbridge_tests::lab::Lab;

/// (label, value) pairs: CPU, cores, memory, kernel, OS, load, versions.
/// Versions are asked inside the lab's host namespace, like everything that
/// touches NetworkManager or netbridge.
pub fn describe(lab: &Lab, nmstatectl: Option<&Path>) -> Vec<(&'static str, String)> {
    let cpuinfo = read("/proc/cpuinfo");
    let cpu = cpuinfo
        .lines()
        .find_map(|l| {
            l.strip_prefix("model name")?
                .split_once(':')
                .map(|(_, v)| v.trim())
        })
        .unwrap_or("unknown")
        .to_owned();
    let cores = cpuinfo
        .lines()
        .filter(|l| l.starts_with("processor"))
        .count();
    let memory = meminfo_kib("MemTotal").map_or_else(
        || "unknown".to_owned(),
        |kib| format!("{:.1} GiB", kib as f64 / 1048576.0),
    );
    let mut facts = vec![
        ("CPU", cpu),
        ("cores", cores.to_string()),
        ("memory", memory),
        (
            "kernel",
            read("/proc/sys/kernel/osrelease").trim().to_owned(),
        ),
        ("OS", os_name()),
        ("load average at start", load_average()),
        (
            "NetworkManager",
            version(lab.host_command(["NetworkManager", "--version"])),
        ),
        ("netbridge", version(lab.netbridge(["--version"]))),
    ];
    let nmstate = match nmstatectl {
        Some(bin) => version(lab.host_command([bin.as_os_str(), "--version".as_ref()])),
        None => "not installed".to_owned(),
    };
    facts.push(("nmstatectl", nmstate));
    facts
}

/// A /proc/meminfo value in KiB (`key` without its colon: `MemTotal`).
pub fn meminfo_kib(key: &str) -> Option<u64> {
    read("/proc/meminfo").lines().find_map(|l| {
        l.strip_prefix(key)?
            .strip_prefix(':')?
            .split_whitespace()
            .next()?
            .parse()
            .ok()
    })
}

fn read(path: &str) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

fn os_name() -> String {
    read("/etc/os-release")
        .lines()
        .find_map(|l| l.strip_prefix("PRETTY_NAME="))
        .map_or_else(|| "unknown".to_owned(), |v| v.trim_matches('"').to_owned())
}

pub fn load_average() -> String {
    read("/proc/loadavg")
        .split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ")
}

/// The first line a `--version` prints, or why there is none.
fn version(mut command: Command) -> String {
    match command.output() {
        Ok(out) if out.status.success() => String::from_utf8_lossy(&out.stdout)
            .lines()
            .next()
            .unwrap_or("?")
            .trim()
            .to_owned(),
        Ok(out) => format!("? ({})", out.status),
        Err(e) => format!("? ({e})"),
    }
}
