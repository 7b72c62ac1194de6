//! What netbridge records in the `user.data` of a bridge profile it made, so
//! `revert` and the agent know where a bridge came from with no other state.

use std::collections::{BTreeMap, HashMap};

use netbridge_dbus::settings::names;
use netbridge_dbus::{Settings, SettingsError};

const UPLINK: &str = "netbridge.uplink";
const PORT: &str = "netbridge.port-uuid";
const ORIGINAL: &str = "netbridge.original-uuid";
const ORIGINAL_AUTOCONNECT: &str = "netbridge.original-autoconnect";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Marker {
    pub uplink: String,
    pub port_uuid: String,
    pub original_uuid: String,
    /// The original profile's autoconnect before the conversion turned it off.
    pub original_autoconnect: bool,
}

impl Marker {
    pub fn write(&self, settings: &mut Settings) {
        let data: HashMap<String, String> = [
            (UPLINK, self.uplink.clone()),
            (PORT, self.port_uuid.clone()),
            (ORIGINAL, self.original_uuid.clone()),
            (ORIGINAL_AUTOCONNECT, self.original_autoconnect.to_string()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
        settings.set(names::USER, "data", data);
    }

    /// Removes netbridge's keys from the profile's user data, keeping the rest.
    pub fn erase(settings: &mut Settings) -> Result<(), SettingsError> {
        let mut data: BTreeMap<String, String> = settings.string_map(names::USER, "data")?;
        data.retain(|k, _| ![UPLINK, PORT, ORIGINAL, ORIGINAL_AUTOCONNECT].contains(&k.as_str()));
        if data.is_empty() {
            settings.remove_setting(names::USER);
        } else {
            let data: HashMap<String, String> = data.into_iter().collect();
            settings.set(names::USER, "data", data);
        }
        Ok(())
    }

    /// `None` when the profile was not made by netbridge.
    pub fn read(settings: &Settings) -> Result<Option<Marker>, SettingsError> {
        let data: BTreeMap<String, String> = settings.string_map(names::USER, "data")?;
        let get = |key: &str| data.get(key).cloned();
        Ok(match (get(UPLINK), get(PORT), get(ORIGINAL)) {
            (Some(uplink), Some(port_uuid), Some(original_uuid)) => Some(Marker {
                uplink,
                port_uuid,
                original_uuid,
                original_autoconnect: get(ORIGINAL_AUTOCONNECT).as_deref() != Some("false"),
            }),
            _ => None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_marker_round_trips_and_foreign_profiles_have_none() {
        let marker = Marker {
            uplink: "ens32".into(),
            port_uuid: "p".into(),
            original_uuid: "o".into(),
            original_autoconnect: true,
        };
        let mut s = Settings::new();
        assert_eq!(Marker::read(&s), Ok(None));
        marker.write(&mut s);
        assert_eq!(Marker::read(&s), Ok(Some(marker)));
        Marker::erase(&mut s).unwrap();
        assert_eq!(Marker::read(&s), Ok(None));
        assert!(!s.has_setting(names::USER));
    }
}
