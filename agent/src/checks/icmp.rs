//! ICMP echo probes through surge-ping (IPv4 and IPv6; needs root or
//! `CAP_NET_RAW`, or an unprivileged ping group).

use std::net::IpAddr;
use std::time::Duration;

use futures_util::stream::{FuturesUnordered, StreamExt};
use surge_ping::{Client, Config, IcmpPacket, PingIdentifier, PingSequence, SurgeError, ICMP};
use tokio::time::MissedTickBehavior;

use super::{describe_io, human, link_local_interface, random_u16, Budget, CheckContext};

/// A new echo request goes out this often. Earlier requests stay armed until
/// the deadline, so a reply slower than the interval still counts.
const RESEND: Duration = Duration::from_millis(200);

const PAYLOAD: &[u8] = b"netbridge check\0";

/// ICMP types of an echo reply, per family.
const ECHO_REPLY_V4: u8 = 0;
const ECHO_REPLY_V6: u8 = 129;

pub(super) async fn ping(
    addr: IpAddr,
    ctx: &CheckContext,
    budget: Budget,
) -> Result<String, String> {
    let client = client(addr, ctx)?;
    // On a raw socket every ICMP socket of the host sees every echo reply; a
    // fresh identifier keeps concurrent probes and netbridge processes from
    // taking each other's replies. (Datagram ping sockets get one from the
    // kernel instead.)
    let ident = PingIdentifier(random_u16());
    let mut attempts = FuturesUnordered::new();
    let mut resend = tokio::time::interval(RESEND);
    resend.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let expiry = tokio::time::sleep_until(budget.end);
    tokio::pin!(expiry);
    let mut seq: u16 = 0;
    let mut last_error = None;
    loop {
        tokio::select! {
            () = &mut expiry => return Err(no_reply(budget, last_error)),
            _ = resend.tick() => {
                let wait = budget.remaining();
                attempts.push(echo(client.clone(), addr, ident, PingSequence(seq), wait));
                seq = seq.wrapping_add(1);
            }
            Some(result) = attempts.next(), if !attempts.is_empty() => match result {
                Ok((packet, rtt)) if is_echo_reply(&packet) => {
                    return Ok(format!("reply in {}", human(rtt)));
                }
                Ok((packet, _)) => last_error = Some(describe_icmp_error(&packet)),
                Err(SurgeError::Timeout { .. }) => {}
                Err(SurgeError::IOError(e)) => last_error = Some(describe_io(&e)),
                Err(e) => last_error = Some(e.to_string()),
            }
        }
    }
}

fn client(addr: IpAddr, ctx: &CheckContext) -> Result<Client, String> {
    let kind = match addr {
        IpAddr::V4(_) => ICMP::V4,
        IpAddr::V6(_) => ICMP::V6,
    };
    let mut config = Config::builder().kind(kind);
    if let Some(interface) = link_local_interface(addr, ctx)? {
        config = config.interface(interface);
    }
    Client::new(&config.build()).map_err(|e| match e.kind() {
        // The socket library's own text for it is a multi-line how-to.
        std::io::ErrorKind::PermissionDenied => {
            "cannot open ICMP socket: needs root or CAP_NET_RAW".to_owned()
        }
        _ => format!("cannot open ICMP socket: {}", describe_io(&e)),
    })
}

async fn echo(
    client: Client,
    addr: IpAddr,
    ident: PingIdentifier,
    seq: PingSequence,
    wait: Duration,
) -> Result<(IcmpPacket, Duration), SurgeError> {
    let mut pinger = client.pinger(addr, ident).await;
    pinger.timeout(wait);
    pinger.ping(seq, PAYLOAD).await
}

/// surge-ping also hands over ICMP errors about our requests (a router's
/// "unreachable"); those are not replies from the target.
fn is_echo_reply(packet: &IcmpPacket) -> bool {
    match packet {
        IcmpPacket::V4(p) => p.get_icmp_type().0 == ECHO_REPLY_V4,
        IcmpPacket::V6(p) => p.get_icmpv6_type().0 == ECHO_REPLY_V6,
    }
}

fn describe_icmp_error(packet: &IcmpPacket) -> String {
    let (what, code, from) = match packet {
        IcmpPacket::V4(p) => {
            let what = match p.get_icmp_type().0 {
                3 => "destination unreachable",
                11 => "time exceeded",
                _ => "ICMP error",
            };
            (what, p.get_icmp_code().0, IpAddr::V4(p.get_source()))
        }
        IcmpPacket::V6(p) => {
            let what = match p.get_icmpv6_type().0 {
                1 => "destination unreachable",
                3 => "time exceeded",
                _ => "ICMPv6 error",
            };
            (what, p.get_icmpv6_code().0, IpAddr::V6(p.get_source()))
        }
    };
    format!("{what} (code {code}) from {from}")
}

fn no_reply(budget: Budget, last_error: Option<String>) -> String {
    let within = human(budget.total);
    match last_error {
        Some(error) => format!("no reply within {within} (last: {error})"),
        None => format!("no reply within {within}"),
    }
}
