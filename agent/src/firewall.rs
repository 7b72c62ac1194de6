//! What stands between guests on a bridge and the LAN, host-wide: bridge
//! netfilter, the FORWARD chains of iptables (nft and legacy) and native
//! nftables, Docker's chains, and bridge-family filters. Read-only, and never
//! fatal: what cannot be read is reported as unknown.
//!
//! The ruleset is read through the system's own tools in their documented
//! read-only forms — `nft -j list ruleset` (every nftables table, including
//! those iptables-nft and ebtables-nft maintain) and `iptables-legacy-save` /
//! `ip6tables-legacy-save` (the legacy tables, which nftables does not see) —
//! rather than by speaking nf_tables netlink ourselves: the tools' output is
//! what their users know, stays correct across kernel and tool versions, and
//! a missing tool simply means unknown. Parsing is pure ([`parse_nft_json`],
//! [`parse_iptables_save`]) and tested on sample output.

use std::time::Duration;

use serde::Serialize;

/// How long one tool may take before its part is reported unknown.
const TOOL_DEADLINE: Duration = Duration::from_secs(2);

/// Docker's chains, in the order Docker jumps through them.
const DOCKER_CHAINS: [&str; 3] = ["DOCKER-USER", "DOCKER-FORWARD", "DOCKER"];

/// The host's firewall as it concerns bridged guests.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Diagnosis {
    /// `net.bridge.bridge-nf-call-iptables`: bridged IPv4 crosses iptables'
    /// and nftables' ip/inet hooks. `null`: unknown; absent sysctl = off.
    pub bridge_nf_call_iptables: Option<bool>,
    /// The same for IPv6 (`bridge-nf-call-ip6tables`).
    pub bridge_nf_call_ip6tables: Option<bool>,
    /// Base chains on the forward hook of the ip, ip6 and inet families.
    pub forward: Vec<Chain>,
    /// Docker's chains that exist (DOCKER-USER, DOCKER-FORWARD, DOCKER).
    pub docker_chains: Vec<String>,
    /// Base chains of the bridge family (nftables, ebtables-nft): they see
    /// bridged frames whatever bridge netfilter says.
    pub bridge_filters: Vec<Chain>,
    /// What could not be read, and why (`nftables: nft is not installed`).
    pub unknown: Vec<String>,
    pub verdict: Verdict,
}

/// One chain of the ruleset.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Chain {
    /// `nftables`, `iptables-nft` or `iptables-legacy`.
    pub source: &'static str,
    /// ip, ip6, inet or bridge.
    pub family: String,
    pub table: String,
    pub name: String,
    /// The hook of a base chain (forward, input, …); `None` for a regular chain.
    pub hook: Option<String>,
    /// accept or drop, for base chains.
    pub policy: Option<String>,
    pub rules: usize,
}

impl Chain {
    fn drops(&self) -> bool {
        self.policy.as_deref() == Some("drop")
    }

    /// `ip filter FORWARD (iptables-nft)`.
    fn describe(&self) -> String {
        format!(
            "{} {} {} ({})",
            self.family, self.table, self.name, self.source
        )
    }
}

/// What the diagnosis means for guests.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Verdict {
    /// Nothing filters bridged traffic.
    Open,
    /// Rules look at bridged traffic, but nothing drops it by policy.
    Filtered,
    /// A forward policy drops bridged traffic no rule is known to accept.
    Drops,
    /// Part of the firewall could not be read and nothing found drops.
    #[default]
    Unknown,
}

impl Diagnosis {
    /// Forward chains bridged traffic crosses: ip/inet with bridge netfilter
    /// on for IPv4, ip6/inet with it on for IPv6. An unknown sysctl counts as
    /// on, the kernel's default wherever br_netfilter is loaded.
    fn crossed(&self) -> impl Iterator<Item = &Chain> {
        let v4 = self.bridge_nf_call_iptables != Some(false);
        let v6 = self.bridge_nf_call_ip6tables != Some(false);
        self.forward
            .iter()
            .filter(move |c| match c.family.as_str() {
                "ip" => v4,
                "ip6" => v6,
                "inet" => v4 || v6,
                _ => false,
            })
    }

    fn judge(&mut self) {
        let drops = self.crossed().any(Chain::drops)
            || self
                .bridge_filters
                .iter()
                .any(|c| c.drops() && c.hook.as_deref() == Some("forward"));
        let filtered = self.crossed().any(|c| c.rules > 0)
            || self.bridge_filters.iter().any(|c| c.rules > 0 || c.drops());
        self.verdict = if drops {
            Verdict::Drops
        } else if !self.unknown.is_empty() {
            Verdict::Unknown
        } else if filtered {
            Verdict::Filtered
        } else {
            Verdict::Open
        };
    }

    /// Why guests are dropped, for a failed check or a warning:
    /// `FORWARD policy drop with bridge netfilter on (Docker's chains present)`.
    pub fn blocking_cause(&self) -> Option<String> {
        if self.verdict != Verdict::Drops {
            return None;
        }
        let docker = if self.docker_chains.is_empty() {
            String::new()
        } else {
            " (Docker's chains present)".to_owned()
        };
        if let Some(chain) = self.crossed().find(|c| c.drops()) {
            return Some(format!(
                "FORWARD policy drop with bridge netfilter on{docker}: {}",
                chain.describe()
            ));
        }
        self.bridge_filters
            .iter()
            .find(|c| c.drops())
            .map(|c| format!("bridge-family forward policy drop: {}", c.describe()))
    }

    /// The command that accepts forwarding between `bridge`'s ports in the
    /// chain that drops it (DOCKER-USER when Docker is there: Docker keeps it).
    pub fn way_out(&self, bridge: &str) -> String {
        let dropping = self
            .crossed()
            .chain(&self.bridge_filters)
            .find(|c| c.drops());
        match dropping {
            Some(c) if c.source == "nftables" => {
                let (iif, oif) = if c.family == "bridge" {
                    ("ibrname", "obrname")
                } else {
                    ("iifname", "oifname")
                };
                format!(
                    "nft insert rule {} {} {} {iif} \"{bridge}\" {oif} \"{bridge}\" accept",
                    c.family, c.table, c.name
                )
            }
            Some(c) => {
                let tool = match (c.family.as_str(), c.source) {
                    ("ip6", "iptables-legacy") => "ip6tables-legacy",
                    ("ip6", _) => "ip6tables",
                    (_, "iptables-legacy") => "iptables-legacy",
                    _ => "iptables",
                };
                let chain = if self.docker_chains.iter().any(|d| d == "DOCKER-USER") {
                    "DOCKER-USER"
                } else {
                    "FORWARD"
                };
                format!("{tool} -I {chain} -i {bridge} -o {bridge} -j ACCEPT")
            }
            None => format!("accept forwarding from {bridge} to {bridge}"),
        }
    }

    /// One line for people.
    pub fn summary(&self) -> String {
        let nf = |v: Option<bool>| match v {
            Some(true) => "on",
            Some(false) => "off",
            None => "unknown",
        };
        let mut parts = vec![format!(
            "bridge netfilter {} (IPv4), {} (IPv6)",
            nf(self.bridge_nf_call_iptables),
            nf(self.bridge_nf_call_ip6tables)
        )];
        if self.forward.is_empty() {
            parts.push("no forward chains".to_owned());
        }
        for c in &self.forward {
            parts.push(format!(
                "{} policy {}, {} rule{}",
                c.describe(),
                c.policy.as_deref().unwrap_or("accept"),
                c.rules,
                if c.rules == 1 { "" } else { "s" }
            ));
        }
        if !self.docker_chains.is_empty() {
            parts.push(format!("Docker's chains {}", self.docker_chains.join(", ")));
        }
        if self.bridge_filters.is_empty() {
            parts.push("no bridge-family filters".to_owned());
        }
        for c in &self.bridge_filters {
            parts.push(format!(
                "bridge filter {} hook {} policy {}, {} rules",
                c.describe(),
                c.hook.as_deref().unwrap_or("?"),
                c.policy.as_deref().unwrap_or("accept"),
                c.rules
            ));
        }
        for u in &self.unknown {
            parts.push(format!("unknown: {u}"));
        }
        parts.join("; ")
    }

    /// The verdict for people: what it means for guests.
    pub fn meaning(&self) -> &'static str {
        match self.verdict {
            Verdict::Open => "nothing in the host firewall filters bridged guests",
            Verdict::Filtered => "rules see bridged guests; nothing drops them by policy",
            Verdict::Drops => "guests on a bridge are dropped unless a rule accepts them",
            Verdict::Unknown => "part of the host firewall could not be read",
        }
    }
}

/// What [`diagnose`] reports instead of the chains without root.
pub const CHAINS_NEED_ROOT: &str = "the firewall's chains: needs root";

/// Reads everything, concurrently; never fails. Without root the chains
/// are not asked for: nft and iptables-save refuse, and their errors would
/// say less than that.
pub async fn diagnose() -> Diagnosis {
    let readable = async {
        if nix::unistd::geteuid().is_root() {
            chains().await
        } else {
            (Vec::new(), vec![CHAINS_NEED_ROOT.to_owned()])
        }
    };
    let (v4, v6, (chains, unknown)) = tokio::join!(
        sysctl("bridge-nf-call-iptables"),
        sysctl("bridge-nf-call-ip6tables"),
        readable,
    );
    assemble(v4, v6, chains, unknown)
}

/// Every chain of nftables and of the legacy iptables tables (regular chains
/// such as DOCKER-USER included), and what could not be read.
pub async fn chains() -> (Vec<Chain>, Vec<String>) {
    let (nft, legacy4, legacy6) = tokio::join!(
        tool("nft", &["-j", "list", "ruleset"]),
        tool("iptables-legacy-save", &[]),
        tool("ip6tables-legacy-save", &[]),
    );
    let mut chains = Vec::new();
    let mut unknown = Vec::new();
    match nft.and_then(|text| parse_nft_json(&text)) {
        Ok(found) => chains.extend(found),
        // iptables does not need nft's command line: without it, the tables
        // iptables-nft keeps are read through iptables-nft's own save tool.
        Err(why) if why.ends_with("is not installed") => {
            unknown.push(format!("nftables: {why}"));
            let (v4, v6) = tokio::join!(
                tool("iptables-nft-save", &[]),
                tool("ip6tables-nft-save", &[]),
            );
            for (family, result) in [("ip", v4), ("ip6", v6)] {
                match result {
                    Ok(text) => chains.extend(parse_iptables_save(&text, family, "iptables-nft")),
                    Err(why) => unknown.push(format!("{family} iptables-nft: {why}")),
                }
            }
        }
        Err(why) => unknown.push(format!("nftables: {why}")),
    }
    for (family, result) in [("ip", legacy4), ("ip6", legacy6)] {
        match result {
            Ok(text) => chains.extend(parse_iptables_save(&text, family, "iptables-legacy")),
            Err(why) => unknown.push(format!("{family} iptables-legacy: {why}")),
        }
    }
    (chains, unknown)
}

/// The diagnosis from what was read (pure).
pub fn assemble(
    bridge_nf_call_iptables: Option<bool>,
    bridge_nf_call_ip6tables: Option<bool>,
    chains: Vec<Chain>,
    unknown: Vec<String>,
) -> Diagnosis {
    let mut docker_chains: Vec<String> = Vec::new();
    for name in DOCKER_CHAINS {
        if chains.iter().any(|c| c.name == name) {
            docker_chains.push(name.to_owned());
        }
    }
    let base = |c: &&Chain| c.hook.is_some();
    let mut d = Diagnosis {
        bridge_nf_call_iptables,
        bridge_nf_call_ip6tables,
        forward: chains
            .iter()
            .filter(base)
            .filter(|c| c.family != "bridge" && c.hook.as_deref() == Some("forward"))
            .cloned()
            .collect(),
        docker_chains,
        bridge_filters: chains
            .iter()
            .filter(base)
            .filter(|c| c.family == "bridge")
            .cloned()
            .collect(),
        unknown,
        verdict: Verdict::Unknown,
    };
    d.judge();
    d
}

/// `/proc/sys/net/bridge/<name>`: absent means br_netfilter is not loaded,
/// so bridged traffic skips iptables (off); unreadable means unknown.
async fn sysctl(name: &str) -> Option<bool> {
    match tokio::fs::read_to_string(format!("/proc/sys/net/bridge/{name}")).await {
        Ok(text) => Some(text.trim() != "0"),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Some(false),
        Err(_) => None,
    }
}

/// Runs a firewall tool; its stdout, or why it could not tell.
pub(crate) async fn tool(program: &str, args: &[&str]) -> Result<String, String> {
    let run = tokio::process::Command::new(program)
        .args(args)
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true)
        .output();
    match tokio::time::timeout(TOOL_DEADLINE, run).await {
        Err(_) => Err(format!("{program} did not answer within 2 s")),
        Ok(Err(e)) if e.kind() == std::io::ErrorKind::NotFound => {
            Err(format!("{program} is not installed"))
        }
        Ok(Err(e)) => Err(format!("{program}: {e}")),
        Ok(Ok(out)) if out.status.success() => Ok(String::from_utf8_lossy(&out.stdout).into()),
        Ok(Ok(out)) => {
            let stderr = String::from_utf8_lossy(&out.stderr);
            let first = stderr.lines().next().unwrap_or("").trim();
            Err(format!("{program} failed ({}): {first}", out.status))
        }
    }
}

/// The chains of `nft -j list ruleset`, with their rule counts. Tables that
/// iptables-nft maintains (`filter` with an upper-case `FORWARD`) are labelled so.
pub fn parse_nft_json(text: &str) -> Result<Vec<Chain>, String> {
    if text.trim().is_empty() {
        // An empty ruleset prints nothing on some versions.
        return Ok(Vec::new());
    }
    let doc: serde_json::Value =
        serde_json::from_str(text).map_err(|e| format!("unreadable nft output: {e}"))?;
    let items = doc
        .get("nftables")
        .and_then(serde_json::Value::as_array)
        .ok_or("nft output without an \"nftables\" list")?;
    let field = |obj: &serde_json::Value, key: &str| {
        obj.get(key)
            .and_then(serde_json::Value::as_str)
            .map(str::to_owned)
    };
    let mut chains: Vec<Chain> = Vec::new();
    let iptables_tables: Vec<(String, String)> = items
        .iter()
        .filter_map(|i| i.get("chain"))
        .filter(|c| {
            matches!(
                field(c, "name").as_deref(),
                Some("FORWARD" | "INPUT" | "OUTPUT")
            )
        })
        .filter_map(|c| Some((field(c, "family")?, field(c, "table")?)))
        .collect();
    for item in items {
        if let Some(c) = item.get("chain") {
            let (Some(family), Some(table), Some(name)) =
                (field(c, "family"), field(c, "table"), field(c, "name"))
            else {
                continue;
            };
            let by_iptables = iptables_tables.contains(&(family.clone(), table.clone()));
            chains.push(Chain {
                source: match (by_iptables, family.as_str()) {
                    (true, "bridge") => "ebtables-nft",
                    (true, _) => "iptables-nft",
                    (false, _) => "nftables",
                },
                family,
                table,
                name,
                hook: field(c, "hook"),
                policy: field(c, "policy"),
                rules: 0,
            });
        } else if let Some(r) = item.get("rule") {
            let key = (field(r, "family"), field(r, "table"), field(r, "chain"));
            if let Some(chain) = chains.iter_mut().find(|c| {
                key == (
                    Some(c.family.clone()),
                    Some(c.table.clone()),
                    Some(c.name.clone()),
                )
            }) {
                chain.rules += 1;
            }
        }
    }
    Ok(chains)
}

/// The chains of `iptables-save`-format output for `family` (ip or ip6).
/// Only the filter table matters for forwarding; a base chain has a policy.
pub fn parse_iptables_save(text: &str, family: &str, source: &'static str) -> Vec<Chain> {
    let mut chains: Vec<Chain> = Vec::new();
    let mut table = String::new();
    for line in text.lines().map(str::trim) {
        if let Some(name) = line.strip_prefix('*') {
            table = name.to_owned();
        } else if let Some(decl) = line.strip_prefix(':') {
            let mut words = decl.split_whitespace();
            let (Some(name), Some(policy)) = (words.next(), words.next()) else {
                continue;
            };
            let base = policy != "-";
            chains.push(Chain {
                source,
                family: family.to_owned(),
                table: table.clone(),
                name: name.to_owned(),
                hook: (base && table == "filter").then(|| name.to_lowercase()),
                policy: base.then(|| policy.to_lowercase()),
                rules: 0,
            });
        } else if let Some(rule) = line.strip_prefix("-A ") {
            let name = rule.split_whitespace().next().unwrap_or("");
            if let Some(chain) = chains
                .iter_mut()
                .find(|c| c.table == table && c.name == name)
            {
                chain.rules += 1;
            }
        }
    }
    chains
}

#[cfg(test)]
mod tests;
