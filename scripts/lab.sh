#!/usr/bin/env bash
# scripts/lab.sh — a small L2 network of "hosts" made of network namespaces, for failover tests.
#
#   mhl-n1  10.98.0.11  --\
#   mhl-n2  10.98.0.12  ---+--  bridge mhl-br in namespace mhl-sw (one port mhl-p-<node> each)
#   mhl-n3  10.98.0.13  --/|    (n3 only when asked for)
#   mhl-c   10.98.0.100 ---/    the client
#
# Every host has one interface, mhl-eth0, and loopback; no default route, so nothing in the lab
# can reach anything outside 10.98.0.0/24. The host's own namespace is never touched: the
# bridge and every veth live in lab namespaces. The VIP used by the benches is 10.98.0.46.
#
# Usage (root):
#   lab.sh up [NODE...]       build the lab (default: n1 n2 c); tears down a previous one first
#   lab.sh down               stop what still runs in the lab namespaces, delete them
#   lab.sh exec NODE CMD...   run CMD inside NODE's namespace (exec: the PID stays CMD's)
#   lab.sh partition NODE     drop every frame to and from NODE at its switch port; NODE keeps
#                             its carrier and sees only silence (a real partition)
#   lab.sh oneway NODE        drop only the frames NODE sends (it still hears everyone)
#   lab.sh heal NODE          undo partition / oneway
#   lab.sh linkdown NODE      pull the cable: NODE's mhl-eth0 loses carrier (NO-CARRIER)
#   lab.sh linkup NODE        plug it back
#   lab.sh holder [VIP]       which nodes have VIP configured ("none" if nobody)
#   lab.sh status             ports, faults and addresses
#   lab.sh ns NODE | ip NODE  the namespace / address of NODE
#   lab.sh selftest           check that partition, oneway and linkdown do what they say
#
# How frames are dropped: the kernel here has no netem, matchall or gact, so partition and
# oneway use what it has — a clsact qdisc on the switch-side port with a catch-all u32 filter
# whose action redirects every frame to mhl-sink, a veth whose peer is down. mirred drops
# frames sent to a device without carrier, silently. Ingress on the port = frames from the
# node, egress = frames to the node. The node-side interface is untouched (carrier stays up),
# and the bridge port stays forwarding, so healing is just deleting the qdisc.
set -euo pipefail

P=mhl
SW=$P-sw
BR=$P-br
DEV=$P-eth0
SINK=$P-sink
NET=10.98.0
VIP_DEFAULT=$NET.46

die() { echo "lab.sh: $*" >&2; exit 1; }
[ "$(id -u)" = 0 ] || die "needs root (network namespaces)"

# Host part of a node's address: c -> 100, nK -> 10+K.
octet() {
  case $1 in
    c) echo 100 ;;
    n[1-9]) echo $((10 + ${1#n})) ;;
    *) die "unknown node '$1' (n1..n9 or c)" ;;
  esac
}
addr_of() { echo "$NET.$(octet "$1")"; }
ns_of() { [ "$1" = sw ] && echo "$SW" || { octet "$1" >/dev/null; echo "$P-$1"; }; }
port_of() { octet "$1" >/dev/null; echo "$P-p-$1"; }
# Read /run/netns rather than `ip netns list`: the latter asks the kernel for each namespace's
# id and prints errors when some other namespace is being deleted at that moment.
lab_namespaces() { ls /run/netns 2>/dev/null | grep -E "^$P-" || true; }
have_ns() { lab_namespaces | grep -qx "$1"; }
# Nodes currently in the lab, from the namespaces that exist.
lab_nodes() { lab_namespaces | sed -n "s/^$P-\(n[1-9]\|c\)\$/\1/p" | sort; }
need_node() { have_ns "$(ns_of "$1")" || die "node $1 is not in the lab (lab.sh up?)"; }

# A live process; a zombie waiting for its parent to reap it does not count.
running() { local st; st=$(cat "/proc/$1/stat" 2>/dev/null) || return 1; [[ ${st##*) } != Z* ]]; }

cmd_down() {
  local namespaces ns pid left
  namespaces=$(lab_namespaces)
  [ -n "$namespaces" ] || return 0
  # Processes still inside lab namespaces can only be the benches' own (nothing else runs in
  # them): end them by PID, politely first.
  for sig in TERM KILL; do
    left=""
    for ns in $namespaces; do
      for pid in $(ip netns pids "$ns" 2>/dev/null); do
        left="$left $pid"
        echo "lab.sh: SIG$sig to $pid ($(tr '\0' ' ' </proc/"$pid"/cmdline 2>/dev/null | cut -c1-60)) in $ns" >&2
        kill -"$sig" "$pid" 2>/dev/null || true
      done
    done
    [ -n "$left" ] || break
    for _ in $(seq 1 20); do
      local alive=0
      for pid in $left; do running "$pid" && alive=1; done
      [ $alive = 0 ] && break
      sleep 0.1
    done
  done
  for ns in $namespaces; do ip netns del "$ns" 2>/dev/null || true; done
}

cmd_up() {
  local nodes="${*:-n1 n2 c}" n ns
  cmd_down
  ip netns add "$SW"
  ip -n "$SW" link set lo up
  # No STP, no forwarding delay, no multicast snooping: VRRP's 224.0.0.18 is flooded to every
  # port as on a plain switch, and a port forwards as soon as it is up.
  ip -n "$SW" link add "$BR" type bridge stp_state 0 forward_delay 0 mcast_snooping 0
  ip -n "$SW" link set "$BR" up
  # The frame sink for partition/oneway: one end up, the other end down, so it has no carrier.
  ip -n "$SW" link add "$SINK" type veth peer name "$SINK-x"
  ip -n "$SW" link set "$SINK" up
  for n in $nodes; do
    ns=$(ns_of "$n")
    ip netns add "$ns"
    ip -n "$ns" link set lo up
    ip -n "$SW" link add "$(port_of "$n")" type veth peer name "$DEV" netns "$ns"
    ip -n "$SW" link set "$(port_of "$n")" master "$BR"
    ip -n "$SW" link set "$(port_of "$n")" up
    # A MAC that names the node (02:00:0a:62:00:<octet>) makes captures easy to read.
    ip -n "$ns" link set "$DEV" address "$(printf '02:00:0a:62:00:%02x' "$(octet "$n")")"
    ip -n "$ns" addr add "$(addr_of "$n")/24" dev "$DEV"
    ip -n "$ns" link set "$DEV" up
  done
  # IPv6 off everywhere in the lab: no DAD, router solicitations or MLD in the captures.
  for ns in $(lab_namespaces); do
    ip netns exec "$ns" sysctl -q -w net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1 >/dev/null 2>&1 || true
  done
  # Ready when every host reaches every other one.
  local a b tries ok
  for tries in $(seq 1 30); do
    ok=1
    for a in $nodes; do
      for b in $nodes; do
        [ "$a" = "$b" ] && continue
        ip netns exec "$(ns_of "$a")" ping -q -c 1 -W 1 "$(addr_of "$b")" >/dev/null 2>&1 || { ok=0; break 2; }
      done
    done
    [ $ok = 1 ] && break
    sleep 0.2
  done
  [ $ok = 1 ] || die "lab built, but the hosts cannot reach each other"
  for n in $nodes; do echo "$n  $(ns_of "$n")  $(addr_of "$n")"; done
}

# The drop filters live on the switch-side port. Ingress there = what the node sends.
drop_on() {
  local port=$1; shift
  tc -n "$SW" qdisc del dev "$port" clsact 2>/dev/null || true
  tc -n "$SW" qdisc add dev "$port" clsact
  local dir
  for dir in "$@"; do
    tc -n "$SW" filter add dev "$port" "$dir" pref 1 protocol all u32 match u32 0 0 \
      action mirred egress redirect dev "$SINK"
  done
}

cmd_partition() { need_node "$1"; drop_on "$(port_of "$1")" ingress egress; }
cmd_oneway() { need_node "$1"; drop_on "$(port_of "$1")" ingress; }
cmd_heal() { need_node "$1"; tc -n "$SW" qdisc del dev "$(port_of "$1")" clsact 2>/dev/null || true; }
cmd_linkdown() { need_node "$1"; ip -n "$SW" link set "$(port_of "$1")" down; }
cmd_linkup() { need_node "$1"; ip -n "$SW" link set "$(port_of "$1")" up; }

cmd_holder() {
  local vip=${1:-$VIP_DEFAULT} n who=""
  for n in $(lab_nodes); do
    ip -n "$(ns_of "$n")" -4 -o addr show dev "$DEV" 2>/dev/null | grep -q " inet $vip/" && who="$who $n"
  done
  who=${who# }
  echo "${who:-none}"
}

cmd_status() {
  have_ns "$SW" || { echo "lab is down"; return 0; }
  local n port faults
  for n in $(lab_nodes); do
    port=$(port_of "$n")
    faults=""
    tc -n "$SW" filter show dev "$port" ingress 2>/dev/null | grep -q mirred && faults="$faults drop-from"
    tc -n "$SW" filter show dev "$port" egress 2>/dev/null | grep -q mirred && faults="$faults drop-to"
    ip -n "$SW" link show "$port" | grep -q 'state DOWN' && faults="$faults link-down"
    printf '%-3s %-16s port %-9s faults:%s\n' "$n" \
      "$(ip -n "$(ns_of "$n")" -4 -o addr show dev "$DEV" | awk '{printf "%s ", $4}')" "$port" "${faults:- none}"
  done
}

# ---- selftest: each fault checked from both sides ------------------------------------------

# Packets received on a node's interface (kernel counter).
rx_of() { ip netns exec "$(ns_of "$1")" cat "/sys/class/net/$DEV/statistics/rx_packets"; }
reaches() { ip netns exec "$(ns_of "$1")" ping -q -c 1 -W 1 "$(addr_of "$2")" >/dev/null 2>&1; }
carrier_of() { ip netns exec "$(ns_of "$1")" cat "/sys/class/net/$DEV/carrier" 2>/dev/null || echo 0; }
check() {
  local what=$1; shift
  if "$@"; then echo "ok    $what"; else echo "FAIL  $what"; FAILED=1; fi
}
not() { ! "$@"; }
# After a ping from n2 to n1: did n1 receive anything? (n2's ARP request or echo request)
n1_hears_n2() {
  local before after
  before=$(rx_of n1)
  # flush n2's neighbour entry so the ping starts with an ARP request n1 must receive
  ip -n "$(ns_of n2)" neigh flush dev "$DEV" >/dev/null 2>&1 || true
  reaches n2 n1 || true
  after=$(rx_of n1)
  [ "$after" -gt "$before" ]
}

cmd_selftest() {
  FAILED=0
  have_ns "$(ns_of n1)" && have_ns "$(ns_of n2)" || die "selftest needs n1 and n2 (lab.sh up)"
  check "baseline: n1 <-> n2" reaches n1 n2
  cmd_partition n1
  check "partition: n1 keeps its carrier" test "$(carrier_of n1)" = 1
  check "partition: n1 cannot reach n2" not reaches n1 n2
  check "partition: n2 cannot reach n1" not reaches n2 n1
  check "partition: nothing at all arrives at n1" not n1_hears_n2
  cmd_heal n1
  check "heal: n1 <-> n2 again" reaches n1 n2
  cmd_oneway n1
  check "oneway: n1 keeps its carrier" test "$(carrier_of n1)" = 1
  check "oneway: n2's frames still arrive at n1" n1_hears_n2
  check "oneway: n2 gets no answer from n1" not reaches n2 n1
  cmd_heal n1
  check "heal: n2 <-> n1 again" reaches n2 n1
  cmd_linkdown n1
  sleep 0.1
  check "linkdown: n1 has no carrier" test "$(carrier_of n1)" = 0
  check "linkdown: n1 still has its address" test -n "$(ip -n "$(ns_of n1)" -4 -o addr show dev "$DEV")"
  check "linkdown: n2 cannot reach n1" not reaches n2 n1
  cmd_linkup n1
  sleep 0.1
  check "linkup: n1 has carrier" test "$(carrier_of n1)" = 1
  check "linkup: n1 <-> n2 again" reaches n1 n2
  [ "$FAILED" = 0 ] && echo "selftest passed" || { echo "selftest FAILED"; return 1; }
}

sub=${1:-help}
[ $# -gt 0 ] && shift
case $sub in
  up) cmd_up "$@" ;;
  down) cmd_down ;;
  exec)
    [ $# -ge 2 ] || die "usage: lab.sh exec NODE CMD..."
    node=$1; shift
    need_node "$node"
    exec ip netns exec "$(ns_of "$node")" "$@" ;;
  partition|oneway|heal|linkdown|linkup)
    [ $# = 1 ] || die "usage: lab.sh $sub NODE"
    "cmd_$sub" "$1" ;;
  holder) cmd_holder "$@" ;;
  status) cmd_status ;;
  ns) ns_of "${1:?node}" ;;
  ip) addr_of "${1:?node}" ;;
  selftest) cmd_selftest ;;
  help|-h|--help) sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "$0" ;;
  *) die "unknown command '$sub' (lab.sh help)" ;;
esac
