#!/usr/bin/env bash
# Runs every test of the workspace: unit tests, property tests, and the integration tests
# that start the real memha binary on loopback. This is the command CI runs (.ci/run).
#
# Usage: scripts/test.sh [extra cargo test args]
set -euo pipefail
cd "$(dirname "$0")/.."

# Tools the tests need; installed when missing (CI runs as root on a fresh Debian machine).
# need_pkgs are required. want_pkgs are the real memcached clients and proxy that
# crates/memha/tests/clients.rs drives (libmemcached's tools, twemproxy, Python for the
# pymemcache and python-binary-memcached venv): without them, and not root, those tests
# print why they skip.
need_pkgs=()
want_pkgs=()
can_install=false
[[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null && can_install=true
have() { command -v "$1" >/dev/null || [[ -x /usr/sbin/$1 ]]; }
command -v cc >/dev/null || need_pkgs+=(gcc)
have memcapable || have memccapable || want_pkgs+=(libmemcached-tools)
have nutcracker || want_pkgs+=(nutcracker)
# The failover tests (crates/memha/tests/failover.rs, root only) build hosts in network
# namespaces with ip/tc and check interoperability with keepalived.
{ have ip && have tc; } || want_pkgs+=(iproute2)
have keepalived || want_pkgs+=(keepalived)
pyenv=target/pyenv
py_clients_ok() {
  [[ -x $pyenv/bin/python3 ]] && "$pyenv/bin/python3" -c 'import pymemcache, bmemcached' 2>/dev/null
}
system_python() { [[ -x /usr/bin/python3 ]] && echo /usr/bin/python3 || command -v python3 || true; }
if ! py_clients_ok; then
  py=$(system_python)
  [[ -n $py ]] && "$py" -c 'import venv, ensurepip' 2>/dev/null || want_pkgs+=(python3 python3-venv)
fi
if ((${#need_pkgs[@]} + ${#want_pkgs[@]})); then
  if $can_install; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_pkgs[@]}" "${want_pkgs[@]}" >/dev/null
    # The tests run their own keepalived in namespaces; the packaged service must not run.
    command -v systemctl >/dev/null && systemctl disable --now keepalived >/dev/null 2>&1 || true
  elif ((${#need_pkgs[@]})); then
    echo "missing: ${need_pkgs[*]} (install them, or run as root to let this script do it)" >&2
    exit 1
  else
    echo "note: missing ${want_pkgs[*]}; the client tests skip (run as root to install them)" >&2
  fi
fi
# The Python clients go into a venv under target/, leaving the system Python alone.
if ! py_clients_ok; then
  py=$(system_python)
  rm -rf "$pyenv"
  if [[ -n $py ]] && "$py" -m venv "$pyenv" >/dev/null 2>&1 &&
    "$pyenv/bin/python3" -m pip install -q --disable-pip-version-check \
      pymemcache==4.0.0 python-binary-memcached==0.33.0; then
    :
  elif $can_install; then
    echo "could not set up the Python client venv in $pyenv" >&2
    exit 1
  else
    echo "note: no Python client venv in $pyenv; the pymemcache/bmemcached tests skip" >&2
  fi
fi
export MEMHA_TEST_PYTHON="${MEMHA_TEST_PYTHON:-$PWD/$pyenv/bin/python3}"

# Many tests open hundreds of connections.
ulimit -n 65536 2>/dev/null || ulimit -n 4096 2>/dev/null || true

cargo test --workspace --locked "$@"

# The Debian package: build it, install it, check it, remove it (it installs into the system,
# so only as root, as CI runs; MEMHA_SKIP_PACKAGE_TEST=1 skips it).
if [[ -n ${MEMHA_SKIP_PACKAGE_TEST:-} ]]; then
  echo "package test skipped: MEMHA_SKIP_PACKAGE_TEST is set"
elif [[ $(id -u) -ne 0 ]]; then
  echo "package test skipped: not root (scripts/package-test.sh installs a package)"
else
  scripts/package-test.sh
fi
