//! `netbridge-agent`: the service behind `netbridge-agent.service`.

use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use netbridge::agent::{self, AgentArgs, AgentOptions};

fn main() -> ExitCode {
    let args = AgentArgs::parse();
    let filter = tracing_subscriber::EnvFilter::try_from_env("NETBRIDGE_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        // Its own report of a failed write would go to stderr with a
        // panicking print: a closed pipe must not crash a change.
        .log_internal_errors(false)
        // The journal adds its own timestamps.
        .without_time()
        .init();
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            tracing::error!("cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let options = AgentOptions {
        config: args.config,
        state_dir: args.state_dir,
        nm_wait: Duration::from_secs(args.nm_wait),
    };
    let result = runtime.block_on(agent::run(options));
    // A thread still blocked on the lock another netbridge holds must not
    // keep a stopping agent alive: its work is abandoned, not awaited.
    runtime.shutdown_background();
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e}");
            ExitCode::FAILURE
        }
    }
}
