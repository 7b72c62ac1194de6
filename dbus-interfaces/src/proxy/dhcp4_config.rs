//! `org.freedesktop.NetworkManager.DHCP4Config`: the options of a DHCPv4 lease.

use std::collections::HashMap;
use zbus::proxy;
use zbus::zvariant::OwnedValue;

#[proxy(
    interface = "org.freedesktop.NetworkManager.DHCP4Config",
    default_service = "org.freedesktop.NetworkManager"
)]
pub trait Dhcp4Config {
    /// Every value is a string (`ip_address`, `routers`, `dhcp_lease_time`, ...).
    #[zbus(property)]
    fn options(&self) -> zbus::Result<HashMap<String, OwnedValue>>;
}
