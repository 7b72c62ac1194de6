//! Which failures are worth trying again by themselves, decided in one
//! place. Transient: NetworkManager not running or restarting, the bus
//! gone, a checkpoint conflict, a timeout waiting for NetworkManager, an
//! interruption (SIGTERM at shutdown). Deterministic: a check failing after
//! the change, a state or identity mismatch, an invalid configuration, a
//! refusal — trying again would fail again until something changes.
//!
//! And what class each failure is ([`ErrorKind`]): one per exit status, for
//! the CLI's exit code, `--json`'s `error.kind` and each bridge `apply` reports.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::guest_forwarding::ForwardingError;
use crate::journal::JournalError;
use crate::nm::NmError;
use crate::operations::network::NetworkError;
use crate::report::Verdict;
use crate::transaction::{Failure, TxError};

/// The class of a failure: one per exit status (README's table).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ErrorKind {
    /// Refused before any change: bad input, a failing pre-check, a declined prompt.
    Refused,
    RolledBack,
    /// NetworkManager or the system bus unavailable.
    NmUnavailable,
    RollbackIncomplete,
    /// Another netbridge holds the lock.
    Busy,
    Permission,
    /// Committed, but a step after the commit failed.
    AfterCommit,
    /// A bug.
    Internal,
}

impl ErrorKind {
    pub fn of_nm(e: &NmError) -> ErrorKind {
        match e {
            NmError::PermissionDenied { .. } => ErrorKind::Permission,
            NmError::NoBus { .. } | NmError::NotRunning { .. } => ErrorKind::NmUnavailable,
            other if other.is_nm_gone() => ErrorKind::NmUnavailable,
            _ => ErrorKind::Internal,
        }
    }

    pub fn of_journal(e: &JournalError) -> ErrorKind {
        match e {
            JournalError::Busy { .. } => ErrorKind::Busy,
            JournalError::Dir { source, .. } | JournalError::Io { source, .. }
                if source.kind() == std::io::ErrorKind::PermissionDenied =>
            {
                ErrorKind::Permission
            }
            _ => ErrorKind::Internal,
        }
    }

    /// A firewall that cannot be read was not changed: refused. A firewall
    /// tool that fails mid-way is left as the error it is (`internal`):
    /// netbridge cannot tell how far the tool got.
    pub fn of_forwarding(e: &ForwardingError) -> ErrorKind {
        match e {
            ForwardingError::State(j) => ErrorKind::of_journal(j),
            ForwardingError::Unreadable(_) => ErrorKind::Refused,
            ForwardingError::Tool { .. } => ErrorKind::Internal,
        }
    }

    pub fn of_network(e: &NetworkError) -> ErrorKind {
        match e {
            NetworkError::Nm(nm) => ErrorKind::of_nm(nm),
            NetworkError::Tx(tx) => ErrorKind::of_tx(tx),
            // NetworkManager tried and the network did not come up: undone.
            NetworkError::Activate(_) => ErrorKind::RolledBack,
            NetworkError::Plan(_)
            | NetworkError::NoSuch(_)
            | NetworkError::Converted { .. }
            | NetworkError::Foreign(_) => ErrorKind::Refused,
        }
    }

    /// The result a run (or a bridge) that failed so reports.
    #[must_use]
    pub fn verdict(self) -> Verdict {
        match self {
            ErrorKind::Refused => Verdict::Refused,
            ErrorKind::RolledBack => Verdict::RolledBack,
            ErrorKind::RollbackIncomplete => Verdict::RollbackIncomplete,
            _ => Verdict::Failed,
        }
    }

    /// The worst of a run's failures decides its exit status: the host
    /// needing a look first, then bugs, then what the operator can fix.
    #[must_use]
    pub fn severity(self) -> u8 {
        match self {
            ErrorKind::RollbackIncomplete => 7,
            ErrorKind::Internal => 6,
            ErrorKind::Permission => 5,
            ErrorKind::NmUnavailable => 4,
            ErrorKind::Busy => 3,
            ErrorKind::AfterCommit => 2,
            ErrorKind::RolledBack => 1,
            ErrorKind::Refused => 0,
        }
    }

    pub fn of_tx(e: &TxError) -> ErrorKind {
        match e {
            TxError::Journal(j) => ErrorKind::of_journal(j),
            TxError::Checkpoint(nm) | TxError::Hold { source: nm, .. } => ErrorKind::of_nm(nm),
            TxError::Rollback { .. } => ErrorKind::RollbackIncomplete,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Retry {
    /// Tried again by itself: with backoff by the agent, and at its next start.
    Transient,
    /// Parked until its configuration changes or `netbridge apply` is run.
    Deterministic,
}

impl Retry {
    pub fn of_nm(e: &NmError) -> Retry {
        let conflict = e
            .dbus_name()
            .is_some_and(|name| name.ends_with("InvalidArguments"))
            && e.to_string().contains("checkpoint");
        if e.is_nm_gone() || matches!(e, NmError::Timeout { .. }) || conflict {
            Retry::Transient
        } else {
            Retry::Deterministic
        }
    }

    pub fn of_failure(failure: &Failure) -> Retry {
        match failure {
            Failure::Interrupted(_) => Retry::Transient,
            Failure::Apply(e) | Failure::Activation(e) | Failure::Read(e) | Failure::Commit(e) => {
                Retry::of_nm(e)
            }
            Failure::Verify(_) | Failure::Identity(_) | Failure::Checks(_) => Retry::Deterministic,
        }
    }

    pub fn of_tx(e: &TxError) -> Retry {
        match e {
            TxError::Checkpoint(nm) | TxError::Hold { source: nm, .. } => Retry::of_nm(nm),
            // Another netbridge holds the lock: it will be done soon.
            TxError::Journal(crate::journal::JournalError::Busy { .. }) => Retry::Transient,
            // The host may need a look before anything else changes.
            TxError::Rollback { .. } | TxError::Journal(_) => Retry::Deterministic,
        }
    }
}

/// How long the agent waits before the `attempt`-th retry (1, 2, …):
/// 10 s doubling, at most 10 minutes.
pub fn backoff(attempt: u32) -> Duration {
    let secs = 10u64.saturating_mul(1u64 << attempt.saturating_sub(1).min(6));
    Duration::from_secs(secs.min(600))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_from_10_s_up_to_10_minutes() {
        let secs: Vec<u64> = (1..=9).map(|a| backoff(a).as_secs()).collect();
        assert_eq!(secs, vec![10, 20, 40, 80, 160, 320, 600, 600, 600]);
    }

    #[test]
    fn interruptions_and_timeouts_are_transient_and_failed_checks_are_not() {
        assert_eq!(
            Retry::of_failure(&Failure::Interrupted("SIGTERM")),
            Retry::Transient
        );
        let timeout = NmError::Timeout {
            what: "br0 to be activated".into(),
            seconds: 30,
        };
        assert_eq!(
            Retry::of_failure(&Failure::Activation(timeout)),
            Retry::Transient
        );
        assert_eq!(
            Retry::of_failure(&Failure::Checks(Vec::new())),
            Retry::Deterministic
        );
        assert_eq!(
            Retry::of_failure(&Failure::Identity(
                vec!["br0 lacks 172.25.250.10/24".into()]
            )),
            Retry::Deterministic
        );
    }
}
