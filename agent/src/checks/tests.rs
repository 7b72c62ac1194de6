//! Expansion, and probes against real sockets on loopback only (this machine
//! has no other network, and nothing here may send anywhere else). The ICMP
//! tests need root, as netbridge itself does.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::Duration;

use hickory_proto::op::{Message, OpCode, ResponseCode};
use hickory_proto::rr::rdata::{A, AAAA};
use hickory_proto::rr::{RData, Record, RecordType};
use tokio::net::{TcpListener, UdpSocket};
use tokio::task::JoinHandle;

use super::*;

const DEADLINE: Duration = Duration::from_millis(800);
/// Generous: only catches a probe that ignores its deadline.
const BOUND: Duration = Duration::from_secs(5);

fn ip(text: &str) -> IpAddr {
    text.parse().expect("test address")
}

fn spec(text: &str) -> CheckSpec {
    text.parse().expect("test spec")
}

fn shown(probes: &[Probe]) -> Vec<String> {
    probes.iter().map(Probe::to_string).collect()
}

#[test]
fn expands_against_the_context() {
    let ctx = CheckContext::new(
        vec![ip("172.25.250.254"), ip("fe80::1"), ip("172.25.250.254")],
        vec![ip("172.25.250.254"), ip("fd00::53")],
    );
    let cases: [(&str, &[&str]); 7] = [
        ("gateway", &["ping 172.25.250.254", "ping fe80::1"]),
        (
            "dns-servers",
            &["dns-server 172.25.250.254", "dns-server fd00::53"],
        ),
        ("ping:[fd00::1]", &["ping fd00::1"]),
        ("tcp:172.25.250.254:53", &["tcp 172.25.250.254:53"]),
        ("tcp:[fd00::1]:22", &["tcp [fd00::1]:22"]),
        ("tcp:gw.lab:22", &["tcp gw.lab:22"]),
        ("dns:gw.lab", &["resolve gw.lab"]),
    ];
    for (text, want) in cases {
        assert_eq!(shown(&expand(&spec(text), &ctx)), want, "{text}");
    }
}

#[test]
fn context_checks_expand_to_nothing_without_addresses() {
    let ctx = CheckContext::default();
    assert_eq!(ctx.dns_port, 53);
    assert!(expand(&CheckSpec::Gateway, &ctx).is_empty());
    assert!(expand(&CheckSpec::DnsServers, &ctx).is_empty());
    assert_eq!(expand(&spec("ping:10.0.0.1"), &ctx).len(), 1);
}

#[test]
fn result_serialises_for_machines() {
    let result = ProbeResult {
        probe: Probe::Tcp {
            host: Host::Ip(ip("fd00::1")),
            port: 22,
        },
        ok: false,
        detail: "connection refused".to_owned(),
        elapsed: Duration::from_micros(1_234_567),
    };
    let json = serde_json::to_value(&result).expect("serialise");
    assert_eq!(
        json,
        serde_json::json!({
            "kind": "tcp",
            "target": "[fd00::1]:22",
            "ok": false,
            "detail": "connection refused",
            "ms": 1234.6,
        })
    );
}

#[test]
fn durations_read_naturally() {
    let cases = [
        (Duration::from_micros(400), "0.4 ms"),
        (Duration::from_micros(12_345), "12.3 ms"),
        (Duration::from_micros(42), "0.04 ms"),
        (Duration::from_millis(500), "500 ms"),
        (Duration::from_secs(3), "3 s"),
        (Duration::from_millis(2_500), "2.5 s"),
    ];
    for (d, want) in cases {
        assert_eq!(human(d), want);
    }
}

fn loopback_ctx(dns_port: u16) -> CheckContext {
    CheckContext {
        dns_servers: vec![ip("127.0.0.1")],
        dns_port,
        ..CheckContext::default()
    }
}

async fn run_probe(probe: Probe, ctx: &CheckContext) -> ProbeResult {
    let result = run(&probe, ctx, DEADLINE).await;
    assert!(result.elapsed < BOUND, "{result:?}");
    result
}

fn tcp(host: IpAddr, port: u16) -> Probe {
    Probe::Tcp {
        host: Host::Ip(host),
        port,
    }
}

/// A loopback port nothing listens on (bound, then released).
async fn closed_port(addr: IpAddr) -> u16 {
    let listener = TcpListener::bind((addr, 0)).await.expect("bind");
    listener.local_addr().expect("local addr").port()
}

fn ipv6_loopback_works() -> bool {
    std::net::UdpSocket::bind("[::1]:0").is_ok()
}

#[tokio::test]
async fn tcp_connects_to_a_listener() {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("local addr").port();
    let result = run_probe(tcp(ip("127.0.0.1"), port), &CheckContext::default()).await;
    assert!(result.ok, "{result:?}");
    assert!(result.detail.starts_with("connected in "), "{result:?}");
}

#[tokio::test]
async fn tcp_connects_over_ipv6_loopback() {
    if !ipv6_loopback_works() {
        eprintln!("skipped: no IPv6 loopback");
        return;
    }
    let listener = TcpListener::bind("[::1]:0").await.expect("bind");
    let port = listener.local_addr().expect("local addr").port();
    let result = run_probe(tcp(ip("::1"), port), &CheckContext::default()).await;
    assert!(result.ok, "{result:?}");
}

#[tokio::test]
async fn tcp_to_a_closed_port_is_refused_after_retrying() {
    let port = closed_port(ip("127.0.0.1")).await;
    let result = run_probe(tcp(ip("127.0.0.1"), port), &CheckContext::default()).await;
    assert!(!result.ok, "{result:?}");
    assert!(
        result.detail.starts_with("connection refused ("),
        "{result:?}"
    );
    // It kept trying until the deadline rather than giving up on the first RST.
    assert!(result.elapsed >= Duration::from_millis(750), "{result:?}");
}

#[tokio::test]
async fn tcp_waits_for_a_port_that_comes_up() {
    let port = closed_port(ip("127.0.0.1")).await;
    let opener = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(300)).await;
        let listener = TcpListener::bind(("127.0.0.1", port))
            .await
            .expect("rebind");
        tokio::time::sleep(BOUND).await;
        drop(listener);
    });
    let _guard = Abort(opener);
    let result = run_probe(tcp(ip("127.0.0.1"), port), &CheckContext::default()).await;
    assert!(result.ok, "{result:?}");
}

#[tokio::test]
async fn tcp_resolves_names_through_the_context_servers() {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("local addr").port();
    let dns = Responder::start(Behaviour::Answer(ip("127.0.0.1"))).await;
    let probe = Probe::Tcp {
        host: Host::Name("gw.lab".parse().expect("name")),
        port,
    };
    let result = run_probe(probe, &loopback_ctx(dns.port)).await;
    assert!(result.ok, "{result:?}");
    assert!(
        result
            .detail
            .starts_with(&format!("connected to 127.0.0.1:{port} in")),
        "{result:?}"
    );
}

#[tokio::test]
async fn tcp_reports_a_name_that_does_not_resolve() {
    let dns = Responder::start(Behaviour::NxDomain).await;
    let probe = Probe::Tcp {
        host: Host::Name("gw.lab".parse().expect("name")),
        port: 22,
    };
    let result = run_probe(probe, &loopback_ctx(dns.port)).await;
    assert!(!result.ok, "{result:?}");
    assert_eq!(result.detail, "cannot resolve gw.lab: 127.0.0.1: NXDOMAIN");
}

#[tokio::test]
async fn link_local_needs_an_interface_and_sends_nothing_without_one() {
    let ctx = CheckContext::default();
    for probe in [Probe::Ping(ip("fe80::1")), tcp(ip("fe80::1"), 22)] {
        let result = run_probe(probe, &ctx).await;
        assert!(!result.ok, "{result:?}");
        assert!(result.detail.contains("link-local"), "{result:?}");
        assert!(result.elapsed < Duration::from_millis(100), "{result:?}");
    }
}

fn resolve(name: &str) -> Probe {
    Probe::Resolve(name.parse().expect("name"))
}

#[tokio::test]
async fn dns_name_resolves_from_a_noerror_answer() {
    let dns = Responder::start(Behaviour::Answer(ip("127.0.0.9"))).await;
    let ctx = loopback_ctx(dns.port);
    let result = run_probe(resolve("gw.lab"), &ctx).await;
    assert!(result.ok, "{result:?}");
    assert!(
        result
            .detail
            .starts_with("resolved to 127.0.0.9 by 127.0.0.1 in "),
        "{result:?}"
    );
    let server = run_probe(Probe::DnsServer(ip("127.0.0.1")), &ctx).await;
    assert!(server.ok, "{server:?}");
    assert!(
        server.detail.starts_with("answered NOERROR in "),
        "{server:?}"
    );
}

#[tokio::test]
async fn dns_name_falls_back_to_aaaa() {
    let dns = Responder::start(Behaviour::Answer(ip("::1"))).await;
    let result = run_probe(resolve("gw.lab."), &loopback_ctx(dns.port)).await;
    assert!(result.ok, "{result:?}");
    assert!(
        result.detail.starts_with("resolved to ::1 by"),
        "{result:?}"
    );
}

#[tokio::test]
async fn nxdomain_proves_the_server_but_not_the_name() {
    let dns = Responder::start(Behaviour::NxDomain).await;
    let ctx = loopback_ctx(dns.port);
    let server = run_probe(Probe::DnsServer(ip("127.0.0.1")), &ctx).await;
    assert!(server.ok, "{server:?}");
    assert!(
        server.detail.starts_with("answered NXDOMAIN in "),
        "{server:?}"
    );
    let name = run_probe(resolve("gw.lab"), &ctx).await;
    assert!(!name.ok, "{name:?}");
    assert_eq!(name.detail, "127.0.0.1: NXDOMAIN");
}

#[tokio::test]
async fn replies_with_the_wrong_id_or_garbage_are_ignored() {
    for behaviour in [Behaviour::WrongId, Behaviour::Garbage] {
        let dns = Responder::start(behaviour).await;
        let ctx = loopback_ctx(dns.port);
        let result = run_probe(Probe::DnsServer(ip("127.0.0.1")), &ctx).await;
        assert!(!result.ok, "{behaviour:?}: {result:?}");
        assert_eq!(result.detail, "no reply within 800 ms", "{behaviour:?}");
        let name = run_probe(resolve("gw.lab"), &ctx).await;
        assert_eq!(
            name.detail, "127.0.0.1: no reply within 800 ms",
            "{behaviour:?}"
        );
    }
}

#[tokio::test]
async fn the_real_reply_is_taken_after_junk() {
    for behaviour in [Behaviour::GarbageThenAnswer, Behaviour::WrongIdThenAnswer] {
        let dns = Responder::start(behaviour).await;
        let result = run_probe(resolve("gw.lab"), &loopback_ctx(dns.port)).await;
        assert!(result.ok, "{behaviour:?}: {result:?}");
    }
}

#[tokio::test]
async fn dns_retries_lost_queries() {
    let dns = Responder::start(Behaviour::DropFirst).await;
    let result = run_probe(Probe::DnsServer(ip("127.0.0.1")), &loopback_ctx(dns.port)).await;
    assert!(result.ok, "{result:?}");
    assert!(
        result.elapsed >= Duration::from_millis(250),
        "answered the re-sent query: {result:?}"
    );
}

#[tokio::test]
async fn a_closed_dns_port_is_refused() {
    let port = UdpSocket::bind("127.0.0.1:0")
        .await
        .and_then(|s| s.local_addr())
        .expect("free port")
        .port();
    let result = run_probe(Probe::DnsServer(ip("127.0.0.1")), &loopback_ctx(port)).await;
    assert!(!result.ok, "{result:?}");
    assert_eq!(result.detail, "no reply within 800 ms (connection refused)");
}

#[tokio::test]
async fn one_answering_server_is_enough() {
    let dns = Responder::start(Behaviour::Answer(ip("127.0.0.9"))).await;
    // 127.0.0.2 is loopback too, and nothing listens there.
    let ctx = CheckContext {
        dns_servers: vec![ip("127.0.0.2"), ip("127.0.0.1")],
        ..loopback_ctx(dns.port)
    };
    let result = run_probe(resolve("gw.lab"), &ctx).await;
    assert!(result.ok, "{result:?}");
    assert!(
        result.elapsed < DEADLINE,
        "did not wait for the dead server: {result:?}"
    );
}

#[tokio::test]
async fn resolving_without_servers_fails_at_once() {
    let result = run_probe(resolve("gw.lab"), &CheckContext::default()).await;
    assert!(!result.ok);
    assert_eq!(result.detail, "no DNS servers to ask");
}

#[tokio::test]
async fn ping_answers_on_ipv4_loopback() {
    let result = run_probe(Probe::Ping(ip("127.0.0.1")), &CheckContext::default()).await;
    assert!(result.ok, "{result:?}");
    assert!(result.detail.starts_with("reply in "), "{result:?}");
}

#[tokio::test]
async fn ping_answers_on_ipv6_loopback() {
    if !ipv6_loopback_works() {
        eprintln!("skipped: no IPv6 loopback");
        return;
    }
    let result = run_probe(Probe::Ping(ip("::1")), &CheckContext::default()).await;
    assert!(result.ok, "{result:?}");
}

#[tokio::test]
async fn run_all_runs_concurrently_and_keeps_order() {
    let dns = Responder::start(Behaviour::NxDomain).await;
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let open = listener.local_addr().expect("local addr").port();
    let closed = closed_port(ip("127.0.0.1")).await;
    let probes = [
        tcp(ip("127.0.0.1"), closed),
        Probe::DnsServer(ip("127.0.0.1")),
        resolve("gw.lab"),
        tcp(ip("127.0.0.1"), open),
        Probe::Ping(ip("127.0.0.1")),
    ];
    let started = tokio::time::Instant::now();
    let results = run_all(&probes, &loopback_ctx(dns.port), DEADLINE).await;
    let oks: Vec<bool> = results.iter().map(|r| r.ok).collect();
    assert_eq!(oks, [false, true, false, true, true], "{results:#?}");
    let order: Vec<&Probe> = results.iter().map(|r| &r.probe).collect();
    assert_eq!(order, probes.iter().collect::<Vec<_>>());
    // Two probes wait out the deadline; in sequence that would be twice it.
    assert!(started.elapsed() < DEADLINE * 2, "{:?}", started.elapsed());
}

/// Aborts a spawned helper task when the test ends, pass or fail.
struct Abort(JoinHandle<()>);

impl Drop for Abort {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// What the fake DNS server on 127.0.0.1 does with each query.
#[derive(Debug, Clone, Copy)]
enum Behaviour {
    /// NOERROR; the address when its family matches the query type, else no data.
    Answer(IpAddr),
    NxDomain,
    WrongId,
    Garbage,
    GarbageThenAnswer,
    WrongIdThenAnswer,
    /// Ignores the first query it sees, then answers NOERROR.
    DropFirst,
}

struct Responder {
    port: u16,
    _task: Abort,
}

impl Responder {
    async fn start(behaviour: Behaviour) -> Self {
        let socket = UdpSocket::bind("127.0.0.1:0")
            .await
            .expect("bind responder");
        let port = socket.local_addr().expect("responder addr").port();
        let task = tokio::spawn(serve(socket, behaviour));
        Self {
            port,
            _task: Abort(task),
        }
    }
}

async fn serve(socket: UdpSocket, behaviour: Behaviour) {
    let mut buf = [0; 1500];
    let mut seen = 0;
    while let Ok((len, peer)) = socket.recv_from(&mut buf).await {
        seen += 1;
        let Ok(query) = Message::from_vec(&buf[..len]) else {
            continue;
        };
        for datagram in replies(behaviour, &query, seen) {
            // Replies go back to the (loopback) sender only.
            let _ = socket.send_to(&datagram, peer).await;
        }
    }
}

fn replies(behaviour: Behaviour, query: &Message, seen: usize) -> Vec<Vec<u8>> {
    const LOCALHOST: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);
    let id = query.metadata.id;
    let answer = |addr| reply(query, id, ResponseCode::NoError, addr);
    match behaviour {
        Behaviour::Answer(addr) => vec![answer(Some(addr))],
        Behaviour::NxDomain => vec![reply(query, id, ResponseCode::NXDomain, None)],
        Behaviour::WrongId => vec![reply(
            query,
            id.wrapping_add(1),
            ResponseCode::NoError,
            Some(LOCALHOST),
        )],
        Behaviour::Garbage => vec![b"\x00\x01not a DNS message".to_vec(), vec![]],
        Behaviour::GarbageThenAnswer => vec![b"\xff\xff\xff".to_vec(), answer(Some(LOCALHOST))],
        Behaviour::WrongIdThenAnswer => vec![
            reply(query, id ^ 0x8000, ResponseCode::NoError, Some(LOCALHOST)),
            answer(Some(LOCALHOST)),
        ],
        Behaviour::DropFirst if seen == 1 => vec![],
        Behaviour::DropFirst => vec![answer(None)],
    }
}

fn reply(query: &Message, id: u16, code: ResponseCode, addr: Option<IpAddr>) -> Vec<u8> {
    let mut message = Message::response(id, OpCode::Query);
    message.metadata.response_code = code;
    message.metadata.recursion_desired = true;
    message.metadata.recursion_available = true;
    message.add_queries(query.queries.iter().cloned());
    if let (Some(question), Some(addr)) = (query.queries.first(), addr) {
        let data = match (question.query_type(), addr) {
            (RecordType::A, IpAddr::V4(v4)) => Some(RData::A(A(v4))),
            (RecordType::AAAA, IpAddr::V6(v6)) => Some(RData::AAAA(AAAA(v6))),
            _ => None,
        };
        if let Some(data) = data {
            message.add_answer(Record::from_rdata(question.name().clone(), 60, data));
        }
    }
    message.to_vec().expect("encode reply")
}

#[test]
fn responder_replies_are_well_formed() {
    let mut query = Message::query();
    query.add_query(hickory_proto::op::Query::query(
        "gw.lab.".parse().expect("name"),
        RecordType::AAAA,
    ));
    let wire = reply(
        &query,
        7,
        ResponseCode::NoError,
        Some(IpAddr::V6(Ipv6Addr::LOCALHOST)),
    );
    let parsed = Message::from_vec(&wire).expect("parse");
    assert_eq!(parsed.metadata.id, 7);
    assert_eq!(parsed.answers.len(), 1);
}

#[test]
fn guest_path_stands_for_the_bridge_and_does_not_outlive_a_rollback() {
    let after = CheckContext {
        interface: Some("br0".to_owned()),
        ..CheckContext::default()
    };
    let probes = expand(&CheckSpec::GuestPath, &after);
    assert_eq!(shown(&probes), ["guest-path br0"]);
    assert!(!probes[0].outlives_rollback());
    assert!(Probe::Ping(ip("172.25.250.254")).outlives_rollback());
    assert!(expand(&CheckSpec::GuestPath, &CheckContext::default()).is_empty());
}

#[tokio::test]
async fn guest_path_without_networkmanager_fails_and_says_why() {
    let ctx = CheckContext {
        interface: Some("br0".to_owned()),
        ..CheckContext::default()
    };
    let result = run(&Probe::GuestPath("br0".to_owned()), &ctx, DEADLINE).await;
    assert!(!result.ok);
    assert!(
        result.detail.contains("NetworkManager"),
        "{}",
        result.detail
    );
}
