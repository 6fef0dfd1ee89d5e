#!/usr/bin/env python3
"""bench/failover_probe.py — the outage a memcached client sees while a VIP fails over.

Not a test: it measures one fault and reports it. bench/failover.sh runs it case by case.

Probing. Runs in the client's network namespace (--netns, or start it there). Every
--interval (10 ms) it starts one request against VIP:PORT without waiting for the previous
ones, so a hanging request never blurs the time resolution:

  get      a new TCP connection per request, one command, closed afterwards
  persist  one pooled connection that every request reuses; after an error or a timeout it is
           closed and the next request reconnects. A tick that finds the previous request still
           pending is skipped, as a pool of one would.

Each request, connection included, has --timeout (200 ms). The command tells who answered:
`get whoami` (every server stores whoami=<node>) or, with --ident node_id (replicated
servers, where a whoami key would be copied between nodes), `stats replication` and its
`node_id`, mapped to names with --node-ids 1=n1,2=n2.

Fault. After --pre seconds plus a random extra delay in [0, --phase) — so faults land at a
random phase of the advert and health-check cycles — it runs --fault (a shell command) and,
--recover-after seconds after the fault started, --recover if given. It then probes until the
service has answered without a failure for --settle seconds, or --max-after s have passed. It
does not stop before the fault has shown (a failed request, or another node answering; a health
check may take seconds to notice) unless --event-within s pass without one, nor before
--min-after s after the fault and --min-after-recover s after the recover command.

Output: a CSV of every request (--csv; times in ms from the fault) and one JSON line on
stdout. Times are ms from the moment the fault command was started:

  gap_ms          longest time between the starts of two consecutive successful requests,
                  from 1 s before the fault on: the outage a client sees (resolution: interval;
                  ~interval when nothing failed). Open-ended (until the end) if it never came back
  gap_from_ms     where that gap started (the last success before it)
  fault_at        wall-clock time of the fault (HH:MM:SS.mmm), to read daemon logs alongside
  phase_ms        the random extra delay; fault_cmd_ms / fault_rc: the fault command's run
  fails           failed requests started after the fault
  first_fail_ms   the first of them
  switch_ms       first success answered by another node than the one answering before
  pre_node        who answered before the fault; pre_ok the share of successes before it
  nodes_after     answering nodes after the fault, in order of first appearance
  final_nodes     answering nodes during the last --settle seconds
  recovered       false if the last request failed
  with --recover:
  recover_ms      when the recover command started
  fault_gap_ms    like gap_ms, but over the requests started before recover_ms (and the first
                  success after them): the fault's outage alone
  heal_fails      failed requests started after the recover command
  heal_outage_ms  from the first failure after the recover command to the first success after
                  the last failure (0 if none failed); heal_open = still failing at the end
  back_ms         first success from pre_node after the recover command (e.g. the VIP moved
                  back after the old master returned), null if it never answered again

`failover_probe.py table RUNS.jsonl` prints the per-case table bench/failover.sh shows.
"""

import argparse
import asyncio
import ctypes
import json
import os
import random
import statistics
import sys
import time

CLONE_NEWNET = 0x40000000


def enter_netns(name):
    """Move this process into network namespace NAME (as `ip netns exec` would, minus /sys).

    Must run before any thread exists: setns changes only the calling thread, and later threads
    inherit from it.
    """
    libc = ctypes.CDLL(None, use_errno=True)
    fd = os.open(f"/run/netns/{name}", os.O_RDONLY)
    try:
        if libc.setns(fd, CLONE_NEWNET) != 0:
            err = ctypes.get_errno()
            raise OSError(err, f"setns({name}): {os.strerror(err)}")
    finally:
        os.close(fd)


class Ident:
    """The command that asks a server who it is, and how to read the answer."""

    def __init__(self, kind, key, node_ids):
        self.kind = kind
        if kind == "key":
            self.request = f"get {key}\r\n".encode()
        else:
            self.request = b"stats replication\r\n"
        self.names = node_ids

    def parse(self, reply):
        """`reply` ends with END\\r\\n. Returns the answering node's name."""
        lines = reply.split(b"\r\n")
        if self.kind == "key":
            if lines[0].startswith(b"VALUE") and len(lines) > 1:
                return lines[1].decode(errors="replace") or "?"
            return "?"  # the server answered, but has no whoami key
        for line in lines:
            parts = line.split()
            if len(parts) == 3 and parts[0] == b"STAT" and parts[1] == b"node_id":
                nid = parts[2].decode()
                return self.names.get(nid, "id" + nid)
        return "?"


async def read_reply(reader):
    """Read one reply up to END; a line starting with ERROR/SERVER_ERROR/CLIENT_ERROR fails."""
    buf = b""
    while not buf.endswith(b"END\r\n"):
        chunk = await reader.read(4096)
        if not chunk:
            raise ConnectionError("closed")
        buf += chunk
        first = buf.split(b"\r\n", 1)[0]
        if first.startswith((b"ERROR", b"SERVER_ERROR", b"CLIENT_ERROR")) and b"\r\n" in buf:
            raise ConnectionError(first.decode(errors="replace")[:40])
    return buf


def describe(exc):
    if isinstance(exc, asyncio.TimeoutError):
        return "timeout"
    if isinstance(exc, OSError) and exc.errno is not None:
        return os.strerror(exc.errno).replace(",", ";")
    return (str(exc) or type(exc).__name__).replace(",", ";")


class Prober:
    def __init__(self, args, ident):
        self.host, self.port = args.vip, args.port
        self.timeout = args.timeout
        self.ident = ident
        self.persist = args.mode == "persist"
        self.conn = None  # persist mode: (reader, writer)
        self.busy = False  # persist mode: a request is in flight
        self.results = []  # (start, end, ok, answer-or-error), monotonic seconds

    async def _fresh(self):
        reader, writer = await asyncio.open_connection(self.host, self.port)
        try:
            writer.write(self.ident.request)
            await writer.drain()
            return self.ident.parse(await read_reply(reader))
        finally:
            writer.close()

    async def _pooled(self):
        if self.conn is None:
            self.conn = await asyncio.open_connection(self.host, self.port)
        reader, writer = self.conn
        writer.write(self.ident.request)
        await writer.drain()
        return self.ident.parse(await read_reply(reader))

    def _drop_pooled(self):
        if self.conn is not None:
            try:
                self.conn[1].close()
            except Exception:
                pass
        self.conn = None

    async def one(self, start):
        try:
            call = self._pooled() if self.persist else self._fresh()
            answer = await asyncio.wait_for(call, self.timeout)
            ok = True
        except Exception as exc:  # every failure is data, never a crash
            ok, answer = False, describe(exc)
            if self.persist:
                self._drop_pooled()
        finally:
            self.busy = False
        self.results.append((start, time.monotonic(), ok, answer))

    def tick(self, tasks):
        if self.persist and self.busy:
            return
        self.busy = True
        task = asyncio.get_running_loop().create_task(self.one(time.monotonic()))
        tasks.add(task)
        task.add_done_callback(tasks.discard)


class Command:
    """A fault or recover command run through the shell, without blocking the probing."""

    def __init__(self, cmd, log_path):
        self.cmd, self.log_path = cmd, log_path
        self.start = self.end = self.rc = self.wall = None

    async def run(self):
        log = open(self.log_path, "ab") if self.log_path else asyncio.subprocess.DEVNULL
        try:
            self.start = time.monotonic()
            self.wall = time.time()
            proc = await asyncio.create_subprocess_shell(
                self.cmd, stdin=asyncio.subprocess.DEVNULL, stdout=log, stderr=asyncio.subprocess.STDOUT
            )
            self.rc = await proc.wait()
            self.end = time.monotonic()
        finally:
            if self.log_path:
                log.close()


class Watch:
    """Follows the results as they complete, to know when the measurement may stop."""

    def __init__(self):
        self.seen = 0  # results already looked at
        self.pre_node = None
        self.event = False  # a failure, or another node answering, after the fault
        self.last_fail = float("-inf")  # start time of the latest failed request
        self.last_ok = float("-inf")

    def fault_started(self, results, at):
        before = [r for r in results if r[0] < at and r[2]]
        self.pre_node = max(before)[3] if before else None

    def update(self, results, fault_at):
        for start, _end, ok, answer in results[self.seen :]:
            if ok:
                self.last_ok = max(self.last_ok, start)
            else:
                self.last_fail = max(self.last_fail, start)
            if fault_at is not None and start >= fault_at:
                if not ok or (self.pre_node is not None and answer != self.pre_node):
                    self.event = True
        self.seen = len(results)

    def quiet(self, since, horizon):
        """Seconds up to `horizon` without a failed request, counted from `since` at the
        earliest; 0 unless a request succeeded after the last failure."""
        ref = max(self.last_fail, since)
        if self.last_ok <= ref:
            return 0.0
        return horizon - ref


async def measure(args, ident):
    prober = Prober(args, ident)
    watch = Watch()
    tasks = set()
    loop = asyncio.get_running_loop()
    t0 = time.monotonic()
    phase = random.uniform(0, args.phase) if args.phase > 0 else 0.0
    fault_at = t0 + args.pre + phase
    fault = Command(args.fault, args.log)
    recover = Command(args.recover, args.log) if args.recover else None
    fault_task = recover_task = None
    next_tick = loop.time()
    ticks = 0
    while True:
        now = time.monotonic()
        if fault_task is None and now >= fault_at:
            watch.fault_started(prober.results, now)
            fault_task = loop.create_task(fault.run())
            await asyncio.sleep(0)  # let it record its start time
        if recover and recover_task is None and fault.start is not None and now >= fault.start + args.recover_after:
            recover_task = loop.create_task(recover.run())
            await asyncio.sleep(0)
        prober.tick(tasks)
        ticks += 1
        if fault.start is not None and ticks % 5 == 0:
            watch.update(prober.results, fault.start)
            elapsed = now - fault.start
            if elapsed >= args.max_after:
                break
            since = fault.start
            ready = fault.end is not None and elapsed >= args.min_after
            # Do not stop before the fault showed (a health check may take seconds to notice);
            # give up waiting for it after --event-within.
            ready = ready and (watch.event or elapsed >= args.event_within)
            if recover:
                ready = ready and recover.end is not None and now - recover.start >= args.min_after_recover
                since = recover.start if recover.start is not None else since
            if ready and watch.quiet(since, now - args.timeout) >= args.settle:
                break
        next_tick += args.interval
        delay = next_tick - loop.time()
        if delay < 0:  # fell behind (a stalled machine): do not burst to catch up
            next_tick = loop.time()
            delay = 0
        await asyncio.sleep(delay)
    if tasks:
        await asyncio.wait(tasks, timeout=args.timeout + 1)
    for t in (fault_task, recover_task):
        if t is not None and not t.done():
            await asyncio.wait_for(t, 30)
    prober._drop_pooled()
    return prober.results, fault, recover, phase


def longest_gap(oks, end):
    """(gap, from) over sorted success start times; open-ended up to `end` after the last."""
    gap, at = 0.0, None
    for a, b in zip(oks, oks[1:]):
        if b - a > gap:
            gap, at = b - a, a
    return gap, at


def analyse(results, fault, recover, phase, args):
    rows = sorted(results)
    f0 = fault.start
    ms = lambda t: None if t is None else round((t - f0) * 1000, 1)
    out = {"label": args.label, "mode": args.mode, "requests": len(rows), "phase_ms": round(phase * 1000, 1)}
    out["fault_cmd_ms"] = round((fault.end - fault.start) * 1000, 1) if fault.end else None
    out["fault_rc"] = fault.rc
    # wall clock of the fault, to line the probes up with daemon logs
    out["fault_at"] = time.strftime("%H:%M:%S", time.localtime(fault.wall)) + f".{int(fault.wall * 1000) % 1000:03d}"
    before = [r for r in rows if r[0] < f0]
    after = [r for r in rows if r[0] >= f0]
    pre_ok = [r for r in before if r[2]]
    out["pre_ok"] = round(len(pre_ok) / len(before), 3) if before else None
    pre_node = pre_ok[-1][3] if pre_ok else None
    out["pre_node"] = pre_node
    end = rows[-1][0] if rows else f0

    # The outage: successes from 1 s before the fault on, plus the last one before that window
    # (a service already down then still has its gap measured from its last answer).
    oks = [r[0] for r in rows if r[2] and r[0] >= f0 - 1.0]
    earlier = [r[0] for r in pre_ok if r[0] < f0 - 1.0]
    if earlier:
        oks.insert(0, earlier[-1])
    fails = [r for r in after if not r[2]]
    recovered = bool(rows) and rows[-1][2]
    gap, gap_from = longest_gap(oks, end)
    if not recovered and oks:
        tail = end - oks[-1]
        if tail > gap:
            gap, gap_from = tail, oks[-1]
    out["gap_ms"] = round(gap * 1000, 1) if oks else None
    out["gap_from_ms"] = ms(gap_from)
    out["fails"] = len(fails)
    out["first_fail_ms"] = ms(fails[0][0]) if fails else None
    out["recovered"] = recovered
    switched = [r for r in after if r[2] and pre_node is not None and r[3] != pre_node]
    out["switch_ms"] = ms(switched[0][0]) if switched else None
    seen = []
    for r in after:
        if r[2] and r[3] not in seen:
            seen.append(r[3])
    out["nodes_after"] = seen
    last = [r for r in rows if r[0] >= end - args.settle and r[2]]
    out["final_nodes"] = sorted({r[3] for r in last})
    errors = {}
    for r in fails:
        errors[r[3]] = errors.get(r[3], 0) + 1
    out["errors"] = errors

    if recover is not None and recover.start is not None:
        r0 = recover.start
        out["recover_ms"] = ms(r0)
        early = [t for t in oks if t < r0]
        later = [t for t in oks if t >= r0]
        gap2, _ = longest_gap(early + later[:1], end)
        out["fault_gap_ms"] = round(gap2 * 1000, 1) if early else None
        hf = [r for r in rows if r[0] >= r0 and not r[2]]
        out["heal_fails"] = len(hf)
        if not hf:
            out["heal_outage_ms"], out["heal_open"] = 0.0, False
        else:
            back = [r[0] for r in rows if r[2] and r[0] > hf[-1][0]]
            stop = back[0] if back else end
            out["heal_outage_ms"] = round((stop - hf[0][0]) * 1000, 1)
            out["heal_open"] = not back
        home = [r for r in rows if r[0] >= r0 and r[2] and r[3] == pre_node]
        out["back_ms"] = ms(home[0][0]) if home else None
    out["end_ms"] = ms(end)
    return out


def write_csv(path, results, f0):
    with open(path, "w") as f:
        f.write("start_ms,latency_ms,ok,answer\n")
        for start, stop, ok, answer in sorted(results):
            f.write(f"{(start - f0) * 1000:.1f},{(stop - start) * 1000:.1f},{int(ok)},{answer}\n")


# ---- table ------------------------------------------------------------------------------------


def fmt_spread(values):
    vals = [v for v in values if v is not None]
    if not vals:
        return "-"
    return f"{statistics.median(vals):.0f} ({min(vals):.0f}-{max(vals):.0f})"


def table(path):
    runs = [json.loads(line) for line in open(path) if line.strip()]
    cases = []
    for r in runs:
        if r["case"] not in cases:
            cases.append(r["case"])
    head = f"{'case':<18} {'ok':>5}  {'outage ms: median (min-max)':<28} {'fails':<14} {'switch ms':<22} notes"
    print(head)
    print("-" * len(head))
    for case in cases:
        rs = [r for r in runs if r["case"] == case]
        good = [r for r in rs if r.get("valid")]
        note = []
        bad = len(rs) - len(good)
        if bad:
            reasons = sorted({r.get("invalid", "?") for r in rs if not r.get("valid")})
            note.append(f"{bad} invalid ({'; '.join(reasons)})")
        outage = [r.get("fault_gap_ms", r.get("gap_ms")) if case == "heal" else r.get("gap_ms") for r in good]
        fails = [r.get("fails") for r in good]
        if case == "heal":
            early = sum(1 for r in good if r.get("switch_ms") is not None and r["switch_ms"] < r.get("recover_ms", 0))
            note.append(f"n2 answered before the heal {early}/{len(good)}")
            note.append("after heal: outage " + fmt_spread([r.get("heal_outage_ms") for r in good]) + " ms")
            note.append("fails " + ",".join(str(r.get("heal_fails")) for r in good))
            opened = sum(1 for r in good if r.get("heal_open"))
            if opened:
                note.append(f"{opened} still failing at the end")
            note.append("VIP 1 s after heal: " + ",".join(r.get("holder_1s", "?") for r in good))
            fails = [r.get("fails", 0) - r.get("heal_fails", 0) for r in good]
        if case == "recover-nopreempt":
            moved = [r for r in good if r.get("back_ms") is not None]
            note.append(f"moved back {len(moved)}/{len(good)}")
            if moved:
                note.append("at " + fmt_spread([r["back_ms"] - r["recover_ms"] for r in moved]) + " ms after restart")
            note.append("VIP at end: " + ",".join(r.get("holder_end", "?") for r in good))
            fails = [r.get("fails", 0) - r.get("heal_fails", 0) for r in good]
            hf = [r.get("heal_fails", 0) for r in good]
            if any(hf):
                note.append("fails after restart " + ",".join(map(str, hf)))
        else:
            if any(r.get("final_nodes") and len(r["final_nodes"]) > 1 for r in good):
                note.append("several nodes answering at the end")
        unrec = sum(1 for r in good if not r.get("recovered", True))
        if unrec:
            note.append(f"{unrec} never recovered")
        print(
            f"{case:<18} {len(good):>2}/{len(rs):<2}  {fmt_spread(outage):<28} "
            f"{fmt_spread(fails):<14} {fmt_spread([r.get('switch_ms') for r in good]):<22} {'; '.join(note)}"
        )


# ---- command line -----------------------------------------------------------------------------


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--vip", required=True)
    p.add_argument("--port", type=int, default=11211)
    p.add_argument("--fault", required=True, help="shell command that injects the fault")
    p.add_argument("--recover", help="shell command run --recover-after s after the fault started")
    p.add_argument("--recover-after", type=float, default=3.0)
    p.add_argument("--mode", choices=("get", "persist"), default="get")
    p.add_argument("--ident", choices=("key", "node_id"), default="key")
    p.add_argument("--key", default="whoami")
    p.add_argument("--node-ids", default="", help="node_id to name map: 1=n1,2=n2")
    p.add_argument("--interval", type=float, default=0.01)
    p.add_argument("--timeout", type=float, default=0.2)
    p.add_argument("--pre", type=float, default=2.0, help="probe this long before the fault")
    p.add_argument("--phase", type=float, default=1.0, help="plus a random delay in [0, PHASE)")
    p.add_argument("--settle", type=float, default=1.5)
    p.add_argument("--min-after", type=float, default=0.0)
    p.add_argument("--min-after-recover", type=float, default=2.0)
    p.add_argument("--max-after", type=float, default=60.0)
    p.add_argument("--event-within", type=float, default=10.0,
                   help="stop waiting for a failure or a node change after this long")
    p.add_argument("--netns", help="network namespace to probe from (e.g. mhl-c)")
    p.add_argument("--csv", help="write every request here")
    p.add_argument("--log", help="append the fault/recover commands' output here")
    p.add_argument("--label", default="")
    p.add_argument("--seed", type=int)
    return p.parse_args(argv)


def main(argv):
    if argv[:1] == ["table"]:
        if len(argv) != 2:
            sys.exit("usage: failover_probe.py table RUNS.jsonl")
        table(argv[1])
        return 0
    args = parse_args(argv)
    if args.seed is not None:
        random.seed(args.seed)
    if args.netns:
        enter_netns(args.netns)
    node_ids = dict(item.split("=", 1) for item in args.node_ids.split(",") if item)
    ident = Ident(args.ident, args.key, node_ids)
    results, fault, recover, phase = asyncio.run(measure(args, ident))
    if args.csv:
        write_csv(args.csv, results, fault.start)
    summary = analyse(results, fault, recover, phase, args)
    print(json.dumps(summary), flush=True)
    return 0 if summary["pre_ok"] and summary["pre_ok"] >= 0.9 else 3


if __name__ == "__main__":
    try:
        sys.exit(main(sys.argv[1:]))
    except KeyboardInterrupt:
        sys.exit(130)
