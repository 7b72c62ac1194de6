//! Turning a copy of the cached root into the lab's host: its
//! NetworkManager configuration and uplink profile, its name, and the units
//! that make no sense in a container.
//!
//! Applied to each copy rather than baked into the cache, so changing this
//! file never costs a rebuild. Every write goes through [`write_in_root`],
//! which refuses symlinks on the way: a link in the image must never
//! redirect a write onto the machine's own files.

use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Component, Path, PathBuf};

use crate::lab::files::uplink_keyfile;
use crate::lab::{Uplink, GATEWAY, UPLINK};
use crate::LabError;

/// The container's host name.
pub const HOSTNAME: &str = "nbhost";

/// Keyfiles only (Debian's default adds ifupdown), no "Wired connection"
/// profiles for unconfigured devices, resolv.conf left alone, and no
/// connectivity probes (they would go to the internet).
pub(crate) const NM_CONF: &str = "[main]\n\
    plugins=keyfile\n\
    no-auto-default=*\n\
    dns=none\n\
    \n\
    [connectivity]\n\
    enabled=false\n";

/// Units masked in every copy, and why:
/// - the gettys: nobody logs in on a console that is a log file;
/// - the timers: apt would try the internet, fstrim and e2scrub would act
///   on the machine's own disk (the container's root is a directory on it);
/// - systemd-networkd-wait-online: networkd is not the network manager here;
/// - the utmp bookkeeping of boots and runlevels: nothing here reads it, and
///   once in a CI rehearsal it failed at first boot (no reason logged),
///   leaving the host "degraded" before netbridge was even installed.
pub(crate) const MASKED_UNITS: [&str; 13] = [
    "console-getty.service",
    "container-getty@.service",
    "getty@.service",
    "serial-getty@.service",
    "apt-daily.timer",
    "apt-daily-upgrade.timer",
    "dpkg-db-backup.timer",
    "fstrim.timer",
    "e2scrub_all.timer",
    "e2scrub_reap.service",
    "systemd-networkd-wait-online.service",
    "systemd-update-utmp.service",
    "systemd-update-utmp-runlevel.service",
];

const NM_UNIT: &str = "NetworkManager.service";

/// Configures the copy at `root` as a host whose `ens32` comes up as
/// `uplink` says.
pub(crate) fn configure(root: &Path, uplink: Uplink) -> Result<(), LabError> {
    write_in_root(
        root,
        "etc/NetworkManager/conf.d/90-netbridge-tests.conf",
        NM_CONF,
        0o644,
    )?;
    // NM ignores keyfiles that are not root-owned with mode 0600.
    let profile = format!("etc/NetworkManager/system-connections/{UPLINK}.nmconnection");
    write_in_root(root, &profile, &uplink_keyfile(uplink), 0o600)?;
    write_in_root(root, "etc/hostname", &format!("{HOSTNAME}\n"), 0o644)?;
    write_in_root(root, "etc/hosts", &hosts(), 0o644)?;
    // debootstrap copied the machine's resolv.conf; with dns=none NM never
    // rewrites it, so point it at the lab's DNS server instead.
    write_in_root(
        root,
        "etc/resolv.conf",
        &format!("nameserver {GATEWAY}\n"),
        0o644,
    )?;
    allow_root_without_password(root)?;
    for unit in MASKED_UNITS {
        symlink_in_root(root, &format!("etc/systemd/system/{unit}"), "/dev/null")?;
    }
    enable_network_manager(root)
}

fn hosts() -> String {
    format!(
        "127.0.0.1\tlocalhost\n127.0.1.1\t{HOSTNAME}\n\
         ::1\tlocalhost ip6-localhost ip6-loopback\n"
    )
}

/// Debian's postinst enables it already; this makes sure of it, so a
/// changed package default cannot leave the host without its network.
fn enable_network_manager(root: &Path) -> Result<(), LabError> {
    let unit = Path::new("/lib/systemd/system").join(NM_UNIT);
    if !root.join("usr/lib/systemd/system").join(NM_UNIT).is_file() {
        return Err(LabError::Prerequisite(format!(
            "{NM_UNIT} is missing from the container root {}",
            root.display()
        )));
    }
    let wants = format!("etc/systemd/system/multi-user.target.wants/{NM_UNIT}");
    symlink_in_root(root, &wants, &unit.to_string_lossy())
}

/// An empty password field for root in /etc/shadow, so someone booting a
/// kept copy by hand can log in on its console.
fn allow_root_without_password(root: &Path) -> Result<(), LabError> {
    let rel = "etc/shadow";
    let path = checked_path(root, rel)?;
    let text = std::fs::read_to_string(&path)
        .map_err(|e| LabError::io("cannot read the container's shadow file", &path, e))?;
    write_in_root(root, rel, &without_root_password(&text), 0o640)
}

fn without_root_password(shadow: &str) -> String {
    shadow
        .lines()
        .map(|line| match line.split_once(':') {
            Some(("root", rest)) => {
                let after_password = rest.split_once(':').map_or("", |(_, r)| r);
                format!("root::{after_password}\n")
            }
            _ => format!("{line}\n"),
        })
        .collect()
}

/// Writes `text` to `rel` under `root`, replacing whatever is there (a
/// symlink included, which is removed, never followed).
pub(crate) fn write_in_root(root: &Path, rel: &str, text: &str, mode: u32) -> Result<(), LabError> {
    let path = checked_path(root, rel)?;
    remove_if_present(&path)?;
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(&path)
        .and_then(|mut f| f.write_all(text.as_bytes()))
        .map_err(|e| LabError::io("cannot write a file in the container root", &path, e))
}

/// Copies the file `source` (on the machine) to `rel` under `root`, as
/// [`write_in_root`] writes: a symlink there is replaced, never followed.
pub(crate) fn copy_into_root(
    root: &Path,
    rel: &str,
    source: &Path,
    mode: u32,
) -> Result<(), LabError> {
    let path = checked_path(root, rel)?;
    remove_if_present(&path)?;
    let mut from = std::fs::File::open(source)
        .map_err(|e| LabError::io("cannot read a file to copy into the container", source, e))?;
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(&path)
        .and_then(|mut to| std::io::copy(&mut from, &mut to))
        .map(drop)
        .map_err(|e| LabError::io("cannot write a file in the container root", &path, e))
}

/// Makes `rel` under `root` a symlink to `target` (a path as seen inside
/// the container).
fn symlink_in_root(root: &Path, rel: &str, target: &str) -> Result<(), LabError> {
    let path = checked_path(root, rel)?;
    remove_if_present(&path)?;
    std::os::unix::fs::symlink(target, &path)
        .map_err(|e| LabError::io("cannot create a symlink in the container root", &path, e))
}

/// `root/rel` with every directory on the way created (0755) and none of
/// them a symlink. `rel` must be relative and free of `..`.
fn checked_path(root: &Path, rel: &str) -> Result<PathBuf, LabError> {
    let rel = Path::new(rel);
    let bad = || {
        LabError::Prerequisite(format!(
            "{} is not a plain relative path in the container root",
            rel.display()
        ))
    };
    let parts: Vec<&std::ffi::OsStr> = rel
        .components()
        .map(|c| match c {
            Component::Normal(part) => Ok(part),
            _ => Err(bad()),
        })
        .collect::<Result<_, _>>()?;
    let Some((file, dirs)) = parts.split_last() else {
        return Err(bad());
    };
    let mut path = root.to_owned();
    for dir in dirs {
        path.push(dir);
        ensure_real_dir(&path)?;
    }
    Ok(path.join(file))
}

fn ensure_real_dir(path: &Path) -> Result<(), LabError> {
    match std::fs::symlink_metadata(path) {
        Ok(meta) if meta.is_dir() => Ok(()),
        Ok(_) => Err(LabError::Prerequisite(format!(
            "{} in the container root is not a directory (a symlink?); refusing to write through it",
            path.display()
        ))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => std::fs::DirBuilder::new()
            .mode(0o755)
            .create(path)
            .map_err(|e| LabError::io("cannot create a directory in the container root", path, e)),
        Err(e) => Err(LabError::io("cannot inspect the container root", path, e)),
    }
}

fn remove_if_present(path: &Path) -> Result<(), LabError> {
    match std::fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(LabError::io(
            "cannot replace a file in the container root",
            path,
            e,
        )),
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    /// Just enough of a Debian root for `configure`.
    fn fake_root() -> tempfile::TempDir {
        let dir = tempfile::tempdir().expect("temp dir");
        let root = dir.path();
        std::fs::create_dir_all(root.join("usr/lib/systemd/system")).expect("mkdir");
        std::fs::create_dir_all(root.join("etc")).expect("mkdir");
        std::fs::write(root.join("usr/lib/systemd/system").join(NM_UNIT), "").expect("unit");
        std::fs::write(
            root.join("etc/shadow"),
            "root:*:19000:0:99999:7:::\ndaemon:*:19000:0:99999:7:::\n",
        )
        .expect("shadow");
        dir
    }

    #[test]
    fn a_configured_root_has_nm_files_masks_and_name() {
        let dir = fake_root();
        let root = dir.path();
        configure(root, Uplink::Static).expect("configure");
        let conf =
            std::fs::read_to_string(root.join("etc/NetworkManager/conf.d/90-netbridge-tests.conf"))
                .expect("nm conf");
        assert_eq!(conf, NM_CONF);
        let profile = root.join("etc/NetworkManager/system-connections/ens32.nmconnection");
        let mode = std::fs::metadata(&profile)
            .expect("profile")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        assert!(std::fs::read_to_string(&profile)
            .expect("profile")
            .contains("address1=172.25.250.10/24,172.25.250.254"));
        for unit in MASKED_UNITS {
            let link = std::fs::read_link(root.join("etc/systemd/system").join(unit)).expect(unit);
            assert_eq!(link, Path::new("/dev/null"));
        }
        let wants = root
            .join("etc/systemd/system/multi-user.target.wants")
            .join(NM_UNIT);
        assert_eq!(
            std::fs::read_link(wants).expect("enabled"),
            Path::new("/lib/systemd/system/NetworkManager.service")
        );
        assert_eq!(
            std::fs::read_to_string(root.join("etc/hostname")).expect("hostname"),
            "nbhost\n"
        );
        assert!(std::fs::read_to_string(root.join("etc/shadow"))
            .expect("shadow")
            .starts_with("root::19000:"));
    }

    #[test]
    fn writes_never_follow_symlinks() {
        let dir = fake_root();
        let root = dir.path();
        let outside = tempfile::tempdir().expect("outside");
        std::os::unix::fs::symlink(outside.path(), root.join("etc/NetworkManager"))
            .expect("symlink");
        let err = configure(root, Uplink::Static).expect_err("a symlinked directory");
        assert!(err.to_string().contains("refusing"), "{err}");
        assert_eq!(
            std::fs::read_dir(outside.path()).expect("outside").count(),
            0
        );

        std::fs::write(outside.path().join("hosts"), "mine\n").expect("file");
        std::fs::create_dir(root.join("etc2")).expect("mkdir");
        std::os::unix::fs::symlink(outside.path().join("hosts"), root.join("etc2/hosts"))
            .expect("symlink");
        write_in_root(root, "etc2/hosts", "theirs\n", 0o644).expect("write");
        assert_eq!(
            std::fs::read_to_string(outside.path().join("hosts")).expect("outside file"),
            "mine\n"
        );
    }

    #[test]
    fn a_copied_file_replaces_a_symlink_and_keeps_its_mode() {
        use std::os::unix::fs::PermissionsExt;
        let dir = fake_root();
        let root = dir.path();
        let outside = tempfile::tempdir().expect("outside");
        let target = outside.path().join("netbridge");
        std::fs::write(&target, "mine\n").expect("file");
        let source = outside.path().join("build");
        std::fs::write(&source, "binary\n").expect("source");
        std::fs::create_dir_all(root.join("usr/local/bin")).expect("mkdir");
        std::os::unix::fs::symlink(&target, root.join("usr/local/bin/netbridge")).expect("symlink");
        copy_into_root(root, "usr/local/bin/netbridge", &source, 0o755).expect("copy");
        let copied = root.join("usr/local/bin/netbridge");
        assert_eq!(
            std::fs::read_to_string(&copied).expect("copied"),
            "binary\n"
        );
        let mode = std::fs::symlink_metadata(&copied)
            .expect("meta")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o755);
        assert_eq!(std::fs::read_to_string(&target).expect("outside"), "mine\n");
    }

    #[test]
    fn only_plain_relative_paths_are_accepted() {
        let dir = fake_root();
        for rel in ["/etc/x", "etc/../../x", "", "."] {
            assert!(checked_path(dir.path(), rel).is_err(), "{rel}");
        }
    }

    #[test]
    fn only_roots_password_is_cleared() {
        let shadow = "root:$y$hash:19000:0:99999:7:::\nuser:$y$x:19000::::::\n";
        assert_eq!(
            without_root_password(shadow),
            "root::19000:0:99999:7:::\nuser:$y$x:19000::::::\n"
        );
    }
}
