//! `netbridge apply --check-config`: the configuration validated offline —
//! no NetworkManager, no system bus, no lock — so CI, a pre-commit hook or
//! Ansible's `validate` can run it anywhere. No lab needed.

mod common;

use std::path::Path;
use std::process::{Command, Stdio};

use common::Run;
use netbridge_tests::lab::netbridge_bin;

/// The real binary, with a system bus that does not exist and a state
/// directory of its own: anything that reached for NetworkManager or the
/// lock would fail.
fn check_config(state: &Path, args: &[&str]) -> Run {
    let bin = netbridge_bin().unwrap_or_else(|e| panic!("{e}"));
    Command::new(bin)
        .args(["apply", "--check-config"])
        .args(args)
        .env(
            "DBUS_SYSTEM_BUS_ADDRESS",
            "unix:path=/nonexistent/netbridge-test-bus",
        )
        .env("NETBRIDGE_STATE_DIR", state)
        .env_remove("NETBRIDGE_LOG")
        .stdin(Stdio::null())
        .output()
        .expect("run netbridge")
        .into()
}

#[test]
fn a_valid_configuration_is_reported_valid_without_networkmanager() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let file = dir.path().join("netbridge.toml");
    std::fs::write(
        &file,
        "[[bridge]]\nname = \"br0\"\nuplink = \"default-route\"\nstp = true\n\n\
         [[bridge]]\nname = \"virbr1\"\nmode = \"nat\"\naddress = \"192.168.107.1/24\"\n",
    )
    .expect("write the configuration");
    let path = file.to_str().expect("UTF-8 path");
    let run = check_config(dir.path(), &[path]);
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
    assert!(run.stdout.contains("is valid"), "{}", run.stdout);
    assert!(
        run.stdout.contains("br0") && run.stdout.contains("bridged, uplink default-route"),
        "{}",
        run.stdout
    );
    assert!(run.stdout.contains("virbr1"), "{}", run.stdout);
    // Nothing was written: no lock, no journal.
    let left: Vec<_> = std::fs::read_dir(dir.path())
        .expect("state dir")
        .filter_map(Result::ok)
        .map(|e| e.file_name())
        .collect();
    assert_eq!(left, vec![std::ffi::OsString::from("netbridge.toml")]);
}

#[test]
fn an_invalid_configuration_exits_2_naming_file_line_and_key() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let file = dir.path().join("bad.toml");
    std::fs::write(
        &file,
        "[[bridge]]\nname = \"br0\"\nuplink = \"ens32\"\nstp = \"maybe\"\n",
    )
    .expect("write the configuration");
    let path = file.to_str().expect("UTF-8 path");
    let run = check_config(dir.path(), &[path]);
    assert_eq!(run.code, 2, "{}\n{}", run.stdout, run.stderr);
    assert!(
        run.stderr.contains("bad.toml:4: bridge.stp: invalid type"),
        "{}",
        run.stderr
    );

    let json = check_config(dir.path(), &[path, "--json"]);
    assert_eq!(json.code, 2, "{}", json.stderr);
    let doc = json.json();
    assert!(
        doc["error"]["message"]
            .as_str()
            .is_some_and(|e| e.contains("bridge.stp")),
        "{doc}"
    );
}
