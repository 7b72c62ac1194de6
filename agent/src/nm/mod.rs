//! The only user of the NetworkManager proxies: one long-lived D-Bus
//! connection per process, typed reads of devices, profiles and active
//! connections, and the calls the transaction makes.

mod error;
mod read;
mod runtime;
mod wait;

use std::collections::HashMap;

use netbridge_dbus::flags::{AddConnection2Flags, CheckpointCreateFlags, Update2Flags};
use netbridge_dbus::proxy::active::ActiveConnectionProxy;
use netbridge_dbus::proxy::checkpoint::CheckpointProxy;
use netbridge_dbus::proxy::connection::SettingsConnectionProxy;
use netbridge_dbus::proxy::device::DeviceProxy;
use netbridge_dbus::proxy::manager::NetworkManagerProxy;
use netbridge_dbus::proxy::settings::SettingsProxy;
use netbridge_dbus::state::RollbackResult;
use netbridge_dbus::{errors, Settings, NM_BUS_NAME};
use zbus::proxy::CacheProperties;
use zbus::zvariant::{ObjectPath, OwnedObjectPath};

pub use error::{CallContext, NmError};
pub use read::{ActiveInfo, DeviceInfo, IpRuntime, ProfileInfo};
pub use runtime::{DefaultMetrics, DnsEntry, Family, LeaseOptions};
pub use wait::{ActivationGoal, NETWORK_UP};

/// A NetworkManager version, e.g. 1.42.4.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
pub struct NmVersion(pub u32, pub u32, pub u32);

impl NmVersion {
    /// Parses `Version` ("1.42.4", "1.53.90-dev"); missing parts count as 0.
    pub fn parse(text: &str) -> Option<Self> {
        let mut parts = text.split(['.', '-']).map(|p| p.parse::<u32>().ok());
        let major = parts.next()??;
        let minor = parts.next().flatten().unwrap_or(0);
        let micro = parts.next().flatten().unwrap_or(0);
        Some(NmVersion(major, minor, micro))
    }
}

impl std::fmt::Display for NmVersion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}.{}", self.0, self.1, self.2)
    }
}

/// A handle on NetworkManager over the system bus.
#[derive(Clone)]
pub struct Nm {
    conn: zbus::Connection,
    manager: NetworkManagerProxy<'static>,
    settings: SettingsProxy<'static>,
    version: NmVersion,
}

/// For contexts that carry the handle (the checks' context): the version
/// says which NetworkManager it is; the connection's internals say nothing.
impl std::fmt::Debug for Nm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Nm")
            .field("version", &self.version)
            .finish()
    }
}

fn bus_address() -> String {
    std::env::var("DBUS_SYSTEM_BUS_ADDRESS")
        .unwrap_or_else(|_| "unix:path=/run/dbus/system_bus_socket".to_owned())
}

impl Nm {
    /// Connects to the system bus (honouring `DBUS_SYSTEM_BUS_ADDRESS`) and
    /// checks that NetworkManager answers.
    pub async fn connect() -> Result<Nm, NmError> {
        let address = bus_address();
        let conn = zbus::Connection::system()
            .await
            .map_err(|source| NmError::NoBus {
                address: address.clone(),
                source: Box::new(source),
            })?;
        let dbus = zbus::fdo::DBusProxy::new(&conn)
            .await
            .call("connecting to the bus")?;
        let name = zbus::names::BusName::try_from(NM_BUS_NAME)
            .map_err(|e| NmError::from_call("NameHasOwner", e.into()))?;
        if !dbus.name_has_owner(name).await.call("NameHasOwner")? {
            return Err(NmError::NotRunning { address });
        }
        let manager = NetworkManagerProxy::builder(&conn)
            .cache_properties(CacheProperties::No)
            .build()
            .await
            .call("NetworkManager proxy")?;
        let settings = SettingsProxy::builder(&conn)
            .cache_properties(CacheProperties::No)
            .build()
            .await
            .call("Settings proxy")?;
        let version_text = match manager.version().await.call("reading Version") {
            Ok(text) => text,
            // The name is owned a moment before the objects are exported.
            Err(e) if e.is_gone() => return Err(NmError::Starting { address }),
            Err(e) => return Err(e),
        };
        let version = NmVersion::parse(&version_text).ok_or_else(|| NmError::Unexpected {
            what: format!("NetworkManager reported an unreadable version {version_text:?}"),
        })?;
        Ok(Nm {
            conn,
            manager,
            settings,
            version,
        })
    }

    pub fn version(&self) -> NmVersion {
        self.version
    }

    pub fn connection(&self) -> &zbus::Connection {
        &self.conn
    }

    pub(super) async fn device_proxy(
        &self,
        path: &ObjectPath<'_>,
    ) -> Result<DeviceProxy<'static>, NmError> {
        DeviceProxy::builder(&self.conn)
            .path(path.to_owned())
            .call("Device proxy")?
            .cache_properties(CacheProperties::No)
            .build()
            .await
            .call("Device proxy")
    }

    async fn active_proxy(
        &self,
        path: &ObjectPath<'_>,
    ) -> Result<ActiveConnectionProxy<'static>, NmError> {
        ActiveConnectionProxy::builder(&self.conn)
            .path(path.to_owned())
            .call("Connection.Active proxy")?
            .cache_properties(CacheProperties::No)
            .build()
            .await
            .call("Connection.Active proxy")
    }

    async fn profile_proxy(
        &self,
        path: &ObjectPath<'_>,
    ) -> Result<SettingsConnectionProxy<'static>, NmError> {
        SettingsConnectionProxy::builder(&self.conn)
            .path(path.to_owned())
            .call("Settings.Connection proxy")?
            .cache_properties(CacheProperties::No)
            .build()
            .await
            .call("Settings.Connection proxy")
    }

    /// The device with this interface name, if NetworkManager knows one.
    pub async fn device_by_iface(&self, iface: &str) -> Result<Option<OwnedObjectPath>, NmError> {
        match self.manager.get_device_by_ip_iface(iface).await {
            Ok(path) => Ok(Some(path)),
            Err(e) => {
                let e = NmError::from_call(format!("GetDeviceByIpIface({iface})"), e);
                if e.dbus_name() == Some(errors::UNKNOWN_DEVICE) {
                    Ok(None)
                } else {
                    Err(e)
                }
            }
        }
    }

    pub async fn device_paths(&self) -> Result<Vec<OwnedObjectPath>, NmError> {
        self.manager.get_devices().await.call("GetDevices")
    }

    pub async fn profile_paths(&self) -> Result<Vec<OwnedObjectPath>, NmError> {
        self.settings
            .list_connections()
            .await
            .call("ListConnections")
    }

    pub async fn profile_by_uuid(&self, uuid: &str) -> Result<Option<OwnedObjectPath>, NmError> {
        match self.settings.get_connection_by_uuid(uuid).await {
            Ok(path) => Ok(Some(path)),
            Err(e) => {
                let e = NmError::from_call(format!("GetConnectionByUuid({uuid})"), e);
                if e.dbus_name() == Some(errors::SETTINGS_INVALID_CONNECTION) {
                    Ok(None)
                } else {
                    Err(e)
                }
            }
        }
    }

    pub async fn profile_settings(&self, path: &ObjectPath<'_>) -> Result<Settings, NmError> {
        let proxy = self.profile_proxy(path).await?;
        let out = proxy.get_settings().await.call("GetSettings")?;
        Ok(Settings::from(out))
    }

    /// The settings a device currently runs with (may differ from its profile).
    pub async fn applied_settings(&self, device: &ObjectPath<'_>) -> Result<Settings, NmError> {
        let proxy = self.device_proxy(device).await?;
        let (out, _version) = proxy
            .get_applied_connection(0)
            .await
            .call("GetAppliedConnection")?;
        Ok(Settings::from(out))
    }

    pub async fn add_profile(
        &self,
        settings: &Settings,
        flags: AddConnection2Flags,
    ) -> Result<OwnedObjectPath, NmError> {
        let (path, _) = self
            .settings
            .add_connection2(settings.to_dbus(), flags.bits(), HashMap::new())
            .await
            .call("AddConnection2")?;
        Ok(path)
    }

    /// Replaces a profile's settings (`None` keeps them, e.g. to only persist it).
    pub async fn update_profile(
        &self,
        path: &ObjectPath<'_>,
        settings: Option<&Settings>,
        flags: Update2Flags,
    ) -> Result<(), NmError> {
        let proxy = self.profile_proxy(path).await?;
        let settings = settings.map(Settings::to_dbus).unwrap_or_default();
        proxy
            .update2(settings, flags.bits(), HashMap::new())
            .await
            .call("Update2")?;
        Ok(())
    }

    pub async fn delete_profile(&self, path: &ObjectPath<'_>) -> Result<(), NmError> {
        let proxy = self.profile_proxy(path).await?;
        proxy.delete().await.call("Delete")
    }

    pub async fn activate(
        &self,
        profile: &ObjectPath<'_>,
        device: &ObjectPath<'_>,
    ) -> Result<OwnedObjectPath, NmError> {
        let none = ObjectPath::from_static_str_unchecked(netbridge_dbus::NULL_PATH);
        self.manager
            .activate_connection(profile, device, &none)
            .await
            .call("ActivateConnection")
    }

    pub async fn deactivate(&self, active: &ObjectPath<'_>) -> Result<(), NmError> {
        self.manager
            .deactivate_connection(active)
            .await
            .call("DeactivateConnection")
    }

    /// Applies the device's profile as it now is, without reactivating it.
    pub async fn reapply(&self, device: &ObjectPath<'_>) -> Result<(), NmError> {
        let proxy = self.device_proxy(device).await?;
        proxy
            .reapply(std::collections::HashMap::new(), 0, 0)
            .await
            .call("Device.Reapply")
    }

    /// Tells NetworkManager to leave the device alone (false) or to manage
    /// it again (true). An unmanaged device keeps its configuration: the
    /// D-Bus setter marks it removed, and NetworkManager 1.30–1.58 then
    /// cleans up without deconfiguring (`nm-device.c`, `PROP_MANAGED` and
    /// the `NM_DEVICE_STATE_UNMANAGED` case of `_set_state_full`).
    pub async fn set_managed(&self, device: &ObjectPath<'_>, managed: bool) -> Result<(), NmError> {
        let proxy = self.device_proxy(device).await?;
        proxy.set_managed(managed).await.call("Device.Managed")
    }

    /// Removes a software device such as a leftover bridge link.
    pub async fn delete_device(&self, device: &ObjectPath<'_>) -> Result<(), NmError> {
        let proxy = self.device_proxy(device).await?;
        proxy.delete().await.call("Device.Delete")
    }

    pub async fn checkpoint_create(
        &self,
        devices: &[OwnedObjectPath],
        rollback_timeout: u32,
        flags: CheckpointCreateFlags,
    ) -> Result<OwnedObjectPath, NmError> {
        let devices: Vec<ObjectPath<'_>> = devices.iter().map(|d| d.as_ref()).collect();
        self.manager
            .checkpoint_create(&devices, rollback_timeout, flags.bits())
            .await
            .call("CheckpointCreate")
    }

    pub async fn checkpoint_adjust(
        &self,
        checkpoint: &ObjectPath<'_>,
        seconds: u32,
    ) -> Result<(), NmError> {
        self.manager
            .checkpoint_adjust_rollback_timeout(checkpoint, seconds)
            .await
            .call("CheckpointAdjustRollbackTimeout")
    }

    pub async fn checkpoint_destroy(&self, checkpoint: &ObjectPath<'_>) -> Result<(), NmError> {
        self.manager
            .checkpoint_destroy(checkpoint)
            .await
            .call("CheckpointDestroy")
    }

    /// Rolls back; returns the devices NetworkManager could not restore.
    pub async fn checkpoint_rollback(
        &self,
        checkpoint: &ObjectPath<'_>,
    ) -> Result<Vec<(String, RollbackResult)>, NmError> {
        let results = self
            .manager
            .checkpoint_rollback(checkpoint)
            .await
            .call("CheckpointRollback")?;
        Ok(results
            .into_iter()
            .map(|(device, code)| (device, RollbackResult::from(code)))
            .filter(|(_, result)| *result != RollbackResult::Ok)
            .collect())
    }

    pub async fn checkpoints(&self) -> Result<Vec<OwnedObjectPath>, NmError> {
        self.manager.checkpoints().await.call("reading Checkpoints")
    }

    async fn checkpoint_proxy(
        &self,
        checkpoint: &ObjectPath<'_>,
    ) -> Result<CheckpointProxy<'static>, NmError> {
        CheckpointProxy::builder(&self.conn)
            .path(checkpoint.to_owned())
            .call("Checkpoint proxy")?
            .cache_properties(CacheProperties::No)
            .build()
            .await
            .call("Checkpoint proxy")
    }

    /// When a checkpoint was created (CLOCK_BOOTTIME ms), to tell ours from others.
    pub async fn checkpoint_created(&self, checkpoint: &ObjectPath<'_>) -> Result<i64, NmError> {
        let proxy = self.checkpoint_proxy(checkpoint).await?;
        proxy.created().await.call("reading Checkpoint.Created")
    }

    pub async fn checkpoint_devices(
        &self,
        checkpoint: &ObjectPath<'_>,
    ) -> Result<Vec<OwnedObjectPath>, NmError> {
        let proxy = self.checkpoint_proxy(checkpoint).await?;
        proxy.devices().await.call("reading Checkpoint.Devices")
    }
}

#[cfg(test)]
mod tests {
    use super::NmVersion;

    #[test]
    fn versions_parse_and_order() {
        assert_eq!(NmVersion::parse("1.42.4"), Some(NmVersion(1, 42, 4)));
        assert_eq!(NmVersion::parse("1.53.90-dev"), Some(NmVersion(1, 53, 90)));
        assert_eq!(NmVersion::parse("1.46"), Some(NmVersion(1, 46, 0)));
        assert_eq!(NmVersion::parse("garbage"), None);
        assert!(NmVersion(1, 42, 4) < NmVersion(1, 46, 0));
    }
}
