//! The nmcli commands equivalent to each plan, one command per line, for an
//! operator to review (`--dry-run`) or to do the same by hand. They render
//! what netbridge does over D-Bus, in the order it does it, without its
//! safety net (checkpoint, in-memory trial, checks). Property names are the
//! legacy ones (`master`, `slave-type`, `autoconnect-slaves`) where newer
//! ones exist: those work on every NetworkManager netbridge supports (1.30+).

use netbridge_dbus::settings::names;
use netbridge_dbus::Settings;
use zbus::zvariant::Value;

use super::adopt::AdoptPlan;
use super::modify::ModifyPlan;
use super::revert::RevertPlan;
use super::{IpPlan, Plan};

/// The bridge options a modification or an adoption sets, in this order.
const BRIDGE_KEYS: [(&str, &str); 7] = [
    (names::BRIDGE, "stp"),
    (names::BRIDGE, "forward-delay"),
    (names::BRIDGE, "hello-time"),
    (names::BRIDGE, "max-age"),
    (names::BRIDGE, "priority"),
    (names::BRIDGE, "multicast-snooping"),
    (names::ETHERNET, "mtu"),
];

/// The route metrics and DHCP identity a conversion pins on the bridge
/// (see `carry::pin_runtime_identity`).
const PINNED: [(&str, &str); 5] = [
    (names::IPV4, "route-metric"),
    (names::IPV6, "route-metric"),
    (names::IPV4, "dhcp-client-id"),
    (names::IPV6, "dhcp-iaid"),
    (names::IPV6, "dhcp-duid"),
];

/// One command line from its words, each quoted for a POSIX shell if needed.
fn line<S: AsRef<str>>(words: impl IntoIterator<Item = S>) -> String {
    words
        .into_iter()
        .map(|w| {
            let w = w.as_ref();
            shlex::try_quote(w).map_or_else(|_| w.to_owned(), |q| q.into_owned())
        })
        .collect::<Vec<_>>()
        .join(" ")
}

fn yes_no(on: bool) -> &'static str {
    if on {
        "yes"
    } else {
        "no"
    }
}

/// nmcli's short name for a connection type.
fn nmcli_type(kind: &str) -> &str {
    match kind {
        "802-3-ethernet" => "ethernet",
        other => other,
    }
}

/// `nmcli connection add type KIND con-name ID ifname IFACE`, then `rest`.
fn add(kind: &str, id: &str, iface: &str, rest: &[&str]) -> Vec<String> {
    let head = [
        "nmcli",
        "connection",
        "add",
        "type",
        nmcli_type(kind),
        "con-name",
        id,
        "ifname",
        iface,
    ];
    head.iter().chain(rest).map(|w| (*w).to_owned()).collect()
}

/// Whether NetworkManager brings `profile` up by itself (at boot).
fn autoconnect(profile: &str, on: bool) -> String {
    line([
        "nmcli",
        "connection",
        "modify",
        profile,
        "connection.autoconnect",
        yes_no(on),
    ])
}

/// The connection type of a profile netbridge makes from the uplink's.
fn kind_of(profile: &Settings) -> &str {
    profile
        .str(names::CONNECTION, "type")
        .ok()
        .flatten()
        .unwrap_or("802-3-ethernet")
}

/// A setting's value as nmcli takes it: booleans as yes/no, `a{ss}` as
/// `k=v,k=v` (bond.options); `None` for what nmcli cannot set from a word.
fn value_word(value: &Value<'_>) -> Option<String> {
    Some(match value {
        Value::Bool(b) => yes_no(*b).to_owned(),
        Value::U32(n) => n.to_string(),
        Value::I32(n) => n.to_string(),
        Value::U64(n) => n.to_string(),
        Value::I64(n) => n.to_string(),
        Value::Str(s) => s.to_string(),
        Value::Dict(_) => {
            let map =
                std::collections::HashMap::<String, String>::try_from(value.try_clone().ok()?)
                    .ok()?;
            map.into_iter()
                .collect::<std::collections::BTreeMap<_, _>>()
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join(",")
        }
        _ => return None,
    })
}

/// `setting.key value` for the given keys that `s` has.
fn setting_words(s: &Settings, keys: &[(&str, &str)]) -> Vec<String> {
    keys.iter()
        .filter_map(|(setting, key)| {
            let value = value_word(s.raw(setting, key)?)?;
            Some([format!("{setting}.{key}"), value])
        })
        .flatten()
        .collect()
}

/// The keys that define the link of a bond or VLAN (or a veth's peer): a
/// new port profile for such an uplink must recreate them. Named one by
/// one: NetworkManager can hand over deprecated keys nmcli does not take.
fn link_words(s: &Settings, kind: &str) -> Vec<String> {
    let keys: &[(&str, &str)] = match kind {
        "bond" => &[("bond", "options")],
        "vlan" => &[
            ("vlan", "parent"),
            ("vlan", "id"),
            ("vlan", "flags"),
            ("vlan", "protocol"),
        ],
        "veth" => &[("veth", "peer")],
        _ => &[],
    };
    setting_words(s, keys)
}

fn ip_words(family: &str, ip: &IpPlan) -> Vec<String> {
    let mut out = vec![format!("{family}.method"), ip.method.clone()];
    let mut put = |key: &str, items: Vec<String>| {
        if !items.is_empty() {
            out.extend([format!("{family}.{key}"), items.join(",")]);
        }
    };
    if ip.method == "manual" {
        put("addresses", strings(&ip.addresses));
        put("gateway", strings(&ip.gateway));
        put("dns", strings(&ip.dns));
    }
    put("routes", ip.routes.clone());
    put("dns-search", ip.searches.clone());
    out
}

fn strings<'a, T: ToString + 'a>(items: impl IntoIterator<Item = &'a T>) -> Vec<String> {
    items.into_iter().map(ToString::to_string).collect()
}

impl Plan {
    /// The bridge added down, the uplink's port profile, the bridge up —
    /// NetworkManager then attaches the port by itself (autoconnect-slaves).
    /// Not `connection up` of the port: that would detach and re-attach the
    /// uplink a second time. Then both saved to come up at boot, and the
    /// original profile kept for `revert` with autoconnect off.
    pub fn nmcli_commands(&self) -> Vec<String> {
        let mut bridge = add(
            "bridge",
            &self.bridge,
            &self.bridge,
            &["autoconnect", "no", "connection.autoconnect-slaves", "1"],
        );
        // The MTU comes with the MAC below, as the port gets it too.
        bridge.extend(setting_words(&self.bridge_profile, &BRIDGE_KEYS[..6]));
        bridge.extend([
            "802-3-ethernet.cloned-mac-address".to_owned(),
            self.mac.clone(),
        ]);
        if let Some(mtu) = self.mtu {
            bridge.extend(["802-3-ethernet.mtu".to_owned(), mtu.to_string()]);
        }
        bridge.extend(ip_words("ipv4", &self.ipv4));
        bridge.extend(ip_words("ipv6", &self.ipv6));
        // What the uplink ran with and a new bridge would choose anew.
        bridge.extend(setting_words(&self.bridge_profile, &PINNED));
        vec![
            line(bridge),
            self.port_command(),
            line(["nmcli", "connection", "up", &self.bridge]),
            autoconnect(&self.bridge, true),
            autoconnect(&self.original.uuid, false),
        ]
    }

    /// A new port profile of the uplink's own type: a bond or VLAN keeps its
    /// link settings (bond.options, vlan.parent and vlan.id).
    fn port_command(&self) -> String {
        let p = &self.port_profile;
        let kind = kind_of(p);
        let mut words = add(
            kind,
            &self.port_id,
            &self.uplink,
            &[
                "master",
                &self.bridge,
                "slave-type",
                "bridge",
                "autoconnect",
                "yes",
            ],
        );
        words.extend(link_words(p, kind));
        words.extend(setting_words(
            p,
            &[
                (names::CONNECTION, "autoconnect-priority"),
                (names::ETHERNET, "mtu"),
            ],
        ));
        line(words)
    }
}

impl RevertPlan {
    /// The original profile up on the uplink (NetworkManager takes it out of
    /// the bridge), the bridge down, the original's autoconnect as it was,
    /// the bridge and port profiles deleted.
    pub fn nmcli_commands(&self) -> Vec<String> {
        vec![
            line([
                "nmcli",
                "connection",
                "up",
                &self.original.uuid,
                "ifname",
                &self.uplink,
            ]),
            line(["nmcli", "connection", "down", &self.bridge_uuid]),
            autoconnect(&self.original.uuid, self.original.autoconnect),
            line([
                "nmcli",
                "connection",
                "delete",
                &self.port_uuid,
                &self.bridge_uuid,
            ]),
        ]
    }
}

/// The bridge's options set on its profile and applied in place — or, with
/// a new MAC (`mac`), by activating the profile again: Reapply refuses a MAC.
fn options_in_place(bridge: &str, uuid: &str, after: &Settings, mac: Option<&str>) -> Vec<String> {
    let mut modify: Vec<String> = ["nmcli", "connection", "modify", uuid]
        .iter()
        .map(|w| (*w).to_owned())
        .collect();
    modify.extend(setting_words(after, &BRIDGE_KEYS));
    let apply = match mac {
        Some(mac) => {
            modify.extend([
                "802-3-ethernet.cloned-mac-address".to_owned(),
                mac.to_owned(),
            ]);
            line(["nmcli", "connection", "up", uuid])
        }
        None => line(["nmcli", "device", "reapply", bridge]),
    };
    vec![line(modify), apply]
}

impl ModifyPlan {
    /// The port's MTU first (it caps the bridge's), then the bridge's
    /// options; each applied in place (Reapply), without re-activation —
    /// but for a new MAC.
    pub fn nmcli_commands(&self) -> Vec<String> {
        let mut out = Vec::new();
        if let Some(mtu) = self
            .port_after
            .as_ref()
            .and_then(|p| p.raw(names::ETHERNET, "mtu").and_then(|v| value_word(v)))
        {
            out.push(line([
                "nmcli",
                "connection",
                "modify",
                &self.port_uuid,
                "802-3-ethernet.mtu",
                &mtu,
            ]));
            out.push(line(["nmcli", "device", "reapply", &self.uplink]));
        }
        out.extend(options_in_place(
            &self.bridge,
            &self.bridge_uuid,
            &self.bridge_after,
            self.mac.as_deref(),
        ));
        out
    }
}

impl AdoptPlan {
    /// A plain profile for the uplink, down, for `revert`; then the
    /// bridge's options in place. netbridge also marks the bridge profile
    /// as its own (user data), which nmcli cannot set.
    pub fn nmcli_commands(&self) -> Vec<String> {
        let o = &self.original_profile;
        let kind = kind_of(o);
        let mut add = add(
            kind,
            &self.original.id,
            &self.uplink,
            &["autoconnect", "no"],
        );
        add.extend(link_words(o, kind));
        add.extend(ip_words("ipv4", &self.ipv4));
        add.extend(ip_words("ipv6", &self.ipv6));
        let mut out = vec![line(add)];
        out.extend(options_in_place(
            &self.bridge,
            &self.bridge_uuid,
            &self.bridge_after,
            self.mac.as_deref(),
        ));
        out
    }
}

/// A new network's profile (`netbridge create`): added and brought up.
pub fn network_commands(name: &str, profile: &Settings) -> Vec<String> {
    let mut add = add("bridge", name, name, &["autoconnect", "yes"]);
    add.extend(setting_words(
        profile,
        &[
            (names::BRIDGE, "stp"),
            (names::BRIDGE, "forward-delay"),
            (names::ETHERNET, "mtu"),
            (names::IPV4, "method"),
        ],
    ));
    let addresses = profile
        .dict_list(names::IPV4, "address-data")
        .unwrap_or_default();
    let addresses: Vec<String> = addresses
        .iter()
        .filter_map(|d| {
            let address = netbridge_dbus::settings::dict_str(d, "address")?;
            let prefix = netbridge_dbus::settings::dict_u32(d, "prefix")?;
            Some(format!("{address}/{prefix}"))
        })
        .collect();
    if !addresses.is_empty() {
        add.extend(["ipv4.addresses".to_owned(), addresses.join(",")]);
    }
    add.extend(setting_words(
        profile,
        &[
            (names::IPV4, "never-default"),
            (names::IPV4, "shared-dhcp-range"),
            (names::IPV6, "method"),
        ],
    ));
    let mut out = vec![line(add)];
    out.extend(up_commands(name));
    out
}

/// An existing network's profile brought up.
pub fn up_commands(name: &str) -> Vec<String> {
    vec![line(["nmcli", "connection", "up", name])]
}

/// `netbridge delete NAME`: the network's profile deleted (its device goes with it).
pub fn delete_commands(uuid: &str) -> Vec<String> {
    vec![line(["nmcli", "connection", "delete", uuid])]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::{Original, Timing};

    #[test]
    fn a_revert_brings_the_original_up_then_deletes_the_bridge_and_port() {
        let plan = RevertPlan {
            bridge: "br0".into(),
            uplink: "ens32".into(),
            uplink_path: zbus::zvariant::OwnedObjectPath::try_from("/d/2").expect("path"),
            bridge_uuid: "uuid-br0".into(),
            port_uuid: "uuid-port".into(),
            original: Original {
                uuid: "uuid-ens32".into(),
                id: "Wired connection 1".into(),
                autoconnect: true,
            },
            ipv4: IpPlan::default(),
            ipv6: IpPlan::default(),
            timing: Timing {
                rollback_timeout: 30,
                activation: std::time::Duration::from_secs(30),
                check: std::time::Duration::from_secs(5),
            },
            goal: crate::nm::ActivationGoal::default(),
        };
        assert_eq!(
            plan.nmcli_commands(),
            vec![
                "nmcli connection up uuid-ens32 ifname ens32",
                "nmcli connection down uuid-br0",
                "nmcli connection modify uuid-ens32 connection.autoconnect yes",
                "nmcli connection delete uuid-port uuid-br0",
            ]
        );
    }

    #[test]
    fn words_are_quoted_for_the_shell_only_when_needed() {
        assert_eq!(
            line(["nmcli", "connection", "up", "Wired connection 1"]),
            "nmcli connection up 'Wired connection 1'"
        );
    }
}
