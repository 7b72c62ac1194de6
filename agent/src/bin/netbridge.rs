//! The `netbridge` command.

use std::process::ExitCode;

use netbridge::cli;

fn main() -> ExitCode {
    let cli = match cli::parse() {
        Ok(cli) => cli,
        Err(exit) => return ExitCode::from(u8::try_from(exit.code()).unwrap_or(1)),
    };
    if cli.detached() {
        netbridge::logging::init_detached(&netbridge::logging::own("info"));
    } else {
        netbridge::logging::init(cli.log_filter());
    }
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
