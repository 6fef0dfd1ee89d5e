#!/usr/bin/env bash
# Runs every test of the workspace: unit tests, property tests, and the integration tests
# that start the real memha binary on loopback. This is the command CI runs (.ci/run).
#
# Usage: scripts/test.sh [extra cargo test args]
set -euo pipefail
cd "$(dirname "$0")/.."

# Tools the tests need; installed when missing (CI runs as root on a fresh Debian machine).
need_pkgs=()
command -v cc >/dev/null || need_pkgs+=(gcc)
if ((${#need_pkgs[@]})); then
  if [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_pkgs[@]}"
  else
    echo "missing: ${need_pkgs[*]} (install them, or run as root to let this script do it)" >&2
    exit 1
  fi
fi

# Many tests open hundreds of connections.
ulimit -n 65536 2>/dev/null || ulimit -n 4096 2>/dev/null || true

cargo test --workspace --locked "$@"
