//! The `netbridge` command.

use std::process::ExitCode;

use clap::Parser;
use netbridge::cli::{self, Cli};

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.log_filter());
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("netbridge: error: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    let exit = runtime.block_on(async {
        // A dropped SSH session sends SIGHUP; a change in progress must finish
        // (or roll back) rather than die half-way.
        let _hangup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup());
        cli::run(cli).await
    });
    ExitCode::from(u8::try_from(exit.code()).unwrap_or(1))
}

/// `default` applies unless NETBRIDGE_LOG says otherwise.
fn init_logging(default: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("NETBRIDGE_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        // Its own report of a failed write would go to stderr with a
        // panicking print: a closed pipe must not crash a change.
        .log_internal_errors(false)
        .init();
}
