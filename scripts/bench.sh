#!/usr/bin/env bash
# Benchmarks netbridge side by side with the plain nmcli recipe and
# `nmstatectl apply` in lab network namespaces (a real NetworkManager per lab;
# this machine's own network is never touched) and prints a Markdown table
# with a description of the machine. Run as root. Arguments go to
# netbridge-bench, e.g. `scripts/bench.sh --runs 3 --only convert,rollback`
# (`--help` lists them). The default run takes about 12 minutes; if it is
# interrupted, `target/release/netbridge-lab cleanup` removes leftover labs.
# The reply gap of convert, revert and an in-place MTU change, side by side
# with nmstatectl, nmcli and the kernel's own make-before-break steps (the
# physical limit), with a per-step timeline of the worst run of each:
# `scripts/bench.sh --only gap --runs 10 --trace` (about 15 minutes); with
# `--suite trixie` the same on NetworkManager 1.52, a freshly booted Debian 13
# host per run (systemd-nspawn; about 20 minutes).
# A rollout of fleet/rollout.yml (Ansible, over SSH, each change confirmed
# over a new connection) to 20 lab hosts, 5 per batch: total time, per host
# and per batch: `scripts/bench.sh --only fleet --hosts 20 --batch 5`.
set -euo pipefail
cd "$(dirname "$0")/.."

if [[ $(id -u) -ne 0 ]]; then
    echo "bench.sh: run as root (the labs need CAP_NET_ADMIN)" >&2
    exit 1
fi

scripts/install-deps.sh

# nmstatectl is a peer to compare with, never a dependency of netbridge:
# installed as a tool into cargo's bin directory when missing.
cargo_bin="${CARGO_HOME:-$HOME/.cargo}/bin"
nmstatectl=$(command -v nmstatectl || true)
if [[ -z $nmstatectl && -x $cargo_bin/nmstatectl ]]; then
    nmstatectl=$cargo_bin/nmstatectl
fi
if [[ -z $nmstatectl ]]; then
    echo "bench.sh: installing nmstatectl from crates.io (several minutes the first time)" >&2
    cargo install --locked nmstatectl
    nmstatectl=$cargo_bin/nmstatectl
fi

cargo build --release --workspace --locked

# Private copies, so a build running meanwhile cannot swap the binaries
# between runs.
bin=$(mktemp -d /tmp/netbridge-bench-bin.XXXXXX)
trap 'rm -rf "$bin"' EXIT
cp target/release/netbridge target/release/netbridge-bench "$bin/"
if [[ -x target/release/netbridge-agent ]]; then
    cp target/release/netbridge-agent "$bin/"
fi

# The report also goes to target/bench-latest.md (for the README's table).
NETBRIDGE_BIN=$bin/netbridge NETBRIDGE_AGENT_BIN=$bin/netbridge-agent \
    "$bin/netbridge-bench" --nmstatectl "$nmstatectl" "$@" | tee target/bench-latest.md
