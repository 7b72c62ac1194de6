//! Flag words NetworkManager takes and returns (values from `nm-dbus-interface.h`).

use bitflags::bitflags;

bitflags! {
    /// `CheckpointCreate` flags (NMCheckpointCreateFlags).
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub struct CheckpointCreateFlags: u32 {
        const DESTROY_ALL = 0x01;
        /// On rollback, delete profiles added after the checkpoint (1.6).
        const DELETE_NEW_CONNECTIONS = 0x02;
        /// On rollback, disconnect devices that appeared later; needs an empty device list (1.6).
        const DISCONNECT_NEW_DEVICES = 0x04;
        const ALLOW_OVERLAPPING = 0x08;
        const NO_PRESERVE_EXTERNAL_PORTS = 0x10;
        /// Also revert global DNS set over D-Bus (1.48).
        const TRACK_INTERNAL_GLOBAL_DNS = 0x20;
    }
}

bitflags! {
    /// `Settings.AddConnection2` flags (NMSettingsAddConnection2Flags).
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub struct AddConnection2Flags: u32 {
        const TO_DISK = 0x01;
        const IN_MEMORY = 0x02;
        const BLOCK_AUTOCONNECT = 0x20;
    }
}

bitflags! {
    /// `Settings.Connection.Update2` flags (NMSettingsUpdate2Flags).
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub struct Update2Flags: u32 {
        const TO_DISK = 0x01;
        const IN_MEMORY = 0x02;
        const IN_MEMORY_DETACHED = 0x04;
        const IN_MEMORY_ONLY = 0x08;
        const VOLATILE = 0x10;
        const BLOCK_AUTOCONNECT = 0x20;
        const NO_REAPPLY = 0x40;
    }
}

bitflags! {
    /// `Connection.Active.StateFlags` (NMActivationStateFlags).
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub struct ActivationStateFlags: u32 {
        const IS_CONTROLLER = 0x01;
        const IS_PORT = 0x02;
        const LAYER2_READY = 0x04;
        const IP4_READY = 0x08;
        const IP6_READY = 0x10;
        const CONTROLLER_HAS_PORTS = 0x20;
        const LIFETIME_BOUND_TO_PROFILE_VISIBILITY = 0x40;
        const EXTERNAL = 0x80;
    }
}

bitflags! {
    /// `Settings.Connection.Flags` (NMSettingsConnectionFlags).
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub struct SettingsConnectionFlags: u32 {
        const UNSAVED = 0x01;
        const NM_GENERATED = 0x02;
        const VOLATILE = 0x04;
        const EXTERNAL = 0x08;
    }
}
