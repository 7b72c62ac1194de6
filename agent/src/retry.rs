//! Which failures are worth trying again by themselves, decided in one
//! place. Transient: NetworkManager not running or restarting, the bus
//! gone, a checkpoint conflict, a timeout waiting for NetworkManager, an
//! interruption (SIGTERM at shutdown). Deterministic: a check failing after
//! the change, a state or identity mismatch, an invalid configuration, a
//! refusal — trying again would fail again until something changes.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::nm::NmError;
use crate::transaction::{Failure, TxError};

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
