//! `org.freedesktop.NetworkManager.DnsManager`: what NetworkManager hands to
//! the resolver (1.6).

use zbus::proxy;

use super::DictList;

#[proxy(
    interface = "org.freedesktop.NetworkManager.DnsManager",
    default_service = "org.freedesktop.NetworkManager",
    default_path = "/org/freedesktop/NetworkManager/DnsManager"
)]
pub trait DnsManager {
    /// `dns` processing mode (`default`, `systemd-resolved`, `none`, ...).
    #[zbus(property)]
    fn mode(&self) -> zbus::Result<String>;

    /// One entry per DNS configuration: `nameservers` (as), `domains` (as),
    /// `interface` (s), `priority` (i), `vpn` (b).
    #[zbus(property)]
    fn configuration(&self) -> zbus::Result<DictList>;
}
