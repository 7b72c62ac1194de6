//! The systemd units are as hardened as their jobs allow: `systemd-analyze
//! security` rates each, offline, without installing it.

use std::path::PathBuf;
use std::process::Command;

#[test]
fn the_agent_unit_rates_ok_in_systemd_analyze_security() {
    let Some(text) = security("netbridge-agent.service", 2.5) else {
        return;
    };
    for needle in [
        "NoNewPrivileges=",
        "ProtectSystem=",
        "CapabilityBoundingSet=~CAP_SYS_ADMIN",
    ] {
        assert!(
            text.lines()
                .any(|l| l.starts_with('✓') && l.contains(needle)),
            "{needle} is set:\n{text}"
        );
    }
}

/// The unit that writes the firewall has CAP_NET_ADMIN, and only that
/// beside CAP_NET_RAW (iptables-legacy's raw socket).
#[test]
fn the_guest_forwarding_unit_rates_ok_in_systemd_analyze_security() {
    let Some(text) = security("netbridge-guest-forwarding.service", 3.0) else {
        return;
    };
    for needle in ["NoNewPrivileges=", "CapabilityBoundingSet=~CAP_SYS_ADMIN"] {
        assert!(
            text.lines()
                .any(|l| l.starts_with('✓') && l.contains(needle)),
            "{needle} is set:\n{text}"
        );
    }
}

/// `systemd-analyze security` of one of the repository's units, offline;
/// its report once the rating is at most `at_most`, None when skipped.
fn security(name: &str, at_most: f64) -> Option<String> {
    let unit = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../systemd")
        .join(name);
    let out = match Command::new("systemd-analyze")
        .args(["security", "--offline=true", "--no-pager"])
        .arg(&unit)
        .output()
    {
        Ok(out) => out,
        Err(e) => {
            let why = format!(
                "systemd-analyze cannot run ({e}); install systemd (scripts/install-deps.sh)"
            );
            eprintln!("LAB UNAVAILABLE: {why}");
            assert!(
                std::env::var("NETBRIDGE_SKIP_LAB").as_deref() == Ok("1")
                    && std::env::var("CI").as_deref() != Ok("true"),
                "{why}"
            );
            return None;
        }
    };
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text
        .lines()
        .find(|l| l.contains("Overall exposure level"))
        .unwrap_or_else(|| {
            panic!(
                "no rating in:\n{text}\n{}",
                String::from_utf8_lossy(&out.stderr)
            )
        });
    let score: f64 = line
        .split(':')
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("unreadable rating: {line}"));
    assert!(
        score <= at_most,
        "exposure {score} (0 = locked down, 10 = exposed): {line}"
    );
    Some(text.into_owned())
}
