//! `org.freedesktop.NetworkManager.IP4Config`: a device's runtime IPv4 state.

use zbus::proxy;

use super::DictList;

#[proxy(
    interface = "org.freedesktop.NetworkManager.IP4Config",
    default_service = "org.freedesktop.NetworkManager"
)]
pub trait Ip4Config {
    /// Entries with `address` (s) and `prefix` (u).
    #[zbus(property)]
    fn address_data(&self) -> zbus::Result<DictList>;

    #[zbus(property)]
    fn gateway(&self) -> zbus::Result<String>;

    /// Entries with `dest`, `prefix`, optional `next-hop` and `metric`.
    #[zbus(property)]
    fn route_data(&self) -> zbus::Result<DictList>;

    /// Entries with `address` (s) (1.14).
    #[zbus(property)]
    fn nameserver_data(&self) -> zbus::Result<DictList>;

    #[zbus(property)]
    fn searches(&self) -> zbus::Result<Vec<String>>;

    #[zbus(property)]
    fn domains(&self) -> zbus::Result<Vec<String>>;
}
