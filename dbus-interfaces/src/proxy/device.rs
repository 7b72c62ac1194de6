//! `org.freedesktop.NetworkManager.Device`: any network device.

use zbus::proxy;
use zbus::zvariant::OwnedObjectPath;

use super::{SettingsIn, SettingsOut};

#[proxy(
    interface = "org.freedesktop.NetworkManager.Device",
    default_service = "org.freedesktop.NetworkManager"
)]
pub trait Device {
    /// The settings the device runs with; `flags` must be 0.
    fn get_applied_connection(&self, flags: u32) -> zbus::Result<(SettingsOut, u64)>;

    fn reapply(&self, connection: SettingsIn<'_>, version_id: u64, flags: u32) -> zbus::Result<()>;

    fn disconnect(&self) -> zbus::Result<()>;

    /// Removes a software device (e.g. a bridge link).
    fn delete(&self) -> zbus::Result<()>;

    #[zbus(property)]
    fn interface(&self) -> zbus::Result<String>;

    #[zbus(property)]
    fn driver(&self) -> zbus::Result<String>;

    /// `DeviceState`.
    #[zbus(property)]
    fn state(&self) -> zbus::Result<u32>;

    /// (state, reason).
    #[zbus(property)]
    fn state_reason(&self) -> zbus::Result<(u32, u32)>;

    #[zbus(property)]
    fn managed(&self) -> zbus::Result<bool>;

    /// False: NetworkManager leaves the device and its configuration as they
    /// are (runtime only; activating a profile on it manages it again).
    #[zbus(property)]
    fn set_managed(&self, managed: bool) -> zbus::Result<()>;

    /// `DeviceType`.
    #[zbus(property)]
    fn device_type(&self) -> zbus::Result<u32>;

    /// The current MAC (1.24).
    #[zbus(property)]
    fn hw_address(&self) -> zbus::Result<String>;

    #[zbus(property)]
    fn mtu(&self) -> zbus::Result<u32>;

    #[zbus(property)]
    fn real(&self) -> zbus::Result<bool>;

    /// `/` when inactive.
    #[zbus(property)]
    fn active_connection(&self) -> zbus::Result<OwnedObjectPath>;

    #[zbus(property)]
    fn available_connections(&self) -> zbus::Result<Vec<OwnedObjectPath>>;

    #[zbus(property)]
    fn ip4_config(&self) -> zbus::Result<OwnedObjectPath>;

    #[zbus(property)]
    fn ip6_config(&self) -> zbus::Result<OwnedObjectPath>;

    #[zbus(property)]
    fn dhcp4_config(&self) -> zbus::Result<OwnedObjectPath>;

    #[zbus(property)]
    fn dhcp6_config(&self) -> zbus::Result<OwnedObjectPath>;

    /// Devices attached to this controller (1.34; before it, `Slaves` of
    /// `controller`'s interfaces).
    #[zbus(property)]
    fn ports(&self) -> zbus::Result<Vec<OwnedObjectPath>>;

    /// Renamed: the `State` property already owns `receive_state_changed`.
    #[zbus(signal, name = "StateChanged")]
    fn device_state_changed(&self, new_state: u32, old_state: u32, reason: u32)
        -> zbus::Result<()>;
}
