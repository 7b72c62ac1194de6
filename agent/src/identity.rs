//! The identity proof: the host, read from the kernel and from
//! NetworkManager before and after a change, must be the same host with the
//! bridge in the uplink's place — the same global addresses, the same routing
//! decision for every default route and check target, the same DNS handed to
//! the resolver. [`compare`] is pure; [`gather`] reads.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnetwork::IpNetwork;
use serde::Serialize;

use crate::kernel::{self, KernelError, RouteDecision};
use crate::nm::{DnsEntry, Nm, NmError};

/// Destinations that stand for "the default route" of each family: the
/// documentation prefixes, which no host routes specifically.
pub const DEFAULT_TARGETS: [IpAddr; 2] = [
    IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1)),
    IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1)),
];

/// The host as seen through one device (the uplink before, the bridge after).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Identity {
    pub device: String,
    /// Global, stable addresses on the device, from the kernel.
    pub addresses: Vec<IpNetwork>,
    /// The kernel's routing decisions for the default routes and check targets.
    pub routes: Vec<RouteDecision>,
    /// What NetworkManager hands to the resolver for the device.
    pub dns: Vec<DnsEntry>,
}

/// Before and after, as proven.
#[derive(Debug, Clone, Serialize)]
pub struct Proof {
    pub before: Identity,
    pub after: Identity,
}

#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    #[error(transparent)]
    Kernel(#[from] KernelError),
    #[error(transparent)]
    Nm(#[from] NmError),
}

/// The targets whose routing decision the proof compares: the default
/// routes, and each check target that is an address. Link-local addresses
/// are left out: they have no route, only an interface.
pub fn targets(check_targets: &[IpAddr]) -> Vec<IpAddr> {
    let mut targets: Vec<IpAddr> = DEFAULT_TARGETS.to_vec();
    for t in check_targets {
        if !targets.contains(t) && !is_link_local(*t) && !t.is_loopback() {
            targets.push(*t);
        }
    }
    targets
}

fn is_link_local(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4.is_link_local(),
        IpAddr::V6(v6) => (v6.segments()[0] & 0xffc0) == 0xfe80,
    }
}

/// Reads the host's identity through `device`.
pub async fn gather(nm: &Nm, device: &str, targets: &[IpAddr]) -> Result<Identity, IdentityError> {
    let addresses = kernel::addresses(device).await?;
    let routes = kernel::routes(targets.to_vec()).await?;
    let dns = nm
        .dns_configuration()
        .await?
        .into_iter()
        .filter(|e| e.interface == device)
        .collect();
    Ok(Identity {
        device: device.to_owned(),
        addresses,
        routes,
        dns,
    })
}

/// Every difference between the host before and after, one sentence each;
/// none means the bridge took the uplink's exact place.
pub fn compare(before: &Identity, after: &Identity) -> Vec<String> {
    let mut problems = Vec::new();
    let (old, new) = (&before.device, &after.device);
    for a in &before.addresses {
        if !after.addresses.contains(a) {
            problems.push(format!("{new} lacks {a}, which {old} had"));
        }
    }
    for a in &after.addresses {
        if !before.addresses.contains(a) {
            problems.push(format!("{new} has {a}, which {old} did not have"));
        }
    }
    for was in &before.routes {
        let expected = RouteDecision {
            dev: was
                .dev
                .as_ref()
                .map(|d| if d == old { new.clone() } else { d.clone() }),
            ..was.clone()
        };
        match after.routes.iter().find(|r| r.target == was.target) {
            Some(now) if *now == expected => {}
            Some(now) => problems.push(format!(
                "the route to {} changed: now {now}, expected {expected} (was {was})",
                was.target
            )),
            None => problems.push(format!("no route decision for {} after", was.target)),
        }
    }
    let strip = |entries: &[DnsEntry]| -> Vec<(Vec<String>, Vec<String>, i32)> {
        let mut v: Vec<_> = entries
            .iter()
            .map(|e| (e.nameservers.clone(), e.domains.clone(), e.priority))
            .collect();
        v.sort();
        v
    };
    if strip(&before.dns) != strip(&after.dns) {
        problems.push(format!(
            "the DNS configuration changed: {new} hands the resolver {}, {old} handed {}",
            describe_dns(&after.dns),
            describe_dns(&before.dns)
        ));
    }
    problems
}

fn describe_dns(entries: &[DnsEntry]) -> String {
    if entries.is_empty() {
        return "nothing".to_owned();
    }
    entries
        .iter()
        .map(|e| {
            format!(
                "servers [{}] domains [{}] priority {}",
                e.nameservers.join(" "),
                e.domains.join(" "),
                e.priority
            )
        })
        .collect::<Vec<_>>()
        .join("; ")
}

/// One line for the progress output.
pub fn summary(proof: &Proof) -> String {
    let addresses = if proof.after.addresses.is_empty() {
        "no global address".to_owned()
    } else {
        proof
            .after
            .addresses
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(", ")
    };
    let routes = proof
        .after
        .routes
        .iter()
        .filter(|r| r.dev.is_some())
        .map(|r| format!("{} via {}", r.target, r.dev.as_deref().unwrap_or("?")))
        .collect::<Vec<_>>()
        .join(", ");
    let dns = proof
        .after
        .dns
        .iter()
        .flat_map(|e| e.nameservers.iter().cloned())
        .collect::<Vec<_>>();
    let role = if proof.after.device == proof.before.device {
        "keeps the host's identity".to_owned()
    } else {
        format!("is {}'s exact stand-in", proof.before.device)
    };
    format!(
        "{} {role}: {addresses}; routes {}; DNS {}",
        proof.after.device,
        if routes.is_empty() { "none" } else { &routes },
        if dns.is_empty() {
            "none".to_owned()
        } else {
            dns.join(" ")
        }
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route(target: &str, dev: &str, via: Option<&str>) -> RouteDecision {
        RouteDecision {
            target: target.parse().unwrap(),
            dev: Some(dev.to_owned()),
            via: via.map(|v| v.parse().unwrap()),
            src: Some("172.25.250.10".parse().unwrap()),
        }
    }

    fn dns(interface: &str) -> DnsEntry {
        DnsEntry {
            interface: interface.to_owned(),
            nameservers: vec!["172.25.250.254".into()],
            domains: vec!["lab".into()],
            priority: 100,
        }
    }

    fn identity(device: &str, egress: &str) -> Identity {
        Identity {
            device: device.to_owned(),
            addresses: vec!["172.25.250.10/24".parse().unwrap()],
            routes: vec![
                route("192.0.2.1", egress, Some("172.25.250.254")),
                route("172.25.250.254", egress, None),
            ],
            dns: vec![dns(device)],
        }
    }

    #[test]
    fn the_bridge_in_the_uplinks_place_is_the_same_identity() {
        assert_eq!(
            compare(&identity("ens32", "ens32"), &identity("br0", "br0")),
            Vec::<String>::new()
        );
    }

    #[test]
    fn egress_moving_to_another_nic_is_named() {
        let before = identity("ens32", "ens32");
        let mut after = identity("br0", "br0");
        after.routes[0] = route("192.0.2.1", "ens33", Some("192.168.107.254"));
        let problems = compare(&before, &after);
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(
            problems[0].contains("192.0.2.1 via 192.168.107.254 dev ens33")
                && problems[0].contains("expected 192.0.2.1 via 172.25.250.254 dev br0"),
            "{problems:?}"
        );
    }

    #[test]
    fn egress_that_was_elsewhere_must_stay_there() {
        let mut before = identity("ens32", "ens32");
        before.routes[0] = route("192.0.2.1", "ens33", Some("192.168.107.254"));
        let mut after = identity("br0", "br0");
        after.routes[0] = route("192.0.2.1", "ens33", Some("192.168.107.254"));
        assert!(compare(&before, &after).is_empty());
        after.routes[0] = route("192.0.2.1", "br0", Some("172.25.250.254"));
        assert_eq!(compare(&before, &after).len(), 1);
    }

    #[test]
    fn a_different_address_is_named_both_ways() {
        let before = identity("ens32", "ens32");
        let mut after = identity("br0", "br0");
        after.addresses = vec!["172.25.250.120/24".parse().unwrap()];
        assert_eq!(
            compare(&before, &after),
            vec![
                "br0 lacks 172.25.250.10/24, which ens32 had".to_owned(),
                "br0 has 172.25.250.120/24, which ens32 did not have".to_owned(),
            ]
        );
    }

    #[test]
    fn dns_differences_are_named() {
        let before = identity("ens32", "ens32");
        let mut after = identity("br0", "br0");
        after.dns[0].domains.clear();
        let problems = compare(&before, &after);
        assert_eq!(problems.len(), 1);
        assert!(problems[0].starts_with("the DNS configuration changed"));
    }

    #[test]
    fn targets_are_the_defaults_then_routable_check_targets() {
        let t = targets(&[
            "172.25.250.254".parse().unwrap(),
            "fe80::1".parse().unwrap(),
            "192.0.2.1".parse().unwrap(),
        ]);
        assert_eq!(
            t,
            vec![
                DEFAULT_TARGETS[0],
                DEFAULT_TARGETS[1],
                "172.25.250.254".parse::<IpAddr>().unwrap()
            ]
        );
    }
}
