#!/usr/bin/env bash
# bench/failover.sh — how long clients lose the cache when the node holding the VIP fails,
# case by case, for memcached + keepalived (the anchor) or for memha with its VRRP speaker.
#
# Not a test: it prints one table per variant (median, min and max over RUNS runs) and keeps
# every probe CSV, summary and daemon log under $OUT. Nothing is asserted.
#
# The lab (scripts/lab.sh, root): n1 10.98.0.11 and n2 10.98.0.12 run the service, n1 being
# the master; the client c 10.98.0.100 runs bench/failover_probe.py against the VIP
# 10.98.0.46:11211 — a new TCP connection every 10 ms with a 200 ms timeout (MODE=persist: one
# pooled connection). Before every run the lab is put back in a known state: both nodes freshly
# started, no fault, VIP on n1 only, n2 backup, the client's ARP cache empty. The fault is
# injected at a random phase of the advert / health-check cycle (the probe waits 2 s plus a
# random delay of up to PHASE s). "outage" = longest time between two successful requests.
#
# Cases (all on the master n1):
#   kill9              kill -9 the data process: memcached / memha's data process (the only
#                      child of the memha supervisor; the supervisor itself without one)
#   partition          every frame to and from n1 dropped at its switch port, carrier up
#   linkdown           n1's interface loses carrier (switch side of its veth down)
#   sigterm            graceful stop: SIGTERM to keepalived (memcached keeps running, as in
#                      `systemctl stop keepalived`) / to the memha supervisor
#   heal               partition n1, heal it HEAL_AFTER s later: outage before the heal,
#                      failed requests after it, who holds the VIP 1 s after it. The seed's
#                      backup takes over only 2.65-3.65 s after a partition: with 3 s it often
#                      has not yet (the table says how often it had); HEAL_AFTER=5 for the seed
#   recover-nopreempt  kill the master's service (kill -9 memcached; for memha kill -9 the
#                      supervisor and its child), restart it RECOVER_AFTER s later and watch
#                      NOPREEMPT_WATCH s: the VIP should stay on n2 (nopreempt)
#   oneway             (not in the default list) only the frames n1 sends are dropped
#
# Stacks and variants:
#   STACK=keepalived  memcached 1.6 + keepalived 2.2.7 in each node, the seed's vrrp_instance:
#                     VI_1, VRID 51, n1 state MASTER prio 100, n2 BACKUP 90, nopreempt,
#                     PASS auth "memcached", multicast, notify script. Health check: a
#                     vrrp_script that succeeds while the memcached we started is alive (and
#                     not a zombie) — the seed's `kill -0 $(cat memcached.pid)`.
#     VARIANT=seed    VRRPv2, advert_int 1, check interval 2 s (the seed)
#     VARIANT=v3fast  vrrp_version 3, advert_int 0.1, no auth, check interval 1 s (keepalived's
#                     best: the interval cannot go below 1 s)
#   STACK=memha       target/release/memha --config NODE.toml in each node: the same
#                     vrrp_instance in memha's TOML, replication n1 <-> n2 (secret file,
#                     node_id 1 / 2; the probe asks `stats replication` who answers)
#     VARIANT=v3fast  (default) version 3, advert_int 0.1;  VARIANT=seed  version 2, 1 s, PASS
#   VARIANT=v3-50ms   both stacks: version 3, advert_int 0.05 (memha's recommended setting;
#                     keepalived's check interval stays 1 s)
#   VARIANT may list several: VARIANT="seed v3fast".
#
# Env knobs [defaults]:
#   RUNS [5]  CASES ["kill9 partition linkdown sigterm heal recover-nopreempt"]  MODE [get]
#   HEAL_AFTER [3]  RECOVER_AFTER [6]  NOPREEMPT_WATCH [10]  PHASE [2 seed, 1 v3fast]
#   STATE_N1 [MASTER] STATE_N2 [BACKUP] PRIO_N1 [100] PRIO_N2 [90]  (both nodes, both stacks)
#   RT [10]           SCHED_RR priority for the daemons and the probe (0 = normal scheduling;
#                     this is a shared 2-core machine)
#   MEMHA [target/release/memha]  BUILD [1] (cargo build --release -p memha first)
#   MEMHA_VRRP [1]    0: no [[vrrp_instance]], VIP put on n1 by hand — only to smoke-test the
#                     tooling with a memha that has no speaker; the numbers mean nothing then
#   OUT [target/bench/failover-<stack>-<time>]
#
# Everything runs in lab namespaces; the daemons are started with their own config files in a
# temporary directory and stopped by PID (also on Ctrl-C), then the lab is taken down.
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
SELF="$HERE/$(basename "$0")"
LAB="$ROOT/scripts/lab.sh"
PROBE="$HERE/failover_probe.py"

STACK=${STACK:-keepalived}
RT=${RT:-10}
MEMHA=${MEMHA:-$ROOT/target/release/memha}
MEMHA_VRRP=${MEMHA_VRRP:-1}
VIP=10.98.0.46
PORT=11211
REPL_PORT=11411
VRID=51
NODES="n1 n2"
DEV=mhl-eth0
export STACK RT MEMHA

die() { echo "failover.sh: $*" >&2; exit 1; }
say() { echo "$*" >&2; }

# ---- processes: each one we start has a pid file under $W/<node>/ -----------------------------

# spawn NAME PIDFILE LOG CMD...: start CMD in a session of its own (Ctrl-C reaches only this
# script, whose trap stops everything in order), optionally SCHED_RR, record its PID, and wait
# until the exec chain (sh, lab.sh, ip netns exec) has become NAME.
spawn() {
  local name=$1 pidfile=$2 log=$3 i pid
  shift 3
  rm -f "$pidfile"
  local rt=()
  [ "$RT" != 0 ] && rt=(chrt -r "$RT")
  setsid "${rt[@]}" sh -c 'echo $$ >"$0.new" && mv "$0.new" "$0" && exec "$@"' "$pidfile" "$@" \
    </dev/null >>"$log" 2>&1 &
  disown $! # still reaped by this shell, but no "Killed" job notice when a fault kills it
  for i in $(seq 1 200); do
    [ -s "$pidfile" ] && break
    sleep 0.01
  done
  pid=$(pid_in "$pidfile")
  for i in $(seq 1 200); do
    alive "$pid" "$name" && return 0
    [ -e "/proc/$pid" ] || break
    sleep 0.01
  done
  tail -20 "$log" >&2
  die "could not start $name: $* (log: $log)"
}

# alive PID NAME: PID is a live process (not a zombie) whose command name is NAME. The name
# check keeps a recycled PID from being signalled.
alive() {
  local stat
  [ -n "$1" ] || return 1
  stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
  [[ $stat == "$1 ($2) "* ]] || return 1
  [[ ${stat#*) } != Z* ]]
}

pid_in() { cat "$1" 2>/dev/null || true; }

# stop PID NAME GRACE: SIGTERM, then SIGKILL after GRACE seconds.
stop() {
  local pid=$1 name=$2 grace=$3 i
  alive "$pid" "$name" || return 0
  kill -TERM "$pid" 2>/dev/null || true
  for i in $(seq 1 $((grace * 20))); do
    alive "$pid" "$name" || return 0
    sleep 0.05
  done
  kill -KILL "$pid" 2>/dev/null || true
  for i in $(seq 1 40); do
    alive "$pid" "$name" || return 0
    sleep 0.05
  done
  say "warning: $name $pid survived SIGKILL"
}

# Talk memcached text protocol to a node from inside its namespace; prints the reply up to END
# or the first line.
mc() {
  local node=$1 req=$2
  timeout 2 "$LAB" exec "$node" bash -c '
    exec 3<>/dev/tcp/127.0.0.1/'"$PORT"' || exit 1
    printf "%b" "$0" >&3
    while IFS= read -r -t 1 line <&3; do
      printf "%s\n" "${line%$'"'\r'"'}"
      case $line in END*|STORED*|ERROR*|SERVER_ERROR*|CLIENT_ERROR*) break ;; esac
    done' "$req" 2>/dev/null
}

memha_children() { pgrep -P "$1" -x memha 2>/dev/null || true; }

# The data process of NODE: memcached, or the memha supervisor's child (the supervisor itself in
# a build without one).
data_pid() {
  local n=$1 sup child
  if [ "$STACK" = keepalived ]; then
    pid_in "$W/$n/memcached.pid"
  else
    sup=$(pid_in "$W/$n/memha.pid")
    child=$(memha_children "$sup" | head -1)
    echo "${child:-$sup}"
  fi
}

# ---- configuration files ---------------------------------------------------------------------

variant_settings() {
  case $1 in
    seed) VER=2 ADV=1 CHECK_INT=2 PHASE=${PHASE_OVERRIDE:-2} ;;
    v3fast) VER=3 ADV=0.1 CHECK_INT=1 PHASE=${PHASE_OVERRIDE:-1} ;;
    v3-50ms) VER=3 ADV=0.05 CHECK_INT=1 PHASE=${PHASE_OVERRIDE:-1} ;;
    *) die "unknown VARIANT '$1' (seed, v3fast, v3-50ms)" ;;
  esac
}
state_of() { [ "$1" = n1 ] && echo "${STATE_N1:-MASTER}" || echo "${STATE_N2:-BACKUP}"; }
prio_of() { [ "$1" = n1 ] && echo "${PRIO_N1:-100}" || echo "${PRIO_N2:-90}"; }
other_of() { [ "$1" = n1 ] && echo n2 || echo n1; }
addr_of() { "$LAB" ip "$1"; }

write_common() {
  local n=$1 d=$W/$1
  mkdir -p "$d"
  # keepalived's and memha's `notify` get: INSTANCE <name> <state> <priority>
  cat >"$d/notify.sh" <<EOF
#!/bin/sh
echo "\$(date +%H:%M:%S.%3N) \$3" >>"$d/states.log"
EOF
  chmod 755 "$d/notify.sh"
}

write_keepalived_conf() {
  local n=$1 d=$W/$1
  write_common "$n"
  # Healthy while the memcached this bench started is running. /proc is read instead of
  # `kill -0` because a killed daemon may linger as a zombie until its parent reaps it, and
  # kill -0 succeeds on zombies.
  cat >"$d/check_memcached.sh" <<EOF
#!/bin/sh
pid=\$(cat "$d/memcached.pid" 2>/dev/null) || exit 1
state=\$(sed -n 's/^State:[[:space:]]*\\([A-Z]\\).*/\\1/p' "/proc/\$pid/status" 2>/dev/null)
[ -n "\$state" ] && [ "\$state" != Z ] && grep -qx memcached "/proc/\$pid/comm"
EOF
  chmod 755 "$d/check_memcached.sh"
  {
    echo "global_defs {"
    echo "    router_id mhl_$n"
    echo "    script_user root"
    [ "$VER" = 3 ] && echo "    vrrp_version 3"
    echo "}"
    echo "vrrp_script chk_memcached {"
    echo "    script \"$d/check_memcached.sh\""
    echo "    interval $CHECK_INT"
    echo "}"
    echo "vrrp_instance VI_1 {"
    echo "    state $(state_of "$n")"
    echo "    interface $DEV"
    echo "    virtual_router_id $VRID"
    echo "    priority $(prio_of "$n")"
    echo "    advert_int $ADV"
    echo "    nopreempt"
    if [ "$VER" = 2 ]; then
      echo "    authentication {"
      echo "        auth_type PASS"
      echo "        auth_pass memcached"
      echo "    }"
    fi
    echo "    virtual_ipaddress {"
    echo "        $VIP"
    echo "    }"
    echo "    track_script {"
    echo "        chk_memcached"
    echo "    }"
    echo "    notify \"$d/notify.sh\""
    echo "}"
  } >"$d/keepalived.conf"
}

write_memha_conf() {
  local n=$1 d=$W/$1
  write_common "$n"
  [ -s "$W/secret" ] || { head -c 32 /dev/urandom | base64 >"$W/secret"; chmod 600 "$W/secret"; }
  {
    echo "[server]"
    echo "port = $PORT"
    echo "udp_port = 0"
    echo "memory_limit_mb = 64"
    echo "threads = 1"
    echo
    echo "[logging]"
    echo "level = \"info\""
    echo
    echo "[replication]"
    echo "port = $REPL_PORT"
    echo "peers = [\"$(addr_of "$(other_of "$n")")\"]"
    echo "secret_file = \"$W/secret\""
    echo "node_id = ${n#n}"
    if [ "$MEMHA_VRRP" != 0 ]; then
      echo
      echo "[[vrrp_instance]]"
      echo "name = \"VI_1\""
      echo "interface = \"$DEV\""
      echo "state = \"$(state_of "$n")\""
      echo "virtual_router_id = $VRID"
      echo "priority = $(prio_of "$n")"
      echo "advert_int = $ADV"
      echo "version = $VER"
      echo "nopreempt = true"
      # keepalived puts only the first 8 characters of "memcached" on the wire; memha wants
      # those 8.
      [ "$VER" = 2 ] && echo "authentication = { auth_type = \"PASS\", auth_pass = \"memcache\" }"
      echo "virtual_ipaddress = [\"$VIP\"]"
      echo "notify = \"$d/notify.sh\""
    fi
  } >"$d/memha.toml"
}

# ---- starting and stopping a node -------------------------------------------------------------

start_data() {
  local n=$1 d=$W/$1 i
  if [ "$STACK" = keepalived ]; then
    spawn memcached "$d/memcached.pid" "$d/memcached.log" \
      "$LAB" exec "$n" memcached -u root -l 0.0.0.0 -p "$PORT" -U 0 -m 64 -t 2
    # every server knows who it is: the probe's `get whoami` tells who answered
    for i in $(seq 1 50); do
      mc "$n" "set whoami 0 0 ${#n}\r\n$n\r\n" | grep -q STORED && return 0
      sleep 0.05
    done
    die "memcached in $n does not answer (log: $d/memcached.log)"
  else
    spawn memha "$d/memha.pid" "$d/memha.log" "$LAB" exec "$n" "$MEMHA" --config "$d/memha.toml"
    for i in $(seq 1 100); do
      alive "$(pid_in "$d/memha.pid")" memha || {
        tail -20 "$d/memha.log" >&2
        die "memha in $n exited at startup (log: $d/memha.log)"
      }
      mc "$n" "version\r\n" | grep -q VERSION && return 0
      sleep 0.05
    done
    die "memha in $n does not answer (log: $d/memha.log)"
  fi
}

start_vrrp() {
  local n=$1 d=$W/$1
  if [ "$STACK" = keepalived ]; then
    # -n: parent in the foreground, -P: VRRP only, -l -D: detailed log on the console, -G: no
    # syslog; the parent's and the VRRP child's pid files are ours.
    spawn keepalived "$d/ka.pid" "$d/keepalived.log" "$LAB" exec "$n" keepalived -n -P -l -D -G \
      -f "$d/keepalived.conf" -p "$d/keepalived.pid" -r "$d/vrrp.pid"
  elif [ "$MEMHA_VRRP" = 0 ] && [ "$n" = n1 ]; then
    "$LAB" exec n1 ip addr add "$VIP/32" dev "$DEV"
  fi
}

start_node() { start_data "$1"; start_vrrp "$1"; }

stop_data() {
  local n=$1 d=$W/$1 sup kids k
  if [ "$STACK" = keepalived ]; then
    stop "$(pid_in "$d/memcached.pid")" memcached 2
  else
    sup=$(pid_in "$d/memha.pid")
    kids=""
    alive "$sup" memha && kids=$(memha_children "$sup")
    stop "$sup" memha 5
    for k in $kids; do stop "$k" memha 1; done
  fi
}

stop_node() {
  local n=$1 d=$W/$1
  if [ "$STACK" = keepalived ]; then
    stop "$(pid_in "$d/ka.pid")" keepalived 5
    stop "$(pid_in "$d/vrrp.pid")" keepalived 1
  fi
  stop_data "$n"
}

vip_off() {
  local n=$1 a
  for a in $("$LAB" exec "$n" ip -4 -o addr show dev "$DEV" | awk -v v="$VIP/" 'index($4, v) == 1 {print $4}'); do
    "$LAB" exec "$n" ip addr del "$a" dev "$DEV"
  done
}

last_state() { tail -1 "$W/$1/states.log" 2>/dev/null | awk '{print $2}'; }

wait_for() { # wait_for SECONDS CMD...: until CMD succeeds
  local t=$1 i
  shift
  for i in $(seq 1 $((t * 20))); do
    "$@" && return 0
    sleep 0.05
  done
  return 1
}
holder_is() { [ "$("$LAB" holder "$VIP")" = "$1" ]; }
state_is() { [ "$(last_state "$1")" = "$2" ]; }
repl_ready() { mc "$1" "stats replication\r\n" | grep -q "^STAT ready 1"; }

# Both nodes fresh, no fault, VIP on n1 only, n2 backup, the client's ARP cache empty.
# Prints the reason and fails if that state cannot be reached.
reset_lab() {
  local n
  for n in $NODES; do stop_node "$n"; done
  for n in $NODES; do
    "$LAB" heal "$n"
    "$LAB" linkup "$n"
    vip_off "$n"
    : >"$W/$n/states.log"
    for f in keepalived.log memcached.log memha.log; do [ -e "$W/$n/$f" ] && : >"$W/$n/$f"; done
  done
  "$LAB" exec c ip neigh flush all >/dev/null 2>&1 || true
  start_node n1
  wait_for 20 holder_is n1 || { echo "VIP not on n1 20 s after start ($("$LAB" holder "$VIP"))"; return 1; }
  start_node n2
  if [ "$STACK" = keepalived ] || [ "$MEMHA_VRRP" != 0 ]; then
    wait_for 15 state_is n2 BACKUP || { echo "n2 not BACKUP ($(last_state n2))"; return 1; }
  fi
  if [ "$STACK" = memha ]; then
    wait_for 20 repl_ready n1 && wait_for 20 repl_ready n2 || { echo "replication not ready"; return 1; }
  fi
  sleep 0.5
  holder_is n1 || { echo "VIP moved during start ($("$LAB" holder "$VIP"))"; return 1; }
}

# ---- one run ---------------------------------------------------------------------------------

run_case() {
  local case=$1 i=$2
  local rd=$OUT/$VARIANT/$case-$i why="" fault recover=() n
  mkdir -p "$rd"
  # not in a $(subshell): the daemons stay this script's children, reaped as soon as they die
  if ! reset_lab >"$rd/reset.log"; then
    why=$(tail -1 "$rd/reset.log")
    say "  $case #$i: lab not ready: $why"
    jq -nc --arg c "$case" --argjson r "$i" --arg v "$VARIANT" --arg w "$why" \
      '{case:$c, run:$r, variant:$v, valid:false, invalid:$w}' >>"$OUT/$VARIANT/runs.jsonl"
    return 0
  fi
  local dp kp sup
  dp=$(data_pid n1)
  kp=$(pid_in "$W/n1/ka.pid")
  sup=$(pid_in "$W/n1/memha.pid")
  local extra=(--min-after-recover 2)
  case $case in
    kill9) fault="kill -9 $dp" ;;
    partition) fault="$LAB partition n1" ;;
    oneway) fault="$LAB oneway n1" ;;
    linkdown) fault="$LAB linkdown n1" ;;
    sigterm)
      if [ "$STACK" = keepalived ]; then fault="kill -TERM $kp"; else fault="kill -TERM $sup"; fi ;;
    heal)
      fault="$LAB partition n1"
      recover=(--recover "$LAB heal n1; (sleep 1; $LAB holder $VIP >$rd/holder_1s) &" --recover-after "$HEAL_AFTER")
      # after a heal the old master's next advert may come up to advert_int later: watch 3 s
      extra=(--min-after-recover 3) ;;
    recover-nopreempt)
      if [ "$STACK" = keepalived ]; then fault="kill -9 $dp"; else fault="kill -9 $sup $(memha_children "$sup")"; fi
      recover=(--recover "FAILOVER_WORK=$W $SELF _start-data n1" --recover-after "$RECOVER_AFTER")
      extra=(--min-after-recover "$NOPREEMPT_WATCH") ;;
    *) die "unknown case '$case'" ;;
  esac
  local ident=(--ident key)
  [ "$STACK" = memha ] && ident=(--ident node_id --node-ids 1=n1,2=n2)
  local rt=()
  [ "$RT" != 0 ] && rt=(chrt -r "$RT")
  local rc=0
  "${rt[@]}" python3 "$PROBE" --netns mhl-c --vip "$VIP" --port "$PORT" --mode "$MODE" "${ident[@]}" \
    --pre 2 --phase "$PHASE" --settle 1.5 --max-after 60 --fault "$fault" "${recover[@]}" "${extra[@]}" \
    --csv "$rd/probes.csv" --log "$rd/commands.log" --label "$case" >"$rd/summary.json" 2>>"$rd/probe.err" &
  PROBE_PID=$!
  wait "$PROBE_PID" || rc=$?
  PROBE_PID=""
  local holder_end
  holder_end=$("$LAB" holder "$VIP" | tr ' ' '+')
  sleep 0.2
  for n in $NODES; do
    for f in states.log keepalived.log memcached.log memha.log; do
      [ -s "$W/$n/$f" ] && cp "$W/$n/$f" "$rd/$n-$f"
    done
  done
  if [ ! -s "$rd/summary.json" ]; then
    say "  $case #$i: probe failed (rc $rc, see $rd/probe.err)"
    jq -nc --arg c "$case" --argjson r "$i" --arg v "$VARIANT" \
      '{case:$c, run:$r, variant:$v, valid:false, invalid:"probe failed"}' >>"$OUT/$VARIANT/runs.jsonl"
    return 0
  fi
  local h1=""
  [ -s "$rd/holder_1s" ] && h1=$(tr ' ' '+' <"$rd/holder_1s")
  jq -c --arg c "$case" --argjson r "$i" --arg v "$VARIANT" --arg he "$holder_end" --arg h1 "$h1" '
      . + {case:$c, run:$r, variant:$v, holder_end:$he}
        + (if $h1 != "" then {holder_1s:$h1} else {} end)
        + (if .pre_node != "n1" then {valid:false, invalid:"n1 did not answer before the fault"}
           elif .pre_ok < 0.9 then {valid:false, invalid:"failures before the fault"}
           else {valid:true} end)' "$rd/summary.json" >>"$OUT/$VARIANT/runs.jsonl"
  jq -r '"  \(.case) #\(.run): outage \(.gap_ms) ms, \(.fails) failed, switch \(.switch_ms // "-") ms, after: \(.nodes_after|join(","))"
         + (if .heal_fails != null then ", after recover: \(.heal_fails) failed, back \(.back_ms // "-")" else "" end)
         + ", VIP at end: \(.holder_end)"
         + (if .valid then "" else "  [INVALID: \(.invalid)]" end)' <(tail -1 "$OUT/$VARIANT/runs.jsonl") >&2
}

title() {
  local what
  if [ "$STACK" = keepalived ]; then
    what="keepalived $(keepalived --version 2>&1 | awk 'NR==1{print $2}') + memcached $(memcached -V | awk '{print $2}')"
    what="$what, VARIANT=$VARIANT: VRRPv$VER, advert_int $ADV s, health check every $CHECK_INT s (vrrp_script)"
  else
    what="memha ($MEMHA_REV), VARIANT=$VARIANT: VRRPv$VER, advert_int $ADV s"
    [ "$MEMHA_VRRP" = 0 ] && what="$what, NO VRRP (MEMHA_VRRP=0: tooling smoke test, numbers meaningless)"
  fi
  echo "$what"
  echo "n1 $(state_of n1) prio $(prio_of n1), n2 $(state_of n2) prio $(prio_of n2), nopreempt; client: $MODE," \
    "a request every 10 ms, 200 ms timeout; fault at 2 s + random [0, $PHASE) s; $RUNS runs; heal after $HEAL_AFTER s"
}

# ---- cleanup ---------------------------------------------------------------------------------

W=""
PROBE_PID=""
cleanup() {
  local rc=$? n f
  trap - EXIT INT TERM
  set +e
  [ -n "$PROBE_PID" ] && kill -TERM "$PROBE_PID" 2>/dev/null && wait "$PROBE_PID" 2>/dev/null
  if [ -n "$W" ] && [ -d "$W" ]; then
    # the pid files also name a service the recover helper restarted
    for n in $NODES; do [ -d "$W/$n" ] && stop_node "$n"; done
    if [ -n "${OUT:-}" ] && [ -d "$OUT" ]; then
      mkdir -p "$OUT/config"
      for n in $NODES; do
        for f in "$W/$n"/*.conf "$W/$n"/*.toml "$W/$n"/*.sh; do
          [ -e "$f" ] && cp "$f" "$OUT/config/$n-$(basename "$f")"
        done
      done
    fi
    rm -rf "$W"
  fi
  "$LAB" down
  exit "$rc"
}

# ---- helper mode: the recover command of recover-nopreempt restarts n1's data service ---------

if [ "${1:-}" = _start-data ]; then
  W=${FAILOVER_WORK:?}
  start_data "$2"
  exit 0
fi

# ---- main ------------------------------------------------------------------------------------

[ "$(id -u)" = 0 ] || die "needs root (network namespaces)"
case $STACK in
  keepalived) VARIANTS=${VARIANT:-seed} ;;
  memha) VARIANTS=${VARIANT:-v3fast} ;;
  *) die "STACK must be keepalived or memha" ;;
esac
RUNS=${RUNS:-5}
CASES=${CASES:-kill9 partition linkdown sigterm heal recover-nopreempt}
MODE=${MODE:-get}
HEAL_AFTER=${HEAL_AFTER:-3}
RECOVER_AFTER=${RECOVER_AFTER:-6}
NOPREEMPT_WATCH=${NOPREEMPT_WATCH:-10}
PHASE_OVERRIDE=${PHASE:-}
OUT=${OUT:-$ROOT/target/bench/failover-$STACK-$(date +%Y%m%d-%H%M%S)}
for v in $VARIANTS; do variant_settings "$v"; done
for c in $CASES; do
  case $c in kill9|partition|oneway|linkdown|sigterm|heal|recover-nopreempt) ;; *) die "unknown case '$c'" ;; esac
done
command -v jq >/dev/null || die "needs jq"

if [ "$STACK" = keepalived ]; then
  if ! command -v keepalived >/dev/null || ! command -v memcached >/dev/null; then
    apt-get install -y keepalived memcached >&2
    # the packages start their own daemons in the host's namespace; this bench runs its own
    for s in keepalived memcached; do
      systemctl stop "$s" 2>/dev/null || service "$s" stop 2>/dev/null || true
    done
  fi
else
  if [ "${BUILD:-1}" = 1 ]; then
    say "building memha (cargo build --release -p memha; waits for other builds' locks)"
    (cd "$ROOT" && cargo build --release -p memha >&2)
  fi
  [ -x "$MEMHA" ] || die "no memha binary at $MEMHA"
  MEMHA_REV="binary of $(date -r "$MEMHA" '+%F %H:%M'), tree at $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo '?')"
  [ -n "$(git -C "$ROOT" status --porcelain -uno 2>/dev/null)" ] && MEMHA_REV="$MEMHA_REV + changes"
fi

trap cleanup EXIT
trap 'say "interrupted"; exit 130' INT TERM
W=$(mktemp -d /tmp/mhl-failover.XXXXXX)
export FAILOVER_WORK=$W
mkdir -p "$OUT"
"$LAB" up n1 n2 c >/dev/null
say "results: $OUT"

for VARIANT in $VARIANTS; do
  export VARIANT
  variant_settings "$VARIANT"
  mkdir -p "$OUT/$VARIANT"
  : >"$OUT/$VARIANT/runs.jsonl"
  for n in $NODES; do
    if [ "$STACK" = keepalived ]; then write_keepalived_conf "$n"; else write_memha_conf "$n"; fi
  done
  say "== $(title | head -1)"
  for i in $(seq 1 "$RUNS"); do
    for c in $CASES; do run_case "$c" "$i"; done
  done
  {
    echo
    title
    python3 "$PROBE" table "$OUT/$VARIANT/runs.jsonl"
  } | tee -a "$OUT/table.txt"
done
