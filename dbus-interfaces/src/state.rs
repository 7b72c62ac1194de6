//! State and type numbers NetworkManager reports, as enums.

use serde::Serialize;

macro_rules! nm_enum {
    ($(#[$meta:meta])* $name:ident { $($variant:ident = $value:literal => $text:literal,)+ }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum $name {
            $($variant,)+
            /// A number this version of netbridge does not know.
            Other(u32),
        }

        impl From<u32> for $name {
            fn from(value: u32) -> Self {
                match value {
                    $($value => Self::$variant,)+
                    other => Self::Other(other),
                }
            }
        }

        impl From<$name> for u32 {
            fn from(value: $name) -> u32 {
                match value {
                    $($name::$variant => $value,)+
                    $name::Other(other) => other,
                }
            }
        }

        impl $name {
            /// The lower-case name nmcli uses for this value.
            pub fn as_str(&self) -> &'static str {
                match self {
                    $(Self::$variant => $text,)+
                    Self::Other(_) => "unknown",
                }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                match self {
                    Self::Other(n) => write!(f, "unknown ({n})"),
                    known => f.write_str(known.as_str()),
                }
            }
        }

        impl Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(self.as_str())
            }
        }
    };
}

nm_enum! {
    /// `Device.State` (NMDeviceState).
    DeviceState {
        Unknown = 0 => "unknown",
        Unmanaged = 10 => "unmanaged",
        Unavailable = 20 => "unavailable",
        Disconnected = 30 => "disconnected",
        Prepare = 40 => "prepare",
        Config = 50 => "config",
        NeedAuth = 60 => "need-auth",
        IpConfig = 70 => "ip-config",
        IpCheck = 80 => "ip-check",
        Secondaries = 90 => "secondaries",
        Activated = 100 => "activated",
        Deactivating = 110 => "deactivating",
        Failed = 120 => "failed",
    }
}

nm_enum! {
    /// `Connection.Active.State` (NMActiveConnectionState).
    ActiveConnectionState {
        Unknown = 0 => "unknown",
        Activating = 1 => "activating",
        Activated = 2 => "activated",
        Deactivating = 3 => "deactivating",
        Deactivated = 4 => "deactivated",
    }
}

nm_enum! {
    /// `Device.DeviceType` (NMDeviceType), the kinds netbridge deals with.
    DeviceType {
        Unknown = 0 => "unknown",
        Ethernet = 1 => "ethernet",
        Wifi = 2 => "wifi",
        Bond = 10 => "bond",
        Vlan = 11 => "vlan",
        Bridge = 13 => "bridge",
        Generic = 14 => "generic",
        Team = 15 => "team",
        Tun = 16 => "tun",
        Macvlan = 18 => "macvlan",
        Vxlan = 19 => "vxlan",
        Veth = 20 => "veth",
        Dummy = 22 => "dummy",
        OvsInterface = 24 => "ovs-interface",
        OvsPort = 25 => "ovs-port",
        OvsBridge = 26 => "ovs-bridge",
        Wireguard = 29 => "wireguard",
        Loopback = 32 => "loopback",
    }
}

nm_enum! {
    /// Per-device values in `CheckpointRollback`'s result (NMRollbackResult).
    RollbackResult {
        Ok = 0 => "ok",
        NoDevice = 1 => "no-device",
        DeviceUnmanaged = 2 => "device-unmanaged",
        Failed = 3 => "failed",
    }
}

impl DeviceType {
    /// The word nmcli prints for the type (libnm's type description), which
    /// calls a veth `ethernet`: NetworkManager drives it as one, with an
    /// ethernet profile.
    pub fn nmcli_word(&self) -> &'static str {
        match self {
            Self::Veth => "ethernet",
            other => other.as_str(),
        }
    }
}

impl DeviceState {
    /// Between "prepare" and "secondaries": an activation is under way.
    pub fn is_activating(&self) -> bool {
        let n = u32::from(*self);
        (40..100).contains(&n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_round_trip_including_unknown_ones() {
        assert_eq!(DeviceState::from(100), DeviceState::Activated);
        assert_eq!(u32::from(DeviceState::Other(7)), 7);
        assert_eq!(DeviceType::from(20).to_string(), "veth");
        assert_eq!(DeviceType::from(20).nmcli_word(), "ethernet");
        assert_eq!(DeviceType::Bridge.nmcli_word(), "bridge");
        assert_eq!(ActiveConnectionState::from(9).to_string(), "unknown (9)");
        assert!(DeviceState::IpConfig.is_activating());
        assert!(!DeviceState::Activated.is_activating());
    }
}
