//! The lab itself: it must give netbridge's end-to-end tests a host whose
//! NetworkManager really manages the uplink, and leave nothing behind.

use std::path::Path;
use std::process::Output;

use netbridge_tests::lab::{self, Lab, Uplink, DHCP_RANGE, GATEWAY, STATIC_ADDRESS, UPLINK};

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn assert_success(what: &str, out: &Output) {
    assert!(
        out.status.success(),
        "{what} failed ({}):\nstdout: {}\nstderr: {}",
        out.status,
        stdout(out),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn ping_gateway(lab: &Lab) {
    let out = lab.host(["ping", "-c1", "-W2", &GATEWAY.to_string()]);
    assert_success("ping from the host namespace to the gateway", &out);
}

fn uplink_addresses(lab: &Lab) -> Vec<(std::net::Ipv4Addr, u8)> {
    lab.ipv4_addresses(UPLINK).expect("ens32's addresses")
}

/// Running, as opposed to gone or a zombie.
fn pid_alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| !s.contains(") Z "))
}

#[test]
fn static_lab_has_the_address_and_reaches_the_gateway() {
    let Some(lab) = Lab::require(Uplink::Static) else {
        return;
    };
    assert_eq!(uplink_addresses(&lab), vec![(STATIC_ADDRESS, 24)]);
    ping_gateway(&lab);

    let snapshot = lab.snapshot();
    assert!(
        snapshot.profiles.contains_key("conn/ens32.nmconnection"),
        "{snapshot:#?}"
    );
    let default = snapshot.routes.iter().find(|r| r.dst == "default");
    assert_eq!(
        default.and_then(|r| r.gateway.clone()),
        Some(GATEWAY.to_string())
    );
    assert_eq!(
        lab.snapshot(),
        snapshot,
        "a snapshot changes without a cause"
    );
}

#[test]
fn dhcp_lab_gets_a_lease_from_the_range() {
    let Some(lab) = Lab::require(Uplink::Dhcp) else {
        return;
    };
    let addresses = uplink_addresses(&lab);
    assert_eq!(addresses.len(), 1, "{addresses:?}");
    let (addr, len) = addresses[0];
    assert!(
        (DHCP_RANGE.0..=DHCP_RANGE.1).contains(&addr),
        "{addr} not in the range"
    );
    assert_eq!(len, 24);
    ping_gateway(&lab);
}

#[test]
fn lan_dns_answers_the_gateway_name() {
    let Some(lab) = Lab::require(Uplink::Static) else {
        return;
    };
    let out = lab.host([
        env!("CARGO_BIN_EXE_netbridge-lab"),
        "resolve",
        &GATEWAY.to_string(),
        lab::GATEWAY_NAME,
    ]);
    assert_success("netbridge-lab resolve", &out);
    assert_eq!(stdout(&out).trim(), GATEWAY.to_string());
}

#[test]
fn restarting_nm_keeps_the_address_and_profiles() {
    let Some(mut lab) = Lab::require(Uplink::Dhcp) else {
        return;
    };
    let before = lab.snapshot();
    let old_pid = lab.nm_pid().expect("NM runs");

    lab.restart_nm().expect("restart NetworkManager");

    let new_pid = lab.nm_pid().expect("NM runs again");
    assert_ne!(old_pid, new_pid);
    assert!(!pid_alive(old_pid), "the old NM is still running");
    assert_eq!(lab.snapshot(), before);
    ping_gateway(&lab);
}

#[test]
fn reboot_deletes_extra_links_and_resets_the_uplink() {
    let Some(mut lab) = Lab::require(Uplink::Static) else {
        return;
    };
    let before = lab.snapshot();
    let guest = lab.add_guest("vnet0");
    assert_success(
        "guest sees its eth0",
        &guest.exec(["ip", "link", "show", "eth0"]),
    );
    let out = lab.host(["ip", "link", "add", "br9", "type", "bridge"]);
    assert_success("add a stray bridge", &out);
    let out = lab.host(["ip", "link", "set", UPLINK, "address", "02:00:00:00:00:01"]);
    assert_success("change the uplink's MAC", &out);

    lab.reboot().expect("reboot");

    assert_eq!(
        lab.snapshot(),
        before,
        "a reboot must bring back the fresh host"
    );
    ping_gateway(&lab);
}

#[test]
fn two_labs_run_side_by_side() {
    let (a, b) = std::thread::scope(|s| {
        let a = s.spawn(|| Lab::require(Uplink::Static));
        let b = s.spawn(|| Lab::require(Uplink::Static));
        (a.join().expect("lab a"), b.join().expect("lab b"))
    });
    let (Some(a), Some(b)) = (a, b) else { return };
    assert_ne!(a.host_ns(), b.host_ns());
    assert_ne!(a.bus_address(), b.bus_address());
    ping_gateway(&a);
    ping_gateway(&b);
}

#[test]
fn guests_reach_the_host_through_their_tap() {
    let Some(lab) = Lab::require(Uplink::Static) else {
        return;
    };
    let guest = lab.add_guest("vnet0");
    assert_success(
        "address the tap",
        &lab.host(["ip", "addr", "add", "10.99.0.1/30", "dev", "vnet0"]),
    );
    assert_success(
        "address the guest",
        &guest.exec(["ip", "addr", "add", "10.99.0.2/30", "dev", "eth0"]),
    );
    assert_success(
        "ping the host from the guest",
        &guest.exec(["ping", "-c1", "-W2", "10.99.0.1"]),
    );
}

#[test]
fn dropping_a_lab_leaves_nothing_behind() {
    let Some(lab) = Lab::require(Uplink::Static) else {
        return;
    };
    let guest = lab.add_guest("vnet0");
    let namespaces = [
        lab.host_ns().to_owned(),
        lab.lan_ns().to_owned(),
        guest.ns().to_owned(),
    ];
    let pids = [lab.nm_pid(), lab.dnsmasq_pid(), lab.dbus_pid()].map(|p| p.expect("daemon pid"));
    let dir = lab.dir().to_owned();

    drop(lab);

    for ns in &namespaces {
        assert!(
            !Path::new("/run/netns").join(ns).exists(),
            "namespace {ns} left behind"
        );
    }
    for pid in pids {
        assert!(!pid_alive(pid), "process {pid} left running");
    }
    assert!(!dir.exists(), "{} left behind", dir.display());
}

#[test]
fn host_commands_run_in_the_host_namespace_with_the_lab_environment() {
    let Some(lab) = Lab::require(Uplink::Static) else {
        return;
    };
    let out = lab
        .host_command([
            "sh",
            "-c",
            "echo $DBUS_SYSTEM_BUS_ADDRESS; echo $NETBRIDGE_STATE_DIR; ip -br link",
        ])
        .output()
        .expect("run sh in the host namespace");
    let text = stdout(&out);
    assert!(text.contains(lab.bus_address()), "{text}");
    assert!(
        text.contains(&lab.state_dir().display().to_string()),
        "{text}"
    );
    assert!(text.contains("ens32"), "{text}");
}

fn write_profile(path: &Path, text: &str) {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .unwrap_or_else(|e| panic!("create {}: {e}", path.display()));
    file.write_all(text.as_bytes()).expect("write the profile");
}

fn bridge_profile(name: &str, ipv4: &str) -> String {
    format!(
        "[connection]\nid={name}\ntype=bridge\ninterface-name={name}\nautoconnect=true\n\n\
         [bridge]\nstp=false\n\n[ipv4]\n{ipv4}\n\n[ipv6]\nmethod=ignore\n"
    )
}

#[test]
fn reboot_keeps_profiles_on_disk_and_forgets_those_in_memory() {
    let Some(mut lab) = Lab::require(Uplink::Static) else {
        return;
    };
    lab.stop_nm().expect("stop NetworkManager");
    write_profile(
        &lab.dir().join("conn/disk0.nmconnection"),
        &bridge_profile("disk0", "method=disabled"),
    );
    let in_memory = lab.dir().join("run/system-connections/mem0.nmconnection");
    write_profile(&in_memory, &bridge_profile("mem0", "method=disabled"));
    lab.start_nm().expect("start NetworkManager");
    let links = lab.snapshot().links;
    assert!(
        links.contains_key("disk0") && links.contains_key("mem0"),
        "{links:#?}"
    );

    lab.reboot().expect("reboot");

    let after = lab.snapshot();
    assert!(after.links.contains_key("disk0"), "{after:#?}");
    assert!(!after.links.contains_key("mem0"), "{after:#?}");
    assert!(!in_memory.exists());
    assert_eq!(
        after.addresses.get(UPLINK),
        Some(&vec!["172.25.250.10/24".to_owned()])
    );
}

#[test]
fn processes_nm_spawned_are_stopped_even_when_nm_was_killed() {
    let Some(mut lab) = Lab::require(Uplink::Static) else {
        return;
    };
    lab.stop_nm().expect("stop NetworkManager");
    let shared = bridge_profile("nat0", "method=shared\naddress1=192.168.107.1/24");
    write_profile(&lab.dir().join("conn/nat0.nmconnection"), &shared);
    lab.start_nm().expect("start NetworkManager");
    let pid_file = lab.dir().join("host-run/nm-dnsmasq-nat0.pid");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !pid_file.exists() {
        assert!(
            std::time::Instant::now() < deadline,
            "NM started no dnsmasq for nat0"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let nm_pid = lab.nm_pid().expect("NM runs");
    let nm = nix::unistd::Pid::from_raw(i32::try_from(nm_pid).expect("pid fits i32"));
    // SIGKILL: NM gets no chance to stop its dnsmasq itself.
    nix::sys::signal::kill(nm, nix::sys::signal::Signal::SIGKILL).expect("kill the lab's NM");

    lab.stop_nm().expect("stop NetworkManager");

    let out = std::process::Command::new("ip")
        .args(["netns", "pids", lab.host_ns()])
        .output()
        .expect("ip netns pids");
    assert_eq!(
        stdout(&out).trim(),
        "",
        "processes left in the host namespace"
    );
}
