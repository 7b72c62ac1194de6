//! `org.freedesktop.NetworkManager.DHCP6Config`: the options of a DHCPv6 lease.

use std::collections::HashMap;
use zbus::proxy;
use zbus::zvariant::OwnedValue;

#[proxy(
    interface = "org.freedesktop.NetworkManager.DHCP6Config",
    default_service = "org.freedesktop.NetworkManager"
)]
pub trait Dhcp6Config {
    /// Every value is a string (`iaid`, `dhcp6_client_id` — the DUID —, `ip6_address`, ...).
    #[zbus(property)]
    fn options(&self) -> zbus::Result<HashMap<String, OwnedValue>>;
}
