//! The agent loop behind `netbridge-agent.service`: finish what an earlier
//! run left, apply the configuration, tell systemd it is ready, then sleep
//! until SIGHUP (reload: apply again), SIGTERM (stop), or the next try of a
//! bridge whose last attempt failed transiently (see [`crate::retry`]). It
//! wakes for nothing else. While it starts it keeps systemd informed
//! (`STATUS=`, `EXTEND_TIMEOUT_USEC=`), so a late NetworkManager or a long
//! transaction never runs into the start timeout.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use sd_notify::NotifyState;
use tokio::signal::unix::{signal, Signal, SignalKind};

use crate::config;
use crate::journal::{JournalError, Lock, Store};
use crate::nm::{Nm, NmError};
use crate::operations::apply::{self, Applied, ApplyOptions, BridgeReport};
use crate::recovery;
use crate::report::Progress;

/// Signals, exit status and environment, after `netbridge-agent --help` and
/// in its manual.
const AGENT_AFTER_HELP: &str = "\
Signals:
  SIGHUP   apply the configuration again (systemctl reload netbridge-agent)
  SIGTERM  stop; a transaction in flight is rolled back first
  SIGINT   as SIGTERM

Exit status:
  0  stopped by SIGTERM or SIGINT
  1  could not start or run: signal handlers, NetworkManager never appeared
     (or the agent was stopped before it did), the journal or an interrupted
     change could not be handled (see the log)
  2  bad command line

Environment:
  NETBRIDGE_STATE_DIR  journal, lock and results directory (default /var/lib/netbridge)
  NETBRIDGE_LOG        log filter (default info; e.g. debug); journald when stderr is the journal
  NO_COLOR             no colour in the log (there is none off a terminal)
  DBUS_SYSTEM_BUS_ADDRESS  the system bus to find NetworkManager on";

/// The netbridge service: keeps the host's bridges as configured.
///
/// Applies /etc/netbridge/netbridge.toml (and conf.d/*.toml) at start and on
/// SIGHUP (`systemctl reload netbridge-agent`): each configured bridge as one
/// checkpoint-protected transaction, like `netbridge apply`. A transient
/// failure (NetworkManager restarting, a stop) is tried again with backoff
/// and at the next start; a bridge that failed its checks is not retried
/// until its configuration changes. Results:
/// `netbridge status`. Runs in the foreground and tells systemd when it is
/// ready (Type=notify); logs go to stderr (the journal under systemd).
#[derive(Debug, clap::Parser)]
#[command(name = "netbridge-agent", version, after_help = AGENT_AFTER_HELP)]
pub struct AgentArgs {
    /// The configuration file (or a directory with netbridge.toml and conf.d/).
    #[arg(long, value_name = "PATH", default_value = config::DEFAULT_PATH)]
    pub config: PathBuf,

    /// Directory for the journal, the lock and the results.
    #[arg(
        long,
        env = "NETBRIDGE_STATE_DIR",
        default_value = "/var/lib/netbridge",
        value_name = "DIR"
    )]
    pub state_dir: PathBuf,

    /// Seconds to wait for NetworkManager to appear on the bus at start.
    #[arg(long, default_value_t = 90, value_name = "SECS")]
    pub nm_wait: u64,
}

#[derive(Debug, Clone)]
pub struct AgentOptions {
    pub config: PathBuf,
    pub state_dir: PathBuf,
    /// How long to wait for NetworkManager to appear on the bus at start.
    pub nm_wait: Duration,
}

#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error("cannot install signal handlers: {0}")]
    Signals(std::io::Error),
    #[error(transparent)]
    Nm(#[from] NmError),
    #[error(transparent)]
    Journal(#[from] JournalError),
    #[error(transparent)]
    Recovery(#[from] recovery::RecoveryError),
    #[error("stopped before NetworkManager appeared")]
    Stopped,
}

struct Signals {
    hangup: Signal,
    terminate: Signal,
    interrupt: Signal,
}

impl Signals {
    fn new() -> Result<Self, AgentError> {
        let install = |kind| signal(kind).map_err(AgentError::Signals);
        Ok(Signals {
            hangup: install(SignalKind::hangup())?,
            terminate: install(SignalKind::terminate())?,
            interrupt: install(SignalKind::interrupt())?,
        })
    }
}

pub async fn run(options: AgentOptions) -> Result<(), AgentError> {
    let mut signals = Signals::new()?;
    let nm = tokio::select! {
        nm = connect(options.nm_wait) => nm?,
        _ = signals.terminate.recv() => return Err(AgentError::Stopped),
        _ = signals.interrupt.recv() => return Err(AgentError::Stopped),
    };
    tracing::info!(version = %nm.version(), "connected to NetworkManager");
    // At boot NetworkManager is still bringing up what it autoconnects (a
    // converted host's bridge among them): plan only once that is done.
    starting(
        "waiting for NetworkManager to finish starting",
        options.nm_wait,
    );
    if let Err(e) = nm.wait_startup_complete(options.nm_wait).await {
        tracing::warn!("{e}; applying the configuration anyway");
    }
    let store = Store::new(&options.state_dir);
    let stopping = crate::transaction::watch_stop();
    starting("applying the configuration", APPLY_BUDGET);
    let status = apply_config(&nm, &store, &options, &stopping).await;
    notify(&[NotifyState::Ready, NotifyState::Status(&status)]);
    loop {
        let retry = next_retry(&store);
        tokio::select! {
            () = retry => {
                tracing::info!("trying again what failed transiently");
                let status = apply_config(&nm, &store, &options, &stopping).await;
                notify(&[NotifyState::Status(&status)]);
            }
            _ = signals.hangup.recv() => {
                tracing::info!(config = %options.config.display(), "reloading");
                let mut reloading = vec![NotifyState::Reloading];
                // systemd ≥ 253 wants the time with RELOADING=1; older ones ignore it.
                reloading.extend(NotifyState::monotonic_usec_now().ok());
                notify(&reloading);
                let status = apply_config(&nm, &store, &options, &stopping).await;
                notify(&[NotifyState::Ready, NotifyState::Status(&status)]);
            }
            _ = signals.terminate.recv() => break,
            _ = signals.interrupt.recv() => break,
        }
        if stopping.load(Ordering::SeqCst) {
            break;
        }
    }
    notify(&[NotifyState::Stopping]);
    tracing::info!("stopped");
    Ok(())
}

/// What one start may take to apply the configuration, asked of systemd
/// on top of its start timeout: a transaction is bounded by its activation,
/// verification and check deadlines, and a rollback by NetworkManager's.
const APPLY_BUDGET: Duration = Duration::from_secs(300);

/// Tells systemd what the agent waits for and that it may take `budget`
/// more: the unit's start timeout then never kills a change in flight.
fn starting(status: &str, budget: Duration) {
    let usec = u32::try_from(budget.as_micros()).unwrap_or(u32::MAX);
    notify(&[
        NotifyState::Status(status),
        NotifyState::ExtendTimeoutUsec(usec),
    ]);
}

/// Resolves when the earliest transient failure is due to be tried again;
/// never, if there is none.
async fn next_retry(store: &Store) {
    let due = match crate::state::State::load(store).await {
        Ok(state) => state.next_try_unix(),
        Err(e) => {
            tracing::warn!(error = %e, "cannot read the results: no retry scheduled");
            None
        }
    };
    let Some(due) = due else {
        return std::future::pending().await;
    };
    let now = crate::journal::now_unix();
    tracing::info!(
        in_seconds = due.saturating_sub(now),
        "next try of a transient failure"
    );
    tokio::time::sleep(Duration::from_secs(due.saturating_sub(now))).await;
}

fn notify(states: &[NotifyState]) {
    if let Err(e) = sd_notify::notify(false, states) {
        tracing::warn!(error = %e, "cannot notify systemd");
    }
}

/// NetworkManager may still be starting: wait for its name on the bus, with a deadline.
async fn connect(wait: Duration) -> Result<Nm, AgentError> {
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        match Nm::connect().await {
            Ok(nm) => return Ok(nm),
            Err(
                e @ (NmError::NotRunning { .. } | NmError::NoBus { .. } | NmError::Starting { .. }),
            ) if tokio::time::Instant::now() < deadline => {
                tracing::info!(error = %e, "waiting for NetworkManager");
                starting(
                    &format!("waiting for NetworkManager: {e}"),
                    Duration::from_secs(10),
                );
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            Err(e) => return Err(e.into()),
        }
    }
}

/// Applies the configuration once; returns a one-line status for systemd.
/// Errors are logged, not fatal: the agent stays up for the next reload.
async fn apply_config(
    nm: &Nm,
    store: &Store,
    options: &AgentOptions,
    stopping: &Arc<AtomicBool>,
) -> String {
    match try_apply(nm, store, options, stopping).await {
        Ok(reports) => summary(&reports),
        Err(message) => {
            tracing::error!("{message}");
            message
        }
    }
}

async fn try_apply(
    nm: &Nm,
    store: &Store,
    options: &AgentOptions,
    stopping: &Arc<AtomicBool>,
) -> Result<Vec<BridgeReport>, String> {
    let config = config::load(&options.config)
        .await
        .map_err(|e| format!("configuration invalid, nothing applied: {e}"))?;
    let lock = match store.lock() {
        Ok(lock) => lock,
        Err(JournalError::Busy { .. }) => wait_for_lock(store, stopping).await?,
        Err(e) => return Err(e.to_string()),
    };
    let progress = Progress::new(false);
    if let Some(done) = recovery::recover(nm, store, &lock, &progress)
        .await
        .map_err(|e| e.to_string())?
    {
        tracing::warn!(bridge = %done.bridge, action = done.action, "finished an interrupted {}", done.operation);
    }
    let apply_options = ApplyOptions {
        dry_run: false,
        retry_failed: false,
        stop: Some(Arc::clone(stopping)),
        confirm: None,
    };
    let reports = apply::apply(nm, store, &lock, &config, apply_options, &progress)
        .await
        .map_err(|e| e.to_string())?;
    for r in &reports {
        // The message stands on its own; the fields are for filtering.
        let why = r
            .reason
            .as_deref()
            .map(|r| format!(": {r}"))
            .unwrap_or_default();
        let (bridge, result) = (&r.name, r.result);
        match r.result {
            Applied::Committed | Applied::Unchanged => {
                tracing::info!(%bridge, %result, "{bridge} {result}{why}")
            }
            Applied::Skipped => tracing::warn!(%bridge, %result, "{bridge} {result}{why}"),
            _ => tracing::error!(%bridge, %result, "{bridge} {result}{why}"),
        }
    }
    Ok(reports)
}

/// Waits for another netbridge to release the lock, raced with a stop:
/// it may hold the lock for long (a transaction, or an old version's open
/// prompt), and SIGTERM must not wait for it. The blocked thread takes and
/// drops the lock when it can.
async fn wait_for_lock(store: &Store, stopping: &Arc<AtomicBool>) -> Result<Lock, String> {
    tracing::info!("waiting for another netbridge to finish");
    let locker = store.clone();
    let waiting = tokio::task::spawn_blocking(move || locker.lock_blocking());
    tokio::select! {
        lock = waiting => lock
            .map_err(|e| format!("waiting for the lock: {e}"))?
            .map_err(|e| e.to_string()),
        signal = crate::transaction::interrupted() => {
            stopping.store(true, Ordering::SeqCst);
            Err(format!("stopped by {signal} while waiting for another netbridge to finish"))
        }
    }
}

fn summary(reports: &[BridgeReport]) -> String {
    if reports.is_empty() {
        return "no bridges configured".to_owned();
    }
    reports
        .iter()
        .map(|r| format!("{}: {}", r.name, r.result))
        .collect::<Vec<_>>()
        .join(", ")
}
