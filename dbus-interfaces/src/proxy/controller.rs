//! `org.freedesktop.NetworkManager.Device.{Bridge,Bond,Team}`: the
//! controllers' own interfaces, for their `Slaves` — the only list of
//! ports before `Device.Ports` (1.34). One module for the three: they share
//! only a property name, which generates no module-level type.

use zbus::proxy;
use zbus::zvariant::OwnedObjectPath;

#[proxy(
    interface = "org.freedesktop.NetworkManager.Device.Bridge",
    default_service = "org.freedesktop.NetworkManager"
)]
pub trait Bridge {
    /// The bridge's ports (deprecated from 1.34 for `Device.Ports`).
    #[zbus(property)]
    fn slaves(&self) -> zbus::Result<Vec<OwnedObjectPath>>;
}

#[proxy(
    interface = "org.freedesktop.NetworkManager.Device.Bond",
    default_service = "org.freedesktop.NetworkManager"
)]
pub trait Bond {
    /// The bond's ports (deprecated from 1.34 for `Device.Ports`).
    #[zbus(property)]
    fn slaves(&self) -> zbus::Result<Vec<OwnedObjectPath>>;
}

#[proxy(
    interface = "org.freedesktop.NetworkManager.Device.Team",
    default_service = "org.freedesktop.NetworkManager"
)]
pub trait Team {
    /// The team's ports (deprecated from 1.34 for `Device.Ports`).
    #[zbus(property)]
    fn slaves(&self) -> zbus::Result<Vec<OwnedObjectPath>>;
}
