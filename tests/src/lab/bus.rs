//! The few questions the lab asks NetworkManager, through `dbus-send`.
//!
//! The lab only needs to know when NM is ready; `dbus-send` (package
//! dbus-bin, pulled in by dbus) answers that without an async D-Bus stack in
//! the test support crate.

use std::process::Command;

use super::cmd;
use super::LabError;

const NM: &str = "org.freedesktop.NetworkManager";
const NM_PATH: &str = "/org/freedesktop/NetworkManager";

/// NM's device state for an activated device (`NM_DEVICE_STATE_ACTIVATED`).
pub(crate) const DEVICE_ACTIVATED: u32 = 100;

pub(crate) struct Bus<'a> {
    pub(crate) address: &'a str,
}

impl Bus<'_> {
    /// Whether some process owns NM's well-known name.
    pub(crate) fn nm_present(&self) -> Result<bool, LabError> {
        let reply = self.call(
            "org.freedesktop.DBus",
            "/org/freedesktop/DBus",
            "org.freedesktop.DBus.NameHasOwner",
            &[&format!("string:{NM}")],
        )?;
        parse_bool(&reply)
    }

    /// Whether NM has finished activating what it activates at startup
    /// (its `Startup` property turned false).
    pub(crate) fn nm_started(&self) -> Result<bool, LabError> {
        let reply = self.property(NM_PATH, NM, "Startup")?;
        parse_bool(&reply).map(|starting| !starting)
    }

    /// The state of the device `iface`, or None if NM has no such device.
    pub(crate) fn device_state(&self, iface: &str) -> Result<Option<u32>, LabError> {
        let path = match self.call(
            NM,
            NM_PATH,
            "org.freedesktop.NetworkManager.GetDeviceByIpIface",
            &[&format!("string:{iface}")],
        ) {
            Ok(reply) => reply.trim().to_owned(),
            Err(LabError::Command { .. }) => return Ok(None),
            Err(e) => return Err(e),
        };
        let reply = self.property(&path, "org.freedesktop.NetworkManager.Device", "State")?;
        parse_u32(&reply).map(Some)
    }

    fn property(&self, path: &str, interface: &str, name: &str) -> Result<String, LabError> {
        self.call(
            NM,
            path,
            "org.freedesktop.DBus.Properties.Get",
            &[&format!("string:{interface}"), &format!("string:{name}")],
        )
    }

    fn call(
        &self,
        dest: &str,
        path: &str,
        method: &str,
        args: &[&str],
    ) -> Result<String, LabError> {
        let mut command = Command::new(cmd::program("dbus-send"));
        command
            .arg(format!("--bus={}", self.address))
            .args(["--print-reply=literal", "--reply-timeout=5000"])
            .arg(format!("--dest={dest}"))
            .args([path, method])
            .args(args);
        cmd::stdout(&mut command)
    }
}

/// The last word of a literal reply such as `   variant       boolean true`.
fn last_word(reply: &str) -> &str {
    reply.split_whitespace().last().unwrap_or("")
}

fn parse_bool(reply: &str) -> Result<bool, LabError> {
    match last_word(reply) {
        "true" => Ok(true),
        "false" => Ok(false),
        _ => Err(parse_error(reply)),
    }
}

fn parse_u32(reply: &str) -> Result<u32, LabError> {
    last_word(reply).parse().map_err(|_| parse_error(reply))
}

fn parse_error(reply: &str) -> LabError {
    LabError::Parse {
        command: "dbus-send".to_owned(),
        detail: format!("unexpected reply {reply:?}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn literal_replies_parse() {
        assert!(parse_bool("   boolean true\n").unwrap());
        assert!(!parse_bool("   variant       boolean false\n").unwrap());
        assert_eq!(parse_u32("   variant       uint32 100\n").unwrap(), 100);
        assert!(parse_u32("   variant       string \"x\"\n").is_err());
    }
}
