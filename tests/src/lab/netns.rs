//! Network namespaces and the links in them.

use std::net::Ipv4Addr;
use std::path::Path;

use serde_json::Value;

use super::{cmd, LabError};

pub(crate) fn add(name: &str) -> Result<(), LabError> {
    cmd::run(&mut cmd::ip(["netns", "add", name])).map(drop)
}

pub(crate) fn exists(name: &str) -> bool {
    Path::new("/run/netns").join(name).exists()
}

/// Deletes `name`, reporting (not killing) processes still inside: they were
/// not started by the lab, or the lab lost track of them, and they keep the
/// namespace alive after its name is gone.
pub(crate) fn delete(name: &str) -> Result<(), LabError> {
    if !exists(name) {
        return Ok(());
    }
    let stray = pids(name).unwrap_or_default();
    if !stray.is_empty() {
        eprintln!("lab: processes {stray:?} are still in namespace {name}; not killing them");
    }
    cmd::run(&mut cmd::ip(["netns", "del", name])).map(drop)
}

/// The pids of the processes in namespace `name`.
pub(crate) fn pids(name: &str) -> Result<Vec<u32>, LabError> {
    let text = cmd::stdout(&mut cmd::ip(["netns", "pids", name]))?;
    Ok(text
        .split_whitespace()
        .filter_map(|p| p.parse().ok())
        .collect())
}

/// A veth pair between two namespaces, both ends (and both loopbacks) up.
/// The pair is created inside the first namespace: nothing ever appears in
/// the machine's own.
pub(crate) fn add_veth(a: (&str, &str), b: (&str, &str)) -> Result<(), LabError> {
    let ((a_ns, a_link), (b_ns, b_link)) = (a, b);
    let add = [
        "link", "add", a_link, "type", "veth", "peer", "name", b_link,
    ];
    ip_in(a_ns, &[&add[..], &["netns", b_ns]].concat())?;
    for (ns, link) in [a, b] {
        ip_in(ns, &["link", "set", "lo", "up"])?;
        ip_in(ns, &["link", "set", link, "up"])?;
    }
    Ok(())
}

/// `ip -n NS ARGS...`, failing unless it succeeds.
pub(crate) fn ip_in(ns: &str, args: &[&str]) -> Result<(), LabError> {
    let mut command = cmd::ip(["-n", ns]);
    command.args(args);
    cmd::run(&mut command).map(drop)
}

pub(crate) fn ip_json(ns: &str, args: &[&str]) -> Result<Value, LabError> {
    let mut command = cmd::ip(["-n", ns, "-j"]);
    command.args(args);
    let text = cmd::stdout(&mut command)?;
    serde_json::from_str(&text).map_err(|e| LabError::Parse {
        command: cmd::describe(&command),
        detail: e.to_string(),
    })
}

/// The names of all links in `ns`.
pub(crate) fn link_names(ns: &str) -> Result<Vec<String>, LabError> {
    let json = ip_json(ns, &["link", "show"])?;
    Ok(json
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default()
        .iter()
        .filter_map(|l| l["ifname"].as_str().map(str::to_owned))
        .collect())
}

/// A link's MAC address and MTU, to restore them when the lab "reboots".
pub(crate) fn link_identity(ns: &str, link: &str) -> Result<(String, u64), LabError> {
    let json = ip_json(ns, &["link", "show", "dev", link])?;
    let first = &json[0];
    match (first["address"].as_str(), first["mtu"].as_u64()) {
        (Some(mac), Some(mtu)) => Ok((mac.to_owned(), mtu)),
        _ => Err(LabError::Parse {
            command: format!("ip -n {ns} -j link show dev {link}"),
            detail: format!("no address/mtu in {first}"),
        }),
    }
}

/// The IPv4 addresses (with prefix length) on `link` in `ns`.
pub(crate) fn ipv4_addresses(ns: &str, link: &str) -> Result<Vec<(Ipv4Addr, u8)>, LabError> {
    let json = ip_json(ns, &["-4", "addr", "show", "dev", link])?;
    Ok(parse_ipv4_addresses(&json))
}

fn parse_ipv4_addresses(json: &Value) -> Vec<(Ipv4Addr, u8)> {
    json.as_array()
        .map(Vec::as_slice)
        .unwrap_or_default()
        .iter()
        .flat_map(|link| link["addr_info"].as_array().cloned().unwrap_or_default())
        .filter_map(|a| {
            let addr = a["local"].as_str()?.parse().ok()?;
            let len = u8::try_from(a["prefixlen"].as_u64()?).ok()?;
            Some((addr, len))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipv4_addresses_parse() {
        let json = serde_json::json!([{"ifname": "ens32", "addr_info": [
            {"family": "inet", "local": "172.25.250.10", "prefixlen": 24},
            {"family": "inet", "local": "bogus", "prefixlen": 24}
        ]}]);
        assert_eq!(
            parse_ipv4_addresses(&json),
            vec![(Ipv4Addr::new(172, 25, 250, 10), 24)]
        );
    }
}
