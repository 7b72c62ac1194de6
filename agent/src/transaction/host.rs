//! The seam between the guarded engine (with recovery) and the host: exactly
//! the calls they make — NetworkManager's checkpoints, the change-specific
//! restore behind an undo, and the stop signal. NetworkManager implements it
//! for real; the engine's unit tests drive it with an in-memory fake to reach
//! the failures a lab cannot provoke on cue.

use std::future::Future;

use netbridge_dbus::flags::{CheckpointCreateFlags, Update2Flags};
use netbridge_dbus::state::RollbackResult;
use zbus::zvariant::{ObjectPath, OwnedObjectPath};

use crate::journal::{Record, Save};
use crate::nm::{Nm, NmError};
use crate::report::Progress;

/// What the engine and recovery ask of the host. `Clone + 'static`: the
/// checkpoint's keep-alive runs as a task of its own.
pub trait Host: Clone + Send + Sync + 'static {
    /// A checkpoint on `devices` that rolls back by itself after `timeout` s.
    fn checkpoint_create(
        &self,
        devices: &[OwnedObjectPath],
        timeout: u32,
    ) -> impl Future<Output = Result<OwnedObjectPath, NmError>> + Send;
    /// When a checkpoint was created (CLOCK_BOOTTIME ms), to tell ours from others.
    fn checkpoint_created(
        &self,
        checkpoint: &ObjectPath<'_>,
    ) -> impl Future<Output = Result<i64, NmError>> + Send;
    fn checkpoint_devices(
        &self,
        checkpoint: &ObjectPath<'_>,
    ) -> impl Future<Output = Result<Vec<OwnedObjectPath>, NmError>> + Send;
    fn checkpoint_adjust(
        &self,
        checkpoint: &ObjectPath<'_>,
        seconds: u32,
    ) -> impl Future<Output = Result<(), NmError>> + Send;
    fn checkpoint_destroy(
        &self,
        checkpoint: &ObjectPath<'_>,
    ) -> impl Future<Output = Result<(), NmError>> + Send;
    /// Rolls back; returns the devices that could not be restored.
    fn checkpoint_rollback(
        &self,
        checkpoint: &ObjectPath<'_>,
    ) -> impl Future<Output = Result<Vec<(String, RollbackResult)>, NmError>> + Send;
    fn checkpoints(&self) -> impl Future<Output = Result<Vec<OwnedObjectPath>, NmError>> + Send;
    fn device_by_iface(
        &self,
        iface: &str,
    ) -> impl Future<Output = Result<Option<OwnedObjectPath>, NmError>> + Send;
    /// What must go before the checkpoint is rolled back (see `recovery::undo`).
    fn clear_leftovers(
        &self,
        record: &Record,
        progress: &Progress,
    ) -> impl Future<Output = Result<(), NmError>> + Send;
    /// Brings the recorded change's devices and profiles back as they were,
    /// after the checkpoint was rolled back (`rolled_back`) or was lost.
    fn restore(
        &self,
        record: &Record,
        rolled_back: bool,
        progress: &Progress,
    ) -> impl Future<Output = Result<(), NmError>> + Send;
    /// Makes one of a commit's writes (the same whether it commits at once
    /// or when `netbridge confirm` runs).
    fn save(&self, save: &Save) -> impl Future<Output = Result<(), NmError>> + Send;
    /// Lets an uplink whose DHCP lease was held for the change run its saved
    /// profile again.
    fn release_hold(&self, iface: &str, progress: &Progress) -> impl Future<Output = ()> + Send;
    /// Resolves when a stop is asked for after this call: a stop that came
    /// earlier is not seen, as with signals.
    fn interrupted(&self) -> impl Future<Output = &'static str> + Send + 'static;
}

impl Host for Nm {
    async fn checkpoint_create(
        &self,
        devices: &[OwnedObjectPath],
        timeout: u32,
    ) -> Result<OwnedObjectPath, NmError> {
        // Profiles the change adds are deleted by a rollback too.
        let flags = CheckpointCreateFlags::DELETE_NEW_CONNECTIONS;
        Nm::checkpoint_create(self, devices, timeout, flags).await
    }

    async fn checkpoint_created(&self, checkpoint: &ObjectPath<'_>) -> Result<i64, NmError> {
        Nm::checkpoint_created(self, checkpoint).await
    }

    async fn checkpoint_devices(
        &self,
        checkpoint: &ObjectPath<'_>,
    ) -> Result<Vec<OwnedObjectPath>, NmError> {
        Nm::checkpoint_devices(self, checkpoint).await
    }

    async fn checkpoint_adjust(
        &self,
        checkpoint: &ObjectPath<'_>,
        seconds: u32,
    ) -> Result<(), NmError> {
        Nm::checkpoint_adjust(self, checkpoint, seconds).await
    }

    async fn checkpoint_destroy(&self, checkpoint: &ObjectPath<'_>) -> Result<(), NmError> {
        Nm::checkpoint_destroy(self, checkpoint).await
    }

    async fn checkpoint_rollback(
        &self,
        checkpoint: &ObjectPath<'_>,
    ) -> Result<Vec<(String, RollbackResult)>, NmError> {
        Nm::checkpoint_rollback(self, checkpoint).await
    }

    async fn checkpoints(&self) -> Result<Vec<OwnedObjectPath>, NmError> {
        Nm::checkpoints(self).await
    }

    async fn device_by_iface(&self, iface: &str) -> Result<Option<OwnedObjectPath>, NmError> {
        Nm::device_by_iface(self, iface).await
    }

    async fn clear_leftovers(&self, record: &Record, progress: &Progress) -> Result<(), NmError> {
        crate::recovery::clear_leftovers(self, record, progress).await
    }

    async fn restore(
        &self,
        record: &Record,
        rolled_back: bool,
        progress: &Progress,
    ) -> Result<(), NmError> {
        crate::recovery::restore(self, record, rolled_back, progress).await
    }

    async fn save(&self, save: &Save) -> Result<(), NmError> {
        match save {
            Save::ToDisk { uuid } => {
                let path =
                    self.profile_by_uuid(uuid)
                        .await?
                        .ok_or_else(|| NmError::Unexpected {
                            what: format!("profile {uuid} disappeared during the change"),
                        })?;
                self.update_profile(&path, None, Update2Flags::TO_DISK)
                    .await
            }
            Save::Autoconnect { uuid, id, value } => {
                crate::recovery::set_autoconnect(self, uuid, id, *value).await
            }
            Save::Delete { uuid } => match self.profile_by_uuid(uuid).await? {
                Some(path) => self.delete_profile(&path).await,
                None => Ok(()),
            },
        }
    }

    async fn release_hold(&self, iface: &str, progress: &Progress) {
        super::convert::release_hold(self, iface, progress).await;
    }

    fn interrupted(&self) -> impl Future<Output = &'static str> + Send + 'static {
        super::interrupted()
    }
}
