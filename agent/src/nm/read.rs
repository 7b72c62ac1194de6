//! Typed snapshots of devices, active connections and profiles.

use std::net::IpAddr;

use ipnetwork::IpNetwork;
use netbridge_dbus::flags::{ActivationStateFlags, SettingsConnectionFlags};
use netbridge_dbus::proxy::controller::{BondProxy, BridgeProxy, TeamProxy};
use netbridge_dbus::proxy::device::DeviceProxy;
use netbridge_dbus::proxy::ip4_config::Ip4ConfigProxy;
use netbridge_dbus::proxy::ip6_config::Ip6ConfigProxy;
use netbridge_dbus::proxy::wired::WiredProxy;
use netbridge_dbus::proxy::DictList;
use netbridge_dbus::settings::{dict_str, dict_u32, names};
use netbridge_dbus::state::{ActiveConnectionState, DeviceState, DeviceType};
use netbridge_dbus::Settings;
use serde::Serialize;
use zbus::proxy::CacheProperties;
use zbus::zvariant::{ObjectPath, OwnedObjectPath};

use super::{CallContext, Nm, NmError, NmVersion};

/// The first NetworkManager with `Device.Ports`.
const PORTS_PROPERTY: NmVersion = NmVersion(1, 34, 0);

/// A device's runtime IP state (what the kernel has, as NetworkManager reports it).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct IpRuntime {
    pub addresses: Vec<IpNetwork>,
    pub gateway: Option<IpAddr>,
    pub dns: Vec<IpAddr>,
    pub searches: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct DeviceInfo {
    #[serde(skip)]
    pub path: OwnedObjectPath,
    pub interface: String,
    /// Shown as nmcli shows it (a veth is `ethernet`).
    #[serde(rename = "type", serialize_with = "nmcli_word")]
    pub device_type: DeviceType,
    pub state: DeviceState,
    pub managed: bool,
    pub mac: String,
    /// Empty for devices without one (veth); `null` in `--json`.
    #[serde(serialize_with = "empty_as_null")]
    pub permanent_mac: String,
    pub mtu: u32,
    #[serde(skip)]
    pub active_connection: Option<OwnedObjectPath>,
    #[serde(skip)]
    pub port_paths: Vec<OwnedObjectPath>,
    pub ipv4: IpRuntime,
    pub ipv6: IpRuntime,
    /// A DHCPv4 lease is in place.
    pub dhcp4: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct ActiveInfo {
    #[serde(skip)]
    pub path: OwnedObjectPath,
    #[serde(skip)]
    pub profile: OwnedObjectPath,
    pub id: String,
    pub uuid: String,
    #[serde(rename = "type")]
    pub connection_type: String,
    pub state: ActiveConnectionState,
    #[serde(skip)]
    pub flags: ActivationStateFlags,
}

fn nmcli_word<S: serde::Serializer>(t: &DeviceType, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(t.nmcli_word())
}

impl DeviceInfo {
    /// The device among `devices` that this one is a port of.
    pub fn controller<'a>(&self, devices: &'a [DeviceInfo]) -> Option<&'a DeviceInfo> {
        devices.iter().find(|d| d.port_paths.contains(&self.path))
    }

    /// The devices among `devices` that are ports of this one.
    pub fn ports<'a>(&'a self, devices: &'a [DeviceInfo]) -> impl Iterator<Item = &'a DeviceInfo> {
        devices.iter().filter(|d| self.port_paths.contains(&d.path))
    }
}

/// The identity of a profile, enough to find the ones that compete for a device.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ProfileInfo {
    #[serde(skip)]
    pub path: OwnedObjectPath,
    pub uuid: String,
    pub id: String,
    #[serde(rename = "type")]
    pub connection_type: String,
    pub interface_name: Option<String>,
    pub autoconnect: bool,
    pub autoconnect_priority: i32,
    /// The controller (`connection.master`): an interface name or a UUID.
    pub controller: Option<String>,
    pub in_memory_only: bool,
    pub filename: String,
}

pub(super) fn optional_path(path: OwnedObjectPath) -> Option<OwnedObjectPath> {
    (path.as_str() != netbridge_dbus::NULL_PATH).then_some(path)
}

fn networks(list: &DictList) -> Vec<IpNetwork> {
    list.iter()
        .filter_map(|entry| {
            let entry = entry.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
            let addr: IpAddr = dict_str(&entry, "address")?.parse().ok()?;
            let prefix = u8::try_from(dict_u32(&entry, "prefix")?).ok()?;
            IpNetwork::new(addr, prefix).ok()
        })
        .collect()
}

fn gateway(text: String) -> Option<IpAddr> {
    text.parse().ok()
}

impl Nm {
    pub async fn device_info(&self, path: &ObjectPath<'_>) -> Result<DeviceInfo, NmError> {
        let dev = self.device_proxy(path).await?;
        let interface = dev.interface().await.call("reading Device.Interface")?;
        let ctx = |what: &str| format!("reading {what} of {interface}");
        let ip4 = optional_path(dev.ip4_config().await.call(&ctx("Ip4Config"))?);
        let ip6 = optional_path(dev.ip6_config().await.call(&ctx("Ip6Config"))?);
        let dhcp4 = optional_path(dev.dhcp4_config().await.call(&ctx("Dhcp4Config"))?);
        let device_type = DeviceType::from(dev.device_type().await.call(&ctx("DeviceType"))?);
        Ok(DeviceInfo {
            path: path.to_owned().into(),
            device_type,
            state: DeviceState::from(dev.state().await.call(&ctx("State"))?),
            managed: dev.managed().await.call(&ctx("Managed"))?,
            mac: dev.hw_address().await.call(&ctx("HwAddress"))?,
            permanent_mac: self.permanent_mac(path).await,
            mtu: dev.mtu().await.call(&ctx("Mtu"))?,
            active_connection: optional_path(
                dev.active_connection()
                    .await
                    .call(&ctx("ActiveConnection"))?,
            ),
            port_paths: self.port_paths(&dev, device_type, &ctx).await?,
            ipv4: self.ip4_runtime(ip4).await?,
            ipv6: self.ip6_runtime(ip6).await?,
            dhcp4: dhcp4.is_some(),
            interface,
        })
    }

    /// The device's ports: `Device.Ports` from 1.34; before it, `Slaves` of
    /// a bridge's, bond's or team's own interface (other devices have none).
    async fn port_paths(
        &self,
        dev: &DeviceProxy<'_>,
        device_type: DeviceType,
        ctx: &impl Fn(&str) -> String,
    ) -> Result<Vec<OwnedObjectPath>, NmError> {
        if self.version() >= PORTS_PROPERTY {
            return dev.ports().await.call(&ctx("Ports"));
        }
        let path = dev.inner().path().to_owned();
        let slaves = match device_type {
            DeviceType::Bridge => self.proxy::<BridgeProxy>(path).await?.slaves().await,
            DeviceType::Bond => self.proxy::<BondProxy>(path).await?.slaves().await,
            DeviceType::Team => self.proxy::<TeamProxy>(path).await?.slaves().await,
            _ => return Ok(Vec::new()),
        };
        slaves.call(&ctx("Slaves"))
    }

    /// An uncached proxy of type `P` on the object at `path`.
    async fn proxy<P>(&self, path: ObjectPath<'static>) -> Result<P, NmError>
    where
        P: From<zbus::Proxy<'static>> + zbus::proxy::Defaults,
    {
        let what = "bridge, bond or team proxy";
        zbus::proxy::Builder::<P>::new(self.connection())
            .path(path)
            .call(what)?
            .cache_properties(CacheProperties::No)
            .build()
            .await
            .call(what)
    }

    /// Only Ethernet-like devices have a permanent MAC; others read as empty.
    async fn permanent_mac(&self, path: &ObjectPath<'_>) -> String {
        let proxy = match WiredProxy::builder(self.connection()).path(path.to_owned()) {
            Ok(builder) => builder.cache_properties(CacheProperties::No).build().await,
            Err(e) => Err(e),
        };
        match proxy {
            Ok(proxy) => proxy.perm_hw_address().await.unwrap_or_default(),
            Err(_) => String::new(),
        }
    }

    async fn ip4_runtime(&self, path: Option<OwnedObjectPath>) -> Result<IpRuntime, NmError> {
        let Some(path) = path else {
            return Ok(IpRuntime::default());
        };
        let ip = Ip4ConfigProxy::builder(self.connection())
            .path(path)
            .call("IP4Config proxy")?
            .cache_properties(CacheProperties::No)
            .build()
            .await
            .call("IP4Config proxy")?;
        let dns = ip
            .nameserver_data()
            .await
            .call("reading IP4Config.NameserverData")?;
        Ok(IpRuntime {
            addresses: networks(
                &ip.address_data()
                    .await
                    .call("reading IP4Config.AddressData")?,
            ),
            gateway: gateway(ip.gateway().await.call("reading IP4Config.Gateway")?),
            dns: networks_dns(&dns),
            searches: ip.searches().await.call("reading IP4Config.Searches")?,
        })
    }

    async fn ip6_runtime(&self, path: Option<OwnedObjectPath>) -> Result<IpRuntime, NmError> {
        let Some(path) = path else {
            return Ok(IpRuntime::default());
        };
        let ip = Ip6ConfigProxy::builder(self.connection())
            .path(path)
            .call("IP6Config proxy")?
            .cache_properties(CacheProperties::No)
            .build()
            .await
            .call("IP6Config proxy")?;
        let dns = ip
            .nameservers()
            .await
            .call("reading IP6Config.Nameservers")?;
        Ok(IpRuntime {
            addresses: networks(
                &ip.address_data()
                    .await
                    .call("reading IP6Config.AddressData")?,
            ),
            gateway: gateway(ip.gateway().await.call("reading IP6Config.Gateway")?),
            dns: dns
                .iter()
                .filter_map(|b| netbridge_dbus::settings::ipv6_from_nm(b).map(IpAddr::V6))
                .collect(),
            searches: ip.searches().await.call("reading IP6Config.Searches")?,
        })
    }

    pub async fn devices(&self) -> Result<Vec<DeviceInfo>, NmError> {
        let mut devices = Vec::new();
        for path in self.device_paths().await? {
            match self.device_info(&path).await {
                Ok(info) => devices.push(info),
                // A device that vanished between the listing and the read is simply gone.
                Err(e) if e.is_gone() => {}
                Err(e) => return Err(e),
            }
        }
        Ok(devices)
    }

    pub async fn active_info(&self, path: &ObjectPath<'_>) -> Result<ActiveInfo, NmError> {
        let ac = self.active_proxy(path).await?;
        Ok(ActiveInfo {
            path: path.to_owned().into(),
            profile: ac.connection().await.call("reading Active.Connection")?,
            id: ac.id().await.call("reading Active.Id")?,
            uuid: ac.uuid().await.call("reading Active.Uuid")?,
            connection_type: ac.connection_type().await.call("reading Active.Type")?,
            state: ActiveConnectionState::from(ac.state().await.call("reading Active.State")?),
            flags: ActivationStateFlags::from_bits_retain(
                ac.state_flags().await.call("reading Active.StateFlags")?,
            ),
        })
    }

    pub async fn profile_info(&self, path: &ObjectPath<'_>) -> Result<ProfileInfo, NmError> {
        let settings = self.profile_settings(path).await?;
        let proxy = self.profile_proxy(path).await?;
        let flags = SettingsConnectionFlags::from_bits_retain(
            proxy
                .flags()
                .await
                .call("reading Settings.Connection.Flags")?,
        );
        let filename = proxy
            .filename()
            .await
            .call("reading Settings.Connection.Filename")?;
        profile_identity(path, &settings, flags, filename)
    }

    pub async fn profiles(&self) -> Result<Vec<ProfileInfo>, NmError> {
        let mut profiles = Vec::new();
        for path in self.profile_paths().await? {
            match self.profile_info(&path).await {
                Ok(info) => profiles.push(info),
                Err(e) if e.is_gone() => {}
                Err(e) => return Err(e),
            }
        }
        Ok(profiles)
    }
}

fn networks_dns(list: &DictList) -> Vec<IpAddr> {
    list.iter()
        .filter_map(|entry| {
            entry
                .get("address")?
                .downcast_ref::<&str>()
                .ok()?
                .parse()
                .ok()
        })
        .collect()
}

fn profile_identity(
    path: &ObjectPath<'_>,
    settings: &Settings,
    flags: SettingsConnectionFlags,
    filename: String,
) -> Result<ProfileInfo, NmError> {
    let c = names::CONNECTION;
    Ok(ProfileInfo {
        path: path.to_owned().into(),
        uuid: settings.str(c, "uuid")?.unwrap_or_default().to_owned(),
        id: settings.str(c, "id")?.unwrap_or_default().to_owned(),
        connection_type: settings.str(c, "type")?.unwrap_or_default().to_owned(),
        interface_name: settings.str(c, "interface-name")?.map(str::to_owned),
        autoconnect: settings.bool(c, "autoconnect")?.unwrap_or(true),
        autoconnect_priority: settings.i32(c, "autoconnect-priority")?.unwrap_or(0),
        controller: settings.str(c, "master")?.map(str::to_owned),
        in_memory_only: flags.contains(SettingsConnectionFlags::UNSAVED)
            || filename.starts_with("/run/"),
        filename,
    })
}

/// Absent is `null` in every `--json` document, never `""`.
fn empty_as_null<S: serde::Serializer>(text: &str, serializer: S) -> Result<S::Ok, S::Error> {
    if text.is_empty() {
        serializer.serialize_none()
    } else {
        serializer.serialize_str(text)
    }
}
