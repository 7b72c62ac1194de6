//! The Markdown report: one table with a column per tool, notes that say
//! what each number means, the machine, and any failed runs.

use std::fmt::Write;

use super::agent::AgentResult;
use super::convert::{Sample, ToolResults};
use super::rollback::RollbackResults;
use super::scale::ScaleResults;
use super::stats::{format_summary, format_value, summarize, Unit};
use super::tools::Tool;
use super::trace::{Outage, DOWN_GAP};

/// Everything one benchmark run measured.
pub struct Report {
    pub runs: usize,
    pub machine: Vec<(&'static str, String)>,
    pub conversions: Vec<(Tool, ToolResults)>,
    pub rollback: Option<RollbackResults>,
    pub agent: Option<AgentResult>,
    pub scale: Vec<ScaleResults>,
}

const NOT_RUN: &str = "not run";
const NO_ROLLBACK: &str = "n/a: no checks, nothing rolls back";

struct Row {
    label: String,
    cells: Vec<String>,
}

impl Row {
    fn new(label: impl Into<String>, cells: Vec<String>) -> Row {
        Row {
            label: label.into(),
            cells,
        }
    }

    /// A netbridge-only measurement: the peers have no equivalent.
    fn netbridge_only(label: impl Into<String>, cell: String, others: &str) -> Row {
        Row::new(label, vec![cell, others.to_owned(), others.to_owned()])
    }
}

pub fn render(report: &Report) -> String {
    let mut rows = conversion_rows(report);
    rows.extend(rollback_rows(report));
    rows.extend(agent_rows(report));
    rows.extend(scale_rows(report));
    let mut out = String::new();
    let _ = writeln!(
        out,
        "| measured (median (min–max) of {} runs) | {} |",
        report.runs,
        Tool::ALL.map(Tool::title).join(" | ")
    );
    let _ = writeln!(out, "|---|---|---|---|");
    for row in rows {
        let _ = writeln!(out, "| {} | {} |", row.label, row.cells.join(" | "));
    }
    out.push_str(&notes());
    out.push_str(&machine(report));
    out.push_str(&failures(report));
    out
}

/// Cells of one measurement over each tool's samples.
fn per_tool(report: &Report, pick: impl Fn(&ToolResults) -> String) -> Vec<String> {
    Tool::ALL
        .iter()
        .map(
            |tool| match report.conversions.iter().find(|(t, _)| t == tool) {
                None => NOT_RUN.to_owned(),
                Some((_, r)) => match r.unavailable {
                    Some(why) => format!("not measured: {why}"),
                    None => pick(r),
                },
            },
        )
        .collect()
}

fn summary_cell(values: &[f64], unit: Unit, failed: usize) -> String {
    let text =
        summarize(values).map_or_else(|| "no result".to_owned(), |s| format_summary(&s, unit));
    if failed > 0 {
        format!("{text} ⚠ {failed} failed")
    } else {
        text
    }
}

fn sample_cell(
    samples: &[Sample],
    failed: usize,
    unit: Unit,
    f: impl Fn(&Sample) -> f64,
) -> String {
    summary_cell(&samples.iter().map(f).collect::<Vec<_>>(), unit, failed)
}

/// When the last outage of at least DOWN_GAP ended, in the runs that had one.
fn back_cell(outages: &[Outage]) -> String {
    if outages.iter().any(|o| o.still_down) {
        return "not back before the settle timeout".to_owned();
    }
    let backs: Vec<f64> = outages.iter().filter_map(|o| o.back_at).collect();
    let gap = format_value(DOWN_GAP, Unit::Millis);
    match backs.len() {
        0 if outages.is_empty() => "no result".to_owned(),
        0 => format!("never unreachable ≥ {gap}"),
        n if n == outages.len() => summary_cell(&backs, Unit::Span, 0),
        n => format!(
            "{} in {n} of {} runs",
            summary_cell(&backs, Unit::Span, 0),
            outages.len()
        ),
    }
}

/// `longest gap / lost` of outages.
fn gap_lost_cell(outages: &[Outage]) -> String {
    let gaps: Vec<f64> = outages.iter().map(|o| o.longest_gap).collect();
    let lost: Vec<f64> = outages.iter().map(|o| o.lost as f64).collect();
    format!(
        "{} / {}",
        summary_cell(&gaps, Unit::Span, 0),
        summary_cell(&lost, Unit::Count, 0)
    )
}

fn lan(samples: &[Sample]) -> Vec<Outage> {
    samples.iter().map(|s| s.lan).collect()
}

fn conversion_rows(report: &Report) -> Vec<Row> {
    vec![
        Row::new(
            "**Conversion**: command start → exit, change committed",
            per_tool(report, |r| {
                sample_cell(&r.convert, r.failed("convert"), Unit::Seconds, |s| s.wall)
            }),
        ),
        Row::new(
            "Conversion: longest gap / lost replies, LAN → host probes",
            per_tool(report, |r| gap_lost_cell(&lan(&r.convert))),
        ),
        Row::new(
            "Conversion: host answers the LAN again (after start)",
            per_tool(report, |r| back_cell(&lan(&r.convert))),
        ),
        Row::new(
            "Conversion: gateway answers the host through br0 (after start)",
            per_tool(report, |r| {
                let answers: Vec<f64> = r.convert.iter().filter_map(|s| s.gateway_answer).collect();
                summary_cell(&answers, Unit::Span, 0)
            }),
        ),
        Row::new(
            "**Conversion, busy host** (it probes the gateway every 5 ms meanwhile): start → exit",
            per_tool(report, |r| {
                sample_cell(&r.busy, r.failed("busy"), Unit::Seconds, |s| s.wall)
            }),
        ),
        Row::new(
            "Busy host: longest gap / lost replies, LAN → host",
            per_tool(report, |r| gap_lost_cell(&lan(&r.busy))),
        ),
        Row::new(
            "Busy host: longest gap / lost replies, host → gateway",
            per_tool(report, |r| {
                gap_lost_cell(&r.busy.iter().filter_map(|s| s.gateway).collect::<Vec<_>>())
            }),
        ),
        Row::new(
            "**Re-run** on the converted host: start → exit",
            per_tool(report, |r| {
                sample_cell(&r.rerun, r.failed("re-run"), Unit::Seconds, |s| s.wall)
            }),
        ),
        Row::new(
            "Re-run: longest gap / lost replies, LAN → host",
            per_tool(report, |r| gap_lost_cell(&lan(&r.rerun))),
        ),
    ]
}

fn rollback_rows(report: &Report) -> Vec<Row> {
    let Some(rb) = &report.rollback else {
        return vec![Row::netbridge_only(
            "**Rollback**",
            NOT_RUN.to_owned(),
            NO_ROLLBACK,
        )];
    };
    let failed = rb.errors.len();
    let cell = |unit, f: fn(&super::rollback::RollbackSample) -> f64| {
        summary_cell(&rb.samples.iter().map(f).collect::<Vec<_>>(), unit, failed)
    };
    vec![
        Row::netbridge_only(
            "**Rollback** (check fails after the change): failed verdict → host answers the LAN",
            cell(Unit::Span, |s| s.verdict_to_answering),
            NO_ROLLBACK,
        ),
        Row::netbridge_only(
            "Rollback: verdict → original profile running (netbridge's restore time)",
            cell(Unit::Seconds, |s| s.restore),
            NO_ROLLBACK,
        ),
        Row::netbridge_only(
            "Rollback: longest gap / lost LAN→host replies, whole run",
            format!(
                "{} / {}",
                cell(Unit::Span, |s| s.lan.longest_gap),
                cell(Unit::Count, |s| s.lan.lost as f64)
            ),
            NO_ROLLBACK,
        ),
        Row::netbridge_only(
            "Rollback: whole run, start → exit 3 (5 s check deadline included)",
            cell(Unit::Seconds, |s| s.total),
            NO_ROLLBACK,
        ),
    ]
}

fn agent_rows(report: &Report) -> Vec<Row> {
    const NO_AGENT: &str = "n/a: no resident agent";
    let stats = match &report.agent {
        None => {
            return vec![Row::netbridge_only(
                "**Agent** (netbridge-agent)",
                NOT_RUN.to_owned(),
                NO_AGENT,
            )]
        }
        Some(AgentResult::Unavailable(why)) => {
            let cell = format!("**not measured: agent not available** ({why})");
            return vec![Row::netbridge_only(
                "**Agent** (netbridge-agent)",
                cell,
                NO_AGENT,
            )];
        }
        Some(AgentResult::Failed(e)) => {
            let cell = format!("failed: {}", e.lines().next().unwrap_or(""));
            return vec![Row::netbridge_only(
                "**Agent** (netbridge-agent)",
                cell,
                NO_AGENT,
            )];
        }
        Some(AgentResult::Measured(stats)) => stats,
    };
    let idle = &stats.idle;
    vec![
        Row::netbridge_only(
            "**Agent**: start-up to ready (READY=1), empty configuration",
            summary_cell(&stats.startup, Unit::Span, 0),
            NO_AGENT,
        ),
        Row::netbridge_only(
            "Agent: start-up to ready, bridging ens32 on the way",
            summary_cell(&stats.startup_converting, Unit::Span, 0),
            NO_AGENT,
        ),
        Row::netbridge_only(
            "Agent idle after that: resident memory (VmRSS; peak VmHWM)",
            format!(
                "{} (peak {})",
                format_value(idle.rss_kib as f64, Unit::KibAsMib),
                format_value(idle.peak_kib as f64, Unit::KibAsMib)
            ),
            NO_AGENT,
        ),
        Row::netbridge_only(
            format!(
                "Agent idle {:.0} s: CPU time / wake-ups (context switches)",
                idle.secs
            ),
            format!(
                "{} / {}",
                format_value(idle.cpu_secs, Unit::Millis),
                idle.wakeups
            ),
            NO_AGENT,
        ),
    ]
}

fn scale_rows(report: &Report) -> Vec<Row> {
    const NOT_MEASURED: &str = "not measured";
    let median_total = |s: &ScaleResults| {
        let totals: Vec<f64> = s.samples.iter().map(|x| x.total).collect();
        summarize(&totals).map(|m| m.median)
    };
    let single = report
        .scale
        .iter()
        .find(|s| s.k == 1)
        .and_then(median_total);
    report
        .scale
        .iter()
        .map(|s| {
            let totals: Vec<f64> = s.samples.iter().map(|x| x.total).collect();
            let slowest: Vec<f64> = s.samples.iter().map(|x| x.slowest).collect();
            let growth = match (single, median_total(s)) {
                (Some(one), Some(k)) if s.k > 1 && one > 0.0 => {
                    format!(", ×{:.1} of 1 host", k / one)
                }
                _ => String::new(),
            };
            let cell = format!(
                "{} (slowest host {}{growth})",
                summary_cell(&totals, Unit::Seconds, s.errors.len()),
                summary_cell(&slowest, Unit::Seconds, 0)
            );
            let hosts = if s.k == 1 { "1 host" } else { "hosts" };
            let label = if s.k == 1 {
                format!("**Scale**: {hosts} converted, start → committed")
            } else {
                format!(
                    "Scale: {} {hosts} converted at once, first start → last committed",
                    s.k
                )
            };
            Row::netbridge_only(label, cell, NOT_MEASURED)
        })
        .collect()
}

fn notes() -> String {
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
- The numbers compare the tools in one run on one machine; they are not absolute promises.\n",
        format_value(DOWN_GAP, Unit::Millis)
    )
}

fn machine(report: &Report) -> String {
    let facts: Vec<String> = report
        .machine
        .iter()
        .map(|(label, value)| format!("{label}: {value}"))
        .collect();
    format!("\nMachine: {}.\n", facts.join("; "))
}

fn failures(report: &Report) -> String {
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
