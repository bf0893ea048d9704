#!/usr/bin/env bash
# Benchmarks vishnu against its peers in one run, on this machine.
#
#   scripts/bench.sh            full run
#   scripts/bench.sh --quick    the same rows with fewer iterations (a few minutes)
#
# Starts its own servers (Redis, PostgreSQL) on free loopback ports, builds
# everything in release mode, and writes target/bench/results.json: a JSON list
# of rows {"suite","scenario","library","metric","value","unit"}. Prints a table.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
quick=()
[ "${1:-}" = "--quick" ] && quick=(--quick)

work=$(mktemp -d "${TMPDIR:-/tmp}/vishnu-bench.XXXXXX")
chmod 755 "$work"
services=()
cleanup() {
  local rc=$?
  for svc in "${services[@]:-}"; do
    [ -n "$svc" ] && bash "scripts/services/$svc.sh" stop "$work/services" >/dev/null 2>&1 || true
  done
  rm -rf "$work"
  exit $rc
}
trap cleanup EXIT INT TERM
step() { printf '\n==== %s\n' "$*" >&2; }

step "servers"
mkdir -p "$work/services"
for svc in redis postgres; do
  bash "scripts/services/$svc.sh" start "$work/services" >&2
  services+=("$svc")
  # shellcheck disable=SC1090
  source "$work/services/$svc.env"
done

step "Rust: build (release)"
cargo build --release --manifest-path bench/Cargo.toml >&2
mkdir -p "$work/rows" target/bench

step "Rust: in-process, Redis (standalone and cluster), scale"
bench/target/release/vishnu-bench "${quick[@]}" --suite rust-inprocess --suite rust-redis --suite rust-redis-cluster \
  --suite scale --suite scale-sql > "$work/rows/rust.json"
# Kept on its own too: the Rust rows survive a failure in the Python steps.
cp "$work/rows/rust.json" target/bench/rust.json

step "Python: virtualenvs (this package in release mode; the original vishnu 3.1.1)"
ours="$root/target/bench-venv"
orig="$root/target/bench-venv-311"
[ -x "$ours/bin/python" ] || python3 -m venv "$ours"
[ -x "$orig/bin/python" ] || python3 -m venv "$orig"
"$ours/bin/pip" install --quiet --disable-pip-version-check maturin beaker pycryptodome redis \
  "flask==3.1.2" "flask-session==0.8.0" "django==5.2.8" "starlette==1.10.0"
"$ours/bin/maturin" build --quiet --release --out "$work/wheels" >&2
"$ours/bin/pip" install --quiet --disable-pip-version-check --force-reinstall --no-deps "$work"/wheels/vishnu-*.whl
# The original pins pycryptodome<3.7, which does not import on current Python: install a current one.
"$orig/bin/pip" install --quiet --disable-pip-version-check --no-deps "vishnu==3.1.1"
"$orig/bin/pip" install --quiet --disable-pip-version-check "pycryptodome>=4" future redis

step "Python: in-process WSGI"
"$ours/bin/python" scripts/bench_wsgi.py floor "${quick[@]}" > "$work/rows/py-floor.json"
"$ours/bin/python" scripts/bench_wsgi.py vishnu "${quick[@]}" --redis "$VISHNU_REDIS_URL" > "$work/rows/py-vishnu.json"
"$orig/bin/python" scripts/bench_wsgi.py vishnu-3.1.1 "${quick[@]}" --redis "$VISHNU_REDIS_URL" > "$work/rows/py-orig.json"
"$ours/bin/python" scripts/bench_wsgi.py beaker "${quick[@]}" > "$work/rows/py-beaker.json"
"$ours/bin/python" scripts/bench_wsgi.py flask-cookie "${quick[@]}" > "$work/rows/py-flask.json"

step "Python: frameworks (one app each; vishnu and the framework's own session take turns)"
for scenario in "flask-cookie-write flask-cookie" "flask-redis-write flask-session" \
                "starlette-cookie-write starlette" "django-redis-write django-cache"; do
  # shellcheck disable=SC2086
  set -- $scenario
  "$ours/bin/python" scripts/bench_frameworks.py "$1" vishnu "$2" "${quick[@]}" --redis "$VISHNU_REDIS_URL" \
    > "$work/rows/py-frameworks-$1.json"
done

step "results"
python3 scripts/bench_report.py "$work"/rows/*.json > target/bench/results.json
python3 scripts/bench_report.py --table target/bench/results.json
python3 scripts/bench_report.py --targets target/bench/results.json || true
echo "wrote target/bench/results.json" >&2
