//! `org.freedesktop.systemd1.Manager`: only what netbridge asks of systemd,
//! starting a transient unit (what `systemd-run` does).

use zbus::proxy;
use zbus::zvariant::{OwnedObjectPath, Value};

#[proxy(
    interface = "org.freedesktop.systemd1.Manager",
    default_service = "org.freedesktop.systemd1",
    default_path = "/org/freedesktop/systemd1"
)]
pub trait SystemdManager {
    /// Starts a unit made of `properties` (`a(sv)`); `aux` (`a(sa(sv))`)
    /// holds further units to create with it. Returns the job.
    fn start_transient_unit(
        &self,
        name: &str,
        mode: &str,
        properties: &[(&str, Value<'_>)],
        aux: &[(&str, &[(&str, Value<'_>)])],
    ) -> zbus::Result<OwnedObjectPath>;
}
