//! Reads what the planner needs from NetworkManager.

use crate::nm::{DeviceInfo, Family, Nm, NmError};
use crate::plan::{ActiveProfile, Found, UplinkFound};

/// Everything about the host that matters for converting `uplink`.
pub async fn find(nm: &Nm, uplink: &str) -> Result<Found, NmError> {
    let devices = nm.devices().await?;
    let profiles = nm.profiles().await?;
    let uplink = match devices.iter().find(|d| d.interface == uplink) {
        Some(device) => Some(uplink_found(nm, device, &devices).await?),
        None => None,
    };
    Ok(Found {
        nm_version: nm.version(),
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
    let active = match &device.active_connection {
        Some(path) => {
            let active = nm.active_info(path).await?;
            Some(ActiveProfile {
                info: nm.profile_info(&active.profile).await?,
                applied: nm.applied_settings(&device.path).await?,
                saved: nm.profile_settings(&active.profile).await?,
            })
        }
        None => None,
    };
    Ok(UplinkFound {
        device: device.clone(),
        active,
        controller,
        lease4: nm.lease_options(&device.path, Family::V4).await?,
        lease6: nm.lease_options(&device.path, Family::V6).await?,
        metrics: nm.default_metrics(&device.path).await?,
    })
}
