//! Pure planning of `revert`: bring a converted host's original profile back
//! on the uplink and remove the bridge netbridge made.

use netbridge_dbus::settings::names;
use netbridge_dbus::{Settings, SettingsError};
use serde::Serialize;
use zbus::zvariant::OwnedObjectPath;

use super::{
    goal, ip_plan, timing, without_legacy_forms, IpPlan, Marker, Original, Request, Timing,
};
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
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum RevertError {
    #[error("no bridge profile named {name:?} exists")]
    NoBridge { name: String },
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
    /// The original profile as it will be saved: autoconnect as before the conversion.
    #[serde(skip)]
    pub original_after: Settings,
}

pub fn plan_revert(
    found: &RevertFound,
    rollback_timeout: Option<u32>,
) -> Result<RevertPlan, RevertError> {
    let name = found.bridge.clone();
    let Some((bridge_info, bridge_settings)) = &found.bridge_profile else {
        return Err(RevertError::NoBridge { name });
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
    let mut original_after = without_legacy_forms(saved)?;
    original_after.set(
        names::CONNECTION,
        "autoconnect",
        marker.original_autoconnect,
    );
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
        original_after,
    })
}
