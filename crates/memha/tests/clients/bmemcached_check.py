"""Drive memha with python-binary-memcached (bmemcached, binary protocol); check every reply.

Usage: python bmemcached_check.py PORT MODE
MODE is the server's -B setting: "binary" or "auto". Under "auto" the script also reads
what the binary client wrote over a raw text-protocol socket (same server, other
protocol); under "binary" it checks that the text protocol is refused.
Prints "ok: N checks" at the end; exits non-zero at the first wrong reply.
"""

import socket
import struct
import sys

import bmemcached
from bmemcached.exceptions import MemcachedException

PORT = int(sys.argv[1])
MODE = sys.argv[2]
CHECKS = 0


def check(cond, what):
    global CHECKS
    CHECKS += 1
    if not cond:
        print(f"FAIL: {what}", flush=True)
        sys.exit(1)


def eq(got, want, what):
    check(got == want, f"{what}: got {got!r}, expected {want!r}")


c = bmemcached.Client((f"127.0.0.1:{PORT}",), socket_timeout=10)
server = next(iter(c.servers))  # the protocol object (for its FLAGS)

# flush_all / set / get (str values are stored as UTF-8 with flags 0; bytes with the
# client's "binary" flag; ints with its "integer" flag)
eq(c.flush_all(), True, "flush_all")
eq(c.set("k1", "v1"), True, "set str")
eq(c.get("k1"), "v1", "get str")
eq(c.get("missing"), None, "get missing")
eq(c.set("kb", b"\x00\r\nEND\r\n\xff"), True, "set bytes with \\r\\n inside")
eq(c.get("kb"), b"\x00\r\nEND\r\n\xff", "get bytes")
eq(c.set("ki", 42), True, "set int")
eq(c.get("ki"), 42, "get int (flags round trip)")
eq(c.set("kobj", {"a": [1, 2]}), True, "set pickled object")
eq(c.get("kobj"), {"a": [1, 2]}, "get pickled object")
big = bytes((i * 13 + 1) % 256 for i in range(500 * 1024))
eq(c.set("big", big), True, "set 500 KB")
eq(c.get("big"), big, "get 500 KB")
k250 = "k" * 250
eq(c.set(k250, "long"), True, "set 250-byte key")
eq(c.get(k250), "long", "get 250-byte key")
print("set/get ok", flush=True)

# get_multi (pipelined getkq + noop)
eq(c.get_multi(["k1", "kb", "ki", "nope", k250]),
   {"k1": "v1", "kb": b"\x00\r\nEND\r\n\xff", "ki": 42, k250: "long"}, "get_multi")
eq(c.get_multi(["nope1", "nope2"]), {}, "get_multi all missing")
eq(c.set_multi({"m1": "a", "m2": "b", "m3": "c"}), [], "set_multi (no failed keys)")
eq(c.get_multi(["m1", "m2", "m3"]), {"m1": "a", "m2": "b", "m3": "c"}, "get_multi after set_multi")
print("get_multi ok", flush=True)

# add / replace / delete
eq(c.add("k1", "x"), False, "add existing (KEY_EEXISTS)")
eq(c.add("a1", "added"), True, "add new")
eq(c.get("a1"), "added", "get added")
eq(c.replace("a1", "replaced"), True, "replace existing")
eq(c.replace("r-missing", "x"), False, "replace missing (KEY_ENOENT)")
eq(c.get("r-missing"), None, "replace did not create")
eq(c.get("a1"), "replaced", "get replaced")
eq(c.delete("a1"), True, "delete existing")
eq(c.get("a1"), None, "deleted key gone")
eq(c.delete("a1"), True, "delete missing (bmemcached reports NOT_FOUND as True)")
eq(c.delete_multi(["m1", "m2"]), True, "delete_multi")
eq(c.get_multi(["m1", "m2", "m3"]), {"m3": "c"}, "delete_multi removed keys")
print("add/replace/delete ok", flush=True)

# cas: gets / cas, set with cas, delete with cas
value, cas = c.gets("k1")
eq(value, "v1", "gets value")
check(isinstance(cas, int) and cas > 0, f"gets cas {cas!r}")
eq(c.cas("k1", "v1-new", cas), True, "cas with current token")
eq(c.get("k1"), "v1-new", "get after cas")
eq(c.cas("k1", "v1-stale", cas), False, "cas with stale token (KEY_EEXISTS)")
eq(c.get("k1"), "v1-new", "value unchanged by failed cas")
_, cas2 = c.gets("k1")
check(cas2 != cas, "cas changes on write")
eq(c.get("k1", get_cas=True), ("v1-new", cas2), "get(get_cas=True)")
eq(c.delete("k1", cas=cas), False, "delete with stale cas (KEY_EEXISTS)")
eq(c.get("k1"), "v1-new", "stale-cas delete kept the key")
eq(c.delete("k1", cas=cas2), True, "delete with current cas")
eq(c.get("k1"), None, "current-cas delete removed the key")
eq(c.gets("k1"), (None, None), "gets missing")
print("cas ok", flush=True)

# incr / decr with initial values (binary protocol extras: delta, initial, expiration)
eq(c.incr("n", 5, default=10, time=0), 10, "incr missing creates with initial value")
eq(c.incr("n", 5, default=10, time=0), 15, "incr existing")
eq(c.decr("n", 3, default=0, time=0), 12, "decr existing")
eq(c.decr("n", 100, default=0, time=0), 0, "decr clamps at 0")
eq(c.decr("d", 1, default=7, time=0), 7, "decr missing creates with initial value")
eq(c.get("d"), "7", "counter readable as a value")
try:
    c.incr("no-create", 1, default=3, time=0xFFFFFFFF)  # expiration 0xffffffff: do not create
    check(False, "incr with expiration 0xffffffff on a missing key must fail")
except MemcachedException as e:
    eq(e.code, 1, "incr no-create status KEY_ENOENT")
eq(c.get("no-create"), None, "no-create incr created nothing")
eq(c.set("nn", "18446744073709551615"), True, "set max u64")
eq(c.incr("nn", 1, default=0, time=0), 0, "incr wraps at 2^64")
eq(c.set("txt", "abc"), True, "set non-numeric")
try:
    c.incr("txt", 1, default=0, time=0)
    check(False, "incr on non-numeric must fail")
except MemcachedException as e:
    eq(e.code, 6, "incr non-numeric status DELTA_BADVAL")
eq(c.incr("n", 4), 4, "client incr")
eq(c.decr("n", 1), 3, "client decr")
print("incr/decr ok", flush=True)

# stats
before = c.stats()[f"127.0.0.1:{PORT}"]
for i in range(3):
    c.set(f"s{i}", "x")
c.get("s0")
c.get("s-missing")
after = c.stats()[f"127.0.0.1:{PORT}"]
num = lambda d, k: int(d[k])
eq(num(after, "cmd_set") - num(before, "cmd_set"), 3, "stats cmd_set delta")
eq(num(after, "total_items") - num(before, "total_items"), 3, "stats total_items delta")
eq(num(after, "curr_items") - num(before, "curr_items"), 3, "stats curr_items delta")
eq(num(after, "get_hits") - num(before, "get_hits"), 1, "stats get_hits delta")
eq(num(after, "get_misses") - num(before, "get_misses"), 1, "stats get_misses delta")
check(num(after, "pid") > 0, "stats pid")
check(after["version"].startswith(b"1."), f"stats version {after['version']!r}")
settings = c.stats("settings")[f"127.0.0.1:{PORT}"]
eq(settings.get("binding_protocol"), {"binary": b"binary", "auto": b"auto-negotiate"}[MODE],
   "stats settings binding_protocol")
print("stats ok", flush=True)

# flush_all empties the cache
eq(c.flush_all(), True, "flush_all")
eq(c.get_multi(["s0", "s1", "s2", "kb", "big", k250]), {}, "flush_all removed everything")
print("flush_all ok", flush=True)

# The other protocol on the same server.
c.set("cross", b"from-binary")
raw = socket.create_connection(("127.0.0.1", PORT), timeout=10)
raw.sendall(b"get cross\r\n")
buf = b""
try:
    while not (buf.endswith(b"END\r\n") or buf.endswith(b"ERROR\r\n")):
        part = raw.recv(4096)
        if not part:
            break
        buf += part
except socket.timeout:
    pass
if MODE == "auto":
    flags = server.FLAGS["binary"]
    eq(buf, b"VALUE cross %d 11\r\nfrom-binary\r\nEND\r\n" % flags, "text get of binary-set item")
else:
    check(not buf.startswith(b"VALUE"), f"-B binary must not serve text: {buf!r}")
raw.close()
print(f"text protocol under -B {MODE} ok", flush=True)

print(f"ok: {CHECKS} checks", flush=True)
