#!/usr/bin/env bash
# Installs the Debian packages netbridge's lab and tests need, without letting
# any package start a service on this machine (policy-rc.d exits 101 while
# apt runs). NetworkManager, dnsmasq and dbus only ever run inside lab
# network namespaces that the tests create.
set -euo pipefail

PACKAGES=(
    network-manager   # the real NetworkManager the lab runs (never on the host's own network)
    dnsmasq-base      # the lab LAN's DNS and DHCP server
    dbus              # a private system bus per lab
    iproute2          # network namespaces and veth pairs
    iputils-ping      # reachability from inside the lab
    dbus-daemon       # the private bus's daemon (split out of dbus in newer Debian)
    dbus-bin          # dbus-send: the lab asks NetworkManager whether it is ready
    iptables          # what NetworkManager's shared (NAT) mode calls in the lab
    nftables          # nft: the guest-path diagnosis reads `nft -j list ruleset`; tests build Docker-like rulesets in lab hosts
    debootstrap       # the cached Debian root that container tests boot
    systemd-container # systemd-nspawn, to boot that root in a lab namespace
    util-linux        # unshare, nsenter, flock
    make              # `make install DESTDIR=...` of netbridge into the container
    udhcpc            # the DHCP client of test guests (in guest namespaces only)
    python3           # tiny TCP peers in the NAT tests
    systemd           # systemd-analyze security, for the unit's hardening test
    openssh-server    # sshd for the fleet test, started only inside lab host namespaces
    openssh-client    # ssh and ssh-keygen: the fleet test's Ansible controller and its keys
    netcat-openbsd    # nc: the controller's ProxyCommand into each lab's LAN namespace
    python3-venv      # the fleet test's ansible-core venv and the zig venv (from PyPI, cached outside the repo)
    e2fsprogs         # chattr: a libvirt test makes a booted host's /etc/qemu immutable (from outside)
    groff-base        # groff: the manual pages must render without warnings
    man-db            # man: reading the generated pages by hand
    dpkg-dev          # dpkg-shlibdeps: `make deb` computes the shared-library dependencies
    lintian           # the .deb is checked for policy errors
    bash-completion   # the completion test sources the generated script into bash
    rpm               # rpmbuild for `make rpm`; rpm -qp checks the package's contents and requirements
)

if [[ $(id -u) -ne 0 ]]; then
    echo "install-deps.sh: run as root (it installs packages and the lab needs CAP_NET_ADMIN)" >&2
    exit 1
fi

missing=()
for pkg in "${PACKAGES[@]%% *}"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done

# zig and cargo-zigbuild from PyPI, for the packages' binary linked against
# glibc 2.28 (see the README): a venv cached outside the repository, made
# again when the pinned versions change. The Makefile looks for it here.
ZIG_VENV=${NETBRIDGE_ZIG_VENV:-/var/cache/netbridge-tests/zig-venv}
ZIG_PINS="ziglang==0.17.1 cargo-zigbuild==0.24.1"
install_zig() {
    if [[ $(cat "$ZIG_VENV/.netbridge-pins" 2>/dev/null) == "$ZIG_PINS" ]]; then
        return
    fi
    echo "install-deps.sh: installing $ZIG_PINS into $ZIG_VENV" >&2
    rm -rf "$ZIG_VENV"
    python3 -m venv "$ZIG_VENV"
    # shellcheck disable=SC2086 # one word per requirement
    "$ZIG_VENV/bin/pip" install --disable-pip-version-check -q $ZIG_PINS
    echo "$ZIG_PINS" >"$ZIG_VENV/.netbridge-pins"
}

if [[ ${#missing[@]} -eq 0 ]]; then
    install_zig
    exit 0
fi

policy=/usr/sbin/policy-rc.d
backup=""
if [[ -e $policy ]]; then
    backup=$(mktemp)
    cp -p "$policy" "$backup"
fi
restore() {
    if [[ -n $backup ]]; then mv "$backup" "$policy"; else rm -f "$policy"; fi
}
trap restore EXIT
printf '#!/bin/sh\nexit 101\n' >"$policy"
chmod 755 "$policy"

echo "install-deps.sh: installing ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
install_zig
