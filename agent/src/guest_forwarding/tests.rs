//! Where the rule goes, and finding netbridge's rules, on output captured
//! from the real tools (nft 1.0.6, iptables 1.8.9) in a lab namespace.

use super::*;
use crate::firewall::parse_nft_json;

/// A Docker-like iptables-nft table with netbridge's rule in DOCKER-USER,
/// and a native nftables table with netbridge's rule in its forward chain.
const NFT_BOTH: &str = r#"{"nftables": [{"metainfo": {"version": "1.0.6", "release_name": "Lester Gooch #5", "json_schema_version": 1}}, {"table": {"family": "ip", "name": "filter", "handle": 1}}, {"chain": {"family": "ip", "table": "filter", "name": "DOCKER-USER", "handle": 1}}, {"chain": {"family": "ip", "table": "filter", "name": "FORWARD", "handle": 3, "type": "filter", "hook": "forward", "prio": 0, "policy": "drop"}}, {"rule": {"family": "ip", "table": "filter", "chain": "DOCKER-USER", "handle": 5, "expr": [{"match": {"op": "==", "left": {"meta": {"key": "iifname"}}, "right": "br0"}}, {"match": {"op": "==", "left": {"meta": {"key": "oifname"}}, "right": "br0"}}, {"xt": {"type": "match", "name": "comment"}}, {"counter": {"packets": 0, "bytes": 0}}, {"accept": null}]}}, {"rule": {"family": "ip", "table": "filter", "chain": "DOCKER-USER", "handle": 2, "expr": [{"counter": {"packets": 0, "bytes": 0}}, {"return": null}]}}, {"rule": {"family": "ip", "table": "filter", "chain": "FORWARD", "handle": 4, "expr": [{"counter": {"packets": 0, "bytes": 0}}, {"jump": {"target": "DOCKER-USER"}}]}}, {"table": {"family": "ip", "name": "nat0", "handle": 2}}, {"chain": {"family": "ip", "table": "nat0", "name": "forward", "handle": 1, "type": "filter", "hook": "forward", "prio": 0, "policy": "drop"}}, {"rule": {"family": "ip", "table": "nat0", "chain": "forward", "handle": 2, "comment": "netbridge-guest-forwarding:br0", "expr": [{"match": {"op": "==", "left": {"meta": {"key": "iifname"}}, "right": "br0"}}, {"match": {"op": "==", "left": {"meta": {"key": "oifname"}}, "right": "br0"}}, {"accept": null}]}}]}"#;

/// `iptables-nft -t filter -S` of the same iptables-nft table.
const IPTABLES_S: &str = r#"-P INPUT ACCEPT
-P FORWARD DROP
-P OUTPUT ACCEPT
-N DOCKER-USER
-A FORWARD -j DOCKER-USER
-A DOCKER-USER -i br0 -o br0 -m comment --comment "netbridge-guest-forwarding:br0" -j ACCEPT
-A DOCKER-USER -j RETURN
"#;

fn place(backend: Backend, family: &str, table: &str, chain: &str) -> Place {
    Place {
        backend,
        family: family.into(),
        table: table.into(),
        chain: chain.into(),
    }
}

#[test]
fn docker_user_takes_the_rule_for_iptables_and_the_base_chain_for_nftables() {
    let chains = parse_nft_json(NFT_BOTH).expect("parses");
    assert_eq!(
        places(&chains),
        [
            place(Backend::IptablesNft, "ip", "filter", "DOCKER-USER"),
            place(Backend::Nftables, "ip", "nat0", "forward"),
        ]
    );
}

#[test]
fn without_docker_the_rule_goes_into_forward_and_legacy_uses_its_own_tool() {
    let save = "*filter\n:INPUT ACCEPT [0:0]\n:FORWARD DROP [0:0]\n:OUTPUT ACCEPT [0:0]\nCOMMIT\n";
    let chains = crate::firewall::parse_iptables_save(save, "ip6", "iptables-legacy");
    let wanted = places(&chains);
    assert_eq!(
        wanted,
        [place(Backend::IptablesLegacy, "ip6", "filter", "FORWARD")]
    );
    assert_eq!(wanted[0].program(), "ip6tables-legacy");
    assert_eq!(
        wanted[0].add_args("br0").join(" "),
        "-t filter -I FORWARD -i br0 -o br0 -m comment --comment netbridge-guest-forwarding:br0 -j ACCEPT"
    );
}

#[test]
fn nothing_filtering_forward_needs_no_rule() {
    assert!(places(&[]).is_empty());
    let input_only = "*filter\n:INPUT DROP [0:0]\nCOMMIT\n";
    let chains = crate::firewall::parse_iptables_save(input_only, "ip", "iptables-legacy");
    assert!(places(&chains).is_empty());
}

#[test]
fn bridge_family_chains_match_the_bridge_by_ibrname() {
    let bridge = Place {
        backend: Backend::Nftables,
        family: "bridge".into(),
        table: "guests".into(),
        chain: "forward".into(),
    };
    assert_eq!(
        bridge.add_args("br0").join(" "),
        "insert rule bridge guests forward ibrname \"br0\" obrname \"br0\" accept comment \"netbridge-guest-forwarding:br0\""
    );
}

#[test]
fn netbridge_rules_are_found_by_their_comment_only() {
    let chains = parse_nft_json(NFT_BOTH).expect("parses");
    // iptables-nft's rule is left to iptables (nft does not show its comment).
    assert_eq!(
        parse_nft_rules(NFT_BOTH, &chains),
        [Found {
            place: place(Backend::Nftables, "ip", "nat0", "forward"),
            bridge: "br0".into(),
            handle: Some(2),
        }]
    );
    assert_eq!(
        parse_iptables_rules(IPTABLES_S, Backend::IptablesNft, "ip", "filter"),
        [Found {
            place: place(Backend::IptablesNft, "ip", "filter", "DOCKER-USER"),
            bridge: "br0".into(),
            handle: None,
        }]
    );
    let others = "-A FORWARD -i br1 -o br1 -m comment --comment \"mine\" -j ACCEPT\n";
    assert!(parse_iptables_rules(others, Backend::IptablesNft, "ip", "filter").is_empty());
}

#[test]
fn values_parse_and_anything_else_is_refused() {
    assert_eq!("allow".parse(), Ok(GuestForwarding::Allow));
    assert_eq!("deny".parse(), Ok(GuestForwarding::Deny));
    let err = "yes".parse::<GuestForwarding>().unwrap_err();
    assert!(err.contains("use \"allow\" or \"deny\""), "{err}");
}

#[tokio::test]
async fn the_list_records_and_forgets_a_bridge() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::new(dir.path().join("state"));
    let lock = store.lock().unwrap();
    assert!(listed(&store).await.unwrap().is_empty());
    assert!(record(&store, &lock, "br0", true).await.unwrap());
    assert!(
        !record(&store, &lock, "br0", true).await.unwrap(),
        "idempotent"
    );
    assert_eq!(listed(&store).await.unwrap().len(), 1);
    assert!(record(&store, &lock, "br0", false).await.unwrap());
    assert!(listed(&store).await.unwrap().is_empty());
}
