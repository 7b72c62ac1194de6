//! Installing like a system tool: the manual pages render, the bash
//! completion offers the verbs, `make deb` builds a package lintian accepts,
//! `make rpm` one with the same files in Fedora/RHEL paths (both with the
//! binaries linked against glibc 2.28), and in booted Debian 11, 12, 13 and
//! sid hosts (NetworkManager 1.30, 1.42, 1.52, 1.58) that package installs
//! without starting anything, its binary reads the host's NetworkManager,
//! the agent it ships converts the host and keeps it so across a reboot,
//! upgrades keep the admin's configuration (and restart the agent only if it
//! ran), and purge removes what is its own:
//! `cargo test --test packaging -- ::bullseye` runs Debian 11's.

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
    let tree = dir.join(format!("tree-{version}"));
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
        "apt-get {args:?} on {}:\n{}\n{}",
        host.suite(),
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

fn agent_state(host: &Container) -> String {
    text(&host.systemctl(["is-active", "netbridge-agent"]).stdout)
}

/// Installs the package version `version` (copied into the host's /root)
/// with apt, and checks dpkg has it.
fn install(host: &Container, deb: &Path, version: &str) {
    let inside = format!("/root/netbridge_{version}.deb");
    std::fs::copy(deb, host.root().join(inside.trim_start_matches('/')))
        .expect("copy the package in");
    apt(host, &["install", &inside]);
    let installed = host.exec(["dpkg-query", "-W", "-f=${Version}", "netbridge"]);
    assert_eq!(text(&installed.stdout), version, "on {}", host.suite());
}

/// The packaged binary starts (it is linked against glibc 2.28) and reads
/// the host's own NetworkManager.
fn assert_the_binary_reads_networkmanager(host: &Container) {
    let suite = host.suite();
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
    let status = common::document(&String::from_utf8_lossy(&status.stdout))
        .unwrap_or_else(|e| panic!("status --json on {suite}: {e}"));
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

/// br0 carries the host's address; the agent's journal if not.
fn assert_converted(host: &Container, when: &str) {
    assert_eq!(
        host.ipv4_addresses("br0").unwrap_or_default(),
        vec![(STATIC_ADDRESS, 24)],
        "{when} on {}:\n{}",
        host.suite(),
        host.journal("netbridge-agent")
    );
}

common::on_suites!(the_deb_installs_without_starting_converts_upgrades_keeping_the_configuration_and_purges:
    bookworm => Bookworm, bullseye => Bullseye, trixie => Trixie, sid => Sid);

/// The package's whole life on every Debian the README claims, each with
/// its own NetworkManager, glibc and systemd: apt installs it (its Depends
/// met by the release's own packages) without enabling or starting
/// anything; its binary reads NetworkManager; `systemctl enable --now
/// netbridge-agent` converts the host, and a reboot keeps it so; an upgrade
/// keeps the admin's files and restarts the agent only if it was running;
/// purge leaves only what the admin wrote (and the converted network).
fn the_deb_installs_without_starting_converts_upgrades_keeping_the_configuration_and_purges(
    suite: Suite,
) {
    let Some(mut host) = Container::require_on(suite, Uplink::Static) else {
        return;
    };
    let work = tempfile::tempdir().expect("a temporary directory");
    let root = host.root().to_owned();
    let inside = |path: &str| root.join(path.trim_start_matches('/'));

    install(&host, deb(), &format!("{}-1", env!("CARGO_PKG_VERSION")));
    assert_eq!(
        text(&host.systemctl(["is-enabled", "netbridge-agent"]).stdout),
        "disabled"
    );
    assert_eq!(agent_state(&host), "inactive");
    let exec_start = text(
        &host
            .systemctl(["show", "--property=ExecStart", "netbridge-agent"])
            .stdout,
    );
    assert!(
        exec_start.contains("path=/usr/sbin/netbridge-agent"),
        "{exec_start}"
    );
    assert_the_binary_reads_networkmanager(&host);

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
    assert_converted(&host, "after enable --now");

    host.expect_address_on("br0");
    host.reboot()
        .unwrap_or_else(|e| panic!("reboot the {suite} host: {e}"));
    assert_converted(&host, "after the reboot");
    assert!(
        common::eventually(Duration::from_secs(30), || agent_state(&host) == "active"),
        "the enabled agent runs after the reboot:\n{}",
        host.journal("netbridge-agent")
    );

    // Upgrade: the running agent is restarted on the new package, the
    // admin's files stay as they were.
    let before = main_pid(&host);
    install(&host, &bumped(deb(), "0.1.0-98", work.path()), "0.1.0-98");
    assert!(
        common::eventually(Duration::from_secs(30), || agent_state(&host) == "active"),
        "{}",
        host.journal("netbridge-agent")
    );
    assert_ne!(main_pid(&host), before, "restarted on upgrade");
    let config = || std::fs::read_to_string(inside("/etc/netbridge/netbridge.toml")).ok();
    assert_eq!(config().as_deref(), Some(CONFIG));
    assert_eq!(std::fs::read_to_string(&example).ok(), Some(edited));
    assert_converted(&host, "after the upgrade");

    // A stopped agent stays stopped across an upgrade.
    let stop = host.systemctl(["stop", "netbridge-agent"]);
    assert!(stop.status.success(), "{}", text(&stop.stderr));
    install(&host, &bumped(deb(), "0.1.0-99", work.path()), "0.1.0-99");
    assert_eq!(agent_state(&host), "inactive", "not started by the upgrade");

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
            "{gone} is gone after purge on {suite}"
        );
    }
    assert_eq!(config().as_deref(), Some(CONFIG));
    assert_converted(&host, "after the purge");
}
