//! Installing like a system tool: the manual pages render, the bash
//! completion offers the verbs, `make deb` builds a package lintian accepts,
//! `make rpm` one with the same files in Fedora/RHEL paths (both with the
//! binaries linked against glibc 2.28), in a booted Debian 12 host that
//! package installs without starting anything, runs the agent, upgrades
//! keeping the admin's configuration and purges what is its own, and on
//! Debian 11, 12, 13 and sid it installs and its binary reads the host's
//! NetworkManager.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;
use std::time::Duration;

use netbridge_tests::container::{Container, Suite};
use netbridge_tests::lab::{netbridge_bin, Uplink, STATIC_ADDRESS};

const CONFIG: &str = r#"
[[bridge]]
name = "br0"
uplink = "default-route"
checks = ["tcp:172.25.250.254:53"]
"#;

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).trim().to_owned()
}

fn repository() -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest.parent().unwrap_or(manifest).to_owned()
}

/// Runs a tool of the machine; None (after saying why) when it is missing
/// and the run may skip, as lab tests do outside CI.
fn tool(program: &str, package: &str, args: &[&str]) -> Option<Output> {
    match Command::new(program).args(args).output() {
        Ok(out) => Some(out),
        Err(e) => {
            let why =
                format!("{program} cannot run ({e}); install {package} (scripts/install-deps.sh)");
            eprintln!("LAB UNAVAILABLE: {why}");
            assert!(
                std::env::var("NETBRIDGE_SKIP_LAB").as_deref() == Ok("1")
                    && std::env::var("CI").as_deref() != Ok("true"),
                "{why}"
            );
            None
        }
    }
}

fn make(args: &[&str]) {
    let out = Command::new("make")
        .arg("-C")
        .arg(repository())
        // The debug build the test run already has.
        .arg("PROFILE=dev")
        .args(args)
        .output()
        .expect("make runs");
    assert!(
        out.status.success(),
        "make {args:?}:\n{}\n{}",
        text(&out.stdout),
        text(&out.stderr)
    );
}

/// `make deb` once per test run, into its own directory.
fn deb() -> &'static Path {
    static DEB: OnceLock<PathBuf> = OnceLock::new();
    DEB.get_or_init(|| {
        let out = repository().join("target/tests-deb");
        let _ = std::fs::remove_dir_all(&out);
        make(&["deb", &format!("DEB_OUT={}", out.display())]);
        let deb = std::fs::read_dir(&out)
            .expect("the package directory")
            .filter_map(Result::ok)
            .map(|e| e.path())
            .find(|p| p.extension().is_some_and(|e| e == "deb"))
            .expect("make deb made a .deb");
        deb
    })
}

#[test]
fn manual_pages_render_without_groff_warnings() {
    make(&["man"]);
    let dir = repository().join("target/debug/man");
    let mut pages: Vec<String> = std::fs::read_dir(&dir)
        .expect("make man wrote target/debug/man")
        .filter_map(Result::ok)
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    pages.sort();
    for page in [
        "netbridge.8",
        "netbridge-agent.8",
        "netbridge-convert.8",
        "netbridge-completions.8",
        "netbridge.toml.5",
    ] {
        assert!(pages.iter().any(|p| p == page), "{page} in {pages:?}");
    }
    for page in &pages {
        let path = dir.join(page);
        let path = path.to_string_lossy();
        let Some(out) = tool("groff", "groff-base", &["-ww", "-man", "-Tutf8", &path]) else {
            return;
        };
        assert!(out.status.success(), "groff {page}: {}", text(&out.stderr));
        assert_eq!(text(&out.stderr), "", "groff -ww warns about {page}");
        assert!(!out.stdout.is_empty(), "{page} renders to something");
    }
    let Some(toml5) = tool(
        "groff",
        "groff-base",
        &[
            "-man",
            "-Tascii",
            // Plain text: no overstrike for bold, so names can be searched.
            "-P-cbou",
            &dir.join("netbridge.toml.5").to_string_lossy(),
        ],
    ) else {
        return;
    };
    let rendered = text(&toml5.stdout);
    // Every key is held to the parser by a unit test of the key table; here,
    // that the table reached the page.
    for key in [
        "rollback-timeout",
        "guest-check",
        "uplink",
        "dhcp-range",
        "adopt",
    ] {
        assert!(rendered.contains(key), "{key} in netbridge.toml(5)");
    }
}

#[test]
fn the_bash_completion_offers_the_verbs() {
    let bin = netbridge_bin().expect("the netbridge binary");
    let script = Command::new(&bin)
        .args(["completions", "bash"])
        .output()
        .expect("netbridge completions bash");
    assert!(script.status.success(), "{}", text(&script.stderr));
    let dir = tempfile::tempdir().expect("a temporary directory");
    let file = dir.path().join("netbridge");
    std::fs::write(&file, &script.stdout).expect("write the script");
    // What bash does on `netbridge <TAB>` and `netbridge con<TAB>`.
    let probe = format!(
        r#"source {file}
complete -p netbridge
COMP_WORDS=(netbridge ""); COMP_CWORD=1; _netbridge netbridge "" netbridge; echo "verbs: ${{COMPREPLY[*]}}"
COMP_WORDS=(netbridge con); COMP_CWORD=1; _netbridge netbridge con netbridge; echo "con: ${{COMPREPLY[*]}}""#,
        file = file.display()
    );
    let Some(out) = tool("bash", "bash", &["--norc", "--noprofile", "-c", &probe]) else {
        return;
    };
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    let verbs = stdout
        .lines()
        .find_map(|l| l.strip_prefix("verbs: "))
        .unwrap_or_else(|| panic!("no completion:\n{stdout}"));
    for verb in [
        "status",
        "convert",
        "apply",
        "create",
        "delete",
        "revert",
        "recover",
        "completions",
    ] {
        assert!(
            verbs.split(' ').any(|v| v == verb),
            "{verb} offered: {verbs}"
        );
    }
    assert!(stdout.contains("con: convert"), "{stdout}");
}

#[test]
fn the_deb_has_the_layout_and_lintian_finds_no_error() {
    let deb = deb().to_string_lossy().into_owned();
    let contents = Command::new("dpkg-deb")
        .args(["-c", &deb])
        .output()
        .expect("dpkg-deb -c");
    let contents = text(&contents.stdout);
    for path in [
        "./usr/bin/netbridge",
        "./usr/sbin/netbridge-agent",
        "./usr/lib/systemd/system/netbridge-agent.service",
        "./etc/netbridge/netbridge.toml.example",
        "./etc/netbridge/conf.d/",
        "./usr/share/man/man8/netbridge.8.gz",
        "./usr/share/man/man8/netbridge-agent.8.gz",
        "./usr/share/man/man5/netbridge.toml.5.gz",
        "./usr/share/bash-completion/completions/netbridge",
        "./usr/share/zsh/vendor-completions/_netbridge",
        "./usr/share/fish/vendor_completions.d/netbridge.fish",
        "./usr/share/doc/netbridge/README.md",
        "./usr/share/doc/netbridge/copyright",
        "./usr/share/doc/netbridge/examples/single-host.toml",
    ] {
        assert!(
            contents.lines().any(|l| l.ends_with(&format!(" {path}"))),
            "{path} in the package:\n{contents}"
        );
    }
    assert!(
        !contents.contains("./etc/netbridge/netbridge.toml\n")
            && !contents.ends_with("./etc/netbridge/netbridge.toml"),
        "no active configuration"
    );
    let field = |name: &str| {
        let out = Command::new("dpkg-deb")
            .args(["-f", &deb, name])
            .output()
            .expect("dpkg-deb -f");
        text(&out.stdout)
    };
    // The binaries are linked against glibc 2.28, so that is all they ask.
    assert_eq!(
        field("Depends"),
        "libc6 (>= 2.28), network-manager (>= 1.30)"
    );
    let conffiles = Command::new("dpkg-deb")
        .args(["-I", &deb, "conffiles"])
        .output()
        .expect("dpkg-deb -I conffiles");
    assert_eq!(
        text(&conffiles.stdout),
        "/etc/netbridge/netbridge.toml.example"
    );

    let Some(out) = tool("lintian", "lintian", &["--allow-root", &deb]) else {
        return;
    };
    let report = text(&out.stdout);
    assert!(
        !report.lines().any(|l| l.starts_with("E:")),
        "lintian errors:\n{report}\n{}",
        text(&out.stderr)
    );
}

#[test]
fn the_rpm_has_the_same_files_in_fedora_paths_and_requires_networkmanager() {
    if tool("rpmbuild", "rpm", &["--version"]).is_none() {
        return;
    }
    let out = repository().join("target/tests-rpm");
    let _ = std::fs::remove_dir_all(&out);
    make(&["rpm", &format!("RPM_OUT={}", out.display())]);
    let rpm = out.join(format!(
        "netbridge-{}-1.x86_64.rpm",
        env!("CARGO_PKG_VERSION")
    ));
    let rpm = rpm.to_string_lossy();
    let query = |args: &[&str]| {
        let mut argv = vec!["-qp"];
        argv.extend_from_slice(args);
        argv.push(&rpm);
        let out = Command::new("rpm").args(&argv).output().expect("rpm -qp");
        assert!(out.status.success(), "rpm {argv:?}: {}", text(&out.stderr));
        text(&out.stdout)
    };
    let files = query(&["-l"]);
    for path in [
        "/usr/bin/netbridge",
        "/usr/sbin/netbridge-agent",
        "/usr/lib/systemd/system/netbridge-agent.service",
        "/etc/netbridge/netbridge.toml.example",
        "/etc/netbridge/conf.d",
        "/usr/share/man/man8/netbridge.8.gz",
        "/usr/share/man/man8/netbridge-agent.8.gz",
        "/usr/share/man/man5/netbridge.toml.5.gz",
        "/usr/share/bash-completion/completions/netbridge",
        "/usr/share/zsh/site-functions/_netbridge",
        "/usr/share/fish/vendor_completions.d/netbridge.fish",
        "/usr/share/doc/netbridge/README.md",
    ] {
        assert!(
            files.lines().any(|l| l == path),
            "{path} in the RPM:\n{files}"
        );
    }
    assert!(
        !files.contains("/etc/netbridge/netbridge.toml\n"),
        "no active configuration"
    );
    assert!(!files.contains(".build-id"), "{files}");
    let requires = query(&["--requires"]);
    assert!(
        requires.lines().any(|l| l == "NetworkManager >= 1.30"),
        "{requires}"
    );
    // rpmbuild's automatic requirements: glibc 2.28's symbols at most.
    assert!(
        requires
            .lines()
            .any(|l| l == "libc.so.6(GLIBC_2.28)(64bit)"),
        "{requires}"
    );
    let newest = requires
        .split("GLIBC_")
        .skip(1)
        .filter_map(|rest| {
            let mut parts = rest.split(|c: char| !c.is_ascii_digit());
            Some((
                parts.next()?.parse::<u32>().ok()?,
                parts.next()?.parse::<u32>().ok()?,
            ))
        })
        .max();
    assert_eq!(newest, Some((2, 28)), "{requires}");
    assert_eq!(
        query(&["--configfiles"]),
        "/etc/netbridge/netbridge.toml.example"
    );
    let scripts = query(&["--scripts"]);
    assert!(
        !scripts.contains("enable") && !scripts.contains("systemctl start"),
        "{scripts}"
    );
}

/// The same package with another version, for an upgrade: repacked, as a
/// rebuilt package would differ only there for this test's purpose.
fn bumped(deb: &Path, version: &str, dir: &Path) -> PathBuf {
    let tree = dir.join("tree");
    let run = |args: &[&str]| {
        let out = Command::new("dpkg-deb")
            .args(args)
            .output()
            .expect("dpkg-deb");
        assert!(
            out.status.success(),
            "dpkg-deb {args:?}: {}",
            text(&out.stderr)
        );
    };
    run(&["-R", &deb.to_string_lossy(), &tree.to_string_lossy()]);
    let control = tree.join("DEBIAN/control");
    let old = std::fs::read_to_string(&control).expect("control");
    let new: String = old
        .lines()
        .map(|l| {
            if l.starts_with("Version: ") {
                format!("Version: {version}\n")
            } else {
                format!("{l}\n")
            }
        })
        .collect();
    std::fs::write(&control, new).expect("write control");
    let out = dir.join(format!("netbridge_{version}.deb"));
    run(&[
        "--root-owner-group",
        "-Zgzip",
        "--build",
        &tree.to_string_lossy(),
        &out.to_string_lossy(),
    ]);
    out
}

fn apt(host: &Container, args: &[&str]) -> Output {
    let mut argv = vec![
        "env",
        "DEBIAN_FRONTEND=noninteractive",
        "apt-get",
        "-y",
        "-o",
        "Dpkg::Options::=--force-confold",
    ];
    argv.extend_from_slice(args);
    let out = host.exec(&argv);
    assert!(
        out.status.success(),
        "apt-get {args:?}:\n{}\n{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    out
}

fn main_pid(host: &Container) -> String {
    text(
        &host
            .systemctl(["show", "--property=MainPID", "--value", "netbridge-agent"])
            .stdout,
    )
}

#[test]
fn the_deb_installs_without_starting_upgrades_keeping_the_configuration_and_purges() {
    let Some(host) = Container::require(Uplink::Static) else {
        return;
    };
    let deb = deb();
    let work = tempfile::tempdir().expect("a temporary directory");
    let v2 = bumped(deb, "0.1.0-99", work.path());
    let inside = |path: &str| host.root().join(path.trim_start_matches('/'));
    std::fs::copy(deb, inside("/root/netbridge_1.deb")).expect("copy the package in");
    std::fs::copy(&v2, inside("/root/netbridge_2.deb")).expect("copy the upgrade in");

    apt(&host, &["install", "/root/netbridge_1.deb"]);
    assert_eq!(
        text(&host.systemctl(["is-enabled", "netbridge-agent"]).stdout),
        "disabled"
    );
    assert_eq!(
        text(&host.systemctl(["is-active", "netbridge-agent"]).stdout),
        "inactive"
    );
    let exec_start = text(
        &host
            .systemctl(["show", "--property=ExecStart", "netbridge-agent"])
            .stdout,
    );
    assert!(
        exec_start.contains("path=/usr/sbin/netbridge-agent"),
        "{exec_start}"
    );
    let version = host.exec(["netbridge", "--version"]);
    assert!(version.status.success(), "{}", text(&version.stderr));

    host.write_file("/etc/netbridge/netbridge.toml", CONFIG, 0o644)
        .expect("write the configuration");
    let example = inside("/etc/netbridge/netbridge.toml.example");
    let mut edited = std::fs::read_to_string(&example).expect("the example");
    edited.push_str("# edited by the admin\n");
    std::fs::write(&example, &edited).expect("edit the example");
    let enable = host.systemctl(["enable", "--now", "netbridge-agent"]);
    assert!(
        enable.status.success(),
        "{}\n{}",
        text(&enable.stderr),
        host.journal("netbridge-agent")
    );
    assert_eq!(
        host.ipv4_addresses("br0").unwrap_or_default(),
        vec![(STATIC_ADDRESS, 24)],
        "{}",
        host.journal("netbridge-agent")
    );

    // Upgrade: the running agent is restarted on the new package, the
    // admin's files stay as they were.
    let before = main_pid(&host);
    apt(&host, &["install", "/root/netbridge_2.deb"]);
    let installed = host.exec(["dpkg-query", "-W", "-f=${Version}", "netbridge"]);
    assert_eq!(text(&installed.stdout), "0.1.0-99");
    assert!(
        common::eventually(Duration::from_secs(30), || {
            text(&host.systemctl(["is-active", "netbridge-agent"]).stdout) == "active"
        }),
        "{}",
        host.journal("netbridge-agent")
    );
    assert_ne!(main_pid(&host), before, "restarted on upgrade");
    assert_eq!(
        std::fs::read_to_string(inside("/etc/netbridge/netbridge.toml"))
            .ok()
            .as_deref(),
        Some(CONFIG)
    );
    assert_eq!(std::fs::read_to_string(&example).ok(), Some(edited));
    assert_eq!(
        host.ipv4_addresses("br0").unwrap_or_default(),
        vec![(STATIC_ADDRESS, 24)]
    );

    // Purge: the package's files and netbridge's state go; the admin's
    // configuration and the converted network stay.
    apt(&host, &["purge", "netbridge"]);
    for gone in [
        "/usr/bin/netbridge",
        "/usr/sbin/netbridge-agent",
        "/usr/lib/systemd/system/netbridge-agent.service",
        "/etc/netbridge/netbridge.toml.example",
        "/etc/netbridge/conf.d",
        "/var/lib/netbridge",
        "/etc/systemd/system/multi-user.target.wants/netbridge-agent.service",
        "/usr/share/doc/netbridge",
    ] {
        assert!(
            std::fs::symlink_metadata(inside(gone)).is_err(),
            "{gone} is gone after purge"
        );
    }
    assert_eq!(
        std::fs::read_to_string(inside("/etc/netbridge/netbridge.toml"))
            .ok()
            .as_deref(),
        Some(CONFIG)
    );
    assert_eq!(
        host.ipv4_addresses("br0").unwrap_or_default(),
        vec![(STATIC_ADDRESS, 24)]
    );
}

common::on_suites!(the_package_installs_and_its_binary_reads_networkmanager:
    bullseye => Bullseye, bookworm => Bookworm, trixie => Trixie, sid => Sid);

/// On every Debian the README claims: apt installs the package (its
/// Depends met by the release's own NetworkManager and glibc), and the
/// binary, linked against glibc 2.28, starts and reads that NetworkManager.
fn the_package_installs_and_its_binary_reads_networkmanager(suite: Suite) {
    let Some(host) = Container::require_on(suite, Uplink::Static) else {
        return;
    };
    let inside = host.root().join("root/netbridge.deb");
    std::fs::copy(deb(), inside).expect("copy the package in");
    apt(&host, &["install", "/root/netbridge.deb"]);

    let version = host.exec(["netbridge", "--version"]);
    assert!(
        version.status.success(),
        "netbridge --version on {suite}: {}",
        text(&version.stderr)
    );
    assert_eq!(
        text(&version.stdout),
        format!("netbridge {}", env!("CARGO_PKG_VERSION"))
    );
    let status = host.exec(["netbridge", "status", "--json"]);
    assert!(
        status.status.success(),
        "netbridge status on {suite}: {}",
        text(&status.stderr)
    );
    let status: serde_json::Value =
        serde_json::from_slice(&status.stdout).expect("status --json is JSON");
    let nm = status["networkmanager"]["version"]
        .as_str()
        .unwrap_or_default();
    assert!(
        nm.starts_with(&format!("{}.", suite.networkmanager())),
        "{suite}'s NetworkManager: {status:#}"
    );
    let devices = status["devices"].as_array().cloned().unwrap_or_default();
    assert!(
        devices.iter().any(|d| d["interface"] == "ens32"),
        "ens32 among the devices: {status:#}"
    );
}
