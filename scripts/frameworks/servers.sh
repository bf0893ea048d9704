#!/usr/bin/env bash
# The framework fronts under real servers, several worker processes each, on
# Redis: Flask and Django under gunicorn, FastAPI under uvicorn. Each app
# (scripts/frameworks/apps) serves the demo's core routes and must pass
# scripts/check_demo.py --framework, including 60 parallel increments of one
# session spread over the workers, exact. Then one session is shared by the
# Flask app, the FastAPI app and the Rust demo (same secret key, cookie name
# and Redis): each counts on from where the other left it.
#
#   VENV=target/venv WORK=/tmp/x VISHNU_REDIS_URL=redis://… RUST_DEMO=target/debug/examples/demo \
#     bash scripts/frameworks/servers.sh
#
# VENV has the vishnu under test installed; the servers and frameworks are
# installed into it. Exits non-zero on any failure.
set -euo pipefail
: "${VENV:?VENV: the venv with vishnu installed}"
: "${WORK:?WORK: a scratch directory}"
: "${VISHNU_REDIS_URL:?VISHNU_REDIS_URL: the Redis the servers share}"
: "${RUST_DEMO:?RUST_DEMO: the Rust demo binary (cargo build --example demo)}"
root=$(cd "$(dirname "$0")/../.." && pwd)
apps="$root/scripts/frameworks/apps"
mkdir -p "$WORK"

"$VENV/bin/pip" install --quiet --disable-pip-version-check gunicorn uvicorn "fastapi>=0.120" python-multipart \
  "flask==3.1.2" "django==5.2.8" "starlette==1.10.0"

pids=()
cleanup() {
  for pid in "${pids[@]:-}"; do [ -n "$pid" ] && kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
}
trap cleanup EXIT INT TERM

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_http() { # url pid
  for _ in $(seq 1 300); do
    if python3 -c 'import sys,urllib.request; urllib.request.urlopen(sys.argv[1], timeout=1)' "$1" 2>/dev/null; then return 0; fi
    kill -0 "$2" 2>/dev/null || { echo "the server exited" >&2; return 1; }
    sleep 0.1
  done
  echo "timed out waiting for $1" >&2
  return 1
}
# start NAME PORT command...: runs a server in the background (its log in $WORK).
start() {
  local name=$1 port=$2; shift 2
  (cd "$apps" && exec "$@") >"$WORK/$name.log" 2>&1 &
  pids+=($!)
  wait_http "http://127.0.0.1:$port/public" "$!" || { cat "$WORK/$name.log" >&2; return 1; }
}
stop_last() { local pid=${pids[-1]}; kill "$pid"; wait "$pid" 2>/dev/null || true; unset 'pids[-1]'; }

export VISHNU_STORE=$VISHNU_REDIS_URL
export SECRET_KEY="frameworks shared secret $(date +%s%N)"
status=0
for server in flask django fastapi; do
  port=$(free_port)
  case $server in
    flask)   start "$server" "$port" "$VENV/bin/gunicorn" -w 3 -b "127.0.0.1:$port" flask_app:app ;;
    django)  start "$server" "$port" "$VENV/bin/gunicorn" -w 3 -b "127.0.0.1:$port" django_app:application ;;
    fastapi) start "$server" "$port" "$VENV/bin/uvicorn" --workers 3 --host 127.0.0.1 --port "$port" \
               --log-level warning fastapi_app:app ;;
  esac
  echo "-- $server, 3 workers, on Redis"
  python3 "$root/scripts/check_demo.py" "http://127.0.0.1:$port" --framework --parallel 60 || status=1
  stop_last
done

echo "-- one session shared by Flask (gunicorn), FastAPI (uvicorn) and the Rust demo, through one Redis"
flask_port=$(free_port); fastapi_port=$(free_port); rust_port=$(free_port)
start flask-shared "$flask_port" "$VENV/bin/gunicorn" -w 2 -b "127.0.0.1:$flask_port" flask_app:app
start fastapi-shared "$fastapi_port" "$VENV/bin/uvicorn" --workers 2 --host 127.0.0.1 --port "$fastapi_port" \
  --log-level warning fastapi_app:app
VISHNU_FRAMEWORK_SECRET=$SECRET_KEY start rust-shared "$rust_port" "$RUST_DEMO" --port "$rust_port" \
  --store "$VISHNU_REDIS_URL" --cookie-name session
PYTHONPATH="$root/scripts" python3 - "$flask_port" "$fastapi_port" "$rust_port" <<'PY' || status=1
import sys

import check_demo
from check_demo import Browser, check

ports = [int(p) for p in sys.argv[1:4]]
flask, fastapi, rust = ports
names = {flask: "Flask", fastapi: "FastAPI", rust: "the Rust demo"}
b = Browser("http://127.0.0.1:%d" % flask)
for n, port in enumerate((flask, fastapi, rust, flask, rust, fastapi), start=1):
    b.port = port
    status, text, _, _ = b.request("GET", "/counter")
    check("%s counts the shared session to %d" % (names[port], n), status == 200 and text.strip() == str(n), (status, text))
b.port = flask
status, _, _, _ = b.request("POST", "/login", {"user": "ada"})
check("a login on Flask", status == 303, status)
for port in (fastapi, rust, flask):
    b.port = port
    status, text, _, _ = b.request("GET", "/whoami")
    check("%s sees the user who logged in on Flask" % names[port], status == 200 and text.strip() == "ada", (status, text))
copied = dict(b.cookies)
b.port = rust
status, _, _, _ = b.request("POST", "/logout")
check("a logout on the Rust demo", status == 303, status)
for port in (flask, fastapi):
    replay = Browser("http://127.0.0.1:%d" % port)
    replay.cookies = dict(copied)
    status, _, _, _ = replay.request("GET", "/whoami")
    check("after the logout, %s refuses a copy of the cookie" % names[port], status == 401, status)
print("shared-session: %d passed, %d failed" % (check_demo.passes, check_demo.failures))
sys.exit(1 if check_demo.failures else 0)
PY
[ $status = 0 ] && echo "framework servers: all checks passed" || echo "framework servers: FAILED" >&2
exit $status
