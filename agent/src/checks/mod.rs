//! Connectivity checks that prove a bridge change worked before it is committed.
//!
//! A [`CheckSpec`] (one `--check` argument) is [`expand`]ed against a
//! [`CheckContext`] (what the uplink had before the change) into concrete
//! [`Probe`]s, which [`run`] / [`run_all`] try until they succeed or their
//! deadline passes. Probes retry inside the deadline because a bridge change
//! leaves a gap of up to seconds (port learning, address moves) in which
//! nothing answers yet.
//!
//! Names are resolved only through the context's DNS servers: the host's
//! `/etc/resolv.conf` may point at a stub resolver or be mid-rewrite while a
//! change is on trial, so it proves nothing about the uplink.

pub mod dhcp;
mod dns;
mod guest;
mod icmp;
mod spec;
mod tcp;
#[cfg(test)]
mod tests;

use std::fmt;
use std::net::IpAddr;
use std::time::Duration;

use serde::{Deserialize, Serialize, Serializer};
use tokio::time::Instant;

pub use guest::remove_leftovers as remove_guest_leftovers;
pub use spec::{CheckSpec, DnsName, Host, ParseCheckError};

use crate::nm::Nm;

/// What the checks need to know about the host, captured before the change.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct CheckContext {
    /// Default gateways the uplink had; `gateway` pings each of them.
    pub gateways: Vec<IpAddr>,
    /// DNS servers the host uses (as `NetworkManager` reports them).
    pub dns_servers: Vec<IpAddr>,
    /// Port the DNS servers listen on: 53, except for tests on loopback.
    pub dns_port: u16,
    /// Interface (normally the bridge) that probes to IPv6 link-local
    /// addresses go out of: such an address has no route to pick one, and
    /// IPv6 default gateways usually are link-local.
    pub interface: Option<String>,
    /// NetworkManager, through which `guest-path` creates its throwaway
    /// ports; only the context after a conversion has it.
    #[serde(skip)]
    pub nm: Option<Nm>,
}

impl Default for CheckContext {
    fn default() -> Self {
        Self {
            gateways: Vec::new(),
            dns_servers: Vec::new(),
            dns_port: 53,
            interface: None,
            nm: None,
        }
    }
}

impl CheckContext {
    #[must_use]
    pub fn new(gateways: Vec<IpAddr>, dns_servers: Vec<IpAddr>) -> Self {
        Self {
            gateways,
            dns_servers,
            ..Self::default()
        }
    }
}

/// One concrete thing to try.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Probe {
    /// ICMP echo to an address (`ping 172.25.250.254`).
    Ping(IpAddr),
    /// The DNS server answers a query at all (`dns-server 172.25.250.254`).
    DnsServer(IpAddr),
    /// A TCP connection opens (`tcp 172.25.250.254:53`, `tcp [fd00::1]:22`).
    Tcp { host: Host, port: u16 },
    /// The name resolves through the context's DNS servers (`resolve gw.lab`).
    Resolve(DnsName),
    /// The bridge forwards a guest's frame between two of its ports, through
    /// the host firewall (`guest-path br0`).
    GuestPath(String),
}

impl Probe {
    /// Whether the probe means anything once a conversion is rolled back:
    /// `guest-path` tests a bridge that is gone by then.
    #[must_use]
    pub fn outlives_rollback(&self) -> bool {
        !matches!(self, Self::GuestPath(_))
    }
}

impl Probe {
    /// What kind of probe: `ping`, `dns-server`, `tcp`, `resolve`, `guest-path`.
    #[must_use]
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Ping(_) => "ping",
            Self::DnsServer(_) => "dns-server",
            Self::Tcp { .. } => "tcp",
            Self::Resolve(_) => "resolve",
            Self::GuestPath(_) => "guest-path",
        }
    }

    /// What it probes: an address, `HOST:PORT`, a name or a bridge.
    #[must_use]
    pub fn target(&self) -> String {
        match self {
            Self::Ping(ip) | Self::DnsServer(ip) => ip.to_string(),
            Self::Tcp { host, port } => spec::HostPort(host, *port).to_string(),
            Self::Resolve(name) => name.to_string(),
            Self::GuestPath(bridge) => bridge.clone(),
        }
    }
}

impl fmt::Display for Probe {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.kind(), self.target())
    }
}

impl Serialize for Probe {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

/// The probes a check stands for. `gateway` and `dns-servers` give one probe
/// per (distinct) address in the context, so with an empty context they give
/// none; reporting that is the caller's business. `guest-path` stands for
/// the context's interface, which must be the new bridge: expand it only
/// against the context after a conversion.
pub fn expand(spec: &CheckSpec, ctx: &CheckContext) -> Vec<Probe> {
    match spec {
        CheckSpec::Gateway => distinct(&ctx.gateways).map(Probe::Ping).collect(),
        CheckSpec::DnsServers => distinct(&ctx.dns_servers).map(Probe::DnsServer).collect(),
        CheckSpec::Ping(ip) => vec![Probe::Ping(*ip)],
        CheckSpec::Tcp { host, port } => vec![Probe::Tcp {
            host: host.clone(),
            port: *port,
        }],
        CheckSpec::Dns(name) => vec![Probe::Resolve(name.clone())],
        CheckSpec::GuestPath => ctx
            .interface
            .clone()
            .map(Probe::GuestPath)
            .into_iter()
            .collect(),
    }
}

fn distinct(addrs: &[IpAddr]) -> impl Iterator<Item = IpAddr> + '_ {
    addrs
        .iter()
        .enumerate()
        .filter(|(i, ip)| !addrs[..*i].contains(ip))
        .map(|(_, ip)| *ip)
}

/// How one probe went. Serialised structured, as every `--json` document
/// shows a check: `{"kind": "ping", "target": "172.25.250.254", "ok": true,
/// "detail": "reply in 0.4 ms", "ms": 0.4}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProbeResult {
    pub probe: Probe,
    pub ok: bool,
    /// For people: `reply in 0.4 ms`, `no reply within 3 s`, `connection refused`, `NXDOMAIN from …`.
    pub detail: String,
    pub elapsed: Duration,
}

impl Serialize for ProbeResult {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let mut doc = serializer.serialize_struct("ProbeResult", 5)?;
        doc.serialize_field("kind", self.probe.kind())?;
        doc.serialize_field("target", &self.probe.target())?;
        doc.serialize_field("ok", &self.ok)?;
        doc.serialize_field("detail", &self.detail)?;
        // Milliseconds to a tenth: finer is noise.
        doc.serialize_field(
            "ms",
            &((self.elapsed.as_secs_f64() * 10_000.0).round() / 10.0),
        )?;
        doc.end()
    }
}

/// Tries `probe` until it succeeds or `deadline` has passed. Never panics on
/// what the network sends back; every failure becomes `ok: false` and a detail.
pub async fn run(probe: &Probe, ctx: &CheckContext, deadline: Duration) -> ProbeResult {
    let budget = Budget::new(deadline);
    let outcome = match probe {
        Probe::Ping(ip) => icmp::ping(*ip, ctx, budget).await,
        Probe::DnsServer(ip) => dns::server_answers(*ip, ctx, budget).await,
        Probe::Tcp { host, port } => tcp::connect(host, *port, ctx, budget).await,
        Probe::Resolve(name) => dns::resolve(name, ctx, budget)
            .await
            .map(|resolved| resolved.to_string()),
        Probe::GuestPath(bridge) => match &ctx.nm {
            Some(nm) => guest::forwards(nm, bridge, budget).await,
            None => Err("no connection to NetworkManager to create the throwaway ports".to_owned()),
        },
    };
    let elapsed = budget.start.elapsed();
    let (ok, detail) = match outcome {
        Ok(detail) => (true, detail),
        Err(detail) => (false, detail),
    };
    tracing::debug!(%probe, ok, %detail, ?elapsed, "probe finished");
    ProbeResult {
        probe: probe.clone(),
        ok,
        detail,
        elapsed,
    }
}

/// Runs all probes concurrently, each with its own `deadline`; results come
/// back in the order of `probes`.
pub async fn run_all(probes: &[Probe], ctx: &CheckContext, deadline: Duration) -> Vec<ProbeResult> {
    futures_util::future::join_all(probes.iter().map(|probe| run(probe, ctx, deadline))).await
}

/// The time one probe may take.
#[derive(Debug, Clone, Copy)]
struct Budget {
    start: Instant,
    end: Instant,
    /// The deadline as given, for "no reply within 3 s" (not `end - now`).
    total: Duration,
}

impl Budget {
    fn new(deadline: Duration) -> Self {
        // Capped so `start + total` cannot overflow on an absurd deadline.
        const CENTURY: Duration = Duration::from_secs(100 * 365 * 24 * 3600);
        let total = deadline.min(CENTURY);
        let start = Instant::now();
        Self {
            start,
            end: start + total,
            total,
        }
    }

    /// Time left, zero once the deadline has passed.
    fn remaining(&self) -> Duration {
        self.end.saturating_duration_since(Instant::now())
    }

    fn expired(&self) -> bool {
        Instant::now() >= self.end
    }
}

/// The interface a probe to `ip` must be bound to, if any: IPv6 link-local
/// addresses are ambiguous without one.
fn link_local_interface(ip: IpAddr, ctx: &CheckContext) -> Result<Option<&str>, String> {
    match ip {
        IpAddr::V6(v6) if v6.is_unicast_link_local() => {
            ctx.interface.as_deref().map(Some).ok_or_else(|| {
                format!("{ip} is link-local, but no interface was given to reach it")
            })
        }
        _ => Ok(None),
    }
}

/// A fresh random 16-bit value (ICMP identifiers). uuid's v4 generator is the
/// OS random source the crate already depends on.
fn random_u16() -> u16 {
    let bytes = uuid::Uuid::new_v4().into_bytes();
    u16::from_le_bytes([bytes[0], bytes[1]])
}

/// `0.4 ms`, `12.3 ms`, `500 ms`, `3 s`, `2.5 s`: short, for details.
fn human(d: Duration) -> String {
    if d >= Duration::from_secs(1) {
        if d.subsec_nanos() == 0 {
            format!("{} s", d.as_secs())
        } else {
            format!("{:.1} s", d.as_secs_f64())
        }
    } else if d.subsec_nanos().is_multiple_of(1_000_000) {
        format!("{} ms", d.as_millis())
    } else {
        let ms = d.as_secs_f64() * 1000.0;
        let places = if ms < 0.1 { 2 } else { 1 };
        format!("{ms:.places$} ms")
    }
}

/// An I/O error as a short lower-case phrase (`connection refused`).
fn describe_io(err: &std::io::Error) -> String {
    use std::io::ErrorKind as K;
    match err.kind() {
        K::ConnectionRefused => "connection refused".to_owned(),
        K::HostUnreachable => "host unreachable".to_owned(),
        K::NetworkUnreachable => "network unreachable".to_owned(),
        K::AddrNotAvailable => "source address not available".to_owned(),
        K::ConnectionReset => "connection reset".to_owned(),
        K::TimedOut => "timed out".to_owned(),
        _ => err.to_string(),
    }
}
