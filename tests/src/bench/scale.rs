//! Scale: K labs (K NetworkManagers) converted by K netbridge processes at
//! once; how the total time grows with K on a shared 2-core machine.

use std::time::Duration;

use netbridge_tests::lab::{Lab, Uplink, UPLINK};

use super::proc::{run_timed, Timed};
use super::tools::{check_exit, verify_bridge, Tool};
use super::Config;

const COMMAND_TIMEOUT: Duration = Duration::from_secs(180);

#[derive(Debug, Clone, Copy)]
pub struct ScaleSample {
    /// From the first start to the last exit.
    pub total: f64,
    /// The slowest single conversion.
    pub slowest: f64,
}

#[derive(Debug, Default)]
pub struct ScaleResults {
    pub k: usize,
    pub samples: Vec<ScaleSample>,
    pub errors: Vec<String>,
}

pub fn run_all(config: &Config) -> Vec<ScaleResults> {
    config
        .scale
        .iter()
        .map(|&k| {
            let mut results = ScaleResults {
                k,
                ..ScaleResults::default()
            };
            for run in 1..=config.runs {
                eprintln!("bench: scale run {run}/{} — {k} hosts at once", config.runs);
                match run_once(k) {
                    Ok(s) => {
                        eprintln!(
                            "bench:   all committed in {:.3} s (slowest host {:.3} s)",
                            s.total, s.slowest
                        );
                        results.samples.push(s);
                    }
                    Err(e) => {
                        eprintln!("bench:   failed: {e}");
                        results.errors.push(e);
                    }
                }
            }
            results
        })
        .collect()
}

fn run_once(k: usize) -> Result<ScaleSample, String> {
    let labs = start_labs(k)?;
    let runs: Vec<Result<Timed, String>> = std::thread::scope(|scope| {
        let handles: Vec<_> = labs
            .iter()
            .map(|lab| {
                scope.spawn(move || {
                    let mut command = lab.netbridge(["convert", UPLINK, "--yes", "--json"]);
                    run_timed("netbridge convert", &mut command, COMMAND_TIMEOUT)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or_else(|_| Err("a worker panicked".into())))
            .collect()
    });
    let sample = summarize(&labs, runs);
    stop_labs(labs);
    sample
}

/// Checks every host committed and is on br0, then the timing.
fn summarize(labs: &[Lab], runs: Vec<Result<Timed, String>>) -> Result<ScaleSample, String> {
    let runs: Vec<Timed> = runs.into_iter().collect::<Result<_, _>>()?;
    for (lab, run) in labs.iter().zip(&runs) {
        check_exit(Tool::Netbridge, run, "committed")?;
        verify_bridge(lab)?;
    }
    let first = runs.iter().map(|r| r.started).fold(f64::INFINITY, f64::min);
    let last = runs.iter().map(|r| r.exited).fold(0.0, f64::max);
    let slowest = runs.iter().map(Timed::wall).fold(0.0, f64::max);
    Ok(ScaleSample {
        total: last - first,
        slowest,
    })
}

/// Starts the labs in parallel (each mostly waits for its NetworkManager).
fn start_labs(k: usize) -> Result<Vec<Lab>, String> {
    let started: Vec<Result<Lab, String>> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..k)
            .map(|_| scope.spawn(|| Lab::start(Uplink::Static).map_err(|e| e.to_string())))
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err("a lab start panicked".into()))
            })
            .collect()
    });
    let mut labs = Vec::with_capacity(k);
    let mut failure = None;
    for lab in started {
        match lab {
            Ok(lab) => labs.push(lab),
            Err(e) => failure = Some(e),
        }
    }
    match failure {
        None => Ok(labs),
        Some(e) => {
            stop_labs(labs);
            Err(format!("not all {k} labs started: {e}"))
        }
    }
}

fn stop_labs(labs: Vec<Lab>) {
    std::thread::scope(|scope| {
        for lab in labs {
            scope.spawn(move || drop(lab));
        }
    });
}
