//! What a device runs with beyond its addresses: its DHCP leases, the metric
//! of its default routes, and the DNS configuration NetworkManager hands to
//! the resolver — what a bridge must take over from its uplink, and what the
//! identity proof compares before and after a change.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;

use netbridge_dbus::proxy::dhcp4_config::Dhcp4ConfigProxy;
use netbridge_dbus::proxy::dhcp6_config::Dhcp6ConfigProxy;
use netbridge_dbus::proxy::dns_manager::DnsManagerProxy;
use netbridge_dbus::proxy::ip4_config::Ip4ConfigProxy;
use netbridge_dbus::proxy::ip6_config::Ip6ConfigProxy;
use netbridge_dbus::proxy::DictList;
use netbridge_dbus::Settings;
use serde::Serialize;
use zbus::proxy::CacheProperties;
use zbus::zvariant::{ObjectPath, OwnedValue};

use super::read::optional_path;
use super::{CallContext, Nm, NmError};

/// An IP family.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    V4,
    V6,
}

/// The options of a DHCP lease (`ip_address`, `dhcp_client_identifier`,
/// `iaid`, ...), every value a string; empty without a lease.
pub type LeaseOptions = BTreeMap<String, String>;

/// The metric of a device's default route in each family, as the kernel has it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct DefaultMetrics {
    pub ipv4: Option<u32>,
    pub ipv6: Option<u32>,
}

/// One DNS configuration NetworkManager hands to the resolver.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct DnsEntry {
    pub interface: String,
    pub nameservers: Vec<String>,
    pub domains: Vec<String>,
    pub priority: i32,
}

impl Nm {
    /// The options of the device's current DHCP lease in `family`.
    pub async fn lease_options(
        &self,
        device: &ObjectPath<'_>,
        family: Family,
    ) -> Result<LeaseOptions, NmError> {
        let dev = self.device_proxy(device).await?;
        let options = match family {
            Family::V4 => {
                let path = dev.dhcp4_config().await.call("reading Dhcp4Config")?;
                let Some(path) = optional_path(path) else {
                    return Ok(LeaseOptions::new());
                };
                Dhcp4ConfigProxy::builder(self.connection())
                    .path(path)
                    .call("DHCP4Config proxy")?
                    .cache_properties(CacheProperties::No)
                    .build()
                    .await
                    .call("DHCP4Config proxy")?
                    .options()
                    .await
                    .call("reading DHCP4Config.Options")?
            }
            Family::V6 => {
                let path = dev.dhcp6_config().await.call("reading Dhcp6Config")?;
                let Some(path) = optional_path(path) else {
                    return Ok(LeaseOptions::new());
                };
                Dhcp6ConfigProxy::builder(self.connection())
                    .path(path)
                    .call("DHCP6Config proxy")?
                    .cache_properties(CacheProperties::No)
                    .build()
                    .await
                    .call("DHCP6Config proxy")?
                    .options()
                    .await
                    .call("reading DHCP6Config.Options")?
            }
        };
        Ok(strings(options))
    }

    /// The metrics of the device's default routes (the kernel's, which
    /// NetworkManager chose when the profile left `route-metric` at -1).
    pub async fn default_metrics(
        &self,
        device: &ObjectPath<'_>,
    ) -> Result<DefaultMetrics, NmError> {
        let dev = self.device_proxy(device).await?;
        let ip4 = optional_path(dev.ip4_config().await.call("reading Ip4Config")?);
        let ip6 = optional_path(dev.ip6_config().await.call("reading Ip6Config")?);
        let ipv4 = match ip4 {
            Some(path) => default_metric(
                &Ip4ConfigProxy::builder(self.connection())
                    .path(path)
                    .call("IP4Config proxy")?
                    .cache_properties(CacheProperties::No)
                    .build()
                    .await
                    .call("IP4Config proxy")?
                    .route_data()
                    .await
                    .call("reading IP4Config.RouteData")?,
            ),
            None => None,
        };
        let ipv6 = match ip6 {
            Some(path) => default_metric(
                &Ip6ConfigProxy::builder(self.connection())
                    .path(path)
                    .call("IP6Config proxy")?
                    .cache_properties(CacheProperties::No)
                    .build()
                    .await
                    .call("IP6Config proxy")?
                    .route_data()
                    .await
                    .call("reading IP6Config.RouteData")?,
            ),
            None => None,
        };
        Ok(DefaultMetrics { ipv4, ipv6 })
    }

    /// What NetworkManager hands to the resolver, sorted so two reads compare.
    pub async fn dns_configuration(&self) -> Result<Vec<DnsEntry>, NmError> {
        let proxy = DnsManagerProxy::builder(self.connection())
            .cache_properties(CacheProperties::No)
            .build()
            .await
            .call("DnsManager proxy")?;
        let list = proxy
            .configuration()
            .await
            .call("reading DnsManager.Configuration")?;
        let mut entries = dns_entries(&list);
        entries.sort();
        Ok(entries)
    }

    /// The settings a device runs with and their version, for a Reapply
    /// that must not race another change.
    pub async fn applied_versioned(
        &self,
        device: &ObjectPath<'_>,
    ) -> Result<(Settings, u64), NmError> {
        let proxy = self.device_proxy(device).await?;
        let (out, version) = proxy
            .get_applied_connection(0)
            .await
            .call("GetAppliedConnection")?;
        Ok((Settings::from(out), version))
    }

    /// Changes what a device runs with, in place and in memory only: its
    /// profile (and so the disk) stays as it is.
    pub async fn reapply_settings(
        &self,
        device: &ObjectPath<'_>,
        settings: &Settings,
        version: u64,
    ) -> Result<(), NmError> {
        let proxy = self.device_proxy(device).await?;
        proxy
            .reapply(settings.to_dbus(), version, 0)
            .await
            .call("Device.Reapply")
    }
}

fn strings(options: HashMap<String, OwnedValue>) -> LeaseOptions {
    options
        .into_iter()
        .filter_map(|(k, v)| v.downcast_ref::<&str>().ok().map(|s| (k, s.to_owned())))
        .collect()
}

fn entry_str<'a>(entry: &'a HashMap<String, OwnedValue>, key: &str) -> Option<&'a str> {
    entry.get(key).and_then(|v| v.downcast_ref::<&str>().ok())
}

/// The lowest metric among the default routes (`dest` 0.0.0.0 or ::, prefix 0).
fn default_metric(routes: &DictList) -> Option<u32> {
    routes
        .iter()
        .filter(|r| {
            let prefix = r.get("prefix").and_then(|v| v.downcast_ref::<u32>().ok());
            let dest = entry_str(r, "dest").and_then(|d| d.parse::<IpAddr>().ok());
            prefix == Some(0) && dest.is_some_and(|d| d.is_unspecified())
        })
        .filter_map(|r| r.get("metric").and_then(|v| v.downcast_ref::<u32>().ok()))
        .min()
}

fn dns_entries(list: &DictList) -> Vec<DnsEntry> {
    list.iter()
        .filter(|e| {
            !e.get("vpn")
                .and_then(|v| v.downcast_ref::<bool>().ok())
                .unwrap_or(false)
        })
        .map(|e| DnsEntry {
            interface: entry_str(e, "interface").unwrap_or_default().to_owned(),
            nameservers: entry_strings(e, "nameservers"),
            domains: entry_strings(e, "domains"),
            priority: e
                .get("priority")
                .and_then(|v| v.downcast_ref::<i32>().ok())
                .unwrap_or(0),
        })
        .collect()
}

fn entry_strings(entry: &HashMap<String, OwnedValue>, key: &str) -> Vec<String> {
    entry
        .get(key)
        .and_then(|v| Vec::<String>::try_from(v.clone()).ok())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use zbus::zvariant::Value;

    fn entry(pairs: Vec<(&str, Value<'static>)>) -> HashMap<String, OwnedValue> {
        pairs
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v.try_to_owned().unwrap()))
            .collect()
    }

    #[test]
    fn the_default_route_metric_is_the_lowest_among_default_routes() {
        let routes = vec![
            entry(vec![
                ("dest", Value::from("172.25.250.0")),
                ("prefix", Value::from(24u32)),
                ("metric", Value::from(5u32)),
            ]),
            entry(vec![
                ("dest", Value::from("0.0.0.0")),
                ("prefix", Value::from(0u32)),
                ("next-hop", Value::from("172.25.250.254")),
                ("metric", Value::from(100u32)),
            ]),
        ];
        assert_eq!(default_metric(&routes), Some(100));
        assert_eq!(default_metric(&routes[..1].to_vec()), None);
    }

    #[test]
    fn dns_entries_skip_vpns_and_keep_servers_domains_priority() {
        let list = vec![
            entry(vec![
                ("interface", Value::from("ens32")),
                ("nameservers", Value::from(vec!["172.25.250.254"])),
                ("domains", Value::from(vec!["lab"])),
                ("priority", Value::from(100i32)),
            ]),
            entry(vec![
                ("interface", Value::from("tun0")),
                ("vpn", Value::from(true)),
            ]),
        ];
        assert_eq!(
            dns_entries(&list),
            vec![DnsEntry {
                interface: "ens32".into(),
                nameservers: vec!["172.25.250.254".into()],
                domains: vec!["lab".into()],
                priority: 100,
            }]
        );
    }
}
