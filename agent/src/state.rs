//! The last result per configured bridge, kept by `apply` and the agent in
//! `<state dir>/state.json` and shown by `netbridge status`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::journal::{JournalError, Lock, Store};

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
        let at_unix = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        self.bridges.insert(
            name.to_owned(),
            BridgeResult {
                result,
                reason,
                at_unix,
                config,
            },
        );
    }
}
