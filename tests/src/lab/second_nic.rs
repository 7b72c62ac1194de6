//! A second NIC on the lab host: `ens33`, wired to `lan1` in the LAN
//! namespace on a subnet of its own, with its own default route — a host
//! whose traffic leaves through whichever default route has the lower metric.

use std::net::Ipv4Addr;

use super::{cmd, netns, Lab, LabError};

/// The second NIC in the host namespace.
pub const SECOND_NIC: &str = "ens33";
/// Its peer in the LAN namespace.
const SECOND_LAN_LINK: &str = "lan1";
/// The second NIC's gateway (on `lan1`) and the host's address there.
pub const SECOND_GATEWAY: Ipv4Addr = Ipv4Addr::new(192, 168, 107, 254);
pub const SECOND_ADDRESS: Ipv4Addr = Ipv4Addr::new(192, 168, 107, 10);

impl Lab {
    /// Adds `ens33` with a profile of its own (192.168.107.10/24, default
    /// route via 192.168.107.254 at `metric`) and waits until it is up.
    pub fn add_second_nic(&self, metric: u32) -> Result<(), LabError> {
        let (h, l) = (self.host_ns(), self.lan_ns());
        netns::add_veth((h, SECOND_NIC), (l, SECOND_LAN_LINK))?;
        netns::ip_in(
            l,
            &[
                "addr",
                "add",
                &format!("{SECOND_GATEWAY}/24"),
                "dev",
                SECOND_LAN_LINK,
            ],
        )?;
        let address = format!("{SECOND_ADDRESS}/24");
        let gateway = SECOND_GATEWAY.to_string();
        let metric = metric.to_string();
        cmd::run(&mut self.host_command([
            "nmcli",
            "connection",
            "add",
            "type",
            "ethernet",
            "ifname",
            SECOND_NIC,
            "con-name",
            SECOND_NIC,
            "ipv4.method",
            "manual",
            "ipv4.addresses",
            &address,
            "ipv4.gateway",
            &gateway,
            "ipv4.route-metric",
            &metric,
            "ipv6.method",
            "ignore",
        ]))?;
        cmd::run(&mut self.host_command([
            "nmcli",
            "--wait",
            "30",
            "connection",
            "up",
            SECOND_NIC,
        ]))?;
        Ok(())
    }

    /// The interface the host's traffic to `target` leaves through (`ip route get`).
    pub fn egress(&self, target: &str) -> Result<String, LabError> {
        let routes = netns::ip_json(self.host_ns(), &["route", "get", target])?;
        routes[0]["dev"]
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| LabError::Parse {
                command: format!("ip -j route get {target}"),
                detail: format!("no dev in {routes}"),
            })
    }
}
