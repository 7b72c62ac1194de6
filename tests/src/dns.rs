//! A minimal DNS A-record query, so lab tests can check the LAN's DNS server
//! without depending on `dig` being installed.

use std::io;
use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::time::Duration;

const TYPE_A: u16 = 1;
const CLASS_IN: u16 = 1;

/// Asks `server` (port 53) for the A records of `name`.
pub fn resolve_a(server: Ipv4Addr, name: &str, timeout: Duration) -> io::Result<Vec<Ipv4Addr>> {
    let socket = UdpSocket::bind(SocketAddr::from((Ipv4Addr::UNSPECIFIED, 0)))?;
    socket.set_read_timeout(Some(timeout))?;
    socket.connect(SocketAddr::from((server, 53)))?;
    let id = (std::process::id() & 0xffff) as u16;
    socket.send(&encode_query(id, name)?)?;
    let mut buf = [0u8; 1500];
    let len = socket.recv(&mut buf)?;
    parse_answer(id, &buf[..len])
}

fn invalid(msg: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg.into())
}

pub(crate) fn encode_query(id: u16, name: &str) -> io::Result<Vec<u8>> {
    let mut msg = Vec::with_capacity(32 + name.len());
    msg.extend(id.to_be_bytes());
    msg.extend(0x0100u16.to_be_bytes()); // recursion desired
    msg.extend([0, 1, 0, 0, 0, 0, 0, 0]); // one question
    for label in name.trim_end_matches('.').split('.') {
        let len = u8::try_from(label.len())
            .ok()
            .filter(|l| (1..=63).contains(l))
            .ok_or_else(|| invalid(format!("bad DNS label {label:?}")))?;
        msg.push(len);
        msg.extend(label.as_bytes());
    }
    msg.push(0);
    msg.extend(TYPE_A.to_be_bytes());
    msg.extend(CLASS_IN.to_be_bytes());
    Ok(msg)
}

pub(crate) fn parse_answer(id: u16, msg: &[u8]) -> io::Result<Vec<Ipv4Addr>> {
    let header = msg.get(..12).ok_or_else(|| invalid("short DNS reply"))?;
    if u16::from_be_bytes([header[0], header[1]]) != id {
        return Err(invalid("DNS reply with another id"));
    }
    let rcode = header[3] & 0x0f;
    if rcode != 0 {
        return Err(invalid(format!("DNS rcode {rcode}")));
    }
    let questions = u16::from_be_bytes([header[4], header[5]]);
    let answers = u16::from_be_bytes([header[6], header[7]]);
    let mut pos = 12;
    for _ in 0..questions {
        pos = skip_name(msg, pos)? + 4;
    }
    let mut found = Vec::new();
    for _ in 0..answers {
        pos = skip_name(msg, pos)?;
        let fixed = msg
            .get(pos..pos + 10)
            .ok_or_else(|| invalid("short DNS record"))?;
        let rtype = u16::from_be_bytes([fixed[0], fixed[1]]);
        let rdlen = usize::from(u16::from_be_bytes([fixed[8], fixed[9]]));
        let data = msg
            .get(pos + 10..pos + 10 + rdlen)
            .ok_or_else(|| invalid("short DNS record data"))?;
        if let (TYPE_A, [a, b, c, d]) = (rtype, data) {
            found.push(Ipv4Addr::new(*a, *b, *c, *d));
        }
        pos += 10 + rdlen;
    }
    Ok(found)
}

/// The position after the (possibly compressed) name starting at `pos`.
fn skip_name(msg: &[u8], mut pos: usize) -> io::Result<usize> {
    loop {
        let len = *msg
            .get(pos)
            .ok_or_else(|| invalid("DNS name runs off the end"))?;
        match len {
            0 => return Ok(pos + 1),
            l if l & 0xc0 == 0xc0 => return Ok(pos + 2),
            l => pos += 1 + usize::from(l),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_query_round_trips_through_a_compressed_answer() {
        let mut reply = encode_query(7, "gw.lab").expect("encode");
        reply[2] = 0x81; // response, recursion desired
        reply[3] = 0x80; // recursion available, rcode 0
        reply[7] = 1; // one answer
        reply.extend([0xc0, 12, 0, 1, 0, 1, 0, 0, 0, 0, 0, 4, 172, 25, 250, 254]);
        assert_eq!(
            parse_answer(7, &reply).expect("parse"),
            vec![Ipv4Addr::new(172, 25, 250, 254)]
        );
    }

    #[test]
    fn errors_and_foreign_ids_are_rejected() {
        let mut reply = encode_query(7, "gw.lab").expect("encode");
        reply[3] = 3; // NXDOMAIN
        assert!(parse_answer(7, &reply).is_err());
        assert!(parse_answer(8, &encode_query(7, "x").expect("encode")).is_err());
        assert!(encode_query(1, "a..b").is_err());
    }
}
