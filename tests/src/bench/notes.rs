//! The text under the table: what the numbers mean, the machine, and the
//! runs that failed.

use std::fmt::Write;

use super::stats::{format_value, Unit};
use super::table::Report;
use super::trace::DOWN_GAP;

pub fn notes() -> String {
    format!(
        "\nNotes:\n\
- Every run uses fresh labs: a real NetworkManager managing a veth `ens32` \
(172.25.250.10/24, gateway and DNS 172.25.250.254) in network namespaces. Probes: ICMP \
echo every 5 ms (netbridge-bench's own prober; iputils `ping -i 0.005` would keep a CPU \
busy), from before the command until the host answers steadily again.\n\
- Quiet host: only the LAN probes the host during the change; the host starts probing \
the gateway when the command exits. Busy host: the host also probes the gateway every \
5 ms during the change, as the replies of an SSH session would flow.\n\
- \"Answers again\": when the last gap of at least {} in the replies ended; shorter \
gaps without lost replies are scheduling delays on the shared machine.\n\
- netbridge: `netbridge convert ens32 --yes --json`; its time includes its connectivity \
checks (gateway ping, DNS) and the commit to disk. Rollback: `--check ping:172.25.250.254`, \
and the gateway stops answering pings once the change has started.\n\
- nmcli recipe: the commands of docs/design.md, adapted to the lab (bridge br0, port \
ens32, ipv4 manual 172.25.250.10/24, gateway and DNS .254), run as one script; done when \
the commands return. STP stays at NetworkManager's default (on), as in the recipe; nothing \
verifies the result or undoes a mistake. It is not idempotent: a re-run adds a second br0 \
and ens32-port profile and activates them again.\n\
- nmstatectl apply: the equivalent desired state (linux-bridge br0 with port ens32, STP \
off, 172.25.250.10/24, default route and DNS via .254). **nmstatectl does not probe \
connectivity**: it verifies the resulting state only; its time is reported as is.\n\
- Agent: started with `--config` of an empty file, then of one `[[bridge]]` (br0 on \
ens32), in fresh labs; watched idle once after the last start.\n\
- Scale: K labs (K NetworkManagers) converted by K `netbridge convert` at once; no \
probes run there, so nothing sends traffic during the switch.\n\
- The numbers compare the tools in one run on one machine; they are not absolute promises.\n",
        format_value(DOWN_GAP, Unit::Millis)
    )
}

pub fn machine(machine: &[(&'static str, String)]) -> String {
    let facts: Vec<String> = machine
        .iter()
        .map(|(label, value)| format!("{label}: {value}"))
        .collect();
    format!("\nMachine: {}.\n", facts.join("; "))
}

pub fn failures(report: &Report) -> String {
    let mut all: Vec<String> = Vec::new();
    for (tool, r) in &report.conversions {
        all.extend(r.errors.iter().map(|e| format!("{}: {e}", tool.title())));
    }
    if let Some(rb) = &report.rollback {
        all.extend(rb.errors.iter().map(|e| format!("rollback: {e}")));
    }
    for s in &report.scale {
        all.extend(s.errors.iter().map(|e| format!("scale {}: {e}", s.k)));
    }
    if all.is_empty() {
        return String::new();
    }
    let mut out = String::from("\nFailed runs:\n");
    for e in all {
        let first = e.lines().next().unwrap_or("");
        let _ = writeln!(out, "- {first}");
    }
    out
}
