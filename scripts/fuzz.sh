#!/usr/bin/env bash
# Runs the protocol fuzz targets (fuzz/fuzz_targets/*.rs) for a fixed time each.
#
# Usage: scripts/fuzz.sh [seconds per target, default 600] [target ...]
# Needs the nightly toolchain and cargo-fuzz (`cargo install cargo-fuzz`). Targets run in
# parallel at low priority; each keeps its corpus in fuzz/corpus/<target> (not committed) and
# writes crashes to fuzz/artifacts/<target>/. A crash input worth keeping goes into
# fuzz/regressions/<target>/ and into a unit test beside the parser it broke.
set -euo pipefail
cd "$(dirname "$0")/../fuzz"
secs=${1:-600}
shift || true
targets=("$@")
((${#targets[@]})) || targets=(text meta binary session repl_frame vrrp_packet)
cargo +nightly fuzz build "${targets[@]/#/}" >/dev/null 2>&1 || cargo +nightly fuzz build
pids=()
for t in "${targets[@]}"; do
  mkdir -p "corpus/$t" "artifacts/$t"
  seeds=("seeds/$t")
  [[ -d regressions/$t ]] && seeds+=("regressions/$t")
  nice -n 19 cargo +nightly fuzz run "$t" "corpus/$t" "${seeds[@]}" -- \
    -dict=memcache.dict -max_total_time="$secs" -max_len=8192 -rss_limit_mb=2048 \
    -artifact_prefix="artifacts/$t/" >"fuzz-$t.log" 2>&1 &
  pids+=($!)
done
status=0
for i in "${!pids[@]}"; do
  t=${targets[$i]}
  if wait "${pids[$i]}"; then r=ok; else r=CRASH; status=1; fi
  summary=$(grep -E '^(#[0-9]+|Done)' "fuzz-$t.log" | tail -1)
  echo "$t: $r  $summary"
done
exit $status
