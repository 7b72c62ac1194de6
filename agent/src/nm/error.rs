//! Errors of the NetworkManager layer. D-Bus error names are kept as they
//! came, so the transaction can decide what a failure means.

use netbridge_dbus::errors;
use netbridge_dbus::SettingsError;
use zbus::DBusError;

#[derive(Debug, thiserror::Error)]
pub enum NmError {
    #[error("cannot reach the D-Bus system bus ({address}): {source}")]
    NoBus {
        address: String,
        #[source]
        source: Box<zbus::Error>,
    },
    #[error("NetworkManager is not running (nobody owns org.freedesktop.NetworkManager on the system bus {address})")]
    NotRunning { address: String },
    #[error("NetworkManager is still starting on the system bus {address} (its objects are not there yet)")]
    Starting { address: String },
    #[error(
        "NetworkManager refused {call}: permission denied ({name}{}); run netbridge as root{}",
        nm_words(message),
        polkit_hint(call)
    )]
    PermissionDenied {
        call: String,
        name: String,
        message: String,
    },
    #[error("NetworkManager {call} failed: {name}: {message}")]
    Method {
        call: String,
        name: String,
        message: String,
    },
    #[error("NetworkManager {call} failed: {source}")]
    Bus {
        call: String,
        #[source]
        source: Box<zbus::Error>,
    },
    #[error("unexpected settings from NetworkManager: {0}")]
    Settings(#[from] SettingsError),
    #[error("timed out after {seconds} s waiting for {what}")]
    Timeout { what: String, seconds: u64 },
    #[error("{what}")]
    Unexpected { what: String },
}

impl NmError {
    /// Wraps a zbus error with the call it came from, keeping NM's error name.
    pub fn from_call(call: impl Into<String>, source: zbus::Error) -> Self {
        let call = call.into();
        let (name, message) = match &source {
            zbus::Error::MethodError(name, message, _) => {
                (name.to_string(), message.clone().unwrap_or_default())
            }
            zbus::Error::FDO(fdo) => (
                fdo.name().to_string(),
                fdo.description().unwrap_or_default().to_owned(),
            ),
            _ => {
                return NmError::Bus {
                    call,
                    source: Box::new(source),
                }
            }
        };
        if is_permission_error(&name) {
            NmError::PermissionDenied {
                call,
                name,
                message,
            }
        } else {
            NmError::Method {
                call,
                name,
                message,
            }
        }
    }

    /// The D-Bus error name NetworkManager (or the bus) answered with, if any.
    pub fn dbus_name(&self) -> Option<&str> {
        match self {
            NmError::Method { name, .. } | NmError::PermissionDenied { name, .. } => Some(name),
            _ => None,
        }
    }

    /// The object the call was made on no longer exists (e.g. a deactivated connection).
    pub fn is_gone(&self) -> bool {
        matches!(
            self.dbus_name(),
            Some(errors::UNKNOWN_METHOD | errors::UNKNOWN_OBJECT)
        )
    }

    /// NetworkManager vanished from the bus (stopped or restarted).
    pub fn is_nm_gone(&self) -> bool {
        matches!(
            self.dbus_name(),
            Some(errors::SERVICE_UNKNOWN | errors::NO_REPLY)
        ) || matches!(self, NmError::NotRunning { .. } | NmError::Starting { .. })
    }
}

fn is_permission_error(name: &str) -> bool {
    name == errors::PERMISSION_DENIED
        || name == errors::SETTINGS_PERMISSION_DENIED
        || name == errors::ACCESS_DENIED
        || name.ends_with(".PermissionDenied")
}

fn nm_words(message: &str) -> String {
    match message.trim() {
        "" => String::new(),
        words => format!(": {words}"),
    }
}

/// The polkit action NetworkManager checks for a call, so an operator who
/// must not be root knows what to grant.
fn polkit_action(call: &str) -> Option<&'static str> {
    match call {
        c if c.starts_with("Checkpoint") => {
            Some("org.freedesktop.NetworkManager.checkpoint-rollback")
        }
        "AddConnection2" | "Update2" | "Delete" => {
            Some("org.freedesktop.NetworkManager.settings.modify.system")
        }
        "ActivateConnection" | "DeactivateConnection" | "Device.Reapply" | "Device.Delete" => {
            Some("org.freedesktop.NetworkManager.network-control")
        }
        _ => None,
    }
}

fn polkit_hint(call: &str) -> String {
    polkit_action(call)
        .map(|action| format!(" or grant the polkit action {action}"))
        .unwrap_or_default()
}

/// Adds the call's name to a zbus result.
pub trait CallContext<T> {
    fn call(self, call: &str) -> Result<T, NmError>;
}

impl<T> CallContext<T> for zbus::Result<T> {
    fn call(self, call: &str) -> Result<T, NmError> {
        self.map_err(|e| NmError::from_call(call, e))
    }
}

impl<T> CallContext<T> for zbus::fdo::Result<T> {
    fn call(self, call: &str) -> Result<T, NmError> {
        self.map_err(|e| NmError::from_call(call, zbus::Error::from(e)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refusal_names_nm_words_and_the_polkit_action_to_grant() {
        let e = NmError::PermissionDenied {
            call: "CheckpointCreate".into(),
            name: "org.freedesktop.NetworkManager.PermissionDenied".into(),
            message: "Not authorized to checkpoint/rollback".into(),
        };
        assert_eq!(
            e.to_string(),
            "NetworkManager refused CheckpointCreate: permission denied \
             (org.freedesktop.NetworkManager.PermissionDenied: Not authorized to checkpoint/rollback); \
             run netbridge as root or grant the polkit action org.freedesktop.NetworkManager.checkpoint-rollback"
        );
    }
}
