//! Reads what the planner needs from NetworkManager.

use crate::nm::{DeviceInfo, Family, Nm, NmError};
use crate::plan::{ActiveProfile, ControllerFound, Found, UplinkFound};

/// Everything about the host that matters for converting `uplink`.
pub async fn find(nm: &Nm, uplink: &str) -> Result<Found, NmError> {
    let devices = nm.devices().await?;
    let profiles = nm.profiles().await?;
    let uplink = match devices.iter().find(|d| d.interface == uplink) {
        Some(device) => Some(uplink_found(nm, device, &devices).await?),
        None => None,
    };
    Ok(Found {
        devices,
        profiles,
        uplink,
    })
}

async fn uplink_found(
    nm: &Nm,
    device: &DeviceInfo,
    devices: &[DeviceInfo],
) -> Result<UplinkFound, NmError> {
    let controller = device.controller(devices).map(|d| d.interface.clone());
    let controller_found = match device.controller(devices) {
        Some(bridge) => Some(ControllerFound {
            device: bridge.clone(),
            active: active_profile(nm, bridge).await?,
            ports: bridge.ports(devices).map(|p| p.interface.clone()).collect(),
        }),
        None => None,
    };
    Ok(UplinkFound {
        device: device.clone(),
        active: active_profile(nm, device).await?,
        controller,
        controller_found,
        lease4: nm.lease_options(&device.path, Family::V4).await?,
        lease6: nm.lease_options(&device.path, Family::V6).await?,
        metrics: nm.default_metrics(&device.path).await?,
    })
}

/// The profile a device runs: as stored, and as applied.
async fn active_profile(nm: &Nm, device: &DeviceInfo) -> Result<Option<ActiveProfile>, NmError> {
    let Some(path) = &device.active_connection else {
        return Ok(None);
    };
    let active = nm.active_info(path).await?;
    Ok(Some(ActiveProfile {
        info: nm.profile_info(&active.profile).await?,
        applied: nm.applied_settings(&device.path).await?,
        saved: nm.profile_settings(&active.profile).await?,
    }))
}
