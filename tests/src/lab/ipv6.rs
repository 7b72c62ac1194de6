//! IPv6 on the lab's LAN: a ULA prefix announced by router advertisements
//! (a second dnsmasq in the LAN namespace, RA only: no DNS, no DHCP), so
//! the host configures SLAAC addresses as on a real dual-stack LAN.

use std::net::Ipv6Addr;

use super::daemon::Daemon;
use super::{cmd, netns, Lab, LabError, LAN_LINK};

/// The LAN's IPv6 prefix (a /64) and the router's address in it.
pub const IPV6_PREFIX: &str = "fd00:250::";
pub const IPV6_ROUTER: Ipv6Addr = Ipv6Addr::new(0xfd00, 0x250, 0, 0, 0, 0, 0, 0xfe);

/// Router advertisements on the LAN, stopped when dropped.
pub struct RouterAdvertisements {
    _daemon: Daemon,
}

impl Lab {
    /// Gives `lan0` the router address and starts announcing the prefix.
    pub fn advertise_ipv6(&self) -> Result<RouterAdvertisements, LabError> {
        let lan = self.lan_ns();
        netns::ip_in(
            lan,
            &["addr", "add", &format!("{IPV6_ROUTER}/64"), "dev", LAN_LINK],
        )?;
        let dir = self.dir();
        let argv = [
            cmd::program("dnsmasq").display().to_string(),
            "--conf-file=/dev/null".into(),
            "--no-hosts".into(),
            "--no-resolv".into(),
            "--port=0".into(),
            "--bind-interfaces".into(),
            format!("--interface={LAN_LINK}"),
            "--keep-in-foreground".into(),
            "--log-facility=-".into(),
            format!("--pid-file={}", dir.join("radv.pid").display()),
            "--enable-ra".into(),
            format!("--dhcp-range={IPV6_PREFIX},ra-only,64,1h"),
            // Announce quickly: a test waits for the address.
            "--ra-param=*,high,3".into(),
        ];
        let mut command = cmd::in_netns(lan, argv);
        let daemon = Daemon::spawn("dnsmasq (RA)", &mut command, &dir.join("radv.log"))?;
        Ok(RouterAdvertisements { _daemon: daemon })
    }
}
