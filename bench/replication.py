#!/usr/bin/env python3
"""Helper for bench/replication.sh: lag probe, replication state polling, memtier JSON
summaries, process CPU. Standard library only; every subcommand prints one line (JSON or
plain numbers) for the shell script to use.

  lag PORT_A PORT_B N INTERVAL_MS      replication lag of N single sets, one every INTERVAL_MS
  linked PORT... [--timeout S]         wait until every node is ready with every link streaming
  quiesce PORT_A PORT_B [--timeout S]  wait until B applied all of A's writes (and A all of B's)
  wait-sync PORT SINCE [--timeout S]   wait until the node finished its first full sync; SINCE is
                                       the wall-clock time (s) the node was started
  stats PORT GROUP KEY...              values of some stats (GROUP '' = general stats)
  cpu PID...                           user+system CPU seconds of processes (all threads)
  memtier FILE                         overall ops/s and latency of a memtier --json-out-file
  memtier-window FILE RUN_START FROM TO   worst per-second p99.9 and max latency of the
                                       seconds overlapping [FROM, TO] (wall-clock s) and of
                                       the seconds before FROM
"""

import json
import os
import socket
import sys
import time


class Conn:
    def __init__(self, port, host="127.0.0.1"):
        self.s = socket.create_connection((host, port))
        self.s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = b""

    def send(self, data):
        self.s.sendall(data)

    def line(self):
        while b"\r\n" not in self.buf:
            chunk = self.s.recv(65536)
            if not chunk:
                raise EOFError("closed")
            self.buf += chunk
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line

    def exact(self, n):
        while len(self.buf) < n:
            chunk = self.s.recv(65536)
            if not chunk:
                raise EOFError("closed")
            self.buf += chunk
        data, self.buf = self.buf[:n], self.buf[n:]
        return data

    def get(self, key):
        """Value of key, or None."""
        self.send(b"get " + key + b"\r\n")
        head = self.line()
        if head == b"END":
            return None
        n = int(head.split()[3])
        data = self.exact(n + 2)[:n]
        assert self.line() == b"END"
        return data

    def stats(self, group=""):
        self.send(("stats %s\r\n" % group).strip().encode() + b"\r\n")
        out = {}
        while True:
            l = self.line()
            if l == b"END":
                return out
            parts = l.decode().split(" ", 2)
            out[parts[1]] = parts[2] if len(parts) > 2 else ""


def repl(port):
    c = Conn(port)
    try:
        return c.stats("replication")
    finally:
        c.s.close()


def linked(r):
    if r.get("ready") != "1":
        return False
    i = 0
    while "peer%d:state" % i in r:
        if r["peer%d:state" % i] != "streaming":
            return False
        i += 1
    return True


def pct(xs, p):
    xs = sorted(xs)
    if not xs:
        return float("nan")
    k = min(len(xs) - 1, max(0, int(round(p / 100.0 * len(xs) + 0.5)) - 1))
    return xs[k]


def opt(args, name, default):
    if name in args:
        i = args.index(name)
        v = args[i + 1]
        del args[i : i + 2]
        return float(v)
    return default


def cmd_lag(args):
    pa, pb, n, interval = int(args[0]), int(args[1]), int(args[2]), float(args[3]) / 1000
    a, b = Conn(pa), Conn(pb)
    run = "%x" % (time.time_ns() & 0xFFFFFFFF)
    from_send, from_ack, polls = [], [], []
    next_at = time.monotonic()
    timeouts = 0
    for i in range(n):
        key = ("lag:%s:%d" % (run, i)).encode()
        sent = time.monotonic_ns()
        value = b"%020d" % sent + b"x" * 80  # 100 bytes, the send time first
        a.send(b"set %s 0 0 %d\r\n%s\r\n" % (key, len(value), value))
        assert a.line() == b"STORED"
        acked = time.monotonic_ns()
        k = 0
        while True:
            v = b.get(key)
            k += 1
            if v is not None:
                seen = time.monotonic_ns()
                break
            if time.monotonic_ns() - acked > 5e9:
                timeouts += 1
                seen = None
                break
        if seen is not None:
            # The timestamp read back from B's copy is the send time.
            from_send.append((seen - int(v[:20])) / 1e6)
            from_ack.append((seen - acked) / 1e6)
            polls.append(k)
        next_at += interval
        pause = next_at - time.monotonic()
        if pause > 0:
            time.sleep(pause)
    out = {"n": n, "timeouts": timeouts, "gets_per_key_max": max(polls) if polls else 0}
    for name, xs in (("from_send_ms", from_send), ("from_ack_ms", from_ack)):
        out[name] = {
            "p50": round(pct(xs, 50), 3),
            "p90": round(pct(xs, 90), 3),
            "p99": round(pct(xs, 99), 3),
            "max": round(max(xs), 3) if xs else None,
        }
    print(json.dumps(out))


def cmd_linked(args):
    timeout = opt(args, "--timeout", 30)
    deadline = time.time() + timeout
    ports = [int(p) for p in args]
    while time.time() < deadline:
        if all(linked(repl(p)) for p in ports):
            print("linked")
            return
        time.sleep(0.02)
    sys.exit("not linked after %ss: %s" % (timeout, [repl(p) for p in ports]))


def quiet(pa, pb):
    ra, rb = repl(pa), repl(pb)
    return (
        linked(ra)
        and linked(rb)
        and int(rb["peer0:applied_seq"]) >= int(ra["backlog_last_seq"])
        and int(ra["peer0:applied_seq"]) >= int(rb["backlog_last_seq"])
    )


def cmd_quiesce(args):
    timeout = opt(args, "--timeout", 60)
    pa, pb = int(args[0]), int(args[1])
    start = time.time()
    while time.time() - start < timeout:
        if quiet(pa, pb):
            print("%.3f" % (time.time() - start))
            return
        time.sleep(0.01)
    sys.exit("not quiet after %ss: A %s B %s" % (timeout, repl(pa), repl(pb)))


def cmd_wait_sync(args):
    timeout = opt(args, "--timeout", 120)
    port, since = int(args[0]), float(args[1])
    deadline = time.time() + timeout
    r = {}
    while time.time() < deadline:
        try:
            r = repl(port)
        except OSError:
            time.sleep(0.005)
            continue
        if int(r.get("peer0:full_syncs", "0")) >= 1 and r.get("peer0:state") == "streaming":
            done = time.time()
            c = Conn(port)
            items = c.stats().get("curr_items")
            print(
                json.dumps(
                    {
                        "sync_s": round(done - since, 3),
                        "done_at": done,
                        "ready": r.get("ready"),
                        "receiver_sync_ms": int(r.get("peer0:last_full_sync_ms", "0")),
                        "items": int(items),
                    }
                )
            )
            return
        time.sleep(0.005)
    sys.exit("no full sync after %ss: %s" % (timeout, r))


def cmd_stats(args):
    port, group, keys = int(args[0]), args[1], args[2:]
    s = Conn(port).stats(group)
    print(" ".join(s.get(k, "-") for k in keys))


def cmd_cpu(args):
    tck = os.sysconf("SC_CLK_TCK")
    total = 0
    for pid in args:
        with open("/proc/%s/stat" % pid) as f:
            fields = f.read().rsplit(")", 1)[1].split()
        total += int(fields[11]) + int(fields[12])  # utime, stime
    print("%.3f" % (total / tck))


def load(path):
    with open(path) as f:
        return json.load(f)["ALL STATS"]


def kind(stats):
    """The op type that ran (Sets or Gets)."""
    return max(("Sets", "Gets"), key=lambda k: stats[k]["Count"])


def cmd_memtier(args):
    s = load(args[0])
    t = s[kind(s)]
    p = s[kind(s)]["Percentile Latencies"]
    print(
        json.dumps(
            {
                "ops": t["Ops/sec"],
                "count": t["Count"],
                "p50": p.get("p50.00"),
                "p99": p.get("p99.00"),
                "p99.9": p.get("p99.90"),
                "max": t["Max Latency"],
            }
        )
    )


def cmd_memtier_window(args):
    s = load(args[0])
    run_start, t_from, t_to = float(args[1]), float(args[2]), float(args[3])
    series = s[kind(s)]["Time-Serie"]
    during, before = [], []
    for sec, v in series.items():
        lo = run_start + int(sec)
        hi = lo + 1
        if v.get("Count", 0) == 0:
            continue
        if hi > t_from and lo < t_to:
            during.append(v)
        elif hi <= t_from:
            before.append(v)

    def worst(vs):
        if not vs:
            return None
        return {
            "seconds": len(vs),
            "ops": sum(v["Count"] for v in vs),
            "p99.9": max(v.get("p99.90", 0) for v in vs),
            "max": max(v["Max Latency"] for v in vs),
        }

    print(json.dumps({"before": worst(before), "during": worst(during)}))


def main():
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    cmd, args = sys.argv[1], sys.argv[2:]
    {
        "lag": cmd_lag,
        "linked": cmd_linked,
        "quiesce": cmd_quiesce,
        "wait-sync": cmd_wait_sync,
        "stats": cmd_stats,
        "cpu": cmd_cpu,
        "memtier": cmd_memtier,
        "memtier-window": cmd_memtier_window,
    }[cmd](args)


if __name__ == "__main__":
    main()
