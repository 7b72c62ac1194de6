//! What the kernel itself says about the host's identity: the global
//! addresses on an interface and where it would send a packet for a
//! destination (`ip route get`); and what netbridge writes there itself: a
//! copy of neighbour entries (a cache NetworkManager does not manage), and
//! the make-before-break hand-over of an uplink NetworkManager leaves alone
//! for that instant (attached to its bridge, its own copy of the addresses
//! removed). Over rtnetlink on a blocking thread, never on the async
//! runtime's.

use std::net::IpAddr;

use ipnetwork::IpNetwork;
use netlink_packet_core::{
    NetlinkHeader, NetlinkMessage, NetlinkPayload, NLM_F_ACK, NLM_F_CREATE, NLM_F_DUMP, NLM_F_EXCL,
    NLM_F_REQUEST,
};
use netlink_packet_route::address::{
    AddressAttribute, AddressFlags, AddressHeaderFlags, AddressMessage, AddressScope,
};
use netlink_packet_route::link::{LinkAttribute, LinkMessage};
use netlink_packet_route::neighbour::{NeighbourAttribute, NeighbourMessage, NeighbourState};
use netlink_packet_route::route::{RouteAddress, RouteAttribute, RouteMessage};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};
use netlink_sys::{protocols::NETLINK_ROUTE, AsyncSocketExt, Socket, SocketAddr, TokioSocket};
use serde::Serialize;

mod stand_in;
pub use stand_in::{hold, ipv4_routes, Ipv4Routes};

#[derive(Debug, thiserror::Error)]
pub enum KernelError {
    #[error("reading {what} from the kernel (rtnetlink): {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error("reading {what} from the kernel (rtnetlink): undecodable reply: {detail}")]
    Decode { what: String, detail: String },
    #[error("changing {what} in the kernel (rtnetlink): {source}")]
    Write {
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{iface} does not exist in the kernel")]
    NoLink { iface: String },
}

impl KernelError {
    /// How an I/O failure on the rtnetlink socket while handling `what`
    /// reads: for `map_err`.
    fn io(what: &str) -> impl Fn(std::io::Error) -> KernelError + Copy + '_ {
        move |source| KernelError::Io {
            what: what.to_owned(),
            source,
        }
    }

    /// A request that changes the kernel failed: say so, not "reading".
    fn written(self) -> Self {
        match self {
            KernelError::Io { what, source } => KernelError::Write { what, source },
            other => other,
        }
    }
}

/// Where the kernel sends a packet for `target`: out of `dev`, through
/// `via` (none: on-link), from `src`. No `dev`: the kernel has no route.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RouteDecision {
    pub target: IpAddr,
    pub dev: Option<String>,
    pub via: Option<IpAddr>,
    pub src: Option<IpAddr>,
}

impl std::fmt::Display for RouteDecision {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let Some(dev) = &self.dev else {
            return write!(f, "{} unreachable", self.target);
        };
        write!(f, "{}", self.target)?;
        if let Some(via) = self.via {
            write!(f, " via {via}")?;
        }
        write!(f, " dev {dev}")?;
        if let Some(src) = self.src {
            write!(f, " src {src}")?;
        }
        Ok(())
    }
}

/// rtnetlink multicast groups: IPv4 and IPv6 addresses and routes.
const CHANGE_GROUPS: u32 = 0x10 | 0x40 | 0x100 | 0x400;

/// The kernel's announcements of address and route changes.
pub struct Changes(Option<TokioSocket>);

impl Changes {
    /// Subscribes; without a socket (the kernel or a sandbox refused one)
    /// no change is ever announced and callers fall back on their other
    /// wake-ups.
    pub fn subscribe() -> Self {
        match stand_in::socket("change notifications", CHANGE_GROUPS) {
            Ok(socket) => Changes(Some(socket)),
            Err(e) => {
                tracing::debug!(error = %e, "no rtnetlink change notifications");
                Changes(None)
            }
        }
    }

    /// Resolves at the next change the kernel announces.
    pub async fn next(&mut self) {
        let received = match self.0.as_mut() {
            Some(socket) => socket.recv_from_full().await,
            None => std::future::pending().await,
        };
        if let Err(e) = received {
            // A broken socket must not wake its caller in a loop.
            tracing::debug!(error = %e, "rtnetlink change notifications stopped");
            self.0 = None;
        }
    }
}

/// The global, stable addresses on `iface`: no link-local or host-scoped
/// ones, and no IPv6 privacy (temporary) addresses, which change by design.
pub async fn addresses(iface: &str) -> Result<Vec<IpNetwork>, KernelError> {
    let iface = iface.to_owned();
    blocking(move || {
        let what = format!("the addresses of {iface}");
        let Ok(index) = nix::net::if_::if_nametoindex(iface.as_str()) else {
            return Ok(Vec::new());
        };
        let replies = request(
            &open(&what)?,
            RouteNetlinkMessage::GetAddress(AddressMessage::default()),
            NLM_F_DUMP,
            &what,
        )?;
        let mut found: Vec<IpNetwork> = replies
            .into_iter()
            .filter_map(|m| match m {
                RouteNetlinkMessage::NewAddress(a) if a.header.index == index => stable_global(&a),
                _ => None,
            })
            .collect();
        found.sort();
        found.dedup();
        Ok(found)
    })
    .await
}

/// Copies `from`'s resolved IPv4 and IPv6 neighbour entries onto `to`, as
/// stale entries: the kernel uses them at once and confirms them later by
/// itself. Entries `to` already has stay as they are. Returns how many were
/// copied; none when either link is missing.
pub async fn copy_neighbours(from: &str, to: &str) -> Result<usize, KernelError> {
    let (from, to) = (from.to_owned(), to.to_owned());
    blocking(move || {
        let what = format!("the neighbour entries of {from}, to copy onto {to}");
        let indexes = (
            nix::net::if_::if_nametoindex(from.as_str()),
            nix::net::if_::if_nametoindex(to.as_str()),
        );
        let (Ok(source), Ok(target)) = indexes else {
            return Ok(0);
        };
        let socket = open(&what)?;
        let entries = request(
            &socket,
            RouteNetlinkMessage::GetNeighbour(NeighbourMessage::default()),
            NLM_F_DUMP,
            &what,
        )?;
        let copies: Vec<NeighbourMessage> = entries
            .into_iter()
            .filter_map(|m| match m {
                RouteNetlinkMessage::NewNeighbour(n) if n.header.ifindex == source => {
                    stale_copy(n, target)
                }
                _ => None,
            })
            .collect();
        let mut count = 0;
        for copy in copies {
            // An entry `to` has already is newer than the copy: kept.
            let add = RouteNetlinkMessage::NewNeighbour(copy);
            match request(&socket, add, NLM_F_CREATE | NLM_F_EXCL | NLM_F_ACK, &what) {
                Ok(_) => count += 1,
                Err(KernelError::Io { source, .. }) if exists(&source) => {}
                Err(e) => return Err(e.written()),
            }
        }
        Ok(count)
    })
    .await
}

/// Whether this process may change the kernel's network configuration
/// (CAP_NET_ADMIN): an empty link change of `iface`, which changes nothing.
pub async fn may_change(iface: &str) -> Result<(), KernelError> {
    let iface = iface.to_owned();
    blocking(move || {
        let what = format!("nothing on {iface} (a permission probe)");
        let mut link = LinkMessage::default();
        link.header.index = index(&iface)?;
        let socket = open(&what)?;
        request(
            &socket,
            RouteNetlinkMessage::SetLink(link),
            NLM_F_ACK,
            &what,
        )
        .map_err(KernelError::written)?;
        Ok(())
    })
    .await
}

/// Attaches `port` to the bridge `bridge` (`ip link set PORT master
/// BRIDGE`); a port attached already stays as it is.
pub async fn attach(port: &str, bridge: &str) -> Result<(), KernelError> {
    let (port, bridge) = (port.to_owned(), bridge.to_owned());
    blocking(move || {
        let controller = index(&bridge)?;
        set_controller(
            &port,
            controller,
            &format!("the bridge of {port} (to {bridge})"),
        )
    })
    .await
}

/// Frees `port` from its bridge (`ip link set PORT nomaster`).
pub async fn detach(port: &str) -> Result<(), KernelError> {
    let port = port.to_owned();
    blocking(move || set_controller(&port, 0, &format!("the bridge of {port} (to none)"))).await
}

fn set_controller(port: &str, controller: u32, what: &str) -> Result<(), KernelError> {
    let mut link = LinkMessage::default();
    link.header.index = index(port)?;
    link.attributes.push(LinkAttribute::Controller(controller));
    let socket = open(what)?;
    request(&socket, RouteNetlinkMessage::SetLink(link), NLM_F_ACK, what)
        .map_err(KernelError::written)?;
    Ok(())
}

/// The index of the bridge `port` is attached to, if any.
pub async fn controller(port: &str) -> Result<Option<u32>, KernelError> {
    let port = port.to_owned();
    blocking(move || {
        let what = format!("the bridge of {port}");
        let mut link = LinkMessage::default();
        link.header.index = index(&port)?;
        let socket = open(&what)?;
        let replies = request(&socket, RouteNetlinkMessage::GetLink(link), 0, &what)?;
        Ok(controller_of(&replies))
    })
    .await
}

/// The bridge (or other controller) a reply to a link request names.
fn controller_of(replies: &[RouteNetlinkMessage]) -> Option<u32> {
    replies.iter().find_map(|m| match m {
        RouteNetlinkMessage::NewLink(l) => l.attributes.iter().find_map(|a| match a {
            LinkAttribute::Controller(c) if *c != 0 => Some(*c),
            _ => None,
        }),
        _ => None,
    })
}

/// Removes `addresses` from `iface` (`ip addr del`), and with them the
/// routes the kernel derived from them; one already gone is no error.
pub async fn remove_addresses(iface: &str, addresses: &[IpNetwork]) -> Result<(), KernelError> {
    let iface = iface.to_owned();
    let addresses = addresses.to_vec();
    blocking(move || {
        let what = format!("the addresses of {iface}");
        let index = index(&iface)?;
        let socket = open(&what)?;
        for network in addresses {
            let mut message = AddressMessage::default();
            message.header.index = index;
            message.header.prefix_len = network.prefix();
            message.header.family = match network {
                IpNetwork::V4(_) => AddressFamily::Inet,
                IpNetwork::V6(_) => AddressFamily::Inet6,
            };
            message
                .attributes
                .push(AddressAttribute::Address(network.ip()));
            if network.is_ipv4() {
                message
                    .attributes
                    .push(AddressAttribute::Local(network.ip()));
            }
            let delete = RouteNetlinkMessage::DelAddress(message);
            match request(&socket, delete, NLM_F_ACK, &what) {
                Ok(_) => {}
                Err(KernelError::Io { source, .. }) if gone(&source) => {}
                Err(e) => return Err(e.written()),
            }
        }
        Ok(())
    })
    .await
}

fn index(iface: &str) -> Result<u32, KernelError> {
    nix::net::if_::if_nametoindex(iface).map_err(|_| KernelError::NoLink {
        iface: iface.to_owned(),
    })
}

fn exists(e: &std::io::Error) -> bool {
    e.raw_os_error() == Some(nix::libc::EEXIST)
}

/// The address was not there (any more).
fn gone(e: &std::io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(nix::libc::EADDRNOTAVAIL | nix::libc::ENOENT | nix::libc::ENODEV)
    )
}

/// A resolved IPv4 or IPv6 entry as a stale one on the link `target`.
fn stale_copy(entry: NeighbourMessage, target: u32) -> Option<NeighbourMessage> {
    let resolved = matches!(
        entry.header.state,
        NeighbourState::Reachable
            | NeighbourState::Stale
            | NeighbourState::Delay
            | NeighbourState::Probe
            | NeighbourState::Permanent
    );
    let ip = matches!(
        entry.header.family,
        AddressFamily::Inet | AddressFamily::Inet6
    );
    let keep = |a: &NeighbourAttribute| {
        matches!(
            a,
            NeighbourAttribute::Destination(_) | NeighbourAttribute::LinkLayerAddress(_)
        )
    };
    let attributes: Vec<NeighbourAttribute> = entry.attributes.into_iter().filter(keep).collect();
    let has_mac = attributes
        .iter()
        .any(|a| matches!(a, NeighbourAttribute::LinkLayerAddress(_)));
    (resolved && ip && has_mac).then(|| {
        let mut copy = NeighbourMessage::default();
        copy.header.family = entry.header.family;
        copy.header.ifindex = target;
        copy.header.state = NeighbourState::Stale;
        copy.attributes = attributes;
        copy
    })
}

/// The kernel's routing decision for each target, in order.
pub async fn routes(targets: Vec<IpAddr>) -> Result<Vec<RouteDecision>, KernelError> {
    blocking(move || {
        // One socket for all the lookups: each reply is read before the next request.
        let socket = open("the routes")?;
        targets.into_iter().map(|t| route_get(&socket, t)).collect()
    })
    .await
}

fn stable_global(a: &AddressMessage) -> Option<IpNetwork> {
    if a.header.scope != AddressScope::Universe {
        return None;
    }
    let flags = a
        .attributes
        .iter()
        .find_map(|attr| match attr {
            AddressAttribute::Flags(f) => Some(*f),
            _ => None,
        })
        .unwrap_or_else(|| AddressFlags::from_bits_retain(u32::from(a.header.flags.bits())));
    // IFA_F_SECONDARY is IFA_F_TEMPORARY for IPv6.
    let temporary = a.header.family == AddressFamily::Inet6
        && (flags.contains(AddressFlags::Secondary)
            || a.header.flags.contains(AddressHeaderFlags::Secondary));
    if temporary {
        return None;
    }
    // IFA_LOCAL is the address itself on point-to-point links; IFA_ADDRESS otherwise.
    let addr = a
        .attributes
        .iter()
        .find_map(|attr| match attr {
            AddressAttribute::Local(ip) => Some(*ip),
            _ => None,
        })
        .or_else(|| {
            a.attributes.iter().find_map(|attr| match attr {
                AddressAttribute::Address(ip) => Some(*ip),
                _ => None,
            })
        })?;
    IpNetwork::new(addr, a.header.prefix_len).ok()
}

fn route_get(socket: &Socket, target: IpAddr) -> Result<RouteDecision, KernelError> {
    let what = format!("the route to {target}");
    let mut query = RouteMessage::default();
    query.header.address_family = match target {
        IpAddr::V4(_) => AddressFamily::Inet,
        IpAddr::V6(_) => AddressFamily::Inet6,
    };
    query.header.destination_prefix_length = if target.is_ipv4() { 32 } else { 128 };
    query
        .attributes
        .push(RouteAttribute::Destination(RouteAddress::from(target)));
    let replies = match request(socket, RouteNetlinkMessage::GetRoute(query), 0, &what) {
        Ok(replies) => replies,
        Err(KernelError::Io { source, .. }) if unreachable(&source) => Vec::new(),
        Err(e) => return Err(e),
    };
    let route = replies.into_iter().find_map(|m| match m {
        RouteNetlinkMessage::NewRoute(r) => Some(r),
        _ => None,
    });
    Ok(match route {
        Some(route) => decision(target, &route),
        None => RouteDecision {
            target,
            dev: None,
            via: None,
            src: None,
        },
    })
}

fn unreachable(e: &std::io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc_errno::ENETUNREACH | libc_errno::EHOSTUNREACH)
    )
}

/// The two errno values a lookup without a route answers with.
mod libc_errno {
    pub const ENETUNREACH: i32 = nix::errno::Errno::ENETUNREACH as i32;
    pub const EHOSTUNREACH: i32 = nix::errno::Errno::EHOSTUNREACH as i32;
}

fn address(a: &RouteAddress) -> Option<IpAddr> {
    match a {
        RouteAddress::Inet(v4) => Some(IpAddr::V4(*v4)),
        RouteAddress::Inet6(v6) => Some(IpAddr::V6(*v6)),
        _ => None,
    }
}

fn decision(target: IpAddr, route: &RouteMessage) -> RouteDecision {
    let mut out = RouteDecision {
        target,
        dev: None,
        via: None,
        src: None,
    };
    for attr in &route.attributes {
        match attr {
            RouteAttribute::Oif(index) => {
                out.dev = nix::net::if_::if_indextoname(*index)
                    .ok()
                    .map(|name| name.to_string_lossy().into_owned())
                    .or_else(|| Some(format!("ifindex {index}")));
            }
            RouteAttribute::Gateway(a) => out.via = address(a),
            RouteAttribute::PrefSource(a) => out.src = address(a),
            _ => {}
        }
    }
    out
}

/// An rtnetlink socket talking to the kernel.
fn open(what: &str) -> Result<Socket, KernelError> {
    let io = KernelError::io(what);
    let mut socket = Socket::new(NETLINK_ROUTE).map_err(io)?;
    socket.bind_auto().map_err(io)?;
    socket.connect(&SocketAddr::new(0, 0)).map_err(io)?;
    Ok(socket)
}

/// Sends one request and collects the replies (all parts of a dump).
fn request(
    socket: &Socket,
    message: RouteNetlinkMessage,
    flags: u16,
    what: &str,
) -> Result<Vec<RouteNetlinkMessage>, KernelError> {
    let io = KernelError::io(what);
    socket.send(&encode(message, flags), 0).map_err(io)?;
    let mut replies = Vec::new();
    loop {
        let (data, _) = socket.recv_from_full().map_err(io)?;
        if collect(&data, flags, what, &mut replies)? {
            return Ok(replies);
        }
    }
}

/// `message` as a request with `flags`, ready to send.
fn encode(message: RouteNetlinkMessage, flags: u16) -> Vec<u8> {
    let mut header = NetlinkHeader::default();
    header.flags = NLM_F_REQUEST | flags;
    header.sequence_number = 1;
    let mut packet = NetlinkMessage::new(header, NetlinkPayload::InnerMessage(message));
    packet.finalize();
    let mut buf = vec![0; packet.buffer_len()];
    packet.serialize(&mut buf);
    buf
}

/// Adds the messages in one datagram of replies to a request with
/// `flags` to `replies`; true once the reply is complete (the end of a
/// dump, the acknowledgement, or the one reply to a plain request).
fn collect(
    data: &[u8],
    flags: u16,
    what: &str,
    replies: &mut Vec<RouteNetlinkMessage>,
) -> Result<bool, KernelError> {
    let dump = flags & NLM_F_DUMP == NLM_F_DUMP;
    for reply in messages(data, what)? {
        match reply {
            NetlinkPayload::Done(_) => return Ok(true),
            NetlinkPayload::Error(e) if e.code.is_some() => {
                return Err(KernelError::Io {
                    what: what.to_owned(),
                    source: e.to_io(),
                })
            }
            NetlinkPayload::Error(_) => return Ok(true),
            NetlinkPayload::InnerMessage(m) => {
                replies.push(m);
                if !dump {
                    return Ok(true);
                }
            }
            _ => {}
        }
    }
    Ok(false)
}

/// The netlink messages in one datagram, in order.
fn messages(
    data: &[u8],
    what: &str,
) -> Result<Vec<NetlinkPayload<RouteNetlinkMessage>>, KernelError> {
    let mut found = Vec::new();
    let mut offset = 0;
    while offset < data.len() {
        let message =
            NetlinkMessage::<RouteNetlinkMessage>::deserialize(&data[offset..]).map_err(|e| {
                KernelError::Decode {
                    what: what.to_owned(),
                    detail: e.to_string(),
                }
            })?;
        let length = message.header.length as usize;
        found.push(message.payload);
        if length == 0 {
            break;
        }
        // Netlink messages are 4-byte aligned.
        offset += (length + 3) & !3;
    }
    Ok(found)
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, KernelError> + Send + 'static,
) -> Result<T, KernelError> {
    tokio::task::spawn_blocking(f).await.unwrap_or_else(|e| {
        Err(KernelError::Io {
            what: "a netlink reply".to_owned(),
            source: std::io::Error::other(e.to_string()),
        })
    })
}
