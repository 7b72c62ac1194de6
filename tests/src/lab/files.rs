//! The configuration files of a lab, as text.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use nix::fcntl::{Flock, FlockArg};

use super::{LabError, Uplink, GATEWAY, PREFIX_LEN, STATIC_ADDRESS, UPLINK};

/// A private system bus: anyone may own and call anything, and no service
/// is ever activated (so nothing outside the lab gets started by name).
pub(crate) fn dbus_config(socket: &Path) -> String {
    format!(
        r#"<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-BUS Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>system</type>
  <listen>unix:path={}</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow user="*"/>
    <allow own="*"/>
    <allow send_destination="*" eavesdrop="true"/>
    <allow eavesdrop="true"/>
  </policy>
</busconfig>
"#,
        socket.display()
    )
}

/// NetworkManager's configuration: only the lab's keyfiles, no polkit, no
/// resolv.conf or host name changes, no automatic "Wired connection" profiles.
///
/// The `[device-ens32]` stanza makes ens32 managed explicitly: without udev
/// NM 1.42 manages veths anyway, but the stanza keeps that independent of
/// version-specific defaults.
pub(crate) fn nm_config(keyfile_dir: &Path) -> String {
    format!(
        "[main]\n\
         auth-polkit=false\n\
         plugins=keyfile\n\
         dhcp=internal\n\
         dns=none\n\
         rc-manager=unmanaged\n\
         hostname-mode=none\n\
         no-auto-default=*\n\
         \n\
         [keyfile]\n\
         path={}\n\
         \n\
         [connectivity]\n\
         enabled=false\n\
         \n\
         [logging]\n\
         level=INFO\n\
         \n\
         [device-{UPLINK}]\n\
         match-device=interface-name:{UPLINK}\n\
         managed=1\n",
        keyfile_dir.display()
    )
}

/// The uplink's profile as an installer would have left it on a real host.
pub(crate) fn uplink_keyfile(uplink: Uplink) -> String {
    let ipv4 = match uplink {
        Uplink::Static => format!(
            "method=manual\n\
             address1={STATIC_ADDRESS}/{PREFIX_LEN},{GATEWAY}\n\
             dns={GATEWAY};\n"
        ),
        Uplink::Dhcp => "method=auto\n".to_owned(),
    };
    format!(
        "[connection]\n\
         id={UPLINK}\n\
         type=ethernet\n\
         interface-name={UPLINK}\n\
         autoconnect=true\n\
         \n\
         [ipv4]\n\
         {ipv4}\
         \n\
         [ipv6]\n\
         method=ignore\n"
    )
}

pub(crate) fn write_file(path: &Path, text: &str, mode: u32) -> Result<(), LabError> {
    std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(path)
        .and_then(|mut f| f.write_all(text.as_bytes()))
        .map_err(|e| LabError::io("cannot write a lab file", path, e))
}

pub(crate) fn append_file(path: &Path, text: &str) -> Result<(), LabError> {
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .and_then(|mut f| f.write_all(text.as_bytes()))
        .map_err(|e| LabError::io("cannot append to a lab file", path, e))
}

pub(crate) fn empty_dir(dir: &Path) -> Result<(), LabError> {
    std::fs::remove_dir_all(dir)
        .and_then(|()| std::fs::create_dir(dir))
        .map_err(|e| LabError::io("cannot empty a lab directory", dir, e))
}

/// A `flock` on `path` (created if missing), held until dropped.
pub(crate) fn lock_file(path: &Path, how: FlockArg) -> Result<Flock<File>, LabError> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)
            .map_err(|e| LabError::io("cannot create the directory of a lock file", parent, e))?;
    }
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)
        .map_err(|e| LabError::io("cannot open a lock file", path, e))?;
    Flock::lock(file, how).map_err(|(_, errno)| LabError::io("cannot lock", path, errno.into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn static_keyfile_carries_address_gateway_and_dns() {
        let text = uplink_keyfile(Uplink::Static);
        assert!(text.contains("[ipv4]\nmethod=manual\naddress1=172.25.250.10/24,172.25.250.254\n"));
        assert!(text.contains("dns=172.25.250.254;\n"));
        assert!(text.ends_with("[ipv6]\nmethod=ignore\n"));
    }

    #[test]
    fn dhcp_keyfile_is_auto() {
        let text = uplink_keyfile(Uplink::Dhcp);
        assert!(text.contains("[ipv4]\nmethod=auto\n\n[ipv6]"));
        assert!(!text.contains("address1"));
    }

    #[test]
    fn nm_config_points_at_the_lab_keyfiles() {
        let text = nm_config(Path::new("/tmp/x/conn"));
        assert!(text.contains("[keyfile]\npath=/tmp/x/conn\n"));
        assert!(text.contains("[device-ens32]\nmatch-device=interface-name:ens32\nmanaged=1\n"));
    }
}
