//! `org.freedesktop.NetworkManager.IP6Config`: a device's runtime IPv6 state.

use zbus::proxy;

use super::DictList;

#[proxy(
    interface = "org.freedesktop.NetworkManager.IP6Config",
    default_service = "org.freedesktop.NetworkManager"
)]
pub trait Ip6Config {
    #[zbus(property)]
    fn address_data(&self) -> zbus::Result<DictList>;

    #[zbus(property)]
    fn gateway(&self) -> zbus::Result<String>;

    #[zbus(property)]
    fn route_data(&self) -> zbus::Result<DictList>;

    /// 16 raw bytes each (IPv6 has no `NameserverData`).
    #[zbus(property)]
    fn nameservers(&self) -> zbus::Result<Vec<Vec<u8>>>;

    #[zbus(property)]
    fn searches(&self) -> zbus::Result<Vec<String>>;
}
