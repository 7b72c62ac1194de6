//! `netbridge-agent`: the service behind `netbridge-agent.service`.

use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use netbridge::agent::{self, AgentArgs, AgentOptions};

fn main() -> ExitCode {
    let args = AgentArgs::parse();
    netbridge::logging::init(&netbridge::logging::own("info"));
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
