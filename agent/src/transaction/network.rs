//! Creating a virtual network (NAT or host-only): in memory, up, its address
//! verified, then saved. It touches no existing device, so no checkpoint
//! guards it; the journal removes it if netbridge is cut short.

use std::time::Duration;

use netbridge_dbus::flags::{AddConnection2Flags, Update2Flags};
use netbridge_dbus::Settings;
use zbus::zvariant::ObjectPath;

use super::{interrupted, journal_to_nm, Failure, Outcome, Transaction, TxError, SETTLE};
use crate::checks::CheckContext;
use crate::journal::{Change, Record};
use crate::nm::{ActivationGoal, NmError};
use crate::plan::IpPlan;
use crate::verify;
use ipnetwork::IpNetwork;
use netbridge_dbus::settings::names;

impl Transaction<'_> {
    /// Creates a virtual network: in memory, up, its address verified, then
    /// saved. It touches no existing device, so no checkpoint guards it; the
    /// journal removes it if netbridge is cut short.
    pub async fn create_network(
        &self,
        name: &str,
        profile: &Settings,
        address: IpNetwork,
    ) -> Result<Outcome, TxError> {
        let uuid = profile
            .str(names::CONNECTION, "uuid")
            .ok()
            .flatten()
            .unwrap_or_default();
        let record = Record::new(Change::Create {
            bridge: name.to_owned(),
            uuid: uuid.to_owned(),
        });
        let stop = interrupted();
        self.store.write(self.lock, &record).await?;
        let trial = tokio::select! {
            biased;
            signal = stop => Err(Failure::Interrupted(signal)),
            result = self.try_network(name, profile, address) => result,
        };
        let verdict = match trial {
            Ok(()) => self
                .commit_network(name, uuid)
                .await
                .map_err(Failure::Commit),
            Err(failure) => Err(failure),
        };
        match verdict {
            Ok(()) => Ok(Outcome::Committed {
                checks: Vec::new(),
                identity: None,
            }),
            Err(failure) => {
                self.roll_back(
                    &record,
                    failure,
                    &[],
                    &CheckContext::default(),
                    Duration::ZERO,
                )
                .await
            }
        }
    }

    async fn try_network(
        &self,
        name: &str,
        profile: &Settings,
        address: IpNetwork,
    ) -> Result<(), Failure> {
        let trial = AddConnection2Flags::IN_MEMORY | AddConnection2Flags::BLOCK_AUTOCONNECT;
        let path = self
            .nm
            .add_profile(profile, trial)
            .await
            .map_err(Failure::Apply)?;
        self.progress
            .step("profile", format!("added {name} (in memory only)"));
        self.bring_up(name, &path).await?;
        let expected = IpPlan {
            method: "manual".to_owned(),
            addresses: vec![address],
            ..IpPlan::default()
        };
        self.settled(name, SETTLE, |bridge| {
            verify::carries(bridge, &expected, &IpPlan::default())
        })
        .await?;
        self.progress
            .step("verified", format!("{name} is up with {address}"));
        Ok(())
    }

    /// Activates a profile that needs no device of its own (a new bridge).
    pub async fn bring_up(&self, name: &str, profile: &ObjectPath<'_>) -> Result<(), Failure> {
        let any_device = ObjectPath::from_static_str_unchecked(netbridge_dbus::NULL_PATH);
        let active = self
            .nm
            .activate(profile, &any_device)
            .await
            .map_err(Failure::Apply)?;
        let goal = ActivationGoal {
            ip4: true,
            ip6: false,
        };
        self.nm
            .wait_activated(&active, name, goal, Duration::from_secs(30))
            .await
            .map_err(Failure::Activation)?;
        self.progress.step("up", format!("{name} activated"));
        Ok(())
    }

    async fn commit_network(&self, name: &str, uuid: &str) -> Result<(), NmError> {
        let path = self.profile(uuid).await?;
        self.nm
            .update_profile(&path, None, Update2Flags::TO_DISK)
            .await?;
        self.store.clear(self.lock).await.map_err(journal_to_nm)?;
        self.progress
            .step("committed", format!("{name} saved to disk"));
        Ok(())
    }
}
