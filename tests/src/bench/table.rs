//! The Markdown report: one table with a column per tool, notes that say
//! what each number means, the machine, and any failed runs.

use std::fmt::Write;

use super::agent::AgentResult;
use super::convert::{Sample, ToolResults};
use super::notes;
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
/// What the peers do where netbridge rolls back after a failed check.
const NO_ROLLBACK: [&str; 2] = [
    "n/a: nothing verifies or rolls back",
    "n/a: rolls back only when its state verification fails, never on lost connectivity",
];

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

    /// A rollback measurement, with what the peers do instead.
    fn rollback(label: impl Into<String>, cell: String) -> Row {
        let [nmcli, nmstate] = NO_ROLLBACK.map(str::to_owned);
        Row::new(label, vec![cell, nmcli, nmstate])
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
    out.push_str(&notes::notes());
    out.push_str(&notes::machine(&report.machine));
    out.push_str(&notes::failures(report));
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
        return "not answering at the end (settle timeout)".to_owned();
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
        return vec![Row::rollback("**Rollback**", NOT_RUN.to_owned())];
    };
    let failed = rb.errors.len();
    let cell = |unit, f: fn(&super::rollback::RollbackSample) -> f64| {
        summary_cell(&rb.samples.iter().map(f).collect::<Vec<_>>(), unit, failed)
    };
    let after_verdict: Vec<Outage> = rb.samples.iter().map(|s| s.after_verdict).collect();
    vec![
        Row::rollback(
            "**Rollback** (check fails after the change): failed verdict → host answers the LAN",
            back_cell(&after_verdict),
        ),
        Row::rollback(
            "Rollback: longest gap in LAN → host replies after the verdict",
            cell(Unit::Span, |s| s.after_verdict.longest_gap),
        ),
        Row::rollback(
            "Rollback: verdict → original profile running (netbridge's restore time)",
            cell(Unit::Seconds, |s| s.restore),
        ),
        Row::rollback(
            "Rollback: longest gap / lost LAN→host replies, whole run",
            format!(
                "{} / {}",
                cell(Unit::Span, |s| s.lan.longest_gap),
                cell(Unit::Count, |s| s.lan.lost as f64)
            ),
        ),
        Row::rollback(
            "Rollback: whole run, start → exit 3 (5 s check deadline included)",
            cell(Unit::Seconds, |s| s.total),
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
            let total = summary_cell(&totals, Unit::Seconds, s.errors.len());
            let cell = if s.k == 1 {
                total
            } else {
                let slowest = summary_cell(&slowest, Unit::Seconds, 0);
                format!("{total} (slowest host {slowest}{growth})")
            };
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
