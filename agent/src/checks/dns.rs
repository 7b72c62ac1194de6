//! DNS probes: queries built and replies parsed with hickory-proto, sent over
//! UDP straight to the context's servers (never the host's resolver).

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use futures_util::stream::{FuturesUnordered, StreamExt};
use hickory_proto::op::{Message, MessageType, Query, ResponseCode};
use hickory_proto::rr::{Name, RData, RecordType};
use tokio::net::UdpSocket;
use tokio::time::{Instant, MissedTickBehavior};

use super::{describe_io, distinct, human, link_local_interface, Budget, CheckContext, DnsName};

/// UDP gives no delivery guarantee, so a query is repeated this often until a
/// reply comes; every copy carries the same id, so any reply will do.
const RESEND: Duration = Duration::from_millis(300);

/// Large enough for any UDP reply to a query without EDNS (512) and then some.
const MAX_REPLY: usize = 4096;

/// Where a name led: its addresses and which server said so.
#[derive(Debug, Clone)]
pub(super) struct Resolved {
    pub addrs: Vec<IpAddr>,
    server: IpAddr,
    elapsed: Duration,
}

impl fmt::Display for Resolved {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const SHOWN: usize = 3;
        let shown: Vec<String> = self
            .addrs
            .iter()
            .take(SHOWN)
            .map(ToString::to_string)
            .collect();
        write!(f, "resolved to {}", shown.join(", "))?;
        if self.addrs.len() > SHOWN {
            write!(f, " and {} more", self.addrs.len() - SHOWN)?;
        }
        write!(f, " by {} in {}", self.server, human(self.elapsed))
    }
}

/// Any well-formed reply proves the server is reachable, even NXDOMAIN or
/// REFUSED: the question is whether the path works, not what it knows. The
/// root NS query is one every resolver can answer from its hints.
pub(super) async fn server_answers(
    server: IpAddr,
    ctx: &CheckContext,
    budget: Budget,
) -> Result<String, String> {
    let start = Instant::now();
    let reply = exchange(server, ctx, &query(Name::root(), RecordType::NS), budget).await?;
    Ok(format!(
        "answered {} in {}",
        rcode(reply.metadata.response_code),
        human(start.elapsed())
    ))
}

/// Asks all servers at once, so a dead first server does not use up the
/// deadline; the first that answers with addresses wins.
pub(super) async fn resolve(
    name: &DnsName,
    ctx: &CheckContext,
    budget: Budget,
) -> Result<Resolved, String> {
    if ctx.dns_servers.is_empty() {
        return Err("no DNS servers to ask".to_owned());
    }
    let qname = absolute(name)?;
    let mut lookups: FuturesUnordered<_> = distinct(&ctx.dns_servers)
        .map(|server| lookup(server, &qname, ctx, budget))
        .collect();
    let mut failures = Vec::new();
    while let Some(result) = lookups.next().await {
        match result {
            Ok(resolved) => return Ok(resolved),
            Err(why) => failures.push(why),
        }
    }
    Err(failures.join("; "))
}

/// A, then AAAA if the name exists but has no A records.
async fn lookup(
    server: IpAddr,
    qname: &Name,
    ctx: &CheckContext,
    budget: Budget,
) -> Result<Resolved, String> {
    let start = Instant::now();
    for rtype in [RecordType::A, RecordType::AAAA] {
        let reply = exchange(server, ctx, &query(qname.clone(), rtype), budget)
            .await
            .map_err(|why| format!("{server}: {why}"))?;
        let code = reply.metadata.response_code;
        if code != ResponseCode::NoError {
            return Err(format!("{server}: {}", rcode(code)));
        }
        let addrs = addresses(&reply);
        if !addrs.is_empty() {
            return Ok(Resolved {
                addrs,
                server,
                elapsed: start.elapsed(),
            });
        }
    }
    Err(format!("{server}: no A or AAAA records"))
}

fn absolute(name: &DnsName) -> Result<Name, String> {
    let mut qname = Name::from_ascii(name.as_str())
        .map_err(|e| format!("{name} is not a usable DNS name: {e}"))?;
    qname.set_fqdn(true);
    Ok(qname)
}

/// A recursive query with a fresh random id (hickory's `Message::query`).
fn query(name: Name, rtype: RecordType) -> Message {
    let mut message = Message::query();
    message.add_query(Query::query(name, rtype));
    message.metadata.recursion_desired = true;
    message
}

fn addresses(reply: &Message) -> Vec<IpAddr> {
    // Answers may hold a CNAME chain before the addresses; the addresses at
    // its end are what a resolver would hand out, whatever their owner name.
    reply
        .answers
        .iter()
        .filter_map(|record| match &record.data {
            RData::A(a) => Some(IpAddr::V4(a.0)),
            RData::AAAA(aaaa) => Some(IpAddr::V6(aaaa.0)),
            _ => None,
        })
        .collect()
}

/// The mnemonic operators know from dig (`NXDOMAIN`), not hickory's prose.
fn rcode(code: ResponseCode) -> String {
    let name = match u16::from(code) {
        0 => "NOERROR",
        1 => "FORMERR",
        2 => "SERVFAIL",
        3 => "NXDOMAIN",
        4 => "NOTIMP",
        5 => "REFUSED",
        other => return format!("RCODE {other}"),
    };
    name.to_owned()
}

/// Sends `query` to `server` until a reply with its id arrives or the budget
/// runs out. Datagrams that do not parse, are not responses or carry another
/// id are dropped: they are stale, stray or forged, not an answer.
async fn exchange(
    server: IpAddr,
    ctx: &CheckContext,
    query: &Message,
    budget: Budget,
) -> Result<Message, String> {
    let target = SocketAddr::new(server, ctx.dns_port);
    let wire = query
        .to_vec()
        .map_err(|e| format!("cannot encode query: {e}"))?;
    let socket = unconnected_socket(server, ctx).await?;
    let mut resend = tokio::time::interval(RESEND);
    resend.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let expiry = tokio::time::sleep_until(budget.end);
    tokio::pin!(expiry);
    let mut buf = vec![0; MAX_REPLY];
    let mut connected = false;
    let mut last_error = None;
    loop {
        tokio::select! {
            () = &mut expiry => return Err(no_reply(budget, last_error)),
            _ = resend.tick() => {
                if let Err(e) = send(&socket, &mut connected, target, &wire).await {
                    last_error = Some(describe_io(&e));
                }
            }
            received = socket.recv(&mut buf), if connected => match received {
                Ok(len) => {
                    if let Some(reply) = reply_to(query.metadata.id, &buf[..len]) {
                        return Ok(reply);
                    }
                }
                // An ICMP error (port unreachable: ECONNREFUSED) surfaces here
                // once; stop receiving until the next send so a persistent
                // error cannot spin.
                Err(e) => {
                    last_error = Some(describe_io(&e));
                    connected = false;
                }
            }
        }
    }
}

/// Bound to an ephemeral port, but not yet connected: connecting looks up a
/// route, which may be missing for a moment mid-change, so it is retried with
/// each send instead of failing the probe.
async fn unconnected_socket(server: IpAddr, ctx: &CheckContext) -> Result<UdpSocket, String> {
    let interface = link_local_interface(server, ctx)?;
    let local: SocketAddr = match server {
        IpAddr::V4(_) => (Ipv4Addr::UNSPECIFIED, 0).into(),
        IpAddr::V6(_) => (Ipv6Addr::UNSPECIFIED, 0).into(),
    };
    let socket = UdpSocket::bind(local)
        .await
        .map_err(|e| format!("cannot open UDP socket: {}", describe_io(&e)))?;
    if let Some(interface) = interface {
        socket
            .bind_device(Some(interface.as_bytes()))
            .map_err(|e| format!("cannot bind to {interface}: {}", describe_io(&e)))?;
    }
    Ok(socket)
}

/// A connected socket only hears from the server and learns of ICMP errors
/// (a closed port shows as "connection refused" instead of silence).
async fn send(
    socket: &UdpSocket,
    connected: &mut bool,
    target: SocketAddr,
    wire: &[u8],
) -> std::io::Result<()> {
    socket.connect(target).await?;
    *connected = true;
    socket.send(wire).await.map(drop)
}

fn reply_to(id: u16, datagram: &[u8]) -> Option<Message> {
    let message = Message::from_vec(datagram)
        .inspect_err(|e| tracing::trace!("ignoring malformed DNS datagram: {e}"))
        .ok()?;
    let is_reply = message.metadata.message_type == MessageType::Response;
    if is_reply && message.metadata.id == id {
        Some(message)
    } else {
        tracing::trace!(
            id = message.metadata.id,
            "ignoring DNS message that is not our reply"
        );
        None
    }
}

fn no_reply(budget: Budget, last_error: Option<String>) -> String {
    let within = human(budget.total);
    match last_error {
        Some(error) => format!("no reply within {within} ({error})"),
        None => format!("no reply within {within}"),
    }
}
