//! A typed view of NetworkManager connection settings (`a{sa{sv}}`): read what
//! `GetSettings` returned, and build what `AddConnection2`/`Update2` take.
//!
//! Values keep their D-Bus types, so settings read from NetworkManager can be
//! written back unchanged apart from the keys a caller edits.

use std::collections::{BTreeMap, HashMap};
use std::net::{Ipv4Addr, Ipv6Addr};

use zbus::zvariant::{OwnedValue, Value};

use crate::proxy::{SettingsIn, SettingsOut};

/// Setting (group) names as NetworkManager spells them on D-Bus.
pub mod names {
    pub const CONNECTION: &str = "connection";
    pub const BRIDGE: &str = "bridge";
    pub const BRIDGE_PORT: &str = "bridge-port";
    pub const ETHERNET: &str = "802-3-ethernet";
    pub const IPV4: &str = "ipv4";
    pub const IPV6: &str = "ipv6";
    pub const USER: &str = "user";
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SettingsError {
    #[error("{setting}.{key} is of D-Bus type '{found}', expected '{expected}'")]
    WrongType {
        setting: String,
        key: String,
        expected: &'static str,
        found: String,
    },
    #[error("{setting}.{key}: {reason}")]
    Invalid {
        setting: String,
        key: String,
        reason: String,
    },
}

/// One entry of an `aa{sv}` list such as `address-data` or `route-data`.
pub type Dict = BTreeMap<String, OwnedValue>;

/// A connection profile's settings, setting name → key → value.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Settings(BTreeMap<String, BTreeMap<String, OwnedValue>>);

impl From<SettingsOut> for Settings {
    fn from(out: SettingsOut) -> Self {
        Settings(
            out.into_iter()
                .map(|(name, keys)| (name, keys.into_iter().collect()))
                .collect(),
        )
    }
}

impl Settings {
    pub fn new() -> Self {
        Self::default()
    }

    /// The form `AddConnection2`/`Update2` take, borrowing from `self`.
    pub fn to_dbus(&self) -> SettingsIn<'_> {
        self.0
            .iter()
            .map(|(name, keys)| {
                let keys = keys
                    .iter()
                    .map(|(key, value)| (key.as_str(), Value::from(value.clone())))
                    .collect::<HashMap<_, _>>();
                (name.as_str(), keys)
            })
            .collect()
    }

    pub fn setting_names(&self) -> impl Iterator<Item = &str> {
        self.0.keys().map(String::as_str)
    }

    pub fn has_setting(&self, setting: &str) -> bool {
        self.0.contains_key(setting)
    }

    /// Adds an empty setting (NetworkManager needs e.g. `bridge-port: {}` to be present).
    pub fn ensure_setting(&mut self, setting: &str) -> &mut Self {
        self.0.entry(setting.to_owned()).or_default();
        self
    }

    pub fn remove_setting(&mut self, setting: &str) -> &mut Self {
        self.0.remove(setting);
        self
    }

    pub fn remove(&mut self, setting: &str, key: &str) -> &mut Self {
        if let Some(keys) = self.0.get_mut(setting) {
            keys.remove(key);
        }
        self
    }

    pub fn keys(&self, setting: &str) -> impl Iterator<Item = &str> {
        self.0
            .get(setting)
            .into_iter()
            .flat_map(|keys| keys.keys().map(String::as_str))
    }

    /// Sets a value; its D-Bus type is the one `value` converts to, so pass
    /// the exact Rust type NetworkManager documents (`u32` for `u`, ...).
    pub fn set<'v>(&mut self, setting: &str, key: &str, value: impl Into<Value<'v>>) -> &mut Self {
        let owned = value
            .into()
            .try_to_owned()
            // Only file-descriptor values can fail to convert, and settings never hold one.
            .unwrap_or_else(|_| OwnedValue::from(false));
        self.0
            .entry(setting.to_owned())
            .or_default()
            .insert(key.to_owned(), owned);
        self
    }

    /// Sets an `aa{sv}` list, e.g. `address-data`.
    pub fn set_dict_list(&mut self, setting: &str, key: &str, list: Vec<Dict>) -> &mut Self {
        let list: Vec<HashMap<String, Value<'static>>> = list
            .into_iter()
            .map(|dict| dict.into_iter().map(|(k, v)| (k, Value::from(v))).collect())
            .collect();
        self.set(setting, key, list)
    }

    pub fn raw(&self, setting: &str, key: &str) -> Option<&OwnedValue> {
        self.0.get(setting).and_then(|keys| keys.get(key))
    }

    pub fn str(&self, setting: &str, key: &str) -> Result<Option<&str>, SettingsError> {
        self.typed(setting, key, "s", |v| v.downcast_ref::<&str>().ok())
    }

    pub fn bool(&self, setting: &str, key: &str) -> Result<Option<bool>, SettingsError> {
        self.typed(setting, key, "b", |v| v.downcast_ref::<bool>().ok())
    }

    pub fn u32(&self, setting: &str, key: &str) -> Result<Option<u32>, SettingsError> {
        self.typed(setting, key, "u", |v| v.downcast_ref::<u32>().ok())
    }

    pub fn i32(&self, setting: &str, key: &str) -> Result<Option<i32>, SettingsError> {
        self.typed(setting, key, "i", |v| v.downcast_ref::<i32>().ok())
    }

    pub fn i64(&self, setting: &str, key: &str) -> Result<Option<i64>, SettingsError> {
        self.typed(setting, key, "x", |v| v.downcast_ref::<i64>().ok())
    }

    pub fn strings(&self, setting: &str, key: &str) -> Result<Vec<String>, SettingsError> {
        self.list(setting, key, "as")
    }

    pub fn u32s(&self, setting: &str, key: &str) -> Result<Vec<u32>, SettingsError> {
        self.list(setting, key, "au")
    }

    pub fn byte_arrays(&self, setting: &str, key: &str) -> Result<Vec<Vec<u8>>, SettingsError> {
        self.list(setting, key, "aay")
    }

    /// An `a{ss}` dictionary, e.g. `user.data`.
    pub fn string_map(
        &self,
        setting: &str,
        key: &str,
    ) -> Result<BTreeMap<String, String>, SettingsError> {
        match self.raw(setting, key) {
            None => Ok(BTreeMap::new()),
            Some(value) => value
                .try_clone()
                .ok()
                .and_then(|v| HashMap::<String, String>::try_from(v).ok())
                .map(|m| m.into_iter().collect())
                .ok_or_else(|| wrong_type(setting, key, "a{ss}", value)),
        }
    }

    pub fn dict_list(&self, setting: &str, key: &str) -> Result<Vec<Dict>, SettingsError> {
        let maps: Vec<HashMap<String, OwnedValue>> = self.list(setting, key, "aa{sv}")?;
        Ok(maps.into_iter().map(|m| m.into_iter().collect()).collect())
    }

    fn typed<'a, T>(
        &'a self,
        setting: &str,
        key: &str,
        expected: &'static str,
        read: impl FnOnce(&'a OwnedValue) -> Option<T>,
    ) -> Result<Option<T>, SettingsError> {
        match self.raw(setting, key) {
            None => Ok(None),
            Some(value) => read(value)
                .map(Some)
                .ok_or_else(|| wrong_type(setting, key, expected, value)),
        }
    }

    fn list<T>(
        &self,
        setting: &str,
        key: &str,
        expected: &'static str,
    ) -> Result<Vec<T>, SettingsError>
    where
        T: TryFrom<OwnedValue>,
        Vec<T>: TryFrom<OwnedValue>,
    {
        match self.raw(setting, key) {
            None => Ok(Vec::new()),
            Some(value) => value
                .try_clone()
                .ok()
                .and_then(|v| Vec::<T>::try_from(v).ok())
                .ok_or_else(|| wrong_type(setting, key, expected, value)),
        }
    }
}

fn wrong_type(
    setting: &str,
    key: &str,
    expected: &'static str,
    value: &OwnedValue,
) -> SettingsError {
    SettingsError::WrongType {
        setting: setting.to_owned(),
        key: key.to_owned(),
        expected,
        found: value.value_signature().to_string(),
    }
}

/// Builds one `aa{sv}` entry from key/value pairs.
pub fn dict<'v>(entries: impl IntoIterator<Item = (&'static str, Value<'v>)>) -> Dict {
    entries
        .into_iter()
        .filter_map(|(k, v)| v.try_to_owned().ok().map(|v| (k.to_owned(), v)))
        .collect()
}

/// Reads a string entry of an `aa{sv}` dictionary.
pub fn dict_str<'a>(dict: &'a Dict, key: &str) -> Option<&'a str> {
    dict.get(key).and_then(|v| v.downcast_ref::<&str>().ok())
}

/// Reads a `u` entry of an `aa{sv}` dictionary.
pub fn dict_u32(dict: &Dict, key: &str) -> Option<u32> {
    dict.get(key).and_then(|v| v.downcast_ref::<u32>().ok())
}

/// `ipv4.dns` is `au` in network byte order.
pub fn ipv4_to_nm(addr: Ipv4Addr) -> u32 {
    u32::from_ne_bytes(addr.octets())
}

pub fn ipv4_from_nm(value: u32) -> Ipv4Addr {
    Ipv4Addr::from(value.to_ne_bytes())
}

/// `ipv6.dns` is `aay`, 16 raw bytes per server; other lengths are not addresses.
pub fn ipv6_from_nm(bytes: &[u8]) -> Option<Ipv6Addr> {
    <[u8; 16]>::try_from(bytes).ok().map(Ipv6Addr::from)
}

pub fn ipv6_to_nm(addr: Ipv6Addr) -> Vec<u8> {
    addr.octets().to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Settings {
        let mut s = Settings::new();
        s.set(names::CONNECTION, "id", "br0")
            .set(names::CONNECTION, "autoconnect", true)
            .set(names::BRIDGE, "forward-delay", 2u32)
            .set(names::IPV4, "route-metric", -1i64)
            .set(
                names::IPV4,
                "dns",
                vec![ipv4_to_nm(Ipv4Addr::new(172, 25, 250, 254))],
            )
            .set(names::IPV4, "dns-search", vec!["lab".to_owned()])
            .set_dict_list(
                names::IPV4,
                "address-data",
                vec![dict([
                    ("address", Value::from("172.25.250.10")),
                    ("prefix", Value::from(24u32)),
                ])],
            )
            .ensure_setting(names::BRIDGE_PORT);
        s
    }

    #[test]
    fn typed_reads_return_what_was_set() {
        let s = sample();
        assert_eq!(s.str(names::CONNECTION, "id"), Ok(Some("br0")));
        assert_eq!(s.bool(names::CONNECTION, "autoconnect"), Ok(Some(true)));
        assert_eq!(s.u32(names::BRIDGE, "forward-delay"), Ok(Some(2)));
        assert_eq!(s.i64(names::IPV4, "route-metric"), Ok(Some(-1)));
        assert_eq!(
            s.strings(names::IPV4, "dns-search"),
            Ok(vec!["lab".to_owned()])
        );
        let dns = s.u32s(names::IPV4, "dns").unwrap();
        assert_eq!(ipv4_from_nm(dns[0]), Ipv4Addr::new(172, 25, 250, 254));
        let addrs = s.dict_list(names::IPV4, "address-data").unwrap();
        assert_eq!(dict_str(&addrs[0], "address"), Some("172.25.250.10"));
        assert_eq!(dict_u32(&addrs[0], "prefix"), Some(24));
        assert!(s.has_setting(names::BRIDGE_PORT));
    }

    #[test]
    fn string_maps_round_trip() {
        let mut s = Settings::new();
        let data = HashMap::from([("netbridge.uplink".to_owned(), "ens32".to_owned())]);
        s.set(names::USER, "data", data);
        assert_eq!(s.to_dbus()["user"]["data"].value_signature(), "a{ss}");
        let back = s.string_map(names::USER, "data").unwrap();
        assert_eq!(
            back.get("netbridge.uplink").map(String::as_str),
            Some("ens32")
        );
        assert!(s.string_map(names::IPV4, "dns-search").unwrap().is_empty());
    }

    #[test]
    fn missing_keys_read_as_none_or_empty() {
        let s = sample();
        assert_eq!(s.str(names::IPV6, "method"), Ok(None));
        assert_eq!(s.u32s(names::IPV6, "dns"), Ok(vec![]));
        assert_eq!(s.dict_list(names::IPV4, "route-data"), Ok(vec![]));
    }

    #[test]
    fn wrong_types_are_reported_with_the_key() {
        let s = sample();
        let err = s.u32(names::CONNECTION, "id").unwrap_err();
        assert_eq!(
            err.to_string(),
            "connection.id is of D-Bus type 's', expected 'u'"
        );
        assert!(s.strings(names::IPV4, "dns").is_err());
    }

    #[test]
    fn dbus_form_has_the_exact_signatures() {
        let s = sample();
        let out = s.to_dbus();
        assert_eq!(out["bridge"]["forward-delay"].value_signature(), "u");
        assert_eq!(out["ipv4"]["route-metric"].value_signature(), "x");
        assert_eq!(out["ipv4"]["dns"].value_signature(), "au");
        assert_eq!(out["ipv4"]["address-data"].value_signature(), "aa{sv}");
        assert!(out["bridge-port"].is_empty());
    }

    #[test]
    fn remove_edits_only_the_named_key() {
        let mut s = sample();
        s.remove(names::IPV4, "dns").remove(names::IPV6, "nothing");
        assert_eq!(s.u32s(names::IPV4, "dns"), Ok(vec![]));
        assert_eq!(
            s.strings(names::IPV4, "dns-search"),
            Ok(vec!["lab".to_owned()])
        );
        s.remove_setting(names::IPV4);
        assert!(!s.has_setting(names::IPV4));
    }

    #[test]
    fn network_byte_order_matches_networkmanager() {
        // 192.0.2.53 is 889323712 on little-endian hosts (checked against NM).
        if cfg!(target_endian = "little") {
            assert_eq!(ipv4_to_nm(Ipv4Addr::new(192, 0, 2, 53)), 889_323_712);
        }
        let v6: Ipv6Addr = "2001:db8::53".parse().unwrap();
        assert_eq!(ipv6_from_nm(&ipv6_to_nm(v6)), Some(v6));
        assert_eq!(ipv6_from_nm(&[1, 2, 3]), None);
    }
}
