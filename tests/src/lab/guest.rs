use std::ffi::OsStr;
use std::process::{Command, Output};

use super::cmd;

/// A guest (a VM or container, as far as the network goes): its own
/// namespace with `eth0`, whose peer sits in the lab's host namespace like a
/// VM's tap device.
///
/// The namespace belongs to the [`Lab`](super::Lab) and is deleted with it;
/// a `Guest` is only a handle and may outlive neither.
#[derive(Debug, Clone)]
pub struct Guest {
    pub(crate) ns: String,
    pub(crate) host_link: String,
    pub(crate) bus_address: String,
}

impl Guest {
    /// The guest's network namespace.
    pub fn ns(&self) -> &str {
        &self.ns
    }

    /// The name of the guest's link in the host namespace (the "tap").
    pub fn host_link(&self) -> &str {
        &self.host_link
    }

    /// A command that runs `argv` in the guest's namespace.
    pub fn command<I, S>(&self, argv: I) -> Command
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let mut command = cmd::in_netns(&self.ns, argv);
        // Keeps a stray nmcli in a guest away from the machine's own NM.
        command.env("DBUS_SYSTEM_BUS_ADDRESS", &self.bus_address);
        command
    }

    /// Runs `argv` in the guest's namespace and returns its output.
    ///
    /// # Panics
    /// If the command cannot be started at all (`ip` missing).
    pub fn exec<I, S>(&self, argv: I) -> Output
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let mut command = self.command(argv);
        match cmd::output(&mut command) {
            Ok(out) => out,
            Err(e) => panic!("lab guest {}: {e}", self.ns),
        }
    }
}
