//! Pure planning of an adoption: a bridge made by hand (the plain nmcli
//! recipe) whose only port is the uplink becomes netbridge's — marked as
//! such, with the declared options (STP off unless asked for), and with a
//! plain profile for the uplink that `revert` goes back to, exactly as a
//! conversion leaves one behind.

use netbridge_dbus::settings::names;
use netbridge_dbus::{Settings, SettingsError};
use serde::Serialize;
use zbus::zvariant::OwnedObjectPath;

use super::options::{self, OptionsRestore};
use super::{
    ip_plan, without_legacy_forms, ActiveProfile, Found, IpPlan, Marker, Original, PlanError,
    Request, Timing, UplinkFound,
};
use crate::nm::DeviceInfo;

/// The bridge the uplink is a port of, as found.
#[derive(Debug, Clone)]
pub struct ControllerFound {
    pub device: DeviceInfo,
    pub active: Option<ActiveProfile>,
    /// Interface names of all its ports.
    pub ports: Vec<String>,
}

impl ControllerFound {
    /// The bridge is already netbridge's (its profile carries the marker).
    pub fn is_netbridge(&self) -> bool {
        self.active
            .as_ref()
            .is_some_and(|a| Marker::read(&a.saved).ok().flatten().is_some())
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct AdoptPlan {
    pub bridge: String,
    pub uplink: String,
    #[serde(skip)]
    pub uplink_path: OwnedObjectPath,
    #[serde(skip)]
    pub bridge_path: OwnedObjectPath,
    /// The bridge's own profile, kept and marked.
    pub bridge_id: String,
    pub bridge_uuid: String,
    /// The uplink's port profile, kept.
    pub port_id: String,
    pub port_uuid: String,
    /// The plain profile made for the uplink, for `revert` (autoconnect off).
    pub original: Original,
    /// What changes on the bridge, one line each (`STP on → off`).
    pub changes: Vec<String>,
    /// Spanning tree as declared.
    pub stp: bool,
    /// The declared MAC, when it changes: the bridge is re-activated for it.
    pub mac: Option<String>,
    /// What to write back if the change is undone without a checkpoint.
    pub restore: OptionsRestore,
    /// The bridge's IP configuration, unchanged: what verification expects.
    pub ipv4: IpPlan,
    pub ipv6: IpPlan,
    pub timing: Timing,
    /// The bridge profile after the adoption: marked, options applied.
    #[serde(skip)]
    pub bridge_after: Settings,
    /// The plain profile for the uplink.
    #[serde(skip)]
    pub original_profile: Settings,
}

/// Plans the adoption of `controller` (which has `uplink` as a port).
pub(super) fn plan_adopt(
    req: &Request,
    found: &Found,
    uplink: &UplinkFound,
    controller: &ControllerFound,
    original_uuid: &str,
    timing: Timing,
) -> Result<AdoptPlan, PlanError> {
    let bridge = &req.bridge;
    let others: Vec<&String> = controller
        .ports
        .iter()
        .filter(|p| **p != req.uplink)
        .collect();
    if !others.is_empty() {
        return Err(PlanError::AdoptOtherPorts {
            bridge: bridge.clone(),
            ports: others.iter().map(|p| p.to_string()).collect(),
        });
    }
    let (Some(bridge_active), Some(port_active)) = (&controller.active, &uplink.active) else {
        return Err(PlanError::AdoptInactive {
            bridge: bridge.clone(),
            uplink: req.uplink.clone(),
        });
    };
    let settings_error = |source| PlanError::Settings {
        name: bridge.clone(),
        source,
    };
    let (mut bridge_after, mut changes) =
        options::converge(&req.options, &bridge_active.saved).map_err(settings_error)?;
    let mac = options::mac_change(&req.options, &bridge_active.saved).map_err(settings_error)?;
    changes.push("marked as netbridge's".to_owned());
    Marker {
        uplink: req.uplink.clone(),
        port_uuid: port_active.info.uuid.clone(),
        original_uuid: original_uuid.to_owned(),
        original_autoconnect: true,
    }
    .write(&mut bridge_after);
    let id = free_id(&req.uplink, found);
    let original_profile = plain_profile(
        req,
        &bridge_active.applied,
        &port_active.applied,
        original_uuid,
        &id,
    )
    .map_err(settings_error)?;
    let ipv4 = ip_plan(&bridge_active.applied, names::IPV4, &controller.device.ipv4)
        .map_err(settings_error)?;
    let ipv6 = ip_plan(&bridge_active.applied, names::IPV6, &controller.device.ipv6)
        .map_err(settings_error)?;
    Ok(AdoptPlan {
        bridge: bridge.clone(),
        uplink: req.uplink.clone(),
        uplink_path: uplink.device.path.clone(),
        bridge_path: controller.device.path.clone(),
        bridge_id: bridge_active.info.id.clone(),
        bridge_uuid: bridge_active.info.uuid.clone(),
        port_id: port_active.info.id.clone(),
        port_uuid: port_active.info.uuid.clone(),
        original: Original {
            uuid: original_uuid.to_owned(),
            id,
            autoconnect: true,
        },
        changes,
        restore: OptionsRestore::of(&bridge_active.saved).map_err(settings_error)?,
        stp: req.options.stp,
        mac,
        ipv4,
        ipv6,
        timing,
        bridge_after,
        original_profile,
    })
}

/// A plain profile for the uplink carrying the bridge's IP configuration,
/// saved with autoconnect off: what the uplink runs after `revert`.
fn plain_profile(
    req: &Request,
    bridge_applied: &Settings,
    port_applied: &Settings,
    uuid: &str,
    id: &str,
) -> Result<Settings, SettingsError> {
    let source = without_legacy_forms(bridge_applied)?;
    let mut s = Settings::new();
    let kind = port_applied
        .str(names::CONNECTION, "type")?
        .unwrap_or(names::ETHERNET)
        .to_owned();
    s.set(names::CONNECTION, "id", id)
        .set(names::CONNECTION, "uuid", uuid)
        .set(names::CONNECTION, "type", kind.as_str())
        .set(names::CONNECTION, "interface-name", req.uplink.as_str())
        .set(names::CONNECTION, "autoconnect", false)
        .ensure_setting(names::ETHERNET);
    for ip in [names::IPV4, names::IPV6] {
        for key in source.keys(ip).map(str::to_owned).collect::<Vec<_>>() {
            if let Some(value) = source.raw(ip, &key) {
                s.set(ip, &key, value.clone());
            }
        }
    }
    Ok(s)
}

/// The uplink's name as the profile id, unless a profile has it already.
fn free_id(uplink: &str, found: &Found) -> String {
    let taken = |id: &str| found.profiles.iter().any(|p| p.id == id);
    if !taken(uplink) {
        return uplink.to_owned();
    }
    let plain = format!("{uplink}-plain");
    if !taken(&plain) {
        return plain;
    }
    (2..)
        .map(|n| format!("{uplink}-plain-{n}"))
        .find(|id| !taken(id))
        .unwrap_or(plain)
}
