//! The `--check SPEC` grammar: parsing, printing and (de)serialising.

use std::fmt;
use std::net::{IpAddr, Ipv6Addr};
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Every form a check may take, quoted in error messages.
const FORMS: &str = "gateway, dns-servers, guest-path, ping:ADDR, tcp:HOST:PORT, dns:NAME";

/// One `--check` argument, before it is expanded against a [`super::CheckContext`].
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum CheckSpec {
    /// `gateway`: ICMP echo to each default gateway the uplink had.
    Gateway,
    /// `dns-servers`: each DNS server the host uses answers a query.
    DnsServers,
    /// `ping:ADDR`: ICMP echo to an address.
    Ping(IpAddr),
    /// `tcp:HOST:PORT`: a TCP connection can be opened.
    Tcp { host: Host, port: u16 },
    /// `dns:NAME`: NAME resolves to an address through the context's DNS servers.
    Dns(DnsName),
    /// `guest-path`: the new bridge forwards between two throwaway ports
    /// through the host firewall, as it must for guests. After a conversion only.
    GuestPath,
}

/// Where a TCP check connects: an address, or a name resolved through the
/// context's DNS servers.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Host {
    Ip(IpAddr),
    Name(DnsName),
}

/// A syntactically valid DNS name (letters, digits, `-` and `_`), kept as
/// written. It is always looked up as an absolute name: there is no search list,
/// because the host's resolver configuration is deliberately not used.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct DnsName(String);

/// A `--check` argument that does not follow the grammar.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid check {spec:?}: {reason}")]
pub struct ParseCheckError {
    spec: String,
    reason: String,
}

impl ParseCheckError {
    fn new(spec: &str, reason: impl Into<String>) -> Self {
        Self {
            spec: spec.to_owned(),
            reason: reason.into(),
        }
    }
}

impl FromStr for CheckSpec {
    type Err = ParseCheckError;

    fn from_str(spec: &str) -> Result<Self, Self::Err> {
        let (kind, arg) = match spec.split_once(':') {
            Some((kind, arg)) => (kind, Some(arg)),
            None => (spec, None),
        };
        let fail = |reason: String| ParseCheckError::new(spec, reason);
        match (kind, arg) {
            ("gateway", None) => Ok(Self::Gateway),
            ("dns-servers", None) => Ok(Self::DnsServers),
            ("guest-path", None) => Ok(Self::GuestPath),
            ("gateway" | "dns-servers" | "guest-path", Some(_)) => {
                Err(fail(format!("{kind} takes no argument (expected {kind})")))
            }
            ("ping", Some(arg)) => parse_ip(arg)
                .map(Self::Ping)
                .ok_or_else(|| fail("expected ping:ADDR with an IPv4 or IPv6 address".to_owned())),
            ("tcp", Some(arg)) => parse_host_port(arg)
                .map(|(host, port)| Self::Tcp { host, port })
                .map_err(fail),
            ("dns", Some(arg)) => arg
                .parse()
                .map(Self::Dns)
                .map_err(|why| fail(format!("{why} (expected dns:NAME)"))),
            ("ping" | "tcp" | "dns", None) => Err(fail(format!("expected {}", usage(kind)))),
            ("", _) => Err(fail(format!("expected one of {FORMS}"))),
            _ => Err(fail(format!(
                "unknown kind {kind:?}; expected one of {FORMS}"
            ))),
        }
    }
}

fn usage(kind: &str) -> &'static str {
    match kind {
        "ping" => "ping:ADDR",
        "tcp" => "tcp:HOST:PORT",
        _ => "dns:NAME",
    }
}

/// An IP literal; IPv6 may be bracketed (`[fd00::1]`) or not.
fn parse_ip(text: &str) -> Option<IpAddr> {
    match text.strip_prefix('[').and_then(|t| t.strip_suffix(']')) {
        Some(inner) => inner.parse::<Ipv6Addr>().ok().map(IpAddr::V6),
        None => text.parse().ok(),
    }
}

fn parse_host_port(arg: &str) -> Result<(Host, u16), String> {
    const EXPECTED: &str = "expected tcp:HOST:PORT";
    let (host, port) = if let Some(rest) = arg.strip_prefix('[') {
        let (addr, port) = rest
            .split_once("]:")
            .ok_or_else(|| format!("{EXPECTED} (IPv6 as [ADDR]:PORT)"))?;
        let addr: Ipv6Addr = addr
            .parse()
            .map_err(|_| format!("{addr:?} is not an IPv6 address ({EXPECTED})"))?;
        (Host::Ip(IpAddr::V6(addr)), port)
    } else {
        let (host, port) = arg.rsplit_once(':').ok_or(EXPECTED)?;
        if host.contains(':') {
            return Err(format!(
                "IPv6 addresses need brackets ({EXPECTED}, e.g. tcp:[fd00::1]:22)"
            ));
        }
        (parse_host(host, EXPECTED)?, port)
    };
    // u16's parser would also take "+22"; a port is plain digits.
    let digits = !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit());
    match port.parse::<u16>() {
        Ok(port) if digits && port != 0 => Ok((host, port)),
        _ => Err(format!("port {port:?} is not 1-65535 ({EXPECTED})")),
    }
}

fn parse_host(host: &str, expected: &str) -> Result<Host, String> {
    if host.is_empty() {
        return Err(format!("empty host ({expected})"));
    }
    if let Ok(ip) = host.parse() {
        return Ok(Host::Ip(ip));
    }
    host.parse()
        .map(Host::Name)
        .map_err(|why| format!("{why} ({expected})"))
}

impl DnsName {
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for DnsName {
    type Err = String;

    /// Accepts LDH names (plus `_`), with or without a trailing dot. A name whose
    /// last label is all digits is refused: it is almost always a mistyped
    /// address (`172.25.250` or `1.2.3.256`), which should not silently become
    /// a DNS lookup.
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        invalid_name_reason(text)
            .map(|why| format!("{text:?} is not a valid DNS name ({why})"))
            .map_or_else(|| Ok(Self(text.to_owned())), Err)
    }
}

fn invalid_name_reason(text: &str) -> Option<String> {
    let name = text.strip_suffix('.').unwrap_or(text);
    if name.is_empty() {
        return Some("empty name".to_owned());
    }
    if name.len() > 253 {
        return Some("longer than 253 characters".to_owned());
    }
    if let Some(why) = name.split('.').find_map(invalid_label_reason) {
        return Some(why);
    }
    let last = name.rsplit('.').next().unwrap_or(name);
    last.bytes()
        .all(|b| b.is_ascii_digit())
        .then(|| "it looks like a malformed IP address".to_owned())
}

fn invalid_label_reason(label: &str) -> Option<String> {
    if label.is_empty() {
        return Some("empty label".to_owned());
    }
    if label.len() > 63 {
        return Some(format!("label {label:?} is longer than 63 characters"));
    }
    if let Some(c) = label
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || *c == '-' || *c == '_'))
    {
        return Some(format!(
            "{c:?} is not allowed; use letters, digits, '-' and '_'"
        ));
    }
    (label.starts_with('-') || label.ends_with('-'))
        .then(|| format!("label {label:?} starts or ends with '-'"))
}

impl fmt::Display for DnsName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Display for Host {
    /// The bare host; see [`HostPort`] for the bracketed `HOST:PORT` form.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Ip(ip) => ip.fmt(f),
            Self::Name(name) => name.fmt(f),
        }
    }
}

/// `HOST:PORT`, with IPv6 addresses bracketed so the port stays unambiguous.
pub(super) struct HostPort<'a>(pub &'a Host, pub u16);

impl fmt::Display for HostPort<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Host::Ip(IpAddr::V6(ip)) => write!(f, "[{ip}]:{}", self.1),
            host => write!(f, "{host}:{}", self.1),
        }
    }
}

impl fmt::Display for CheckSpec {
    /// The canonical `--check` form; it parses back to an equal value.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Gateway => f.write_str("gateway"),
            Self::DnsServers => f.write_str("dns-servers"),
            Self::GuestPath => f.write_str("guest-path"),
            Self::Ping(ip) => write!(f, "ping:{ip}"),
            Self::Tcp { host, port } => write!(f, "tcp:{}", HostPort(host, *port)),
            Self::Dns(name) => write!(f, "dns:{name}"),
        }
    }
}

impl Serialize for CheckSpec {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for CheckSpec {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> CheckSpec {
        text.parse()
            .unwrap_or_else(|e| panic!("{text:?} should parse: {e}"))
    }

    fn error(text: &str) -> String {
        match text.parse::<CheckSpec>() {
            Ok(spec) => panic!("{text:?} should be rejected, got {spec:?}"),
            Err(e) => e.to_string(),
        }
    }

    fn ip(text: &str) -> IpAddr {
        text.parse().expect("test address")
    }

    fn name(text: &str) -> DnsName {
        text.parse().expect("test name")
    }

    #[test]
    fn parses_every_valid_form() {
        let cases = [
            ("gateway", CheckSpec::Gateway),
            ("dns-servers", CheckSpec::DnsServers),
            ("guest-path", CheckSpec::GuestPath),
            ("ping:172.25.250.254", CheckSpec::Ping(ip("172.25.250.254"))),
            ("ping:fd00::1", CheckSpec::Ping(ip("fd00::1"))),
            ("ping:[fd00::1]", CheckSpec::Ping(ip("fd00::1"))),
            ("ping:fe80::1", CheckSpec::Ping(ip("fe80::1"))),
            ("ping:::1", CheckSpec::Ping(ip("::1"))),
            (
                "tcp:172.25.250.254:53",
                CheckSpec::Tcp {
                    host: Host::Ip(ip("172.25.250.254")),
                    port: 53,
                },
            ),
            (
                "tcp:[fd00::1]:22",
                CheckSpec::Tcp {
                    host: Host::Ip(ip("fd00::1")),
                    port: 22,
                },
            ),
            (
                "tcp:gw.lab:65535",
                CheckSpec::Tcp {
                    host: Host::Name(name("gw.lab")),
                    port: 65535,
                },
            ),
            (
                "tcp:localhost:1",
                CheckSpec::Tcp {
                    host: Host::Name(name("localhost")),
                    port: 1,
                },
            ),
            ("dns:gw.lab", CheckSpec::Dns(name("gw.lab"))),
            ("dns:gw.lab.", CheckSpec::Dns(name("gw.lab."))),
            (
                "dns:_ldap._tcp.Example-1.COM",
                CheckSpec::Dns(name("_ldap._tcp.Example-1.COM")),
            ),
            ("dns:1e100.net", CheckSpec::Dns(name("1e100.net"))),
        ];
        for (text, want) in cases {
            assert_eq!(parse(text), want, "{text}");
        }
    }

    #[test]
    fn rejects_invalid_forms_naming_spec_and_valid_forms() {
        let cases = [
            ("", "invalid check \"\": expected one of gateway, dns-servers"),
            ("tcp:host", "invalid check \"tcp:host\": expected tcp:HOST:PORT"),
            ("tcp", "invalid check \"tcp\": expected tcp:HOST:PORT"),
            ("tcp:host:0", "port \"0\" is not 1-65535 (expected tcp:HOST:PORT)"),
            ("tcp:host:65536", "port \"65536\" is not 1-65535"),
            ("tcp:host:", "port \"\" is not 1-65535"),
            ("tcp:host:ssh", "port \"ssh\" is not 1-65535"),
            ("tcp:host:+22", "port \"+22\" is not 1-65535"),
            ("tcp::22", "empty host (expected tcp:HOST:PORT)"),
            ("tcp:fd00::1:22", "IPv6 addresses need brackets"),
            ("tcp:[fd00::1]", "expected tcp:HOST:PORT (IPv6 as [ADDR]:PORT)"),
            ("tcp:[fd00::1]22", "expected tcp:HOST:PORT"),
            ("tcp:[1.2.3.4]:22", "\"1.2.3.4\" is not an IPv6 address"),
            ("tcp:[nope]:22", "is not an IPv6 address"),
            ("tcp:bad_host!:22", "\"bad_host!\" is not a valid DNS name"),
            ("tcp:1.2.3.256:22", "looks like a malformed IP address"),
            ("ping", "invalid check \"ping\": expected ping:ADDR"),
            ("ping:", "expected ping:ADDR with an IPv4 or IPv6 address"),
            ("ping:gw.lab", "expected ping:ADDR with an IPv4 or IPv6 address"),
            ("ping:[1.2.3.4]", "expected ping:ADDR"),
            ("ping:300.1.1.1", "expected ping:ADDR"),
            ("ping:[fd00::1", "expected ping:ADDR"),
            ("dns", "invalid check \"dns\": expected dns:NAME"),
            ("dns:", "\"\" is not a valid DNS name (empty name) (expected dns:NAME)"),
            ("dns:.", "empty name"),
            ("dns:a..b", "empty label"),
            ("dns:-a.lab", "starts or ends with '-'"),
            ("dns:a-.lab", "starts or ends with '-'"),
            ("dns:a b", "' ' is not allowed"),
            ("dns:exämple.com", "'ä' is not allowed"),
            ("dns:172.25.250", "looks like a malformed IP address"),
            ("dns:1.2.3.4", "looks like a malformed IP address"),
            ("gateway:1.2.3.4", "gateway takes no argument (expected gateway)"),
            ("dns-servers:x", "dns-servers takes no argument"),
            ("guest-path:br0", "guest-path takes no argument"),
            ("Gateway", "unknown kind \"Gateway\"; expected one of gateway, dns-servers, guest-path, ping:ADDR, tcp:HOST:PORT, dns:NAME"),
            ("http:x", "unknown kind \"http\""),
            (":x", "expected one of gateway"),
        ];
        for (text, want) in cases {
            let got = error(text);
            assert!(got.contains(want), "{text:?}: {got:?} lacks {want:?}");
            assert!(
                got.starts_with(&format!("invalid check {text:?}: ")),
                "{got}"
            );
        }
    }

    #[test]
    fn rejects_overlong_names_and_labels() {
        let label = "a".repeat(64);
        assert!(error(&format!("dns:{label}.lab")).contains("longer than 63"));
        let long = ["a".repeat(60).as_str(); 5].join(".");
        assert!(error(&format!("dns:{long}")).contains("longer than 253"));
        let ok = ["a".repeat(63).as_str(), "b"].join(".");
        parse(&format!("dns:{ok}"));
    }

    #[test]
    fn display_round_trips() {
        let texts = [
            "gateway",
            "dns-servers",
            "guest-path",
            "ping:172.25.250.254",
            "ping:fd00::1",
            "ping:[fd00::1]",
            "tcp:172.25.250.254:53",
            "tcp:[fd00::1]:22",
            "tcp:gw.lab:22",
            "dns:gw.lab",
            "dns:gw.lab.",
        ];
        for text in texts {
            let spec = parse(text);
            let shown = spec.to_string();
            assert_eq!(parse(&shown), spec, "{text} -> {shown}");
        }
        assert_eq!(parse("ping:[fd00::1]").to_string(), "ping:fd00::1");
        assert_eq!(parse("tcp:[fd00::1]:22").to_string(), "tcp:[fd00::1]:22");
    }

    #[test]
    fn serde_uses_the_string_form() {
        let specs = vec![
            parse("gateway"),
            parse("tcp:[fd00::1]:22"),
            parse("dns:gw.lab"),
        ];
        let json = serde_json::to_string(&specs).expect("serialise");
        assert_eq!(json, r#"["gateway","tcp:[fd00::1]:22","dns:gw.lab"]"#);
        let back: Vec<CheckSpec> = serde_json::from_str(&json).expect("deserialise");
        assert_eq!(back, specs);
        let bad = serde_json::from_str::<CheckSpec>(r#""tcp:host""#).unwrap_err();
        assert!(bad.to_string().contains("expected tcp:HOST:PORT"), "{bad}");
    }
}
