//! The bridge options an operator declares, typed once for the CLI and the
//! configuration, and what declaring them changes on a bridge profile: the
//! same rules for a new bridge, an adopted one and one netbridge converges.

use netbridge_dbus::settings::names;
use netbridge_dbus::{Settings, SettingsError};
use serde::{Deserialize, Serialize};
use zbus::zvariant::Value;

use super::{without_legacy_forms, Marker};

/// Declared options; `None` leaves what the bridge has (or NetworkManager's
/// default for a new one). VLAN filtering would join here, once a kernel
/// with bridge VLAN filtering is at hand to test it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct BridgeOptions {
    pub stp: bool,
    /// Seconds, 2–30; with STP off netbridge uses 2 unless told otherwise.
    pub forward_delay: Option<u32>,
    /// Seconds, 1–10.
    pub hello_time: Option<u32>,
    /// Seconds, 6–40.
    pub max_age: Option<u32>,
    /// The bridge's STP priority, 0–65535.
    pub priority: Option<u32>,
    pub multicast_snooping: Option<bool>,
    pub mtu: Option<u32>,
    /// The bridge's MAC, as [`declared_mac`] writes it; a new bridge takes
    /// its uplink's otherwise.
    pub mac: Option<String>,
}

impl BridgeOptions {
    /// The forward delay to set: as declared, else 2 s with STP off —
    /// unused then, but NetworkManager's 15 would apply if someone turned STP
    /// on later, and 2 is the smallest value valid either way.
    fn forward_delay(&self) -> Option<u32> {
        self.forward_delay.or((!self.stp).then_some(2))
    }
}

/// NetworkManager's value when a key is absent from a profile.
struct Key {
    setting: &'static str,
    key: &'static str,
    label: &'static str,
    unit: &'static str,
}

const FORWARD_DELAY: Key = Key {
    setting: names::BRIDGE,
    key: "forward-delay",
    label: "forward delay",
    unit: " s",
};
const HELLO_TIME: Key = Key {
    setting: names::BRIDGE,
    key: "hello-time",
    label: "hello time",
    unit: " s",
};
const MAX_AGE: Key = Key {
    setting: names::BRIDGE,
    key: "max-age",
    label: "max age",
    unit: " s",
};
const PRIORITY: Key = Key {
    setting: names::BRIDGE,
    key: "priority",
    label: "STP priority",
    unit: "",
};
const MTU: Key = Key {
    setting: names::ETHERNET,
    key: "mtu",
    label: "MTU",
    unit: "",
};

/// A declared MAC as NetworkManager writes it (`52:54:00:AB:CD:EF`), or why
/// it is none a bridge can take.
pub fn declared_mac(text: &str) -> Result<String, String> {
    let bytes = super::parse_mac(text)
        .filter(|_| text.len() == 17)
        .ok_or_else(|| format!("{text:?} is not a MAC address like 52:54:00:12:34:56"))?;
    if bytes[0] & 1 == 1 {
        return Err(format!(
            "{text:?} is a multicast address, which no interface can have"
        ));
    }
    let hex: Vec<String> = bytes.iter().map(|b| format!("{b:02X}")).collect();
    Ok(hex.join(":"))
}

/// The MAC a bridge profile pins, if any. NetworkManager sends it twice: as
/// bytes (`cloned-mac-address`) and as text (`assigned-mac-address`), which
/// wins when both come back.
fn pinned_mac(s: &Settings) -> Result<Option<String>, SettingsError> {
    Ok(s.str(names::ETHERNET, "assigned-mac-address")?
        .map(str::to_ascii_uppercase))
}

fn pin_mac(s: &mut Settings, mac: Option<&str>) {
    s.remove(names::ETHERNET, "cloned-mac-address");
    match mac {
        Some(mac) => s.set(names::ETHERNET, "assigned-mac-address", mac),
        None => s.remove(names::ETHERNET, "assigned-mac-address"),
    };
}

/// The declared MAC, if converging changes the bridge's: NetworkManager
/// applies a new MAC only when it activates the bridge (Reapply refuses it).
pub fn mac_change(
    options: &BridgeOptions,
    saved: &Settings,
) -> Result<Option<String>, SettingsError> {
    let now = pinned_mac(saved)?;
    Ok(options.mac.clone().filter(|_| options.mac != now))
}

/// The valid range of each timer, as NetworkManager checks it.
pub fn validate(options: &BridgeOptions) -> Result<(), String> {
    let ranges: [(&str, Option<u32>, std::ops::RangeInclusive<u32>); 5] = [
        ("forward-delay", options.forward_delay, 2..=30),
        ("hello-time", options.hello_time, 1..=10),
        ("max-age", options.max_age, 6..=40),
        ("stp-priority", options.priority, 0..=65535),
        ("mtu", options.mtu, 68..=65535),
    ];
    for (name, value, range) in ranges {
        if let Some(v) = value.filter(|v| !range.contains(v)) {
            return Err(format!(
                "{name} {v} is out of range ({}–{})",
                range.start(),
                range.end()
            ));
        }
    }
    Ok(())
}

/// Writes the declared options into a new bridge profile.
pub fn apply_to_new(options: &BridgeOptions, s: &mut Settings) {
    s.set(names::BRIDGE, "stp", options.stp);
    let forward_delay = options.forward_delay();
    for (key, value) in [
        (&FORWARD_DELAY, forward_delay),
        (&HELLO_TIME, options.hello_time),
        (&MAX_AGE, options.max_age),
        (&PRIORITY, options.priority),
    ] {
        if let Some(v) = value {
            s.set(key.setting, key.key, v);
        }
    }
    if let Some(on) = options.multicast_snooping {
        s.set(names::BRIDGE, "multicast-snooping", on);
    }
}

/// The profile with the declared options, and one line per difference
/// (`STP on → off`); no line means the bridge is as declared.
pub fn converge(
    options: &BridgeOptions,
    saved: &Settings,
) -> Result<(Settings, Vec<String>), SettingsError> {
    let mut s = without_legacy_forms(saved)?;
    let mut changes = Vec::new();
    let stp = s.bool(names::BRIDGE, "stp")?.unwrap_or(true);
    if stp != options.stp {
        changes.push(format!("STP {} → {}", on_off(stp), on_off(options.stp)));
        s.set(names::BRIDGE, "stp", options.stp);
    }
    let forward_delay = options.forward_delay();
    for (key, want, default) in [
        (&FORWARD_DELAY, forward_delay, 15),
        (&HELLO_TIME, options.hello_time, 2),
        (&MAX_AGE, options.max_age, 20),
        (&PRIORITY, options.priority, 32768),
        (&MTU, options.mtu, 0),
    ] {
        let Some(want) = want else { continue };
        let now = s.u32(key.setting, key.key)?.unwrap_or(default);
        if now != want {
            let shown = |v: u32| {
                if key.key == "mtu" && v == 0 {
                    "auto".to_owned()
                } else {
                    format!("{v}{}", key.unit)
                }
            };
            changes.push(format!("{} {} → {}", key.label, shown(now), shown(want)));
            s.set(key.setting, key.key, want);
        }
    }
    if let Some(want) = options.multicast_snooping {
        let now = s.bool(names::BRIDGE, "multicast-snooping")?.unwrap_or(true);
        if now != want {
            changes.push(format!(
                "multicast snooping {} → {}",
                on_off(now),
                on_off(want)
            ));
            s.set(names::BRIDGE, "multicast-snooping", want);
        }
    }
    if let Some(want) = mac_change(options, &s)? {
        let now = pinned_mac(&s)?.unwrap_or_else(|| "automatic".to_owned());
        changes.push(format!("MAC {now} → {want}"));
        pin_mac(&mut s, Some(&want));
    }
    Ok((s, changes))
}

fn on_off(b: bool) -> &'static str {
    if b {
        "on"
    } else {
        "off"
    }
}

/// What a change to a bridge's options replaces (`None`: the key was
/// absent), to write back if the change is undone without a checkpoint.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct OptionsRestore {
    pub stp: Option<bool>,
    pub forward_delay: Option<u32>,
    #[serde(default)]
    pub hello_time: Option<u32>,
    #[serde(default)]
    pub max_age: Option<u32>,
    #[serde(default)]
    pub priority: Option<u32>,
    #[serde(default)]
    pub multicast_snooping: Option<bool>,
    pub mtu: Option<u32>,
    /// Whether netbridge's mark was there (an adoption adds it).
    #[serde(default)]
    pub marked: bool,
    /// The link's MTU before a change of the MTU: with the profile's MTU
    /// back at "auto", NetworkManager leaves the link's as it is, so an undo
    /// sets it again in place.
    #[serde(default)]
    pub link_mtu: Option<u32>,
    /// The MAC the profile pinned.
    #[serde(default)]
    pub mac: Option<String>,
}

impl OptionsRestore {
    pub fn of(saved: &Settings) -> Result<Self, SettingsError> {
        Ok(OptionsRestore {
            stp: saved.bool(names::BRIDGE, "stp")?,
            forward_delay: saved.u32(names::BRIDGE, "forward-delay")?,
            hello_time: saved.u32(names::BRIDGE, "hello-time")?,
            max_age: saved.u32(names::BRIDGE, "max-age")?,
            priority: saved.u32(names::BRIDGE, "priority")?,
            multicast_snooping: saved.bool(names::BRIDGE, "multicast-snooping")?,
            mtu: saved.u32(names::ETHERNET, "mtu")?,
            marked: Marker::read(saved)?.is_some(),
            link_mtu: None,
            mac: pinned_mac(saved)?,
        })
    }

    /// Also remembers the link's MTU, for a change that alters it.
    pub fn with_link_mtu(mut self, mtu: u32) -> Self {
        self.link_mtu = Some(mtu);
        self
    }

    /// `settings` with the recorded options back (and netbridge's mark
    /// removed unless it was there before).
    pub fn apply(&self, settings: &Settings) -> Result<Settings, SettingsError> {
        let mut s = without_legacy_forms(settings)?;
        let mut put = |setting: &str, key: &str, value: Option<Value<'static>>| {
            match value {
                Some(v) => s.set(setting, key, v),
                None => s.remove(setting, key),
            };
        };
        put(names::BRIDGE, "stp", self.stp.map(Into::into));
        put(
            names::BRIDGE,
            "forward-delay",
            self.forward_delay.map(Into::into),
        );
        put(names::BRIDGE, "hello-time", self.hello_time.map(Into::into));
        put(names::BRIDGE, "max-age", self.max_age.map(Into::into));
        put(names::BRIDGE, "priority", self.priority.map(Into::into));
        put(
            names::BRIDGE,
            "multicast-snooping",
            self.multicast_snooping.map(Into::into),
        );
        put(names::ETHERNET, "mtu", self.mtu.map(Into::into));
        if pinned_mac(&s)? != self.mac {
            pin_mac(&mut s, self.mac.as_deref());
        }
        if !self.marked {
            Marker::erase(&mut s)?;
        }
        Ok(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hand_made() -> Settings {
        let mut s = Settings::new();
        s.set(names::CONNECTION, "type", "bridge")
            .ensure_setting(names::BRIDGE);
        s
    }

    #[test]
    fn converging_names_each_difference_and_nothing_when_as_declared() {
        let declared = BridgeOptions {
            stp: true,
            forward_delay: Some(4),
            priority: Some(4096),
            mtu: Some(1400),
            multicast_snooping: Some(false),
            ..BridgeOptions::default()
        };
        let (after, changes) = converge(&declared, &hand_made()).unwrap();
        assert_eq!(
            changes,
            vec![
                "forward delay 15 s → 4 s",
                "STP priority 32768 → 4096",
                "MTU auto → 1400",
                "multicast snooping on → off"
            ]
        );
        let (_, again) = converge(&declared, &after).unwrap();
        assert!(again.is_empty(), "{again:?}");
    }

    #[test]
    fn stp_off_brings_the_forward_delay_down_to_2() {
        let (_, changes) = converge(&BridgeOptions::default(), &hand_made()).unwrap();
        assert_eq!(changes, vec!["STP on → off", "forward delay 15 s → 2 s"]);
    }

    #[test]
    fn a_restore_puts_back_exactly_what_was_there() {
        let before = hand_made();
        let restore = OptionsRestore::of(&before).unwrap();
        let declared = BridgeOptions {
            mtu: Some(1400),
            hello_time: Some(3),
            ..BridgeOptions::default()
        };
        let (after, _) = converge(&declared, &before).unwrap();
        let back = restore.apply(&after).unwrap();
        for key in ["stp", "forward-delay", "hello-time"] {
            assert!(back.raw(names::BRIDGE, key).is_none(), "{key}");
        }
        assert!(back.raw(names::ETHERNET, "mtu").is_none());
    }

    #[test]
    fn a_declared_mac_is_written_once_shown_in_the_diff_and_restored() {
        let mut before = hand_made();
        before.set(names::ETHERNET, "assigned-mac-address", "52:54:00:aa:00:01");
        let declared = BridgeOptions {
            mac: Some(declared_mac("02:00:5e:10:00:01").unwrap()),
            ..BridgeOptions::default()
        };
        assert_eq!(
            mac_change(&declared, &before).unwrap().as_deref(),
            Some("02:00:5E:10:00:01")
        );
        let (after, changes) = converge(&declared, &before).unwrap();
        assert!(
            changes.contains(&"MAC 52:54:00:AA:00:01 → 02:00:5E:10:00:01".to_owned()),
            "{changes:?}"
        );
        assert_eq!(mac_change(&declared, &after).unwrap(), None);
        let restore = OptionsRestore::of(&before).unwrap();
        let back = restore.apply(&after).unwrap();
        assert_eq!(
            back.str(names::ETHERNET, "assigned-mac-address").unwrap(),
            Some("52:54:00:AA:00:01")
        );
    }

    #[test]
    fn a_mac_must_be_six_bytes_and_unicast() {
        assert!(declared_mac("52:54:00:12:34").is_err());
        assert!(declared_mac("52:54:00:12:34:5").is_err());
        assert!(declared_mac("01:00:5e:00:00:01")
            .unwrap_err()
            .contains("multicast"));
        assert_eq!(
            declared_mac("52:54:00:ab:cd:ef").as_deref(),
            Ok("52:54:00:AB:CD:EF")
        );
    }

    #[test]
    fn timers_out_of_range_are_refused() {
        let bad = BridgeOptions {
            forward_delay: Some(1),
            ..BridgeOptions::default()
        };
        assert_eq!(
            validate(&bad),
            Err("forward-delay 1 is out of range (2–30)".to_owned())
        );
        assert_eq!(validate(&BridgeOptions::default()), Ok(()));
    }
}
