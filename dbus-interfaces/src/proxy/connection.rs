//! `org.freedesktop.NetworkManager.Settings.Connection`: one profile.

use std::collections::HashMap;
use zbus::proxy;
use zbus::zvariant::{OwnedValue, Value};

use super::{SettingsIn, SettingsOut};

#[proxy(
    interface = "org.freedesktop.NetworkManager.Settings.Connection",
    default_service = "org.freedesktop.NetworkManager"
)]
pub trait SettingsConnection {
    /// Never contains secrets.
    fn get_settings(&self) -> zbus::Result<SettingsOut>;

    /// Empty settings keep the current ones (1.12).
    fn update2(
        &self,
        settings: SettingsIn<'_>,
        flags: u32,
        args: HashMap<&str, Value<'_>>,
    ) -> zbus::Result<HashMap<String, OwnedValue>>;

    fn delete(&self) -> zbus::Result<()>;

    #[zbus(property)]
    fn unsaved(&self) -> zbus::Result<bool>;

    /// `SettingsConnectionFlags`.
    #[zbus(property)]
    fn flags(&self) -> zbus::Result<u32>;

    #[zbus(property)]
    fn filename(&self) -> zbus::Result<String>;
}
