//! `--guest-forwarding allow` (configuration: `guest-forwarding = "allow"`):
//! the host firewall accepts forwarding between a bridge's own ports, and
//! nothing else changes in it.
//!
//! Which bridges are allowed is recorded, not the rules: `convert` records
//! the bridge in the state directory (`guest-forwarding.json`), the
//! configuration names its own, and [`sync`] makes the firewall match —
//! idempotently, every time it runs: a rule where one is missing (after a
//! reboot, or Docker re-creating its chains), none twice, and netbridge's
//! rules of bridges no longer allowed removed. netbridge's rules carry the
//! comment `netbridge-guest-forwarding:<bridge>`, so exactly what it added is
//! what it removes.
//!
//! Where the rule goes follows nftables semantics: an accept in one base
//! chain does not override a drop in another base chain at the same hook, so
//! it must sit in every forward base chain bridged traffic crosses — and in
//! iptables' `FORWARD`, Docker's DOCKER-USER instead when it exists (Docker
//! jumps there first and keeps what users put in it). The chains come from
//! the firewall diagnosis ([`crate::firewall::chains`]).

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

use crate::firewall::{self, Chain};
use crate::journal::{JournalError, Lock, Store};
use crate::report::Progress;

/// The state file that lists the bridges `convert` allowed.
const LIST: &str = "guest-forwarding.json";

/// What netbridge's rules carry as their comment, followed by the bridge.
const TAG: &str = "netbridge-guest-forwarding:";

/// Whether the host firewall accepts forwarding between a bridge's ports.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum GuestForwarding {
    /// Add (and keep) a rule accepting forwarding between the bridge's own ports.
    Allow,
    /// Never change the firewall.
    #[default]
    Deny,
}

impl GuestForwarding {
    #[must_use]
    pub fn is_deny(&self) -> bool {
        *self == GuestForwarding::Deny
    }
}

impl std::str::FromStr for GuestForwarding {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        match text {
            "allow" => Ok(GuestForwarding::Allow),
            "deny" => Ok(GuestForwarding::Deny),
            other => Err(format!(
                "{other:?} is not a value: use \"allow\" or \"deny\""
            )),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ForwardingError {
    #[error(transparent)]
    State(#[from] JournalError),
    #[error("cannot read the firewall ({0}); nothing was changed in it")]
    Unreadable(String),
    #[error("`{command}` failed: {detail}")]
    Tool { command: String, detail: String },
}

/// The bridges `convert --guest-forwarding allow` recorded.
#[derive(Debug, Default, Serialize, Deserialize)]
struct Listed {
    bridges: BTreeSet<String>,
}

/// The bridges allowed guest forwarding by `convert`.
pub async fn listed(store: &Store) -> Result<BTreeSet<String>, ForwardingError> {
    Ok(store
        .read_json::<Listed>(LIST)
        .await?
        .unwrap_or_default()
        .bridges)
}

/// Records `bridge` as allowed (or no longer); whether that changed anything.
pub async fn record(
    store: &Store,
    lock: &Lock,
    bridge: &str,
    allowed: bool,
) -> Result<bool, ForwardingError> {
    let mut list = Listed {
        bridges: listed(store).await?,
    };
    let changed = if allowed {
        list.bridges.insert(bridge.to_owned())
    } else {
        list.bridges.remove(bridge)
    };
    if changed {
        store.write_json(lock, LIST, &list).await?;
    }
    Ok(changed)
}

/// Which tool maintains a chain.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Backend {
    IptablesNft,
    IptablesLegacy,
    Nftables,
}

/// A chain netbridge's rule belongs in.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Place {
    pub backend: Backend,
    pub family: String,
    pub table: String,
    pub chain: String,
}

impl std::fmt::Display for Place {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let source = match self.backend {
            Backend::IptablesNft => "iptables-nft",
            Backend::IptablesLegacy => "iptables-legacy",
            Backend::Nftables => "nftables",
        };
        write!(
            f,
            "{} {} {} ({source})",
            self.family, self.table, self.chain
        )
    }
}

impl Place {
    /// `iptables-nft`, `ip6tables-legacy`, … or `nft`.
    fn program(&self) -> &'static str {
        match (self.backend, self.family.as_str()) {
            (Backend::IptablesNft, "ip6") => "ip6tables-nft",
            (Backend::IptablesNft, _) => "iptables-nft",
            (Backend::IptablesLegacy, "ip6") => "ip6tables-legacy",
            (Backend::IptablesLegacy, _) => "iptables-legacy",
            (Backend::Nftables, _) => "nft",
        }
    }

    /// The iptables rule specification (without the chain).
    fn iptables_spec(bridge: &str) -> Vec<String> {
        [
            "-i",
            bridge,
            "-o",
            bridge,
            "-m",
            "comment",
            "--comment",
            &format!("{TAG}{bridge}"),
            "-j",
            "ACCEPT",
        ]
        .map(str::to_owned)
        .to_vec()
    }

    /// The arguments that add the rule for `bridge` at the chain's top.
    fn add_args(&self, bridge: &str) -> Vec<String> {
        if self.backend == Backend::Nftables {
            // Bridge-family chains see the port as the interface, the bridge
            // as ibrname/obrname.
            let (iif, oif) = if self.family == "bridge" {
                ("ibrname", "obrname")
            } else {
                ("iifname", "oifname")
            };
            let quoted = format!("\"{bridge}\"");
            return [
                "insert",
                "rule",
                &self.family,
                &self.table,
                &self.chain,
                iif,
                &quoted,
                oif,
                &quoted,
                "accept",
                "comment",
                &format!("\"{TAG}{bridge}\""),
            ]
            .map(str::to_owned)
            .to_vec();
        }
        let mut args: Vec<String> = ["-t", &self.table, "-I", &self.chain]
            .map(str::to_owned)
            .to_vec();
        args.extend(Place::iptables_spec(bridge));
        args
    }
}

/// Where forwarding on a bridge must be accepted (pure): every forward base
/// chain of the ip, ip6 and inet families (bridge netfilter may be switched
/// on at any time, by loading br_netfilter, as Docker does) and the
/// bridge-family forward chains of nftables — DOCKER-USER instead of an
/// iptables FORWARD chain whose table has it. ebtables chains are left
/// alone (see the README's limits).
pub fn places(chains: &[Chain]) -> Vec<Place> {
    let mut out: Vec<Place> = Vec::new();
    for c in chains
        .iter()
        .filter(|c| c.hook.as_deref() == Some("forward"))
    {
        let backend = match c.source {
            "iptables-nft" => Backend::IptablesNft,
            "iptables-legacy" => Backend::IptablesLegacy,
            "nftables" => Backend::Nftables,
            _ => continue,
        };
        if c.family == "bridge" && backend != Backend::Nftables {
            continue;
        }
        let docker_user = backend != Backend::Nftables
            && chains.iter().any(|d| {
                d.name == "DOCKER-USER"
                    && d.hook.is_none()
                    && d.source == c.source
                    && d.family == c.family
                    && d.table == c.table
            });
        let place = Place {
            backend,
            family: c.family.clone(),
            table: c.table.clone(),
            chain: if docker_user {
                "DOCKER-USER".to_owned()
            } else {
                c.name.clone()
            },
        };
        if !out.contains(&place) {
            out.push(place);
        }
    }
    out.sort();
    out
}

/// One of netbridge's rules, found in the firewall.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found {
    pub place: Place,
    pub bridge: String,
    /// nftables' handle of the rule (iptables deletes by specification).
    pub handle: Option<u64>,
}

/// netbridge's rules in `iptables -S` output of one table (pure).
pub fn parse_iptables_rules(text: &str, backend: Backend, family: &str, table: &str) -> Vec<Found> {
    let mut out = Vec::new();
    for line in text.lines() {
        let words: Vec<&str> = line.split_whitespace().collect();
        let (Some(&"-A"), Some(chain)) = (words.first(), words.get(1)) else {
            continue;
        };
        let comment = words
            .windows(2)
            .find(|w| w[0] == "--comment")
            .map(|w| w[1].trim_matches('"'));
        if let Some(bridge) = comment.and_then(|c| c.strip_prefix(TAG)) {
            out.push(Found {
                place: Place {
                    backend,
                    family: family.to_owned(),
                    table: table.to_owned(),
                    chain: (*chain).to_owned(),
                },
                bridge: bridge.to_owned(),
                handle: None,
            });
        }
    }
    out
}

/// netbridge's rules in the native nftables tables of `nft -j -a list
/// ruleset` (pure); tables iptables-nft maintains are read with iptables.
pub fn parse_nft_rules(text: &str, chains: &[Chain]) -> Vec<Found> {
    let Ok(doc) = serde_json::from_str::<serde_json::Value>(text) else {
        return Vec::new();
    };
    let items = doc
        .get("nftables")
        .and_then(serde_json::Value::as_array)
        .cloned()
        .unwrap_or_default();
    let field = |obj: &serde_json::Value, key: &str| {
        obj.get(key)
            .and_then(serde_json::Value::as_str)
            .map(str::to_owned)
    };
    let mut out = Vec::new();
    for rule in items.iter().filter_map(|i| i.get("rule")) {
        let (Some(family), Some(table), Some(chain), Some(comment), Some(handle)) = (
            field(rule, "family"),
            field(rule, "table"),
            field(rule, "chain"),
            field(rule, "comment"),
            rule.get("handle").and_then(serde_json::Value::as_u64),
        ) else {
            continue;
        };
        let native = chains
            .iter()
            .any(|c| c.family == family && c.table == table && c.source == "nftables");
        let Some(bridge) = comment.strip_prefix(TAG) else {
            continue;
        };
        if native {
            out.push(Found {
                place: Place {
                    backend: Backend::Nftables,
                    family,
                    table,
                    chain,
                },
                bridge: bridge.to_owned(),
                handle: Some(handle),
            });
        }
    }
    out
}

/// What [`sync`] did to one chain.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Action {
    /// The rule was added.
    Accepted,
    /// netbridge's rule was removed.
    Removed,
}

/// What [`sync`] changed, for people and `--json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Applied {
    pub action: Action,
    pub bridge: String,
    /// The chain, e.g. `ip filter DOCKER-USER (iptables-nft)`.
    pub chain: String,
}

impl std::fmt::Display for Applied {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.action {
            Action::Accepted => write!(
                f,
                "forwarding between {}'s ports accepted in {}",
                self.bridge, self.chain
            ),
            Action::Removed => write!(
                f,
                "netbridge's rule for {} removed from {}",
                self.bridge, self.chain
            ),
        }
    }
}

/// Makes the firewall accept forwarding on exactly `bridges`: adds the rules
/// that are missing, removes netbridge's rules that are not wanted (another
/// bridge, or a chain no longer right), touches nothing else.
pub async fn sync(bridges: &BTreeSet<String>) -> Result<Vec<Applied>, ForwardingError> {
    converge(bridges, None).await
}

/// `convert --guest-forwarding allow`, around a change that may not commit:
/// the rules first (so the guest-path check crosses them), the record only
/// once the change has committed. A run killed in between thus leaves a rule
/// without a record, which the next [`sync`] removes — never a record of a
/// bridge that does not exist.
#[derive(Debug)]
#[must_use = "end the trial: it records or takes back the rules"]
pub struct Trial {
    bridge: String,
    /// Already allowed before (a run again): nothing to take back.
    listed_before: bool,
}

impl Trial {
    /// Adds `bridge`'s missing rules.
    pub async fn begin(
        store: &Store,
        bridge: &str,
        progress: &Progress,
    ) -> Result<Trial, ForwardingError> {
        let trial = Trial {
            bridge: bridge.to_owned(),
            listed_before: listed(store).await?.contains(bridge),
        };
        match one(bridge, true).await {
            Ok(applied) => {
                report(&applied, bridge, progress);
                Ok(trial)
            }
            Err(e) => {
                // Half a change helps nobody; the first error is the one to tell.
                if !trial.listed_before {
                    let _ = one(bridge, false).await;
                }
                Err(e)
            }
        }
    }

    /// Records the bridge once the change committed; otherwise takes back
    /// the rules this trial added (none if it was allowed before).
    pub async fn end(
        self,
        store: &Store,
        lock: &Lock,
        committed: bool,
        progress: &Progress,
    ) -> Result<(), ForwardingError> {
        match (committed, self.listed_before) {
            (_, true) => Ok(()),
            (true, false) => record(store, lock, &self.bridge, true).await.map(drop),
            (false, false) => {
                report(&one(&self.bridge, false).await?, &self.bridge, progress);
                Ok(())
            }
        }
    }
}

/// After a revert: forgets `bridge` and removes its rules — only
/// netbridge's, and only this bridge's.
pub async fn forget(
    store: &Store,
    lock: &Lock,
    bridge: &str,
    progress: &Progress,
) -> Result<(), ForwardingError> {
    record(store, lock, bridge, false).await?;
    report(&one(bridge, false).await?, bridge, progress);
    Ok(())
}

async fn one(bridge: &str, allowed: bool) -> Result<Vec<Applied>, ForwardingError> {
    let wanted: BTreeSet<String> = if allowed {
        BTreeSet::from([bridge.to_owned()])
    } else {
        BTreeSet::new()
    };
    converge(&wanted, Some(bridge)).await
}

fn report(applied: &[Applied], bridge: &str, progress: &Progress) {
    if applied.is_empty() {
        progress.step(
            "firewall",
            format!("nothing to change for {bridge}'s guest forwarding"),
        );
    }
    for a in applied {
        progress.step("firewall", a.to_string());
    }
}

/// What `--guest-forwarding allow` would add for `bridge` now, for a dry
/// run: the chains that lack its rule.
pub async fn preview(bridge: &str) -> Result<Vec<Place>, ForwardingError> {
    let chains = readable_chains().await?;
    let found = find(&chains).await?;
    Ok(places(&chains)
        .into_iter()
        .filter(|p| !found.iter().any(|f| f.bridge == bridge && &f.place == p))
        .collect())
}

/// [`sync`], limited to the rules of `scope` when given: the others'
/// rules are neither added nor removed.
async fn converge(
    bridges: &BTreeSet<String>,
    scope: Option<&str>,
) -> Result<Vec<Applied>, ForwardingError> {
    let chains = readable_chains().await?;
    let wanted = places(&chains);
    let found: Vec<Found> = find(&chains)
        .await?
        .into_iter()
        .filter(|f| scope.is_none_or(|s| s == f.bridge))
        .collect();
    let mut applied = Vec::new();
    for f in &found {
        if bridges.contains(&f.bridge) && wanted.contains(&f.place) {
            continue;
        }
        let args = match f.handle {
            Some(handle) => [
                "delete",
                "rule",
                &f.place.family,
                &f.place.table,
                &f.place.chain,
                "handle",
                &handle.to_string(),
            ]
            .map(str::to_owned)
            .to_vec(),
            None => {
                let mut args: Vec<String> = ["-t", &f.place.table, "-D", &f.place.chain]
                    .map(str::to_owned)
                    .to_vec();
                args.extend(Place::iptables_spec(&f.bridge));
                args
            }
        };
        run(f.place.program(), &args).await?;
        applied.push(Applied {
            action: Action::Removed,
            bridge: f.bridge.clone(),
            chain: f.place.to_string(),
        });
    }
    for bridge in bridges {
        for place in &wanted {
            if found
                .iter()
                .any(|f| &f.bridge == bridge && &f.place == place)
            {
                continue;
            }
            run(place.program(), &place.add_args(bridge)).await?;
            applied.push(Applied {
                action: Action::Accepted,
                bridge: bridge.clone(),
                chain: place.to_string(),
            });
        }
    }
    Ok(applied)
}

/// The firewall's chains, or why they cannot be trusted: a missing legacy
/// tool only means no legacy tables, but anything else unread could hide
/// the chain that drops, or a rule of netbridge's.
async fn readable_chains() -> Result<Vec<Chain>, ForwardingError> {
    let (chains, unknown) = firewall::chains().await;
    match unknown.iter().find(|u| !u.ends_with("is not installed")) {
        Some(why) => Err(ForwardingError::Unreadable(why.clone())),
        None => Ok(chains),
    }
}

/// netbridge's rules in the firewall now. iptables tables are listed only
/// where they exist: listing never creates one.
async fn find(chains: &[Chain]) -> Result<Vec<Found>, ForwardingError> {
    let mut found = Vec::new();
    if chains.iter().any(|c| c.source == "nftables") {
        let text = run("nft", &["-j", "-a", "list", "ruleset"].map(str::to_owned)).await?;
        found.extend(parse_nft_rules(&text, chains));
    }
    let mut tables: Vec<(Backend, &str, &str)> = chains
        .iter()
        .filter_map(|c| match c.source {
            "iptables-nft" if c.family != "bridge" => {
                Some((Backend::IptablesNft, c.family.as_str(), c.table.as_str()))
            }
            "iptables-legacy" => {
                Some((Backend::IptablesLegacy, c.family.as_str(), c.table.as_str()))
            }
            _ => None,
        })
        .filter(|(_, _, table)| *table == "filter")
        .collect();
    tables.sort_unstable();
    tables.dedup();
    for (backend, family, table) in tables {
        let place = Place {
            backend,
            family: family.to_owned(),
            table: table.to_owned(),
            chain: String::new(),
        };
        let text = run(place.program(), &["-t", table, "-S"].map(str::to_owned)).await?;
        found.extend(parse_iptables_rules(&text, backend, family, table));
    }
    Ok(found)
}

async fn run(program: &str, args: &[String]) -> Result<String, ForwardingError> {
    let borrowed: Vec<&str> = args.iter().map(String::as_str).collect();
    firewall::tool(program, &borrowed)
        .await
        .map_err(|detail| ForwardingError::Tool {
            command: format!("{program} {}", args.join(" ")),
            detail,
        })
}

#[cfg(test)]
mod tests;
