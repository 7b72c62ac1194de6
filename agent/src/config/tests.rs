use std::path::PathBuf;

use super::*;

fn one(text: &str) -> Result<Config, ConfigError> {
    parse(&[(
        PathBuf::from("/etc/netbridge/netbridge.toml"),
        text.to_owned(),
    )])
}

fn err(text: &str) -> ConfigError {
    one(text).expect_err("configuration should be rejected")
}

const SINGLE: &str = r#"
[defaults]
rollback-timeout = 40

[[bridge]]
name = "br0"
uplink = "ens32"
checks = ["tcp:172.25.250.254:22"]
"#;

#[test]
fn a_single_host_file_reads_with_defaults() {
    let config = one(SINGLE).unwrap();
    let br0 = &config.bridges[0];
    assert_eq!(br0.name, "br0");
    assert_eq!(
        br0.mode,
        Mode::Bridged {
            uplink: UplinkSelector::Name("ens32".into())
        }
    );
    assert!(!br0.stp && br0.default_checks);
    assert_eq!(br0.rollback_timeout, Some(40));
    assert_eq!(br0.checks[0].to_string(), "tcp:172.25.250.254:22");
}

#[test]
fn uplinks_can_be_selected_by_route_or_mac() {
    let text = r#"
[[bridge]]
name = "br0"
uplink = "default-route"

[[bridge]]
name = "br1"
uplink = "mac:52:54:00:ab:cd:ef"
"#;
    let config = one(text).unwrap();
    assert_eq!(
        config.bridges[0].mode,
        Mode::Bridged {
            uplink: UplinkSelector::DefaultRoute
        }
    );
    assert_eq!(
        config.bridges[1].mode,
        Mode::Bridged {
            uplink: UplinkSelector::Mac("52:54:00:AB:CD:EF".into())
        }
    );
}

#[test]
fn nat_and_isolated_networks_read() {
    let text = r#"
[[bridge]]
name = "virbr1"
mode = "nat"
address = "192.168.107.1/24"
dhcp-range = "192.168.107.2-192.168.107.100"

[[bridge]]
name = "vmnet1"
mode = "isolated"
address = "192.168.108.1/24"
"#;
    let config = one(text).unwrap();
    match &config.bridges[0].mode {
        Mode::Network {
            kind,
            dhcp,
            dhcp_enabled,
            ..
        } => {
            assert_eq!(*kind, NetMode::Nat);
            assert_eq!(
                dhcp.map(|d| d.to_string()).as_deref(),
                Some("192.168.107.2-192.168.107.100")
            );
            assert!(dhcp_enabled);
        }
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        &config.bridges[1].mode,
        Mode::Network {
            kind: NetMode::Isolated,
            dhcp_enabled: false,
            ..
        }
    ));
}

#[test]
fn drop_ins_override_in_name_order() {
    let sources = vec![
        (
            PathBuf::from("/etc/netbridge/netbridge.toml"),
            SINGLE.to_owned(),
        ),
        (
            PathBuf::from("/etc/netbridge/conf.d/50-stp.toml"),
            "[defaults]\nstp = true\n[[bridge]]\nname = \"br0\"\nuplink = \"ens33\"\n".to_owned(),
        ),
    ];
    let config = parse(&sources).unwrap();
    assert_eq!(config.bridges.len(), 1);
    let br0 = &config.bridges[0];
    assert_eq!(
        br0.mode,
        Mode::Bridged {
            uplink: UplinkSelector::Name("ens33".into())
        }
    );
    assert!(br0.stp, "stp from the later defaults");
    assert_eq!(
        br0.rollback_timeout,
        Some(40),
        "earlier defaults keep what is not overridden"
    );
    assert!(br0.origin.ends_with("50-stp.toml"));
}

#[test]
fn unknown_keys_and_wrong_types_name_the_file_line_and_key() {
    let e = err("[[bridge]]\nname = \"br0\"\nupplink = \"ens32\"\n");
    assert_eq!(e.line, Some(3), "{e}");
    assert!(
        e.to_string().starts_with(
            "/etc/netbridge/netbridge.toml:3: bridge.upplink: unknown field `upplink`"
        ),
        "{e}"
    );
    assert!(e.message.contains("upplink"), "{e}");

    let e = err("[[bridge]]\nname = \"br0\"\nuplink = \"ens32\"\nstp = \"yes\"\n");
    assert_eq!((e.line, e.key.as_str()), (Some(4), "bridge.stp"), "{e}");
    assert!(
        e.message.contains("bool") || e.message.contains("boolean"),
        "{e}"
    );
}

#[test]
fn invalid_values_are_rejected_with_their_key() {
    let cases = [
        ("[[bridge]]\nname = \"a-very-long-bridge\"\nuplink = \"ens32\"\n", "bridge.name", 2),
        ("[[bridge]]\nname = \"br0\"\n", "bridge.uplink", 2),
        ("[[bridge]]\nname = \"br0\"\nuplink = \"ens32\"\nchecks = [\"tcp:x\"]\n", "bridge.checks", 4),
        ("[[bridge]]\nname = \"br0\"\nuplink = \"ens32\"\nrollback-timeout = 0\n", "bridge.rollback-timeout", 4),
        ("[[bridge]]\nname = \"br0\"\nuplink = \"mac:zz\"\n", "bridge.uplink", 3),
        ("[[bridge]]\nname = \"br0\"\nmode = \"routed\"\n", "bridge.mode", 3),
        ("[[bridge]]\nname = \"v\"\nmode = \"nat\"\naddress = \"192.168.107.0/24\"\n", "bridge.address", 4),
        ("[[bridge]]\nname = \"v\"\nmode = \"nat\"\naddress = \"192.168.107.1/24\"\ndhcp-range = \"10.0.0.1-10.0.0.9\"\n", "bridge.dhcp-range", 5),
        ("[[bridge]]\nname = \"v\"\nmode = \"nat\"\naddress = \"192.168.107.1/24\"\nuplink = \"ens32\"\n", "bridge.uplink", 5),
        ("[[bridge]]\nname = \"br0\"\nuplink = \"ens32\"\nmtu = 10\n", "bridge.mtu", 4),
        ("[defaults]\nchecks = [\"bogus\"]\n", "defaults.checks", 2),
    ];
    for (text, key, line) in cases {
        let e = err(text);
        assert_eq!(
            (e.key.as_str(), e.line),
            (key, Some(line)),
            "{text}\n=> {e}"
        );
    }
}

#[test]
fn duplicate_names_and_shared_uplinks_are_errors() {
    let e = err("[[bridge]]\nname = \"br0\"\nuplink = \"ens32\"\n\n[[bridge]]\nname = \"br0\"\nuplink = \"ens33\"\n");
    assert_eq!(e.line, Some(6), "{e}");
    assert!(e.message.contains("defined twice"), "{e}");

    let e = err("[[bridge]]\nname = \"br0\"\nuplink = \"ens32\"\n\n[[bridge]]\nname = \"br1\"\nuplink = \"ens32\"\n");
    assert_eq!(e.key, "bridge.uplink");
    assert!(e.message.contains("both claim the uplink ens32"), "{e}");
}

#[tokio::test]
async fn files_are_found_in_name_order() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("netbridge.toml"), SINGLE).unwrap();
    std::fs::create_dir(dir.path().join("conf.d")).unwrap();
    for name in ["20-b.toml", "10-a.toml", "notes.txt"] {
        std::fs::write(dir.path().join("conf.d").join(name), "").unwrap();
    }
    let found = files(dir.path()).unwrap();
    let names: Vec<_> = found
        .iter()
        .filter_map(|p| p.file_name()?.to_str())
        .collect();
    assert_eq!(names, ["netbridge.toml", "10-a.toml", "20-b.toml"]);
    let config = load(&dir.path().join("netbridge.toml")).await.unwrap();
    assert_eq!(config.files.len(), 3);
    assert_eq!(config.bridges.len(), 1);
}

#[test]
fn the_shipped_examples_are_valid() {
    for example in ["single-host.toml", "fleet.toml", "virtual-networks.toml"] {
        let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("../configs")
            .join(example);
        let text =
            std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        parse(&[(path.clone(), text)]).unwrap_or_else(|e| panic!("{e}"));
    }
}

#[test]
fn the_guest_check_is_on_unless_turned_off_and_stays_out_of_the_fingerprint() {
    let config = one(SINGLE).unwrap();
    let br0 = &config.bridges[0];
    assert!(br0.guest_check);
    assert!(
        !br0.fingerprint().contains("guest"),
        "{}",
        br0.fingerprint()
    );

    let text = "[defaults]\nguest-check = false\n\n[[bridge]]\nname = \"br0\"\nuplink = \"ens32\"\n\n[[bridge]]\nname = \"br1\"\nuplink = \"ens33\"\nguest-check = true\n";
    let config = one(text).unwrap();
    assert!(!config.bridges[0].guest_check);
    assert!(config.bridges[1].guest_check);
    assert!(config.bridges[0]
        .fingerprint()
        .contains("\"guest_check\":false"));
    let wrong = err("[defaults]\nguest-check = \"no\"\n");
    assert!(
        wrong
            .to_string()
            .contains("toml:2: defaults.guest-check: invalid type"),
        "{wrong}"
    );
}

#[test]
fn the_key_of_a_wrong_type_is_found_in_any_entry_and_table() {
    let second = "[[bridge]]\nname = \"br0\"\nuplink = \"ens32\"\n\n[[bridge]]\nname = \"br1\"\nuplink = \"ens33\"\nmtu = \"big\"\n";
    let e = err(second);
    assert_eq!((e.line, e.key.as_str()), (Some(8), "bridge.mtu"), "{e}");
    let unknown = err("[defaults]\nspeed = 10\n");
    assert_eq!(
        (unknown.line, unknown.key.as_str()),
        (Some(2), "defaults.speed")
    );
    let in_array = err("[defaults]\nchecks = [\"gateway\", 3]\n");
    assert_eq!(in_array.key, "defaults.checks", "{in_array}");
    // A syntax error has no key to name.
    assert_eq!(err("[defaults\n").key, "");
}

#[test]
fn adopt_is_off_unless_asked_for_and_stays_out_of_the_fingerprint_while_off() {
    let config = one(SINGLE).unwrap();
    assert!(!config.bridges[0].adopt);
    assert!(!config.bridges[0].fingerprint().contains("adopt"));
    let text = "[[bridge]]\nname = \"br0\"\nuplink = \"ens32\"\nadopt = true\n";
    let config = one(text).unwrap();
    assert!(config.bridges[0].adopt);
    assert!(config.bridges[0].fingerprint().contains("\"adopt\":true"));
}

#[test]
fn libvirt_keys_read_and_stay_out_of_the_fingerprint_until_used() {
    let plain = one(SINGLE).unwrap();
    assert!(plain.bridges[0].libvirt.is_empty());
    assert!(!plain.bridges[0].fingerprint().contains("libvirt"));
    let text = r#"
[[bridge]]
name = "br0"
uplink = "ens32"
libvirt-network = "host-bridge"
qemu-bridge-helper = true
"#;
    let br0 = &one(text).unwrap().bridges[0];
    assert_eq!(
        br0.libvirt.network.as_ref().map(|n| n.as_str()),
        Some("host-bridge")
    );
    assert!(br0.libvirt.qemu_bridge_helper);
    assert!(br0
        .fingerprint()
        .contains(r#""libvirt-network":"host-bridge","qemu-bridge-helper":true"#));
}

#[test]
fn libvirt_keys_are_checked_with_their_key() {
    let e = err("[[bridge]]\nname = \"br0\"\nuplink = \"ens32\"\nlibvirt-network = \"a/b\"\n");
    assert_eq!(e.key, "bridge.libvirt-network");
    assert_eq!(e.line, Some(4));
    assert!(e.message.contains("is not a libvirt network name"), "{e}");
    let e = err("[[bridge]]\nname = \"nat0\"\nmode = \"nat\"\naddress = \"192.168.107.1/24\"\nlibvirt-network = \"lan\"\n");
    assert_eq!(e.key, "bridge.libvirt-network");
    assert!(e.message.contains("bridged"), "{e}");
    let e = err("[[bridge]]\nname = \"br0\"\nuplink = \"ens32\"\nqemu-bridge-helper = \"yes\"\n");
    assert_eq!(e.line, Some(4), "{e}");
    assert!(e.message.contains("expected a boolean"), "{e}");
}

#[test]
fn guest_forwarding_is_deny_unless_allowed_and_a_bad_value_names_its_line() {
    let config = one(SINGLE).unwrap();
    assert_eq!(config.bridges[0].guest_forwarding, GuestForwarding::Deny);
    assert!(!config.bridges[0].fingerprint().contains("forwarding"));

    let text = "[defaults]\nguest-forwarding = \"allow\"\n\n[[bridge]]\nname = \"br0\"\nuplink = \"ens32\"\n\n[[bridge]]\nname = \"br1\"\nuplink = \"ens33\"\nguest-forwarding = \"deny\"\n";
    let config = one(text).unwrap();
    assert_eq!(config.bridges[0].guest_forwarding, GuestForwarding::Allow);
    assert_eq!(config.bridges[1].guest_forwarding, GuestForwarding::Deny);
    assert!(config.bridges[0]
        .fingerprint()
        .contains("\"guest_forwarding\":\"allow\""));

    let wrong = err("[[bridge]]\nname = \"br0\"\nuplink = \"ens32\"\nguest-forwarding = \"yes\"\n");
    assert_eq!(
        wrong.to_string(),
        "/etc/netbridge/netbridge.toml:4: bridge.guest-forwarding: \"yes\" is not a value: use \"allow\" or \"deny\""
    );
}

/// Records the field names serde's derive hands to `deserialize_struct`:
/// exactly the keys the parser accepts (after `rename_all`), with no
/// document needed.
struct FieldNames(Vec<&'static str>);

#[derive(Debug)]
struct Captured;

impl std::fmt::Display for Captured {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("field names captured")
    }
}

impl std::error::Error for Captured {}

impl serde::de::Error for Captured {
    fn custom<T: std::fmt::Display>(_: T) -> Self {
        Captured
    }
}

impl<'de> serde::Deserializer<'de> for &mut FieldNames {
    type Error = Captured;

    fn deserialize_any<V: serde::de::Visitor<'de>>(self, _: V) -> Result<V::Value, Captured> {
        Err(Captured)
    }

    fn deserialize_struct<V: serde::de::Visitor<'de>>(
        self,
        _name: &'static str,
        fields: &'static [&'static str],
        _visitor: V,
    ) -> Result<V::Value, Captured> {
        self.0 = fields.to_vec();
        Err(Captured)
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
        bytes byte_buf option unit unit_struct newtype_struct seq tuple
        tuple_struct map enum identifier ignored_any
    }
}

fn accepted_keys<T: serde::de::DeserializeOwned>() -> Vec<&'static str> {
    let mut names = FieldNames(Vec::new());
    let _ = T::deserialize(&mut names);
    names.0
}

fn documented_keys(table: keys::Table) -> Vec<&'static str> {
    keys::KEYS
        .iter()
        .filter(|k| k.table == table)
        .map(|k| k.name)
        .collect()
}

#[test]
fn the_manual_documents_exactly_the_keys_the_parser_accepts() {
    let mut accepted = accepted_keys::<RawDefaults>();
    let mut documented = documented_keys(keys::Table::Defaults);
    assert!(!accepted.is_empty(), "no fields captured from RawDefaults");
    accepted.sort_unstable();
    documented.sort_unstable();
    assert_eq!(documented, accepted, "[defaults] keys in keys.rs vs raw.rs");

    let mut accepted = accepted_keys::<RawBridge>();
    let mut documented = documented_keys(keys::Table::Bridge);
    accepted.sort_unstable();
    documented.sort_unstable();
    assert_eq!(documented, accepted, "[[bridge]] keys in keys.rs vs raw.rs");

    let mut tables = accepted_keys::<RawFile>();
    tables.sort_unstable();
    assert_eq!(tables, ["bridge", "defaults"], "top-level tables");
}

#[test]
fn every_documented_example_is_accepted_in_its_table() {
    for key in keys::KEYS {
        let text = match (key.table, key.name) {
            (keys::Table::Defaults, _) => format!("[defaults]\n{}\n", key.example),
            // Network keys need a network entry; the rest a bridged one.
            (keys::Table::Bridge, "address" | "dhcp-range" | "dhcp") => format!(
                "[[bridge]]\nname = \"virbr1\"\nmode = \"nat\"\n{}\n{}\n",
                if key.name == "address" {
                    ""
                } else {
                    "address = \"192.168.107.1/24\""
                },
                key.example
            ),
            (keys::Table::Bridge, "name" | "uplink") => format!(
                "[[bridge]]\n{}\n{}\n",
                key.example,
                if key.name == "name" {
                    "uplink = \"ens32\""
                } else {
                    "name = \"br0\""
                }
            ),
            (keys::Table::Bridge, _) => format!(
                "[[bridge]]\nname = \"br0\"\nuplink = \"ens32\"\n{}\n",
                key.example
            ),
        };
        if let Err(e) = one(&text) {
            panic!(
                "the example of {} {}: {e}\n{text}",
                key.table.header(),
                key.name
            );
        }
    }
}
