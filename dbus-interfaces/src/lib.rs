//! The NetworkManager D-Bus contract that netbridge relies on: typed zbus
//! proxies (one module per interface), the flag and state numbers, the error
//! names, and a typed view of connection settings dictionaries (`a{sa{sv}}`).
//!
//! Nothing here decides anything: the NetworkManager logic lives in the
//! `netbridge` crate. Proxies were written from NetworkManager's introspection
//! documentation and checked against NetworkManager 1.42.

pub mod errors;
pub mod flags;
pub mod proxy;
pub mod settings;
pub mod state;

pub use settings::{Settings, SettingsError};

/// The well-known bus name NetworkManager owns on the system bus.
pub const NM_BUS_NAME: &str = "org.freedesktop.NetworkManager";

/// The "null" object path NetworkManager uses for "no object".
pub const NULL_PATH: &str = "/";
