//! Pure planning of `revert`: bring a converted host's original profile back
//! on the uplink and remove the bridge netbridge made.

use netbridge_dbus::settings::names;
use netbridge_dbus::{Settings, SettingsError};
use serde::Serialize;
use zbus::zvariant::OwnedObjectPath;

use super::{goal, ip_plan, timing, IpPlan, Marker, Original, Request, Timing};
use crate::nm::{ActivationGoal, DeviceInfo, ProfileInfo};

/// What was found for the bridge to revert.
#[derive(Debug, Clone)]
pub struct RevertFound {
    pub bridge: String,
    /// The bridge profile (matched by id or interface name) and its settings.
    pub bridge_profile: Option<(ProfileInfo, Settings)>,
    pub bridge_device: Option<DeviceInfo>,
    pub uplink_device: Option<DeviceInfo>,
    /// The original profile named by the bridge's marker, and its saved settings.
    pub original: Option<(ProfileInfo, Settings)>,
    /// No bridge has the name, but a device of that name is a port of this
    /// one: the operator named the uplink instead of its bridge.
    pub port_of: Option<String>,
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum RevertError {
    #[error("{}", no_bridge(name, port_of.as_deref()))]
    NoBridge {
        name: String,
        port_of: Option<String>,
    },
    #[error("{name} was not made by `netbridge convert` (its profile has no netbridge record); revert it by hand")]
    NotNetbridge { name: String },
    #[error("the original profile {uuid} of {uplink} no longer exists, so there is nothing safe to go back to")]
    OriginalMissing { uuid: String, uplink: String },
    #[error("the uplink {name} recorded for the bridge does not exist")]
    UplinkMissing { name: String },
    #[error("{0}")]
    Timeout(String),
    #[error("unreadable settings: {0}")]
    Settings(#[from] SettingsError),
}

#[derive(Debug, Clone, Serialize)]
pub struct RevertPlan {
    pub bridge: String,
    pub uplink: String,
    #[serde(skip)]
    pub uplink_path: OwnedObjectPath,
    pub bridge_uuid: String,
    pub port_uuid: String,
    pub original: Original,
    /// The IP configuration the uplink gets back.
    pub ipv4: IpPlan,
    pub ipv6: IpPlan,
    pub timing: Timing,
    #[serde(skip)]
    pub goal: ActivationGoal,
}

fn no_bridge(name: &str, port_of: Option<&str>) -> String {
    match port_of {
        Some(bridge) => format!(
            "{name} is not a bridge but a port of {bridge}: `netbridge revert {bridge}` gives {name} back its original profile"
        ),
        None => format!("no bridge profile named {name:?} exists"),
    }
}

pub fn plan_revert(
    found: &RevertFound,
    rollback_timeout: Option<u32>,
) -> Result<RevertPlan, RevertError> {
    let name = found.bridge.clone();
    let Some((bridge_info, bridge_settings)) = &found.bridge_profile else {
        return Err(RevertError::NoBridge {
            name,
            port_of: found.port_of.clone(),
        });
    };
    let Some(marker) = Marker::read(bridge_settings)? else {
        return Err(RevertError::NotNetbridge { name });
    };
    let Some((original_info, saved)) = &found.original else {
        return Err(RevertError::OriginalMissing {
            uuid: marker.original_uuid,
            uplink: marker.uplink,
        });
    };
    let Some(uplink) = &found.uplink_device else {
        return Err(RevertError::UplinkMissing {
            name: marker.uplink,
        });
    };
    let timing = timing(&Request {
        uplink: marker.uplink.clone(),
        bridge: name.clone(),
        options: super::BridgeOptions::default(),
        rollback_timeout,
        adopt: false,
    })
    .map_err(|e| RevertError::Timeout(e.to_string()))?;
    let runtime = found.bridge_device.as_ref();
    let empty = crate::nm::IpRuntime::default();
    let ipv4 = ip_plan(saved, names::IPV4, runtime.map_or(&empty, |d| &d.ipv4))?;
    let ipv6 = ip_plan(saved, names::IPV6, runtime.map_or(&empty, |d| &d.ipv6))?;
    Ok(RevertPlan {
        bridge: name,
        uplink: marker.uplink,
        uplink_path: uplink.path.clone(),
        bridge_uuid: bridge_info.uuid.clone(),
        port_uuid: marker.port_uuid,
        original: Original {
            uuid: original_info.uuid.clone(),
            id: original_info.id.clone(),
            autoconnect: marker.original_autoconnect,
        },
        goal: goal(&ipv4, &ipv6),
        ipv4,
        ipv6,
        timing,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nothing(name: &str, port_of: Option<&str>) -> RevertFound {
        RevertFound {
            bridge: name.to_owned(),
            bridge_profile: None,
            bridge_device: None,
            uplink_device: None,
            original: None,
            port_of: port_of.map(str::to_owned),
        }
    }

    #[test]
    fn naming_the_uplink_instead_of_its_bridge_points_to_the_bridge() {
        let err = plan_revert(&nothing("ens32", Some("br0")), None).unwrap_err();
        assert_eq!(
            err.to_string(),
            "ens32 is not a bridge but a port of br0: `netbridge revert br0` gives ens32 back its original profile"
        );
        let err = plan_revert(&nothing("br7", None), None).unwrap_err();
        assert_eq!(err.to_string(), "no bridge profile named \"br7\" exists");
    }
}
