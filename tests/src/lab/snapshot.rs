//! What a host's network configuration looks like, minus what changes on
//! its own (counters, indexes, carrier, lifetimes), so that two snapshots
//! around an operation that should change nothing compare equal.

use std::collections::BTreeMap;
use std::path::Path;

use serde_json::Value;

use super::netns::ip_json;
use super::LabError;

/// The host namespace's profiles, links, addresses and IPv4 routes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostSnapshot {
    /// Keyfile path relative to the lab dir (`conn/x.nmconnection` on disk,
    /// `run/system-connections/x.nmconnection` in memory) → its contents
    /// without `timestamp=` lines.
    pub profiles: BTreeMap<String, String>,
    /// Links by name.
    pub links: BTreeMap<String, LinkSnapshot>,
    /// Link name → its addresses (`a.b.c.d/len`, IPv6 without link-local),
    /// sorted; links without addresses are left out.
    pub addresses: BTreeMap<String, Vec<String>>,
    /// IPv4 routes of the main table, sorted.
    pub routes: Vec<RouteSnapshot>,
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct LinkSnapshot {
    /// `info_kind` (bridge, veth, ...); None for plain devices such as lo.
    pub kind: Option<String>,
    /// The bridge (or bond, ...) the link is a port of.
    pub master: Option<String>,
    pub mac: Option<String>,
    pub mtu: Option<u64>,
    /// Administratively up (the `UP` flag, not the carrier).
    pub up: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct RouteSnapshot {
    /// `default` or `a.b.c.d/len`.
    pub dst: String,
    pub gateway: Option<String>,
    pub dev: Option<String>,
    pub protocol: Option<String>,
    pub prefsrc: Option<String>,
    pub metric: Option<u64>,
}

impl HostSnapshot {
    /// Takes a snapshot of namespace `ns` whose NM keeps its keyfiles under
    /// `lab_dir`.
    pub(crate) fn take(ns: &str, lab_dir: &Path) -> Result<Self, LabError> {
        Ok(HostSnapshot {
            profiles: read_profiles(lab_dir)?,
            links: parse_links(&ip_json(ns, &["-d", "link", "show"])?),
            addresses: parse_addresses(&ip_json(ns, &["addr", "show"])?),
            routes: parse_routes(&ip_json(ns, &["-4", "route", "show"])?),
        })
    }
}

const PROFILE_DIRS: [&str; 2] = ["conn", "run/system-connections"];

fn read_profiles(lab_dir: &Path) -> Result<BTreeMap<String, String>, LabError> {
    let mut profiles = BTreeMap::new();
    for sub in PROFILE_DIRS {
        let dir = lab_dir.join(sub);
        let entries = match std::fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(LabError::io("cannot list profiles", dir, e)),
        };
        for entry in entries {
            let path = entry
                .map_err(|e| LabError::io("cannot list profiles", &dir, e))?
                .path();
            // NM writes a keyfile through a temporary `x.nmconnection.XXXXXX`
            // renamed over it: caught mid-write, that is not a profile.
            if path.extension().is_none_or(|e| e != "nmconnection") {
                continue;
            }
            let text = std::fs::read(&path)
                .map_err(|e| LabError::io("cannot read a profile", &path, e))?;
            let name = format!(
                "{sub}/{}",
                path.file_name().unwrap_or_default().to_string_lossy()
            );
            profiles.insert(name, normalise_keyfile(&String::from_utf8_lossy(&text)));
        }
    }
    Ok(profiles)
}

/// Drops what changes without a configuration change: `connection.timestamp`
/// (NM 1.42 keeps timestamps in /var/lib/NetworkManager/timestamps, but a
/// profile written by another tool may carry one), and the random UUID of
/// profiles NM generates for links it did not configure (`lo` gets a new
/// one on every boot).
fn normalise_keyfile(text: &str) -> String {
    let generated = text.lines().any(|line| line == "nm-generated=true");
    text.lines()
        .filter(|line| !line.starts_with("timestamp="))
        .map(|line| match line.strip_prefix("uuid=") {
            Some(_) if generated => "uuid=(generated)\n".to_owned(),
            _ => format!("{line}\n"),
        })
        .collect()
}

fn parse_links(json: &Value) -> BTreeMap<String, LinkSnapshot> {
    entries(json)
        .filter_map(|link| {
            let name = str_field(link, "ifname")?;
            Some((name, link_snapshot(link)))
        })
        .collect()
}

fn link_snapshot(link: &Value) -> LinkSnapshot {
    let flags = link["flags"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default();
    LinkSnapshot {
        kind: str_field(&link["linkinfo"], "info_kind"),
        master: str_field(link, "master"),
        mac: str_field(link, "address"),
        mtu: link["mtu"].as_u64(),
        up: flags.iter().any(|f| f == "UP"),
    }
}

fn parse_addresses(json: &Value) -> BTreeMap<String, Vec<String>> {
    entries(json)
        .filter_map(|link| {
            let name = str_field(link, "ifname")?;
            let mut addrs: Vec<String> = link["addr_info"]
                .as_array()
                .map(Vec::as_slice)
                .unwrap_or_default()
                .iter()
                .filter(|a| is_stable_address(a))
                .filter_map(|a| {
                    Some(format!(
                        "{}/{}",
                        str_field(a, "local")?,
                        a["prefixlen"].as_u64()?
                    ))
                })
                .collect();
            addrs.sort();
            (!addrs.is_empty()).then_some((name, addrs))
        })
        .collect()
}

/// IPv4 addresses and IPv6 addresses beyond the link-local ones the kernel
/// adds by itself to every link that comes up.
fn is_stable_address(addr: &Value) -> bool {
    match addr["family"].as_str() {
        Some("inet") => true,
        Some("inet6") => addr["scope"].as_str() != Some("link"),
        _ => false,
    }
}

fn parse_routes(json: &Value) -> Vec<RouteSnapshot> {
    let mut routes: Vec<RouteSnapshot> = entries(json)
        .filter_map(|route| {
            Some(RouteSnapshot {
                dst: str_field(route, "dst")?,
                gateway: str_field(route, "gateway"),
                dev: str_field(route, "dev"),
                protocol: str_field(route, "protocol"),
                prefsrc: str_field(route, "prefsrc"),
                metric: route["metric"].as_u64(),
            })
        })
        .collect();
    routes.sort();
    routes
}

fn entries(json: &Value) -> impl Iterator<Item = &Value> {
    json.as_array()
        .map(Vec::as_slice)
        .unwrap_or_default()
        .iter()
}

fn str_field(value: &Value, key: &str) -> Option<String> {
    value.get(key)?.as_str().map(str::to_owned)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn links_keep_kind_master_mac_and_admin_state_only() {
        let json = json!([
            {"ifindex": 3, "ifname": "ens32", "flags": ["BROADCAST", "UP", "LOWER_UP"],
             "mtu": 1500, "master": "br0", "operstate": "UP", "address": "aa:bb:cc:dd:ee:ff",
             "linkinfo": {"info_kind": "veth", "info_slave_kind": "bridge"},
             "stats64": {"rx": {"bytes": 1}}},
            {"ifindex": 1, "ifname": "lo", "flags": ["LOOPBACK"], "mtu": 65536}
        ]);
        let links = parse_links(&json);
        assert_eq!(
            links["ens32"],
            LinkSnapshot {
                kind: Some("veth".into()),
                master: Some("br0".into()),
                mac: Some("aa:bb:cc:dd:ee:ff".into()),
                mtu: Some(1500),
                up: true,
            }
        );
        assert!(!links["lo"].up);
        assert_eq!(links["lo"].kind, None);
    }

    #[test]
    fn addresses_skip_ipv6_link_local_and_lifetimes() {
        let json = json!([{"ifname": "ens32", "addr_info": [
            {"family": "inet6", "local": "fe80::1", "prefixlen": 64, "scope": "link"},
            {"family": "inet", "local": "172.25.250.120", "prefixlen": 24,
             "valid_life_time": 43190, "preferred_life_time": 43190, "dynamic": true},
            {"family": "inet6", "local": "2001:db8::10", "prefixlen": 64, "scope": "global"}
        ]}, {"ifname": "lo", "addr_info": []}]);
        let addrs = parse_addresses(&json);
        assert_eq!(addrs["ens32"], vec!["172.25.250.120/24", "2001:db8::10/64"]);
        assert!(!addrs.contains_key("lo"));
    }

    #[test]
    fn routes_drop_flags_and_sort() {
        let json = json!([
            {"dst": "default", "gateway": "172.25.250.254", "dev": "br0", "flags": ["linkdown"]},
            {"dst": "172.25.250.0/24", "dev": "br0", "protocol": "kernel", "scope": "link",
             "prefsrc": "172.25.250.10", "metric": 425, "flags": []}
        ]);
        let routes = parse_routes(&json);
        assert_eq!(routes[0].dst, "172.25.250.0/24");
        assert_eq!(routes[0].metric, Some(425));
        assert_eq!(routes[1].gateway.as_deref(), Some("172.25.250.254"));
    }

    #[test]
    fn generated_profiles_lose_their_random_uuid() {
        let text = "[connection]\nid=lo\nuuid=1184582b\n[.nmmeta]\nnm-generated=true\n";
        assert_eq!(
            normalise_keyfile(text),
            "[connection]\nid=lo\nuuid=(generated)\n[.nmmeta]\nnm-generated=true\n"
        );
        let own = "[connection]\nid=a\nuuid=1184582b\n";
        assert_eq!(normalise_keyfile(own), own);
    }

    #[test]
    fn keyfile_timestamps_are_dropped() {
        let text = "[connection]\nid=a\ntimestamp=1700000000\nuuid=u\n";
        assert_eq!(normalise_keyfile(text), "[connection]\nid=a\nuuid=u\n");
    }
}
