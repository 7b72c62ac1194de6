//! Every configuration key, described for people: netbridge.toml(5) is
//! generated from this table, and a unit test holds it to the keys the
//! parser ([`super::raw`]) accepts, so the manual cannot drift from the code.

/// Where a key lives in the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Table {
    /// `[defaults]`: what every `[[bridge]]` gets unless it sets the key.
    Defaults,
    /// `[[bridge]]`: one bridge (bridged uplink) or network (NAT, host-only).
    Bridge,
}

impl Table {
    /// The table as written in TOML.
    pub fn header(self) -> &'static str {
        match self {
            Table::Defaults => "[defaults]",
            Table::Bridge => "[[bridge]]",
        }
    }
}

/// One key, as netbridge.toml(5) documents it.
#[derive(Debug, Clone, Copy)]
pub struct Key {
    pub table: Table,
    /// The name as written in the file (kebab-case).
    pub name: &'static str,
    /// The TOML type and, where it matters, the accepted values.
    pub kind: &'static str,
    /// What applies when the key is absent.
    pub default: &'static str,
    /// A line that could appear in the file, `key = value`.
    pub example: &'static str,
    pub description: &'static str,
}

const CHECKS: &str = "Connectivity checks that must pass before and after the change, \
in addition to the default checks: \"gateway\", \"dns-servers\", \"ping:ADDR\", \
\"tcp:HOST:PORT\" (IPv6 in brackets), \"dns:NAME\", \"guest-path\" (after the change only). \
See netbridge-convert(8).";

const ROLLBACK_TIMEOUT: &str = "Seconds without netbridge after which NetworkManager \
restores the host by itself (netbridge re-arms the timer while it works), 5 to 3600.";

pub const KEYS: [Key; 29] = [
    Key {
        table: Table::Defaults,
        name: "stp",
        kind: "boolean",
        default: "false",
        example: "stp = false",
        description: "Spanning tree on bridged uplinks. With a single uplink it only \
delays forwarding by about 30 s.",
    },
    Key {
        table: Table::Defaults,
        name: "checks",
        kind: "array of strings (check specs)",
        default: "[] (the default checks only)",
        example: "checks = [\"tcp:172.25.250.254:22\"]",
        description: CHECKS,
    },
    Key {
        table: Table::Defaults,
        name: "default-checks",
        kind: "boolean",
        default: "true",
        example: "default-checks = true",
        description: "Add the default checks: \"gateway\" and \"dns-servers\" (each kept \
only if it passes before the change) and \"guest-path\". false leaves all three out.",
    },
    Key {
        table: Table::Defaults,
        name: "guest-check",
        kind: "boolean",
        default: "true",
        example: "guest-check = true",
        description: "Run the default \"guest-path\" check after the change: two throwaway \
ports on the bridge exchange a frame through the host firewall, as guests' traffic does. \
false leaves only this check out.",
    },
    Key {
        table: Table::Defaults,
        name: "rollback-timeout",
        kind: "integer (seconds, 5 to 3600)",
        default: "30, or 90 with stp = true",
        example: "rollback-timeout = 30",
        description: ROLLBACK_TIMEOUT,
    },
    Key {
        table: Table::Bridge,
        name: "name",
        kind: "string (an interface name, at most 15 bytes)",
        default: "none: required",
        example: "name = \"br0\"",
        description: "The bridge's interface name; it identifies the entry, so a drop-in \
with the same name replaces the whole entry.",
    },
    Key {
        table: Table::Bridge,
        name: "mode",
        kind: "string: \"bridged\", \"nat\" or \"isolated\"",
        default: "\"bridged\"",
        example: "mode = \"bridged\"",
        description: "\"bridged\": the uplink becomes the bridge's port and the host's IP \
configuration moves to the bridge. \"nat\": a private network with DHCP, DNS and \
masquerading (NetworkManager's shared mode). \"isolated\": a host-only network.",
    },
    Key {
        table: Table::Bridge,
        name: "uplink",
        kind: "string: an interface name, \"default-route\" or \"mac:XX:XX:XX:XX:XX:XX\"",
        default: "none: required with mode = \"bridged\", refused otherwise",
        example: "uplink = \"default-route\"",
        description: "The NIC whose configuration moves to the bridge: by name, the NIC \
holding the IPv4 default route, or the NIC with this MAC. Two bridges cannot claim one uplink.",
    },
    Key {
        table: Table::Bridge,
        name: "stp",
        kind: "boolean",
        default: "[defaults] stp",
        example: "stp = false",
        description: "Spanning tree on this bridge.",
    },
    Key {
        table: Table::Bridge,
        name: "mtu",
        kind: "integer (68 to 65535)",
        default: "unset: the uplink's MTU when bridged, NetworkManager's default otherwise",
        example: "mtu = 9000",
        description: "The MTU of the bridge and its port.",
    },
    Key {
        table: Table::Bridge,
        name: "checks",
        kind: "array of strings (check specs)",
        default: "[defaults] checks",
        example: "checks = [\"ping:172.25.250.254\", \"dns:example.org\"]",
        description: CHECKS,
    },
    Key {
        table: Table::Bridge,
        name: "default-checks",
        kind: "boolean",
        default: "[defaults] default-checks",
        example: "default-checks = false",
        description: "As in [defaults], for this bridge.",
    },
    Key {
        table: Table::Bridge,
        name: "guest-check",
        kind: "boolean",
        default: "[defaults] guest-check",
        example: "guest-check = false",
        description: "As in [defaults], for this bridge.",
    },
    Key {
        table: Table::Bridge,
        name: "adopt",
        kind: "boolean",
        default: "false",
        example: "adopt = true",
        description: "Take over a bridge made by hand (e.g. with nmcli) whose only port is \
the uplink, under the same guard; without it such a bridge is foreign and left alone.",
    },
    Key {
        table: Table::Bridge,
        name: "rollback-timeout",
        kind: "integer (seconds, 5 to 3600)",
        default: "[defaults] rollback-timeout",
        example: "rollback-timeout = 60",
        description: ROLLBACK_TIMEOUT,
    },
    Key {
        table: Table::Bridge,
        name: "address",
        kind: "string: IPv4 address with prefix, /30 or shorter",
        default: "none: required with mode = \"nat\" or \"isolated\", refused otherwise",
        example: "address = \"192.168.107.1/24\"",
        description: "The bridge's own address on a NAT or host-only network; guests use \
it as their gateway and DNS server.",
    },
    Key {
        table: Table::Bridge,
        name: "dhcp-range",
        kind: "string: FIRST-LAST, inside the network",
        default: "unset: NetworkManager's choice",
        example: "dhcp-range = \"192.168.107.100-192.168.107.199\"",
        description: "The addresses leased to guests on a NAT or host-only network; needs \
NetworkManager 1.46 or newer. Refused with mode = \"bridged\".",
    },
    Key {
        table: Table::Bridge,
        name: "dhcp",
        kind: "boolean",
        default: "true with mode = \"nat\", false with mode = \"isolated\"",
        example: "dhcp = true",
        description: "Serve DHCP to guests on a NAT or host-only network.",
    },
    Key {
        table: Table::Defaults,
        name: "guest-forwarding",
        kind: "string: \"allow\" or \"deny\"",
        default: "\"deny\"",
        example: "guest-forwarding = \"allow\"",
        description: "\"allow\": the host firewall accepts forwarding between the bridge's own ports \
(in DOCKER-USER, or in the forward chain that drops), applied by \
netbridge-guest-forwarding.service at boot and whenever Docker starts, or by \
`netbridge guest-forwarding`. \"deny\": netbridge never changes the firewall.",
    },
    Key {
        table: Table::Bridge,
        name: "forward-delay",
        kind: "integer (seconds, 2 to 30)",
        default: "2 with STP off; as the bridge has it otherwise",
        example: "forward-delay = 4",
        description: "The STP forward delay. On a bridge netbridge made, a changed value is applied in place (Reapply), proven and committed or rolled back.",
    },
    Key {
        table: Table::Bridge,
        name: "hello-time",
        kind: "integer (seconds, 1 to 10)",
        default: "as the bridge has it (NetworkManager: 2)",
        example: "hello-time = 2",
        description: "The STP hello time, applied in place like every bridge option.",
    },
    Key {
        table: Table::Bridge,
        name: "max-age",
        kind: "integer (seconds, 6 to 40)",
        default: "as the bridge has it (NetworkManager: 20)",
        example: "max-age = 20",
        description: "The STP max age, applied in place like every bridge option.",
    },
    Key {
        table: Table::Bridge,
        name: "stp-priority",
        kind: "integer (0 to 65535)",
        default: "as the bridge has it (NetworkManager: 32768)",
        example: "stp-priority = 4096",
        description: "The bridge's STP priority (lower wins the root election).",
    },
    Key {
        table: Table::Bridge,
        name: "multicast-snooping",
        kind: "boolean",
        default: "as the bridge has it (NetworkManager: true)",
        example: "multicast-snooping = false",
        description: "IGMP/MLD snooping on the bridge.",
    },
    Key {
        table: Table::Bridge,
        name: "mac",
        kind: "string: a MAC address",
        default: "the uplink's MAC (what the network knows the host by)",
        example: "mac = \"52:54:00:12:34:56\"",
        description: "The bridge's MAC. A changed MAC re-activates the bridge (NetworkManager applies a MAC no other way: a short outage), then is proven and committed or rolled back like every bridge option.",
    },
    Key {
        table: Table::Bridge,
        name: "state",
        kind: "string: \"present\" or \"absent\"",
        default: "\"present\"",
        example: "state = \"absent\"",
        description: "\"absent\" reverts this bridge if netbridge made it (a network is deleted), under the same guard as `netbridge revert`; a bridge that only disappears from the configuration is left alone.",
    },
    Key {
        table: Table::Bridge,
        name: "guest-forwarding",
        kind: "string: \"allow\" or \"deny\"",
        default: "from [defaults]",
        example: "guest-forwarding = \"allow\"",
        description: "As in [defaults], for this bridge.",
    },
    Key {
        table: Table::Bridge,
        name: "libvirt-network",
        kind: "string (a libvirt network name)",
        default: "none",
        example: "libvirt-network = \"host-bridge\"",
        description: "After the commit, defines, autostarts and starts a libvirt network in bridge mode on this bridge (bridged uplinks only); revert undefines it if it is still netbridge's.",
    },
    Key {
        table: Table::Bridge,
        name: "qemu-bridge-helper",
        kind: "boolean",
        default: "false",
        example: "qemu-bridge-helper = true",
        description: "After the commit, allows this bridge in /etc/qemu/bridge.conf for qemu-bridge-helper; revert removes only that line.",
    },
];
