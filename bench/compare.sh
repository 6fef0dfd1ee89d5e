#!/usr/bin/env bash
# bench/compare.sh — memha vs memcached, same box, same settings, interleaved.
#
# Starts one memcached and one memha (identical flags, pinned to the same cpu(s)),
# prefills both, runs every cell of the matrix against both servers in alternating order
# (A B, B A, A B, ... for ROUNDS rounds), then measures bytes per item and syscalls per
# request, and prints ONE markdown table (medians over the rounds; ratios are
# memha / memcached). Method and how to read the result: docs/PERFORMANCE.md.
#
# Needs: memtier_benchmark 2.3.0 (not packaged by Debian; build it from source),
# memcached, python3, taskset, strace (installed with apt-get if missing and root),
# and cargo to build target/release/memha and target/release/memha-loadgen if missing.
#
# Env knobs [defaults]:
#   MEMTIER     memtier_benchmark binary            [/tmp/memtier/memtier_benchmark]
#   MEMCACHED   memcached binary                    [memcached on PATH, else /usr/bin/memcached]
#   MEMHA       memha binary (built if missing)     [target/release/memha]
#   LOADGEN     memha-loadgen binary (built if missing) [target/release/memha-loadgen]
#   ROUNDS      interleaved rounds per cell         [3]
#   DURATION    seconds per measured run            [10]
#   THREADS     server worker threads: 1 -> cpu 0, 2 -> cpus 0-1  [1]
#   CLIENT_CPU  cpu list for the load generator     [1]
#   CELLS       subset of: text-p1 text-p16 bin-p16 meta-p16 text4k-p1 text4k-p16 syscalls mem
#               [all of them]
#   FOREIGN_MAX CPU seconds other processes may use during a run before it is flagged
#               as contaminated                      [5 % of DURATION]
#   STEAL_MAX   hypervisor steal % that flags a run  [3]
#   STRACE_S    seconds strace stays attached        [5]
#   MC_PORT, MEMHA_PORT   ports for the two servers  [free ports picked at start]
#   OUT         output directory                     [target/bench/compare-<timestamp>]
#
# Only processes this script started are stopped, by PID (also on Ctrl-C / SIGTERM).
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
PY="python3 $HERE/compare.py"

MEMTIER=${MEMTIER:-/tmp/memtier/memtier_benchmark}
MEMCACHED=${MEMCACHED:-$(command -v memcached || echo /usr/bin/memcached)}
MEMHA=${MEMHA:-$ROOT/target/release/memha}
LOADGEN=${LOADGEN:-$ROOT/target/release/memha-loadgen}
ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-10}
THREADS=${THREADS:-1}
CLIENT_CPU=${CLIENT_CPU:-1}
CELLS=${CELLS:-"text-p1 text-p16 bin-p16 meta-p16 text4k-p1 text4k-p16 syscalls mem"}
FOREIGN_MAX=${FOREIGN_MAX:-$(awk -v d="$DURATION" 'BEGIN{print d * 0.05}')}
STEAL_MAX=${STEAL_MAX:-3}
STRACE_S=${STRACE_S:-5}
OUT=${OUT:-$ROOT/target/bench/compare-$(date +%Y%m%d-%H%M%S)}

# The workload (see docs/PERFORMANCE.md): 32-byte keys = 25-byte prefix + 7-digit id.
KEY_PREFIX="bench:kkkkkkkkkkkkkkkkkk:"
KEY_MIN=1000000
NKEYS_SMALL=1000000     # 100-byte values
NKEYS_BIG=100000        # 4096-byte values
CONNS=50
MEM_ITEMS=1000000

if [ "$THREADS" -le 1 ]; then SERVER_CPUS=0; else SERVER_CPUS=0-$((THREADS - 1)); fi
USER_FLAG=(); [ "$(id -u)" = 0 ] && USER_FLAG=(-u root)   # memcached refuses root without -u
TCK=$(getconf CLK_TCK)

mkdir -p "$OUT"
LOG="$OUT/log.txt"
log() { echo "$*" | tee -a "$LOG" >&2; }
has_cell() { case " $CELLS " in *" $1 "*) return 0;; *) return 1;; esac; }

# ------------------------------------------------------------------ process bookkeeping
STARTED=()       # server pids we started
CLIENT_PID=""    # the load generator currently running (a `timeout` process group leader)

cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  if [ -n "$CLIENT_PID" ] && kill -0 "$CLIENT_PID" 2>/dev/null; then
    kill -TERM "$CLIENT_PID" 2>/dev/null || true   # timeout relays it to its process group
  fi
  for pid in "${STARTED[@]}"; do stop_pid "$pid"; done
  exit "$rc"
}
trap cleanup EXIT
trap 'log "interrupted"; exit 130' INT TERM

stop_pid() {  # stop one server we started: TERM, then KILL after 3 s
  local pid=$1 i
  kill -0 "$pid" 2>/dev/null || return 0
  kill -TERM "$pid" 2>/dev/null || true
  for i in $(seq 30); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  kill -0 "$pid" 2>/dev/null && kill -KILL "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
}

forget_pid() {
  local keep=() p
  for p in "${STARTED[@]}"; do [ "$p" = "$1" ] || keep+=("$p"); done
  STARTED=("${keep[@]}")
}

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# start_server KIND PORT -> prints nothing, sets SPID. KIND = memcached | memha
start_server() {
  local kind=$1 port=$2 bin i
  if [ "$kind" = memcached ]; then bin=$MEMCACHED; else bin=$MEMHA; fi
  local listening
  listening=$(ss -Hltn "sport = :$port" 2>/dev/null || true)
  if [ -n "$listening" ]; then log "port $port is already in use"; exit 1; fi
  taskset -c "$SERVER_CPUS" "$bin" "${USER_FLAG[@]}" -l 127.0.0.1 -p "$port" -U 0 \
    -t "$THREADS" -m 1024 -c 4096 >>"$OUT/$kind-$port.log" 2>&1 &
  SPID=$!
  STARTED+=("$SPID")
  # ready when *our* pid listens on the port (not some other process that grabbed it)
  for i in $(seq 100); do
    if ! kill -0 "$SPID" 2>/dev/null; then
      log "$kind failed to start:"; tail -5 "$OUT/$kind-$port.log" >&2; exit 1
    fi
    listening=$(ss -Hltnp "sport = :$port" 2>/dev/null || true)
    [[ $listening == *"pid=$SPID,"* ]] && return 0
    sleep 0.05
  done
  log "$kind (pid $SPID) is not listening on $port after 5 s"; exit 1
}

cpu_ticks() {  # utime+stime (all threads) of a pid, "usr sys" in ticks
  sed 's/^.*) //' "/proc/$1/stat" | awk '{print $12, $13}'
}
steal_snap() {  # "steal total" ticks over all cpus
  awk '/^cpu /{t=0; for(i=2;i<=NF;i++) t+=$i; print $9, t}' /proc/stat
}
rss_kb() { awk '/^VmRSS/{print $2}' "/proc/$1/status"; }

# ------------------------------------------------------------------ load generators
memtier_args() {  # PORT PROTOCOL VSIZE NKEYS
  echo --server=127.0.0.1 --port="$1" --protocol="$2" --key-prefix="$KEY_PREFIX" \
    --key-minimum=$KEY_MIN --key-maximum=$((KEY_MIN + $4 - 1)) --data-size="$3" --hide-histogram
}

# run_client TIMEOUT OUTFILE CMD... : runs the client on CLIENT_CPU in the background
# (so a trap can stop it), records its CPU in $OUT/time.tmp, returns its exit status.
run_client() {
  local t=$1 out=$2; shift 2
  timeout "$t" /usr/bin/time -f '%U %S' -o "$OUT/time.tmp" taskset -c "$CLIENT_CPU" "$@" \
    >"$out" 2>>"$OUT/client.log" &
  CLIENT_PID=$!
  local rc=0
  wait "$CLIENT_PID" || rc=$?
  CLIENT_PID=""
  return $rc
}

prefill() {  # KIND PORT VSIZE NKEYS — every key once, sets only
  local t0=$SECONDS
  run_client 600 "$OUT/prefill-$1-$3.txt" "$MEMTIER" $(memtier_args "$2" memcache_text "$3" "$4") \
    --threads=1 --clients=10 --pipeline=16 --ratio=1:0 --key-pattern=P:P --requests=allkeys \
    || { log "prefill of $1 failed (see $OUT/client.log)"; exit 1; }
  log "prefilled $1: $4 keys x $3 B in $((SECONDS - t0)) s"
}

# measure ROWS SERVER TOOL PROTOCOL VSIZE NKEYS PIPELINE ROUND
#   ROWS: ";"-separated "rowid=label" entries this run contributes to
#   TOOL: memtier (PROTOCOL memcache_text|memcache_binary) or loadgen (PROTOCOL text|meta)
RUNS_TSV="$OUT/runs.tsv"
printf 'row\tlabel\tserver\ttool\tround\tops\tops_s\tp50\tp99\tp999\thit_ratio\terrors\tduration_s\tserver_cpu_s\tserver_usr_s\tserver_sys_s\tclient_cpu_s\tforeign_cpu_s\tforeign_niced_s\tsteal_pct\tcontaminated\n' >"$RUNS_TSV"
CONTAMINATED=0
measure() {
  local rows=$1 server=$2 tool=$3 proto=$4 vs=$5 nk=$6 pl=$7 round=$8
  local port pid json="$OUT/run-$server-$tool-$proto-$vs-p$pl-r$round.json"
  if [ "$server" = memcached ]; then port=$MC_PORT pid=$MC_PID; else port=$MEMHA_PORT pid=$MEMHA_PID; fi
  local s0 st0 f1 s1 st1 rc=0
  $PY foreign snap "$OUT/procs.json" "$MC_PID" "$MEMHA_PID"; s0=$(cpu_ticks "$pid"); st0=$(steal_snap)
  if [ "$tool" = memtier ]; then
    run_client $((DURATION + 60)) "$OUT/memtier.out" "$MEMTIER" $(memtier_args "$port" "$proto" "$vs" "$nk") \
      --threads=1 --clients=$CONNS --pipeline="$pl" --ratio=1:9 --key-pattern=R:R \
      --distinct-client-seed --test-time="$DURATION" --print-percentiles=50,99,99.9 \
      --json-out-file="$json" || rc=$?
  else
    run_client $((DURATION + 60)) "$json" "$LOADGEN" --server "127.0.0.1:$port" --protocol "$proto" \
      --clients $CONNS --pipeline "$pl" --ratio 1:9 --key-prefix "$KEY_PREFIX" \
      --key-min $KEY_MIN --key-max $((KEY_MIN + nk - 1)) --data-size "$vs" \
      --test-time "$DURATION" --seed "$((round * 7919 + pl))" --json || rc=$?
  fi
  s1=$(cpu_ticks "$pid"); st1=$(steal_snap); f1=$($PY foreign diff "$OUT/procs.json" "$MC_PID" "$MEMHA_PID")
  if [ $rc != 0 ] || [ ! -s "$json" ]; then
    log "WARNING: $server $tool $proto ${vs}B p$pl round $round FAILED (rc=$rc, see $OUT/client.log)"
    return 0
  fi
  local parsed ccpu usr sys foreign niced steal bad=0 note=""
  parsed=$($PY parse "$tool" "$json")
  ccpu=$(awk '{printf "%.2f", $1 + $2}' "$OUT/time.tmp")
  read -r u0 k0 <<<"$s0"; read -r u1 k1 <<<"$s1"
  usr=$(awk -v a="$u0" -v b="$u1" -v t="$TCK" 'BEGIN{printf "%.2f", (b - a) / t}')
  sys=$(awk -v a="$k0" -v b="$k1" -v t="$TCK" 'BEGIN{printf "%.2f", (b - a) / t}')
  # other processes' CPU during the run ("niced" = the part used by nice > 0 processes;
  # shown apart, but it counts: even nice-19 hogs cut throughput a lot on this kind of VM)
  local who
  read -r foreign niced who <<<"$f1"
  steal=$(echo "$st0 $st1" | awk '{d = $4 - $2; printf "%.1f", (d > 0 ? 100 * ($3 - $1) / d : 0)}')
  if awk -v f="$foreign" -v fm="$FOREIGN_MAX" -v s="$steal" -v sm="$STEAL_MAX" 'BEGIN{exit !(f > fm || s > sm)}'; then
    bad=1; CONTAMINATED=$((CONTAMINATED + 1)); note="  WARNING: contaminated by other load ($who)"
  fi
  read -r ops ops_s p50 p99 p999 hr errs dur <<<"$parsed"
  local entries entry
  IFS=';' read -r -a entries <<<"$rows"
  for entry in "${entries[@]}"; do
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' \
      "${entry%%=*}" "${entry#*=}" "$server" "$tool-$proto" "$round" "$ops" "$ops_s" "$p50" "$p99" "$p999" \
      "$hr" "$errs" "$dur" "$(awk -v a="$usr" -v b="$sys" 'BEGIN{printf "%.2f", a + b}')" "$usr" "$sys" \
      "$ccpu" "$foreign" "$niced" "$steal" "$bad" >>"$RUNS_TSV"
  done
  log "$(printf '  r%s %-9s %-21s %4sB p%-2s %8.0f ops/s  p99 %6.2f ms  server usr %5.2f sys %5.2f s  client %5.2f s  foreign %5.2f s (niced %5.2f)  steal %4.1f%%%s' \
    "$round" "$server" "$tool-$proto" "$vs" "$pl" "$ops_s" "$p99" "$usr" "$sys" "$ccpu" "$foreign" "$niced" "$steal" "$note")"
}

# pair ROUND ROWS_A A_ARGS... -- interleaving helper: odd rounds memcached first.
pair() {  # ROUND ROWS TOOL PROTO VSIZE NKEYS PIPELINE
  local r=$1 rows=$2; shift 2
  if [ $((r % 2)) = 1 ]; then
    measure "$rows" memcached "$@" "$r"; measure "$rows" memha "$@" "$r"
  else
    measure "$rows" memha "$@" "$r"; measure "$rows" memcached "$@" "$r"
  fi
}

# ------------------------------------------------------------------ checks and builds
[ -x "$MEMTIER" ] || { echo "memtier_benchmark not found at $MEMTIER (set MEMTIER=...; see docs/PERFORMANCE.md)" >&2; exit 1; }
[ -x "$MEMCACHED" ] || { echo "memcached not found at $MEMCACHED (apt-get install memcached, or set MEMCACHED=...)" >&2; exit 1; }
if [ ! -x "$MEMHA" ]; then
  log "building memha (cargo build --release -p memha)"
  (cd "$ROOT" && cargo build --release -p memha)
fi
if has_cell meta-p16 && [ ! -x "$LOADGEN" ]; then
  log "building memha-loadgen (cargo build --release -p memha-loadgen)"
  (cd "$ROOT" && cargo build --release -p memha-loadgen)
fi
if has_cell syscalls && ! command -v strace >/dev/null; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    log "installing strace"; apt-get install -y strace >>"$LOG" 2>&1 || true
  fi
  command -v strace >/dev/null || { log "strace unavailable: skipping the syscalls cell"; CELLS=${CELLS//syscalls/}; }
fi

MC_PORT=${MC_PORT:-$(free_port)}
MEMHA_PORT=${MEMHA_PORT:-$(free_port)}
[ "$MC_PORT" != "$MEMHA_PORT" ] || MEMHA_PORT=$(free_port)

{
  echo "# memha vs memcached — $(date -u '+%Y-%m-%d %H:%M:%S UTC')"
  echo "# host: $(uname -srm), $(nproc) cpus, $(awk -F': ' '/model name/{print $2; exit}' /proc/cpuinfo)"
  echo "# memcached: $("$MEMCACHED" -V 2>&1 | head -1) ($MEMCACHED)"
  echo "# memha: $("$MEMHA" -V 2>&1 | head -1) ($MEMHA, git $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo '?')$(git -C "$ROOT" diff --quiet HEAD 2>/dev/null || echo '+dirty'))"
  echo "# memtier: $("$MEMTIER" --version 2>&1 | head -1)"
  echo "# servers: -t $THREADS -m 1024 -c 4096 -U 0 -l 127.0.0.1 on cpu $SERVER_CPUS; client on cpu $CLIENT_CPU"
  echo "# ROUNDS=$ROUNDS DURATION=${DURATION}s CELLS='$CELLS' FOREIGN_MAX=${FOREIGN_MAX}s STEAL_MAX=${STEAL_MAX}%"
} | tee "$OUT/header.txt" | tee -a "$LOG" >&2

# ------------------------------------------------------------------ the matrix
MC_PID=0; MEMHA_PID=0
EXTRA_TSV="$OUT/extra.tsv"; : >"$EXTRA_TSV"
need_small=0; need_big=0
for c in text-p1 text-p16 bin-p16 meta-p16 syscalls; do has_cell $c && need_small=1; done
for c in text4k-p1 text4k-p16; do has_cell $c && need_big=1; done

if [ $need_small = 1 ] || [ $need_big = 1 ]; then
  start_server memcached "$MC_PORT"; MC_PID=$SPID
  start_server memha "$MEMHA_PORT"; MEMHA_PID=$SPID
  log "memcached pid $MC_PID port $MC_PORT; memha pid $MEMHA_PID port $MEMHA_PORT"
fi

if [ $need_small = 1 ]; then
  # 100-byte cells first: the 4 KB prefill later overwrites the first 100,000 ids.
  prefill memcached "$MC_PORT" 100 $NKEYS_SMALL
  prefill memha "$MEMHA_PORT" 100 $NKEYS_SMALL
  for cell in text-p1 text-p16 bin-p16 meta-p16; do
    has_cell $cell || continue
    log "== $cell"
    for r in $(seq 1 "$ROUNDS"); do
      case $cell in
        text-p1)  pair "$r" "text-p1=text 100 B, pipeline 1" memtier memcache_text 100 $NKEYS_SMALL 1 ;;
        text-p16) pair "$r" "text-p16=text 100 B, pipeline 16" memtier memcache_text 100 $NKEYS_SMALL 16 ;;
        bin-p16)  pair "$r" "bin-p16=binary 100 B, pipeline 16" memtier memcache_binary 100 $NKEYS_SMALL 16 ;;
        meta-p16)
          # memtier speaks no meta: all four runs use memha-loadgen. Rows:
          #   memha meta vs memcached text (the protocol each would be driven with),
          #   both text and both meta (same generator, same protocol: like with like).
          local_rows_mc_text="meta-x=meta 100 B p16: memha meta vs memcached text [loadgen];lg-text=text 100 B, pipeline 16 [loadgen]"
          local_rows_mh_meta="meta-x=meta 100 B p16: memha meta vs memcached text [loadgen];lg-meta=meta 100 B, pipeline 16, both meta [loadgen]"
          if [ $((r % 2)) = 1 ]; then
            measure "$local_rows_mc_text" memcached loadgen text 100 $NKEYS_SMALL 16 "$r"
            measure "$local_rows_mh_meta" memha loadgen meta 100 $NKEYS_SMALL 16 "$r"
            measure "lg-text=text 100 B, pipeline 16 [loadgen]" memha loadgen text 100 $NKEYS_SMALL 16 "$r"
            measure "lg-meta=meta 100 B, pipeline 16, both meta [loadgen]" memcached loadgen meta 100 $NKEYS_SMALL 16 "$r"
          else
            measure "lg-meta=meta 100 B, pipeline 16, both meta [loadgen]" memcached loadgen meta 100 $NKEYS_SMALL 16 "$r"
            measure "lg-text=text 100 B, pipeline 16 [loadgen]" memha loadgen text 100 $NKEYS_SMALL 16 "$r"
            measure "$local_rows_mh_meta" memha loadgen meta 100 $NKEYS_SMALL 16 "$r"
            measure "$local_rows_mc_text" memcached loadgen text 100 $NKEYS_SMALL 16 "$r"
          fi ;;
      esac
    done
  done

  if has_cell syscalls; then
    # Server syscalls per request, text 100 B pipeline 16 (memtier as in text-p16),
    # strace -c -f attached for STRACE_S s; ops from `stats` (cmd_get + cmd_set).
    # strace slows the server a lot: only syscalls/request is meaningful.
    log "== syscalls (strace -c -f, ${STRACE_S}s, text 100 B pipeline 16)"
    sc_mc=""; sc_mh=""
    for server in memcached memha; do
      if [ $server = memcached ]; then port=$MC_PORT pid=$MC_PID; else port=$MEMHA_PORT pid=$MEMHA_PID; fi
      timeout $((STRACE_S + 70)) taskset -c "$CLIENT_CPU" "$MEMTIER" $(memtier_args "$port" memcache_text 100 $NKEYS_SMALL) \
        --threads=1 --clients=$CONNS --pipeline=16 --ratio=1:9 --key-pattern=R:R \
        --test-time=$((STRACE_S + 6)) >"$OUT/syscalls-$server-memtier.txt" 2>&1 &
      CLIENT_PID=$!
      sleep 3
      o0=$($PY stats 127.0.0.1 "$port" || echo 0)
      timeout -s INT "$STRACE_S" strace -c -f -p "$pid" -o "$OUT/strace-$server.txt" >/dev/null 2>&1 || true
      o1=$($PY stats 127.0.0.1 "$port" || echo 0)
      wait "$CLIENT_PID" || true; CLIENT_PID=""
      calls=$($PY strace "$OUT/strace-$server.txt")
      per=$(awk -v c="$calls" -v o=$((o1 - o0)) 'BEGIN{if (o > 0) printf "%.3f", c / o}')
      log "  $server: $calls syscalls / $((o1 - o0)) requests = ${per:-?} per request"
      if [ $server = memcached ]; then sc_mc=$per; else sc_mh=$per; fi
    done
    printf 'syscalls / request, text 100 B p16 (strace -c)\t%s\t%s\tonly the ratio is meaningful (strace slows the server)\n' \
      "$sc_mc" "$sc_mh" >>"$EXTRA_TSV"
  fi
fi

if [ $need_big = 1 ]; then
  prefill memcached "$MC_PORT" 4096 $NKEYS_BIG
  prefill memha "$MEMHA_PORT" 4096 $NKEYS_BIG
  for cell in text4k-p1 text4k-p16; do
    has_cell $cell || continue
    log "== $cell"
    pl=${cell#text4k-p}
    for r in $(seq 1 "$ROUNDS"); do
      pair "$r" "$cell=text 4 KB, pipeline $pl" memtier memcache_text 4096 $NKEYS_BIG "$pl"
    done
  done
fi

for p in "$MC_PID" "$MEMHA_PID"; do
  [ "$p" != 0 ] && { stop_pid "$p"; forget_pid "$p"; }
done

# ------------------------------------------------------------------ bytes per item
if has_cell mem; then
  # A fresh server of each kind, one at a time: RSS (VmRSS) empty, then after storing
  # MEM_ITEMS 32-byte keys with 100-byte values once each; (full - empty) / items.
  log "== memory: $MEM_ITEMS x (32 B key + 100 B value)"
  bpi_mc=""; bpi_mh=""; mem_note=""
  for kind in memcached memha; do
    port=$(free_port)
    start_server "$kind" "$port"; pid=$SPID
    if [ $kind = memcached ]; then MC_PID=$pid; else MEMHA_PID=$pid; fi
    sleep 1
    r0=$(rss_kb "$pid")
    prefill "$kind" "$port" 100 $MEM_ITEMS
    sleep 2   # background maintenance (hash table growth, LRU crawler) settles
    r1=$(rss_kb "$pid")
    items=$($PY stats 127.0.0.1 "$port" curr_items 2>/dev/null || echo 0)
    [ "$items" -gt 0 ] 2>/dev/null || items=$MEM_ITEMS
    bpi=$(awk -v a="$r0" -v b="$r1" -v n="$items" 'BEGIN{printf "%.1f", (b - a) * 1024 / n}')
    log "  $kind: RSS $((r0 / 1024)) MiB -> $((r1 / 1024)) MiB, $items items: $bpi B/item"
    mem_note="${mem_note:+$mem_note; }$kind RSS ${r0}→${r1} KiB for $items items"
    if [ $kind = memcached ]; then bpi_mc=$bpi; else bpi_mh=$bpi; fi
    stop_pid "$pid"; forget_pid "$pid"
  done
  printf 'RSS bytes / item, 1 M x (32 B key + 100 B value)\t%s\t%s\t%s\n' "$bpi_mc" "$bpi_mh" "$mem_note" >>"$EXTRA_TSV"
fi

# ------------------------------------------------------------------ the table
{
  echo
  cat "$OUT/header.txt"
  echo
  $PY table "$RUNS_TSV" "$EXTRA_TSV"
  echo
  echo "Medians over $ROUNDS interleaved round(s) of ${DURATION}s. Ratios are memha / memcached:"
  echo "ops ratio > 1, p99 ratio < 1, CPU ratio < 1 favour memha. µs/req = server CPU (user+system,"
  echo "all threads, /proc/PID/stat) per request. ±x% = half the min–max spread of ops/s."
  if [ "$CONTAMINATED" -gt 0 ]; then
    echo "WARNING: $CONTAMINATED run(s) had other processes using > ${FOREIGN_MAX}s CPU or steal > ${STEAL_MAX}% (columns foreign_cpu_s, foreign_niced_s, steal_pct of $RUNS_TSV); rerun on a quiet machine before quoting them."
  fi
  echo "Raw data: $OUT"
} | tee "$OUT/table.md"
