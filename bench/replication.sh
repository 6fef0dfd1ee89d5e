#!/usr/bin/env bash
# bench/replication.sh — what replication costs: lag, paired vs alone set throughput, and a
# full sync of 1,000,000 items with the donor's get latency while it streams.
#
# Not a test: it prints figures (and keeps raw outputs in $OUT); nothing is asserted.
# Method and results: docs/PERFORMANCE.md, section "Replication".
#
# (a) Lag at light load: LAG_N sets of 100 B on A, one every LAG_INTERVAL_MS; after each
#     STORED, B is polled with `get` until the key is there. The value carries its send
#     time, read back from B's copy: lag "from send" = seen on B - sent to A; "from ack" =
#     seen on B - STORED from A (what repcached's figure measured).
# (b) Set throughput, paired vs alone: memtier --ratio=1:0, 100 B values over 1M random
#     keys, 50 connections, pipeline 16, DURATION s; against A (paired with B) and against
#     a lone memha (no replication), alternating which goes first, ROUNDS rounds; medians.
#     Also the CPU each server used per set, and how long B took to catch up after a run.
# (c) Full sync: a donor holding SYNC_KEYS x 100 B (its peer configured but not running),
#     rate-limited memtier gets against it (GET_CONNS x GET_RATE/s, pipeline 1); then the
#     joiner is started. Sync time = from starting the joiner until its `stats replication`
#     shows the full sync done and the link streaming. Donor latency: the worst per-second
#     p99.9 and the max over the seconds overlapping the sync, and the same before it.
#
# Placement (2-core box): A, the lone node and the donor with -t $THREADS on cpu 0; B and
# the joiner on cpu 1 with the load generator (they share it). JOINER_NICE=19 runs the
# joiner at the lowest CPU priority, so the load generator (whose core it shares) measures
# the donor rather than waiting for its core, as when the joiner is another machine. (Not
# for B in (b): a B that cannot keep up falls behind the backlog and is resynced, counted,
# and A then replicates less than every write, which would flatter the paired figure.)
#
# Env knobs [defaults]:
#   MEMTIER   memtier_benchmark binary                      [/tmp/memtier/memtier_benchmark]
#   MEMHA     memha binary (built with cargo if missing)    [target/release/memha]
#   THREADS   worker threads per server                     [1]
#   JOINER_NICE nice value of the joiner in (c)             [0]
#   DURATION  seconds per throughput run                    [10]
#   ROUNDS    throughput rounds (paired + alone each)       [3]
#   LAG_N, LAG_INTERVAL_MS                                  [1000, 1]
#   SYNC_KEYS items the donor holds                         [1000000]
#   GET_CONNS, GET_RATE  gets against the donor             [50, 200 per conn per s]
#   PARTS     subset of: lag throughput sync                [all]
#   FOREIGN_MAX  CPU s other processes may use in a run before it is flagged [5 % of DURATION]
#   OUT       output directory                   [target/bench/replication-<timestamp>]
#
# Only processes this script started are stopped, by PID (also on Ctrl-C).
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
PY="python3 $HERE/replication.py"

MEMTIER=${MEMTIER:-/tmp/memtier/memtier_benchmark}
MEMHA=${MEMHA:-$ROOT/target/release/memha}
THREADS=${THREADS:-1}
JOINER_NICE=${JOINER_NICE:-0}
DURATION=${DURATION:-10}
ROUNDS=${ROUNDS:-3}
LAG_N=${LAG_N:-1000}
LAG_INTERVAL_MS=${LAG_INTERVAL_MS:-1}
SYNC_KEYS=${SYNC_KEYS:-1000000}
GET_CONNS=${GET_CONNS:-50}
GET_RATE=${GET_RATE:-200}
PARTS=${PARTS:-"lag throughput sync"}
OUT=${OUT:-$ROOT/target/bench/replication-$(date +%Y%m%d-%H%M%S)}

mkdir -p "$OUT"
LOG="$OUT/log.txt"
log() { echo "$*" | tee -a "$LOG" >&2; }
say() { echo "$*" | tee -a "$OUT/figures.txt"; }
has_part() { case " $PARTS " in *" $1 "*) return 0;; *) return 1;; esac; }
USER_FLAG=(); [ "$(id -u)" = 0 ] && USER_FLAG=(-u root)

STARTED=()
MT_PID=""
cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  [ -n "$MT_PID" ] && kill -TERM "$MT_PID" 2>/dev/null
  for pid in "${STARTED[@]}"; do stop_pid "$pid"; done
  exit "$rc"
}
trap cleanup EXIT
trap 'log "interrupted"; exit 130' INT TERM

stop_pid() {
  local pid=$1 i
  kill -0 "$pid" 2>/dev/null || return 0
  kill -TERM "$pid" 2>/dev/null || true
  for i in $(seq 30); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  kill -0 "$pid" 2>/dev/null && kill -KILL "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
}

stop_server() {
  local keep=() p
  stop_pid "$1"
  for p in "${STARTED[@]}"; do [ "$p" = "$1" ] || keep+=("$p"); done
  STARTED=("${keep[@]}")
}

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# start_memha NAME CPU PORT ARGS... -> sets SPID, waits until the client port answers
start_memha() {
  local name=$1 cpu=$2 port=$3 i
  shift 3
  local nice=0
  [ "$name" = joiner ] && nice=$JOINER_NICE
  taskset -c "$cpu" nice -n "$nice" "$MEMHA" "${USER_FLAG[@]}" -l 127.0.0.1 -p "$port" -U 0 \
    -t "$THREADS" -m 1024 -c 4096 "$@" >>"$OUT/$name.log" 2>&1 &
  SPID=$!
  STARTED+=("$SPID")
  for i in $(seq 200); do
    if ! kill -0 "$SPID" 2>/dev/null; then
      log "$name failed to start:"; tail -5 "$OUT/$name.log" >&2; exit 1
    fi
    if $PY stats "$port" "" pid >/dev/null 2>&1; then return 0; fi
    sleep 0.05
  done
  log "$name did not open port $port"; exit 1
}

memtier() {  # memtier PORT JSON_OUT ARGS...
  local port=$1 json=$2
  shift 2
  taskset -c 1 "$MEMTIER" -s 127.0.0.1 -p "$port" -P memcache_text --hide-histogram \
    --print-percentiles=50,99,99.9,100 --json-out-file="$json" "$@" >>"$OUT/memtier.log" 2>&1
}

# Other processes' CPU (bench/compare.py's accounting): wait for a quiet machine before a
# measured run, and record what others used during it.
CPY="python3 $HERE/compare.py"
FOREIGN_MAX=${FOREIGN_MAX:-$(awk -v d="$DURATION" 'BEGIN{print d * 0.05}')}
foreign_snap() { $CPY foreign snap "$OUT/procs.json" "${STARTED[@]}"; }
foreign_diff() { $CPY foreign diff "$OUT/procs.json" "${STARTED[@]}"; }
quiet_machine() {  # up to 120 s for a second in which others use < 50 ms of CPU
  local i f
  for i in $(seq 120); do
    foreign_snap; sleep 1; f=$(foreign_diff)
    awk -v f="${f%% *}" 'BEGIN {exit !(f < 0.05)}' && return 0
    [ "$i" = 1 ] && log "  waiting for a quiet machine (others: $f)"
  done
  log "  machine still busy ($f); measuring anyway"
}

median() { sort -g | awk '{a[NR]=$1} END {print (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }
jq_py() { python3 -c "import json,sys; d=json.loads(sys.argv[1]); print($2)" "$1"; }

# ------------------------------------------------------------------------------ setup
[ -x "$MEMTIER" ] || { log "memtier_benchmark not found at $MEMTIER (set MEMTIER)"; exit 1; }
if [ ! -x "$MEMHA" ]; then
  log "building memha (release)"
  (cd "$ROOT" && cargo build --release -p memha >>"$LOG" 2>&1)
fi
say "# host: $(uname -sr) $(nproc) cpus, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //')"
say "# memha: $("$MEMHA" -V 2>&1 | head -1) ($MEMHA, git $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo '?'))"
say "# servers: -t $THREADS -m 1024; A / lone / donor on cpu 0, B / joiner + load generator on cpu 1"
say "# OUT=$OUT"

if has_part lag || has_part throughput; then
  PA=$(free_port); PB=$(free_port); XA=$(free_port); XB=$(free_port); PL=$(free_port)
  start_memha A 0 "$PA" -X "$XA" -x "127.0.0.1:$XB" --repl-node-id 1; A_PID=$SPID
  start_memha B 1 "$PB" -X "$XB" -x "127.0.0.1:$XA" --repl-node-id 2; B_PID=$SPID
  start_memha lone 0 "$PL"; L_PID=$SPID
  $PY linked "$PA" "$PB" >/dev/null
fi

# ------------------------------------------------------------------------------ (a) lag
if has_part lag; then
  log "(a) lag: $LAG_N sets at ${LAG_INTERVAL_MS} ms intervals"
  LAG=$(taskset -c 1 $PY lag "$PA" "$PB" "$LAG_N" "$LAG_INTERVAL_MS")
  echo "$LAG" >"$OUT/lag.json"
  say "lag ($LAG_N sets of 100 B, one per ${LAG_INTERVAL_MS} ms): $(jq_py "$LAG" \
    "'from send p50 %(p50)s / p90 %(p90)s / p99 %(p99)s / max %(max)s ms' % d['from_send_ms'] \
     + '; from ack p50 %(p50)s / p90 %(p90)s / p99 %(p99)s / max %(max)s ms' % d['from_ack_ms'] \
     + '; lost %d' % d['timeouts']")"
fi

# ------------------------------------------------------------------------------ (b) throughput
if has_part throughput; then
  log "(b) throughput: $ROUNDS rounds x (paired, alone) x ${DURATION}s"
  SET_ARGS=(--ratio=1:0 -d 100 --pipeline=16 -t 1 -c 50 --test-time="$DURATION"
            --key-minimum=1 --key-maximum=1000000 --key-pattern=R:R)
  : >"$OUT/throughput.tsv"
  run_cell() {  # run_cell paired|alone ROUND
    local cell=$1 r=$2 port json c0 c1 b0 b1 catch res fg
    if [ "$cell" = paired ]; then port=$PA; else port=$PL; fi
    json="$OUT/$cell-$r.json"
    quiet_machine
    foreign_snap
    c0=$($PY cpu "$( [ "$cell" = paired ] && echo "$A_PID" || echo "$L_PID")")
    b0=$($PY cpu "$B_PID")
    memtier "$port" "$json" "${SET_ARGS[@]}"
    fg=$(foreign_diff)
    c1=$($PY cpu "$( [ "$cell" = paired ] && echo "$A_PID" || echo "$L_PID")")
    catch=0
    if [ "$cell" = paired ]; then catch=$($PY quiesce "$PA" "$PB"); fi
    b1=$($PY cpu "$B_PID")
    res=$($PY memtier "$json")
    python3 - "$res" "$cell" "$r" "$c0" "$c1" "$b0" "$b1" "$catch" "$fg" >>"$OUT/throughput.tsv" <<'EOF'
import json, sys
d = json.loads(sys.argv[1]); cell, r = sys.argv[2], sys.argv[3]
c0, c1, b0, b1, catch = map(float, sys.argv[4:9])
us = (c1 - c0) / d["count"] * 1e6
bus = (b1 - b0) / d["count"] * 1e6 if cell == "paired" else 0
print("\t".join(str(x) for x in (cell, r, d["ops"], d["p50"], d["p99"], d["p99.9"], round(us, 3), round(bus, 3), catch, sys.argv[9])))
EOF
    log "  $(tail -1 "$OUT/throughput.tsv")"
  }
  for r in $(seq "$ROUNDS"); do
    if [ $((r % 2)) = 1 ]; then run_cell paired "$r"; run_cell alone "$r"
    else run_cell alone "$r"; run_cell paired "$r"; fi
  done
  FLAGGED=$(awk -F'\t' -v m="$FOREIGN_MAX" '{split($10, f, " "); if (f[1] > m) n++} END {print n + 0}' "$OUT/throughput.tsv")
  say "  (columns: cell round ops/s p50 p99 p99.9 writer-us/set B-us/set catch-up-s foreign-cpu-s; $FLAGGED of $((2 * ROUNDS)) runs had others use > ${FOREIGN_MAX}s CPU)"
  sed 's/^/    /' "$OUT/throughput.tsv" | tee -a "$OUT/figures.txt"
  # Medians over the clean runs of a cell (all of its runs if none was clean).
  col() {
    local clean
    clean=$(awk -F'\t' -v c="$1" -v k="$2" -v m="$FOREIGN_MAX" \
      '$1==c {split($10, f, " "); if (f[1] <= m) print $k}' "$OUT/throughput.tsv")
    if [ -z "$clean" ]; then
      clean=$(awk -F'\t' -v c="$1" -v k="$2" '$1==c {print $k}' "$OUT/throughput.tsv")
    fi
    echo "$clean" | median
  }
  P_OPS=$(col paired 3); A_OPS=$(col alone 3)
  say "set throughput (memtier 1:0, 100 B, 50 conns, pipeline 16, ${DURATION}s, median of the clean runs):"
  say "  paired: $(printf '%.0f' "$P_OPS") ops/s, p50 $(col paired 4) / p99 $(col paired 5) / p99.9 $(col paired 6) ms; A $(col paired 7) us CPU/set, B $(col paired 8) us CPU/set applied; B caught up $(col paired 9) s after the run"
  say "  alone:  $(printf '%.0f' "$A_OPS") ops/s, p50 $(col alone 4) / p99 $(col alone 5) / p99.9 $(col alone 6) ms; $(col alone 7) us CPU/set"
  say "  paired / alone: $(awk -v p="$P_OPS" -v a="$A_OPS" 'BEGIN {printf "%.2f", p / a}')x throughput, $(awk -v p="$(col paired 7)" -v a="$(col alone 7)" 'BEGIN {printf "%.2f", p / a}')x CPU per set on the writer"
fi

if has_part lag || has_part throughput; then
  stop_server "$A_PID"; stop_server "$B_PID"; stop_server "$L_PID"
fi

# ------------------------------------------------------------------------------ (c) full sync
if has_part sync; then
  log "(c) full sync of $SYNC_KEYS x 100 B"
  PD=$(free_port); PJ=$(free_port); XD=$(free_port); XJ=$(free_port)
  start_memha donor 0 "$PD" -X "$XD" -x "127.0.0.1:$XJ" --repl-node-id 1; D_PID=$SPID
  memtier "$PD" "$OUT/prefill.json" --ratio=1:0 -d 100 --pipeline=16 -t 1 -c 10 \
    --key-minimum=1 --key-maximum="$SYNC_KEYS" --key-pattern=P:P --requests=allkeys
  ITEMS=$($PY stats "$PD" "" curr_items)
  log "  donor holds $ITEMS items"
  GET_TIME=$(( DURATION + 20 ))
  quiet_machine
  foreign_snap
  RUN_START=$(date +%s.%N)
  memtier "$PD" "$OUT/sync-gets.json" --ratio=0:1 --pipeline=1 -t 1 -c "$GET_CONNS" \
    --rate-limiting="$GET_RATE" --key-minimum=1 --key-maximum="$SYNC_KEYS" --key-pattern=R:R \
    --test-time="$GET_TIME" &
  MT_PID=$!
  sleep 5
  T0=$(date +%s.%N)
  start_memha joiner 1 "$PJ" -X "$XJ" -x "127.0.0.1:$XD" --repl-node-id 2; J_PID=$SPID
  SYNC=$($PY wait-sync "$PJ" "$T0")
  echo "$SYNC" >"$OUT/sync.json"
  T1=$(jq_py "$SYNC" "d['done_at']")
  DSTATS=$($PY stats "$PD" replication full_syncs_served peer0:full_syncs peer0:writes_stale)
  wait "$MT_PID"; MT_PID=""
  FG=$(foreign_diff)
  WIN=$($PY memtier-window "$OUT/sync-gets.json" "$RUN_START" "$T0" "$T1")
  echo "$WIN" >"$OUT/sync-window.json"
  say "full sync of $ITEMS x 100 B: $(jq_py "$SYNC" "'%(sync_s)s s from starting the joiner to streaming (receiver SyncBegin..SyncEnd %(receiver_sync_ms)s ms); joiner holds %(items)s items, ready=%(ready)s' % d")"
  say "  donor gets ($GET_CONNS conns x $GET_RATE/s, pipeline 1) during the sync: $(jq_py "$WIN" \
    "'worst-second p99.9 %(p99.9)s ms, max %(max)s ms over %(seconds)s s' % d['during'] + '; before it: p99.9 %(p99.9)s ms, max %(max)s ms' % d['before']")"
  say "  others used $FG CPU during the sync run (${GET_TIME}s)"
  say "  donor replication stats after: full_syncs_served / peer0:full_syncs / peer0:writes_stale = $DSTATS"
  stop_server "$J_PID"; stop_server "$D_PID"
fi
log "done; figures in $OUT/figures.txt"
