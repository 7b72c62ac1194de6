//! TCP connect probes.

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use futures_util::stream::{FuturesUnordered, StreamExt};
use tokio::net::TcpSocket;
use tokio::time::Instant;

use super::{describe_io, dns, human, link_local_interface, Budget, CheckContext, Host};

/// Pause between attempts after a refusal or an unreachable error: the port
/// may be just coming up, or the route just coming back, after the change.
const RETRY: Duration = Duration::from_millis(200);

struct Target<'a> {
    addr: SocketAddr,
    interface: Option<&'a str>,
}

pub(super) async fn connect(
    host: &Host,
    port: u16,
    ctx: &CheckContext,
    budget: Budget,
) -> Result<String, String> {
    let addrs = match host {
        Host::Ip(ip) => vec![*ip],
        Host::Name(name) => {
            dns::resolve(name, ctx, budget)
                .await
                .map_err(|why| format!("cannot resolve {name}: {why}"))?
                .addrs
        }
    };
    let targets = addrs
        .into_iter()
        .map(|ip| {
            link_local_interface(ip, ctx).map(|interface| Target {
                addr: SocketAddr::new(ip, port),
                interface,
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    let start = Instant::now();
    let peer = retry_until_connected(&targets, budget).await?;
    let elapsed = human(start.elapsed());
    Ok(match host {
        Host::Ip(_) => format!("connected in {elapsed}"),
        Host::Name(_) => format!("connected to {peer} in {elapsed}"),
    })
}

async fn retry_until_connected(
    targets: &[Target<'_>],
    budget: Budget,
) -> Result<SocketAddr, String> {
    let mut attempts = 0;
    let mut last_error = None;
    loop {
        attempts += 1;
        match tokio::time::timeout_at(budget.end, first_connection(targets)).await {
            Ok(Ok(peer)) => return Ok(peer),
            Ok(Err(e)) if is_permanent(&e) => return Err(describe_io(&e)),
            Ok(Err(e)) => last_error = Some(e),
            Err(_) => break,
        }
        tokio::time::sleep(RETRY.min(budget.remaining())).await;
        if budget.expired() {
            break;
        }
    }
    let within = human(budget.total);
    Err(match last_error {
        Some(e) => format!("{} ({attempts} attempts within {within})", describe_io(&e)),
        None => format!("no answer within {within}"),
    })
}

/// Errors no retry can cure, such as an address the socket family rejects.
fn is_permanent(err: &io::Error) -> bool {
    matches!(
        err.kind(),
        io::ErrorKind::InvalidInput | io::ErrorKind::Unsupported
    )
}

/// Connects to all targets at once (a name may have several addresses, some
/// unreachable); the first to open wins, else the last error is returned.
async fn first_connection(targets: &[Target<'_>]) -> io::Result<SocketAddr> {
    let mut pending: FuturesUnordered<_> = targets.iter().map(connect_one).collect();
    let mut last_error = io::Error::new(io::ErrorKind::InvalidInput, "no address to connect to");
    while let Some(result) = pending.next().await {
        match result {
            Ok(peer) => return Ok(peer),
            Err(e) => last_error = e,
        }
    }
    Err(last_error)
}

async fn connect_one(target: &Target<'_>) -> io::Result<SocketAddr> {
    let socket = match target.addr {
        SocketAddr::V4(_) => TcpSocket::new_v4()?,
        SocketAddr::V6(_) => TcpSocket::new_v6()?,
    };
    if let Some(interface) = target.interface {
        socket.bind_device(Some(interface.as_bytes()))?;
    }
    // Dropping the stream closes it at once: opening it was the whole test.
    socket.connect(target.addr).await.map(|_stream| target.addr)
}
