//! `org.freedesktop.NetworkManager.Checkpoint`: a snapshot NetworkManager can roll back to.

use zbus::proxy;
use zbus::zvariant::OwnedObjectPath;

#[proxy(
    interface = "org.freedesktop.NetworkManager.Checkpoint",
    default_service = "org.freedesktop.NetworkManager"
)]
pub trait Checkpoint {
    #[zbus(property)]
    fn devices(&self) -> zbus::Result<Vec<OwnedObjectPath>>;

    /// CLOCK_BOOTTIME in milliseconds.
    #[zbus(property)]
    fn created(&self) -> zbus::Result<i64>;

    /// Seconds; 0 means never.
    #[zbus(property)]
    fn rollback_timeout(&self) -> zbus::Result<u32>;
}
