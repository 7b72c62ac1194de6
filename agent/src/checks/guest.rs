//! The `guest-path` check: the new bridge forwards a guest's traffic through
//! the host's own firewall.
//!
//! Traffic between two ports of a bridge crosses the same hooks as a VM's:
//! with bridge netfilter on, IPv4 frames go through iptables' FORWARD chain,
//! where Docker's `policy DROP` discards them. So the check adds two
//! throwaway veth pairs through NetworkManager (ports `nbg-<pid>-a` and
//! `nbg-<pid>-b` of the bridge, peers `…-ap` and `…-bp` outside it, no IP on
//! any of them, IPv6 disabled), sends one IPv4/UDP frame between TEST-NET-1
//! addresses (192.0.2.1 → 192.0.2.2, never a LAN address) into the bridge at
//! `…-ap` and waits for it at `…-bp`, with AF_PACKET sockets. It needs only
//! CAP_NET_RAW, which the agent's unit has: NetworkManager creates the links.
//!
//! Nothing reaches the LAN: the bridge first learns `…-bp`'s MAC from a frame
//! to a reserved link-local group address (01:80:c2:00:00:02, which a Linux
//! bridge never forwards), so the test frame goes to port b only instead of
//! being flooded. The profiles are in memory only and deleted on every path;
//! if netbridge dies meanwhile, the transaction's checkpoint (which deletes
//! connections created after it) and the next run's recovery
//! ([`remove_leftovers`]) remove them.

use std::collections::HashMap;
use std::os::fd::{AsRawFd, OwnedFd};
use std::time::{Duration, Instant};

use netbridge_dbus::flags::AddConnection2Flags;
use netbridge_dbus::settings::names;
use netbridge_dbus::Settings;
use nix::errno::Errno;
use nix::sys::socket::{self, AddressFamily, LinkAddr, MsgFlags, SockFlag, SockType};
use zbus::zvariant::{ObjectPath, OwnedObjectPath};

use super::Budget;
use crate::firewall;
use crate::nm::{ActivationGoal, Nm, NmError};

/// Interface names of the throwaway ports start with this; nothing else of
/// netbridge's does, so leftovers are recognisable.
pub const PREFIX: &str = "nbg-";

/// `user.data` key that marks a throwaway profile (besides its name).
const MARK: &str = "netbridge.guest-check";

/// How often the frame is sent again while waiting (a bridge port with STP on
/// forwards only after its learning phase).
const RESEND: Duration = Duration::from_millis(50);

/// How long removing the throwaway ports may take.
const REMOVAL: Duration = Duration::from_secs(5);

const SRC_IP: [u8; 4] = [192, 0, 2, 1];
const DST_IP: [u8; 4] = [192, 0, 2, 2];
/// The discard port: nothing answers it, should the frame ever be delivered.
const UDP_PORT: u16 = 9;
/// IEEE "local experimental" ethertype for the learning frame: no protocol
/// handler on the host takes it.
const LOCAL_ETHERTYPE: u16 = 0x88b5;
/// Slow-protocols group address: a Linux bridge never forwards it (its bit
/// cannot be set in `group_fwd_mask`) but learns the sender's MAC from it.
const LEARN_DST: [u8; 6] = [0x01, 0x80, 0xc2, 0x00, 0x00, 0x02];

/// One throwaway veth pair: `port` joins the bridge, `peer` is where frames
/// go in or come out.
struct Pair {
    port: String,
    peer: String,
    port_mac: [u8; 6],
    peer_mac: [u8; 6],
}

impl Pair {
    fn new(pid: u32, side: char) -> Self {
        Pair {
            port: format!("{PREFIX}{pid}-{side}"),
            peer: format!("{PREFIX}{pid}-{side}p"),
            port_mac: highest_mac(),
            peer_mac: random_mac(),
        }
    }
}

/// Proves that `bridge` forwards a frame between two of its ports. `Ok` and
/// `Err` are details for people, as for every probe.
pub(super) async fn forwards(nm: &Nm, bridge: &str, budget: Budget) -> Result<String, String> {
    // Only whether it exists: the state was verified before the checks, and
    // ports of anything but a bridge would not come up.
    match nm.device_by_iface(bridge).await {
        Ok(Some(_)) => {}
        Ok(None) => return Err(format!("no bridge {bridge} exists")),
        Err(e) => return Err(format!("reading {bridge}: {e}")),
    }
    let pid = std::process::id();
    let (a, b) = (Pair::new(pid, 'a'), Pair::new(pid, 'b'));
    let mut created = Vec::new();
    let outcome = exchange_through(nm, bridge, &a, &b, &mut created, budget).await;
    let removed = remove(nm, &created, &[&a.port, &b.port]).await;
    match (outcome, removed) {
        (Ok(Some(took)), Ok(())) => Ok(format!(
            "a frame crossed {bridge} between two throwaway ports in {} ({} with adding and removing them)",
            super::human(took),
            super::human(round_ms(budget.start.elapsed()))
        )),
        (Ok(None), Ok(())) => Err(dropped(bridge, budget.total).await),
        (Err(e), Ok(())) => Err(e),
        (outcome, Err(e)) => Err(format!(
            "{}; removing the throwaway ports failed: {e}",
            match outcome {
                Err(e) => e,
                Ok(_) => "the guest path was tested".to_owned(),
            }
        )),
    }
}

/// Whole milliseconds: the set-up time is not precise to the microsecond.
fn round_ms(d: Duration) -> Duration {
    Duration::from_millis(u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// Why a frame did not cross: the host firewall's part, when it has one.
async fn dropped(bridge: &str, waited: Duration) -> String {
    let diagnosis = firewall::diagnose().await;
    match diagnosis.blocking_cause() {
        Some(cause) => format!(
            "guests on {bridge} are dropped by the host firewall: {cause} — `--guest-forwarding allow` (configuration: `guest-forwarding = \"allow\"`) accepts forwarding between {bridge}'s ports and keeps it so (by hand: `{}`), or leave this check out (--no-guest-check)",
            diagnosis.way_out(bridge)
        ),
        None => format!(
            "no frame crossed {bridge} between two throwaway ports within {} ({}): guests on {bridge} would be cut off — find what drops bridged traffic, or leave this check out (--no-guest-check)",
            super::human(waited),
            diagnosis.summary()
        ),
    }
}

/// Creates the two pairs, brings them up and sends the frame. `Ok(None)`: the
/// frame did not arrive in time. Records each profile it created in `created`
/// as soon as it exists, so the caller removes it whatever happens next.
async fn exchange_through(
    nm: &Nm,
    bridge: &str,
    a: &Pair,
    b: &Pair,
    created: &mut Vec<OwnedObjectPath>,
    budget: Budget,
) -> Result<Option<Duration>, String> {
    let flags = AddConnection2Flags::IN_MEMORY | AddConnection2Flags::BLOCK_AUTOCONNECT;
    let nm_error = |e: NmError| format!("NetworkManager refused a throwaway port: {e}");
    // Every profile exists before any device does: a peer that appeared
    // without one could get an automatic "Wired connection" profile.
    let profiles = [
        port_profile(&a.port, &a.peer, bridge, a.port_mac),
        port_profile(&b.port, &b.peer, bridge, b.port_mac),
        peer_profile(&a.peer, &a.port, a.peer_mac),
        peer_profile(&b.peer, &b.port, b.peer_mac),
    ];
    let added = futures_util::future::join_all(
        profiles
            .iter()
            .map(|profile| nm.add_profile(profile, flags)),
    )
    .await;
    let mut paths = Vec::new();
    let mut refused = None;
    for result in added {
        match result {
            Ok(path) => {
                created.push(path.clone());
                paths.push(path);
            }
            Err(e) => refused = Some(nm_error(e)),
        }
    }
    if let Some(why) = refused {
        return Err(why);
    }
    // Activating a port creates its veth pair; only then can the peer's profile go up.
    let (ports, peers) = paths.split_at(2);
    let left = budget.remaining();
    activate_all(nm, ports, &[&a.port, &b.port], left).await?;
    activate_all(nm, peers, &[&a.peer, &b.peer], budget.remaining()).await?;

    let token = uuid::Uuid::new_v4().into_bytes();
    let probe = udp_frame(b.peer_mac, a.peer_mac, &token);
    let learn = learning_frame(b.peer_mac);
    let (tx, rx) = (a.peer.clone(), b.peer.clone());
    let wait = budget.remaining();
    let (outcome, sockets) =
        tokio::task::spawn_blocking(move || send_and_wait(&tx, &rx, &learn, &probe, &token, wait))
            .await
            .map_err(|e| format!("the frame exchange stopped: {e}"))??;
    // Closing a receiving packet socket waits for an RCU grace period (tens
    // of milliseconds); nothing needs to wait for that.
    drop(tokio::task::spawn_blocking(move || drop(sockets)));
    Ok(outcome)
}

async fn activate_all(
    nm: &Nm,
    profiles: &[OwnedObjectPath],
    names: &[&str],
    deadline: Duration,
) -> Result<(), String> {
    let any_device = ObjectPath::from_static_str_unchecked(netbridge_dbus::NULL_PATH);
    let up = profiles.iter().zip(names).map(|(profile, name)| async {
        let active = nm.activate(profile, &any_device).await?;
        nm.wait_activated(&active, name, ActivationGoal::default(), deadline)
            .await
    });
    for result in futures_util::future::join_all(up).await {
        result.map_err(|e| format!("a throwaway port did not come up: {e}"))?;
    }
    Ok(())
}

/// Deletes the profiles (NetworkManager then removes their links) and waits
/// until the links are gone, so the check leaves nothing behind.
async fn remove(nm: &Nm, profiles: &[OwnedObjectPath], ports: &[&str]) -> Result<(), NmError> {
    let deleted =
        futures_util::future::join_all(profiles.iter().map(|path| nm.delete_profile(path))).await;
    for result in deleted {
        match result {
            Err(e) if !e.is_gone() => return Err(e),
            _ => {}
        }
    }
    if profiles.is_empty() {
        return Ok(());
    }
    // Deleting one end of a veth pair deletes both.
    let gone =
        futures_util::future::join_all(ports.iter().map(|port| nm.wait_device_gone(port, REMOVAL)))
            .await;
    gone.into_iter().collect()
}

/// Removes throwaway ports an interrupted check left (netbridge killed while
/// they existed, and no checkpoint rollback since); returns their names.
pub async fn remove_leftovers(nm: &Nm) -> Result<Vec<String>, NmError> {
    let mut removed = Vec::new();
    for profile in nm.profiles().await? {
        let ours = profile.connection_type == "veth"
            && profile.in_memory_only
            && profile.id.starts_with(PREFIX)
            && nm
                .profile_settings(&profile.path)
                .await?
                .string_map(names::USER, "data")
                .is_ok_and(|data| data.contains_key(MARK));
        if !ours {
            continue;
        }
        match nm.delete_profile(&profile.path).await {
            Err(e) if !e.is_gone() => return Err(e),
            _ => removed.push(profile.id),
        }
    }
    for name in &removed {
        nm.wait_device_gone(name, REMOVAL).await?;
    }
    Ok(removed)
}

fn base_profile(name: &str, peer: &str) -> Settings {
    let mut s = Settings::new();
    let mark: HashMap<String, String> = [(MARK.to_owned(), "throwaway".to_owned())].into();
    s.set(names::CONNECTION, "id", name)
        .set(names::CONNECTION, "uuid", uuid::Uuid::new_v4().to_string())
        .set(names::CONNECTION, "type", "veth")
        .set(names::CONNECTION, "interface-name", name)
        .set(names::CONNECTION, "autoconnect", false)
        .set("veth", "peer", peer)
        .set(names::USER, "data", mark);
    s
}

/// A port of the bridge: no IP of its own, as NetworkManager keeps ports.
/// Its MAC is set before it joins (at its activation's PREPARE stage) and is
/// above any other port's, so a bridge whose MAC nobody set (one made by
/// hand with nmcli, being adopted) keeps its MAC, the lowest of its ports':
/// a throwaway port with a lower one would change the bridge's MAC for the
/// check's moment, and a LAN neighbour that learned it then sends to the
/// throwaway port's MAC for seconds afterwards (8 s without replies in the
/// reply-gap benchmark's adoption).
fn port_profile(name: &str, peer: &str, bridge: &str, mac: [u8; 6]) -> Settings {
    let mut s = base_profile(name, peer);
    // The legacy keys: the only ones NetworkManager 1.42 accepts.
    s.set(names::CONNECTION, "master", bridge)
        .set(names::CONNECTION, "slave-type", "bridge")
        .set(names::ETHERNET, "assigned-mac-address", format_mac(mac));
    s
}

/// The peer outside the bridge: up, with a known MAC, no IPv4 and IPv6
/// disabled (no router solicitation, no DAD, no address at all).
fn peer_profile(name: &str, peer: &str, mac: [u8; 6]) -> Settings {
    let mut s = base_profile(name, peer);
    s.set(names::ETHERNET, "assigned-mac-address", format_mac(mac))
        .set(names::IPV4, "method", "disabled")
        .set(names::IPV6, "method", "disabled");
    s
}

/// Sends `learn` out of `rx` (so the bridge learns where `rx` is) and `probe`
/// out of `tx`, again every [`RESEND`], until a frame carrying `token`
/// arrives at `rx` or `wait` has passed. Blocking: runs on a blocking thread.
/// Returns the sockets as well, for the caller to close.
fn send_and_wait(
    tx: &str,
    rx: &str,
    learn: &[u8],
    probe: &[u8],
    token: &[u8],
    wait: Duration,
) -> Result<(Option<Duration>, [OwnedFd; 2]), String> {
    let io = |what: &str, e: Errno| format!("{what}: {}", e.desc());
    // Protocol 0: this socket only sends.
    let tx_sock = packet_socket(tx, 0).map_err(|e| io("opening a packet socket", e))?;
    let rx_sock = packet_socket(rx, ETH_P_IP).map_err(|e| io("opening a packet socket", e))?;
    let poll = nix::sys::time::TimeVal::new(0, 10_000);
    socket::setsockopt(&rx_sock, socket::sockopt::ReceiveTimeout, &poll)
        .map_err(|e| io("setting a receive timeout", e))?;
    let start = Instant::now();
    let mut next_send = start;
    let mut buf = [0u8; 2048];
    while start.elapsed() < wait {
        if Instant::now() >= next_send {
            socket::send(rx_sock.as_raw_fd(), learn, MsgFlags::empty())
                .map_err(|e| io("sending the learning frame", e))?;
            socket::send(tx_sock.as_raw_fd(), probe, MsgFlags::empty())
                .map_err(|e| io("sending the test frame", e))?;
            next_send = Instant::now() + RESEND;
        }
        match socket::recv(rx_sock.as_raw_fd(), &mut buf, MsgFlags::empty()) {
            Ok(n) if carries(&buf[..n], token) => {
                return Ok((Some(start.elapsed()), [tx_sock, rx_sock]))
            }
            Ok(_) | Err(Errno::EAGAIN | Errno::EINTR) => {}
            Err(e) => return Err(io("receiving", e)),
        }
    }
    Ok((None, [tx_sock, rx_sock]))
}

const ETH_P_IP: u16 = 0x0800;

/// A packet socket bound to `iface`, receiving frames of `protocol` (0: none).
fn packet_socket(iface: &str, protocol: u16) -> Result<OwnedFd, Errno> {
    let index = nix::net::if_::if_nametoindex(iface)?;
    let fd = socket::socket(
        AddressFamily::Packet,
        SockType::Raw,
        SockFlag::SOCK_CLOEXEC,
        None,
    )?;
    let addr = link_addr(index, protocol).ok_or(Errno::EINVAL)?;
    socket::bind(fd.as_raw_fd(), &addr)?;
    Ok(fd)
}

fn link_addr(ifindex: u32, protocol: u16) -> Option<LinkAddr> {
    use socket::SockaddrLike;
    let sll = nix::libc::sockaddr_ll {
        sll_family: u16::try_from(nix::libc::AF_PACKET).ok()?,
        sll_protocol: protocol.to_be(),
        sll_ifindex: i32::try_from(ifindex).ok()?,
        sll_hatype: 0,
        sll_pkttype: 0,
        sll_halen: 0,
        sll_addr: [0; 8],
    };
    let len = u32::try_from(std::mem::size_of::<nix::libc::sockaddr_ll>()).ok()?;
    // SAFETY: `sll` is a fully initialised sockaddr_ll that outlives the
    // call, and `len` is its exact size; nix offers no safe constructor for
    // packet addresses, only this checked conversion.
    unsafe { LinkAddr::from_raw(std::ptr::from_ref(&sll).cast(), Some(len)) }
}

/// A locally administered unicast MAC (02:…), random.
fn random_mac() -> [u8; 6] {
    let b = uuid::Uuid::new_v4().into_bytes();
    [0x02, b[0], b[1], b[2], b[3], b[4]]
}

/// A locally administered unicast MAC above any a NIC or a kernel-made
/// device is likely to have (fe:ff:ff:…, random below).
fn highest_mac() -> [u8; 6] {
    let b = uuid::Uuid::new_v4().into_bytes();
    [0xfe, 0xff, 0xff, b[0], b[1], b[2]]
}

fn format_mac(mac: [u8; 6]) -> String {
    mac.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// The frame the bridge learns `src`'s port from, and never forwards.
pub(super) fn learning_frame(src: [u8; 6]) -> Vec<u8> {
    let mut frame = Vec::with_capacity(60);
    frame.extend_from_slice(&LEARN_DST);
    frame.extend_from_slice(&src);
    frame.extend_from_slice(&LOCAL_ETHERTYPE.to_be_bytes());
    frame.extend_from_slice(b"netbridge guest-path learn");
    frame.resize(60, 0);
    frame
}

/// An Ethernet frame with a valid IPv4/UDP packet 192.0.2.1:9 → 192.0.2.2:9
/// whose payload carries `token` (bridge netfilter drops malformed IPv4).
pub(super) fn udp_frame(dst: [u8; 6], src: [u8; 6], token: &[u8]) -> Vec<u8> {
    let mut payload = b"netbridge guest-path ".to_vec();
    payload.extend_from_slice(token);
    let udp_len = 8 + payload.len();
    let ip_len = 20 + udp_len;
    let mut ip = Vec::with_capacity(ip_len);
    ip.extend_from_slice(&[0x45, 0]);
    ip.extend_from_slice(&u16::try_from(ip_len).unwrap_or(u16::MAX).to_be_bytes());
    // Identification, flags and fragment offset: one unfragmented packet.
    ip.extend_from_slice(&[0, 0, 0x40, 0]);
    ip.extend_from_slice(&[64, 17, 0, 0]);
    ip.extend_from_slice(&SRC_IP);
    ip.extend_from_slice(&DST_IP);
    let sum = ipv4_checksum(&ip);
    ip[10..12].copy_from_slice(&sum.to_be_bytes());
    ip.extend_from_slice(&UDP_PORT.to_be_bytes());
    ip.extend_from_slice(&UDP_PORT.to_be_bytes());
    ip.extend_from_slice(&u16::try_from(udp_len).unwrap_or(u16::MAX).to_be_bytes());
    // UDP checksum 0: "none", valid over IPv4.
    ip.extend_from_slice(&[0, 0]);
    ip.extend_from_slice(&payload);

    let mut frame = Vec::with_capacity(14 + ip.len());
    frame.extend_from_slice(&dst);
    frame.extend_from_slice(&src);
    frame.extend_from_slice(&ETH_P_IP.to_be_bytes());
    frame.extend_from_slice(&ip);
    frame
}

/// The Internet checksum of an IPv4 header whose checksum field is zero.
pub(super) fn ipv4_checksum(header: &[u8]) -> u16 {
    let mut sum: u32 = header
        .chunks(2)
        .map(|pair| u32::from(u16::from_be_bytes([pair[0], *pair.get(1).unwrap_or(&0)])))
        .sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !u16::try_from(sum).unwrap_or(u16::MAX)
}

fn carries(frame: &[u8], token: &[u8]) -> bool {
    !token.is_empty() && frame.windows(token.len()).any(|w| w == token)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_test_frame_is_valid_ipv4_udp_between_test_net_addresses() {
        let (dst, src) = ([2, 1, 1, 1, 1, 1], [2, 2, 2, 2, 2, 2]);
        let frame = udp_frame(dst, src, b"0123456789abcdef");
        assert_eq!(&frame[0..6], &dst);
        assert_eq!(&frame[6..12], &src);
        assert_eq!(&frame[12..14], &[0x08, 0x00]);
        let ip = &frame[14..];
        assert_eq!(ip[0], 0x45);
        assert_eq!(usize::from(u16::from_be_bytes([ip[2], ip[3]])), ip.len());
        assert_eq!(ip[9], 17, "UDP");
        assert_eq!(&ip[12..16], &[192, 0, 2, 1]);
        assert_eq!(&ip[16..20], &[192, 0, 2, 2]);
        // A header with a correct checksum sums to zero.
        assert_eq!(ipv4_checksum(&ip[..20]), 0);
        let udp = &ip[20..];
        assert_eq!(usize::from(u16::from_be_bytes([udp[4], udp[5]])), udp.len());
        assert!(carries(&frame, b"0123456789abcdef"));
        assert!(!carries(&frame, b"fedcba9876543210"));
    }

    #[test]
    fn the_checksum_matches_a_known_header() {
        // The classic example header (checksum field zeroed): 0xb861.
        let header = [
            0x45, 0x00, 0x00, 0x73, 0x00, 0x00, 0x40, 0x00, 0x40, 0x11, 0x00, 0x00, 0xc0, 0xa8,
            0x00, 0x01, 0xc0, 0xa8, 0x00, 0xc7,
        ];
        assert_eq!(ipv4_checksum(&header), 0xb861);
    }

    #[test]
    fn the_learning_frame_goes_to_a_group_address_no_bridge_forwards() {
        let frame = learning_frame([2, 9, 9, 9, 9, 9]);
        assert_eq!(&frame[0..6], &LEARN_DST);
        assert_eq!(&frame[6..12], &[2, 9, 9, 9, 9, 9]);
        assert_eq!(frame.len(), 60, "minimum Ethernet frame without FCS");
    }

    #[test]
    fn throwaway_names_fit_an_interface_name_and_macs_are_local_unicast() {
        let pair = Pair::new(4_194_304, 'b');
        assert!(pair.peer.len() <= 15, "{}", pair.peer);
        assert!(pair.port.starts_with(PREFIX) && pair.peer.starts_with(PREFIX));
        assert_eq!(pair.peer_mac[0] & 0x03, 0x02);
        assert_eq!(pair.port_mac[0] & 0x03, 0x02, "local unicast");
        assert_eq!(
            &pair.port_mac[..3],
            &[0xfe, 0xff, 0xff],
            "above other ports"
        );
        assert_eq!(format_mac([2, 0xab, 0, 1, 2, 3]), "02:ab:00:01:02:03");
    }
}
