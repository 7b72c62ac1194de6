//! The revert's stand-in: the routes of the uplink's static IPv4
//! configuration held in the kernel from the moment NetworkManager frees it
//! from its bridge until NetworkManager configures it itself
//! (`transaction/revert.rs`).
//!
//! NetworkManager releases the port, flushes the uplink (`nm_device_cleanup`,
//! a REAPPLY commit of an empty configuration) and adds its addresses and
//! routes only at IP_CONFIG — from 1.46 its addresses even later, after
//! address conflict detection (ACD) has probed for 200 ms. Meanwhile the
//! bridge, which no longer has a port, still holds the address, so a reply
//! only needs a route out through the uplink: the kernel accepts a packet
//! for any of the host's addresses on any link (and answers ARP for it
//! there, unless `arp_ignore` is set). Routes identical to the ones
//! NetworkManager then adds survive its commit untouched
//! (`nm_platform_ip_route_sync` skips a route that compares equal to its
//! own), so the host ends as a plain revert leaves it, and answers in
//! between.
//!
//! The stand-in never puts an address on the uplink. An address appearing
//! during NetworkManager's own commit, after its ACD pre-check and before
//! its post-commit check, sends NetworkManager into ACD's announcing state
//! without a defend mode: NetworkManager 1.58 then aborts
//! (`_l3_acd_defend_type_to_nacd`, nm-l3cfg.c:491, seen in a revert on
//! Debian sid); the code path is the same in every version that probes
//! the profile's addresses (`ipv4.dad-timeout`, 200 ms by default from 1.46).
use std::cmp::Reverse;
use std::sync::atomic::{AtomicU32, Ordering};

use netlink_packet_core::{NetlinkPayload, NLM_F_ACK, NLM_F_CREATE, NLM_F_DUMP, NLM_F_EXCL};
use netlink_packet_route::link::LinkMessage;
use netlink_packet_route::route::{RouteAttribute, RouteHeader, RouteMessage, RouteProtocol};
use netlink_packet_route::route::{RouteFlags, RouteType};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};
use netlink_sys::{protocols::NETLINK_ROUTE, AsyncSocket, AsyncSocketExt, SocketAddr, TokioSocket};

use super::{
    blocking, collect, controller_of, copy_neighbours, encode, exists, index, messages, open,
    request, KernelError,
};

/// rtnetlink multicast groups: links, IPv4 addresses and IPv4 routes.
const HOLD_GROUPS: u32 = 0x1 | 0x10 | 0x40;

/// The main-table IPv4 routes NetworkManager configured on a link, as the
/// kernel holds them.
#[derive(Debug, Clone)]
pub struct Ipv4Routes {
    /// On-link routes first: a gateway must be reachable when its route is added.
    routes: Vec<RouteMessage>,
}

/// What NetworkManager configured on `iface` for IPv4 routing: its
/// main-table unicast routes of protocol `kernel` (the prefix routes of its
/// `noprefixroute` addresses) and `static` (gateway and profile routes).
pub async fn ipv4_routes(iface: &str) -> Result<Ipv4Routes, KernelError> {
    let iface = iface.to_owned();
    blocking(move || {
        let what = format!("the IPv4 routes of {iface}");
        let link = index(&iface)?;
        let socket = open(&what)?;
        let mut query = RouteMessage::default();
        query.header.address_family = AddressFamily::Inet;
        let mut routes: Vec<RouteMessage> = request(
            &socket,
            RouteNetlinkMessage::GetRoute(query),
            NLM_F_DUMP,
            &what,
        )?
        .into_iter()
        .filter_map(|m| match m {
            RouteNetlinkMessage::NewRoute(r) if configured(&r, link) => Some(r),
            _ => None,
        })
        .collect();
        routes.sort_by_key(|r| Reverse(u8::from(r.header.scope)));
        Ok(Ipv4Routes { routes })
    })
    .await
}

/// A route NetworkManager made for the link `link` from a static profile.
fn configured(route: &RouteMessage, link: u32) -> bool {
    let h = &route.header;
    let main = h.table == RouteHeader::RT_TABLE_MAIN
        && route
            .attributes
            .iter()
            .all(|a| !matches!(a, RouteAttribute::Table(t) if *t != u32::from(RouteHeader::RT_TABLE_MAIN)));
    h.address_family == AddressFamily::Inet
        && main
        && h.kind == RouteType::Unicast
        && matches!(h.protocol, RouteProtocol::Kernel | RouteProtocol::Static)
        && route
            .attributes
            .iter()
            .any(|a| matches!(a, RouteAttribute::Oif(i) if *i == link))
        && route
            .attributes
            .iter()
            .all(|a| !matches!(a, RouteAttribute::MultiPath(_)))
}

/// Holds `routes` on `link` for as long as the caller polls it:
/// whenever `link` is no bridge port, each missing route is added — at
/// once, and again after every change the kernel announces for `link`
/// (released from its bridge, an address or route deleted). Each time a
/// route had to come back, `link` gets `neighbours_from`'s neighbour
/// entries again (NetworkManager's flush may have taken its own), and
/// `restored` counts it. Returns only on a kernel error; the caller drops
/// it when NetworkManager has activated `link`.
pub async fn hold(
    routes: &Ipv4Routes,
    link: &str,
    neighbours_from: &str,
    restored: &AtomicU32,
) -> KernelError {
    let what = format!("the IPv4 routes of {link}");
    let held = async {
        let index = index(link)?;
        // Subscribed before the first look: no change falls in between.
        let changes = socket(&what, HOLD_GROUPS)?;
        let requests = socket(&what, 0)?;
        loop {
            if restore(&requests, routes, index, &what).await? {
                restored.fetch_add(1, Ordering::Relaxed);
                copy_neighbours(neighbours_from, link).await?;
            }
            next_change(&changes, index, &what).await?;
        }
    };
    match held.await {
        Ok(never) => never,
        Err(e) => e,
    }
}

/// Adds the routes `link` lacks of `routes` unless it is a bridge port; true
/// when one had to be added.
async fn restore(
    socket: &TokioSocket,
    routes: &Ipv4Routes,
    link: u32,
    what: &str,
) -> Result<bool, KernelError> {
    let mut query = LinkMessage::default();
    query.header.index = link;
    let replies = ask(socket, RouteNetlinkMessage::GetLink(query), 0, what).await?;
    if controller_of(&replies).is_some() {
        return Ok(false);
    }
    let mut added = false;
    for route in &routes.routes {
        let copy = RouteNetlinkMessage::NewRoute(route_on(route, link));
        match create(socket, copy, what).await {
            // The bridge lost the source address, or the on-link route a
            // gateway needs went meanwhile: the deletion's own announcement
            // brings the route back, or NetworkManager has taken over.
            Err(KernelError::Write { source, .. }) if raced(&source) => {}
            Err(e) => return Err(e),
            Ok(new) => added |= new,
        }
    }
    Ok(added)
}

/// `route` for the link `link`, without what the kernel reports of its
/// own (flags such as `linkdown`, cache information).
fn route_on(route: &RouteMessage, link: u32) -> RouteMessage {
    let mut copy = RouteMessage::default();
    copy.header = route.header.clone();
    copy.header.flags = RouteFlags::empty();
    for attribute in &route.attributes {
        match attribute {
            RouteAttribute::Oif(_) => copy.attributes.push(RouteAttribute::Oif(link)),
            RouteAttribute::Destination(_)
            | RouteAttribute::Gateway(_)
            | RouteAttribute::PrefSource(_)
            | RouteAttribute::Priority(_)
            | RouteAttribute::Table(_)
            | RouteAttribute::Metrics(_) => copy.attributes.push(attribute.clone()),
            _ => {}
        }
    }
    copy
}

/// Adds an object the kernel may hold already; true when it was added.
async fn create(
    socket: &TokioSocket,
    message: RouteNetlinkMessage,
    what: &str,
) -> Result<bool, KernelError> {
    let flags = NLM_F_CREATE | NLM_F_EXCL | NLM_F_ACK;
    match ask(socket, message, flags, what).await {
        Ok(_) => Ok(true),
        Err(KernelError::Io { source, .. }) if exists(&source) => Ok(false),
        Err(e) => Err(e.written()),
    }
}

fn raced(e: &std::io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(nix::libc::ENETUNREACH | nix::libc::EINVAL)
    )
}

/// Resolves at the next change the kernel announces for the link `link`.
async fn next_change(changes: &TokioSocket, link: u32, what: &str) -> Result<(), KernelError> {
    loop {
        let data = match changes.recv_from_full().await {
            Ok((data, _)) => data,
            // Announcements were dropped: one of them may have been ours.
            Err(e) if e.raw_os_error() == Some(nix::libc::ENOBUFS) => return Ok(()),
            Err(source) => return Err(KernelError::io(what)(source)),
        };
        let Ok(announced) = messages(&data, what) else {
            return Ok(());
        };
        if announced.iter().any(|m| concerns(m, link)) {
            return Ok(());
        }
    }
}

/// A change that may have taken part of the setup from the link `link`.
fn concerns(message: &NetlinkPayload<RouteNetlinkMessage>, link: u32) -> bool {
    match message {
        NetlinkPayload::InnerMessage(RouteNetlinkMessage::NewLink(l)) => l.header.index == link,
        NetlinkPayload::InnerMessage(RouteNetlinkMessage::DelAddress(a)) => a.header.index == link,
        NetlinkPayload::InnerMessage(RouteNetlinkMessage::DelRoute(r)) => r
            .attributes
            .iter()
            .any(|a| matches!(a, RouteAttribute::Oif(i) if *i == link)),
        _ => false,
    }
}

/// An rtnetlink socket on the async runtime, subscribed to `groups`
/// (0: none, for requests).
pub(super) fn socket(what: &str, groups: u32) -> Result<TokioSocket, KernelError> {
    let io = KernelError::io(what);
    let mut socket = TokioSocket::new(NETLINK_ROUTE).map_err(io)?;
    socket
        .socket_mut()
        .bind(&SocketAddr::new(0, groups))
        .map_err(io)?;
    if groups == 0 {
        socket
            .socket_mut()
            .connect(&SocketAddr::new(0, 0))
            .map_err(io)?;
    }
    Ok(socket)
}

/// [`super::request`] on the async runtime: the kernel handles an
/// rtnetlink request within the send, so the reply is ready at once.
async fn ask(
    socket: &TokioSocket,
    message: RouteNetlinkMessage,
    flags: u16,
    what: &str,
) -> Result<Vec<RouteNetlinkMessage>, KernelError> {
    let io = KernelError::io(what);
    socket.send(&encode(message, flags)).await.map_err(io)?;
    let mut replies = Vec::new();
    loop {
        let (data, _) = socket.recv_from_full().await.map_err(io)?;
        if collect(&data, flags, what, &mut replies)? {
            return Ok(replies);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::net::{IpAddr, Ipv4Addr};

    use netlink_packet_route::address::AddressMessage;
    use netlink_packet_route::route::{RouteAddress, RouteScope};

    use super::*;

    const BRIDGE: u32 = 3;
    const UPLINK: u32 = 2;

    fn ip(last: u8) -> IpAddr {
        IpAddr::V4(Ipv4Addr::new(172, 25, 250, last))
    }

    /// A route as the kernel reports it on the bridge.
    fn reported(protocol: RouteProtocol, table: u8) -> RouteMessage {
        let mut route = RouteMessage::default();
        route.header.address_family = AddressFamily::Inet;
        route.header.table = table;
        route.header.protocol = protocol;
        route.header.scope = RouteScope::Universe;
        route.header.kind = RouteType::Unicast;
        route.header.flags = RouteFlags::Linkdown;
        route.attributes = vec![
            RouteAttribute::Table(u32::from(table)),
            RouteAttribute::Priority(100),
            RouteAttribute::Gateway(RouteAddress::from(ip(254))),
            RouteAttribute::Oif(BRIDGE),
        ];
        route
    }

    #[test]
    fn only_main_table_routes_networkmanager_makes_are_held() {
        let main = RouteHeader::RT_TABLE_MAIN;
        assert!(configured(&reported(RouteProtocol::Static, main), BRIDGE));
        assert!(configured(&reported(RouteProtocol::Kernel, main), BRIDGE));
        assert!(!configured(&reported(RouteProtocol::Static, main), UPLINK));
        assert!(!configured(&reported(RouteProtocol::Boot, main), BRIDGE));
        assert!(!configured(&reported(RouteProtocol::Dhcp, main), BRIDGE));
        assert!(!configured(&reported(RouteProtocol::Kernel, 255), BRIDGE));
    }

    #[test]
    fn a_held_route_is_the_bridges_on_the_uplink_without_the_kernels_own_flags() {
        let copy = route_on(&reported(RouteProtocol::Static, 254), UPLINK);
        assert_eq!(copy.header.flags, RouteFlags::empty());
        assert_eq!(copy.header.protocol, RouteProtocol::Static);
        assert!(copy.attributes.contains(&RouteAttribute::Oif(UPLINK)));
        assert!(copy.attributes.contains(&RouteAttribute::Priority(100)));
        assert!(!copy.attributes.contains(&RouteAttribute::Oif(BRIDGE)));
    }

    #[test]
    fn only_changes_to_the_uplink_wake_the_stand_in() {
        let mut gone = RouteMessage::default();
        gone.attributes.push(RouteAttribute::Oif(UPLINK));
        let deleted = NetlinkPayload::InnerMessage(RouteNetlinkMessage::DelRoute(gone));
        assert!(concerns(&deleted, UPLINK));
        assert!(!concerns(&deleted, BRIDGE));
        let mut address = AddressMessage::default();
        address.header.index = UPLINK;
        let added = NetlinkPayload::InnerMessage(RouteNetlinkMessage::NewAddress(address));
        assert!(
            !concerns(&added, UPLINK),
            "NetworkManager's own adds need nothing"
        );
    }
}
