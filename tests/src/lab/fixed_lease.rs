//! A DHCP server that changes its mind: a fixed lease for a MAC, read by the
//! lab's dnsmasq on SIGHUP, so a client asking for its old address is told
//! no and offered another.

use std::net::Ipv4Addr;

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use super::files::write_file;
use super::setup::DHCP_HOSTS;
use super::{Lab, LabError};

impl Lab {
    /// From now on dnsmasq leases `address` to `mac` only.
    pub fn fix_lease(&self, mac: &str, address: Ipv4Addr) -> Result<(), LabError> {
        write_file(
            &self.dir().join(DHCP_HOSTS),
            &format!("{mac},{address}\n"),
            0o644,
        )?;
        let pid = self
            .dnsmasq_pid()
            .ok_or_else(|| LabError::Prerequisite("the lab's dnsmasq is not running".into()))?;
        let pid = Pid::from_raw(i32::try_from(pid).unwrap_or(i32::MAX));
        kill(pid, Signal::SIGHUP)
            .map_err(|e| LabError::Prerequisite(format!("cannot signal dnsmasq: {e}")))
    }
}
