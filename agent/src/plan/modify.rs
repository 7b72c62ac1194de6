//! Pure planning of a modification in place: a bridge netbridge made or
//! adopted whose options differ from what is declared gets the difference
//! (Update2 and Reapply, no re-activation), under the same guard.

use netbridge_dbus::settings::names;
use netbridge_dbus::Settings;
use serde::Serialize;
use zbus::zvariant::OwnedObjectPath;

use super::options::{self, OptionsRestore};
use super::{
    ip_plan, without_legacy_forms, ControllerFound, IpPlan, PlanError, Request, Timing, UplinkFound,
};

#[derive(Debug, Clone, Serialize)]
pub struct ModifyPlan {
    pub bridge: String,
    pub uplink: String,
    #[serde(skip)]
    pub uplink_path: OwnedObjectPath,
    #[serde(skip)]
    pub bridge_path: OwnedObjectPath,
    pub bridge_uuid: String,
    pub port_uuid: String,
    /// One line per difference (`STP off → on`, `MTU auto → 1400`).
    pub changes: Vec<String>,
    pub stp: bool,
    pub mtu: Option<u32>,
    /// The declared MAC, when it changes: the bridge is re-activated for it.
    pub mac: Option<String>,
    /// What to write back if the change is undone without a checkpoint.
    pub restore: OptionsRestore,
    pub port_restore: Option<OptionsRestore>,
    pub ipv4: IpPlan,
    pub ipv6: IpPlan,
    pub timing: Timing,
    #[serde(skip)]
    pub bridge_after: Settings,
    /// The port's profile, when the MTU changes (a port's MTU caps the bridge's).
    #[serde(skip)]
    pub port_after: Option<Settings>,
}

/// `None` when the bridge is as declared.
pub(super) fn plan_modify(
    req: &Request,
    uplink: &UplinkFound,
    controller: &ControllerFound,
    timing: Timing,
) -> Result<Option<ModifyPlan>, PlanError> {
    let (Some(bridge), Some(port)) = (&controller.active, &uplink.active) else {
        return Ok(None);
    };
    let settings_error = |source| PlanError::Settings {
        name: req.bridge.clone(),
        source,
    };
    let (bridge_after, changes) =
        options::converge(&req.options, &bridge.saved).map_err(settings_error)?;
    if changes.is_empty() {
        return Ok(None);
    }
    let mac = options::mac_change(&req.options, &bridge.saved).map_err(settings_error)?;
    let port_mtu = port
        .saved
        .u32(names::ETHERNET, "mtu")
        .map_err(settings_error)?;
    let port_after = match req.options.mtu {
        Some(mtu) if port_mtu != Some(mtu) => {
            let mut s = without_legacy_forms(&port.saved).map_err(settings_error)?;
            s.set(names::ETHERNET, "mtu", mtu);
            Some(s)
        }
        _ => None,
    };
    let port_restore = match &port_after {
        Some(_) => Some(
            OptionsRestore::of(&port.saved)
                .map_err(settings_error)?
                .with_link_mtu(uplink.device.mtu),
        ),
        None => None,
    };
    let mut restore = OptionsRestore::of(&bridge.saved).map_err(settings_error)?;
    if req.options.mtu.is_some_and(|m| m != controller.device.mtu) {
        restore = restore.with_link_mtu(controller.device.mtu);
    }
    let ipv4 =
        ip_plan(&bridge.applied, names::IPV4, &controller.device.ipv4).map_err(settings_error)?;
    let ipv6 =
        ip_plan(&bridge.applied, names::IPV6, &controller.device.ipv6).map_err(settings_error)?;
    Ok(Some(ModifyPlan {
        bridge: req.bridge.clone(),
        uplink: req.uplink.clone(),
        uplink_path: uplink.device.path.clone(),
        bridge_path: controller.device.path.clone(),
        bridge_uuid: bridge.info.uuid.clone(),
        port_uuid: port.info.uuid.clone(),
        changes,
        stp: req.options.stp,
        mtu: req.options.mtu,
        mac,
        restore,
        port_restore,
        ipv4,
        ipv6,
        timing,
        bridge_after,
        port_after,
    }))
}
