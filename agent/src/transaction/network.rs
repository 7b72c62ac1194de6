//! Creating and deleting a virtual network (NAT or host-only). Either
//! touches no other device, so no checkpoint guards it: the journal undoes
//! it if netbridge is cut short, and a `--confirm` trial ends at its
//! deadline by the watcher's hand.

use std::time::Duration;

use netbridge_dbus::flags::AddConnection2Flags;
use netbridge_dbus::Settings;
use zbus::zvariant::ObjectPath;

use super::{Commit, Failure, Outcome, Proven, Transaction, TxError, SETTLE};
use crate::journal::{Change, Record, Save};
use crate::nm::{ProfileInfo, NETWORK_UP};
use crate::plan::IpPlan;
use crate::recovery;
use crate::verify;
use ipnetwork::IpNetwork;
use netbridge_dbus::settings::names;

impl Transaction<'_> {
    /// Creates a virtual network: in memory, up, its address verified, then
    /// saved (at once, or when `netbridge confirm` runs). It touches no
    /// existing device, so no checkpoint guards it; the journal removes it
    /// if netbridge is cut short.
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
            .unwrap_or_default()
            .to_owned();
        let record = Record::new(Change::Create {
            bridge: name.to_owned(),
            uuid: uuid.clone(),
        });
        let trial = async {
            self.try_network(name, profile, address).await?;
            Ok(Proven::nothing())
        };
        let commit = Commit {
            saves: vec![Save::ToDisk { uuid }],
            done: format!("{name} saved to disk"),
        };
        self.unguarded(record, trial, commit).await
    }

    /// Deletes a network netbridge created: its bridge taken down first,
    /// then its profile deleted (at once, or when `netbridge confirm`
    /// runs); undone, the network comes back as it ran.
    pub async fn delete_network(
        &self,
        name: &str,
        profile: &ProfileInfo,
    ) -> Result<Outcome, TxError> {
        let active = match self.nm.device_by_iface(name).await {
            Ok(Some(device)) => self
                .nm
                .device_info(&device)
                .await
                .map(|d| d.active_connection)
                .unwrap_or_default(),
            _ => None,
        };
        let record = Record::new(Change::Delete {
            bridge: name.to_owned(),
            uuid: profile.uuid.clone(),
            was_up: active.is_some(),
        });
        let trial = async {
            if let Some(active) = &active {
                self.nm.deactivate(active).await.map_err(Failure::Apply)?;
            }
            recovery::remove_bridge(self.nm, name, self.progress)
                .await
                .map_err(Failure::Apply)?;
            self.progress.step(
                "down",
                format!("{name} is down; its profile is kept until the commit"),
            );
            Ok(Proven::nothing())
        };
        let commit = Commit {
            saves: vec![Save::Delete {
                uuid: profile.uuid.clone(),
            }],
            done: format!(
                "deleted profile '{}' ({}) and {name}",
                profile.id, profile.uuid
            ),
        };
        self.unguarded(record, trial, commit).await
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
        self.nm
            .wait_activated(&active, name, NETWORK_UP, Duration::from_secs(30))
            .await
            .map_err(Failure::Activation)?;
        self.progress.step("up", format!("{name} activated"));
        Ok(())
    }
}
