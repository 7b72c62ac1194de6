//! Typed zbus proxies, one module per NetworkManager interface (and the one
//! systemd call netbridge makes, in `systemd`): several
//! interfaces share member names (`StateChanged`, `State`), and the proxy
//! macro generates module-level types named after them.

use std::collections::HashMap;
use zbus::zvariant::{OwnedValue, Value};

pub mod active;
pub mod checkpoint;
pub mod connection;
pub mod controller;
pub mod device;
pub mod dhcp4_config;
pub mod dhcp6_config;
pub mod dns_manager;
pub mod ip4_config;
pub mod ip6_config;
pub mod manager;
pub mod settings;
pub mod systemd;
pub mod wired;

/// A settings dictionary (`a{sa{sv}}`) as sent to NetworkManager.
pub type SettingsIn<'a> = HashMap<&'a str, HashMap<&'a str, Value<'a>>>;
/// A settings dictionary (`a{sa{sv}}`) as received from NetworkManager.
pub type SettingsOut = HashMap<String, HashMap<String, OwnedValue>>;
/// A list of dictionaries (`aa{sv}`), e.g. `AddressData`.
pub type DictList = Vec<HashMap<String, OwnedValue>>;
