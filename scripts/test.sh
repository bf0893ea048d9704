#!/usr/bin/env bash
# The whole test suite, from a fresh machine: the README's test command and what CI runs.
#
#   scripts/test.sh            everything
#
# It installs what is missing (Debian packages, when run as root), starts every
# server the tests need on free loopback ports in a temporary directory, runs
# the checks, and stops the servers by PID on exit. Under CI (CI=true or CI=1;
# .ci/run sets it) nothing is skipped: a server, tool or emulator that is missing
# fails the test that needs it, and the fuzzing smoke run is required.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)

step() { printf '\n==== %s\n' "$*"; }

work=$(mktemp -d "${TMPDIR:-/tmp}/vishnu-test.XXXXXX")
chmod 755 "$work"   # the postgres user must reach its data directory below
pids=()
cleanup() {
  local rc=$?
  for pid in "${pids[@]:-}"; do
    [ -n "$pid" ] && kill "$pid" 2>/dev/null || true
  done
  for svc in "${services[@]:-}"; do
    [ -n "$svc" ] && bash "scripts/services/$svc.sh" stop "$work/services" >/dev/null 2>&1 || true
  done
  rm -rf "$work"
  exit $rc
}
trap cleanup EXIT INT TERM
services=()

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

wait_http() { # url
  for _ in $(seq 1 200); do
    if python3 -c 'import sys,urllib.request; urllib.request.urlopen(sys.argv[1], timeout=1)' "$1" 2>/dev/null; then return 0; fi
    sleep 0.1
  done
  echo "timed out waiting for $1" >&2
  return 1
}

step "format and lints"
cargo fmt --all -- --check
cargo clippy --workspace --all-targets --all-features -- -D warnings
RUSTDOCFLAGS="-D warnings" cargo doc --workspace --no-deps --all-features --quiet

step "servers (free loopback ports, temporary directories)"
mkdir -p "$work/services"
start_service() { # name
  bash "scripts/services/$1.sh" start "$work/services"
  services+=("$1")
  # shellcheck disable=SC1090
  source "$work/services/$1.env"
}
for svc in redis memcached postgres mariadb; do start_service "$svc"; done

step "Rust tests"
cargo test --workspace --all-features

step "demo route checks"
cargo build --quiet --example demo --example demo_actix --example load --all-features
# Each demo runs twice per store: as is, and renewing ids every second with a
# 2-second grace window (check_demo.py --renewal checks the renewal too).
demo_check() { # store-url command...
  local store=$1; shift
  local flags=(); [ "$store" = cookie ] && flags=(--client-side-store)
  case "$1" in ./target/debug/examples/*) flags+=(--metrics) ;; esac   # the Rust demos serve GET /metrics
  demo_run "$store" "" "${flags[@]}" -- "$@"
  [ "$store" = cookie ] || demo_run "$store" "--renew-every 1 --grace 2" --renewal 2 -- "$@"
}
demo_run() { # store-url "demo flags" [check flags...] -- command...
  local store=$1 demo_flags=$2; shift 2
  local checks=(); while [ "$1" != -- ]; do checks+=("$1"); shift; done; shift
  local port; port=$(free_port)
  # shellcheck disable=SC2086
  "$@" --port "$port" --store "$store" $demo_flags >"$work/demo-$port.log" 2>&1 &
  local pid=$!
  pids+=("$pid")
  wait_http "http://127.0.0.1:$port/public"
  echo "-- $* --store ${store%%://*}://… $demo_flags"
  python3 scripts/check_demo.py "http://127.0.0.1:$port" "${checks[@]}"
  kill "$pid"
  wait "$pid" 2>/dev/null || true
}
# The same engine behind two fronts: the axum demo and the actix-web one.
for demo in demo demo_actix; do
  demo_check memory "./target/debug/examples/$demo"
  demo_check cookie "./target/debug/examples/$demo"
  demo_check "sqlite://$work/$demo.db" "./target/debug/examples/$demo"
  demo_check "$VISHNU_POSTGRES_URL" "./target/debug/examples/$demo"
  demo_check "$VISHNU_MYSQL_URL" "./target/debug/examples/$demo"
  demo_check "$VISHNU_REDIS_URL" "./target/debug/examples/$demo"
  demo_check "$VISHNU_REDIS_CLUSTER_URL" "./target/debug/examples/$demo"
  demo_check "$VISHNU_MEMCACHED_URL" "./target/debug/examples/$demo"
done

step "Python package (wheel built with maturin, tested with pytest)"
venv="$root/target/venv"
[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
"$venv/bin/pip" install --quiet --disable-pip-version-check maturin pytest gunicorn waitress \
  appengine-python-standard google-cloud-datastore cryptography \
  "flask==3.1.2" "django==5.2.8" "starlette==1.10.0" "fastapi>=0.120" httpx httpx2 python-multipart uvicorn
# The codec's and the store key's known answers, recomputed by an independent implementation.
"$venv/bin/python" scripts/kat_crosscheck.py
rm -rf "$work/wheels"
"$venv/bin/maturin" build --quiet --profile dev --out "$work/wheels"
"$venv/bin/pip" install --quiet --disable-pip-version-check --force-reinstall --no-deps "$work"/wheels/vishnu-*.whl
export VISHNU_RUST_DEMO="$root/target/debug/examples/demo"   # for the shared-session test
(cd crates/vishnu-python/tests && "$venv/bin/python" -m pytest -q -p no:cacheprovider)
demo_check memory "$venv/bin/python" -m vishnu.demo
demo_check cookie "$venv/bin/python" -m vishnu.demo
demo_check "sqlite://$work/pydemo.db" "$venv/bin/python" -m vishnu.demo
demo_check "$VISHNU_POSTGRES_URL" "$venv/bin/python" -m vishnu.demo
demo_check "$VISHNU_REDIS_URL" "$venv/bin/python" -m vishnu.demo
demo_check "$VISHNU_MEMCACHED_URL" "$venv/bin/python" -m vishnu.demo

step "framework fronts: Flask 3.1.2's, Django 5.2.8's and Starlette 1.10.0's own session tests (default store, then Redis)"
for framework in flask django starlette; do
  VENV="$venv" WORK="$work/suite-$framework" bash "scripts/frameworks/$framework.sh"
done

step "framework fronts under real servers: gunicorn (Flask, Django), uvicorn (FastAPI), several workers, Redis"
VENV="$venv" WORK="$work/framework-servers" RUST_DEMO="$root/target/debug/examples/demo" \
  bash scripts/frameworks/servers.sh

step "fuzzing: a 30-second smoke run of each target (nightly, or stable with RUSTC_BOOTSTRAP=1)"
CARGO_BUILD_JOBS=2 scripts/fuzz.sh all 30

step "end to end: a real browser, store faults, load"
export VISHNU_DEMO_BIN="$root/target/debug/examples/demo" VISHNU_LOAD_BIN="$root/target/debug/examples/load"
export VISHNU_DEMO_ACTIX_BIN="$root/target/debug/examples/demo_actix"
bash scripts/e2e/install-browser.sh
node tests/e2e/browser.mjs
python3 tests/e2e/faults.py
python3 tests/e2e/load.py

step "all checks passed"
