//! The TOML files as written, with spans so errors can name the line.

use serde::Deserialize;
use toml::Spanned;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RawFile {
    pub defaults: Option<RawDefaults>,
    #[serde(default)]
    pub bridge: Vec<Spanned<RawBridge>>,
}

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RawDefaults {
    pub stp: Option<bool>,
    pub checks: Option<Vec<Spanned<String>>>,
    pub default_checks: Option<bool>,
    pub guest_check: Option<bool>,
    pub guest_forwarding: Option<Spanned<String>>,
    pub rollback_timeout: Option<Spanned<u32>>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RawBridge {
    pub name: Spanned<String>,
    pub mode: Option<Spanned<String>>,
    pub uplink: Option<Spanned<String>>,
    pub stp: Option<bool>,
    pub forward_delay: Option<Spanned<u32>>,
    pub hello_time: Option<Spanned<u32>>,
    pub max_age: Option<Spanned<u32>>,
    pub stp_priority: Option<Spanned<u32>>,
    pub multicast_snooping: Option<bool>,
    pub mtu: Option<Spanned<u32>>,
    pub mac: Option<Spanned<String>>,
    pub checks: Option<Vec<Spanned<String>>>,
    pub default_checks: Option<bool>,
    pub guest_check: Option<bool>,
    pub adopt: Option<bool>,
    pub state: Option<Spanned<String>>,
    pub guest_forwarding: Option<Spanned<String>>,
    pub rollback_timeout: Option<Spanned<u32>>,
    pub address: Option<Spanned<String>>,
    pub dhcp_range: Option<Spanned<String>>,
    pub dhcp: Option<bool>,
    pub libvirt_network: Option<Spanned<String>>,
    pub qemu_bridge_helper: Option<bool>,
}
