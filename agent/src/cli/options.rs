//! The bridge options on the command line: the same names, ranges and
//! meaning as the configuration's keys (see `netbridge.toml`), turned into
//! the one typed [`BridgeOptions`] the planner takes.

use super::output::Fatal;
use crate::plan::{options, BridgeOptions};

/// `--confirm SECS`, the same on every changing verb.
#[derive(Debug, Clone, Copy, Default, clap::Args)]
pub struct ConfirmArg {
    /// Keep the proven change on trial for SECS seconds, nothing written to
    /// disk: `netbridge confirm` (from a new connection, through the new
    /// path) commits it; without it, it rolls back by itself. Exit 9 while
    /// it waits.
    #[arg(
        long = "confirm",
        id = "confirm",
        value_name = "SECS",
        value_parser = super::convert::parse_timeout
    )]
    pub seconds: Option<u32>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum OnOff {
    #[value(aliases = ["yes", "true"])]
    On,
    #[value(aliases = ["no", "false"])]
    Off,
}

impl OnOff {
    fn on(self) -> bool {
        self == OnOff::On
    }
}

#[derive(Debug, Clone, clap::Args)]
pub struct BridgeOptionArgs {
    /// Spanning tree on the bridge (on/off, yes/no, true/false). Off by default: with a
    /// single uplink it only delays forwarding by about 30 s.
    #[arg(long, value_enum, default_value_t = OnOff::Off)]
    pub stp: OnOff,

    /// STP forward delay in seconds, 2–30 [default: 2 with STP off,
    /// NetworkManager's 15 with STP on].
    #[arg(long, value_name = "SECS")]
    pub forward_delay: Option<u32>,

    /// STP hello time in seconds, 1–10.
    #[arg(long, value_name = "SECS")]
    pub hello_time: Option<u32>,

    /// STP max age in seconds, 6–40.
    #[arg(long, value_name = "SECS")]
    pub max_age: Option<u32>,

    /// The bridge's STP priority, 0–65535 (lower wins the root election).
    #[arg(long, value_name = "N")]
    pub stp_priority: Option<u32>,

    /// IGMP/MLD snooping on the bridge (on/off, yes/no, true/false).
    #[arg(long, value_enum, value_name = "ON|OFF")]
    pub multicast_snooping: Option<OnOff>,

    /// The bridge's (and its port's) MTU, 68–65535 [default: the uplink's].
    #[arg(long, value_name = "BYTES")]
    pub mtu: Option<u32>,

    /// The bridge's MAC address [default: the uplink's]. A change re-activates
    /// the bridge (NetworkManager applies a MAC no other way).
    #[arg(long, value_name = "MAC", value_parser = options::declared_mac)]
    pub mac: Option<String>,
}

impl BridgeOptionArgs {
    /// The options, or exit 2 for a value out of range.
    pub fn options(&self) -> Result<BridgeOptions, Fatal> {
        let declared = BridgeOptions {
            stp: self.stp.on(),
            forward_delay: self.forward_delay,
            hello_time: self.hello_time,
            max_age: self.max_age,
            priority: self.stp_priority,
            multicast_snooping: self.multicast_snooping.map(OnOff::on),
            mtu: self.mtu,
            mac: self.mac.clone(),
        };
        options::validate(&declared)
            .map_err(|e| Fatal::refused(format!("--{e}; nothing was changed")))?;
        Ok(declared)
    }
}
