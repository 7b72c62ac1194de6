//! D-Bus error names NetworkManager returns (`<interface>.<nick>`), so callers
//! can match them without spelling strings out.

pub const INVALID_ARGUMENTS: &str = "org.freedesktop.NetworkManager.InvalidArguments";
pub const UNKNOWN_DEVICE: &str = "org.freedesktop.NetworkManager.UnknownDevice";
pub const UNKNOWN_CONNECTION: &str = "org.freedesktop.NetworkManager.UnknownConnection";
pub const CONNECTION_NOT_ACTIVE: &str = "org.freedesktop.NetworkManager.ConnectionNotActive";
pub const PERMISSION_DENIED: &str = "org.freedesktop.NetworkManager.PermissionDenied";
pub const SETTINGS_PERMISSION_DENIED: &str =
    "org.freedesktop.NetworkManager.Settings.PermissionDenied";
pub const SETTINGS_INVALID_CONNECTION: &str =
    "org.freedesktop.NetworkManager.Settings.InvalidConnection";
pub const CONNECTION_INVALID_PROPERTY: &str =
    "org.freedesktop.NetworkManager.Settings.Connection.InvalidProperty";
pub const CONNECTION_INVALID_SETTING: &str =
    "org.freedesktop.NetworkManager.Settings.Connection.InvalidSetting";
/// Reapply refused a change the device takes only when activated (a MAC).
pub const DEVICE_INCOMPATIBLE_CONNECTION: &str =
    "org.freedesktop.NetworkManager.Device.IncompatibleConnection";

/// Returned by the bus when NetworkManager does not own its name.
pub const SERVICE_UNKNOWN: &str = "org.freedesktop.DBus.Error.ServiceUnknown";
/// Returned for calls on an object that has gone (e.g. a deactivated connection).
pub const UNKNOWN_METHOD: &str = "org.freedesktop.DBus.Error.UnknownMethod";
pub const UNKNOWN_OBJECT: &str = "org.freedesktop.DBus.Error.UnknownObject";
pub const ACCESS_DENIED: &str = "org.freedesktop.DBus.Error.AccessDenied";
pub const NO_REPLY: &str = "org.freedesktop.DBus.Error.NoReply";
