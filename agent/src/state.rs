//! The last result per configured bridge, kept by `apply` and the agent in
//! `<state dir>/state.json` and shown by `netbridge status`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::journal::{JournalError, Lock, Store};
use crate::retry::{self, Retry};

const STATE: &str = "state.json";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ResultKind {
    /// Changed and committed.
    Applied,
    /// Already as configured: nothing to do.
    Unchanged,
    /// Tried, failed its checks, rolled back: the host is as it was.
    RolledBack,
    /// Refused or failed before changing anything (or a rollback failed).
    Failed,
    /// Configured, but not applied yet in its current form.
    Pending,
}

impl std::fmt::Display for ResultKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ResultKind::Applied => "applied",
            ResultKind::Unchanged => "unchanged",
            ResultKind::RolledBack => "rolled back",
            ResultKind::Failed => "failed",
            ResultKind::Pending => "pending",
        })
    }
}

impl ResultKind {
    /// Results that are not retried until the configuration changes.
    pub fn is_failure(self) -> bool {
        matches!(self, ResultKind::RolledBack | ResultKind::Failed)
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BridgeResult {
    pub result: ResultKind,
    pub reason: Option<String>,
    pub at_unix: u64,
    /// The configuration entry this result is for (see `BridgeConfig::fingerprint`).
    pub config: String,
    /// For a failure: tried again by itself (transient) or parked.
    #[serde(default)]
    pub retry: Option<Retry>,
    /// Transient failures in a row with this configuration.
    #[serde(default)]
    pub attempts: u32,
    /// When the agent tries a transient failure again.
    #[serde(default)]
    pub next_try_unix: Option<u64>,
}

impl BridgeResult {
    /// Parked: not tried again until its configuration changes or
    /// `netbridge apply` is run.
    pub fn parked(&self) -> bool {
        self.result.is_failure() && self.retry != Some(Retry::Transient)
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct State {
    pub bridges: BTreeMap<String, BridgeResult>,
}

impl State {
    pub async fn load(store: &Store) -> Result<State, JournalError> {
        Ok(store.read_json(STATE).await?.unwrap_or_default())
    }

    /// The results as they stand for `config`: a configured bridge without a
    /// result for its current configuration is pending.
    pub fn against(mut self, config: &crate::config::Config) -> State {
        for bridge in &config.bridges {
            let fingerprint = bridge.fingerprint();
            let current = self
                .bridges
                .get(&bridge.name)
                .is_some_and(|r| r.config == fingerprint);
            if !current {
                let reason = Some("configured, not applied yet".to_owned());
                self.record(&bridge.name, ResultKind::Pending, reason, fingerprint);
            }
        }
        self
    }

    /// Drops the result of a bridge that was undone (reverted, deleted): it
    /// describes a bridge no longer there.
    pub async fn forget(store: &Store, lock: &Lock, name: &str) -> Result<(), JournalError> {
        let mut state = State::load(store).await?;
        if state.bridges.remove(name).is_some() {
            state.save(store, lock).await?;
        }
        Ok(())
    }

    pub async fn save(&self, store: &Store, lock: &Lock) -> Result<(), JournalError> {
        store.write_json(lock, STATE, self).await
    }

    pub fn record(
        &mut self,
        name: &str,
        result: ResultKind,
        reason: Option<String>,
        config: String,
    ) {
        self.record_retry(name, result, reason, config, None);
    }

    /// Records a result; a transient failure counts one more attempt with
    /// this configuration and gets its next try after [`retry::backoff`].
    pub fn record_retry(
        &mut self,
        name: &str,
        result: ResultKind,
        reason: Option<String>,
        config: String,
        retry: Option<Retry>,
    ) {
        let at_unix = crate::journal::now_unix();
        let transient = result.is_failure() && retry == Some(Retry::Transient);
        let attempts = match self.bridges.get(name) {
            Some(last) if transient && last.config == config && last.retry == retry => {
                last.attempts + 1
            }
            _ if transient => 1,
            _ => 0,
        };
        let next_try_unix = transient.then(|| at_unix + retry::backoff(attempts).as_secs());
        self.bridges.insert(
            name.to_owned(),
            BridgeResult {
                result,
                reason,
                at_unix,
                config,
                retry: result.is_failure().then_some(retry).flatten(),
                attempts,
                next_try_unix,
            },
        );
    }

    /// The earliest next try of a transient failure, if any.
    pub fn next_try_unix(&self) -> Option<u64> {
        self.bridges.values().filter_map(|r| r.next_try_unix).min()
    }
}
