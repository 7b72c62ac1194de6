#!/usr/bin/env bash
# Sets up a fresh Debian machine and runs every netbridge test: unit tests,
# and end-to-end tests against real NetworkManager daemons in lab network
# namespaces. Run as root. With CI=true a lab that cannot start fails the run.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/install-deps.sh
cargo build --workspace --locked
cargo fmt --all -- --check
cargo clippy --workspace --all-targets --locked -- -D warnings
cargo test --workspace --locked
