#!/usr/bin/env python3
"""Helper for bench/compare.sh (standard library only).

  compare.py foreign snap|diff FILE EXCLUDE_PID...
                                         CPU seconds other processes used between "snap" and
                                         "diff": "all niced" (niced = by processes with nice > 0)
  compare.py parse memtier|loadgen FILE  "ops ops_per_sec p50 p99 p999 hit_ratio errors duration_s"
  compare.py stats HOST PORT [FIELD...]  sum of the given `stats` fields (default cmd_get cmd_set)
  compare.py strace FILE                 total syscall count of an `strace -c` summary
  compare.py table RUNS.tsv EXTRA.tsv    the final comparison table (markdown)

`foreign`: CPU (utime+stime+cutime+cstime, /proc/PID/stat) used by all processes except
the given pids, this script's own ancestry (the benchmark shell and whatever started it)
and kernel threads (loopback softirq work of the benchmark itself lands in ksoftirqd).
The work of a reaped child is counted in its parent's cutime/cstime, so two readings
around a run give the CPU that *other* workloads used during it.
"""
import json
import math
import os
import socket
import statistics
import sys

PF_KTHREAD = 0x00200000


def stat_fields(pid):
    with open(f"/proc/{pid}/stat") as f:
        # after "pid (comm) ": state=0 ppid=1 ... flags=6 ... utime=11 stime=12 cutime=13 cstime=14
        return f.read().rsplit(")", 1)[1].split()


def proc_snapshot(excl_args):
    """{ "pid:starttime": [ppid_key_or_None, own_ticks, children_ticks, niced, comm] }"""
    excl = {int(p) for p in excl_args if p.isdigit()}
    pid = os.getpid()
    while pid > 1:
        excl.add(pid)
        try:
            pid = int(stat_fields(pid)[1])
        except OSError:
            break
    excl.update({1, 2})
    raw, mine = {}, 0
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            f = stat_fields(d)
        except OSError:
            continue
        if int(d) in excl:
            if d not in ("1", "2"):
                mine += sum(int(x) for x in f[11:15])
            continue
        if int(f[6]) & PF_KTHREAD or f[1] == "2":
            continue
        # starttime (f[19]) tells a reused pid from the old one
        try:
            with open(f"/proc/{d}/comm") as fc:
                comm = fc.read().strip().replace(" ", "_") or "?"
        except OSError:
            comm = "?"
        raw[d] = (f[1], f[19], int(f[11]) + int(f[12]), int(f[13]) + int(f[14]), int(f[16]) > 0, comm)
    snap = {}
    for d, (ppid, st, own, ch, nice, comm) in raw.items():
        pk = f"{ppid}:{raw[ppid][1]}" if ppid in raw else None
        snap[f"{d}:{st}"] = [pk, own, ch, nice, comm]
    # machine-wide: busy = user+nice+system+irq+softirq ticks, and irq+softirq alone
    with open("/proc/stat") as f:
        c = [int(x) for x in f.readline().split()[1:]]
    snap["_machine"] = [c[0] + c[1] + c[2] + c[5] + c[6], c[5] + c[6], mine]
    return snap


def foreign(args):
    """foreign snap FILE EXCL... | foreign diff FILE EXCL... -> "foreign_s niced_s top"

    CPU used between the two calls by processes other than the excluded ones, our own
    ancestry and kernel threads. Per process: own (utime+stime) delta plus reaped
    children (cutime+cstime) delta; a process that appeared counts whole; one that
    exited is lost, except through its parent's cutime, from which the part it had
    already used at the first snapshot is subtracted. Summing totals instead would go
    negative whenever a busy process exits."""
    mode, path, excl = args[0], args[1], args[2:]
    now = proc_snapshot(excl)
    if mode == "snap":
        with open(path, "w") as f:
            json.dump(now, f)
        return
    with open(path) as f:
        before = json.load(f)
    total = niced = 0
    top = []
    m0, m1 = before.pop("_machine"), now.pop("_machine")
    for k, (pk, own, ch, nice, comm) in now.items():
        if k in before:
            d = (own - before[k][1]) + (ch - before[k][2])
        else:
            d = own + ch
        if k in before:
            # children that exited in between: their pre-window CPU is not ours to count
            for ek, (epk, eown, ech, *_) in before.items():
                if ek not in now and epk == k:
                    d -= eown + ech
        d = max(d, 0)
        total += d
        if d:
            top.append((d, f"{comm}[{k.split(':')[0]}]"))
        if nice:
            niced += d
    tck = os.sysconf("SC_CLK_TCK")
    # Upper bound: machine busy time minus what the benchmark itself used (the excluded
    # pids incl. our ancestry, which holds the reaped load generator, and irq/softirq
    # time, mostly our loopback traffic). Guards against over-counting when a process is
    # reaped by a subreaper that was not its parent at the first reading.
    bound = (m1[0] - m0[0]) - (m1[1] - m0[1]) - (m1[2] - m0[2])
    if total > bound:
        scale = max(bound, 0) / total if total else 0
        total, niced = total * scale, niced * scale
        top = [(d * scale, n) for d, n in top]
    top.sort(reverse=True)
    who = ",".join(f"{name}={d / tck:.1f}s" for d, name in top[:3]) or "-"
    print(f"{total / tck:.2f} {niced / tck:.2f} {who}")


def parse(kind, path):
    nan = float("nan")
    with open(path) as fh:
        d = json.load(fh)
    if kind == "memtier":
        st = d["ALL STATS"]
        t = st["Totals"]
        pl = t.get("Percentile Latencies", {})

        def pct(p):
            for k, v in pl.items():
                if k.startswith("p") and abs(float(k[1:]) - p) < 1e-9:
                    return v
            return nan

        g = st.get("Gets", {})
        hits, misses = g.get("Hits/sec", 0.0), g.get("Misses/sec", 0.0)
        hr = hits / (hits + misses) if hits + misses else nan
        dur = st.get("Runtime", {}).get("Total duration", nan) / 1000.0
        errs = t.get("Connection Errors", 0)
        vals = [t["Count"], t["Ops/sec"], pct(50), pct(99), pct(99.9), hr, errs, dur]
    else:
        lat = d["latency_ms"]
        hr = d["hit_ratio"] if d["hit_ratio"] is not None else nan
        vals = [d["ops"], d["ops_per_sec"], lat["p50"], lat["p99"], lat["p99.9"], hr,
                d["errors"] + d["conn_errors"], d["duration_s"]]
    print(" ".join(str(v) for v in vals))


def stats(host, port, fields):
    fields = fields or ["cmd_get", "cmd_set"]
    s = socket.create_connection((host, int(port)), timeout=5)
    s.sendall(b"stats\r\n")
    buf = b""
    while not buf.endswith(b"END\r\n"):
        chunk = s.recv(65536)
        if not chunk:
            break
        buf += chunk
    s.close()
    total = 0
    for line in buf.decode(errors="replace").splitlines():
        p = line.split()
        if len(p) == 3 and p[0] == "STAT" and p[1] in fields:
            total += int(p[2])
    print(total)


def strace_total(path):
    calls = 0
    for line in open(path):
        p = line.split()
        # % time, seconds, usecs/call, calls, [errors], syscall
        if len(p) >= 5 and p[-1] == "total":
            try:
                calls = int(p[3])
            except ValueError:
                pass
    print(calls)


# ---------------------------------------------------------------- table

def med(xs):
    xs = [x for x in xs if not math.isnan(x)]
    return statistics.median(xs) if xs else float("nan")


def fmt_num(x, digits=0):
    if math.isnan(x):
        return "–"
    return f"{x:,.{digits}f}"


def ratio(a, b):
    """memha / memcached"""
    if math.isnan(a) or math.isnan(b) or b == 0:
        return "–"
    return f"{a / b:.2f}"


def spread(xs):
    xs = [x for x in xs if not math.isnan(x)]
    if len(xs) < 2:
        return ""
    m = statistics.median(xs)
    return f"±{50 * (max(xs) - min(xs)) / m:.0f}%" if m else ""


def table(runs_path, extra_path):
    # runs.tsv columns (compare.sh writes the header)
    rows = []
    with open(runs_path) as f:
        hdr = f.readline().rstrip("\n").split("\t")
        for line in f:
            r = dict(zip(hdr, line.rstrip("\n").split("\t")))
            for k in hdr:
                if k not in ("row", "label", "server", "tool", "contaminated"):
                    try:
                        r[k] = float(r[k])
                    except ValueError:
                        r[k] = float("nan")
            rows.append(r)
    order, by = [], {}
    for r in rows:
        if r["row"] not in by:
            order.append(r["row"])
            by[r["row"]] = {"label": r["label"], "memcached": [], "memha": []}
        by[r["row"]][r["server"]].append(r)

    out = []
    out.append("| cell | memcached ops/s | memha ops/s | ops ratio | memcached p50 / p99 / p99.9 ms "
               "| memha p50 / p99 / p99.9 ms | p99 ratio | memcached µs/req | memha µs/req "
               "| CPU ratio | notes |")
    out.append("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|")
    for key in order:
        e = by[key]
        agg, notes = {}, []
        for srv in ("memcached", "memha"):
            rs = e[srv]
            ops = [r["ops_s"] for r in rs]
            cpu = [r["server_cpu_s"] / r["ops"] * 1e6 if r["ops"] > 0 else float("nan") for r in rs]
            agg[srv] = dict(
                ops=med(ops), p50=med([r["p50"] for r in rs]), p99=med([r["p99"] for r in rs]),
                p999=med([r["p999"] for r in rs]), cpu=med(cpu), n=len(rs),
                spread=spread(ops), tool=rs[0]["tool"] if rs else "",
            )
            bad = sum(1 for r in rs if r["contaminated"] == "1")
            hr = med([r["hit_ratio"] for r in rs])
            errs = sum(r["errors"] for r in rs if not math.isnan(r["errors"]))
            short = "mc" if srv == "memcached" else "memha"
            info = f"{short}: {agg[srv]['tool']} n={len(rs)} {agg[srv]['spread']}".rstrip()
            if bad:
                info += f" **{bad} contaminated**"
            if not math.isnan(hr) and hr < 0.99:
                info += f" hit {hr:.3f}"
            if errs:
                info += f" **{int(errs)} errors**"
            notes.append(info)
        a, b = agg["memcached"], agg["memha"]
        lat = lambda x: "–" if math.isnan(x["p50"]) else f"{x['p50']:.2f} / {x['p99']:.2f} / {x['p999']:.2f}"
        out.append(
            f"| {e['label']} | {fmt_num(a['ops'])} | {fmt_num(b['ops'])} | {ratio(b['ops'], a['ops'])} "
            f"| {lat(a)} | {lat(b)} | {ratio(b['p99'], a['p99'])} "
            f"| {fmt_num(a['cpu'], 1)} | {fmt_num(b['cpu'], 1)} | {ratio(b['cpu'], a['cpu'])} "
            f"| {'; '.join(notes)} |"
        )
    # extra rows: label, memcached value, memha value, note
    if extra_path and os.path.exists(extra_path):
        for line in open(extra_path):
            p = line.rstrip("\n").split("\t")
            if len(p) < 4:
                continue
            label, mc, mh, note = p[:4]
            mcv, mhv = float(mc or "nan"), float(mh or "nan")
            out.append(f"| {label} | {fmt_num(mcv, 2)} | {fmt_num(mhv, 2)} | {ratio(mhv, mcv)} "
                       f"| | | | | | | {note} |")
    print("\n".join(out))


def main():
    cmd, args = sys.argv[1], sys.argv[2:]
    if cmd == "foreign":
        foreign(args)
    elif cmd == "parse":
        parse(args[0], args[1])
    elif cmd == "stats":
        stats(args[0], args[1], args[2:])
    elif cmd == "strace":
        strace_total(args[0])
    elif cmd == "table":
        table(args[0], args[1] if len(args) > 1 else None)
    else:
        sys.exit(f"unknown command {cmd}")


if __name__ == "__main__":
    main()
