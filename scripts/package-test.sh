#!/usr/bin/env bash
# Builds the Debian package (cargo-deb, [package.metadata.deb] in crates/memha/Cargo.toml),
# installs it with dpkg, checks what it installed, and removes it again (purge). Run by
# scripts/test.sh as root; it changes the system (a package, the memha system user), so it
# refuses to run otherwise, and leaves alone a machine where memha is already installed.
#
# Usage: scripts/package-test.sh      (as root, on Debian or a derivative)
set -euo pipefail
cd "$(dirname "$0")/.."

skip() {
  echo "package test skipped: $*"
  exit 0
}
[[ $(id -u) -eq 0 ]] || skip "it installs a package; run it as root"
command -v dpkg >/dev/null && command -v apt-get >/dev/null || skip "no dpkg/apt-get (not Debian)"
if dpkg-query -W -f='${Status}' memha 2>/dev/null | grep -q 'install ok'; then
  skip "a memha package is already installed here; not replacing it"
fi

start=$SECONDS
step() { echo "== package test [$((SECONDS - start))s]: $*"; }

if ! cargo deb --version >/dev/null 2>&1; then
  step "installing cargo-deb"
  cargo install cargo-deb --locked --version '^3' --quiet
fi

step "building the package ($(cargo deb --version))"
out=target/package-test
rm -rf "$out"
cargo deb -p memha --locked --quiet -o "$out/" >/dev/null
deb=$(ls "$out"/memha_*.deb)
echo "$deb: $(du -h "$deb" | cut -f1)"

installed=false
cleanup() {
  if $installed; then
    step "removing the package"
    dpkg --purge memha >/dev/null || true
  fi
}
trap cleanup EXIT

step "installing $deb"
installed=true
if ! dpkg -i "$deb" >/dev/null 2>&1; then
  # Missing dependencies (adduser on a minimal system): let apt bring them and finish.
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -f -y -qq >/dev/null 2>&1 || {
    apt-get update -qq && apt-get install -f -y -qq >/dev/null
  }
fi
dpkg-query -W -f='${Status}\n' memha | grep -q 'install ok installed' || {
  echo "memha is not installed after dpkg -i:" >&2
  dpkg -i "$deb" >&2 || true
  exit 1
}

fail() {
  echo "package test FAILED: $*" >&2
  exit 1
}

step "checking the installed files"
for f in /usr/bin/memha /etc/memha/memha.toml /usr/share/man/man1/memha.1.gz \
  /usr/share/doc/memha/memha-two-node.toml /usr/share/doc/memha/CONFIG.md \
  /usr/lib/systemd/system/memha.service; do
  [[ -e $f ]] || fail "$f is missing"
done
grep -qx /etc/memha/memha.toml /var/lib/dpkg/info/memha.conffiles ||
  fail "/etc/memha/memha.toml is not a conffile"
getent passwd memha >/dev/null || fail "the postinst did not create the memha user"
/usr/bin/memha --version
/usr/bin/memha check-config /etc/memha/memha.toml
if command -v systemd-analyze >/dev/null; then
  systemd-analyze verify --man=no /usr/lib/systemd/system/memha.service ||
    fail "systemd-analyze verify memha.service"
fi

# The packaged config starts as is, as the unit's user (another port: 11211 may be taken).
step "starting /usr/bin/memha --config /etc/memha/memha.toml as memha"
tmp=$(mktemp -d)
chmod 755 "$tmp"
MEMCACHED_PORT_FILENAME=$tmp/ports /usr/bin/memha --config /etc/memha/memha.toml -p 0 -u memha \
  2>"$tmp/log" &
pid=$!
for _ in $(seq 100); do
  [[ -s $tmp/ports ]] && break
  kill -0 "$pid" 2>/dev/null || break
  sleep 0.1
done
port=$(awk '/^TCP/ {print $3; exit}' "$tmp/ports" 2>/dev/null || true)
[[ -n $port ]] || { cat "$tmp/log" >&2; fail "memha did not start with the packaged config"; }
reply=
exec 3<>"/dev/tcp/127.0.0.1/$port"
printf 'version\r\n' >&3
read -r -t 5 reply <&3 || true
exec 3<&-
kill "$pid"
wait "$pid" || true
[[ $reply == VERSION* ]] || fail "version answered ${reply:-nothing}"
echo "served on 127.0.0.1:$port: ${reply%$'\r'}"
rm -rf "$tmp"

# Under a running systemd (a VM, not a container) the postinst started the unit.
if [[ -d /run/systemd/system ]] && command -v systemctl >/dev/null; then
  step "checking memha.service"
  systemctl is-active --quiet memha ||
    { systemctl status memha --no-pager >&2 || true; fail "memha.service is not active"; }
  systemctl reload memha || fail "systemctl reload memha"
  systemctl is-active --quiet memha || fail "memha.service stopped after a reload"
fi

step "removing the package"
dpkg --purge memha >/dev/null
installed=false
[[ ! -e /usr/bin/memha && ! -e /etc/memha/memha.toml ]] || fail "files left after dpkg --purge"
step "ok"
