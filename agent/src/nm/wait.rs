//! Waiting on NetworkManager's signals, always with a deadline.

use std::time::Duration;

use futures_util::StreamExt;
use netbridge_dbus::flags::ActivationStateFlags;
use netbridge_dbus::proxy::active::ActiveConnectionProxy;
use netbridge_dbus::proxy::device::DeviceProxy;
use netbridge_dbus::proxy::manager::NetworkManagerProxy;
use netbridge_dbus::state::{ActiveConnectionState, DeviceState};
use zbus::zvariant::ObjectPath;

use super::{CallContext, Nm, NmError};

/// What "activated" must include before a connection counts as up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ActivationGoal {
    pub ip4: bool,
    pub ip6: bool,
}

/// A network's bridge (NAT, host-only) is up once its IPv4 address is.
pub const NETWORK_UP: ActivationGoal = ActivationGoal {
    ip4: true,
    ip6: false,
};

impl ActivationGoal {
    fn reached(&self, state: ActiveConnectionState, flags: ActivationStateFlags) -> bool {
        state == ActiveConnectionState::Activated
            && (!self.ip4 || flags.contains(ActivationStateFlags::IP4_READY))
            && (!self.ip6 || flags.contains(ActivationStateFlags::IP6_READY))
    }
}

async fn within<T>(
    what: impl Into<String>,
    deadline: Duration,
    fut: impl std::future::Future<Output = Result<T, NmError>>,
) -> Result<T, NmError> {
    tokio::time::timeout(deadline, fut)
        .await
        .map_err(|_| NmError::Timeout {
            what: what.into(),
            seconds: deadline.as_secs(),
        })?
}

impl Nm {
    /// Waits until an active connection is activated with the IP readiness
    /// `goal` asks for; fails as soon as it deactivates.
    pub async fn wait_activated(
        &self,
        active: &ObjectPath<'_>,
        name: &str,
        goal: ActivationGoal,
        deadline: Duration,
    ) -> Result<(), NmError> {
        let what = format!("{name} to be activated");
        within(what, deadline, self.follow_active(active, name, goal)).await
    }

    async fn follow_active(
        &self,
        active: &ObjectPath<'_>,
        name: &str,
        goal: ActivationGoal,
    ) -> Result<(), NmError> {
        // A caching proxy subscribes to PropertiesChanged before reading the
        // current values, so no change between the two is missed.
        let ac = ActiveConnectionProxy::builder(self.connection())
            .path(active.to_owned())
            .call("Connection.Active proxy")?
            .build()
            .await
            .call("Connection.Active proxy")?;
        let mut states = ac.receive_state_changed().await;
        let mut flags = ac.receive_state_flags_changed().await;
        loop {
            let state = ActiveConnectionState::from(ac.state().await.call("reading Active.State")?);
            let bits = ac.state_flags().await.call("reading Active.StateFlags")?;
            let bits = ActivationStateFlags::from_bits_retain(bits);
            if goal.reached(state, bits) {
                return Ok(());
            }
            if matches!(
                state,
                ActiveConnectionState::Deactivating | ActiveConnectionState::Deactivated
            ) {
                return Err(NmError::Unexpected {
                    what: format!("{name} was deactivated while activating"),
                });
            }
            tokio::select! {
                change = states.next() => if change.is_none() { return Err(stream_ended(name)) },
                change = flags.next() => if change.is_none() { return Err(stream_ended(name)) },
            }
        }
    }

    /// Waits until `device` is activated with the profile whose UUID is `uuid`
    /// (e.g. the original profile coming back after a rollback).
    pub async fn wait_device_runs(
        &self,
        device: &ObjectPath<'_>,
        name: &str,
        uuid: &str,
        deadline: Duration,
    ) -> Result<(), NmError> {
        let what = format!("{name} to run profile {uuid}");
        let activated = |state| state == DeviceState::Activated;
        within(
            what,
            deadline,
            self.follow_device(device, name, uuid, activated),
        )
        .await
    }

    /// Waits until `device` runs the profile `uuid` at least as far as IP
    /// configuration: its static addresses are in place, while DHCP may
    /// still wait for its server.
    pub async fn wait_device_configures(
        &self,
        device: &ObjectPath<'_>,
        name: &str,
        uuid: &str,
        deadline: Duration,
    ) -> Result<(), NmError> {
        let what = format!("{name} to configure profile {uuid}");
        let configuring = |state| {
            matches!(
                state,
                DeviceState::IpConfig
                    | DeviceState::IpCheck
                    | DeviceState::Secondaries
                    | DeviceState::Activated
            )
        };
        within(
            what,
            deadline,
            self.follow_device(device, name, uuid, configuring),
        )
        .await
    }

    async fn follow_device(
        &self,
        device: &ObjectPath<'_>,
        name: &str,
        uuid: &str,
        reached: impl Fn(DeviceState) -> bool,
    ) -> Result<(), NmError> {
        let dev = DeviceProxy::builder(self.connection())
            .path(device.to_owned())
            .call("Device proxy")?
            .build()
            .await
            .call("Device proxy")?;
        let mut states = dev.receive_state_changed().await;
        let mut actives = dev.receive_active_connection_changed().await;
        loop {
            let state = DeviceState::from(dev.state().await.call("reading Device.State")?);
            let active = dev
                .active_connection()
                .await
                .call("reading ActiveConnection")?;
            if reached(state) && active.as_str() != netbridge_dbus::NULL_PATH {
                match self.active_info(&active).await {
                    Ok(info) if info.uuid == uuid => return Ok(()),
                    Ok(_) => {}
                    Err(e) if e.is_gone() => {}
                    Err(e) => return Err(e),
                }
            }
            tokio::select! {
                change = states.next() => if change.is_none() { return Err(stream_ended(name)) },
                change = actives.next() => if change.is_none() { return Err(stream_ended(name)) },
            }
        }
    }

    /// Re-evaluates `check` whenever a NetworkManager property changes, until
    /// it is satisfied (`Ok`) or `deadline` passes (then the last `Err`).
    /// NetworkManager may report a device activated a little before its
    /// addresses show on the bus (1.52 publishes them ~100 ms later).
    pub async fn settle<T, E>(
        &self,
        deadline: Duration,
        check: impl AsyncFnMut() -> Result<Result<T, E>, NmError>,
    ) -> Result<Result<T, E>, NmError> {
        self.settle_with(deadline, None, check).await
    }

    /// [`Nm::settle`], also re-evaluating on the kernel's address and route
    /// changes, which NetworkManager does not announce (an IPv6 address
    /// leaving duplicate address detection changes the source address the
    /// kernel picks, and nothing on the bus).
    pub async fn settle_with<T, E>(
        &self,
        deadline: Duration,
        mut kernel: Option<&mut crate::kernel::Changes>,
        mut check: impl AsyncFnMut() -> Result<Result<T, E>, NmError>,
    ) -> Result<Result<T, E>, NmError> {
        // Subscribe before the first look, so no change in between is missed.
        let rule = zbus::MatchRule::builder()
            .msg_type(zbus::message::Type::Signal)
            .interface("org.freedesktop.DBus.Properties")
            .and_then(|b| b.member("PropertiesChanged"))
            .and_then(|b| b.path_namespace("/org/freedesktop/NetworkManager"))
            .map(|b| b.build())
            .call("building a match rule")?;
        let mut changes = zbus::MessageStream::for_match_rule(rule, self.connection(), Some(64))
            .await
            .call("AddMatch PropertiesChanged")?;
        let end = tokio::time::Instant::now() + deadline;
        loop {
            let last = match check().await? {
                Ok(done) => return Ok(Ok(done)),
                Err(not_yet) => not_yet,
            };
            let kernel_change = async {
                match kernel.as_mut() {
                    Some(k) => k.next().await,
                    None => std::future::pending().await,
                }
            };
            let wake = async {
                tokio::select! {
                    change = changes.next() => change.is_some(),
                    () = kernel_change => true,
                }
            };
            match tokio::time::timeout_at(end, wake).await {
                Ok(true) => {}
                Ok(false) => return Err(stream_ended("property changes")),
                Err(_) => return Ok(Err(last)),
            }
        }
    }

    /// Waits until NetworkManager has finished starting (activating what it
    /// autoconnects at boot), so the host is read as it will be.
    pub async fn wait_startup_complete(&self, deadline: Duration) -> Result<(), NmError> {
        within("NetworkManager to finish starting", deadline, async {
            let manager = NetworkManagerProxy::new(self.connection())
                .await
                .call("NetworkManager proxy")?;
            let mut changes = manager.receive_startup_changed().await;
            loop {
                if !manager.startup().await.call("reading Startup")? {
                    return Ok(());
                }
                if changes.next().await.is_none() {
                    return Err(stream_ended("NetworkManager"));
                }
            }
        })
        .await
    }

    /// Waits until the device with this interface name is gone.
    pub async fn wait_device_gone(&self, iface: &str, deadline: Duration) -> Result<(), NmError> {
        let what = format!("device {iface} to disappear");
        within(what, deadline, async {
            // The shared manager proxy does not cache, and only caching proxies stream changes.
            let manager = NetworkManagerProxy::new(self.connection())
                .await
                .call("NetworkManager proxy")?;
            let mut removed = manager.receive_devices_changed().await;
            loop {
                if self.device_by_iface(iface).await?.is_none() {
                    return Ok(());
                }
                if removed.next().await.is_none() {
                    return Err(stream_ended(iface));
                }
            }
        })
        .await
    }
}

fn stream_ended(name: &str) -> NmError {
    NmError::Unexpected {
        what: format!(
            "lost NetworkManager's signals while waiting for {name} (did NetworkManager stop?)"
        ),
    }
}
