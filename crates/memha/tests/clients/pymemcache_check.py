"""Drive memha with pymemcache (text protocol) and check every reply.

Usage: python pymemcache_check.py PORT
Prints one line per group of checks and "ok: N checks" at the end; exits non-zero (with
the failing check) as soon as a reply is wrong.
"""

import sys
import time

from pymemcache.client.base import Client
from pymemcache.exceptions import MemcacheClientError, MemcacheIllegalInputError

PORT = int(sys.argv[1])
CHECKS = 0


def check(cond, what):
    global CHECKS
    CHECKS += 1
    if not cond:
        print(f"FAIL: {what}", flush=True)
        sys.exit(1)


def eq(got, want, what):
    check(got == want, f"{what}: got {got!r}, expected {want!r}")


# default_noreply=False: every storage command waits for and returns the server's reply.
c = Client(("127.0.0.1", PORT), default_noreply=False, connect_timeout=5, timeout=10)

# version / flush_all
version = c.version()
check(isinstance(version, bytes) and len(version) > 0, f"version {version!r}")
eq(c.flush_all(), True, "flush_all")
print(f"version {version.decode()}", flush=True)

# set / get / get_many
eq(c.set("k1", b"v1"), True, "set k1")
eq(c.get("k1"), b"v1", "get k1")
eq(c.get("missing"), None, "get missing")
eq(c.get("missing", default=b"d"), b"d", "get missing with default")
eq(c.set("k2", b"v2", flags=7), True, "set k2 flags 7")
eq(c.set("k3", b""), True, "set k3 empty")
eq(c.get_many(["k1", "k2", "k3", "nope"]), {"k1": b"v1", "k2": b"v2", "k3": b""}, "get_many")
eq(c.set_many({"m1": b"a", "m2": b"b"}), [], "set_many (no failed keys)")
eq(c.get_many(["m1", "m2"]), {"m1": b"a", "m2": b"b"}, "get_many after set_many")
# Flags come back as stored: read them with a raw gets.
raw = c.raw_command(b"gets k2", b"END\r\n")
check(raw.startswith(b"VALUE k2 7 2 "), f"raw gets k2 keeps flags 7: {raw!r}")
print("set/get/get_many ok", flush=True)

# gets / cas
value, cas = c.gets("k1")
eq(value, b"v1", "gets value")
check(isinstance(cas, bytes) and cas.isdigit(), f"gets cas token {cas!r}")
eq(c.cas("k1", b"v1-new", cas), True, "cas with current token")
eq(c.get("k1"), b"v1-new", "get after cas")
eq(c.cas("k1", b"v1-stale", cas), False, "cas with stale token (EXISTS)")
eq(c.get("k1"), b"v1-new", "value unchanged after failed cas")
eq(c.cas("never-set", b"x", b"1"), None, "cas on missing key (NOT_FOUND)")
_, cas2 = c.gets("k1")
check(cas2 != cas, f"cas token changes on write ({cas!r} -> {cas2!r})")
many = c.gets_many(["k1", "k2", "nope"])
eq(sorted(many), ["k1", "k2"], "gets_many keys")
eq(many["k1"], (b"v1-new", cas2), "gets_many k1")
print("gets/cas ok", flush=True)

# add / replace / append / prepend
eq(c.add("k1", b"x"), False, "add existing (NOT_STORED)")
eq(c.add("a1", b"added"), True, "add new")
eq(c.get("a1"), b"added", "get added")
eq(c.replace("a1", b"replaced"), True, "replace existing")
eq(c.replace("r-missing", b"x"), False, "replace missing (NOT_STORED)")
eq(c.get("r-missing"), None, "replace did not create")
eq(c.append("a1", b"-tail"), True, "append")
eq(c.prepend("a1", b"head-"), True, "prepend")
eq(c.get("a1"), b"head-replaced-tail", "after append/prepend")
eq(c.append("ap-missing", b"x"), False, "append missing (NOT_STORED)")
eq(c.prepend("ap-missing", b"x"), False, "prepend missing (NOT_STORED)")
print("add/replace/append/prepend ok", flush=True)

# incr / decr
eq(c.set("n", b"10"), True, "set n")
eq(c.incr("n", 5), 15, "incr 5")
eq(c.decr("n", 3), 12, "decr 3")
eq(c.decr("n", 100), 0, "decr below zero clamps to 0")
eq(c.set("n", b"18446744073709551615"), True, "set n max u64")
eq(c.incr("n", 1), 0, "incr wraps at 2^64")
eq(c.incr("n-missing", 1), None, "incr missing (NOT_FOUND)")
eq(c.decr("n-missing", 1), None, "decr missing (NOT_FOUND)")
eq(c.set("n", b"abc"), True, "set non-numeric")
try:
    c.incr("n", 1)
    check(False, "incr on non-numeric value must fail")
except MemcacheClientError as e:
    check(b"non-numeric" in str(e).encode() or "non-numeric" in str(e), f"incr error text {e!r}")
eq(c.set("n", b"7"), True, "set n 7")
eq(c.incr("n", 3), 10, "incr 7+3")
eq(c.get("n"), b"10", "incr result stored as text")
print("incr/decr ok", flush=True)

# delete
eq(c.delete("k3"), True, "delete existing")
eq(c.get("k3"), None, "deleted key gone")
eq(c.delete("k3"), False, "delete missing (NOT_FOUND)")
eq(c.delete_many(["m1", "m2", "none"]), True, "delete_many")
eq(c.get_many(["m1", "m2"]), {}, "delete_many removed keys")
print("delete ok", flush=True)

# touch and expiry
eq(c.set("t", b"tv", expire=100), True, "set t with ttl")
eq(c.touch("t", 100), True, "touch existing (TOUCHED)")
eq(c.touch("t-missing", 100), False, "touch missing (NOT_FOUND)")
eq(c.touch("t", -1), True, "touch to a negative ttl")
eq(c.get("t"), None, "negative ttl expires at once")
eq(c.set("e", b"ev", expire=1), True, "set with 1 s ttl")
eq(c.set("e-keep", b"kv", expire=0), True, "set without ttl")
eq(c.set("e-touch", b"tv", expire=1), True, "set e-touch with 1 s ttl")
eq(c.touch("e-touch", 0), True, "touch e-touch to no ttl")
eq(c.get("e"), b"ev", "1 s ttl item readable at once")
time.sleep(2.2)
eq(c.get("e"), None, "1 s ttl item gone after 2.2 s")
eq(c.get("e-keep"), b"kv", "item without ttl still there")
eq(c.get("e-touch"), b"tv", "touched to no ttl still there")
print("touch/expiry ok", flush=True)

# noreply variants: the client does not wait; a following request checks the effect and
# would receive a stray reply if the server sent one.
eq(c.set("nr", b"1", noreply=True), True, "set noreply")
eq(c.add("nr", b"2", noreply=True), True, "add noreply (NOT_STORED silenced)")
eq(c.add("nr-add", b"a", noreply=True), True, "add noreply new")
eq(c.replace("nr", b"3", noreply=True), True, "replace noreply")
eq(c.append("nr", b"4", noreply=True), True, "append noreply")
eq(c.prepend("nr", b"5", noreply=True), True, "prepend noreply")
eq(c.get("nr"), b"534", "effect of noreply storage commands")
eq(c.get("nr-add"), b"a", "add noreply stored")
_, nrcas = c.gets("nr")
eq(c.cas("nr", b"99", nrcas, noreply=True), True, "cas noreply")
eq(c.cas("nr", b"100", nrcas, noreply=True), True, "cas noreply stale (silenced)")
eq(c.get("nr"), b"99", "cas noreply effect")
eq(c.incr("nr", 1, noreply=True), None, "incr noreply")
eq(c.decr("nr", 10, noreply=True), None, "decr noreply")
# memcached decrements in place and pads with spaces ("100" - 10 = "90 "); memha trims.
check(c.get("nr") in (b"90", b"90 "), "incr/decr noreply effect")
eq(c.touch("nr", 100, noreply=True), True, "touch noreply")
eq(c.delete("nr", noreply=True), True, "delete noreply")
eq(c.delete("nr", noreply=True), True, "delete noreply missing")
eq(c.get("nr"), None, "delete noreply effect")
eq(c.version(), version, "connection still in step after noreply commands")
eq(c.flush_all(noreply=True), True, "flush_all noreply")
eq(c.get_many(["k1", "k2", "a1", "nr-add"]), {}, "flush_all noreply emptied the cache")
print("noreply ok", flush=True)

# large and binary-safe values
big = bytes((i * 7 + 3) % 256 for i in range(500 * 1024))
eq(c.set("big", big), True, "set 500 KB value")
got = c.get("big")
check(got == big, f"500 KB value round trip (got {len(got or b'')} bytes)")
tricky = b"line1\r\nEND\r\nVALUE x 0 1\r\n\x00\xff\r\n"
eq(c.set("bin", tricky), True, "set value with \\r\\n inside")
eq(c.get("bin"), tricky, "binary-safe value round trip")
eq(c.get_many(["bin", "big"]), {"bin": tricky, "big": big}, "get_many of both")
eq(c.append("bin", b"\r\n"), True, "append \\r\\n")
eq(c.get("bin"), tricky + b"\r\n", "after append \\r\\n")
print("large/binary values ok", flush=True)

# key lengths: 250 bytes is the limit; pymemcache refuses 251 before sending.
k250 = "k" * 250
eq(c.set(k250, b"long"), True, "set 250-byte key")
eq(c.get(k250), b"long", "get 250-byte key")
eq(c.get_many([k250, "big"])[k250], b"long", "get_many with 250-byte key")
eq(c.delete(k250), True, "delete 250-byte key")
try:
    c.set("k" * 251, b"x")
    check(False, "251-byte key must be refused")
except MemcacheIllegalInputError as e:
    check("too long" in str(e).lower(), f"251-byte key error {e!r}")
eq(c.version(), version, "still connected after refused key")
print("key length ok", flush=True)

# stats: counters move by exactly what this script does. (After flush_all, curr_items
# still counts flushed items until they are touched, as in memcached, so use deltas.)
stats_before = c.stats()
for i in range(5):
    c.set(f"s{i}", b"x")
c.get("s0")
c.get("s-missing")
stats = c.stats()
eq(stats[b"curr_items"] - stats_before[b"curr_items"], 5, "stats curr_items delta")
eq(stats[b"total_items"] - stats_before[b"total_items"], 5, "stats total_items delta")
eq(stats[b"cmd_set"] - stats_before[b"cmd_set"], 5, "stats cmd_set delta")
eq(stats[b"get_hits"] - stats_before[b"get_hits"], 1, "stats get_hits delta")
eq(stats[b"get_misses"] - stats_before[b"get_misses"], 1, "stats get_misses delta")
check(stats[b"version"] in (version, version.decode()), f"stats version {stats[b'version']!r}")
check(stats[b"pid"] > 0 and stats[b"uptime"] >= 0, "stats pid/uptime")
settings = c.stats("settings")
eq(settings.get(b"item_size_max"), 1024 * 1024, "stats settings item_size_max")
print("stats ok", flush=True)

c.close()
print(f"ok: {CHECKS} checks", flush=True)
