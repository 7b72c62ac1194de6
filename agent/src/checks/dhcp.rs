//! The DHCP pre-check: does the server that leased the uplink's address
//! still answer? A DHCPINFORM (RFC 2131 §3.4.4) from the leased address,
//! unicast to the server that granted the lease: the server acknowledges
//! with its configuration and allocates nothing, so the check changes no
//! lease and needs no raw socket. It is sent from an ephemeral port and the
//! server answers to it (dnsmasq does; a server that insists on port 68 looks
//! silent — leave the pre-check out with `--no-default-checks`).

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::time::Duration;

use dhcproto::v4::{DhcpOption, Message, MessageType, Opcode};
use dhcproto::{Decodable, Decoder, Encodable, Encoder};
use serde::Serialize;
use tokio::net::UdpSocket;
use tokio::time::Instant;

use super::human;

const SERVER_PORT: u16 = 67;
/// Between retransmissions, as a client would; the deadline bounds them.
const RETRY: Duration = Duration::from_millis(500);

/// How the pre-check went.
#[derive(Debug, Clone, Serialize)]
pub struct DhcpAnswer {
    pub server: Ipv4Addr,
    pub ok: bool,
    pub detail: String,
    #[serde(rename = "elapsed_ms")]
    pub elapsed_ms: f64,
}

/// Asks `server` for an acknowledgement from `client` (the leased address)
/// with hardware address `mac`, for at most `deadline`.
pub async fn inform(
    server: Ipv4Addr,
    client: Ipv4Addr,
    mac: &[u8],
    deadline: Duration,
) -> DhcpAnswer {
    let start = Instant::now();
    let outcome = tokio::time::timeout(deadline, exchange(server, client, mac)).await;
    let elapsed = start.elapsed();
    let (ok, detail) = match outcome {
        Ok(Ok(())) => (
            true,
            format!("acknowledged a DHCPINFORM in {}", human(elapsed)),
        ),
        Ok(Err(why)) => (false, why),
        Err(_) => (
            false,
            format!("no answer to a DHCPINFORM within {}", human(deadline)),
        ),
    };
    DhcpAnswer {
        server,
        ok,
        detail,
        elapsed_ms: (elapsed.as_secs_f64() * 10_000.0).round() / 10.0,
    }
}

async fn exchange(server: Ipv4Addr, client: Ipv4Addr, mac: &[u8]) -> Result<(), String> {
    let socket = UdpSocket::bind(SocketAddrV4::new(client, 0))
        .await
        .map_err(|e| format!("cannot bind a UDP socket to {client}: {e}"))?;
    // Any id that tells this exchange from the host's own client's.
    let xid = uuid::Uuid::new_v4().as_u128() as u32;
    let request = encode(xid, client, mac)?;
    let to = SocketAddr::V4(SocketAddrV4::new(server, SERVER_PORT));
    let mut buf = vec![0u8; 1500];
    loop {
        socket
            .send_to(&request, to)
            .await
            .map_err(|e| format!("cannot send to {to}: {e}"))?;
        let until = Instant::now() + RETRY;
        while let Ok(received) = tokio::time::timeout_at(until, socket.recv_from(&mut buf)).await {
            let (len, from) = received.map_err(|e| format!("receiving from {to}: {e}"))?;
            if from.ip() == to.ip() && is_ack_for(&buf[..len], xid) {
                return Ok(());
            }
        }
    }
}

fn encode(xid: u32, client: Ipv4Addr, mac: &[u8]) -> Result<Vec<u8>, String> {
    if mac.len() > 16 {
        return Err(format!("a hardware address of {} bytes", mac.len()));
    }
    let unspecified = Ipv4Addr::UNSPECIFIED;
    let mut message = Message::new_with_id(xid, client, unspecified, unspecified, unspecified, mac);
    message.set_opcode(Opcode::BootRequest);
    message
        .opts_mut()
        .insert(DhcpOption::MessageType(MessageType::Inform));
    let mut out = Vec::new();
    message
        .encode(&mut Encoder::new(&mut out))
        .map_err(|e| format!("cannot encode a DHCPINFORM: {e}"))?;
    Ok(out)
}

fn is_ack_for(reply: &[u8], xid: u32) -> bool {
    Message::decode(&mut Decoder::new(reply)).is_ok_and(|m| {
        m.xid() == xid
            && m.opcode() == Opcode::BootReply
            && m.opts().msg_type() == Some(MessageType::Ack)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_inform_carries_the_leased_address_and_decodes_back() {
        let mac = [0x52, 0x54, 0x00, 0x12, 0x34, 0x56];
        let bytes = encode(7, Ipv4Addr::new(172, 25, 250, 108), &mac).unwrap();
        let m = Message::decode(&mut Decoder::new(&bytes)).unwrap();
        assert_eq!(m.xid(), 7);
        assert_eq!(m.ciaddr(), Ipv4Addr::new(172, 25, 250, 108));
        assert_eq!(m.chaddr(), &mac[..]);
        assert_eq!(m.opts().msg_type(), Some(MessageType::Inform));
        // Our own request is not an acknowledgement.
        assert!(!is_ack_for(&bytes, 7));
    }

    #[test]
    fn only_an_ack_with_our_id_counts() {
        let mut ack = Message::new_with_id(
            9,
            Ipv4Addr::UNSPECIFIED,
            Ipv4Addr::UNSPECIFIED,
            Ipv4Addr::UNSPECIFIED,
            Ipv4Addr::UNSPECIFIED,
            &[1, 2, 3, 4, 5, 6],
        );
        ack.set_opcode(Opcode::BootReply);
        ack.opts_mut()
            .insert(DhcpOption::MessageType(MessageType::Ack));
        let mut bytes = Vec::new();
        ack.encode(&mut Encoder::new(&mut bytes)).unwrap();
        assert!(is_ack_for(&bytes, 9));
        assert!(!is_ack_for(&bytes, 10));
        assert!(!is_ack_for(b"garbage", 9));
    }
}
