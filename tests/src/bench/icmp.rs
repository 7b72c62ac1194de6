//! The prober process, `netbridge-bench probe ADDR`, started inside a lab
//! namespace: an ICMP echo request every 5 ms, each reply printed as
//! `[UNIX_TIME] 64 bytes from ADDR: icmp_seq=N` (the format of `ping -D`,
//! which [`super::trace::parse_reply`] reads).
//!
//! Why not iputils `ping -i 0.005`: at that rate it keeps a CPU ~80 % busy,
//! and two of them on a 2-core machine slow down the very tools being timed.
//! This one sleeps between requests.

use std::io::Write;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::os::fd::{AsRawFd, OwnedFd};
use std::time::{Duration, Instant};

use nix::sys::socket::{
    recv, sendto, setsockopt, socket, sockopt, AddressFamily, MsgFlags, SockFlag, SockProtocol,
    SockType, SockaddrIn,
};
use nix::sys::time::{TimeVal, TimeValLike};

use super::now;

const ECHO_REQUEST: u8 = 8;
const ECHO_REPLY: u8 = 0;
const PAYLOAD: &[u8] = b"netbridge-bench\0";

/// Probes `target` every `interval` until `deadline` passes (or a signal
/// ends the process). Needs CAP_NET_RAW (the harness runs as root).
pub fn run(target: Ipv4Addr, interval: Duration, deadline: Duration) -> Result<(), String> {
    let socket = socket(
        AddressFamily::Inet,
        SockType::Raw,
        SockFlag::SOCK_CLOEXEC,
        SockProtocol::Icmp,
    )
    .map_err(|e| format!("cannot open a raw ICMP socket: {e}"))?;
    // Wakes the receiver regularly so it notices the deadline.
    setsockopt(
        &socket,
        sockopt::ReceiveTimeout,
        &TimeVal::milliseconds(100),
    )
    .map_err(|e| format!("cannot set a receive timeout: {e}"))?;
    let sender = socket
        .try_clone()
        .map_err(|e| format!("cannot share the socket: {e}"))?;
    // A raw socket sees every ICMP packet of the namespace: our identifier
    // tells our replies apart.
    let ident = (std::process::id() & 0xffff) as u16;
    let end = Instant::now() + deadline;
    std::thread::spawn(move || send_loop(&sender, target, ident, interval, end));
    receive_loop(&socket, target, ident, end)
}

fn send_loop(socket: &OwnedFd, target: Ipv4Addr, ident: u16, interval: Duration, end: Instant) {
    let address = SockaddrIn::from(SocketAddrV4::new(target, 0));
    let mut next = Instant::now();
    let mut seq: u16 = 0;
    while next < end {
        let packet = echo_request(ident, seq);
        // "Network unreachable" and the like are part of what is measured.
        let _ = sendto(socket.as_raw_fd(), &packet, &address, MsgFlags::empty());
        seq = seq.wrapping_add(1);
        next += interval;
        let now = Instant::now();
        if next > now {
            std::thread::sleep(next - now);
        } else if now - next > interval {
            // Suspended for a while: carry on from now rather than burst.
            next = now;
        }
    }
}

fn receive_loop(
    socket: &OwnedFd,
    target: Ipv4Addr,
    ident: u16,
    end: Instant,
) -> Result<(), String> {
    let mut buf = [0u8; 1500];
    let stdout = std::io::stdout();
    while Instant::now() < end {
        let Ok(n) = recv(socket.as_raw_fd(), &mut buf, MsgFlags::empty()) else {
            continue;
        };
        let at = now();
        if let Some((from, seq)) = parse_echo_reply(&buf[..n], ident) {
            if from == target {
                writeln!(
                    stdout.lock(),
                    "[{at:.6}] 64 bytes from {from}: icmp_seq={seq}"
                )
                .map_err(|e| format!("stdout: {e}"))?;
            }
        }
    }
    Ok(())
}

/// An ICMP echo request with our identifier and sequence number.
pub fn echo_request(ident: u16, seq: u16) -> Vec<u8> {
    let mut packet = vec![ECHO_REQUEST, 0, 0, 0];
    packet.extend_from_slice(&ident.to_be_bytes());
    packet.extend_from_slice(&seq.to_be_bytes());
    packet.extend_from_slice(PAYLOAD);
    let sum = checksum(&packet);
    packet[2..4].copy_from_slice(&sum.to_be_bytes());
    packet
}

/// The Internet checksum (RFC 1071).
pub fn checksum(data: &[u8]) -> u16 {
    let mut sum: u32 = data
        .chunks(2)
        .map(|pair| u32::from(u16::from_be_bytes([pair[0], *pair.get(1).unwrap_or(&0)])))
        .sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// (source, sequence number) of an echo reply to `ident` in an IPv4 packet
/// as a raw socket receives it (IP header included).
pub fn parse_echo_reply(packet: &[u8], ident: u16) -> Option<(Ipv4Addr, u16)> {
    let header_len = usize::from(packet.first()? & 0x0f) * 4;
    let source: [u8; 4] = packet.get(12..16)?.try_into().ok()?;
    let icmp = packet.get(header_len..)?;
    let field = |at: usize| Some(u16::from_be_bytes([*icmp.get(at)?, *icmp.get(at + 1)?]));
    if *icmp.first()? != ECHO_REPLY || field(4)? != ident {
        return None;
    }
    Some((Ipv4Addr::from(source), field(6)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_checksums_to_zero() {
        let packet = echo_request(0x1234, 7);
        assert_eq!(checksum(&packet), 0);
        assert_eq!(&packet[4..8], &[0x12, 0x34, 0, 7]);
    }

    #[test]
    fn parses_only_replies_to_our_identifier() {
        let mut reply = vec![
            0x45, 0, 0, 0, 0, 0, 0, 0, 64, 1, 0, 0, 172, 25, 250, 10, 172, 25, 250, 254,
        ];
        let mut icmp = echo_request(0x1234, 9);
        icmp[0] = ECHO_REPLY;
        reply.extend_from_slice(&icmp);
        assert_eq!(
            parse_echo_reply(&reply, 0x1234),
            Some((Ipv4Addr::new(172, 25, 250, 10), 9))
        );
        assert_eq!(parse_echo_reply(&reply, 0x4321), None);
        assert_eq!(parse_echo_reply(&reply[..22], 0x1234), None);
        reply[20] = ECHO_REQUEST;
        assert_eq!(parse_echo_reply(&reply, 0x1234), None);
    }
}
