//! The systemd unit is as hardened as the job allows: `systemd-analyze
//! security` rates it, offline, without installing it.

use std::path::PathBuf;
use std::process::Command;

#[test]
fn the_agent_unit_rates_ok_in_systemd_analyze_security() {
    let unit = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../systemd/netbridge-agent.service");
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
            return;
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
        score <= 2.5,
        "exposure {score} (0 = locked down, 10 = exposed): {line}"
    );
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
