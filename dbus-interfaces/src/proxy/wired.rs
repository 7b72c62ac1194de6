//! `org.freedesktop.NetworkManager.Device.Wired`: Ethernet-like devices (also veth).

use zbus::proxy;

#[proxy(
    interface = "org.freedesktop.NetworkManager.Device.Wired",
    default_service = "org.freedesktop.NetworkManager"
)]
pub trait Wired {
    /// Empty for devices without one (veth).
    #[zbus(property)]
    fn perm_hw_address(&self) -> zbus::Result<String>;

    /// Mbit/s, 0 when unknown.
    #[zbus(property)]
    fn speed(&self) -> zbus::Result<u32>;
}
