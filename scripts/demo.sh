#!/usr/bin/env bash
# The main job on a built-in default: start a lab (a real NetworkManager
# managing ens32 = 172.25.250.10/24 in throwaway namespaces), convert ens32
# into br0 with netbridge, show the result, tear the lab down. Run as root.
# Pass --dhcp for a DHCP uplink.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/install-deps.sh
cargo build --workspace --locked --quiet
exec target/debug/netbridge-lab run "$@" -- sh -c '
    set -e
    echo "== before"; netbridge status
    echo "== netbridge convert ens32 --yes"; netbridge convert ens32 --yes
    echo "== after"; netbridge status'
