#!/usr/bin/env bash
# scripts/chaos.sh — build memha and memha-chaos (release) and run one HA scenario: memha
# nodes sharing a VIP in network namespaces (mhc-*, 10.95.0.0/24), a recorded client load
# through the VIP, randomized faults, and the checker's report (docs/HA.md).
#
#   scripts/chaos.sh                                      # 2 nodes, sync, 90 s of faults
#   scripts/chaos.sh --duration 1h --ack sync --out /tmp/chaos-1h
#   scripts/chaos.sh --nodes 3 --ack async --seed 7
#   scripts/chaos.sh --schedule crates/chaos/regressions/<case>.json   # replay a case
#
# Every argument goes to memha-chaos (--help lists them). Needs root. Exit code: 0 the
# invariants hold, 1 they do not, 2 cannot run here, 3 the run broke off.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
[ "$(id -u)" = 0 ] || { echo "chaos.sh: needs root (network namespaces, VRRP raw sockets)" >&2; exit 2; }

# The clock-skew fault runs a node under libfaketime; without it that fault is skipped.
if [ ! -e /usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1 ] && command -v apt-get >/dev/null; then
  echo "chaos.sh: installing faketime (for the clock-skew fault)" >&2
  apt-get install -y -q faketime >/dev/null 2>&1 ||
    { apt-get update -q >/dev/null 2>&1 && apt-get install -y -q faketime >/dev/null 2>&1; } ||
    echo "chaos.sh: could not install faketime; the clock-skew fault will be skipped" >&2
fi

cargo build --release -p memha -p memha-chaos
exec "$ROOT/target/release/memha-chaos" "$@"
